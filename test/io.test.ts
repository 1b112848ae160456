import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as kn from '../src/index.js';
import { decodeSafetensors, encodeSafetensors } from '../src/io/safetensors.js';
import { writeFileAtomicSync } from '../src/io/atomic.js';
import { throwsKiln, tempDir } from './helpers.js';

const dir = tempDir('kiln-io-');
const bytesOf = (chunks: Uint8Array[]): Uint8Array => Buffer.concat(chunks);

/** A safetensors file from a header object and a data section. */
function file(header: unknown, data: Uint8Array = new Uint8Array(0), hlen?: number): Uint8Array {
  const h = new TextEncoder().encode(JSON.stringify(header));
  const len = new Uint8Array(8);
  new DataView(len.buffer).setBigUint64(0, BigInt(hlen ?? h.byteLength), true);
  return bytesOf([len, h, data]);
}

test('safetensors: every dtype round-trips bit-exactly, metadata kept, names sorted', async () => {
  const ts = {
    f32: kn.tensor([1.5, -2, 3e-8], [3]),
    f16: kn.tensor([0.1, 65504, -0.000061], [3], { dtype: 'float16' }),
    bf16: kn.tensor([[1.1, -3.3e38]], undefined, { dtype: 'bfloat16' }),
    i32: kn.tensor(new Int32Array([-2147483648, 7]), [2]),
    i8: kn.tensor(new Int8Array([-128, 127]), [2, 1]),
    u8: kn.tensor(new Uint8Array([0, 255]), [2]),
    b: kn.tensor([true, false, true]),
    empty: kn.zeros([0, 4]),
    scalar: kn.tensor(42),
  };
  const path = join(dir, 'all.safetensors');
  await kn.io.save(path, ts, { metadata: { note: 'hi' } });
  const raw = readFileSync(path);
  const hlen = Number(raw.readBigUInt64LE(0));
  assert.is((8 + hlen) % 8, 0, 'data section is 8-byte aligned');
  const header = JSON.parse(raw.subarray(8, 8 + hlen).toString());
  assert.equal(header.f16, {
    dtype: 'F16',
    shape: [3],
    data_offsets: [header.f16.data_offsets[0], header.f16.data_offsets[0] + 6],
  });
  const { tensors, metadata } = await kn.io.loadWithMetadata(path);
  assert.equal({ ...metadata }, { note: 'hi' }); // a null-prototype record (names from the file)
  for (const [k, t] of Object.entries(ts)) {
    const u = tensors[k]!;
    assert.is(u.dtype, t.dtype, k);
    assert.equal(u.shape, t.shape, k);
    assert.equal(Array.from(u.toArray()), Array.from(t.toArray()), k);
  }
  // a module saves its state dict
  const lin = new kn.nn.Linear(3, 2);
  await kn.io.save(join(dir, 'lin.safetensors'), lin);
  const back = await kn.io.load(join(dir, 'lin.safetensors'));
  assert.equal(Object.keys(back).sort(), ['bias', 'weight']);
  new kn.nn.Linear(3, 2).loadStateDict(back);
});

test('safetensors: int64 (as PyTorch writes) reads as int32 when it fits, else FormatError', () => {
  const i64 = (vals: bigint[]): Uint8Array => new Uint8Array(BigInt64Array.from(vals).buffer);
  const { tensors } = decodeSafetensors(
    file(
      {
        n: { dtype: 'I64', shape: [], data_offsets: [0, 8] },
        ids: { dtype: 'I64', shape: [3], data_offsets: [8, 32] },
      },
      bytesOf([i64([3n]), i64([-2147483648n, 0n, 2147483647n])]),
    ),
  );
  assert.is(tensors.n!.dtype, 'int32');
  assert.equal(tensors.n!.shape, []);
  assert.equal(Array.from(tensors.n!.toArray()), [3]);
  assert.equal(Array.from(tensors.ids!.toArray()), [-2147483648, 0, 2147483647]);
  Object.values(tensors).forEach((t) => t.dispose());
  throwsKiln(
    () => decodeSafetensors(file({ ids: { dtype: 'I64', shape: [2], data_offsets: [0, 16] } }, i64([1n, 2n ** 31n]))),
    kn.FormatError,
    /tensor 'ids' is int64 and holds 2147483648 at index 1; kiln reads int64 as int32/,
  );
  throwsKiln(
    () => decodeSafetensors(file({ ids: { dtype: 'I64', shape: [2], data_offsets: [0, 12] } }, new Uint8Array(12))),
    kn.FormatError,
    /needs 16 bytes, its offsets span 12/,
  );
});

