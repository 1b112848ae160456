// kn.train.fit: the training loop. Seeded and resumable: batch order depends only on (loader seed, epoch),
// kiln's RNG state is saved with each checkpoint, and checkpoints hold model, optimizer and scheduler state,
// so stopping after epoch k and resuming gives bit-identical weights to an uninterrupted run (cpu backend).
import { startProfile, type Profile } from '../profile/profile.js';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SingleBar } from 'cli-progress';
import { noGrad } from '../autograd/tape.js';
import { keep, tidy } from '../engine/memory.js';
import { ArgumentError, ValidationError, checkOptions, describe, optionKeys } from '../errors.js';
import { DataLoader, type Batch } from '../data/loader.js';
import { StreamingDataset } from '../data/stream.js';
import { saveCheckpoint, save, load } from '../io/index.js';
import { restoreCheckpoint } from '../io/checkpoint.js';
import * as M from '../metrics/index.js';
import { cloneStateDict, type Module } from '../nn/module.js';
import { lossFn, type LossFn } from './losses.js';
import { clipGradNormTensor, gradNorm } from '../optim/clip.js';
import { Run } from '../track/index.js';
import {
  ReportRecorder,
  epochSeriesOf,
  reportOptions,
  writeReport,
  type ReportData,
  type ReportOptions,
} from '../track/report.js';
import { batchIndependence, gradientFlow, initialLoss } from './checks.js';

export { lossFn, type LossFn } from './losses.js';
import type { Optimizer } from '../optim/optimizer.js';
import type { LRScheduler } from '../optim/schedulers.js';
import { getRngState, lastSeed, setRngState } from '../ops/random.js';
import { concat } from '../ops/movement.js';
import { isTensor, Tensor } from '../tensor/tensor.js';
import {
  allgatherObject,
  allgatherVariable,
  allreduce,
  barrier,
  broadcastObject,
  isDistributed,
  rank as worldRank,
  size as worldSize,
} from '../distributed/comm.js';
import { DistributedDataParallel } from '../distributed/ddp.js';
import { DistributedSampler } from '../distributed/sampler.js';

/** Metrics computed on the validation set each epoch. */
export type MetricName = 'accuracy' | 'precision' | 'recall' | 'f1' | 'rocAuc';

/** Early stopping: stop when `monitor` has not improved by more than minDelta for `patience` epochs. */
export interface EarlyStopping {
  /** 'valLoss' (default) or a metric name */
  monitor?: 'valLoss' | 'trainLoss' | MetricName;
  mode?: 'min' | 'max';
  patience?: number;
  minDelta?: number;
  /** put the best epoch's weights back at the end (default true) */
  restoreBest?: boolean;
}

/** One epoch's numbers (also what the JSON-lines log prints). */
export interface EpochLog {
  epoch: number;
  trainLoss: number;
  valLoss?: number;
  lr: number;
  seconds: number;
  metrics: Partial<Record<MetricName, number>>;
}

/** Options of fit. */
export interface FitOptions {
  /** the training batches: a DataLoader, or a StreamingDataset (Parquet files larger than memory) */
  train: DataLoader | StreamingDataset;
  val?: DataLoader | null;
  loss: LossFn;
  optimizer: Optimizer;
  epochs: number;
  /** per-class weights for the built-in crossEntropy loss (class imbalance) */
  classWeights?: Tensor | null;
  scheduler?: LRScheduler | null;
  /** step the scheduler once per 'epoch' (default) or per optimizer 'step' */
  schedulerStep?: 'epoch' | 'step';
  metrics?: readonly MetricName[];
  /** averaging of precision/recall/f1 (default 'macro') */
  average?: M.Average;
  earlyStopping?: EarlyStopping | null;
  /** write checkpoints here each epoch (atomically); with `resume`, continue from the last one */
  checkpointDir?: string | null;
  resume?: boolean;
  /**
   * accumulate gradients over this many batches per optimizer step (default 1): each step takes the mean of its
   * batches' gradients (of the fewer batches left when an epoch's count does not divide evenly)
   */
  accumulate?: number;
  /** clip the global gradient norm before each step */
  clipGradNorm?: number | null;
  /** names of the input and target tensors in each batch (default 'x' and 'y') */
  inputKey?: string;
  targetKey?: string;
  /** 'auto' (progress bar on a TTY, JSON lines otherwise), 'bar', 'json' or 'silent' */
  verbose?: 'auto' | 'bar' | 'json' | 'silent';
  /** where JSON lines go (default process.stdout) */
  logStream?: NodeJS.WritableStream;
  /** called after each epoch; return false to stop */
  onEpoch?: (log: EpochLog) => boolean | void | Promise<boolean | void>;
  /**
   * Profile a few training steps with kn.profile (forward, loss, backward and optimizer step): `true` for the
   * defaults, or which steps and where to write the Chrome trace. The Profile is in the result; its table is
   * logged (a JSON line with the totals and top ops in 'json' mode). Under DDP every rank profiles its own steps.
   */
  profile?: boolean | FitProfileOptions;
  /**
   * A kn.track run to log to (rank 0 only under DDP): the settings as params; per step the loss (train/loss_step)
   * and, every `trackEvery` steps, the gradient norm (train/grad_norm); per epoch train/loss, val/loss, the
   * validation metrics (val/<name>), lr and epoch seconds; with TensorBoard on, a histogram of the first
   * parameter each epoch; the fingerprints of the train and val datasets; the seed (kn.lastSeed) and the loader's
   * seed as params; and at the end the final model (artifact model/model.safetensors) and the checkpoints
   * (artifacts checkpoints/). The run is not ended: the caller logs more and ends it.
   */
  tracker?: Run;
  /** log the gradient norm every this many optimizer steps (default 10) */
  trackEvery?: number;
  /**
   * Write a self-contained HTML training report here at the end (rank 0): loss, metric, learning-rate and
   * gradient-norm curves, histograms of the first layer's weights and outputs per epoch, the confusion matrix and
   * per-class precision/recall of the last validation pass, the predictions on fixed validation examples at every
   * epoch, and sanity checks run before training (initial loss, gradient flow, batch independence). With a
   * tracker, the report and its data (report/report.json, which `kiln report` renders) are logged as artifacts.
   * Recording leaves training unchanged. A file path, or options.
   */
  report?: string | ReportOptions;
}

