/**
 * createCompressor's frames: a small stream is compressed (and decompressed) on the main thread (no worker
 * thread started), a big one goes to the workers too, and both decode to what went in; outputs given back are
 * reused only when shared. Also run under `bun test` (where the
 * workers are real threads; Deno compresses through node:zlib).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import { isShared } from "../../base/bytes.ts";
import {
  compressionWorkerCount,
  createCompressor,
  createDecompressor,
  decompressionWorkerCount,
} from "../../codec/compression.ts";

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
