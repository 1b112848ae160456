// The training report: one self-contained HTML file (no network) that shows a training run. Loss and metric
// curves (train vs val), the learning rate, gradient norms, histograms of the first layer's weights and outputs
// over the epochs, the confusion matrix and per-class precision/recall of the last validation pass, what the model
// predicted for a fixed batch of validation examples at every epoch (images drawn as images), and the sanity
// checks run before training.
//
// fit({ report }) records the data with a ReportRecorder and renders at the end; with a tracker it also logs the
// data as the artifact report/report.json (and the page as report/report.html), so `kiln report RUN` can render
// any run later: curves come from the run's metric files, the rest from that artifact when present.
//
// Charts are drawn in the page by uPlot, inlined with its CSS; tables are rendered here. Every string from data or
// files is HTML-escaped, the data block is JSON with '<' escaped, and names from files are carried as arrays of
// pairs, never as object keys.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { PNG } from 'pngjs';
import { noGrad } from '../autograd/tape.js';
import { tidy } from '../engine/memory.js';
import { ArgumentError, FormatError, checkOptions, describe, optionKeys } from '../errors.js';
import { info } from '../info.js';
import { writeFileAtomicSync } from '../io/atomic.js';
import { classificationReport, confusionMatrix } from '../metrics/index.js';
import type { Module } from '../nn/module.js';
import { getRngState, setRngState } from '../ops/random.js';
import type { Tensor } from '../tensor/tensor.js';
import type { RunRecord } from './index.js';

/** One epoch of a fine histogram: its own range and counts. */
export interface HistogramEpoch {
  epoch: number;
  min: number;
  max: number;
  counts: number[];
}

/** A histogram tracked over epochs. */
export interface HistogramSeries {
  title: string;
  epochs: HistogramEpoch[];
}

/** A sanity check's outcome. */
export interface CheckResult {
  name: string;
  ok: boolean;
  message: string;
}

/** The predictions on the fixed validation batch at one epoch. */
export interface FixedEpoch {
  epoch: number;
  /** predicted class (classification) or value (regression) per example */
  pred: number[];
  /** the predicted class's probability (classification), else null */
  confidence: (number | null)[];
}

/** Everything a report shows. Series names are carried as [name, points] pairs. */
export interface ReportData {
  version: 1;
  title: string;
  created: string;
  kiln: string;
  run: { id: string; name: string; experiment: string; status: string } | null;
  params: [string, string][];
  /** per-epoch series: [name, [epoch, value][]] (train/loss, val/loss, val/accuracy, lr, ...) */
  epochSeries: [string, [number, number][]][];
  /** per-step series: [name, [step, value][]] (train/loss_step, train/grad_norm) */
  stepSeries: [string, [number, number][]][];
  histograms: HistogramSeries[];
  task: 'classification' | 'regression' | null;
  classes: string[] | null;
  /** the last validation pass: rows are true classes, columns predicted */
  confusion: number[][] | null;
  confusionEpoch: number | null;
  fixed: {
    /** a PNG data URL per example when the inputs are images, else the first values */
    inputs: ({ image: string } | { values: number[] })[];
    targets: number[];
    epochs: FixedEpoch[];
  } | null;
  checks: CheckResult[];
  notes: string[];
}

const BINS = 64;

function fineHistogram(epoch: number, v: ArrayLike<number>): HistogramEpoch {
  let min = Infinity,
    max = -Infinity;
  for (let i = 0; i < v.length; i++) {
    const x = v[i]!;
    if (Number.isFinite(x)) {
      if (x < min) min = x;
      if (x > max) max = x;
    }
  }
  const counts = new Array<number>(BINS).fill(0);
  if (min === Infinity) return { epoch, min: 0, max: 0, counts };
  const w = (max - min) / BINS || 1;
  for (let i = 0; i < v.length; i++) {
    const x = v[i]!;
    if (Number.isFinite(x)) counts[Math.min(BINS - 1, Math.floor((x - min) / w))]!++;
  }
  return { epoch, min, max, counts };
}