/** fit's `profile` option. */
export interface FitProfileOptions {
  /** batches to profile (default 5) */
  steps?: number;
  /** batches to run first without profiling, so caches and the JIT are warm (default 1) */
  skip?: number;
  /** write the Chrome trace here (atomically); under DDP, rank r > 0 writes PATH with '.rank<r>' before the extension */
  trace?: string;
  /** rows in the logged table (default 10) */
  top?: number;
}

/** What fit returns. */
export interface FitResult {
  history: EpochLog[];
  bestEpoch: number | null;
  best: number | null;
  stoppedEarly: boolean;
  /** epoch the run resumed after (null if it started fresh) */
  resumedFrom: number | null;
  /** the profile of the steps `profile` asked for (null without it, or when training ended before them) */
  profile: Profile | null;
}

interface RunState {
  epoch: number;
  history: EpochLog[];
  best: number | null;
  bestEpoch: number | null;
  wait: number;
  rng: { key0: number; key1: number; counter: number };
  /** every rank's RNG state, by rank (distributed runs) */
  rngs?: { key0: number; key1: number; counter: number }[];
}

/** Throws ValidationError unless `s` is the training state fit saves (its epoch, history, early-stopping and RNG state). */
function checkRunState(s: unknown, path: string): asserts s is RunState {
  const bad = (what: string): never => {
    throw new ValidationError(`${path} holds no training state fit can resume from: ${what}`);
  };
  if (s === null || typeof s !== 'object' || Array.isArray(s)) bad(`the state is ${describe(s)}`);
  const r = s as Record<string, unknown>;
  if (!Number.isSafeInteger(r.epoch) || (r.epoch as number) < 0) bad(`epoch is ${describe(r.epoch)}`);
  if (!Array.isArray(r.history)) bad(`history is ${describe(r.history)}`);
  if (r.best !== null && typeof r.best !== 'number') bad(`best is ${describe(r.best)}`);
  if (r.bestEpoch !== null && !Number.isSafeInteger(r.bestEpoch)) bad(`bestEpoch is ${describe(r.bestEpoch)}`);
  if (!Number.isSafeInteger(r.wait) || (r.wait as number) < 0) bad(`wait is ${describe(r.wait)}`);
  const rng = (v: unknown, what: string): void => {
    const o = v as Record<string, unknown> | null;
    for (const k of ['key0', 'key1', 'counter'])
      if (o === null || typeof o !== 'object' || !Number.isSafeInteger(o[k]) || (o[k] as number) < 0)
        bad(`${what}.${k} is ${describe(o !== null && typeof o === 'object' ? o[k] : o)}`);
  };
  rng(r.rng, 'rng');
  if (r.rngs !== undefined) {
    if (!Array.isArray(r.rngs)) bad(`rngs is ${describe(r.rngs)}`);
    (r.rngs as unknown[]).forEach((v, i) => rng(v, `rngs[${i}]`));
  }
}

/** True when `model` is a DistributedDataParallel in a job of more than one process. */
const FIT_OPTIONS = optionKeys<FitOptions>({
  train: true,
  val: true,
  loss: true,
  optimizer: true,
  epochs: true,
  classWeights: true,
  scheduler: true,
  schedulerStep: true,
  metrics: true,
  average: true,
  earlyStopping: true,
  checkpointDir: true,
  resume: true,
  accumulate: true,
  clipGradNorm: true,
  inputKey: true,
  targetKey: true,
  verbose: true,
  logStream: true,
  onEpoch: true,
  profile: true,
  tracker: true,
  trackEvery: true,
  report: true,
});
const EARLY_STOPPING_OPTIONS = optionKeys<EarlyStopping>({
  monitor: true,
  mode: true,
  patience: true,
  minDelta: true,
  restoreBest: true,
});

