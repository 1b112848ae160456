// Conv family, NCHW, float32, contiguous: conv2d and its two backward kernels, max/avg pooling and their
// backward kernels. Every kernel is written in gather form (one invocation per output element, summing what
// flows into it; a workgroup per weight for the weight gradient), so there are no atomics and results are
// deterministic.
// Params (P_CONV_*, src/backends/webgpu/params.ts): the geometry N, C, H, W, O, kh, kw, OH, OW, then the conv
// attribute group (stride, pad, dilation, groups at P_CONV_ATTRS + ATTR_CONV_*), then countIncludePad.

@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<storage, read> in0: array<f32>;
@group(0) @binding(3) var<storage, read> in1: array<f32>;
// max pooling's window argmax: written by pool2d_argmax, read by max_pool2d_backward
@group(0) @binding(4) var<storage, read_write> arg: array<i32>;

struct Geo { N: i32, C: i32, H: i32, W: i32, O: i32, kh: i32, kw: i32, OH: i32, OW: i32, sh: i32, sw: i32, ph: i32, pw: i32, dh: i32, dw: i32, g: i32 }
fn geo() -> Geo {
  return Geo(pi(P_CONV_N), pi(P_CONV_C), pi(P_CONV_H), pi(P_CONV_W), pi(P_CONV_O), pi(P_CONV_KH), pi(P_CONV_KW), pi(P_CONV_OH),
    pi(P_CONV_OW), pi(P_CONV_ATTRS + ATTR_CONV_STRIDE_H), pi(P_CONV_ATTRS + ATTR_CONV_STRIDE_W), pi(P_CONV_ATTRS + ATTR_CONV_PAD_H), pi(P_CONV_ATTRS + ATTR_CONV_PAD_W),
    pi(P_CONV_ATTRS + ATTR_CONV_DILATION_H), pi(P_CONV_ATTRS + ATTR_CONV_DILATION_W), pi(P_CONV_ATTRS + ATTR_CONV_GROUPS));
}

// y[n, o, oh, ow] = sum over c in o's group, i, j of x[n, c, ih, iw] * w[o, c, i, j]
@compute @workgroup_size(256)
fn conv2d(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let q = geo();
  let t = i32(linear_id(gid, nwg));
  if (t >= q.N * q.O * q.OH * q.OW) { return; }
  let ow = t % q.OW;
  let oh = (t / q.OW) % q.OH;
  let o = (t / (q.OW * q.OH)) % q.O;
  let n = t / (q.OW * q.OH * q.O);
  let Cg = q.C / q.g;
  let grp = o / (q.O / q.g);
  // the channels of this dispatch: all of them unless a loop cap cut them into windows that add onto dst in turn
  let c0 = pi(P_CONV_WIN_LO);
  var acc = 0.0;
  for (var c = c0; c < min(Cg, pi(P_CONV_WIN_HI)); c++) {
    for (var i = 0; i < q.kh; i++) {
      let ih = oh * q.sh - q.ph + i * q.dh;
      if (ih < 0 || ih >= q.H) { continue; }
      for (var j = 0; j < q.kw; j++) {
        let iw = ow * q.sw - q.pw + j * q.dw;
        if (iw < 0 || iw >= q.W) { continue; }
        acc += in0[((n * q.C + grp * Cg + c) * q.H + ih) * q.W + iw] * in1[((o * Cg + c) * q.kh + i) * q.kw + j];
      }
    }
  }
  if (c0 > 0) { acc = dst[t] + acc; }
  dst[t] = acc;
  check_loops();
}

