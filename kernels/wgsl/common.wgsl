// Shared by every kiln WGSL kernel: the worker prepends tables.wgsl and this file to each family's file.
//
// Every buffer is bound as raw 32-bit words (array<u32>); a tensor of a narrower dtype packs 2 (float16,
// bfloat16) or 4 (int8, uint8, bool) elements per word, little-endian, exactly like host memory. Kernels decode
// elements with the helpers below, so one shader serves every dtype, and conversions are bit-exact twins of
// src/tensor/dtype.ts (round half to even, saturating float -> int, NaN -> 0 for ints, NaN != 0 for bool).
// NaN is detected from the bits, never with x != x, which a fast-math compiler may fold away.

// Each dispatch's parameters: 128 words, read as u32, i32 or f32 by index (layouts are listed per kernel).
struct Params { p: array<vec4<u32>, 32> }
@group(0) @binding(0) var<uniform> P: Params;
fn pu(i: u32) -> u32 { return P.p[i >> 2u][i & 3u]; }
fn pi(i: u32) -> i32 { return bitcast<i32>(pu(i)); }
fn pf(i: u32) -> f32 { return bitcast<f32>(pu(i)); }

// Bad data only the GPU can see (an index or label out of range, NaN into int8 quantization) is reported here:
// 8 words per kind: [set, position + 1, value, bound, extra] of the first bad element a thread claimed. The
// worker reads and clears them with every read, and the host throws the user's ArgumentError then.
@group(0) @binding(15) var<storage, read_write> flags: array<atomic<u32>>;
fn report(kind: u32, pos: u32, value: i32, bound: u32, extra: u32) {
  let b = kind * 8u;
  atomicOr(&flags[b], 1u);
  if (atomicCompareExchangeWeak(&flags[b + 1u], 0u, pos + 1u).exchanged) {
    atomicStore(&flags[b + 2u], bitcast<u32>(value));
    atomicStore(&flags[b + 3u], bound);
    atomicStore(&flags[b + 4u], extra);
  }
}

// Mesa's llvmpipe (the adapter of machines without a GPU) ends an invocation's loops after 65535 turns, one budget
// for all of its loops, and the invocation goes on with what they had computed: a long loop gives a wrong result and
// no error. On that adapter the worker writes the entry point's code (1-based) to P_COMMON_LOOP_CHECK, 0 elsewhere.
// Every entry point whose loops run a data-dependent number of turns ends with check_loops() (and calls it before
// any return that follows its loops): a loop of two turns, cut short only when the budget is spent, which puts the
// code in the flag words after the kinds'; the host throws a BackendError naming the kernel when it next reads.
// Only entry points call it (the worker binds the flag buffer for those whose text does).
fn check_loops() {
  let code = pu(P_COMMON_LOOP_CHECK);
  if (code == 0u) { return; }
  var t = 0u;
  loop {
    t += 1u;
    if (t >= 2u + (code >> 31u)) { break; }  // a bound the compiler cannot see, so the loop is not unrolled
  }
  if (t < 2u) { atomicStore(&flags[FLAG_COUNT * 8u], code); }
}

// 1-D kernels use 256 invocations per workgroup and a 2-D grid of workgroups when one row is not enough.
const WG: u32 = 256u;
fn linear_id(gid: vec3<u32>, nwg: vec3<u32>) -> u32 { return gid.x + gid.y * nwg.x * WG; }

// dtype codes DT_*, map op codes MAP_* and flag kinds FLAG_* come from tables.wgsl (generated), prepended first

fn per_word(dt: u32) -> u32 {
  if (dt == DT_F16 || dt == DT_BF16) { return 2u; }
  if (dt == DT_I8 || dt == DT_U8 || dt == DT_BOOL) { return 4u; }
  return 1u;
}
fn word_of(dt: u32, i: u32) -> u32 { return i / per_word(dt); }
/** The bits of element i, zero-extended, from the word that holds it. */
fn raw_of(dt: u32, i: u32, w: u32) -> u32 {
  let per = per_word(dt);
  if (per == 1u) { return w; }
  let bits = 32u / per;
  return (w >> ((i % per) * bits)) & ((1u << bits) - 1u);
}
fn is_int_dt(dt: u32) -> bool { return dt == DT_I32 || dt == DT_I8 || dt == DT_U8 || dt == DT_BOOL; }

fn is_nan(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u; }
fn is_inf(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) == 0x7f800000u; }
const NAN_BITS: u32 = 0x7fc00000u;
const INF_BITS: u32 = 0x7f800000u;
// through a var: WGSL refuses NaN and infinity in constant expressions
fn f_nan() -> f32 { var b = NAN_BITS; return bitcast<f32>(b); }
fn f_inf() -> f32 { var b = INF_BITS; return bitcast<f32>(b); }

