// API keys of the model server: bearer tokens kept only as SHA-256 hashes, compared in constant time against
// every stored hash (the time does not depend on which key matched or how much of it), per-key scopes
// ('predict', 'admin'), and per-key limits (requests per second as a token bucket, rows per request).
// A key is identified in logs by the first 12 hex digits of its hash, never by the token.
// No HTTP here: http.ts turns the answers into 401/403/429.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { ArgumentError, checkOptions, describe, optionKeys } from '../errors.js';

/** What a key may do: call /predict, or the admin routes (deploy, promote, rollback, /alerts, /metrics). */
export type Scope = 'predict' | 'admin';
const SCOPES: readonly Scope[] = ['predict', 'admin'];

/** A key's scopes and limits. */
export interface KeySpec {
  scopes: Scope[];
  /** Requests per second this key may make on average (token bucket; default: no limit). */
  rateLimit?: number;
  /** Requests the bucket holds (default: max(1, rateLimit)). */
  burst?: number;
  /** Most examples in one /predict request from this key (default: the server's maxRowsPerRequest). */
  maxRows?: number;
}

/**
 * auth option: `{keys: {[token]: scopes[] | KeySpec}}`. A token may also be given already hashed, as
 * 'sha256:<64 hex digits>' (what `kiln apikey` prints), so that a keys file holds no usable secret.
 */
export interface AuthOptions {
  keys: Record<string, readonly Scope[] | KeySpec>;
}

interface StoredKey {
  readonly id: string;
  readonly hash: Buffer;
  readonly spec: Required<Pick<KeySpec, 'scopes'>> & Omit<KeySpec, 'scopes'>;
  tokens: number;
  last: number;
}

/** The outcome of checking a request's Authorization header for a scope. */
export type AuthResult =
  | { ok: true; key: string; maxRows: number | undefined }
  | { ok: false; status: 401 | 403 | 429; error: string; message: string; key?: string; retryAfter?: number };

/** Is an address (or host name) the loopback interface? */
export function isLoopback(host: string): boolean {
  return /^(127\.\d+\.\d+\.\d+|::1|localhost|::ffff:127\.\d+\.\d+\.\d+)$/.test(host);
}

const sha256 = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

/** The line a keys file holds for a token: 'sha256:<hex>'. */
export function hashKey(token: string): string {
  if (typeof token !== 'string' || token.length < 16)
    throw new ArgumentError(`an API key must be a string of at least 16 characters, got ${describe(token)}`);
  return 'sha256:' + sha256(token).toString('hex');
}

/** A new random API key (32 bytes, base64url) and its hashed form for the keys file. */
export function newApiKey(): { token: string; hashed: string } {
  const token = 'kiln_' + randomBytes(32).toString('base64url');
  return { token, hashed: hashKey(token) };
}

function specOf(token: string, v: unknown): StoredKey['spec'] {
  const scopes: unknown = Array.isArray(v) ? v : v && typeof v === 'object' ? (v as KeySpec).scopes : undefined;
  if (!Array.isArray(scopes) || scopes.length === 0 || !scopes.every((s) => SCOPES.includes(s as Scope)))
    throw new ArgumentError(
      `auth key ${token.slice(0, 12)}...: scopes must be a non-empty list of ${SCOPES.map((s) => `'${s}'`).join(', ')}, got ${describe(scopes)}`,
    );
  const spec: StoredKey['spec'] = { scopes: [...(scopes as Scope[])] };
  if (!Array.isArray(v) && v && typeof v === 'object') {
    const o = v as KeySpec;
    checkOptions(
      o,
      `auth key ${token.slice(0, 12)}...`,
      optionKeys<KeySpec>({ scopes: true, rateLimit: true, burst: true, maxRows: true }),
    );
    const num = (k: 'rateLimit' | 'burst' | 'maxRows', int: boolean): void => {
      const x = o[k];
      if (x === undefined) return;
      if (typeof x !== 'number' || !(x > 0) || !Number.isFinite(x) || (int && !Number.isInteger(x)))
        throw new ArgumentError(
          `auth key ${token.slice(0, 12)}...: ${k} must be a positive ${int ? 'integer' : 'number'}, got ${describe(x)}`,
        );
      spec[k] = x;
    };
    num('rateLimit', false);
    num('burst', true);
    num('maxRows', true);
  }
  return spec;
}

