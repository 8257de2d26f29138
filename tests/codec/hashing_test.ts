/**
 * The SHA-256 helpers of hashing.ts: whole segments moved to the hashing thread and back, and the streaming
 * hash of downloads and of streamed segments. Also run under `bun test` (where buffers really move to the worker thread).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import {
  HASH_MOVES_BUFFER,
  hashableBuffer,
  hashLeavesBuffer,
  SegmentSha256,
  sha256InPlace,
  sha256Moving,
  StreamSha256,
} from "../../codec/hashing.ts";
import { workerBuffer } from "../../base/bytes.ts";

const KiB = 1024;

/** `count` chunks of `size` bytes, each its own buffer of distinct bytes. */
function chunksOf(count: number, size: number, seed = 1): Uint8Array[] {
  return Array.from({ length: count }, (_, i) => {
    const chunk = new Uint8Array(size);
    for (let j = 0; j < size; j += 97) chunk[j] = (i * 31 + j + seed) & 0xff;
    return chunk;
  });
}

const hexOf = (chunks: Uint8Array[]) => {
  const hash = createHash("sha256");
  for (const c of chunks) hash.update(c);
  return hash.digest("hex");
};

/** Pushes copies of `chunks` (the originals stay readable) and returns what `end()` gives. */
async function hashed(chunks: Uint8Array[]) {
  const stream = new StreamSha256();
  for (const c of chunks) stream.push(c.slice());
  return await stream.end();
}

describe("StreamSha256", () => {
  for (
    const [what, chunks] of [
      ["512 KiB chunks and a short last one", [...chunksOf(9, 512 * KiB), new Uint8Array(12345).fill(7)]],
      ["64 KiB chunks", chunksOf(40, 64 * KiB, 2)],
      ["one byte", [new Uint8Array([42])]],
      ["nothing", []],
      ["a small first chunk, then large ones", [new Uint8Array(10).fill(1), ...chunksOf(6, 1024 * KiB, 3)]],
    ] as const
  ) {
    it(`hashes ${what} and gives back the same bytes in order`, async () => {
      const { hex, chunks: back } = await hashed([...chunks]);
      assert.equal(hex, hexOf([...chunks]));
      assert.equal(Buffer.compare(Buffer.concat(back), Buffer.concat([...chunks])), 0);
    });
  }

  it("moves large chunks to the hashing thread under Bun, and hashes small ones where they are", async () => {
    const large = chunksOf(4, 512 * KiB, 11);
    const small = chunksOf(16, 64 * KiB, 12);
    for (const set of [large, small]) {
      const stream = new StreamSha256();
      for (const c of set) stream.push(c);
      await stream.end();
    }
    // A moved buffer is detached here: its view reads as empty.
    assert.equal(large[0]!.byteLength, HASH_MOVES_BUFFER ? 0 : 512 * KiB);
    assert.equal(small[0]!.byteLength, 64 * KiB);
  });

  it("hashes a stream announced as small where it is, large chunks and all (no worker for a small segment)", async () => {
    const large = chunksOf(4, 512 * KiB, 13);
    const stream = new StreamSha256({ size: 4 * 512 * KiB });
    for (const c of large) stream.push(c);
    const { hex, chunks } = await stream.end();
    assert.equal(hex, hexOf(large));
    assert.equal(chunks[0], large[0]);
    assert.equal(large[0]!.byteLength, 512 * KiB, "not moved");
    // A big one still moves (under Bun).
    const big = chunksOf(4, 512 * KiB, 14);
    const second = new StreamSha256({ size: 64 << 20 });
    for (const c of big) second.push(c);
    assert.equal((await second.end()).hex, hexOf(chunksOf(4, 512 * KiB, 14)));
    assert.equal(big[0]!.byteLength, HASH_MOVES_BUFFER ? 0 : 512 * KiB);
  });

  it("copies chunks that are views of a shared buffer, and leaves that buffer usable", async () => {
    const shared = new Uint8Array(4 * 1024 * KiB);
    for (let i = 0; i < shared.length; i += 101) shared[i] = i & 0xff;
    const views = [0, 1, 2, 3].map((i) => shared.subarray(i * 1024 * KiB, (i + 1) * 1024 * KiB));
    const stream = new StreamSha256();
    for (const v of views) stream.push(v);
    // The same whole buffer twice in one batch cannot move twice: the second goes as a copy.
    const whole = chunksOf(1, 300 * KiB, 9)[0]!;
    const expected = hexOf([...views, whole, whole]);
    stream.push(whole);
    stream.push(whole);
    const { hex, chunks } = await stream.end();
    assert.equal(shared.byteLength, 4 * 1024 * KiB, "the shared buffer was not moved away");
    assert.equal(hex, expected);
    assert.equal(Buffer.compare(Buffer.concat(chunks.slice(0, 4)), shared), 0);
    assert.equal(chunks.length, 6);
  });

  it("forgets a dropped hash, and later ones are right", async () => {
    const dropped = new StreamSha256();
    for (const c of chunksOf(5, 512 * KiB, 4)) dropped.push(c);
    dropped.drop();
    const chunks = chunksOf(5, 512 * KiB, 5);
    assert.equal((await hashed(chunks)).hex, hexOf(chunks));
  });

  it("keeps concurrent hashes apart", async () => {
    const sets = [chunksOf(8, 512 * KiB, 6), chunksOf(8, 512 * KiB, 7), chunksOf(3, 64 * KiB, 8)];
    const streams = sets.map(() => new StreamSha256());
    for (let i = 0; i < 8; i++) {
      sets.forEach((set, s) => set[i] && streams[s]!.push(set[i]!.slice()));
    }
    const results = await Promise.all(streams.map((s) => s.end()));
    results.forEach((r, s) => assert.equal(r.hex, hexOf(sets[s]!)));
  });
});