/** The image shape of one sample's input: [C, H, W] for 1 or 3 channels, [H, W], or a flat square. */
function imageShape(shape: readonly number[]): [number, number, number] | null {
  const s = shape.slice(1);
  if (s.length === 3 && (s[0] === 1 || s[0] === 3) && s[1]! >= 8 && s[2]! >= 8) return [s[0]!, s[1]!, s[2]!];
  if (s.length === 2 && s[0]! >= 8 && s[1]! >= 8) return [1, s[0]!, s[1]!];
  if (s.length === 1) {
    const r = Math.round(Math.sqrt(s[0]!));
    if (r >= 8 && r * r === s[0]) return [1, r, r];
  }
  return null;
}

/** One sample as a PNG data URL, each image scaled to its own min..max. */
function pngDataUrl(v: ArrayLike<number>, off: number, [c, h, w]: [number, number, number]): string {
  const n = c * h * w;
  let lo = Infinity,
    hi = -Infinity;
  for (let i = 0; i < n; i++) {
    const x = v[off + i]!;
    if (Number.isFinite(x)) {
      lo = Math.min(lo, x);
      hi = Math.max(hi, x);
    }
  }
  const scale = hi > lo ? 255 / (hi - lo) : 0;
  const png = new PNG({ width: w, height: h });
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const o = (y * w + x) * 4;
      for (let ch = 0; ch < 3; ch++) {
        const val = v[off + (c === 3 ? ch : 0) * h * w + y * w + x]!;
        png.data[o + ch] = Number.isFinite(val) ? Math.round((val - lo) * scale) : 0;
      }
      png.data[o + 3] = 255;
    }
  return `data:image/png;base64,${PNG.sync.write(png).toString('base64')}`;
}

/** Options of fit's `report`. */
export interface ReportOptions {
  /** where to write the HTML file */
  path: string;
  /** page title (default "Training report") */
  title?: string;
  /** class names, by class index */
  classes?: readonly string[];
  /** how many validation examples to follow across epochs (default 16, at most 64) */
  examples?: number;
}

/** Checks fit's `report` option. */
export function reportOptions(r: unknown): ReportOptions | null {
  if (r === undefined || r === null || r === false) return null;
  const o: ReportOptions = typeof r === 'string' ? { path: r } : (r as ReportOptions);
  if (o === null || typeof o !== 'object' || typeof o.path !== 'string' || o.path === '')
    throw new ArgumentError(
      `fit: report must be a file path or { path, title?, classes?, examples? }, got ${describe(r)}`,
    );
  checkOptions(o, 'fit report', optionKeys<ReportOptions>({ path: true, title: true, classes: true, examples: true }));
  if (o.title !== undefined && typeof o.title !== 'string')
    throw new ArgumentError(`fit: report.title must be a string, got ${describe(o.title)}`);
  const n = o.examples ?? 16;
  if (!Number.isInteger(n) || n < 0 || n > 64)
    throw new ArgumentError(`fit: report.examples must be an integer in [0, 64], got ${describe(o.examples)}`);
  if (o.classes !== undefined && (!Array.isArray(o.classes) || o.classes.some((c) => typeof c !== 'string')))
    throw new ArgumentError(`fit: report.classes must be an array of names, got ${describe(o.classes)}`);
  return { ...o, examples: n };
}

/** The first module (depth first) that holds parameters of its own and no children: the "first layer". */
function firstLayer(model: Module): [string, Module] | null {
  for (const [name, m] of model.namedModules())
    if (m.children().length === 0 && m.namedParameters().length > 0)
      return [name ? `${name} (${m.constructor.name})` : m.constructor.name, m];
  return null;
}

/**
 * Collects what the report shows while fit trains. Nothing it does changes training: it runs the model in eval
 * mode without gradients on a fixed batch and puts back the mode and kiln's RNG state.
 * @internal
 */
export class ReportRecorder {
  readonly data: ReportData;
  private readonly weights: HistogramSeries | null;
  private readonly acts: HistogramSeries | null;
  private readonly layer: [string, Module] | null;

