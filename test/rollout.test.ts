// kn.serve in production: several versions at once (canary weights, sticky A/B, shadow), promote and
// rollback (in process, over HTTP, through `kiln admin`), the automatic rollback rule, API keys (401/403/429,
// hashed keys, per-key row limits, audit log), TLS, the OpenAPI document, and drift monitoring with alerts
// (webhook, GET /alerts, Prometheus rules). The basic server (batching, cache, reload) is in serve.test.ts.
import { execFileSync, spawn } from 'node:child_process';
import { createServer as createHttpServer } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Validator } from '@seriousme/openapi-schema-validator';
import Ajv from 'ajv';
import { parse as parseYaml } from 'yaml';
import * as kn from '../src/index.js';
import { rejectsKiln, startKilnServe, tempDir } from './helpers.js';

const dir = tempDir('kiln-rollout-');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const ROW = [0.5, -1, 2, 0.25];
function model(seed: number, outputs = 3): kn.nn.Module {
  kn.seed(seed);
  return new kn.nn.Linear(4, outputs);
}
async function ready(srv: kn.serve.ModelServer): Promise<void> {
  for (let i = 0; i < 400 && !srv.ready; i++) await sleep(10);
  assert.ok(srv.ready, 'server warmed up');
}
async function call(
  srv: { url: string },
  path: string,
  o: { method?: string; token?: string; body?: unknown; headers?: Record<string, string> } = {},
): Promise<{ status: number; body: Record<string, unknown>; headers: Headers }> {
  const r = await fetch(srv.url + path, {
    method: o.method ?? (o.body !== undefined ? 'POST' : 'GET'),
    headers: {
      ...(o.body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...(o.token ? { authorization: `Bearer ${o.token}` } : {}),
      ...o.headers,
    },
    ...(o.body !== undefined ? { body: JSON.stringify(o.body) } : {}),
  });
  const text = await r.text();
  let body: Record<string, unknown>;
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {
    body = { text };
  }
  return { status: r.status, body, headers: r.headers };
}
/** |observed - expected| within 4.5 standard deviations of a binomial(n, p) share. */
function withinBinomial(k: number, n: number, p: number, what: string): void {
  const sd = Math.sqrt(n * p * (1 - p));
  assert.ok(Math.abs(k - n * p) <= 4.5 * sd, `${what}: ${k} of ${n}, expected ${n * p} +- ${(4.5 * sd).toFixed(1)}`);
}

// ---------------- traffic ----------------

test('canary weights are honoured within binomial bounds, and each answer names its version', async () => {
  const srv = await kn.serve.createServer(model(1), { port: 0, version: 'stable', maxDelayMs: 0 });
  try {
    await ready(srv);
    await srv.deploy(model(2), { version: 'canary', weight: 0.2 });
    const direct = new Map([
      [
        'stable',
        model(1)
          .forward(kn.tensor([ROW]))
          .toArray() as Float32Array,
      ],
      [
        'canary',
        model(2)
          .forward(kn.tensor([ROW]))
          .toArray() as Float32Array,
      ],
    ]);
    const n = 1500;
    const seen = new Map<string, number>();
    for (let i = 0; i < n; i += 50) {
      const rs = await Promise.all(Array.from({ length: 50 }, () => srv.predict(ROW)));
      for (const r of rs) {
        seen.set(r.version, (seen.get(r.version) ?? 0) + 1);
        const want = direct.get(r.version)!;
        for (let j = 0; j < 3; j++)
          assert.ok(Math.abs(r.output[j]! - want[j]!) < 1e-5, 'the version that answered made it');
      }
    }
    withinBinomial(seen.get('canary') ?? 0, n, 0.2, 'canary share');
    assert.is((seen.get('canary') ?? 0) + (seen.get('stable') ?? 0), n);
    // a second canary shares the traffic; weights over 1 in total are refused
    await srv.deploy(model(3), { version: 'canary2', weight: 0.3 });
    await rejectsKiln(
      srv.deploy(model(4), { version: 'c3', weight: 0.6 }),
      kn.ArgumentError,
      /weights add up to at most 1/,
    );
    const two = new Map<string, number>();
    for (let i = 0; i < n; i += 50)
      for (const r of await Promise.all(Array.from({ length: 50 }, () => srv.predict(ROW))))
        two.set(r.version, (two.get(r.version) ?? 0) + 1);
    withinBinomial(two.get('canary') ?? 0, n, 0.2, 'first canary share');
    withinBinomial(two.get('canary2') ?? 0, n, 0.3, 'second canary share');
    const info = srv.versions();
    assert.equal(
      info.map((v) => [v.version, v.role, v.weight]),
      [
        ['stable', 'primary', 0.5],
        ['canary', 'canary', 0.2],
        ['canary2', 'canary', 0.3],
      ],
    );
    const metrics = await srv.metrics();
    assert.match(metrics, /kiln_version_requests_total\{version="canary",role="canary",result="ok"\} \d+/);
    assert.match(metrics, /kiln_version_weight\{version="canary2",role="canary"\} 0.3/);
    assert.match(metrics, /kiln_version_predictions_total\{version="stable",class="\d"\} \d+/);
    // bad deploy options are refused before anything loads
    await rejectsKiln(
      srv.deploy(model(5), { version: 'x', weight: 0 }),
      kn.ArgumentError,
      /weight must be in \(0, 1\]/,
    );
    await rejectsKiln(srv.deploy(model(5), { version: 'x' }), kn.ArgumentError, /needs one of weight/);
    await rejectsKiln(
      srv.deploy(model(5), { version: 'x', wieght: 0.1 } as never),
      kn.ArgumentError,
      /^deploy: unknown option "wieght" \(the options are version, weight, shadow, stickyKey, autoRollback, transform\)/,
    );
    await rejectsKiln(
      srv.deploy(model(5), { version: 'x', weight: 0.1, autoRollback: { maxErrorRte: 0.1 } as never }),
      kn.ArgumentError,
      /^autoRollback: unknown option "maxErrorRte"/,
    );
    await rejectsKiln(
      srv.deploy(model(5), { version: 'x', shadow: true, weight: 0.1 }),
      kn.ArgumentError,
      /shadow alone/,
    );
    await rejectsKiln(srv.deploy(model(5), { version: 'canary', weight: 0.1 }), kn.ArgumentError, /already deployed/);
    await rejectsKiln(
      srv.deploy(model(5, 2), { version: 'narrow', weight: 0.1 }),
      kn.serve.ReloadError,
      /output shape \[2\] differs/,
    );
  } finally {
    await srv.close();
  }
});

test('sticky A/B: one key always meets one version, keys split by weight, requests without a key go to the primary', async () => {
  const srv = await kn.serve.createServer(model(1), { port: 0, version: 'A', maxDelayMs: 0 });
  try {
    await ready(srv);
    await srv.deploy(model(2), { version: 'B', stickyKey: 'X-User', weight: 0.4 });
    const byKey = new Map<string, string>();
    let b = 0;
    const users = 800;
    for (let u = 0; u < users; u++) {
      const key = `user-${u}`;
      const r = await srv.predict(ROW, { header: (h) => (h === 'x-user' ? key : undefined) });
      byKey.set(key, r.version);
      if (r.version === 'B') b++;
    }
    withinBinomial(b, users, 0.4, 'share of users on B');
    // the same users again, in another order and through the body key: each meets the same version
    for (let u = users - 1; u >= 0; u -= 7) {
      const key = `user-${u}`;
      assert.is((await srv.predict(ROW, { key })).version, byKey.get(key));
    }
    for (let i = 0; i < 30; i++) assert.is((await srv.predict(ROW)).version, 'A', 'no key: primary');
    // over HTTP: the header and the body's key route the same way
    const key = [...byKey.entries()].find(([, v]) => v === 'B')![0];
    const viaHeader = await call(srv, '/predict', { body: { input: ROW }, headers: { 'x-user': key } });
    const viaBody = await call(srv, '/predict', { body: { input: ROW, key } });
    assert.is(viaHeader.body.version, 'B');
    assert.is(viaBody.body.version, 'B');
  } finally {
    await srv.close();
  }
});

test('shadow: answers never change, the shadow is measured and logged, and a failing shadow is harmless', async () => {
  const log = join(dir, 'shadow.jsonl');
  const srv = await kn.serve.createServer(model(1), { port: 0, version: 'live', requestLog: log, maxDelayMs: 0 });
  const plain = await kn.serve.createServer(model(1), { port: 0, version: 'live', maxDelayMs: 0 });
  try {
    await ready(srv);
    await ready(plain);
    await srv.deploy(model(2), { version: 'shadow', shadow: true });
    let calls = 0;
    const failing = (x: kn.Tensor): kn.Tensor => {
      const live = (x.toArray() as Float32Array).some((v) => v !== 0); // the warm-up runs zeros
      if (live && ++calls > 6) throw new Error('the shadow model broke');
      return kn.zeros([x.shape[0]!, 3]);
    };
    await srv.deploy(failing, { version: 'broken', shadow: true, autoRollback: false });
    kn.seed(9);
    const rows = Array.from({ length: 60 }, () => Array.from(kn.randn([4]).toArray() as Float32Array));
    for (const row of rows) {
      const [a, b] = await Promise.all([
        call(srv, '/predict', { body: { input: row } }),
        call(plain, '/predict', { body: { input: row } }),
      ]);
      assert.is(a.status, 200);
      assert.equal(a.body, { ...b.body, id: a.body.id }, 'a shadow never changes an answer');
      assert.is(a.body.version, 'live');
    }
    // shadows answer after the client got its answer: wait for the last ones
    let m = '',
      compared = 0;
    for (let i = 0; i < 100 && compared < 60; i++) {
      if (i) await sleep(50);
      m = await srv.metrics();
      compared = [...m.matchAll(/kiln_shadow_agreement_total\{version="shadow",agree="(true|false)"\} (\d+)/g)].reduce(
        (s, x) => s + Number(x[2]),
        0,
      );
    }
    assert.is(compared, 60, 'every mirrored example compared with the primary');
    assert.match(m, /kiln_version_requests_total\{version="broken",role="shadow",result="error"\} \d+/);
    assert.ok(
      srv.versions().some((v) => v.version === 'broken'),
      'a failing shadow is not rolled back automatically when its rule is off',
    );
  } finally {
    await srv.close();
    await plain.close();
  }
  const main = await kn.serve.readRequestLog(log);
  assert.is(main.versions.length, 60);
  assert.ok(
    main.versions.every((v) => v === 'live'),
    'shadow lines are not read as served answers',
  );
  const sh = await kn.serve.readRequestLog(log, { version: 'shadow' });
  assert.is(sh.versions.length, 60);
  const lines = readFileSync(log, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { shadow?: boolean });
  assert.is(lines.filter((l) => l.shadow).length, 60 + 6);
});

test('promote makes a canary the primary; rollback takes candidates out, then returns to the previous primary', async () => {
  const audit = join(dir, 'promote-audit.jsonl');
  const srv = await kn.serve.createServer(model(1), { port: 0, version: 'v1', auditLog: audit });
  try {
    await ready(srv);
    await srv.deploy(model(2), { version: 'v2', weight: 0.5 });
    assert.is(await srv.promote('v2'), 'v2');
    assert.is(srv.version, 'v2');
    for (let i = 0; i < 20; i++) assert.is((await srv.predict(ROW)).version, 'v2');
    await srv.deploy(model(3), { version: 'v3', weight: 0.1 });
    await srv.deploy(model(4), { version: 'v4', shadow: true });
    assert.is(await srv.rollback(), 'v2', 'first rollback removes the candidates');
    assert.equal(
      srv.versions().map((v) => v.version),
      ['v2'],
    );
    assert.is(await srv.rollback(), 'v1', 'then back to the primary before the promote');
    await rejectsKiln(srv.promote('nope'), kn.ArgumentError, /is not deployed/);
    await rejectsKiln(srv.rollback(), kn.serve.ReloadError, /no previous version/);
  } finally {
    await srv.close();
  }
  const events = readFileSync(audit, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as kn.serve.AuditRecord);
  assert.equal(
    events.map((e) => [e.event, e.status]),
    [
      ['deploy', 200],
      ['promote', 200],
      ['deploy', 200],
      ['deploy', 200],
      ['rollback', 200],
      ['rollback', 200],
      ['promote', 404],
      ['rollback', 409],
    ],
  );
});

test('the automatic rollback rule takes out a failing or slow canary, and clients get the primary answer', async () => {
  const audit = join(dir, 'auto-audit.jsonl');
  const srv = await kn.serve.createServer(model(1), {
    port: 0,
    version: 'stable',
    auditLog: audit,
    maxDelayMs: 0,
    autoRollback: { maxErrorRate: 0.2, minRequests: 10, window: 50 },
  });
  try {
    await ready(srv);
    // fails on real inputs (warm-up runs zeros, which it passes)
    const bad = (x: kn.Tensor): kn.Tensor => {
      if ((x.toArray() as Float32Array).some((v) => v !== 0)) throw new Error('NaN weights');
      return kn.zeros([x.shape[0]!, 3]);
    };
    await srv.deploy(bad, { version: 'bad', weight: 0.5 });
    for (let i = 0; i < 80; i++) {
      const r = await call(srv, '/predict', { body: { input: ROW } });
      assert.is(r.status, 200, 'a canary failure is retried on the primary');
      assert.is(r.body.version, 'stable');
    }
    assert.equal(
      srv.versions().map((v) => v.version),
      ['stable'],
      'the failing canary was taken out',
    );
    assert.match(await srv.metrics(), /kiln_auto_rollbacks_total\{version="bad"\} 1/);
    // latency rule
    const slow = async (x: kn.Tensor): Promise<kn.Tensor> => kn.zeros([x.shape[0]!, 3]);
    const slowModel = (x: kn.Tensor): kn.Tensor => {
      const t0 = Date.now();
      while (Date.now() - t0 < 25); // 25 ms per batch
      return model(7).forward(x);
    };
    void slow;
    await srv.deploy(slowModel, { version: 'slow', weight: 1, autoRollback: { maxP99Ms: 10, minRequests: 5 } });
    for (let i = 0; i < 12; i++) await srv.predict(ROW);
    await sleep(20);
    assert.equal(
      srv.versions().map((v) => v.version),
      ['stable'],
    );
  } finally {
    await srv.close();
  }
  const auto = readFileSync(audit, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as kn.serve.AuditRecord)
    .filter((e) => e.event === 'auto_rollback');
  assert.is(auto.length, 2);
  assert.match(String(auto[0]!.detail!.reason), /error rate .* is over 20.0%/);
  assert.match(String(auto[1]!.detail!.reason), /p99 latency .* is over 10 ms/);
});

// ---------------- batch sizing for the device ----------------

test("maxBatchSize 'auto' sizes batches from measured throughput; on webgpu it serves the same answers as the CPU", async () => {
  // a model whose batch costs max(4 ms, 0.25 ms per row): throughput grows up to 16 rows, then stays flat
  const saturating = (x: kn.Tensor): kn.Tensor => {
    const t0 = performance.now();
    while (performance.now() - t0 < Math.max(4, 0.25 * x.shape[0]!));
    return model(1).forward(x);
  };
  const srv = await kn.serve.createServer(saturating, {
    port: 0,
    maxBatchSize: 'auto',
    maxAutoBatch: 64,
    inputShape: [4],
  });
  try {
    await ready(srv);
    // the rule, checked against the server's own measurements (timings on a busy host may differ by 10-20%)...
    const t = srv.batchTiming!;
    const best = Math.max(...t.map((x) => x.rowsPerSecond));
    const chosen = srv.batcher.maxBatchSize;
    assert.is(chosen, t.find((x) => x.rowsPerSecond >= 0.9 * best)!.size, JSON.stringify(t));
    // ...and the knee: below 16 rows a batch costs the same 4 ms, so 8 rows give at most half the best throughput
    assert.ok(chosen >= 16, `chose ${chosen}: ${JSON.stringify(t)}`);
    assert.equal(
      srv.batchTiming!.map((t) => t.size),
      [1, 2, 4, 8, 16, 32, 64],
    );
    assert.match(await srv.metrics(), new RegExp(`kiln_max_batch_size ${chosen}\n`));
  } finally {
    await srv.close();
  }
  await rejectsKiln(
    kn.serve.createServer(model(1), { port: 0, maxBatchSize: 0 }),
    kn.ArgumentError,
    /maxBatchSize must be an integer/,
  );
  if (!kn.backends().includes('webgpu')) return;
  await rejectsKiln(
    kn.serve.createServer(model(1), { port: 0, backend: 'webgpu' }),
    kn.ArgumentError,
    /parameters are on the cpu backend but the server runs on webgpu/,
  );
  const file = join(dir, 'gpu-model.safetensors');
  await kn.io.save(file, model(1));
  const loaded = await kn.io.loadModel(file, { backend: 'webgpu' });
  assert.ok(
    loaded.model.parameters().every((p) => p.backend === 'webgpu'),
    'a model loaded for webgpu has its parameters there',
  );
  loaded.model.dispose();
  const gpu = await kn.serve.createServer(file, {
    port: 0,
    backend: 'webgpu',
    maxBatchSize: 'auto',
    maxAutoBatch: 32,
  });
  try {
    await ready(gpu);
    assert.ok(gpu.batchTiming!.length === 6 && gpu.batchTiming!.every((t) => t.rowsPerSecond > 0));
    kn.seed(12);
    const rows = Array.from({ length: 40 }, () => Array.from(kn.randn([4]).toArray() as Float32Array));
    const got = await Promise.all(rows.map((r) => gpu.predict(r)));
    const want = model(1).forward(kn.tensor(rows)).toArray() as Float32Array;
    got.forEach((g, i) => {
      for (let j = 0; j < 3; j++) assert.ok(Math.abs(g.output[j]! - want[i * 3 + j]!) < 1e-4, 'webgpu answer = cpu');
    });
  } finally {
    await gpu.close();
  }
});

// ---------------- security ----------------

const PREDICT_KEY = 'kiln_predict_key_for_tests_0001';
const ADMIN_KEY = 'kiln_admin_key_for_tests_000002';
const LIMITED_KEY = 'kiln_limited_key_for_tests_0003';

test('API keys: 401 without or with a wrong key, 403 for a missing scope, 429 over the rate, keys stored hashed', async () => {
  const audit = join(dir, 'auth-audit.jsonl');
  const file = join(dir, 'auth-model.safetensors');
  await kn.io.save(file, model(1));
  await kn.io.save(join(dir, 'auth-candidate.safetensors'), model(2));
  const srv = await kn.serve.createServer(file, {
    port: 0,
    version: 'v1',
    auditLog: audit,
    auth: {
      keys: {
        [PREDICT_KEY]: ['predict'],
        [kn.serve.hashKey(ADMIN_KEY)]: ['admin', 'predict'],
        [LIMITED_KEY]: { scopes: ['predict'], rateLimit: 2, burst: 3, maxRows: 2 },
      },
    },
  });
  try {
    await ready(srv);
    const body = { input: ROW };
    const none = await call(srv, '/predict', { body });
    assert.is(none.status, 401);
    assert.match(String(none.headers.get('www-authenticate')), /^Bearer/);
    assert.is((await call(srv, '/predict', { body, token: PREDICT_KEY + 'x' })).status, 401);
    assert.is((await call(srv, '/predict', { body, headers: { authorization: `Basic ${PREDICT_KEY}` } })).status, 401);
    const ok = await call(srv, '/predict', { body, token: PREDICT_KEY });
    assert.is(ok.status, 200);
    assert.is(ok.body.version, 'v1');
    assert.is((await call(srv, '/predict', { body, token: ADMIN_KEY })).status, 200, 'a hashed key works');
    // scopes
    const forbidden = await call(srv, '/admin/versions', { token: PREDICT_KEY });
    assert.is(forbidden.status, 403);
    assert.match(String(forbidden.body.message), /needs 'admin'/);
    assert.is((await call(srv, '/metrics', { token: PREDICT_KEY })).status, 403);
    assert.is((await call(srv, '/metrics', { token: ADMIN_KEY })).status, 200);
    assert.is((await call(srv, '/admin/versions', { token: ADMIN_KEY })).status, 200);
    // open routes
    for (const p of ['/health', '/ready', '/openapi.json', '/docs']) assert.is((await call(srv, p)).status, 200, p);
    // admin over HTTP: deploy a file under the model directory, refuse one outside it
    const dep = await call(srv, '/admin/deploy', {
      token: ADMIN_KEY,
      body: { path: 'auth-candidate.safetensors', version: 'v2', weight: 0.5 },
    });
    assert.is(dep.status, 200, JSON.stringify(dep.body));
    const outside = await call(srv, '/admin/deploy', {
      token: ADMIN_KEY,
      body: { path: '../../etc/passwd', version: 'v3', weight: 0.1 },
    });
    assert.is(outside.status, 400);
    assert.match(String(outside.body.message), /outside the model directory|does not exist/);
    assert.is((await call(srv, '/admin/promote', { token: PREDICT_KEY, body: { version: 'v2' } })).status, 403);
    assert.is((await call(srv, '/admin/promote', { token: ADMIN_KEY, body: { version: 'v2' } })).status, 200);
    assert.is(srv.version, 'v2');
    assert.is((await call(srv, '/admin/promote', { token: ADMIN_KEY, body: { version: 'zz' } })).status, 404);
    assert.is((await call(srv, '/admin/rollback', { token: ADMIN_KEY, body: {} })).body.primary, 'v1');
    // per-key limits: rows per request, then the token bucket (burst 3, 2 per second)
    const many = await call(srv, '/predict', { token: LIMITED_KEY, body: { inputs: [ROW, ROW, ROW] } });
    assert.is(many.status, 413);
    const codes: number[] = [];
    for (let i = 0; i < 5; i++) codes.push((await call(srv, '/predict', { token: LIMITED_KEY, body })).status);
    assert.equal(codes.slice(0, 2), [200, 200]);
    assert.ok(codes.includes(429), `over the rate: ${codes}`);
    const limited = await call(srv, '/predict', { token: LIMITED_KEY, body });
    assert.is(limited.status, 429);
    assert.ok(Number(limited.headers.get('retry-after')) >= 1);
    assert.is((await call(srv, '/predict', { token: PREDICT_KEY, body })).status, 200, 'limits are per key');
    await sleep(1100);
    assert.is((await call(srv, '/predict', { token: LIMITED_KEY, body })).status, 200, 'the bucket refills');
    assert.match(await srv.metrics(), /kiln_auth_failures_total\{code="401"\} 3/);
  } finally {
    await srv.close();
  }
  const text = readFileSync(audit, 'utf8');
  for (const k of [PREDICT_KEY, ADMIN_KEY, LIMITED_KEY]) assert.not.ok(text.includes(k), 'no key in the audit log');
  const events = text
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as kn.serve.AuditRecord);
  const adminId = kn.serve.hashKey(ADMIN_KEY).slice(7, 19);
  assert.ok(events.some((e) => e.event === 'promote' && e.key === adminId && e.status === 200));
  assert.ok(events.some((e) => e.event === 'deploy' && e.status === 400));
  assert.is(events.filter((e) => e.event === 'auth_failed' && e.status === 401).length, 3);
  assert.ok(events.some((e) => e.event === 'rate_limited'));
  assert.ok(events.some((e) => e.event === 'predict' && (e.detail!.versions as string[]).includes('v1')));
  // bad auth options are refused up front
  await rejectsKiln(kn.serve.createServer(model(1), { port: 0, auth: { keys: {} } }), kn.ArgumentError, /holds no key/);
  await rejectsKiln(
    kn.serve.createServer(model(1), { port: 0, auth: { keys: { short: ['predict'] } } }),
    kn.ArgumentError,
    /at least 16/,
  );
  await rejectsKiln(
    kn.serve.createServer(model(1), { port: 0, auth: { keys: { [PREDICT_KEY]: ['root' as 'admin'] } } }),
    kn.ArgumentError,
    /scopes must be/,
  );
});

