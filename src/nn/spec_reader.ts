// Reads untrusted architecture specs: every accessor checks a field and throws FormatError naming the file,
// the layer path and the field; addParams bounds the total size a spec may declare before anything is
// allocated. Layer descriptions (nn/registry.ts) read their fields through it.
import { FormatError, describe } from '../errors.js';
import { own } from '../records.js';

export type Pair2 = number | [number, number];

const MAX_DIM = 2 ** 31 - 1;
/** Upper bound on the values a spec may declare (4 G values = 16 GiB of float32). */
export const MAX_PARAMS = 2 ** 32;
export const MAX_DEPTH = 64;
export const MAX_LAYERS = 100_000;

export class SpecReader {
  params = 0;
  layers = 0;
  constructor(
    readonly where: string,
    readonly maxParams = MAX_PARAMS,
  ) {}
  fail(path: string, msg: string): never {
    throw new FormatError(`${this.where}: ${path}: ${msg}`);
  }
  obj(v: unknown, path: string): Record<string, unknown> {
    if (v === null || typeof v !== 'object' || Array.isArray(v))
      this.fail(path, `expected an object, got ${describe(v)}`);
    return v as Record<string, unknown>;
  }
  int(o: Record<string, unknown>, k: string, path: string, min: number, dflt?: number): number {
    const v = own(o, k) ?? dflt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > MAX_DIM) {
      this.fail(path, `'${k}' must be an integer >= ${min}, got ${describe(v)}`);
    }
    return v;
  }
  num(
    o: Record<string, unknown>,
    k: string,
    path: string,
    ok: (x: number) => boolean,
    rule: string,
    dflt?: number,
  ): number {
    const v = own(o, k) ?? dflt;
    if (typeof v !== 'number' || !ok(v)) this.fail(path, `'${k}' must be ${rule}, got ${describe(v)}`);
    return v;
  }
  bool(o: Record<string, unknown>, k: string, path: string, dflt: boolean): boolean {
    const v = own(o, k) ?? dflt;
    if (typeof v !== 'boolean') this.fail(path, `'${k}' must be a boolean, got ${describe(v)}`);
    return v;
  }
  /** A number or a pair, kept in the form the spec used (so toSpec(fromSpec(s)) equals s). */
  pair(o: Record<string, unknown>, k: string, path: string, min: number, dflt?: number): Pair2 {
    const v = own(o, k) ?? dflt;
    if (typeof v === 'number') return this.int({ [k]: v }, k, path, min);
    if (!Array.isArray(v) || v.length !== 2)
      this.fail(path, `'${k}' must be an integer or a pair of integers, got ${describe(v)}`);
    return [this.int({ [k]: v[0] }, k, path, min), this.int({ [k]: v[1] }, k, path, min)];
  }
  addParams(n: number, path: string): void {
    this.params += n;
    if (this.params > this.maxParams) this.fail(path, `the spec declares more than ${this.maxParams} parameter values`);
  }
}
