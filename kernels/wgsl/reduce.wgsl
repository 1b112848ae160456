// Reduce family: sum/max/min/argmax/argmin over an axis range, softmax/logSoftmax, fused softmax
// cross-entropy (forward and backward), NaN-ignoring column statistics and quantiles, and row hashes.
// Inputs are contiguous; a reduction sees its input as [outer, R, inner] and writes [outer, inner].
// Params: P_REDUCE_* (outer, R, inner; row kernels N with F or C; ATTR, an f32 attribute: labelSmoothing or q)

override OP: u32 = 0u;    // reduce: 0 sum, 1 max, 2 min, 3 argmax, 4 argmin
override INT: bool = false;
override LOG: bool = false;
override HASW: bool = false;

@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@group(0) @binding(2) var<storage, read> in0: array<u32>;
@group(0) @binding(3) var<storage, read> in1: array<u32>;
@group(0) @binding(4) var<storage, read> in2: array<u32>;
@group(0) @binding(5) var<storage, read> in3: array<u32>;
@group(0) @binding(7) var<storage, read_write> work: array<f32>;

fn xf(i: u32) -> f32 { return bitcast<f32>(in0[i]); }
fn xi(i: u32) -> i32 { return bitcast<i32>(in0[i]); }

fn combine_f(a: f32, v: f32) -> f32 {
  if (OP == 0u) { return a + v; }
  if (is_nan(a) || is_nan(v)) { return f_nan(); }
  if (OP == 1u) { return select(a, v, v > a); }
  return select(a, v, v < a);
}
fn combine_i(a: i32, v: i32) -> i32 {
  if (OP == 0u) { return a + v; }
  if (OP == 1u) { return max(a, v); }
  return min(a, v);
}

// one invocation per output: sums, extremes and arg-extremes along R with stride `inner`
@compute @workgroup_size(256)
fn reduce_cols(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let o = linear_id(gid, nwg);
  let outer = pu(P_REDUCE_OUTER);
  let r = pu(P_REDUCE_R);
  let inner = pu(P_REDUCE_INNER);
  if (o >= outer * inner) { return; }
  let base = (o / inner) * r * inner + o % inner;
  if (OP >= 3u) {
    var best = 0u;
    if (INT) {
      var bv = xi(base);
      for (var k = 1u; k < r; k++) {
        let v = xi(base + k * inner);
        if ((OP == 3u && v > bv) || (OP == 4u && v < bv)) { bv = v; best = k; }
      }
    } else {
      var bv = xf(base);
      for (var k = 1u; k < r; k++) {
        if (is_nan(bv)) { break; }
        let v = xf(base + k * inner);
        if (is_nan(v) || (OP == 3u && v > bv) || (OP == 4u && v < bv)) { bv = v; best = k; }
      }
    }
    dst[o] = best;
    check_loops();
    return;
  }
  if (INT) {
    var acc = 0;
    var k0 = 0u;
    if (OP != 0u) { acc = xi(base); k0 = 1u; }
    for (var k = k0; k < r; k++) { acc = combine_i(acc, xi(base + k * inner)); }
    dst[o] = bitcast<u32>(acc);
  } else {
    var acc = 0.0;
    var k0 = 0u;
    if (OP != 0u) { acc = xf(base); k0 = 1u; }
    for (var k = k0; k < r; k++) { acc = combine_f(acc, xf(base + k * inner)); }
    dst[o] = bitcast<u32>(acc);
  }
  check_loops();
}

var<workgroup> sf: array<f32, 256>;
var<workgroup> si: array<i32, 256>;

// Long axes reduce in two passes (src/backends/webgpu/reduce.ts): the first cuts each slice's R values into chunks
// of P_REDUCE_CHUNK (sum, max and min only) and writes [outer, chunks, inner] partials, which the second reduces.
// (chunk length, chunks): (R, 1) when P_REDUCE_CHUNK is 0
fn chunking() -> vec2<u32> {
  let r = pu(P_REDUCE_R);
  let ch = pu(P_REDUCE_CHUNK);
  if (ch == 0u || r == 0u) { return vec2(r, 1u); }
  return vec2(ch, (r + ch - 1u) / ch);
}
// chunk c's (first value, count) of a slice's R values
fn chunk_span(c: u32, ch: u32) -> vec2<u32> {
  let k0 = c * ch;
  let r = pu(P_REDUCE_R);
  return vec2(k0, select(0u, min(ch, r - k0), k0 < r));
}

