// kn.io: safetensors files and training checkpoints, always written atomically.
import type { BackendName } from '../backends/backend.js';
import { getBackend, setBackend } from '../backends/registry.js';
import { ArgumentError, FormatError, ValidationError, checkOptions, describe, optionKeys } from '../errors.js';
import { Module } from '../nn/module.js';
import { SPEC_METADATA_KEY, fromSpec, toSpec } from '../nn/spec.js';
import { transformerFromJSON, type Transformer, type TransformerJSON } from '../data/scalers.js';
import { Optimizer, type OptimizerState } from '../optim/optimizer.js';
import { LRScheduler } from '../optim/schedulers.js';
import type { Tensor } from '../tensor/tensor.js';
import { checkFilePath, readFileFor, readFileForSync, writeFileAtomic, writeFileAtomicSync } from './atomic.js';
import { decodeSafetensors, encodeSafetensors } from './safetensors.js';
import { nameRecord, own } from '../records.js';

export { writeFileAtomic, writeFileAtomicSync } from './atomic.js';

const checkPath = checkFilePath;

/** The architecture spec of a module made of standard layers, or null for custom modules. */
function specMetadata(x: Module | Record<string, Tensor>): Record<string, string> {
  if (!(x instanceof Module)) return {};
  try {
    return { [SPEC_METADATA_KEY]: JSON.stringify(toSpec(x)) };
  } catch (e) {
    if (e instanceof ArgumentError) return {}; // a custom module: weights only
    throw e;
  }
}

function tensorsOf(x: Module | Record<string, Tensor>): { tensors: Record<string, Tensor>; owned: boolean } {
  if (x instanceof Module) return { tensors: x.stateDict(), owned: true };
  return { tensors: x, owned: false };
}

/**
 * Saves a module's state dict or named tensors to a safetensors file (atomically). A module built from
 * kiln's standard layers also gets its architecture spec in the metadata (key 'kiln.spec'), so
 * kn.io.loadModel and `kiln serve` can rebuild it.
 * @example await kn.io.save('/tmp/kiln-doc.safetensors', { w: kn.ones([2]) }) // undefined
 */
export async function save(
  path: string,
  what: Module | Record<string, Tensor>,
  opts: { metadata?: Record<string, string> } = {},
): Promise<void> {
  checkPath(path, 'save');
  checkOptions(opts, 'save', ['metadata']);
  const { tensors, owned } = tensorsOf(what);
  try {
    // the module's own spec wins over a stale one carried in opts.metadata (e.g. from the file it was loaded from)
    const meta: Record<string, string> = { ...opts.metadata, ...specMetadata(what) };
    if (what instanceof Module && !(SPEC_METADATA_KEY in specMetadata(what))) delete meta[SPEC_METADATA_KEY];
    await writeFileAtomic(path, encodeSafetensors(tensors, meta));
  } finally {
    if (owned) for (const t of Object.values(tensors)) t.dispose();
  }
}

/**
 * Loads a safetensors file into tensors (on `backend`, default the current one). Truncated or malformed
 * files throw FormatError.
 * @example (await kn.io.load('/tmp/kiln-doc.safetensors')).w.toList() // [1, 1]
 */
export async function load(path: string, opts: { backend?: BackendName } = {}): Promise<Record<string, Tensor>> {
  checkPath(path, 'load');
  checkOptions(opts, 'load', ['backend']);
  return decodeSafetensors(await readFileFor(path, 'load'), path, opts.backend).tensors;
}

/** Like load, returning the file's metadata strings too. */
export async function loadWithMetadata(
  path: string,
  opts: { backend?: BackendName } = {},
): Promise<{ tensors: Record<string, Tensor>; metadata: Record<string, string> }> {
  checkPath(path, 'loadWithMetadata');
  checkOptions(opts, 'loadWithMetadata', ['backend']);
  return decodeSafetensors(await readFileFor(path, 'loadWithMetadata'), path, opts.backend);
}

/**
 * Rebuilds a model saved by kn.io.save from its architecture spec and loads its weights (strict), in eval
 * mode. Files without a spec, with a malformed one, or whose tensors do not fit it throw FormatError.
 * @example await kn.io.save('/tmp/kiln-doc-model.safetensors', new kn.nn.Sequential(new kn.nn.Linear(2, 2))); (await kn.io.loadModel('/tmp/kiln-doc-model.safetensors')).model.constructor.name // "Sequential"
 */
export async function loadModel(
  path: string,
  opts: { backend?: BackendName } = {},
): Promise<{ model: Module; metadata: Record<string, string> }> {
  checkPath(path, 'loadModel');
  checkOptions(opts, 'loadModel', ['backend']);
  return modelFromDecoded(
    decodeSafetensors(await readFileFor(path, 'loadModel'), path, opts.backend),
    path,
    opts.backend,
  );
}

