import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as A from 'apache-arrow';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as kn from '../src/index.js';
import { rng } from './rng.js';
import { tempDir } from './helpers.js';

const cli = (...args: string[]): { code: number | null; out: string; err: string } => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
};

test('kiln info lists every backend and says why a missing one is missing', () => {
  const r = cli('info');
  assert.is(r.code, 0, r.err);
  assert.match(r.out, /^kiln \d+\.\d+\.\d+ on Node v\d+/);
  assert.match(r.out, /cpu\s+available/);
  assert.match(r.out, /js\s+available/);
  // cuda: available where there is a GPU, else missing with the reason (as kn.info() says in this process)
  const cuda = kn.info().backends.find((b) => b.name === 'cuda')!;
  assert.match(r.out, cuda.available ? /cuda\s+available/ : /cuda\s+missing: .+/);
  // the WebGPU adapter is printed too (Mesa's llvmpipe in CI)
  assert.match(r.out, /webgpu\s+available/);
  assert.match(r.out, /^webgpu: .+ via (opengles|vulkan) \((compatibility|core)\), buffers up to \d+ MiB$/m);
  const off = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'info'], {
    encoding: 'utf8',
    env: { ...process.env, KILN_WEBGPU: '0' },
  });
  assert.match(off.stdout, /webgpu\s+missing: disabled by KILN_WEBGPU=0/);
});

test('kiln info --json is machine readable', () => {
  const r = cli('info', '--json');
  assert.is(r.code, 0, r.err);
  const j = JSON.parse(r.out) as {
    backends: { name: string; available: boolean; reason: string | null }[];
    cpu: { isa: string };
  };
  assert.ok(j.backends.some((b) => b.name === 'cpu' && b.available));
  assert.ok(['avx512', 'avx2', 'scalar'].includes(j.cpu.isa));
});

test('unknown commands and options fail with a usage message', () => {
  const r = cli('frobnicate');
  assert.is(r.code, 2);
  assert.match(r.err, /unknown command 'frobnicate'/);
  const o = cli('info', '--nope');
  assert.is(o.code, 2);
  assert.match(o.err, /^kiln: .*'--nope'/);
  assert.not.match(o.err, / {4}at /, 'no stack trace');
});

