// The HTML training report: what fit records (and that recording leaves training unchanged), the page rendered
// from it and from a tracked run by `kiln report`, hostile names escaped, and the page opened in a real headless
// Chromium (Debian's `chromium`, driven by playwright-core): no console errors, no network request, every chart
// drawn (canvases with ink, a screenshot unlike a blank page's), the tables and example images present.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium, type Browser } from 'playwright-core';
import { PNG } from 'pngjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as kn from '../src/index.js';
import type { ReportData } from '../src/track/index.js';
import { tempDir } from './helpers.js';

const tmp = (): string => tempDir('kiln-report-');
const CHROMIUM = process.env.KILN_CHROMIUM ?? '/usr/bin/chromium';

/** A two-class problem on 8x8 "images": the label is the sign of (left half - right half). */
function data(n: number, seed: number): kn.data.Dataset {
  kn.seed(seed);
  const x = kn.randn([n, 1, 8, 8]);
  const v = x.toArray() as Float32Array;
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < 64; j++) s += j % 8 < 4 ? v[i * 64 + j]! : -v[i * 64 + j]!;
    y[i] = s > 0 ? 1 : 0;
  }
  return new kn.data.Dataset({ x, y: kn.tensor(y, [n], { dtype: 'int32' }) });
}

function model(): kn.nn.Module {
  kn.seed(7);
  return new kn.nn.Sequential(new kn.nn.Flatten(), new kn.nn.Linear(64, 16), new kn.nn.ReLU(), new kn.nn.Linear(16, 2));
}

async function train(opts: Partial<kn.train.FitOptions>): Promise<{ m: kn.nn.Module; r: kn.train.FitResult }> {
  const tr = data(128, 1),
    va = data(48, 2);
  const m = model();
  const r = await kn.train.fit(m, {
    train: new kn.data.DataLoader(tr, { batchSize: 16, shuffle: true, seed: 3 }),
    val: new kn.data.DataLoader(va, { batchSize: 16 }),
    loss: 'crossEntropy',
    optimizer: new kn.optim.Adam(m.parameters(), { lr: 1e-2 }),
    epochs: 4,
    metrics: ['accuracy'],
    verbose: 'silent',
    ...opts,
  });
  return { m, r };
}

