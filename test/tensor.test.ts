import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as kn from '../src/index.js';
import { floatToBf16Bits, floatToHalfBits, halfBitsToFloat } from '../src/tensor/dtype.js';
import { nativeBackends, onBackend } from './helpers.js';

for (const b of ['js', ...nativeBackends()] as kn.BackendName[]) {
  test(`creation and dtype inference (${b})`, () =>
    onBackend(b, () =>
      kn.tidy(() => {
        const t = kn.tensor([
          [1, 2, 3],
          [4, 5, 6],
        ]);
        assert.equal(t.shape, [2, 3]);
        assert.is(t.dtype, 'float32');
        assert.is(t.size, 6);
        assert.ok(t.toArray() instanceof Float32Array);
        assert.is(kn.tensor(new Int32Array([1, 2])).dtype, 'int32');
        assert.is(kn.tensor([true, false]).dtype, 'bool');
        assert.equal(Array.from(kn.tensor([true, false]).toArray()), [1, 0]);
        assert.is(kn.tensor(3).item(), 3);
        assert.equal(kn.tensor(3).shape, []);
        assert.equal(kn.zeros([2, 0]).toList(), [[], []]);
        assert.equal(Array.from(kn.arange(5).toArray()), [0, 1, 2, 3, 4]);
        assert.equal(Array.from(kn.tensor([1.7, -1.7, 300, -300]).cast('int8').toArray()), [1, -1, 127, -128]);
        assert.equal(Array.from(kn.tensor([1.5, 70000, 1e-8]).cast('float16').toArray()), [1.5, Infinity, 0]);
        assert.is(kn.tensor([1, 2], undefined, { dtype: 'bfloat16' }).toArray().constructor, Float32Array);
      }),
    ));

  test(`views: transpose, permute, slice, expand, squeeze (${b})`, () =>
    onBackend(b, () =>
      kn.tidy(() => {
        const x = kn.arange(24).reshape([2, 3, 4]);
        assert.equal(x.transpose(0, 2).shape, [4, 3, 2]);
        assert.not.ok(x.transpose(0, 2).isContiguous());
        assert.equal(x.permute([1, 2, 0]).contiguous().slice([0, 0], [1, 2]).toList(), [
          [
            [0, 12],
            [1, 13],
          ],
        ]);
        assert.equal(x.slice([1, -1], [2, null], [1, 1]).toList(), [[[20, 21, 22, 23]]]);
        assert.equal(kn.tensor([1, 2]).reshape([2, 1]).expand([2, 3]).toList(), [
          [1, 1, 1],
          [2, 2, 2],
        ]);
        assert.equal(kn.ones([1, 3, 1]).squeeze().shape, [3]);
        assert.equal(kn.ones([3]).unsqueeze(-1).shape, [3, 1]);
        assert.equal(x.flatten(1).shape, [2, 12]);
        assert.equal(x.reshape([-1, 6]).shape, [4, 6]);
        assert.equal(kn.stack([kn.ones([2]), kn.zeros([2])], 1).toList(), [
          [1, 0],
          [1, 0],
        ]);
      }),
    ));

  test(`broadcasting and scalars (${b})`, () =>
    onBackend(b, () =>
      kn.tidy(() => {
        assert.equal(
          kn
            .tensor([[1], [2]])
            .add(kn.tensor([10, 20, 30]))
            .toList(),
          [
            [11, 21, 31],
            [12, 22, 32],
          ],
        );
        assert.equal(kn.sub(10, kn.tensor([1, 2])).toList(), [9, 8]);
        assert.equal(kn.tensor([1, 2], undefined, { dtype: 'int32' }).add(1).dtype, 'int32');
        assert.equal(kn.tensor([1, 2], undefined, { dtype: 'int32' }).add(0.5).dtype, 'float32');
        assert.equal(kn.tensor([1, 2], undefined, { dtype: 'int32' }).div(2).toList(), [0.5, 1]);
        assert.equal(kn.tensor([1, 5]).gt(2).toList(), [0, 1]);
        assert.equal(
          kn
            .tensor([
              [1, 9],
              [7, 3],
            ])
            .argmax(1)
            .toList(),
          [1, 0],
        );
        const w = kn.where(kn.tensor([true, false]), 10, -10);
        assert.equal([w.toList(), w.dtype, w.backend], [[10, -10], 'int32', b]);
        assert.is(kn.where(kn.tensor([true, false]), 0.5, 2).dtype, 'float32');
      }),
    ));

  test(`async data() and toString (${b})`, async () => {
    const t = onBackend(b, () => kn.tensor([1, 2]));
    assert.equal(Array.from(await t.data()), [1, 2]);
    assert.match(t.toString(), /\[1,2\].*float32/);
    t.dispose();
    assert.match(t.toString(), /disposed/);
  });
}