// one workgroup per output row when inner == 1 (long rows; argmax/argmin fold (value, index) pairs, see
// arg_wins_f): strided partials, then a tree
@compute @workgroup_size(256)
fn reduce_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
               @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = wid.x + wid.y * nwg.x;
  let outer = pu(P_REDUCE_OUTER);
  let cs = chunking();
  let live = row < outer * cs.y;
  let span = chunk_span(row % cs.y, cs.x);  // this row's part of its slice: (first value, count)
  let r = span.y;
  let base = row / cs.y * pu(P_REDUCE_R) + span.x;
  var best = 0u;
  if (INT) {
    var acc = 0;
    if (OP != 0u && live) { acc = xi(base); }
    if (live) {
      for (var k = lid; k < r; k += WG) { fold_i(&acc, &best, xi(base + k), k); }
    }
    si[lid] = acc;
  } else {
    var acc = 0.0;
    if (OP != 0u && live) { acc = xf(base); }
    if (live && OP == 0u) {
      acc = sum_strided(base, lid, WG, r, 1u);
    } else if (live) {
      for (var k = lid; k < r; k += WG) { fold_f(&acc, &best, xf(base + k), k); }
    }
    sf[lid] = acc;
  }
  sidx[lid] = best;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    if (lid < s) {
      var i = sidx[lid];
      if (INT) {
        var v = si[lid];
        fold_i(&v, &i, si[lid + s], sidx[lid + s]);
        si[lid] = v;
      } else {
        var v = sf[lid];
        fold_f(&v, &i, sf[lid + s], sidx[lid + s]);
        sf[lid] = v;
      }
      sidx[lid] = i;
    }
    workgroupBarrier();
  }
  if (lid == 0u && live) {
    let v = select(bitcast<u32>(sf[0]), bitcast<u32>(si[0]), INT);
    dst[row] = select(v, sidx[0], OP >= 3u);
  }
  check_loops();
}

// The reductions along R with inner > 1 and few outputs: 32 adjacent outputs of one outer slice a workgroup
// (reads stay together), its 8 groups of 32 taking every 8th k; each output's partials are combined in group
// order. Max, min and the args start every group from the line's first value (and index 0), one of its
// candidates; sums start from 0.
// argmax/argmin fold (value, k) pairs by arg_wins_*: a NaN over any number, then the extreme, then the smaller k
// between equals. That is a total order, so any combining order finds reduce_cols's sequential first index.
var<workgroup> sidx: array<u32, 256>;

// (value, k) pairs of two groups of an arg reduction: does b win over a?
fn arg_wins_f(a: f32, ia: u32, b: f32, ib: u32) -> bool {
  if (is_nan(a) || is_nan(b)) { return is_nan(b) && (!is_nan(a) || ib < ia); }
  if (b == a) { return ib < ia; }
  return (OP == 3u && b > a) || (OP == 4u && b < a);
}
fn arg_wins_i(a: i32, ia: u32, b: i32, ib: u32) -> bool {
  if (b == a) { return ib < ia; }
  return (OP == 3u && b > a) || (OP == 4u && b < a);
}

// folds the value v at index k into a partial (acc, best): combine_* for sum/max/min, arg_wins_* for the args
fn fold_i(acc: ptr<function, i32>, best: ptr<function, u32>, v: i32, k: u32) {
  if (OP < 3u) {
    *acc = combine_i(*acc, v);
  } else if (arg_wins_i(*acc, *best, v, k)) {
    *acc = v;
    *best = k;
  }
}
// The sum of x[base + k * stride] for k = k0, k0 + step, ... below r, in three levels of at most 64 terms (32
// values, 64 of those, then the rest): one running float sum over a lane's values lost 1.5e-4 of a sum of 2^22 of
// them. (Nesting does not lift Mesa's llvmpipe's cap of 65535 loop turns per invocation: reduce.ts cuts long axes
// into chunks, and refuses what it cannot cut.)
fn sum_strided(base: u32, k0: u32, step: u32, r: u32, stride: u32) -> f32 {
  var acc = 0.0;
  var k = k0;
  while (k < r) {
    var mid = 0.0;
    for (var j = 0u; j < 64u && k < r; j++) {
      var part = 0.0;
      for (var i = 0u; i < 32u && k < r; i++) {
        part += xf(base + k * stride);
        k += step;
      }
      mid += part;
    }
    acc += mid;
  }
  return acc;
}

fn fold_f(acc: ptr<function, f32>, best: ptr<function, u32>, v: f32, k: u32) {
  if (OP < 3u) {
    *acc = combine_f(*acc, v);
  } else if (arg_wins_f(*acc, *best, v, k)) {
    *acc = v;
    *best = k;
  }
}

@compute @workgroup_size(256)
fn reduce_cols_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                     @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = wid.x + wid.y * nwg.x;
  let lane = lid % 32u;
  let inner = pu(P_REDUCE_INNER);
  let tiles = (inner + 31u) / 32u;
  let cs = chunking();
  let line = t / tiles;  // slice * chunks + chunk
  let j = t % tiles * 32u + lane;
  let live = t < pu(P_REDUCE_OUTER) * cs.y * tiles && j < inner;
  let span = chunk_span(line % cs.y, cs.x);
  let r = span.y;
  let base = (line / cs.y * pu(P_REDUCE_R) + span.x) * inner + j;
  var best = 0u;  // (x[base], 0) is a candidate every group may start from
  if (INT) {
    var acc = 0;
    if (OP != 0u && live) { acc = xi(base); }
    if (live) {
      for (var k = lid / 32u; k < r; k += 8u) { fold_i(&acc, &best, xi(base + k * inner), k); }
    }
    si[lid] = acc;
  } else {
    var acc = 0.0;
    if (OP != 0u && live) { acc = xf(base); }
    if (live && OP == 0u) {
      acc = sum_strided(base, lid / 32u, 8u, r, inner);
    } else if (live) {
      for (var k = lid / 32u; k < r; k += 8u) { fold_f(&acc, &best, xf(base + k * inner), k); }
    }
    sf[lid] = acc;
  }
  sidx[lid] = best;
  workgroupBarrier();
  if (!live || lid >= 32u) { check_loops(); return; }
  let o = line * inner + j;
  if (INT) {
    var acc = si[lid];
    best = sidx[lid];
    for (var p = 1u; p < 8u; p++) { fold_i(&acc, &best, si[p * 32u + lid], sidx[p * 32u + lid]); }
    dst[o] = select(bitcast<u32>(acc), best, OP >= 3u);
  } else {
    var acc = sf[lid];
    best = sidx[lid];
    for (var p = 1u; p < 8u; p++) { fold_f(&acc, &best, sf[p * 32u + lid], sidx[p * 32u + lid]); }
    dst[o] = select(bitcast<u32>(acc), best, OP >= 3u);
  }
  check_loops();
}

