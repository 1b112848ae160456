// Structure-aware fuzzing of every reader of outside data: safetensors, checkpoints, architecture specs,
// transformer JSON, Arrow IPC, Parquet, request logs, and the ONNX writer's inputs. Each case starts from a valid input
// and mutates what the format is made of (header fields, lengths, offsets, dtypes, names, nesting, bytes).
// A reader must accept the input or refuse it with a KilnError: any other exception, a crash or a hang fails.
//
// Cases run in child processes, a chunk per child: a crash (signal, abort) or a hang (no progress before the
// timeout) kills only the child, and the parent reports the case it was on.
//   tsx scripts/fuzz.ts [--cases 10000] [--seed 1] [--readers safetensors,spec] [--json]
//   tsx scripts/fuzz.ts --child arrow --from 18 --to 19 --dump case.arrow   (writes case 18's input to a file)
// test/fuzz.test.ts runs a small number of cases per reader; `npm run bench fuzz` runs 10,000 per reader.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { rng } from '../test/rng.js';

export const READERS = [
  'safetensors',
  'checkpoint',
  'spec',
  'transformer',
  'arrow',
  'parquet',
  'csv',
  'requestlog',
  'onnx',
] as const;
export type Reader = (typeof READERS)[number];

export interface FuzzResult {
  reader: Reader | SelfTest;
  cases: number;
  accepted: number;
  refused: number;
  /** non-KilnError exceptions: `case index: message` */
  failures: string[];
  crashes: string[];
  hangs: string[];
  ms: number;
}

// ---------------- mutation tools ----------------

type Rand = () => number;
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
const int = (r: Rand, lo: number, hi: number): number => lo + Math.floor(r() * (hi - lo + 1));

/** Values that break readers: wrong types, boundary numbers, hostile names, deep or large structures. */
function evilValue(r: Rand, depth = 0): unknown {
  const k = int(r, 0, 17);
  switch (k) {
    case 0:
      return null;
    case 1:
      return -1;
    case 2:
      return 0;
    case 3:
      return 2 ** 31;
    case 4:
      return 2 ** 53 + 2;
    case 5:
      return 1.5; // a fraction where an integer belongs
    case 6:
      return NaN; // serialised as null
    case 7:
      return '__proto__';
    case 8:
      return 'constructor';
    case 9:
      return '';
    case 10:
      return 'x'.repeat(int(r, 1, 5000));
    case 11:
      return [];
    case 12:
      return depth > 3 ? [1] : [evilValue(r, depth + 1), evilValue(r, depth + 1)];
    case 13:
      return {};
    case 14:
      return depth > 3 ? {} : { type: evilValue(r, depth + 1) };
    case 15:
      return true;
    case 16:
      return int(r, -3, 3);
    default:
      return 'a\ud800b';
  }
}

/** Replaces, deletes or adds one field somewhere in a JSON value. */
function mutateJson(r: Rand, v: unknown, depth = 0): unknown {
  if (Array.isArray(v)) {
    if (v.length && r() < 0.7) {
      const i = int(r, 0, v.length - 1);
      const c = [...v];
      const op = r();
      if (op < 0.6) c[i] = mutateJson(r, c[i], depth + 1);
      else if (op < 0.8) c.splice(i, 1);
      else c.splice(i, 0, evilValue(r));
      return c;
    }
    return r() < 0.5 ? evilValue(r) : [...v, evilValue(r)];
  }
  if (v !== null && typeof v === 'object') {
    const o: Record<string, unknown> = Object.create(null);
    Object.assign(o, v);
    const keys = Object.keys(o);
    const op = r();
    if (keys.length && op < 0.65) {
      const k = pick(r, keys);
      o[k] = r() < 0.5 ? mutateJson(r, o[k], depth + 1) : evilValue(r);
    } else if (keys.length && op < 0.8) {
      delete o[pick(r, keys)];
    } else {
      o[pick(r, ['__proto__', 'constructor', 'toString', 'type', 'extra', '', 'a\udc00'])] = evilValue(r);
    }
    return o;
  }
  return r() < 0.8 ? evilValue(r) : v;
}

