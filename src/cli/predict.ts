// `kiln predict`: a saved model scores a table (Parquet, Arrow or CSV) in batches and writes the predictions as a
// table: the class index, its name and probability for a classifier (kiln.task, kiln.classes), the value(s)
// for a regression, with any input columns asked to be kept beside them. The input is read a chunk at a time (a
// row group, a record batch, 65,536 CSV rows) and the output written a chunk's answers at a time, so neither is
// bounded by memory.
import { parseArgs } from 'node:util';
import * as A from 'apache-arrow';
import { noGrad } from '../autograd/tape.js';
import type { BackendName } from '../backends/backend.js';
import { setBackend } from '../backends/registry.js';
import { loadTransformer } from '../data/scalers.js';
import { openTable, tableX, writeTableStream } from '../data/table.js';
import { tidy } from '../engine/memory.js';
import { ArgumentError, ValidationError } from '../errors.js';
import { loadModel } from '../io/index.js';
import { tensor } from '../ops/creation.js';
import { argmax, softmax } from '../ops/reduce.js';
import { CLASSES_METADATA_KEY, FEATURES_METADATA_KEY, metadataNames, TASK_METADATA_KEY } from '../serve/model.js';
import type { Tensor } from '../tensor/tensor.js';
import { nameRecord, own } from '../records.js';

