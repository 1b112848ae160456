// Movement family: concat (one strided input placed into its slab of the output per dispatch), gather and
// scatterAdd along an axis. copy is elementwise.wgsl's `map`. Elements of 32-bit words only: the host widens
// narrower dtypes to one element per word first (a raw `map` copy) and narrows the result after.

override INT: bool = false;

@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@group(0) @binding(2) var<storage, read> in0: array<u32>;
@group(0) @binding(3) var<storage, read> in1: array<u32>;

// Params: P_PLACE_* (n input elements, ndim, dstBase, dstRowStride, rowLen, srcOffset, shape, strides).
// The input (a strided view) is placed so that its element e lands at dstBase + (e / rowLen) * dstRowStride + e % rowLen.
@compute @workgroup_size(256)
fn place(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let e = linear_id(gid, nwg);
  if (e >= pu(P_PLACE_N)) { return; }
  let nd = pu(P_PLACE_NDIM);
  var rem = e;
  var src = pu(P_PLACE_SRC_OFFSET);
  for (var k = 0u; k < nd; k++) {
    let d = nd - 1u - k;
    let s = pu(P_PLACE_SHAPE + d);
    src += (rem % s) * pu(P_PLACE_STRIDES + d);
    rem = rem / s;
  }
  let len = pu(P_PLACE_ROW_LEN);
  dst[pu(P_PLACE_DST_BASE) + (e / len) * pu(P_PLACE_DST_ROW_STRIDE) + e % len] = in0[src];
}

// out[p, j, q] = x[p, idx[j], q] over x [pre, D, post] and idx [k]. Params: P_INDEX_* (pre, D, post, k, axis)
@compute @workgroup_size(256)
fn gather(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let o = linear_id(gid, nwg);
  let pre = pu(P_INDEX_PRE);
  let D = pu(P_INDEX_D);
  let post = pu(P_INDEX_POST);
  let k = pu(P_INDEX_K);
  if (o >= pre * k * post) { return; }
  let q = o % post;
  let j = (o / post) % k;
  let p = o / (post * k);
  let i = bitcast<i32>(in1[j]);
  if (i < 0 || u32(i) >= D) {
    report(FLAG_GATHER_INDEX, j, i, D, pu(P_INDEX_AXIS));
    dst[o] = 0u;
    return;
  }
  dst[o] = in0[(p * D + u32(i)) * post + q];
}

// out [pre, D, post] = sum over j of g[p, j, q] into row idx[j]. One invocation owns a (p, q) column, so sums
// are deterministic and never race. Params: P_INDEX_* (pre, D, post, k)
@compute @workgroup_size(256)
fn scatter_add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let c = linear_id(gid, nwg);
  let pre = pu(P_INDEX_PRE);
  let D = pu(P_INDEX_D);
  let post = pu(P_INDEX_POST);
  let k = pu(P_INDEX_K);
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
