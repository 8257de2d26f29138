/**
 * Streamed puts (`Storage.openPut`) and whole-segment reads (`Storage.getInto`) of the local storage, and
 * the pipeline paths that use them: segments written as they are produced, a failure mid-way committing
 * nothing, segments read into reused buffers, and zstd streams cut anywhere.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import { execFileSync } from "node:child_process";
import zlib from "node:zlib";
import { createHash } from "node:crypto";
import path from "node:path";
import {
  BufferPool,
  readSegments,
  runBackup,
  runRestore,
  segmentPool,
  StreamingSegmentWriter,
} from "../../pipeline/mod.ts";
import { createCompressor, createDecompressor } from "../../codec/compression.ts";
import { tarEngine } from "../../engines/tar.ts";
import { engineForBackup } from "../../engines/registry.ts";
import { loadManifests, type Manifest } from "../../series/manifest.ts";
import { LocalStorage, TEMP_PREFIX } from "../../storage/local.ts";
import { RetryStorage } from "../../storage/retry.ts";
import { LimitStorage } from "../../storage/limit.ts";
import {
  type CallOptions,
  canReadInPlace,
  canStreamPut,
  getBytes,
  NotFoundError,
  type PutStream,
  type Storage,
  StorageError,
} from "../../storage/storage.ts";
import { cleanup, pseudoRandom, tempDir } from "../_cli.ts";
import { assertSameTree } from "../_tree.ts";
import { collect, listKeys, streamOf } from "../_streams.ts";
import { isShared, SHARE_WITH_WORKERS, workerBuffer } from "../../base/bytes.ts";

/** Every path under `dir`, relative, `/`-separated. */
function walk(dir: string): string[] {
  return (fs.readdirSync(dir, { recursive: true }) as string[]).map((p) => p.split(path.sep).join("/"))
    .sort();
}

/** A local storage whose streamed puts fail once `failAfter` bytes in all have been written. */
class FailingStreams implements Storage {
  readonly url: string;
  written = 0;
  constructor(readonly inner: LocalStorage, readonly failAfter: number) {
    this.url = inner.url;
  }
  put(key: string, data: Uint8Array, options?: CallOptions) {
    return this.inner.put(key, data, options);
  }
  get(key: string, options?: CallOptions) {
    return this.inner.get(key, options);
  }
  stat(key: string, options?: CallOptions) {
    return this.inner.stat(key, options);
  }
  list(prefix: string, options?: CallOptions) {
    return this.inner.list(prefix, options);
  }
  listFolders(prefix: string, options?: CallOptions) {
    return this.inner.listFolders(prefix, options);
  }
  delete(key: string, options?: CallOptions) {
    return this.inner.delete(key, options);
  }
  close() {
    return this.inner.close();
  }
  async openPut(key: string, options?: CallOptions): Promise<PutStream> {
    const put = await this.inner.openPut(key, options);
    return {
      write: async (chunk) => {
        this.written += chunk.byteLength;
        if (this.written > this.failAfter) {
          await put.abort();
          throw new StorageError(`Cannot write "${key}": disk on fire`);
        }
        await put.write(chunk);
      },
      commit: () => put.commit(),
      abort: () => put.abort(),
    };
  }
}

let idClock = Date.parse("2026-02-01T00:00:00Z");
function nextId(): string {
  idClock += 1000;
  return new Date(idClock).toISOString().replace(/[-:]/g, "").replace(/(\.\d{3})Z$/, "$1Z");
}

function backup(storage: Storage, source: string, segmentSize = 64 * 1024) {
  return runBackup({
    storage,
    engine: tarEngine,
    source,
    hostname: "h",
    name: "n",
    id: nextId(),
    level: 0,
    parent: null,
    compression: "zstd",
    segmentSize,
    queueSize: 2,
    frostVersion: "test",
  });
}

