// The runtime import graph of src/ and its cycles (strongly connected components of more than one file, or a
// file importing itself). Type-only imports (`import type`, or every name marked `type`) are left out: they
// vanish at compile time. Used by test/codebase.test.ts; `tsx scripts/import-cycles.ts` prints the cycles.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') && !p.endsWith('.d.ts') ? [p] : [];
  });
}

/** file -> the src files it imports at run time (relative paths from the repository root). */
export function importGraph(srcDir = join(root, 'src')): Map<string, string[]> {
  const g = new Map<string, string[]>();
  const re =
    /(?:^|\n)\s*(import|export)\s+(type\s+)?([^'";]*?)\s*from\s*['"](\.[^'"]+)['"]|(?:^|\n)\s*import\s*['"](\.[^'"]+)['"]/g;
  for (const f of files(srcDir)) {
    const text = readFileSync(f, 'utf8');
    const deps = new Set<string>();
    for (const m of text.matchAll(re)) {
      const spec = m[4] ?? m[5]!;
      if (m[2]) continue; // import type / export type
      const names = m[3] ?? '';
      const braced = /^\{([\s\S]*)\}$/.exec(names.trim());
      if (
        braced &&
        braced[1]!
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean)
          .every((s) => s.startsWith('type '))
      )
        continue;
      const target = resolve(dirname(f), spec.replace(/\.js$/, '.ts'));
      deps.add(relative(root, target));
    }
    g.set(relative(root, f), [...deps].sort());
  }
  return g;
}

/** Tarjan's strongly connected components with more than one file (or a self-import), each sorted. */
export function importCycles(g = importGraph()): string[][] {
  let index = 0;
  const idx = new Map<string, number>(),
    low = new Map<string, number>(),
    on = new Set<string>(),
    stack: string[] = [];
  const out: string[][] = [];
  const visit = (v: string): void => {
    idx.set(v, index);
    low.set(v, index);
    index++;
    stack.push(v);
    on.add(v);
    for (const w of g.get(v) ?? []) {
      if (!g.has(w)) continue;
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const comp: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        on.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1 || (g.get(v) ?? []).includes(v)) out.push(comp.sort());
    }
  };
  for (const v of g.keys()) if (!idx.has(v)) visit(v);
  return out;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const cycles = importCycles();
  for (const c of cycles) console.log(`cycle of ${c.length}: ${c.join(' ')}`);
  if (!cycles.length) console.log('no import cycles in src/');
  process.exit(cycles.length ? 1 : 0);
}
