// `kiln train`: a model trained on a table (Parquet, Arrow or CSV) from the command line: the features and label of
// each row, an MLP (or an architecture spec, or a saved model to fine-tune), Adam and kn.train.fit with a
// validation split, early stopping, checkpoints and tracking; the file it saves is what kiln serve, quantize and
// prune take.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import * as A from 'apache-arrow';
import type { BackendName } from '../backends/backend.js';
import { setBackend } from '../backends/registry.js';
import { DataLoader, Dataset } from '../data/loader.js';
import { StandardScaler } from '../data/scalers.js';
import { trainTestSplit } from '../data/split.js';
import { readTable, stringClasses, tableXY } from '../data/table.js';
import { ArgumentError, ValidationError } from '../errors.js';
import { writeFileAtomicSync } from '../io/atomic.js';
import { loadModel, save } from '../io/index.js';
import { mlp } from '../models/index.js';
import type { Module } from '../nn/module.js';
import type { Tensor } from '../tensor/tensor.js';
import { fromSpec } from '../nn/spec.js';
import { tensor } from '../ops/creation.js';
import { seed as setSeed } from '../ops/random.js';
import { Adam } from '../optim/adam.js';
import {
  CLASSES_METADATA_KEY,
  FEATURES_METADATA_KEY,
  INPUT_SHAPE_METADATA_KEY,
  LABEL_METADATA_KEY,
  metadataNames,
  TASK_METADATA_KEY,
} from '../serve/model.js';
import { startRun } from '../track/index.js';
import { fit, type MetricName } from '../train/fit.js';

export const TRAIN_HELP = `  train DATA.parquet|.arrow|.csv --label COL -o MODEL.safetensors [--features a,b,...]
        [--task classification|regression] [--model mlp|SPEC.json|MODEL.safetensors] [--hidden 64,32]
        [--epochs 20] [--batch-size 64] [--lr 3e-4] [--val 0.2] [--seed 0] [--patience N] [--metrics accuracy,f1]
        [--scaler scaler.json] [--checkpoint-dir DIR [--resume]] [--track mlruns] [--report report.html]
        [--backend cpu|js|webgpu|cuda] [--json]
                  train on a table: every column but the label is a feature unless --features names them; an MLP
                  by default (classification when the label column holds integers, booleans or strings, else
                  regression; string classes are sorted and saved in the model as kiln.classes), Adam, a
                  stratified validation split, early stopping on it; --scaler standardizes the features and
                  writes the scaler kiln serve --scaler takes
`;

const fixed = (v: number | null): string => (v === null ? 'n/a' : v.toFixed(4));

const METRICS: readonly MetricName[] = ['accuracy', 'precision', 'recall', 'f1', 'rocAuc'];

function positive(v: string, what: string, int: boolean): number {
  const n = Number(v);
  if (!(Number.isFinite(n) && n > 0 && (!int || Number.isInteger(n))))
    throw new ArgumentError(`--${what} must be a positive ${int ? 'integer' : 'number'}, got '${v}'`);
  return n;
}

/** The label column's task when --task does not say: integers, booleans and strings are classes, the rest values. */
function taskOf(t: A.Table, label: string): 'classification' | 'regression' {
  const col = t.getChild(label);
  if (!col) throw new ValidationError(`the table has no label column '${label}'`);
  const { type } = col;
  const text = A.DataType.isUtf8(type) || A.DataType.isLargeUtf8(type) || A.DataType.isDictionary(type);
  return A.DataType.isInt(type) || A.DataType.isBool(type) || text ? 'classification' : 'regression';
}

/** The model to train: a fresh MLP, a model from an architecture spec (JSON), or a saved model to fine-tune. */
async function modelFor(
  choice: string,
  hidden: number[],
  F: number,
  out: number,
  tuned: Module | null,
): Promise<{ model: Module; from: string }> {
  if (tuned) return { model: tuned, from: `fine-tuning ${choice}` };
  if (choice === 'mlp') return { model: mlp(F, hidden, out), from: `mlp ${[F, ...hidden, out].join('-')}` };
  let spec: unknown;
  try {
    spec = JSON.parse(readFileSync(choice, 'utf8'));
  } catch (e) {
    throw new ArgumentError(`--model ${choice}: cannot read it as JSON (${(e as Error).message})`);
  }
  return { model: fromSpec(spec), from: `spec ${choice}` };
}

