// Live monitoring of a served model: a window of the most recent inputs, predictions and request outcomes,
// compared with the training reference (PSI and KS per feature, PSI of the prediction distribution, the rate
// of inputs outside the reference's range, mean confidence), exported as Prometheus gauges and checked by
// alert rules. A rule goes pending when its condition holds, firing after `for` evaluations in a row, and
// resolved when it stops holding; firing and resolved alerts are POSTed to a webhook (Alertmanager's
// payload shape). The same rules are written as a Prometheus alerting-rules file over the exported gauges.
// No HTTP server here: server.ts feeds it and http.ts serves GET /alerts.
import { Gauge, type Registry } from 'prom-client';
import { stringify } from 'yaml';
import { ArgumentError, checkOptions, describe, optionKeys } from '../errors.js';
import { ksSorted, psi, psiFromBins, quantileBins, type QuantileBins } from '../data/drift.js';
import { Tensor } from '../tensor/tensor.js';
import { hostRng, permutation } from '../data/loader.js';

/** What an alert rule watches (each is also the gauge kiln_monitor_<metric>). */
export type MonitorMetric =
  | 'feature_psi_max'
  | 'feature_ks_max'
  | 'drifted_features'
  | 'prediction_psi'
  | 'outlier_rate'
  | 'confidence_mean'
  | 'confidence_drop'
  | 'error_rate'
  | 'p99_latency_ms';
const METRICS: readonly MonitorMetric[] = [
  'feature_psi_max',
  'feature_ks_max',
  'drifted_features',
  'prediction_psi',
  'outlier_rate',
  'confidence_mean',
  'confidence_drop',
  'error_rate',
  'p99_latency_ms',
];

/** An alert rule: fires when `metric op threshold` holds for `for` evaluations in a row. */
export interface AlertRule {
  name: string;
  metric: MonitorMetric;
  op: '>' | '<';
  threshold: number;
  /** Evaluations in a row the condition must hold before the alert fires (default 1). */
  for?: number;
  severity?: 'info' | 'warning' | 'critical';
  summary?: string;
}

/** The rules a monitor gets when none are given. */
export const DEFAULT_ALERT_RULES: readonly AlertRule[] = [
  {
    name: 'FeatureDrift',
    metric: 'feature_psi_max',
    op: '>',
    threshold: 0.2,
    for: 2,
    severity: 'warning',
    summary: 'an input feature drifted from the training data (PSI > 0.2)',
  },
  {
    name: 'PredictionDrift',
    metric: 'prediction_psi',
    op: '>',
    threshold: 0.2,
    for: 2,
    severity: 'warning',
    summary: 'the distribution of predictions moved away from the one on the training data (PSI > 0.2)',
  },
  {
    name: 'Outliers',
    metric: 'outlier_rate',
    op: '>',
    threshold: 0.05,
    for: 2,
    severity: 'warning',
    summary: 'over 5% of inputs have a value outside the range seen in training',
  },
  {
    name: 'ConfidenceDrop',
    metric: 'confidence_drop',
    op: '>',
    threshold: 0.1,
    for: 2,
    severity: 'warning',
    summary: 'mean confidence fell over 0.1 below its value on the training data',
  },
  {
    name: 'ErrorRate',
    metric: 'error_rate',
    op: '>',
    threshold: 0.05,
    for: 1,
    severity: 'critical',
    summary: 'over 5% of recent requests failed',
  },
  {
    name: 'Latency',
    metric: 'p99_latency_ms',
    op: '>',
    threshold: 1000,
    for: 2,
    severity: 'critical',
    summary: 'p99 latency of recent requests is over 1 s',
  },
];

/** monitor option of createServer. */
export interface MonitorOptions {
  /** Training inputs as the model takes them: a [N, ...inputShape] tensor or rows of numbers. */
  reference: Tensor | readonly ArrayLike<number>[];
  /** Names of the input features (default x0, x1, ...). */
  featureNames?: readonly string[];
  /** Most recent examples compared with the reference (default 500). */
  window?: number;
  /** Examples the window needs before drift numbers are computed (default 100). */
  minSamples?: number;
  /** Reference rows kept (a seeded sample; default 5000). */
  maxReference?: number;
  /** PSI bins (default 10). */
  bins?: number;
  /** A value is an outlier outside the reference's [q, 1-q] quantiles of its feature (default 0.001). */
  outlierQuantile?: number;
  /** Alert rules (default DEFAULT_ALERT_RULES). */
  rules?: readonly AlertRule[];
  /** URL that gets a POST for each alert that fires or resolves. */
  webhook?: string;
  /** Milliseconds between evaluations (default 10000; 0: only when asked, e.g. GET /alerts). */
  evaluateEveryMs?: number;
}

