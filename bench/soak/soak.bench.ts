// Soak tests: long runs that must hold their memory flat.
//  1. 10,000 training steps (MLP 784-128-10, batch 32, Adam, the fit-style step under tidy): the process RSS and
//     kiln's own counts (live tensors, buffers, bytes) sampled every 500 steps.
//  2. 100,000 HTTP requests against `kiln serve` (its own process, 32 connections, loopback): every request must
//     be answered 200, and the server's RSS (from /proc) sampled every second must stay flat.
// A run passes when, after the first 20% (allocator caches and JIT warm up), RSS grows by less than 10% and kiln's
// counts do not grow at all. The training process is sampled after a full GC (V8 collects lazily otherwise). Bounded in count and time; 127.0.0.1 only.
//   npm run bench soak    or    npx tsx bench/soak/soak.bench.ts [--steps 10000] [--requests 100000]
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import autocannon from 'autocannon';
import * as kn from '../../src/index.js';
import { tempDir } from '../../test/helpers.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
// a full GC before each sample of this process, so a sample is what is still reachable, not what V8 has not
// collected yet
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const mb = (b: number): string => (b / 2 ** 20).toFixed(1);

/** Growth of the last sample over the first one after warm-up (20% of the run), as a fraction. */
function growth(samples: number[]): number {
  const after = samples.slice(Math.floor(samples.length / 5));
  return after.length < 2 ? 0 : after[after.length - 1]! / after[0]! - 1;
}

function trainingSoak(steps: number): boolean {
  kn.setBackend('cpu');
  kn.seed(1);
  const model = new kn.nn.Sequential(new kn.nn.Linear(784, 128), new kn.nn.ReLU(), new kn.nn.Linear(128, 10));
  const opt = new kn.optim.Adam(model.parameters());
  const x = kn.randn([32, 784]);
  const y = kn.randint([32], 0, 10);
  const rss: number[] = [];
  const heap: number[] = [];
  const counts: { tensors: number; buffers: number; bytes: number }[] = [];
  const t0 = performance.now();
  for (let s = 1; s <= steps; s++) {
    kn.tidy(() => {
      opt.zeroGrad();
      const loss = kn.nn.loss.crossEntropy(model.call(x), y);
      loss.backward();
      opt.step();
      if (s % 100 === 0) loss.item();
    });
    if (s % 500 === 0) {
      gc();
      rss.push(process.memoryUsage().rss);
      heap.push(process.memoryUsage().heapUsed);
      const m = kn.memory();
      counts.push({ tensors: m.numTensors, buffers: m.numBuffers, bytes: m.numBytes });
    }
  }
  const secs = (performance.now() - t0) / 1000;
  const first = counts[Math.floor(counts.length / 5)]!,
    last = counts[counts.length - 1]!;
  const flatCounts = last.tensors <= first.tensors && last.buffers <= first.buffers && last.bytes <= first.bytes;
  const g = growth(rss);
  console.log(`## training soak: ${steps} steps in ${secs.toFixed(1)} s (${(steps / secs).toFixed(0)} steps/s)`);
  console.log(`RSS MB every 500 steps (after a full GC): ${rss.map(mb).join(' ')}`);
  console.log(`JS heap MB: ${heap.map(mb).join(' ')}`);
  console.log(
    `kiln live tensors/buffers/bytes: step ${steps / 5}: ${first.tensors}/${first.buffers}/${first.bytes}, ` +
      `step ${steps}: ${last.tensors}/${last.buffers}/${last.bytes}`,
  );
  const ok = g < 0.1 && flatCounts;
  console.log(
    `RSS growth after warm-up ${(g * 100).toFixed(1)}%; kiln counts ${flatCounts ? 'flat' : 'GREW'}: ${ok ? 'PASS' : 'FAIL'}`,
  );
  return ok;
}

async function serveSoak(requests: number): Promise<boolean> {
  kn.seed(2);
  const dir = tempDir('kiln-soak-');
  const file = join(dir, 'mlp.safetensors');
  await kn.io.save(file, new kn.nn.Sequential(new kn.nn.Linear(64, 128), new kn.nn.ReLU(), new kn.nn.Linear(128, 10)));
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', join(root, 'src/cli/main.ts'), 'serve', file, '--port', '0'],
    {
      cwd: root,
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  let out = '';
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http\S+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    child.on('exit', (c) => reject(new Error(`kiln serve exited with ${c}: ${out}`)));
  });
  for (let i = 0; i < 400 && (await fetch(url + '/ready')).status !== 200; i++)
    await new Promise((r) => setTimeout(r, 25));
  const rssOf = (): number => {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : NaN;
  };
  const rss: number[] = [rssOf()];
  const timer = setInterval(() => rss.push(rssOf()), 1000);
  const body = JSON.stringify({ input: Array.from({ length: 64 }, (_, i) => (i % 7) / 7) });
  const t0 = performance.now();
  const r = await autocannon({
    url: url + '/predict',
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
    connections: 32,
    amount: requests,
    timeout: 10,
  });
  clearInterval(timer);
  rss.push(rssOf());
  const secs = (performance.now() - t0) / 1000;
  await new Promise<void>((res) => {
    child.on('exit', () => res());
    child.kill('SIGTERM');
  });
  const answered = r['2xx'];
  const g = growth(rss);
  console.log(
    `## serve soak: ${requests} requests, 32 connections, ${secs.toFixed(1)} s (${(requests / secs).toFixed(0)} req/s)`,
  );
  console.log(
    `server RSS MB every second (first, then every 5th, last): ${[rss[0]!, ...rss.filter((_, i) => i > 0 && i % 5 === 0), rss[rss.length - 1]!].map(mb).join(' ')}`,
  );
  console.log(`answered 200: ${answered}, other: ${r.non2xx}, errors: ${r.errors}, timeouts: ${r.timeouts}`);
  const ok = answered === requests && r.non2xx === 0 && r.errors === 0 && g < 0.1;
  console.log(`RSS growth after warm-up ${(g * 100).toFixed(1)}%: ${ok ? 'PASS' : 'FAIL'}`);
  return ok;
}

export async function run(): Promise<void> {
  const args = process.argv.slice(2);
  if (args[0] !== undefined && !args[0].startsWith('--')) args.shift(); // `npm run bench soak`: the filter
  const { values } = parseArgs({
    args,
    options: { steps: { type: 'string', default: '10000' }, requests: { type: 'string', default: '100000' } },
    strict: false,
  });
  const a = trainingSoak(Number(values.steps));
  const b = await serveSoak(Number(values.requests));
  if (!a || !b) process.exitCode = 1;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) void run();