function isDdp(model: Module): model is DistributedDataParallel {
  return model instanceof DistributedDataParallel && isDistributed();
}

/**
 * This rank's share of a loader: the same batch size over a DistributedSampler whose base order is the
 * loader's own, so the ranks' batch b together are the one-process run's batch b (for a per-rank batch size of
 * global / world size). `pad` false: shards differ by at most one sample and none repeats (evaluation).
 */
function shard(loader: DataLoader, pad: boolean): DataLoader {
  if (loader.sampler) return loader;
  const sampler = new DistributedSampler(loader.dataset.length, {
    pad,
    order: (epoch) => loader.order(epoch),
  });
  return new DataLoader(loader.dataset, { batchSize: loader.batchSize, dropLast: loader.dropLast, sampler });
}

const LAST = 'last.ckpt.safetensors';
const BEST = 'best.safetensors';

function posInt(v: unknown, what: string): number {
  if (!Number.isInteger(v) || (v as number) < 1)
    throw new ArgumentError(`${what} must be a positive integer, got ${describe(v)}`);
  return v as number;
}

function field(b: Batch, key: string, what: string): Tensor {
  const t = b[key];
  if (!isTensor(t))
    throw new ArgumentError(
      `each batch needs a '${key}' tensor (${what}); the dataset has [${Object.keys(b).join(', ')}] (set inputKey/targetKey)`,
    );
  return t;
}

/** Predictions and scores from model outputs, for the metrics. */
function labelsAndScores(out: Tensor, withScores: boolean): { pred: Int32Array; score: Tensor | null } {
  return noGrad(() =>
    tidy(() => {
      if (out.ndim === 2 && out.shape[1]! > 1) {
        return {
          pred: Int32Array.from(out.argmax(1).toArray() as ArrayLike<number>),
          score: withScores ? out.softmax(1) : null,
        };
      }
      const flat = out.reshape([out.shape[0] ?? 1]);
      const pred = Int32Array.from(flat.toArray() as ArrayLike<number>, (v) => (v > 0 ? 1 : 0));
      return { pred, score: withScores ? flat : null };
    }),
  );
}

/** Evaluates a model on a loader: mean loss over samples and the requested metrics. */
export function evaluate(
  model: Module,
  loader: DataLoader,
  opts: {
    loss: LossFn;
    classWeights?: Tensor | null;
    metrics?: readonly MetricName[];
    average?: M.Average;
    inputKey?: string;
    targetKey?: string;
    /** also return the true and predicted labels (classification outputs) */
    collect?: boolean;
  },
): {
  loss: number;
  metrics: Partial<Record<MetricName, number>>;
  labels?: { target: number[]; pred: number[]; numClasses: number | null };
} {
  checkOptions(
    opts,
    'evaluate',
    ['loss', 'classWeights', 'metrics', 'average', 'inputKey', 'targetKey', 'collect'],
    'required',
  );
  if (!(loader instanceof DataLoader)) throw new ArgumentError(`evaluate takes a DataLoader, got ${describe(loader)}`);
  // under DDP each rank evaluates its shard, and the sums and predictions are gathered: every rank gets the
  // numbers of the whole set
  const dist = isDdp(model);
  if (dist) loader = shard(loader, false);
  const lf = lossFn(opts.loss, opts.classWeights ?? null);
  const ik = opts.inputKey ?? 'x',
    tk = opts.targetKey ?? 'y';
  const wasTraining = model.training;
  model.eval();
  let total = 0,
    n = 0;
  const preds: Int32Array[] = [],
    targets: number[][] = [],
    scores: Tensor[] = [];
  const want = opts.metrics ?? [];
  let collect = want.length > 0 || opts.collect === true;
  // the gathers below are collectives: every rank must make the same choice (fit collects on rank 0 only, for
  // the report)
  if (dist) collect = allreduce(new Int32Array([collect ? 1 : 0]), { op: 'max' })[0] === 1;
  let numClasses: number | null = null;
  try {
    for (const batch of loader.batches(0)) {
      tidy(() =>
        noGrad(() => {
          const x = field(batch, ik, 'input'),
            y = field(batch, tk, 'target');
          const out = model.call(x);
          const l = lf(out, y).item();
          const bs = x.shape[0] ?? 1;
          total += l * bs;
          n += bs;
          if (collect) {
            if (out.ndim === 2) numClasses = Math.max(2, out.shape[1]!);
            const { pred, score } = labelsAndScores(out, want.includes('rocAuc'));
            preds.push(pred);
            targets.push(Array.from(y.toArray() as ArrayLike<number>));
            if (score) scores.push(keep(score));
          }
        }),
      );
      for (const t of Object.values(batch)) t.dispose(); // the loader made them outside the tidy
    }
    const metrics: Partial<Record<MetricName, number>> = {};
    let yt = targets.flat();
    let yp = preds.flatMap((p) => Array.from(p));
    if (dist) {
      const sums = allreduce(new Float64Array([total, n]), { op: 'sum' });
      total = sums[0]!;
      n = sums[1]!;
      if (collect) {
        yt = Array.from(allgatherVariable(Float64Array.from(yt)).all);
        yp = Array.from(allgatherVariable(Float64Array.from(yp)).all);
        if (scores.length) {
          const local = concat(scores, 0);
          const inner = local.shape.slice(1);
          const vals = allgatherVariable(Float64Array.from(local.toArray() as ArrayLike<number>)).all;
          local.dispose();
          for (const t of scores.splice(0)) t.dispose();
          const rows =
            vals.length /
            Math.max(
              1,
              inner.reduce((a, b) => a * b, 1),
            );
          scores.push(Tensor.fromHostNumbers(vals, [rows, ...inner], model.parameters()[0]?.backend ?? 'cpu'));
        }
      }
    }
    if (want.length && n > 0) {
      const avg = opts.average ?? 'macro';
      for (const m of want) {
        if (m === 'accuracy') metrics.accuracy = M.accuracy(yt, yp);
        else if (m === 'precision') metrics.precision = M.precision(yt, yp, { average: avg });
        else if (m === 'recall') metrics.recall = M.recall(yt, yp, { average: avg });
        else if (m === 'f1') metrics.f1 = M.f1(yt, yp, { average: avg });
        else if (m === 'rocAuc') {
          const s = concat(scores, 0);
          try {
            metrics.rocAuc = M.rocAuc(yt, s);
          } finally {
            s.dispose();
          }
        } else
          throw new ArgumentError(`unknown metric ${describe(m)}; expected accuracy, precision, recall, f1 or rocAuc`);
      }
    }
    return {
      loss: n ? total / n : NaN,
      metrics,
      ...(opts.collect ? { labels: { target: yt, pred: yp, numClasses } } : {}),
    };
  } finally {
    for (const s of scores) s.dispose();
    model.train(wasTraining);
  }
}

