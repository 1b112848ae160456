// Elementwise family: fill, arange, unary and binary maths, comparisons, clamp, cast, copy, where, biasAct,
// geluGrad and reluGrad — one `map` kernel specialised by override constants (pipelines are cached per
// constant set).
//
// Each invocation writes one 32-bit word of the contiguous output (1, 2 or 4 elements). Inputs are strided
// views (broadcast dims have stride 0) over up to 8 dims, after the host merged the dims it could.
// Params: P_MAP_* (src/backends/webgpu/params.ts): n (output elements), ndim, the scalar attributes a and b
// (bits of f32 or i32), the shape, and each input's offset and strides.

override OP: u32 = 0u;
override DT0: u32 = 0u;
override DT1: u32 = 0u;
override DT2: u32 = 0u;
override DTO: u32 = 0u;
// compute in int32 (numeric ops on int32 inputs); otherwise in float32
override INT: bool = false;

// map op codes: MAP_* in tables.wgsl, generated from MAP_OPS in src/ops/table.ts

@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@group(0) @binding(2) var<storage, read> in0: array<u32>;
@group(0) @binding(3) var<storage, read> in1: array<u32>;
@group(0) @binding(4) var<storage, read> in2: array<u32>;

fn raw0(i: u32) -> u32 { return raw_of(DT0, i, in0[word_of(DT0, i)]); }
fn raw1(i: u32) -> u32 { return raw_of(DT1, i, in1[word_of(DT1, i)]); }
fn raw2(i: u32) -> u32 { return raw_of(DT2, i, in2[word_of(DT2, i)]); }

// x^y for x > 0 (or +inf), y not NaN
fn pow_pos(x: f32, y: f32) -> f32 {
  if (x == 1.0) { return 1.0; }
  if (is_inf(x)) { return select(0.0, f_inf(), y > 0.0); }
  if (is_inf(y)) {
    if (x > 1.0) { return select(0.0, f_inf(), y > 0.0); }
    return select(f_inf(), 0.0, y > 0.0);
  }
  return exp2(y * log2(x));
}

// C's pow (IEEE 754, PyTorch's): 1^y = x^0 = 1 for any x and y, NaN included, (-1)^(+-inf) = 1; negative bases
// need an integer exponent; signed zeros and infinities
fn k_pow(x: f32, y: f32) -> f32 {
  if (y == 0.0 || x == 1.0) { return 1.0; }
  if (is_nan(x) || is_nan(y)) { return f_nan(); }
  let yi = trunc(y) == y && !is_inf(y);
  let odd = yi && abs(y) < 16777216.0 && (i32(abs(y)) & 1) == 1;
  if (x == 0.0) {
    let neg0 = (bitcast<u32>(x) & 0x80000000u) != 0u;
    if (y > 0.0) { return select(0.0, x, odd && neg0); }
    return select(f_inf(), -f_inf(), odd && neg0);
  }
  if (x < 0.0) {
    if (is_inf(y)) {
      if (x == -1.0) { return 1.0; }
      return pow_pos(-x, y);
    }
    if (!yi && !is_inf(x)) { return f_nan(); }  // (-inf)^y is +inf or +0 for y not an odd integer
    let r = pow_pos(-x, y);
    return select(r, -r, odd);
  }
  return pow_pos(x, y);
}

/** A comparison's result from whether a < b and a == b (both false when a NaN is involved). */
fn compare(lt: bool, eq: bool, unordered: bool) -> u32 {
  if (unordered) { return select(0u, 1u, OP == MAP_NE); }
  switch (OP) {
    case MAP_EQ: { return select(0u, 1u, eq); }
    case MAP_NE: { return select(0u, 1u, !eq); }
    case MAP_LT: { return select(0u, 1u, lt); }
    case MAP_LE: { return select(0u, 1u, lt || eq); }
    case MAP_GT: { return select(0u, 1u, !lt && !eq); }
    default: { return select(0u, 1u, !lt); }
  }
}