test('safetensors: truncated and hostile files are refused with FormatError', () => {
  const good = bytesOf(encodeSafetensors({ a: kn.tensor([1, 2, 3]), b: kn.tensor(new Int32Array([4]), [1]) }));
  throwsKiln(() => decodeSafetensors(good.subarray(0, 5)), kn.FormatError, /too short/);
  throwsKiln(() => decodeSafetensors(good.subarray(0, good.byteLength - 1)), kn.FormatError, /truncated|cover/);
  throwsKiln(() => decodeSafetensors(good.subarray(0, 20)), kn.FormatError, /runs past the end of the file/);
  throwsKiln(
    () => decodeSafetensors(file({}, new Uint8Array(0), 2 ** 40)),
    kn.FormatError,
    /exceeds the 100000000-byte limit/,
  );
  const bad = file({});
  bad[8] = 0xff;
  throwsKiln(() => decodeSafetensors(bad), kn.FormatError, /not valid UTF-8 JSON/);
  throwsKiln(() => decodeSafetensors(file([1, 2])), kn.FormatError, /must be a JSON object/);
  throwsKiln(
    () => decodeSafetensors(file({ a: { dtype: 'F64', shape: [1], data_offsets: [0, 8] } }, new Uint8Array(8))),
    kn.FormatError,
    /dtype "F64"/,
  );
  throwsKiln(
    () => decodeSafetensors(file({ a: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, new Uint8Array(4))),
    kn.FormatError,
    /shape/,
  );
  throwsKiln(
    () => decodeSafetensors(file({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 4] } }, new Uint8Array(4))),
    kn.FormatError,
    /needs 8 bytes, its offsets span 4/,
  );
  throwsKiln(
    () => decodeSafetensors(file({ a: { dtype: 'F32', shape: [1], data_offsets: [4, 0] } }, new Uint8Array(4))),
    kn.FormatError,
    /data_offsets/,
  );
  throwsKiln(
    () =>
      decodeSafetensors(
        file(
          {
            a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] },
            b: { dtype: 'F32', shape: [1], data_offsets: [2, 6] },
          },
          new Uint8Array(8),
        ),
      ),
    kn.FormatError,
    /overlaps/,
  );
  throwsKiln(
    () => decodeSafetensors(file({ a: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, new Uint8Array(8))),
    kn.FormatError,
    /bytes 0..4 belong to no tensor/,
  );
  throwsKiln(
    () => decodeSafetensors(file({ a: { dtype: 'BOOL', shape: [1], data_offsets: [0, 1] } }, new Uint8Array([2]))),
    kn.FormatError,
    /holds the byte 2/,
  );
  throwsKiln(() => decodeSafetensors(file({ __metadata__: { a: 1 } })), kn.FormatError, /must be a string/);
  throwsKiln(
    () => decodeSafetensors(file({ a: { dtype: 'F32', shape: [1e9, 1e9], data_offsets: [0, 4] } }, new Uint8Array(4))),
    kn.FormatError,
    /needs/,
  );
  // random corruption never crashes: it loads or throws FormatError
  for (let i = 0; i < 300; i++) {
    const c = good.slice();
    for (let k = 0; k < 3; k++) c[(i * 7919 + k * 104729) % c.byteLength] = (i * 31 + k) & 0xff;
    try {
      decodeSafetensors(c.subarray(0, c.byteLength - (i % 3)));
    } catch (e) {
      assert.instance(e, kn.FormatError);
    }
  }
});