// softmax / logSoftmax along R, one invocation per (outer, inner) line
@compute @workgroup_size(256)
fn softmax(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let o = linear_id(gid, nwg);
  let outer = pu(P_REDUCE_OUTER);
  let n = pu(P_REDUCE_R);
  let inner = pu(P_REDUCE_INNER);
  if (o >= outer * inner) { return; }
  let base = (o / inner) * n * inner + o % inner;
  var m = -f_inf();
  for (var k = 0u; k < n; k++) {
    let v = xf(base + k * inner);
    if (!is_nan(v) && v > m) { m = v; }
  }
  if (m == -f_inf()) { m = 0.0; }
  var s = 0.0;
  for (var k = 0u; k < n; k++) { s += k_exp(xf(base + k * inner) - m); }
  let ls = k_log(s);  // log-softmax (x - m) - log s: x - (m + log s) rounds log s away at large |m|
  for (var k = 0u; k < n; k++) {
    let i = base + k * inner;
    if (LOG) { dst[i] = bitcast<u32>((xf(i) - m) - ls); } else { dst[i] = bitcast<u32>(k_exp(xf(i) - m) / s); }
  }
  check_loops();
}

// softmax / logSoftmax down the R rows of 32 adjacent columns of one outer slice (inner > 1): lane = column (reads
// stay together), and the 8 groups of 32 invocations take every 8th row. Each column's partial maxima, then
// partial sums, are combined over the groups in group order. Workgroup t is tile t % tiles of slice t / tiles.
var<workgroup> col_part: array<f32, 256>;

@compute @workgroup_size(256)
fn softmax_cols(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = wid.x + wid.y * nwg.x;
  let lane = lid % 32u;
  let ph = lid / 32u;
  let n = pu(P_REDUCE_R);
  let inner = pu(P_REDUCE_INNER);
  let tiles = (inner + 31u) / 32u;
  let j = t % tiles * 32u + lane;
  let live = t < pu(P_REDUCE_OUTER) * tiles && j < inner;
  let base = t / tiles * n * inner + j;
  var m = -f_inf();
  if (live) {
    for (var k = ph; k < n; k += 8u) {
      let v = xf(base + k * inner);
      if (!is_nan(v) && v > m) { m = v; }
    }
  }
  col_part[lid] = m;
  workgroupBarrier();
  m = col_part[lane];
  for (var p = 1u; p < 8u; p++) { m = select(m, col_part[p * 32u + lane], col_part[p * 32u + lane] > m); }
  if (m == -f_inf()) { m = 0.0; }
  workgroupBarrier();
  var s = 0.0;
  if (live) {
    for (var k = ph; k < n; k += 8u) { s += k_exp(xf(base + k * inner) - m); }
  }
  col_part[lid] = s;
  workgroupBarrier();
  s = col_part[lane];
  for (var p = 1u; p < 8u; p++) { s += col_part[p * 32u + lane]; }
  if (!live) { check_loops(); return; }
  let ls = k_log(s);
  for (var k = ph; k < n; k += 8u) {
    let i = base + k * inner;
    if (LOG) { dst[i] = bitcast<u32>((xf(i) - m) - ls); } else { dst[i] = bitcast<u32>(k_exp(xf(i) - m) / s); }
  }
  check_loops();
}

// (m, ls) of the logits row at off (in0 is [N, C]): its max and log sum exp(x - m), the row's log-softmax being
// (x - m) - ls; ls is NaN if any logit is
fn row_shift(off: u32, c: u32) -> vec2<f32> {
  var m = -f_inf();
  var nan = false;
  for (var k = 0u; k < c; k++) {
    let v = xf(off + k);
    if (is_nan(v)) { nan = true; }
    if (v > m) { m = v; }
  }
  if (nan) { return vec2(0.0, f_nan()); }
  if (m == -f_inf()) { m = 0.0; }
  var s = 0.0;
  for (var k = 0u; k < c; k++) { s += k_exp(xf(off + k) - m); }
  return vec2(m, k_log(s));
}

fn weight(k: u32) -> f32 {
  if (HASW) { return bitcast<f32>(in3[k]); }
  return 1.0;
}

