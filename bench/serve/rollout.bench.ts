// Cost of production serving on loopback: API-key checks, a canary (10% and 50% of requests on a second
// version), a shadow (every request also run on a second version) and both, against one version without auth.
// MNIST MLP 784-512-256-10 (random weights), `kiln serve` in its own process with batching (max batch 32), the
// second version deployed through POST /admin/deploy; autocannon drives it from this process.
//   npm run bench rollout   or   npx tsx bench/serve/rollout.bench.ts [--seconds 5] [--connections 64] [--rounds 3]
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import * as kn from '../../src/index.js';
import { ApiKeys } from '../../src/serve/auth.js';
import { startServer } from './loadtest.bench.js';
import { mlp } from '../harness.js';
import { tempDir } from '../../test/helpers.js';

interface Row {
  config: string;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  split: string;
}

function seededMlp(seed: number): kn.nn.Module {
  kn.seed(seed);
  return mlp([784, 512, 256, 10]);
}

/** Requests per version from /metrics (kiln_version_requests_total, role not shadow). */
function split(metrics: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const x of metrics.matchAll(/kiln_version_requests_total\{version="([^"]+)",role="(\w+)",result="ok"\} (\d+)/g))
    if (x[2] !== 'shadow') m.set(x[1]!, (m.get(x[1]!) ?? 0) + Number(x[3]));
  return m;
}

