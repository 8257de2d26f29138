/**
 * The pipeline's pieces on real bytes: compression (checked with the zstd and gzip tools), segmenting,
 * backpressure from a slow storage back to the source, and checksum verification on read.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createCompressor, createDecompressor } from "../../codec/compression.ts";
import { readSegments, Segmenter, SegmentWriter } from "../../pipeline/mod.ts";
import { MemoryStorage } from "../../storage/memory.ts";
import { listSeries } from "../../series/manifest.ts";
import { FaultyStorage } from "../storage/faulty_storage.ts";
import { pseudoRandom } from "../_cli.ts";
import { getBytes, type Storage } from "../../storage/storage.ts";
import { collect, concat, streamOf } from "../_streams.ts";

/** Mixed data: random and repetitive, cut into uneven chunks. */
function sample(size: number): { bytes: Uint8Array; chunks: Uint8Array[] } {
  const bytes = pseudoRandom(size, 3);
  bytes.fill(65, 0, size >> 1);
  const chunks: Uint8Array[] = [];
  let o = 0;
  let step = 1;
  while (o < size) {
    const n = Math.min(size - o, step);
    chunks.push(bytes.subarray(o, o + n));
    o += n;
    step = (step * 7 + 13) % (3 << 20) + 1;
  }
  return { bytes, chunks };
}

describe("compression", () => {
  for (const kind of ["zstd", "gzip", "none"] as const) {
    it(`${kind} round-trips 5 MiB in uneven chunks`, async () => {
      const { bytes, chunks } = sample(5 * 1024 * 1024 + 17);
      const compressed = await collect(streamOf(chunks).pipeThrough(createCompressor(kind)));
      const back = await collect(streamOf([compressed.slice()]).pipeThrough(createDecompressor(kind)));
      assert.equal(back.byteLength, bytes.byteLength);
      assert.ok(Buffer.from(back).equals(Buffer.from(bytes)));
      if (kind !== "none") {
        // The command-line tools read our concatenated frames/members as one stream.
        // Through a file: Deno's execFileSync deadlocks when both input and output exceed a pipe buffer.
        const file = path.join(os.tmpdir(), `frost-pipeline-${process.pid}.${kind}`);
        fs.writeFileSync(file, compressed);
        const tool = execFileSync(kind, ["-dc", file], { maxBuffer: 64 << 20 });
        fs.rmSync(file);
        assert.ok(Buffer.from(tool).equals(Buffer.from(bytes)), `${kind} -d disagrees`);
      }
    });
  }

  it("zstd decompresses what the zstd tool wrote", async () => {
    const { bytes } = sample(3 * 1024 * 1024);
    const file = path.join(os.tmpdir(), `frost-pipeline-${process.pid}.raw`);
    fs.writeFileSync(file, bytes);
    const compressed = execFileSync("zstd", ["-c", "-19", file], { maxBuffer: 64 << 20 });
    fs.rmSync(file);
    const back = await collect(
      streamOf([new Uint8Array(compressed)]).pipeThrough(createDecompressor("zstd")),
    );
    assert.ok(Buffer.from(back).equals(Buffer.from(bytes)));
  });

  it("an empty stream compresses to something that decompresses to nothing", async () => {
    for (const kind of ["zstd", "gzip", "none"] as const) {
      const compressed = await collect(streamOf([]).pipeThrough(createCompressor(kind)));
      const back = await collect(streamOf([compressed]).pipeThrough(createDecompressor(kind)));
      assert.equal(back.byteLength, 0);
    }
  });
});

describe("Segmenter", () => {
  it("cuts a stream into segments of exactly the given size, the last one shorter", async () => {
    const { bytes, chunks } = sample(1_000_003);
    const segments: Uint8Array[] = [];
    for await (const s of streamOf(chunks).pipeThrough(new Segmenter(65_536))) segments.push(s);
    assert.equal(segments.length, Math.ceil(1_000_003 / 65_536));
    for (const s of segments.slice(0, -1)) assert.equal(s.byteLength, 65_536);
    assert.equal(segments.at(-1)!.byteLength, 1_000_003 % 65_536);
    assert.ok(Buffer.from(concat(segments)).equals(Buffer.from(bytes)));
  });
});