/** An alert's state as GET /alerts reports it. */
export interface AlertState {
  name: string;
  metric: MonitorMetric;
  op: '>' | '<';
  threshold: number;
  severity: string;
  summary: string;
  state: 'inactive' | 'pending' | 'firing';
  value: number | null;
  /** ISO time the alert started firing (null unless firing). */
  since: string | null;
}

/** What evaluate() returns (and GET /alerts sends). */
export interface MonitorReport {
  evaluatedAt: string;
  window: { examples: number; requests: number };
  values: Record<MonitorMetric, number | null>;
  features: { feature: string; psi: number; ks: number }[];
  alerts: AlertState[];
  firing: string[];
}

/** A webhook delivery (for tests and the audit log). */
export interface Notification {
  status: 'firing' | 'resolved';
  alert: AlertState;
  ok: boolean;
  error?: string;
}

function checkRule(r: AlertRule, i: number): Required<AlertRule> {
  const where = `alert rule ${i} (${describe(r?.name)})`;
  checkOptions(
    r,
    where,
    optionKeys<AlertRule>({
      name: true,
      metric: true,
      op: true,
      threshold: true,
      for: true,
      severity: true,
      summary: true,
    }),
    'required',
  );
  if (typeof r.name !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(r.name))
    throw new ArgumentError(`${where}: name must be an identifier (letters, digits, _), got ${describe(r.name)}`);
  if (!METRICS.includes(r.metric))
    throw new ArgumentError(`${where}: metric must be one of ${METRICS.join(', ')}, got ${describe(r.metric)}`);
  if (r.op !== '>' && r.op !== '<') throw new ArgumentError(`${where}: op must be '>' or '<', got ${describe(r.op)}`);
  if (typeof r.threshold !== 'number' || !Number.isFinite(r.threshold))
    throw new ArgumentError(`${where}: threshold must be a finite number, got ${describe(r.threshold)}`);
  const f = r.for ?? 1;
  if (!Number.isInteger(f) || f < 1)
    throw new ArgumentError(`${where}: for must be an integer >= 1, got ${describe(f)}`);
  const sev = r.severity ?? 'warning';
  if (!['info', 'warning', 'critical'].includes(sev))
    throw new ArgumentError(`${where}: severity must be info, warning or critical, got ${describe(sev)}`);
  return {
    name: r.name,
    metric: r.metric,
    op: r.op,
    threshold: r.threshold,
    for: f,
    severity: sev,
    summary: r.summary ?? `${r.metric} ${r.op} ${r.threshold}`,
  };
}

/** Confidence of one output row: its top softmax probability (the row itself when it already sums to 1). */
function confidence(o: Float32Array): number {
  if (o.length < 2) return NaN;
  let sum = 0,
    max = -Infinity,
    probs = true;
  for (let i = 0; i < o.length; i++) {
    const v = o[i]!;
    if (v < 0 || v > 1) probs = false;
    sum += v;
    if (v > max) max = v;
  }
  if (probs && Math.abs(sum - 1) < 1e-3) return max;
  let z = 0;
  for (let i = 0; i < o.length; i++) z += Math.exp(o[i]! - max);
  return 1 / z;
}

/** The predicted value of one output row: the class (argmax) for several outputs, else the value. */
function predicted(o: Float32Array): number {
  if (o.length === 1) return o[0]!;
  let k = 0;
  for (let i = 1; i < o.length; i++) if (o[i]! > o[k]!) k = i;
  return k;
}

/** Categorical PSI over classes 0..K-1 (one bin per class). */
function classPsi(ref: ArrayLike<number>, cur: ArrayLike<number>, k: number): number {
  const h = (v: ArrayLike<number>): number[] => {
    const c = new Array<number>(k).fill(0);
    for (let i = 0; i < v.length; i++) c[v[i]!]!++;
    return c.map((x) => Math.max(x / v.length, 1e-4));
  };
  const r = h(ref),
    c = h(cur);
  let s = 0;
  for (let i = 0; i < k; i++) s += (c[i]! - r[i]!) * Math.log(c[i]! / r[i]!);
  return s;
}