fn float_op(a: f32, b: f32) -> f32 {
  switch (OP) {
    case MAP_NEG: { return -a; }
    case MAP_ABS: { return abs(a); }
    case MAP_SIGN: {
      if (is_nan(a)) { return a; }
      return select(select(0.0, -1.0, a < 0.0), 1.0, a > 0.0);
    }
    case MAP_RELU: {
      // NaN stays NaN (as on cpu): without the bit test llvmpipe compiles this to max(a, 0), which gives 0
      if (is_nan(a)) { return a; }
      if (a < 0.0) { return 0.0; }
      return a;
    }
    case MAP_EXP: { return k_exp(a); }
    case MAP_LOG: { return k_log(a); }
    case MAP_SQRT: {
      if (a < 0.0) { return f_nan(); }
      return sqrt(a);
    }
    case MAP_TANH: { return k_tanh(a); }
    case MAP_SIGMOID: { return k_sigmoid(a); }
    case MAP_GELU: { return k_gelu(a); }
    case MAP_SILU: { return a * k_sigmoid(a); }
    case MAP_CLAMP: {
      if (is_nan(a)) { return a; }
      if (a < pf(P_MAP_A)) { return pf(P_MAP_A); }
      if (a > pf(P_MAP_B)) { return pf(P_MAP_B); }
      return a;
    }
    case MAP_ADD: { return a + b; }
    case MAP_SUB: { return a - b; }
    case MAP_MUL: { return a * b; }
    case MAP_DIV: { return a / b; }
    case MAP_POW: { return k_pow(a, b); }
    case MAP_MAXIMUM: { return max_nan(a, b); }
    case MAP_MINIMUM: { return min_nan(a, b); }
    case MAP_GELU_GRAD: { return k_gelu_grad(a) * b; }
    case MAP_RELU_GRAD: {
      if (a > 0.0) { return b; }
      return 0.0;
    }
    case MAP_BIAS: { return a + b; }
    case MAP_BIAS_RELU: {
      let v = a + b;
      if (is_nan(v)) { return v; }
      if (v < 0.0) { return 0.0; }
      return v;
    }
    case MAP_BIAS_GELU: { return k_gelu(a + b); }
    default: { return a; }
  }
}

fn int_op(a: i32, b: i32) -> i32 {
  switch (OP) {
    case MAP_NEG: { return -a; }
    case MAP_ABS: { return select(a, -a, a < 0); }
    case MAP_SIGN: { return select(select(0, -1, a < 0), 1, a > 0); }
    case MAP_RELU: { return max(a, 0); }
    case MAP_CLAMP: { return clamp(a, pi(P_MAP_A), pi(P_MAP_B)); }
    case MAP_ADD: { return a + b; }
    case MAP_SUB: { return a - b; }
    case MAP_MUL: { return a * b; }
    case MAP_MAXIMUM: { return max(a, b); }
    case MAP_MINIMUM: { return min(a, b); }
    default: { return a; }
  }
}

/** The bits of output element e. */
fn element(e: u32) -> u32 {
  if (OP == MAP_FILL) { return pu(P_MAP_A); }
  if (OP == MAP_ARANGE) {
    if (INT) { return from_i32(DTO, pi(P_MAP_A) + i32(e) * pi(P_MAP_B)); }
    return from_f32(DTO, pf(P_MAP_A) + f32(e) * pf(P_MAP_B));
  }
  // strided source indices of the three inputs
  let nd = pu(P_MAP_NDIM);
  var rem = e;
  var i0 = pu(P_MAP_OFFSET0);
  var i1 = pu(P_MAP_OFFSET1);
  var i2 = pu(P_MAP_OFFSET2);
  for (var k = 0u; k < nd; k++) {
    let d = nd - 1u - k;
    let s = pu(P_MAP_SHAPE + d);
    let c = rem % s;
    rem = rem / s;
    i0 += c * pu(P_MAP_STRIDES0 + d);
    i1 += c * pu(P_MAP_STRIDES1 + d);
    i2 += c * pu(P_MAP_STRIDES2 + d);
  }
  if (OP == MAP_COPY) { return raw0(i0); }
  if (OP == MAP_WHERE) { return select(raw2(i2), raw1(i1), raw0(i0) != 0u); }
  if (OP == MAP_CAST) {
    if (is_int_dt(DT0) && is_int_dt(DTO)) { return from_i32(DTO, to_i32(DT0, raw0(i0))); }
    return from_f32(DTO, to_f32(DT0, raw0(i0)));
  }
  let binary = OP >= MAP_ADD && OP != MAP_CLAMP;
  if (INT) {
    let a = to_i32(DT0, raw0(i0));
    var b = 0;
    if (binary) { b = to_i32(DT1, raw1(i1)); }
    if (OP >= MAP_EQ && OP <= MAP_GE) { return compare(a < b, a == b, false); }
    return from_i32(DTO, int_op(a, b));
  }
  let a = to_f32(DT0, raw0(i0));
  var b = 0.0;
  if (binary) { b = to_f32(DT1, raw1(i1)); }
  if (OP >= MAP_EQ && OP <= MAP_GE) { return compare(a < b, a == b, is_nan(a) || is_nan(b)); }
  return from_f32(DTO, float_op(a, b));
}

@compute @workgroup_size(256)
fn map(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let w = linear_id(gid, nwg);
  let n = pu(P_MAP_N);
  let per = per_word(DTO);
  let e0 = w * per;
  if (e0 >= n) { return; }
  if (per == 1u) {
    dst[w] = element(e0);
    return;
  }
  let bits = 32u / per;
  var word = 0u;
  for (var j = 0u; j < per; j++) {
    if (e0 + j < n) { word = word | (element(e0 + j) << (j * bits)); }
  }
  dst[w] = word;
}