// dx[n, c, ih, iw] = sum over the outputs this input feeds of gy * w; in0 = gy [N, O, OH, OW], in1 = w
@compute @workgroup_size(256)
fn conv2d_backward_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let q = geo();
  let t = i32(linear_id(gid, nwg));
  if (t >= q.N * q.C * q.H * q.W) { return; }
  let iw = t % q.W;
  let ih = (t / q.W) % q.H;
  let c = (t / (q.W * q.H)) % q.C;
  let n = t / (q.W * q.H * q.C);
  let Cg = q.C / q.g;
  let Og = q.O / q.g;
  let grp = c / Cg;
  let cl = c % Cg;
  let o0 = pi(P_CONV_WIN_LO);  // the output channels of this dispatch, as conv2d's input channels
  var acc = 0.0;
  for (var ol = o0; ol < min(Og, pi(P_CONV_WIN_HI)); ol++) {
    let o = grp * Og + ol;
    for (var i = 0; i < q.kh; i++) {
      let a = ih + q.ph - i * q.dh;
      if (a < 0 || a % q.sh != 0) { continue; }
      let oh = a / q.sh;
      if (oh >= q.OH) { continue; }
      for (var j = 0; j < q.kw; j++) {
        let b = iw + q.pw - j * q.dw;
        if (b < 0 || b % q.sw != 0) { continue; }
        let ow = b / q.sw;
        if (ow >= q.OW) { continue; }
        acc += in0[((n * q.O + o) * q.OH + oh) * q.OW + ow] * in1[((o * Cg + cl) * q.kh + i) * q.kw + j];
      }
    }
  }
  if (o0 > 0) { acc = dst[t] + acc; }
  dst[t] = acc;
  check_loops();
}

var<workgroup> wsum: array<f32, 256>;

// dw[o, c, i, j] = sum over n, oh, ow of x * gy; in0 = x [N, C, H, W], in1 = gy [N, O, OH, OW]. A workgroup per
// weight: its invocations stride over the N * OH * OW positions (consecutive invocations, consecutive ow), then
// add their sums as a tree in a fixed order. One invocation per weight looped over every position alone (12544
// multiply-adds for a batch of 16 28x28 maps, on a few thousand invocations), long enough for a display GPU's
// watchdog on large batches.
@compute @workgroup_size(256)
fn conv2d_backward_weight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                          @builtin(num_workgroups) nwg: vec3<u32>) {
  let q = geo();
  let Cg = q.C / q.g;
  let t = i32(wid.x + wid.y * nwg.x);
  let live = t < q.O * Cg * q.kh * q.kw;
  var acc = 0.0;
  if (live) {
    let j = t % q.kw;
    let i = (t / q.kw) % q.kh;
    let cl = (t / (q.kw * q.kh)) % Cg;
    let o = t / (q.kw * q.kh * Cg);
    let c = (o / (q.O / q.g)) * Cg + cl;
    // position (n, oh, ow) = lid, lid + WG, ...: divided once, then stepped by WG's own (n, oh, ow) with carries
    let plane = q.OH * q.OW;
    let w = i32(WG);
    let dn = w / plane;
    let doh = (w % plane) / q.OW;
    let dow = w % q.OW;
    // the batch items of this dispatch: all of them unless a loop cap cut them into windows added in turn
    let n1 = min(q.N, pi(P_CONV_WIN_HI));
    var n = n1;  // no positions (an empty batch or map): every weight's gradient is 0
    if (plane > 0) { n = pi(P_CONV_WIN_LO) + i32(lid) / plane; }
    var oh = (i32(lid) % plane) / q.OW;
    var ow = i32(lid) % q.OW;
    while (n < n1) {
      let ih = oh * q.sh - q.ph + i * q.dh;
      let iw = ow * q.sw - q.pw + j * q.dw;
      if (ih >= 0 && ih < q.H && iw >= 0 && iw < q.W) {
        acc += in0[((n * q.C + c) * q.H + ih) * q.W + iw] * in1[((n * q.O + o) * q.OH + oh) * q.OW + ow];
      }
      ow += dow;
      if (ow >= q.OW) { ow -= q.OW; oh += 1; }
      oh += doh;
      if (oh >= q.OH) { oh -= q.OH; n += 1; }
      n += dn;
    }
  }
  wsum[lid] = acc;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    if (lid < s) { wsum[lid] = wsum[lid] + wsum[lid + s]; }
    workgroupBarrier();
  }
  if (lid == 0u && live) {
    var y = wsum[0];
    if (pi(P_CONV_WIN_LO) > 0) { y = dst[t] + y; }
    dst[t] = y;
  }
  check_loops();
}

