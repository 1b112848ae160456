// kn.distributed: samplers, the autograd hook, the launcher's command line and the library without MPI in this
// process; then real 2-rank jobs through `kiln launch` (Open MPI on loopback and shared memory; .ci/run installs
// it): every collective, DDP equal to one process on the same global batch, fit() with checkpoints resumed in a
// new job, a failing rank, and ranks that build different models. Scripts in test/dist/.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as kn from '../src/index.js';
import { onBackwardEnd, onGradReady } from '../src/autograd/backward.js';
import { launchCommand, launcherFlavor } from '../src/cli/launch.js';
import { maxWeightDiff, tempDir } from './helpers.js';

const d = kn.distributed;
const tmp = tempDir('kiln-dist-');

/** Runs `kiln launch ARGS` (the CLI through tsx), with a deadline: a hung job fails the test instead of CI. */
function launch(args: string[], timeoutMs = 120_000): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'launch', ...args], {
    encoding: 'utf8',
    timeout: timeoutMs,
    killSignal: 'SIGKILL',
    env: { ...process.env, KILN_WEBGPU: '0' },
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}
/** A one-off script in a child process (its own kn.distributed state). */
function child(code: string, env: NodeJS.ProcessEnv = {}): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, KILN_WEBGPU: '0', ...env },
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}
const readJson = <T>(f: string): T => JSON.parse(readFileSync(join(tmp, f), 'utf8')) as T;

// ---- samplers ----

test('DistributedSampler: the ranks partition the dataset, padded with the head of the order (as PyTorch)', () => {
  const shards = [0, 1, 2].map((rank) => new d.DistributedSampler(10, { rank, size: 3, shuffle: false }));
  assert.equal(
    shards.map((s) => Array.from(s.indices())),
    [
      [0, 3, 6, 9],
      [1, 4, 7, 0],
      [2, 5, 8, 1],
    ],
  );
  assert.ok(shards.every((s) => s.length === 4));
  // dropLast cuts the tail instead
  const cut = [0, 1, 2].map((rank) => new d.DistributedSampler(10, { rank, size: 3, shuffle: false, dropLast: true }));
  assert.equal(
    cut.map((s) => Array.from(s.indices())),
    [
      [0, 3, 6],
      [1, 4, 7],
      [2, 5, 8],
    ],
  );
  // pad: false (evaluation): every sample once, shards differ by one
  const ev = [0, 1, 2].map((rank) => new d.DistributedSampler(10, { rank, size: 3, shuffle: false, pad: false }));
  assert.equal(
    ev.map((s) => s.length),
    [4, 3, 3],
  );
  assert.equal(
    ev.flatMap((s) => Array.from(s.indices())).sort((a, b) => a - b),
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
  );
  // padding longer than the dataset repeats it
  assert.equal(Array.from(new d.DistributedSampler(2, { rank: 4, size: 5, shuffle: false }).indices()), [0]);
});

test('DistributedSampler: shuffles by (seed, epoch), identically on every rank, in DataLoader order', () => {
  const n = 37;
  const mk = (rank: number, seed = 5) => new d.DistributedSampler(n, { rank, size: 2, seed });
  const a = mk(0),
    b = mk(1);
  const union = (): number[] => [...a.indices(), ...b.indices()].sort((x, y) => x - y);
  a.setEpoch(3);
  b.setEpoch(3);
  const all = union();
  assert.is(all.length, 38); // 37 padded to 38
  assert.equal(new Set(all).size, 37);
  const e3 = Array.from(a.indices());
  a.setEpoch(4);
  assert.not.equal(Array.from(a.indices()), e3, 'a new epoch gives a new order');
  a.setEpoch(3);
  assert.equal(Array.from(a.indices()), e3, 'the order depends only on (seed, epoch)');
  assert.not.equal(Array.from(mk(0, 6).indices()), Array.from(mk(0, 5).indices()));
  // size 1: exactly the DataLoader's shuffled order, so a sharded run sees the same global batches
  const ds = new kn.data.Dataset({ x: kn.arange(0, n).reshape([n, 1]) });
  const dl = new kn.data.DataLoader(ds, { shuffle: true, seed: 5 });
  const one = new d.DistributedSampler(n, { rank: 0, size: 1, seed: 5 });
  one.setEpoch(2);
  assert.equal(Array.from(one.indices()), Array.from(dl.order(2)));
  // rank r's k-th index is position r + k*size of that order
  const ord = dl.order(2);
  const r1 = new d.DistributedSampler(n, { rank: 1, size: 2, seed: 5 });
  r1.setEpoch(2);
  assert.equal(Array.from(r1.indices()).slice(0, 5), [ord[1], ord[3], ord[5], ord[7], ord[9]]);
  ds.dispose();
});

