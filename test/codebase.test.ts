// The shape of the codebase: generated cross-language tables are fresh, kernels read attributes by name, every
// family has its file in every backend folder, and src/ has no runtime import cycle.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { generatedFiles, snake, staleFiles } from '../scripts/gen-tables.js';
import { importCycles, importGraph } from '../scripts/import-cycles.js';
import { FAMILY_KERNELS as JS_KERNELS } from '../src/backends/js/index.js';
import { FAMILY_KERNELS as GPU_KERNELS } from '../src/backends/webgpu/index.js';
import {
  ATTR,
  ATTR_GROUPS,
  DEVICE_FLAGS,
  FAMILIES,
  MAP_OPS,
  OP_TABLE,
  attrsOf,
  deviceFlagMessage,
  OP_BY_NAME,
  type OpName,
} from '../src/ops/table.js';
import { DTYPES, DTYPE_CODES } from '../src/tensor/dtype.js';

const read = (p: string): string => readFileSync(new URL(`../${p}`, import.meta.url), 'utf8');
const list = (dir: string): string[] => readdirSync(new URL(`../${dir}`, import.meta.url));
const FAMILY_OF = new Map(OP_TABLE.map((o) => [snake(o.name), o.family as string]));

test('every generated file matches its TypeScript source (npm run gen)', () => {
  assert.equal(staleFiles(), [], 'stale generated files: run npm run gen');
  assert.ok(Object.keys(generatedFiles()).length >= 4);
});

test('a changed table makes the generated files stale', () => {
  // the check compares whole texts, so any edit of the table shows; prove it sees an op-id shift
  const h = generatedFiles()['native/include/kiln/op_ids.h']!;
  assert.ok(h.includes(`OP_${snake(OP_TABLE[1]!.name)} = 1,`));
  assert.ok(h.includes(`static_assert(OP_COUNT == ${OP_TABLE.length}`));
  assert.not.ok(h.replace('OP_ARANGE = 1', 'OP_ARANGE = 2') === read('native/include/kiln/op_ids.h'));
});

test('generated codes agree with the TypeScript tables', () => {
  const tables = read('native/include/kiln/tables.h'),
    wgsl = read('kernels/wgsl/tables.wgsl');
  for (const d of DTYPES) assert.ok(tables.includes(`DT_${snake(d)} = ${DTYPE_CODES[d]},`), d);
  MAP_OPS.forEach((m, i) => {
    assert.ok(tables.includes(`MAP_${snake(m)} = ${i},`), m);
    assert.ok(wgsl.includes(`const MAP_${snake(m)}: u32 = ${i}u;`), m);
  });
  DEVICE_FLAGS.forEach((f, i) => assert.ok(wgsl.includes(`const FLAG_${snake(f.name)}: u32 = ${i}u;`), f.name));
  assert.ok(tables.includes(`#define KILN_FAMILIES(X) ${FAMILIES.map((f) => `X(${f})`).join(' ')}`));
  assert.ok(read('cmake/families.cmake').includes(`set(KILN_FAMILIES ${FAMILIES.join(' ')})`));
});

test('attribute groups are prefixes of every op that has all their names', () => {
  const startsWith = (attrs: readonly string[], names: readonly string[]): boolean =>
    names.every((n, i) => attrs[i] === n);
  for (const [g, names] of Object.entries(ATTR_GROUPS)) {
    let users = 0;
    for (const o of OP_TABLE) {
      const attrs = o.attrs as readonly string[];
      if (!names.every((n) => attrs.includes(n))) continue;
      if (startsWith(attrs, names)) {
        users++;
        continue;
      }
      // an op of another group may hold these names too (conv2dBackwardWeight has kernelH... after the conv group)
      assert.ok(
        Object.values(ATTR_GROUPS).some((other) => startsWith(attrs, other)),
        `${o.name} must start with attribute group ${g}`,
      );
    }
    assert.ok(users >= 2, `group ${g} is shared by ${users} op(s); a group is for layouts several ops share`);
  }
  assert.is(ATTR.conv2dBackwardInput.inH, 7);
  assert.equal(attrsOf('clamp', [-1, 2]), { min: -1, max: 2 });
});

