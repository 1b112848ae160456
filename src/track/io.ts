// File-system failures while logging (a full disk, no permission) as TrackingErrors that name the file.
import { TrackingError } from '../errors.js';

/** A file-system error while logging (a full disk, no permission) as a TrackingError that names the file. */
export function ioError(what: string, file: string, e: unknown): Error {
  const code = (e as NodeJS.ErrnoException).code;
  if (typeof code !== 'string') return e as Error;
  const why =
    code === 'ENOSPC' ? 'the disk is full' : code === 'EACCES' || code === 'EPERM' ? 'permission denied' : code;
  return new TrackingError(
    `could not ${what} (${file}): ${why}; what the run wrote before is intact (${(e as Error).message})`,
  );
}

export function io(what: string, file: string, f: (file: string) => void): void {
  try {
    f(file);
  } catch (e) {
    throw ioError(what, file, e);
  }
}
