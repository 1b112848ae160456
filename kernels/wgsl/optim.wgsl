// Optimizer family: one fused pass per parameter, updating the parameter and its state in place
// (the same rules as native/cpu/optim.cc and the js reference).

override HASV: bool = false;  // adamStep: AMSGrad's running max of v is bound; sgdStep: a momentum buffer is bound

@group(0) @binding(1) var<storage, read_write> prm: array<f32>;
@group(0) @binding(2) var<storage, read> grd: array<f32>;
@group(0) @binding(3) var<storage, read_write> s0: array<f32>;
@group(0) @binding(4) var<storage, read_write> s1: array<f32>;
@group(0) @binding(5) var<storage, read_write> s2: array<f32>;

// Params: 0 n, 1..5 element offsets of param, grad, m, v, vmax; f32 8 lr, 9 beta1, 10 beta2, 11 eps,
//         12 weightDecay, 13 decoupled, 14 bias1, 15 bias2
@compute @workgroup_size(256)
fn adam(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear_id(gid, nwg);
  if (i >= pu(0u)) { return; }
  let lr = pf(8u);
  let b1 = pf(9u);
  let b2 = pf(10u);
  let wd = pf(12u);
  let decoupled = pf(13u) != 0.0;
  let ip = pu(1u) + i;
  let p = prm[ip];
  var g = grd[pu(2u) + i];
  if (!decoupled) { g = g + wd * p; }
  let im = pu(3u) + i;
  let iv = pu(4u) + i;
  let m = b1 * s0[im] + (1.0 - b1) * g;
  let v = b2 * s1[iv] + (1.0 - b2) * g * g;
  s0[im] = m;
  s1[iv] = v;
  var vd = v;
  if (HASV) {
    let ix = pu(5u) + i;
    vd = max(s2[ix], v);
    s2[ix] = vd;
  }
  var shrink = 1.0;
  if (decoupled) { shrink = 1.0 - lr * wd; }
  prm[ip] = p * shrink - (lr / pf(14u)) * m / (sqrt(vd) / sqrt(pf(15u)) + pf(11u));
}

// Params: 0 n, 1..3 element offsets of param, grad, momentum buffer; f32 8 lr, 9 momentum, 10 dampening,
//         11 weightDecay, 12 nesterov, 13 firstStep
@compute @workgroup_size(256)
fn sgd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear_id(gid, nwg);
  if (i >= pu(0u)) { return; }
  let lr = pf(8u);
  let ip = pu(1u) + i;
  let p = prm[ip];
  let g = grd[pu(2u) + i] + pf(11u) * p;
  if (!HASV) {
    prm[ip] = p - lr * g;
    return;
  }
  let ib = pu(3u) + i;
  var b = g;
  if (pf(13u) == 0.0) { b = pf(9u) * s0[ib] + (1.0 - pf(10u)) * g; }
  s0[ib] = b;
  if (pf(12u) != 0.0) { prm[ip] = p - lr * (g + pf(9u) * b); } else { prm[ip] = p - lr * b; }
}
