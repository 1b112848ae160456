// kn.quant: post-training int8 / int4 quantization, quantized layers and the sensitivity report.
export {
  quantize,
  sqnr,
  affineParams,
  type Scheme,
  type QuantizeOptions,
  type QuantizeResult,
  type LayerReport,
} from './quantize.js';
export {
  QuantLinear,
  QuantConv2d,
  Int4Linear,
  quantizeWeightsInt8,
  quantizeWeightsInt4,
  roundHalfEven,
} from './layers.js';
export { INT4_LAYOUT } from './layout.js';
export { QuantizedTensor, quantizeTensor, dequantize, type QuantizeTensorOptions } from './tensor.js';
export { fakeQuant, prepareQat, convertQat, QatLinear, QatConv2d } from './qat.js';