/** The label of row r, or c (and the error flag) when it is out of range. */
fn label(r: u32, c: u32) -> u32 {
  let y = bitcast<i32>(in1[r]);
  if (y < 0 || u32(y) >= c) {
    report(FLAG_LABEL, r, y, c, 0u);
    return c;
  }
  return u32(y);
}

// in0 logits [N, C], in1 labels int32 [N], in3 weight [C] (HASW) -> loss [N]; R = C, outer = N
@compute @workgroup_size(256)
fn softmax_cross_entropy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let r = linear_id(gid, nwg);
  let n = pu(P_REDUCE_N);
  let c = pu(P_REDUCE_C);
  let s = pf(P_REDUCE_ATTR);
  if (r >= n) { return; }
  let y = label(r, c);
  if (y == c) { dst[r] = 0u; return; }
  let off = r * c;
  let ms = row_shift(off, c);
  var loss = -(1.0 - s) * weight(y) * ((xf(off + y) - ms.x) - ms.y);
  if (s != 0.0) {
    var acc = 0.0;
    for (var k = 0u; k < c; k++) { acc += weight(k) * ((xf(off + k) - ms.x) - ms.y); }
    loss -= (s / f32(c)) * acc;
  }
  dst[r] = bitcast<u32>(loss);
  check_loops();
}

// in0 logits [N, C], in1 labels [N], in2 row gradient [N], in3 weight [C] -> dlogits [N, C]
@compute @workgroup_size(256)
fn softmax_cross_entropy_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let r = linear_id(gid, nwg);
  let n = pu(P_REDUCE_N);
  let c = pu(P_REDUCE_C);
  let s = pf(P_REDUCE_ATTR);
  if (r >= n) { return; }
  let y = label(r, c);
  let off = r * c;
  if (y == c) {
    for (var k = 0u; k < c; k++) { dst[off + k] = 0u; }
    check_loops();
    return;
  }
  var W = f32(c);
  if (HASW) {
    W = 0.0;
    for (var k = 0u; k < c; k++) { W += weight(k); }
  }
  let ms = row_shift(off, c);
  let g = bitcast<f32>(in2[r]);
  let hard = (1.0 - s) * weight(y);
  for (var k = 0u; k < c; k++) {
    let p = k_exp((xf(off + k) - ms.x) - ms.y);
    var v = g * (hard * p + (s / f32(c)) * (p * W - weight(k)));
    if (k == y) { v -= g * hard; }
    dst[off + k] = bitcast<u32>(v);
  }
  check_loops();
}

// ---- Row kernels (softmax with inner == 1, cross-entropy) for rows of SEG values or more: SEG invocations per row
// and WG / SEG rows per workgroup, as CUDA's warp per row. The lanes stride over the row, then combine their
// values as a tree over sv in a fixed order: seg_step does one level, the entry point holds the barriers (Mesa's
// GLES path, which CI runs, did not order workgroup memory across barriers inside a called function). One
// invocation per row walked each row alone three times: a batch of 128 rows was half a workgroup on the whole GPU.
const SEG: u32 = 32u;
var<workgroup> sv: array<vec2<f32>, 256>;

// one level of a row's tree: lane l < h takes lane l + h's pair, by max (mx) or by sum
fn seg_step(lid: u32, h: u32, mx: bool) {
  if (lid % SEG < h) {
    let a = sv[lid];
    let b = sv[lid + h];
    sv[lid] = select(a + b, max(a, b), mx);
  }
}

fn seg_row(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 { return (wid.x + wid.y * nwg.x) * (WG / SEG) + lid / SEG; }

// this lane's (max with NaN ignored, 1 if it saw a NaN) over its share of the c values at off
fn lane_max(off: u32, c: u32, lane: u32, live: bool) -> vec2<f32> {
  var m = -f_inf();
  var nan = 0.0;
  if (live) {
    for (var k = lane; k < c; k += SEG) {
      let v = xf(off + k);
      if (is_nan(v)) { nan = 1.0; }
      if (v > m) { m = v; }
    }
  }
  return vec2(m, nan);
}

// this lane's sum of exp(x - m) over its share of the c values at off
fn lane_exp(off: u32, c: u32, lane: u32, live: bool, m: f32) -> f32 {
  var s = 0.0;
  if (live) {
    for (var k = lane; k < c; k += SEG) { s += k_exp(xf(off + k) - m); }
  }
  return s;
}

// softmax / logSoftmax of rows (inner == 1) of R values
@compute @workgroup_size(256)
fn softmax_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = seg_row(wid, nwg, lid);
  let lane = lid % SEG;
  let n = pu(P_REDUCE_R);
  let live = row < pu(P_REDUCE_OUTER);
  let base = row * n;
  sv[lid] = lane_max(base, n, lane, live);
  workgroupBarrier();
  for (var h = SEG / 2u; h > 0u; h = h >> 1u) { seg_step(lid, h, true); workgroupBarrier(); }
  var m = sv[lid - lane].x;
  workgroupBarrier();
  if (m == -f_inf()) { m = 0.0; }
  sv[lid] = vec2(lane_exp(base, n, lane, live, m), 0.0);  // NaN values propagate through exp into s
  workgroupBarrier();
  for (var h = SEG / 2u; h > 0u; h = h >> 1u) { seg_step(lid, h, false); workgroupBarrier(); }
  let s = sv[lid - lane].x;
  if (!live) { check_loops(); return; }
  let ls = k_log(s);
  for (var k = lane; k < n; k += SEG) {
    let i = base + k;
    if (LOG) { dst[i] = bitcast<u32>((xf(i) - m) - ls); } else { dst[i] = bitcast<u32>(k_exp(xf(i) - m) / s); }
  }
  check_loops();
}