test('DistributedSampler and DataLoader({ sampler }) reject bad arguments with clear errors', () => {
  assert.throws(() => new d.DistributedSampler(-1), /n must be a non-negative integer/);
  assert.throws(() => new d.DistributedSampler(10, { rank: 2, size: 2 }), /rank 2 is not in \[0, 2\)/);
  assert.throws(() => new d.DistributedSampler(10, { size: 0 }), /size must be at least 1/);
  assert.throws(() => new d.DistributedSampler(10, { seed: 0.5 }), /seed must be an integer/);
  const ds = new kn.data.Dataset({ x: kn.zeros([6, 1]) });
  const s = new d.DistributedSampler(6, { rank: 1, size: 2, shuffle: false });
  assert.throws(() => new kn.data.DataLoader(ds, { sampler: s, shuffle: true }), /does not shuffle/);
  assert.throws(() => new kn.data.DataLoader(ds, { sampler: {} as never }), /setEpoch\(epoch\) and indices\(\)/);
  const dl = new kn.data.DataLoader(ds, { batchSize: 2, sampler: s });
  assert.is(dl.length, 2);
  assert.equal(Array.from(dl.order(0)), [1, 3, 5]);
  const wrong = new kn.data.DataLoader(ds, { sampler: new d.DistributedSampler(9, { rank: 0, size: 1 }) });
  assert.throws(() => wrong.order(0), /outside the dataset \[0, 6\)/);
  ds.dispose();
});

// ---- the autograd hook DDP starts buckets from ----

test('onGradReady fires once per leaf, as soon as its gradient is final, before backward ends', () => {
  kn.seed(3);
  const leaf = (t: kn.Tensor): kn.Tensor => {
    t.requiresGrad = true;
    return t;
  };
  const w1 = leaf(kn.randn([4, 4])),
    w2 = leaf(kn.randn([4, 2])),
    b = leaf(kn.randn([2]));
  const x = kn.randn([3, 4]);
  const seen: string[] = [];
  const atHook = new Map<string, number[]>();
  const names = new Map([
    [w1, 'w1'],
    [w2, 'w2'],
    [b, 'b'],
  ]);
  const off = [...names].map(([t, n]) =>
    onGradReady(t, (leaf) => {
      seen.push(n);
      atHook.set(n, Array.from(leaf.grad!.toArray() as Float32Array));
    }),
  );
  let ended = 0;
  const offEnd = onBackwardEnd(() => {
    ended++;
    assert.is(seen.length, 3, 'every hook ran before the end hook');
  });
  // w1 is used twice: its hook waits for both contributions
  const h = x.matmul(w1).relu().matmul(w1).tanh();
  h.matmul(w2).add(b).sum().backward();
  assert.is(ended, 1);
  assert.equal([...seen].sort(), ['b', 'w1', 'w2']);
  assert.ok(seen.indexOf('w1') > seen.indexOf('w2'), 'the first layer is final last');
  for (const [t, n] of names) assert.equal(atHook.get(n), Array.from(t.grad!.toArray() as Float32Array));
  assert.throws(() => onGradReady(w1, () => {}), /already has a gradient-ready hook/);
  for (const f of off) f();
  offEnd();
  seen.length = 0;
  kn.tidy(() => x.matmul(w1).sum().backward());
  assert.is(seen.length, 0, 'removed hooks stay silent');
  for (const t of [w1, w2, b, x]) t.dispose();
});

// ---- the launcher's command line ----

