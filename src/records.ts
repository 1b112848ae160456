// Objects keyed by names that come from outside the program (tensor names in a file, column names in a table,
// metadata keys, fields of a JSON document). An ordinary object literal inherits from Object.prototype, so a
// name such as `__proto__` replaces the object's prototype on assignment, and a lookup of `constructor` or
// `toString` finds an inherited function. Every such result is built with `nameRecord()` (no prototype: every
// string is an ordinary own key) and read with `own()` (own properties only).

/** An empty object without a prototype, for results keyed by untrusted names. */
export function nameRecord<T>(): Record<string, T> {
  return Object.create(null) as Record<string, T>;
}

/** `o[key]` when `key` is an own property of `o`, else undefined (never an inherited member). */
export function own<T>(o: Readonly<Record<string, T>> | null | undefined, key: string): T | undefined {
  return o !== null && o !== undefined && Object.prototype.hasOwnProperty.call(o, key) ? o[key] : undefined;
}

/** A null-prototype copy of a record's own enumerable entries. */
export function toNameRecord<T>(o: Readonly<Record<string, T>>): Record<string, T> {
  const r = nameRecord<T>();
  for (const [k, v] of Object.entries(o)) r[k] = v;
  return r;
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * Why a name read from a file cannot be kept as it is (a string with a lone UTF-16 surrogate, which UTF-8 cannot
 * encode, so it would come back changed when saved), or null when it can.
 */
export function unrepresentable(name: string): string | null {
  return LONE_SURROGATE.test(name) ? 'it holds a lone UTF-16 surrogate, which UTF-8 files cannot store' : null;
}