// softmax_cross_entropy for rows of C >= SEG classes. The forward and backward share their first two trees but stay
// two entry points: one entry with the direction as an override constant read wrong sums on Mesa's llvmpipe in
// lanes past the first 8 of a row after the second tree (CI's webgpu), though it passes WGSL's uniformity rules.
@compute @workgroup_size(256)
fn softmax_cross_entropy_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                              @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = seg_row(wid, nwg, lid);
  let lane = lid % SEG;
  let c = pu(P_REDUCE_C);
  let sm = pf(P_REDUCE_ATTR);
  let exists = row < pu(P_REDUCE_N);
  var y = c;
  if (exists) { y = label(row, c); }
  let live = y != c;  // the row exists and its label is in range
  let off = row * c;
  sv[lid] = lane_max(off, c, lane, live);
  workgroupBarrier();
  for (var h = SEG / 2u; h > 0u; h = h >> 1u) { seg_step(lid, h, true); workgroupBarrier(); }
  let mn = sv[lid - lane];
  workgroupBarrier();
  let m = select(mn.x, 0.0, mn.x == -f_inf());
  sv[lid] = vec2(lane_exp(off, c, lane, live, m), 0.0);
  workgroupBarrier();
  for (var h = SEG / 2u; h > 0u; h = h >> 1u) { seg_step(lid, h, false); workgroupBarrier(); }
  var ls = k_log(sv[lid - lane].x);
  workgroupBarrier();
  if (mn.y > 0.0) { ls = f_nan(); }
  var acc = 0.0;
  if (live && sm != 0.0) {
    for (var k = lane; k < c; k += SEG) { acc += weight(k) * ((xf(off + k) - m) - ls); }
  }
  sv[lid] = vec2(acc, 0.0);
  workgroupBarrier();
  for (var h = SEG / 2u; h > 0u; h = h >> 1u) { seg_step(lid, h, false); workgroupBarrier(); }
  if (lane != 0u || !exists) { check_loops(); return; }
  if (!live) { dst[row] = 0u; check_loops(); return; }
  var loss = -(1.0 - sm) * weight(y) * ((xf(off + y) - m) - ls);
  if (sm != 0.0) { loss -= (sm / f32(c)) * sv[lid].x; }
  dst[row] = bitcast<u32>(loss);
  check_loops();
}

// softmax_cross_entropy_backward for rows of C >= SEG classes
@compute @workgroup_size(256)
fn softmax_cross_entropy_backward_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                                       @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = seg_row(wid, nwg, lid);
  let lane = lid % SEG;
  let c = pu(P_REDUCE_C);
  let sm = pf(P_REDUCE_ATTR);
  let exists = row < pu(P_REDUCE_N);
  var y = c;
  if (exists) { y = label(row, c); }
  let live = y != c;
  let off = row * c;
  sv[lid] = lane_max(off, c, lane, live);
  workgroupBarrier();
  for (var h = SEG / 2u; h > 0u; h = h >> 1u) { seg_step(lid, h, true); workgroupBarrier(); }
  let mn = sv[lid - lane];
  workgroupBarrier();
  let m = select(mn.x, 0.0, mn.x == -f_inf());
  // the sum of exp(x - m), and of the class weights (HASW)
  var w = 0.0;
  if (HASW && live) {
    for (var k = lane; k < c; k += SEG) { w += weight(k); }
  }
  sv[lid] = vec2(lane_exp(off, c, lane, live, m), w);
  workgroupBarrier();
  for (var h = SEG / 2u; h > 0u; h = h >> 1u) { seg_step(lid, h, false); workgroupBarrier(); }
  let sw = sv[lid - lane];
  if (!exists) { check_loops(); return; }
  if (!live) {
    for (var k = lane; k < c; k += SEG) { dst[off + k] = 0u; }
    check_loops();
    return;
  }
  var ls = k_log(sw.x);
  if (mn.y > 0.0) { ls = f_nan(); }
  let W = select(f32(c), sw.y, HASW);
  let g = bitcast<f32>(in2[row]);
  let hard = (1.0 - sm) * weight(y);
  for (var k = lane; k < c; k += SEG) {
    let p = k_exp((xf(off + k) - m) - ls);
    var v = g * (hard * p + (sm / f32(c)) * (p * W - weight(k)));
    if (k == y) { v -= g * hard; }
    dst[off + k] = bitcast<u32>(v);
  }
  check_loops();
}

// ---- NaN-ignoring column kernels over x [N, F] (in0): a workgroup per column, its invocations striding over
// the rows, partial results combined in workgroup memory. Params: P_REDUCE_N, _F (and _ATTR = q for quantiles).
var<workgroup> col_lo: array<f32, 256>;
var<workgroup> col_hi: array<f32, 256>;