function quantile(sorted: Float64Array, q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.floor(q * sorted.length)))]!;
}

export class Monitor {
  readonly F: number;
  readonly names: readonly string[];
  private readonly size: number;
  private readonly minSamples: number;
  private readonly bins: number;
  private readonly ref: Float64Array[]; // per feature, the reference values, sorted
  private readonly refBins: QuantileBins[]; // per feature, PSI bins of the reference (computed once)
  private readonly lo: Float64Array;
  private readonly hi: Float64Array;
  private readonly rules: Required<AlertRule>[];
  private readonly xs: Float32Array; // ring of inputs [size, F]
  private readonly preds: Float64Array;
  private readonly conf: Float64Array;
  private n = 0;
  private head = 0;
  private readonly okRing: Uint8Array;
  private readonly msRing: Float64Array;
  private rn = 0;
  private rhead = 0;
  private refPreds: Float64Array | null = null;
  private refConf = NaN;
  private classes = 0;
  private readonly state = new Map<
    string,
    { count: number; firing: boolean; since: string | null; value: number | null }
  >();
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private last: MonitorReport | null = null;
  /** Webhook deliveries so far (newest last, at most 100). */
  readonly notifications: Notification[] = [];
  private readonly pending = new Set<Promise<void>>();
  private featurePsi: Gauge | null = null;
  private featureKs: Gauge | null = null;

  constructor(
    private readonly opts: MonitorOptions,
    per: number,
    private readonly onChange?: (n: Notification) => void,
  ) {
    checkOptions(
      opts,
      'monitor',
      optionKeys<MonitorOptions>({
        reference: true,
        featureNames: true,
        window: true,
        minSamples: true,
        maxReference: true,
        bins: true,
        outlierQuantile: true,
        rules: true,
        webhook: true,
        evaluateEveryMs: true,
      }),
      'required',
    );
    const int = (k: 'window' | 'minSamples' | 'maxReference' | 'bins', dflt: number, min: number): number => {
      const v = opts[k] ?? dflt;
      if (!Number.isInteger(v) || v < min)
        throw new ArgumentError(`monitor.${k} must be an integer >= ${min}, got ${describe(opts[k])}`);
      return v;
    };
    this.size = int('window', 500, 10);
    this.minSamples = int('minSamples', Math.min(100, this.size), 2);
    if (this.minSamples > this.size)
      throw new ArgumentError(`monitor.minSamples (${this.minSamples}) is over monitor.window (${this.size})`);
    this.bins = int('bins', 10, 2);
    const maxRef = int('maxReference', 5000, 10);
    const q = opts.outlierQuantile ?? 0.001;
    if (!(q >= 0 && q < 0.5))
      throw new ArgumentError(`monitor.outlierQuantile must be in [0, 0.5), got ${describe(q)}`);
    if (opts.evaluateEveryMs !== undefined && !(Number.isInteger(opts.evaluateEveryMs) && opts.evaluateEveryMs >= 0))
      throw new ArgumentError(`monitor.evaluateEveryMs must be an integer >= 0, got ${describe(opts.evaluateEveryMs)}`);
    if (opts.webhook !== undefined) {
      let u: URL | null = null;
      try {
        u = new URL(opts.webhook);
      } catch {
        /* reported below */
      }
      if (!u || (u.protocol !== 'http:' && u.protocol !== 'https:'))
        throw new ArgumentError(`monitor.webhook must be an http(s) URL, got ${describe(opts.webhook)}`);
    }
    this.F = per;
    // reference rows: a tensor [N, ...] or a list of rows of `per` numbers
    const r = opts.reference;
    let data: ArrayLike<number>, N: number;
    if (r instanceof Tensor) {
      N = r.shape[0] ?? 0;
      if (r.shape.length < 1 || N * per !== r.size)
        throw new ArgumentError(
          `monitor.reference has shape [${r.shape.join(', ')}]; expected [N, ${per} values per example]`,
        );
      data = r.toArray() as ArrayLike<number>;
    } else if (Array.isArray(r)) {
      N = r.length;
      const flat = new Float64Array(N * per);
      r.forEach((row, i) => {
        if (!row || row.length !== per)
          throw new ArgumentError(`monitor.reference row ${i} has ${describe(row?.length)} values; expected ${per}`);
        for (let j = 0; j < per; j++) flat[i * per + j] = Number(row[j]);
      });
      data = flat;
    } else throw new ArgumentError(`monitor.reference must be a tensor or a list of rows, got ${describe(r)}`);
    if (N < 10) throw new ArgumentError(`monitor.reference needs at least 10 examples, got ${N}`);
    for (let i = 0; i < data.length; i++)
      if (!Number.isFinite(data[i]!)) throw new ArgumentError(`monitor.reference holds a non-finite value at ${i}`);
    // a seeded sample of at most maxRef rows
    const rows =
      N > maxRef ? Array.from(permutation(N, hostRng(0x6b696c6e)).subarray(0, maxRef)) : [...Array(N).keys()];
    this.ref = Array.from({ length: per }, (_, j) => Float64Array.from(rows, (i) => data[i * per + j]!).sort());
    this.refBins = this.ref.map((r) => quantileBins(r, this.bins));
    this.lo = Float64Array.from(this.ref, (s) => quantile(s, q));
    this.hi = Float64Array.from(this.ref, (s) => quantile(s, 1 - q));
    this.referenceRows = rows.map((i) => Float32Array.from({ length: per }, (_, j) => data[i * per + j]!));
    const names = opts.featureNames ?? Array.from({ length: per }, (_, j) => `x${j}`);
    if (!Array.isArray(names) || names.length !== per || !names.every((s) => typeof s === 'string'))
      throw new ArgumentError(`monitor.featureNames must be ${per} strings, got ${describe(names)}`);
    this.names = [...names];
    this.rules = (opts.rules ?? DEFAULT_ALERT_RULES).map(checkRule);
    const seen = new Set<string>();
    for (const rule of this.rules) {
      if (seen.has(rule.name)) throw new ArgumentError(`alert rule name '${rule.name}' is used twice`);
      seen.add(rule.name);
    }
    this.xs = new Float32Array(this.size * per);
    this.preds = new Float64Array(this.size);
    this.conf = new Float64Array(this.size);
    this.okRing = new Uint8Array(this.size);
    this.msRing = new Float64Array(this.size);
  }