/**
 * Trains `model`. Each epoch: batches from `train` (seeded order), forward, loss, backward, optional
 * accumulation and clipping, a fused optimizer step; then validation loss and metrics on `val`, early
 * stopping, a checkpoint, and a log line. A non-finite loss stops training with a ValidationError.
 */
export async function fit(model: Module, opts: FitOptions): Promise<FitResult> {
  if (!model || typeof (model as Module).parameters !== 'function')
    throw new ArgumentError(`fit takes a kn.nn.Module, got ${describe(model)}`);
  if (!opts || typeof opts !== 'object')
    throw new ArgumentError(`fit needs options { train, loss, optimizer, epochs }, got ${describe(opts)}`);
  checkOptions(opts, 'fit', FIT_OPTIONS);
  if (opts.earlyStopping != null) checkOptions(opts.earlyStopping, 'fit earlyStopping', EARLY_STOPPING_OPTIONS);
  if (!(opts.train instanceof DataLoader) && !(opts.train instanceof StreamingDataset))
    throw new ArgumentError(
      `fit: train must be a kn.data.DataLoader or kn.data.StreamingDataset, got ${describe(opts.train)}`,
    );
  if (opts.val != null && !(opts.val instanceof DataLoader))
    throw new ArgumentError(`fit: val must be a kn.data.DataLoader, got ${describe(opts.val)}`);
  if (!opts.optimizer || typeof opts.optimizer.step !== 'function')
    throw new ArgumentError(`fit: optimizer must be a kn.optim optimizer, got ${describe(opts.optimizer)}`);
  const epochs = posInt(opts.epochs, 'fit epochs');
  const accumulate = posInt(opts.accumulate ?? 1, 'fit accumulate');
  const lf = lossFn(opts.loss, opts.classWeights ?? null);
  if (opts.metrics !== undefined && !Array.isArray(opts.metrics))
    throw new ArgumentError(`fit: metrics must be a list of metric names, got ${describe(opts.metrics)}`);
  const metrics = [...(opts.metrics ?? [])];
  const es = opts.earlyStopping ?? null;
  const monitor = es?.monitor ?? 'valLoss';
  if (es && monitor !== 'trainLoss' && !opts.val)
    throw new ArgumentError(`early stopping on '${monitor}' needs a val loader`);
  if (es && monitor !== 'valLoss' && monitor !== 'trainLoss' && !metrics.includes(monitor)) metrics.push(monitor);
  const mode = es?.mode ?? (monitor === 'valLoss' || monitor === 'trainLoss' ? 'min' : 'max');
  const patience = es?.patience ?? 5;
  if (!Number.isInteger(patience) || patience < 0)
    throw new ArgumentError(`earlyStopping patience must be an integer >= 0, got ${describe(es?.patience)}`);
  const minDelta = es?.minDelta ?? 0;
  if (typeof minDelta !== 'number' || !(minDelta >= 0))
    throw new ArgumentError(`earlyStopping minDelta must be >= 0, got ${describe(minDelta)}`);
  const restoreBest = es?.restoreBest ?? true;
  const ik = opts.inputKey ?? 'x',
    tk = opts.targetKey ?? 'y';
  const clip = opts.clipGradNorm ?? null;
  if (clip !== null && !(typeof clip === 'number' && clip > 0))
    throw new ArgumentError(`clipGradNorm must be a positive number, got ${describe(clip)}`);
  if (opts.tracker !== undefined && !(opts.tracker instanceof Run))
    throw new ArgumentError(`fit: tracker must be a run from kn.track.startRun, got ${describe(opts.tracker)}`);
  const trackEvery = posInt(opts.trackEvery ?? 10, 'fit trackEvery');
  // DDP: each rank trains on its shard; losses and metrics are reduced over ranks; rank 0 logs and writes
  const dist = isDdp(model);
  const ddp = dist ? model : null;
  const main = !dist || worldRank() === 0;
  const prof = profileOptions(opts.profile, dist ? worldRank() : 0);
  let profiling: ((r: unknown) => Profile) | null = null,
    profileResult: Profile | null = null,
    batchesSeen = 0;
  const stream = opts.train instanceof StreamingDataset ? opts.train : null;
  if (stream && dist && (stream.worldSize !== worldSize() || stream.rank !== worldRank()))
    throw new ArgumentError(
      `fit under DDP: the StreamingDataset is shard ${stream.rank} of ${stream.worldSize}, but this is rank ` +
        `${worldRank()} of ${worldSize()}; open it after kn.distributed.init() (or pass rank and worldSize)`,
    );
  const trainLoader = dist && !stream ? shard(opts.train as DataLoader, true) : opts.train;
  const verbose = main ? (opts.verbose ?? 'auto') : 'silent';
  const useBar = verbose === 'bar' || (verbose === 'auto' && process.stderr.isTTY === true);
  const useJson = verbose === 'json' || (verbose === 'auto' && !useBar);
  const logStream = opts.logStream ?? process.stdout;
  const tracker = main ? (opts.tracker ?? null) : null;
  let optSteps = 0,
    globalStep = 0;
  const opt = opts.optimizer;
  const settings = {
    epochs,
    batch_size: opts.train.batchSize,
    optimizer: opt.constructor.name,
    lr: opt.lr,
    loss: typeof opts.loss === 'string' ? opts.loss : 'custom',
    accumulate,
    clip_grad_norm: clip,
    parameters: model.parameters().reduce((n, p) => n + p.size, 0),
    seed: lastSeed(),
    loader_seed: opts.train.seed,
  };
  tracker?.logParams(settings);
  const ropts = reportOptions(opts.report);
  // the wrapped module under DDP: the report's checks run a backward on rank 0 alone, which must not reach a
  // collective, and the final model is saved with its own parameter names
  const inner = model instanceof DistributedDataParallel ? model.module : model;
  const recorder = main && ropts ? startReport(inner, opts, ropts, ik, tk, stream ? await stream.peek() : null) : null;
  const stepLosses: [number, number][] = [],
    gradNorms: [number, number][] = [];
  if (tracker) {
    // lineage: the exact data this training used
    tracker.logDataset('train', stream ? await stream.manifest() : (opts.train as DataLoader).dataset);
    if (opts.val) tracker.logDataset('val', opts.val.dataset);
  }
  const sched = opts.scheduler ?? null;
  const dir = opts.checkpointDir ?? null;
  if (dir !== null && main) mkdirSync(dir, { recursive: true });
  if (dir !== null && dist) barrier();

  let st: RunState = { epoch: 0, history: [], best: null, bestEpoch: null, wait: 0, rng: getRngState() };
  let bestWeights: Record<string, Tensor> | null = null;
  let resumedFrom: number | null = null;
  if (opts.resume) {
    if (dir === null) throw new ArgumentError('fit: resume needs a checkpointDir');
    const last = join(dir, LAST);
    const have = existsSync(last);
    if (dist && broadcastObject(have) !== have)
      throw new ValidationError(
        `fit resume: rank 0 ${have ? 'does not see' : 'sees'} ${last} but rank ${worldRank()} ${have ? 'does' : 'does not'}; ` +
          'under DDP the checkpointDir must be on a filesystem every rank sees',
      );
    if (have) {
      // the state is checked before the checkpoint touches the model: one fit cannot resume from leaves all as it was
      st = (await restoreCheckpoint(last, { model, optimizer: opt, scheduler: sched }, (s) =>
        checkRunState(s, last),
      )) as RunState;
      const mine = dist && st.rngs?.length === worldSize() ? st.rngs[worldRank()] : undefined;
      setRngState(mine ?? st.rng);
      resumedFrom = st.epoch;
      if (es && restoreBest && existsSync(join(dir, BEST)))
        bestWeights = await load(join(dir, BEST), { backend: model.parameters()[0]?.backend });
    }
  }

  const better = (v: number, best: number | null): boolean =>
    best === null || (mode === 'min' ? v < best - minDelta : v > best + minDelta);
  let stoppedEarly = false;
  let failure: Error | null = null;
  model.train();
  try {
    for (let epoch = st.epoch + 1; epoch <= epochs; epoch++) {
      const t0 = performance.now();
      let lossSum = 0,
        count = 0,
        pending = 0,
        step = 0;
      const bar = useBar
        ? new SingleBar({
            format: `epoch ${epoch}/${epochs} |{bar}| {value}/{total} batches | loss {loss}`,
            stream: process.stderr,
            hideCursor: true,
          })
        : null;
      bar?.start(trainLoader.length, 0, { loss: '-' });
      opt.zeroGrad();
      const doStep = (): void => {
        if (clip !== null) {
          // clipped on the device; the norm is read (a wait for the device) only on the steps that log it
          const t = clipGradNormTensor(opt.params, clip);
          try {
            if ((tracker || recorder) && optSteps % trackEvery === 0) {
              const norm = t === null ? 0 : t.item();
              tracker?.logMetric('train/grad_norm', norm, optSteps);
              if (recorder) gradNorms.push([optSteps, norm]);
            }
          } finally {
            t?.dispose();
          }
        } else if ((tracker || recorder) && optSteps % trackEvery === 0) {
          const norm = gradNorm(opt.params);
          tracker?.logMetric('train/grad_norm', norm, optSteps);
          if (recorder) gradNorms.push([optSteps, norm]);
        }
        optSteps++;
        opt.step();
        opt.zeroGrad();
        pending = 0;
        if (sched && opts.schedulerStep === 'step') sched.step();
      };
      const nBatches = trainLoader.length;
      for await (const batch of trainLoader.batches(epoch - 1)) {
        if (prof && batchesSeen === prof.skip && profileResult === null)
          profiling = startProfile(prof.trace ? { trace: prof.trace } : {});
        // DDP: micro-batches before the last of an accumulation group skip the gradient allreduce
        const local = ddp !== null && pending + 1 < accumulate && step + 1 < nBatches;
        // each step takes the mean of its group's micro-batch gradients: accumulate of them, or the fewer left at
        // the end of the epoch
        const group = Math.max(1, Math.min(accumulate, nBatches - (step - pending)));
        const run = <T>(f: () => T): T => (local ? ddp.noSync(f) : f());
        const l = run(() =>
          tidy(() => {
            try {
              const x = field(batch, ik, 'input'),
                y = field(batch, tk, 'target');
              const out = model.call(x);
              const loss = lf(out, y);
              if (!isTensor(loss) || loss.size !== 1)
                throw new ArgumentError(`the loss function must return a scalar tensor, got ${describe(loss)}`);
              // backward is queued before the loss is read, so a GPU runs it while the host waits for the value;
              // a non-finite loss still stops the run before the optimizer step applies anything
              (group > 1 ? loss.div(group) : loss).backward();
              const v = loss.item();
              if (!Number.isFinite(v)) {
                throw new ValidationError(
                  `training diverged: the loss is ${v} at epoch ${epoch}, batch ${step + 1}; ` +
                    'check the data for NaN/Inf, lower the learning rate, or clip gradients',
                );
              }
              return v;
            } finally {
              for (const t of Object.values(batch)) t.dispose();
            }
          }),
        );
        const bs = batch[ik]?.shape[0] ?? 1;
        lossSum += l * bs;
        count += bs;
        step++;
        if (recorder) stepLosses.push([globalStep, l]);
        tracker?.logMetric('train/loss_step', l, globalStep);
        globalStep++;
        if (++pending === accumulate) doStep();
        bar?.update(step, { loss: (lossSum / count).toFixed(4) });
        if (profiling && ++batchesSeen - prof!.skip >= prof!.steps) {
          profileResult = profiling(null);
          profiling = null;
          logProfile(profileResult, prof!.top, verbose === 'silent' ? null : useJson ? 'json' : 'text', logStream);
        } else if (!profiling) batchesSeen++;
      }
      if (pending > 0) doStep();
      bar?.stop();
      if (sched && opts.schedulerStep !== 'step') sched.step();
      if (dist) {
        const sums = allreduce(new Float64Array([lossSum, count]), { op: 'sum' });
        lossSum = sums[0]!;
        count = sums[1]!;
      }
      const log: EpochLog = { epoch, trainLoss: lossSum / Math.max(count, 1), lr: opt.lr, seconds: 0, metrics: {} };
      if (opts.val) {
        const ev = evaluate(model, opts.val, {
          loss: lf,
          metrics,
          average: opts.average,
          inputKey: ik,
          targetKey: tk,
          collect: recorder !== null,
        });
        log.valLoss = ev.loss;
        log.metrics = ev.metrics;
        if (recorder && ev.labels && ev.labels.numClasses !== null)
          recorder.validation(epoch, ev.labels.target, ev.labels.pred, ev.labels.numClasses);
      }
      recorder?.epoch(epoch);
      log.seconds = (performance.now() - t0) / 1000;
      st.history.push(log);
      st.epoch = epoch;
      if (es || dir) {
        const v = monitor === 'valLoss' ? log.valLoss : monitor === 'trainLoss' ? log.trainLoss : log.metrics[monitor];
        if (v !== undefined && better(v, st.best)) {
          st.best = v;
          st.bestEpoch = epoch;
          st.wait = 0;
          if (es && restoreBest) {
            if (bestWeights) for (const t of Object.values(bestWeights)) t.dispose();
            bestWeights = cloneStateDict(model);
            if (dir && main) await save(join(dir, BEST), bestWeights);
          }
        } else st.wait++;
      }
      st.rng = getRngState();
      if (dist) st.rngs = allgatherObject(st.rng);
      // replicas are identical: rank 0 writes (atomically) and the others wait until the file is complete
      if (dir && main) await saveCheckpoint(join(dir, LAST), { model, optimizer: opt, scheduler: sched, state: st });
      if (dir && dist) barrier();
      if (useJson) logStream.write(JSON.stringify({ ...log, metrics: undefined, ...log.metrics }) + '\n');
      else if (useBar) {
        const m = Object.entries(log.metrics)
          .map(([k, v]) => `${k} ${v!.toFixed(4)}`)
          .join(' ');
        process.stderr.write(
          `epoch ${epoch}: train loss ${log.trainLoss.toFixed(4)}` +
            (log.valLoss !== undefined ? `, val loss ${log.valLoss.toFixed(4)}` : '') +
            (m ? `, ${m}` : '') +
            ` (${log.seconds.toFixed(1)} s)\n`,
        );
      }
      if (tracker) {
        tracker.logMetrics({ 'train/loss': log.trainLoss, lr: log.lr, 'epoch/seconds': log.seconds }, epoch);
        if (log.valLoss !== undefined) tracker.logMetric('val/loss', log.valLoss, epoch);
        for (const [k, v] of Object.entries(log.metrics))
          if (typeof v === 'number') tracker.logMetric(`val/${k}`, v, epoch);
        const first = model.namedParameters()[0];
        if (first && tracker.tensorboardFile)
          tracker.logHistogram(`weights/${first[0]}`, first[1].toArray() as ArrayLike<number>, epoch);
      }
      let stop = (await opts.onEpoch?.(log)) === false;
      let early = es !== null && st.wait > 0 && st.wait >= patience;
      if (dist) {
        // one decision for every rank: stop when any rank's callback says so; early stopping as rank 0 decides
        const any = allreduce(new Int32Array([stop ? 1 : 0]), { op: 'max' });
        stop = any[0] === 1;
        early = broadcastObject(early);
      }
      if (stop) break;
      if (early) {
        stoppedEarly = true;
        break;
      }
    }
    if (es && restoreBest && bestWeights) model.loadStateDict(bestWeights);
    if (tracker) await logModel(tracker, inner, dir);
  } catch (e) {
    failure = e as Error;
    throw e;
  } finally {
    if (recorder)
      finishReport(recorder, ropts!, {
        history: st.history,
        settings,
        stepLosses,
        gradNorms,
        tracker,
        failure,
      });
    if (profiling) {
      // training ended (or failed) inside the profiled steps: keep what was recorded
      profileResult = profiling(null);
    }
    if (bestWeights) for (const t of Object.values(bestWeights)) t.dispose();
  }
  return {
    history: st.history,
    bestEpoch: st.bestEpoch,
    best: st.best,
    stoppedEarly,
    resumedFrom,
    profile: profileResult,
  };
}