  constructor(
    private readonly model: Module,
    private readonly fixedBatch: { x: Tensor; y: Tensor } | null,
    opts: ReportOptions,
  ) {
    this.layer = firstLayer(model);
    const w = this.layer?.[1].namedParameters()[0];
    this.weights = w ? { title: `weights of ${this.layer![0]} (${w[0]})`, epochs: [] } : null;
    this.acts =
      this.layer && fixedBatch ? { title: `outputs of ${this.layer[0]} on the fixed batch`, epochs: [] } : null;
    this.data = {
      version: 1,
      title: opts.title ?? 'Training report',
      created: new Date().toISOString(),
      kiln: info().kiln,
      run: null,
      params: [],
      epochSeries: [],
      stepSeries: [],
      histograms: [this.weights, this.acts].filter((h): h is HistogramSeries => h !== null),
      task: null,
      classes: opts.classes ? [...opts.classes] : null,
      confusion: null,
      confusionEpoch: null,
      fixed: null,
      checks: [],
      notes: [],
    };
    if (fixedBatch) {
      const x = fixedBatch.x;
      const shape = imageShape(x.shape);
      const v = x.toArray() as ArrayLike<number>;
      const per = x.size / (x.shape[0] ?? 1);
      const n = x.shape[0] ?? 0;
      this.data.fixed = {
        inputs: Array.from({ length: n }, (_, i) =>
          shape
            ? { image: pngDataUrl(v, i * per, shape) }
            : { values: Array.from({ length: Math.min(per, 8) }, (_, j) => v[i * per + j]!) },
        ),
        targets: Array.from(fixedBatch.y.toArray() as ArrayLike<number>).slice(0, n),
        epochs: [],
      };
    }
  }

  /** Records the epoch: weight and output histograms of the first layer and the fixed batch's predictions. */
  epoch(epoch: number): void {
    const w = this.layer?.[1].namedParameters()[0]?.[1];
    if (w && this.weights) this.weights.epochs.push(fineHistogram(epoch, w.toArray() as ArrayLike<number>));
    if (!this.fixedBatch) return;
    const rng = getRngState();
    const training = this.model.training;
    const layer = this.layer?.[1] as (Module & { forward: (x: Tensor) => Tensor }) | undefined;
    let captured: ArrayLike<number> | null = null;
    const own = layer !== undefined && Object.prototype.hasOwnProperty.call(layer, 'forward');
    const orig = layer?.forward;
    if (layer && orig && !own)
      layer.forward = (x: Tensor): Tensor => {
        const y = orig.call(layer, x);
        captured = y.toArray() as ArrayLike<number>;
        return y;
      };
    try {
      this.model.eval();
      const out = tidy(() =>
        noGrad(() => {
          const o = this.model.call(this.fixedBatch!.x);
          if (o.ndim === 2 && o.shape[1]! > 1) {
            const p = o.softmax(1);
            return {
              cls: true,
              pred: Array.from(p.argmax(1).toArray() as ArrayLike<number>),
              conf: Array.from(p.max(1).toArray() as ArrayLike<number>),
            };
          }
          return { cls: false, pred: Array.from(o.reshape([o.shape[0] ?? 1, -1]).toArray() as ArrayLike<number>) };
        }),
      );
      this.data.task ??= out.cls ? 'classification' : 'regression';
      this.data.fixed!.epochs.push({
        epoch,
        pred: out.pred,
        confidence: out.conf ?? out.pred.map(() => null),
      });
      if (captured && this.acts) this.acts.epochs.push(fineHistogram(epoch, captured));
    } finally {
      if (layer && !own) delete (layer as { forward?: unknown }).forward;
      this.model.train(training);
      setRngState(rng);
    }
  }

  /** The labels of the last validation pass, for the confusion matrix and per-class scores. */
  validation(epoch: number, target: ArrayLike<number>, pred: ArrayLike<number>, numClasses: number | null): void {
    this.data.task ??= 'classification';
    this.data.confusion = confusionMatrix(target, pred, numClasses ? { numClasses } : {});
    this.data.confusionEpoch = epoch;
  }

  check(name: string, ok: boolean, message: string): void {
    this.data.checks.push({ name, ok, message });
  }

