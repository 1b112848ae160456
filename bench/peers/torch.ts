// PyTorch CPU peer (Debian's python3-torch): runs bench/peers/torch_cpu.py in a child process per thread count
// and returns its medians. Skipped with a note when no python3 can import torch.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export interface TorchRow {
  work:
    | 'gemm'
    | 'conv'
    | 'mlp'
    | 'cnn'
    | 'adam'
    | 'sgd'
    | 'encoder'
    | 'lstm'
    | 'attention'
    | 'generate'
    | 'generate-full'
    | 'sum'
    | 'rowsum'
    | 'colsum'
    | 'softmax'
    | 'logsoftmax'
    | 'ce'
    | 'err-sum'
    | 'err-colsum'
    | 'err-logsoftmax';
  size: number;
  medianMs: number;
  /** an accuracy probe's result (torch_reduce.py), in place of a time */
  value?: number;
}

/** A python3 that imports torch (Debian's /usr/bin/python3 first: a pyenv shim may hide the system packages). */
export function torchPython(): { python: string | null; version: string; reason: string } {
  for (const py of ['/usr/bin/python3', 'python3']) {
    const r = spawnSync(py, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' });
    if (r.status === 0) return { python: py, version: r.stdout.trim(), reason: '' };
  }
  return {
    python: null,
    version: '',
    reason: 'PyTorch CPU not found (apt-get install -y python3-torch); the PyTorch columns are skipped',
  };
}

/** The OpenBLAS kernel set for the peer: SkylakeX (AVX-512) unless KILN_OPENBLAS_CORETYPE says otherwise (an
 * OPENBLAS_CORETYPE in the environment is ignored: some images set Haswell globally). */
export function coreType(): string {
  return process.env.KILN_OPENBLAS_CORETYPE ?? 'SkylakeX';
}

/**
 * Runs a PyTorch peer script of this folder (torch_cpu.py by default) on `threads` threads with about
 * `minSeconds` per measurement.
 */
export function torchRows(python: string, threads: number, minSeconds: number, script = 'torch_cpu.py'): TorchRow[] {
  const path = fileURLToPath(new URL(`./${script}`, import.meta.url));
  const r = spawnSync(python, [path, String(threads), String(minSeconds)], {
    encoding: 'utf8',
    env: {
      ...process.env,
      OMP_NUM_THREADS: String(threads),
      OPENBLAS_NUM_THREADS: String(threads),
      OPENBLAS_CORETYPE: coreType(),
    },
    maxBuffer: 1 << 20,
    timeout: 600_000,
  });
  if (r.status !== 0) throw new Error(`torch peer failed: ${r.stderr.split('\n').slice(-3).join(' ')}`);
  return r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as TorchRow);
}
