// Apache Arrow in and out. Numeric columns become tensors straight from Arrow's value buffers (one copy, into
// the backend's memory; no intermediate JS arrays); nulls become NaN; dictionary-encoded and string columns
// become int32 codes plus a vocabulary. Arrow IPC files are read and written (atomically).
import { createRequire } from 'node:module';
import { MessageChannel, Worker, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import * as A from 'apache-arrow';
import type { BackendName } from '../backends/backend.js';
import {
  ArgumentError,
  FormatError,
  ShapeError,
  ValidationError,
  checkOptions,
  describe,
  messageOf,
} from '../errors.js';
import { checkFilePath, readFileForSync, writeFileAtomic, writeFileAtomicSync } from '../io/atomic.js';
import { tensor } from '../ops/creation.js';
import { shapeStr } from '../tensor/shape.js';
import { isTensor, type Tensor } from '../tensor/tensor.js';
import { nameRecord, own, unrepresentable } from '../records.js';
import { isArrowStreamPath } from './extensions.js';
import { transferable } from './reader_thread.js';

/** Tensors by column name, and the vocabulary of every categorical column (code -> string). */
export interface ArrowTensors {
  tensors: Record<string, Tensor>;
  vocab: Record<string, string[]>;
}

/**
 * `t` as a Table of the apache-arrow copy kiln uses, for the IPC writer. apache-arrow's `instanceof Table` accepts
 * a Table of any copy (its ESM and CommonJS builds are two, as are two installed versions), but the writer only
 * handles its own classes: a Table from the other build is converted through that build's IPC writer; one from
 * a copy kiln cannot reach gets an ArgumentError that says what to do. Its buffers are checked as a file's are
 * (bufferProblem): a table whose lengths, offsets or dictionary indices do not fit its buffers is a
 * ValidationError, never a file written with made-up values or one that no reader accepts.
 */
export function ownTable(t: A.Table, who: string): A.Table {
  const own = sameCopy(t, who);
  const broken = tableBufferProblem(own);
  if (broken) throw new ValidationError(`${who}: ${broken}`);
  return own;
}

function sameCopy(t: A.Table, who: string): A.Table {
  if (Object.getPrototypeOf(t) === A.Table.prototype) return t;
  let sibling: typeof A | null = null;
  try {
    sibling = createRequire(import.meta.url)('apache-arrow') as typeof A;
  } catch {
    // no CommonJS build to load: nothing to convert with
  }
  if (sibling && sibling.Table !== A.Table && Object.getPrototypeOf(t) === sibling.Table.prototype)
    return A.tableFromIPC(sibling.tableToIPC(t, 'stream'));
  throw new ArgumentError(
    `${who}: the Table was made by another copy of apache-arrow than the one kiln uses, and kiln cannot write ` +
      "it; make it with kiln's copy (import apache-arrow where kiln resolves it), or pass its bytes from that " +
      "copy's tableToIPC through kiln's tableFromIPC",
  );
}

/**
 * The tables an (async) iterable gives, each checked to be an apache-arrow Table and taken as ownTable takes it
 * (the chunks writeParquetStream and writeCsvStream write). Not an iterable: an ArgumentError at once; a chunk
 * that is not a Table: an ArgumentError naming it, when it comes.
 */
export function tableStream(tables: unknown, who: string): AsyncGenerator<A.Table> {
  if (tables === null || typeof tables !== 'object' || !(Symbol.asyncIterator in tables || Symbol.iterator in tables))
    throw new ArgumentError(`${who} takes an iterable of apache-arrow Tables, got ${describe(tables)}`);
  return (async function* (): AsyncGenerator<A.Table> {
    let chunk = 0;
    for await (const t of tables as AsyncIterable<unknown>) {
      if (!(t instanceof A.Table))
        throw new ArgumentError(`${who}: chunk ${chunk} is ${describe(t)}, expected an apache-arrow Table`);
      yield ownTable(t, `${who}: chunk ${chunk}`);
      chunk++;
    }
  })();
}

function assertTableArg(t: unknown): A.Table {
  if (!(t instanceof A.Table)) throw new ArgumentError(`expected an apache-arrow Table, got ${describe(t)}`);
  return t;
}

/**
 * Why a union chunk's buffers cannot hold what they claim: every value's type id must name one of the type's
 * members, and the member value it reads must exist (a dense union's offsets, one per value and not a running
 * total, index the member's values; a sparse union's members are as long as the union, sliced with it).
 */
function unionProblem(d: A.Data<A.Union>, where: string, claims: string): string | null {
  const ids = d.typeIds as Int8Array | undefined;
  if (d.length === 0) return null;
  if (!ids || ids.length < d.length) return `${claims} but holds type ids for ${ids ? ids.length : 0}`;
  const dense = d.type.mode === A.UnionMode.Dense;
  const o = d.valueOffsets as Int32Array | undefined;
  if (dense && (!o || o.length < d.length)) return `${claims} but holds offsets for ${o ? o.length : 0}`;
  const member = d.type.typeIdToChildIndex;
  for (let i = 0; i < d.length; i++) {
    const k = Object.hasOwn(member, ids[i]!) ? member[ids[i]!] : undefined;
    const child = k === undefined ? undefined : d.children[k];
    if (!child)
      return `${where} holds type id ${ids[i]} at value ${i}; its members have ids ${d.type.typeIds.join(', ')}`;
    const at = dense ? o![i]! : i;
    if (at < 0 || at >= child.length)
      return `${where}'s value ${i} is value ${at} of its member ${k}, which holds ${child.length}`;
  }
  return null;
}

/**
 * Why a string or binary view chunk's views point outside its buffers: each value's 16-byte view holds its length
 * and, past 12 bytes, which data buffer its bytes are in and where.
 */
function viewProblem(d: A.Data, where: string): string | null {
  const v = d.values as Uint8Array;
  const view = new DataView(v.buffer, v.byteOffset, v.byteLength);
  const buffers = d.variadicBuffers ?? [];
  for (let i = 0; i < d.length; i++) {
    if (!d.getValid(i)) continue;
    const len = view.getInt32(16 * i, true);
    if (len < 0) return `${where}'s value ${i} claims ${len} bytes`;
    if (len <= 12) continue;
    const b = view.getInt32(16 * i + 8, true),
      at = view.getInt32(16 * i + 12, true);
    if (b < 0 || b >= buffers.length) return `${where}'s value ${i} is in data buffer ${b}; it has ${buffers.length}`;
    if (at < 0 || at + len > buffers[b]!.length)
      return `${where}'s value ${i} runs from byte ${at} to ${at + len} of data buffer ${b}, which holds ${buffers[b]!.length}`;
  }
  return null;
}

/**
 * Why a chunk's buffers cannot hold the values its length claims, or null. apache-arrow trusts the lengths in a
 * file: a damaged one can claim billions of values over a few bytes (a dictionary of 2.8e9 strings with 3
 * offsets, found by scripts/fuzz.ts), and reading them would exhaust memory. Dictionaries and child arrays are
 * checked the same way.
 */
export function bufferProblem(d: A.Data, where: string, depth = 0, checked?: WeakSet<A.Data>): string | null {
  if (depth > 64) return `${where} nests more than 64 levels`;
  const n = d.offset + d.length;
  const claims = `${where} claims ${d.length} values`;
  if (!Number.isSafeInteger(n) || d.offset < 0 || d.length < 0) return claims;
  if (d.nullCount > 0 && d.nullBitmap && d.nullBitmap.length * 8 < n)
    return `${claims} but its validity bitmap covers ${d.nullBitmap.length * 8}`;
  // offsets and fixed-width values start at the chunk (a slice slices them); boolean bits start at bit `offset`
  // an empty chunk may have no offsets at all (the format allows it; apache-arrow reads a file with no batches so)
  if (A.DataType.isUnion(d.type)) {
    const p = unionProblem(d as A.Data<A.Union>, where, claims);
    if (p) return p;
  } else if (d.valueOffsets && (d.length > 0 || d.valueOffsets.length > 0)) {
    const o = d.valueOffsets as ArrayLike<number | bigint>;
    if (o.length < d.length + 1) return `${claims} but holds offsets for ${Math.max(0, o.length - 1)}`;
    // offsets must not decrease, and must stay within what they index: the bytes of a string or binary column
    // (a slice keeps them whole), the child values of a list or map
    const child = d.children?.[0];
    const limit = child ? child.length : d.values ? d.values.length : 0;
    if (o[0]! < 0 || o[d.length]! > limit)
      return `${where}'s offsets run from ${o[0]} to ${o[d.length]}, outside its ${limit} ${child ? 'child values' : 'bytes'}`;
    for (let i = 0; i < d.length; i++)
      if (o[i + 1]! < o[i]!) return `${where}'s offsets decrease at value ${i} (${o[i]} then ${o[i + 1]})`;
  } else if (d.values && !A.DataType.isNull(d.type)) {
    const bits = A.DataType.isBool(d.type);
    const held = bits ? d.values.length * 8 - d.offset : Math.floor(d.values.length / Math.max(1, d.stride));
    if (held < d.length) return `${claims} but its data holds ${Math.max(0, held)}`;
  }
  if (A.DataType.isUtf8View(d.type) || A.DataType.isBinaryView(d.type)) {
    const p = viewProblem(d, where);
    if (p) return p;
  }
  if (A.DataType.isDictionary(d.type)) {
    // a dictionary chunk found sound before (`checked`: batches of one file share their dictionary's chunks) is
    // not checked again
    for (const c of d.dictionary?.data ?? []) {
      if (checked?.has(c)) continue;
      const p = bufferProblem(c, `${where}'s dictionary`, depth + 1, checked);
      if (p) return p;
      checked?.add(c);
    }
    // every index of a valid value names an entry of the dictionary (a null's slot may hold anything); a chunk
    // with no dictionary (apache-arrow makes an empty one so) may hold only nulls
    const idx = d.values as ArrayLike<number | bigint>,
      size = d.dictionary ? d.dictionary.length : 0;
    for (let i = 0; i < d.length; i++)
      if ((idx[i]! < 0 || idx[i]! >= size) && d.getValid(i))
        return `${where} holds dictionary index ${idx[i]} at value ${i}; its dictionary has ${size} entries`;
  }
  for (const c of d.children ?? []) {
    const p = bufferProblem(c, `${where}'s child`, depth + 1, checked);
    if (p) return p;
  }
  return null;
}

/** The first bufferProblem of a table's columns, or null. */
function tableBufferProblem(t: A.Table, names: readonly string[] = t.schema.fields.map((f) => f.name)): string | null {
  for (const name of names)
    for (const d of t.getChild(name)?.data ?? []) {
      const p = bufferProblem(d, `column ${JSON.stringify(name)}`);
      if (p) return p;
    }
  return null;
}

// apache-arrow's Data convention, which every reader here follows: a slice of a table slices the value and offset
// buffers (value i of a chunk is values[i]) but keeps `offset` for the bits, so validity bits and boolean values
// are at bit `offset + i`.

/** Marks rows whose validity bit is clear with `fill` (only bytes that have a clear bit are looked at). */
function fillNulls(out: Float32Array, d: A.Data, pos: number, fill: number): void {
  const bm = d.nullBitmap;
  if (!bm || d.nullCount === 0) return;
  for (let i = 0; i < d.length;) {
    const bit = d.offset + i;
    if ((bit & 7) === 0 && i + 8 <= d.length && bm[bit >> 3] === 0xff) {
      i += 8;
      continue;
    }
    if (((bm[bit >> 3]! >> (bit & 7)) & 1) === 0) out[pos + i] = fill;
    i++;
  }
}

/** 64-bit integers of a chunk into `out` (float32 or int32), checking the int32 range when `out` is int32. */
function copyInt64(out: Float32Array | Int32Array, d: A.Data, pos: number, name: string): void {
  const v = d.values as BigInt64Array | BigUint64Array;
  const words = new Int32Array(v.buffer, v.byteOffset, d.length * 2);
  const unsigned = v instanceof BigUint64Array;
  for (let i = 0; i < d.length; i++) {
    const lo = words[2 * i]!,
      hi = words[2 * i + 1]!;
    if (out instanceof Int32Array) {
      if (!(hi === lo >> 31 && !(unsigned && hi !== 0)))
        throw new ValidationError(`column '${name}' row ${pos + i}: ${v[i]} does not fit in int32`);
      out[pos + i] = lo;
    } else out[pos + i] = (unsigned ? hi >>> 0 : hi) * 4294967296 + (lo >>> 0);
  }
}

/**
 * One column's values as a contiguous typed array: a zero-copy view when the column is one chunk of float32,
 * int32 or 8-bit integers without nulls; otherwise each chunk's value buffer is copied with TypedArray.set
 * (converted natively, no per-value JavaScript), and nulls become NaN (the column then is float32).
 */
function numericColumn(
  v: A.Vector,
  name: string,
): { data: Float32Array | Int32Array | Int8Array | Uint8Array; dtype: 'float32' | 'int32' | 'int8' | 'uint8' } {
  const t = v.type;
  const single = v.data.length === 1 && v.nullCount === 0;
  const isFloat = A.DataType.isFloat(t);
  if (!isFloat && !A.DataType.isInt(t))
    throw new ValidationError(`column '${name}' has Arrow type ${String(t)}, which has no tensor form`);
  if (single) {
    const d = v.data[0]!;
    if (isFloat && t.precision === A.Precision.SINGLE)
      return { data: (d.values as Float32Array).subarray(0, d.length), dtype: 'float32' };
    if (!isFloat && t.bitWidth === 32 && t.isSigned)
      return { data: (d.values as Int32Array).subarray(0, d.length), dtype: 'int32' };
    if (!isFloat && t.bitWidth === 8) {
      const vals = d.values as Int8Array | Uint8Array;
      return { data: vals.subarray(0, d.length), dtype: t.isSigned ? 'int8' : 'uint8' };
    }
  }
  const asFloat = isFloat || v.nullCount > 0;
  const out = asFloat ? new Float32Array(v.length) : new Int32Array(v.length);
  let pos = 0;
  for (const d of v.data) {
    if (!isFloat && t.bitWidth === 64) copyInt64(out, d, pos, name);
    else if (isFloat && t.precision === A.Precision.HALF) {
      for (let i = 0; i < d.length; i++) out[pos + i] = Number(A.util.uint16ToFloat64(d.values[i]));
    } else {
      const src = (d.values as Float64Array | Float32Array | Int32Array | Uint32Array).subarray(0, d.length);
      if (out instanceof Int32Array && src instanceof Uint32Array)
        for (let i = 0; i < src.length; i++)
          if (src[i]! > 2147483647)
            throw new ValidationError(`column '${name}' row ${pos + i}: ${src[i]} does not fit in int32`);
      out.set(src, pos);
    }
    if (out instanceof Float32Array) fillNulls(out, d, pos, NaN);
    pos += d.length;
  }
  return { data: out, dtype: asFloat ? 'float32' : 'int32' };
}

/**
 * Codes and vocabulary of a string or dictionary column (null -> -1). A dictionary chunk maps its own codes
 * through a table built from its dictionary, so only the (few) dictionary strings are looked at, not every row.
 */
function categoricalCodes(v: A.Vector): { codes: Int32Array; words: string[] } {
  const codes = new Int32Array(v.length);
  const words: string[] = [];
  const index = new Map<string, number>();
  const codeOf = (s: string): number => {
    let c = index.get(s);
    if (c === undefined) {
      c = words.length;
      index.set(s, c);
      words.push(s);
    }
    return c;
  };
  let pos = 0;
  for (const d of v.data) {
    const dict = d.dictionary;
    if (dict) {
      const remap = new Int32Array(dict.length);
      for (let j = 0; j < dict.length; j++) remap[j] = dict.isValid(j) ? codeOf(String(dict.get(j))) : -1;
      const raw = d.values as Int32Array | Int8Array | Int16Array | Uint8Array | Uint16Array | Uint32Array;
      for (let i = 0; i < d.length; i++) codes[pos + i] = remap[raw[i]!] ?? -1;
      const bm = d.nullBitmap;
      if (bm && d.nullCount > 0)
        for (let i = 0; i < d.length; i++) {
          const bit = d.offset + i;
          if (((bm[bit >> 3]! >> (bit & 7)) & 1) === 0) codes[pos + i] = -1;
        }
    } else {
      const chunk = A.makeVector(d);
      for (let i = 0; i < d.length; i++) codes[pos + i] = chunk.isValid(i) ? codeOf(String(chunk.get(i))) : -1;
    }
    pos += d.length;
  }
  return { codes, words };
}

/**
 * Arrow table -> tensors (and vocabularies). Float columns -> float32 (nulls -> NaN), integer columns -> int32 /
 * int8 / uint8 (float32 with NaN if they have nulls), booleans -> bool, dictionary and string columns -> int32
 * codes (null -> -1) with their vocabulary.
 */
export function fromArrowWithVocab(
  table: A.Table,
  opts: { columns?: readonly string[]; backend?: BackendName } = {},
): ArrowTensors {
  checkOptions(opts, 'fromArrowWithVocab', ['columns', 'backend']);
  const t = assertTableArg(table);
  const bad = columnNameProblem(t.schema.fields);
  if (bad) throw new ValidationError(`fromArrow: ${bad}`);
  const names = opts.columns ?? t.schema.fields.map((f) => f.name);
  const broken = tableBufferProblem(
    t,
    names.filter((n) => t.getChild(n)),
  );
  if (broken) throw new ValidationError(`fromArrow: ${broken}`);
  const tensors = nameRecord<Tensor>(),
    vocab = nameRecord<string[]>();
  try {
    for (const name of names) {
      const v = t.getChild(name);
      if (!v)
        throw new ValidationError(
          `the table has no column '${name}'; it has ${t.schema.fields.map((f) => f.name).join(', ')}`,
        );
      const type = v.type;
      if (A.DataType.isDictionary(type) || A.DataType.isUtf8(type) || A.DataType.isLargeUtf8(type)) {
        const { codes, words } = categoricalCodes(v);
        tensors[name] = tensor(codes, [v.length], { dtype: 'int32', backend: opts.backend });
        vocab[name] = words;
      } else if (A.DataType.isBool(type)) {
        const out = new Uint8Array(v.length);
        for (let i = 0; i < v.length; i++) {
          if (!v.isValid(i))
            throw new ValidationError(`boolean column '${name}' has a null at row ${i}; impute it first`);
          out[i] = v.get(i) ? 1 : 0;
        }
        tensors[name] = tensor(out, [v.length], { dtype: 'bool', backend: opts.backend });
      } else {
        const { data, dtype } = numericColumn(v, name);
        tensors[name] = tensor(data, [v.length], { dtype, backend: opts.backend });
      }
    }
  } catch (e) {
    for (const x of Object.values(tensors)) x.dispose();
    throw e;
  }
  return { tensors, vocab };
}

/**
 * Arrow table -> tensors by column name (see fromArrowWithVocab for the vocabularies of categorical columns).
 * @example kn.data.fromArrow(kn.data.toArrow({ a: kn.tensor([1, 2]) })).a.toList() // [1, 2]
 */
export function fromArrow(
  table: A.Table,
  opts: { columns?: readonly string[]; backend?: BackendName } = {},
): Record<string, Tensor> {
  checkOptions(opts, 'fromArrow', ['columns', 'backend']);
  return fromArrowWithVocab(table, opts).tensors;
}

/**
 * Stacks numeric columns of a table into one float32 table tensor [rows, columns] (NaN for nulls).
 * @example kn.data.arrowToMatrix(kn.data.toArrow({ a: kn.tensor([1, 2]), b: kn.tensor([3, 4]) })).toList() // [[1, 3], [2, 4]]
 */
export function arrowToMatrix(
  table: A.Table,
  opts: { columns?: readonly string[]; backend?: BackendName } = {},
): Tensor {
  checkOptions(opts, 'arrowToMatrix', ['columns', 'backend']);
  const t = assertTableArg(table);
  const names = opts.columns ?? t.schema.fields.map((f) => f.name);
  const n = t.numRows,
    F = names.length;
  const out = new Float32Array(n * F);
  names.forEach((name, j) => {
    const v = t.getChild(name);
    if (!v) throw new ValidationError(`the table has no column '${name}'`);
    if (!A.DataType.isFloat(v.type) && !A.DataType.isInt(v.type))
      throw new ValidationError(`column '${name}' is ${String(v.type)}, not numeric`);
    for (let i = 0; i < n; i++) out[i * F + j] = v.isValid(i) ? Number(v.get(i)) : NaN;
  });
  return tensor(out, [n, F], { backend: opts.backend });
}

/**
 * Tensors -> Arrow table. 1-D tensors become columns; a 2-D [rows, F] tensor becomes F columns `name.0`...;
 * columns listed in `vocab` (int32 codes) become dictionary-encoded string columns.
 * @example kn.data.toArrow({ x: kn.tensor([1, 2, 3]) }).numRows // 3
 */
export function toArrow(
  map: Record<string, Tensor>,
  opts: { vocab?: Record<string, readonly string[]> } = {},
): A.Table {
  checkOptions(opts, 'toArrow', ['vocab']);
  if (map === null || typeof map !== 'object')
    throw new ArgumentError(`toArrow takes named tensors, got ${describe(map)}`);
  const cols = nameRecord<A.Vector>();
  let rows = -1;
  const add = (name: string, v: A.Vector): void => {
    if (rows >= 0 && v.length !== rows)
      throw new ShapeError(`column '${name}' has ${v.length} rows, others have ${rows}`);
    rows = v.length;
    cols[name] = v;
  };
  const vec = (t: Tensor, name: string, data: ArrayLike<number>): A.Vector => {
    const words = own(opts.vocab, name);
    if (words) {
      const strs = Array.from(data, (c, i) => {
        if (c === -1) return null;
        if (!Number.isInteger(c) || c < 0 || c >= words.length)
          throw new ValidationError(`column '${name}' row ${i}: code ${c} is not in its vocabulary of ${words.length}`);
        return words[c]!;
      });
      return A.vectorFromArray(strs, new A.Dictionary(new A.Utf8(), new A.Int32()));
    }
    if (t.dtype === 'bool')
      return A.vectorFromArray(
        Array.from(data, (b) => b !== 0),
        new A.Bool(),
      );
    return A.makeVector(data as Float32Array | Int32Array | Int8Array | Uint8Array);
  };
  for (const [name, t] of Object.entries(map)) {
    if (!isTensor(t)) throw new ArgumentError(`toArrow entry '${name}' is not a Tensor: ${describe(t)}`);
    const host = t.toArray();
    if (t.ndim === 1) add(name, vec(t, name, host));
    else if (t.ndim === 2) {
      const [n, F] = t.shape as [number, number];
      for (let j = 0; j < F; j++) {
        const col =
          host.constructor === Float32Array
            ? new Float32Array(n)
            : host.constructor === Int32Array
              ? new Int32Array(n)
              : new Uint8Array(n);
        for (let i = 0; i < n; i++) col[i] = host[i * F + j]!;
        add(`${name}.${j}`, vec(t, `${name}.${j}`, col));
      }
    } else throw new ShapeError(`toArrow takes 1-D or 2-D tensors; '${name}' is ${shapeStr(t.shape)}`);
  }
  return new A.Table(cols);
}

/** Reads an Arrow IPC file (file or stream format). */
export function readArrow(path: string): A.Table {
  const probed = probeArrow(readFileForSync(path, 'readArrow'));
  if ('problem' in probed) throw new FormatError(`${path} is not a readable Arrow IPC file: ${probed.problem}`);
  let t: A.Table;
  try {
    t = A.tableFromIPC(probed.bytes);
  } catch (e) {
    throw new FormatError(`${path} is not a readable Arrow IPC file: ${(e as Error).message}`);
  }
  // the probe ran bufferProblem on these bytes; apache-arrow reads them the same way here
  const bad = columnNameProblem(t.schema.fields);
  if (bad) throw new FormatError(`${path}: ${bad}`);
  return narrowTable(t);
}

// apache-arrow's reader loops forever on some malformed files (found by scripts/fuzz.ts: a flipped byte in
// the schema flatbuffer). A file from outside is therefore parsed once in a worker thread with a deadline
// first; the caller waits synchronously (Atomics.wait) and the worker is terminated if it runs out of time.
// The bytes move to the worker and back (transferred, not copied; the reply comes through a port the caller
// reads synchronously). The worker checks the table with TABLE_CHECK_JS before the bytes come back.
export const ARROW_PATH = createRequire(import.meta.url).resolve('apache-arrow');
/**
 * Script text for a worker that reads Arrow data from outside (the probe here, ArrowSource's reader thread):
 * `tableProblem(A, t)` says why a table's buffers cannot hold what they claim (bufferProblem, unionProblem and
 * viewProblem, their source, so there is one definition), or else decodes once every column bufferProblem does not
 * cover whole (so a length or offset that points outside the file throws there, not later; a dictionary column's
 * dictionaries, each once) and returns null.
 * Strings, binaries, their views and dictionaries of them bufferProblem does cover (offsets in order and in range,
 * views inside their data buffers, indices in range): those are not decoded value by value. A worker that exhausts
 * V8's heap takes the whole process with it, resource limits or not, so the lengths are checked before anything is
 * decoded.
 */
export const TABLE_CHECK_JS = `
${unionProblem.toString()}
${viewProblem.toString()}
${bufferProblem.toString()}
// the dictionary chunks this thread found sound (apache-arrow data is never changed in place)
const checkedDictionaries = new WeakSet();
// and the dictionaries (vectors) it decoded whole
const decodedDictionaries = new WeakSet();
function tableProblem(A, t) {
  const covered = (type) =>
    A.DataType.isUtf8(type) || A.DataType.isLargeUtf8(type) || A.DataType.isBinary(type) || A.DataType.isLargeBinary(type) ||
    A.DataType.isUtf8View(type) || A.DataType.isBinaryView(type) ||
    (A.DataType.isDictionary(type) && covered(type.dictionary));
  for (const f of t.schema.fields)
    for (const d of t.getChild(f.name).data) {
      const p = bufferProblem(d, 'column ' + JSON.stringify(f.name), 0, checkedDictionaries);
      if (p) return p;
    }
  for (const f of t.schema.fields) {
    if (covered(f.type)) continue;
    if (!A.DataType.isDictionary(f.type)) {
      t.getChild(f.name).toArray();
      continue;
    }
    // a dictionary column's indices are in range (bufferProblem), so decoding its dictionaries covers it, each
    // once: not value by value through its indices (64-bit ones make apache-arrow throw on a boolean dictionary)
    for (const d of t.getChild(f.name).data)
      if (d.dictionary && !decodedDictionaries.has(d.dictionary)) {
        d.dictionary.toArray();
        decodedDictionaries.add(d.dictionary);
      }
  }
  return null;
}
`;
const PARSE_PROBE = `
const { parentPort, workerData } = require('node:worker_threads');
const A = require(workerData.arrow);
const back = workerData.port;
${TABLE_CHECK_JS}
parentPort.on('message', ({ bytes, sab }) => {
  const state = new Int32Array(sab, 0, 2);
  const text = new Uint8Array(sab, 8);
  let msg = '';
  try {
    const p = tableProblem(A, A.tableFromIPC(bytes));
    if (p) throw new Error(p);
  } catch (e) {
    msg = String((e && e.message) || e) || 'unreadable';
  }
  if (!msg) back.postMessage(bytes, [bytes.buffer]);
  const enc = new TextEncoder().encode(msg).subarray(0, text.length);
  text.set(enc);
  state[1] = enc.length;
  Atomics.store(state, 0, msg ? 2 : 1);
  Atomics.notify(state, 0);
});
`;
/** The probe worker and the port its checked bytes come back on (started on first use, replaced after a timeout). */
let probe: { worker: Worker; port: MessagePort } | null = null;

/**
 * The bytes back when apache-arrow parses them in time and their buffers hold what they claim, else why not (its
 * error, a bufferProblem, or the deadline it ran past). `bytes` is moved to the worker: use the ones returned.
 */
function probeArrow(bytes: Uint8Array): { bytes: Uint8Array } | { problem: string } {
  const sab = new SharedArrayBuffer(8 + 4096);
  const state = new Int32Array(sab, 0, 2);
  const base = Number(process.env.KILN_ARROW_PARSE_TIMEOUT_MS ?? 10_000);
  const deadlineMs = base + bytes.byteLength / 1e5; // plus 10 ms per MB
  if (!probe) {
    const { port1, port2 } = new MessageChannel();
    const worker = new Worker(PARSE_PROBE, {
      eval: true,
      workerData: { arrow: ARROW_PATH, port: port2 },
      transferList: [port2],
      execArgv: [],
    });
    worker.unref();
    probe = { worker, port: port1 };
  }
  // a small file's Buffer is a view of Node's shared pool, which must not move: those bytes go as a copy
  const own = transferable(bytes);
  probe.worker.postMessage({ bytes: own, sab }, [own.buffer as ArrayBuffer]);
  if (Atomics.wait(state, 0, 0, deadlineMs + 2000) === 'timed-out' && Atomics.load(state, 0) === 0) {
    void probe.worker.terminate();
    probe.port.close();
    probe = null;
    return { problem: `the Arrow reader did not finish within ${(deadlineMs / 1000).toFixed(1)} s (a malformed file)` };
  }
  if (Atomics.load(state, 0) !== 1)
    return { problem: new TextDecoder().decode(new Uint8Array(sab, 8, Atomics.load(state, 1))) };
  const reply = receiveMessageOnPort(probe.port);
  if (!reply) return { problem: 'the Arrow reader thread did not hand the file back' };
  return { bytes: reply.message as Uint8Array };
}

/** Why a table's column names cannot key a record of columns (a duplicate, or a name UTF-8 cannot store). */
export function columnNameProblem(fields: readonly { name: string }[]): string | null {
  const seen = new Set<string>();
  for (const f of fields) {
    if (seen.has(f.name)) return `column name ${JSON.stringify(f.name)} appears twice`;
    seen.add(f.name);
    const why = unrepresentable(f.name);
    if (why) return `column name ${JSON.stringify(f.name)} cannot be kept: ${why}`;
  }
  return null;
}

/**
 * The two layouts of Arrow IPC: the file format (a footer indexes the record batches: .arrow, .feather, .ipc) and
 * the stream format (messages one after another, what a pipe or socket carries and what pyarrow's
 * `ipc.new_stream` writes: .arrows).
 */
export type ArrowFormat = 'file' | 'stream';

/** The checked `format` option; by default the stream format for a .arrows path, else the file format. */
function arrowFormat(path: string, format: unknown, who: string): ArrowFormat {
  if (format === undefined) return isArrowStreamPath(path) ? 'stream' : 'file';
  if (format !== 'file' && format !== 'stream')
    throw new ArgumentError(`${who}: format must be 'file' or 'stream', got ${describe(format)}`);
  return format;
}

/** The checked `maxBatchRows` option: a positive integer, or undefined (batches as they are). */
function maxBatchRowsOf(max: unknown, who: string): number | undefined {
  if (max === undefined) return undefined;
  if (!(typeof max === 'number' && Number.isSafeInteger(max) && max >= 1))
    throw new ArgumentError(`${who}: maxBatchRows must be a positive integer, got ${describe(max)}`);
  return max;
}

/**
 * `b` as record batches of at most `max` rows, in order (slices of it, no copy); `b` itself when it is no longer
 * (an empty batch stays one empty batch).
 */
function splitBatch(b: A.RecordBatch, max: number | undefined): A.RecordBatch[] {
  if (max === undefined || b.numRows <= max) return [b];
  const out: A.RecordBatch[] = [];
  for (let at = 0; at < b.numRows; at += max) out.push(b.slice(at, Math.min(at + max, b.numRows)));
  return out;
}

/** Options of writeArrowStream. */
export interface WriteArrowStreamOptions {
  /** the IPC layout; by default 'stream' for a path ending in .arrows, else 'file' */
  format?: ArrowFormat;
  /**
   * at most this many rows in a record batch: a longer batch is written as several (a StreamingDataset reads an
   * Arrow file a record batch at a time, so this sets its unit); by default each batch as it comes
   */
  maxBatchRows?: number;
}

/** Options of writeArrow. */
export interface WriteArrowOptions extends WriteArrowStreamOptions {
  /** for tensors: each int32 column's strings (the column is written as a dictionary column) */
  vocab?: Record<string, readonly string[]>;
}

/**
 * Writes a table (or named tensors) as an Arrow IPC file, atomically: the file format, or the stream format with
 * `format: 'stream'` (the default for a .arrows path). `maxBatchRows` splits longer record batches.
 * @example kn.data.writeArrow('.kiln-tmp-w.arrows', { x: kn.arange(0, 3) }); [(await kn.data.arrowFileInfo('.kiln-tmp-w.arrows')).format, [...kn.data.readArrow('.kiln-tmp-w.arrows').getChild('x')]] // ['stream', [0, 1, 2]]
 */
export function writeArrow(path: string, table: A.Table | Record<string, Tensor>, opts: WriteArrowOptions = {}): void {
  checkOptions(opts, 'writeArrow', ['vocab', 'format', 'maxBatchRows']);
  checkFilePath(path, 'writeArrow');
  const format = arrowFormat(path, opts.format, 'writeArrow');
  const max = maxBatchRowsOf(opts.maxBatchRows, 'writeArrow');
  const whole =
    table instanceof A.Table
      ? oneDictionaryPerColumn(ownTable(table, 'writeArrow'))
      : toArrow(table, opts.vocab ? { vocab: opts.vocab } : {});
  const t =
    max === undefined
      ? whole
      : new A.Table(
          whole.schema,
          whole.batches.flatMap((b) => splitBatch(b, max)),
        );
  let bytes: Uint8Array;
  try {
    bytes = A.tableToIPC(t, format);
  } catch (e) {
    // what oneDictionaryPerColumn does not reach (a dictionary inside a list or struct replaced between batches)
    throw new ValidationError(
      `writeArrow: the table cannot be written as an Arrow IPC ${format}: ${(e as Error).message}`,
    );
  }
  writeFileAtomicSync(path, [bytes]);
}

/** The index type that holds `n` dictionary entries: `type`'s own when it does (and is 32 bits or less), else Int32. */
function indexTypeFor(type: A.Int, n: number): A.Dictionary['indices'] {
  if (type.bitWidth > 32) return new A.Int32();
  const max = type.bitWidth === 32 ? Infinity : 2 ** (type.bitWidth - (type.isSigned ? 1 : 0)) - 1;
  return n - 1 <= max ? (type as A.Dictionary['indices']) : new A.Int32();
}

/**
 * `t` with each dictionary column's record batches sharing one dictionary. The IPC file format cannot replace a
 * dictionary between batches (apache-arrow throws), yet batches read one by one (ParquetSource row groups, a
 * stream's batches) each bring their own: such a column gets the union of its dictionaries (equal values once,
 * in order of first appearance) and its indices are remapped to it, widened to Int32 when the union needs it
 * (64-bit indices become Int32 too).
 */
export function oneDictionaryPerColumn(t: A.Table): A.Table {
  const fields = t.schema.fields;
  const merge = fields.map((f, i) => {
    if (!A.DataType.isDictionary(f.type)) return false;
    const chunks = t.getChildAt(i)!.data;
    const first = chunks[0]?.dictionary?.data[0];
    return chunks.some((d) => d.dictionary?.data[0] !== first);
  });
  if (!merge.includes(true)) return t;
  const columns = new Map<number, A.Data[]>();
  const newFields = fields.map((f, i) => {
    if (!merge[i]) return f;
    const type = f.type as A.Dictionary;
    const chunks = t.getChildAt(i)!.data as A.Data<A.Dictionary>[];
    // the union of the chunks' dictionaries, and where each chunk's entries went in it
    const union = new DictionaryUnion();
    const maps = chunks.map((d) => (d.dictionary ? union.add(d.dictionary) : new Int32Array(0)));
    const values = union.values;
    const indices = indexTypeFor(type.indices, values.length);
    const newType = new A.Dictionary(type.dictionary, indices, type.id, type.isOrdered);
    const dictionary = A.vectorFromArray(values, type.dictionary);
    columns.set(
      i,
      chunks.map((d, c) => remapped(d, (j) => maps[c]![j]!, newType, dictionary)),
    );
    return new A.Field(f.name, newType, f.nullable, f.metadata);
  });
  return withChildren(t, new A.Schema(newFields, t.schema.metadata), (c, i, k) => columns.get(i)?.[k] ?? c);
}

/**
 * `t`'s record batches rebuilt under `schema` (as many columns), each batch's column `i` replaced by what
 * `child(column, i, batch)` gives.
 */
function withChildren(t: A.Table, schema: A.Schema, child: (c: A.Data, i: number, batch: number) => A.Data): A.Table {
  const type = new A.Struct(schema.fields);
  return new A.Table(
    schema,
    t.batches.map((b, k) => {
      const children = b.data.children.map((c, i) => child(c, i, k));
      return new A.RecordBatch(schema, A.makeData({ type, length: b.numRows, nullCount: 0, children }));
    }),
  );
}

/** A dictionary chunk `d` with its indices mapped through `m` (old index -> new) onto `dictionary`, of `type`. */
function remapped(
  d: A.Data<A.Dictionary>,
  m: (old: number) => number,
  type: A.Dictionary,
  dictionary: A.Vector,
): A.Data<A.Dictionary> {
  // a slice's values start at its first row; its offset counts only into the validity bitmap. Old indices may be
  // 64-bit (bigints); new ones are as wide as `type` says
  const old = d.values as ArrayLike<number | bigint>;
  const out = new type.indices.ArrayType(d.length) as unknown as { [k: number]: number };
  for (let r = 0; r < d.length; r++) if (d.getValid(r)) out[r] = m(Number(old[r]));
  return A.makeData({
    type,
    offset: d.offset,
    length: d.length,
    nullCount: d.nullCount,
    nullBitmap: d.nullBitmap,
    data: out as unknown as A.Dictionary['TArray'],
    dictionary,
  });
}

/**
 * Entries `at` (ascending) of a string or binary dictionary with no null entries, their bytes copied into one
 * chunk (no decoding to strings and back); null for any other dictionary.
 */
function bytesTaken(dict: A.Vector, at: readonly number[]): A.Vector | null {
  const type = dict.type as A.DataType;
  if (!(A.DataType.isUtf8(type) || A.DataType.isBinary(type)) || dict.data.some((c) => c.nullCount > 0)) return null;
  const offsets = new Int32Array(at.length + 1);
  const where: [Uint8Array, number, number][] = [];
  let c = 0,
    base = 0,
    bytes = 0;
  for (let i = 0; i < at.length; i++) {
    // the chunk holding entry at[i] (entries ascend, so the chunks are walked once)
    while (at[i]! >= base + dict.data[c]!.length) base += dict.data[c++]!.length;
    const chunk = dict.data[c]!;
    const o = chunk.valueOffsets as Int32Array;
    const r = at[i]! - base;
    where.push([chunk.values as Uint8Array, o[r]!, o[r + 1]!]);
    bytes += o[r + 1]! - o[r]!;
    offsets[i + 1] = bytes;
  }
  const data = new Uint8Array(bytes);
  where.forEach(([v, from, to], i) => data.set(v.subarray(from, to), offsets[i]!));
  return A.makeVector(
    A.makeData({ type: type as A.Utf8, length: at.length, nullCount: 0, valueOffsets: offsets, data }),
  );
}

/** Entries `at` (ascending) of `dict` as one chunk: bytes copied where bytesTaken can, else value by value. */
function taken(dict: A.Vector, at: readonly number[], type: A.Dictionary): A.Vector {
  return (
    bytesTaken(dict, at) ??
    A.vectorFromArray(
      at.map((j) => dict.get(j)),
      type.dictionary,
    )
  );
}

/**
 * A dictionary chunk whose dictionary holds only the entries its valid values use, in the dictionary's order (so
 * an ordered dictionary stays ordered), or `d` itself when its dictionary is one chunk no longer than it. Its
 * indices must be in range (bufferProblem). A record batch read from a file otherwise carries the file's whole
 * dictionary, and with delta dictionaries that is every batch's values, in as many chunks, on every batch.
 * 64-bit indices come back as Int32 (narrowIndices).
 */
export function compactDictionary(d: A.Data<A.Dictionary>): A.Data<A.Dictionary> {
  const dict = d.dictionary;
  const type = narrowIndices(d.type);
  if (!dict || (dict.data.length === 1 && dict.length <= d.length))
    return type === d.type ? d : remapped(d, (j) => j, type, dict ?? A.vectorFromArray([], type.dictionary));
  const idx = d.values as ArrayLike<number | bigint>;
  if (dict.length > 4 * d.length) {
    // a dictionary much larger than the chunk (a high-cardinality column, or one grown by deltas): the work is the
    // chunk's size, not the dictionary's (its indices sorted, each distinct one looked up once)
    const used = new Float64Array(d.length);
    let k = 0;
    for (let r = 0; r < d.length; r++) if (d.getValid(r)) used[k++] = Number(idx[r]);
    const sorted = used.subarray(0, k).sort();
    const at = new Map<number, number>();
    const distinct: number[] = [];
    for (let i = 0; i < k; i++)
      if (i === 0 || sorted[i] !== sorted[i - 1]) {
        at.set(sorted[i]!, distinct.length);
        distinct.push(sorted[i]!);
      }
    return remapped(d, (j) => at.get(j)!, type, taken(dict, distinct, type));
  }
  const map = new Int32Array(dict.length).fill(-1);
  for (let r = 0; r < d.length; r++) if (d.getValid(r)) map[Number(idx[r])] = 0;
  const distinct: number[] = [];
  for (let j = 0; j < map.length; j++)
    if (map[j] === 0) {
      map[j] = distinct.length;
      distinct.push(j);
    }
  return remapped(d, (j) => map[j]!, type, taken(dict, distinct, type));
}

/**
 * A dictionary type with Int32 indices in place of 64-bit ones, or `type` itself. apache-arrow cannot look a value
 * up through 64-bit indices (iterating such a column throws a TypeError), and a dictionary of 2^31 entries or more
 * cannot be held anyway, so the readers narrow them.
 */
export function narrowIndices(type: A.Dictionary): A.Dictionary {
  return (type.indices.bitWidth as number) === 64 ? withInt32Indices(type) : type;
}

/**
 * `type` with every dictionary's 64-bit indices narrowed to Int32 (narrowIndices), at any depth (a dictionary
 * inside a struct, a list, a map, a union or another dictionary's values), or `type` itself when it has none.
 */
export function narrowType(type: A.DataType): A.DataType {
  if (A.DataType.isDictionary(type)) {
    const values = narrowType(type.dictionary);
    const t = narrowIndices(type);
    return values === type.dictionary ? t : new A.Dictionary(values, t.indices, type.id, type.isOrdered);
  }
  const fields = narrowFields((type.children ?? []) as A.Field[]);
  if (!fields) return type;
  if (A.DataType.isStruct(type)) return new A.Struct(fields);
  if (A.DataType.isList(type)) return new A.List(fields[0]!);
  if (A.DataType.isLargeList(type)) return new A.LargeList(fields[0]!);
  if (A.DataType.isFixedSizeList(type)) return new A.FixedSizeList(type.listSize, fields[0]!);
  if (A.DataType.isMap(type)) return new A.Map_(fields[0] as A.Field<A.Struct>, type.keysSorted);
  if (A.DataType.isUnion(type)) return new A.Union(type.mode, type.typeIds, fields);
  return type;
}

/** `fields` with their types narrowed (narrowType), a field cloned only where its type changed; null if none did. */
function narrowFields(fields: readonly A.Field[]): A.Field[] | null {
  const out = fields.map((f) => {
    const n = narrowType(f.type);
    return n === f.type ? f : f.clone({ type: n });
  });
  return out.some((f, i) => f !== fields[i]) ? out : null;
}

/** A chunk `d` as `type` (narrowType of its own): the same buffers, 64-bit dictionary indices copied to Int32. */
function narrowData(d: A.Data, type: A.DataType): A.Data {
  if (type === d.type) return d;
  if (A.DataType.isDictionary(type)) {
    const from = d.dictionary;
    const dictionary = !from
      ? A.vectorFromArray([], type.dictionary)
      : type.dictionary === (d.type as A.Dictionary).dictionary
        ? from
        : new A.Vector(from.data.map((c) => narrowData(c, type.dictionary)));
    return remapped(d as A.Data<A.Dictionary>, (j) => j, type, dictionary);
  }
  const kids = (type.children ?? []) as A.Field[];
  return d.clone(
    type,
    d.offset,
    d.length,
    d.nullCount,
    undefined,
    d.children.map((c, i) => narrowData(c, kids[i]!.type)),
  );
}

/** `schema` with its columns' 64-bit dictionary indices, at any depth, narrowed to Int32 (narrowType). */
export function narrowSchema(schema: A.Schema): A.Schema {
  const fields = narrowFields(schema.fields);
  return fields ? new A.Schema(fields, schema.metadata) : schema;
}

/** `t` with its 64-bit dictionary indices, at any depth, narrowed to Int32 (the same dictionaries), or `t`. */
export function narrowTable(t: A.Table): A.Table {
  const schema = narrowSchema(t.schema);
  if (schema === t.schema) return t;
  return withChildren(t, schema, (c, i) => narrowData(c, schema.fields[i]!.type));
}

/**
 * `t` with every dictionary column's chunks compacted (compactDictionary); its other columns as they are. 64-bit
 * dictionary indices, at any depth, come back as Int32 (narrowType).
 */
export function compactDictionaries(t: A.Table): A.Table {
  const fields = t.schema.fields;
  if (!fields.some((f) => A.DataType.isDictionary(f.type))) return narrowTable(t);
  const schema = narrowSchema(t.schema);
  return withChildren(t, schema, (c, i) => {
    const was = fields[i]!.type,
      type = schema.fields[i]!.type;
    // a dictionary whose values hold dictionaries with 64-bit indices is narrowed, not compacted
    return A.DataType.isDictionary(was) && (type as A.Dictionary).dictionary === was.dictionary
      ? compactDictionary(c as A.Data<A.Dictionary>)
      : narrowData(c, type);
  });
}

/**
 * Script text of compactDictionaries and what it calls, for the reader threads (apache-arrow as `A` in scope).
 */
export const COMPACT_JS = `
${withChildren.toString()}
${remapped.toString()}
${withInt32Indices.toString()}
${bytesTaken.toString()}
${taken.toString()}
${narrowIndices.toString()}
${narrowType.toString()}
${narrowFields.toString()}
${narrowData.toString()}
${narrowSchema.toString()}
${narrowTable.toString()}
${compactDictionary.toString()}
${compactDictionaries.toString()}
`;

/** A schema as text, `name: type` by column, to compare the chunks of a stream and say how they differ. */
export function schemaText(schema: A.Schema): string {
  return schema.fields.map((f) => `${f.name}: ${String(f.type)}`).join(', ');
}

/** The union of dictionaries: equal values once, in order of first appearance. */
class DictionaryUnion {
  readonly values: unknown[] = [];
  private readonly at = new Map<unknown, number>();

  /** Where each entry of `dict` is in the union (old index -> new), its values not yet there added at the end. */
  add(dict: A.Vector): Int32Array {
    const map = new Int32Array(dict.length);
    for (let j = 0; j < map.length; j++) {
      const v = dict.get(j) as unknown;
      let k = this.at.get(v);
      if (k === undefined) {
        k = this.values.length;
        this.values.push(v);
        this.at.set(v, k);
      }
      map[j] = k;
    }
    return map;
  }
}

/** The dictionary type with Int32 indices, as writeArrowStream writes every dictionary column. */
function withInt32Indices(type: A.Dictionary): A.Dictionary {
  return new A.Dictionary(type.dictionary, new A.Int32(), type.id, type.isOrdered);
}

/**
 * One dictionary column of a file written a chunk at a time: the union of the dictionaries its chunks bring,
 * grown by appending, so that the IPC writer sends each new part as a delta dictionary batch (the file format
 * allows deltas, not replacements). Indices are Int32.
 */
class GrowingDictionary {
  readonly type: A.Dictionary;
  private readonly union = new DictionaryUnion();
  private dictionary: A.Vector | null = null;
  /** the last source dictionary seen, and where its entries went */
  private last: { from: A.Vector; map: Int32Array } | null = null;

  constructor(
    type: A.Dictionary,
    private readonly name: string,
  ) {
    this.type = withInt32Indices(type);
  }

  /** `d` on the union of the dictionaries seen so far (this one's new values added at its end). */
  add(d: A.Data<A.Dictionary>): A.Data<A.Dictionary> {
    const from = d.dictionary;
    if (!from) {
      // a chunk of no rows or only nulls (ownTable refused a value with no dictionary to name it): nothing to map
      this.dictionary ??= A.vectorFromArray([], this.type.dictionary);
      return remapped(d, () => 0, this.type, this.dictionary);
    }
    if (this.last?.from !== from) {
      const before = this.union.values.length;
      const map = this.union.add(from);
      const size = this.union.values.length;
      if (size > 2 ** 31 - 1)
        throw new ValidationError(
          `dictionary column '${this.name}' has ${size} distinct values; Int32 indices hold 2^31 - 1`,
        );
      if (size > before || this.dictionary === null) {
        const part = A.vectorFromArray(this.union.values.slice(before), this.type.dictionary);
        this.dictionary = this.dictionary === null ? part : this.dictionary.concat(part);
      }
      this.last = { from, map };
    }
    const map = this.last.map;
    return remapped(d, (j) => map[j]!, this.type, this.dictionary!);
  }
}

/**
 * Writes the tables an (async) iterable gives as one Arrow IPC file, atomically, each chunk's record batches as it
 * comes: memory holds a chunk, not the file. The file format, or the stream format with `format: 'stream'` (the
 * default for a .arrows path). A chunk's record batches are written as they are, or split into batches of at
 * most `maxBatchRows` rows. Every chunk must have the first one's columns and types, and every column is
 * written nullable. A dictionary column's chunks may each bring their own
 * dictionary (ParquetSource's row groups and ArrowSource's batches of different files do): the file holds their
 * union, sent as delta dictionary batches as new values come, with Int32 indices (so chunks whose indices differ
 * only in width are one column). Returns what was written.
 * @example const gen = function* () { for (let i = 0; i < 3; i++) yield kn.data.toArrow({ x: kn.full([2], i) }); }; await kn.data.writeArrowStream('.kiln-tmp-s.arrow', gen()); [...kn.data.readArrow('.kiln-tmp-s.arrow').getChild('x')] // [0, 0, 1, 1, 2, 2]
 * @example await kn.data.writeArrowStream('.kiln-tmp-mb.arrow', [kn.data.toArrow({ x: kn.arange(0, 10) })], { maxBatchRows: 4 }); (await kn.data.arrowFileInfo('.kiln-tmp-mb.arrow')).batches // [4, 4, 2]
 */
export async function writeArrowStream(
  path: string,
  tables: AsyncIterable<A.Table> | Iterable<A.Table>,
  opts: WriteArrowStreamOptions = {},
): Promise<{ bytes: number; rows: number; batches: number }> {
  checkOptions(opts, 'writeArrowStream', ['format', 'maxBatchRows']);
  checkFilePath(path, 'writeArrowStream');
  const format = arrowFormat(path, opts.format, 'writeArrowStream');
  const max = maxBatchRowsOf(opts.maxBatchRows, 'writeArrowStream');
  const source = tableStream(tables, 'writeArrowStream');
  // what apache-arrow's writer writes, collected as it writes it (it writes synchronously)
  class Collect extends A.AsyncByteQueue {
    parts: Uint8Array[] = [];
    override write(v: Parameters<A.AsyncByteQueue['write']>[0]): void {
      if (ArrayBuffer.isView(v)) this.parts.push(new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
      else throw new Error('the Arrow writer wrote something that is not bytes');
    }
    take(): Uint8Array {
      const joined = Buffer.concat(this.parts);
      this.parts = [];
      return joined;
    }
  }
  const sink = new Collect();
  const writer = format === 'file' ? new A.RecordBatchFileWriter() : new A.RecordBatchStreamWriter();
  let bytes = 0,
    rows = 0,
    batches = 0;
  const parts = async function* (): AsyncGenerator<Uint8Array> {
    let schema: A.Schema | null = null;
    let given = '';
    let dictionaries: (GrowingDictionary | null)[] = [];
    let chunk = 0;
    for await (const table of source) {
      // the columns as written: dictionary indices are Int32 whatever width a chunk brings
      const these = schemaText(
        new A.Schema(
          table.schema.fields.map((f) =>
            A.DataType.isDictionary(f.type) ? f.clone({ type: withInt32Indices(f.type) }) : f,
          ),
        ),
      );
      if (schema === null) {
        const bad = columnNameProblem(table.schema.fields);
        if (bad) throw new ValidationError(`writeArrowStream: ${bad}`);
        given = these;
        dictionaries = table.schema.fields.map((f) =>
          A.DataType.isDictionary(f.type) ? new GrowingDictionary(f.type, f.name) : null,
        );
        schema = new A.Schema(
          table.schema.fields.map((f, i) =>
            f.clone({ nullable: true, ...(dictionaries[i] ? { type: dictionaries[i].type } : {}) }),
          ),
          table.schema.metadata,
        );
        writer.reset(sink, schema);
      } else if (these !== given)
        throw new ValidationError(`writeArrowStream: chunk ${chunk} has columns ${these}; the first had ${given}`);
      const type = new A.Struct(schema.fields);
      try {
        for (const b of table.batches.flatMap((whole) => splitBatch(whole, max))) {
          const children = b.data.children.map(
            (d, i) => dictionaries[i]?.add(d as A.Data<A.Dictionary>) ?? (d as A.Data),
          );
          writer.write(new A.RecordBatch(schema, A.makeData({ type, length: b.numRows, nullCount: 0, children })));
          batches++;
        }
      } catch (e) {
        if (e instanceof ValidationError) throw new ValidationError(`writeArrowStream: chunk ${chunk}: ${e.message}`);
        // a dictionary inside a list or struct that changes between chunks: the file format cannot replace it
        throw new ValidationError(
          `writeArrowStream: chunk ${chunk} cannot be written as an Arrow IPC ${format}: ${messageOf(e)}`,
        );
      }
      rows += table.numRows;
      chunk++;
      const part = sink.take();
      bytes += part.byteLength;
      yield part;
    }
    if (schema === null)
      throw new ArgumentError('writeArrowStream: the iterable gave no tables (nothing to write, not even the columns)');
    writer.close();
    const tail = sink.take();
    bytes += tail.byteLength;
    yield tail;
  };
  await writeFileAtomic(path, parts());
  return { bytes, rows, batches };
}
