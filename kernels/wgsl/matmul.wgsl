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
  // the K range of this dispatch: all of K, unless a loop cap cut it into windows that add onto dst in turn
  let kLo = pu(P_MATMUL_K_LO);
  let kHi = min(K, pu(P_MATMUL_K_HI));
  for (var k0 = kLo; k0 < kHi; k0 += TK) {
    // 1024 values of each tile, 4 per invocation
    for (var r = 0u; r < 4u; r++) {
      let e = li + r * 256u;
      let kk = e / 64u;
      let mn = e % 64u;
      let gk = k0 + kk;
      var va = 0.0;
      if (m0 + mn < M && gk < kHi) { va = load_a(offA + (m0 + mn) * rsA + gk * csA); }
      sa[kk][mn] = va;
      var vb = 0.0;
      if (n0 + mn < N && gk < kHi) {
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
        if (kLo > 0u) {
          y += dst[base + m * N + n];
        } else if (HASB) {
          y += bias[pu(P_MATMUL_BIAS_OFFSET) + n];
        }
        dst[base + m * N + n] = y;
      }
    }
  }
  check_loops();
}

// ---- fused attention: one invocation per query row (forward, dq) or key row (dk, dv), an online softmax over
// the keys, so nothing of size L x S is stored. Bindings reuse the ones above: dst; a = q; b = k (or [k | v]
// for the backward); scales = v (or [dO | lse, D per row] for the backward); bias = the additive mask.
// Params: P_ATTENTION_* (B, L, S, D, Dv, mask stride, flags, dropout threshold and seed hash, scale, keep scale).

fn att_hash(x0: u32) -> u32 {
  var x = x0;
  x = x ^ (x >> 16u);
  x = x * 0x7feb352du;
  x = x ^ (x >> 15u);
  x = x * 0x846ca68bu;
  return x ^ (x >> 16u);
}
// the dropout factor of weight (b, i, j)
fn att_keep(b: u32, i: u32, j: u32) -> f32 {
  let thr = pu(P_ATTENTION_THRESHOLD);
  if (thr == 0u) { return 1.0; }
  let idx = (b * pu(P_ATTENTION_L) + i) * pu(P_ATTENTION_S) + j;
  return select(0.0, pf(P_ATTENTION_KEEP_SCALE), att_hash(idx ^ pu(P_ATTENTION_SEED_HASH)) >= thr);
}
// score of (b, i, j); k rows start at kofs in `b`
fn att_score(bb: u32, i: u32, j: u32) -> f32 {
  let L = pu(P_ATTENTION_L);
  let S = pu(P_ATTENTION_S);
  let D = pu(P_ATTENTION_D);
  if (pu(P_ATTENTION_CAUSAL) == 1u && j > i) { return -f_inf(); }
  var s = 0.0;
  for (var d = 0u; d < D; d++) {
    s += bitcast<f32>(a[(bb * L + i) * D + d]) * bitcast<f32>(b[(bb * S + j) * D + d]);
  }
  s *= pf(P_ATTENTION_SCALE);
  if (pu(P_ATTENTION_HAS_MASK) == 1u) { s += bias[bb * pu(P_ATTENTION_MASK_STRIDE) + i * S + j]; }
  return s;
}

// forward: dst [B, L, Dv + 1] (output row, then its log-sum-exp); v in `scales`. The keys [j0, j1) of one dispatch
// (P_ATTENTION_WIN_LO/HI) are all of them unless a loop cap splits them into windows: a window's max m and sum l of
// exp(s - m), then its weights added onto the rows, which hold between windows the output so far normalised by
// its own log-sum-exp `prev` (dst[row + Dv]): the rows are first scaled by exp(prev - lse), the window's weights
// are exp(s - m) * exp(m - lse). With one window (prev = -inf) that is exp(s - m) / l, as without windows.
@compute @workgroup_size(256)
fn attention(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = linear_id(gid, nwg);
  let B = pu(P_ATTENTION_B);
  let L = pu(P_ATTENTION_L);
  let S = pu(P_ATTENTION_S);
  let Dv = pu(P_ATTENTION_DV);
  if (t >= B * L) { return; }
  let bb = t / L;
  let i = t % L;
  let j0 = pu(P_ATTENTION_WIN_LO);
  let j1 = min(S, pu(P_ATTENTION_WIN_HI));
  let row = t * (Dv + 1u);
  var prev = -f_inf();
  if (j0 > 0u) { prev = dst[row + Dv]; }
  var m = -f_inf();
  var l = 0.0;
  for (var j = j0; j < j1; j++) {
    let s = att_score(bb, i, j);
    if (s == -f_inf()) { continue; }
    if (m == -f_inf()) {
      m = s;
      l = 1.0;
    } else {
      let mn = max(m, s);
      l = l * exp(m - mn) + exp(s - mn);
      m = mn;
    }
  }
  var lse = prev;
  if (m != -f_inf()) {
    lse = m + log(l);
    if (prev != -f_inf()) {
      let hi = max(prev, lse);
      lse = hi + log(exp(prev - hi) + exp(lse - hi));
    }
  }
  if (j0 == 0u) {
    for (var e = 0u; e < Dv; e++) { dst[row + e] = 0.0; }
  } else if (m != -f_inf()) {
    let a = exp(prev - lse);
    for (var e = 0u; e < Dv; e++) { dst[row + e] *= a; }
  }
  if (m != -f_inf()) {
    let c = exp(m - lse);
    for (var j = j0; j < j1; j++) {
      let s = att_score(bb, i, j);
      if (s == -f_inf()) { continue; }
      var w = exp(s - m) * c;
      if (prev == -f_inf()) { w = exp(s - m) / l; }
      w *= att_keep(bb, i, j);
      if (w == 0.0) { continue; }
      for (var e = 0u; e < Dv; e++) { dst[row + e] += w * scales[(bb * S + j) * Dv + e]; }
    }
  }
  dst[row + Dv] = lse;  // every key masked: the zeros written above, lse -inf (PyTorch's SDPA since 2.5)
  check_loops();
}

