// Time features without look-ahead: calendar parts of timestamps (optionally as sin/cos cycles, in a named time
// zone), lags and rolling-window statistics that only see earlier rows of the same series, and time-series
// splits (expanding or sliding training windows, with a gap before each test window).
import * as A from 'apache-arrow';
import { ArgumentError, ShapeError, ValidationError, checkOptions, describe } from '../errors.js';
import { tensor } from '../ops/creation.js';
import { isTensor, type Tensor } from '../tensor/tensor.js';
import type { Split } from './split.js';

/** Timestamps: epoch milliseconds, Dates, or an Arrow timestamp/date column (null or NaN = missing). */
export type Timestamps = ArrayLike<number | Date | null> | A.Vector | Tensor;

function millis(ts: Timestamps, what: string): Float64Array {
  if (ts instanceof A.Vector) {
    const out = new Float64Array(ts.length);
    for (let i = 0; i < ts.length; i++) {
      const v = ts.isValid(i) ? (ts.get(i) as unknown) : null;
      out[i] = v === null ? NaN : v instanceof Date ? v.getTime() : Number(v);
    }
    return out;
  }
  if (isTensor(ts)) return ts.toFloat64Array();
  if (ts === null || typeof ts !== 'object' || typeof (ts as ArrayLike<unknown>).length !== 'number')
    throw new ArgumentError(`${what} takes timestamps (epoch ms, Dates or an Arrow column), got ${describe(ts)}`);
  const a = ts as ArrayLike<number | Date | null>;
  return Float64Array.from({ length: a.length }, (_, i) => {
    const v = a[i];
    if (v === null || v === undefined) return NaN;
    if (v instanceof Date) return v.getTime();
    if (typeof v !== 'number') throw new ArgumentError(`${what}: timestamp ${i} is ${describe(v)}`);
    return v;
  });
}

/** Calendar parts calendarFeatures can produce. */
export type CalendarPart =
  | 'year'
  | 'quarter'
  | 'month'
  | 'day'
  | 'dayOfWeek'
  | 'dayOfYear'
  | 'weekOfYear'
  | 'hour'
  | 'minute'
  | 'isWeekend'
  | 'isMonthStart'
  | 'isMonthEnd';
const PARTS: readonly CalendarPart[] = [
  'year',
  'quarter',
  'month',
  'day',
  'dayOfWeek',
  'dayOfYear',
  'weekOfYear',
  'hour',
  'minute',
  'isWeekend',
  'isMonthStart',
  'isMonthEnd',
];
/** The period of each cyclical part (its values wrap around). */
const PERIOD: Partial<Record<CalendarPart, number>> = {
  month: 12,
  dayOfWeek: 7,
  dayOfYear: 366,
  weekOfYear: 53,
  hour: 24,
  minute: 60,
  day: 31,
};

/** Wall-clock fields of a timestamp in a time zone (Intl for named zones, Date's UTC getters for UTC). */
function wallClock(
  ms: number,
  fmt: Intl.DateTimeFormat | null,
): { y: number; mo: number; d: number; h: number; mi: number } {
  if (!fmt) {
    const t = new Date(ms);
    return {
      y: t.getUTCFullYear(),
      mo: t.getUTCMonth() + 1,
      d: t.getUTCDate(),
      h: t.getUTCHours(),
      mi: t.getUTCMinutes(),
    };
  }
  const p = Object.create(null) as Record<string, string>;
  for (const x of fmt.formatToParts(ms)) p[x.type] = x.value;
  return { y: Number(p.year), mo: Number(p.month), d: Number(p.day), h: Number(p.hour) % 24, mi: Number(p.minute) };
}

/**
 * Calendar features of timestamps, float32 [n, F] with their names. `cyclical: true` replaces each periodic part
 * (month, day, dayOfWeek, dayOfYear, weekOfYear, hour, minute) with its sin and cos, so December sits next to
 * January. `timeZone` (an IANA name, default 'UTC') gives local wall-clock parts. Missing timestamps give NaN.
 * dayOfWeek is 0 for Monday; weekOfYear is the ISO week.
 * @example kn.data.calendarFeatures([Date.UTC(2024, 0, 6)], { parts: ['month', 'dayOfWeek', 'isWeekend'] }).x.toList() // [[1, 5, 1]]
 */
