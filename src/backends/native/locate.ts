// Where kiln's native binaries are. A source build (build/Release, by `kiln build` or the install script) wins
// over the prebuilt binaries shipped in the package (prebuilds/<platform>-<arch>/<name>.<libc>.node, the layout
// prebuildify and sharp use); an environment variable names a file explicitly and wins over both.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The three binaries: the cpu addon, the MPI collectives, the CUDA kernels (a library kiln.node opens). */
export type NativeBinary = 'kiln' | 'kiln_mpi' | 'kiln_cuda';

const FILE: Record<NativeBinary, string> = { kiln: 'kiln.node', kiln_mpi: 'kiln_mpi.node', kiln_cuda: 'kiln_cuda.so' };
const ENV: Record<NativeBinary, string> = {
  kiln: 'KILN_ADDON_PATH',
  kiln_mpi: 'KILN_MPI_ADDON_PATH',
  kiln_cuda: 'KILN_CUDA_ADDON_PATH',
};

/** The package's root directory (this file is src/backends/native or dist/backends/native). */
export function packageRoot(): string {
  return join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
}

/** 'glibc' or 'musl' on Linux ('' elsewhere): Node's own report says which C library it runs on. */
export function libc(): 'glibc' | 'musl' | '' {
  if (process.platform !== 'linux') return '';
  const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined;
  return report?.header?.glibcVersionRuntime ? 'glibc' : 'musl';
}

/** The prebuilt binary's directory name and file for this process, e.g. linux-x64 / kiln.glibc.node. */
export function prebuildName(name: NativeBinary): { dir: string; file: string } {
  const tag = libc();
  return {
    dir: `${process.platform}-${process.arch}`,
    file: tag ? `${name}.${tag}.node` : `${name}.node`,
  };
}

export interface Located {
  /** The file to load, or null when none exists. */
  path: string | null;
  /** Where it came from. */
  from: 'env' | 'source build' | 'prebuild' | 'none';
  /** Every place looked at, in order (for the error message). */
  tried: string[];
}

/** Finds a native binary: $KILN_*_ADDON_PATH, then build/Release, then the package's prebuilds. */
export function locate(name: NativeBinary, root: string = packageRoot()): Located {
  const env = process.env[ENV[name]];
  if (env) return { path: env, from: 'env', tried: [env] };
  const built = join(root, 'build', 'Release', FILE[name]);
  const tried = [built];
  if (existsSync(built)) return { path: built, from: 'source build', tried };
  if (name !== 'kiln_cuda') {
    const p = prebuildName(name);
    const pre = join(root, 'prebuilds', p.dir, p.file);
    tried.push(pre);
    if (existsSync(pre)) return { path: pre, from: 'prebuild', tried };
  }
  return { path: null, from: 'none', tried };
}
