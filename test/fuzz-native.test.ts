// Throws random descriptors at the addon. Every call must either run or throw an Error with a KILN_* code;
// a crash (segfault, abort, SIGFPE) kills this process and the runner reports the suite as failed.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadAddon } from '../src/backends/native/binding.js';
import { OP_TABLE } from '../src/ops/table.js';
import { rng } from './helpers.js';

const { addon } = loadAddon();

test('60k random descriptors: no crash, every failure is a coded KilnError-mappable error', () => {
  if (!addon) return;
  const r = rng(31337);
  const pick = <T>(a: readonly T[]): T => a[Math.floor(r() * a.length)]!;
  const int = (lo: number, hi: number): number => lo + Math.floor(r() * (hi - lo + 1));
  const ARRAYS = [Float32Array, Uint16Array, Uint16Array, Int32Array, Int8Array, Uint8Array, Uint8Array];
  // a pool of real buffers of every dtype and several sizes
  const bufs: { id: number; dtype: number; n: number }[] = [];
  for (let dt = 0; dt < 7; dt++) {
    for (const n of [0, 1, 2, 3, 4, 6, 8, 9, 12, 16, 24, 27, 36, 64]) {
      const id = addon.alloc(dt, n);
      const data = new ARRAYS[dt]!(n);
      for (let i = 0; i < n; i++)
        data[i] = dt === 6 ? int(0, 1) : dt === 3 ? int(-3, 40) : dt === 0 ? (r() - 0.5) * 8 : int(0, 60);
      addon.write(id, data as never, 0);
      bufs.push({ id, dtype: dt, n });
    }
  }
  const weird = [NaN, Infinity, -Infinity, -1, 1e300, 2 ** 53, 0.5, 2 ** 31, -(2 ** 31)];
  const num = (lo: number, hi: number): number => (r() < 0.03 ? pick(weird) : int(lo, hi));
  const shapeFor = (n: number): number[] => {
    // mostly shapes that fit the buffer, sometimes not
    const rank = int(0, 4);
    const s: number[] = [];
    let left = n;
    for (let i = 0; i < rank; i++) {
      const divs = [1, 2, 3, 4].filter((d) => left % d === 0);
      const d = r() < 0.1 ? int(0, 5) : pick(divs.length ? divs : [1]);
      s.push(d);
      left = d ? Math.floor(left / d) : left;
    }
    if (rank > 0 && r() < 0.7) s[rank - 1] = (s[rank - 1] || 1) * left;
    return s;
  };
  const contiguous = (s: number[]): number[] => {
    const st = new Array<number>(s.length);
    let acc = 1;
    for (let i = s.length - 1; i >= 0; i--) {
      st[i] = acc;
      acc *= Math.max(s[i]!, 1);
    }
    return st;
  };
  let ran = 0,
    rejected = 0;
  const codes = new Set<string>();
  for (let it = 0; it < 60000; it++) {
    // half the calls are coherent (operands share a size and shape) so they get past validation into kernels
    const coherent = r() < 0.5;
    const anchor = pick(bufs);
    const sameN = bufs.filter((b) => b.n === anchor.n);
    const cshape = shapeFor(anchor.n);
    const op = r() < 0.02 ? num(-2, OP_TABLE.length + 2) : int(0, OP_TABLE.length - 1);
    const spec = OP_TABLE[op];
    const nin = spec && r() < 0.9 ? (spec.inputs < 0 ? int(1, 3) : spec.inputs) : int(0, 4);
    const desc: number[] = [nin];
    const used = new Set<number>();
    for (let i = 0; i < nin; i++) {
      const b = coherent
        ? ((i === 0 ? anchor : pick(sameN.filter((x) => r() < 0.5 || x.dtype === anchor.dtype))) ?? anchor)
        : pick(bufs);
      used.add(b.id);
      const shape = coherent ? cshape : shapeFor(b.n);
      const strides = r() < 0.8 ? contiguous(shape) : shape.map(() => num(0, 4));
      desc.push(
        r() < 0.02 ? num(0, 9999) : b.id,
        r() < 0.03 ? num(0, 8) : b.dtype,
        r() < 0.02 ? num(0, 14) : shape.length,
        r() < 0.1 ? num(0, 3) : 0,
        ...shape,
        ...strides,
      );
    }
    if (r() < 0.02) desc.push(num(0, 9));
    const candidates = bufs.filter((b) => !used.has(b.id));
    const sameCandidates = candidates.filter((b) => b.n === anchor.n);
    const sameDtype = sameCandidates.filter((b) => b.dtype === anchor.dtype || (r() < 0.2 && b.dtype === 6));
    const ob =
      coherent && sameDtype.length && r() < 0.8
        ? pick(sameDtype)
        : coherent && sameCandidates.length
          ? pick(sameCandidates)
          : r() < 0.95
            ? pick(candidates)
            : pick(bufs);
    const oshape = coherent && ob.n === anchor.n ? cshape : shapeFor(ob.n);
    const out = [ob.id, r() < 0.9 ? ob.dtype : num(0, 7), oshape.length, ...oshape];
    const nattr = spec && r() < 0.9 ? spec.attrs.length : int(0, 12);
    const attrs = Array.from({ length: nattr }, () => (r() < 0.5 ? num(0, 2) : num(-2, 6)));
    try {
      addon.run(op, Float64Array.from(desc), Float64Array.from(out), Float64Array.from(attrs));
      ran++;
    } catch (e) {
      const err = e as { code?: string };
      assert.ok(typeof err.code === 'string' && err.code.startsWith('KILN_'), `op ${op}: uncoded error ${String(e)}`);
      codes.add(err.code);
      rejected++;
    }
  }
  for (const b of bufs) addon.free(b.id);
  assert.ok(ran > 500, `only ${ran} calls ran a kernel to completion`);
  assert.ok(rejected > 5000);
  for (const c of ['KILN_ARG', 'KILN_SHAPE', 'KILN_DTYPE']) assert.ok(codes.has(c), `never saw ${c}`);
});

test.run();
