/**
 * createCompressor's frames: a small stream is compressed (and decompressed) on the main thread (no worker
 * thread started), a big one goes to the workers too, and both decode to what went in; outputs given back are
 * reused only when shared; libzstd's frames (FFI) and node:zlib's decode with each other, and a corrupt frame
 * fails with node:zlib's message either way. Also run under `bun test` (where the workers are real threads
 * and use libzstd; Deno compresses through node:zlib).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import zlib from "node:zlib";
import { spawnSync } from "node:child_process";
import { isShared } from "../../base/bytes.ts";
import {
  compressionWorkerCount,
  createCompressor,
  createDecompressor,
  decompressionWorkerCount,
  libzstdFrameCounts,
} from "../../codec/compression.ts";
import { compressBound, nativeZstd } from "../../codec/_zstd_native.ts";

const MiB = 1 << 20;

/** `size` bytes that compress, but not to nothing. */
function dataOf(size: number, seed: number): Uint8Array {
  const out = new Uint8Array(size);
  let x = seed;
  for (let i = 0; i < size; i++) {
    if ((i & 15) === 0) x = (x * 1103515245 + 12345) & 0x7fffffff;
    out[i] = (x >> (i & 7)) & 0x3f;
  }
  return out;
}

/** `data` in chunks of 64 KiB through a zstd compressor and back. */
async function roundTrip(data: Uint8Array): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for (let i = 0; i < data.length; i += 64 * 1024) chunks.push(data.slice(i, i + 64 * 1024));
  const source = ReadableStream.from(chunks);
  const back = source.pipeThrough(createCompressor("zstd")).pipeThrough(createDecompressor("zstd"));
  const parts: Uint8Array[] = [];
  for await (const part of back) parts.push(part.slice());
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

describe("createCompressor", () => {
  it("compresses and decompresses a stream of a few MiB without starting a worker thread", async () => {
    const data = dataOf(5 * MiB + 123, 1);
    assert.deepEqual(await roundTrip(data), data);
    assert.equal(compressionWorkerCount(), 0);
    assert.equal(decompressionWorkerCount(), 0);
  });

  // Before any other big stream: its first frames are compressed here, the workers start after them.
  it("fills shared buffers once the workers run, although the first frames were compressed here (Bun)", async () => {
    // The first frames come out of zlib on this thread on plain buffers; given back, they must not become
    // the workers' outputs: a segment's hash runs on the hashing worker only for chunks on shared memory.
    const data = dataOf(28 * MiB + 7, 3);
    const chunks: Uint8Array[] = [];
    for (let i = 0; i < data.length; i += MiB) chunks.push(data.slice(i, i + MiB));
    const compressor = createCompressor("zstd", { readerGivesBack: true });
    const shared: boolean[] = [];
    for await (const chunk of ReadableStream.from(chunks).pipeThrough(compressor)) {
      shared.push(isShared(chunk));
      compressor.giveBack?.(chunk);
    }
    assert.equal(shared.length, 29);
    if (process.versions.bun) {
      assert.ok(compressionWorkerCount() > 0);
      assert.deepEqual(shared.slice(-6), [true, true, true, true, true, true]);
    }
  });

  it("compresses a big stream on worker threads too (under Bun), the same bytes coming back", async () => {
    const data = dataOf(24 * MiB + 5, 2);
    assert.deepEqual(await roundTrip(data), data);
    if (process.versions.bun) assert.ok(compressionWorkerCount() > 0);
  });
});

/** The stream of `chunks` through `transform`, joined (each output chunk copied, then given back). */
async function through(
  chunks: Uint8Array[],
  transform: TransformStream<Uint8Array, Uint8Array> & { giveBack?: (chunk: Uint8Array) => void },
): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const part of ReadableStream.from(chunks).pipeThrough(transform)) {
    parts.push(part.slice());
    transform.giveBack?.(part);
  }
  return Buffer.concat(parts);
}

