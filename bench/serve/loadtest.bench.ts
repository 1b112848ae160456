// Load test of `kiln serve` on loopback: throughput and p50/p99 latency at batch limits 1, 8, 32, 128 and
// with batching off, for the MNIST MLP (784-512-256-10, random weights; the cost is the same as trained).
// The server runs in its own process (`kiln serve`), autocannon drives it from this one. Bounded: a fixed
// number of seconds per configuration, 127.0.0.1 only.
//   npm run bench serve        or        npx tsx bench/serve/loadtest.bench.ts [--seconds 5] [--connections 64]
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import * as kn from '../../src/index.js';
import { mlp } from '../harness.js';
import { tempDir } from '../../test/helpers.js';

interface Row {
  config: string;
  rps: number;
  p50: number;
  p99: number;
  meanBatch: number;
  errors: number;
  requests: number;
}

const root = fileURLToPath(new URL('../..', import.meta.url));

/** `kiln serve FILE EXTRA...` in its own process, once /ready answers 200 (with `token` when auth is on). */
export async function startServer(
  file: string,
  extra: string[],
  token?: string,
): Promise<{ url: string; stop: () => Promise<void> }> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', join(root, 'src/cli/main.ts'), 'serve', file, '--port', '0', ...extra],
    { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let out = '';
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http\S+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    child.on('exit', (c) => reject(new Error(`kiln serve exited with ${c}: ${out}`)));
  });
  for (let i = 0; i < 400; i++) {
    if ((await fetch(url + '/ready', token ? { headers: { authorization: `Bearer ${token}` } } : {})).status === 200)
      break;
    await new Promise((r) => setTimeout(r, 25));
  }
  return {
    url,
    stop: () =>
      new Promise<void>((r) => {
        child.on('exit', () => r());
        child.kill('SIGTERM');
      }),
  };
}

function meanBatch(metrics: string): number {
  const v = (n: string): number =>
    Number(
      metrics
        .split('\n')
        .find((l) => l.startsWith(n + ' '))
        ?.split(' ')[1] ?? NaN,
    );
  return v('kiln_batch_size_sum') / v('kiln_batch_size_count');
}

export async function run(argv: string[] = []): Promise<Row[]> {
  const { values } = parseArgs({
    args: argv,
    options: { seconds: { type: 'string', default: '5' }, connections: { type: 'string', default: '64' } },
    strict: false,
  });
  const seconds = Number(values.seconds),
    connections = Number(values.connections);
  const dir = tempDir('kiln-loadtest-');
  const file = join(dir, 'mlp.safetensors');
  kn.seed(1);
  const model = mlp([784, 512, 256, 10]);
  await kn.io.save(file, model);
  model.dispose();
  const input = Array.from({ length: 784 }, (_, i) => Math.round(1000 * Math.sin(i)) / 1000);
  const body = JSON.stringify({ input });
  const configs: [string, string[]][] = [
    ['unbatched', ['--no-batching']],
    ['max batch 1', ['--max-batch', '1', '--max-delay-ms', '0']],
    ['max batch 8', ['--max-batch', '8', '--max-delay-ms', '2']],
    ['max batch 32', ['--max-batch', '32', '--max-delay-ms', '2']],
    ['max batch 128', ['--max-batch', '128', '--max-delay-ms', '2']],
  ];
  const rows: Row[] = [];
  for (const [config, extra] of configs) {
    const srv = await startServer(file, [...extra, '--max-queue', '100000', '--timeout-ms', '60000']);
    try {
      // short warm-up so connections and allocator caches are set up, then the measured run on a fresh metrics
      // window (batch sizes are read as the difference of the two /metrics snapshots)
      await autocannon({
        url: srv.url + '/predict',
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
        connections,
        duration: 1,
      });
      const before = await (await fetch(srv.url + '/metrics')).text();
      const r = await autocannon({
        url: srv.url + '/predict',
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
        connections,
        duration: seconds,
      });
      const after = await (await fetch(srv.url + '/metrics')).text();
      const v = (t: string, n: string): number =>
        Number(
          t
            .split('\n')
            .find((l) => l.startsWith(n + ' '))
            ?.split(' ')[1] ?? NaN,
        );
      const mb =
        (v(after, 'kiln_batch_size_sum') - v(before, 'kiln_batch_size_sum')) /
        (v(after, 'kiln_batch_size_count') - v(before, 'kiln_batch_size_count'));
      rows.push({
        config,
        rps: r.requests.average,
        p50: r.latency.p50,
        p99: r.latency.p99,
        meanBatch: Number.isFinite(mb) ? mb : meanBatch(after),
        errors: r.errors + r.non2xx,
        requests: r.requests.total,
      });
    } finally {
      await srv.stop();
    }
  }
  const base = rows[0]!.rps;
  console.log(`\nkiln serve, MLP 784-512-256-10, ${connections} connections, ${seconds} s per configuration, loopback`);
  console.log('| configuration | requests/s | vs unbatched | p50 ms | p99 ms | mean batch | errors |');
  console.log('| --- | --- | --- | --- | --- | --- | --- |');
  for (const r of rows) {
    console.log(
      `| ${r.config} | ${r.rps.toFixed(0)} | ${(r.rps / base).toFixed(2)}x | ${r.p50.toFixed(1)} | ${r.p99.toFixed(1)} | ${r.meanBatch.toFixed(1)} | ${r.errors} |`,
    );
  }
  return rows;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await run(process.argv.slice(2));
