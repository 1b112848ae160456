// Quant family: int8 linear y = dequant(quant_u8(x) . wq^T) * wscale + bias (the rules of native/cpu/quant.cc):
// x is quantized per row to uint8 with (xScale, xZero), or from the row's range when xScale = 0 (dynamic), with
// round half to even; int8 weights [N, K] are packed four to a word; products accumulate exactly in int32.
// Pass 1 (quantize_rows): one invocation per row writes the row's uint8 codes (one per word) and its scale and
// zero point. Pass 2 (qlinear): one invocation per output.
// int8 convolution: pass 1 quantizes each image as one row (M = N images, K = C*H*W); qconv2d_int8 then sums,
// per output, (code - zero) * w over the in-bounds taps (padding stands for 0), exact in int32; with POOL = k > 1
// an invocation computes a k x k window of outputs and writes their max (NaN wins, as in max_pool2d).
// Params: P_QLINEAR_* (M, K, N, the offsets of x, w, wscale and bias; f32 xScale, xZero; for the convolution
// C, H, W, O, kh, kw, OH, OW and the conv attribute group at P_QLINEAR_CONV_ATTRS + ATTR_CONV_*)

override HASB: bool = false;
override RELU: bool = false;
override POOL: i32 = 1;

@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<storage, read> xin: array<f32>;
@group(0) @binding(3) var<storage, read> wq: array<u32>;
@group(0) @binding(4) var<storage, read> wsc: array<f32>;
@group(0) @binding(5) var<storage, read> bias: array<f32>;
@group(0) @binding(6) var<storage, read_write> codes: array<u32>;  // [M, K] codes, then [M] scales, [M] zeros

fn rint(v: f32) -> f32 {
  // round half to even (WGSL's round() is specified that way; spelled out so no driver can differ)
  let f = floor(v);
  let d = v - f;
  if (d > 0.5) { return f + 1.0; }
  if (d < 0.5) { return f; }
  return select(f + 1.0, f, (i32(f) & 1) == 0);
}

@compute @workgroup_size(256)
fn quantize_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear_id(gid, nwg);
  let M = pu(P_QLINEAR_M);
  let K = pu(P_QLINEAR_K);
  if (i >= M) { return; }
  let xo = pu(P_QLINEAR_X_OFFSET) + i * K;
  var mn = 0.0;
  var mx = 0.0;
  for (var k = 0u; k < K; k++) {
    let v = xin[xo + k];
    if (is_nan(v) || is_inf(v)) { report(FLAG_QUANT_NAN, i * K + k, 0, 0u, 0u); }
    mn = min(mn, v);
    mx = max(mx, v);
  }
  var s = pf(P_QLINEAR_X_SCALE);
  var z = pf(P_QLINEAR_X_ZERO);
  if (s == 0.0) {
    let range = mx - mn;
    if (range == 0.0) {
      s = 1.0;
      z = 0.0;
    } else {
      s = range / 255.0;
      z = clamp(rint(-mn / s), 0.0, 255.0);
    }
  }
  let inv = 1.0 / s;
  for (var k = 0u; k < K; k++) {
    codes[i * K + k] = u32(clamp(rint(xin[xo + k] * inv) + z, 0.0, 255.0));
  }
  codes[M * K + i] = bitcast<u32>(s);
  codes[M * K + M + i] = bitcast<u32>(z);
  check_loops();
}

@compute @workgroup_size(256)
fn qlinear_int8(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = linear_id(gid, nwg);
  let M = pu(P_QLINEAR_M);
  let K = pu(P_QLINEAR_K);
  let N = pu(P_QLINEAR_N);
  if (t >= M * N) { return; }
  let i = t / N;
  let j = t % N;
  let wo = pu(P_QLINEAR_W_OFFSET) + j * K;
  var acc = 0;
  var wsum = 0;
  for (var k = 0u; k < K; k++) {
    let e = wo + k;
    let w = sext8((wq[e >> 2u] >> ((e & 3u) * 8u)) & 0xffu);
    acc += i32(codes[i * K + k]) * w;
    wsum += w;
  }
  let s = bitcast<f32>(codes[M * K + i]);
  let z = i32(bitcast<f32>(codes[M * K + M + i]));
  var y = f32(acc - z * wsum) * s * wsc[pu(P_QLINEAR_WS_OFFSET) + j];
  if (HASB) { y += bias[pu(P_QLINEAR_BIAS_OFFSET) + j]; }
  dst[t] = y;
  check_loops();
}