/** `size` bytes of which the first `noise` do not compress. */
function noisyDataOf(size: number, noise: number): Uint8Array {
  const out = dataOf(size, 5);
  let x = 2463534242;
  for (let i = 0; i < noise; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** Whether the zstd frame at the start of `frame` states its content size (RFC 8878: Frame_Header_Descriptor). */
function statesContentSize(frame: Uint8Array): boolean {
  const fhd = frame[4]!;
  return (fhd >> 6) !== 0 || (fhd & 0x20) !== 0;
}

describe("zstd through libzstd (FFI)", () => {
  const libzstd = nativeZstd();

  it("opens libzstd, whose frames state their content size and node:zlib decodes, and decodes node:zlib's", () => {
    assert.ok(libzstd, "libzstd.so.1 opens (Debian's libzstd1)");
    for (const size of [0, 100, 200_000, MiB]) {
      const data = dataOf(size, 7);
      const into = new Uint8Array(compressBound(size));
      const n = libzstd.compressInto(data, into);
      assert.ok(n > 0);
      const frame = into.subarray(0, n);
      assert.ok(statesContentSize(frame));
      assert.equal(libzstd.contentSize(frame), size);
      assert.deepEqual(new Uint8Array(zlib.zstdDecompressSync(frame)), data);

      const theirs = zlib.zstdCompressSync(data, { params: { [zlib.constants.ZSTD_c_compressionLevel]: 1 } });
      const out = new Uint8Array(size + 10);
      assert.equal(libzstd.decompressInto(theirs, out), size);
      assert.deepEqual(out.subarray(0, size), data);
    }
  });

  it("compresses a stream in frames that node:zlib and zstd -d read back (libzstd on every frame under Bun)", async () => {
    const data = dataOf(20 * MiB + 99, 8);
    const chunks: Uint8Array[] = [];
    for (let i = 0; i < data.length; i += 256 << 10) chunks.push(data.slice(i, i + (256 << 10)));
    const before = libzstdFrameCounts();
    const compressed = await through(chunks, createCompressor("zstd", { readerGivesBack: true }));
    const after = libzstdFrameCounts();
    const frames = after.compressed - before.compressed;
    assert.deepEqual(new Uint8Array(zlib.zstdDecompressSync(compressed)), data);
    const tool = spawnSync("zstd", ["-d", "-c", "-q"], { input: compressed, maxBuffer: 64 * MiB });
    assert.equal(tool.status, 0, String(tool.stderr));
    assert.deepEqual(new Uint8Array(tool.stdout), data);
    if (process.versions.bun) {
      // 21 frames; those on the workers (all but at most the first 16 MiB, compressed on this thread while no
      // worker runs) straight into the shared output buffers. (Deno's node:zlib writes frames without their
      // content size.)
      assert.equal(frames, 21);
      assert.ok(after.inPlace - before.inPlace >= 21 - 16);
      assert.ok(statesContentSize(compressed));
    }
  });

  it("decompresses node:zlib's and zstd's frames, with or without their content size (libzstd under Bun)", async () => {
    const data = noisyDataOf(6 * MiB + 5, 300 << 10);
    const level1 = { params: { [zlib.constants.ZSTD_c_compressionLevel]: 1 } };
    const frames: Uint8Array[] = [];
    for (let i = 0; i < data.length; i += MiB) {
      frames.push(zlib.zstdCompressSync(data.subarray(i, i + MiB), level1));
    }
    // zstd reading a pipe does not know the size: its frame does not state it.
    const piped = spawnSync("sh", ["-c", "zstd -1 -c -q --no-content-size"], {
      input: data.subarray(0, 700_000),
    });
    assert.equal(piped.status, 0, String(piped.stderr));
    assert.ok(!statesContentSize(piped.stdout));
    frames.push(new Uint8Array(piped.stdout));
    const expected = Buffer.concat([data, data.subarray(0, 700_000)]);
    const before = libzstdFrameCounts();
    // The frames cut at odd places, as segments arrive.
    const stream = Buffer.concat(frames);
    const chunks: Uint8Array[] = [];
    for (let i = 0; i < stream.length; i += 100_003) chunks.push(stream.slice(i, i + 100_003));
    assert.deepEqual(await through(chunks, createDecompressor("zstd", { readerGivesBack: true })), expected);
    if (process.versions.bun) {
      const after = libzstdFrameCounts();
      assert.equal(after.decompressed - before.decompressed, 8);
      // Those on the worker (all but small ones decompressed here while it does not run) in place.
      assert.ok(after.inPlace - before.inPlace >= 7);
    }
  });

  it("fails on a corrupt frame that libzstd rejects with node:zlib's message", async () => {
    assert.ok(libzstd);
    for (const noise of [0, 400 << 10]) {
      const data = noisyDataOf(MiB, noise);
      const into = new Uint8Array(compressBound(MiB));
      const frame = into.slice(0, libzstd.compressInto(data, into));
      for (let i = frame.length - 3000; i < frame.length - 2990; i++) frame[i]! ^= 0x5a;
      assert.ok(libzstd.decompressInto(frame, new Uint8Array(MiB)) < 0, "libzstd rejects the frame");
      assert.throws(() => zlib.zstdDecompressSync(frame));
      let message = "";
      try {
        zlib.zstdDecompressSync(frame);
      } catch (err) {
        message = (err as Error).message;
      }
      await assert.rejects(
        through([frame], createDecompressor("zstd", { readerGivesBack: true })),
        (err: Error) => {
          if (process.versions.bun) assert.equal(err.message, `Cannot decompress: ${message}`);
          else assert.ok(err.message.endsWith(message), err.message);
          return true;
        },
      );
    }
  });
});