function profileOptions(
  p: FitOptions['profile'],
  rank: number,
): { steps: number; skip: number; trace: string | null; top: number } | null {
  if (p === undefined || p === false) return null;
  const o: FitProfileOptions = p === true ? {} : p;
  if (o === null || typeof o !== 'object')
    throw new ArgumentError(`fit: profile must be true or { steps?, skip?, trace?, top? }, got ${describe(p)}`);
  checkOptions(o, 'fit profile', ['steps', 'skip', 'trace', 'top']);
  const steps = posInt(o.steps ?? 5, 'fit profile.steps');
  const skip = o.skip ?? 1;
  if (!Number.isInteger(skip) || skip < 0)
    throw new ArgumentError(`fit: profile.skip must be an integer >= 0, got ${describe(o.skip)}`);
  const top = posInt(o.top ?? 10, 'fit profile.top');
  let trace = o.trace ?? null;
  if (trace !== null && (typeof trace !== 'string' || trace === ''))
    throw new ArgumentError(`fit: profile.trace must be a file path, got ${describe(o.trace)}`);
  if (trace !== null && rank > 0) {
    const dot = trace.lastIndexOf('.');
    trace =
      dot > trace.lastIndexOf('/') ? `${trace.slice(0, dot)}.rank${rank}${trace.slice(dot)}` : `${trace}.rank${rank}`;
  }
  return { steps, skip, trace, top };
}

