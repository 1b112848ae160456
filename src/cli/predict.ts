// `kiln predict`: a saved model scores a table (Parquet or Arrow) in batches and writes the predictions as a
// table: the class index, its name and probability for a classifier (kiln.task, kiln.classes), the value(s)
// for a regression, with any input columns asked to be kept beside them.
import { parseArgs } from 'node:util';
import * as A from 'apache-arrow';
import { noGrad } from '../autograd/tape.js';
import type { BackendName } from '../backends/backend.js';
import { setBackend } from '../backends/registry.js';
import { writeArrow } from '../data/arrow.js';
import { writeParquet } from '../data/parquet.js';
import { loadTransformer } from '../data/scalers.js';
import { readTable, tableX } from '../data/table.js';
import { tidy } from '../engine/memory.js';
import { ArgumentError, ValidationError } from '../errors.js';
import { loadModel } from '../io/index.js';
import { tensor } from '../ops/creation.js';
import { softmax } from '../ops/reduce.js';
import { CLASSES_METADATA_KEY, metadataNames } from '../serve/model.js';
import type { Tensor } from '../tensor/tensor.js';
import { nameRecord } from '../records.js';

export const PREDICT_HELP = `  predict MODEL.safetensors DATA.parquet|.arrow -o OUT.parquet|.arrow [--features a,b,...] [--scaler s.json]
        [--keep id,...] [--batch-size 1024] [--task classification|regression] [--backend cpu|js|webgpu|cuda] [--json]
                  score a table with a saved model: the features are the ones kiln train saved with it (or
                  --features); a classifier writes prediction (class index), label (its name, when the model
                  has kiln.classes) and probability, a regression prediction (or prediction_0, _1, ...);
                  --keep copies input columns (an id, say) beside them
`;

export async function predictCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      out: { type: 'string', short: 'o' },
      features: { type: 'string' },
      scaler: { type: 'string' },
      keep: { type: 'string' },
      'batch-size': { type: 'string', default: '1024' },
      task: { type: 'string' },
      backend: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  });
  if (positionals.length !== 2)
    throw new ArgumentError(`predict takes a model file and a data file, got ${positionals.length} arguments`);
  const [modelPath, data] = positionals as [string, string];
  const out = values.out;
  if (!out) throw new ArgumentError('predict needs -o OUT.parquet (or .arrow)');
  const batch = Number(values['batch-size']);
  if (!Number.isInteger(batch) || batch < 1)
    throw new ArgumentError(`--batch-size must be a positive integer, got '${values['batch-size']}'`);
  if (values.task !== undefined && values.task !== 'classification' && values.task !== 'regression')
    throw new ArgumentError(`--task must be classification or regression, got '${values.task}'`);
  if (values.backend) setBackend(values.backend as BackendName); // validates the name and that it loads
  const backend = values.backend as BackendName | undefined;

  const { model, metadata } = await loadModel(modelPath, backend ? { backend } : {});
  const features =
    values.features?.split(',').map((f) => f.trim()) ?? metadataNames(metadata, 'kiln.features', modelPath);
  if (!features || features.length === 0)
    throw new ArgumentError(
      `${modelPath} does not name its feature columns (kiln train saves them as kiln.features): pass --features a,b,...`,
    );
  const classes = metadataNames(metadata, CLASSES_METADATA_KEY, modelPath);
  const table = readTable(data, 'predict');
  const keep = values.keep?.split(',').map((c) => c.trim()) ?? [];
  for (const c of keep)
    if (!table.getChild(c)) throw new ValidationError(`predict: ${data} has no column '${c}' to keep`);
  for (const c of keep)
    if (c === 'prediction' || c === 'label' || c === 'probability' || /^prediction_\d+$/.test(c))
      throw new ArgumentError(`--keep ${c}: the predictions use that column name`);
  if (table.numRows === 0) throw new ValidationError(`predict: ${data} has no rows`);
  const x = tableX(table, features, data, 'predict');
  const scaler = values.scaler ? loadTransformer(values.scaler) : null;

  // the model's outputs, batch by batch, without a tape
  const n = table.numRows,
    F = features.length;
  const outputs: Float32Array[] = [];
  let width = 0;
  model.eval();
  noGrad(() => {
    for (let s = 0; s < n; s += batch) {
      const rows = Math.min(batch, n - s);
      const y = tidy(() => {
        let xt: Tensor = tensor(x.subarray(s * F, (s + rows) * F), [rows, F]);
        if (scaler) xt = scaler.transform(xt);
        const o = model.call(xt);
        if (o.ndim > 2 || o.shape[0] !== rows)
          throw new ValidationError(
            `predict: the model answers ${rows} rows with a [${o.shape.join(', ')}] tensor; expected [${rows}] or [${rows}, K]`,
          );
        return o.toArray() as Float32Array;
      });
      width = rows > 0 ? y.length / rows : width;
      outputs.push(y);
    }
  });
  model.dispose();
  const all = new Float32Array(n * width);
  let at = 0;
  for (const o of outputs) {
    all.set(o, at);
    at += o.length;
  }
  const task =
    (values.task as 'classification' | 'regression' | undefined) ??
    (metadata['kiln.task'] === 'classification' || metadata['kiln.task'] === 'regression'
      ? (metadata['kiln.task'] as 'classification' | 'regression')
      : width > 1
        ? 'classification'
        : 'regression');
  if (task === 'classification' && width < 2)
    throw new ValidationError(`predict: a classifier needs two or more outputs per row; ${modelPath} gives ${width}`);
  if (classes && task === 'classification' && classes.length !== width)
    throw new ValidationError(
      `${modelPath} names ${classes.length} classes but gives ${width} outputs per row; expected one per class`,
    );

  const cols = nameRecord<A.Vector>();
  for (const c of keep) cols[c] = table.getChild(c)!;
  if (task === 'classification') {
    const idx = new Int32Array(n);
    const prob = new Float32Array(n);
    const p = tidy(() => softmax(tensor(all, [n, width]), 1).toArray() as Float32Array);
    for (let i = 0; i < n; i++) {
      let best = 0;
      for (let k = 1; k < width; k++) if (all[i * width + k]! > all[i * width + best]!) best = k;
      idx[i] = best;
      prob[i] = p[i * width + best]!;
    }
    cols.prediction = A.makeVector(idx);
    if (classes)
      cols.label = A.vectorFromArray(
        Array.from(idx, (c) => classes[c]!),
        new A.Utf8(),
      );
    cols.probability = A.makeVector(prob);
  } else if (width === 1) cols.prediction = A.makeVector(all);
  else
    for (let k = 0; k < width; k++)
      cols[`prediction_${k}`] = A.makeVector(Float32Array.from({ length: n }, (_, i) => all[i * width + k]!));
  const result = new A.Table(cols);
  if (/\.(arrow|feather|ipc)$/i.test(out)) writeArrow(out, result);
  else writeParquet(out, result);

  const summary = { model: modelPath, data, out, rows: n, task, outputs: width, columns: Object.keys(cols) };
  if (values.json) process.stdout.write(JSON.stringify(summary) + '\n');
  else process.stdout.write(`wrote ${n} ${task} predictions to ${out} (${summary.columns.join(', ')})\n`);
  return 0;
}
