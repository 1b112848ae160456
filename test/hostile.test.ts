// Hostile names: every reader keys its results by names that come from files or requests, so names that are
// Object.prototype members (`__proto__`, `constructor`, `toString`, ...) must be ordinary keys, lookups must
// never find inherited members, and names a file cannot store are refused with a FormatError naming the file.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as A from 'apache-arrow';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as kn from '../src/index.js';
import { decodeSafetensors } from '../src/io/safetensors.js';
import { own } from '../src/records.js';
import { throwsKiln, tempDir } from './helpers.js';

const dir = tempDir('kiln-hostile-');
const EVIL = ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', '__defineGetter__'];

/** A safetensors file from a header object (data: the bytes after it). */
function safetensorsBytes(header: Record<string, unknown> | string, data = new Uint8Array(0)): Uint8Array {
  const json = typeof header === 'string' ? header : JSON.stringify(header);
  const h = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + h.byteLength + data.byteLength);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.byteLength), true);
  out.set(h, 8);
  out.set(data, 8 + h.byteLength);
  return out;
}

test('safetensors: tensor names and metadata keys that are Object.prototype members round-trip as plain keys', async () => {
  const tensors: Record<string, kn.Tensor> = Object.create(null);
  EVIL.forEach((n, i) => {
    tensors[n] = kn.tensor([i, i + 0.5]);
  });
  const metadata: Record<string, string> = Object.create(null);
  for (const n of EVIL) metadata[n] = `meta ${n}`;
  const file = join(dir, 'evil.safetensors');
  await kn.io.save(file, tensors, { metadata });
  const back = await kn.io.loadWithMetadata(file);
  assert.is(Object.getPrototypeOf(back.tensors), null);
  assert.equal(Object.keys(back.tensors).sort(), [...EVIL].sort());
  EVIL.forEach((n, i) => {
    assert.equal(Array.from(back.tensors[n]!.toArray()), [i, i + 0.5], n);
    assert.is(back.metadata[n], `meta ${n}`);
  });
  // a missing name reads undefined, not an inherited member or the attacker's tensor
  assert.is((back.tensors as Record<string, unknown>).weight, undefined);
  assert.is(Object.getPrototypeOf(back.metadata), null);
});

test('safetensors: a file whose only tensor is named __proto__ keeps it as a tensor', () => {
  const bytes = safetensorsBytes('{"__proto__":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', new Uint8Array(4));
  writeFileSync(join(dir, 'proto.safetensors'), bytes);
  const { tensors } = decodeSafetensors(bytes, 'proto.safetensors');
  assert.equal(Object.keys(tensors), ['__proto__']);
  assert.instance(tensors['__proto__'], kn.Tensor);
  assert.is(Object.getPrototypeOf(tensors), null);
});