describe("LocalStorage.openPut() and getInto()", () => {
  let work: string;
  let root: string;
  let storage: LocalStorage;
  before(async () => {
    work = tempDir("streamed-put");
    root = path.join(work, "store");
    storage = await LocalStorage.open(root, { create: true });
  });
  after(() => cleanup(work));

  it("writes in pieces and shows the object only once committed", async () => {
    const put = await storage.openPut("a/b/obj");
    await put.write(new TextEncoder().encode("hello "));
    await put.write(new TextEncoder().encode("world"));
    assert.deepEqual(await listKeys(storage), [], "nothing listed before the commit");
    await assert.rejects(storage.stat("a/b/obj"), NotFoundError);
    await put.commit();
    await put.abort(); // after a commit: a no-op
    assert.equal(new TextDecoder().decode(await getBytes(storage, "a/b/obj")), "hello world");
    assert.deepEqual(walk(root), ["a", "a/b", "a/b/obj"], "no temp file left");
    await storage.delete("a/b/obj");
  });

  it("a put aborted mid-way leaves no object, no temp file and no folder it created", async () => {
    const put = await storage.openPut("x/y/obj");
    await put.write(pseudoRandom(100_000, 1));
    await put.abort();
    await assert.rejects(put.write(new Uint8Array(1)), StorageError);
    await assert.rejects(put.commit(), StorageError);
    assert.deepEqual(await listKeys(storage), []);
    assert.deepEqual(walk(root), []);
  });

  it("a put whose signal fires mid-way fails, keeps the previous object and leaves no temp file", async () => {
    await storage.put("k/obj", new TextEncoder().encode("old"));
    const controller = new AbortController();
    const put = await storage.openPut("k/obj", { signal: controller.signal });
    await put.write(new TextEncoder().encode("new bytes"));
    controller.abort(new Error("stop"));
    await assert.rejects(put.write(new TextEncoder().encode("more")), /stop/);
    await assert.rejects(put.commit(), StorageError);
    assert.equal(new TextDecoder().decode(await getBytes(storage, "k/obj")), "old");
    assert.deepEqual(walk(root).filter((p) => p.includes(TEMP_PREFIX)), []);
    await storage.delete("k/obj");
  });

  it("a commit that cannot rename (a folder is in the way) fails and removes its temp file", async () => {
    await storage.put("f/obj/inside", new Uint8Array([1]));
    const put = await storage.openPut("f/obj");
    await put.write(new Uint8Array([1, 2, 3]));
    await assert.rejects(put.commit(), StorageError);
    assert.deepEqual(await listKeys(storage), ["f/obj/inside"]);
    assert.deepEqual(walk(root).filter((p) => p.includes(TEMP_PREFIX)), []);
    await storage.delete("f/obj/inside");
  });

  it("getInto() reads a whole object, reports a bigger one by filling the buffer, and NotFoundError", async () => {
    const bytes = pseudoRandom(300_000, 2);
    await storage.put("g/obj", bytes);
    const buffer = new Uint8Array(bytes.byteLength + 1);
    assert.equal(await storage.getInto("g/obj", buffer), bytes.byteLength);
    assert.ok(Buffer.from(buffer.subarray(0, bytes.byteLength)).equals(Buffer.from(bytes)));
    assert.equal(await storage.getInto("g/obj", new Uint8Array(1000)), 1000);
    await assert.rejects(storage.getInto("g/missing", buffer), NotFoundError);
    await storage.delete("g/obj");
  });

  it("RetryStorage passes openPut and getInto through", async () => {
    const retry = new RetryStorage(storage);
    assert.ok(retry.openPut && retry.getInto);
    const put = await retry.openPut("r/obj");
    await put.write(new Uint8Array([7, 8]));
    await put.commit();
    assert.equal(await retry.getInto("r/obj", new Uint8Array(3)), 2);
    await retry.delete("r/obj");
  });

  it("LimitStorage passes openPut through, and getInto without a download limit", async () => {
    assert.ok(!canReadInPlace(new LimitStorage(storage, { download: 1 << 20 })));
    const limited = new LimitStorage(storage, { upload: 1 << 20 });
    assert.ok(canStreamPut(limited) && canReadInPlace(limited));
    const put = await limited.openPut("l/obj");
    await put.write(new Uint8Array([7, 8, 9]));
    await put.commit();
    assert.equal(await limited.getInto("l/obj", new Uint8Array(4)), 3);
    await limited.delete("l/obj");
  });
});