// pooling: planes = N*C (param 0 holds N*C, 1 unused), windows kh x kw with stride and padding, no dilation.
// The forward and the argmax take the window's rows [P_CONV_WIN_LO, P_CONV_WIN_HI) (all of them unless a loop cap
// cut them into dispatches that carry on from what the last one wrote into dst).

/** The first and the last (exclusive) window row of this dispatch. */
fn win_rows(q: Geo) -> vec2<i32> { return vec2<i32>(pi(P_CONV_WIN_LO), min(q.kh, pi(P_CONV_WIN_HI))); }

/** A max pooling window's scan so far: its NaN-sticky max and the flat input index where it is (-1 for none yet). */
struct Best {
  m: f32,
  at: i32,
}

/**
 * Scans the window's rows r on from b: the max is the first largest value in row-major order or the first NaN, so
 * the forward's value and the argmax the backward reads come from the one rule. A window wholly in the padding
 * keeps b (-inf and -1 from the start).
 */
fn window_best(plane: i32, oh: i32, ow: i32, q: Geo, r: vec2<i32>, b: Best) -> Best {
  var m = b.m;
  var at = b.at;
  for (var i = r.x; i < r.y; i++) {
    let ih = oh * q.sh - q.ph + i;
    if (ih < 0 || ih >= q.H) { continue; }
    for (var j = 0; j < q.kw; j++) {
      let iw = ow * q.sw - q.pw + j;
      if (iw < 0 || iw >= q.W) { continue; }
      let x = (plane * q.H + ih) * q.W + iw;
      let v = in0[x];
      if (at < 0 || (!is_nan(m) && (v > m || is_nan(v)))) { m = v; at = x; }
    }
  }
  return Best(m, at);
}

fn window_count(oh: i32, ow: i32, q: Geo) -> i32 {
  let h0 = max(oh * q.sh - q.ph, 0);
  let h1 = min(oh * q.sh - q.ph + q.kh, q.H);
  let w0 = max(ow * q.sw - q.pw, 0);
  let w1 = min(ow * q.sw - q.pw + q.kw, q.W);
  return max(h1 - h0, 0) * max(w1 - w0, 0);
}

override MAXP: bool = true;  // pool2d: max (true) or average (false)

fn window_sum(plane: i32, oh: i32, ow: i32, q: Geo, r: vec2<i32>) -> f32 {
  var s = 0.0;
  for (var i = r.x; i < r.y; i++) {
    let ih = oh * q.sh - q.ph + i;
    if (ih < 0 || ih >= q.H) { continue; }
    for (var j = 0; j < q.kw; j++) {
      let iw = ow * q.sw - q.pw + j;
      if (iw < 0 || iw >= q.W) { continue; }
      s += in0[(plane * q.H + ih) * q.W + iw];
    }
  }
  return s;
}

/** What average pooling divides a window by: its in-bounds taps, or kh*kw with countIncludePad. */
fn window_div(oh: i32, ow: i32, q: Geo) -> i32 {
  if (pu(P_CONV_INCLUDE_PAD) != 0u) { return q.kh * q.kw; }
  return window_count(oh, ow, q);
}

