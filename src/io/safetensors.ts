// The safetensors format: an 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?: {string: string}} and the raw
// little-endian tensor bytes. Reading validates everything before a byte of data is used: header size and
// JSON, dtypes, shapes, offsets in bounds, sizes matching shapes, and no overlapping or missing bytes.
import { ArgumentError, FormatError, describe } from '../errors.js';
import {
  encodeStorage,
  DTYPE_SHORT_NAMES,
  DTYPE_SIZE,
  storageArray,
  type DType,
  type StorageArray,
} from '../tensor/dtype.js';
import { numel, shapeStr } from '../tensor/shape.js';
import { isTensor, Tensor } from '../tensor/tensor.js';
import { getBackendInstance, currentBackend } from '../backends/registry.js';
import type { BackendName } from '../backends/backend.js';
import { nameRecord, own, toNameRecord, unrepresentable } from '../records.js';

const TO_ST = DTYPE_SHORT_NAMES;
const FROM_ST: Readonly<Record<string, DType>> = Object.fromEntries(
  Object.entries(TO_ST).map(([k, v]) => [v, k as DType]),
);
/**
 * 64-bit integers (PyTorch's int64: BatchNorm's num_batches_tracked, token ids) are read as int32 when every
 * value fits, and refused otherwise; kiln writes int32.
 */
const WIDE_INT = 'I64';
/** Header larger than this is refused (the format's reference reader uses 100 MB). */
const MAX_HEADER = 100_000_000;

/** The raw little-endian bytes of a tensor's values (x86 and ARM are little-endian). */
function tensorBytes(t: Tensor): Uint8Array {
  const host = t.toArray();
  const s: StorageArray =
    t.dtype === 'float16' || t.dtype === 'bfloat16' ? encodeStorage(host as Float32Array, t.dtype) : host;
  return new Uint8Array(s.buffer, s.byteOffset, s.byteLength);
}

/** Serialises named tensors (sorted by name) with optional string metadata. */
export function encodeSafetensors(
  tensors: Record<string, Tensor>,
  metadata: Record<string, string> = {},
): Uint8Array[] {
  if (tensors === null || typeof tensors !== 'object')
    throw new ArgumentError(`save takes a Record<string, Tensor>, got ${describe(tensors)}`);
  const names = Object.keys(tensors).sort();
  // keyed by the caller's names: no prototype, so '__proto__' is a tensor name like any other
  const header = nameRecord<unknown>();
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== 'string') throw new ArgumentError(`metadata '${k}' must be a string, got ${describe(v)}`);
    const bad = unrepresentable(k);
    if (bad) throw new ArgumentError(`metadata key ${JSON.stringify(k)} cannot be saved: ${bad}`);
  }
  if (Object.keys(metadata).length) header['__metadata__'] = toNameRecord(metadata);
  const blobs: Uint8Array[] = [];
  let off = 0;
  for (const n of names) {
    if (n === '__metadata__' || n === '') throw new ArgumentError(`'${n}' cannot be used as a tensor name`);
    const bad = unrepresentable(n);
    if (bad) throw new ArgumentError(`tensor name ${JSON.stringify(n)} cannot be saved: ${bad}`);
    const t = tensors[n];
    if (!isTensor(t)) throw new ArgumentError(`entry '${n}' is not a Tensor: ${describe(t)}`);
    const b = tensorBytes(t);
    header[n] = { dtype: TO_ST[t.dtype], shape: [...t.shape], data_offsets: [off, off + b.byteLength] };
    blobs.push(b);
    off += b.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8); // align the data to 8 bytes, as the spec suggests
  const hbytes = new TextEncoder().encode(json);
  const len = new Uint8Array(8);
  new DataView(len.buffer).setBigUint64(0, BigInt(hbytes.byteLength), true);
  return [len, hbytes, ...blobs];
}

/** A parsed file: tensors on a backend and the metadata strings. */
export interface Decoded {
  tensors: Record<string, Tensor>;
  metadata: Record<string, string>;
}

