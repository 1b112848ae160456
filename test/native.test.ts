// The native build: the generated op table, each ISA's kernels against the js reference, and CUDA reporting.
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as kn from '../src/index.js';
import { addonOrigin, loadAddon } from '../src/backends/native/binding.js';
import { OP_IDS } from '../src/ops/table.js';
import { runKernel } from '../src/engine/dispatch.js';
import { allclose, assertClose, childJson, onBackend, rng, randomArray, tempDir } from './helpers.js';
import { emulateLaunches } from './emulate.js';

test('the addon loads and agrees with the op table', () => {
  const { addon, reason } = loadAddon();
  assert.ok(addon, reason);
  const info = addon!.info();
  assert.is(info.opCount, kn.OP_TABLE.length);
  for (const o of kn.OP_TABLE) assert.ok(addon!.supports(kn.OP_TABLE.indexOf(o)), `cpu has no kernel for ${o.name}`);
  assert.ok(info.supportedIsas.includes('scalar'));
  assert.ok(info.threads >= 1);
});

/**
 * Compiles test/native/<source> with the compiler the addon was built with (`flags` added; `prepare` may write
 * headers into the build folder, which is on the include path), runs it with the folder as its argument, checks
 * that it exited 0, and returns its stdout; `inspect` may read what it wrote there first. Null where there is no
 * compiler (a prebuilt addon).
 */
