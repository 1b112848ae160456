// The Params layouts of the WGSL kernels: where each value sits in a dispatch's 128-word uniform block. The
// TypeScript side writes by these names (`p.set(PARAMS.conv.N, n)`) and the shaders read by the same names
// (`pu(P_CONV_N)`), generated into kernels/wgsl/tables.wgsl by `npm run gen`, so neither side counts words.
// A value is a word index; a field that starts a run of words (a shape, strides, an op's attribute array) gives
// its first word. No imports: scripts/gen-tables.ts reads it.

/** Largest number of dims a strided view may have after merging (map, place and matmul batch dims). */
const D = 8;

export const PARAMS = {
  /** elementwise `map`: three strided inputs over the output's shape */
  map: {
    n: 0,
    ndim: 1,
    /** scalar attributes (bits of f32 or i32): fill value, arange start/step, clamp bounds */
    a: 2,
    b: 3,
    shape: 4,
    offset0: 4 + D,
    strides0: 5 + D,
    offset1: 5 + 2 * D,
    strides1: 6 + 2 * D,
    offset2: 6 + 3 * D,
    strides2: 7 + 3 * D,
  },
  /** conv2d (+ backward) and pool2d (+ backward): geometry, then the conv attribute group (ATTR_CONV_*) */
  conv: {
    N: 0,
    C: 1,
    H: 2,
    W: 3,
    O: 4,
    kh: 5,
    kw: 6,
    OH: 7,
    OW: 8,
    attrs: 9,
    includePad: 16,
    /** conv2d's input channels of a group, its input gradient's output channels of a group, or its weight
     * gradient's batch items [winLo, winHi) one dispatch adds (all unless a loop cap splits them) */
    winLo: 17,
    winHi: 18,
  },
  /** matmul (and the int4 linear, which adds the packed-weight fields) */
  matmul: {
    M: 0,
    N: 1,
    K: 2,
    batchDims: 3,
    offA: 4,
    rowStrideA: 5,
    colStrideA: 6,
    offB: 7,
    rowStrideB: 8,
    colStrideB: 9,
    batchShape: 10,
    batchStrideA: 14,
    batchStrideB: 18,
    groupSize: 22,
    groups: 23,
    rowBytes: 24,
    scaleOffset: 25,
    biasOffset: 26,
    /** the K range [kLo, kHi) one dispatch adds (all of K unless a loop cap splits it; later ones add onto dst) */
    kLo: 27,
    kHi: 28,
  },
  /** movement `place` (concat): copies a strided input into rows of the output */
  place: { n: 0, ndim: 1, dstBase: 2, dstRowStride: 3, rowLen: 4, srcOffset: 5, shape: 8, strides: 8 + D },
  /** gather and scatter_add over [pre, D, post] with k indices */
  index: {
    pre: 0,
    D: 1,
    post: 2,
    k: 3,
    axis: 4,
    /** scatter_place orders the positions of blocks [blockLo, blockHi) of 256 */
    blockLo: 5,
    blockHi: 6,
    /** scatter_sum adds the positions [runLo, runHi) of each row's run onto what an earlier window wrote */
    runLo: 7,
    runHi: 8,
  },
  /**
   * adam_step / sgd_step: element offsets of each input, the op's attribute array (ATTR_ADAM_STEP_*), then
   * constants the host derives in float64 and rounds once, as cpu does: adam 1 - beta1, 1 - beta2, the
   * decoupled decay's factor, lr / bias1, 1 / sqrt(bias2); sgd 1 - dampening
   */
  optim: { n: 0, offsets: 1, attrs: 8, derived: 16 },
  /** qlinear_int8, quantize_rows and qconv2d_int8 (which adds the conv geometry and attribute group) */
  qlinear: {
    M: 0,
    K: 1,
    N: 2,
    xOffset: 3,
    wOffset: 4,
    wsOffset: 5,
    biasOffset: 6,
    xScale: 7,
    xZero: 8,
    convC: 9,
    convH: 10,
    convW: 11,
    convO: 12,
    convKh: 13,
    convKw: 14,
    convOH: 15,
    convOW: 16,
    convAttrs: 17,
  },
  /** random: the Philox key and counter, then the distribution's two parameters */
  random: { n: 0, key0: 1, key1: 2, ctrLo: 3, ctrHi: 4, a: 5, b: 6 },
  /** fused attention and its backward passes (the f32 words are written through p.f) */
  attention: {
    B: 0,
    L: 1,
    S: 2,
    D: 3,
    Dv: 4,
    /** elements between the masks of consecutive batches (0 = one shared mask) */
    maskStride: 5,
    hasMask: 6,
    causal: 7,
    threshold: 8,
    seedHash: 9,
    scale: 10,
    keepScale: 11,
    /** copy_f32: elements to copy and where they go in dst */
    n: 12,
    dstOffset: 13,
    /** the window of keys (forward, dq) or query rows (dk, dv) one dispatch takes: all, unless a loop cap splits */
    winLo: 14,
    winHi: 15,
  },
  /** reductions over [outer, R, inner], and row kernels over [N, F] or [N, C] */
  reduce: { outer: 0, R: 1, inner: 2, N: 0, F: 1, C: 1, attr: 3, chunk: 4 },
  /** every dispatch: the last word, written by the worker, not the kernels' hosts (common.wgsl check_loops) */
  common: { loopCheck: 127 },
} as const;

export type ParamLayout = keyof typeof PARAMS;