test('atomic writes: no temp files left, a failed write keeps the old file', async () => {
  const p = join(dir, 'atomic.bin');
  writeFileAtomicSync(p, [new Uint8Array([1, 2, 3])]);
  writeFileAtomicSync(p, [new Uint8Array([4, 5])]);
  assert.equal([...readFileSync(p)], [4, 5]);
  assert.equal(
    readdirSync(dir).filter((f) => f.includes('.tmp-')),
    [],
  );
  let threw = false;
  try {
    await kn.io.save(join(dir, 'no-such-dir', 'x.safetensors'), { a: kn.ones([1]) });
  } catch {
    threw = true;
  }
  assert.ok(threw);
  await kn.io.save(p, { a: kn.ones([2]) });
  assert.ok(existsSync(p));
  assert.equal(
    readdirSync(dir).filter((f) => f.includes('.tmp-')),
    [],
  );
});

test('checkpoints carry a fitted scaler and the RNG state with the model', async () => {
  const dir = tempDir('kiln-ckpt-scaler-');
  const p = join(dir, 'c.safetensors');
  const scaler = new kn.data.StandardScaler().fit(
    kn.tensor([
      [1, 10],
      [3, 30],
      [5, 20],
    ]),
  );
  kn.seed(77);
  const rng = kn.getRngState();
  const m = new kn.nn.Linear(2, 1);
  await kn.io.saveCheckpoint(p, { model: m, scaler, state: { rng } });
  const back = await kn.io.checkpointScaler(p);
  assert.ok(back instanceof kn.data.StandardScaler);
  assert.equal(back!.toJSON(), scaler.toJSON());
  const x = kn.tensor([[2, 15]]);
  assert.equal(Array.from(back!.transform(x).toArray()), Array.from(scaler.transform(x).toArray()));
  const state = (await kn.io.loadCheckpoint(p, { model: new kn.nn.Linear(2, 1) })) as { rng: unknown };
  assert.equal(state.rng, rng);
  await kn.io.saveCheckpoint(p, { model: m });
  assert.is(await kn.io.checkpointScaler(p), null);
});

test('checkpoints restore model, optimizer, scheduler and state; bad files are refused', async () => {
  kn.seed(2);
  const m = new kn.nn.Sequential(new kn.nn.Linear(2, 3), new kn.nn.BatchNorm1d(3));
  const opt = new kn.optim.Adam(m.parameters(), { lr: 0.1 });
  const sch = new kn.optim.StepLR(opt, { stepSize: 1, gamma: 0.5 });
  kn.tidy(() => {
    m.call(kn.randn([4, 2]))
      .sum()
      .backward();
    opt.step();
    sch.step();
  });
  const p = join(dir, 'c.ckpt');
  await kn.io.saveCheckpoint(p, { model: m, optimizer: opt, scheduler: sch, state: { epoch: 3 } });
  kn.seed(9);
  const m2 = new kn.nn.Sequential(new kn.nn.Linear(2, 3), new kn.nn.BatchNorm1d(3));
  const opt2 = new kn.optim.Adam(m2.parameters(), { lr: 0.1 });
  const sch2 = new kn.optim.StepLR(opt2, { stepSize: 1, gamma: 0.5 });
  assert.equal(await kn.io.loadCheckpoint(p, { model: m2, optimizer: opt2, scheduler: sch2 }), { epoch: 3 });
  for (const [k, t] of Object.entries(m.stateDict()))
    assert.equal(Array.from(m2.stateDict()[k]!.toArray()), Array.from(t.toArray()), k);
  assert.is(opt2.lr, 0.05);
  assert.equal(opt2.stateDict().steps, [1, 1, 1, 1]);
  await kn.io.save(join(dir, 'plain.safetensors'), { a: kn.ones([1]) });
  let err: unknown;
  try {
    await kn.io.loadCheckpoint(join(dir, 'plain.safetensors'), { model: m2 });
  } catch (e) {
    err = e;
  }
  assert.instance(err, kn.FormatError);
  assert.match((err as Error).message, /not a kiln checkpoint/);
});