  /** Frees the fixed batch. */
  dispose(): void {
    this.fixedBatch?.x.dispose();
    this.fixedBatch?.y.dispose();
  }
}

/** Per-epoch series from fit's history. */
export function epochSeriesOf(
  history: readonly { epoch: number; trainLoss: number; valLoss?: number; lr: number; metrics: object }[],
): [string, [number, number][]][] {
  const series = new Map<string, [number, number][]>();
  const add = (name: string, epoch: number, v: number | undefined): void => {
    if (typeof v !== 'number') return;
    if (!series.has(name)) series.set(name, []);
    series.get(name)!.push([epoch, v]);
  };
  for (const h of history) {
    add('train/loss', h.epoch, h.trainLoss);
    add('val/loss', h.epoch, h.valLoss);
    add('lr', h.epoch, h.lr);
    for (const [k, v] of Object.entries(h.metrics)) add(`val/${k}`, h.epoch, v as number);
  }
  return [...series];
}

/** Report data from a tracked run: curves from its metric files, the rest from its report/report.json. */
export function reportDataFromRun(run: RunRecord): ReportData {
  const file = join(run.dir, 'artifacts', 'report', 'report.json');
  let base: ReportData | null = null;
  if (existsSync(file)) {
    try {
      base = JSON.parse(readFileSync(file, 'utf8')) as ReportData;
    } catch (e) {
      throw new FormatError(`${file} is not a readable report: ${(e as Error).message}`);
    }
    if (base?.version !== 1) throw new FormatError(`${file} has an unknown report version ${describe(base?.version)}`);
  }
  const epochSeries: [string, [number, number][]][] = [],
    stepSeries: [string, [number, number][]][] = [];
  for (const [name, pts] of run.metrics) {
    if (name.startsWith('system/') || name === 'epoch/seconds') continue;
    const s: [number, number][] = pts.map((p) => [p.step, p.value]);
    if (name.endsWith('_step') || name === 'train/grad_norm') stepSeries.push([name, s]);
    else epochSeries.push([name, s]);
  }
  const sys = [...run.metrics].filter(([n]) => n.startsWith('system/'));
  return {
    version: 1,
    title: base?.title ?? `Run ${run.name}`,
    created: new Date().toISOString(),
    kiln: info().kiln,
    run: { id: run.id, name: run.name, experiment: run.experiment, status: run.status },
    params: [...run.params].sort(([a], [b]) => (a < b ? -1 : 1)),
    epochSeries: epochSeries.sort(([a], [b]) => (a < b ? -1 : 1)),
    stepSeries: [
      ...stepSeries,
      ...sys.map(([n, p]): [string, [number, number][]] => [n, p.map((q) => [q.step, q.value])]),
    ],
    histograms: base?.histograms ?? [],
    task: base?.task ?? null,
    classes: base?.classes ?? null,
    confusion: base?.confusion ?? null,
    confusionEpoch: base?.confusionEpoch ?? null,
    fixed: base?.fixed ?? null,
    checks: base?.checks ?? [],
    notes: base
      ? (base.notes ?? [])
      : ['this run has no report/report.json artifact (it was not trained by fit with report on): curves only'],
  };
}

// ---------------------------------------------------------------------------------------------------------------
// rendering

const esc = (s: unknown): string =>
  String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

const num = (v: number | null | undefined, d = 4): string =>
  v === null || v === undefined || !Number.isFinite(v)
    ? '-'
    : Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-3)
      ? v.toExponential(2)
      : v.toFixed(d);

/** A chart for the page script: one x axis, series of y values (null: no point). */
interface Chart {
  id: string;
  title: string;
  x: string;
  log?: boolean;
  xs: number[];
  series: { label: string; ys: (number | null)[] }[];
}

