// Optimizer family: one fused pass per parameter, updating the parameter and its state in place
// (the same rules as native/cpu/optim.cc and the js reference).

override HASV: bool = false;  // adamStep: AMSGrad's running max of v is bound; sgdStep: a momentum buffer is bound

@group(0) @binding(1) var<storage, read_write> prm: array<f32>;
@group(0) @binding(2) var<storage, read> grd: array<f32>;
@group(0) @binding(3) var<storage, read_write> s0: array<f32>;
@group(0) @binding(4) var<storage, read_write> s1: array<f32>;
@group(0) @binding(5) var<storage, read_write> s2: array<f32>;

// Params: P_OPTIM_N, the element offsets of param, grad, m, v, vmax from P_OPTIM_OFFSETS, adamStep's
// attribute array (f32) at P_OPTIM_ATTRS, read as ATTR_ADAM_STEP_*, and at P_OPTIM_DERIVED the host's float64
// constants rounded once: 1 - beta1, 1 - beta2, the decoupled decay's factor, lr / bias1, 1 / sqrt(bias2)
// (1.0 - 0.999 in f32 is 0.00099998713: every step 6.5e-6 too large). cpu's expression, term for term.
@compute @workgroup_size(256)
fn adam_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear_id(gid, nwg);
  if (i >= pu(P_OPTIM_N)) { return; }
  let ip = pu(P_OPTIM_OFFSETS) + i;
  let p = prm[ip];
  var g = grd[pu(P_OPTIM_OFFSETS + 1u) + i];
  if (pf(P_OPTIM_ATTRS + ATTR_ADAM_STEP_DECOUPLED) == 0.0) { g = g + pf(P_OPTIM_ATTRS + ATTR_ADAM_STEP_WEIGHT_DECAY) * p; }
  let im = pu(P_OPTIM_OFFSETS + 2u) + i;
  let iv = pu(P_OPTIM_OFFSETS + 3u) + i;
  let m = pf(P_OPTIM_ATTRS + ATTR_ADAM_STEP_BETA1) * s0[im] + pf(P_OPTIM_DERIVED) * g;
  let v = pf(P_OPTIM_ATTRS + ATTR_ADAM_STEP_BETA2) * s1[iv] + pf(P_OPTIM_DERIVED + 1u) * g * g;
  s0[im] = m;
  s1[iv] = v;
  var vd = v;
  if (HASV) {
    let ix = pu(P_OPTIM_OFFSETS + 4u) + i;
    vd = select(v, s2[ix], s2[ix] > v);  // keeps a NaN v, as cpu does (max may drop it)
    s2[ix] = vd;
  }
  prm[ip] = p * pf(P_OPTIM_DERIVED + 2u) - pf(P_OPTIM_DERIVED + 3u) * m / (sqrt(vd) * pf(P_OPTIM_DERIVED + 4u) + pf(P_OPTIM_ATTRS + ATTR_ADAM_STEP_EPS));
}

// Params: P_OPTIM_N, the element offsets of param, grad, momentum buffer from P_OPTIM_OFFSETS, sgdStep's
// attribute array (f32) at P_OPTIM_ATTRS, read as ATTR_SGD_STEP_*, and 1 - dampening (from float64) at P_OPTIM_DERIVED
@compute @workgroup_size(256)
fn sgd_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear_id(gid, nwg);
  if (i >= pu(P_OPTIM_N)) { return; }
  let lr = pf(P_OPTIM_ATTRS + ATTR_SGD_STEP_LR);
  let ip = pu(P_OPTIM_OFFSETS) + i;
  let p = prm[ip];
  let g = grd[pu(P_OPTIM_OFFSETS + 1u) + i] + pf(P_OPTIM_ATTRS + ATTR_SGD_STEP_WEIGHT_DECAY) * p;
  if (!HASV) {
    prm[ip] = p - lr * g;
    return;
  }
  let ib = pu(P_OPTIM_OFFSETS + 2u) + i;
  var b = g;
  if (pf(P_OPTIM_ATTRS + ATTR_SGD_STEP_FIRST_STEP) == 0.0) { b = pf(P_OPTIM_ATTRS + ATTR_SGD_STEP_MOMENTUM) * s0[ib] + pf(P_OPTIM_DERIVED) * g; }
  s0[ib] = b;
  if (pf(P_OPTIM_ATTRS + ATTR_SGD_STEP_NESTEROV) != 0.0) { prm[ip] = p - lr * (g + pf(P_OPTIM_ATTRS + ATTR_SGD_STEP_MOMENTUM) * b); } else { prm[ip] = p - lr * b; }
}