test('binding beyond loopback without auth warns; without auth, admin routes answer only local callers', async () => {
  const warnings: Error[] = [];
  const on = (w: Error): void => void warnings.push(w);
  process.on('warning', on);
  const srv = await kn.serve.createServer(model(1), { port: 0, host: '0.0.0.0' });
  try {
    await sleep(20);
    assert.ok(
      warnings.some((w) => (w as Error & { code?: string }).code === 'KILN_NO_AUTH' && /without auth/.test(w.message)),
      'a KILN_NO_AUTH warning',
    );
    assert.is((await call({ url: `http://127.0.0.1:${srv.port}` }, '/admin/versions')).status, 200, 'loopback caller');
  } finally {
    process.off('warning', on);
    await srv.close();
  }
});

test('TLS: the server speaks HTTPS with the given certificate; a client that trusts it gets answers', async () => {
  const key = join(dir, 'key.pem'),
    cert = join(dir, 'cert.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '2',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    ],
    { stdio: 'ignore' },
  );
  const srv = await kn.serve.createServer(model(1), {
    port: 0,
    version: 'tls',
    tls: { cert: readFileSync(cert), key: readFileSync(key) },
    auth: { keys: { [PREDICT_KEY]: ['predict'] } },
  });
  try {
    await ready(srv);
    assert.match(srv.url, /^https:\/\//);
    const post = (ca: Buffer | undefined): Promise<{ status: number; body: string }> =>
      new Promise((resolve, reject) => {
        const data = JSON.stringify({ input: ROW });
        const r = httpsRequest(
          srv.url + '/predict',
          {
            method: 'POST',
            ...(ca ? { ca } : {}),
            headers: { 'content-type': 'application/json', authorization: `Bearer ${PREDICT_KEY}` },
          },
          (res) => {
            let b = '';
            res.on('data', (c: Buffer) => (b += c.toString()));
            res.on('end', () => resolve({ status: res.statusCode!, body: b }));
          },
        );
        r.on('error', reject);
        r.end(data);
      });
    const r = await post(readFileSync(cert));
    assert.is(r.status, 200);
    assert.is((JSON.parse(r.body) as { version: string }).version, 'tls');
    let untrusted: unknown = null;
    await post(undefined).catch((e: unknown) => (untrusted = e));
    assert.match(String((untrusted as Error)?.message), /self.signed|certificate/i);
    // plain HTTP to the TLS port gets no answer
    let plainHttp: unknown = null;
    await fetch(srv.url.replace('https', 'http') + '/health').catch((e: unknown) => (plainHttp = e));
    assert.match(String((plainHttp as Error)?.message), /fetch failed/);
  } finally {
    await srv.close();
  }
  await rejectsKiln(
    kn.serve.createServer(model(1), { port: 0, tls: { cert: cert, key: key } }),
    kn.ArgumentError,
    /PEM string or Buffer/,
  );
});

// ---------------- OpenAPI ----------------

test('GET /openapi.json is valid OpenAPI 3.1 with the model real input and output schema; /docs renders it', async () => {
  const srv = await kn.serve.createServer(model(1), {
    port: 0,
    version: 'doc',
    auth: { keys: { [PREDICT_KEY]: ['predict'] } },
  });
  try {
    await ready(srv);
    await srv.predict(ROW);
    const spec = (await call(srv, '/openapi.json')).body;
    const v = new Validator();
    const res = await v.validate(spec);
    assert.ok(res.valid, JSON.stringify(res.errors));
    assert.is(v.version, '3.1');
    const paths = spec.paths as Record<string, Record<string, { security?: unknown[] }>>;
    for (const p of [
      '/predict',
      '/health',
      '/ready',
      '/metrics',
      '/alerts',
      '/admin/deploy',
      '/admin/promote',
      '/admin/rollback',
    ])
      assert.ok(paths[p], `documents ${p}`);
    assert.equal(paths['/predict']!.post!.security, [{ bearer: ['predict'] }]);
    // the request schema is the one the server validates with: what it accepts, the server accepts
    const schemas = (spec.components as { schemas: Record<string, object> }).schemas;
    const ajv = new Ajv.default({ strict: false });
    const check = ajv.compile(schemas.PredictRequest!);
    assert.ok(check({ input: ROW }));
    assert.ok(check({ inputs: [ROW, ROW], key: 'u1' }));
    assert.not.ok(check({ input: [1, 2, 3] }), 'wrong length');
    assert.not.ok(check({ input: ROW, extra: 1 }));
    const prediction = schemas.Prediction as { properties: { output: { minItems: number; maxItems: number } } };
    assert.is(prediction.properties.output.minItems, 3, 'the output schema has the model output size');
    const bad = await call(srv, '/predict', { token: PREDICT_KEY, body: { input: [1, 2, 3] } });
    assert.is(bad.status, 400);
    const html = await (await fetch(srv.url + '/docs')).text();
    assert.match(html, /<h1>kiln model server/);
    assert.match(html, /\/admin\/promote/);
    assert.match(html, /needs scope <code>admin<\/code>/);
  } finally {
    await srv.close();
  }
});

// ---------------- monitoring and alerts ----------------

test('a drifted input stream raises FeatureDrift (webhook, GET /alerts, metrics); it resolves when inputs return', async () => {
  kn.seed(3);
  const reference = kn.randn([2000, 4]);
  const hooks: { status: string; alerts: { labels: { alertname: string } }[] }[] = [];
  const hook = createHttpServer((req, res) => {
    let b = '';
    req.on('data', (c: Buffer) => (b += c.toString()));
    req.on('end', () => {
      hooks.push(JSON.parse(b) as (typeof hooks)[number]);
      res.end('ok');
    });
  });
  await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
  const port = (hook.address() as { port: number }).port;
  const notified: kn.serve.Notification[] = [];
  const srv = await kn.serve.createServer(model(1), {
    port: 0,
    monitor: {
      reference,
      featureNames: ['age', 'income', 'tenure', 'score'],
      window: 300,
      minSamples: 200,
      evaluateEveryMs: 0,
      webhook: `http://127.0.0.1:${port}/hook`,
    },
    onAlert: (n) => notified.push(n),
  });
  try {
    await ready(srv);
    assert.is(srv.alerts()!.values.feature_psi_max, null, 'nothing before the window has enough examples');
    const feed = async (shift: number, n: number): Promise<void> => {
      const x = kn.randn([n, 4]).toArray() as Float32Array;
      for (let i = 0; i < n; i += 25)
        await Promise.all(
          Array.from({ length: 25 }, (_, k) => {
            const row = Array.from(x.subarray((i + k) * 4, (i + k + 1) * 4));
            row[2] = row[2]! + shift;
            return srv.predict(row);
          }),
        );
    };
    await feed(0, 300);
    for (let e = 0; e < 3; e++) {
      const r = srv.alerts()!;
      assert.ok(r.values.feature_psi_max! < 0.2, `in-distribution psi ${r.values.feature_psi_max}`);
      assert.ok(r.values.prediction_psi! < 0.2);
      assert.equal(r.firing, [], 'no alert on in-distribution inputs');
    }
    await feed(2.5, 300);
    const first = srv.alerts()!;
    assert.is(first.alerts.find((a) => a.name === 'FeatureDrift')!.state, 'pending', 'for: 2 evaluations');
    assert.is(first.features[0]!.feature, 'tenure', 'the drifted feature ranks first');
    assert.ok(first.features[0]!.psi > 1);
    const viaHttp = await call(srv, '/alerts');
    assert.is(viaHttp.status, 200);
    assert.ok((viaHttp.body.firing as string[]).includes('FeatureDrift'));
    assert.ok((viaHttp.body.firing as string[]).includes('Outliers'));
    const m = await srv.metrics();
    assert.match(m, /kiln_drift_psi\{feature="tenure"\} [1-9]/);
    assert.match(m, /kiln_alerts_firing\{alertname="FeatureDrift",severity="warning"\} 1/);
    await srv.monitor!.close(); // waits for the webhook deliveries
    assert.ok(hooks.some((h) => h.status === 'firing' && h.alerts[0]!.labels.alertname === 'FeatureDrift'));
    assert.ok(notified.some((n) => n.status === 'firing' && n.ok));
    await feed(0, 300);
    srv.alerts();
    await srv.monitor!.close();
    assert.ok(hooks.some((h) => h.status === 'resolved' && h.alerts[0]!.labels.alertname === 'FeatureDrift'));
    assert.not.ok(srv.alerts()!.firing.includes('FeatureDrift'));
  } finally {
    await srv.close();
    hook.close();
  }
});

test('Monitor numbers equal kn.data.psi and ksTest on the same reference and window', async () => {
  kn.seed(21);
  const ref = Array.from({ length: 300 }, () => Array.from(kn.randn([3]).toArray() as Float32Array));
  const mon = new kn.serve.Monitor({ reference: ref, window: 120, minSamples: 50, evaluateEveryMs: 0 }, 3);
  const cur = Array.from({ length: 150 }, () =>
    Float32Array.from(kn.randn([3]).toArray() as Float32Array, (v, j) => v * (1 + j) + (j === 2 ? 0.5 : 0)),
  );
  for (const r of cur) mon.observe(r, new Float32Array([0.2, 0.8]));
  const rep = mon.evaluate();
  const win = cur.slice(-120); // the window holds the last 120 examples
  for (let j = 0; j < 3; j++) {
    const f = rep.features.find((x) => x.feature === `x${j}`)!;
    const a = ref.map((r) => r[j]!),
      b = win.map((r) => r[j]!);
    assert.ok(Math.abs(f.psi - kn.data.psi(a, b)) < 1e-12, `psi of x${j}`);
    assert.ok(Math.abs(f.ks - kn.data.ksTest(a, b).statistic) < 1e-12, `ks of x${j}`);
  }
  assert.is(rep.window.examples, 120);
  // the chunked evaluation the timer runs gives the same numbers
  const wide = new kn.serve.Monitor({ reference: kn.randn([400, 100]), window: 100, evaluateEveryMs: 20 }, 100);
  for (let i = 0; i < 100; i++) wide.observe(kn.randn([100]).toArray() as Float32Array, new Float32Array([1]));
  const sync = wide.evaluate();
  const chunked = await wide.evaluateAsync();
  assert.equal(chunked.values, sync.values);
  assert.equal(chunked.features, sync.features);
  wide.start();
  for (let i = 0; i < 200 && wide.report().evaluatedAt === chunked.evaluatedAt; i++) await sleep(10);
  assert.is.not(wide.report().evaluatedAt, chunked.evaluatedAt, 'the timer evaluated');
  await wide.close();
});

test('prediction drift and confidence come from the model outputs; rules are checked and written for Prometheus', async () => {
  kn.seed(4);
  const reference = kn.randn([1000, 4]);
  const rules: kn.serve.AlertRule[] = [
    { name: 'PredShift', metric: 'prediction_psi', op: '>', threshold: 0.25, severity: 'critical' },
    { name: 'LowConfidence', metric: 'confidence_mean', op: '<', threshold: 0.5, for: 3 },
  ];
  const srv = await kn.serve.createServer(model(1), {
    port: 0,
    monitor: { reference, rules, window: 200, evaluateEveryMs: 0 },
  });
  try {
    await ready(srv);
    // inputs that all push the model to one class
    const w = model(1).parameters()[0]!.toArray() as Float32Array; // [3, 4]
    const push = Array.from({ length: 4 }, (_, j) => 4 * Math.sign(w[j]! - (w[4 + j]! + w[8 + j]!) / 2));
    for (let i = 0; i < 200; i += 20) await Promise.all(Array.from({ length: 20 }, () => srv.predict(push)));
    const r = srv.alerts()!;
    assert.ok(r.values.prediction_psi! > 0.25, `prediction psi ${r.values.prediction_psi}`);
    assert.ok(r.firing.includes('PredShift'));
    assert.ok(r.values.confidence_mean! > 0 && r.values.confidence_mean! <= 1);
  } finally {
    await srv.close();
  }
  const yml = kn.serve.prometheusRules(rules, 15);
  const doc = parseYaml(yml) as { groups: { rules: { alert: string; expr: string; for: string; labels: object }[] }[] };
  assert.equal(doc.groups[0]!.rules[0], {
    alert: 'PredShift',
    expr: 'kiln_monitor_prediction_psi > 0.25',
    for: '0s',
    labels: { severity: 'critical' },
    annotations: { summary: 'prediction_psi > 0.25' },
  });
  assert.is(doc.groups[0]!.rules[1]!.for, '30s');
  assert.throws(
    () => kn.serve.prometheusRules([{ name: 'x y', metric: 'outlier_rate', op: '>', threshold: 1 }]),
    /identifier/,
  );
  assert.throws(
    () => kn.serve.prometheusRules([{ name: 'x', metric: 'nope' as 'outlier_rate', op: '>', threshold: 1 }]),
    /metric must be one of/,
  );
  await rejectsKiln(
    kn.serve.createServer(model(1), { port: 0, monitor: { reference: kn.randn([100, 3]) } }),
    kn.ArgumentError,
    /expected \[N, 4/,
  );
});

// ---------------- CLI ----------------

test('kiln serve --auth --reference --write-alert-rules, kiln admin deploy/promote/rollback, kiln apikey', async () => {
  const run = (args: string[]): string =>
    execFileSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { encoding: 'utf8' });
  const k = run(['apikey']);
  const token = /key:\s+(\S+)/.exec(k)![1]!;
  const hashed = /"(sha256:[0-9a-f]{64})"/.exec(k)![1]!;
  assert.is(hashed, kn.serve.hashKey(token));
  const keys = join(dir, 'keys.json');
  writeFileSync(keys, JSON.stringify({ [hashed]: ['admin', 'predict'] }));
  const file = join(dir, 'cli-a.safetensors');
  await kn.io.save(file, model(1), { metadata: { 'kiln.version': 'cli-a' } });
  await kn.io.save(join(dir, 'cli-b.safetensors'), model(2), { metadata: { 'kiln.version': 'cli-b' } });
  kn.seed(5);
  const ref = join(dir, 'ref.parquet');
  const x = kn.randn([200, 4]);
  kn.data.writeParquet(ref, { x });
  const rulesOut = join(dir, 'rules.yml');
  const srv = await startKilnServe([
    file,
    '--port',
    '0',
    '--auth',
    keys,
    '--reference',
    ref,
    '--write-alert-rules',
    rulesOut,
  ]);
  try {
    const url = srv.url;
    const rules = parseYaml(readFileSync(rulesOut, 'utf8')) as { groups: { rules: { alert: string }[] }[] };
    assert.ok(rules.groups[0]!.rules.some((r) => r.alert === 'FeatureDrift'));
    for (let i = 0; i < 200 && (await fetch(url + '/ready')).status !== 200; i++) await sleep(25);
    assert.is((await call({ url }, '/predict', { body: { input: ROW } })).status, 401);
    const admin = (args: string[]): Promise<{ code: number; out: string }> =>
      new Promise((resolve) => {
        const c = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'admin', ...args, '--url', url], {
          env: { ...process.env, KILN_API_KEY: token },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let o = '';
        c.stdout.on('data', (d: Buffer) => (o += d.toString()));
        c.stderr.on('data', (d: Buffer) => (o += d.toString()));
        c.on('exit', (code) => resolve({ code: code ?? -1, out: o }));
      });
    const dep = await admin(['deploy', 'cli-b.safetensors', '--version', 'cli-b', '--weight', '0.5']);
    assert.is(dep.code, 0, dep.out);
    const vs = await admin(['versions']);
    assert.match(vs.out, /"role": "canary"/);
    assert.is((await admin(['promote', 'cli-b'])).code, 0);
    const served = await call({ url }, '/predict', { body: { input: ROW }, token });
    assert.is(served.body.version, 'cli-b');
    const rb = await admin(['rollback']);
    assert.is(rb.code, 0);
    assert.match(rb.out, /"primary": "cli-a"/);
    const refused = await admin(['promote', 'nope']);
    assert.is(refused.code, 1);
    assert.match(refused.out, /HTTP 404/);
    for (let i = 0; i < 2; i++)
      assert.is(
        (await call({ url }, '/predict', { token, body: { inputs: Array.from({ length: 60 }, () => ROW) } })).status,
        200,
      );
    const alerts = await call({ url }, '/alerts', { token });
    assert.is(alerts.status, 200);
    assert.equal((alerts.body.features as { feature: string }[]).map((f) => f.feature).sort(), [
      'x.0',
      'x.1',
      'x.2',
      'x.3',
    ]);
  } finally {
    assert.is(await srv.stop(), 0, srv.output().err);
  }
});

test.run();