test('kiln launch: the mpirun command line for Open MPI and MPICH', () => {
  assert.is(launcherFlavor('mpirun (Open MPI) 4.1.4'), 'openmpi');
  assert.is(launcherFlavor('HYDRA build details:\n    Version: 4.0.2'), 'mpich');
  assert.is(launcherFlavor('something else'), null);
  const plan = { np: 2, nodeArgs: [], script: 'train.ts', args: ['--lr', '0.1'] };
  const o = launchCommand(plan, 'openmpi', 'mpirun', { PATH: '/bin', KILN_SEED: '1' }, 8, true);
  assert.is(o.cmd, 'mpirun');
  assert.equal(o.args.slice(0, 4), ['-np', '2', '--bind-to', 'none']);
  assert.ok(o.args.includes('-x') && o.args.includes('KILN_NUM_THREADS') && o.args.includes('KILN_SEED'));
  assert.equal(o.args.slice(-5), ['--import', 'tsx', 'train.ts', '--lr', '0.1']);
  assert.is(o.env.KILN_NUM_THREADS, '4'); // 8 cores / 2 ranks
  assert.is(o.env.OMPI_ALLOW_RUN_AS_ROOT, '1');
  assert.is(o.env.OMPI_ALLOW_RUN_AS_ROOT_CONFIRM, '1');
  assert.not.ok(o.args.includes('--oversubscribe'));
  // more ranks than cores on one host; an interface; not root
  const o2 = launchCommand({ ...plan, np: 4, iface: 'lo' }, 'openmpi', 'mpirun', {}, 2, false);
  assert.ok(o2.args.includes('--oversubscribe'));
  assert.ok(o2.args.join(' ').includes('--mca btl_tcp_if_include lo --mca oob_tcp_if_include lo'));
  assert.is(o2.env.OMPI_ALLOW_RUN_AS_ROOT, undefined);
  assert.is(o2.env.KILN_NUM_THREADS, '1');
  // several hosts: the thread count is the user's (or kiln's own per-host choice), a hostfile is passed on
  const o3 = launchCommand({ ...plan, hostfile: 'hosts', script: 'a.js' }, 'openmpi', 'mpirun', {}, 8, false);
  assert.ok(o3.args.join(' ').includes('--hostfile hosts'));
  assert.is(o3.env.KILN_NUM_THREADS, undefined);
  assert.not.ok(o3.args.includes('tsx'));
  const m = launchCommand({ ...plan, hosts: 'a:1,b:1', threads: 3, iface: 'eth0' }, 'mpich', 'mpiexec', {}, 8, true);
  assert.ok(m.args.join(' ').includes('-hosts a:1,b:1'));
  assert.ok(m.args.join(' ').includes('-iface eth0'));
  assert.ok(m.args.join(' ').includes('-genvlist KILN_NUM_THREADS'));
  assert.is(m.env.KILN_NUM_THREADS, '3');
  assert.is(m.env.OMPI_ALLOW_RUN_AS_ROOT, undefined);
});

test('kiln launch: a missing launcher and bad options are clear errors', () => {
  const r = launch(['-np', '2', '--mpirun', '/nonexistent/mpirun', 'x.js']);
  assert.is(r.code, 127);
  assert.match(r.err, /'\/nonexistent\/mpirun' was not found .*apt-get install -y openmpi-bin libopenmpi-dev/s);
  const bad = launch(['-np', 'zero', 'x.js']);
  assert.is(bad.code, 2);
  assert.match(bad.err, /launch needs -np N with N >= 1/);
  assert.match(launch(['-np', '2']).err, /launch needs the script to run/);
});

// ---- without MPI, and without a launcher ----