/** The server's keys. */
export class ApiKeys {
  private readonly keys: StoredKey[] = [];

  constructor(opts: AuthOptions) {
    if (opts === null || typeof opts !== 'object' || opts.keys === null || typeof opts.keys !== 'object')
      throw new ArgumentError(`auth must be {keys: {[token]: scopes[]}}, got ${describe(opts)}`);
    checkOptions(opts, 'auth', optionKeys<AuthOptions>({ keys: true }));
    const entries = Object.entries(opts.keys);
    if (entries.length === 0) throw new ArgumentError('auth.keys holds no key: give at least one token');
    for (const [token, v] of entries) {
      let hash: Buffer;
      if (/^sha256:[0-9a-f]{64}$/i.test(token)) hash = Buffer.from(token.slice(7), 'hex');
      else {
        if (token.length < 16)
          throw new ArgumentError(
            `auth key ${JSON.stringify(token.slice(0, 4))}... is ${token.length} characters; use at least 16 (kiln apikey makes one)`,
          );
        hash = sha256(token);
      }
      const spec = specOf(token, v);
      this.keys.push({
        id: hash.toString('hex').slice(0, 12),
        hash,
        spec,
        tokens: spec.burst ?? Math.max(1, Math.ceil(spec.rateLimit ?? 1)),
        last: performance.now(),
      });
    }
  }

  /** Checks an Authorization header for a scope; a matching key spends one token of its rate limit. */
  check(header: string | undefined, scope: Scope): AuthResult {
    const m = typeof header === 'string' ? /^Bearer[ \t]+(\S+)\s*$/i.exec(header) : null;
    if (!m)
      return {
        ok: false,
        status: 401,
        error: 'unauthorized',
        message: "this server needs an API key: send 'Authorization: Bearer <key>'",
      };
    const h = sha256(m[1]!);
    // compare with every key, always: the time does not tell which one matched
    let found: StoredKey | null = null;
    for (const k of this.keys) if (timingSafeEqual(h, k.hash) && !found) found = k;
    if (!found) return { ok: false, status: 401, error: 'unauthorized', message: 'the API key is not valid' };
    if (!found.spec.scopes.includes(scope))
      return {
        ok: false,
        status: 403,
        error: 'forbidden',
        key: found.id,
        message: `the API key ${found.id} has scopes [${found.spec.scopes.join(', ')}]; this route needs '${scope}'`,
      };
    const rate = found.spec.rateLimit;
    if (rate !== undefined) {
      const cap = found.spec.burst ?? Math.max(1, Math.ceil(rate));
      const now = performance.now();
      found.tokens = Math.min(cap, found.tokens + ((now - found.last) / 1000) * rate);
      found.last = now;
      if (found.tokens < 1)
        return {
          ok: false,
          status: 429,
          error: 'rate_limited',
          key: found.id,
          retryAfter: Math.max(1, Math.ceil((1 - found.tokens) / rate)),
          message: `the API key ${found.id} is over its limit of ${rate} requests per second`,
        };
      found.tokens -= 1;
    }
    return { ok: true, key: found.id, maxRows: found.spec.maxRows };
  }

  /** Key ids with their scopes (no hashes, no tokens). */
  list(): { key: string; scopes: Scope[]; rateLimit?: number; maxRows?: number }[] {
    return this.keys.map((k) => ({
      key: k.id,
      scopes: [...k.spec.scopes],
      ...(k.spec.rateLimit !== undefined ? { rateLimit: k.spec.rateLimit } : {}),
      ...(k.spec.maxRows !== undefined ? { maxRows: k.spec.maxRows } : {}),
    }));
  }
}