fn f16_to_f32(h: u32) -> f32 {
  let sign = (h & 0x8000u) << 16u;
  let e = (h >> 10u) & 0x1fu;
  let m = h & 0x3ffu;
  if (e == 0u) {
    let v = f32(m) * 5.9604644775390625e-8;
    return bitcast<f32>(bitcast<u32>(v) | sign);
  }
  if (e == 31u) { return bitcast<f32>(sign | 0x7f800000u | (m << 13u)); }
  return bitcast<f32>(sign | ((e + 112u) << 23u) | (m << 13u));
}

fn f32_to_f16(x: f32) -> u32 {
  var u = bitcast<u32>(x);
  let sign = (u >> 16u) & 0x8000u;
  u = u & 0x7fffffffu;
  if (u > 0x7f800000u) { return sign | 0x7e00u; }
  if (u >= 0x47800000u) { return sign | 0x7c00u; }
  if (u < 0x38800000u) {
    // subnormal half: round(|x| * 2^24) half to even, from the float32 mantissa
    let e = u >> 23u;
    if (e == 0u) { return sign; }
    let m = (u & 0x7fffffu) | 0x800000u;
    let sh = 126u - e;
    if (sh >= 32u) { return sign; }
    let q = m >> sh;
    let rem = m & ((1u << sh) - 1u);
    let half = 1u << (sh - 1u);
    var r = q;
    if (rem > half || (rem == half && (q & 1u) == 1u)) { r = q + 1u; }
    return sign | r;
  }
  let lsb = (u >> 13u) & 1u;
  u = u + 0xfffu + lsb - (112u << 23u);
  let h = u >> 13u;
  if (h >= 0x7c00u) { return sign | 0x7c00u; }
  return sign | h;
}

fn f32_to_bf16(x: f32) -> u32 {
  let u = bitcast<u32>(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) { return ((u >> 16u) | 0x40u) & 0xffffu; }
  return ((u + 0x7fffu + ((u >> 16u) & 1u)) >> 16u) & 0xffffu;
}

fn sext8(r: u32) -> i32 { return (bitcast<i32>(r << 24u)) >> 24u; }

/** Element bits -> value as float32. */
fn to_f32(dt: u32, r: u32) -> f32 {
  switch (dt) {
    case DT_F16: { return f16_to_f32(r); }
    case DT_BF16: { return bitcast<f32>(r << 16u); }
    case DT_I32: { return f32(bitcast<i32>(r)); }
    case DT_I8: { return f32(sext8(r)); }
    case 5u, 6u: { return f32(r); }
    default: { return bitcast<f32>(r); }
  }
}

/** float32 -> int, truncating toward zero and saturating to [lo, hi]; NaN -> 0. */
fn sat_i32(x: f32, lo: i32, hi: i32) -> i32 {
  if (is_nan(x)) { return 0; }
  if (x <= f32(lo)) { return lo; }
  if (x >= f32(hi)) { return hi; }
  return i32(trunc(x));
}

/** Element bits -> value as int32 (floats truncate and saturate, like a cast). */
fn to_i32(dt: u32, r: u32) -> i32 {
  switch (dt) {
    case DT_I32: { return bitcast<i32>(r); }
    case DT_I8: { return sext8(r); }
    case 5u, 6u: { return i32(r); }
    default: { return sat_i32(to_f32(dt, r), -2147483647 - 1, 2147483647); }
  }
}

/** float32 value -> element bits of dtype dt. */
fn from_f32(dt: u32, v: f32) -> u32 {
  switch (dt) {
    case DT_F16: { return f32_to_f16(v); }
    case DT_BF16: { return f32_to_bf16(v); }
    case DT_I32: { return bitcast<u32>(sat_i32(v, -2147483647 - 1, 2147483647)); }
    case DT_I8: { return bitcast<u32>(sat_i32(v, -128, 127)) & 0xffu; }
    case DT_U8: { return bitcast<u32>(sat_i32(v, 0, 255)); }
    case DT_BOOL: { return select(0u, 1u, (bitcast<u32>(v) & 0x7fffffffu) != 0u); }
    default: { return bitcast<u32>(v); }
  }
}

/** int32 value -> element bits of dtype dt. */
fn from_i32(dt: u32, v: i32) -> u32 {
  switch (dt) {
    case 0u, 1u, 2u: { return from_f32(dt, f32(v)); }
    case DT_I8: { return bitcast<u32>(clamp(v, -128, 127)) & 0xffu; }
    case DT_U8: { return bitcast<u32>(clamp(v, 0, 255)); }
    case DT_BOOL: { return select(0u, 1u, v != 0); }
    default: { return bitcast<u32>(v); }
  }
}

// ---- float32 maths with IEEE edge cases made explicit (ports of native/include/kiln/isa_helpers.inl) ----