/** Aligns [x, y] series on the union of their x values. */
function chart(id: string, title: string, x: string, named: [string, [number, number][]][]): Chart | null {
  const live = named.filter(([, pts]) => pts.length > 0);
  if (!live.length) return null;
  const xs = [...new Set(live.flatMap(([, p]) => p.map(([s]) => s)))].sort((a, b) => a - b);
  const at = new Map(xs.map((v, i) => [v, i]));
  return {
    id,
    title,
    x,
    xs,
    series: live.map(([label, pts]) => {
      const ys = new Array<number | null>(xs.length).fill(null);
      for (const [s, v] of pts) ys[at.get(s)!] = Number.isFinite(v) ? v : null;
      return { label, ys };
    }),
  };
}

/** Histograms over epochs re-binned on one common range, as densities: one series per epoch. */
function histogramChart(id: string, h: HistogramSeries): Chart | null {
  const eps = h.epochs.filter((e) => e.counts.some((c) => c > 0));
  if (!eps.length) return null;
  const lo = Math.min(...eps.map((e) => e.min)),
    hi = Math.max(...eps.map((e) => e.max));
  const n = 48,
    w = (hi - lo) / n || 1;
  const xs = Array.from({ length: n }, (_, i) => lo + (i + 0.5) * w);
  return {
    id,
    title: h.title,
    x: 'value',
    xs,
    series: eps.map((e) => {
      const out = new Array<number>(n).fill(0);
      const total = e.counts.reduce((a, b) => a + b, 0);
      const fw = (e.max - e.min) / e.counts.length;
      e.counts.forEach((c, i) => {
        if (!c) return;
        if (fw === 0) {
          out[Math.min(n - 1, Math.floor((e.min - lo) / w))]! += c;
          return;
        }
        // spread the fine bin's count over the common bins it overlaps
        const a = e.min + i * fw,
          b = a + fw;
        for (let j = Math.max(0, Math.floor((a - lo) / w)); j < n && lo + j * w < b; j++) {
          const ov = Math.min(b, lo + (j + 1) * w) - Math.max(a, lo + j * w);
          if (ov > 0) out[j]! += (c * ov) / fw;
        }
      });
      return { label: `epoch ${e.epoch}`, ys: out.map((c) => c / total / w) };
    }),
  };
}

function table(head: string[], rows: string[][], cls = ''): string {
  return (
    `<table${cls ? ` class="${cls}"` : ''}><thead><tr>${head.map((h) => `<th>${h}</th>`).join('')}</tr></thead><tbody>` +
    rows.map((r) => `<tr>${r.map((c) => `<td>${c}</td>`).join('')}</tr>`).join('') +
    '</tbody></table>'
  );
}

function confusionHtml(d: ReportData): string {
  const cm = d.confusion!;
  const name = (i: number): string => esc(d.classes?.[i] ?? String(i));
  const max = Math.max(1, ...cm.flat());
  const head = ['true \\ predicted', ...cm.map((_, j) => name(j))];
  const rows = cm.map((r, i) => [
    `<b>${name(i)}</b>`,
    ...r.map(
      (v, j) =>
        `<span class="cell${i === j ? ' diag' : ''}" style="background:rgba(${i === j ? '33,102,172' : '214,39,40'},${(v / max).toFixed(3)})${v / max > 0.5 ? ';color:#fff' : ''}">${v}</span>`,
    ),
  ]);
  const rep = classificationReport(
    cm.flatMap((r, i) => r.flatMap((v) => new Array<number>(v).fill(i))),
    cm.flatMap((r) => r.flatMap((v, j) => new Array<number>(v).fill(j))),
    { numClasses: cm.length },
  );
  const per = rep.map((c) => [name(c.class), num(c.precision, 3), num(c.recall, 3), num(c.f1, 3), String(c.support)]);
  return (
    `<h2>Confusion matrix <small>validation, epoch ${esc(d.confusionEpoch)}</small></h2>` +
    table(head, rows, 'confusion') +
    '<h2>Per-class precision and recall</h2>' +
    table(['class', 'precision', 'recall', 'f1', 'support'], per, 'perclass')
  );
}