export async function run(argv: string[] = []): Promise<Row[]> {
  const { values } = parseArgs({
    args: argv,
    options: {
      seconds: { type: 'string', default: '5' },
      connections: { type: 'string', default: '64' },
      rounds: { type: 'string', default: '3' },
    },
    strict: false,
  });
  const seconds = Number(values.seconds),
    connections = Number(values.connections),
    rounds = Number(values.rounds);
  const dir = tempDir('kiln-rollout-bench-');
  const a = join(dir, 'a.safetensors');
  for (const [f, seed] of [
    [a, 1],
    [join(dir, 'b.safetensors'), 2],
  ] as const) {
    const m = seededMlp(seed);
    await kn.io.save(f, m, { metadata: { 'kiln.version': f.endsWith('a.safetensors') ? 'a' : 'b' } });
    m.dispose();
  }
  const { token, hashed } = kn.serve.newApiKey();
  const keys = join(dir, 'keys.json');
  writeFileSync(keys, JSON.stringify({ [hashed]: ['predict', 'admin'] }));
  const input = Array.from({ length: 784 }, (_, i) => Math.round(1000 * Math.sin(i)) / 1000);
  const body = JSON.stringify({ input });
  const configs: [string, boolean, object | null][] = [
    ['one version, no auth', false, null],
    ['one version, auth', true, null],
    ['canary 10%, auth', true, { weight: 0.1 }],
    ['canary 50%, auth', true, { weight: 0.5 }],
    ['shadow, auth', true, { shadow: true }],
  ];
  // the configurations run in turn, `rounds` times over, so slow phases of a shared host spread over all of
  // them; each row is the round with the median requests/s
  const runs = new Map<string, Row[]>();
  for (let round = 0; round < rounds; round++)
    for (const [config, auth, deploy] of configs) {
      const extra = ['--max-batch', '32', '--max-delay-ms', '2', '--max-queue', '100000', '--timeout-ms', '60000'];
      const srv = await startServer(a, auth ? [...extra, '--auth', keys] : extra, auth ? token : undefined);
      const headers: Record<string, string> = {
        'content-type': 'application/json',
        ...(auth ? { authorization: `Bearer ${token}` } : {}),
      };
      try {
        if (deploy) {
          const r = await fetch(srv.url + '/admin/deploy', {
            method: 'POST',
            headers,
            body: JSON.stringify({ path: 'b.safetensors', version: 'b', ...deploy }),
          });
          if (r.status !== 200) throw new Error(`deploy failed: ${r.status} ${await r.text()}`);
        }
        await autocannon({ url: srv.url + '/predict', method: 'POST', headers, body, connections, duration: 1 });
        const before = split(await (await fetch(srv.url + '/metrics', { headers })).text());
        const r = await autocannon({
          url: srv.url + '/predict',
          method: 'POST',
          headers,
          body,
          connections,
          duration: seconds,
        });
        const after = split(await (await fetch(srv.url + '/metrics', { headers })).text());
        const d = (v: string): number => (after.get(v) ?? 0) - (before.get(v) ?? 0);
        const total = d('a') + d('b');
        if (!runs.has(config)) runs.set(config, []);
        runs.get(config)!.push({
          config,
          rps: r.requests.average,
          p50: r.latency.p50,
          p99: r.latency.p99,
          errors: r.errors + r.non2xx,
          split: total ? `${((100 * d('b')) / total).toFixed(1)}% on b` : '-',
        });
      } finally {
        await srv.stop();
      }
    }
  // the same configurations in process (srv.predict, no HTTP): the routing cost without the network stack
  const inproc: { config: string; rps: number }[] = [];
  for (let round = 0; round < rounds; round++)
    for (const [config, auth, deploy] of configs) {
      if (auth && !deploy) continue;
      const srv = await kn.serve.createServer(a, { port: 0, maxBatchSize: 32, maxDelayMs: 2 });
      try {
        for (let i = 0; i < 400 && !srv.ready; i++) await new Promise((r) => setTimeout(r, 10));
        if (deploy) await srv.deploy(join(dir, 'b.safetensors'), { version: 'b', ...deploy });
        const x = Float32Array.from(input);
        const go = async (n: number): Promise<number> => {
          const t0 = performance.now();
          let left = n;
          await Promise.all(
            Array.from({ length: connections }, async () => {
              while (left-- > 0) await srv.predict(x);
            }),
          );
          return (n * 1000) / (performance.now() - t0);
        };
        await go(1000);
        inproc.push({ config: config.replace(', auth', '').replace(', no auth', ''), rps: await go(6000) });
      } finally {
        await srv.close();
      }
    }
  // the key check alone: SHA-256 of the presented key, compared with each of 10 stored hashes
  const ten: Record<string, ['predict']> = {};
  for (let i = 0; i < 10; i++) ten[`bench_key_${i}_${'x'.repeat(16)}`] = ['predict'];
  const check = new ApiKeys({ keys: ten });
  const hdr = `Bearer bench_key_7_${'x'.repeat(16)}`;
  for (let i = 0; i < 20000; i++) check.check(hdr, 'predict');
  const tc = performance.now();
  for (let i = 0; i < 200000; i++) check.check(hdr, 'predict');
  const checkUs = ((performance.now() - tc) * 1000) / 200000;

  const rows = [...runs.values()].map((rs) => [...rs].sort((x, y) => x.rps - y.rps)[rs.length >> 1]!);
  const base = rows[0]!.rps;
  console.log(
    `\nkiln serve rollout cost, MLP 784-512-256-10, ${connections} connections, ${seconds} s per configuration, median of ${rounds} rounds, loopback`,
  );
  console.log('| configuration | requests/s | vs one version, no auth | p50 ms | p99 ms | answered by b | errors |');
  console.log('| --- | --- | --- | --- | --- | --- | --- |');
  for (const r of rows)
    console.log(
      `| ${r.config} | ${r.rps.toFixed(0)} | ${(r.rps / base).toFixed(2)}x | ${r.p50.toFixed(1)} | ${r.p99.toFixed(1)} | ${r.split} | ${r.errors} |`,
    );
  const med = (c: string): number => {
    const v = inproc
      .filter((r) => r.config === c)
      .map((r) => r.rps)
      .sort((x, y) => x - y);
    return v[v.length >> 1]!;
  };
  const names = [...new Set(inproc.map((r) => r.config))];
  console.log(`\nin process (srv.predict, ${connections} concurrent callers, no HTTP), median of ${rounds} rounds`);
  console.log('| configuration | examples/s | vs one version |');
  console.log('| --- | --- | --- |');
  for (const c of names) console.log(`| ${c} | ${med(c).toFixed(0)} | ${(med(c) / med(names[0]!)).toFixed(2)}x |`);
  console.log(`\nAPI key check (SHA-256 + constant-time comparison with 10 stored hashes): ${checkUs.toFixed(2)} us`);
  return rows;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await run(process.argv.slice(2));