describe("segments streamed to the storage", () => {
  let work: string;
  let src: string;
  before(() => {
    work = tempDir("streamed-segments");
    src = path.join(work, "src");
    fs.mkdirSync(path.join(src, "d"), { recursive: true });
    fs.writeFileSync(path.join(src, "random.bin"), pseudoRandom(700_000, 9));
    fs.writeFileSync(path.join(src, "d/text"), "some text\n".repeat(5000));
  });
  after(() => cleanup(work));

  it("StreamingSegmentWriter cuts exact segments and records their size and SHA-256", async () => {
    const storage = await LocalStorage.open(path.join(work, "w"), { create: true });
    const bytes = pseudoRandom(250_000, 4);
    const chunks: Uint8Array[] = [];
    for (let o = 0; o < bytes.byteLength; o += 33_333) chunks.push(bytes.slice(o, o + 33_333));
    const writer = new StreamingSegmentWriter(storage, (n) => `s/${n}`, 100_000, { queueSize: 2 });
    await streamOf(chunks).pipeTo(writer);
    assert.deepEqual(writer.refs.map((r) => r.size), [100_000, 100_000, 50_000]);
    assert.deepEqual(await listKeys(storage), ["s/0", "s/1", "s/2"]);
    assert.ok(Buffer.from(await collect(readSegments(storage, writer.refs))).equals(Buffer.from(bytes)));
    const pool = new BufferPool(100_001, 1);
    const pooled = readSegments(storage, writer.refs, { pool });
    const parts: Uint8Array[] = [];
    for await (const c of pooled) {
      parts.push(c.slice());
      pool.give(c);
    }
    assert.ok(Buffer.from(Buffer.concat(parts)).equals(Buffer.from(bytes)));
  });

  it("gives every chunk back through giveBack, and chunks refilled at once do not change what is stored", async () => {
    // Under Bun the chunks move to the hashing thread and back; under Deno they are hashed in place.
    const storage = await LocalStorage.open(path.join(work, "released"), { create: true });
    const bytes = pseudoRandom(300_000, 5);
    const sizes = [25_000, 75_000, 40_000]; // 25 000 + 75 000 ends exactly on the first segment's end
    const free: Uint8Array[] = [];
    let made = 0;
    let given = 0;
    let offset = 0;
    let i = 0;
    const source = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (offset >= bytes.byteLength) return controller.close();
        const n = Math.min(sizes[i++ % sizes.length]!, bytes.byteLength - offset);
        const buffer = free.pop() ?? (made++, new Uint8Array(100_000));
        buffer.set(bytes.subarray(offset, offset + n));
        offset += n;
        controller.enqueue(buffer.subarray(0, n));
      },
    });
    const writer = new StreamingSegmentWriter(storage, (n) => `r/${n}`, 100_000, {
      queueSize: 2,
      giveBack: (chunk) => {
        given++;
        const whole = new Uint8Array(chunk.buffer, 0, 100_000);
        whole.fill(0xee); // scribbled over at once, as a pool refilling it would
        free.push(whole);
      },
    });
    await source.pipeTo(writer);
    assert.equal(given, i, "every chunk is given back");
    assert.ok(made < i, "buffers were reused");
    assert.deepEqual(writer.refs.map((r) => r.size), [100_000, 100_000, 100_000]);
    assert.ok(Buffer.from(await collect(readSegments(storage, writer.refs))).equals(Buffer.from(bytes)));
  });

  it("hashes chunks on shared memory beside the writes, and gives each back only once it is hashed", async () => {
    // Under Bun the chunks are hashed in place by the hashing worker, behind the writes; a chunk given back
    // too early would be hashed after it was scribbled over, and its segment would not check out.
    const storage = await LocalStorage.open(path.join(work, "shared"), { create: true });
    const bytes = pseudoRandom(3_000_000, 12);
    const size = 256 * 1024;
    const free: Uint8Array[] = [];
    let made = 0;
    let given = 0;
    let offset = 0;
    let pulled = 0;
    const source = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (offset >= bytes.byteLength) return controller.close();
        const n = Math.min(size - (pulled++ % 3) * 1000, bytes.byteLength - offset);
        const buffer = free.pop() ?? (made++, workerBuffer(size));
        buffer.set(bytes.subarray(offset, offset + n));
        offset += n;
        controller.enqueue(buffer.subarray(0, n));
      },
    });
    const writer = new StreamingSegmentWriter(storage, (n) => `h/${n}`, 1_000_000, {
      queueSize: 2,
      giveBack: (chunk) => {
        given++;
        assert.equal(isShared(chunk), SHARE_WITH_WORKERS);
        const whole = new Uint8Array(chunk.buffer, 0, size);
        whole.fill(0xee);
        free.push(whole);
      },
    });
    await source.pipeTo(writer);
    assert.equal(given, pulled, "every chunk is given back");
    assert.ok(made < pulled, "buffers were reused");
    assert.deepEqual(writer.refs.map((r) => r.size), [1_000_000, 1_000_000, 1_000_000]);
    for (const ref of writer.refs) {
      const stored = fs.readFileSync(path.join(work, "shared", ref.key));
      assert.equal(ref.sha256, createHash("sha256").update(stored).digest("hex"), ref.key);
    }
    assert.ok(Buffer.from(await collect(readSegments(storage, writer.refs))).equals(Buffer.from(bytes)));
  });

  it("a segment read into a pool buffer that does not check out is never passed on", async () => {
    const root = path.join(work, "corrupt");
    const storage = await LocalStorage.open(root, { create: true });
    const writer = new StreamingSegmentWriter(storage, (n) => `c/${n}`, 50_000, { queueSize: 2 });
    await streamOf([pseudoRandom(120_000, 5)]).pipeTo(writer);
    const file = path.join(root, "c/1");
    const bytes = fs.readFileSync(file);
    bytes[10] = bytes[10]! ^ 1;
    fs.writeFileSync(file, bytes);
    const pool = new BufferPool(50_001, 1);
    const received: number[] = [];
    await assert.rejects(
      readSegments(storage, writer.refs, { pool }).pipeTo(
        new WritableStream({
          write(c) {
            received.push(c.byteLength);
            pool.give(c);
          },
        }),
      ),
      /"c\/1": checksum mismatch/,
    );
    assert.equal(received.reduce((a, b) => a + b, 0), 50_000, "only the first segment was passed on");
    fs.appendFileSync(file, "x");
    const pool2 = new BufferPool(50_001, 1);
    await assert.rejects(
      readSegments(storage, writer.refs, { pool: pool2 }).pipeTo(
        new WritableStream({ write: (c) => pool2.give(c) }),
      ),
      /"c\/1": it holds more than 50000 bytes/,
    );
  });

  it("large segments read into shared buffers are hashed in place (on the worker under Bun), a corrupt one caught", async () => {
    const root = path.join(work, "large");
    const storage = await LocalStorage.open(root, { create: true });
    const size = 9 << 20; // more than a segment hashed on the main thread (hashing.ts HERE_MAX)
    const writer = new StreamingSegmentWriter(storage, (n) => `l/${n}`, size, { queueSize: 2 });
    const bytes = pseudoRandom(2 * size + 1000, 6);
    await streamOf([bytes]).pipeTo(writer);
    const manifest = { compression: "zstd", segments: writer.refs } as unknown as Manifest;
    const pool = segmentPool(manifest, null)!;
    assert.equal(pool.hashable, true, "an unencrypted backup's segments are read into hashable buffers");
    const parts: Uint8Array[] = [];
    for await (const c of readSegments(storage, writer.refs, { pool })) {
      parts.push(c.slice());
      pool.give(c);
    }
    assert.ok(Buffer.from(Buffer.concat(parts)).equals(Buffer.from(bytes)));
    const file = path.join(root, "l/1");
    const stored = fs.readFileSync(file);
    stored[size - 1] = stored[size - 1]! ^ 1;
    fs.writeFileSync(file, stored);
    await assert.rejects(
      readSegments(storage, writer.refs, { pool }).pipeTo(new WritableStream({ write: (c) => pool.give(c) })),
      /"l\/1": checksum mismatch/,
    );
  });

  it("a backup to a local storage round-trips through streamed segments and pooled reads", async () => {
    const storage = new RetryStorage(await LocalStorage.open(path.join(work, "ok"), { create: true }));
    const m = await backup(storage, src);
    assert.ok(m.segments.length > 3, "several segments");
    const target = path.join(work, "ok-restored");
    fs.mkdirSync(target);
    await runRestore({ storage, engines: engineForBackup, chain: [m], target });
    assertSameTree(src, target);
  });

  it("a streamed backup that fails mid-way commits nothing, lists nothing, and keeps earlier backups", async () => {
    const root = path.join(work, "failing");
    const local = await LocalStorage.open(root, { create: true });
    const earlier: Manifest = await backup(local, src);
    const failing = new FailingStreams(local, 150_000);
    await assert.rejects(backup(failing, src), /disk on fire/);
    assert.ok(failing.written > 150_000);
    assert.deepEqual((await loadManifests(local, "h_n")).map((x) => x.id), [earlier.id]);
    const all = await listKeys(local);
    assert.ok(all.every((k) => k.includes(earlier.id)), `only the earlier backup's objects: ${all}`);
    assert.deepEqual(walk(root).filter((p) => p.includes(TEMP_PREFIX)), []);
    const target = path.join(work, "failing-restored");
    fs.mkdirSync(target);
    await runRestore({ storage: local, engines: engineForBackup, chain: [earlier], target });
    assertSameTree(src, target);
  });
});