function fixedHtml(d: ReportData): string {
  const f = d.fixed!;
  if (!f.inputs.length) return '';
  const label = (v: number): string =>
    d.task === 'classification' ? esc(d.classes?.[v] ?? String(v)) : esc(num(v, 3));
  const head = [
    'epoch',
    ...f.inputs.map((inp, i) =>
      'image' in inp
        ? `<img class="sample" alt="example ${i}" src="${inp.image}">`
        : `<code>${esc(inp.values.map((v) => num(v, 2)).join(' '))}</code>`,
    ),
  ];
  const target = ['target', ...f.targets.map((t) => `<b>${label(t)}</b>`)];
  const rows = f.epochs.map((e) => [
    String(e.epoch),
    ...e.pred.slice(0, f.inputs.length).map((p, i) => {
      const ok = d.task === 'classification' ? p === f.targets[i] : null;
      const c = e.confidence[i];
      return `<span class="pred${ok === true ? ' ok' : ok === false ? ' bad' : ''}">${label(p)}${c === null || c === undefined ? '' : `<small>${(c * 100).toFixed(0)}%</small>`}</span>`;
    }),
  ]);
  return (
    '<h2>Predictions on fixed validation examples</h2>' +
    `<p class="note">The same ${f.inputs.length} validation examples after every epoch` +
    (d.task === 'classification' ? ': the predicted class and its probability; green is right, red wrong.' : '.') +
    '</p>' +
    `<div class="scroll">${table(head, [target, ...rows], 'fixed')}</div>`
  );
}

let uplot: { js: string; css: string } | null = null;
function uplotAssets(): { js: string; css: string } {
  if (!uplot) {
    const req = createRequire(import.meta.url);
    const dir = dirname(req.resolve('uplot/package.json'));
    uplot = {
      js: readFileSync(join(dir, 'dist', 'uPlot.iife.min.js'), 'utf8'),
      css: readFileSync(join(dir, 'dist', 'uPlot.min.css'), 'utf8'),
    };
  }
  return uplot;
}

const PAGE_SCRIPT = `
(function () {
  var data = JSON.parse(document.getElementById('kiln-data').textContent);
  function tick(v) {
    if (v === 0 || v == null) return v === 0 ? '0' : '';
    var a = Math.abs(v);
    return a < 1e-2 || a >= 1e5 ? v.toExponential(1) : String(+v.toPrecision(3));
  }
  var palette = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#7f7f7f', '#bcbd22'];
  data.charts.forEach(function (c) {
    var el = document.getElementById(c.id);
    if (!el) return;
    var many = c.series.length > 10;
    var series = [{ label: c.x }].concat(c.series.map(function (s, i) {
      var t = c.series.length > 1 ? i / (c.series.length - 1) : 1;
      var color = many ? 'rgba(31,119,180,' + (0.15 + 0.85 * t).toFixed(2) + ')' : palette[i % palette.length];
      return { label: s.label, stroke: color, width: 1.5, spanGaps: true, points: { show: c.xs.length < 40 } };
    }));
    var opts = {
      title: c.title, width: Math.max(320, Math.min(720, el.clientWidth || 640)), height: 260, series: series,
      scales: { x: { time: false }, y: c.log ? { distr: 3 } : {} },
      axes: [{ label: c.x }, { size: 60, values: function (u, vals) { return vals.map(tick); } }], legend: { show: !many }
    };
    new uPlot(opts, [c.xs].concat(c.series.map(function (s) { return s.ys; })), el);
  });
  document.body.setAttribute('data-rendered', String(data.charts.length));
})();
`;

const PAGE_CSS = `
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1100px; color: #222; padding: 0 16px; }
h1 { margin-bottom: 4px; } h2 { margin-top: 32px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
small { color: #666; font-weight: normal; margin-left: 6px; } .note { color: #555; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; } .chart { flex: 1 1 480px; min-width: 320px; }
table { border-collapse: collapse; margin: 8px 0; } th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th { background: #f5f5f5; } td:first-child, th:first-child { text-align: left; }
.confusion .cell { display: inline-block; min-width: 32px; padding: 2px 4px; }
.fixed td, .fixed th { text-align: center; } .scroll { overflow-x: auto; }
.checks td, .params td { text-align: left; } img.sample { width: 56px; height: 56px; image-rendering: pixelated; }
.pred small { display: block; color: #555; margin: 0; } .ok { color: #1a7f37; } .bad { color: #cf222e; font-weight: bold; }
.pass { color: #1a7f37; font-weight: bold; } .fail { color: #cf222e; font-weight: bold; }
`;