function runCheck(
  source: string,
  flags: string[],
  prepare: (dir: string) => void = () => {},
  inspect: (dir: string) => void = () => {},
): string | null {
  const cxx = process.env.CXX ?? 'g++';
  if (spawnSync(cxx, ['--version']).status !== 0) {
    assert.is(addonOrigin().from, 'prebuild', `${cxx} is missing, yet the addon was built from source`);
    return null;
  }
  const dir = tempDir('kiln-check-');
  try {
    prepare(dir);
    const exe = join(dir, 'check');
    const root = join(import.meta.dirname, '..');
    const include = [`-I${dir}`, `-I${join(root, 'native', 'include')}`];
    const src = join(root, 'test', 'native', source);
    const cc = spawnSync(cxx, ['-O1', '-Wall', '-Werror', ...flags, ...include, '-o', exe, src], { encoding: 'utf8' });
    assert.is(cc.status, 0, cc.stderr);
    const run = spawnSync(exe, [dir], { encoding: 'utf8', timeout: 240_000 });
    assert.is(run.status, 0, run.stdout + run.stderr);
    inspect(dir);
    return run.stdout;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('GEMM plans: strided products map onto column-major BLAS calls and K-major wgmma reads exactly (on the cpu)', () => {
  // kiln/gemm_plan.h is plain C++: gemm_plan_check.cc runs its random cases against the row-major definition, as
  // cuBLASLt calls and as the Hopper kernel's packed or in-place K-major operands
  const out = runCheck('gemm_plan_check.cc', ['-std=c++17', '-Wextra']);
  if (out !== null) {
    assert.match(out, /gemm plans: 4000 cases, \d{4} planned, \d+ folded into one product, 0 failures/);
    assert.match(out, /k-major plans: 4000 run, \d+ operands read in place K-major, \d+ MN-major/);
    assert.match(out, /grouped tile walks: 1170, every tile once/);
  }
});

// kernels/cuda/matmul_sm90.cu's Hopper path, from its packing kernel to run_gemm, as the emulations copy it
const SM90_PARTS =
  'kPackTile pack_kmajor kWgBM kTileGroup kAcc kWgBK kTileABytes kStageBytes kWgSmem smem_u32 smem_desc ' +
  'gemm_sm90 sm90_kernel operand_map run_gemm';
/** The definitions named in `parts` ([file, space-separated names]), in that order, with launches emulated. */
function emulatedSource(parts: [string, string][]): string {
  return emulateLaunches(
    parts.flatMap(([file, names]) => names.split(' ').map((n) => sourceDefinition(file, n))).join('\n'),
  );
}

test('the Hopper GEMM runs on a CPU emulation of TMA, mbarriers and wgmma and gives exact products', () => {
  // test/native/sm90_emu.h: shared memory as addresses, mbarrier phases and transaction bytes, TMA copies into
  // 128-byte-swizzled shared memory (landing at once, or late from another thread), wgmma reading descriptors
  // when a wait retires it. The kernel, its packing and its tensor maps are copied verbatim; the emulation stands
  // in for the inline PTX (ptxas checks that text when the CUDA library builds) and for the CUDA runtime.
  const kernels = emulatedSource([['kernels/cuda/matmul_sm90.cu', SM90_PARTS]]);
  assert.is(kernels.match(/emu_kernel\(/g)?.length, 2, 'run_gemm launches the packing kernel and the GEMM');
  const out = runCheck('wgmma_emu_check.cc', ['-std=c++20', '-pthread', '-Wno-unknown-pragmas'], (dir) =>
    writeFileSync(join(dir, 'sm90_emu_kernels.inc'), kernels),
  );
  if (out !== null) assert.match(out, /sm90 emulation: 20 checks, 0 failures/, out);
});

test('the CUDA matmul ops run end to end on the emulation: dispatch, tiles, split-K, bfloat16 C', () => {
  // matmul.cu's host path (k_matmul, k_matmul_bf16: validation, batch merging, the Hopper attempt first for a
  // bfloat16 C, float32 scratch only when another kernel must write C, the SIMT tile sizes and split-K, WMMA)
  // with every kernel it launches, over matmul_sm90.cu's wgmma_gemm; test/native/matmul_emu_check.cc sets the SM
  // count and whether the device is a Hopper, and checks exact products, the scratch taken and the refusals
  const kernels = emulatedSource([
    ['kernels/cuda/common.cuh', 'tile_step_4x4 FmaStep kViewDims View view_index kThreads blocks_for'],
    ['kernels/cuda/elementwise.cu', 'merge_views'],
    ['kernels/cuda/matmul_sm90.cu', `${SM90_PARTS} Readiness wgmma_gemm`],
    [
      'kernels/cuda/matmul.cu',
      'MmArgs batch_offset ld tile_pos a_rows_fast b_rows_fast matmul_simt pipelined_k kBig matmul_simt128 ' +
        'matmul_wmma matmul_wmma128 launch_wmma use_tf32 sum_splits kSplitTiles launch_simt round_bf16 MmOut ' +
        'matmul_into matmul k_matmul k_matmul_bf16',
    ],
  ]);
  const out = runCheck('matmul_emu_check.cc', ['-std=c++20', '-pthread', '-Wno-unknown-pragmas'], (dir) =>
    writeFileSync(join(dir, 'matmul_emu_kernels.inc'), kernels),
  );
  if (out !== null) assert.match(out, /matmul host path: 18 checks, 0 failures/, out);
});

// The text of one definition in a C++ or CUDA source (a path from the repository's root): the kernel, function,
// struct or enum called `name` (with its template line), or the line that declares a constant; from its start to
// its closing brace.
function sourceDefinition(file: string, name: string): string {
  const text = readFileSync(join(import.meta.dirname, '..', file), 'utf8');
  const line = new RegExp(`^(?:template <[^\\n]*>\\n)?constexpr [^\\n]*\\b${name}\\b[^\\n]*\\n`, 'm').exec(text);
  if (line) return line[0];
  // the first match that is a definition: a declaration (`...);` before any `{`) is skipped
  const re = new RegExp(
    `^(?:template <[^\\n]*>\\n)?(?:__global__|__host__|__device__|inline|static|struct|enum|bool|Status)[^;{]*?\\b${name}\\b(?:\\(| \\{)`,
    'gm',
  );
  let m = re.exec(text);
  while (m && /^[^{]*\)\s*;/.test(text.slice(m.index, text.indexOf('{', m.index)))) m = re.exec(text);
  assert.ok(m, `${name} not found in ${file}`);
  let depth = 0,
    i = text.indexOf('{', m.index);
  for (; i < text.length; i++) {
    if (text[i] === '{') depth++;
    else if (text[i] === '}' && --depth === 0) break;
  }
  return text.slice(m.index, text[i + 1] === ';' ? i + 2 : i + 1) + '\n';
}

test('CUDA kernels run on a CPU emulation of a thread block and match plain references (no GPU needed)', () => {
  // test/native/cuda_emu.h: a block's threads as std::threads, __syncthreads as a barrier; the kernels' text is
  // copied verbatim, so their tiling, index maths and barrier phases run here on real numbers. What each file
  // gives, in an order where every definition comes after what it uses:
  const parts: [string, string][] = [
    [
      'kernels/cuda/common.cuh',
      'tile_step_4x4 FmaStep kViewDims View view_index is_int_dt dt_size load_f sat_i32 load_i store_f store_i ' +
        'copy_elem report warp_all block_all SumOp warp_sum_all',
    ],
    [
      'kernels/cuda/matmul.cu',
      'MmArgs batch_offset ld tile_pos a_rows_fast b_rows_fast matmul_simt pipelined_k kBig matmul_simt128 ' +
        'matmul_wmma matmul_wmma128 round_bf16 ' +
        'sum_splits kAttWarps att_dot att_score att_row attention attention_backward_stats att_ds ' +
        'attention_backward_q attention_backward_kv',
    ],
    ['kernels/cuda/matmul_sm90.cu', 'kPackTile pack_kmajor'],
    [
      'kernels/cuda/conv.cu',
      'kConvTile conv_gemm conv2d_backward_weight kConvWBlocks conv_wgrad_chunks window_count window_div ' +
        'window_max pool2d pool2d_argmax first_out pool2d_backward',
    ],
    [
      'kernels/cuda/reduce.cu',
      'RedOp combine Combine fold_strided reduce_rows reduce_cols arg_reduce arg_wins arg_take kColPhases arg_rows arg_cols ' +
        'RowExp warp_row_exp kRowsPerBlock softmax softmax_cols CeArgs ' +
        'softmax_cross_entropy row_hash ' +
        'nan_column_stats order_key key_value nan_quantile kLnWarps ln_row_stats layer_norm layer_norm_backward ' +
        'layer_norm_backward_params kColChunk ln_param_chunks',
    ],
    ['kernels/cuda/movement.cu', 'place gather scatter_keys scatter_starts scatter_sum'],
    [
      'kernels/cuda/quant.cu',
      'quantize_rows weight_word dequant_dot kInt8FewRows qlinear_int8_rows weight_sums kQTile qlinear_int8 ' +
        'kQConvTile qconv_gemm qconv_pool dequant_int4 kInt4FusedRows qlinear_int4 add_bias',
    ],
    [
      'kernels/cuda/optim.cu',
      'AdamArgs adam_elem adam_step SgdArgs sgd_elem sgd_step kMultiMax multi_part MultiArgs step_multi multi_blocks',
    ],
    ['kernels/cuda/random.cu', 'philox RngArgs random'],
    ['kernels/cuda/elementwise.cu', 'MapArgs gelu gelu_grad float_op int_op compare map map_dense'],
    ['native/cpu/optim.cc', 'adam_range sgd_range'], // the cpu backend's loops, the optimizers' reference
  ];
  const kernels = parts.flatMap(([file, names]) => names.split(' ').map((n) => sourceDefinition(file, n))).join('\n');
  // the random kernel's draws (written by the check) against the cpu backend's for the same Philox key and counter
  const randomDraws = (dir: string): void => {
    const rng = [0x12345678, 0x9abcdef0, 5, 7]; // key0, key1, counter (low, high words)
    for (const [op, file, n, a, b, dtype] of [
      ['randomUniform', 'uniform', 1001, -2, 3, 'float32'],
      ['randomNormal', 'normal', 1003, 0.5, 2, 'float32'],
      ['randomInt', 'int', 999, -5, 1000, 'int32'],
    ] as const) {
      const raw = readFileSync(join(dir, `random_${file}.bin`));
      const got =
        dtype === 'int32'
          ? new Int32Array(raw.buffer, raw.byteOffset, n)
          : new Float32Array(raw.buffer, raw.byteOffset, n);
      const want = onBackend('cpu', () => kn.tidy(() => runKernel(op, [], [...rng, a, b], [n], dtype).toArray()));
      let worst = 0;
      for (let i = 0; i < n; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!) / (1 + Math.abs(want[i]!)));
      // uniform and int draws are exact; normal ones go through double log/sin/cos, which libraries may round
      // an ulp apart, so a float can differ in its last bit
      assert.ok(op === 'randomNormal' ? worst < 3e-7 : worst === 0, `${op}: emulated CUDA vs cpu, worst ${worst}`);
    }
  };
  // the elementwise map kernels' results (written by the check) against the cpu backend's for the same inputs:
  // bit for bit, except the transcendental functions, which each library rounds its own way (a few ulps)
  const mapResults = (dir: string): void => {
    const R = 40,
      C = 25;
    const xs = Float32Array.from({ length: R * C }, (_, i) => (((i * 7919) % 2001) - 1000) / 128);
    const ys = Float32Array.from({ length: C }, (_, j) => (((j * 104729) % 1999) - 999) / 256);
    onBackend('cpu', () =>
      kn.tidy(() => {
        const x = kn.tensor(xs, [R, C]),
          y = kn.tensor(ys, [C]),
          z = x.mul(37);
        const cond = kn.tensor(
          Uint8Array.from({ length: R * C }, (_, i) => (i % 3 === 0 ? 1 : 0)),
          [R, C],
          {
            dtype: 'bool',
          },
        );
        const ulps = 2e-6;
        const cases: [string, kn.Tensor, number][] = [
          ['neg', x.neg(), 0],
          ['abs', x.abs(), 0],
          ['sign', x.sign(), 0],
          ['relu', x.relu(), 0],
          ['exp', x.exp(), ulps],
          ['log', x.log(), ulps],
          ['sqrt', x.sqrt(), 0],
          ['tanh', x.tanh(), ulps],
          ['sigmoid', x.sigmoid(), ulps],
          ['gelu', x.gelu(), ulps],
          ['silu', x.silu(), ulps],
          ['exp_transposed', x.transpose(0, 1).exp(), ulps],
          ['add', x.add(y), 0],
          ['sub', x.sub(y), 0],
          ['mul', x.mul(y), 0],
          ['div', x.div(y), 0],
          ['pow', x.pow(y), ulps],
          ['maximum', x.maximum(y), 0],
          ['minimum', x.minimum(y), 0],
          ['lt', x.lt(y).cast('float32'), 0],
          ['eq', x.eq(y).cast('float32'), 0],
          ['ge', x.ge(y).cast('float32'), 0],
          ['clamp', x.clamp(-1.5, 2.25), 0],
          ['where', kn.where(cond, x, y), 0],
          ...(['float16', 'bfloat16', 'int8', 'uint8', 'bool', 'int32'] as const).map(
            (d): [string, kn.Tensor, number] => [`cast_${d}`, z.cast(d).cast('float32'), 0],
          ),
        ];
        for (const [name, t, tol] of cases) {
          const raw = readFileSync(join(dir, `map_${name}.bin`));
          const got = new Float32Array(raw.buffer, raw.byteOffset, R * C);
          const want = t.toArray() as Float32Array;
          let bad = 0;
          for (let i = 0; i < R * C; i++) {
            const a = got[i]!,
              b = want[i]!;
            const same = Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b));
            if (!same && !(tol > 0 && Math.abs(a - b) <= tol * Math.abs(b))) bad++;
          }
          assert.is(bad, 0, `map ${name}: ${bad} of ${R * C} emulated CUDA results differ from cpu's`);
        }
      }),
    );
  };
  // the other kernels' results against the same ops on the cpu backend (sums in another order: to rounding)
  const miscResults = (dir: string): void => {
    const R = 40,
      C = 25;
    const xs = Float32Array.from({ length: R * C }, (_, i) => (((i * 7919) % 2001) - 1000) / 128);
    const ys = Float32Array.from({ length: C }, (_, j) => (((j * 104729) % 1999) - 999) / 256);
    const ts = Float32Array.from({ length: 3300 }, (_, i) => ((((i + 5) * 7919) % 2001) - 1000) / 128);
    const tsNaN = ts.map((v, i) => ([1350, 1360, 23, 26].includes(i) ? NaN : i === 2430 ? 1e9 : v));
    const gs = Float32Array.from({ length: 260 }, (_, j) => (((j * 104729) % 1999) - 999) / 256);
    onBackend('cpu', () =>
      kn.tidy(() => {
        const x = kn.tensor(xs, [R, C]),
          y = kn.tensor(ys, [C]),
          x4 = x.reshape([2, 2, 10, 25]),
          gy = kn.tensor(gs, [2, 2, 5, 13]);
        const pool = { stride: 2, padding: 1 };
        const idx = kn.tensor([3, 0, 39, 3, 12, 5, 20], [7], { dtype: 'int32' });
        const cases: [string, kn.Tensor, number][] = [
          ['sum0', x.sum(0), 1e-6],
          ['sum0_chunks', kn.tensor(ts, [1100, 3]).sum(0), 1e-6],
          ['argmax0', x.argmax(0), 0],
          ['argmax_rows', kn.tensor(tsNaN, [3, 1100]).argmax(1), 0],
          ['argmin_rows', kn.tensor(ts, [3, 1100]).argmin(1), 0],
          ['argmin_cols', kn.tensor(tsNaN, [1100, 3]).argmin(0), 0],
          ['argmax_cols', kn.tensor(ts, [1100, 3]).argmax(0), 0],
          ['softmax0', x.softmax(0), 2e-6],
          ['softmax0_cols', x.softmax(0), 2e-6],
          ['logsoftmax1_cols', x.reshape([2, 5, 100]).logSoftmax(1), 2e-6],
          ['rowhash', kn.rowHash(x), 0],
          ['maxpool', kn.maxPool2d(x4, 3, pool), 0],
          ['maxpool_grad', kn.grad((t) => kn.maxPool2d(t, 3, pool).mul(gy).sum())(x4) as kn.Tensor, 1e-6],
          ['avgpool', kn.avgPool2d(x4, 3, { ...pool, countIncludePad: false }), 1e-6],
          [
            'avgpool_grad',
            kn.grad((t) =>
              kn
                .avgPool2d(t, 3, { ...pool, countIncludePad: false })
                .mul(gy)
                .sum(),
            )(x4) as kn.Tensor,
            1e-6,
          ],
          ['gather0', x.gather(idx, 0), 0],
          ['concat', kn.concat([x.transpose(0, 1), y.reshape([C, 1])], 1), 0],
          ['add_bias', x.add(y), 0],
        ];
        for (const [name, t, tol] of cases) {
          const raw = readFileSync(join(dir, `misc_${name}.bin`));
          const want = t.toArray();
          const got =
            want instanceof Int32Array
              ? new Int32Array(raw.buffer, raw.byteOffset, want.length)
              : new Float32Array(raw.buffer, raw.byteOffset, want.length);
          assert.is(raw.length, 4 * want.length, `${name}: ${raw.length / 4} values, want ${want.length}`);
          let bad = 0;
          for (let i = 0; i < want.length; i++) {
            const a = got[i]!,
              b = Number(want[i]!);
            if (!(a === b || Math.abs(a - b) <= tol * (1 + Math.abs(b)))) bad++;
          }
          assert.is(bad, 0, `${name}: ${bad} of ${want.length} emulated CUDA results differ from cpu's`);
        }
      }),
    );
  };
  const out = runCheck(
    'cuda_emu_check.cc', // -Wno-unknown-pragmas: nvcc's #pragma unroll
    ['-std=c++20', '-pthread', '-Wno-unknown-pragmas'],
    (dir) => writeFileSync(join(dir, 'cuda_emu_kernels.inc'), kernels),
    (dir) => {
      randomDraws(dir);
      mapResults(dir);
      miscResults(dir);
    },
  );
  if (out !== null) assert.match(out, /cuda emulation: 70 checks, 0 failures/, out);
});

