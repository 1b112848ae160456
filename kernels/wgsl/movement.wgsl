// Movement family: concat (one strided input placed into its slab of the output per dispatch), gather and
// scatterAdd along an axis. copy is elementwise.wgsl's `map`. Elements of 32-bit words only: the host widens
// narrower dtypes to one element per word first (a raw `map` copy) and narrows the result after.

override INT: bool = false;

@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@group(0) @binding(2) var<storage, read> in0: array<u32>;
@group(0) @binding(3) var<storage, read> in1: array<u32>;

// Params: 0 n (input elements), 1 ndim, 2 dstBase, 3 dstRowStride, 4 rowLen, 5 srcOffset, 8..15 shape, 16..23 strides.
// The input (a strided view) is placed so that its element e lands at dstBase + (e / rowLen) * dstRowStride + e % rowLen.
@compute @workgroup_size(256)
fn place(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let e = linear_id(gid, nwg);
  if (e >= pu(0u)) { return; }
  let nd = pu(1u);
  var rem = e;
  var src = pu(5u);
  for (var k = 0u; k < nd; k++) {
    let d = nd - 1u - k;
    let s = pu(8u + d);
    src += (rem % s) * pu(16u + d);
    rem = rem / s;
  }
  let len = pu(4u);
  dst[pu(2u) + (e / len) * pu(3u) + e % len] = in0[src];
}

// out[p, j, q] = x[p, idx[j], q] over x [pre, D, post] and idx [k]. Params: 0 pre, 1 D, 2 post, 3 k, 4 axis
@compute @workgroup_size(256)
fn gather(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let o = linear_id(gid, nwg);
  let pre = pu(0u);
  let D = pu(1u);
  let post = pu(2u);
  let k = pu(3u);
  if (o >= pre * k * post) { return; }
  let q = o % post;
  let j = (o / post) % k;
  let p = o / (post * k);
  let i = bitcast<i32>(in1[j]);
  if (i < 0 || u32(i) >= D) {
    report(FLAG_GATHER_INDEX, j, i, D, pu(4u));
    dst[o] = 0u;
    return;
  }
  dst[o] = in0[(p * D + u32(i)) * post + q];
}

// out [pre, D, post] = sum over j of g[p, j, q] into row idx[j]. One invocation owns a (p, q) column, so sums
// are deterministic and never race. Params: 0 pre, 1 D, 2 post, 3 k
@compute @workgroup_size(256)
fn scatter_add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let c = linear_id(gid, nwg);
  let pre = pu(0u);
  let D = pu(1u);
  let post = pu(2u);
  let k = pu(3u);
  if (c >= pre * post) { return; }
  let q = c % post;
  let p = c / post;
  for (var d = 0u; d < D; d++) { dst[(p * D + d) * post + q] = 0u; }
  for (var j = 0u; j < k; j++) {
    let i = bitcast<i32>(in1[j]);
    if (i < 0 || u32(i) >= D) {
      report(FLAG_SCATTER_INDEX, j, i, D, 0u);
      continue;
    }
    let o = (p * D + u32(i)) * post + q;
    let v = in0[(p * k + j) * post + q];
    if (INT) {
      dst[o] = bitcast<u32>(bitcast<i32>(dst[o]) + bitcast<i32>(v));
    } else {
      dst[o] = bitcast<u32>(bitcast<f32>(dst[o]) + bitcast<f32>(v));
    }
  }
}
