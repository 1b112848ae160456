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

// ---- scatterAdd: out [pre, D, post] = sum over j of g[p, j, q] into row idx[j], in two dispatches.
// scatter_group (one workgroup) sorts the positions j by target row, stably: `order` lists them row by row, in
// increasing j within a row, and ends[d] is where row d's run ends (row d's run starts at ends[d - 1], or 0).
// scatter_sum then gives each output element an invocation that adds its row's values in increasing j, the
// order the cpu backend adds them in, so sums are deterministic, never race, and match cpu's bits.
// They run in parts a loop budget allows (Mesa's llvmpipe cuts an invocation's loops after 65535 turns):
// scatter_group counts and finds the runs' starts, scatter_place orders the positions of blocks [blockLo,
// blockHi) of WG positions (a dispatch per part), and scatter_sum adds the window [runLo, runHi) of each run onto
// what the window before wrote, so the values are still added one by one in increasing j.
// Params: P_INDEX_* (pre, D, post, k, blockLo, blockHi, runLo, runHi)
@group(0) @binding(4) var<storage, read_write> ends: array<atomic<u32>>;
@group(0) @binding(5) var<storage, read_write> order: array<u32>;

const NO_ROW: u32 = 0xffffffffu;
var<workgroup> wg_row: array<u32, 256>;
var<workgroup> wg_part: array<u32, 256>;

/** idx[j] when it is a row of the output, NO_ROW otherwise (scatter_group reports those). */
fn scatter_row(j: u32, D: u32) -> u32 {
  let i = bitcast<i32>(in1[j]);
  if (i < 0 || u32(i) >= D) { return NO_ROW; }
  return u32(i);
}

@compute @workgroup_size(256)
fn scatter_group(@builtin(local_invocation_index) t: u32) {
  let D = pu(P_INDEX_D);
  let k = pu(P_INDEX_K);
  // 1. count each row's positions
  for (var d = t; d < D; d += WG) { atomicStore(&ends[d], 0u); }
  storageBarrier();
  for (var j = t; j < k; j += WG) {
    let d = scatter_row(j, D);
    if (d == NO_ROW) {
      report(FLAG_SCATTER_INDEX, j, bitcast<i32>(in1[j]), D, 0u);
    } else {
      atomicAdd(&ends[d], 1u);
    }
  }
  storageBarrier();
  // 2. counts -> where each row's run starts: invocation t scans its slice of the rows after the slices before
  let per = (D + WG - 1u) / WG;
  let lo = min(D, t * per);
  let hi = min(D, lo + per);
  var own = 0u;
  for (var d = lo; d < hi; d++) { own += atomicLoad(&ends[d]); }
  wg_part[t] = own;
  workgroupBarrier();
  var run = 0u;
  for (var s = 0u; s < t; s++) { run += wg_part[s]; }
  for (var d = lo; d < hi; d++) {
    let c = atomicLoad(&ends[d]);
    atomicStore(&ends[d], run);
    run += c;
  }
  check_loops();
}

// 3. place the positions 256 at a time: a position goes after its row's earlier ones in this block, and the
// block's last position of a row moves that row's cursor; after the last block, ends[d] is the run's end. Its own
// entry point, barriers in the entry itself (a barrier in a called function misorders on llvmpipe, ARCHITECTURE.md)
@compute @workgroup_size(256)
fn scatter_place(@builtin(local_invocation_index) t: u32) {
  let D = pu(P_INDEX_D);
  let k = pu(P_INDEX_K);
  for (var b = pu(P_INDEX_BLOCK_LO) * WG; b < min(k, pu(P_INDEX_BLOCK_HI) * WG); b += WG) {
    let j = b + t;
    var d = NO_ROW;
    if (j < k) { d = scatter_row(j, D); }
    wg_row[t] = d;
    workgroupBarrier();
    var before = 0u;
    var last = true;
    var at = 0u;
    if (d != NO_ROW) {
      for (var s = 0u; s < WG; s++) {
        if (wg_row[s] == d) {
          if (s < t) { before++; } else if (s > t) { last = false; }
        }
      }
      at = atomicLoad(&ends[d]) + before;
      order[at] = j;
    }
    storageBarrier();
    if (d != NO_ROW && last) { atomicStore(&ends[d], at + 1u); }
    storageBarrier();
    workgroupBarrier(); // every read of wg_row is done before the next block writes it
  }
  check_loops();
}

@compute @workgroup_size(256)
fn scatter_sum(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let o = linear_id(gid, nwg);
  let D = pu(P_INDEX_D);
  let post = pu(P_INDEX_POST);
  let k = pu(P_INDEX_K);
  if (o >= pu(P_INDEX_PRE) * D * post) { return; }
  let q = o % post;
  let d = (o / post) % D;
  let base = (o / (post * D)) * k;
  var r0 = 0u;
  if (d > 0u) { r0 = atomicLoad(&ends[d - 1u]); }
  let len = atomicLoad(&ends[d]) - r0;
  let w0 = pu(P_INDEX_RUN_LO);
  if (w0 > 0u && w0 >= len) { return; }  // an earlier window summed this run
  let lo = r0 + w0;
  let hi = r0 + min(len, pu(P_INDEX_RUN_HI));
  if (INT) {
    var acc = 0i;
    if (w0 > 0u) { acc = bitcast<i32>(dst[o]); }
    for (var s = lo; s < hi; s++) { acc += bitcast<i32>(in0[(base + order[s]) * post + q]); }
    dst[o] = bitcast<u32>(acc);
  } else {
    var acc = 0.0;
    if (w0 > 0u) { acc = bitcast<f32>(dst[o]); }
    for (var s = lo; s < hi; s++) { acc += bitcast<f32>(in0[(base + order[s]) * post + q]); }
    dst[o] = bitcast<u32>(acc);
  }
  check_loops();
}