/** Flips, overwrites, inserts or drops bytes, or truncates. */
function mutateBytes(r: Rand, b: Uint8Array): Uint8Array {
  const out = Uint8Array.from(b);
  const n = int(r, 1, 4);
  let cur = out;
  for (let k = 0; k < n; k++) {
    const op = r();
    const i = cur.length ? int(r, 0, cur.length - 1) : 0;
    if (op < 0.4 && cur.length) cur[i] = cur[i]! ^ (1 << int(r, 0, 7));
    else if (op < 0.6 && cur.length) cur[i] = pick(r, [0, 0xff, 0x7f, 0x80, int(r, 0, 255)]);
    else if (op < 0.75) cur = cur.slice(0, i);
    else if (op < 0.9)
      cur = Uint8Array.from([
        ...cur.slice(0, i),
        ...Array.from({ length: int(r, 1, 16) }, () => int(r, 0, 255)),
        ...cur.slice(i),
      ]);
    else if (cur.length > 8) {
      const len = int(r, 1, Math.min(64, cur.length - i));
      cur = Uint8Array.from([...cur.slice(0, i), ...cur.slice(i + len)]);
    }
  }
  return cur;
}

/** Splits a safetensors file into its header object and data bytes. */
function splitSafetensors(b: Uint8Array): { header: Record<string, unknown>; data: Uint8Array } {
  const h = Number(new DataView(b.buffer, b.byteOffset).getBigUint64(0, true));
  return { header: JSON.parse(new TextDecoder().decode(b.subarray(8, 8 + h))), data: b.subarray(8 + h) };
}
function joinSafetensors(header: unknown, data: Uint8Array, lenDelta = 0): Uint8Array {
  const h = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + h.byteLength + data.byteLength);
  new DataView(out.buffer).setBigUint64(0, BigInt(Math.max(0, h.byteLength + lenDelta)), true);
  out.set(h, 8);
  out.set(data, 8 + h.byteLength);
  return out;
}
/** A structure-aware safetensors mutation: header fields, the length field, data bytes, or raw bytes. */
function mutateSafetensors(r: Rand, base: Uint8Array): Uint8Array {
  const { header, data } = splitSafetensors(base);
  const op = r();
  if (op < 0.5) {
    const names = Object.keys(header);
    const name = pick(r, names);
    const entry = header[name] as Record<string, unknown>;
    const field = pick(r, ['dtype', 'shape', 'data_offsets', '*']);
    const copy: Record<string, unknown> = Object.create(null);
    Object.assign(copy, header);
    if (field === '*') return joinSafetensors(mutateJson(r, copy), data);
    copy[name] =
      field === 'dtype'
        ? {
            ...entry,
            dtype: pick(r, ['F64', 'I64', 'U16', 'F8_E4M3', 'constructor', 'toString', '', 'f32', evilValue(r)]),
          }
        : { ...entry, [field]: mutateJson(r, entry[field]) };
    return joinSafetensors(copy, data);
  }
  if (op < 0.65) return joinSafetensors(header, data, pick(r, [-1, 1, -8, 8, 1 << 20, -(1 << 20)]));
  if (op < 0.75) {
    const b = Uint8Array.from(base);
    new DataView(b.buffer).setBigUint64(
      0,
      BigInt.asUintN(64, BigInt(Math.floor(r() * 2 ** 53)) << BigInt(int(r, 0, 11))),
      true,
    );
    return b;
  }
  if (op < 0.85) return joinSafetensors(header, mutateBytes(r, data));
  return mutateBytes(r, base);
}

// ---------------- the readers ----------------

type Kn = typeof import('../src/index.js');

