// kn.serve: dynamic batching and an HTTP model server.
export {
  Batcher,
  ServeError,
  QueueFullError,
  RequestTimeoutError,
  RequestAbortedError,
  BatcherClosedError,
  ModelError,
  type BatcherOptions,
  type BatchInfo,
  type SubmitOptions,
  type BatcherStats,
} from './batcher.js';
export {
  rowModel,
  tuneBatchSize,
  type BatchTiming,
  inferInputShape,
  resolveInputShape,
  FEATURES_METADATA_KEY,
  TASK_METADATA_KEY,
  LABEL_METADATA_KEY,
  type ServableModel,
  type BatchTransform,
  type RowModel,
} from './model.js';
export {
  createServer,
  ReloadError,
  INPUT_SHAPE_METADATA_KEY,
  CLASSES_METADATA_KEY,
  type ServerOptions,
  type ModelServer,
  type Served,
} from './server.js';
export { RequestLog, readRequestLog, type RequestLogRecord, type RequestLogData } from './log.js';
export { hashKey, newApiKey, type AuthOptions, type KeySpec, type Scope } from './auth.js';
export {
  Monitor,
  DEFAULT_ALERT_RULES,
  prometheusRules,
  type AlertRule,
  type AlertState,
  type MonitorMetric,
  type MonitorOptions,
  type MonitorReport,
  type Notification,
} from './monitor.js';
export {
  UnknownVersionError,
  type DeployOptions,
  type AutoRollbackRule,
  type VersionInfo,
  type Role,
} from './traffic.js';
export { type Answer, type AuditRecord } from './http.js';
export {
  runPipeline,
  watchPipeline,
  loadPipelineSpec,
  type PipelineSpec,
  type PipelineState,
  type StepName,
  type StepState,
  type RunOptions,
  type WatchOptions,
  type PipelineWatcher,
} from './retrain.js';
