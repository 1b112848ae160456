// Lineage: a dataset's fingerprint (a SHA-256 over the bytes actually used, with its schema and row count), so a
// run and every model registered from it name the exact data that made them.
import { createHash } from 'node:crypto';
import { Table, type Vector } from 'apache-arrow';
import { Dataset } from '../data/loader.js';
import type { DatasetManifest } from '../data/manifest.js';
import { ArgumentError, describe } from '../errors.js';
import { isTensor, type Tensor } from '../tensor/tensor.js';

/** What identifies a dataset. */
export interface Fingerprint {
  /** SHA-256 (hex) over every column's name, type, shape and values, columns in name order (an Arrow column's
   * values as read: its chunking, slicing and the bytes under null slots do not count). */
  hash: string;
  rows: number;
  /** column -> type and shape (a tensor's dtype and per-row shape, an Arrow column's type) */
  schema: { name: string; type: string; shape: number[] }[];
}

/**
 * An Arrow column's values as a reader sees them, so equal data hashes equal whatever its chunking, slicing,
 * dictionary encoding or the bytes under its null slots: which rows are null, then the values (numbers as their
 * typed-array bytes with null slots zeroed, everything else row by row in a length-prefixed text form).
 */
function hashColumn(h: ReturnType<typeof createHash>, col: Vector): void {
  const n = col.length;
  let valid: Uint8Array | null = null;
  if (col.nullCount > 0) {
    valid = new Uint8Array(n);
    for (let i = 0; i < n; i++) valid[i] = col.isValid(i) ? 1 : 0;
    h.update(valid);
  }
  h.update('\u0001');
  const arr = col.toArray() as unknown;
  if (ArrayBuffer.isView(arr) && !(arr instanceof DataView) && (arr as unknown as ArrayLike<unknown>).length === n) {
    let view = arr as Uint8Array;
    if (valid) {
      view = view.slice(); // a copy with the null slots zeroed
      const width = view.BYTES_PER_ELEMENT;
      const bytes = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
      for (let i = 0; i < n; i++) if (!valid[i]) bytes.fill(0, i * width, (i + 1) * width);
    }
    h.update(new Uint8Array(view.buffer, view.byteOffset, view.byteLength));
  } else {
    let text = '';
    for (let i = 0; i < n; i++) {
      const v = valid && !valid[i] ? null : (col.get(i) as unknown);
      const s =
        v === null || v === undefined
          ? '_'
          : typeof v === 'string'
            ? `s${v}`
            : typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean'
              ? `${typeof v}${String(v)}`
              : v instanceof Date
                ? `d${v.getTime()}`
                : `j${JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? String(x) : x))}`;
      text += `${s.length}:${s}`;
      if (text.length > 1 << 16) {
        h.update(text);
        text = '';
      }
    }
    h.update(text);
  }
  h.update('\u0002');
}

function isManifest(d: unknown): d is DatasetManifest {
  const m = d as DatasetManifest;
  return (
    m !== null &&
    typeof m === 'object' &&
    !(m instanceof Dataset) &&
    typeof m.version === 'string' &&
    Array.isArray(m.files) &&
    Array.isArray(m.schema)
  );
}

function tensorBytes(t: Tensor): Uint8Array {
  const a = t.toArray() as unknown as ArrayBufferView;
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/**
 * The fingerprint of a Dataset, a Record of tensors (rows on the first dimension), an Arrow Table, or the manifest of
 * a dataset of files (kn.data.datasetManifest: its version is the hash): equal data gives an equal hash; one changed
 * value, row, column name or type changes it.
 * @example kn.track.fingerprint({ x: kn.tensor([[1, 2], [3, 4]]) }).rows // 2
 */
export function fingerprint(data: Dataset | Readonly<Record<string, Tensor>> | Table | DatasetManifest): Fingerprint {
  if (isManifest(data))
    return {
      hash: data.version,
      rows: data.rows,
      schema: data.schema.map((c) => ({ name: c.name, type: c.type, shape: [] })),
    };
  const h = createHash('sha256');
  const schema: Fingerprint['schema'] = [];
  let rows = 0;
  const field = (name: string, type: string, shape: number[]): void => {
    schema.push({ name, type, shape });
    h.update(`${name}\0${type}\0${shape.join(',')}\0`);
  };
  if (data instanceof Table) {
    rows = data.numRows;
    for (const f of [...data.schema.fields].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      field(f.name, String(f.type), []);
      hashColumn(h, data.getChild(f.name)!);
    }
    return { hash: h.digest('hex'), rows, schema };
  }
  const tensors = data instanceof Dataset ? data.tensors : data;
  if (tensors === null || typeof tensors !== 'object')
    throw new ArgumentError(
      `fingerprint takes a Dataset, a record of tensors or an Arrow Table, got ${describe(data)}`,
    );
  const names = Object.keys(tensors).sort();
  if (names.length === 0) throw new ArgumentError('fingerprint needs at least one column');
  for (const name of names) {
    const t = tensors[name];
    if (!isTensor(t)) throw new ArgumentError(`fingerprint: column ${JSON.stringify(name)} is not a Tensor`);
    const n = t.ndim ? t.shape[0]! : 1;
    if (name === names[0]) rows = n;
    else if (n !== rows)
      throw new ArgumentError(`fingerprint: column ${JSON.stringify(name)} has ${n} rows, not ${rows}`);
    field(name, t.dtype, [...t.shape.slice(1)]);
    h.update(tensorBytes(t));
  }
  return { hash: h.digest('hex'), rows, schema };
}