fn k_exp(x: f32) -> f32 {
  if (is_nan(x)) { return x; }
  let xc = clamp(x, -103.972084, 89.0);
  let t = xc * 1.44269504088896341;
  let n = i32(t + select(-0.5, 0.5, t >= 0.0));
  let fn_ = f32(n);
  var r = xc - fn_ * 0.693359375;
  r = r - fn_ * -2.12194440e-4;
  var p = 1.9875691500e-4;
  p = p * r + 1.3981999507e-3;
  p = p * r + 8.3334519073e-3;
  p = p * r + 4.1665795894e-2;
  p = p * r + 1.6666665459e-1;
  p = p * r + 5.0000001201e-1;
  p = p * r * r + r + 1.0;
  let n1 = n >> 1u;
  let n2 = n - n1;
  return p * bitcast<f32>(u32(n1 + 127) << 23u) * bitcast<f32>(u32(n2 + 127) << 23u);
}

fn k_log(x: f32) -> f32 {
  if (is_nan(x)) { return x; }
  if (x == 0.0) { return -f_inf(); }
  if (x < 0.0) { return f_nan(); }
  if (is_inf(x)) { return x; }
  let sub = x < 1.17549435e-38;
  let xs = select(x, x * 8388608.0, sub);
  let bits = bitcast<u32>(xs);
  var e = i32((bits >> 23u) & 0xffu) - 126;
  if (sub) { e = e - 23; }
  var m = bitcast<f32>((bits & 0x007fffffu) | 0x3f000000u);
  if (m < 0.707106781186547524) {
    e = e - 1;
    m = m + m - 1.0;
  } else {
    m = m - 1.0;
  }
  let z = m * m;
  var y = 7.0376836292e-2;
  y = y * m - 1.1514610310e-1;
  y = y * m + 1.1676998740e-1;
  y = y * m - 1.2420140846e-1;
  y = y * m + 1.4249322787e-1;
  y = y * m - 1.6668057665e-1;
  y = y * m + 2.0000714765e-1;
  y = y * m - 2.4999993993e-1;
  y = y * m + 3.3333331174e-1;
  y = y * m * z;
  let fe = f32(e);
  y = y + fe * -2.12194440e-4;
  y = y + -0.5 * z;
  return m + y + fe * 0.693359375;
}

fn k_tanh(x: f32) -> f32 {
  if (is_nan(x)) { return x; }
  let ax = abs(x);
  if (ax < 0.625) {
    let z = x * x;
    var p = -5.70498872745e-3;
    p = p * z + 2.06390887954e-2;
    p = p * z - 5.37397155531e-2;
    p = p * z + 1.33314422036e-1;
    p = p * z - 3.33332819422e-1;
    return p * z * x + x;
  }
  let e = k_exp(-2.0 * ax);
  let big = (1.0 - e) / (1.0 + e);
  return select(big, -big, x < 0.0);
}

fn k_sigmoid(x: f32) -> f32 { return 1.0 / (1.0 + k_exp(-x)); }

// erfc with < 1.2e-7 relative error (Numerical Recipes' erfcc form)
fn k_erfc(x: f32) -> f32 {
  let z = abs(x);
  let t = 1.0 / (1.0 + 0.5 * z);
  var p = 0.17087277;
  p = p * t - 0.82215223;
  p = p * t + 1.48851587;
  p = p * t - 1.13520398;
  p = p * t + 0.27886807;
  p = p * t - 0.18628806;
  p = p * t + 0.09678418;
  p = p * t + 0.37409196;
  p = p * t + 1.00002368;
  p = p * t - 1.26551223;
  let ans = t * k_exp(-z * z + p);
  return select(2.0 - ans, ans, x >= 0.0);
}

fn k_gelu(x: f32) -> f32 { return 0.5 * x * k_erfc(-x * 0.70710678118654752); }
fn k_gelu_grad(x: f32) -> f32 {
  return 0.5 * k_erfc(-x * 0.70710678118654752) + x * 0.39894228040143268 * k_exp(-0.5 * x * x);
}

/** max/min that propagate NaN from either side (like the js reference). */
fn max_nan(x: f32, y: f32) -> f32 { if (is_nan(x) || x > y) { return x; } return y; }
fn min_nan(x: f32, y: f32) -> f32 { if (is_nan(x) || x < y) { return x; } return y; }

// sin and cos with ~1 ulp accuracy on moderate arguments (WGSL only promises 2^-11 absolute for its builtins):
// reduction by pi/2 in three parts, then Cephes' sinf/cosf polynomials. Returns (sin x, cos x).
fn k_sincos(x: f32) -> vec2<f32> {
  let q = round(x * 0.63661977236758134);
  let r = ((x - q * 1.5703125) - q * 4.837512969970703125e-4) - q * 7.54978995489188216e-8;
  let z = r * r;
  let s = ((-1.9515295891e-4 * z + 8.3321608736e-3) * z - 1.6666654611e-1) * z * r + r;
  let c = ((2.443315711809948e-5 * z - 1.388731625493765e-3) * z + 4.166664568298827e-2) * z * z - 0.5 * z + 1.0;
  let k = i32(q) & 3;
  if (k == 0) { return vec2<f32>(s, c); }
  if (k == 1) { return vec2<f32>(c, -s); }
  if (k == 2) { return vec2<f32>(-s, -c); }
  return vec2<f32>(-c, s);
}
