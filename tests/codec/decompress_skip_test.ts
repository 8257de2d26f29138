/**
 * createDecompressor("zstd") told what its reader will not use (`skips`, a SkipPlan): a frame whose whole
 * output lies in such a range is not decompressed (a corrupt body there goes unnoticed) and comes as a marker
 * chunk of its size, consecutive ones as one; frames partly in a range, and frames whose header does not give
 * their size, come whole; every other byte comes where it belongs.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import zlib from "node:zlib";
import { Buffer } from "node:buffer";
import { createDecompressor, frameContentSize } from "../../codec/compression.ts";
import { skippedBytes, SkipPlan } from "../../base/skip.ts";
import { concatBytes } from "../../base/bytes.ts";

const MiB = 1 << 20;

/** `size` bytes that compress, but not to nothing. */
function dataOf(size: number, seed: number): Uint8Array {
  const out = new Uint8Array(size);
  let x = seed;
  for (let i = 0; i < size; i++) {
    if ((i & 7) === 0) x = (x * 1103515245 + 12345) & 0x7fffffff;
    out[i] = (x >> (i & 7)) & 0x7f;
  }
  return out;
}

/** One zstd frame of `block`, its content size in its header (as frost writes them). */
function frameOf(block: Uint8Array): Uint8Array {
  const frame = zlib.zstdCompressSync(block, {
    params: { [zlib.constants.ZSTD_c_compressionLevel]: 1 },
    pledgedSrcSize: block.byteLength,
  });
  return new Uint8Array(frame);
}

/** `frame` (with a window descriptor and a 4-byte content size) rewritten without its content size. */
function withoutSize(frame: Uint8Array): Uint8Array {
  assert.equal(frame[4], 0x80, "a frame header with a window descriptor and a 4-byte content size");
  const out = concatBytes([frame.subarray(0, 6), frame.subarray(10)]);
  out[4] = 0x00;
  return out;
}

/**
 * `frame` with the body of its first block
 * (compressed) garbled: its block headers stay, so the frame still ends where it did, but it no longer
 * decompresses.
 */
function corruptFirstBlock(frame: Uint8Array): Uint8Array {
  const copy = frame.slice();
  // 0x80: a window descriptor and a 4-byte content size; 0xa0: a single segment, a 4-byte content size.
  const header = { 0x80: 10, 0xa0: 9 }[copy[4]!];
  assert.ok(header !== undefined, `frame header descriptor ${copy[4]}`);
  const bh = copy[header]! | copy[header + 1]! << 8 | copy[header + 2]! << 16;
  assert.equal((bh >> 1) & 3, 2, "a compressed block");
  const size = bh >>> 3;
  for (let i = header + 3; i < header + 3 + size; i += 5) copy[i]! ^= 0x5a;
  assert.throws(() => zlib.zstdDecompressSync(copy));
  return copy;
}

interface Decoded {
  /** Bytes that came as data, each where it belongs, checked against `data`. */
  bytes: number;
  /** Marker chunks: [stream offset, bytes]. */
  markers: [number, number][];
}

/** `stream` cut into chunks of `chunk` bytes, through a zstd decompressor with `plan`; checked against `data`. */
async function decode(stream: Uint8Array, data: Uint8Array, plan: SkipPlan, chunk: number): Promise<Decoded> {
  const chunks: Uint8Array[] = [];
  for (let i = 0; i < stream.length; i += chunk) chunks.push(stream.slice(i, i + chunk));
  const out = ReadableStream.from(chunks).pipeThrough(createDecompressor("zstd", { skips: plan }));
  const result: Decoded = { bytes: 0, markers: [] };
  let at = 0;
  for await (const part of out) {
    const skipped = skippedBytes(part);
    if (skipped > 0) {
      result.markers.push([at, skipped]);
      at += skipped;
      continue;
    }
    assert.ok(at + part.byteLength <= data.byteLength, `output runs past the data at ${at}`);
    assert.ok(Buffer.from(part).equals(data.subarray(at, at + part.byteLength)), `bytes at ${at} differ`);
    at += part.byteLength;
    result.bytes += part.byteLength;
  }
  assert.equal(at, data.byteLength, "the output stands for the whole data");
  return result;
}