export function calendarFeatures(
  timestamps: Timestamps,
  opts: { parts?: readonly CalendarPart[]; cyclical?: boolean; timeZone?: string } = {},
): { x: Tensor; names: string[] } {
  checkOptions(opts, 'calendarFeatures', ['parts', 'cyclical', 'timeZone']);
  const ms = millis(timestamps, 'calendarFeatures');
  const parts: readonly CalendarPart[] = opts.parts ?? PARTS;
  const given: unknown = parts;
  if (!Array.isArray(given) || given.length === 0 || given.some((p) => !PARTS.includes(p as CalendarPart)))
    throw new ArgumentError(`parts must be a non-empty list of ${PARTS.join(', ')}; got ${describe(opts.parts)}`);
  const tz = opts.timeZone ?? 'UTC';
  let fmt: Intl.DateTimeFormat | null = null;
  if (tz !== 'UTC') {
    try {
      fmt = new Intl.DateTimeFormat('en-US', {
        timeZone: tz,
        hourCycle: 'h23',
        year: 'numeric',
        month: 'numeric',
        day: 'numeric',
        hour: 'numeric',
        minute: 'numeric',
      });
    } catch {
      throw new ArgumentError(`timeZone must be an IANA time zone name such as 'Europe/Paris', got ${describe(tz)}`);
    }
  }
  const cyc = opts.cyclical ?? false;
  const names: string[] = [];
  for (const p of parts) {
    if (cyc && PERIOD[p]) names.push(`${p}_sin`, `${p}_cos`);
    else names.push(p);
  }
  const F = names.length,
    n = ms.length;
  const out = new Float32Array(n * F);
  for (let i = 0; i < n; i++) {
    const row = out.subarray(i * F, i * F + F);
    if (!Number.isFinite(ms[i]!)) {
      row.fill(NaN);
      continue;
    }
    const w = wallClock(ms[i]!, fmt);
    const day0 = Date.UTC(w.y, w.mo - 1, w.d); // the local date as a UTC day
    const dow = (new Date(day0).getUTCDay() + 6) % 7;
    const doy = Math.round((day0 - Date.UTC(w.y, 0, 1)) / 86_400_000) + 1;
    const thursday = day0 + (3 - dow) * 86_400_000;
    const isoYear = new Date(thursday).getUTCFullYear();
    const week = Math.floor((thursday - Date.UTC(isoYear, 0, 1)) / (7 * 86_400_000)) + 1;
    const monthDays = new Date(Date.UTC(w.y, w.mo, 0)).getUTCDate();
    let j = 0;
    for (const p of parts) {
      const v =
        p === 'year'
          ? w.y
          : p === 'quarter'
            ? Math.floor((w.mo - 1) / 3) + 1
            : p === 'month'
              ? w.mo
              : p === 'day'
                ? w.d
                : p === 'dayOfWeek'
                  ? dow
                  : p === 'dayOfYear'
                    ? doy
                    : p === 'weekOfYear'
                      ? week
                      : p === 'hour'
                        ? w.h
                        : p === 'minute'
                          ? w.mi
                          : p === 'isWeekend'
                            ? dow >= 5
                              ? 1
                              : 0
                            : p === 'isMonthStart'
                              ? w.d === 1
                                ? 1
                                : 0
                              : w.d === monthDays
                                ? 1
                                : 0;
      const period = cyc ? PERIOD[p] : undefined;
      if (period) {
        const zeroBased = p === 'month' || p === 'day' || p === 'dayOfYear' || p === 'weekOfYear' ? v - 1 : v;
        row[j++] = Math.sin((2 * Math.PI * zeroBased) / period);
        row[j++] = Math.cos((2 * Math.PI * zeroBased) / period);
      } else row[j++] = v;
    }
  }
  return { x: tensor(out, [n, F]), names };
}

function valuesOf(v: Tensor | ArrayLike<number | null>, what: string): Float64Array {
  if (isTensor(v)) {
    if (v.ndim !== 1) throw new ShapeError(`${what} takes a 1-D series, got shape [${v.shape}]`);
    return v.toFloat64Array();
  }
  if (v === null || typeof v !== 'object' || typeof v.length !== 'number')
    throw new ArgumentError(`${what} takes a series (a Tensor or an array), got ${describe(v)}`);
  return Float64Array.from({ length: v.length }, (_, i) => (v[i] === null ? NaN : Number(v[i])));
}

/**
 * The rows of each series in time order: by `groups` (series keys) and then `time` when given, else in row order.
 * A time that goes backwards without `time` being given cannot be seen here, so pass `time` when rows are not sorted.
 */
