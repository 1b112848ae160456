// OpenBLAS peer and the peak-FMA measurement: bench/peers/gemm_peer.c is compiled on demand (cc + Debian's
// libopenblas-dev) into build/bench/ and run as a child process with OPENBLAS_CORETYPE=SkylakeX.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const src = fileURLToPath(new URL('./gemm_peer.c', import.meta.url));
const outDir = fileURLToPath(new URL('../../build/bench/', import.meta.url));
const exe = `${outDir}gemm_peer`;
const INCLUDES = ['/usr/include/x86_64-linux-gnu/openblas-pthread', '/usr/include/openblas'];

/** Path of the helper, building it if needed; null (with the reason) when cc or OpenBLAS is missing. */
export function helper(): { exe: string | null; reason: string } {
  if (existsSync(exe) && statSync(exe).mtimeMs >= statSync(src).mtimeMs) return { exe, reason: '' };
  mkdirSync(outDir, { recursive: true });
  const inc = INCLUDES.filter((d) => existsSync(`${d}/cblas.h`));
  try {
    execFileSync(
      'cc',
      ['-O3', '-mavx512f', '-mfma', ...inc.map((d) => `-I${d}`), src, '-o', exe, '-lopenblas', '-lpthread'],
      { stdio: 'pipe' },
    );
    return { exe, reason: '' };
  } catch (e) {
    const msg = String((e as { stderr?: Buffer }).stderr ?? e).split('\n')[0];
    return { exe: null, reason: `cannot build the OpenBLAS helper (apt-get install libopenblas-dev): ${msg}` };
  }
}

function run(args: string[], threads: number): Record<string, number | string> {
  const { exe: path, reason } = helper();
  if (!path) throw new Error(reason);
  const out = execFileSync(path, args, {
    encoding: 'utf8',
    env: { ...process.env, OPENBLAS_CORETYPE: 'SkylakeX', OPENBLAS_NUM_THREADS: String(threads) },
  });
  return JSON.parse(out.trim()) as Record<string, number | string>;
}

/** OpenBLAS sgemm C = A B (square n): median ms and the kernel set OpenBLAS used. */
export function openblasSgemm(n: number, threads: number, reps: number): { medianMs: number; core: string } {
  const r = run(['sgemm', String(n), String(reps)], threads);
  return { medianMs: r.medianMs as number, core: r.core as string };
}

/** Measured peak AVX512-VNNI throughput (GOP/s, u8 x s8 multiply-adds count 2) on `threads` threads. */
export function peakVnni(threads: number): number {
  return run(['peakvnni', String(threads)], threads).gflops as number;
}

/** Measured peak AVX512-BF16 throughput (GFLOP/s, vdpbf16ps) on `threads` threads. */
export function peakBf16(threads: number): number {
  return run(['peakbf16', String(threads)], threads).gflops as number;
}

/** Measured peak FMA throughput (GFLOP/s, float32 AVX-512) on `threads` threads. */
export function peakFma(threads: number): number {
  return run(['peak', String(threads)], threads).gflops as number;
}
