// `kiln quantize` and `kiln prune`: the post-training tools on model files saved by kn.io.save.
import { parseArgs } from 'node:util';
import { statSync } from 'node:fs';
import { arrowToMatrix, readArrow } from '../data/arrow.js';
import { ArgumentError } from '../errors.js';
import { loadModel, save } from '../io/index.js';
import type { Module } from '../nn/module.js';
import { reshape, slice } from '../ops/movement.js';
import { magnitude, sparsity, structured } from '../prune/index.js';
import { quantize, type Scheme } from '../quant/quantize.js';
import { INPUT_SHAPE_METADATA_KEY, resolveInputShape } from '../serve/model.js';
import type { Tensor } from '../tensor/tensor.js';

export const QUANTIZE_HELP = `  quantize IN.safetensors --scheme int8|int8-dynamic|int4 -o OUT.safetensors [--calib data.arrow]
        [--calib-columns a,b,...] [--calib-rows 512] [--method minmax|percentile] [--percentile 99.99]
        [--group-size 32|64|128] [--keep-float 0,4] [--min-sqnr DB] [--input-shape 1,28,28] [--json]
                  post-training quantization (int8 needs --calib: an Arrow file of model inputs, one row each)
  prune IN.safetensors --amount 0.5 -o OUT.safetensors [--scope layer|global] [--structured] [--norm l1|l2] [--json]
                  magnitude pruning (zeroes weights) or structured pruning (removes neurons/channels);
                  fine-tune afterwards with the API (kn.prune.magnitude(...).attach(optimizer))
`;

function ints(v: string, what: string): number[] {
  const xs = v.split(/[,x]/).map((s) => Number(s.trim()));
  if (!xs.length || !xs.every((x) => Number.isInteger(x) && x > 0))
    throw new ArgumentError(`--${what} takes positive integers separated by commas, got '${v}'`);
  return xs;
}
function num(v: string | undefined, what: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new ArgumentError(`--${what} must be a number, got '${v}'`);
  return n;
}

function inputShapeOf(model: Module, metadata: Record<string, string>, flag: string | undefined): number[] {
  const shape = resolveInputShape(model, metadata, flag ? ints(flag, 'input-shape') : undefined);
  if (!shape) throw new ArgumentError(`cannot tell the model's input shape: pass --input-shape (e.g. 1,28,28)`);
  return shape;
}

