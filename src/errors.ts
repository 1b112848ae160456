/**
 * Every error kiln throws is a {@link KilnError}. Subclasses say what kind of thing was wrong; messages say
 * what was expected and what was found.
 */
export class KilnError extends Error {
  /** `options.cause`: the underlying error (a file-system error with its `code`, say), as Error's own option. */
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}
/** Shapes that do not fit together (broadcasting, matmul inner dims, conv geometry, ...). */
export class ShapeError extends KilnError {}
/** A dtype an op does not take, or two dtypes that do not mix. */
export class DTypeError extends KilnError {}
/** A backend that is missing, failed, or lacks a kernel; out of memory. */
export class BackendError extends KilnError {}
/** A file or byte stream that is not what it claims to be. */
export class FormatError extends KilnError {}
/** Data or arguments that fail validation. */
export class ValidationError extends KilnError {}
/** A wrong argument: wrong type, out of range, or a disposed tensor. */
export class ArgumentError extends ValidationError {}

/** A multi-process job that cannot run or went wrong: no MPI, a mismatched launcher, ranks that disagree. */
export class DistributedError extends KilnError {}

/** A tracking server that refused or could not take what was logged (the local copy keeps everything). */
export class TrackingError extends KilnError {}

/** What a caught value says: an Error's message, else the value as text. */
export function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Short, readable description of any value for error messages. */
export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (typeof v === 'number') return Number.isNaN(v) ? 'NaN' : String(v);
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v);
  if (typeof v === 'bigint') return `${v}n`;
  if (typeof v === 'boolean' || typeof v === 'symbol') return String(v);
  if (typeof v === 'function') return 'a function';
  if (Array.isArray(v)) return v.length <= 8 ? `[${v.map(describe).join(', ')}]` : `an array of length ${v.length}`;
  if (ArrayBuffer.isView(v)) return `a ${v.constructor.name}`;
  const name = (v as object).constructor?.name;
  return name && name !== 'Object' ? `a ${name}` : 'an object';
}

/**
 * Checks an options argument: an object (not an array) whose own keys are all among `known`, so that a typo
 * (`{ dtyp: 'float64' }`) or a bare value (`kn.zeros([2], 'float64')`) fails instead of being ignored. An omitted
 * argument (`undefined`) passes unless `presence` is `'required'`, for the entry points that cannot run without one.
 */
export function checkOptions(
  opts: unknown,
  where: string,
  known: readonly string[],
  presence: 'optional' | 'required' = 'optional',
): void {
  if (opts === undefined && presence === 'optional') return; // an optional argument left out
  if (opts === null || typeof opts !== 'object' || Array.isArray(opts))
    throw new ArgumentError(`${where} options must be an object, got ${describe(opts)}`);
  const k = unknownKey(opts, known);
  if (k !== undefined)
    throw new ArgumentError(`${where}: unknown option ${describe(k)} (the options are ${known.join(', ')})`);
}

/** The first own key of `o` that is not among `known`, or undefined when there is none. */
export function unknownKey(o: object, known: readonly string[]): string | undefined {
  return Object.keys(o).find((k) => !known.includes(k));
}

/**
 * The names of an options interface, from a record the compiler checks against it both ways: a missing key or
 * one the interface lacks is a type error, so the list cannot drift from the interface. For instance
 * `optionKeys<{ a?: number; b: string }>({ a: true, b: true })` is `['a', 'b']`.
 */
export function optionKeys<T>(keys: { readonly [K in keyof Required<T>]: true }): readonly string[] {
  return Object.freeze(Object.keys(keys));
}
