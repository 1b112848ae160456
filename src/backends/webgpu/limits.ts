// What kiln's WGSL needs of a WebGPU adapter, checked before a device is created (worker.ts).
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * What kiln's shaders need of an adapter, read from the WGSL itself: the most storage buffers one family's
 * shaders bind (plus the shared error-flag buffer of common.wgsl) and the largest workgroup. Compatibility-mode
 * defaults (4 storage buffers) are below that; the device is created with the adapter's own maxima, so an
 * adapter either offers enough or the backend is unavailable with this reason.
 */
export function missingLimits(
  wgslDir: string,
  l: Pick<
    GPUSupportedLimits,
    | 'maxStorageBuffersPerShaderStage'
    | 'maxComputeInvocationsPerWorkgroup'
    | 'maxComputeWorkgroupSizeX'
    | 'maxComputeWorkgroupSizeY'
  >,
): string {
  const count = (text: string): number => (text.match(/var<storage/g) ?? []).length;
  const common = count(readFileSync(join(wgslDir, 'common.wgsl'), 'utf8'));
  let storage = 0,
    invocations = 0,
    x = 0,
    y = 0;
  for (const f of readdirSync(wgslDir)) {
    if (!f.endsWith('.wgsl') || f === 'common.wgsl' || f === 'tables.wgsl') continue;
    const text = readFileSync(join(wgslDir, f), 'utf8');
    storage = Math.max(storage, count(text) + common);
    for (const m of text.matchAll(/@workgroup_size\((\d+)(?:,\s*(\d+))?(?:,\s*(\d+))?\)/g)) {
      const [a, b, c] = [Number(m[1]), Number(m[2] ?? 1), Number(m[3] ?? 1)];
      invocations = Math.max(invocations, a * b * c);
      x = Math.max(x, a);
      y = Math.max(y, b);
    }
  }
  const short: string[] = [];
  if (l.maxStorageBuffersPerShaderStage < storage)
    short.push(`${storage} storage buffers per shader stage (it allows ${l.maxStorageBuffersPerShaderStage})`);
  if (l.maxComputeInvocationsPerWorkgroup < invocations)
    short.push(`${invocations} invocations per workgroup (it allows ${l.maxComputeInvocationsPerWorkgroup})`);
  if (l.maxComputeWorkgroupSizeX < x) short.push(`workgroups ${x} wide (it allows ${l.maxComputeWorkgroupSizeX})`);
  if (l.maxComputeWorkgroupSizeY < y) short.push(`workgroups ${y} high (it allows ${l.maxComputeWorkgroupSizeY})`);
  return short.length ? `kiln needs ${short.join(', ')}` : '';
}

/**
 * The entry points of a WGSL source, each with its body from its opening `{` to the matching `}`. The worker
 * binds check_loops' flag buffer to the entry points whose body calls it, and webgpu.test checks with the same
 * bodies that every entry point with a data-dependent loop calls it, so the two cannot read the WGSL differently.
 */
export function entryPoints(text: string): { name: string; body: string }[] {
  const out: { name: string; body: string }[] = [];
  for (const m of text.matchAll(/@compute[^\n]*\n\s*fn (\w+)\(/g)) {
    const start = text.indexOf('{', m.index + m[0].length);
    let depth = 0,
      end = start;
    for (; end < text.length; end++) {
      if (text[end] === '{') depth++;
      else if (text[end] === '}' && --depth === 0) break;
    }
    out.push({ name: m[1]!, body: text.slice(start, end + 1) });
  }
  return out;
}