test('safetensors: dtype strings are looked up as own entries; unstorable names are refused naming the file', () => {
  for (const dtype of ['constructor', 'toString', '__proto__']) {
    throwsKiln(
      () =>
        decodeSafetensors(
          safetensorsBytes({ x: { dtype, shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4)),
          'bad.safetensors',
        ),
      kn.FormatError,
      /bad\.safetensors: tensor 'x' has dtype .*supported: /,
    );
  }
  // a lone surrogate cannot be written back as UTF-8: the name would come back changed
  throwsKiln(
    () =>
      decodeSafetensors(
        safetensorsBytes('{"a\\ud800":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', new Uint8Array(4)),
        'lone.safetensors',
      ),
    kn.FormatError,
    /lone\.safetensors: name .* cannot be kept: it holds a lone UTF-16 surrogate/,
  );
  throwsKiln(
    () => decodeSafetensors(safetensorsBytes('{"__metadata__":{"k\\udc00":"v"}}'), 'meta.safetensors'),
    kn.FormatError,
    /meta\.safetensors: metadata key .* cannot be kept/,
  );
});

test('checkpoints and state dicts: hostile names are unexpected entries, never prototypes', async () => {
  const model = new kn.nn.Linear(2, 1);
  const file = join(dir, 'ckpt.safetensors');
  await kn.io.saveCheckpoint(file, { model });
  const { tensors, metadata } = await kn.io.loadWithMetadata(file);
  const evil = Object.create(null) as Record<string, kn.Tensor>;
  for (const [k, t] of Object.entries(tensors)) evil[k] = t;
  evil['model.__proto__'] = kn.ones([1]);
  await kn.io.save(file, evil, { metadata });
  try {
    await kn.io.loadCheckpoint(file, { model: new kn.nn.Linear(2, 1) });
    assert.unreachable('loaded a checkpoint with an extra tensor');
  } catch (e) {
    assert.instance(e, kn.KilnError);
    assert.match((e as Error).message, /unexpected \[__proto__\]/);
  }
  // a state dict given as an object literal with a prototype: inherited entries are not parameters
  const m = new kn.nn.Linear(2, 1);
  const inherited = Object.create({ weight: kn.zeros([1, 2]), bias: kn.zeros([1]) }) as Record<string, kn.Tensor>;
  throwsKiln(() => m.loadStateDict(inherited), kn.ValidationError, /missing \[weight, bias\]/);
  assert.is(Object.getPrototypeOf(m.stateDict()), null);
});

test('Arrow: hostile column names become plain keys; duplicates and unstorable names are refused', () => {
  const cols: Record<string, A.Vector> = Object.create(null);
  for (const n of EVIL) cols[n] = A.vectorFromArray([1.5, 2.5], new A.Float32());
  cols['city'] = A.vectorFromArray(['rome', 'paris']);
  const table = new A.Table(cols);
  const { tensors, vocab } = kn.data.fromArrowWithVocab(table);
  assert.is(Object.getPrototypeOf(tensors), null);
  assert.equal(Object.keys(tensors).sort(), [...EVIL, 'city'].sort());
  for (const n of EVIL) assert.equal(Array.from(tensors[n]!.toArray()), [1.5, 2.5]);
  assert.equal(vocab['city'], ['rome', 'paris']);
  assert.is(own(vocab, 'constructor'), undefined);
  // toArrow: a column named constructor with no vocabulary stays numeric (Object's constructor is no vocabulary)
  const back = kn.data.toArrow({ constructor: kn.tensor([0, 1], undefined, { dtype: 'int32' }) });
  assert.equal(back.getChild('constructor')!.toArray(), Int32Array.of(0, 1));
  // a file with a repeated column name cannot become a record of columns
  const schema = new A.Schema([new A.Field('a', new A.Int32()), new A.Field('a', new A.Int32())]);
  const col = A.makeData({ type: new A.Int32(), data: Int32Array.of(1) });
  const twice = new A.Table([
    new A.RecordBatch(
      schema,
      A.makeData({ type: new A.Struct(schema.fields), length: 1, nullCount: 0, children: [col, col] }),
    ),
  ]);
  const file = join(dir, 'dup.arrow');
  writeFileSync(file, A.tableToIPC(twice, 'file'));
  throwsKiln(() => kn.data.readArrow(file), kn.FormatError, /dup\.arrow: column name "a" appears twice/);
  throwsKiln(() => kn.data.fromArrow(twice), kn.ValidationError, /column name "a" appears twice/);
});

test('Arrow: lengths the buffers cannot hold are refused before anything is decoded (was an out-of-memory abort)', () => {
  // scripts/fuzz.ts found files whose dictionary claims 2.8e9 strings over three offsets: decoding it took the
  // process down (V8 heap exhausted). The same claim, built with apache-arrow, in memory and in a file
  const dir = tempDir('kiln-arrow-huge-');
  const utf8 = (length: number, offsets: number[], text: string): A.Data<A.Utf8> =>
    A.makeData({
      type: new A.Utf8(),
      length,
      nullCount: 0,
      valueOffsets: Int32Array.from(offsets),
      data: new TextEncoder().encode(text),
    });
  const type = new A.Dictionary(new A.Utf8(), new A.Int32());
  const dictionary = A.makeVector(utf8(2_000_000_000, [0, 4, 9, 9], 'romeparis'));
  const dictTable = new A.Table({
    c: A.makeVector(A.makeData({ type, length: 3, nullCount: 0, data: Int32Array.of(0, 1, 0), dictionary })),
  });
  const strTable = new A.Table({ s: A.makeVector(utf8(1_500_000_000, [0, 4], 'rome')) });
  const numTable = new A.Table({
    f: A.makeVector(
      A.makeData({ type: new A.Float32(), length: 1_000_000, nullCount: 0, data: Float32Array.of(1, 2) }),
    ),
  });
  throwsKiln(
    () => kn.data.fromArrow(dictTable),
    kn.ValidationError,
    /column "c"'s dictionary claims 2000000000 values but holds offsets for 3/,
  );
  throwsKiln(
    () => kn.data.fromArrow(numTable),
    kn.ValidationError,
    /column "f" claims 1000000 values but its data holds 2/,
  );
  for (const [t, re] of [
    [dictTable, /column "c"'s dictionary claims 2000000000 values but holds offsets for 3/],
    [strTable, /column "s" claims 1500000000 values but holds offsets for 1/],
  ] as const) {
    const file = join(dir, 'huge.arrow');
    writeFileSync(file, A.tableToIPC(t, 'file'));
    throwsKiln(
      () => kn.data.readArrow(file),
      kn.FormatError,
      new RegExp(`huge\\.arrow is not a readable Arrow IPC file: ${re.source}`),
    );
  }
  // a sound table still reads
  const ok = kn.data.fromArrowWithVocab(
    new A.Table({
      c: A.makeVector(
        A.makeData({
          type,
          length: 3,
          nullCount: 0,
          data: Int32Array.of(0, 1, 0),
          dictionary: A.makeVector(utf8(2, [0, 4, 9], 'romeparis')),
        }),
      ),
    }),
  );
  assert.equal(
    [Array.from(ok.tensors.c!.toArray()), ok.vocab.c],
    [
      [0, 1, 0],
      ['rome', 'paris'],
    ],
  );
  ok.tensors.c!.dispose();
});

test('validate: a column named after an Object.prototype member is still an unexpected column', () => {
  const report = kn.data.validate({ columns: { age: { type: 'int', min: 0 } } }, { age: [1, 2], constructor: [3, 4] });
  assert.ok(
    report.violations.some((v) => v.rule === 'unexpected' && v.column === 'constructor'),
    JSON.stringify(report.violations),
  );
});

test('specs and transformer JSON read own fields only', () => {
  // an inherited field is not a field of the spec
  const spec = Object.create({ inFeatures: 4, outFeatures: 2 }) as Record<string, unknown>;
  spec.type = 'Linear';
  throwsKiln(() => kn.nn.fromSpec(spec), kn.FormatError, /Features' must be an integer >= 1, got undefined/);
  // JSON's "__proto__" is an ordinary own field, ignored by the reader
  const m = kn.nn.fromSpec('{"type":"Linear","inFeatures":2,"outFeatures":3,"__proto__":{"bias":false}}');
  assert.ok((m as kn.nn.Linear).bias !== null);
  const fitted = new kn.data.StandardScaler()
    .fit(
      kn.tensor([
        [1, 2],
        [3, 4],
      ]),
    )
    .toJSON();
  const hostile = JSON.parse(
    JSON.stringify({ ...fitted, params: {} }).replace(
      '"params":{}',
      '"params":{"__proto__":' + JSON.stringify(fitted.params) + '}',
    ),
  );
  throwsKiln(() => kn.data.StandardScaler.fromJSON(hostile), kn.FormatError, /params\.\w+ must be 2 numbers/);
});

test('request logs: a __proto__ record is not a record', async () => {
  const file = join(dir, 'requests.jsonl');
  writeFileSync(
    file,
    JSON.stringify({ input: [1, 2], output: [3], version: 'v1' }) +
      '\n' +
      '{"__proto__":{"input":[1,2],"output":[3],"version":"v1"}}\n' +
      JSON.stringify({ input: [5, 6], output: [7], version: 'v1' }) +
      '\n',
  );
  try {
    await kn.serve.readRequestLog(file);
    assert.unreachable('read a log with a __proto__ record');
  } catch (e) {
    assert.instance(e, kn.FormatError);
    assert.match((e as Error).message, /requests\.jsonl:2: not a request-log record/);
  }
});

test('HTTP bodies with __proto__ are refused with 400 and never reach the model', async () => {
  let calls = 0;
  const s = await kn.serve.createServer(
    (x: kn.Tensor) => {
      calls++;
      return x.mul(2);
    },
    { port: 0, inputShape: [2], warmup: false },
  );
  try {
    for (const body of [
      '{"__proto__":{"input":[1,2]}}',
      '{"input":[1,2],"__proto__":{"x":1}}',
      '{"constructor":{"prototype":{"x":1}},"input":[1,2]}',
    ]) {
      const r = await fetch(s.url + '/predict', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
      });
      assert.is(r.status, 400, body);
      await r.text();
    }
    assert.is(calls, 0);
    assert.is(({} as Record<string, unknown>).x, undefined, 'Object.prototype is untouched');
  } finally {
    await s.close();
  }
});

test('CLI options named after Object.prototype members are unknown options (exit 2)', () => {
  for (const flag of ['--__proto__', '--constructor', '--toString']) {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'prune', 'm.safetensors', flag, 'x'], {
      encoding: 'utf8',
    });
    assert.is(r.status, 2, r.stderr);
    assert.match(r.stderr, /kiln: .*Unknown option/i);
  }
  assert.ok(readFileSync('package.json', 'utf8').length > 0);
});