// count, mean, population variance, min, max -> [5, F]: count/sum/min/max partials and a fixed-order tree, then
// the squared deviations from the mean the same way
@compute @workgroup_size(256)
fn nan_column_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                    @builtin(num_workgroups) nwg: vec3<u32>) {
  let j = wid.x + wid.y * nwg.x;
  let n = pu(P_REDUCE_N);
  let f = pu(P_REDUCE_F);
  let live = j < f;
  var cnt = 0u;
  var sum = 0.0;
  var lo = f_inf();
  var hi = -f_inf();
  if (live) {
    for (var i = lid; i < n; i += WG) {
      let v = xf(i * f + j);
      if (!is_nan(v)) { cnt++; sum += v; lo = min(lo, v); hi = max(hi, v); }
    }
  }
  si[lid] = i32(cnt);
  sf[lid] = sum;
  col_lo[lid] = lo;
  col_hi[lid] = hi;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    if (lid < s) {
      si[lid] += si[lid + s];
      sf[lid] += sf[lid + s];
      col_lo[lid] = min(col_lo[lid], col_lo[lid + s]);
      col_hi[lid] = max(col_hi[lid], col_hi[lid + s]);
    }
    workgroupBarrier();
  }
  let total = u32(si[0]);
  let mean = sf[0] / f32(total);
  var ss = 0.0;
  if (live) {
    for (var i = lid; i < n; i += WG) {
      let v = xf(i * f + j);
      if (!is_nan(v)) { ss += (v - mean) * (v - mean); }
    }
  }
  workgroupBarrier();
  sf[lid] = ss;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    if (lid < s) { sf[lid] += sf[lid + s]; }
    workgroupBarrier();
  }
  if (lid != 0u || !live) { check_loops(); return; }
  dst[j] = bitcast<u32>(f32(total));
  if (total == 0u) {
    for (var k = 1u; k < 5u; k++) { dst[k * f + j] = NAN_BITS; }
    check_loops();
    return;
  }
  dst[f + j] = bitcast<u32>(mean);
  dst[2u * f + j] = bitcast<u32>(sf[0] / f32(total));
  dst[3u * f + j] = bitcast<u32>(col_lo[0]);
  dst[4u * f + j] = bitcast<u32>(col_hi[0]);
  check_loops();
}

// A float's bits as an unsigned key in the float order (-0 just before +0); NaN never gets here.
fn order_key(v: f32) -> u32 {
  let b = bitcast<u32>(v);
  if ((b & 0x80000000u) != 0u) { return ~b; }
  return b | 0x80000000u;
}
fn key_value(k: u32) -> f32 {
  if ((k & 0x80000000u) != 0u) { return bitcast<f32>(k & 0x7fffffffu); }
  return bitcast<f32>(~k);
}

var<workgroup> qhist: array<atomic<u32>, 256>;
var<workgroup> qcount: atomic<u32>;
var<workgroup> qmin: atomic<u32>;
var<workgroup> qpick: array<u32, 3>;

// quantile q (linear interpolation between order statistics at q * (len - 1)) of each column's non-NaN values
// -> [F]: the rank-k value is selected by its key 8 bits at a time (a 256-bin histogram of the values that share
// the bits chosen so far, then the bin holding rank k), so the column is read 6 times and never sorted
@compute @workgroup_size(256)
fn nan_quantile(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                @builtin(num_workgroups) nwg: vec3<u32>) {
  let j = wid.x + wid.y * nwg.x;
  let n = pu(P_REDUCE_N);
  let f = pu(P_REDUCE_F);
  let q = pf(P_REDUCE_ATTR);
  let live = j < f;
  var c = 0u;
  if (live) {
    for (var i = lid; i < n; i += WG) { if (!is_nan(xf(i * f + j))) { c++; } }
  }
  if (lid == 0u) { atomicStore(&qcount, 0u); atomicStore(&qmin, 0xffffffffu); }
  workgroupBarrier();
  atomicAdd(&qcount, c);
  workgroupBarrier();
  let len = atomicLoad(&qcount);
  let pos = q * f32(max(len, 1u) - 1u);
  let k = u32(floor(pos));
  let frac = pos - f32(k);
  var prefix = 0u; // the key bits chosen so far
  var rank = k; // rank still to find among the values that share them
  var same = 0u; // how many values share them
  for (var step = 0u; step < 4u; step++) {
    let shift = 24u - 8u * step;
    let fixed = ~(0xffffffffu >> (8u * step)); // the bits chosen in earlier passes
    atomicStore(&qhist[lid], 0u);
    workgroupBarrier();
    if (live) {
      for (var i = lid; i < n; i += WG) {
        let v = xf(i * f + j);
        if (!is_nan(v)) {
          let key = order_key(v);
          if ((key & fixed) == prefix) { atomicAdd(&qhist[(key >> shift) & 255u], 1u); }
        }
      }
    }
    workgroupBarrier();
    if (lid == 0u) {
      var r = rank;
      var bin = 0u;
      loop {
        let m = atomicLoad(&qhist[bin]);
        if (r < m || bin == 255u) {
          qpick[1] = m;
          break;
        }
        r -= m;
        bin++;
      }
      qpick[0] = bin;
      qpick[2] = r;
    }
    workgroupBarrier();
    prefix = prefix | (qpick[0] << shift);
    same = qpick[1];
    rank = qpick[2];
  }
  // the next order statistic: the same value while the run of equal keys lasts, else the least key above it
  let next_above = frac != 0.0 && rank + 1u >= same;
  if (live && next_above) {
    var m = 0xffffffffu;
    for (var i = lid; i < n; i += WG) {
      let v = xf(i * f + j);
      if (!is_nan(v)) {
        let key = order_key(v);
        if (key > prefix) { m = min(m, key); }
      }
    }
    atomicMin(&qmin, m);
  }
  workgroupBarrier();
  if (lid != 0u || !live) { check_loops(); return; }
  if (len == 0u) {
    dst[j] = NAN_BITS;
    check_loops();
    return;
  }
  var v = key_value(prefix);
  if (frac != 0.0) {
    var w = v;
    if (next_above) { w = key_value(atomicLoad(&qmin)); }
    v = v + (w - v) * frac;
  }
  dst[j] = bitcast<u32>(v);
  check_loops();
}