export async function quantizeCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      scheme: { type: 'string' },
      out: { type: 'string', short: 'o' },
      calib: { type: 'string' },
      'calib-columns': { type: 'string' },
      'calib-rows': { type: 'string', default: '512' },
      method: { type: 'string' },
      percentile: { type: 'string' },
      'group-size': { type: 'string' },
      'keep-float': { type: 'string' },
      'min-sqnr': { type: 'string' },
      'input-shape': { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  });
  if (positionals.length !== 1) throw new ArgumentError(`quantize takes one model file, got ${positionals.length}`);
  if (!values.out) throw new ArgumentError('quantize needs -o OUT.safetensors');
  if (!values.scheme) throw new ArgumentError('quantize needs --scheme int8|int8-dynamic|int4');
  const input = positionals[0]!;
  const { model, metadata } = await loadModel(input);
  const shape = inputShapeOf(model, metadata, values['input-shape']);
  const per = shape.reduce((a, b) => a * b, 1);
  const batches: Tensor[] = [];
  if (values.calib) {
    const table = readArrow(values.calib);
    const columns = values['calib-columns']?.split(',').map((s) => s.trim());
    const x = arrowToMatrix(table, columns ? { columns } : {});
    if (x.shape[1] !== per)
      throw new ArgumentError(
        `${values.calib} has ${x.shape[1]} columns per row, the model takes ${per} values (input shape [${shape.join(', ')}])`,
      );
    const rows = Math.min(x.shape[0]!, ints(values['calib-rows']!, 'calib-rows')[0]!);
    for (let i = 0; i < rows; i += 128) {
      const part = slice(x, [i, 0], [Math.min(rows, i + 128), per]);
      batches.push(reshape(part.contiguous(), [part.shape[0]!, ...shape]));
      part.dispose();
    }
    x.dispose();
  }
  const minSqnr = num(values['min-sqnr'], 'min-sqnr');
  const pct = num(values.percentile, 'percentile');
  const gs = num(values['group-size'], 'group-size');
  const r = quantize(model, {
    scheme: values.scheme as Scheme,
    ...(batches.length ? { calibration: batches } : {}),
    ...(values.method ? { method: values.method as 'minmax' | 'percentile' } : {}),
    ...(pct !== undefined ? { percentile: pct } : {}),
    ...(gs !== undefined ? { groupSize: gs } : {}),
    ...(values['keep-float'] ? { keepFloat: values['keep-float'].split(',').map((s) => s.trim()) } : {}),
    ...(minSqnr !== undefined ? { minSqnrDb: minSqnr } : {}),
  });
  await save(values.out, r.model, {
    metadata: { ...metadata, [INPUT_SHAPE_METADATA_KEY]: JSON.stringify(shape), 'kiln.quantization': values.scheme },
  });
  const before = statSync(input).size,
    after = statSync(values.out).size;
  if (values.json) {
    process.stdout.write(
      JSON.stringify({
        input,
        output: values.out,
        scheme: values.scheme,
        bytesBefore: before,
        bytesAfter: after,
        sqnrDb: r.sqnrDb,
        layers: r.layers,
      }) + '\n',
    );
  } else {
    const lines = [
      `quantized ${input} (${before} bytes) -> ${values.out} (${after} bytes, ${(before / after).toFixed(1)}x smaller), scheme ${values.scheme}` +
        (r.sqnrDb !== null ? `, output SQNR ${r.sqnrDb.toFixed(1)} dB on the calibration data` : ''),
    ];
    for (const l of r.layers) {
      lines.push(
        `  ${l.name.padEnd(8)} ${l.type.padEnd(8)} -> ${l.quantized.padEnd(13)}` +
          (l.sqnrDb !== null ? ` SQNR alone ${l.sqnrDb.toFixed(1)} dB` : '') +
          (l.reason ? `  (${l.reason})` : ''),
      );
    }
    process.stdout.write(lines.join('\n') + '\n');
  }
  batches.forEach((b) => b.dispose());
  return 0;
}

export async function pruneCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      amount: { type: 'string' },
      out: { type: 'string', short: 'o' },
      scope: { type: 'string', default: 'layer' },
      structured: { type: 'boolean', default: false },
      norm: { type: 'string', default: 'l2' },
      json: { type: 'boolean', default: false },
    },
  });
  if (positionals.length !== 1) throw new ArgumentError(`prune takes one model file, got ${positionals.length}`);
  if (!values.out) throw new ArgumentError('prune needs -o OUT.safetensors');
  const amount = num(values.amount, 'amount');
  if (amount === undefined) throw new ArgumentError('prune needs --amount (a fraction in [0, 1))');
  const input = positionals[0]!;
  const { model, metadata } = await loadModel(input);
  const paramsBefore = model.numParameters();
  let out: Module = model;
  let kept: { name: string; before: number; after: number }[] = [];
  if (values.structured) {
    const r = structured(model, { amount, norm: values.norm as 'l1' | 'l2' });
    out = r.model;
    kept = r.kept.map(({ name, before, after }) => ({ name, before, after }));
  } else {
    magnitude(model, { amount, scope: values.scope as 'layer' | 'global' }).dispose();
  }
  await save(values.out, out, { metadata });
  const res = {
    input,
    output: values.out,
    structured: values.structured,
    sparsity: sparsity(out),
    paramsBefore,
    paramsAfter: out.numParameters(),
    layers: kept,
  };
  if (values.json) process.stdout.write(JSON.stringify(res) + '\n');
  else {
    process.stdout.write(
      `pruned ${input} -> ${values.out}: ${values.structured ? 'structured' : `magnitude (${values.scope})`}, ` +
        `parameters ${paramsBefore} -> ${res.paramsAfter}, weight sparsity ${(100 * res.sparsity).toFixed(1)}%\n` +
        kept.map((k) => `  layer ${k.name}: ${k.before} -> ${k.after} units\n`).join(''),
    );
  }
  return 0;
}