test('the public API takes hostile arguments with a KilnError, never a TypeError or RangeError', () => {
  // each entry point with one argument replaced by each hostile value; the rest valid
  const hostile: unknown[] = [
    undefined,
    null,
    NaN,
    -1,
    0,
    2 ** 40,
    'x',
    {},
    [],
    [1],
    [1, 2, 3],
    ['a', 'b'],
    1.5,
    true,
    () => 1,
    [[1, 2], [3]],
    Symbol('s'),
    10n,
    JSON.parse('{"__proto__": {"x": 1}}'),
  ];
  const lin = new kn.nn.Linear(3, 2);
  const x4 = kn.randn([1, 2, 6, 6]),
    w4 = kn.randn([3, 2, 3, 3]),
    t = kn.randn([2, 3]),
    seq = kn.randn([2, 4, 8]);
  hostile.push(kn.ones([2, 3]));
  const N = kn.nn as unknown as Record<string, new (...a: unknown[]) => { call: (x: unknown) => unknown }>;
  const T = t as unknown as Record<string, (...a: unknown[]) => unknown>;
  const K = kn as unknown as Record<string, (...a: unknown[]) => unknown>;
  const calls: [string, (v: unknown) => unknown][] = [
    ['Conv2d kernelSize', (v) => new N.Conv2d!(2, 3, v)],
    ['Conv1d kernelSize', (v) => new N.Conv1d!(2, 3, v)],
    ['MaxPool2d', (v) => new N.MaxPool2d!(v).call(x4)],
    ['AvgPool2d', (v) => new N.AvgPool2d!(v).call(x4)],
    ['AdaptiveAvgPool2d', (v) => new N.AdaptiveAvgPool2d!(v).call(x4)],
    ['LayerNorm', (v) => new N.LayerNorm!(v)],
    ['Embedding', (v) => new N.Embedding!(v, 4)],
    ['Linear', (v) => new N.Linear!(2, v)],
    ['Dropout', (v) => new N.Dropout!(v)],
    ['MultiheadAttention', (v) => new N.MultiheadAttention!(8, v)],
    ['LSTM', (v) => new N.LSTM!(8, v)],
    ['Flatten', (v) => new N.Flatten!(v).call(x4)],
    ['randomCrop', (v) => kn.data.augment.randomCrop(v as never)],
    ['QuantConv2d kernelSize', (v) => new kn.quant.QuantConv2d(2, 3, v as never)],
    ['conv2d stride', (v) => kn.conv2d(x4, w4, null, { stride: v as never })],
    ['conv2d padding', (v) => kn.conv2d(x4, w4, null, { padding: v as never })],
    ['maxPool2d', (v) => kn.maxPool2d(x4, v as never)],
    ['reshape', (v) => T.reshape!(v)],
    ['permute', (v) => T.permute!(v)],
    ['slice', (v) => T.slice!(v)],
    ['sum', (v) => T.sum!(v)],
    ['expand', (v) => T.expand!(v)],
    ['gather', (v) => T.gather!(v, 0)],
    ['cast', (v) => T.cast!(v)],
    ['pow', (v) => T.pow!(v)],
    ['where', (v) => T.where!(v, 0)],
    ['concat', (v) => K.concat!(v)],
    ['concat axis', (v) => K.concat!([t, t], v)],
    ['zeros', (v) => K.zeros!(v)],
    ['full', (v) => K.full!([2], v)],
    ['arange', (v) => K.arange!(v)],
    ['tensor', (v) => K.tensor!(v)],
    ['tensor shape', (v) => K.tensor!([1, 2], v)],
    ['randint', (v) => K.randint!(v, 0, 3)],
    ['crossEntropy', (v) => kn.nn.loss.crossEntropy(t, v as never)],
    ['accuracy', (v) => kn.metrics.accuracy(v as never, [0, 1])],
    ['rocAuc', (v) => kn.metrics.rocAuc(v as never, [0, 1])],
    ['DataLoader', (v) => new kn.data.DataLoader(v as never)],
    ['Dataset', (v) => new kn.data.Dataset(v as never)],
    ['StandardScaler.fit', (v) => new kn.data.StandardScaler().fit(v as never)],
    ['trainTestSplit', (v) => kn.data.trainTestSplit(v as never)],
    ['kFold', (v) => kn.data.kFold(v as never, 2)],
    ['Adam', (v) => new kn.optim.Adam(v as never)],
    ['clipGradNorm', (v) => kn.optim.clipGradNorm(v as never, 1)],
    ['StepLR', (v) => new kn.optim.StepLR(v as never, { stepSize: 1 })],
    ['gradcheck', (v) => kn.gradcheck(v as never, [t])],
    ['quantizeTensor', (v) => kn.quant.quantizeTensor(v as never)],
    ['setBackend', (v) => kn.setBackend(v as never)],
    ['mlp', (v) => kn.models.mlp(v as never, [4], 2)],
    ['scaledDotProductAttention', (v) => kn.nn.scaledDotProductAttention(seq, seq, v as never)],
    ['calibration', (v) => kn.evaluate.calibration(v as never, [0, 1])],
    ['noGrad', (v) => kn.noGrad(v as never)],
    ['keep', (v) => kn.keep(v as never)],
    ['toSpec', (v) => kn.nn.toSpec(v as never)],
    ['fromSpec', (v) => kn.nn.fromSpec(v as never)],
    ['Module.call', (v) => lin.call(v as never)],
    ['loadStateDict', (v) => lin.loadStateDict(v as never)],
    ['SGD params', (v) => new kn.optim.SGD(v as never, { lr: 0.1 })],
    ['Adam.loadStateDict', (v) => new kn.optim.Adam(lin.parameters()).loadStateDict(v as never)],
    ['setRngState', (v) => kn.setRngState(v as never)],
    ['quantize', (v) => kn.quant.quantize(v as never, { scheme: 'int8-dynamic' })],
    ['magnitude', (v) => kn.prune.magnitude(lin, { sparsity: v as never })],
    ['DataLoader batchSize', (v) => new kn.data.DataLoader(new kn.data.Dataset({ x: t }), { batchSize: v as never })],
    ['precision', (v) => kn.metrics.precision([0, 1], v as never)],
    ['transformerFromJSON', (v) => kn.data.transformerFromJSON(v as never)],
    [
      'backward',
      (v) => {
        const a = kn.randn([2]);
        a.requiresGrad = true;
        a.mul(2).backward(v as never);
      },
    ],
    ['hvp', (v) => kn.hvp((a: kn.Tensor) => a.pow(2).sum(), kn.ones([3]), v as never)],
    [
      'Tensor.grad',
      (v) => {
        const a = kn.ones([2]);
        a.grad = v as never;
        a.requiresGrad = true;
        a.mul(2).sum().backward();
      },
    ],
    ['LSTM.run', (v) => new kn.nn.LSTM(3, 4).run(kn.randn([2, 1, 3]), v as never)],
    ['Dataset.subset', (v) => new kn.data.Dataset({ x: t }).subset(v as never)],
    ['confusionMatrix numClasses', (v) => kn.metrics.confusionMatrix([0, 1], [1, 0], { numClasses: v as never })],
  ];
  const wrong: string[] = [];
  for (const [name, call] of calls)
    for (const v of hostile) {
      try {
        kn.tidy(() => {
          call(v);
        });
      } catch (e) {
        if (!(e instanceof kn.KilnError))
          wrong.push(
            `${name}(${kn.isTensor(v) ? 'a Tensor' : String(v)}): ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`,
          );
      }
    }
  assert.equal(wrong, [], wrong.join('\n'));
  [x4, w4, t, seq].forEach((a) => a.dispose());
  lin.dispose();
});