function logProfile(p: Profile, top: number, how: 'json' | 'text' | null, out: NodeJS.WritableStream): void {
  if (how === 'text') out.write(`profile of ${p.events.length} kernel calls:\n${p.table({ top })}\n`);
  else if (how === 'json') {
    out.write(
      JSON.stringify({
        profile: {
          wallMs: p.wallMs,
          kernelMs: p.kernelMs,
          dispatchMs: p.dispatchMs,
          otherMs: p.otherMs,
          achievedGflops: p.achievedGflops,
          peakGflops: p.peakGflops,
          ops: p.ops.slice(0, top).map((o) => ({ op: o.op, count: o.count, kernelMs: o.kernelMs, gflops: o.gflops })),
        },
      }) + '\n',
    );
  }
}

/** The report's recorder: the fixed validation examples and the sanity checks, run before training. */
function startReport(
  model: Module,
  opts: FitOptions,
  ro: ReportOptions,
  ik: string,
  tk: string,
  head: Batch | null,
): ReportRecorder {
  // a streamed training set: its first rows (`head`) stand in for the dataset's first samples
  const first = (ds: { length: number; take(i: ArrayLike<number>): Batch } | null, n: number): Batch => {
    if (ds) return ds.take(Array.from({ length: Math.min(n, ds.length) }, (_, i) => i));
    const out: Batch = {};
    for (const [k, t] of Object.entries(head!))
      out[k] = t.slice(
        t.shape.map(() => 0),
        [Math.min(n, t.shape[0]!), ...t.shape.slice(1)],
      );
    return out;
  };
  const trainDs = opts.train instanceof DataLoader ? opts.train.dataset : null;
  const valDs = opts.val ? opts.val.dataset : trainDs;
  const n = Math.min(ro.examples ?? 16, valDs ? valDs.length : Object.values(head!)[0]!.shape[0]!);
  let fixed: { x: Tensor; y: Tensor } | null = null;
  if (n > 0) {
    const b = first(valDs, n);
    const x = b[ik],
      y = b[tk];
    for (const [k, t] of Object.entries(b)) if (k !== ik && k !== tk) t.dispose();
    if (isTensor(x) && isTensor(y)) fixed = { x: keep(x), y: keep(y) };
  }
  const rec = new ReportRecorder(model, fixed, ro);
  if (!opts.val) rec.data.notes.push('no validation set: the fixed examples come from the training set');
  // the checks use the first training batch; each leaves weights, gradients, mode and RNG as it found them
  const b = first(trainDs, opts.train.batchSize);
  if (head) for (const t of Object.values(head)) t.dispose();
  const xy = { x: b[ik]!, y: b[tk]! };
  const run = (name: string, f: () => { ok: boolean; message: string }): void => {
    try {
      const r = f();
      rec.check(name, r.ok, r.message);
    } catch (e) {
      rec.check(name, false, `could not run: ${(e as Error).message}`);
    }
  };
  try {
    if (!isTensor(xy.x) || !isTensor(xy.y)) throw new ArgumentError('no input/target');
    const loss = opts.loss;
    if (loss === 'crossEntropy' || loss === 'bce' || loss === 'bceWithLogits')
      run('initial loss', () => initialLoss(model, xy, { loss }));
    run('gradient flow', () => gradientFlow(model, xy, { loss }));
    run('batch independence', () => batchIndependence(model, xy));
  } catch (e) {
    rec.check('sanity checks', false, `could not run: ${(e as Error).message}`);
  } finally {
    for (const t of Object.values(b)) t.dispose();
  }
  return rec;
}

