// Model versions deployed beside the primary one, and the choice of version for each request:
//  - canary: a random share of requests (`weight`) goes to the version;
//  - sticky (A/B): requests carrying a key (a header named by `stickyKey`, or the body's `key`) are split by a
//    hash of the key, so one user always meets the same version; requests without a key go to the primary;
//  - shadow: every request is also run on the version; its answers are logged and measured, never returned.
// Each deployed version has its own Batcher and a window of its recent outcomes, which the automatic
// rollback rule reads (error rate or p99 latency over a threshold during the canary). The primary version
// stays in versions.ts (reload, probation); server.ts moves a candidate there on promote.
import { createHash } from 'node:crypto';
import { ArgumentError, checkOptions, describe, optionKeys } from '../errors.js';
import { Batcher, type BatcherOptions } from './batcher.js';
import type { ModelVersion } from './versions.js';

/** A version label that names no deployed version (HTTP 404). */
export class UnknownVersionError extends ArgumentError {}

/** How a deployed version gets traffic. */
export type Role = 'primary' | 'canary' | 'sticky' | 'shadow';

/** When a canary or A/B version is taken out automatically. */
export interface AutoRollbackRule {
  /** Largest share of failed requests over the window (default 0.05). */
  maxErrorRate?: number;
  /** Largest p99 latency over the window, ms (default: no latency rule). */
  maxP99Ms?: number;
  /** Requests the version must have served before the rule is applied (default 20). */
  minRequests?: number;
  /** Most recent requests the rule looks at (default 100). */
  window?: number;
}

/** srv.deploy options: one of weight (canary), stickyKey (A/B, with weight as the B share), shadow. */
export interface DeployOptions {
  version: string;
  /** Share of requests in (0, 1] (canary); with stickyKey, the share of keys (default 0.5). */
  weight?: number;
  /** Mirror every request to this version; its answers are never returned. */
  shadow?: boolean;
  /** Name of the request header whose value (or the body's `key`) splits traffic by a stable hash. */
  stickyKey?: string;
  /** The automatic rollback rule (default: the server's); false turns it off for this version. */
  autoRollback?: AutoRollbackRule | false;
}

/** A version's recent outcomes. */
export class Outcomes {
  private readonly ok: Uint8Array;
  private readonly ms: Float64Array;
  private head = 0;
  n = 0;
  total = 0;
  errors = 0;
  constructor(readonly size: number) {
    this.ok = new Uint8Array(size);
    this.ms = new Float64Array(size);
  }
  add(ok: boolean, ms: number): void {
    this.ok[this.head] = ok ? 1 : 0;
    this.ms[this.head] = ms;
    this.head = (this.head + 1) % this.size;
    this.n = Math.min(this.n + 1, this.size);
    this.total++;
    if (!ok) this.errors++;
  }
  errorRate(): number {
    let bad = 0;
    for (let i = 0; i < this.n; i++) bad += 1 - this.ok[i]!;
    return this.n ? bad / this.n : 0;
  }
  p99(): number {
    if (!this.n) return 0;
    const s = Float64Array.from(this.ms.subarray(0, this.n)).sort();
    return s[Math.min(s.length - 1, Math.ceil(0.99 * s.length) - 1)]!;
  }
}

/** A version deployed beside the primary. */
export interface Deployed {
  readonly version: string;
  readonly role: Exclude<Role, 'primary'>;
  readonly weight: number;
  readonly stickyKey: string | null;
  readonly model: ModelVersion;
  readonly batcher: Batcher<Float32Array, Float32Array>;
  readonly outcomes: Outcomes;
  readonly rule: Required<Omit<AutoRollbackRule, 'maxP99Ms'>> & { maxP99Ms: number | null };
  readonly deployedAt: string;
}

/** What srv.versions() lists for each version. */
export interface VersionInfo {
  version: string;
  role: Role;
  weight: number;
  stickyKey: string | null;
  requests: number;
  errors: number;
  errorRate: number;
  p99Ms: number;
  deployedAt: string | null;
}

