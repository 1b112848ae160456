// Lineage: a dataset's fingerprint (a SHA-256 over the bytes actually used, with its schema and row count), so a
// run and every model registered from it name the exact data that made them.
import { createHash } from 'node:crypto';
import { Table } from 'apache-arrow';
import { Dataset } from '../data/loader.js';
import type { DatasetManifest } from '../data/manifest.js';
import { ArgumentError, describe } from '../errors.js';
import { isTensor, type Tensor } from '../tensor/tensor.js';

/** What identifies a dataset. */
export interface Fingerprint {
  /** SHA-256 (hex) over every column's name, type, shape and bytes, columns in name order. */
  hash: string;
  rows: number;
  /** column -> type and shape (a tensor's dtype and per-row shape, an Arrow column's type) */
  schema: { name: string; type: string; shape: number[] }[];
}

interface ArrowData {
  values?: ArrayBufferView;
  valueOffsets?: ArrayBufferView;
  nullBitmap?: ArrayBufferView;
  typeIds?: ArrayBufferView;
  children?: ArrowData[];
  dictionary?: { data: ArrowData[] };
}

/** An Arrow column chunk's buffers, its children's and its dictionary's (strings may be dictionary-encoded). */
function hashData(h: ReturnType<typeof createHash>, d: ArrowData): void {
  for (const buf of [d.values, d.valueOffsets, d.nullBitmap, d.typeIds])
    if (buf && buf.byteLength) h.update(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength));
  h.update('\u0001');
  for (const c of d.children ?? []) hashData(h, c);
  for (const c of d.dictionary?.data ?? []) hashData(h, c);
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
      const col = data.getChild(f.name)!;
      field(f.name, String(f.type), []);
      for (const chunk of col.data) hashData(h, chunk as unknown as ArrowData);
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
