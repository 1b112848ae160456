// onnxruntime-node peer: a one-node ONNX model (MatMul) built with onnx-proto, run on the CPU provider.
import { createRequire } from 'node:module';
import type * as Ort from 'onnxruntime-node';

const require = createRequire(import.meta.url);

function matmulModel(n: number): Uint8Array {
  const { onnx } = require('onnx-proto') as typeof import('onnx-proto');
  const FLOAT = onnx.TensorProto.DataType.FLOAT;
  const vi = (name: string): import('onnx-proto').onnx.IValueInfoProto => ({
    name,
    type: { tensorType: { elemType: FLOAT, shape: { dim: [{ dimValue: n }, { dimValue: n }] } } },
  });
  const model = onnx.ModelProto.create({
    irVersion: 8,
    producerName: 'kiln-bench',
    opsetImport: [{ domain: '', version: 13 }],
    graph: {
      name: 'mm',
      node: [{ opType: 'MatMul', input: ['A', 'B'], output: ['C'] }],
      input: [vi('A'), vi('B')],
      output: [vi('C')],
    },
  });
  return onnx.ModelProto.encode(model).finish();
}

/** A MatMul session for square n on `threads` intra-op threads, and a runner that awaits one product. */
export async function ortMatmul(
  n: number,
  threads: number,
): Promise<{ run: () => Promise<void>; close: () => Promise<void> }> {
  const ort = require('onnxruntime-node') as typeof Ort;
  const session = await ort.InferenceSession.create(matmulModel(n), {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  const a = new ort.Tensor(
    'float32',
    Float32Array.from({ length: n * n }, (_, i) => ((i * 7919) % 1000) / 1000 - 0.5),
    [n, n],
  );
  const b = new ort.Tensor(
    'float32',
    Float32Array.from({ length: n * n }, (_, i) => ((i * 104729) % 1000) / 1000 - 0.5),
    [n, n],
  );
  return {
    run: async () => {
      await session.run({ A: a, B: b });
    },
    close: async () => {
      await session.release();
    },
  };
}