interface Target {
  /** valid inputs to start from */
  seeds(kn: Kn, dir: string): Promise<unknown[]>;
  /** a mutated input */
  mutate(r: Rand, seed: unknown): unknown;
  /** reads it (throws on refusal); disposes what it made */
  read(kn: Kn, input: unknown, dir: string): Promise<void>;
}

const modelOf = (kn: Kn) =>
  new kn.nn.Sequential(
    new kn.nn.Conv2d(1, 2, 3, { padding: 1 }),
    new kn.nn.BatchNorm2d(2),
    new kn.nn.ReLU(),
    new kn.nn.MaxPool2d(2),
    new kn.nn.Flatten(),
    new kn.nn.Linear(8, 4),
    new kn.nn.LayerNorm(4),
    new kn.nn.GELU(),
    new kn.nn.Dropout(0.1),
    new kn.nn.Linear(4, 3),
  );

/** Readers that misbehave on purpose, so the tests can show the harness catches each failure kind. */
export const SELF_TESTS = ['selftest-throw', 'selftest-crash', 'selftest-hang'] as const;
type SelfTest = (typeof SELF_TESTS)[number];
const misbehave = (bad: (i: number) => void): Target => ({
  seeds: async () => [0],
  mutate: (r) => Math.floor(r() * 1e9),
  async read(_kn, input) {
    if ((input as number) % 7 === 3) bad(input as number);
  },
});