export const PREDICT_HELP = `  predict MODEL.safetensors DATA.parquet|.arrow|.csv -o OUT.parquet|.arrow|.csv [--features a,b,...] [--scaler s.json]
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
  if (!out) throw new ArgumentError('predict needs -o OUT.parquet (or .arrow, .csv)');
  const batch = Number(values['batch-size']);
  if (!Number.isInteger(batch) || batch < 1)
    throw new ArgumentError(`--batch-size must be a positive integer, got '${values['batch-size']}'`);
  if (values.task !== undefined && values.task !== 'classification' && values.task !== 'regression')
    throw new ArgumentError(`--task must be classification or regression, got '${values.task}'`);
  if (values.backend) setBackend(values.backend as BackendName); // validates the name and that it loads
  const backend = values.backend as BackendName | undefined;

  const { model, metadata } = await loadModel(modelPath, backend ? { backend } : {});
  const features =
    values.features?.split(',').map((f) => f.trim()) ?? metadataNames(metadata, FEATURES_METADATA_KEY, modelPath);
  if (!features || features.length === 0)
    throw new ArgumentError(
      `${modelPath} does not name its feature columns (kiln train saves them as ${FEATURES_METADATA_KEY}): pass --features a,b,...`,
    );
  const classes = metadataNames(metadata, CLASSES_METADATA_KEY, modelPath);
  const saved = own(metadata, TASK_METADATA_KEY);
  const keep = values.keep?.split(',').map((c) => c.trim()) ?? [];
  for (const c of keep)
    if (c === 'prediction' || c === 'label' || c === 'probability' || /^prediction_\d+$/.test(c))
      throw new ArgumentError(`--keep ${c}: the predictions use that column name`);
  const scaler = values.scaler ? loadTransformer(values.scaler) : null;

  const src = await openTable(data, 'predict').catch((e: unknown) => {
    model.dispose();
    throw e;
  });
  const F = features.length;
  const n = src.rows;
  let task: 'classification' | 'regression' | undefined;
  let width = 0;
  let at = 0,
    chunks = 0,
    batches = 0;
  let columns: string[] = [];
  try {
    for (const f of features)
      if (!src.columns.includes(f)) throw new ValidationError(`predict: ${data} has no feature column '${f}'`);
    for (const c of keep)
      if (!src.columns.includes(c)) throw new ValidationError(`predict: ${data} has no column '${c}' to keep`);
    if (n === 0) throw new ValidationError(`predict: ${data} has no rows`);
    model.eval();
    // the first batch says how wide an answer is, and so the task when the file does not
    const firstAnswer = (o: Tensor): void => {
      width = o.ndim === 2 ? o.shape[1]! : 1;
      task =
        (values.task as 'classification' | 'regression' | undefined) ??
        (saved === 'classification' || saved === 'regression' ? saved : width > 1 ? 'classification' : 'regression');
      if (task === 'classification' && width < 2)
        throw new ValidationError(
          `predict: a classifier needs two or more outputs per row; ${modelPath} gives ${width}`,
        );
      if (classes && task === 'classification' && classes.length !== width)
        throw new ValidationError(
          `${modelPath} names ${classes.length} classes but gives ${width} outputs per row; expected one per class`,
        );
    };
    // one chunk of rows scored a batch at a time: the kept columns and the answers, as a table
    const score = (chunk: A.Table): A.Table => {
      const m = chunk.numRows;
      const x = tableX(chunk, features, data, 'predict', at);
      // class and probability, or the regression values row-major; sized once the first batch gives the width
      let idx = new Int32Array(0),
        prob = new Float32Array(0),
        regValues = new Float32Array(0);
      for (let s = 0; s < m; s += batch) {
        const rows = Math.min(batch, m - s);
        batches++;
        noGrad(() =>
          tidy(() => {
            let xt: Tensor = tensor(x.subarray(s * F, (s + rows) * F), [rows, F]);
            if (scaler) xt = scaler.transform(xt);
            const o = model.call(xt);
            if (o.ndim > 2 || o.shape[0] !== rows)
              throw new ValidationError(
                `predict: the model answers ${rows} rows with a [${o.shape.join(', ')}] tensor; expected [${rows}] or [${rows}, K]`,
              );
            if (task === undefined) firstAnswer(o);
            if (s === 0) {
              if (task === 'classification') {
                idx = new Int32Array(m);
                prob = new Float32Array(m);
              } else regValues = new Float32Array(m * width);
            }
            if (task === 'classification') {
              const best = argmax(o, 1).toArray() as Int32Array;
              const pv = softmax(o, 1).toArray() as Float32Array;
              idx.set(best, s);
              for (let i = 0; i < rows; i++) prob[s + i] = pv[i * width + best[i]!]!;
            } else regValues.set(o.toArray() as Float32Array, s * width);
          }),
        );
      }
      at += m;
      const cols = nameRecord<A.Vector>();
      for (const c of keep) cols[c] = chunk.getChild(c)!;
      if (task === 'classification') {
        cols.prediction = A.makeVector(idx);
        if (classes)
          cols.label = A.vectorFromArray(
            Array.from(idx, (c) => classes[c]!),
            new A.Utf8(),
          );
        cols.probability = A.makeVector(prob);
      } else if (width === 1) cols.prediction = A.makeVector(regValues);
      else
        for (let k = 0; k < width; k++)
          cols[`prediction_${k}`] = A.makeVector(Float32Array.from({ length: m }, (_, i) => regValues[i * width + k]!));
      columns = Object.keys(cols);
      return new A.Table(cols);
    };
    // rows in the order of the file; row groups smaller than a batch are joined first, so batches stay full
    const answers = async function* (): AsyncGenerator<A.Table> {
      let pending: A.Table[] = [],
        pendingRows = 0;
      for await (const chunk of src.chunks([...new Set([...features, ...keep])])) {
        chunks++;
        pending.push(chunk);
        pendingRows += chunk.numRows;
        if (pendingRows < batch) continue;
        yield score(pending.length === 1 ? chunk : pending[0]!.concat(...pending.slice(1)));
        pending = [];
        pendingRows = 0;
      }
      if (pending.length > 0) yield score(pending[0]!.concat(...pending.slice(1)));
      if (at !== n) throw new ValidationError(`predict: ${data} gave ${at} rows; its footer says ${n}`);
    };
    // Parquet and CSV a chunk's answers at a time: memory holds a chunk
    await writeTableStream(out, answers());
  } finally {
    src.close();
    model.dispose();
  }

  const summary = {
    model: modelPath,
    data,
    out,
    rows: n,
    chunks,
    batches,
    task,
    outputs: width,
    columns,
  };
  if (values.json) process.stdout.write(JSON.stringify(summary) + '\n');
  else process.stdout.write(`wrote ${n} ${task} predictions to ${out} (${summary.columns.join(', ')})\n`);
  return 0;
}
