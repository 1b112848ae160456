// `kiln build`: builds the native code from source by running the package's scripts/build-native.mjs in a child
// process (the same script npm's install hook uses when no prebuilt binary matches), so its output streams through
// and its exit status is the command's.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../backends/native/locate.js';

export function buildCommand(args: string[]): number {
  const script = join(packageRoot(), 'scripts', 'build-native.mjs');
  if (!existsSync(script)) {
    process.stderr.write(`kiln build: ${script} is missing; reinstall kiln\n`);
    return 1;
  }
  const r = spawnSync(process.execPath, [script, ...args], { stdio: 'inherit' });
  if (r.error) {
    process.stderr.write(`kiln build: could not run ${script}: ${r.error.message}\n`);
    return 1;
  }
  return r.status ?? 1;
}