const TARGETS: Record<Reader | SelfTest, Target> = {
  'selftest-throw': misbehave(() => {
    throw new TypeError('not a KilnError');
  }),
  'selftest-crash': misbehave(() => process.kill(process.pid, 'SIGSEGV')),
  'selftest-hang': misbehave(() => {
    while (true);
  }),
  safetensors: {
    async seeds(kn) {
      const ts = {
        f32: kn.tensor([
          [1, 2],
          [3, 4],
        ]),
        i32: kn.tensor([1, -2, 3], undefined, { dtype: 'int32' }),
        bool: kn.tensor([1, 0, 1], undefined, { dtype: 'bool' }),
        f16: kn.tensor([0.5, 1.5], undefined, { dtype: 'float16' }),
        u8: kn.tensor([255, 0], undefined, { dtype: 'uint8' }),
        empty: kn.zeros([0, 3]),
      };
      const { encodeSafetensors } = await import('../src/io/safetensors.js');
      const chunks = encodeSafetensors(ts, { note: 'seed', 'kiln.spec': '{"type":"ReLU"}' });
      return [Buffer.concat(chunks)];
    },
    mutate: (r, s) => mutateSafetensors(r, s as Uint8Array),
    async read(kn, input) {
      const { decodeSafetensors } = await import('../src/io/safetensors.js');
      const { tensors } = decodeSafetensors(input as Uint8Array, 'fuzz.safetensors', 'cpu');
      for (const t of Object.values(tensors)) {
        t.toArray();
        t.dispose();
      }
    },
  },
  checkpoint: {
    async seeds(kn, dir) {
      const model = modelOf(kn);
      const optimizer = new kn.optim.Adam(model.parameters());
      const x = kn.randn([2, 1, 4, 4]);
      kn.nn.loss.crossEntropy(model.call(x), kn.tensor([0, 2], undefined, { dtype: 'int32' })).backward();
      optimizer.step();
      const scheduler = new kn.optim.StepLR(optimizer, { stepSize: 2 });
      const scaler = new kn.data.StandardScaler().fit(
        kn.tensor([
          [1, 2],
          [3, 5],
        ]),
      );
      const file = join(dir, 'seed.ckpt');
      await kn.io.saveCheckpoint(file, { model, optimizer, scheduler, scaler, state: { epoch: 3 } });
      const { readFileSync } = await import('node:fs');
      return [readFileSync(file)];
    },
    mutate(r, s) {
      const b = s as Uint8Array;
      if (r() < 0.5) return mutateSafetensors(r, b);
      // the checkpoint's own metadata JSON
      const { header, data } = splitSafetensors(b);
      const meta = header['__metadata__'] as Record<string, string>;
      const inner = JSON.parse(meta['kiln.checkpoint']!);
      return joinSafetensors(
        { ...header, __metadata__: { ...meta, 'kiln.checkpoint': JSON.stringify(mutateJson(r, inner)) } },
        data,
      );
    },
    async read(kn, input, dir) {
      const file = join(dir, 'case.ckpt');
      writeFileSync(file, input as Uint8Array);
      const model = modelOf(kn);
      const optimizer = new kn.optim.Adam(model.parameters());
      const scheduler = new kn.optim.StepLR(optimizer, { stepSize: 2 });
      try {
        await kn.io.loadCheckpoint(file, { model, optimizer, scheduler });
        await kn.io.checkpointScaler(file);
      } finally {
        model.dispose();
      }
    },
  },
  spec: {
    async seeds(kn) {
      return [
        kn.nn.toSpec(modelOf(kn)),
        kn.nn.toSpec(
          kn.quant.quantize(new kn.nn.Sequential(new kn.nn.Linear(64, 8), new kn.nn.ReLU()), { scheme: 'int4' }).model,
        ),
      ];
    },
    mutate(r, s) {
      let v: unknown = s;
      for (let k = int(r, 1, 3); k > 0; k--) v = mutateJson(r, v);
      return r() < 0.1 ? JSON.stringify(v).slice(0, int(r, 0, 200)) : JSON.stringify(v);
    },
    async read(kn, input) {
      const m = kn.nn.fromSpec(input as string, { maxParams: 1e6 });
      m.dispose();
    },
  },
  transformer: {
    async seeds(kn) {
      const x = kn.tensor([
        [1, NaN, 3],
        [4, 5, 6],
        [7, 8, NaN],
      ]);
      return [
        new kn.data.StandardScaler().fit(x).toJSON(),
        new kn.data.MinMaxScaler().fit(x).toJSON(),
        new kn.data.RobustScaler().fit(x).toJSON(),
        new kn.data.SimpleImputer({ strategy: 'median' }).fit(x).toJSON(),
      ];
    },
    mutate: (r, s) => JSON.stringify(mutateJson(r, mutateJson(r, s))),
    async read(kn, input) {
      const t = kn.data.transformerFromJSON(input as string);
      kn.tidy(() => t.transform(kn.tensor([[1, 2, 3]])).toArray());
    },
  },
  arrow: {
    async seeds(kn, dir) {
      const file = join(dir, 'seed.arrow');
      kn.data.writeArrow(
        file,
        {
          f: kn.tensor([1.5, NaN, 3]),
          i: kn.tensor([1, 2, 3], undefined, { dtype: 'int32' }),
          b: kn.tensor([1, 0, 1], undefined, { dtype: 'bool' }),
          c: kn.tensor([0, 1, 0], undefined, { dtype: 'int32' }),
        },
        { vocab: { c: ['rome', 'paris'] } },
      );
      // three record batches, the string column's dictionary grown by deltas
      const A = await import('apache-arrow');
      const chunk = (k: number): import('apache-arrow').Table =>
        new A.Table({
          f: A.vectorFromArray([k, null, k / 3], new A.Float64()),
          s: A.vectorFromArray(['a', ['b', 'c', 'd'][k]!, null], new A.Dictionary(new A.Utf8(), new A.Int32())),
        });
      const streamed = join(dir, 'seed-batches.arrow');
      await kn.data.writeArrowStream(streamed, [chunk(0), chunk(1), chunk(2)]);
      const { readFileSync } = await import('node:fs');
      // the same tables in the IPC stream format (ArrowSource indexes it by its message headers), the second with
      // its dictionary grown by delta batches
      const asStream = (p: string): Uint8Array => A.tableToIPC(kn.data.readArrow(p), 'stream');
      // string views (lengths, data buffers and offsets in each value's view) and a dense union (type ids, and
      // offsets one per value into the member)
      const members = [new A.Field('i', new A.Int32()), new A.Field('s', new A.Utf8())];
      const union = A.makeData({
        type: new A.DenseUnion([0, 1], members),
        length: 3,
        nullCount: 0,
        typeIds: Int8Array.of(1, 0, 1),
        valueOffsets: Int32Array.of(0, 0, 1),
        children: [
          A.vectorFromArray([4], new A.Int32()).data[0]!,
          A.vectorFromArray(['x', 'yz'], new A.Utf8()).data[0]!,
        ],
      } as never);
      const odd = A.tableToIPC(
        new A.Table({
          v: A.vectorFromArray(['short', 'a string longer than twelve bytes', null], new A.Utf8View()),
          u: A.makeVector(union),
        }),
        'file',
      );
      return [readFileSync(file), readFileSync(streamed), asStream(file), asStream(streamed), odd];
    },
    mutate: (r, s) => mutateBytes(r, s as Uint8Array),
    async read(kn, input, dir) {
      const file = join(dir, 'case.arrow');
      writeFileSync(file, input as Uint8Array);
      const use = (table: import('apache-arrow').Table): void => {
        const { tensors } = kn.data.fromArrowWithVocab(table);
        for (const t of Object.values(tensors)) t.dispose();
      };
      let refused: unknown = null;
      try {
        const table = kn.data.readArrow(file);
        use(table);
        kn.data.validate({ columns: { f: { type: 'float' } }, allowExtra: true }, table);
      } catch (e) {
        refused = e;
      }
      // the footer and record batches through ArrowSource's reader thread, whatever readArrow said
      const src = await kn.data.ArrowSource.open(file);
      try {
        for (let b = 0; b < src.info.batches.length; b++) use(await src.read(b));
      } finally {
        src.close();
      }
      if (refused) throw refused;
    },
  },
  parquet: {
    async seeds(kn, dir) {
      const { readFileSync } = await import('node:fs');
      const A = await import('apache-arrow');
      const n = 300;
      const table = new A.Table({
        f: A.vectorFromArray(
          Array.from({ length: n }, (_, i) => (i % 7 === 3 ? null : i / 4)),
          new A.Float64(),
        ),
        i: A.vectorFromArray(
          Array.from({ length: n }, (_, i) => i - 150),
          new A.Int32(),
        ),
        s: A.vectorFromArray(Array.from({ length: n }, (_, i) => ['rome', 'paris', 'oslo'][i % 3]!)),
        b: A.vectorFromArray(Array.from({ length: n }, (_, i) => i % 2 === 0)),
      });
      return (['snappy', 'zstd', 'none'] as const).map((compression) => {
        const file = join(dir, `seed-${compression}.parquet`);
        kn.data.writeParquet(file, table, { compression, rowGroupSize: 100 });
        return readFileSync(file);
      });
    },
    mutate(r, s) {
      const b = s as Uint8Array;
      // half the cases aim at the footer (the Thrift metadata at the end), where lengths and offsets live
      if (r() < 0.5) return mutateBytes(r, b);
      const out = Uint8Array.from(b);
      const footer = new DataView(out.buffer).getUint32(out.length - 8, true);
      for (let k = int(r, 1, 3); k > 0; k--) {
        const i = out.length - 8 - int(r, 1, Math.min(footer, out.length - 8));
        out[i] = r() < 0.5 ? out[i]! ^ (1 << int(r, 0, 7)) : pick(r, [0, 0xff, 0x7f, 0x80, int(r, 0, 255)]);
      }
      return out;
    },
    async read(kn, input, dir) {
      const file = join(dir, 'case.parquet');
      writeFileSync(file, input as Uint8Array);
      const use = (t: import('apache-arrow').Table): void => {
        const { tensors } = kn.data.fromArrowWithVocab(t);
        for (const x of Object.values(tensors)) x.dispose();
      };
      let refused: unknown = null;
      try {
        use(kn.data.readParquet(file));
      } catch (e) {
        refused = e;
      }
      // the footer and row groups through the reader thread, whatever the synchronous reader said
      const src = await kn.data.ParquetSource.open(file);
      try {
        for (let g = 0; g < src.info.rowGroups.length; g++) use(await src.read({ rowGroups: [g] }));
      } finally {
        src.close();
      }
      if (refused) throw refused;
    },
  },
  csv: {
    async seeds(kn, dir) {
      const { readFileSync } = await import('node:fs');
      const A = await import('apache-arrow');
      const file = join(dir, 'seed.csv');
      kn.data.writeCsv(
        file,
        new A.Table({
          id: A.vectorFromArray([1, 2, 3, 4], new A.Int32()),
          x: A.vectorFromArray([1.5, null, -2e-3, 7], new A.Float64()),
          s: A.vectorFromArray(['plain', 'a, "b"', 'two\nlines', null], new A.Utf8()),
        }),
      );
      return [readFileSync(file)];
    },
    mutate(r, s) {
      const b = s as Uint8Array;
      // half the cases put the characters CSV is made of (quote, separator, line ends) somewhere new
      if (r() < 0.5) return mutateBytes(r, b);
      const out = Array.from(b);
      for (let k = int(r, 1, 4); k > 0; k--)
        out.splice(int(r, 0, out.length), int(r, 0, 1), pick(r, [34, 44, 10, 13, 9]));
      return Uint8Array.from(out);
    },
    async read(kn, input, dir) {
      const file = join(dir, 'case.csv');
      writeFileSync(file, input as Uint8Array);
      const A = await import('apache-arrow');
      let whole: InstanceType<typeof A.Table> | Error;
      try {
        whole = kn.data.readCsv(file);
      } catch (e) {
        whole = e as Error;
      }
      // openCsv streams the same file in chunks: the same table, or the same error
      let streamed: InstanceType<typeof A.Table> | Error;
      try {
        const src = await kn.data.openCsv(file);
        const parts: InstanceType<typeof A.Table>[] = [];
        for await (const t of src.chunks({ rowsPerChunk: 2 })) parts.push(t);
        streamed = parts.length === 0 ? new A.Table(src.schema) : parts[0]!.concat(...parts.slice(1));
      } catch (e) {
        streamed = e as Error;
      }
      // a file with several faults may be refused for another one of them (readCsv decodes all the text before it
      // parses, openCsv meets a bad quote before a bad byte further on): the same class of error is agreement
      const said = (x: InstanceType<typeof A.Table> | Error): string =>
        x instanceof Error ? x.constructor.name : `${String(x.schema)} ${JSON.stringify(x.toArray())}`;
      const full = (x: InstanceType<typeof A.Table> | Error): string =>
        x instanceof Error ? `${x.constructor.name}: ${x.message}` : said(x);
      if (said(whole) !== said(streamed))
        throw new Error(`openCsv and readCsv differ:\n  readCsv: ${full(whole)}\n  openCsv: ${full(streamed)}`);
      if (whole instanceof Error) throw whole;
      const { tensors } = kn.data.fromArrowWithVocab(whole);
      for (const t of Object.values(tensors)) t.dispose();
    },
  },
  requestlog: {
    async seeds() {
      const line = (i: number) => ({
        ts: '2026-12-01T00:00:00Z',
        id: `r${i}`,
        version: 'v1',
        input: [i, 2, 3],
        output: [0.5, 0.5],
        error: null,
        latencyMs: 1,
        cached: false,
      });
      return [[line(1), line(2), line(3)]];
    },
    mutate(r, s) {
      const lines = (s as unknown[]).map((l) => JSON.stringify(l));
      const i = int(r, 0, lines.length - 1);
      const op = r();
      if (op < 0.6) lines[i] = JSON.stringify(mutateJson(r, JSON.parse(lines[i]!)));
      else if (op < 0.8) lines[i] = lines[i]!.slice(0, int(r, 0, lines[i]!.length));
      else lines.splice(i, 0, pick(r, ['', '{', 'null', '[]', '"x"', '{"__proto__":{"input":[1],"version":"v"}}']));
      return lines.join('\n') + (r() < 0.5 ? '\n' : '');
    },
    async read(kn, input, dir) {
      const file = join(dir, 'case.jsonl');
      writeFileSync(file, input as string);
      const d = await kn.serve.readRequestLog(file);
      d.inputs.dispose();
      d.outputs.dispose();
    },
  },
  onnx: {
    async seeds(kn) {
      return [kn.nn.toSpec(modelOf(kn))];
    },
    mutate(r, s) {
      return { spec: mutateJson(r, s), inputShape: r() < 0.5 ? [1, 4, 4] : mutateJson(r, [1, 4, 4]) };
    },
    async read(kn, input) {
      const { spec, inputShape } = input as { spec: unknown; inputShape: unknown };
      let model;
      try {
        model = kn.nn.fromSpec(JSON.stringify(spec), { maxParams: 1e6 });
      } catch (e) {
        if (e instanceof kn.KilnError) return; // the spec reader's business; the writer gets valid models
        throw e;
      }
      try {
        kn.io.toOnnx(model, { inputShape: inputShape as number[] });
      } finally {
        model.dispose();
      }
    },
  },
};