  /** The reference rows kept (the server runs the model on them once for the reference predictions). */
  referenceRows: Float32Array[];

  /** Sets the model's outputs on the reference rows (prediction and confidence reference). */
  setReferenceOutputs(outputs: readonly Float32Array[]): void {
    this.classes = outputs[0] && outputs[0].length > 1 ? outputs[0].length : 0;
    this.refPreds = Float64Array.from(outputs, predicted);
    const c = outputs.map(confidence).filter(Number.isFinite);
    this.refConf = c.length ? c.reduce((a, b) => a + b, 0) / c.length : NaN;
  }

  /** Records one served example. */
  observe(input: Float32Array, output: Float32Array): void {
    this.xs.set(input, this.head * this.F);
    this.preds[this.head] = predicted(output);
    this.conf[this.head] = confidence(output);
    this.head = (this.head + 1) % this.size;
    this.n = Math.min(this.n + 1, this.size);
  }

  /** Records one request's outcome. */
  outcome(ok: boolean, ms: number): void {
    this.okRing[this.rhead] = ok ? 1 : 0;
    this.msRing[this.rhead] = ms;
    this.rhead = (this.rhead + 1) % this.size;
    this.rn = Math.min(this.rn + 1, this.size);
  }

  /** Exports the monitor's gauges into a server's registry. */
  register(registry: Registry): void {
    const registers = [registry];
    const value = (k: MonitorMetric): number => this.last?.values[k] ?? NaN;
    const firing = (): { alertname: string; severity: string; on: number }[] =>
      this.rules.map((r) => ({ alertname: r.name, severity: r.severity, on: this.state.get(r.name)?.firing ? 1 : 0 }));
    for (const k of METRICS)
      new Gauge({
        name: `kiln_monitor_${k}`,
        help: `live-window ${k.replace(/_/g, ' ')} (NaN until the window has enough examples)`,
        registers,
        collect() {
          this.set(value(k));
        },
      });
    this.featurePsi = new Gauge({
      name: 'kiln_drift_psi',
      help: 'PSI of each input feature, live window vs training reference',
      labelNames: ['feature'],
      registers,
    });
    this.featureKs = new Gauge({
      name: 'kiln_drift_ks',
      help: 'KS statistic of each input feature, live window vs training reference',
      labelNames: ['feature'],
      registers,
    });
    new Gauge({
      name: 'kiln_alerts_firing',
      help: 'alerts firing now, by rule',
      labelNames: ['alertname', 'severity'],
      registers,
      collect() {
        this.reset();
        for (const f of firing()) this.set({ alertname: f.alertname, severity: f.severity }, f.on);
      },
    });
  }