function seriesOrder(
  n: number,
  opts: { groups?: ArrayLike<number | string> | Tensor; time?: Timestamps },
  what: string,
): number[][] {
  const g =
    opts.groups === undefined
      ? null
      : isTensor(opts.groups)
        ? Array.from(opts.groups.toArray() as ArrayLike<number>)
        : opts.groups;
  if (g && g.length !== n) throw new ShapeError(`${what}: ${g.length} group keys for ${n} rows`);
  const t = opts.time === undefined ? null : millis(opts.time, what);
  if (t && t.length !== n) throw new ShapeError(`${what}: ${t.length} timestamps for ${n} rows`);
  if (t)
    for (let i = 0; i < n; i++)
      if (!Number.isFinite(t[i]!)) throw new ValidationError(`${what}: timestamp ${i} is missing`);
  const series = new Map<number | string, number[]>();
  for (let i = 0; i < n; i++) {
    const k = g ? g[i]! : 0;
    let s = series.get(k);
    if (!s) series.set(k, (s = []));
    s.push(i);
  }
  const out = [...series.values()];
  if (t) for (const s of out) s.sort((a, b) => t[a]! - t[b]! || a - b);
  return out;
}

/**
 * Lagged copies of a series: column l is the value `lags[l]` steps earlier in the same series (NaN before the
 * series has that much history). Rows may come in any order when `time` is given; `groups` keeps series apart.
 * @example kn.data.lagFeatures([1, 2, 3, 4], [1, 2]).x.toList() // [[NaN, NaN], [1, NaN], [2, 1], [3, 2]]
 */
export function lagFeatures(
  values: Tensor | ArrayLike<number | null>,
  lags: readonly number[],
  opts: { groups?: ArrayLike<number | string> | Tensor; time?: Timestamps } = {},
): { x: Tensor; names: string[] } {
  checkOptions(opts, 'lagFeatures', ['groups', 'time']);
  const v = valuesOf(values, 'lagFeatures');
  if (!Array.isArray(lags) || lags.length === 0 || lags.some((l) => !Number.isInteger(l) || l < 1))
    throw new ArgumentError(`lags must be a non-empty list of positive integers, got ${describe(lags)}`);
  const n = v.length,
    L = lags.length;
  const out = new Float32Array(n * L).fill(NaN);
  for (const rows of seriesOrder(n, opts, 'lagFeatures'))
    rows.forEach((r, pos) => {
      lags.forEach((l, j) => {
        if (pos - l >= 0) out[r * L + j] = v[rows[pos - l]!]!;
      });
    });
  return { x: tensor(out, [n, L]), names: lags.map((l) => `lag_${l}`) };
}

/** Statistics rollingFeatures computes. */
export type RollingStat = 'mean' | 'std' | 'min' | 'max' | 'sum' | 'count';
const STATS: readonly RollingStat[] = ['mean', 'std', 'min', 'max', 'sum', 'count'];

/**
 * Statistics over the `window` rows before each row of its series (the row itself excluded: at prediction time
 * its value is what is being predicted). NaN values are skipped; fewer than `minPeriods` values give NaN.
 * @example kn.data.rollingFeatures([1, 2, 3, 4], 2, { stats: ['mean'] }).x.toList() // [[NaN], [1], [1.5], [2.5]]
 */