let browser: Browser | null = null;
async function openBrowser(): Promise<Browser | null> {
  if (browser) return browser;
  if (!existsSync(CHROMIUM)) {
    if (process.env.CI) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)`);
    console.log(`  (skipping the browser checks: ${CHROMIUM} is missing; apt-get install -y chromium)`);
    return null;
  }
  // the sanitizer run preloads ASan into node; Chromium must not inherit it
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env))
    if (v !== undefined && k !== 'LD_PRELOAD' && !k.endsWith('SAN_OPTIONS')) env[k] = v;
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    env,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  return browser;
}

/** Share of pixels that differ from the first pixel's colour (the page background). */
function ink(png: Buffer): number {
  const p = PNG.sync.read(png);
  const d = p.data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4)
    if (Math.abs(d[i]! - d[0]!) + Math.abs(d[i + 1]! - d[1]!) + Math.abs(d[i + 2]! - d[2]!) > 24) n++;
  return n / (p.width * p.height);
}

interface PageCheck {
  errors: string[];
  requests: string[];
  rendered: number;
  canvases: number;
  inked: number;
  tables: number;
  images: number;
  brokenImages: number;
  dialogs: number;
  shotInk: number;
  blankInk: number;
  text: string;
}

async function check(file: string): Promise<PageCheck | null> {
  const b = await openBrowser();
  if (!b) return null;
  const page = await b.newPage({ viewport: { width: 1200, height: 2400 } });
  const errors: string[] = [],
    requests: string[] = [];
  let dialogs = 0;
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('dialog', (d) => {
    dialogs++;
    void d.dismiss();
  });
  // offline: anything but the file itself is refused and recorded
  await page.route('**/*', (route) => {
    const u = route.request().url();
    if (u.startsWith('file:') || u.startsWith('data:')) return route.continue();
    requests.push(u);
    return route.abort();
  });
  try {
    await page.goto(pathToFileURL(file).href, { waitUntil: 'load' });
    await page.waitForSelector('body[data-rendered]', { timeout: 10000 });
    const r = await page.evaluate(() => {
      const canvases = [...document.querySelectorAll('.chart canvas')] as HTMLCanvasElement[];
      const inked = canvases.filter((c) => {
        const g = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 3; i < g.length; i += 4) if (g[i]! > 0) n++;
        return n > 200;
      }).length;
      const imgs = [...document.querySelectorAll('img.sample')] as HTMLImageElement[];
      return {
        rendered: Number(document.body.getAttribute('data-rendered')),
        canvases: canvases.length,
        inked,
        tables: document.querySelectorAll('table:not(.u-legend)').length,
        images: imgs.length,
        brokenImages: imgs.filter((i) => !i.complete || i.naturalWidth === 0).length,
        text: document.body.innerText,
      };
    });
    const shot = await page.screenshot({ fullPage: false });
    await page.goto('about:blank');
    const blank = await page.screenshot();
    return { ...r, errors, requests, dialogs, shotInk: ink(shot), blankInk: ink(blank) };
  } finally {
    await page.close();
  }
}

test('fit({ report }) leaves training unchanged and records curves, histograms, confusion, examples, checks', async () => {
  const dir = tmp();
  try {
    const plain = await train({});
    const path = join(dir, 'report.html');
    const run = kn.track.startRun({ dir: join(dir, 'mlruns'), systemMetrics: false });
    const rep = await train({ report: { path, classes: ['left', 'right'] }, tracker: run });
    run.end();
    assert.equal(
      rep.r.history.map((h) => [h.trainLoss, h.valLoss, h.metrics.accuracy]),
      plain.r.history.map((h) => [h.trainLoss, h.valLoss, h.metrics.accuracy]),
      'the same numbers with and without the report',
    );
    assert.equal(rep.m.parameters()[0]!.toArray(), plain.m.parameters()[0]!.toArray());
    const d = JSON.parse(readFileSync(join(run.dir, 'artifacts', 'report', 'report.json'), 'utf8')) as ReportData;
    assert.ok(existsSync(join(run.dir, 'artifacts', 'report', 'report.html')));
    assert.is(d.task, 'classification');
    const series = new Map(d.epochSeries);
    assert.equal(
      series.get('train/loss')!.map(([e]) => e),
      [1, 2, 3, 4],
    );
    assert.is(series.get('val/accuracy')![3]![1], rep.r.history[3]!.metrics.accuracy);
    const steps = new Map(d.stepSeries);
    assert.is(steps.get('train/loss_step')!.length, 4 * 8, 'one loss per batch');
    assert.ok(steps.get('train/grad_norm')!.every(([, v]) => v > 0 && Number.isFinite(v)));
    // the weight histogram of the first Linear at every epoch, holding all 64*16 weights
    assert.is(d.histograms.length, 2);
    assert.match(d.histograms[0]!.title, /weights of 1 \(Linear\)/);
    assert.equal(
      d.histograms[0]!.epochs.map((e) => e.counts.reduce((a, b) => a + b, 0)),
      [1024, 1024, 1024, 1024],
    );
    // outputs of the first layer on the 16 fixed examples: 16 x 16 values per epoch
    assert.is(
      d.histograms[1]!.epochs[0]!.counts.reduce((a, b) => a + b, 0),
      256,
    );
    // the confusion matrix is the last validation pass: it agrees with the accuracy fit reported
    const cm = d.confusion!;
    assert.is(
      cm.flat().reduce((a, b) => a + b, 0),
      48,
    );
    assert.ok(Math.abs((cm[0]![0]! + cm[1]![1]!) / 48 - rep.r.history[3]!.metrics.accuracy!) < 1e-12);
    // the fixed examples: the first 16 validation rows, drawn as PNG images, predictions at every epoch
    const f = d.fixed!;
    assert.is(f.inputs.length, 16);
    assert.ok(f.inputs.every((i) => 'image' in i && i.image.startsWith('data:image/png;base64,')));
    const png = PNG.sync.read(Buffer.from((f.inputs[0] as { image: string }).image.split(',')[1]!, 'base64'));
    assert.equal([png.width, png.height], [8, 8]);
    assert.equal(f.targets, Array.from(data(48, 2).tensors.y!.toArray() as Int32Array).slice(0, 16));
    assert.is(f.epochs.length, 4);
    const last = f.epochs[3]!;
    assert.ok(last.confidence.every((c) => c! >= 0.5 && c! <= 1));
    // the checks ran before training, and the loss fell
    assert.equal(
      d.checks.map((c) => [c.name, c.ok]),
      [
        ['initial loss', true],
        ['gradient flow', true],
        ['batch independence', true],
        ['training loss fell', true],
      ],
    );
    const html = readFileSync(path, 'utf8');
    assert.ok(!/\b(?:src|href)="https?:/.test(html), 'nothing loaded from the network');
    assert.match(html, /Confusion matrix/);
    assert.match(html, />right</);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the report opens in headless Chromium: no errors, offline, every chart drawn, tables and images', async () => {
  const dir = tmp();
  try {
    const path = join(dir, 'report.html');
    await train({ report: path });
    const c = await check(path);
    if (!c) return;
    assert.equal(c.errors, [], 'no console errors');
    assert.equal(c.requests, [], 'no network requests');
    // loss, metrics, lr, step loss, grad norm, 2 histograms
    assert.is(c.rendered, 7);
    assert.is(c.canvases, 7);
    assert.is(c.inked, 7, 'every chart has drawn lines');
    assert.is(c.tables, 5, 'checks, confusion, per-class, fixed examples, params');
    assert.is(c.images, 16);
    assert.is(c.brokenImages, 0);
    assert.ok(c.shotInk > 0.05, `the screenshot is drawn on (${(c.shotInk * 100).toFixed(1)}% ink)`);
    assert.ok(c.blankInk < 0.001, 'a blank page has no ink');
    assert.match(c.text, /Per-class precision and recall/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('hostile names are escaped: class names and run names with markup run no script', async () => {
  const dir = tmp();
  try {
    const path = join(dir, 'report.html');
    const evil = '<img src=x onerror=alert(1)></script><script>alert(2)</script>';
    await train({ report: { path, classes: [evil, 'b'], title: evil } });
    const html = readFileSync(path, 'utf8');
    assert.not.match(html, /<img src=x/);
    assert.not.match(html, /<script>alert/);
    const c = await check(path);
    if (!c) return;
    assert.is(c.dialogs, 0, 'no script from the data ran');
    assert.equal(c.errors, []);
    assert.match(c.text, /onerror=alert\(1\)/, 'the name is shown as text');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('kiln report RUN renders a tracked run; a run without report data gets its curves; regression reports', async () => {
  const dir = tmp();
  try {
    const store = join(dir, 'mlruns');
    const run = kn.track.startRun({ dir: store, runName: 'with-report', systemMetrics: false });
    await train({ report: join(dir, 'fit.html'), tracker: run });
    run.end();
    const bare = kn.track.startRun({ dir: store, runName: 'curves-only', systemMetrics: false });
    for (let s = 0; s < 5; s++) bare.logMetrics({ 'train/loss': 1 / (s + 1), 'val/loss': 1.2 / (s + 1) }, s);
    bare.end();
    const cli = (...args: string[]) =>
      spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'report', ...args, '--dir', store], {
        encoding: 'utf8',
      });
    const out = join(dir, 'cli.html');
    const r = cli(run.id.slice(0, 8), '-o', out);
    assert.is(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`wrote .*cli.html for run ${run.id} \\(with-report\\)`));
    const html = readFileSync(out, 'utf8');
    assert.match(html, /Confusion matrix/);
    assert.match(html, /with-report/);
    const out2 = join(dir, 'bare.html');
    assert.is(cli('curves-only', '-o', out2).status, 0);
    assert.match(readFileSync(out2, 'utf8'), /no report\/report.json artifact/);
    assert.is(cli('nosuchrun').status, 2);
    const c = await check(out);
    if (c) {
      assert.equal(c.errors, []);
      assert.is(c.inked, c.canvases);
      assert.ok(c.canvases >= 7);
    }
    const c2 = await check(out2);
    if (c2) {
      assert.equal(c2.errors, []);
      assert.is(c2.canvases, 1, 'the loss chart only');
      assert.is(c2.inked, 1);
    }
    // regression without a validation set: values instead of classes, no confusion matrix
    kn.seed(5);
    const x = kn.randn([64, 3]);
    const y = x.matmul(kn.tensor([1, -2, 0.5], [3, 1])).reshape([64]);
    const m = new kn.nn.Linear(3, 1);
    const reg = join(dir, 'reg.html');
    await kn.train.fit(m, {
      train: new kn.data.DataLoader(new kn.data.Dataset({ x, y: y.reshape([64, 1]) }), { batchSize: 16 }),
      loss: 'mse',
      optimizer: new kn.optim.Adam(m.parameters(), { lr: 0.05 }),
      epochs: 3,
      verbose: 'silent',
      report: { path: reg, examples: 4 },
    });
    // without a tracker too, every batch has its own step
    const regData = JSON.parse(
      (/<script id="kiln-data" type="application\/json">(.*?)<\/script>/s.exec(readFileSync(reg, 'utf8')) ?? [])[1]!,
    ) as { charts: { id: string; xs: number[] }[] };
    assert.equal(
      regData.charts.find((c) => c.id === 'c-steploss')!.xs,
      Array.from({ length: 12 }, (_, i) => i),
    );
    const rh = readFileSync(reg, 'utf8');
    assert.not.match(rh, /Confusion matrix/);
    assert.match(rh, /no validation set/);
    const c3 = await check(reg);
    if (c3) {
      assert.equal(c3.errors, []);
      assert.is(c3.images, 0, 'tabular inputs are shown as values');
      assert.match(c3.text, /Predictions on fixed validation examples/);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('bad report options are refused with clear errors', async () => {
  for (const [bad, re] of [
    [{ path: '' }, /report must be a file path or/],
    [{ path: 'x.html', examples: 100 }, /report.examples must be an integer in \[0, 64\]/],
    [{ path: 'x.html', classes: [1, 2] }, /report.classes must be an array of names/],
    [42, /report must be a file path or/],
  ] as const) {
    try {
      await train({ report: bad as unknown as string, epochs: 1 });
      assert.unreachable('accepted');
    } catch (e) {
      assert.instance(e, kn.ArgumentError);
      assert.match((e as Error).message, re);
    }
  }
});

test.after(async () => {
  await browser?.close();
});

test.run();