test('CUDA: built where nvcc exists, a kernel for every op, and a clear reason when there is no device', () => {
  const { addon } = loadAddon();
  const c = addon!.info().cuda;
  const nvcc = spawnSync('nvcc', ['--version'], { encoding: 'utf8' });
  if (nvcc.status === 0 && !process.env.KILN_ADDON_PATH)
    assert.ok(c.compiled, 'nvcc is installed, so the addon must be built with CUDA');
  if (c.compiled) {
    const missing = kn.OP_TABLE.filter((o) => !addon!.cudaSupports(kn.OP_TABLE.indexOf(o))).map((o) => o.name);
    assert.equal(missing, [], `ops without a CUDA kernel: ${missing.join(', ')}`);
  }
  if (c.available) return; // a real GPU: the conformance suite runs every case on cuda
  assert.match(c.reason, /no CUDA device|without its CUDA library|could not be opened/);
  assert.not.ok(kn.backends().includes('cuda'));
  assert.throws(
    () => addon!.cudaAlloc(0, 16),
    (e: Error & { code?: string }) => e.code === 'KILN_BACKEND' && /not available|without CUDA/.test(e.message),
  );
  assert.throws(
    () => kn.setBackend('cuda'),
    (e: Error) => e instanceof kn.BackendError && /backend 'cuda' is not available/.test(e.message),
  );
});