export async function trainCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      label: { type: 'string' },
      out: { type: 'string', short: 'o' },
      features: { type: 'string' },
      task: { type: 'string' },
      model: { type: 'string', default: 'mlp' },
      hidden: { type: 'string', default: '64' },
      epochs: { type: 'string', default: '20' },
      'batch-size': { type: 'string', default: '64' },
      lr: { type: 'string', default: '3e-4' },
      val: { type: 'string', default: '0.2' },
      seed: { type: 'string', default: '0' },
      patience: { type: 'string' },
      metrics: { type: 'string' },
      scaler: { type: 'string' },
      'checkpoint-dir': { type: 'string' },
      resume: { type: 'boolean', default: false },
      track: { type: 'string' },
      report: { type: 'string' },
      backend: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  });
  if (positionals.length !== 1) throw new ArgumentError(`train takes one data file, got ${positionals.length}`);
  if (!values.label) throw new ArgumentError('train needs --label COLUMN (the column to predict)');
  if (!values.out) throw new ArgumentError('train needs -o MODEL.safetensors');
  if (values.resume && !values['checkpoint-dir']) throw new ArgumentError('--resume needs --checkpoint-dir');
  const data = positionals[0]!;
  const label = values.label;
  const epochs = positive(values.epochs!, 'epochs', true);
  const batchSize = positive(values['batch-size']!, 'batch-size', true);
  const lr = positive(values.lr!, 'lr', false);
  const seed = Number(values.seed);
  if (!Number.isInteger(seed) || seed < 0)
    throw new ArgumentError(`--seed must be an integer >= 0, got '${values.seed}'`);
  const val = Number(values.val);
  if (!(val >= 0 && val < 1)) throw new ArgumentError(`--val must be a fraction in [0, 1), got '${values.val}'`);
  const hidden = values.hidden === '' ? [] : values.hidden!.split(',').map((h) => positive(h.trim(), 'hidden', true));
  const metricNames = (values.metrics ?? '').split(',').filter((m) => m !== '');
  for (const m of metricNames)
    if (!(METRICS as readonly string[]).includes(m))
      throw new ArgumentError(`--metrics takes ${METRICS.join(', ')}; got '${m}'`);
  if (values.task !== undefined && values.task !== 'classification' && values.task !== 'regression')
    throw new ArgumentError(`--task must be classification or regression, got '${values.task}'`);

  if (values.backend) setBackend(values.backend as BackendName); // validates the name and that the backend loads
  const backend = values.backend as BackendName | undefined;
  // a saved model to fine-tune is read first: its class names fix the class indices of string labels
  const choice = values.model!;
  const tuned =
    choice !== 'mlp' && !/\.json$/i.test(choice) ? await loadModel(choice, backend ? { backend } : {}) : null;

  const table = readTable(data, 'train');
  const features =
    values.features?.split(',').map((f) => f.trim()) ??
    table.schema.fields.map((f) => f.name).filter((n) => n !== label);
  if (features.length === 0) throw new ValidationError(`${data} has no feature columns besides the label '${label}'`);
  if (features.includes(label)) throw new ArgumentError(`--features includes the label '${label}'`);
  const task = (values.task as 'classification' | 'regression' | undefined) ?? taskOf(table, label);
  // string labels name classes: sorted, or in the order the fine-tuned model was saved with
  let names = task === 'classification' ? stringClasses(table, label) : [];
  if (names.length > 0 && tuned) {
    const saved = metadataNames(tuned.metadata, CLASSES_METADATA_KEY, choice);
    if (saved === null)
      throw new ValidationError(
        `--model ${choice} was trained on class indices (it has no kiln.classes); the label '${label}' holds strings`,
      );
    names = saved;
  }
  const { x, y, n } = tableXY(table, features, label, task, data, 'train', names);
  const F = features.length;
  let classes = 1;
  if (task === 'classification') {
    const ys = y as Int32Array;
    for (const c of ys) if (c < 0) throw new ValidationError(`${data}: class labels must be >= 0, got ${c}`);
    classes = Math.max(names.length, ys.reduce((a, b) => Math.max(a, b), 0) + 1);
    if (classes < 2) throw new ValidationError(`${data}: the label '${label}' has one class; nothing to learn`);
  }

  setSeed(seed);
  // the validation rows: stratified by class for classification, so both parts keep every class's share
  const split =
    val > 0
      ? trainTestSplit(n, { testSize: val, seed, ...(task === 'classification' ? { stratify: y } : {}) })
      : { train: Int32Array.from({ length: n }, (_, i) => i), test: new Int32Array(0) };
  // the rows of one part as tensors: features [n, F], labels [n] (class indices) or [n, 1] (values)
  const tensorsOf = (idx: Int32Array): { x: Tensor; y: Tensor } => {
    const rx = new Float32Array(idx.length * F);
    const ry = task === 'classification' ? new Int32Array(idx.length) : new Float32Array(idx.length);
    idx.forEach((r, i) => {
      rx.set(x.subarray(r * F, (r + 1) * F), i * F);
      ry[i] = y[r]!;
    });
    return {
      x: tensor(rx, [idx.length, F]),
      y: ry instanceof Int32Array ? tensor(ry, [idx.length], { dtype: 'int32' }) : tensor(ry, [idx.length, 1]),
    };
  };
  const train = tensorsOf(split.train);
  // --scaler: fitted on the training rows only, then applied to both parts
  const scaler = values.scaler ? new StandardScaler().fit(train.x) : null;
  const dataset = (p: { x: Tensor; y: Tensor }): Dataset => {
    if (!scaler) return new Dataset(p);
    const xs = scaler.transform(p.x);
    p.x.dispose();
    return new Dataset({ x: xs, y: p.y });
  };
  const trainSet = dataset(train);
  const valSet = split.test.length ? dataset(tensorsOf(split.test)) : null;
  if (values.scaler && scaler)
    writeFileAtomicSync(values.scaler, [new TextEncoder().encode(JSON.stringify(scaler.toJSON(), null, 2))]);

  const { model, from } = await modelFor(
    choice,
    hidden,
    F,
    task === 'classification' ? classes : 1,
    tuned?.model ?? null,
  );
  const optimizer = new Adam(model.parameters(), { lr });
  const run = values.track ? startRun({ dir: values.track, tags: { 'kiln.command': 'train' } }) : null;
  run?.logParams({ data, label, task, model: from, epochs, batchSize, lr, val, seed, features: F });
  const patience = values.patience === undefined ? undefined : positive(values.patience, 'patience', true);
  const verbose = values.json ? 'silent' : process.stderr.isTTY ? 'bar' : 'json';
  let result;
  try {
    result = await fit(model, {
      train: new DataLoader(trainSet, { batchSize, shuffle: true, seed }),
      val: valSet ? new DataLoader(valSet, { batchSize: 1024 }) : null,
      loss: task === 'classification' ? 'crossEntropy' : 'mse',
      optimizer,
      epochs,
      metrics: task === 'classification' ? ((metricNames.length ? metricNames : ['accuracy']) as MetricName[]) : [],
      ...(patience !== undefined && valSet ? { earlyStopping: { patience, restoreBest: true } } : {}),
      ...(values['checkpoint-dir'] ? { checkpointDir: values['checkpoint-dir'], resume: values.resume } : {}),
      ...(run ? { tracker: run } : {}),
      ...(values.report ? { report: values.report } : {}),
      verbose,
    });
  } catch (e) {
    run?.end('FAILED');
    throw e;
  }
  run?.end();
  await save(values.out, model, {
    metadata: {
      [INPUT_SHAPE_METADATA_KEY]: JSON.stringify([F]),
      [FEATURES_METADATA_KEY]: JSON.stringify(features),
      [LABEL_METADATA_KEY]: label,
      [TASK_METADATA_KEY]: task,
      ...(names.length > 0 ? { [CLASSES_METADATA_KEY]: JSON.stringify(names) } : {}),
    },
  });
  const last = result.history.at(-1);
  const summary = {
    model: values.out,
    from,
    task,
    features: F,
    ...(task === 'classification' ? { classes } : {}),
    ...(names.length > 0 ? { classNames: names } : {}),
    rows: { train: split.train.length, val: split.test.length },
    epochs: result.history.length,
    stoppedEarly: result.stoppedEarly,
    bestEpoch: result.bestEpoch,
    trainLoss: last?.trainLoss ?? null,
    valLoss: last?.valLoss ?? null,
    metrics: last?.metrics ?? {},
    ...(values.scaler ? { scaler: values.scaler } : {}),
    ...(run ? { run: run.id } : {}),
  };
  if (values.json) process.stdout.write(JSON.stringify(summary) + '\n');
  else
    process.stdout.write(
      `saved ${values.out} (${from}, ${task}, ${F} features${task === 'classification' ? `, ${classes} classes` : ''}) ` +
        `after ${summary.epochs} epochs: train loss ${fixed(summary.trainLoss)}, val loss ${fixed(summary.valLoss)}` +
        Object.entries(summary.metrics)
          .map(([k, v]) => `, val ${k} ${typeof v === 'number' ? v.toFixed(4) : v}`)
          .join('') +
        '\n',
    );
  model.dispose();
  trainSet.dispose();
  valSet?.dispose();
  return 0;
}
