// CUDA sources for the CPU emulation (test/native/cuda_emu.h, sm90_emu.h, cuda_emu_runtime.h): kernel launches
// rewritten as calls, and kiln_cuda.so built from its own sources against the emulated runtime.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..');

/**
 * Each `kernel<<<grid, block, smem, stream>>>(args);` in `text` (the kernel an identifier with template arguments,
 * the launch configuration and the arguments any expressions) as `emu_kernel(grid, block, smem, stream, [&] {
 * kernel(args); }, "kernel");`.
 */
export function emulateLaunches(text: string): string {
  let out = '',
    at = 0;
  for (let i = text.indexOf('<<<'); i >= 0; i = text.indexOf('<<<', at)) {
    let s = i;
    while (/\s/.test(text[s - 1]!)) s--;
    const nameEnd = s;
    if (text[s - 1] === '>') {
      for (let depth = 0; s > 0;) {
        const c = text[--s];
        if (c === '>') depth++;
        else if (c === '<' && --depth === 0) break;
      }
    }
    while (/[\w:]/.test(text[s - 1]!)) s--;
    const close = text.indexOf('>>>', i);
    let e = text.indexOf('(', close);
    const args = e + 1;
    for (let depth = 0; e < text.length; e++) {
      if (text[e] === '(') depth++;
      else if (text[e] === ')' && --depth === 0) break;
    }
    const name = text.slice(s, nameEnd);
    if (close < 0 || !/^[A-Za-z_]/.test(name) || text[e + 1] !== ';')
      throw new Error(`emulateLaunches: cannot read the launch at "${text.slice(s, i + 40)}"`);
    out +=
      text.slice(at, s) +
      `emu_kernel(${text.slice(i + 3, close)}, [&] { ${name}(${text.slice(args, e)}); }, "${name.replace(/\s+/g, ' ')}");`;
    at = e + 2;
  }
  return out + text.slice(at);
}

// the op families' kernel files, and the runtime's (the Hopper GEMM is no_sm90.cc's: its check is its own)
const FAMILIES = ['conv', 'elementwise', 'matmul', 'movement', 'optim', 'quant', 'random', 'reduce'];
const RUNTIME = ['device', 'nccl', 'cublaslt', 'no_sm90'];
// CUDA's headers as the sources include them, each the emulated runtime
const HEADERS = ['cuda_runtime.h', 'cuda_runtime_api.h', 'cuda_bf16.h', 'cuda_fp16.h', 'mma.h'];
const CUB_SORT = 'cub/device/device_radix_sort.cuh';
// quant.cu's one line of inline PTX, the mixed-sign dp4a, as the emulation's function of the same meaning
const DP4A_PTX = 'asm("dp4a.u32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));';

/** What buildCudaEmulation makes: the paths of the two libraries. */
export interface CudaEmulation {
  /** kiln_cuda.so on the emulated runtime, for KILN_CUDA_ADDON_PATH */
  cuda: string;
  /** cuBLASLt's entry points on the emulation (test/native/cublaslt_emu.cc), for KILN_CUDA_CUBLASLT */
  cublasLt: string;
  /** NCCL's between processes on one machine (test/native/nccl_emu.cc), for KILN_NCCL_PATH */
  nccl: string;
}

/**
 * Builds kiln_cuda.so from kernels/cuda/*.cu and native/cuda/*.cc on test/native/cuda_emu_runtime.h, and the
 * emulated cuBLASLt and NCCL, into `dir` (launches rewritten, compiled as C++ with `cxx`, `flags` added) and returns their
 * paths, or throws with the compiler's output.
 */
export function buildCudaEmulation(dir: string, cxx: string, flags: string[] = []): CudaEmulation {
  mkdirSync(join(dir, 'cub', 'device'), { recursive: true });
  for (const h of [...HEADERS, CUB_SORT]) writeFileSync(join(dir, h), '#pragma once\n#include "cuda_emu_runtime.h"\n');
  const sources: string[] = [];
  for (const f of FAMILIES) {
    let text = emulateLaunches(readFileSync(join(root, 'kernels', 'cuda', `${f}.cu`), 'utf8'));
    if (f === 'quant') {
      if (!text.includes(DP4A_PTX)) throw new Error('buildCudaEmulation: quant.cu no longer has its dp4a PTX line');
      text = text.replace(DP4A_PTX, 'd = ::dp4a_us(a, b, c);');
    }
    writeFileSync(join(dir, `${f}.cc`), text);
    sources.push(join(dir, `${f}.cc`));
  }
  for (const f of RUNTIME) sources.push(join(root, 'native', 'cuda', `${f}.cc`));
  const standIns = ['cublaslt_emu', 'nccl_emu'].map((f) => join(root, 'test', 'native', `${f}.cc`));
  const args = [
    '-O1',
    '-fPIC',
    '-std=c++20',
    '-pthread',
    '-D__CUDA_ARCH__=900', // the tensor-core kernels' bodies are compiled for sm_80 and newer
    '-Wno-unknown-pragmas',
    ...flags,
    `-I${dir}`,
    `-I${join(root, 'test', 'native')}`,
    `-I${join(root, 'kernels', 'cuda')}`,
    `-I${join(root, 'native', 'include')}`,
  ];
  // the compiles in parallel (xargs -P), then the link
  const jobs = [...sources, ...standIns].map((s) =>
    [cxx, ...args, '-c', s, '-o', join(dir, `${s.replace(/.*\//, '')}.o`)].join(' '),
  );
  writeFileSync(join(dir, 'compile.txt'), jobs.join('\n') + '\n');
  const lib = join(dir, 'kiln_cuda_emu.so');
  const lt = join(dir, 'libcublasLt_emu.so'),
    nccl = join(dir, 'libnccl_emu.so');
  const r = spawnSync(
    'bash',
    [
      '-c',
      `xargs -P ${Math.max(2, cpus().length)} -d '\\n' -I{} bash -c '{}' < compile.txt && ` +
        `${cxx} -shared -pthread ${flags.join(' ')} -o ${lib} ${sources.map((s) => `${s.replace(/.*\//, '')}.o`).join(' ')} && ` +
        `${cxx} -shared -pthread ${flags.join(' ')} -o ${lt} cublaslt_emu.cc.o && ` +
        `${cxx} -shared -pthread ${flags.join(' ')} -o ${nccl} nccl_emu.cc.o -lrt`,
    ],
    { cwd: dir, encoding: 'utf8', maxBuffer: 64 << 20 },
  );
  if (r.status !== 0) throw new Error(`buildCudaEmulation: the build failed:\n${r.stdout}${r.stderr}`);
  return { cuda: lib, cublasLt: lt, nccl };
}