test('without kiln_mpi.node: available() says why, init() is a one-process world, DDP still trains', () => {
  const r = child(
    `import * as kn from './src/index.ts';
     const d = kn.distributed;
     const av = d.available();
     const w = d.init();
     const a = d.allreduce(new Float32Array([1, 2]), { op: 'mean' });
     kn.seed(1);
     const net = new kn.nn.Linear(3, 2);
     const ddp = new d.DistributedDataParallel(net);
     const x = kn.randn([4, 3]);
     ddp.forward(x).sum().backward();
     const ref = kn.grad((w) => x.matmul(w.transpose(0, 1)).sum())(net.weight);
     const same = Array.from(net.weight.grad.toArray()).every((v, i) => v === ref.toArray()[i]);
     console.log(JSON.stringify({ av, w, a: Array.from(a), same, keys: Object.keys(ddp.stateDict()) }));`,
    { KILN_MPI_ADDON_PATH: '/nonexistent/kiln_mpi.node' },
  );
  assert.is(r.code, 0, r.err);
  const o = JSON.parse(r.out) as {
    av: { ok: boolean; reason: string };
    w: { rank: number; size: number };
    a: number[];
    same: boolean;
    keys: string[];
  };
  assert.is(o.av.ok, false);
  assert.match(
    o.av.reason,
    /kiln has no MPI addon here .*apt-get install -y libopenmpi-dev openmpi-bin.*npx kiln build --mpi/,
  );
  assert.equal([o.w.rank, o.w.size], [0, 1]);
  assert.equal(o.a, [1, 2]);
  assert.ok(o.same, 'gradients of a one-process DDP are the plain gradients');
  assert.equal(o.keys, ['weight', 'bias'], "the state dict has the module's own names");
  // a launcher that started 2 processes, but no MPI to join them: an error, never a silent one-process run
  const l = child(`import * as kn from './src/index.ts'; kn.distributed.init();`, {
    KILN_MPI_ADDON_PATH: '/nonexistent/kiln_mpi.node',
    PMI_SIZE: '2',
    PMI_RANK: '1',
  });
  assert.is.not(l.code, 0);
  assert.match(l.err, /DistributedError: the launcher started 2 processes, but kiln has no MPI addon here/);
});

test('kn.distributed before init, and launcher environments', () => {
  assert.is(d.isInitialized(), false);
  assert.is(d.rank(), 0);
  assert.is(d.size(), 1);
  assert.throws(() => d.allreduce(new Float32Array(1)), /not initialized: call kn.distributed.init\(\) first/);
  assert.is(d.launcherWorld({}), null);
  assert.equal(d.launcherWorld({ OMPI_COMM_WORLD_SIZE: '4', OMPI_COMM_WORLD_RANK: '3' }), {
    size: 4,
    rank: 3,
    from: 'OMPI_COMM_WORLD_SIZE=4',
  });
  assert.equal(d.launcherWorld({ PMI_SIZE: '2', PMI_RANK: '0' })?.size, 2);
  assert.is(d.launcherWorld({ SLURM_NTASKS: '8' }), null, 'an salloc shell is not a launched task');
  assert.equal(d.launcherWorld({ SLURM_NTASKS: '8', SLURM_PROCID: '5' })?.rank, 5);
  assert.throws(() => d.launcherWorld({ PMI_SIZE: '2', PMI_RANK: '2' }), /not a valid world/);
  assert.throws(() => d.init({ poll: 'busy' as 'spin' }), /poll must be 'spin' or 'backoff'/);
  assert.throws(() => d.init({ chunkMB: 0 }), /chunkMB must be a number in/);
});

// ---- the build ----