export function rollingFeatures(
  values: Tensor | ArrayLike<number | null>,
  window: number,
  opts: {
    stats?: readonly RollingStat[];
    minPeriods?: number;
    groups?: ArrayLike<number | string> | Tensor;
    time?: Timestamps;
  } = {},
): { x: Tensor; names: string[] } {
  checkOptions(opts, 'rollingFeatures', ['stats', 'minPeriods', 'groups', 'time']);
  const v = valuesOf(values, 'rollingFeatures');
  if (!Number.isInteger(window) || window < 1)
    throw new ArgumentError(`window must be a positive integer, got ${describe(window)}`);
  const stats = opts.stats ?? ['mean', 'std', 'min', 'max'];
  if (!Array.isArray(stats) || stats.length === 0 || stats.some((s) => !STATS.includes(s)))
    throw new ArgumentError(`stats must be a non-empty list of ${STATS.join(', ')}; got ${describe(opts.stats)}`);
  const minP = opts.minPeriods ?? 1;
  if (!Number.isInteger(minP) || minP < 1 || minP > window)
    throw new ArgumentError(`minPeriods must be an integer in [1, window], got ${describe(opts.minPeriods)}`);
  const n = v.length,
    S = stats.length;
  const out = new Float32Array(n * S);
  for (const rows of seriesOrder(n, opts, 'rollingFeatures'))
    rows.forEach((r, pos) => {
      let cnt = 0,
        sum = 0,
        sq = 0,
        mn = Infinity,
        mx = -Infinity;
      for (let q = Math.max(0, pos - window); q < pos; q++) {
        const x = v[rows[q]!]!;
        if (Number.isNaN(x)) continue;
        cnt++;
        sum += x;
        sq += x * x;
        if (x < mn) mn = x;
        if (x > mx) mx = x;
      }
      stats.forEach((s, j) => {
        let y: number;
        if (s === 'count') y = cnt;
        else if (cnt < minP) y = NaN;
        else if (s === 'sum') y = sum;
        else if (s === 'mean') y = sum / cnt;
        else if (s === 'min') y = mn;
        else if (s === 'max') y = mx;
        else y = cnt > 1 ? Math.sqrt(Math.max(0, (sq - (sum * sum) / cnt) / (cnt - 1))) : NaN;
        out[r * S + j] = y;
      });
    });
  return { x: tensor(out, [n, S]), names: stats.map((s) => `rolling_${s}_${window}`) };
}

/**
 * Time-series cross-validation (scikit-learn's TimeSeriesSplit): `nSplits` test windows of `testSize` rows at the
 * end of the series, each trained on what comes before it minus a `gap` of rows (so labels that overlap the test
 * window do not leak), on all earlier rows (expanding) or the last `maxTrainSize` (sliding). Pass timestamps
 * instead of a row count when the rows are not in time order: indices then refer to the original rows.
 * @example kn.data.timeSeriesSplit(10, { nSplits: 2, testSize: 2, gap: 1 }).map((s) => s.test.length) // [2, 2]
 */
export function timeSeriesSplit(
  n: number | Timestamps,
  opts: { nSplits?: number; testSize?: number; gap?: number; maxTrainSize?: number } = {},
): Split[] {
  checkOptions(opts, 'timeSeriesSplit', ['nSplits', 'testSize', 'gap', 'maxTrainSize']);
  let order: number[];
  if (typeof n === 'number') {
    if (!Number.isInteger(n) || n < 0) throw new ArgumentError(`expected a row count, got ${describe(n)}`);
    order = Array.from({ length: n }, (_, i) => i);
  } else {
    const t = millis(n, 'timeSeriesSplit');
    order = Array.from({ length: t.length }, (_, i) => i);
    for (let i = 0; i < t.length; i++)
      if (!Number.isFinite(t[i]!)) throw new ValidationError(`timeSeriesSplit: timestamp ${i} is missing`);
    order.sort((a, b) => t[a]! - t[b]! || a - b);
  }
  const rows = order.length;
  const k = opts.nSplits ?? 5;
  if (!Number.isInteger(k) || k < 1)
    throw new ArgumentError(`nSplits must be a positive integer, got ${describe(opts.nSplits)}`);
  const test = opts.testSize ?? Math.floor(rows / (k + 1));
  const gap = opts.gap ?? 0;
  if (!Number.isInteger(test) || test < 1)
    throw new ArgumentError(`testSize must be a positive integer, got ${describe(test)}`);
  if (!Number.isInteger(gap) || gap < 0)
    throw new ArgumentError(`gap must be an integer >= 0, got ${describe(opts.gap)}`);
  const maxTrain = opts.maxTrainSize ?? Infinity;
  if (maxTrain !== Infinity && (!Number.isInteger(maxTrain) || maxTrain < 1))
    throw new ArgumentError(`maxTrainSize must be a positive integer, got ${describe(opts.maxTrainSize)}`);
  const first = rows - k * test;
  if (first - gap < 1)
    throw new ValidationError(
      `timeSeriesSplit: ${rows} rows cannot hold ${k} test windows of ${test} rows after a gap of ${gap} and at least one training row`,
    );
  const out: Split[] = [];
  for (let s = 0; s < k; s++) {
    const start = first + s * test;
    const end = start - gap;
    out.push({
      train: Int32Array.from(order.slice(Math.max(0, end - maxTrain), end)),
      test: Int32Array.from(order.slice(start, start + test)),
    });
  }
  return out;
}
