// TensorBoard event files (`events.out.tfevents.<time>.<host>.<pid>.kiln`): TFRecord framing (little-endian
// uint64 length, its masked CRC-32C, the bytes, their masked CRC-32C) around tensorflow.Event protobufs carrying
// scalar and histogram summaries, so `tensorboard --logdir DIR` shows kiln's curves. Every record is one
// appendFileSync of the whole frame (a single O_APPEND write): a killed process leaves whole records behind.
import { appendFileSync, mkdirSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import protobuf from 'protobufjs';

/** The subset of tensorflow/core/util/event.proto and summary.proto kiln writes. */
const root = protobuf.Root.fromJSON({
  nested: {
    tensorflow: {
      nested: {
        HistogramProto: {
          fields: {
            min: { type: 'double', id: 1 },
            max: { type: 'double', id: 2 },
            num: { type: 'double', id: 3 },
            sum: { type: 'double', id: 4 },
            sumSquares: { type: 'double', id: 5 },
            bucketLimit: { rule: 'repeated', type: 'double', id: 6, options: { packed: true } },
            bucket: { rule: 'repeated', type: 'double', id: 7, options: { packed: true } },
          },
        },
        SummaryValue: {
          fields: {
            tag: { type: 'string', id: 1 },
            simpleValue: { type: 'float', id: 2 },
            histo: { type: 'HistogramProto', id: 5 },
          },
        },
        Summary: { fields: { value: { rule: 'repeated', type: 'SummaryValue', id: 1 } } },
        Event: {
          fields: {
            wallTime: { type: 'double', id: 1 },
            step: { type: 'int64', id: 2 },
            fileVersion: { type: 'string', id: 3 },
            summary: { type: 'Summary', id: 5 },
          },
        },
      },
    },
  },
});
const EventType = root.lookupType('tensorflow.Event');

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1; // Castagnoli, reflected
    t[i] = c >>> 0;
  }
  return t;
})();

/** CRC-32C (Castagnoli) of bytes. */
export function crc32c(b: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < b.length; i++) c = CRC_TABLE[(c ^ b[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** TFRecord's masked CRC: rotate right by 15, add a constant. */
export function maskedCrc32c(b: Uint8Array): number {
  const c = crc32c(b);
  return (((c >>> 15) | (c << 17)) + 0xa282ead8) >>> 0;
}

/** One TFRecord frame around `data`. */
export function tfRecord(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(8 + 4 + data.length + 4);
  const dv = new DataView(out.buffer);
  dv.setBigUint64(0, BigInt(data.length), true);
  dv.setUint32(8, maskedCrc32c(out.subarray(0, 8)), true);
  out.set(data, 12);
  dv.setUint32(12 + data.length, maskedCrc32c(data), true);
  return out;
}

/** Histogram buckets TensorBoard-style: `bins` equal-width buckets over [min, max]. */
function histogram(values: ArrayLike<number>, bins: number) {
  let min = Infinity,
    max = -Infinity,
    sum = 0,
    sumSquares = 0,
    num = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (!Number.isFinite(v)) continue;
    min = Math.min(min, v);
    max = Math.max(max, v);
    sum += v;
    sumSquares += v * v;
    num++;
  }
  if (num === 0) return { min: 0, max: 0, num: 0, sum: 0, sumSquares: 0, bucketLimit: [0], bucket: [0] };
  const width = max > min ? (max - min) / bins : 1;
  const bucket = new Array<number>(bins).fill(0);
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (!Number.isFinite(v)) continue;
    bucket[Math.min(bins - 1, Math.floor((v - min) / width))]! += 1;
  }
  const bucketLimit = bucket.map((_, k) => (k === bins - 1 ? max : min + (k + 1) * width));
  return { min, max, num, sum, sumSquares, bucketLimit, bucket };
}

/** Appends scalar and histogram events to one event file in `dir`. */
export class EventWriter {
  readonly file: string;

  constructor(dir: string) {
    mkdirSync(dir, { recursive: true });
    this.file = join(dir, `events.out.tfevents.${Math.floor(Date.now() / 1000)}.${hostname()}.${process.pid}.kiln`);
    this.write({ wallTime: Date.now() / 1000, step: 0, fileVersion: 'brain.Event:2' });
  }

  private write(event: Record<string, unknown>): void {
    const bytes = EventType.encode(EventType.fromObject(event)).finish();
    appendFileSync(this.file, tfRecord(bytes));
  }

  scalar(tag: string, value: number, step: number, wallTime = Date.now() / 1000): void {
    this.write({ wallTime, step, summary: { value: [{ tag, simpleValue: value }] } });
  }

  histogram(tag: string, values: ArrayLike<number>, step: number, bins = 30, wallTime = Date.now() / 1000): void {
    this.write({ wallTime, step, summary: { value: [{ tag, histo: histogram(values, bins) }] } });
  }
}