export function checkRule(r: AutoRollbackRule | undefined, where: string): Deployed['rule'] {
  const o = r ?? {};
  checkOptions(
    o,
    where,
    optionKeys<AutoRollbackRule>({ maxErrorRate: true, maxP99Ms: true, minRequests: true, window: true }),
  );
  const rate = o.maxErrorRate ?? 0.05;
  if (typeof rate !== 'number' || !(rate >= 0 && rate <= 1))
    throw new ArgumentError(`${where}.maxErrorRate must be in [0, 1], got ${describe(o.maxErrorRate)}`);
  if (o.maxP99Ms !== undefined && !(typeof o.maxP99Ms === 'number' && o.maxP99Ms > 0))
    throw new ArgumentError(`${where}.maxP99Ms must be a positive number, got ${describe(o.maxP99Ms)}`);
  const int = (v: unknown, k: string, d: number): number => {
    const x = v ?? d;
    if (typeof x !== 'number' || !Number.isInteger(x) || x < 1)
      throw new ArgumentError(`${where}.${k} must be an integer >= 1, got ${describe(v)}`);
    return x;
  };
  const window = int(o.window, 'window', 100);
  return {
    maxErrorRate: rate,
    maxP99Ms: o.maxP99Ms ?? null,
    minRequests: Math.min(int(o.minRequests, 'minRequests', 20), window),
    window,
  };
}

const DEPLOY_OPTIONS = optionKeys<DeployOptions>({
  version: true,
  weight: true,
  shadow: true,
  stickyKey: true,
  autoRollback: true,
});

/**
 * Checks deploy options; returns the role and weight. `extra` names the keys a caller takes beside these (the
 * programmatic deploy's `transform`).
 */
export function checkDeploy(
  o: DeployOptions,
  extra: readonly string[] = [],
): { role: Deployed['role']; weight: number; stickyKey: string | null } {
  checkOptions(o, 'deploy', [...DEPLOY_OPTIONS, ...extra], 'required');
  if (typeof o.version !== 'string' || !/^[\w.@:+-]{1,128}$/.test(o.version))
    throw new ArgumentError(
      `deploy needs a version label of 1 to 128 letters, digits or . _ @ : + -, got ${describe(o.version)}`,
    );
  if (o.shadow !== undefined && typeof o.shadow !== 'boolean')
    throw new ArgumentError(`deploy option shadow must be true or false, got ${describe(o.shadow)}`);
  if (o.stickyKey !== undefined && (typeof o.stickyKey !== 'string' || !/^[A-Za-z0-9-]{1,64}$/.test(o.stickyKey)))
    throw new ArgumentError(`deploy option stickyKey must be a header name, got ${describe(o.stickyKey)}`);
  if (o.weight !== undefined && !(typeof o.weight === 'number' && o.weight > 0 && o.weight <= 1))
    throw new ArgumentError(`deploy option weight must be in (0, 1], got ${describe(o.weight)}`);
  if (o.shadow && (o.weight !== undefined || o.stickyKey !== undefined))
    throw new ArgumentError(
      'a shadow version gets every request and returns none: give shadow alone, without weight or stickyKey',
    );
  if (o.shadow) return { role: 'shadow', weight: 0, stickyKey: null };
  if (o.stickyKey !== undefined)
    return { role: 'sticky', weight: o.weight ?? 0.5, stickyKey: o.stickyKey.toLowerCase() };
  if (o.weight === undefined)
    throw new ArgumentError('deploy needs one of weight (canary share), stickyKey (A/B split) or shadow: true');
  return { role: 'canary', weight: o.weight, stickyKey: null };
}

/** A stable number in [0, 1) for a sticky key. */
export function keyBucket(key: string): number {
  return createHash('sha256').update(key, 'utf8').digest().readUInt32BE(0) / 2 ** 32;
}

/** The versions deployed beside the primary, and the routing. */
export class Traffic {
  private readonly deployed = new Map<string, Deployed>();

  constructor(
    private readonly batcherOpts: BatcherOptions,
    private readonly onBatch: (version: string, info: Parameters<NonNullable<BatcherOptions['onBatch']>>[0]) => void,
    private readonly random: () => number = Math.random,
  ) {}

  get size(): number {
    return this.deployed.size;
  }
  get(version: string): Deployed | undefined {
    return this.deployed.get(version);
  }
  all(): Deployed[] {
    return [...this.deployed.values()];
  }
  shadows(): Deployed[] {
    return this.all().filter((d) => d.role === 'shadow');
  }

  /** The share of requests the canary and A/B versions would take with one more of `weight`. */
  private shareWith(role: Deployed['role'], weight: number): number {
    let s = weight;
    for (const d of this.deployed.values()) if (d.role === role) s += d.weight;
    return s;
  }