@compute @workgroup_size(256)
fn qconv2d_int8(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = i32(linear_id(gid, nwg));
  let N = pi(P_QLINEAR_M);
  let C = pi(P_QLINEAR_CONV_C);
  let H = pi(P_QLINEAR_CONV_H);
  let W = pi(P_QLINEAR_CONV_W);
  let O = pi(P_QLINEAR_CONV_O);
  let kh = pi(P_QLINEAR_CONV_KH);
  let kw = pi(P_QLINEAR_CONV_KW);
  let OH = pi(P_QLINEAR_CONV_OH);
  let OW = pi(P_QLINEAR_CONV_OW);
  let sh = pi(P_QLINEAR_CONV_ATTRS + ATTR_CONV_STRIDE_H);
  let sw = pi(P_QLINEAR_CONV_ATTRS + ATTR_CONV_STRIDE_W);
  let ph = pi(P_QLINEAR_CONV_ATTRS + ATTR_CONV_PAD_H);
  let pw = pi(P_QLINEAR_CONV_ATTRS + ATTR_CONV_PAD_W);
  let dh = pi(P_QLINEAR_CONV_ATTRS + ATTR_CONV_DILATION_H);
  let dw = pi(P_QLINEAR_CONV_ATTRS + ATTR_CONV_DILATION_W);
  let PH = OH / POOL;
  let PW = OW / POOL;
  if (t >= N * O * PH * PW) { return; }
  let pc = t % PW;
  let pr = (t / PW) % PH;
  let o = (t / (PW * PH)) % O;
  let n = t / (PW * PH * O);
  let K = C * H * W;
  let z = i32(bitcast<f32>(codes[u32(N * K + N + n)]));
  let wo = pu(P_QLINEAR_W_OFFSET) + u32(o * C * kh * kw);
  let sc = bitcast<f32>(codes[u32(N * K + n)]) * wsc[pu(P_QLINEAR_WS_OFFSET) + u32(o)];
  var m = 0.0;
  for (var wi = 0; wi < POOL; wi++) {
    for (var wj = 0; wj < POOL; wj++) {
      let oh = pr * POOL + wi;
      let ow = pc * POOL + wj;
      var acc = 0;
      for (var c = 0; c < C; c++) {
        for (var i = 0; i < kh; i++) {
          let ih = oh * sh - ph + i * dh;
          if (ih < 0 || ih >= H) { continue; }
          for (var j = 0; j < kw; j++) {
            let iw = ow * sw - pw + j * dw;
            if (iw < 0 || iw >= W) { continue; }
            let e = wo + u32((c * kh + i) * kw + j);
            let w = sext8((wq[e >> 2u] >> ((e & 3u) * 8u)) & 0xffu);
            acc += (i32(codes[u32(n * K + (c * H + ih) * W + iw)]) - z) * w;
          }
        }
      }
      var y = f32(acc) * sc;
      if (HASB) { y += bias[pu(P_QLINEAR_BIAS_OFFSET) + u32(o)]; }
      if (RELU && !is_nan(y) && y < 0.0) { y = 0.0; }  // NaN stays NaN, as in MAP_RELU
      // the first output, or a greater one, or a NaN (then kept)
      if ((wi == 0 && wj == 0) || (!is_nan(m) && (y > m || is_nan(y)))) { m = y; }
    }
  }
  dst[t] = m;
  check_loops();
}