/** Every call that writes a file the caller names, other than kn.io's. */
function writers(lin: kn.nn.Module): [string, (p: string) => unknown][] {
  const scaler = new kn.data.StandardScaler().fit(kn.tensor([[1], [2]]));
  const encoder = new kn.data.OrdinalEncoder().fit({ c: ['a', 'b'] });
  const pipeline = new kn.data.ColumnPipeline([{ name: 'a', columns: ['a'], steps: [new kn.data.StandardScaler()] }]);
  pipeline.fit({ a: [1, 2, 4] });
  const prof = kn.profile(() => lin.forward(kn.ones([1, 3])).dispose());
  return [
    ['writeParquet', (p) => kn.data.writeParquet(p, { a: kn.ones([2]) })],
    ['writeCsv', (p) => kn.data.writeCsv(p, kn.data.toArrow({ a: kn.ones([2]) }))],
    ['writeParquetStream', (p) => kn.data.writeParquetStream(p, [kn.data.toArrow({ a: kn.ones([2]) })])],
    ['writeArrowStream', (p) => kn.data.writeArrowStream(p, [kn.data.toArrow({ a: kn.ones([2]) })])],
    ['writeCsvStream', (p) => kn.data.writeCsvStream(p, [kn.data.toArrow({ a: kn.ones([2]) })])],
    ['StandardScaler.save', (p) => scaler.save(p)],
    ['OrdinalEncoder.save', (p) => encoder.save(p)],
    ['ColumnPipeline.save', (p) => pipeline.save(p)],
    ['writeChromeTrace', (p) => prof.writeChromeTrace(p)],
    ['writeFileAtomic', (p) => kn.io.writeFileAtomic(p, [new Uint8Array(3)])],
    ['writeFileAtomicSync', (p) => kn.io.writeFileAtomicSync(p, [new Uint8Array(3)])],
  ];
}

