// kn.track: the MLflow file-store layout (checked field by field against what MLflow's FileStore reads), names that
// must not become paths, parameters that cannot change, whole metric lines under concurrent writers and a torn
// tail, TensorBoard event files read back by an independent reader written here (its own bitwise CRC-32C and
// protobuf decoding), and fit's tracker.
import { spawn, spawnSync } from 'node:child_process';
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parse } from 'yaml';
import * as kn from '../src/index.js';
import { MlflowTestServer } from './mlflow-server.js';
import { tempDir } from './helpers.js';

const tmp = (): string => tempDir('kiln-track-');

test('a run in MLflow file-store layout: meta.yaml, params, metrics lines, tags, artifacts, end', () => {
  const dir = tmp();
  try {
    const run = kn.track.startRun({ dir, experiment: 'mnist', runName: 'first', tags: { team: 'vision' } });
    assert.is(run.experimentId, '1', 'a new experiment gets the next id (0 is Default)');
    const exp = parse(readFileSync(join(dir, '1', 'meta.yaml'), 'utf8')) as Record<string, unknown>;
    assert.is(exp.name, 'mnist');
    assert.is(exp.experiment_id, '1');
    assert.is(exp.lifecycle_stage, 'active');
    let meta = parse(readFileSync(join(run.dir, 'meta.yaml'), 'utf8')) as Record<string, unknown>;
    assert.is(meta.run_id, run.id);
    assert.is(meta.run_uuid, run.id);
    assert.is(meta.status, 1, 'RUNNING');
    assert.is(meta.end_time, null);
    assert.match(String(meta.artifact_uri), /^file:\/\/.*\/artifacts$/);
    run.logParams({ lr: 0.001, layers: [784, 10], name: 'mlp' });
    run.logMetric('loss', 2.5, 0);
    run.logMetric('loss', 1.25, 1);
    run.logMetrics({ 'val/accuracy': 0.75 }, 1);
    run.setTag('note', 'hello');
    const file = join(dir, 'weights.bin');
    writeFileSync(file, 'abc');
    const dest = run.logArtifact(file, 'models');
    assert.ok(existsSync(dest) && dest.endsWith(join('artifacts', 'models', 'weights.bin')));
    assert.is(readFileSync(join(run.dir, 'params', 'lr'), 'utf8'), '0.001');
    assert.is(readFileSync(join(run.dir, 'params', 'layers'), 'utf8'), '[784,10]');
    const lines = readFileSync(join(run.dir, 'metrics', 'loss'), 'utf8')
      .trim()
      .split('\n');
    assert.is(lines.length, 2);
    assert.match(lines[1]!, /^\d{13} 1\.25 1$/, '"timestamp value step"');
    assert.is(readFileSync(join(run.dir, 'tags', 'team'), 'utf8'), 'vision');
    assert.is(readFileSync(join(run.dir, 'tags', 'mlflow.runName'), 'utf8'), 'first');
    assert.ok(existsSync(join(run.dir, 'tags', 'kiln.version')), 'reproducibility tags');
    assert.ok(existsSync(join(run.dir, 'tags', 'kiln.command')));
    run.end();
    meta = parse(readFileSync(join(run.dir, 'meta.yaml'), 'utf8')) as Record<string, unknown>;
    assert.is(meta.status, 3, 'FINISHED');
    assert.ok(typeof meta.end_time === 'number' && meta.end_time >= run.startTime);
    assert.throws(() => run.logMetric('loss', 1, 2), /has ended/);
    // read back
    const r = kn.track.readRun(run.dir, 'mnist');
    assert.is(r.status, 'FINISHED');
    assert.equal(
      r.metrics.get('loss')!.map((p) => [p.value, p.step]),
      [
        [2.5, 0],
        [1.25, 1],
      ],
    );
    assert.is(r.metrics.get('val/accuracy')![0]!.value, 0.75);
    assert.is(r.params.get('name'), 'mlp');
    const second = kn.track.startRun({ dir, experiment: 'mnist' });
    const other = kn.track.startRun({ dir });
    assert.is(second.experimentId, '1', 'the same experiment is found by name');
    assert.is(other.experimentId, '0', 'Default');
    const all = kn.track.listRuns(dir);
    assert.is(all.length, 3);
    assert.equal(
      kn.track
        .listRuns(dir, { experiment: 'mnist' })
        .map((x) => x.id)
        .sort(),
      [run.id, second.id].sort(),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('names that could escape the run directory are refused; params cannot change', () => {
  const dir = tmp();
  try {
    const run = kn.track.startRun({ dir });
    for (const bad of ['../x', '/abs', 'a//b', 'a\\b', '', 'a/../../b', '.', 'x\n'])
      assert.throws(() => run.logMetric(bad, 1), /is not allowed|non-empty string/, JSON.stringify(bad));
    assert.throws(() => run.logArtifact(join(dir, 'nope')), /is not a file/);
    run.logMetric('__proto__', 1); // a plain file name; names live in Maps, never object keys
    assert.is(kn.track.readRun(run.dir).metrics.get('__proto__')![0]!.value, 1);
    run.logParam('seed', 1);
    run.logParam('seed', 1); // the same value again is fine
    assert.throws(() => run.logParam('seed', 2), /param seed was already logged as "1"; params cannot change/);
    assert.throws(() => run.logMetric('m', 1, -1), /step must be an integer >= 0/);
    assert.throws(() => run.end('DONE' as 'FINISHED'), /status must be FINISHED, FAILED or KILLED/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('two processes appending to one metric leave whole lines; a torn tail is skipped when read', async () => {
  const dir = tmp();
  try {
    const run = kn.track.startRun({ dir, systemMetrics: false });
    const script = join(dir, 'writer.mjs');
    writeFileSync(
      script,
      `import { appendFileSync } from 'node:fs';
const [file, base] = process.argv.slice(2);
for (let i = 0; i < 20000; i++) appendFileSync(file, \`\${Date.now()} \${Number(base) + i} \${i}\\n\`);`,
    );
    const file = join(run.dir, 'metrics', 'shared');
    // two other processes and the run's own writer, all at once: the run logs until both have finished
    const kids = [0, 100000].map((b) => spawn(process.execPath, [script, file, String(b)], { stdio: 'ignore' }));
    const exits = kids.map((k) => new Promise<number | null>((ok) => k.on('close', ok)));
    let running = 2,
      mine = 0;
    void Promise.all(exits).then(() => (running = 0));
    while (running > 0) {
      run.logMetric('shared', 0.5, mine++);
      await new Promise((r) => setImmediate(r));
    }
    assert.equal(await Promise.all(exits), [0, 0]);
    appendFileSync(file, '1700000000000 12'); // a writer killed mid-line
    const pts = kn.track.readRun(run.dir).metrics.get('shared')!;
    assert.is(pts.length, 40000 + mine, 'every whole line, not the torn one');
    assert.ok(mine > 100, `the run wrote while the others did (${mine} lines)`);
    const lines = readFileSync(file, 'utf8').split('\n');
    assert.is(lines.filter((l) => l.split(' ').length === 3).length, 40000 + mine);
    // each writer's own lines are whole and in order
    const theirs = pts.filter((p) => p.value >= 100000).map((p) => p.value - 100000);
    assert.equal(
      theirs,
      Array.from({ length: 20000 }, (_, i) => i),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// ---- an independent TensorBoard reader: bitwise CRC-32C, hand-rolled protobuf decoding ----

function crc32cBitwise(b: Uint8Array): number {
  let c = ~0 >>> 0;
  for (const byte of b) {
    c ^= byte;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return ~c >>> 0;
}
const mask = (c: number): number => (((c >>> 15) | (c << 17)) + 0xa282ead8) >>> 0;

type Field = { no: number; wire: number; v: number | bigint | Uint8Array };
function fields(b: Uint8Array): Field[] {
  const out: Field[] = [];
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let i = 0;
  const varint = (): bigint => {
    let r = 0n,
      s = 0n;
    for (;;) {
      const x = b[i++]!;
      r |= BigInt(x & 0x7f) << s;
      if (!(x & 0x80)) return r;
      s += 7n;
    }
  };
  while (i < b.length) {
    const key = Number(varint());
    const no = key >> 3,
      wire = key & 7;
    if (wire === 0) out.push({ no, wire, v: varint() });
    else if (wire === 1) {
      out.push({ no, wire, v: dv.getFloat64(i, true) });
      i += 8;
    } else if (wire === 5) {
      out.push({ no, wire, v: dv.getFloat32(i, true) });
      i += 4;
    } else if (wire === 2) {
      const n = Number(varint());
      out.push({ no, wire, v: b.subarray(i, i + n) });
      i += n;
    } else throw new Error(`wire type ${wire}`);
  }
  return out;
}
const packedDoubles = (b: Uint8Array): number[] => {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return Array.from({ length: b.length / 8 }, (_, k) => dv.getFloat64(k * 8, true));
};

function readEvents(file: string) {
  const buf = readFileSync(file);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const events: {
    wallTime: number;
    step: number;
    fileVersion?: string;
    tag?: string;
    scalar?: number;
    histo?: Record<string, unknown>;
  }[] = [];
  let i = 0;
  while (i < buf.length) {
    const len = Number(dv.getBigUint64(i, true));
    assert.is(dv.getUint32(i + 8, true), mask(crc32cBitwise(buf.subarray(i, i + 8))), 'length CRC');
    const data = buf.subarray(i + 12, i + 12 + len);
    assert.is(dv.getUint32(i + 12 + len, true), mask(crc32cBitwise(data)), 'data CRC');
    i += 16 + len;
    const ev: (typeof events)[number] = { wallTime: 0, step: 0 };
    for (const f of fields(data)) {
      if (f.no === 1) ev.wallTime = f.v as number;
      if (f.no === 2) ev.step = Number(f.v);
      if (f.no === 3) ev.fileVersion = new TextDecoder().decode(f.v as Uint8Array);
      if (f.no === 5)
        for (const val of fields(f.v as Uint8Array).filter((x) => x.no === 1))
          for (const g of fields(val.v as Uint8Array)) {
            if (g.no === 1) ev.tag = new TextDecoder().decode(g.v as Uint8Array);
            if (g.no === 2) ev.scalar = g.v as number;
            if (g.no === 5) {
              const h: Record<string, unknown> = {};
              for (const x of fields(g.v as Uint8Array)) {
                const name = ['', 'min', 'max', 'num', 'sum', 'sumSquares', 'bucketLimit', 'bucket'][x.no]!;
                h[name] = x.wire === 2 ? packedDoubles(x.v as Uint8Array) : x.v;
              }
              ev.histo = h;
            }
          }
    }
    events.push(ev);
  }
  assert.is(i, buf.length, 'no trailing bytes');
  return events;
}

test('TensorBoard events: TFRecord framing with masked CRC-32C, scalars and histograms, read independently', () => {
  const dir = tmp();
  try {
    assert.is(kn.track.crc32c(new TextEncoder().encode('123456789')), 0xe3069283, 'the CRC-32C check value');
    const run = kn.track.startRun({ dir, tensorboard: true, systemMetrics: false });
    run.logMetric('loss', 0.5, 3);
    run.logHistogram('w', [1, 2, 2, 3, 10], 7);
    const ev = readEvents(run.tensorboardFile!);
    assert.is(ev[0]!.fileVersion, 'brain.Event:2');
    assert.is(ev[1]!.tag, 'loss');
    assert.is(ev[1]!.step, 3);
    assert.ok(Math.abs(ev[1]!.scalar! - 0.5) < 1e-7);
    assert.ok(Math.abs(ev[1]!.wallTime - Date.now() / 1000) < 60);
    const h = ev[2]!.histo!;
    assert.equal([h.min, h.max, h.num, h.sum, h.sumSquares], [1, 10, 5, 18, 118]);
    assert.is(
      (h.bucket as number[]).reduce((a, b) => a + b, 0),
      5,
    );
    assert.is((h.bucketLimit as number[]).at(-1), 10);
    assert.is(ev[2]!.step, 7);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('fit logs params, per-step loss, grad norms and per-epoch metrics to a tracker', async () => {
  const dir = tmp();
  try {
    kn.seed(1);
    const x = kn.randn([64, 4]);
    const y = kn.tensor(
      Array.from({ length: 64 }, (_, i) => i % 3),
      [64],
      { dtype: 'int32' },
    );
    const train = new kn.data.DataLoader(new kn.data.Dataset({ x, y }), { batchSize: 16, shuffle: true, seed: 1 });
    const val = new kn.data.DataLoader(new kn.data.Dataset({ x, y }), { batchSize: 64 });
    const model = new kn.nn.Sequential(new kn.nn.Linear(4, 8), new kn.nn.ReLU(), new kn.nn.Linear(8, 3));
    const run = kn.track.startRun({ dir, tensorboard: true });
    const ckpt = join(dir, 'ckpt');
    await kn.train.fit(model, {
      train,
      val,
      loss: 'crossEntropy',
      optimizer: new kn.optim.Adam(model.parameters()),
      epochs: 2,
      metrics: ['accuracy'],
      verbose: 'silent',
      tracker: run,
      trackEvery: 2,
      checkpointDir: ckpt,
    });
    run.end();
    const r = kn.track.readRun(run.dir);
    // reproducibility: the seed given to kn.seed and the loader's seed
    assert.is(r.params.get('seed'), '1');
    assert.is(r.params.get('loader_seed'), '1');
    assert.is(r.tags.get('kiln.seed'), '1');
    // the final model and the checkpoints are artifacts; the model loads back with the trained weights
    const saved = await kn.io.load(join(run.dir, 'artifacts', 'model', 'model.safetensors'));
    assert.equal(saved['2.bias']!.toArray(), model.stateDict()['2.bias']!.toArray());
    assert.ok(existsSync(join(run.dir, 'artifacts', 'checkpoints', 'last.ckpt.safetensors')));
    assert.is(r.params.get('epochs'), '2');
    assert.is(r.params.get('optimizer'), 'Adam');
    assert.is(r.params.get('parameters'), String(4 * 8 + 8 + 8 * 3 + 3));
    assert.is(r.metrics.get('train/loss_step')!.length, 8, '4 batches x 2 epochs');
    assert.equal(
      r.metrics.get('train/grad_norm')!.map((p) => p.step),
      [0, 2, 4, 6],
    );
    assert.ok(r.metrics.get('train/grad_norm')!.every((p) => p.value > 0));
    assert.equal(
      r.metrics.get('val/loss')!.map((p) => p.step),
      [1, 2],
    );
    assert.is(r.metrics.get('val/accuracy')!.length, 2);
    assert.is(r.metrics.get('lr')![0]!.value, 3e-4);
    const ev = readEvents(run.tensorboardFile!);
    assert.ok(
      ev.some((e) => e.tag === 'weights/0.weight' && e.histo && e.step === 2),
      'first layer histogram',
    );
    assert.ok(ev.some((e) => e.tag === 'val/accuracy'));
    assert.ok(readdirSync(join(run.dir, 'tensorboard')).length === 1);
    let err: unknown = null;
    try {
      await kn.train.fit(model, {
        train,
        loss: 'crossEntropy',
        optimizer: new kn.optim.Adam(model.parameters()),
        epochs: 1,
        tracker: {} as kn.track.Run,
      });
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof kn.ArgumentError && /tracker must be a run/.test(err.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('kiln runs ls | show | compare: best first, one run in full, runs side by side', () => {
  const dir = tmp();
  try {
    const a = kn.track.startRun({ dir, runName: 'wide', systemMetrics: false });
    a.logParams({ width: 64 });
    a.logMetric('val/loss', 0.2, 1);
    a.end();
    const b = kn.track.startRun({ dir, runName: 'narrow', systemMetrics: false });
    b.logParams({ width: 8 });
    b.logMetric('val/loss', 0.9, 1);
    b.end();
    const cli = (...args: string[]) =>
      spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'runs', ...args, '--dir', dir], {
        encoding: 'utf8',
      });
    const ls = cli('ls');
    assert.is(ls.status, 0, ls.stderr);
    const lines = ls.stdout.trim().split('\n');
    assert.match(lines[0]!, /^run\s+name\s+experiment\s+status\s+width\s+val\/loss$/);
    assert.match(lines[1]!, new RegExp(`^${a.id.slice(0, 8)}\\s+wide\\s+Default\\s+FINISHED\\s+64\\s+0\\.2000$`));
    assert.match(lines[2]!, /narrow/);
    assert.match(cli('ls', '--max').stdout.trim().split('\n')[1]!, /narrow/, '--max puts the highest first');
    const show = cli('show', b.id.slice(0, 6));
    assert.is(show.status, 0, show.stderr);
    assert.match(show.stdout, /run [0-9a-f]{32} \(narrow\) in experiment Default \[0\]: FINISHED/);
    assert.match(show.stdout, /val\/loss = 0\.9000 @ 1 \(1\)/);
    const cmp = cli('compare', 'wide', 'narrow');
    assert.match(cmp.stdout, /width\s+64\s+8/);
    const bad = cli('show', 'nosuchrun');
    assert.is(bad.status, 2);
    assert.match(bad.stderr, /no run 'nosuchrun'/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('fingerprints: equal data, equal hash; a changed value, name or type changes it; Arrow tables too', async () => {
  const a = kn.track.fingerprint({
    x: kn.tensor([
      [1, 2],
      [3, 4],
    ]),
    y: kn.tensor([0, 1], [2], { dtype: 'int32' }),
  });
  const same = kn.track.fingerprint(
    new kn.data.Dataset({
      y: kn.tensor([0, 1], [2], { dtype: 'int32' }),
      x: kn.tensor([
        [1, 2],
        [3, 4],
      ]),
    }),
  );
  assert.is(a.hash, same.hash, 'column order does not matter; a Dataset and a record agree');
  assert.is(a.rows, 2);
  assert.equal(a.schema, [
    { name: 'x', type: 'float32', shape: [2] },
    { name: 'y', type: 'int32', shape: [] },
  ]);
  const x = (last: number): kn.Tensor => kn.tensor([1, 2, 3, last], [2, 2]);
  const y = (dtype: 'int32' | 'float32'): kn.Tensor => kn.tensor([0, 1], [2], { dtype });
  assert.is(kn.track.fingerprint({ x: x(4), y: y('int32') }).hash, a.hash);
  assert.is.not(kn.track.fingerprint({ x: x(5), y: y('int32') }).hash, a.hash, 'a changed value');
  assert.is.not(kn.track.fingerprint({ x: x(4), z: y('int32') }).hash, a.hash, 'a renamed column');
  assert.is.not(kn.track.fingerprint({ x: x(4), y: y('float32') }).hash, a.hash, 'a changed type');
  const { tableFromArrays } = await import('apache-arrow');
  const t1 = kn.track.fingerprint(tableFromArrays({ a: new Float32Array([1, 2]), b: ['x', 'y'] }));
  const t2 = kn.track.fingerprint(tableFromArrays({ a: new Float32Array([1, 2]), b: ['x', 'z'] }));
  assert.is(t1.rows, 2);
  assert.is.not(t1.hash, t2.hash, 'a changed string');
  // the rows a reader sees, whatever the slicing, chunking or bytes under null slots
  const A = await import('apache-arrow');
  const fp = (t: import('apache-arrow').Table): string => kn.track.fingerprint(t).hash;
  const whole = A.tableFromArrays({ a: new Float32Array([0, 1, 2, 3, 4, 5]), b: ['p', 'q', 'r', 's', 't', 'u'] });
  const fresh = A.tableFromArrays({ a: new Float32Array([2, 3, 4]), b: ['r', 's', 't'] });
  assert.is(fp(whole.slice(2, 5)), fp(fresh), 'a slice hashes as the same rows built afresh');
  assert.is.not(fp(whole.slice(3, 6)), fp(fresh), 'another slice does not');
  assert.is(fp(whole.slice(0, 2).concat(whole.slice(2, 6))), fp(whole), 'two chunks hash as one');
  const withNull = (under: number): import('apache-arrow').Table => {
    const data = A.makeData({
      type: new A.Float32(),
      length: 3,
      nullCount: 1,
      data: Float32Array.from([1, under, 3]),
      nullBitmap: Uint8Array.of(0b101),
    });
    return new A.Table({ a: A.makeVector(data) });
  };
  assert.is(fp(withNull(99)), fp(withNull(-7)), 'what lies under a null does not count');
  assert.is.not(fp(withNull(99)), fp(A.tableFromArrays({ a: new Float32Array([1, 99, 3]) })), 'a null counts');
  assert.throws(() => kn.track.fingerprint({ x: kn.ones([2]), y: kn.ones([3]) }), /has 3 rows, not 2/);
});

test('system metrics are sampled at start, in the background and at end; datasets are logged with the run', async () => {
  const dir = tmp();
  try {
    const run = kn.track.startRun({ dir, systemMetrics: 20 });
    await new Promise((r) => setTimeout(r, 120));
    run.logDataset('train', { x: kn.ones([4, 2]) });
    run.end();
    const r = kn.track.readRun(run.dir);
    const rss = r.metrics.get('system/rss_mb')!;
    assert.ok(rss.length >= 3, `${rss.length} samples`);
    assert.ok(
      rss.every((p) => p.value > 10 && p.value < 1e5),
      'RSS in MiB',
    );
    assert.equal(
      rss.map((p) => p.step),
      rss.map((_, i) => i),
    );
    assert.ok(r.metrics.get('system/cpu_percent')!.every((p) => p.value >= 0));
    assert.match(r.tags.get('dataset.train')!, /^sha256:[0-9a-f]{64} rows=4$/);
    const saved = JSON.parse(readFileSync(join(run.dir, 'artifacts', 'datasets', 'train.json'), 'utf8'));
    assert.is(saved.rows, 4);
    const quiet = kn.track.startRun({ dir, systemMetrics: false });
    quiet.end();
    assert.not.ok(kn.track.readRun(quiet.dir).metrics.has('system/rss_mb'));
    assert.throws(() => kn.track.startRun({ dir, systemMetrics: 1 }), /systemMetrics must be an interval/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('GPU metrics come from nvidia-smi when it is on PATH, one series per device', async () => {
  // no GPU on this machine: a stand-in prints what nvidia-smi prints for the query kiln sends (and checks it)
  const dir = tmp();
  const bin = join(dir, 'bin');
  const path = process.env.PATH;
  try {
    mkdirSync(bin);
    writeFileSync(
      join(bin, 'nvidia-smi'),
      '#!/bin/sh\n[ "$1" = "--query-gpu=utilization.gpu,memory.used,memory.total" ] || exit 3\n' +
        'printf "37, 20480, 81920\\n5, 0, 81920\\n"\n',
      { mode: 0o755 },
    );
    process.env.PATH = `${bin}:${path}`;
    const run = kn.track.startRun({ dir, systemMetrics: 30 });
    await new Promise((r) => setTimeout(r, 400));
    run.end();
    const m = kn.track.readRun(run.dir).metrics;
    const util = m.get('system/gpu0_util_percent')!;
    assert.ok(util.length >= 2, `${util?.length} samples`);
    assert.ok(util.every((p) => p.value === 37));
    assert.ok(m.get('system/gpu0_memory_mb')!.every((p) => p.value === 20480));
    assert.ok(m.get('system/gpu0_memory_percent')!.every((p) => p.value === 25));
    assert.ok(m.get('system/gpu1_util_percent')!.every((p) => p.value === 5));
    const steps = new Set(m.get('system/rss_mb')!.map((p) => p.step));
    assert.ok(
      util.every((p) => steps.has(p.step)),
      'GPU samples share the steps of the CPU samples',
    );
  } finally {
    process.env.PATH = path;
    rmSync(dir, { recursive: true, force: true });
  }
});

test('registry: register with lineage and a model card, promote, compare, roll back', async () => {
  const dir = tmp();
  try {
    const reg = join(dir, 'registry');
    const store = join(dir, 'mlruns');
    const train = async (lr: number, epochs: number) => {
      kn.seed(2);
      const x = kn.randn([32, 4]);
      const y = kn.tensor(
        Array.from({ length: 32 }, (_, i) => i % 2),
        [32],
        { dtype: 'int32' },
      );
      const model = new kn.nn.Sequential(new kn.nn.Linear(4, 2));
      const run = kn.track.startRun({ dir: store, experiment: 'reg', systemMetrics: false });
      const loader = new kn.data.DataLoader(new kn.data.Dataset({ x, y }), { batchSize: 8 });
      await kn.train.fit(model, {
        train: loader,
        val: loader,
        loss: 'crossEntropy',
        optimizer: new kn.optim.Adam(model.parameters(), { lr }),
        epochs,
        metrics: ['accuracy'],
        verbose: 'silent',
        tracker: run,
      });
      const file = join(dir, `model-${lr}.safetensors`);
      await kn.io.save(file, model);
      run.end();
      return { run, file };
    };
    const a = await train(1e-3, 1);
    const v1 = kn.registry.register(a.file, {
      name: 'clf',
      run: a.run.dir,
      dir: reg,
      card: {
        intendedUse: 'Demonstration only.',
        limitations: 'Trained on 32 random points.',
        segments: kn.evaluate.bySlice([0, 1, 1, 0], [0, 1, 0, 0], ['a', 'a', 'b', 'b'], { bootstrap: 0 }),
      },
    });
    assert.is(v1.version, '1.0.0');
    assert.is(v1.lineage.run!.id, a.run.id);
    assert.equal(
      v1.lineage.datasets.map((d) => [d.name, d.rows]),
      [
        ['train', 32],
        ['val', 32],
      ],
    );
    assert.match(v1.sha256, /^[0-9a-f]{64}$/);
    assert.ok(v1.metrics.some((m) => m.name === 'val/accuracy'));
    assert.ok(!v1.metrics.some((m) => m.name.startsWith('system/') || m.name.endsWith('_step')));
    const card = readFileSync(join(reg, 'clf', '1.0.0', 'MODEL_CARD.md'), 'utf8');
    for (const part of [
      '# Model card: clf 1.0.0',
      'Demonstration only.',
      '| train | 32 |',
      '| val/accuracy |',
      '### Per segment',
      '| b | 2 |',
      'Trained on 32 random points.',
      a.run.id,
    ])
      assert.ok(card.includes(part), `card has ${part}`);
    const b = await train(1e-2, 3);
    const v2 = kn.registry.register(b.file, { name: 'clf', run: b.run.dir, parent: 'clf@1.0.0', dir: reg });
    assert.is(v2.version, '1.1.0', 'the next minor version');
    assert.is(v2.lineage.parent, 'clf@1.0.0');
    assert.throws(
      () => kn.registry.register(b.file, { name: 'clf', version: '1.1.0', dir: reg }),
      /already registered/,
    );
    assert.throws(() => kn.registry.register(b.file, { name: '../x', dir: reg }), /model name must be/);
    assert.throws(() => kn.registry.register(b.file, { name: 'clf', version: 'v2', dir: reg }), /semantic version/);
    // a card field misspelt or malformed is refused before anything is written, not dropped from the card
    for (const [card, re] of [
      [{ intendedUse: 'x', limitation: 'y' }, /register card: unknown option "limitation"/],
      [{ intendedUse: 3 }, /register card: intendedUse must be a string, got 3/],
      [{ segments: [{ slice: 'a', count: 2 }] }, /register card: segments must be kn\.evaluate\.bySlice rows/],
    ] as const) {
      assert.throws(
        () => kn.registry.register(b.file, { name: 'clf', version: '9.0.0', dir: reg, card: card as never }),
        re,
      );
      assert.not.ok(existsSync(join(reg, 'clf', '9.0.0')), 'no version folder is left behind');
    }
    assert.throws(
      () => kn.registry.modelCard(v2, { intendedUse: 'x', segmets: [] } as never),
      /modelCard: unknown option "segmets"/,
    );
    kn.registry.promote('clf', '1.0.0', 'production', { dir: reg });
    kn.registry.promote('clf', '1.1.0', 'production', { dir: reg });
    assert.equal(
      kn.registry.list('clf', { dir: reg }).map((m) => [m.version, m.stage]),
      [
        ['1.0.0', 'archived'],
        ['1.1.0', 'production'],
      ],
    );
    const cmp = kn.registry.compare('clf', '1.0.0', '1.1.0', { dir: reg });
    const loss = cmp.find((c) => c.metric === 'train/loss')!;
    assert.ok(loss.diff !== null && Math.abs(loss.diff - (loss.b! - loss.a!)) < 1e-12);
    const back = kn.registry.rollback('clf', { dir: reg });
    assert.is(back.version, '1.0.0');
    assert.is(kn.registry.production('clf', { dir: reg })!.version, '1.0.0');
    assert.equal(
      kn.registry.list('clf', { dir: reg })[0]!.history.map((h) => h.stage),
      ['none', 'production', 'archived', 'production'],
    );
    assert.throws(() => kn.registry.rollback('clf', { dir: reg }), /first production version/);
    assert.throws(
      () => kn.registry.promote('clf', '1.0.0', 'live' as 'production', { dir: reg }),
      /stage must be one of/,
    );
    const { model } = await kn.io.loadModel(kn.registry.production('clf', { dir: reg })!.path);
    assert.ok(model instanceof kn.nn.Module, 'the registered file loads');
    // the same through the CLI
    const cli = (...args: string[]) =>
      spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'registry', ...args, '--dir', reg], {
        encoding: 'utf8',
      });
    const reg3 = cli('register', b.file, '--name', 'clf', '--version', '2.0.0', '--intended-use', 'CLI test');
    assert.is(reg3.status, 0, reg3.stderr);
    assert.match(reg3.stdout, /^registered clf@2\.0\.0/);
    assert.match(cli('promote', 'clf', '2.0.0', 'production').stdout, /clf@2\.0\.0 is now production/);
    assert.match(cli('ls', 'clf').stdout, /clf@2\.0\.0 +production/);
    assert.match(cli('card', 'clf', '2.0.0').stdout, /CLI test/);
    assert.match(cli('rollback', 'clf').stdout, /production is 1\.0\.0 again/);
    const bad = cli('promote', 'clf', '9.9.9', 'production');
    assert.is(bad.status, 2);
    assert.match(bad.stderr, /the registry has no model clf@9\.9\.9/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a run mirrored to an MLflow server: params, metrics in batches, tags, artifacts, end; all kept locally', async () => {
  const dir = tmp();
  const srv = new MlflowTestServer();
  try {
    const uri = await srv.start();
    const run = kn.track.startRun({
      dir,
      experiment: 'mirror',
      runName: 'remote-1',
      trackingUri: uri,
      systemMetrics: false,
      remote: { flushEvery: false, backoffMs: 1 },
    });
    run.logParams({ lr: 0.001, layers: [64, 10] });
    for (let i = 0; i < 2500; i++) run.logMetric('train/loss_step', 1 / (i + 1), i);
    run.logMetric('odd', NaN, 0);
    run.logMetric('odd', -Infinity, 1);
    run.setTag('team', 'vision');
    const file = join(dir, 'weights.bin');
    writeFileSync(file, Buffer.from([1, 2, 3, 250]));
    run.logArtifact(file, 'models');
    run.logText('{"a":1}', 'notes/n.json');
    run.end('FINISHED');
    const r = await run.flush();
    assert.is(r.pending, 0);
    assert.is(r.sent, kn.track.readOutbox(run.dir).length);
    assert.is(srv.runs.size, 1);
    const sr = srv.runs.get(r.remoteRunId!)!;
    assert.is(sr.name, 'remote-1');
    assert.is(srv.experiments.get('mirror'), sr.experimentId);
    assert.is(sr.status, 'FINISHED');
    const local = kn.track.readRun(run.dir);
    assert.is(sr.endTime, local.endTime);
    assert.equal([...sr.params].sort(), [...local.params].sort());
    assert.is(sr.tags.get('team'), 'vision');
    assert.is(sr.tags.get('kiln.local_run_id'), run.id);
    assert.is(sr.tags.get('kiln.version'), local.tags.get('kiln.version'));
    const pts = sr.metrics.get('train/loss_step')!;
    assert.is(pts.length, 2500);
    assert.equal(
      pts.map((p) => [p.step, p.value]),
      local.metrics.get('train/loss_step')!.map((p) => [p.step, p.value]),
    );
    assert.equal(
      sr.metrics.get('odd')!.map((p) => p.value),
      ['NaN', '-Infinity'],
    );
    // 2500 metric points need at least three log-batch requests (MLflow takes 1000 at most)
    assert.ok(srv.log.filter((l) => l.endsWith('runs/log-batch')).length >= 3);
    const root = `${sr.experimentId}/${sr.id}/artifacts`;
    assert.equal([...srv.artifacts.get(`${root}/models/weights.bin`)!], [1, 2, 3, 250]);
    assert.is(srv.artifacts.get(`${root}/notes/n.json`)!.toString(), '{"a":1}');
    // a second flush has nothing to send
    const n = srv.log.length;
    assert.is((await run.flush()).pending, 0);
    assert.is(srv.log.length, n);
  } finally {
    await srv.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('MLflow server down: logging goes on, nothing is lost, a later sync sends it once; lost answers make no duplicates', async () => {
  const dir = tmp();
  const srv = new MlflowTestServer();
  try {
    const uri = await srv.start();
    const port = srv.port;
    await srv.stop(); // the port now refuses connections
    const run = kn.track.startRun({
      dir,
      trackingUri: uri,
      systemMetrics: false,
      remote: { flushEvery: false, retries: 1, backoffMs: 1 },
    });
    run.logParams({ seed: 3 });
    for (let i = 0; i < 50; i++) run.logMetric('loss', 2 - i / 50, i);
    run.end();
    try {
      await run.flush();
      assert.unreachable('sent to a closed port');
    } catch (e) {
      assert.instance(e, kn.TrackingError);
      assert.match((e as Error).message, /did not answer after 2 tries .*ECONNREFUSED/);
    }
    assert.is(kn.track.readRun(run.dir).metrics.get('loss')!.length, 50, 'the local store has everything');
    // the server comes back; the create and a log-batch are done but their answers are lost on the way
    await srv.start(port);
    srv.lose.add('runs/create');
    srv.lose.add('runs/log-batch');
    srv.fail = 2; // and it answers 503 twice first
    const res = await kn.track.syncRuns(dir, { remote: { retries: 4, backoffMs: 1 } });
    assert.equal(
      res.map((r) => [r.runId, r.pending, r.error]),
      [[run.id, 0, null]],
    );
    assert.is(srv.runs.size, 1, 'one run on the server although its create was answered by a dropped connection');
    const sr = [...srv.runs.values()][0]!;
    assert.is(sr.metrics.get('loss')!.length, 50, 'every point once although a batch was sent twice');
    assert.is(sr.params.get('seed'), '3');
    assert.is(sr.status, 'FINISHED');
    assert.is(srv.log.filter((l) => l.endsWith('runs/create')).length, 1, 'the lost create was found by search');
    assert.ok(srv.log.filter((l) => l.endsWith('runs/search')).length >= 2);
    assert.equal(await kn.track.syncRuns(dir), [], 'nothing left to send');
  } finally {
    await srv.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a process killed before it could send: kiln runs sync sends its outbox; refusals are clear errors', async () => {
  const dir = tmp();
  const srv = new MlflowTestServer();
  try {
    const uri = await srv.start();
    const port = srv.port;
    await srv.stop();
    // another process logs with MLFLOW_TRACKING_URI pointing at the (down) server and is killed mid-run
    const script = join(dir, 'child.mts');
    writeFileSync(
      script,
      `import * as kn from ${JSON.stringify(join(process.cwd(), 'src', 'index.ts'))};
const run = kn.track.startRun({ dir: ${JSON.stringify(dir)}, systemMetrics: false, remote: { retries: 0, backoffMs: 1 } });
for (let i = 0; i < 200; i++) run.logMetric('loss', i, i);
process.stdout.write('logged\\n');
setInterval(() => {}, 1000);`,
    );
    const child = spawn(process.execPath, ['--import', 'tsx', script], {
      env: { ...process.env, MLFLOW_TRACKING_URI: uri, MLFLOW_EXPERIMENT_NAME: 'from-env' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    await new Promise<void>((ok, bad) => {
      child.stdout.on('data', (d: Buffer) => (d.toString().includes('logged') ? ok() : undefined));
      child.on('exit', (c) => bad(new Error(`child exited ${c}`)));
    });
    child.kill('SIGKILL');
    await new Promise((r) => child.once('close', r));
    await srv.start(port);
    // asynchronously: the server runs in this process
    const cli = await new Promise<{ status: number | null; stdout: string; stderr: string }>((ok) => {
      const p = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'runs', 'sync', '--dir', dir]);
      let stdout = '',
        stderr = '';
      p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      p.on('close', (status) => ok({ status, stdout, stderr }));
    });
    assert.is(cli.status, 0, cli.stderr + cli.stdout);
    assert.match(cli.stdout, /sent, server run srv\d+ {2}\d+ operations on the server, 0 pending/);
    const sr = [...srv.runs.values()][0]!;
    assert.is(srv.experiments.has('from-env'), true);
    assert.is(sr.metrics.get('loss')!.length, 200);
    assert.is(sr.status, 'RUNNING', 'killed before end(): the server shows it still running, as MLflow would');
    // a server that wants a token refuses without one: a TrackingError with its code, no retry storm
    srv.token = 'secret';
    const run = kn.track.startRun({ dir, trackingUri: uri, systemMetrics: false, remote: { flushEvery: false } });
    const before = srv.log.length;
    try {
      await run.flush();
      assert.unreachable('sent without a token');
    } catch (e) {
      assert.instance(e, kn.TrackingError);
      assert.match((e as Error).message, /refused GET .*401 UNAUTHENTICATED: missing or wrong token/);
    }
    assert.is(srv.log.length - before, 1, '4xx is not retried');
    const ok = kn.track.startRun({
      dir,
      trackingUri: uri,
      systemMetrics: false,
      remote: { flushEvery: false, token: 'secret' },
    });
    ok.end();
    assert.is((await ok.flush()).pending, 0);
  } finally {
    await srv.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a full disk while logging: a TrackingError naming the file, earlier lines intact, later lines whole', () => {
  const dir = tmp();
  try {
    const run = kn.track.startRun({ dir, systemMetrics: false });
    run.logMetric('ok', 1, 0);
    symlinkSync('/dev/full', join(run.dir, 'metrics', 'full'));
    try {
      run.logMetric('full', 1, 0);
      assert.unreachable('wrote to a full device');
    } catch (e) {
      assert.instance(e, kn.TrackingError);
      assert.match(
        (e as Error).message,
        /could not append to metric full \(.*full\): the disk is full; what the run wrote before is intact/,
      );
    }
    run.logMetric('ok', 2, 1);
    // a torn line left by a failed append: the next point starts on a fresh line and reads back
    const f = join(run.dir, 'metrics', 'ok');
    appendFileSync(f, '17000000');
    (run as unknown as { torn: Set<string> }).torn.add(f);
    run.logMetric('ok', 3, 2);
    assert.equal(
      kn.track
        .readRun(run.dir)
        .metrics.get('ok')!
        .map((p) => [p.value, p.step]),
      [
        [1, 0],
        [2, 1],
        [3, 2],
      ],
    );
    run.end();
    assert.is(kn.track.readRun(run.dir).status, 'FINISHED');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