// Every ISA path on odd sizes and non-contiguous inputs, forced per call.
const { addon } = loadAddon();
const isas = addon ? addon.info().supportedIsas : [];
for (const isa of isas) {
  test(`ISA ${isa}: matmul, elementwise, reductions, conv match js on odd sizes`, () => {
    const prev = addon!.info().isa;
    addon!.setIsa(isa);
    try {
      // rows past the last whole strip of 12 (AVX-512) or 6: 7, 31 and 257 leave 5-8 rows, 40 leaves 4 on
      // both, 33 leaves 9 (or 3): each size of the last strip's kernel
      for (const n of [1, 7, 31, 33, 40, 257]) {
        const r = rng(n);
        const a = randomArray(r, n * 9),
          bb = randomArray(r, 9 * ((n % 13) + 1)),
          v = randomArray(r, n * 3, -10, 10);
        const calc = (b: kn.BackendName): Float64Array[] =>
          onBackend(b, () =>
            kn.tidy(() => {
              const A = kn.tensor(a, [n, 9]),
                B = kn.tensor(bb, [9, (n % 13) + 1]),
                V = kn.tensor(v, [3, n]).transpose();
              return [
                A.matmul(B).toFloat64Array(),
                B.transpose().matmul(A.transpose()).toFloat64Array(),
                V.exp().add(V.tanh()).mul(V.sigmoid()).add(V.gelu()).toFloat64Array(),
                V.abs().add(0.1).log().toFloat64Array(),
                V.sum(0).toFloat64Array(),
                V.softmax(0).toFloat64Array(),
                V.max(1).toFloat64Array(),
                kn
                  .conv2d(A.reshape([1, 1, n, 9]), kn.tensor(bb.slice(0, 9), [1, 1, 3, 3]), null, { padding: 1 })
                  .toFloat64Array(),
              ];
            }),
          );
        const ref = calc('js'),
          got = calc('cpu');
        ref.forEach((rv, i) => {
          const res = allclose(
            got[i]!,
            rv.map((x) => Math.fround(x)),
            1e-4,
            1e-4,
          );
          assert.ok(res.ok, `${isa} n=${n} output ${i}: ${res.message}`);
        });
      }
    } finally {
      addon!.setIsa(prev);
    }
  });
}

for (const isa of isas) {
  test(`ISA ${isa}: few-row matmul (the unpacked path, M <= 8) matches js for every operand layout`, () => {
    const prev = addon!.info().isa;
    addon!.setIsa(isa);
    try {
      let seed = 7;
      for (const M of [1, 2, 3, 4, 5, 8, 9]) {
        // K = 601 runs as two K blocks on the packed path (M = 9)
        for (const K of [1, 7, 31, 33, 257, 601]) {
          for (const N of [1, 7, 33, 257]) {
            const r = rng(seed++);
            const a = randomArray(r, M * K),
              b = randomArray(r, K * N);
            const calc = (be: kn.BackendName): Float64Array[] =>
              onBackend(be, () =>
                kn.tidy(() => {
                  const A = kn.tensor(a, [M, K]),
                    At = kn.tensor(a, [K, M]).transpose();
                  const B = kn.tensor(b, [K, N]),
                    Bt = kn.tensor(b, [N, K]).transpose();
                  const A3 = kn.tensor(a, [1, M, K]).expand([2, M, K]);
                  return [A.matmul(B), A.matmul(Bt), At.matmul(B), At.matmul(Bt), A3.matmul(Bt), A3.matmul(B)].map(
                    (t) => t.toFloat64Array(),
                  );
                }),
              );
            const ref = calc('js'),
              got = calc('cpu');
            ref.forEach((rv, i) => {
              const res = allclose(got[i]!, rv, 1e-4, 1e-4);
              assert.ok(res.ok, `${isa} M=${M} K=${K} N=${N} layout ${i}: ${res.message}`);
            });
          }
        }
      }
    } finally {
      addon!.setIsa(prev);
    }
  });
}

test('both bf16 GEMM paths (packed vdpbf16ps-layout kernel, widening to float32) match js on every ISA and 1-3 threads', () => {
  const script = `
    const kn = await import('./src/index.ts');
    const { loadAddon } = await import('./src/backends/native/binding.ts');
    const { addon } = loadAddon();
    const bad = [];
    // 1-3 threads: 200x1100x40 cuts rows (two K blocks), 40x1100x300 columns, bit for bit as on one thread
    for (const isa of addon.info().supportedIsas) {
      addon.setIsa(isa);
      for (const [M, K, N] of [[1, 3, 2], [13, 65, 37], [40, 1100, 33], [200, 1100, 40], [40, 1100, 300]]) {
        kn.seed(M + K + N);
        const a = kn.randn([M, K]).cast('bfloat16'), b = kn.randn([N, K]).cast('bfloat16').transpose();
        kn.setBackend('js');
        const want = a.to('js').matmul(b.to('js')).cast('float32').toArray();
        kn.setBackend('cpu');
        let first = null;
        for (const t of [1, 2, 3]) {
          addon.setThreads(t);
          const got = a.matmul(b).cast('float32').toArray();
          first = first ?? got;
          if (got.some((v, i) => !Object.is(v, first[i]))) bad.push(isa + ' ' + M + 'x' + K + 'x' + N + ' differs on ' + t + ' threads');
          for (let i = 0; i < want.length; i++) if (!(Math.abs(got[i] - want[i]) <= 0.02 * Math.max(1, Math.abs(want[i])))) { bad.push(isa + ' ' + M + 'x' + K + 'x' + N + ' [' + i + '] ' + got[i] + ' vs ' + want[i]); break; }
        }
      }
    }
    console.log(JSON.stringify(bad));`;
  for (const mode of ['packed', 'widen']) {
    const { value, out } = childJson<string[]>(script, { KILN_BF16_GEMM: mode });
    assert.equal(value, [], `${mode}: ${out}`);
  }
});

test('both conv methods (im2col + GEMM, direct) match js on every ISA: forward and both gradients', () => {
  // each shape runs under KILN_CONV_ALGO=im2col and =direct (the direct kernels take stride 1 only); N = 1 splits
  // one image's tiles over threads, N = 3 runs images in parallel; a padding of 2^19 with dilation 2^20 must not
  // pad a copy to terabytes (the direct method declines it); the last input holds an infinity, which the
  // direct weight gradient must leave to im2col (its spare positions would turn 0 * inf into NaN)
  const script = `
    const kn = await import('./src/index.ts');
    const { loadAddon } = await import('./src/backends/native/binding.ts');
    const { addon } = loadAddon();
    const shapes = [
      [[1, 16, 12, 13], [32, 16, 3, 3], { padding: 1 }],
      [[3, 3, 6, 5], [4, 3, 3, 3], { padding: 1 }],
      [[2, 1, 28, 28], [6, 1, 5, 5], { padding: 2 }],
      [[3, 6, 14, 14], [16, 6, 5, 5], {}],
      [[2, 4, 9, 11], [6, 2, 3, 3], { padding: [1, 2], dilation: [2, 1], groups: 2 }],
      [[1, 5, 7, 7], [3, 5, 3, 2], { padding: [0, 1] }],
      [[3, 3, 4, 4], [7, 3, 4, 4], { padding: 3 }],
      [[2, 2, 5, 6], [1, 2, 3, 3], { padding: [2, 3] }],
      [[1, 7, 3, 70], [9, 7, 3, 3], {}],
      [[2, 4, 6, 6], [5, 4, 1, 1], {}],
      [[2, 3, 7, 6], [4, 3, 3, 3], { stride: 2, padding: 1 }],
      [[1, 1, 1, 1], [1, 1, 2, 2], { dilation: 2 ** 20, padding: 2 ** 19 }],
      [[2, 3, 6, 6], [4, 3, 3, 3], { padding: 1, inf: true }],
    ];
    const same = (a, b) => a === b || (Number.isNaN(a) && Number.isNaN(b)) ||
      Math.abs(a - b) <= 1e-4 * Math.max(1, Math.abs(b));
    const bad = [];
    for (const isa of addon.info().supportedIsas) {
      addon.setIsa(isa);
      for (const [xs, ws, spec] of shapes) {
        const { inf, ...o } = spec; // inf marks the case, it is no conv2d option
        kn.seed(xs[0] * 100 + ws[0]);
        const xv = kn.randn(xs).toArray();
        if (inf) xv[6] = Infinity; // row 1, column 0: the spare positions of row 0 read it
        const x = kn.tensor(xv, xs), w = kn.randn(ws), u = kn.randn(kn.conv2d(x, w, null, o).shape);
        const run = (x, w, u) => {
          const f = (a, b) => kn.conv2d(a, b, null, o).mul(u).sum();
          return [kn.conv2d(x, w, null, o), kn.grad((t) => f(t, w))(x), kn.grad((t) => f(x, t))(w)].map((t) => t.toArray());
        };
        const got = run(x, w, u);
        kn.setBackend('js');
        const want = run(x.to('js'), w.to('js'), u.to('js'));
        kn.setBackend('cpu');
        ['forward', 'input gradient', 'weight gradient'].forEach((what, k) => {
          const i = want[k].findIndex((v, i) => !same(got[k][i], v));
          if (i >= 0) bad.push(isa + ' ' + JSON.stringify([xs, ws, o]) + ' ' + what + ' [' + i + '] ' + got[k][i] + ' vs ' + want[k][i]);
        });
      }
    }
    console.log(JSON.stringify(bad));`;
  for (const algo of ['im2col', 'direct']) {
    const { value, out } = childJson<string[]>(script, { KILN_CONV_ALGO: algo });
    assert.equal(value, [], `${algo}: ${out}`);
  }
});

