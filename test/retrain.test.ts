// The retraining pipeline (kiln pipeline): a better candidate is trained, compared on the holdout, registered and
// promoted; a worse one is refused; bad data stops at validation; a canary on a real server is judged on live
// requests and promoted there; a run killed mid-way resumes at the step it was in; runs start on a schedule and
// on a drift alert's webhook.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as kn from '../src/index.js';
import { throwsKiln, tempDir } from './helpers.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const W = [
  [2, -1, 0.5, 0],
  [-1, 2, 0, 0.5],
  [0, 0, -2, 1.5],
];

/** Rows x ~ N(0, 1) in 4 features, label = argmax(W x) (optionally shuffled: noise). */
function write(path: string, n: number, seed: number, noisy = false): void {
  kn.seed(seed);
  const x = kn.randn([n, 4]);
  const a = x.toArray() as Float32Array;
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const s = W.map((w) => w.reduce((acc, wj, j) => acc + wj * a[i * 4 + j]!, 0));
    y[i] = s.indexOf(Math.max(...s));
  }
  if (noisy) for (let i = 0; i < n; i++) y[i] = (y[i]! + 1 + (i % 2)) % 3; // every label wrong
  kn.data.writeParquet(path, { f: x, label: kn.tensor(y, [n], { dtype: 'int32' }) });
}

/** A directory with train/holdout data, a weak champion registered in production, and a pipeline spec. */
async function setup(extra: Partial<kn.serve.PipelineSpec> = {}): Promise<{ dir: string; spec: string; reg: string }> {
  const dir = tempDir('kiln-retrain-');
  write(join(dir, 'train.parquet'), 600, 1);
  write(join(dir, 'holdout.parquet'), 300, 2);
  kn.seed(7);
  const champion = new kn.nn.Sequential(new kn.nn.Linear(4, 3));
  await kn.io.save(join(dir, 'champion.safetensors'), champion, { metadata: { 'kiln.input_shape': '[4]' } });
  const reg = join(dir, 'registry');
  kn.registry.register(join(dir, 'champion.safetensors'), { name: 'clf', version: '1.0.0', dir: reg });
  kn.registry.promote('clf', '1.0.0', 'production', { dir: reg });
  const spec: kn.serve.PipelineSpec = {
    name: 'clf',
    registry: 'registry',
    workdir: 'work',
    data: { train: 'train.parquet', holdout: 'holdout.parquet', label: 'label' },
    train: { epochs: 15, lr: 0.05, batchSize: 32, seed: 3 },
    ...extra,
  };
  writeFileSync(join(dir, 'pipeline.json'), JSON.stringify(spec, null, 2));
  return { dir, spec: join(dir, 'pipeline.json'), reg };
}