describe("SegmentWriter and readSegments", () => {
  it("backpressure from a slow storage reaches the source: memory stays bounded", async () => {
    const slow = new FaultyStorage(new MemoryStorage("slow"), {}) as Storage;
    const inner = slow.put.bind(slow);
    slow.put = async (key, data, options) => {
      await new Promise((r) => setTimeout(r, 5));
      return inner(key, data, options);
    };
    let produced = 0;
    let maxAhead = 0;
    const chunk = new Uint8Array(64 * 1024);
    const total = 64 * 1024 * 1024;
    const source = new ReadableStream<Uint8Array>({
      pull(c) {
        if (produced >= total) return c.close();
        produced += chunk.byteLength;
        c.enqueue(chunk.slice());
      },
    }, new CountQueuingStrategy({ highWaterMark: 1 }));
    const writer = new SegmentWriter(slow, (n) => `bp/${n}`, { queueSize: 2 });
    const timer = setInterval(() => {
      const stored = writer.refs.reduce((n, r) => n + r.size, 0);
      maxAhead = Math.max(maxAhead, produced - stored);
    }, 1);
    await source.pipeThrough(new Segmenter(1024 * 1024)).pipeTo(writer);
    clearInterval(timer);
    assert.equal(writer.refs.length, 64);
    // (queue 2 + one in the segmenter + one being written) segments, plus stream buffers.
    assert.ok(maxAhead <= 6 * 1024 * 1024, `source ran ${maxAhead} bytes ahead of the storage`);
  });

  it("reads back what it wrote, and refuses a corrupt or missing segment without passing its bytes on", async () => {
    const storage = new MemoryStorage("verify");
    const { bytes, chunks } = sample(300_000);
    const writer = new SegmentWriter(storage, (n) => `v/${n}`, { queueSize: 2 });
    await streamOf(chunks).pipeThrough(new Segmenter(100_000)).pipeTo(writer);
    assert.deepEqual(writer.refs.map((r) => r.key), ["v/0", "v/1", "v/2"]);
    assert.ok(Buffer.from(await collect(readSegments(storage, writer.refs))).equals(Buffer.from(bytes)));

    const bad = await getBytes(storage, "v/1");
    bad[10]! ^= 1;
    await storage.put("v/1", bad);
    const received: Uint8Array[] = [];
    await assert.rejects(
      readSegments(storage, writer.refs).pipeTo(new WritableStream({ write: (c) => void received.push(c) })),
      /Cannot read segment "v\/1": checksum mismatch/,
    );
    assert.equal(received.length, 1, "only the good first segment was passed on");

    await storage.delete("v/2");
    await storage.put("v/1", await getBytes(storage, "v/0").then(() => bytes.slice(100_000, 200_000)));
    await assert.rejects(collect(readSegments(storage, writer.refs)), /"v\/2": it is missing/);
  });

  it("readSegments keeps `ahead` downloads in flight and passes the segments on in order", async () => {
    const storage = new MemoryStorage("ahead");
    const { bytes, chunks } = sample(1_000_000);
    const writer = new SegmentWriter(storage, (n) => `a/${n}`, { queueSize: 2 });
    await streamOf(chunks).pipeThrough(new Segmenter(100_000)).pipeTo(writer);
    assert.equal(writer.refs.length, 10);
    for (const ahead of [1, 2, 4]) {
      // A slow storage (each get answers after 10 ms, later ones sooner) that counts gets in flight.
      const slow = Object.create(storage) as Storage;
      let inFlight = 0;
      let most = 0;
      slow.get = async (key, options) => {
        inFlight++;
        most = Math.max(most, inFlight);
        await new Promise((r) => setTimeout(r, 10 - Number(key.slice(2)) % 3));
        inFlight--;
        return storage.get(key, options);
      };
      const read = await collect(readSegments(slow, writer.refs, { ahead }));
      assert.ok(Buffer.from(read).equals(Buffer.from(bytes)), `ahead ${ahead}: the bytes, in order`);
      assert.equal(most, ahead, `ahead ${ahead}: ${most} gets at once`);
    }
  });

  it("a failing put fails the write", async () => {
    const storage = new FaultyStorage(new MemoryStorage("fail"), { failPutAfter: 1 });
    const writer = new SegmentWriter(storage, (n) => `f/${n}`, { queueSize: 2 });
    await assert.rejects(streamOf([new Uint8Array(300)]).pipeThrough(new Segmenter(100)).pipeTo(writer));
  });
});

describe("listSeries", () => {
  it("finds the series with a committed manifest from the folders, without listing any segment", async () => {
    const storage = new MemoryStorage();
    const keys = [
      "h1_a/manifests/20260101T000000.000Z.json",
      "h1_a/backups/20260101T000000.000Z/data/00000000",
      "h1_b/backups/20260102T000000.000Z/data/00000000", // uncommitted: no manifest
      "h1_b/manifests/notes.txt",
      "h2_c/manifests/20260103T000000.000Z.json",
      "h2_c/backups/20260103T000000.000Z/state/00000000",
      "stray-object",
    ];
    for (const key of keys) await storage.put(key, new TextEncoder().encode(key));
    const listed: string[] = [];
    const list = storage.list.bind(storage);
    storage.list = (prefix, options) => {
      listed.push(prefix);
      return list(prefix, options);
    };
    assert.deepEqual(await listSeries(storage), ["h1_a", "h2_c"]);
    assert.deepEqual(listed.sort(), ["h1_a/manifests/", "h1_b/manifests/", "h2_c/manifests/"]);
  });
});
