// Random family: counter-based Philox4x32-10, bit-identical to src/backends/js/random.ts and
// native/cpu/random.cc. Invocation b makes block b (counter (hi:lo) + b), i.e. outputs 4b .. 4b+3.
// Params: P_RANDOM_* (n, the Philox key and counter, the distribution's parameters a and b)
//   uniform: a = low, b = high (f32); normal: a = mean, b = std (f32); int: a = low (i32), b = range (u32, 0 = 2^32)

override KIND: u32 = 0u;  // 0 uniform, 1 normal, 2 int
override OUTF: bool = false;  // int values stored as float32

@group(0) @binding(1) var<storage, read_write> dst: array<u32>;

fn mulhi(a: u32, b: u32) -> u32 {
  let aL = a & 0xffffu;
  let aH = a >> 16u;
  let bL = b & 0xffffu;
  let bH = b >> 16u;
  let ll = aL * bL;
  let lh = aL * bH;
  let hl = aH * bL;
  let hh = aH * bH;
  let cross = (ll >> 16u) + (lh & 0xffffu) + (hl & 0xffffu);
  return hh + (lh >> 16u) + (hl >> 16u) + (cross >> 16u);
}

fn philox(c0: u32, c1: u32, key0: u32, key1: u32) -> vec4<u32> {
  var x0 = c0;
  var x1 = c1;
  var x2 = 0u;
  var x3 = 0u;
  var k0 = key0;
  var k1 = key1;
  for (var r = 0u; r < 10u; r++) {
    let hi0 = mulhi(0xd2511f53u, x0);
    let lo0 = 0xd2511f53u * x0;
    let hi1 = mulhi(0xcd9e8d57u, x2);
    let lo1 = 0xcd9e8d57u * x2;
    let n0 = hi1 ^ x1 ^ k0;
    let n2 = hi0 ^ x3 ^ k1;
    x1 = lo1;
    x3 = lo0;
    x0 = n0;
    x2 = n2;
    k0 = k0 + 0x9e3779b9u;
    k1 = k1 + 0xbb67ae85u;
  }
  return vec4<u32>(x0, x1, x2, x3);
}

// -log(u1) for u1 = (u + 1) / 2^32 without losing digits at either end: small u1 from u + 1 itself (exact),
// u1 near 1 from t = 1 - u1 = ~u / 2^32 (also exact before the float32 rounding)
fn neg_log_u1(u: u32) -> f32 {
  if (u < 0x80000000u) { return 22.18070977791825 - k_log(f32(u + 1u)); }
  let t = f32(~u) / 4294967296.0;
  if (t < 1e-3) { return t + t * t * (0.5 + t * (1.0 / 3.0 + t * 0.25)); }
  return -k_log(1.0 - t);
}

@compute @workgroup_size(256)
fn random(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let blk = linear_id(gid, nwg);
  let n = pu(P_RANDOM_N);
  if (blk * 4u >= n) { return; }
  let lo = pu(P_RANDOM_CTR_LO);
  let c0 = lo + blk;
  let c1 = pu(P_RANDOM_CTR_HI) + select(0u, 1u, c0 < lo);
  let u = philox(c0, c1, pu(P_RANDOM_KEY0), pu(P_RANDOM_KEY1));
  var out: vec4<u32>;
  if (KIND == 0u) {
    let a = pf(P_RANDOM_A);
    let b = pf(P_RANDOM_B);
    // float32 arithmetic: within an ulp of the other backends' double-precision lo + (hi - lo) * x
    for (var l = 0u; l < 4u; l++) { out[l] = bitcast<u32>(a + (b - a) * (f32(u[l] >> 8u) / 16777216.0)); }
  } else if (KIND == 1u) {
    for (var q = 0u; q < 2u; q++) {
      let r = sqrt(2.0 * neg_log_u1(u[2u * q]));
      let th = 6.283185307179586 * (f32(u[2u * q + 1u]) / 4294967296.0);
      let sc = k_sincos(th);
      out[2u * q] = bitcast<u32>(pf(P_RANDOM_A) + pf(P_RANDOM_B) * (r * sc.y));
      out[2u * q + 1u] = bitcast<u32>(pf(P_RANDOM_A) + pf(P_RANDOM_B) * (r * sc.x));
    }
  } else {
    let range = pu(P_RANDOM_B);
    for (var l = 0u; l < 4u; l++) {
      var v = u[l];
      if (range != 0u) { v = mulhi(u[l], range); }
      let iv = pi(P_RANDOM_A) + bitcast<i32>(v);
      out[l] = select(bitcast<u32>(iv), bitcast<u32>(f32(iv)), OUTF);
    }
  }
  for (var l = 0u; l < 4u; l++) {
    if (blk * 4u + l < n) { dst[blk * 4u + l] = out[l]; }
  }
}