describe("zstd frames", () => {
  it("decompress when the stream is cut anywhere, frames of uneven sizes included", async () => {
    // Frames whose decompressed sizes are not multiples of any buffer size (Deno's streaming decoder
    // stops at such a frame boundary).
    const parts = [pseudoRandom(300_001, 7), new Uint8Array(777_777).fill(65), pseudoRandom(12_345, 8)];
    const compressed: Uint8Array[] = [];
    for (const p of parts) {
      compressed.push(await collect(streamOf([p.slice()]).pipeThrough(createCompressor("zstd"))));
    }
    const all = Buffer.concat(compressed);
    const expected = Buffer.concat(parts);
    for (const cut of [7, 4096, 65_537, 1 << 20]) {
      const chunks: Uint8Array[] = [];
      for (let o = 0; o < all.length; o += cut) chunks.push(new Uint8Array(all.subarray(o, o + cut)));
      const back = await collect(streamOf(chunks).pipeThrough(createDecompressor("zstd")));
      assert.ok(Buffer.from(back).equals(expected), `cut every ${cut} bytes`);
    }
  });

  it("frames compressed on the workers from shared chunks come out in order; chunks go back unchanged", async () => {
    // Under Bun the engine's chunks and the compressor's outputs are shared memory that the workers read
    // and fill in place; several frames are in flight at once.
    const parts = Array.from(
      { length: 12 },
      (_, i) => i % 3 === 0 ? new Uint8Array(1 << 20).fill(65 + i) : pseudoRandom(1 << 20, 20 + i),
    );
    parts.push(pseudoRandom(100_000, 40)); // a last, small frame
    const lent = new Set<ArrayBufferLike>();
    let back = 0;
    const compressor = createCompressor("zstd", {
      readerGivesBack: true,
      giveBack: (chunk) => {
        assert.ok(lent.has(chunk.buffer) || !isShared(chunk), "a shared chunk comes back as itself");
        back++;
      },
    });
    const source = streamOf(parts.map((p) => {
      const chunk = workerBuffer(p.byteLength);
      chunk.set(p);
      lent.add(chunk.buffer);
      return chunk;
    }));
    const out: Uint8Array[] = [];
    for await (const chunk of source.pipeThrough(compressor)) {
      out.push(chunk.slice());
      compressor.giveBack?.(chunk);
    }
    assert.equal(back, parts.length);
    const restored = await collect(streamOf(out).pipeThrough(createDecompressor("zstd")));
    assert.ok(Buffer.from(restored).equals(Buffer.concat(parts)));
  });

  it("large chunks of the caller's pool become frames of their own, whatever their size", async () => {
    // The engine's chunks are often a header's room short of a block: they are compressed where they are
    // (no copy into a gathering block), and what was gathered before one goes first, as a shorter frame.
    const sizes = [(1 << 20) - 1024, 10_000, 700_000, (1 << 20) - 512, 100];
    const parts = sizes.map((n, i) => pseudoRandom(n, 50 + i).fill(66, 0, n >> 1));
    let back = 0;
    const compressor = createCompressor("zstd", { giveBack: () => void back++ });
    const source = streamOf(parts.map((p) => {
      const chunk = workerBuffer(p.byteLength);
      chunk.set(p);
      return chunk;
    }));
    const compressed = await collect(source.pipeThrough(compressor));
    assert.equal(back, parts.length);
    const restored = await collect(streamOf([compressed]).pipeThrough(createDecompressor("zstd")));
    assert.ok(Buffer.from(restored).equals(Buffer.concat(parts)));
    // The zstd tool counts the frames: 1 MiB - 1 KiB | 10 000 | 700 000 | 1 MiB - 512 | 100.
    const dir = tempDir("frost-frames-");
    try {
      const file = path.join(dir, "out.zst");
      fs.writeFileSync(file, compressed);
      const listing = execFileSync("zstd", ["-lv", file], {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "ignore"],
      });
      assert.match(listing, /# Zstandard Frames: 5\n/);
    } finally {
      cleanup(dir);
    }
  });

  it("blocks of zeros compress to the same frames as other blocks, again and again", async () => {
    // Under Bun the workers compare a block with zeros and copy the frame they keep for its size.
    const sizes = [1 << 20, 1 << 20, 700_000, 1 << 20, 700_000, (3 << 20) + 512];
    const parts = sizes.map((n) => new Uint8Array(n));
    parts[3]![(1 << 20) - 1] = 1; // zeros but the last byte
    parts[4]![0] = 1; // zeros but the first byte
    parts[5]![2 << 20] = 7; // zeros but one byte past the first compared megabyte
    const level = { params: { [zlib.constants.ZSTD_c_compressionLevel]: 1 } };
    // With its content size in its header, as Bun writes it and frost has Deno write it.
    const expected = parts.map((p) =>
      new Uint8Array(zlib.zstdCompressSync(p, { ...level, pledgedSrcSize: p.byteLength }))
    );
    const compressor = createCompressor("zstd", { readerGivesBack: true, giveBack: () => {} });
    const out: Uint8Array[] = [];
    const source = streamOf(parts.map((p) => {
      const chunk = workerBuffer(p.byteLength);
      chunk.set(p);
      return chunk;
    }));
    for await (const chunk of source.pipeThrough(compressor)) {
      out.push(chunk.slice());
      compressor.giveBack?.(chunk);
    }
    assert.equal(out.length, parts.length);
    for (let i = 0; i < parts.length; i++) assert.ok(Buffer.from(out[i]!).equals(expected[i]!), `frame ${i}`);
    const restored = await collect(streamOf(out).pipeThrough(createDecompressor("zstd")));
    assert.ok(Buffer.from(restored).equals(Buffer.concat(parts)));
  });

  it("a stream that ends inside a frame is an error", async () => {
    const compressed = await collect(
      streamOf([pseudoRandom(100_000, 3)]).pipeThrough(createCompressor("zstd")),
    );
    await assert.rejects(
      collect(
        streamOf([compressed.slice(0, compressed.byteLength - 5)]).pipeThrough(createDecompressor("zstd")),
      ),
      /ends in the middle of a frame/,
    );
    await assert.rejects(
      collect(streamOf([new Uint8Array([1, 2, 3, 4, 5, 6])]).pipeThrough(createDecompressor("zstd"))),
      /not zstd data/,
    );
  });
});