// ---------------- child: run a chunk ----------------

async function child(
  reader: Reader | SelfTest,
  from: number,
  to: number,
  seed: number,
  given?: string,
  dump?: string,
): Promise<void> {
  const kn = (await import('../src/index.js')) as Kn;
  kn.setBackend('cpu');
  // the parent's directory (it removes it when a crash or hang kills this process before the `finally` below)
  const dir = given ?? mkdtempSync(join(tmpdir(), `kiln-fuzz-${reader}-`));
  const out: string[] = [];
  const flush = (): void => {
    if (out.length) process.stdout.write(out.splice(0).join('\n') + '\n');
  };
  try {
    const t = TARGETS[reader];
    const seeds = await t.seeds(kn, dir);
    for (let i = from; i < to; i++) {
      const r = rng(seed * 1_000_003 + i);
      process.stdout.write(`@${i}\n`); // progress: a crash or hang is blamed on this case
      const input = t.mutate(r, pick(r, seeds));
      if (dump) {
        // reproduce one case: its input goes to a file instead of the reader
        writeFileSync(dump, typeof input === 'string' || input instanceof Uint8Array ? input : JSON.stringify(input));
        return;
      }
      try {
        await t.read(kn, input, dir);
        out.push(`${i} ok`);
      } catch (e) {
        if (e instanceof kn.KilnError) out.push(`${i} refused`);
        else
          out.push(
            `${i} FAIL ${(e as Error)?.constructor?.name}: ${String((e as Error)?.message ?? e)
              .slice(0, 300)
              .replace(/\n/g, ' ')}`,
          );
      }
      flush();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------- parent ----------------

const here = fileURLToPath(import.meta.url);

/** How long a child may take to start before its first output counts as a hang. */
const STARTUP_MS = 60_000;

function runChunk(
  reader: Reader | SelfTest,
  from: number,
  to: number,
  seed: number,
  timeoutMs: number,
): Promise<{ lines: string[]; code: number | null; signal: string | null; timedOut: boolean }> {
  // the child's scratch directory, made and removed here: a child that crashes or hangs leaves it behind
  const dir = mkdtempSync(join(tmpdir(), `kiln-fuzz-${reader}-`));
  return new Promise((resolve) => {
    const p = spawn(
      process.execPath,
      [
        ...['--import', 'tsx', here, '--child', reader, '--from', String(from), '--to', String(to)],
        ...['--seed', String(seed), '--dir', dir],
      ],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: {
          ...process.env,
          KILN_WEBGPU: '0',
          KILN_NUM_THREADS: '1',
          KILN_ARROW_PARSE_TIMEOUT_MS: '1000',
          KILN_DATA_READ_TIMEOUT_MS: '2000',
        },
      },
    );
    let buf = '';
    let timedOut = false;
    // the window starts at the child's first output: starting node, tsx and the addon (slow under ASan on a
    // busy machine) is not a hang, so the first window is at least STARTUP_MS
    let timer = setTimeout(
      () => {
        timedOut = true;
        p.kill('SIGKILL');
      },
      Math.max(timeoutMs, STARTUP_MS),
    );
    p.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      clearTimeout(timer); // progress: the timeout measures time without any
      timer = setTimeout(() => {
        timedOut = true;
        p.kill('SIGKILL');
      }, timeoutMs);
    });
    p.stderr.on('data', () => {});
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      rmSync(dir, { recursive: true, force: true });
      resolve({ lines: buf.split('\n').filter(Boolean), code, signal, timedOut });
    });
  });
}