// max: the NaN-sticky max of the window (-inf for one wholly in the padding); average: the sum over the window's
// rows, divided by window_div in the dispatch that takes its last rows
@compute @workgroup_size(256)
fn pool2d(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let q = geo();
  let t = i32(linear_id(gid, nwg));
  if (t >= q.N * q.OH * q.OW) { return; }
  let plane = t / (q.OH * q.OW);
  let oh = (t / q.OW) % q.OH;
  let ow = t % q.OW;
  let r = win_rows(q);
  if (MAXP) {
    var m = window_best(plane, oh, ow, q, r, Best(-f_inf(), -1)).m;
    if (r.x > 0) {
      let prev = dst[t];
      if (is_nan(prev) || is_nan(m)) { m = f_nan(); } else { m = max(m, prev); }
    }
    dst[t] = m;
    check_loops();
    return;
  }
  var s = window_sum(plane, oh, ow, q, r);
  if (r.x > 0) { s = dst[t] + s; }
  if (r.y >= q.kh) {
    let div = window_div(oh, ow, q);
    s = select(0.0, s / f32(div), div > 0);
  }
  dst[t] = s;
  check_loops();
}

// the flat input index of each max pooling window's max (the first in row-major order, or the first NaN) into
// arg, or -1 for a window wholly in the padding: max pooling's backward reads it instead of searching every
// window each input is in (kh*kw loop turns per window)
@compute @workgroup_size(256)
fn pool2d_argmax(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let q = geo();
  let t = i32(linear_id(gid, nwg));
  if (t >= q.N * q.OH * q.OW) { return; }
  let plane = t / (q.OH * q.OW);
  let oh = (t / q.OW) % q.OH;
  let ow = t % q.OW;
  let r = win_rows(q);
  var b = Best(-f_inf(), -1);
  if (r.x > 0 && arg[t] >= 0) { b = Best(in0[arg[t]], arg[t]); }
  arg[t] = window_best(plane, oh, ow, q, r, b).at;
  check_loops();
}

// the output windows (oh, ow) whose span covers input row ih / column iw
fn first_out(x: i32, p: i32, k: i32, s: i32) -> i32 { return max(0, (x + p - k + s) / s); }

/** The output windows that cover input t of a plane: rows [x, y) and columns [z, w). */
fn covering(t: i32, q: Geo) -> vec4<i32> {
  let ih = (t / q.W) % q.H;
  let iw = t % q.W;
  return vec4<i32>(
    first_out(ih, q.ph, q.kh, q.sh),
    min(q.OH, (ih + q.ph) / q.sh + 1),
    first_out(iw, q.pw, q.kw, q.sw),
    min(q.OW, (iw + q.pw) / q.sw + 1),
  );
}

// dx of max pooling: each input sums the gradients (in0) of the windows whose argmax (arg, from pool2d_argmax)
// it is
@compute @workgroup_size(256)
fn max_pool2d_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let q = geo();
  let t = i32(linear_id(gid, nwg));
  if (t >= q.N * q.H * q.W) { return; }
  let plane = t / (q.H * q.W);
  let c = covering(t, q);
  var acc = 0.0;
  for (var oh = c.x; oh < c.y; oh++) {
    for (var ow = c.z; ow < c.w; ow++) {
      let o = (plane * q.OH + oh) * q.OW + ow;
      if (arg[o] == t) { acc += in0[o]; }
    }
  }
  dst[t] = acc;
  check_loops();
}

// dx of average pooling: each input sums the gradients (in0) of the windows it is in, divided like the forward
@compute @workgroup_size(256)
fn avg_pool2d_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let q = geo();
  let t = i32(linear_id(gid, nwg));
  if (t >= q.N * q.H * q.W) { return; }
  let plane = t / (q.H * q.W);
  let c = covering(t, q);
  var acc = 0.0;
  for (var oh = c.x; oh < c.y; oh++) {
    for (var ow = c.z; ow < c.w; ow++) {
      let div = window_div(oh, ow, q);
      if (div > 0) { acc += in0[(plane * q.OH + oh) * q.OW + ow] / f32(div); }
    }
  }
  dst[t] = acc;
  check_loops();
}
