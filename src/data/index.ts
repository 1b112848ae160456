// kn.data: datasets and loaders, Arrow in/out, scaling and imputation, splits and leakage checks,
// schema validation and drift.
export {
  Dataset,
  DataLoader,
  balancedSampleWeights,
  classWeights,
  type Batch,
  type BatchTransform,
  type TransformContext,
  type DataLoaderOptions,
} from './loader.js';
export {
  fromArrow,
  fromArrowWithVocab,
  toArrow,
  arrowToMatrix,
  readArrow,
  writeArrow,
  writeArrowStream,
  type ArrowTensors,
  type ArrowFormat,
  type WriteArrowOptions,
  type WriteArrowStreamOptions,
} from './arrow.js';
export { ArrowSource, arrowFileInfo, type ArrowFileInfo, type ArrowReadOptions } from './arrow_reader.js';
export {
  Transformer,
  StandardScaler,
  MinMaxScaler,
  RobustScaler,
  SimpleImputer,
  OutlierClipper,
  transformerFromJSON,
  loadTransformer,
  type TransformerJSON,
  type ImputeStrategy,
} from './scalers.js';
export {
  trainTestSplit,
  kFold,
  stratifiedKFold,
  groupKFold,
  leakageReport,
  type Split,
  type Leak,
  type TrainTestOptions,
} from './split.js';
export { validate, type Schema, type ColumnRule, type Violation, type ValidationReport } from './validate.js';
export { driftReport, psi, ksTest, kolmogorovQ, type DriftReport, type FeatureDrift } from './drift.js';
export type { TableLike } from './columns.js';
export {
  OneHotEncoder,
  OrdinalEncoder,
  TargetEncoder,
  HashingEncoder,
  encoderFromJSON,
  loadEncoder,
  type EncoderJSON,
  type UnknownPolicy,
} from './encoders.js';
export {
  readCsv,
  writeCsv,
  writeCsvStream,
  openCsv,
  type ReadCsvOptions,
  type WriteCsvOptions,
  type CsvSource,
  type CsvChunkOptions,
} from './csv.js';
export {
  readParquet,
  writeParquet,
  writeParquetStream,
  parquetInfo,
  ParquetSource,
  type ParquetInfo,
  type ParquetCompression,
  type ReadParquetOptions,
  type WriteParquetOptions,
} from './parquet.js';
export {
  datasetManifest,
  datasetFiles,
  writeManifest,
  readManifest,
  verifyManifest,
  type DatasetManifest,
  type ManifestFile,
  type ManifestCheck,
} from './manifest.js';
export { StreamingDataset, type StreamingOptions, type StreamStats } from './stream.js';
export { stratifiedSample, Reservoir, reservoirSample, undersample, oversample, smote } from './sampling.js';
export {
  calendarFeatures,
  lagFeatures,
  rollingFeatures,
  timeSeriesSplit,
  type CalendarPart,
  type RollingStat,
  type Timestamps,
} from './time.js';
export * as augment from './augment.js';
export {
  ColumnPipeline,
  CalendarStep,
  loadPipeline,
  type ColumnGroup,
  type PipelineStep,
  type PipelineJSON,
} from './pipeline.js';
export { FeatureStore, type FeatureViewSpec, type Materialization } from './features.js';
