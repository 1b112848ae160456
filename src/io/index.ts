// kn.io: safetensors files and training checkpoints, always written atomically.
import type { BackendName } from '../backends/backend.js';
import { getBackend, setBackend } from '../backends/registry.js';
import { ArgumentError, FormatError, checkOptions } from '../errors.js';
import { Module } from '../nn/module.js';
import { SPEC_METADATA_KEY, fromSpec, toSpec } from '../nn/spec.js';
import type { Tensor } from '../tensor/tensor.js';
import { checkFilePath, readFileFor, writeFileAtomic } from './atomic.js';
import { decodeSafetensors, encodeSafetensors } from './safetensors.js';
import { own } from '../records.js';

export { writeFileAtomic, writeFileAtomicSync } from './atomic.js';

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
 * @example await kn.io.save('.kiln-tmp-doc.safetensors', { w: kn.ones([2]) }) // undefined
 */
export async function save(
  path: string,
  what: Module | Record<string, Tensor>,
  opts: { metadata?: Record<string, string> } = {},
): Promise<void> {
  checkFilePath(path, 'save');
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
 * @example (await kn.io.load('.kiln-tmp-doc.safetensors')).w.toList() // [1, 1]
 */
export async function load(path: string, opts: { backend?: BackendName } = {}): Promise<Record<string, Tensor>> {
  checkFilePath(path, 'load');
  checkOptions(opts, 'load', ['backend']);
  return decodeSafetensors(await readFileFor(path, 'load'), path, opts.backend).tensors;
}

/** Like load, returning the file's metadata strings too. */
export async function loadWithMetadata(
  path: string,
  opts: { backend?: BackendName } = {},
): Promise<{ tensors: Record<string, Tensor>; metadata: Record<string, string> }> {
  checkFilePath(path, 'loadWithMetadata');
  checkOptions(opts, 'loadWithMetadata', ['backend']);
  return decodeSafetensors(await readFileFor(path, 'loadWithMetadata'), path, opts.backend);
}

/**
 * Rebuilds a model saved by kn.io.save from its architecture spec and loads its weights (strict), in eval
 * mode. Files without a spec, with a malformed one, or whose tensors do not fit it throw FormatError.
 * @example await kn.io.save('.kiln-tmp-doc-model.safetensors', new kn.nn.Sequential(new kn.nn.Linear(2, 2))); (await kn.io.loadModel('.kiln-tmp-doc-model.safetensors')).model.constructor.name // "Sequential"
 */
export async function loadModel(
  path: string,
  opts: { backend?: BackendName } = {},
): Promise<{ model: Module; metadata: Record<string, string> }> {
  checkFilePath(path, 'loadModel');
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

export {
  saveCheckpoint,
  saveCheckpointSync,
  loadCheckpoint,
  loadCheckpointSync,
  checkpointScaler,
  type CheckpointParts,
  type RestoreParts,
} from './checkpoint.js';
export { exportOnnx, toOnnx, type OnnxExportOptions } from './onnx.js';