/** loadModel for bytes already in memory (a model received over the wire, or a file read elsewhere). */
export function modelFromBytes(
  bytes: Uint8Array,
  opts: { backend?: BackendName; where?: string } = {},
): { model: Module; metadata: Record<string, string> } {
  checkOptions(opts, 'modelFromBytes', ['backend', 'where']);
  const where = opts.where ?? 'model bytes';
  return modelFromDecoded(decodeSafetensors(bytes, where, opts.backend), where, opts.backend);
}

function modelFromDecoded(
  d: { tensors: Record<string, Tensor>; metadata: Record<string, string> },
  where: string,
  backend?: BackendName,
): { model: Module; metadata: Record<string, string> } {
  const { tensors, metadata } = d;
  try {
    const spec = own(metadata, SPEC_METADATA_KEY);
    if (spec === undefined) {
      throw new FormatError(
        `${where} has no architecture spec (metadata '${SPEC_METADATA_KEY}'): it was saved from a custom ` +
          'Module or by another tool; build the model in code and use kn.io.load + loadStateDict',
      );
    }
    const total = Object.values(tensors).reduce((s, t) => s + t.size, 0);
    // the layers create their parameters on the default backend: build them on the one asked for
    const prev = getBackend();
    if (backend) setBackend(backend);
    let model: Module;
    try {
      model = fromSpec(spec, { where: `${where} (architecture spec)`, maxParams: total });
    } finally {
      setBackend(prev);
    }
    try {
      model.loadStateDict(tensors);
    } catch (e) {
      model.dispose();
      throw new FormatError(`${where}: the weights do not fit the architecture spec: ${(e as Error).message}`);
    }
    model.eval();
    return { model, metadata };
  } finally {
    for (const t of Object.values(tensors)) t.dispose();
  }
}

/** What a checkpoint holds. `state` is any JSON-serialisable value (epoch, history, RNG state...). */
export interface CheckpointParts {
  model: Module;
  optimizer?: Optimizer | null;
  scheduler?: LRScheduler | null;
  /** A fitted feature scaler (or any kn.data transformer) saved with the model; read back with checkpointScaler. */
  scaler?: Transformer | null;
  state?: unknown;
}

/** What loadCheckpoint restores in place (the scaler is read with checkpointScaler; the state is returned). */
export type RestoreParts = Pick<CheckpointParts, 'model' | 'optimizer' | 'scheduler'>;

const META_KEY = 'kiln.checkpoint';
const PART_KEYS = optionKeys<CheckpointParts>({
  model: true,
  optimizer: true,
  scheduler: true,
  scaler: true,
  state: true,
});

/**
 * Checks the parts of a checkpoint call (`where` names it): known keys only, a Module, and an Optimizer, an
 * LRScheduler and a scaler where given. Loading restores the model, optimizer and scheduler: the scaler is read
 * with checkpointScaler and the state is what it returns.
 */
function checkParts(parts: Partial<CheckpointParts>, where: string, load: boolean): void {
  if (load && parts !== null && typeof parts === 'object') {
    if (parts.scaler !== undefined)
      throw new ArgumentError(`${where} does not restore a scaler in place: read it with kn.io.checkpointScaler(path)`);
    if (parts.state !== undefined)
      throw new ArgumentError(`${where} takes no state: it returns the state the checkpoint holds`);
  }
  checkOptions(parts, where, PART_KEYS, 'required');
  if (!(parts.model instanceof Module))
    throw new ArgumentError(`${where} needs { model: Module }, got ${describe(parts.model)}`);
  if (parts.optimizer != null && !(parts.optimizer instanceof Optimizer))
    throw new ArgumentError(`${where}: optimizer must be a kn.optim optimizer, got ${describe(parts.optimizer)}`);
  if (parts.scheduler != null && !(parts.scheduler instanceof LRScheduler))
    throw new ArgumentError(`${where}: scheduler must be a kn.optim scheduler, got ${describe(parts.scheduler)}`);
  if (parts.scaler != null && typeof (parts.scaler as { toJSON?: unknown }).toJSON !== 'function')
    throw new ArgumentError(`${where}: scaler must be a fitted kn.data transformer, got ${describe(parts.scaler)}`);
}

function checkpointChunks(parts: CheckpointParts): Uint8Array[] {
  const tensors = nameRecord<Tensor>();
  const owned: Tensor[] = [];
  for (const [k, t] of Object.entries(parts.model.stateDict())) {
    tensors[`model.${k}`] = t;
    owned.push(t);
  }
  let optim: Omit<OptimizerState, 'tensors'> | null = null;
  if (parts.optimizer) {
    const sd = parts.optimizer.stateDict();
    for (const [k, t] of Object.entries(sd.tensors)) {
      tensors[`optim.${k}`] = t;
      owned.push(t);
    }
    optim = { kind: sd.kind, hyper: sd.hyper, steps: sd.steps };
  }
  try {
    const meta = {
      version: 1,
      optimizer: optim,
      scheduler: parts.scheduler?.stateDict() ?? null,
      scaler: parts.scaler?.toJSON() ?? null,
      state: parts.state ?? null,
    };
    return encodeSafetensors(tensors, { [META_KEY]: JSON.stringify(meta) });
  } finally {
    for (const t of owned) t.dispose();
  }
}