test('file paths: a directory, a NUL byte or a missing file is an ArgumentError naming the path', async () => {
  const dir = tempDir('kiln-paths-');
  const missing = join(dir, 'missing.safetensors');
  const notes = join(dir, 'notes.txt');
  writeFileSync(notes, 'not a directory');
  const lin = new kn.nn.Linear(3, 2);
  const calls: [string, (p: string) => unknown][] = [
    ['save', (p) => kn.io.save(p, lin)],
    ['saveCheckpointSync', (p) => kn.io.saveCheckpointSync(p, { model: lin })],
    ['load', (p) => kn.io.load(p)],
    ['loadModel', (p) => kn.io.loadModel(p)],
    ['loadWithMetadata', (p) => kn.io.loadWithMetadata(p)],
    ['saveCheckpoint', (p) => kn.io.saveCheckpoint(p, { model: lin })],
    ['loadCheckpoint', (p) => kn.io.loadCheckpoint(p, { model: lin })],
    ['loadCheckpointSync', (p) => kn.io.loadCheckpointSync(p, { model: lin })],
    ['checkpointScaler', (p) => kn.io.checkpointScaler(p)],
    ['exportOnnx', (p) => kn.io.exportOnnx(lin, p, { inputShape: [3] })],
    ['readArrow', (p) => kn.data.readArrow(p)],
    ['writeArrow', (p) => kn.data.writeArrow(p, { a: kn.ones([2]) })],
    ['readParquet', (p) => kn.data.readParquet(p)],
    ['readCsv', (p) => kn.data.readCsv(p)],
    ['openCsv', (p) => kn.data.openCsv(p)],
    ['readRequestLog', (p) => kn.serve.readRequestLog(p)],
    ['createServer', (p) => kn.serve.createServer(p, { inputShape: [3] })],
    ['register', (p) => kn.registry.register(p, { name: 'm', dir: join(dir, 'registry') })],
    ['loadEncoder', (p) => kn.data.loadEncoder(p)],
    ['loadTransformer', (p) => kn.data.loadTransformer(p)],
    ['loadPipeline', (p) => kn.data.loadPipeline(p)],
    ['readManifest', (p) => kn.data.readManifest(p)],
    ['parquetInfo', (p) => kn.data.parquetInfo(p)],
    ['ParquetSource.open', (p) => kn.data.ParquetSource.open(p)],
    ['arrowFileInfo', (p) => kn.data.arrowFileInfo(p)],
    ['ArrowSource.open', (p) => kn.data.ArrowSource.open(p)],
    ...writers(lin),
  ];
  const writes = new Set([
    'save',
    'saveCheckpoint',
    'saveCheckpointSync',
    'exportOnnx',
    'writeArrow',
    ...writers(lin).map(([n]) => n),
  ]);
  const wrong: string[] = [];
  for (const [name, call] of calls)
    for (const p of [dir, `${dir}/a\0b`, ...(writes.has(name) ? [] : [missing])]) {
      try {
        await call(p);
        wrong.push(`${name}(${JSON.stringify(p)}) did not throw`);
      } catch (e) {
        const m = (e as Error).message;
        if (!(e instanceof kn.ArgumentError))
          wrong.push(`${name}(${JSON.stringify(p)}): ${(e as Error).constructor.name}: ${m}`);
        else if (!m.includes(p.includes('\0') ? 'NUL byte' : p))
          wrong.push(`${name}: the message does not name the path: ${m}`);
      }
    }
  // a path that is not a string at all
  for (const [name, call] of calls)
    for (const p of [42, undefined, null, {}, Symbol('p'), ['a.arrow']]) {
      try {
        await call(p as unknown as string);
        wrong.push(`${name}(${String(p)}) did not throw`);
      } catch (e) {
        if (!(e instanceof kn.ArgumentError))
          wrong.push(`${name}(${String(p)}): ${(e as Error).constructor.name}: ${(e as Error).message}`);
      }
    }
  assert.equal(wrong, [], wrong.join('\n'));
  assert.equal(readdirSync(dir).sort(), ['notes.txt'], 'nothing was written');
  throwsKiln(() => kn.track.listRuns(notes), kn.ArgumentError, /notes\.txt is a file, not a tracking directory/);
  throwsKiln(() => kn.track.readRun(notes), kn.ArgumentError, /notes\.txt is a file, expected a run directory/);
  throwsKiln(() => kn.track.readRun(missing), kn.ArgumentError, /there is no run directory at \S+missing/);
  lin.dispose();
});

