// Atomic file writes: write a temp file next to the target, fsync it, rename it over the target, fsync the
// directory. A crash leaves either the old file or the new one, never a torn one.
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';

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
    throw e;
  }
  syncDir(dirname(path));
}

/** Writes `chunks` to `path` atomically. */
export async function writeFileAtomic(path: string, chunks: readonly Uint8Array[]): Promise<void> {
  const tmp = tempName(path);
  const fh = await open(tmp, 'wx', 0o644).catch((e: unknown) => {
    throw e;
  });
  try {
    for (const c of chunks) {
      let off = 0;
      while (off < c.byteLength) off += (await fh.write(c, off, c.byteLength - off)).bytesWritten;
    }
    await fh.sync();
    await fh.close();
    await rename(tmp, path);
  } catch (e) {
    await fh.close().catch(() => {});
    await rm(tmp, { force: true });
    throw e;
  }
  syncDir(dirname(path));
}