/** Awaits `p` and checks that it rejects with an ArgumentError whose message matches `re`. */
async function rejects(p: Promise<unknown>, re: RegExp): Promise<void> {
  try {
    await p;
  } catch (e) {
    assert.instance(e, kn.ArgumentError, String(e));
    assert.match((e as Error).message, re);
    return;
  }
  assert.unreachable(`expected an ArgumentError matching ${re}`);
}

test('a checkpoint that does not fit leaves the model, optimizer and scheduler as they were', async () => {
  /** A Linear(3, 2) and an Adam that has taken one step on it. */
  const trained = (seed: number, lr: number): [kn.nn.Linear, kn.optim.Adam] => {
    kn.seed(seed);
    const m = new kn.nn.Linear(3, 2);
    const opt = new kn.optim.Adam(m.parameters(), { lr });
    kn.tidy(() => {
      m.call(kn.randn([4, 3]))
        .sum()
        .backward();
      opt.step();
    });
    return [m, opt];
  };
  const [m, opt] = trained(21, 0.2);
  const p = join(dir, 'fit.ckpt');
  await kn.io.saveCheckpoint(p, { model: m, optimizer: opt });

  const [m2, adam] = trained(22, 0.01);
  const sgd = new kn.optim.SGD(m2.parameters(), { lr: 0.3 });
  const sch = new kn.optim.StepLR(adam, { stepSize: 1, gamma: 0.5 });
  sch.step();
  const snap = (): unknown => ({
    model: Object.fromEntries(Object.entries(m2.stateDict()).map(([k, t]) => [k, Array.from(t.toArray())])),
    adam: (() => {
      const sd = adam.stateDict();
      const out = {
        lr: sd.hyper.lr,
        steps: sd.steps,
        t: Object.keys(sd.tensors).map((k) => [k, Array.from(sd.tensors[k]!.toArray())]),
      };
      for (const t of Object.values(sd.tensors)) t.dispose();
      return out;
    })(),
    sgdLr: sgd.lr,
    sch: sch.stateDict(),
  });
  const other = new kn.nn.Linear(3, 4);
  const wider = new kn.optim.Adam([...m2.parameters(), kn.zeros([2], { requiresGrad: true })]);
  const before = snap();
  const fails = async (parts: Parameters<typeof kn.io.loadCheckpoint>[1], cls: typeof kn.KilnError, re: RegExp) => {
    const live = kn.memory().numTensors;
    try {
      await kn.io.loadCheckpoint(p, parts);
      assert.unreachable('the checkpoint loaded');
    } catch (e) {
      assert.instance(e, cls, String(e));
      assert.match((e as Error).message, re);
    }
    assert.is(kn.memory().numTensors, live, 'no tensor is left behind');
    assert.equal(snap(), before, 'nothing changed');
  };
  // the model fits in each case: the optimizer or the scheduler does not
  await fails({ model: m2, optimizer: sgd }, kn.ValidationError, /optimizer state is for Adam, this optimizer is SGD/);
  await fails({ model: m2, optimizer: adam, scheduler: sch }, kn.ValidationError, /holds no scheduler state/);
  await fails({ model: m2, optimizer: wider }, kn.ValidationError, /2 step counts, this optimizer has 3 parameters/);
  // and a model that does not fit leaves a fitting optimizer alone
  await fails({ model: other, optimizer: adam }, kn.ShapeError, /has shape \[2, 3\], expected \[4, 3\]/);

  await kn.io.loadCheckpoint(p, { model: m2, optimizer: adam });
  assert.equal(Array.from(m2.weight.toArray()), Array.from(m.weight.toArray()));
  assert.is(adam.lr, 0.2);

  // the parts themselves: a misspelt one would silently save or restore nothing; checked before the file is touched
  const saved = readFileSync(p);
  for (const [parts, re] of [
    [{ model: m, optimiser: opt }, /^saveCheckpoint: unknown option "optimiser" \(the options are model, optimizer, /],
    [{ model: m, optimizer: m }, /^saveCheckpoint: optimizer must be a kn\.optim optimizer, got a Linear/],
    [{ model: m, scheduler: opt }, /^saveCheckpoint: scheduler must be a kn\.optim scheduler/],
    [{ model: m, scaler: {} }, /^saveCheckpoint: scaler must be a fitted kn\.data transformer/],
    [{ optimizer: opt }, /^saveCheckpoint needs \{ model: Module \}, got undefined/],
  ] as const) {
    await rejects(kn.io.saveCheckpoint(p, parts as never), re);
    assert.ok(Buffer.compare(readFileSync(p), saved) === 0, 'the checkpoint on disk is unchanged');
  }
  await rejects(
    kn.io.loadCheckpoint(p, { model: m2, scaler: {} } as never),
    /does not restore a scaler in place: read it with kn\.io\.checkpointScaler/,
  );
  await rejects(kn.io.loadCheckpoint(p, { model: m2, state: {} } as never), /takes no state: it returns the state/);
  await rejects(
    kn.io.loadCheckpoint(join(dir, 'no-such.ckpt'), { model: m2, optimiser: adam } as never),
    /unknown option "optimiser"/,
  );
});

test('a checkpoint write that runs out of space (ENOSPC, a 1 MiB tmpfs) leaves the previous checkpoint intact', async () => {
  const mnt = tempDir('kiln-enospc-');
  // mount and umount run without the sanitizer run's LD_PRELOAD
  const env = { ...process.env, LD_PRELOAD: '' };
  const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mnt], { encoding: 'utf8', env });
  assert.is(m.status, 0, `mounting a tmpfs for the test failed (needs root): ${m.stderr}`);
  try {
    kn.seed(4);
    const small = new kn.nn.Linear(16, 16);
    const file = join(mnt, 'ckpt.safetensors');
    await kn.io.saveCheckpoint(file, { model: small, state: { epoch: 1 } });
    const before = readFileSync(file);
    const big = new kn.nn.Linear(1024, 512); // 2 MiB of weights on a 1 MiB file system
    for (const save of [
      () => kn.io.saveCheckpoint(file, { model: big, state: { epoch: 2 } }),
      async () => kn.io.saveCheckpointSync(file, { model: big, state: { epoch: 2 } }),
    ]) {
      try {
        await save();
        assert.unreachable('a 2 MiB checkpoint fit on a 1 MiB tmpfs');
      } catch (e) {
        assert.instance(e, kn.ValidationError, String(e));
        assert.match((e as Error).message, `cannot write ${file}: ENOSPC: no space left on device`);
        assert.is(((e as Error).cause as NodeJS.ErrnoException).code, 'ENOSPC', 'the file-system error is its cause');
      }
      assert.ok(Buffer.compare(readFileSync(file), before) === 0, 'the previous checkpoint is unchanged');
      assert.equal(readdirSync(mnt), ['ckpt.safetensors'], 'no temp file is left behind');
    }
    const restored = new kn.nn.Linear(16, 16);
    const state = await kn.io.loadCheckpoint(file, { model: restored });
    assert.equal(state, { epoch: 1 });
    assert.equal(Array.from(restored.weight.toArray()), Array.from(small.weight.toArray()));
  } finally {
    spawnSync('umount', [mnt], { env });
  }
});

test.run();
