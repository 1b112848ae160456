#!/usr/bin/env node
// `kiln` command line: info, build, bench, train, predict, convert, serve, admin, apikey, pipeline, quantize, prune,
// launch, runs, report, registry.
import { parseArgs } from 'node:util';
// an entry point: attach the Tensor op methods before any command runs (src/index.ts does the same)
import '../tensor/methods.js';
import { info } from '../info.js';
import { benchCommand } from './bench.js';
import { buildCommand } from './build.js';
import { BENCH_MODEL_HELP } from './bench_model.js';
import { SERVE_HELP, serveCommand } from './serve.js';
import { adminCommand, apikeyCommand } from './admin.js';
import { PIPELINE_HELP, pipelineCommand } from './pipeline.js';
import { QUANTIZE_HELP, pruneCommand, quantizeCommand } from './quantize.js';
import { LAUNCH_HELP, launchCommandLine } from './launch.js';
import { REGISTRY_HELP, registryCommand } from './registry.js';
import { TRAIN_HELP, trainCommand } from './train.js';
import { PREDICT_HELP, predictCommand } from './predict.js';
import { CONVERT_HELP, convertCommand } from './convert.js';
import { RUNS_HELP, reportCommand, runsCommand } from './runs.js';

const HELP = `usage: kiln <command> [options]

commands:
  info [--json]   versions, CPU features in use, available backends and why a missing one is missing
  build [--cuda] [--mpi] [--gyp] [--arch=arm64]
                  build the native code from source (the package ships prebuilt cpu binaries; CUDA and MPI are
                  built here: --cuda needs nvcc and CMake, --mpi an MPI such as libopenmpi-dev)
  bench [matmul|int8|conv|mlp ...] [--sizes 256,512] [--threads 1,2] [--backend cpu|js] [--json]
                  time kiln's kernels (median, min-max; GFLOP/s or steps/s)
${BENCH_MODEL_HELP}${TRAIN_HELP}${PREDICT_HELP}${CONVERT_HELP}${SERVE_HELP}${PIPELINE_HELP}${QUANTIZE_HELP}${LAUNCH_HELP}${RUNS_HELP}${REGISTRY_HELP}`;

export function main(argv: string[]): number | Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '-h' || cmd === '--help' || cmd === 'help') {
    process.stdout.write(HELP);
    return cmd ? 0 : 1;
  }
  if (cmd === 'info') {
    const { values } = parseArgs({ args: rest, options: { json: { type: 'boolean', default: false } }, strict: true });
    const i = info();
    if (values.json) {
      process.stdout.write(JSON.stringify(i, null, 2) + '\n');
      return 0;
    }
    const lines = [`kiln ${i.kiln} on Node ${i.node} (${process.platform}-${process.arch})`];
    if (i.cpu)
      lines.push(
        `cpu: kernels ${i.cpu.isa} (supported: ${i.cpu.supportedIsas.join(', ')}), ${i.cpu.threads} threads${i.cpu.compiler ? `, built with GCC ${i.cpu.compiler}` : ''}`,
        `addon: ${i.cpu.addon.from} (${i.cpu.addon.path})`,
      );
    if (i.webgpu) {
      const w = i.webgpu;
      lines.push(
        `webgpu: ${w.description || w.architecture || w.vendor} via ${w.backend} (${w.featureLevel}), buffers up to ${(w.maxBufferBytes / 2 ** 20).toFixed(0)} MiB`,
      );
    }
    if (i.cuda?.compiled) {
      const c = i.cuda;
      const gemm = c.cublasLt
        ? `GEMMs on ${c.cublasLt}${c.cublasLtReason ? ` (${c.cublasLtReason})` : ''}`
        : `kiln's GEMM kernels${c.cublasLtReason ? ` (not cuBLASLt: ${c.cublasLtReason})` : ''}`;
      const tc = c.matmul === 'tf32' ? 'bfloat16 and TF32' : 'bfloat16';
      const bf16 =
        c.wgmma && !c.cublasLt
          ? `, ${tc} GEMMs on wgmma (sm_90a)`
          : c.wgmmaReason
            ? ` (not wgmma: ${c.wgmmaReason})`
            : '';
      lines.push(`cuda: ${c.device || 'no device'}, float32 GEMM ${c.matmul}, ${gemm}${bf16}`);
    }
    lines.push('backends:');
    for (const b of i.backends)
      lines.push(`  ${b.name.padEnd(7)} ${b.available ? 'available' : `missing: ${b.reason}`}`);
    process.stdout.write(lines.join('\n') + '\n');
    return 0;
  }
  if (cmd === 'build') return buildCommand(rest);
  if (cmd === 'bench') return benchCommand(rest);
  if (cmd === 'train') return trainCommand(rest);
  if (cmd === 'predict') return predictCommand(rest);
  if (cmd === 'convert') return convertCommand(rest);
  if (cmd === 'serve') return serveCommand(rest);
  if (cmd === 'admin') return adminCommand(rest);
  if (cmd === 'pipeline') return pipelineCommand(rest);
  if (cmd === 'apikey') return apikeyCommand(rest);
  if (cmd === 'quantize') return quantizeCommand(rest);
  if (cmd === 'prune') return pruneCommand(rest);
  if (cmd === 'launch') return launchCommandLine(rest);
  if (cmd === 'runs') return runsCommand(rest);
  if (cmd === 'report') return reportCommand(rest);
  if (cmd === 'registry') return registryCommand(rest);
  process.stderr.write(`kiln: unknown command '${cmd}'\n\n${HELP}`);
  return 2;
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (e) {
  process.stderr.write(`kiln: ${(e as Error).message}\n\n${HELP}`);
  process.exitCode = 2;
}
