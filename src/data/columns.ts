// A uniform view of the tabular inputs kn.data accepts: an Arrow table, a table tensor [rows, features], or
// named columns (tensors, numeric arrays or string arrays).
import * as A from 'apache-arrow';
import { ArgumentError, ShapeError, describe } from '../errors.js';
import { isTensor, type Tensor } from '../tensor/tensor.js';

/** What kn.data.validate and kn.data.driftReport accept. */
export type TableLike =
  A.Table | Tensor | Record<string, Tensor | ArrayLike<number> | readonly (string | number | boolean | null)[]>;

/** A column: values (null = missing) and the kind of data it holds. */
export interface Column {
  name: string;
  kind: 'float' | 'int' | 'bool' | 'string';
  values: ArrayLike<number | string | boolean | null>;
}

export function columnsOf(table: TableLike, what: string): Column[] {
  if (table instanceof A.Table) {
    return table.schema.fields.map((f) => {
      const v = table.getChild(f.name)!;
      const t = f.type;
      const kind: Column['kind'] = A.DataType.isFloat(t)
        ? 'float'
        : A.DataType.isInt(t)
          ? 'int'
          : A.DataType.isBool(t)
            ? 'bool'
            : 'string';
      const values = Array.from({ length: v.length }, (_, i) => {
        if (!v.isValid(i)) return null;
        const x = v.get(i);
        return kind === 'string' ? String(x) : kind === 'bool' ? Boolean(x) : Number(x);
      });
      return { name: f.name, kind, values };
    });
  }
  if (isTensor(table)) {
    if (table.ndim !== 2)
      throw new ShapeError(`${what}: a tensor table must be [rows, features], got [${table.shape}]`);
    const [n, F] = table.shape as [number, number];
    const a = table.toArray();
    const kind: Column['kind'] =
      table.dtype === 'bool' ? 'bool' : table.dtype.startsWith('float') || table.dtype === 'bfloat16' ? 'float' : 'int';
    return Array.from({ length: F }, (_, j) => ({
      name: String(j),
      kind,
      values: Array.from({ length: n }, (_, i) => {
        const v = a[i * F + j]!;
        return Number.isNaN(v) ? null : v;
      }),
    }));
  }
  if (table === null || typeof table !== 'object')
    throw new ArgumentError(`${what} must be an Arrow table, a tensor or named columns, got ${describe(table)}`);
  return Object.entries(table).map(([name, col]) => {
    if (isTensor(col)) {
      if (col.ndim !== 1) throw new ShapeError(`${what}: column '${name}' must be 1-D, got [${col.shape}]`);
      const a = col.toArray();
      const kind: Column['kind'] =
        col.dtype === 'bool'
          ? 'bool'
          : col.dtype === 'float32' || col.dtype === 'float16' || col.dtype === 'bfloat16'
            ? 'float'
            : 'int';
      return {
        name,
        kind,
        values: Array.from(a as ArrayLike<number>, (v) => (Number.isNaN(v) ? null : kind === 'bool' ? v !== 0 : v)),
      };
    }
    if (col === null || typeof col !== 'object' || typeof (col as ArrayLike<unknown>).length !== 'number') {
      throw new ArgumentError(`${what}: column '${name}' must be a Tensor or an array, got ${describe(col)}`);
    }
    const arr = Array.from(col as ArrayLike<number | string | boolean | null>);
    const first = arr.find((v) => v !== null && v !== undefined);
    const kind: Column['kind'] =
      typeof first === 'string'
        ? 'string'
        : typeof first === 'boolean'
          ? 'bool'
          : arr.every((v) => v === null || Number.isInteger(v))
            ? 'int'
            : 'float';
    return {
      name,
      kind,
      values: arr.map((v) => (v === undefined || (typeof v === 'number' && Number.isNaN(v)) ? null : v)),
    };
  });
}