test('2x2 max pooling in blocks of 16, 8 and 4 windows matches js on every ISA, with ties and NaNs', () => {
  const { addon } = loadAddon();
  const prev = addon!.info().isa;
  try {
    for (const isa of addon!.info().supportedIsas) {
      addon!.setIsa(isa);
      for (const W of [8, 9, 16, 30, 58, 70]) {
        const r = rng(W);
        // rounded values: many ties; a few NaNs
        const xs = Array.from({ length: 2 * 3 * 5 * W }, (_, i) => (i % 37 === 5 ? NaN : Math.round(r() * 4)));
        const x = kn.tensor(xs, [2, 3, 5, W]);
        const u = kn.tensor(
          Array.from({ length: 2 * 3 * 2 * Math.floor(W / 2) }, () => r()),
          [2, 3, 2, Math.floor(W / 2)],
        );
        const run = (t: kn.Tensor, g: kn.Tensor): number[][] => [
          Array.from(kn.maxPool2d(t, 2).toArray(), Number),
          Array.from((kn.grad((v: kn.Tensor) => kn.maxPool2d(v, 2).mul(g).sum())(t) as kn.Tensor).toArray(), Number),
        ];
        const got = run(x, u);
        const want = onBackend('js', () => run(x.to('js'), u.to('js')));
        for (let k = 0; k < 2; k++)
          for (let i = 0; i < want[k]!.length; i++) {
            const a = got[k]![i]!,
              b = want[k]![i]!;
            assert.ok(Object.is(a, b) || a === b, `${isa} W=${W} ${k ? 'backward' : 'forward'} [${i}]: ${a} vs ${b}`);
          }
      }
    }
  } finally {
    addon!.setIsa(prev);
  }
});

test('KILN_CPU_ISA is honoured and an impossible one is reported, not crashed on', () => {
  const script =
    "import('./src/backends/native/binding.ts').then(m => { const r = m.loadAddon(); console.log(JSON.stringify({ ok: !!r.addon, isa: r.addon?.info().isa, reason: r.reason })); })";
  const run = (isa: string): { ok: boolean; isa?: string; reason: string } =>
    childJson<{ ok: boolean; isa?: string; reason: string }>(script, { KILN_CPU_ISA: isa }, false).value;
  const s = run('scalar');
  assert.ok(s.ok && s.isa === 'scalar');
  const bad = run('avx9000');
  assert.not.ok(bad.ok);
  assert.match(bad.reason, /not one of avx512, avx2, scalar/);
});

test('concurrent use from worker threads: correct results, no crash', async () => {
  const { Worker } = await import('node:worker_threads');
  const { addonPath } = await import('../src/backends/native/binding.js');
  const opExp = kn.OP_TABLE.findIndex((o) => o.name === 'exp');
  const opMatmul = kn.OP_TABLE.findIndex((o) => o.name === 'matmul');
  const code = `
    const { parentPort, workerData } = require('node:worker_threads');
    const a = require(workerData.path);
    let bad = 0;
    for (let it = 0; it < 300; it++) {
      const n = 64;
      const x = a.alloc(0, n * n), y = a.alloc(0, n * n), z = a.alloc(0, n * n);
      const v = new Float32Array(n * n).fill(0.5);
      a.write(x, v, 0);
      a.run(workerData.exp, new Float64Array([1, x, 0, 2, 0, n, n, n, 1]), new Float64Array([y, 0, 2, n, n]), new Float64Array());
      a.run(workerData.mm, new Float64Array([2, x, 0, 2, 0, n, n, n, 1, y, 0, 2, 0, n, n, n, 1]), new Float64Array([z, 0, 2, n, n]), new Float64Array());
      const o = new Float32Array(n * n);
      a.read(z, o, 0);
      if (Math.abs(o[0] - n * 0.5 * Math.exp(0.5)) > 1e-3) bad++;
      a.free(x); a.free(y); a.free(z);
    }
    parentPort.postMessage(bad);
  `;
  const results = await Promise.all(
    [0, 1, 2].map(
      () =>
        new Promise<number>((resolve, reject) => {
          const w = new Worker(code, {
            eval: true,
            workerData: { path: process.env.KILN_ADDON_PATH ?? addonPath(), exp: opExp, mm: opMatmul },
          });
          w.on('message', resolve);
          w.on('error', reject);
        }),
    ),
  );
  assert.equal(results, [0, 0, 0]);
});

test('oversized conv/pool attributes are rejected by the addon', () => {
  onBackend('cpu', () =>
    kn.tidy(() => {
      assert.throws(
        () => kn.conv2d(kn.ones([1, 1, 4, 4]), kn.ones([1, 1, 3, 3]), null, { stride: 2 ** 40 }),
        (e: Error) => e instanceof kn.ArgumentError && /2\^30/.test(e.message),
      );
      assert.throws(
        () => kn.maxPool2d(kn.ones([1, 1, 4, 4]), 2, { stride: 2 ** 40 }),
        (e: Error) => e instanceof kn.ArgumentError && /2\^30/.test(e.message),
      );
    }),
  );
});

test('the buffer cache reuses freed memory, never leaks values, and can be emptied', () => {
  const { addon } = loadAddon();
  onBackend('cpu', () => {
    kn.emptyCache();
    const s0 = addon!.stats();
    assert.is(s0.cachedBytes, 0);
    const a = kn.full([100000], 3);
    const bytes = addon!.stats().bytes;
    a.dispose();
    assert.ok(addon!.stats().cachedBytes >= 400000, 'freed buffer is cached');
    assert.is(addon!.stats().bytes, bytes - 400000, 'live bytes drop on dispose');
    // kn.memory() reports what the cache holds apart from live bytes
    const m = kn.memory();
    assert.is(m.backends.cpu!.cachedBytes, addon!.stats().cachedBytes + addon!.stats().packedBytes);
    assert.ok(m.cachedBytes >= m.backends.cpu!.cachedBytes);
    const hits = addon!.stats().cacheHits;
    const b = kn.arange(100000); // same size class: reuses a's memory
    assert.is(addon!.stats().cacheHits, hits + 1);
    const v = b.toArray();
    assert.is(v[0], 0);
    assert.is(v[99999], 99999);
    b.dispose();
    kn.emptyCache();
    assert.is(addon!.stats().cachedBytes, 0);
    assert.is(kn.memory().backends.cpu!.cachedBytes, 0);
  });
});