/** Runs `cases` cases of one reader in child processes of `chunk` cases each. */
export async function fuzzReader(
  reader: Reader | SelfTest,
  cases: number,
  seed = 1,
  chunk = 2500,
  timeoutMs = 20_000,
): Promise<FuzzResult> {
  const t0 = Date.now();
  const res: FuzzResult = { reader, cases, accepted: 0, refused: 0, failures: [], crashes: [], hangs: [], ms: 0 };
  let from = 0;
  while (from < cases) {
    const to = Math.min(cases, from + chunk);
    const r = await runChunk(reader, from, to, seed, timeoutMs);
    let last = -1;
    for (const l of r.lines) {
      if (l.startsWith('@')) {
        last = Number(l.slice(1));
        continue;
      }
      const [i, kind] = l.split(' ');
      last = Number(i);
      if (kind === 'ok') res.accepted++;
      else if (kind === 'refused') res.refused++;
      else res.failures.push(`${reader} case ${i}: ${l.slice(String(i).length + 6)}`);
    }
    const done = r.lines.filter((l) => !l.startsWith('@')).length;
    if (r.timedOut) res.hangs.push(`${reader} case ${last}: no progress for ${timeoutMs} ms`);
    else if (r.code !== 0) res.crashes.push(`${reader} case ${last}: exit ${r.code} signal ${r.signal}`);
    // continue after the case that crashed or hung
    from = r.timedOut || r.code !== 0 ? Math.max(last + 1, from + done + 1) : to;
  }
  res.ms = Date.now() - t0;
  return res;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      child: { type: 'string' },
      from: { type: 'string' },
      to: { type: 'string' },
      seed: { type: 'string', default: '1' },
      cases: { type: 'string', default: '10000' },
      readers: { type: 'string', default: READERS.join(',') },
      json: { type: 'boolean', default: false },
      dump: { type: 'string' },
      dir: { type: 'string' },
    },
    strict: true,
  });
  if (values.child) {
    await child(
      values.child as Reader | SelfTest,
      Number(values.from),
      Number(values.to),
      Number(values.seed),
      values.dir,
      values.dump,
    );
  } else {
    let bad = 0;
    for (const reader of values.readers!.split(',') as Reader[]) {
      if (!READERS.includes(reader)) throw new Error(`unknown reader ${reader}; readers: ${READERS.join(', ')}`);
      const r = await fuzzReader(reader, Number(values.cases), Number(values.seed));
      bad += r.failures.length + r.crashes.length + r.hangs.length;
      if (values.json) console.log(JSON.stringify(r));
      else {
        console.log(
          `${reader.padEnd(12)} ${String(r.cases).padStart(6)} cases  ${String(r.accepted).padStart(6)} accepted  ${String(r.refused).padStart(6)} refused with KilnError  ${r.failures.length} other errors  ${r.crashes.length} crashes  ${r.hangs.length} hangs  ${(r.ms / 1000).toFixed(1)} s`,
        );
        for (const f of [...r.failures, ...r.crashes, ...r.hangs].slice(0, 10)) console.log('  ' + f);
      }
    }
    process.exit(bad ? 1 : 0);
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) void main();