test('files named by flags: a missing or malformed one names the flag and the path', () => {
  const dir = tempDir('kiln-cli-files-');
  const bad = join(dir, 'rules.yaml');
  writeFileSync(bad, 'rules: [unclosed\n');
  const cases: [string[], RegExp][] = [
    [['--alert-rules', join(dir, 'none.yaml')], /^kiln: --alert-rules \S+none\.yaml: cannot read it \(ENOENT/],
    [['--alert-rules', bad], /^kiln: --alert-rules \S+rules\.yaml: not valid YAML \(/],
    [['--auth', join(dir, 'keys.json')], /^kiln: --auth \S+keys\.json: cannot read it \(ENOENT/],
    [
      ['--tls-cert', join(dir, 'c.pem'), '--tls-key', join(dir, 'k.pem')],
      /^kiln: --tls-cert \S+c\.pem: cannot read it/,
    ],
  ];
  for (const [flags, re] of cases) {
    const r = cli('serve', join(dir, 'model.safetensors'), ...flags);
    assert.is(r.code, 2, r.err);
    assert.match(r.err, re);
  }
  const a = cli('admin', 'versions', '--url', 'http://127.0.0.1:9', '--ca', join(dir, 'ca.pem'));
  assert.is(a.code, 2, a.err);
  assert.match(a.err, /^kiln: --ca \S+ca\.pem: cannot read it \(ENOENT/);
  rmSync(dir, { recursive: true, force: true });
});

test('kiln bench times the kernels and prints JSON rows; bad arguments exit 2 with a message', () => {
  const r = cli('bench', 'matmul', 'mlp', '--sizes', '32,48', '--threads', '1', '--json', '--min-time-ms', '1');
  assert.is(r.code, 0, r.err);
  const rows = r.out
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  assert.equal(
    rows.map((x) => [x.bench, x.size, x.threads]),
    [
      ['matmul', '32x32x32', 1],
      ['matmul', '48x48x48', 1],
      ['mlp', '784-256-10, batch 32, Adam', 1],
    ],
  );
  assert.ok(rows.every((x) => x.rate > 0 && x.minMs <= x.medianMs && x.medianMs <= x.maxMs));
  assert.equal(
    rows.map((x) => x.unit),
    ['GFLOP/s', 'GFLOP/s', 'steps/s'],
  );
  const q = cli('bench', 'int8', '--sizes', '40', '--threads', '1', '--json', '--min-time-ms', '1');
  assert.is(q.code, 0, q.err);
  const qr = JSON.parse(q.out.trim());
  assert.equal([qr.bench, qr.unit, qr.size], ['int8', 'GOP/s', '40x40x40 (dynamic int8 linear)']);
  const c = cli('bench', 'conv', '--sizes', '2', '--threads', '1', '--min-time-ms', '1');
  assert.is(c.code, 0, c.err);
  assert.match(c.out, /^conv {3}cpu threads=1 {2}2x16x28x28 \* 32x16x3x3 \(fwd\+bwd\) +[\d.]+ GFLOP\/s/);
  const bad = cli('bench', 'fft');
  assert.is(bad.code, 2);
  assert.match(bad.err, /unknown benchmark 'fft'; choose from matmul, int8, conv, mlp/);
  const bad2 = cli('bench', 'matmul', '--sizes', 'x');
  assert.is(bad2.code, 2);
  assert.match(bad2.err, /--sizes takes positive integers/);
});

test('kiln train: a table in, a model out (classes or values), with the scaler, tracking and early stopping', async () => {
  const dir = tempDir('kiln-cli-train-');
  const r = rng(12);
  const gauss = (): number => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  // three classes around three centres in (f1, f2), a noise column f3 on another scale
  const N = 300;
  const centres = [
    [0, 0],
    [4, 0],
    [0, 4],
  ];
  const y = Int32Array.from({ length: N }, (_, i) => i % 3);
  const f1 = Float32Array.from(y, (c) => centres[c]![0]! + gauss());
  const f2 = Float32Array.from(y, (c) => centres[c]![1]! + gauss());
  const f3 = Float32Array.from(y, () => 100 + 50 * gauss());
  const data = join(dir, 'train.parquet');
  await kn.data.writeParquet(data, {
    f1: kn.tensor(f1),
    f2: kn.tensor(f2),
    f3: kn.tensor(f3),
    y: kn.tensor(y, [N], { dtype: 'int32' }),
  });
  const model = join(dir, 'clf.safetensors');
  const scaler = join(dir, 'scaler.json');
  const c = cli(
    'train',
    data,
    '--label',
    'y',
    '-o',
    model,
    '--epochs',
    '40',
    '--lr',
    '0.01',
    '--hidden',
    '16',
    '--scaler',
    scaler,
    '--metrics',
    'accuracy,f1',
    '--track',
    join(dir, 'mlruns'),
    '--json',
  );
  assert.is(c.code, 0, c.err);
  const sum = JSON.parse(c.out.trim().split('\n').at(-1)!);
  assert.equal([sum.task, sum.classes, sum.features, sum.rows], ['classification', 3, 3, { train: 240, val: 60 }]);
  assert.ok(sum.metrics.accuracy >= 0.9 && sum.metrics.f1 >= 0.9, JSON.stringify(sum));
  assert.match(sum.run, /^[0-9a-f]{32}$/);
  // the file and the scaler predict every row on their own
  const { model: m, metadata } = await kn.io.loadModel(model);
  assert.equal(JSON.parse(metadata['kiln.features']!), ['f1', 'f2', 'f3']);
  const sc = kn.data.transformerFromJSON(readFileSync(scaler, 'utf8'));
  const x = kn.tensor(
    Float32Array.from({ length: N * 3 }, (_, i) => [f1, f2, f3][i % 3]![Math.floor(i / 3)]!),
    [N, 3],
  );
  const pred = Array.from(m.call(sc.transform(x)).argmax(1).toArray() as Int32Array);
  const acc = pred.filter((p, i) => p === y[i]).length / N;
  assert.ok(acc >= 0.9, `the saved model and scaler: accuracy ${acc}`);
  assert.equal(kn.track.listRuns(join(dir, 'mlruns')).length, 1, 'one tracked run');

  // a float label is a regression; early stopping and checkpoints
  const t = Float32Array.from(f1, (v, i) => 2 * v - f2[i]! + 0.1 * gauss());
  const reg = join(dir, 'reg.parquet');
  await kn.data.writeParquet(reg, { f1: kn.tensor(f1), f2: kn.tensor(f2), t: kn.tensor(t) });
  const rr = cli(
    'train',
    reg,
    '--label',
    't',
    '-o',
    join(dir, 'reg.safetensors'),
    '--epochs',
    '60',
    '--lr',
    '0.02',
    '--hidden',
    '',
    '--patience',
    '5',
    '--checkpoint-dir',
    join(dir, 'ckpt'),
    '--json',
  );
  assert.is(rr.code, 0, rr.err);
  const rs = JSON.parse(rr.out.trim().split('\n').at(-1)!);
  const mean = t.reduce((a, b) => a + b, 0) / N;
  const variance = t.reduce((a, b) => a + (b - mean) ** 2, 0) / N;
  assert.is(rs.task, 'regression');
  assert.ok(rs.valLoss < 0.05 * variance, `val MSE ${rs.valLoss} against a variance of ${variance}`);
  assert.ok(readdirSync(join(dir, 'ckpt')).length > 0, 'checkpoints were written');

  // kiln predict: the saved models score tables; the scaler goes with the classifier
  const pc = cli('predict', model, data, '--scaler', scaler, '-o', join(dir, 'p.parquet'), '--keep', 'y', '--json');
  assert.is(pc.code, 0, pc.err);
  assert.equal(JSON.parse(pc.out.trim()).columns, ['y', 'prediction', 'probability']);
  const pt = kn.data.readParquet(join(dir, 'p.parquet'));
  const got = Array.from(pt.getChild('prediction')!.toArray() as Int32Array);
  const truth = Array.from(pt.getChild('y')!.toArray() as Int32Array);
  assert.ok(got.filter((p, i) => p === truth[i]).length / N >= 0.9, 'kiln predict agrees with the labels');
  assert.ok((pt.getChild('probability')!.toArray() as Float32Array).every((p) => p > 0.3 && p <= 1));
  const pr = cli('predict', join(dir, 'reg.safetensors'), reg, '-o', join(dir, 'p.arrow'));
  assert.is(pr.code, 0, pr.err);
  assert.match(pr.out, /wrote 300 regression predictions to \S+p\.arrow \(prediction\)/);
  const pv = kn.data.readArrow(join(dir, 'p.arrow')).getChild('prediction')!.toArray() as Float32Array;
  const mse = pv.reduce((a, v, i) => a + (v - t[i]!) ** 2, 0) / N;
  assert.ok(mse < 0.05 * variance, `kiln predict's regression MSE ${mse}`);
  for (const [args, re] of [
    [[model, data, '-o', join(dir, 'q.parquet'), '--keep', 'nope'], /has no column 'nope' to keep/],
    [[model, reg, '-o', join(dir, 'q.parquet')], /reg\.parquet has no feature column 'f3'/],
    [[model, data], /predict needs -o/],
    [[model, data, '-o', join(dir, 'q.parquet'), '--batch-size', '0'], /--batch-size must be a positive integer/],
  ] as const) {
    const e = cli('predict', ...args);
    assert.is(e.code, 2, `${args.join(' ')}: ${e.out}`);
    assert.match(e.err, re);
  }

  // what is wrong is said, with exit 2
  for (const [args, re] of [
    [[data, '-o', model], /train needs --label COLUMN/],
    [[data, '--label', 'nope', '-o', model], /no label column 'nope'/],
    [[data, '--label', 'y', '--features', 'f1,zz', '-o', model], /no feature column 'zz'/],
    [[data, '--label', 'y', '--val', '1.5', '-o', model], /--val must be a fraction in \[0, 1\), got '1\.5'/],
    [[data, '--label', 'y', '--metrics', 'auc', '-o', model], /--metrics takes accuracy, precision/],
    [[join(dir, 'missing.parquet'), '--label', 'y', '-o', model], /missing\.parquet/],
  ] as const) {
    const e = cli('train', ...args);
    assert.is(e.code, 2, `${args.join(' ')}: ${e.out}`);
    assert.match(e.err, re);
  }
  rmSync(dir, { recursive: true, force: true });
});

test('kiln train: string labels are classes, saved by name; fine-tuning keeps their order; --backend', async () => {
  const dir = tempDir('kiln-cli-names-');
  const r = rng(21);
  const gauss = (): number => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  const names = ['versicolor', 'setosa', 'virginica']; // written unsorted: classes are sorted by name
  const centres: Record<string, [number, number]> = { setosa: [0, 0], versicolor: [4, 0], virginica: [0, 4] };
  const table = (n: number, pickName: (i: number) => string): A.Table => {
    const lab = Array.from({ length: n }, (_, i) => pickName(i));
    return new A.Table({
      a: A.vectorFromArray(Float32Array.from(lab, (s) => centres[s]![0] + 0.7 * gauss())),
      b: A.vectorFromArray(Float32Array.from(lab, (s) => centres[s]![1] + 0.7 * gauss())),
      species: A.vectorFromArray(lab),
    });
  };
  const data = join(dir, 'iris.parquet'); // strings in Parquet come back as a dictionary column
  kn.data.writeParquet(
    data,
    table(240, (i) => names[i % 3]!),
  );
  const model = join(dir, 'm.safetensors');
  const c = cli('train', data, '--label', 'species', '-o', model, '--epochs', '30', '--lr', '0.02', '--json');
  assert.is(c.code, 0, c.err);
  const sum = JSON.parse(c.out.trim().split('\n').at(-1)!);
  assert.equal([sum.task, sum.classes, sum.classNames], ['classification', 3, ['setosa', 'versicolor', 'virginica']]);
  assert.ok(sum.metrics.accuracy >= 0.9, JSON.stringify(sum));
  const { model: m, metadata } = await kn.io.loadModel(model);
  assert.equal(JSON.parse(metadata['kiln.classes']!), ['setosa', 'versicolor', 'virginica']);
  const probe = kn.tensor([
    [0, 0],
    [4, 0],
    [0, 4],
  ]);
  assert.equal(Array.from(m.call(probe).argmax(1).toArray()), [0, 1, 2], 'class i is kiln.classes[i]');

  const pn = cli('predict', model, data, '-o', join(dir, 'named.arrow'), '--keep', 'species', '--batch-size', '7');
  assert.is(pn.code, 0, pn.err);
  const named = kn.data.readArrow(join(dir, 'named.arrow'));
  const want = named.getChild('species')!.toArray() as string[];
  const said = named.getChild('label')!.toArray() as string[];
  assert.ok(said.filter((l, i) => l === want[i]).length / 240 >= 0.9, 'the labels are the class names');
  const idx = named.getChild('prediction')!.toArray() as Int32Array;
  assert.ok(Array.from(idx).every((c, i) => ['setosa', 'versicolor', 'virginica'][c] === said[i]));

  // a Parquet file is read a row group at a time: the same rows in five row groups (each with its own string
  // dictionary) give the same answers, and a bad value names its row in the file, not in its row group
  const grouped = join(dir, 'grouped.parquet');
  const rowsOf = kn.data.readParquet(data);
  kn.data.writeParquet(grouped, rowsOf, { rowGroupSize: 50 });
  const pg = cli('predict', model, grouped, '-o', join(dir, 'grouped.arrow'), '--keep', 'species', '--json');
  assert.is(pg.code, 0, pg.err);
  assert.equal([JSON.parse(pg.out.trim()).chunks, JSON.parse(pg.out.trim()).batches], [5, 1]);
  // row groups smaller than a batch are joined: 5 x 50 rows in batches of 100, 100 and 40
  const p100 = cli('predict', model, grouped, '-o', join(dir, 'g100.arrow'), '--batch-size', '100', '--json');
  assert.is(p100.code, 0, p100.err);
  assert.is(JSON.parse(p100.out.trim()).batches, 3);
  const g = kn.data.readArrow(join(dir, 'grouped.arrow'));
  for (const c of ['species', 'label', 'prediction'])
    assert.equal([...g.getChild(c)!], [...named.getChild(c)!], `${c} of the row-grouped file`);
  // the Arrow output was written a chunk's answers at a time: a record batch per row group, and the kept string
  // column's five row-group dictionaries joined into one
  assert.equal((await kn.data.arrowFileInfo(join(dir, 'grouped.arrow'))).batches, [50, 50, 50, 50, 40]);
  // an Arrow input is read a record batch at a time: converted from the row groups, it scores in five chunks too
  const groupedArrow = join(dir, 'grouped-in.arrow');
  const ca5 = cli('convert', grouped, groupedArrow, '--json');
  assert.is(ca5.code, 0, ca5.err);
  assert.equal((await kn.data.arrowFileInfo(groupedArrow)).batches, [50, 50, 50, 50, 40]);
  const pa = cli('predict', model, groupedArrow, '-o', join(dir, 'from-arrow.csv'), '--keep', 'species', '--json');
  assert.is(pa.code, 0, pa.err);
  assert.is(JSON.parse(pa.out.trim()).chunks, 5);
  const fa5 = kn.data.readCsv(join(dir, 'from-arrow.csv'));
  for (const c of ['species', 'label', 'prediction'])
    assert.equal([...fa5.getChild(c)!], [...g.getChild(c)!], `${c} from the Arrow input`);
  // a Parquet output is written a chunk's answers at a time: the same table
  const pq = join(dir, 'grouped-out.parquet');
  const ppq = cli('predict', model, grouped, '-o', pq, '--keep', 'species', '--json');
  assert.is(ppq.code, 0, ppq.err);
  const gq = kn.data.readParquet(pq);
  assert.equal(
    gq.schema.fields.map((f) => f.name),
    ['species', 'prediction', 'label', 'probability'],
  );
  for (const c of ['species', 'label', 'prediction', 'probability'])
    assert.equal([...gq.getChild(c)!], [...g.getChild(c)!], `${c} of the Parquet output`);
  const [pg1, pn1] = [g, named].map((t) => t.getChild('probability')!.toArray() as Float32Array);
  assert.ok(
    pg1!.every((p, i) => Math.abs(p - pn1![i]!) < 1e-5),
    'the same probabilities (other batch sizes round apart)',
  );
  // CSV in and out: the same answers; kiln train reads CSV too
  const csv = join(dir, 'iris.csv');
  kn.data.writeCsv(csv, rowsOf);
  const pcsv = cli('predict', model, csv, '-o', join(dir, 'named.csv'), '--keep', 'species');
  assert.is(pcsv.code, 0, pcsv.err);
  const fromCsv = kn.data.readCsv(join(dir, 'named.csv'));
  for (const c of ['species', 'label', 'prediction'])
    assert.equal([...fromCsv.getChild(c)!], [...named.getChild(c)!], `${c} from the CSV file`);
  // kiln convert: the CSV file to Parquet in row groups (for a stream), columns picked; and back to Arrow
  const conv = join(dir, 'converted.parquet');
  const cv = cli('convert', csv, conv, '--row-group-size', '64', '--compression', 'zstd', '--columns', 'species,a');
  assert.is(cv.code, 0, cv.err);
  assert.match(cv.out, /wrote 240 rows to \S+converted\.parquet \(species: Utf8, a: Float64\)/);
  const info = await kn.data.parquetInfo(conv);
  assert.equal([info.rows, info.rowGroups.length], [240, 4]);
  const ct = kn.data.readParquet(conv);
  assert.equal([...ct.getChild('species')!], [...rowsOf.getChild('species')!]);
  const ca = ct.getChild('a')!.toArray() as Float64Array;
  assert.ok((rowsOf.getChild('a')!.toArray() as Float32Array).every((v, i) => Math.fround(ca[i]!) === v));
  // a Parquet file of five row groups streams into one of 64-row groups, chunk by chunk, the values unchanged
  const regrouped = join(dir, 'regrouped.parquet');
  const rg = cli('convert', grouped, regrouped, '--row-group-size', '64', '--json');
  assert.is(rg.code, 0, rg.err);
  assert.is(JSON.parse(rg.out.trim()).rows, 240);
  assert.equal(
    (await kn.data.parquetInfo(regrouped)).rowGroups.map((r) => r.rows),
    [64, 64, 64, 48],
  );
  const rgt = kn.data.readParquet(regrouped);
  for (const c of ['a', 'b', 'species'])
    assert.equal([...rgt.getChild(c)!], [...rowsOf.getChild(c)!], `${c} after the regrouping`);
  // and into a TSV file, row group by row group, and from there back to Parquet: the same values
  const tsv = join(dir, 'grouped.tsv');
  assert.is(cli('convert', grouped, tsv).code, 0);
  assert.is(readFileSync(tsv, 'utf8').split('\n')[0], 'a\tb\tspecies', 'one header');
  const fromTsv = join(dir, 'from-tsv.parquet');
  assert.is(cli('convert', tsv, fromTsv).code, 0);
  const ft = kn.data.readParquet(fromTsv);
  assert.equal([...ft.getChild('species')!], [...rowsOf.getChild('species')!]);
  const fa = ft.getChild('a')!.toArray() as Float64Array;
  assert.ok((rowsOf.getChild('a')!.toArray() as Float32Array).every((v, i) => Math.fround(fa[i]!) === v));
  // an Arrow IPC stream-format input (one record batch per row group) streams through by its message headers
  const streamIn = join(dir, 'grouped-stream.arrow');
  writeFileSync(streamIn, A.tableToIPC(kn.data.readParquet(grouped), 'stream'));
  assert.equal((await kn.data.arrowFileInfo(streamIn)).format, 'stream');
  const fromStream = join(dir, 'from-stream.parquet');
  assert.is(cli('convert', streamIn, fromStream, '--row-group-size', '100').code, 0);
  const fs2 = kn.data.readParquet(fromStream);
  for (const c of ['a', 'b', 'species'])
    assert.equal([...fs2.getChild(c)!], [...rowsOf.getChild(c)!], `${c} from the Arrow stream`);
  // and a .arrows output is written in the stream format, a record batch per row group as it comes
  const toStream = join(dir, 'to-stream.arrows');
  assert.is(cli('convert', grouped, toStream).code, 0);
  const ts = await kn.data.arrowFileInfo(toStream);
  assert.equal([ts.format, ts.batches], ['stream', (await kn.data.parquetInfo(grouped)).rowGroups.map((r) => r.rows)]);
  const tst = kn.data.readArrow(toStream);
  for (const c of ['a', 'b', 'species'])
    assert.equal([...tst.getChild(c)!], [...rowsOf.getChild(c)!], `${c} into the Arrow stream`);
  // --max-batch-rows splits the CSV's one 240-row chunk into record batches of at most 100 (units for a stream)
  const split = join(dir, 'split.arrow');
  assert.is(cli('convert', csv, split, '--max-batch-rows', '100').code, 0);
  assert.equal((await kn.data.arrowFileInfo(split)).batches, [100, 100, 40]);
  assert.equal([...kn.data.readArrow(split).getChild('species')!], [...rowsOf.getChild('species')!]);
  for (const [args, re] of [
    [[csv, join(dir, 'x.parquet'), '--max-batch-rows', '10'], /--max-batch-rows applies to an Arrow output/],
    [[csv, join(dir, 'x.arrow'), '--max-batch-rows', '0'], /--max-batch-rows must be a positive integer, got '0'/],
    [
      [csv, join(dir, 'x.arrow'), '--compression', 'zstd'],
      /--row-group-size and --compression apply to a Parquet output/,
    ],
    [[csv, join(dir, 'x.parquet'), '--columns', 'nope'], /iris\.csv has no column 'nope'; it has a, b, species/],
    [[csv, join(dir, 'x.parquet'), '--compression', 'rar'], /compression must be one of none, snappy/],
    [[csv], /convert takes an input and an output file, got 1/],
  ] as const) {
    const e = cli('convert', ...args);
    assert.is(e.code, 2, `${args.join(' ')}: ${e.out}`);
    assert.match(e.err, re);
  }
  const tc = cli('train', csv, '--label', 'species', '-o', join(dir, 'csv.safetensors'), '--epochs', '1', '--json');
  assert.is(tc.code, 0, tc.err);
  assert.equal(JSON.parse(tc.out.trim().split('\n').at(-1)!).classNames, ['setosa', 'versicolor', 'virginica']);
  const a = Float32Array.from(rowsOf.getChild('a')!.toArray() as Float32Array);
  a[173] = NaN;
  kn.data.writeParquet(grouped, new A.Table({ a: A.makeVector(a), b: rowsOf.getChild('b')! }), { rowGroupSize: 50 });
  // row 173 is in the fourth row group: with batches of 50 three row groups' answers have gone to the Parquet
  // writer when it fails, and still nothing is written (the old output stays)
  const before = readFileSync(pq);
  const pb = cli('predict', model, grouped, '-o', pq, '--batch-size', '50');
  assert.is(pb.code, 2, pb.out);
  assert.match(pb.err, /grouped\.parquet: feature 'a' of row 173 is missing or not finite/);
  assert.equal(readFileSync(pq), before, 'the earlier output is still there');
  assert.equal(
    readdirSync(dir).filter((f) => f.includes('.tmp-')),
    [],
    'no temp file is left',
  );

  // fine-tuning on an Arrow file (plain strings) that holds two of the classes, on the js backend: the saved
  // order stands, so virginica stays class 2
  const more = join(dir, 'more.arrow');
  writeFileSync(
    more,
    A.tableToIPC(
      table(60, (i) => (i % 2 ? 'virginica' : 'setosa')),
      'file',
    ),
  );
  const tuned = join(dir, 'tuned.safetensors');
  const f = cli('train', more, '--label', 'species', '--model', model, '-o', tuned, '--epochs', '2', '--backend', 'js');
  assert.is(f.code, 0, f.err);
  assert.match(
    f.out,
    /saved \S+tuned\.safetensors \(fine-tuning \S+m\.safetensors, classification, 2 features, 3 classes\)/,
  );
  const t2 = await kn.io.loadModel(tuned);
  assert.equal(JSON.parse(t2.metadata['kiln.classes']!), ['setosa', 'versicolor', 'virginica']);
  assert.equal(Array.from(t2.model.call(probe).argmax(1).toArray()), [0, 1, 2]);

  // a class the model does not know, a model trained on indices, a backend that does not exist
  const odd = join(dir, 'odd.arrow');
  centres.rosa = [9, 9];
  writeFileSync(
    odd,
    A.tableToIPC(
      table(6, (i) => (i === 4 ? 'rosa' : 'setosa')),
      'file',
    ),
  );
  const u = cli('train', odd, '--label', 'species', '--model', model, '-o', tuned);
  assert.is(u.code, 2, u.out);
  assert.match(
    u.err,
    /odd\.arrow: label of row 4 is "rosa", which is not one of the classes "setosa", "versicolor", "virginica"/,
  );
  const ints = join(dir, 'ints.safetensors');
  await kn.io.save(ints, new kn.nn.Linear(2, 3));
  const nf = cli('predict', ints, data, '-o', join(dir, 'x.parquet'));
  assert.is(nf.code, 2, nf.out);
  assert.match(nf.err, /ints\.safetensors does not name its feature columns .*pass --features/);
  const i2 = cli('train', data, '--label', 'species', '--model', ints, '-o', tuned);
  assert.is(i2.code, 2, i2.out);
  assert.match(
    i2.err,
    /ints\.safetensors was trained on class indices \(it has no kiln\.classes\); the label 'species' holds strings/,
  );
  const b = cli('train', data, '--label', 'species', '-o', tuned, '--backend', 'tpu');
  assert.is(b.code, 2, b.out);
  assert.match(b.err, /tpu/);
  rmSync(dir, { recursive: true, force: true });
});

test('kiln quantize and kiln prune: files in, smaller files out, reports; bad arguments exit 2', async () => {
  const kn = await import('../src/index.js');
  const dir = tempDir('kiln-cli-q-');
  kn.seed(3);
  const model = new kn.nn.Sequential(new kn.nn.Linear(64, 128), new kn.nn.ReLU(), new kn.nn.Linear(128, 4));
  const file = join(dir, 'm.safetensors');
  await kn.io.save(file, model);
  kn.data.writeArrow(join(dir, 'calib.arrow'), { x: kn.randn([200, 64]) });
  const q = cli(
    'quantize',
    file,
    '--scheme',
    'int8',
    '--calib',
    join(dir, 'calib.arrow'),
    '-o',
    join(dir, 'q.safetensors'),
    '--json',
  );
  assert.is(q.code, 0, q.err);
  const rep = JSON.parse(q.out);
  assert.ok(rep.bytesBefore / rep.bytesAfter > 3, JSON.stringify(rep));
  assert.ok(rep.sqnrDb > 30);
  assert.equal(
    rep.layers.map((l: { quantized: string }) => l.quantized),
    ['int8', 'int8'],
  );
  const { model: qm } = await kn.io.loadModel(join(dir, 'q.safetensors'));
  assert.ok((qm as InstanceType<typeof kn.nn.Sequential>).layers[0] instanceof kn.quant.QuantLinear);
  const text = cli('quantize', file, '--scheme', 'int4', '--group-size', '32', '-o', join(dir, 'q4.safetensors'));
  assert.is(text.code, 0, text.err);
  assert.match(text.out, /scheme int4/);
  const p = cli('prune', file, '--amount', '0.5', '--structured', '-o', join(dir, 'p.safetensors'), '--json');
  assert.is(p.code, 0, p.err);
  const pr = JSON.parse(p.out);
  assert.ok(pr.paramsAfter < pr.paramsBefore * 0.6, JSON.stringify(pr));
  assert.equal(pr.layers, [{ name: '0', before: 128, after: 64 }]);
  const mag = cli('prune', file, '--amount', '0.5', '--scope', 'global', '-o', join(dir, 'pm.safetensors'));
  assert.is(mag.code, 0, mag.err);
  assert.match(mag.out, /weight sparsity 50\.0%/);
  const noCalib = cli('quantize', file, '--scheme', 'int8', '-o', join(dir, 'x.safetensors'));
  assert.is(noCalib.code, 2);
  assert.match(noCalib.err, /calibration data/);
  const noOut = cli('prune', file, '--amount', '0.5');
  assert.is(noOut.code, 2);
  assert.match(noOut.err, /needs -o/);
  const badCols = cli(
    'quantize',
    file,
    '--scheme',
    'int8',
    '--calib',
    join(dir, 'calib.arrow'),
    '--input-shape',
    '4',
    '-o',
    join(dir, 'x.safetensors'),
  );
  assert.is(badCols.code, 2);
  assert.match(badCols.err, /has 64 columns per row, the model takes 4 values/);
});

test('kiln bench MODEL runs every configuration this machine has, with onnxruntime as a peer', async () => {
  const kn = await import('../src/index.js');
  const dir = tempDir('kiln-bench-model-');
  kn.seed(2);
  // the demo's two models: an MLP (input shape from its first Linear) and a small CNN (shape in the metadata)
  const mlp = new kn.nn.Sequential(new kn.nn.Linear(64, 32), new kn.nn.ReLU(), new kn.nn.Linear(32, 10));
  const cnn = new kn.nn.Sequential(
    new kn.nn.Conv2d(1, 4, 3, { padding: 1 }),
    new kn.nn.ReLU(),
    new kn.nn.MaxPool2d(2),
    new kn.nn.Flatten(),
    new kn.nn.Linear(4 * 4 * 4, 10),
  );
  await kn.io.save(join(dir, 'mlp.safetensors'), mlp);
  await kn.io.save(join(dir, 'cnn.safetensors'), cnn, {
    metadata: { [kn.serve.INPUT_SHAPE_METADATA_KEY]: '[1, 8, 8]' },
  });
  const backends = kn.backends();
  for (const name of ['mlp', 'cnn']) {
    const r = cli(
      'bench',
      join(dir, `${name}.safetensors`),
      '--batch',
      '1,4',
      '--min-time-ms',
      '1',
      '--json',
      '--compare',
    );
    assert.is(r.code, 0, r.err);
    const rows = r.out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    for (const b of ['cpu', 'js', 'webgpu', 'cuda']) {
      for (const q of ['none', 'int8', 'int4']) {
        const mine = rows.filter((x) => x.engine === 'kiln' && x.backend === b && x.quant === q);
        if (!backends.includes(b as never)) {
          assert.is(mine.length, 1, `${name} ${b} ${q}`);
          assert.match(String(mine[0]!.reason), /is not available here/);
          continue;
        }
        // cpu: threads 1 and all; other backends: one setting; batches 1 and 4
        const threads = b === 'cpu' ? new Set(rows.filter((x) => x.backend === 'cpu').map((x) => x.threads)).size : 1;
        assert.is(mine.length, 2 * threads, `${name} ${b} ${q}: ${JSON.stringify(mine)}`);
        for (const x of mine) {
          assert.ok((x.p50Ms as number) > 0 && (x.p99Ms as number) >= (x.p50Ms as number), JSON.stringify(x));
          assert.ok((x.peakBytes as number) > 0);
          // output agreement with the float model: float32 kernels near-exact, int8 / int4 within their noise
          const floor = q === 'none' ? 60 : q === 'int8' ? 20 : 10;
          // (null in JSON: identical to the reference, as the js backend's own float model is)
          if (x.sqnrDb !== null)
            assert.ok((x.sqnrDb as number) > floor, `${name} ${b} ${q} SQNR ${x.sqnrDb as number}`);
          else assert.ok(b === 'js' && q === 'none');
          assert.type(x.vsOnnx, 'number'); // --compare: a ratio to onnxruntime on the same configuration
        }
      }
    }
    const ort = rows.filter((x) => x.engine === 'onnxruntime' && x.quant === 'none');
    assert.ok(ort.length >= 2, JSON.stringify(ort));
    for (const x of ort) assert.ok((x.sqnrDb as number) > 60);
  }
  // the text table, and clear errors
  const text = cli(
    'bench',
    join(dir, 'mlp.safetensors'),
    '--backends',
    'cpu',
    '--quant',
    'none',
    '--batch',
    '2',
    '--threads',
    '1',
    '--min-time-ms',
    '1',
    '--no-onnx',
  );
  assert.is(text.code, 0, text.err);
  assert.match(
    text.out,
    /^engine\s+backend\s+quant\s+threads\s+batch\s+p50 ms\s+p99 ms\s+examples\/s\s+peak MB\s+SQNR dB/,
  );
  assert.match(text.out, /kiln\s+cpu\s+none\s+1\s+2\s/);
  await kn.io.save(join(dir, 'cnn-noshape.safetensors'), cnn);
  const noShape = cli('bench', join(dir, 'cnn-noshape.safetensors'), '--min-time-ms', '1');
  assert.is(noShape.code, 2);
  assert.match(noShape.err, /cannot tell the input shape .* pass --input-shape/);
  const badQuant = cli('bench', join(dir, 'mlp.safetensors'), '--quant', 'int3');
  assert.is(badQuant.code, 2);
  assert.match(badQuant.err, /--quant takes none, int8 or int4, got 'int3'/);
  const missing = cli('bench', join(dir, 'nope.safetensors'));
  assert.is(missing.code, 2);
  assert.match(missing.err, /nope\.safetensors/);
  mlp.dispose();
  cnn.dispose();
});

test.run();
