// Files named on the command line: a missing or unreadable one is an ArgumentError that names the flag and the
// path, not Node's bare ENOENT.
import { readFileSync } from 'node:fs';
import { ArgumentError } from '../errors.js';

/** The bytes of the file a flag names (`flag` without its dashes). */
export function readFlagFile(path: string, flag: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new ArgumentError(`--${flag} ${path}: cannot read it (${(e as Error).message})`);
  }
}