test('int8 weights are packed once, repacked when they change, and freed with them', () => {
  const { addon } = loadAddon();
  const r = rng(41);
  const int8 = (n: number): Int8Array => Int8Array.from(randomArray(r, n, -127, 127), (v) => Math.round(v));
  const w1 = int8(40 * 70),
    w2 = int8(40 * 70),
    wc = int8(12 * 5 * 9),
    x = randomArray(r, 20 * 70),
    xc = randomArray(r, 2 * 5 * 9 * 9);
  const scale = Float32Array.from({ length: 40 }, (_, i) => 0.01 + 0.001 * i);
  // qlinearInt8 (x [20, 70] takes the packed GEMM, past the few-row path) and qconv2dInt8 on a backend
  const run = (b: kn.BackendName, w: Int8Array, conv = false): Float32Array =>
    onBackend(b, () =>
      kn.tidy(() =>
        (conv
          ? kn.qconv2dInt8(
              kn.tensor(xc, [2, 5, 9, 9]),
              kn.tensor(w, [12, 5, 3, 3]),
              kn.tensor(scale.slice(0, 12)),
              null,
              {
                padding: 1,
              },
            )
          : kn.qlinearInt8(kn.tensor(x, [20, 70]), kn.tensor(w, [40, 70]), kn.tensor(scale), null)
        ).toArray(),
      ),
    ) as Float32Array;
  onBackend('cpu', () => {
    kn.emptyCache();
    const s0 = addon!.stats();
    assert.is(s0.packedEntries, 0);
    const W = kn.tensor(w1, [40, 70]),
      X = kn.tensor(x, [20, 70]),
      S = kn.tensor(scale);
    const y1 = kn.qlinearInt8(X, W, S, null);
    const s1 = addon!.stats();
    assert.is(s1.packedMisses, s0.packedMisses + 1, 'the first call packs W');
    assert.is(s1.packedEntries, 1);
    assert.ok(s1.packedBytes >= 40 * 72, 'the packed panels are kept');
    const y2 = kn.qlinearInt8(X, W, S, null);
    const s2 = addon!.stats();
    assert.is(s2.packedHits, s1.packedHits + 1, 'the second call reuses them');
    assert.is(s2.packedMisses, s1.packedMisses);
    assert.equal(y2.toArray(), y1.toArray());
    assertClose(y1.toArray(), run('js', w1), 1e-4, 1e-5);
    // new contents in the same buffer: repacked, never the stale copy
    W.assign(kn.tensor(w2, [40, 70]));
    const y3 = kn.qlinearInt8(X, W, S, null);
    assert.is(addon!.stats().packedMisses, s2.packedMisses + 1, 'a written weight is packed again');
    assert.is(addon!.stats().packedEntries, 1, 'and the copy of its old values is dropped');
    assertClose(y3.toArray(), run('js', w2), 1e-4, 1e-5);
    // two weights that are views of one buffer at different offsets: one copy each
    const both = kn.tensor(Int8Array.from([...w1, ...w2]), [80, 70]);
    const [va, vb] = [kn.slice(both, [0, 0], [40, 70]), kn.slice(both, [40, 0], [80, 70])];
    assertClose(kn.qlinearInt8(X, va, S, null).toArray(), run('js', w1), 1e-4, 1e-5);
    assertClose(kn.qlinearInt8(X, vb, S, null).toArray(), run('js', w2), 1e-4, 1e-5);
    assertClose(kn.qlinearInt8(X, va, S, null).toArray(), run('js', w1), 1e-4, 1e-5);
    // the convolution's packed weights, likewise
    const [entries, misses] = [addon!.stats().packedEntries, addon!.stats().packedMisses];
    const c1 = run('cpu', wc, true);
    assert.is(addon!.stats().packedMisses, misses + 1);
    assert.is(addon!.stats().packedEntries, entries, 'tidy disposed the weight, and its copy with it');
    assert.equal(run('cpu', wc, true), c1);
    assert.is(addon!.stats().packedMisses, misses + 2, 'a new tensor with the same values is a new buffer');
    const hits = addon!.stats().packedHits;
    const Wc = kn.tensor(wc, [12, 5, 3, 3]),
      Xc = kn.tensor(xc, [2, 5, 9, 9]),
      Sc = kn.tensor(scale.slice(0, 12));
    kn.qconv2dInt8(Xc, Wc, Sc, null, { padding: 1 });
    kn.qconv2dInt8(Xc, Wc, Sc, null, { padding: 1 });
    assert.is(addon!.stats().packedHits, hits + 1, 'the second convolution reuses the packed taps');
    assertClose(c1, run('js', wc, true), 1e-4, 1e-5);
    // disposing a weight drops its copies; emptyCache drops them all
    const before = addon!.stats().packedEntries;
    W.dispose();
    assert.is(addon!.stats().packedEntries, before - 1);
    kn.emptyCache();
    assert.equal([addon!.stats().packedEntries, addon!.stats().packedBytes], [0, 0]);
    [X, S, y1, y2, y3, both, va, vb, Wc, Xc, Sc].forEach((t) => t.dispose());
  });
});

test('float32 weights used again unchanged are packed on their second use; training steps never pack', () => {
  const { addon } = loadAddon();
  const r = rng(43);
  // K = 600 runs as two K blocks and N = 4100 as two N blocks: the packed copy's block offsets are exercised
  const [M, K, N] = [20, 600, 4100];
  const x = randomArray(r, M * K),
    w1 = randomArray(r, N * K),
    w2 = randomArray(r, N * K);
  const ref = (w: Float32Array): Float32Array =>
    onBackend('js', () =>
      kn.tidy(() =>
        kn
          .tensor(x, [M, K])
          .matmul(kn.tensor(w, [N, K]).transpose())
          .toArray(),
      ),
    ) as Float32Array;
  const [e1, e2] = [ref(w1), ref(w2)];
  onBackend('cpu', () => {
    kn.emptyCache();
    const X = kn.tensor(x, [M, K]),
      W = kn.tensor(w1, [N, K]);
    const hits0 = addon!.stats().packedHits;
    const stats = (): number[] => {
      const s = addon!.stats();
      return [s.packedEntries, s.packedHits - hits0];
    };
    const y = (): Float32Array => kn.tidy(() => X.matmul(W.transpose()).toArray() as Float32Array);
    assertClose(y(), e1, 1e-3, 1e-4);
    assert.equal(stats(), [0, 0], 'the first use only notes the weight');
    assertClose(y(), e1, 1e-3, 1e-4);
    assert.equal(stats(), [1, 0], 'the second packs it');
    assert.ok(kn.memory().backends.cpu!.cachedBytes >= N * K * 4, 'kn.memory() counts the packed copy');
    assertClose(y(), e1, 1e-3, 1e-4);
    assert.equal(stats(), [1, 1], 'the third reuses it');
    W.assign(kn.tensor(w2, [N, K]));
    assertClose(y(), e2, 1e-3, 1e-4);
    assert.equal(stats(), [0, 1], 'new values: the old copy is dropped, never used');
    assertClose(y(), e2, 1e-3, 1e-4);
    assertClose(y(), e2, 1e-3, 1e-4);
    assert.equal(stats(), [1, 2]);
    // the budget: 0 turns it off (and drops what it held), the previous value comes back
    const prev = addon!.setPackCacheLimit(0);
    assert.is(prev, 256);
    assertClose(y(), e2, 1e-3, 1e-4);
    assertClose(y(), e2, 1e-3, 1e-4);
    assert.equal(stats(), [0, 2]);
    assert.is(addon!.setPackCacheLimit(prev), 0);
    assert.throws(() => addon!.setPackCacheLimit(-1), /pack cache budget/);
    X.dispose();
    W.dispose();
    // a training step writes the weights before their next use: over fresh batches nothing is ever packed (a
    // batch fed again unchanged would be, as x is an operand of the weight gradient)
    kn.seed(3);
    const net = new kn.nn.Sequential(new kn.nn.Linear(30, 40), new kn.nn.ReLU(), new kn.nn.Linear(40, 5));
    const opt = new kn.optim.Adam(net.parameters());
    const yb = kn.tensor(
      Int32Array.from({ length: 16 }, (_, i) => i % 5),
      [16],
    );
    const before = addon!.stats();
    for (let step = 0; step < 4; step++)
      kn.tidy(() => {
        opt.zeroGrad();
        kn.nn.loss.crossEntropy(net.call(kn.randn([16, 30])), yb).backward();
        opt.step();
      });
    const after = addon!.stats();
    assert.equal([after.packedEntries, after.packedHits], [before.packedEntries, before.packedHits]);
    yb.dispose();
    opt.dispose();
    net.dispose();
  });
});

