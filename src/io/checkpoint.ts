// Checkpoints: model, optimizer, scheduler, scaler and a JSON state in one safetensors file.
import { ArgumentError, FormatError, ValidationError, checkOptions, describe, optionKeys } from '../errors.js';
import { Module } from '../nn/module.js';
import { transformerFromJSON, type Transformer, type TransformerJSON } from '../data/scalers.js';
import { Optimizer, type OptimizerState } from '../optim/optimizer.js';
import { LRScheduler } from '../optim/schedulers.js';
import type { Tensor } from '../tensor/tensor.js';
import { checkFilePath, readFileFor, readFileForSync, writeFileAtomic, writeFileAtomicSync } from './atomic.js';
import { decodeSafetensors, encodeSafetensors } from './safetensors.js';
import { nameRecord, own } from '../records.js';

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
  checkFilePath(path, 'saveCheckpoint');
  checkParts(parts, 'saveCheckpoint', false);
  await writeFileAtomic(path, checkpointChunks(parts));
}
/** Synchronous saveCheckpoint. */
export function saveCheckpointSync(path: string, parts: CheckpointParts): void {
  checkFilePath(path, 'saveCheckpointSync');
  checkParts(parts, 'saveCheckpointSync', false);
  writeFileAtomicSync(path, checkpointChunks(parts));
}

function restore(bytes: Uint8Array, path: string, parts: RestoreParts, check?: (state: unknown) => void): unknown {
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
      check?.(meta.state ?? null);
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
  checkFilePath(path, 'loadCheckpoint');
  checkParts(parts, 'loadCheckpoint', true);
  return restore(await readFileFor(path, 'loadCheckpoint'), path, parts);
}
/**
 * The scaler saved in a checkpoint (null when it has none), rebuilt with kn.data.transformerFromJSON.
 */
export async function checkpointScaler(path: string): Promise<Transformer | null> {
  checkFilePath(path, 'checkpointScaler');
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

/**
 * loadCheckpoint for the training loop: `check` sees the saved state after every part has been checked and before
 * any of them changes, so a state it refuses leaves the model, optimizer and scheduler as they were.
 */
export async function restoreCheckpoint(
  path: string,
  parts: RestoreParts,
  check: (state: unknown) => void,
): Promise<unknown> {
  return restore(await readFileFor(path, 'loadCheckpoint'), path, parts, check);
}

/** Synchronous loadCheckpoint. */
export function loadCheckpointSync(path: string, parts: RestoreParts): unknown {
  checkFilePath(path, 'loadCheckpointSync');
  checkParts(parts, 'loadCheckpointSync', true);
  return restore(readFileForSync(path, 'loadCheckpointSync'), path, parts);
}