describe("sha256Moving", () => {
  it("hashes a segment and gives its bytes back", async () => {
    const [segment] = chunksOf(1, 3 * 1024 * KiB, 10);
    const copy = segment!.slice();
    const moved = await sha256Moving(segment!);
    assert.equal(moved.hex, hexOf([copy]));
    assert.equal(Buffer.compare(moved.bytes, copy), 0);
  });

  it("hashes a hashable buffer in place while it is read (a segment being stored)", async () => {
    const segment = hashableBuffer(3 * 1024 * KiB);
    segment.set(chunksOf(1, segment.byteLength, 11)[0]!);
    const copy = segment.slice();
    assert.equal(hashLeavesBuffer(segment), true);
    const hashing = sha256Moving(segment);
    // Read the whole segment while the worker hashes it: it stays readable and unchanged.
    assert.equal(segment.byteLength, copy.byteLength);
    assert.equal(Buffer.compare(segment, copy), 0);
    const moved = await hashing;
    assert.equal(moved.hex, hexOf([copy]));
    assert.equal(moved.bytes, segment);
  });

  it("moves a plain buffer under Bun, so it may not be read meanwhile", () => {
    assert.equal(hashLeavesBuffer(new Uint8Array(1024)), !HASH_MOVES_BUFFER);
    assert.equal(hashLeavesBuffer(new Uint8Array(0)), true);
  });
});

describe("SegmentSha256", () => {
  /** Updates a new hash with `chunks` (each awaited when it goes to the worker): which ones did. */
  async function segmentHash(chunks: Uint8Array[]): Promise<{ hex: string; onWorker: boolean[] }> {
    const hash = new SegmentSha256();
    const onWorker: boolean[] = [];
    for (const chunk of chunks) {
      const sent = hash.update(chunk);
      onWorker.push(sent !== undefined);
      await sent;
    }
    return { hex: await hash.digest(), onWorker };
  }

  /** `chunk`'s bytes on shared memory under Bun (`workerBuffer`: a compressor's output). */
  const shared = (chunk: Uint8Array) => {
    const out = workerBuffer(chunk.byteLength);
    out.set(chunk);
    return out;
  };

  it("hashes on the worker (Bun) when small chunks come first: an encrypted stream's header, a cut chunk's rest", async () => {
    const chunks = [chunksOf(1, 17, 20)[0]!, shared(chunksOf(1, 2 * KiB, 21)[0]!)];
    for (const c of chunksOf(3, 1024 * KiB, 22)) chunks.push(shared(c));
    chunks.push(chunksOf(1, 5 * KiB, 23)[0]!); // a plain chunk later on is copied there
    const { hex, onWorker } = await segmentHash(chunks);
    assert.equal(hex, hexOf(chunks));
    assert.deepEqual(onWorker, [
      false,
      false,
      HASH_MOVES_BUFFER,
      HASH_MOVES_BUFFER,
      HASH_MOVES_BUFFER,
      HASH_MOVES_BUFFER,
    ]);
  });

  it("hashes here a segment of a few small chunks, or one that starts on plain memory", async () => {
    const small = [chunksOf(1, 17, 24)[0]!, shared(chunksOf(1, 3 * KiB, 25)[0]!)];
    const few = await segmentHash(small);
    assert.equal(few.hex, hexOf(small));
    assert.deepEqual(few.onWorker, [false, false]);
    const plain = [...chunksOf(2, 512 * KiB, 26), shared(chunksOf(1, 512 * KiB, 27)[0]!)];
    const here = await segmentHash(plain);
    assert.equal(here.hex, hexOf(plain));
    assert.deepEqual(here.onWorker, [false, false, false]);
    assert.equal((await segmentHash([])).hex, hexOf([]));
  });
});

describe("sha256InPlace", () => {
  it("hashes a large hashable buffer (on the worker under Bun) and a small or plain one, leaving them readable", async () => {
    const large = hashableBuffer(9 * 1024 * KiB);
    large.set(chunksOf(1, large.byteLength, 30)[0]!);
    const copy = large.slice();
    const hashing = sha256InPlace(large.subarray(5));
    assert.equal(Buffer.compare(large, copy), 0, "readable meanwhile");
    assert.equal(await hashing, hexOf([copy.subarray(5)]));
    for (const bytes of [hashableBuffer(1000), new Uint8Array(10 * 1024 * KiB), new Uint8Array(0)]) {
      bytes.fill(7, 0, 100);
      assert.equal(await sha256InPlace(bytes), hexOf([bytes]));
    }
  });
});