/** The report as one self-contained HTML page. */
export function renderReport(d: ReportData): string {
  const charts: Chart[] = [];
  const series = (pick: (n: string) => boolean): [string, [number, number][]][] =>
    d.epochSeries.filter(([n]) => pick(n));
  const push = (c: Chart | null): void => {
    if (c) charts.push(c);
  };
  push(
    chart(
      'c-loss',
      'Loss per epoch (train vs val)',
      'epoch',
      series((n) => n.endsWith('loss')),
    ),
  );
  push(
    chart(
      'c-metrics',
      'Metrics per epoch',
      'epoch',
      series((n) => n !== 'lr' && !n.endsWith('loss')),
    ),
  );
  push(
    chart(
      'c-lr',
      'Learning rate',
      'epoch',
      series((n) => n === 'lr'),
    ),
  );
  push(
    chart(
      'c-steploss',
      'Training loss per step',
      'step',
      d.stepSeries.filter(([n]) => n === 'train/loss_step'),
    ),
  );
  push(
    chart(
      'c-gradnorm',
      'Gradient norm (global L2, before clipping)',
      'optimizer step',
      d.stepSeries.filter(([n]) => n === 'train/grad_norm'),
    ),
  );
  push(
    chart(
      'c-system',
      'System (sampled)',
      'sample',
      d.stepSeries.filter(([n]) => n.startsWith('system/')),
    ),
  );
  d.histograms.forEach((h, i) => push(histogramChart(`c-hist${i}`, h)));
  const div = (ids: (c: Chart) => boolean): string =>
    `<div class="charts">${charts
      .filter(ids)
      .map((c) => `<div class="chart" id="${c.id}"></div>`)
      .join('')}</div>`;
  const checks = d.checks.length
    ? table(
        ['check', 'result', 'detail'],
        d.checks.map((c) => [
          esc(c.name),
          c.ok ? '<span class="pass">pass</span>' : '<span class="fail">FAIL</span>',
          esc(c.message),
        ]),
        'checks',
      )
    : '<p class="note">No sanity checks were recorded.</p>';
  const { js, css } = uplotAssets();
  const json = JSON.stringify({ charts }).replace(/</g, '\\u003c');
  const run = d.run
    ? `<p>Run <code>${esc(d.run.id)}</code> ${esc(d.run.name)} · experiment ${esc(d.run.experiment)} · ${esc(d.run.status)}</p>`
    : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(d.title)}</title>
<style>${css}</style><style>${PAGE_CSS}</style></head>
<body>
<h1>${esc(d.title)}</h1>
<p class="note">Written ${esc(d.created)} by kiln ${esc(d.kiln)}.</p>
${run}
${d.notes.map((n) => `<p class="note">${esc(n)}</p>`).join('\n')}
<h2>Sanity checks</h2>
${checks}
<h2>Curves</h2>
${div((c) => !c.id.startsWith('c-hist'))}
${d.histograms.length ? `<h2>First layer over time</h2><p class="note">Densities per epoch on one common range; darker is later.</p>${div((c) => c.id.startsWith('c-hist'))}` : ''}
${d.confusion ? confusionHtml(d) : ''}
${d.fixed ? fixedHtml(d) : ''}
${
  d.params.length
    ? `<h2>Parameters</h2>${table(
        ['name', 'value'],
        d.params.map(([k, v]) => [esc(k), esc(v)]),
        'params',
      )}`
    : ''
}
<script id="kiln-data" type="application/json">${json}</script>
<script>${js}</script>
<script>${PAGE_SCRIPT}</script>
</body></html>
`;
}

/** Writes the report (atomically) and returns the path. */
export function writeReport(path: string, d: ReportData): string {
  writeFileAtomicSync(path, [new TextEncoder().encode(renderReport(d))]);
  return path;
}