test('a write into a directory that does not exist is an ArgumentError naming the file, not the temp file', async () => {
  const dir = tempDir('kiln-nodir-');
  const target = join(dir, 'gone', 'out.bin');
  const lin = new kn.nn.Linear(3, 2);
  const calls: [string, (p: string) => unknown][] = [
    ['save', (p) => kn.io.save(p, lin)],
    ['saveCheckpoint', (p) => kn.io.saveCheckpoint(p, { model: lin })],
    ['saveCheckpointSync', (p) => kn.io.saveCheckpointSync(p, { model: lin })],
    ['exportOnnx', (p) => kn.io.exportOnnx(lin, p, { inputShape: [3] })],
    ['writeArrow', (p) => kn.data.writeArrow(p, { a: kn.ones([2]) })],
    ...writers(lin),
  ];
  const wrong: string[] = [];
  for (const [name, call] of calls) {
    try {
      await call(target);
      wrong.push(`${name} did not throw`);
    } catch (e) {
      const m = (e as Error).message;
      if (!(e instanceof kn.ArgumentError)) wrong.push(`${name}: ${(e as Error).constructor.name}: ${m}`);
      else if (m !== `cannot write ${target}: its directory ${join(dir, 'gone')} does not exist`)
        wrong.push(`${name}: ${m}`);
    }
  }
  assert.equal(wrong, [], wrong.join('\n'));
  // a read-only directory: the same, said as a permission problem (root ignores modes: skip the check there)
  if (process.getuid?.() !== 0) {
    const ro = join(dir, 'ro');
    mkdirSync(ro, { mode: 0o555 });
    throwsKiln(
      () => kn.io.saveCheckpointSync(join(ro, 'c'), { model: lin }),
      kn.ArgumentError,
      /no permission to write in/,
    );
  }
  assert.equal(readdirSync(dir), process.getuid?.() !== 0 ? ['ro'] : [], 'no temp file is left');
  lin.dispose();
});

test.run();