// whether two results are the same bits
const sameBits = (x: Float32Array, y: Float32Array): boolean => x.every((v, j) => Object.is(v, y[j]));

test('GEMM gives the same bits on 1 to 4 threads and matches js: parts by rows and columns, N blocks, shared path', () => {
  const { addon } = loadAddon();
  const threads = addon!.info().threads;
  const r = rng(47);
  // the js backend's product of row-major a [M, K] and b [K, N]; whether two results are the same bits
  const jsMatmul = (a: Float32Array, b: Float32Array, M: number, K: number, N: number): Float32Array =>
    onBackend('js', () =>
      kn.tidy(() =>
        kn
          .tensor(a, [M, K])
          .matmul(kn.tensor(b, [K, N]))
          .toArray(),
      ),
    ) as Float32Array;
  // [M, K, N]: M > N cuts rows (each part packs its own rows of A and all of B); M < N cuts columns, and N = 4200
  // has two N blocks, a part's panels straddling the boundary on 2 and 3 threads; 64^3 on 8 threads is too
  // small for a part per thread and takes the shared path (B packed by all, tasks of row block x panel chunk)
  const shapes: [number, number, number, number[]][] = [
    [200, 600, 96, [1, 2, 3, 4]],
    [40, 300, 4200, [1, 2, 3, 4]],
    [64, 64, 64, [1, 2, 8]],
  ];
  try {
    for (const [M, K, N, counts] of shapes) {
      const a = randomArray(r, M * K),
        b = randomArray(r, K * N);
      const want = jsMatmul(a, b, M, K, N);
      const runs = counts.map((t) => {
        addon!.setThreads(t);
        return onBackend('cpu', () =>
          kn.tidy(() => {
            // a freed [M, N] buffer of NaNs: the next output likely reuses it, so a tile left unwritten shows
            kn.full([M, N], NaN).add(0).dispose();
            return kn
              .tensor(a, [M, K])
              .matmul(kn.tensor(b, [K, N]))
              .toArray();
          }),
        ) as Float32Array;
      });
      for (const run of runs) assertClose(run, want, 1e-3, 1e-4);
      for (let i = 1; i < runs.length; i++)
        assert.ok(sameBits(runs[i]!, runs[0]!), `${M}x${K}x${N} on ${counts[i]} threads differs from 1 thread`);
    }
    // small products read row-major A and B in place (no packing); given as transposed views they are packed:
    // the same multiply-adds in the same order, so all four layouts give the same bits, on 1-3 threads. 37 rows
    // leave a partial strip, 200 columns a partial panel (packed even in place), K = 600 makes two K blocks.
    for (const [M, K, N] of [
      [37, 600, 200],
      [128, 128, 128],
    ] as const) {
      const a = randomArray(r, M * K),
        b = randomArray(r, K * N);
      const want = jsMatmul(a, b, M, K, N);
      // t: a [rows, cols] operand as a transposed view of its contiguous transpose (strides [1, rows])
      const operand = (v: Float32Array, rows: number, cols: number, t: boolean): kn.Tensor =>
        t ? kn.tensor(v, [rows, cols]).transpose().contiguous().transpose() : kn.tensor(v, [rows, cols]);
      for (const t of [1, 2, 3]) {
        addon!.setThreads(t);
        const runs = [false, true].flatMap((ta) =>
          [false, true].map(
            (tb) =>
              onBackend('cpu', () =>
                kn.tidy(() => {
                  kn.full([M, N], NaN).add(0).dispose();
                  const x = operand(a, M, K, ta),
                    y = operand(b, K, N, tb);
                  assert.is(x.isContiguous(), !ta);
                  assert.is(y.isContiguous(), !tb);
                  return x.matmul(y).toArray();
                }),
              ) as Float32Array,
          ),
        );
        assertClose(runs[0]!, want, 1e-3, 1e-4);
        runs.forEach((run, i) =>
          assert.ok(
            sameBits(run, runs[0]!),
            `${M}x${K}x${N} on ${t} threads: layout ${i} (A, B transposed: ${i >> 1}, ${i & 1}) differs from both in place`,
          ),
        );
      }
    }
    // broadcast operands reach the GEMM with a stride of 0: one row of A repeated (read in place), one row of B
    // repeated (read in place), one column of B repeated (column stride 0: packed)
    {
      const [M, K, N] = [30, 70, 64];
      const row = randomArray(r, K),
        b = randomArray(r, K * N),
        brow = randomArray(r, N),
        bcol = randomArray(r, K),
        a = randomArray(r, M * K);
      const rep = (v: Float32Array, times: number): Float32Array => {
        const o = new Float32Array(v.length * times);
        for (let i = 0; i < times; i++) o.set(v, i * v.length);
        return o;
      };
      const wantA = jsMatmul(rep(row, M), b, M, K, N),
        wantB = jsMatmul(a, rep(brow, K), M, K, N),
        wantC = jsMatmul(
          a,
          Float32Array.from({ length: K * N }, (_, i) => bcol[Math.floor(i / N)]!),
          M,
          K,
          N,
        );
      for (const t of [1, 2]) {
        addon!.setThreads(t);
        const [gotA, gotB, gotC] = onBackend('cpu', () =>
          kn.tidy(() => [
            kn
              .tensor(row, [1, K])
              .expand([M, K])
              .matmul(kn.tensor(b, [K, N]))
              .toArray() as Float32Array,
            kn
              .tensor(a, [M, K])
              .matmul(kn.tensor(brow, [1, N]).expand([K, N]))
              .toArray() as Float32Array,
            kn
              .tensor(a, [M, K])
              .matmul(kn.tensor(bcol, [K, 1]).expand([K, N]))
              .toArray() as Float32Array,
          ]),
        );
        assertClose(gotA!, wantA, 1e-3, 1e-4);
        assertClose(gotB!, wantB, 1e-3, 1e-4);
        assertClose(gotC!, wantC, 1e-3, 1e-4);
      }
    }
    // a weight packed once (its third use reads the packed copy) and int4 weights dequantized into the panels,
    // on 1-3 threads: M = 30 < N cuts columns, so each part reads or dequantizes only its own panels; M = 100 >
    // N = 40 cuts rows on 2 threads, every part dequantizing all of the weights at once (3 threads: shared path)
    for (const [M, K, N] of [
      [30, 520, 300],
      [100, 130, 40],
    ] as const) {
      const x = randomArray(r, M * K),
        w = randomArray(r, N * K);
      const G = Math.ceil(K / 64); // groups of 64 per row, 32 bytes each
      const packedB = Uint8Array.from({ length: N * G * 32 }, () => Math.floor(r() * 256));
      const scales = Float32Array.from({ length: N * G }, () => 0.01 + r() * 0.1);
      const wantW = onBackend('js', () =>
        kn.tidy(() =>
          kn
            .tensor(x, [M, K])
            .matmul(kn.tensor(w, [N, K]).transpose())
            .toArray(),
        ),
      ) as Float32Array;
      const q4 = (): Float32Array =>
        kn.tidy(() =>
          kn
            .qlinearInt4(
              kn.tensor(x, [M, K]),
              kn.tensor(packedB, [N, G * 32], { dtype: 'uint8' }),
              kn.tensor(scales, [N, G]),
              null,
              64,
            )
            .toArray(),
        ) as Float32Array;
      const want4 = onBackend('js', q4);
      const got = [1, 2, 3].map((t) => {
        addon!.setThreads(t);
        return onBackend('cpu', () => {
          const X = kn.tensor(x, [M, K]),
            W = kn.tensor(w, [N, K]);
          const y = (): Float32Array => kn.tidy(() => X.matmul(W.transpose()).toArray() as Float32Array);
          const outs = [y(), y(), y()];
          X.dispose();
          W.dispose();
          return [...outs, q4()];
        });
      });
      for (const outs of got) {
        for (const o of outs.slice(0, 3)) assertClose(o, wantW, 1e-3, 1e-4);
        assertClose(outs[3]!, want4, 1e-3, 1e-4);
      }
      for (const t of [1, 2])
        for (let i = 0; i < 4; i++)
          assert.ok(sameBits(got[t]![i]!, got[0]![i]!), `${M}x${K}x${N}: result ${i} differs on ${t + 1} threads`);
    }
  } finally {
    addon!.setThreads(threads);
  }
});