// copies a (as f32 bits) into dst at P_ATTENTION_DST_OFFSET: packs the backward's inputs into shared buffers
@compute @workgroup_size(256)
fn copy_f32(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = linear_id(gid, nwg);
  if (t >= pu(P_ATTENTION_N)) { return; }
  dst[pu(P_ATTENTION_DST_OFFSET) + t] = bitcast<f32>(a[t]);
}

// backward pass 1: per query row, lse (from the forward output in `a`) and D = dO . O into dst = [dO | lse, D]
@compute @workgroup_size(256)
fn attention_backward_stats(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = linear_id(gid, nwg);
  let BL = pu(P_ATTENTION_B) * pu(P_ATTENTION_L);
  let Dv = pu(P_ATTENTION_DV);
  if (t >= BL) { return; }
  var d = 0.0;
  for (var e = 0u; e < Dv; e++) { d += dst[t * Dv + e] * bitcast<f32>(a[t * (Dv + 1u) + e]); }
  dst[BL * Dv + 2u * t] = bitcast<f32>(a[t * (Dv + 1u) + Dv]);
  dst[BL * Dv + 2u * t + 1u] = d;
  check_loops();
}

// dS of (b, i, j) and P * keep; dO and the row stats in `scales`, v after k in `b`
fn att_ds(bb: u32, i: u32, j: u32, pk: ptr<function, f32>) -> f32 {
  let L = pu(P_ATTENTION_L);
  let S = pu(P_ATTENTION_S);
  let Dv = pu(P_ATTENTION_DV);
  let BL = pu(P_ATTENTION_B) * L;
  let vofs = pu(P_ATTENTION_B) * S * pu(P_ATTENTION_D);
  let s = att_score(bb, i, j);
  *pk = 0.0;
  if (s == -f_inf()) { return 0.0; }
  let r = bb * L + i;
  let p = exp(s - scales[BL * Dv + 2u * r]);
  let kf = att_keep(bb, i, j);
  var dpd = 0.0;
  for (var e = 0u; e < Dv; e++) { dpd += scales[r * Dv + e] * bitcast<f32>(b[vofs + (bb * S + j) * Dv + e]); }
  *pk = p * kf;
  return p * (dpd * kf - scales[BL * Dv + 2u * r + 1u]) * pf(P_ATTENTION_SCALE);
}

// backward pass 2: dq rows (dst[0 .. B L D)), over the keys [P_ATTENTION_WIN_LO, P_ATTENTION_WIN_HI), added onto
// the window before's
@compute @workgroup_size(256)
fn attention_backward_q(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = linear_id(gid, nwg);
  let L = pu(P_ATTENTION_L);
  let S = pu(P_ATTENTION_S);
  let D = pu(P_ATTENTION_D);
  if (t >= pu(P_ATTENTION_B) * L) { return; }
  let bb = t / L;
  let i = t % L;
  let j0 = pu(P_ATTENTION_WIN_LO);
  if (j0 == 0u) {
    for (var d = 0u; d < D; d++) { dst[t * D + d] = 0.0; }
  }
  var pk = 0.0;
  for (var j = j0; j < min(S, pu(P_ATTENTION_WIN_HI)); j++) {
    let ds = att_ds(bb, i, j, &pk);
    if (ds == 0.0) { continue; }
    for (var d = 0u; d < D; d++) { dst[t * D + d] += ds * bitcast<f32>(b[(bb * S + j) * D + d]); }
  }
  check_loops();
}

// backward pass 3: dk and dv rows (dst[B L D ..) and dst[B L D + B S D ..)), over the query rows [P_ATTENTION_WIN_LO,
// P_ATTENTION_WIN_HI), added onto the window before's
@compute @workgroup_size(256)
fn attention_backward_kv(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = linear_id(gid, nwg);
  let B = pu(P_ATTENTION_B);
  let L = pu(P_ATTENTION_L);
  let S = pu(P_ATTENTION_S);
  let D = pu(P_ATTENTION_D);
  let Dv = pu(P_ATTENTION_DV);
  if (t >= B * S) { return; }
  let bb = t / S;
  let j = t % S;
  let ko = B * L * D + t * D;
  let vo = B * L * D + B * S * D + t * Dv;
  let i0 = pu(P_ATTENTION_WIN_LO);
  if (i0 == 0u) {
    for (var d = 0u; d < D; d++) { dst[ko + d] = 0.0; }
    for (var e = 0u; e < Dv; e++) { dst[vo + e] = 0.0; }
  }
  var pk = 0.0;
  for (var i = i0; i < min(L, pu(P_ATTENTION_WIN_HI)); i++) {
    let ds = att_ds(bb, i, j, &pk);
    let r = bb * L + i;
    if (pk != 0.0) {
      for (var e = 0u; e < Dv; e++) { dst[vo + e] += pk * scales[r * Dv + e]; }
    }
    if (ds != 0.0) {
      for (var d = 0u; d < D; d++) { dst[ko + d] += ds * bitcast<f32>(a[r * D + d]); }
    }
  }
  check_loops();
}
