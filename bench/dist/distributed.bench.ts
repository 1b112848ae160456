// kn.distributed on this machine, every job started through `kiln launch` (Open MPI, shared memory):
//  - allreduce latency and bandwidth at 4 KiB / 4 MiB / 64 MiB, next to the same MPI called from plain C
//    (bench/peers/mpi_allreduce.c), and with chunking off (the 64 MiB cliff);
//  - DDP training throughput (MLP 784-1024-1024-10 and a small CNN, global batch 256) on 1 and 2 ranks,
//    with overlap of communication and backward on and off.
import { spawnSync } from 'node:child_process';
import { availableParallelism, cpus } from 'node:os';
import { join } from 'node:path';
import * as kn from '../../src/index.js';
import { fmt } from '../harness.js';
import { tempDir } from '../../test/helpers.js';

function launch(args: string[]): Record<string, unknown> | null {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'launch', ...args], {
    encoding: 'utf8',
    timeout: 300_000,
    env: { ...process.env, KILN_WEBGPU: '0' },
  });
  const line = (r.stdout ?? '').trim().split('\n').pop() ?? '';
  if (r.status !== 0 || !line.startsWith('{')) {
    console.log(
      `  (kiln launch ${args.join(' ')} failed: ${(r.stderr ?? '').trim().split('\n').slice(-3).join(' | ')})`,
    );
    return null;
  }
  return JSON.parse(line) as Record<string, unknown>;
}

function cPeer(): { bytes: number; ms: number }[] | null {
  const dir = tempDir('kiln-mpi-peer-');
  const exe = join(dir, 'mpi_allreduce');
  const cc = spawnSync('mpicc', ['-O2', '-o', exe, 'bench/peers/mpi_allreduce.c'], { encoding: 'utf8' });
  if (cc.status !== 0) return null;
  const r = spawnSync('mpirun', ['-np', '2', '--bind-to', 'none', exe], {
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, OMPI_ALLOW_RUN_AS_ROOT: '1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1' },
  });
  if (r.status !== 0) return null;
  return r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { bytes: number; ms: number });
}

const size = (b: number): string => (b >= 1 << 20 ? `${b / (1 << 20)} MiB` : `${b / 1024} KiB`);

export async function run(): Promise<void> {
  if (!kn.distributed.available().ok) {
    console.log(`skipped: ${(kn.distributed.available() as { reason: string }).reason}`);
    return;
  }
  console.log(`machine: ${availableParallelism()} cores (${cpus()[0]?.model ?? '?'}); 2 ranks on one host`);
  console.log('\nallreduce (sum, float32, in place), median per call, the slower rank:');
  const k = launch(['-np', '2', 'bench/dist/worker.ts', 'allreduce']);
  const nochunk = launch(['-np', '2', 'bench/dist/worker.ts', 'allreduce', '4096']);
  const c = cPeer();
  type Row = { bytes: number; ms: number };
  const rows = (k?.rows as Row[] | undefined) ?? [];
  console.log('  size      kiln ms    GB/s    C+MPI ms   GB/s   kiln/C   kiln, no chunking');
  for (const r of rows) {
    const p = c?.find((x) => x.bytes === r.bytes);
    const n = (nochunk?.rows as Row[] | undefined)?.find((x) => x.bytes === r.bytes);
    const gbs = (ms: number): string => fmt(r.bytes / (ms / 1e3) / 1e9, 2);
    console.log(
      `  ${size(r.bytes).padEnd(8)} ${fmt(r.ms, 3).padStart(8)} ${gbs(r.ms).padStart(7)}  ` +
        (p
          ? `${fmt(p.ms, 3).padStart(9)} ${gbs(p.ms).padStart(6)} ${fmt(r.ms / p.ms, 2).padStart(7)}x`
          : '   (no C peer)'.padEnd(34)) +
        (n ? `   ${fmt(n.ms, 3)} ms` : ''),
    );
  }

  console.log(
    '\nDDP training, global batch 256, Adam; samples/s (the slower rank), overlap = allreduce during backward:',
  );
  console.log(
    '  model  1 rank x 2 thr  1 rank x 1 thr  2 ranks x 1 thr (overlap)  (no overlap)  2 ranks / 1 rank x 2 thr',
  );
  for (const model of ['mlp', 'cnn']) {
    const one2 = launch(['-np', '1', '--threads', '2', 'bench/dist/worker.ts', 'train', model, '256', '1']);
    const one1 = launch(['-np', '1', '--threads', '1', 'bench/dist/worker.ts', 'train', model, '256', '1']);
    const two = launch(['-np', '2', 'bench/dist/worker.ts', 'train', model, '256', '1']);
    const twoNo = launch(['-np', '2', 'bench/dist/worker.ts', 'train', model, '256', '0']);
    const s = (o: Record<string, unknown> | null): number => (o ? (o.samplesPerS as number) : NaN);
    console.log(
      `  ${model.padEnd(5)} ${fmt(s(one2), 0).padStart(14)} ${fmt(s(one1), 0).padStart(15)} ${fmt(s(two), 0).padStart(26)} ` +
        `${fmt(s(twoNo), 0).padStart(13)} ${fmt(s(two) / s(one2), 2).padStart(18)}x` +
        `   (per-core efficiency vs 1 thread: ${fmt((100 * s(two)) / (2 * s(one1)), 0)}%; ${two?.params ?? '?'} params)`,
    );
  }
}