function logOf(dir: string): { step: string; event: string; runId: string }[] {
  return readFileSync(join(dir, 'work', 'log.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { step: string; event: string; runId: string });
}

test('a better candidate is trained, beats the champion on the holdout, is registered and promoted', async () => {
  const { dir, spec, reg } = await setup();
  const st = await kn.serve.runPipeline(spec);
  assert.is(st.status, 'done', st.reason ?? '');
  assert.is(st.version, '1.1.0');
  const ev = st.steps.find((s) => s.name === 'evaluate')!.state.output!;
  assert.is(ev.metric, 'accuracy');
  assert.ok((ev.candidate as number) > 0.85, `candidate accuracy ${ev.candidate}`);
  assert.ok((ev.candidate as number) > (ev.champion as number) + 0.2, `champion ${ev.champion}`);
  // the accuracy the pipeline reports is the registered model's real accuracy on the holdout
  const prod = kn.registry.production('clf', { dir: reg })!;
  assert.is(prod.version, '1.1.0');
  assert.is(prod.lineage.parent, 'clf@1.0.0');
  const { model } = await kn.io.loadModel(prod.path);
  const h = kn.data.readParquet(join(dir, 'holdout.parquet'));
  const x = kn.data.arrowToMatrix(h, { columns: ['f.0', 'f.1', 'f.2', 'f.3'] });
  const pred = model.call(x).argmax(1).toArray() as Int32Array;
  const y = h.getChild('label')!.toArray() as Int32Array;
  assert.ok(Math.abs(pred.filter((p, i) => p === y[i]).length / y.length - (ev.candidate as number)) < 1e-9);
  assert.equal(
    st.steps.map((s) => [s.name, s.state.status]),
    [
      ['validate', 'done'],
      ['train', 'done'],
      ['evaluate', 'done'],
      ['gate', 'done'],
      ['register', 'done'],
      ['canary', 'done'],
      ['promote', 'done'],
    ],
  );
  assert.ok(logOf(dir).some((l) => l.step === 'run' && l.event === 'done'));
  // the state file on disk is the returned state
  assert.equal(JSON.parse(readFileSync(join(dir, 'work', 'state.json'), 'utf8')), JSON.parse(JSON.stringify(st)));
});

test('a worse candidate is refused: nothing is registered and production is unchanged', async () => {
  const { dir, spec, reg } = await setup();
  assert.is((await kn.serve.runPipeline(spec)).status, 'done'); // 1.1.0, a good model, in production
  write(join(dir, 'train.parquet'), 600, 5, true); // new data with wrong labels
  const st = await kn.serve.runPipeline(spec, { trigger: 'alert:FeatureDrift' });
  assert.is(st.status, 'rejected');
  assert.match(
    st.reason!,
    /the candidate's accuracy on the holdout is 0\.\d+, the champion's 0\.9\d+; it is not promoted/,
  );
  assert.is(kn.registry.production('clf', { dir: reg })!.version, '1.1.0');
  assert.equal(
    kn.registry.list('clf', { dir: reg }).map((v) => v.version),
    ['1.0.0', '1.1.0'],
  );
  assert.equal(
    st.steps.slice(3).map((s) => s.state.status),
    ['done', 'skipped', 'skipped', 'skipped'],
  );
  assert.is(st.trigger, 'alert:FeatureDrift');
  // a margin refuses an equal model too
  write(join(dir, 'train.parquet'), 600, 1);
  const strict = JSON.parse(readFileSync(spec, 'utf8')) as kn.serve.PipelineSpec;
  strict.minImprovement = 0.5;
  writeFileSync(spec, JSON.stringify(strict));
  const st2 = await kn.serve.runPipeline(spec);
  assert.is(st2.status, 'rejected');
  assert.match(st2.reason!, /a margin of 0.5 is required/);
});

test('bad data stops the run at validation with the reason; the spec is checked before anything runs', async () => {
  const { dir, spec } = await setup();
  const x = kn.randn([50, 4]);
  kn.data.writeParquet(join(dir, 'train.parquet'), { f: x, label: kn.zeros([50], { dtype: 'int32' }) });
  const st = await kn.serve.runPipeline(spec);
  assert.is(st.status, 'failed');
  assert.match(st.reason!, /validate: pipeline: .*train\.parquet has no row of class 1, 2|has 50 rows; at least 100/);
  const withNan = new Float32Array(800 * 4).fill(0.5);
  withNan[4 * 17 + 2] = NaN;
  kn.data.writeParquet(join(dir, 'train.parquet'), {
    f: kn.tensor(withNan, [800, 4]),
    label: kn.tensor(
      Int32Array.from({ length: 800 }, (_, i) => i % 3),
      [800],
      { dtype: 'int32' },
    ),
  });
  const st2 = await kn.serve.runPipeline(spec, { resume: false });
  assert.match(st2.reason!, /feature 'f.2' of row 17 is missing or not finite/);
  assert.throws(() => kn.serve.loadPipelineSpec({ name: 'x y' } as kn.serve.PipelineSpec), /name must be a model name/);
  assert.throws(
    () =>
      kn.serve.loadPipelineSpec({
        name: 'm',
        data: { train: 'a', holdout: 'b', label: 'y' },
        canary: { url: 'http://x', weight: 2 },
      }),
    /canary.weight must be in \(0, 1\]/,
  );
  // a misspelt setting fails the spec instead of leaving its default in place
  const base = { name: 'm', data: { train: 'a', holdout: 'b', label: 'y' } };
  const unknown: [object, RegExp][] = [
    [{ ...base, minImprovment: 0.1 }, /^pipeline: unknown key "minImprovment" \(the keys are name, workdir,/],
    [{ ...base, data: { ...base.data, minrows: 5 } }, /^pipeline: data: unknown key "minrows"/],
    [{ ...base, train: { epoch: 3 } }, /^pipeline: train: unknown key "epoch" \(the keys are epochs, batchSize,/],
    [{ ...base, canary: { url: 'http://x', wieght: 0.5 } }, /^pipeline: canary: unknown key "wieght"/],
    [{ ...base, train: 5 }, /^pipeline: train must be an object, got 5/],
  ];
  for (const [sp, re] of unknown)
    throwsKiln(() => kn.serve.loadPipelineSpec(sp as kn.serve.PipelineSpec), kn.ValidationError, re);
  assert.is(kn.serve.loadPipelineSpec({ ...base, train: { epochs: 3 } }).spec.train!.epochs, 3);
});

test('canary on a live server: a run killed mid-canary resumes there, then promotes on the server and registry', async () => {
  const { dir, spec, reg } = await setup();
  const token = kn.serve.newApiKey().token;
  const srv = await kn.serve.createServer(join(reg, 'clf', '1.0.0', 'model.safetensors'), {
    port: 0,
    version: 'clf@1.0.0',
    modelDir: reg,
    maxDelayMs: 0,
    auth: { keys: { [token]: ['admin', 'predict'] } },
  });
  const s = JSON.parse(readFileSync(spec, 'utf8')) as kn.serve.PipelineSpec;
  s.canary = { url: srv.url, weight: 0.5, minRequests: 40, timeoutMs: 60_000 };
  writeFileSync(spec, JSON.stringify(s));
  let traffic = true;
  const send = (async () => {
    kn.seed(11);
    const rows = Array.from({ length: 64 }, () => Array.from(kn.randn([4]).toArray() as Float32Array));
    let i = 0;
    while (traffic) {
      if (srv.versions().length > 1) await srv.predict(rows[i++ % rows.length]!);
      await sleep(5);
    }
  })();
  try {
    for (let i = 0; i < 400 && !srv.ready; i++) await sleep(10);
    // the first run, in a child process, is killed once the canary is deployed (no traffic flows meanwhile)
    traffic = false;
    await send;
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'pipeline', 'run', spec], {
      env: { ...process.env, KILN_API_KEY: token },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<void>((r) => child.on('exit', () => r()));
    for (let i = 0; i < 1200 && !srv.versions().some((v) => v.version === 'clf@1.1.0'); i++) await sleep(50);
    assert.ok(
      srv.versions().some((v) => v.version === 'clf@1.1.0' && v.role === 'canary'),
      out,
    );
    child.kill('SIGKILL');
    await exited;
    const mid = JSON.parse(readFileSync(join(dir, 'work', 'state.json'), 'utf8')) as kn.serve.PipelineState;
    assert.is(mid.status, 'running');
    assert.is(mid.steps.find((x) => x.name === 'canary')!.state.status, 'running');
    // resume in process with live traffic: the finished steps are not run again
    traffic = true;
    const feeding = (async () => {
      kn.seed(12);
      const rows = Array.from({ length: 64 }, () => Array.from(kn.randn([4]).toArray() as Float32Array));
      let i = 0;
      // a loop of in-process predictions can run on microtasks alone: let the HTTP side have its turn
      while (traffic) {
        await srv.predict(rows[i++ % rows.length]!);
        await new Promise((r) => setImmediate(r));
      }
    })();
    const prevKey = process.env.KILN_API_KEY;
    process.env.KILN_API_KEY = token;
    let st: kn.serve.PipelineState;
    try {
      st = await kn.serve.runPipeline(spec);
    } finally {
      process.env.KILN_API_KEY = prevKey;
      traffic = false;
      await feeding;
    }
    assert.is(st.status, 'done', st.reason ?? '');
    assert.is(st.runId, mid.runId, 'the same run, resumed');
    const resumedLog = logOf(dir).filter((l) => l.runId === st.runId);
    for (const step of ['validate', 'train', 'evaluate', 'gate', 'register'])
      assert.ok(
        resumedLog.some((l) => l.step === step && l.event === 'already done'),
        `${step} not redone`,
      );
    assert.is(resumedLog.filter((l) => l.step === 'train' && l.event === 'start').length, 1, 'trained once');
    const canary = st.steps.find((x) => x.name === 'canary')!.state.output!;
    assert.ok((canary.requests as number) >= 40);
    assert.is(srv.version, 'clf@1.1.0', 'promoted on the server');
    assert.is(kn.registry.production('clf', { dir: reg })!.version, '1.1.0');
    assert.is((await srv.predict([1, 0, 0, 0])).version, 'clf@1.1.0');
  } finally {
    traffic = false;
    await srv.close();
  }
});

test('watchPipeline: a firing drift alert posted to its webhook starts a run; a schedule starts runs', async () => {
  const { spec } = await setup({ train: { epochs: 2, lr: 0.05, batchSize: 64, seed: 1 } });
  const w = await kn.serve.watchPipeline(spec, { port: 0, alerts: ['FeatureDrift'] });
  try {
    const post = (body: object): Promise<Response> =>
      fetch(w.url!, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const ignored = await post({ status: 'firing', alerts: [{ status: 'firing', labels: { alertname: 'Latency' } }] });
    assert.equal(await ignored.json(), { triggered: false });
    const resolved = await post({ status: 'resolved', alerts: [{ labels: { alertname: 'FeatureDrift' } }] });
    assert.equal(await resolved.json(), { triggered: false });
    const r = await post({ status: 'firing', alerts: [{ status: 'firing', labels: { alertname: 'FeatureDrift' } }] });
    assert.is(r.status, 202);
    for (let i = 0; i < 600 && w.runs.length === 0; i++) await sleep(50);
    assert.is(w.runs.length, 1);
    assert.is(w.runs[0]!.trigger, 'alert:FeatureDrift');
    assert.ok(['done', 'rejected'].includes(w.runs[0]!.status), w.runs[0]!.reason ?? '');
    assert.is((await fetch(w.url!, { method: 'POST', body: 'not json' })).status, 400);
  } finally {
    await w.close();
  }
  const sched = await kn.serve.watchPipeline(spec, { everyMs: 200 });
  try {
    for (let i = 0; i < 600 && sched.runs.length < 2; i++) await sleep(50);
    assert.ok(sched.runs.length >= 2, 'the schedule ran twice');
    assert.ok(sched.runs.every((r) => r.trigger === 'schedule'));
  } finally {
    await sched.close();
  }
  assert.ok(existsSync(spec));
});

test.run();