test('long sums run in blocks on every thread: the same bits on 1 to 3 threads, matching js', () => {
  const { addon } = loadAddon();
  const threads = addon!.info().threads;
  const r = rng(48);
  // a whole-tensor sum over 3 blocks and a partial one, two long rows, and a row just under one block (one run)
  const cases: [number[], number[]][] = [
    [[3 * 16384 + 77], [0]],
    [[2, 40000], [1]],
    [[3, 16384], [1]],
  ];
  try {
    for (const [shape, axes] of cases) {
      // values around 100 with a spread: a float accumulator over the whole row would drift well past the tolerance
      const data = randomArray(
        r,
        shape.reduce((a, b) => a * b, 1),
      ).map((v) => 100 + 50 * v);
      const want = onBackend('js', () => kn.tidy(() => kn.tensor(data, shape).sum(axes).toArray())) as Float32Array;
      const runs = [1, 2, 3].map((t) => {
        addon!.setThreads(t);
        return onBackend('cpu', () => kn.tidy(() => kn.tensor(data, shape).sum(axes).toArray())) as Float32Array;
      });
      for (const run of runs) assertClose(run, want, 0, 1e-6);
      for (const run of runs.slice(1))
        assert.ok(sameBits(run, runs[0]!), `sum of ${shape} differs between thread counts`);
    }
  } finally {
    addon!.setThreads(threads);
  }
});

test('KILN_PACK_CACHE_MB=0 turns the packed-weight cache off, with the same results', () => {
  const script =
    "import('./src/index.ts').then(async (kn) => { const { loadAddon } = await import('./src/backends/native/binding.ts'); " +
    "kn.setBackend('cpu'); const w = kn.full([40, 70], 3, { dtype: 'int8' }); const x = kn.ones([20, 70]); " +
    'const y1 = kn.qlinearInt8(x, w, kn.full([40], 0.5), null).toArray(); ' +
    'const y2 = kn.qlinearInt8(x, w, kn.full([40], 0.5), null).toArray(); ' +
    'const s = loadAddon().addon.stats(); ' +
    'console.log(JSON.stringify({ entries: s.packedEntries, hits: s.packedHits, y: [y1[0], y2[799]].map((v) => Math.round(v * 100) / 100) })); })';
  const off = childJson<{ entries: number; hits: number; y: number[] }>(script, { KILN_PACK_CACHE_MB: '0' }).value;
  assert.equal(off, { entries: 0, hits: 0, y: [105, 105] });
  const on = childJson<{ entries: number; hits: number; y: number[] }>(script, {}).value;
  assert.equal(on, { entries: 1, hits: 1, y: [105, 105] });
});

test('without the addon, kiln falls back to the js backend and says why', () => {
  const script =
    "import('./src/index.ts').then(kn => { const t = kn.tensor([1, 2]).add(1); const i = kn.info(); " +
    "console.log(JSON.stringify({ backend: kn.getBackend(), backends: kn.backends(), v: Array.from(t.toArray()), cpu: i.backends.find(b => b.name === 'cpu') })); })";
  const r = childJson<{
    backend: string;
    backends: string[];
    v: number[];
    cpu: { available: boolean; reason: string };
  }>(script, { KILN_ADDON_PATH: '/nonexistent/kiln.node' }, false).value;
  assert.is(r.backend, 'js');
  assert.equal(
    r.backends.filter((b) => b !== 'webgpu'),
    ['js'],
    'no native backend (webgpu does not need the addon)',
  );
  assert.equal(r.v, [2, 3]);
  assert.not.ok(r.cpu.available);
  assert.match(r.cpu.reason, /native addon not found: KILN_ADDON_PATH names \/nonexistent\/kiln\.node/);
});

test.run();

test('addon: in-place optimizer inputs must be contiguous float32 buffers shared with no other input', () => {
  if (!addon) return;
  const p = addon.alloc(0, 4),
    g = addon.alloc(0, 4),
    o = addon.alloc(0, 0),
    i32 = addon.alloc(3, 4);
  const view = (id: number, dtype = 0, stride = 1, n = 4): number[] => [id, dtype, 1, 0, n, stride];
  const run = (ins: number[][], attrs: number[]): void =>
    addon.run(
      OP_IDS.sgdStep,
      new Float64Array([ins.length, ...ins.flat()]),
      new Float64Array([o, 0, 1, 0]),
      new Float64Array(attrs),
    );
  const attrs = [0.1, 0.9, 0, 0, 0, 1];
  run([view(p), view(g), view(g === p ? g : addon.alloc(0, 4))], attrs); // distinct buffers: fine
  assert.throws(
    () => run([view(p), view(g), view(p)], attrs),
    /input 0 is updated in place but shares its buffer with input 2/,
  );
  assert.throws(() => run([view(p), view(p)], [0.1, 0, 0, 0, 0, 1]), /shares its buffer with input 1/);
  assert.throws(() => run([view(i32, 3), view(g)], [0.1, 0, 0, 0, 0, 1]), /contiguous float32/);
  assert.throws(() => run([view(p, 0, 2, 2), view(g, 0, 1, 2)], [0.1, 0, 0, 0, 0, 1]), /contiguous float32/);
  for (const id of [p, g, o, i32]) addon.free(id);
});
