// Every `@example` in the source is run on every backend. A trailing `// <JSON>` is the expected value of the
// example's last expression (a tensor is compared through toList(), numbers with a 1e-6 relative tolerance).
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';
import ts from 'typescript';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as kn from '../src/index.js';
import { nativeBackends, tempDir } from './helpers.js';

interface Example {
  file: string;
  line: number;
  code: string;
  expected?: unknown;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

function collect(): Example[] {
  const out: Example[] = [];
  for (const file of sourceFiles('src')) {
    readFileSync(file, 'utf8')
      .split('\n')
      .forEach((text, i) => {
        const m = text.match(/@example\s+(.*?)\s*(\*\/)?\s*$/);
        if (!m || !m[1]) return;
        let code = m[1];
        let expected: unknown;
        const k = code.lastIndexOf(' // ');
        if (k >= 0) {
          try {
            expected = JSON.parse(code.slice(k + 4));
            code = code.slice(0, k);
          } catch {
            code = code.slice(0, k); // a prose comment: run only
          }
        }
        out.push({ file, line: i + 1, code, expected });
      });
  }
  return out;
}

/** Splits on top-level semicolons (not inside brackets or strings). */
function statements(code: string): string[] {
  const out: string[] = [];
  let depth = 0,
    quote = '',
    start = 0;
  for (let i = 0; i < code.length; i++) {
    const c = code[i]!;
    if (quote) {
      if (c === '\\') i++;
      else if (c === quote) quote = '';
    } else if (c === "'" || c === '"' || c === '`') quote = c;
    else if ('([{'.includes(c)) depth++;
    else if (')]}'.includes(c)) depth--;
    else if (c === ';' && depth === 0) {
      out.push(code.slice(start, i));
      start = i + 1;
    }
  }
  out.push(code.slice(start));
  return out.map((s) => s.trim()).filter(Boolean);
}

function compile(code: string): string {
  // the last statement's value is the example's value
  const stmts = statements(code);
  const last = stmts.pop()!;
  const body = [...stmts, /^(const|let|var)\s/.test(last) ? last : `return (${last})`].join(';\n');
  return ts.transpileModule(`async function __ex(kn: any) {\n${body}\n}`, {
    compilerOptions: { target: ts.ScriptTarget.ES2022 },
  }).outputText;
}

function close(a: unknown, e: unknown): boolean {
  if (typeof e === 'number')
    return typeof a === 'number' && (a === e || Math.abs(a - e) <= 1e-6 * Math.max(1, Math.abs(e)));
  if (Array.isArray(e)) return Array.isArray(a) && a.length === e.length && e.every((x, i) => close(a[i], x));
  if (e !== null && typeof e === 'object') {
    if (a === null || typeof a !== 'object' || Array.isArray(a)) return false;
    const ka = Object.keys(a),
      ke = Object.keys(e);
    return (
      ka.length === ke.length &&
      ke.every((k) => close((a as Record<string, unknown>)[k], (e as Record<string, unknown>)[k]))
    );
  }
  return a === e;
}

const examples = collect();
// the examples write their files (.kiln-tmp-*) into a directory of their own, removed when the tests end
const root = process.cwd();
const scratch = tempDir('kiln-examples-');

test('the source has runnable examples', () => {
  assert.ok(examples.length >= 80, `only ${examples.length} @example lines`);
});

for (const b of ['js', ...nativeBackends()] as kn.BackendName[]) {
  for (const ex of examples) {
    test(`${ex.file}:${ex.line} on ${b}: ${ex.code.slice(0, 60)}`, async () => {
      const fn = new Function(`${compile(ex.code)}\nreturn __ex;`)() as (k: typeof kn) => Promise<unknown>;
      const prev = kn.getBackend();
      kn.setBackend(b);
      process.chdir(scratch);
      try {
        let value = await fn(kn);
        if (value instanceof kn.Tensor) value = value.toList();
        if (ex.expected !== undefined)
          assert.ok(close(value, ex.expected), `got ${JSON.stringify(value)}, expected ${JSON.stringify(ex.expected)}`);
      } finally {
        process.chdir(root);
        kn.setBackend(prev);
      }
    });
  }
}

test("the README's first example runs and learns its weights", () => {
  const readme = readFileSync('README.md', 'utf8');
  const m = /## First steps\n\n```ts\n([\s\S]*?)```/.exec(readme);
  assert.ok(m, 'README has a First steps example');
  const dir = tempDir('kiln-readme-');
  try {
    const file = join(dir, 'first.ts');
    writeFileSync(
      file,
      m![1]!.replace("from 'kiln'", `from ${JSON.stringify(pathToFileURL(join(process.cwd(), 'src/index.ts')).href)}`),
    );
    assert.ok(m![1]!.split('\n').length <= 18, 'the first example stays short');
    const r = spawnSync(process.execPath, ['--import', 'tsx', file], { encoding: 'utf8' });
    assert.is(r.status, 0, r.stderr);
    const w = [...r.stdout.matchAll(/-?\d+\.\d+/g)].map((x) => Number(x[0]));
    assert.equal(
      w.map((v) => Math.round(v * 100) / 100),
      [2, -1, 0.5],
      r.stdout,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
