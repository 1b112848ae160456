// NCCL through kiln's addon on a lent GPU (bench/gpu/check.sh runs it): dlopen of libnccl.so.2 (KILN_NCCL_PATH,
// e.g. the one PyTorch's wheel ships), a one-rank communicator, and in-place allreduce / broadcast of a CUDA
// buffer on kiln's stream. Two ranks need two GPUs (NCCL refuses two ranks on one device): the 2-rank DDP path
// over NCCL runs in test/cuda-emu.test.ts on the CPU emulation instead. Prints one JSON line.
import * as kn from '../../src/index.js';
import { loadAddon } from '../../src/backends/native/binding.js';

const addon = loadAddon().addon!;
const status = addon.ncclStatus();
const out: Record<string, unknown> = { status: status || 'ok' };
if (!status) {
  addon.ncclInit(0, 1, addon.ncclUniqueId());
  kn.setBackend('cuda');
  const t = kn.tensor([1, 2, 3, 4]);
  addon.ncclAllreduce(t.storageHandle() as number, 0);
  out.sum = Array.from(t.toArray() as Float32Array); // one rank: unchanged
  addon.ncclAllreduce(t.storageHandle() as number, 1);
  out.mean = Array.from(t.toArray() as Float32Array);
  addon.ncclBroadcast(t.storageHandle() as number, 0);
  out.broadcast = Array.from(t.toArray() as Float32Array);
  kn.setBackend('cpu');
  try {
    addon.ncclAllreduce(kn.tensor([1]).storageHandle() as number, 0);
  } catch (e) {
    out.hostBufferError = (e as Error).message;
  }
  out.ok =
    JSON.stringify(out.sum) === '[1,2,3,4]' &&
    JSON.stringify(out.mean) === '[1,2,3,4]' &&
    JSON.stringify(out.broadcast) === '[1,2,3,4]';
}
console.log(JSON.stringify(out));