test('float16 and bfloat16 conversions round to nearest even', () => {
  assert.is(floatToHalfBits(1), 0x3c00);
  assert.is(floatToHalfBits(65504), 0x7bff);
  assert.is(floatToHalfBits(65520), 0x7c00); // rounds up to inf
  assert.is(floatToHalfBits(2 ** -24), 0x0001);
  assert.is(floatToHalfBits(2 ** -25), 0x0000); // tie to even
  assert.is(floatToHalfBits(3 * 2 ** -25), 0x0002);
  assert.is(floatToHalfBits(NaN) & 0x7e00, 0x7e00);
  assert.is(halfBitsToFloat(0xfbff), -65504);
  assert.is(floatToBf16Bits(1), 0x3f80);
  assert.is(floatToBf16Bits(1 + 2 ** -8), 0x3f80); // tie to even
  assert.is(floatToBf16Bits(1 + 3 * 2 ** -8), 0x3f82);
});

test('backend selection', () => {
  assert.ok(kn.backends().includes('js'));
  assert.is(kn.getBackend(), nativeBackends().includes('cpu') ? 'cpu' : 'js');
  const info = kn.info();
  const cuda = info.backends.find((x) => x.name === 'cuda')!;
  // listed either way: available where there is a device (or the CPU emulation), else with the reason
  assert.is(kn.backends().includes('cuda'), cuda.available);
  if (!cuda.available) assert.ok(cuda.reason && cuda.reason.length > 10, 'cuda says why it is missing');
  const webgpu = info.backends.find((x) => x.name === 'webgpu')!;
  assert.ok(webgpu.available || webgpu.reason, 'webgpu is available or says why not');
});

test('op methods: where, concat, stack and the conv / pool ops as methods give what the functions give', () => {
  kn.seed(3);
  const x = kn.randn([2, 3, 6, 6]),
    w = kn.randn([4, 3, 3, 3]),
    b = kn.randn([4]);
  const same = (a: kn.Tensor, e: kn.Tensor, what: string): void => {
    assert.equal(a.shape, e.shape, what);
    assert.equal(Array.from(a.toArray() as Float32Array), Array.from(e.toArray() as Float32Array), what);
  };
  kn.tidy(() => {
    const cond = x.gt(0);
    same(x.where(cond, -1), kn.where(cond, x, -1), 'where with a number');
    same(x.where(cond, x.mul(2)), kn.where(cond, x, x.mul(2)), 'where with a tensor');
    assert.equal(
      Array.from(
        kn
          .tensor([1, -2, 3])
          .where(kn.tensor([1, -2, 3]).gt(0), 0)
          .toArray(),
      ),
      [1, 0, 3],
    );
    same(x.concat(x, 1), kn.concat([x, x], 1), 'concat one');
    same(x.concat([x, x], 3), kn.concat([x, x, x], 3), 'concat a list');
    same(x.stack(x), kn.stack([x, x]), 'stack');
    same(x.stack([x, x], -1), kn.stack([x, x, x], -1), 'stack a list on the last axis');
    same(x.conv2d(w, b, { padding: 1, stride: 2 }), kn.conv2d(x, w, b, { padding: 1, stride: 2 }), 'conv2d');
    same(x.conv2d(w), kn.conv2d(x, w), 'conv2d without bias');
    same(x.maxPool2d(2), kn.maxPool2d(x, 2), 'maxPool2d');
    same(x.avgPool2d(3, { stride: 1, padding: 1 }), kn.avgPool2d(x, 3, { stride: 1, padding: 1 }), 'avgPool2d');
    // gradients flow through the method forms
    const v = x.clone();
    v.requiresGrad = true;
    const g = kn.grad((t: kn.Tensor) =>
      t.conv2d(w, null, { padding: 1 }).maxPool2d(2).concat(t.avgPool2d(2).sum(1, true), 1).sum(),
    )(v) as kn.Tensor;
    assert.equal(g.shape, [2, 3, 6, 6]);
  });
  [x, w, b].forEach((t) => t.dispose());
});

test.run();