/**
 * Saves model, optimizer state, scheduler position and a JSON `state` to one file, atomically (temp file +
 * fsync + rename), so an interrupted save never damages the previous checkpoint.
 */
export async function saveCheckpoint(path: string, parts: CheckpointParts): Promise<void> {
  checkPath(path, 'saveCheckpoint');
  checkParts(parts, 'saveCheckpoint', false);
  await writeFileAtomic(path, checkpointChunks(parts));
}
/** Synchronous saveCheckpoint. */
export function saveCheckpointSync(path: string, parts: CheckpointParts): void {
  checkPath(path, 'saveCheckpointSync');
  checkParts(parts, 'saveCheckpointSync', false);
  writeFileAtomicSync(path, checkpointChunks(parts));
}

function restore(bytes: Uint8Array, path: string, parts: RestoreParts): unknown {
  const backend = parts.model.parameters()[0]?.backend;
  const { tensors, metadata } = decodeSafetensors(bytes, path, backend);
  try {
    const raw = own(metadata, META_KEY);
    if (raw === undefined)
      throw new FormatError(`${path} is a safetensors file but not a kiln checkpoint (no '${META_KEY}' metadata)`);
    let meta: {
      version?: number;
      optimizer?: Omit<OptimizerState, 'tensors'> | null;
      scheduler?: { stepCount: number } | null;
      state?: unknown;
    };
    try {
      meta = JSON.parse(raw);
    } catch {
      throw new FormatError(`${path}: checkpoint metadata is not valid JSON`);
    }
    if (meta.version !== 1)
      throw new FormatError(`${path}: checkpoint version ${describe(meta.version)} is not supported (expected 1)`);
    const model = nameRecord<Tensor>(),
      optim = nameRecord<Tensor>();
    for (const [k, t] of Object.entries(tensors)) {
      if (k.startsWith('model.')) model[k.slice(6)] = t;
      else if (k.startsWith('optim.')) optim[k.slice(6)] = t;
      else throw new FormatError(`${path}: unexpected tensor '${k}' in a checkpoint`);
    }
    // every part is checked before any changes: a checkpoint that does not fit leaves all of them as they were
    if (parts.optimizer && !meta.optimizer) throw new ValidationError(`${path} holds no optimizer state`);
    if (parts.scheduler && !meta.scheduler) throw new ValidationError(`${path} holds no scheduler state`);
    const applyModel = parts.model.planLoad(model).apply;
    const applyScheduler = parts.scheduler?.planLoad(meta.scheduler!);
    const optimizer = parts.optimizer?.planLoad({ ...meta.optimizer!, tensors: optim });
    try {
      applyModel();
    } catch (e) {
      optimizer?.discard();
      throw e;
    }
    optimizer?.apply();
    applyScheduler?.();
    return meta.state ?? null;
  } finally {
    for (const t of Object.values(tensors)) t.dispose();
  }
}

/**
 * Restores a checkpoint into `model` (and `optimizer` / `scheduler` when given) and returns its JSON state. All or
 * nothing: when the checkpoint does not fit one of the parts, it throws and none of them has changed.
 */
export async function loadCheckpoint(path: string, parts: RestoreParts): Promise<unknown> {
  checkPath(path, 'loadCheckpoint');
  checkParts(parts, 'loadCheckpoint', true);
  return restore(await readFileFor(path, 'loadCheckpoint'), path, parts);
}
/**
 * The scaler saved in a checkpoint (null when it has none), rebuilt with kn.data.transformerFromJSON.
 */
export async function checkpointScaler(path: string): Promise<Transformer | null> {
  checkPath(path, 'checkpointScaler');
  const { tensors, metadata } = decodeSafetensors(await readFileFor(path, 'checkpointScaler'), path);
  Object.values(tensors).forEach((t) => t.dispose());
  const raw = own(metadata, META_KEY);
  if (raw === undefined) throw new FormatError(`${path} is not a kiln checkpoint (no '${META_KEY}' metadata)`);
  let meta: { scaler?: TransformerJSON | null };
  try {
    meta = JSON.parse(raw);
  } catch {
    throw new FormatError(`${path}: checkpoint metadata is not valid JSON`);
  }
  return meta.scaler ? transformerFromJSON(meta.scaler) : null;
}

/** Synchronous loadCheckpoint. */
export function loadCheckpointSync(path: string, parts: RestoreParts): unknown {
  checkPath(path, 'loadCheckpointSync');
  checkParts(parts, 'loadCheckpointSync', true);
  return restore(readFileForSync(path, 'loadCheckpointSync'), path, parts);
}
export { exportOnnx, toOnnx, type OnnxExportOptions } from './onnx.js';
