// Atomic file writes: write a temp file next to the target, fsync it, rename it over the target, fsync the
// directory. A crash leaves either the old file or the new one, never a torn one.
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { open, readFile, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { ArgumentError, KilnError, ValidationError, describe, messageOf } from '../errors.js';

/** A file path for `what` to read or write: a non-empty string without NUL bytes (else an ArgumentError). */
export function checkFilePath(p: unknown, what: string): string {
  if (typeof p !== 'string' || p === '') throw new ArgumentError(`${what} needs a file path, got ${describe(p)}`);
  if (p.includes('\0')) throw new ArgumentError(`${what}: the file path ${describe(p)} holds a NUL byte`);
  return p;
}

/** The message of a file-system failure without Node's "ENOENT: " style prefix repeated by callers. */

/** The bytes of a file; a missing file, a directory or one without permission is an ArgumentError naming it. */
export async function readFileFor(path: unknown, what: string): Promise<Buffer> {
  const p = checkFilePath(path, what);
  try {
    return await readFile(p);
  } catch (e) {
    throw new ArgumentError(`${what}: cannot read ${p}: ${messageOf(e)}`);
  }
}
/** Synchronous readFileFor. */
export function readFileForSync(path: unknown, what: string): Buffer {
  const p = checkFilePath(path, what);
  try {
    return readFileSync(p);
  } catch (e) {
    throw new ArgumentError(`${what}: cannot read ${p}: ${messageOf(e)}`);
  }
}

/** Checks that `path` names a file `what` can open for reading (not a directory), without reading it. */
export function checkReadableFile(path: unknown, what: string): string {
  const p = checkFilePath(path, what);
  let file: boolean;
  try {
    file = statSync(p).isFile();
  } catch (e) {
    throw new ArgumentError(`${what}: cannot read ${p}: ${messageOf(e)}`);
  }
  if (!file) throw new ArgumentError(`${what}: cannot read ${p}: it is not a file`);
  return p;
}

/** Refuses a target the rename could not replace: a directory (or a path holding a NUL byte). */
function checkTarget(path: string): void {
  checkFilePath(path, 'writing a file');
  let dir = false;
  try {
    dir = statSync(path).isDirectory();
  } catch {
    // no such file yet: the usual case
  }
  if (dir) throw new ArgumentError(`cannot write ${path}: it is a directory, expected a file path`);
}

/** Why a path cannot be written, said of the target: the temp file's name in Node's message means nothing to a caller. */
const PATH_ERRORS: Readonly<Record<string, (path: string) => string>> = {
  ENOENT: (p) => `its directory ${dirname(p)} does not exist`,
  ENOTDIR: (p) => `a part of ${dirname(p)} is not a directory`,
  EACCES: (p) => `no permission to write in ${dirname(p)}`,
  EPERM: (p) => `no permission to write in ${dirname(p)}`,
  EROFS: () => 'the file system is read-only',
  ENAMETOOLONG: () => 'the name is too long',
  EISDIR: () => 'it is a directory, expected a file path',
};

/** A failed write as a KilnError naming `path`: ArgumentError for a path that cannot be written, else ValidationError. */
function writeError(path: string, e: unknown): Error {
  if (e instanceof KilnError) return e;
  const code = (e as NodeJS.ErrnoException)?.code ?? '';
  const why = Object.hasOwn(PATH_ERRORS, code) ? PATH_ERRORS[code]!(path) : null;
  if (why !== null) return new ArgumentError(`cannot write ${path}: ${why}`, { cause: e });
  return new ValidationError(`cannot write ${path}: ${messageOf(e)}`, { cause: e });
}

function tempName(path: string): string {
  return `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
}

function syncDir(dir: string): void {
  let fd = -1;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    // some file systems cannot open or fsync a directory; the rename itself is still atomic
  } finally {
    if (fd >= 0) closeSync(fd);
  }
}

/** Writes `chunks` to `path` atomically (synchronous). */
export function writeFileAtomicSync(path: string, chunks: readonly Uint8Array[]): void {
  checkTarget(path);
  const tmp = tempName(path);
  let fd = -1;
  try {
    fd = openSync(tmp, 'wx', 0o644);
    for (const c of chunks) {
      let off = 0;
      while (off < c.byteLength) off += writeSync(fd, c, off, c.byteLength - off);
    }
    fsyncSync(fd);
    closeSync(fd);
    fd = -1;
    renameSync(tmp, path);
  } catch (e) {
    if (fd >= 0) closeSync(fd);
    rmSync(tmp, { force: true });
    throw writeError(path, e);
  }
  syncDir(dirname(path));
}

/**
 * Writes `chunks` to `path` atomically; they may arrive one by one (an async iterable). When one fails to arrive
 * (the iterable throws), nothing is written and its error is thrown (a KilnError as it is).
 */
export async function writeFileAtomic(
  path: string,
  chunks: readonly Uint8Array[] | AsyncIterable<Uint8Array>,
): Promise<void> {
  checkTarget(path);
  const tmp = tempName(path);
  const fh = await open(tmp, 'wx', 0o644).catch((e: unknown) => {
    throw writeError(path, e);
  });
  try {
    for await (const c of chunks) {
      let off = 0;
      while (off < c.byteLength) off += (await fh.write(c, off, c.byteLength - off)).bytesWritten;
    }
    await fh.sync();
    await fh.close();
    await rename(tmp, path);
  } catch (e) {
    await fh.close().catch(() => {});
    await rm(tmp, { force: true });
    throw writeError(path, e);
  }
  syncDir(dirname(path));
}