test('device flag messages fill their placeholders', () => {
  assert.is(
    deviceFlagMessage(0, { pos: 1, value: 5, bound: 3, extra: 0 }),
    'gather index 5 at position 1 is out of range for axis 0 of size 3',
  );
  assert.is(
    deviceFlagMessage(2, null),
    'crossEntropy: a label is out of range (set ignoreIndex to leave padding rows out)',
  );
  for (const f of DEVICE_FLAGS)
    assert.not.match(deviceFlagMessage(DEVICE_FLAGS.indexOf(f), { pos: 0, value: 0, bound: 0, extra: 0 }), /\{/);
});

test('kernels read attributes by name, never by position', () => {
  const bad: string[] = [];
  const scan = (dir: string, ext: RegExp, re: RegExp): void => {
    for (const f of list(dir).filter((n) => ext.test(n))) {
      read(`${dir}/${f}`)
        .split('\n')
        .forEach((l, i) => {
          if (re.test(l)) bad.push(`${dir}/${f}:${i + 1}: ${l.trim()}`);
        });
    }
  };
  const native = /\b(attrs|at|a)\[\d+\]/; // attrs[ATTR_CONV_PAD_H], never attrs[2]
  scan('native/cpu', /\.cc$/, native);
  scan('kernels/cuda', /\.cu$/, /\b(attrs|at)\[\d+\]/);
  scan('src/backends/js', /\.ts$/, native);
  scan('src/backends/webgpu', /\.ts$/, native);
  // WGSL: MAP_*/DT_*/FLAG_* codes and Params words by name (P_CONV_N), never bare numbers
  scan('kernels/wgsl', /\.wgsl$/, /case \d+u:|report\(\d+u|\bp[uif]\(\d/);
  scan('src/backends/webgpu', /\.ts$/, /\.set\(\d|\bp\.[uif]\[\d/); // the TS side writes PARAMS.<layout>.<name>
  assert.equal(bad, []);
});

test('kernels follow one naming scheme on every backend', () => {
  // host kernels (cpu and CUDA launchers): op fooBar is k_foo_bar, registered as t.fn[OP_FOO_BAR] = k_foo_bar
  for (const [dir, ext] of [
    ['native/cpu', '.cc'],
    ['kernels/cuda', '.cu'],
  ] as const) {
    const seen = new Set<string>();
    for (const f of FAMILIES) {
      for (const m of read(`${dir}/${f}${ext}`).matchAll(/t\.fn\[OP_([A-Z0-9_]+)\]\s*=\s*([\w:<>]+);/g)) {
        const fn = m[2]!.replace(/^\w+::/, '');
        assert.is(FAMILY_OF.get(m[1]!), f, `OP_${m[1]} is registered in ${dir}/${f}${ext}, not its family's file`);
        assert.is(fn, `k_${m[1]!.toLowerCase()}`, `${dir}/${f}${ext} registers ${m[2]} for OP_${m[1]}`);
        seen.add(m[1]!);
      }
    }
    for (const o of OP_TABLE) assert.ok(seen.has(snake(o.name)), `${dir} registers no kernel for ${o.name}`);
  }
  // device kernels (WGSL entry points, CUDA __global__s): named after the op they run (snake_case), or after
  // the computation when one kernel serves several ops
  const shared = new Set([
    'map',
    'map_dense', // map's float32 path over contiguous runs
    'pool2d',
    'pool2d_backward', // max and average pooling's dx (cuda)
    'pool2d_argmax', // max pooling's window argmax, which its backward reads
    'reduce_rows',
    'reduce_cols',
    // sums, maxima and minima down a long axis with few outputs: 32 outputs a workgroup, 8 groups down (webgpu)
    'reduce_cols_tiled',
    // softmax along a non-last axis: 32 columns a block or workgroup, 8 warps or groups down the rows
    'softmax_cols',
    // softmax and the cross-entropy (forward and backward) over rows of 32+ values: 32 invocations per row (webgpu)
    'softmax_rows',
    'softmax_cross_entropy_rows',
    'softmax_cross_entropy_backward_rows',
    'arg_reduce',
    // argmax/argmin on cuda: a block a row for few long rows, 32-output tiles down a long axis
    'arg_rows',
    'arg_cols',
    'place',
    'quantize_rows',
    'dequant_int4',
    'add_bias',
    'random',
    'matmul_simt',
    'matmul_simt128',
    'matmul_wmma',
    'matmul_wmma128',
    // bfloat16 products on Hopper (sm_90a: TMA, mbarriers, wgmma), and the packing of an operand to K-major for it
    'gemm_sm90',
    'pack_kmajor',
    'sum_splits', // split-K's partial products added in order
    'round_bf16', // matmulBf16's bfloat16 output from a float32 product in scratch (cuBLASLt, WMMA)
    // qlinearInt8's warp-per-output kernel for few rows, and the weight row sums its tiled kernel needs
    'qlinear_int8_rows',
    'weight_sums',
    // conv2d and conv2dBackwardInput as implicit GEMMs; qconv2dInt8's implicit GEMM and its max pool
    'conv_gemm',
    'qconv_gemm',
    'qconv_pool',
    // the passes of attentionBackward and the copy that packs its inputs (webgpu binds five buffers)
    'attention_backward_stats',
    'attention_backward_q',
    'attention_backward_kv',
    'copy_f32',
    // layerNormBackward's dweight/dbias pass; on webgpu, rows of 32+ values take their statistics first (32
    // invocations a row), then layerNorm's per-element pass or the backward's dx pass
    'layer_norm_backward_params',
    'layer_norm_stats_rows',
    'layer_norm_apply',
    'layer_norm_backward_rows',
    // adamStepMulti and sgdStepMulti on cuda: several parameters' updates in one grid
    'step_multi',
    // scatterAdd's passes: positions grouped by row (webgpu: one workgroup counts, then places them; cuda: keys,
    // CUB's sort, row starts), then a sum per output element
    'scatter_group',
    'scatter_place',
    'scatter_keys',
    'scatter_starts',
    'scatter_sum',
  ]);
  const ops = new Set(OP_TABLE.map((o) => snake(o.name).toLowerCase()));
  const names = [
    ...list('kernels/wgsl').flatMap((f) =>
      [
        ...read(`kernels/wgsl/${f}`).matchAll(
          /@compute[^\n]*\n(?:@[^\n]*\n)*fn (\w+)\(|@compute @workgroup_size\([^)]*\)\s*fn (\w+)\(/g,
        ),
      ].map((m) => m[1] ?? m[2]!),
    ),
    ...list('kernels/cuda').flatMap((f) =>
      [...read(`kernels/cuda/${f}`).matchAll(/__global__ void\s+(?:__launch_bounds__\([^)]*\)\s+)?(\w+)\(/g)].map(
        (m) => m[1]!,
      ),
    ),
  ];
  assert.ok(names.length > 40, `found ${names.length} device kernels`);
  for (const n of names) assert.ok(ops.has(n) || shared.has(n), `device kernel ${n} is named after no op`);
});

test("the js and webgpu backends take each kernel from its family's file", () => {
  for (const [name, table] of [
    ['js', JS_KERNELS],
    ['webgpu', GPU_KERNELS],
  ] as const) {
    const all = new Set<string>();
    for (const f of FAMILIES) {
      for (const op of Object.keys(table[f])) {
        assert.is(OP_BY_NAME[op as OpName]?.family, f, `${name}: ${op} comes from ${f}.ts, not its family's file`);
        all.add(op);
      }
    }
    for (const o of OP_TABLE) assert.ok(all.has(o.name), `${name} has no kernel for ${o.name}`);
  }
});

test('every op family has a file of the same stem in every backend folder', () => {
  const folders: [string, string][] = [
    ['src/backends/js', '.ts'],
    ['src/backends/webgpu', '.ts'],
    ['kernels/wgsl', '.wgsl'],
    ['native/cpu', '.cc'],
    ['kernels/cuda', '.cu'],
  ];
  for (const [dir, ext] of folders) {
    const have = new Set(list(dir));
    for (const f of FAMILIES) assert.ok(have.has(f + ext), `${dir}/${f}${ext} is missing`);
  }
  for (const o of OP_TABLE) assert.ok((FAMILIES as readonly string[]).includes(o.family), o.name);
});

test('src/ has no runtime import cycle', () => {
  const g = importGraph();
  assert.ok(g.size > 50, 'the import graph covers src/');
  assert.ok(g.get('src/tensor/methods.ts')!.includes('src/tensor/tensor.ts'));
  assert.not.ok(
    g.get('src/tensor/tensor.ts')!.some((d) => d.startsWith('src/ops/')),
    'tensor.ts must not import the ops',
  );
  assert.equal(importCycles(), []);
});

test('every entry point of the package attaches the Tensor op methods', () => {
  // the package exports map and bin are the only ways in; each must load src/tensor/methods.ts first
  const g = importGraph();
  const pkg = JSON.parse(read('package.json')) as { exports: { '.': { import: string } }; bin: Record<string, string> };
  const entries = [pkg.exports['.'].import, ...Object.values(pkg.bin)].map((p) =>
    p.replace(/^\.\/dist\//, 'src/').replace(/\.js$/, '.ts'),
  );
  assert.equal(entries, ['src/index.ts', 'src/cli/main.ts']);
  for (const e of entries) {
    assert.ok(g.get(e)!.includes('src/tensor/methods.ts'), `${e} must import ./tensor/methods.js directly`);
    const text = read(e);
    const firstImport = text.split('\n').find((l) => /^import /.test(l) && !l.includes("'node:"));
    assert.match(firstImport ?? '', /tensor\/methods\.js/, `${e}: the methods import comes before any kiln import`);
  }
});

test('the cycle finder finds a planted cycle', () => {
  const g = new Map([
    ['a', ['b']],
    ['b', ['c']],
    ['c', ['a']],
    ['d', ['a']],
    ['e', ['e']],
  ]);
  assert.equal(
    importCycles(g)
      .map((c) => c.join(','))
      .sort(),
    ['a,b,c', 'e'],
  );
});

test('tests and benches make temporary directories with tempDir, which removes them when the process exits', () => {
  // every npm test used to leave its directories under /tmp (hundreds of MB after a few dozen runs)
  for (const dir of ['test', 'bench/soak', 'bench/dist', 'bench/serve'])
    for (const f of list(dir).filter((n) => n.endsWith('.ts') && !['helpers.ts', 'codebase.test.ts'].includes(n)))
      assert.not.match(read(`${dir}/${f}`), /mkdtemp/, `${dir}/${f}: use tempDir from test/helpers.ts`);
  // a process that makes two (one holding a file and a subdirectory) and exits leaves neither behind
  const code = `import { tempDir } from './test/helpers.ts';
import { mkdirSync, writeFileSync } from 'node:fs';
const a = tempDir('kiln-tempdir-a-'), b = tempDir('kiln-tempdir-b-');
mkdirSync(a + '/sub'); writeFileSync(a + '/sub/f.txt', 'x');
console.log(JSON.stringify([a, b]));`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    cwd: fileURLToPath(new URL('..', import.meta.url)),
    encoding: 'utf8',
    env: { ...process.env, KILN_WEBGPU: '0' },
  });
  assert.is(r.status, 0, r.stderr);
  const made = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as string[];
  assert.is(made.length, 2);
  for (const d of made) {
    assert.match(d, /kiln-tempdir-[ab]-/);
    assert.not.ok(existsSync(d), `${d} is left behind`);
  }
});

test.run();