/** Parses and validates a safetensors file's bytes, creating tensors on `backend` (default: current). */
export function decodeSafetensors(bytes: Uint8Array, what = 'safetensors data', backend?: BackendName): Decoded {
  const fail = (msg: string): never => {
    throw new FormatError(`${what}: ${msg}`);
  };
  if (bytes.byteLength < 8) fail(`file is ${bytes.byteLength} bytes, too short for the 8-byte header length`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const hlen = dv.getBigUint64(0, true);
  if (hlen > BigInt(MAX_HEADER)) fail(`header length ${hlen} exceeds the ${MAX_HEADER}-byte limit`);
  if (hlen > BigInt(bytes.byteLength - 8))
    fail(`header length ${hlen} runs past the end of the file (${bytes.byteLength} bytes): truncated?`);
  const h = Number(hlen);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + h)));
  } catch (e) {
    fail(`header is not valid UTF-8 JSON (${(e as Error).message})`);
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) fail('header must be a JSON object');
  const data = bytes.subarray(8 + h);
  const metadata = nameRecord<string>();
  const entries: { name: string; dtype: DType; wide: boolean; shape: number[]; begin: number; end: number }[] = [];
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    const bad = unrepresentable(name);
    if (bad) fail(`name ${JSON.stringify(name)} cannot be kept: ${bad}`);
    if (name === '__metadata__') {
      if (raw === null || typeof raw !== 'object' || Array.isArray(raw))
        fail('__metadata__ must be an object of strings');
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(`__metadata__.${k} must be a string`);
        const badKey = unrepresentable(k);
        if (badKey) fail(`metadata key ${JSON.stringify(k)} cannot be kept: ${badKey}`);
        metadata[k] = v as string;
      }
      continue;
    }
    const e = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (e === null || typeof e !== 'object') fail(`entry '${name}' must be an object`);
    const wide = e.dtype === WIDE_INT;
    const dtype = wide ? 'int32' : typeof e.dtype === 'string' ? own(FROM_ST, e.dtype) : undefined;
    if (!dtype)
      fail(
        `tensor '${name}' has dtype ${describe(e.dtype)}; supported: ${[...Object.keys(FROM_ST), WIDE_INT].join(', ')}`,
      );
    const elemBytes = wide ? 8 : DTYPE_SIZE[dtype!];
    const shape = e.shape;
    if (!Array.isArray(shape) || shape.length > 8 || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      fail(`tensor '${name}' has shape ${describe(shape)}; expected up to 8 non-negative integers`);
    }
    const offs = e.data_offsets;
    if (
      !Array.isArray(offs) ||
      offs.length !== 2 ||
      !offs.every((d) => Number.isSafeInteger(d) && d >= 0) ||
      offs[0] > offs[1]
    ) {
      fail(`tensor '${name}' has data_offsets ${describe(offs)}; expected [begin, end] with 0 <= begin <= end`);
    }
    const [begin, end] = offs as [number, number];
    if (end > data.byteLength)
      fail(`tensor '${name}' ends at byte ${end} but the data section has ${data.byteLength} bytes: truncated?`);
    const n = numel(shape as number[]);
    if (n * elemBytes !== end - begin) {
      fail(
        `tensor '${name}' ${shapeStr(shape as number[])} ${e.dtype} needs ${n * elemBytes} bytes, its offsets span ${end - begin}`,
      );
    }
    entries.push({ name, dtype: dtype!, wide, shape: shape as number[], begin, end });
  }
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  for (const e of entries) {
    if (e.begin !== pos)
      fail(
        e.begin < pos
          ? `tensor '${e.name}' overlaps another tensor's bytes`
          : `bytes ${pos}..${e.begin} belong to no tensor`,
      );
    pos = e.end;
  }
  if (pos !== data.byteLength) fail(`the data section has ${data.byteLength} bytes but the tensors cover ${pos}`);
  const b = backend ? getBackendInstance(backend) : currentBackend();
  const tensors = nameRecord<Tensor>();
  try {
    for (const e of entries) {
      const n = numel(e.shape);
      const arr = e.wide ? narrowInt64(e.name, data.subarray(e.begin, e.end), n, fail) : storageArray(e.dtype, n);
      if (!e.wide) new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength).set(data.subarray(e.begin, e.end));
      if (e.dtype === 'bool')
        for (let i = 0; i < n; i++)
          if (arr[i]! > 1) fail(`bool tensor '${e.name}' holds the byte ${arr[i]} (expected 0 or 1)`);
      tensors[e.name] = Tensor.fromHost(arr, e.shape, e.dtype, b);
    }
  } catch (err) {
    for (const t of Object.values(tensors)) t.dispose();
    throw err;
  }
  return { tensors, metadata };
}

/** The little-endian int64 values in `bytes` as int32; `fail` names the tensor when one does not fit. */
function narrowInt64(name: string, bytes: Uint8Array, n: number, fail: (msg: string) => never): Int32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const v = view.getBigInt64(i * 8, true);
    if (v < -2147483648n || v > 2147483647n)
      fail(
        `tensor '${name}' is int64 and holds ${v} at index ${i}; kiln reads int64 as int32, whose range is ` +
          '-2147483648..2147483647',
      );
    out[i] = Number(v);
  }
  return out;
}