  /** Starts evaluating on a timer (unref'd: it never holds the process). */
  start(): void {
    const every = this.opts.evaluateEveryMs ?? 10000;
    if (every > 0 && !this.timer) {
      this.timer = setInterval(() => {
        if (this.running) return; // the last evaluation is still running
        this.running = this.evaluateAsync()
          .then(() => undefined)
          .finally(() => (this.running = null));
      }, every);
      this.timer.unref();
    }
  }

  /** Stops the timer and waits for webhook deliveries in flight. */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.running;
    await Promise.allSettled([...this.pending]);
  }

  /** The last report (evaluating now if there is none). */
  report(): MonitorReport {
    return this.last ?? this.evaluate();
  }

  /** Computes the window's numbers, updates the alert states and sends webhooks for changes. */
  evaluate(): MonitorReport {
    const it = this.measure();
    let r = it.next();
    while (!r.done) r = it.next();
    return this.conclude(r.value);
  }

  /**
   * evaluate(), giving the event loop a turn after every 32 features, so that requests keep flowing while a wide
   * input is compared (the timer uses this). The window is copied first: examples served meanwhile wait for the
   * next evaluation.
   */
  async evaluateAsync(): Promise<MonitorReport> {
    const it = this.measure();
    let r = it.next();
    while (!r.done) {
      await new Promise((res) => setImmediate(res));
      r = it.next();
    }
    return this.conclude(r.value);
  }

  /** The window's numbers, yielding every 32 features (a copy of the window is taken first). */
  private *measure(): Generator<
    void,
    { values: Record<MonitorMetric, number | null>; features: MonitorReport['features']; n: number; rn: number }
  > {
    const values = Object.fromEntries(METRICS.map((k) => [k, null])) as Record<MonitorMetric, number | null>;
    const features: MonitorReport['features'] = [];
    const n = this.n;
    const xs = this.xs.slice(0, n * this.F),
      predsAll = this.preds.slice(0, n),
      conf = this.conf.slice(0, n);
    const rn = this.rn,
      okRing = this.okRing.slice(0, rn),
      msRing = this.msRing.slice(0, rn);
    if (n >= this.minSamples) {
      let psiMax = 0,
        ksMax = 0,
        drifted = 0,
        outliers = 0;
      const col = new Float64Array(n);
      const out = new Uint8Array(n);
      for (let j = 0; j < this.F; j++) {
        if (j > 0 && j % 32 === 0) yield;
        const lo = this.lo[j]!,
          hi = this.hi[j]!;
        for (let i = 0; i < n; i++) {
          const v = xs[i * this.F + j]!;
          col[i] = v;
          if (v < lo || v > hi) out[i] = 1;
        }
        col.sort();
        const p = psiFromBins(this.refBins[j]!, col);
        const ks = ksSorted(this.ref[j]!, col).statistic;
        features.push({ feature: this.names[j]!, psi: p, ks });
        this.featurePsi?.set({ feature: this.names[j]! }, p);
        this.featureKs?.set({ feature: this.names[j]! }, ks);
        psiMax = Math.max(psiMax, p);
        ksMax = Math.max(ksMax, ks);
        if (p > 0.2) drifted++;
      }
      for (let i = 0; i < n; i++) outliers += out[i]!;
      values.feature_psi_max = psiMax;
      values.feature_ks_max = ksMax;
      values.drifted_features = drifted;
      values.outlier_rate = outliers / n;
      if (this.refPreds)
        values.prediction_psi =
          this.classes > 0 ? classPsi(this.refPreds, predsAll, this.classes) : psi(this.refPreds, predsAll, this.bins);
      const c = Array.from(conf).filter(Number.isFinite);
      if (c.length) {
        values.confidence_mean = c.reduce((a, b) => a + b, 0) / c.length;
        if (Number.isFinite(this.refConf)) values.confidence_drop = this.refConf - values.confidence_mean;
      }
    }
    if (rn > 0) {
      let bad = 0;
      for (let i = 0; i < rn; i++) bad += 1 - okRing[i]!;
      values.error_rate = bad / rn;
      const ms = msRing.sort();
      values.p99_latency_ms = ms[Math.min(ms.length - 1, Math.ceil(0.99 * ms.length) - 1)]!;
    }
    return { values, features, n, rn };
  }

  /** Updates the alert states from a measurement, sends webhooks for changes, and keeps the report. */
  private conclude(m: {
    values: Record<MonitorMetric, number | null>;
    features: MonitorReport['features'];
    n: number;
    rn: number;
  }): MonitorReport {
    const { values, features, n, rn } = m;
    const now = new Date().toISOString();
    const alerts: AlertState[] = this.rules.map((r) => {
      const v = values[r.metric];
      const s = this.state.get(r.name) ?? { count: 0, firing: false, since: null, value: null };
      const holds = v !== null && (r.op === '>' ? v > r.threshold : v < r.threshold);
      s.value = v;
      s.count = holds ? s.count + 1 : 0;
      const wasFiring = s.firing;
      s.firing = s.count >= r.for;
      if (s.firing && !wasFiring) s.since = now;
      this.state.set(r.name, s);
      const a: AlertState = {
        name: r.name,
        metric: r.metric,
        op: r.op,
        threshold: r.threshold,
        severity: r.severity,
        summary: r.summary,
        state: s.firing ? 'firing' : holds ? 'pending' : 'inactive',
        value: v,
        since: s.firing ? s.since : null,
      };
      if (s.firing !== wasFiring) this.notify(s.firing ? 'firing' : 'resolved', a, wasFiring ? (s.since ?? now) : now);
      if (!s.firing) s.since = null;
      return a;
    });
    this.last = {
      evaluatedAt: now,
      window: { examples: n, requests: rn },
      values,
      features: features.sort((a, b) => b.psi - a.psi),
      alerts,
      firing: alerts.filter((a) => a.state === 'firing').map((a) => a.name),
    };
    return this.last;
  }

  private notify(status: 'firing' | 'resolved', alert: AlertState, startsAt: string): void {
    const record = (ok: boolean, error?: string): void => {
      const n: Notification = { status, alert, ok, ...(error ? { error } : {}) };
      this.notifications.push(n);
      if (this.notifications.length > 100) this.notifications.shift();
      this.onChange?.(n);
    };
    const url = this.opts.webhook;
    if (!url) return record(true);
    const body = JSON.stringify({
      version: '4',
      status,
      receiver: 'kiln',
      alerts: [
        {
          status,
          labels: { alertname: alert.name, severity: alert.severity, metric: alert.metric },
          annotations: { summary: alert.summary, value: String(alert.value), threshold: String(alert.threshold) },
          startsAt,
          ...(status === 'resolved' ? { endsAt: new Date().toISOString() } : {}),
        },
      ],
    });
    const p = fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
      signal: AbortSignal.timeout(5000),
    })
      .then(
        (r) => record(r.ok, r.ok ? undefined : `HTTP ${r.status}`),
        (e: unknown) => record(false, (e as Error).message),
      )
      .finally(() => this.pending.delete(p));
    this.pending.add(p);
  }

  /**
   * The rules as a Prometheus alerting-rules file (YAML) over the gauges this server exports, for a
   * Prometheus that scrapes /metrics; `intervalSeconds` turns `for` evaluations into a duration.
   */
  prometheusRules(intervalSeconds = (this.opts.evaluateEveryMs ?? 10000) / 1000): string {
    return prometheusRules(this.rules, intervalSeconds);
  }
}

/** Alert rules as a Prometheus alerting-rules file (YAML) over the kiln_monitor_* gauges. */
export function prometheusRules(rules: readonly AlertRule[] = DEFAULT_ALERT_RULES, intervalSeconds = 10): string {
  const checked = rules.map(checkRule);
  return stringify({
    groups: [
      {
        name: 'kiln',
        rules: checked.map((r) => ({
          alert: r.name,
          expr: `kiln_monitor_${r.metric} ${r.op} ${r.threshold}`,
          for: `${Math.max(0, Math.round((r.for - 1) * intervalSeconds))}s`,
          labels: { severity: r.severity },
          annotations: { summary: r.summary },
        })),
      },
    ],
  });
}