test('the build: MPI in a second addon only; KILN_MPI=OFF and a missing MPI build without it', () => {
  const needed = spawnSync('readelf', ['-d', 'build/Release/kiln.node'], { encoding: 'utf8' }).stdout;
  assert.match(needed, /NEEDED/);
  assert.not.match(needed, /libmpi/, 'kiln.node must load without MPI');
  const mpiNeeded = spawnSync('readelf', ['-d', 'build/Release/kiln_mpi.node'], { encoding: 'utf8' });
  assert.is(mpiNeeded.status, 0, 'kiln_mpi.node is built when MPI is installed (apt-get install libopenmpi-dev)');
  assert.match(mpiNeeded.stdout, /libmpi/);
  const configure = (dir: string, ...defs: string[]) =>
    spawnSync('cmake', ['-S', '.', '-B', join(tmp, dir), '-DKILN_CUDA=OFF', ...defs], { encoding: 'utf8' });
  const off = configure('off', '-DKILN_MPI=OFF');
  assert.is(off.status, 0, off.stderr);
  assert.match(off.stdout, /kiln: MPI collectives OFF \(KILN_MPI=OFF/);
  const missing = configure('missing', '-DKILN_MPI=AUTO', '-DCMAKE_DISABLE_FIND_PACKAGE_MPI=ON');
  assert.is(missing.status, 0, missing.stderr);
  assert.match(missing.stdout, /kiln: MPI collectives OFF \(KILN_MPI=AUTO/);
  const required = configure('required', '-DKILN_MPI=ON', '-DCMAKE_DISABLE_FIND_PACKAGE_MPI=ON');
  assert.is.not(required.status, 0, 'KILN_MPI=ON without MPI must fail the build');
  assert.match(configure('on', '-DKILN_MPI=ON').stdout, /kiln: MPI collectives ON/);
});

// ---- real jobs: 2 ranks through kiln launch ----

test('2 ranks: the addon joins an MPI job only under the launcher whose MPI it was built with', () => {
  // MPICH's Hydra sets PMI_SIZE; an Open MPI build then initialises a world of one: init must refuse
  const r = child(`import * as kn from './src/index.ts'; kn.distributed.init();`, { PMI_SIZE: '2', PMI_RANK: '0' });
  assert.is.not(r.code, 0);
  assert.match(r.err, /MPI reports a world of 1 process\(es\) but the launcher started 2 \(PMI_SIZE=2\)/);
});

test('2 ranks: every collective gives exact results', () => {
  const r = launch(['-np', '2', 'test/dist/collectives.ts', tmp]);
  assert.is(r.code, 0, r.err);
  type C = Record<string, unknown> & { info: { rank: number; size: number; localSize: number; library: string } };
  const [c0, c1] = [readJson<C>('collectives-0.json'), readJson<C>('collectives-1.json')];
  assert.equal([c0.info.rank, c0.info.size, c1.info.rank, c1.info.localSize], [0, 2, 1, 2]);
  assert.match(c0.info.library, /MPI/);
  assert.equal([c0.isMain, c1.isMain, c1.isDistributed], [true, false, true]);
  for (const c of [c0, c1]) {
    assert.is(c.bigFirstWrong, -1, 'an allreduce of 3,000,001 floats in 1 MiB pieces is exact');
    assert.equal(c.f64, { sum: [2, -1], mean: [0.5, 1], max: [1, 0], min: [0, -1] });
    assert.equal(c.i32, [1, 14, -1]);
    assert.equal(c.tensorMean, [
      [0.5, 1],
      [2, 1.5],
    ]);
    assert.equal(c.tensorIntMax, [2, 5]);
    assert.equal(c.async, [3, 3, 5, 5]);
    assert.is(c.asyncIsSameArray, true);
    assert.equal(c.broadcast, [42, 7]);
    assert.equal(c.broadcastFromLast, [1, 1]);
    assert.equal(c.allgather, {
      shape: [2, 2],
      values: [
        [0, 0],
        [1, 2],
      ],
    });
    assert.equal(c.allgatherObject, [
      { rank: 0, name: 'x' },
      { rank: 1, name: 'xx' },
    ]);
    assert.equal(c.broadcastObject, { from: 0, list: [1, 2, 3] });
    const errs = c.errors as string[];
    assert.match(errs[0]!, /ArgumentError: allreduce op must be/);
    assert.match(errs[1]!, /ArgumentError: allreduce op mean needs floating-point values/);
    assert.match(errs[2]!, /ArgumentError: broadcast root must be a rank in \[0, 2\)/);
    assert.match(errs[3]!, /ArgumentError: allreduce takes a Tensor or a Float32Array/);
    assert.equal(c.afterErrors, [2], 'the job goes on after argument errors');
    assert.is(c.threads, '1', 'kiln launch gives each of 2 ranks 1 of the 2 cores');
  }
  // the two ranks' shards of one epoch partition the 10 samples
  const all = [...(c0.sampler as number[]), ...(c1.sampler as number[])].sort((a, b) => a - b);
  assert.equal(all, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
});

type Weights = Record<string, number[]>;
interface TrainOut {
  manual: { losses: number[]; weights: Weights; buckets: string };
  fit: {
    history: { trainLoss: number; valLoss: number; accuracy?: number; metrics: Record<string, number> }[];
    weights: Weights;
  };
  resumed: { from: number; history: unknown[]; weights: Weights };
}

test('2 ranks: DDP equals one process on the same global batch; replicas stay bit-identical', async () => {
  const two = launch(['-np', '2', 'test/dist/train.ts', tmp, 'full']);
  assert.is(two.code, 0, two.err);
  const one = launch(['-np', '1', 'test/dist/train.ts', tmp, 'full']);
  assert.is(one.code, 0, one.err);
  const [r0, r1, s] = [
    readJson<TrainOut>('train-full-2-0.json'),
    readJson<TrainOut>('train-full-2-1.json'),
    readJson<TrainOut>('train-full-1-0.json'),
  ];
  // by hand: the ranks start from different seeds; DDP broadcasts rank 0's weights, then averages gradients
  assert.match(r0.manual.buckets, /rank 0 of 2, 2 buckets/);
  const dm = maxWeightDiff(r0.manual.weights, s.manual.weights);
  assert.ok(dm < 1e-5, `2 ranks vs 1 process (hand-written loop): max |dw| = ${dm}`);
  assert.is(maxWeightDiff(r0.manual.weights, r1.manual.weights), 0, 'replicas are bit-identical');
  r0.manual.losses.forEach((l, i) => assert.ok(Math.abs(l - s.manual.losses[i]!) < 1e-5));
  assert.ok(r0.manual.losses[2]! < r0.manual.losses[0]! * 0.6, `the loss falls: ${r0.manual.losses}`);
  // fit(): the same weights, the same (reduced) losses and validation metrics on every rank
  const df = maxWeightDiff(r0.fit.weights, s.fit.weights);
  assert.ok(df < 1e-5, `2 ranks vs 1 process (fit with accumulation): max |dw| = ${df}`);
  assert.is(maxWeightDiff(r0.fit.weights, r1.fit.weights), 0);
  assert.equal(r0.fit.history, r1.fit.history, 'every rank has the same history');
  r0.fit.history.forEach((h, i) => {
    const o = s.fit.history[i]!;
    assert.ok(Math.abs(h.trainLoss - o.trainLoss) < 1e-5 && Math.abs(h.valLoss - o.valLoss) < 1e-5);
    assert.equal(h.metrics, o.metrics, 'validation metrics over the whole set, gathered from both shards');
  });
  // logs from rank 0 only; checkpoints written once, by rank 0
  assert.is(readFileSync(join(tmp, 'fit-log-2-1.jsonl'), 'utf8'), '');
  assert.is(readFileSync(join(tmp, 'fit-log-2-0.jsonl'), 'utf8').trim().split('\n').length, 4);
  assert.equal(readdirSync(join(tmp, 'ckpt-full-2')), ['last.ckpt.safetensors']);
  // the tracker and the report on rank 0 only; the logged model is the trained replica under its own names
  assert.ok(existsSync(join(tmp, 'report-2-0.html')));
  assert.not.ok(existsSync(join(tmp, 'report-2-1.html')));
  assert.match(readFileSync(join(tmp, 'report-rank0-only-2.html'), 'utf8'), /Confusion matrix/);
  const [run] = kn.track.listRuns(join(tmp, 'mlruns-2'));
  assert.is(run!.metrics.get('val/loss')!.length, 4);
  const logged = await kn.io.load(join(run!.dir, 'artifacts', 'model', 'model.safetensors'));
  assert.equal(Object.keys(logged).sort(), Object.keys(r0.fit.weights).sort());
  assert.equal(Array.from(logged['0.weight']!.toArray() as Float32Array), r0.fit.weights['0.weight']);
  // with its architecture: loadModel rebuilds the model from the file alone
  const rebuilt = await kn.io.loadModel(join(run!.dir, 'artifacts', 'model', 'model.safetensors'));
  assert.is(rebuilt.model.namedParameters().length, 4);
});

test('2 ranks: a DDP checkpoint resumes in a new job, on every rank, as if never stopped', () => {
  const r = launch(['-np', '2', 'test/dist/train.ts', tmp, 'resume']);
  assert.is(r.code, 0, r.err);
  const [full, q0, q1] = [
    readJson<TrainOut>('train-full-2-0.json'),
    readJson<TrainOut>('train-resume-2-0.json'),
    readJson<TrainOut>('train-resume-2-1.json'),
  ];
  assert.is(q0.resumed.from, 2);
  assert.is(maxWeightDiff(q0.resumed.weights, full.fit.weights), 0, 'resumed after epoch 2 = uninterrupted 4 epochs');
  assert.is(maxWeightDiff(q0.resumed.weights, q1.resumed.weights), 0);
  assert.equal(q0.resumed.history, full.fit.history);
});

test('2 ranks: a rank that throws ends the job on every rank with a message, never a hang', () => {
  const t0 = Date.now();
  const r = launch(['-np', '2', 'test/dist/fail.ts', 'fail', tmp], 90_000);
  assert.is.not(r.code, null, 'the job hung');
  assert.is.not(r.code, 0);
  assert.match(r.err, /Error: simulated failure on rank 1 at step 3/);
  assert.match(r.err, /kiln: rank 1 of 2 failed \(exit code 1\); the launcher stops the other ranks/);
  assert.match(r.err, /kiln: rank 0 of 2 was stopped by the launcher \(another rank failed/);
  assert.match(r.err, /kiln launch: the job failed \(exit code 1\)/);
  assert.ok(Date.now() - t0 < 60_000);
  assert.equal(
    readdirSync(tmp).filter((f) => f.startsWith('fail-')),
    [],
    'neither rank finished',
  );
});

test('2 ranks: different models on different ranks are refused on every rank when wrapped', () => {
  const r = launch(['-np', '2', 'test/dist/fail.ts', 'mismatch', tmp]);
  assert.is(r.code, 0, r.err);
  for (const rank of [0, 1]) {
    const { msg } = readJson<{ msg: string }>(`mismatch-${rank}.json`);
    assert.match(
      msg,
      /ShapeError: DistributedDataParallel: rank 1's model differs from rank 0's .*rank 0 has '0.weight \[16, 4\] float32', rank 1 has '0.weight \[17, 4\] float32'/,
    );
  }
});

test('2 ranks: a StreamingDataset shards row groups by rank and fit() trains DDP on it', () => {
  const data = join(tmp, 'stream-data');
  mkdirSync(data);
  let id = 0;
  for (let f = 0; f < 3; f++) {
    const n = 700 + 50 * f;
    kn.seed(f);
    const x = kn.randn([n, 2]);
    const ids = kn.tensor(
      Int32Array.from({ length: n }, () => id++),
      [n],
      { dtype: 'int32' },
    );
    const y = x.sum(1).gt(0).cast('int32');
    kn.data.writeParquet(
      join(data, `p${f}.parquet`),
      { id: ids, a: x.slice([0, 0], [n, 1]).reshape([n]), b: x.slice([0, 1], [n, 2]).reshape([n]), y },
      { rowGroupSize: 200 },
    );
  }
  const r = launch(['-np', '2', 'test/dist/stream.ts', tmp, data]);
  assert.is(r.code, 0, r.err);
  type Out = { length: number; ids: number[]; losses: number[]; weights: Record<string, number[]> };
  const [a, b] = [readJson<Out>('stream-0.json'), readJson<Out>('stream-1.json')];
  assert.is(a.length, b.length, 'every rank runs the same number of batches');
  assert.is(a.ids.length, a.length * 32);
  assert.is(b.ids.length, b.length * 32);
  const both = new Set([...a.ids, ...b.ids]);
  assert.is(both.size, a.ids.length + b.ids.length, 'no row on both ranks');
  assert.is(maxWeightDiff(a.weights, b.weights), 0, 'DDP keeps the replicas identical');
  assert.equal(a.losses, b.losses, 'fit reduces the loss over ranks');
  assert.ok(a.losses[2]! < a.losses[0]!, `losses ${a.losses}`);
});

test.after(() => rmSync(tmp, { recursive: true, force: true }));

test.run();
