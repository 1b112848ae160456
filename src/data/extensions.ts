// Which format a data file is in, decided by its extension in one place: the table readers and writers, kiln
// convert, dataset directories and StreamingDataset all ask these functions. Extensions match whatever their case
// (DATA.ARROW is an Arrow file).

/** Parquet files. */
export const PARQUET_EXTENSIONS: readonly string[] = ['.parquet'];
/**
 * Arrow IPC files: the file format (.arrow, .feather, .ipc) or the stream format (.arrows). A reader tells the two
 * apart by content; a writer writes the stream format for .arrows.
 */
export const ARROW_EXTENSIONS: readonly string[] = ['.arrow', '.arrows', '.feather', '.ipc'];
/** CSV files (.tsv: tab-separated). */
export const CSV_EXTENSIONS: readonly string[] = ['.csv', '.tsv'];

/** Whether `path` ends in one of `exts`, whatever its case (false for what is not a string). */
export function hasExtension(path: string, exts: readonly string[]): boolean {
  if (typeof path !== 'string') return false;
  const p = path.toLowerCase();
  return exts.some((x) => p.endsWith(x));
}

/** Whether a path names an Arrow IPC file (.arrow, .arrows, .feather, .ipc). */
export const isArrowPath = (path: string): boolean => hasExtension(path, ARROW_EXTENSIONS);
/** Whether a path names an Arrow IPC stream-format file (.arrows). */
export const isArrowStreamPath = (path: string): boolean => hasExtension(path, ['.arrows']);
/** Whether a path names a CSV or TSV file (.csv, .tsv). */
export const isCsvPath = (path: string): boolean => hasExtension(path, CSV_EXTENSIONS);