// two 32-bit hashes of each row of [N, F] (float32 bits, every NaN alike) -> int32 [N, 2]. Params: P_REDUCE_N, _F
@compute @workgroup_size(256)
fn row_hash(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear_id(gid, nwg);
  let n = pu(P_REDUCE_N);
  let f = pu(P_REDUCE_F);
  if (i >= n) { return; }
  var h1 = 0x811c9dc5u ^ f;
  var h2 = 0x9e3779b9u;
  for (var k = i * f; k < (i + 1u) * f; k++) {
    var v = in0[k];
    if ((v & 0x7f800000u) == 0x7f800000u && (v & 0x7fffffu) != 0u) { v = 0x7fc00000u; }
    h1 = (h1 ^ v) * 0x01000193u;
    h2 = (h2 ^ v) * 0x5bd1e995u;
    h2 = h2 ^ (h2 >> 13u);
  }
  dst[2u * i] = h1;
  dst[2u * i + 1u] = h2;
  check_loops();
}

// ---- fused layer normalisation over rows of x [R, C] (in0); P_REDUCE_N = R, _C = C, _ATTR = eps (f32 bits).
// HASW: affine, weight in in1 and bias in in2 (forward) or weight in in2 (backward, dy in in1).
fn ln_stats(off: u32, c: u32) -> vec2<f32> {
  var s = 0.0;
  for (var k = 0u; k < c; k++) { s += xf(off + k); }
  let mu = s / f32(c);
  var v = 0.0;
  for (var k = 0u; k < c; k++) {
    let d = xf(off + k) - mu;
    v += d * d;
  }
  return vec2<f32>(mu, inverseSqrt(v / f32(c) + pf(P_REDUCE_ATTR)));
}

@compute @workgroup_size(256)
fn layer_norm(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let r = linear_id(gid, nwg);
  let c = pu(P_REDUCE_C);
  if (r >= pu(P_REDUCE_N)) { return; }
  let st = ln_stats(r * c, c);
  for (var k = 0u; k < c; k++) {
    var y = (xf(r * c + k) - st.x) * st.y;
    if (HASW) { y = y * bitcast<f32>(in1[k]) + bitcast<f32>(in2[k]); }
    dst[r * c + k] = bitcast<u32>(y);
  }
  check_loops();
}

// dx per row; each row's mean and 1/std go to work[2 r], work[2 r + 1] for the column pass
@compute @workgroup_size(256)
fn layer_norm_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let r = linear_id(gid, nwg);
  let c = pu(P_REDUCE_C);
  if (r >= pu(P_REDUCE_N)) { return; }
  let st = ln_stats(r * c, c);
  work[2u * r] = st.x;
  work[2u * r + 1u] = st.y;
  var m1 = 0.0;
  var m2 = 0.0;
  for (var k = 0u; k < c; k++) {
    var dxh = bitcast<f32>(in1[r * c + k]);
    if (HASW) { dxh *= bitcast<f32>(in2[k]); }
    m1 += dxh;
    m2 += dxh * (xf(r * c + k) - st.x) * st.y;
  }
  m1 /= f32(c);
  m2 /= f32(c);
  for (var k = 0u; k < c; k++) {
    var dxh = bitcast<f32>(in1[r * c + k]);
    if (HASW) { dxh *= bitcast<f32>(in2[k]); }
    let xh = (xf(r * c + k) - st.x) * st.y;
    dst[r * c + k] = bitcast<u32>(st.y * (dxh - m1 - xh * m2));
  }
  check_loops();
}

// ---- layer_norm and its backward for rows of C >= SEG values. layer_norm_stats_rows gives each row SEG lanes
// (WG / SEG rows a workgroup, as softmax_rows) and writes its mean and 1/std to work[2 r], work[2 r + 1]: the
// row's sum, then its sum of squared deviations from the mean, each a tree over sv in a fixed order (the barriers
// stay in the entry point, see softmax_rows). layer_norm_apply then normalises an element an invocation, and
// layer_norm_backward_rows combines the row's means of dxh and dxh * xh with a third tree.