  /** Adds a warmed-up version (server.ts loads and warms it). */
  add(model: ModelVersion, o: DeployOptions, defaultRule: AutoRollbackRule | false | undefined): Deployed {
    const { role, weight, stickyKey } = checkDeploy(o);
    if (this.deployed.has(o.version)) throw new ArgumentError(`version ${o.version} is already deployed`);
    if (role !== 'shadow' && this.shareWith(role, weight) > 1 + 1e-9)
      throw new ArgumentError(
        `the ${role} versions would take ${(this.shareWith(role, weight) * 100).toFixed(0)}% of requests; weights add up to at most 1`,
      );
    const ruleOpt = o.autoRollback !== undefined ? o.autoRollback : defaultRule;
    const rule = checkRule(ruleOpt === false ? { maxErrorRate: 1 } : ruleOpt, 'autoRollback');
    const d: Deployed = {
      version: o.version,
      role,
      weight,
      stickyKey,
      model,
      rule: ruleOpt === false ? { ...rule, maxErrorRate: Infinity, maxP99Ms: null } : rule,
      outcomes: new Outcomes(rule.window),
      deployedAt: new Date().toISOString(),
      batcher: new Batcher<Float32Array, Float32Array>((rows) => model.rm.run(rows), {
        ...this.batcherOpts,
        onBatch: (b) => this.onBatch(o.version, b),
      }),
    };
    this.deployed.set(o.version, d);
    return d;
  }

  /**
   * The canary or A/B version a request goes to, or null for the primary. `header` reads a request header
   * (lower-case name); `key` is the body's key.
   */
  choose(header: (name: string) => string | undefined, key: string | undefined): Deployed | null {
    let stickyU: number | null = null,
      sticky = 0;
    let canaryU: number | null = null,
      canary = 0;
    for (const d of this.deployed.values()) {
      if (d.role === 'sticky') {
        const k = header(d.stickyKey!) ?? key;
        if (k === undefined || k === '') continue;
        stickyU ??= keyBucket(k);
        sticky += d.weight;
        if (stickyU < sticky) return d;
      } else if (d.role === 'canary') {
        canaryU ??= this.random();
        canary += d.weight;
        if (canaryU < canary) return d;
      }
    }
    return null;
  }

  /** Records an outcome; true when the version's automatic rollback rule is now broken. */
  record(d: Deployed, ok: boolean, ms: number): boolean {
    d.outcomes.add(ok, ms);
    if (d.role === 'shadow' || d.outcomes.n < d.rule.minRequests) return false;
    return (
      d.outcomes.errorRate() > d.rule.maxErrorRate || (d.rule.maxP99Ms !== null && d.outcomes.p99() > d.rule.maxP99Ms)
    );
  }

  /** Why the rule broke, in words. */
  reason(d: Deployed): string {
    const e = d.outcomes.errorRate();
    if (e > d.rule.maxErrorRate)
      return `error rate ${(e * 100).toFixed(1)}% over the last ${d.outcomes.n} requests is over ${(d.rule.maxErrorRate * 100).toFixed(1)}%`;
    return `p99 latency ${d.outcomes.p99().toFixed(1)} ms over the last ${d.outcomes.n} requests is over ${d.rule.maxP99Ms} ms`;
  }

  /** Takes a version out: no new requests; resolves when its queued requests are answered. Keeps its model. */
  async detach(version: string): Promise<Deployed> {
    const d = this.deployed.get(version);
    if (!d) throw new UnknownVersionError(`version ${version} is not deployed`);
    this.deployed.delete(version);
    await d.batcher.close();
    return d;
  }

  /** Takes a version out and frees its model. */
  async remove(version: string): Promise<void> {
    const d = await this.detach(version);
    d.model.rm.dispose();
  }

  /** Takes every version out. */
  async clear(): Promise<string[]> {
    const vs = [...this.deployed.keys()];
    for (const v of vs) await this.remove(v);
    return vs;
  }

  /** Each deployed version's numbers. */
  info(): VersionInfo[] {
    return this.all().map((d) => ({
      version: d.version,
      role: d.role,
      weight: d.weight,
      stickyKey: d.stickyKey,
      requests: d.outcomes.total,
      errors: d.outcomes.errors,
      errorRate: d.outcomes.errorRate(),
      p99Ms: d.outcomes.p99(),
      deployedAt: d.deployedAt,
    }));
  }
}
