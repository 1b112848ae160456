// Matmul family: C[b] = A[b] B[b] over strided (transposed, broadcast-batch) float32 or bfloat16 operands, float32
// accumulation. Tiled: a 16x16 workgroup computes a 64x64 block of C, each invocation a 4x4 register tile;
// K advances 16 at a time through workgroup memory.
// Params: P_MATMUL_* (src/backends/webgpu/params.ts): M, N, K, up to 4 batch dims with their shape and the
// strides of A and B, and each operand's offset, row stride (over M or K) and column stride (over K or N).
// int4 weight-only linear (QB4): B[k, n] = W[n, k] = (nibble - 8) * scale[n, k / g] straight from the packed
// bytes (src/quant/layout.ts), dequantized as the tile is loaded, with P_MATMUL_GROUP_SIZE,
// _GROUPS, _ROW_BYTES (bytes per packed row), _SCALE_OFFSET and _BIAS_OFFSET (HASB).

override DTA: u32 = 0u;
override DTB: u32 = 0u;
override QB4: bool = false;
override HASB: bool = false;

@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<u32>;
@group(0) @binding(3) var<storage, read> b: array<u32>;
@group(0) @binding(4) var<storage, read> scales: array<f32>;
@group(0) @binding(5) var<storage, read> bias: array<f32>;

const TM: u32 = 64u;
const TN: u32 = 64u;
const TK: u32 = 16u;
var<workgroup> sa: array<array<f32, 64>, 16>;  // [k][m]
var<workgroup> sb: array<array<f32, 64>, 16>;  // [k][n]

fn load_a(i: u32) -> f32 {
  if (DTA == DT_F32) { return bitcast<f32>(a[i]); }
  return to_f32(DTA, raw_of(DTA, i, a[word_of(DTA, i)]));
}
fn load_b4(offB: u32, k: u32, n: u32) -> f32 {
  let byte = offB + n * pu(P_MATMUL_ROW_BYTES) + (k >> 1u);
  let v = (b[byte >> 2u] >> ((byte & 3u) * 8u)) & 0xffu;
  let q = i32(select(v & 15u, v >> 4u, (k & 1u) == 1u)) - 8;
  return f32(q) * scales[pu(P_MATMUL_SCALE_OFFSET) + n * pu(P_MATMUL_GROUPS) + k / pu(P_MATMUL_GROUP_SIZE)];
}

fn load_b(i: u32) -> f32 {
  if (DTB == DT_F32) { return bitcast<f32>(b[i]); }
  return to_f32(DTB, raw_of(DTB, i, b[word_of(DTB, i)]));
}

@compute @workgroup_size(16, 16)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
          @builtin(local_invocation_index) li: u32) {
  let M = pu(P_MATMUL_M);
  let N = pu(P_MATMUL_N);
  let K = pu(P_MATMUL_K);
  // batch offsets
  var offA = pu(P_MATMUL_OFF_A);
  var offB = pu(P_MATMUL_OFF_B);
  var rem = wid.z;
  let nb = pu(P_MATMUL_BATCH_DIMS);
  for (var k = 0u; k < nb; k++) {
    let d = nb - 1u - k;
    let s = pu(P_MATMUL_BATCH_SHAPE + d);
    let c = rem % s;
    rem = rem / s;
    offA += c * pu(P_MATMUL_BATCH_STRIDE_A + d);
    offB += c * pu(P_MATMUL_BATCH_STRIDE_B + d);
  }
  let rsA = pu(P_MATMUL_ROW_STRIDE_A);
  let csA = pu(P_MATMUL_COL_STRIDE_A);
  let rsB = pu(P_MATMUL_ROW_STRIDE_B);
  let csB = pu(P_MATMUL_COL_STRIDE_B);
  let m0 = wid.y * TM;
  let n0 = wid.x * TN;
  var acc: array<array<f32, 4>, 4>;
  for (var k0 = 0u; k0 < K; k0 += TK) {
    // 1024 values of each tile, 4 per invocation
    for (var r = 0u; r < 4u; r++) {
      let e = li + r * 256u;
      let kk = e / 64u;
      let mn = e % 64u;
      let gk = k0 + kk;
      var va = 0.0;
      if (m0 + mn < M && gk < K) { va = load_a(offA + (m0 + mn) * rsA + gk * csA); }
      sa[kk][mn] = va;
      var vb = 0.0;
      if (n0 + mn < N && gk < K) {
        if (QB4) { vb = load_b4(offB, gk, n0 + mn); } else { vb = load_b(offB + gk * rsB + (n0 + mn) * csB); }
      }
      sb[kk][mn] = vb;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < TK; kk++) {
      var av: array<f32, 4>;
      var bv: array<f32, 4>;
      for (var i = 0u; i < 4u; i++) {
        av[i] = sa[kk][lid.y + i * 16u];
        bv[i] = sb[kk][lid.x + i * 16u];
      }
      for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) { acc[i][j] = fma(av[i], bv[j], acc[i][j]); }
      }
    }
    workgroupBarrier();
  }
  let base = wid.z * M * N;
  for (var i = 0u; i < 4u; i++) {
    let m = m0 + lid.y + i * 16u;
    if (m >= M) { continue; }
    for (var j = 0u; j < 4u; j++) {
      let n = n0 + lid.x + j * 16u;
      if (n < N) {
        var y = acc[i][j];
        if (HASB) { y += bias[pu(P_MATMUL_BIAS_OFFSET) + n]; }
        dst[base + m * N + n] = y;
      }
    }
  }
}