// this lane's (sum of x, 0) over its share of the c values at off, or with mu: (sum of (x - mu)^2, 0)
fn lane_moment(off: u32, c: u32, lane: u32, live: bool, mu: f32, centred: bool) -> vec2<f32> {
  var s = 0.0;
  if (live) {
    for (var k = lane; k < c; k += SEG) {
      let d = xf(off + k) - mu;
      s += select(d, d * d, centred);
    }
  }
  return vec2(s, 0.0);
}

@compute @workgroup_size(256)
fn layer_norm_stats_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                         @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = seg_row(wid, nwg, lid);
  let lane = lid % SEG;
  let c = pu(P_REDUCE_C);
  let live = row < pu(P_REDUCE_N);
  let off = row * c;
  sv[lid] = lane_moment(off, c, lane, live, 0.0, false);
  workgroupBarrier();
  for (var h = SEG / 2u; h > 0u; h = h >> 1u) { seg_step(lid, h, false); workgroupBarrier(); }
  let mu = sv[lid - lane].x / f32(c);
  workgroupBarrier();
  sv[lid] = lane_moment(off, c, lane, live, mu, true);
  workgroupBarrier();
  for (var h = SEG / 2u; h > 0u; h = h >> 1u) { seg_step(lid, h, false); workgroupBarrier(); }
  if (live && lane == 0u) {
    work[2u * row] = mu;
    work[2u * row + 1u] = inverseSqrt(sv[lid].x / f32(c) + pf(P_REDUCE_ATTR));
  }
  check_loops();
}

// y = (x - mean) / std [* weight + bias], an invocation per element, from the statistics in work
@compute @workgroup_size(256)
fn layer_norm_apply(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear_id(gid, nwg);
  let c = pu(P_REDUCE_C);
  if (i >= pu(P_REDUCE_N) * c) { return; }
  let r = i / c;
  var y = (xf(i) - work[2u * r]) * work[2u * r + 1u];
  if (HASW) { y = y * bitcast<f32>(in1[i % c]) + bitcast<f32>(in2[i % c]); }
  dst[i] = bitcast<u32>(y);
}

// dx for rows of C >= SEG values (dy in in1, weight in in2), after layer_norm_stats_rows filled work
@compute @workgroup_size(256)
fn layer_norm_backward_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                            @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = seg_row(wid, nwg, lid);
  let lane = lid % SEG;
  let c = pu(P_REDUCE_C);
  let live = row < pu(P_REDUCE_N);
  let off = row * c;
  var mu = 0.0;
  var rs = 0.0;
  var m = vec2(0.0, 0.0);  // this lane's sums of dxh and dxh * xh
  if (live) {
    mu = work[2u * row];
    rs = work[2u * row + 1u];
    for (var k = lane; k < c; k += SEG) {
      var dxh = bitcast<f32>(in1[off + k]);
      if (HASW) { dxh *= bitcast<f32>(in2[k]); }
      m += vec2(dxh, dxh * (xf(off + k) - mu) * rs);
    }
  }
  sv[lid] = m;
  workgroupBarrier();
  for (var h = SEG / 2u; h > 0u; h = h >> 1u) { seg_step(lid, h, false); workgroupBarrier(); }
  let mm = sv[lid - lane] / f32(c);
  if (!live) { check_loops(); return; }
  for (var k = lane; k < c; k += SEG) {
    var dxh = bitcast<f32>(in1[off + k]);
    if (HASW) { dxh *= bitcast<f32>(in2[k]); }
    let xh = (xf(off + k) - mu) * rs;
    dst[off + k] = bitcast<u32>(rs * (dxh - mm.x - xh * mm.y));
  }
  check_loops();
}

// dweight and dbias, after the dx pass filled work with the row statistics: 32 adjacent columns a workgroup
// (as softmax_cols), its 8 groups of 32 taking every 8th row; each column's partial sums are added in group order
@compute @workgroup_size(256)
fn layer_norm_backward_params(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                              @builtin(num_workgroups) nwg: vec3<u32>) {
  let n = pu(P_REDUCE_N);
  let c = pu(P_REDUCE_C);
  let k = (wid.x + wid.y * nwg.x) * 32u + lid % 32u;
  let live = k < c;
  var acc = vec2(0.0, 0.0);  // (dweight, dbias) over this group's rows
  if (live) {
    for (var r = lid / 32u; r < n; r += 8u) {
      let gy = bitcast<f32>(in1[r * c + k]);
      acc += vec2(gy * (xf(r * c + k) - work[2u * r]) * work[2u * r + 1u], gy);
    }
  }
  sv[lid] = acc;
  workgroupBarrier();
  if (!live || lid >= 32u) { check_loops(); return; }
  var t = sv[lid];
  for (var p = 1u; p < 8u; p++) { t += sv[p * 32u + lid]; }
  dst[n * c + k] = bitcast<u32>(t.x);
  dst[n * c + c + k] = bitcast<u32>(t.y);
  check_loops();
}