/** Blocks of these odd sizes, one frame each. */
const SIZES = [MiB, 700_001, MiB, MiB - 513, 333_333, MiB, 1_234_567];

function framesOf(data: Uint8Array): { frames: Uint8Array[]; starts: number[] } {
  const frames: Uint8Array[] = [];
  const starts: number[] = [];
  let at = 0;
  for (const size of SIZES) {
    starts.push(at);
    frames.push(frameOf(data.subarray(at, at + size)));
    at += size;
  }
  starts.push(at);
  return { frames, starts };
}

describe("createDecompressor() with skips", () => {
  const data = dataOf(SIZES.reduce((a, b) => a + b, 0), 7);
  const { frames, starts } = framesOf(data);

  it("reads each frame's content size from its header", () => {
    for (const [k, frame] of frames.entries()) assert.equal(frameContentSize(frame), SIZES[k]);
    assert.equal(frameContentSize(withoutSize(frames[0]!)), -1);
  });

  for (const chunk of [64 * 1024 + 17, 3 * MiB + 1]) {
    it(`leaves undecompressed the frames wholly inside a skipped range (input chunks of ${chunk} bytes)`, async () => {
      // From a byte into frame 1 to a byte before the end of frame 5: frames 2 to 4 lie wholly inside (a
      // frame placed a byte off would not), with corrupt bodies.
      const from = starts[1]! + 1;
      const to = starts[6]! - 1;
      const bad = frames.map((f, k) => {
        if (k < 2 || k > 4) return f;
        return corruptFirstBlock(f);
      });
      const plan = new SkipPlan();
      plan.add(from, to - from);
      const r = await decode(concatBytes(bad), data, plan, chunk);
      assert.deepEqual(r.markers, [[starts[2]!, starts[5]! - starts[2]!]]);
      assert.equal(r.bytes, data.byteLength - (starts[5]! - starts[2]!));
    });
  }

  it("decompresses a frame whose header does not give its size, and places the next frames right", async () => {
    const stream = concatBytes(frames.map((f, k) => k === 2 || k === 5 ? withoutSize(f) : f));
    const from = starts[1]! + 1;
    const to = starts[7]! - 1;
    for (const chunk of [4096 + 3, 10 * MiB]) {
      const plan = new SkipPlan();
      plan.add(from, to - from);
      const r = await decode(stream, data, plan, chunk);
      // Whatever was skipped lies inside the range, in whole frames of a known size.
      for (const [at, n] of r.markers) {
        assert.ok(at >= from && at + n <= to, `marker [${at}, ${at + n}) outside the range`);
        assert.ok(starts.includes(at) && starts.includes(at + n), `marker [${at}, ${at + n}) not on frames`);
        for (const k of [2, 5]) assert.ok(at + n <= starts[k]! || at >= starts[k + 1]!, `frame ${k} skipped`);
      }
    }
  });

  it("reads frames and skippable frames cut anywhere, skipped or not", async () => {
    const skippable = new Uint8Array([0x50, 0x2a, 0x4d, 0x18, 5, 0, 0, 0, 1, 2, 3, 4, 5]);
    const stream = concatBytes(frames.flatMap((f) => [skippable, f]));
    for (const chunk of [1, 7, 4096 + 3, stream.byteLength]) {
      const none = await decode(stream, data, new SkipPlan(), chunk);
      assert.equal(none.bytes, data.byteLength);
      const plan = new SkipPlan();
      plan.add(starts[1]! + 1, starts[6]! - starts[1]! - 2);
      const some = await decode(stream, data, plan, chunk);
      assert.deepEqual(some.markers, [[starts[2]!, starts[5]! - starts[2]!]]);
    }
  });

  it("decompresses every frame when no range holds a whole one", async () => {
    const plan = new SkipPlan();
    plan.add(starts[1]! + 1, SIZES[1]! + SIZES[2]! - 2);
    const r = await decode(concatBytes(frames), data, plan, 100_000);
    assert.deepEqual(r.markers, []);
    assert.equal(r.bytes, data.byteLength);
  });
});