/** Fills in the curves and the outcome, writes the page, and logs it with its data to the tracker. */
function finishReport(
  rec: ReportRecorder,
  ro: ReportOptions,
  r: {
    history: EpochLog[];
    settings: Record<string, unknown>;
    stepLosses: [number, number][];
    gradNorms: [number, number][];
    tracker: Run | null;
    failure: Error | null;
  },
): void {
  const d: ReportData = rec.data;
  d.epochSeries = epochSeriesOf(r.history);
  d.stepSeries = [
    ['train/loss_step', r.stepLosses],
    ['train/grad_norm', r.gradNorms],
  ];
  d.params = Object.entries(r.settings).map(([k, v]) => [k, String(v)]);
  if (r.tracker)
    d.run = { id: r.tracker.id, name: r.tracker.name, experiment: r.tracker.experimentId, status: 'RUNNING' };
  const h = r.history;
  if (h.length >= 2) {
    const a = h[0]!.trainLoss,
      b = h.at(-1)!.trainLoss;
    rec.check(
      'training loss fell',
      b < a,
      `train loss ${a.toFixed(4)} at epoch 1, ${b.toFixed(4)} at epoch ${h.length}`,
    );
  }
  if (r.failure) d.notes.push(`training stopped with an error: ${r.failure.message}`);
  try {
    writeReport(ro.path, d);
    if (r.tracker) {
      r.tracker.logText(JSON.stringify(d), 'report/report.json');
      r.tracker.logArtifact(ro.path, 'report');
    }
  } catch (e) {
    if (!r.failure) throw e; // a report failure must not hide the training error
  } finally {
    rec.dispose();
  }
}

/** The final model (model/model.safetensors) and the checkpoints fit wrote, as artifacts of the run. */
async function logModel(run: Run, model: Module, dir: string | null): Promise<void> {
  const tmp = mkdtempSync(join(tmpdir(), 'kiln-fit-model-'));
  try {
    const file = join(tmp, 'model.safetensors');
    await save(file, model);
    run.logArtifact(file, 'model');
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  if (dir !== null)
    for (const f of [LAST, BEST]) if (existsSync(join(dir, f))) run.logArtifact(join(dir, f), 'checkpoints');
}
