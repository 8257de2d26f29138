/**
 * Tests of the rsync engine on real files: backups and restores driven through the pipeline (MemoryStorage),
 * level after level, compared exactly with the source and with what the tar engine restores; deltas'
 * sizes; bases edited between levels; hostile and corrupt streams; the command line.
 * @module
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import crypto from "node:crypto";
import path from "node:path";
import process from "node:process";
import { execFileSync } from "node:child_process";
import { runBackup, runRestore } from "../../pipeline/mod.ts";
import type { Compression } from "../../codec/compression.ts";
import type { Manifest } from "../../series/manifest.ts";
import type { Engine, RestoreStats, Warning } from "../../engines/engine.ts";
import { engineForBackup } from "../../engines/registry.ts";
import { rsyncEngine } from "../../engines/rsync.ts";
import { rsyncBackup } from "../../engines/rsync_backup.ts";
import { rsyncRestore } from "../../engines/rsync_restore.ts";
import { tarEngine } from "../../engines/tar.ts";
import { blockSizeFor, Scanner, type Signatures, weakSum } from "../../engines/_rsync_delta.ts";
import { KIND, STREAM_MAGIC, TAG } from "../../engines/_rsync_format.ts";
import { AbortedError, FrostError } from "../../base/errors.ts";
import { MemoryStorage } from "../../storage/memory.ts";
import { cleanup, frost, pseudoRandom, tempDir } from "../_cli.ts";
import { assertSameTree } from "../_tree.ts";
import { concat } from "../_streams.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const isRoot = process.getuid?.() === 0;

let idClock = Date.parse("2026-01-01T00:00:00Z");
function nextId(): string {
  idClock += 1000;
  return new Date(idClock).toISOString().replace(/[-:]/g, "").replace(/(\.\d{3})Z$/, "$1Z");
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Waits until a backup started now trusts the timestamps of what exists now: files whose ctime falls in
 * the second (minus 0.1 s) their parent backup started are always read again.
 */
async function settle(): Promise<void> {
  await sleep(Math.floor(Date.now() / 1000) * 1000 + 1150 - Date.now());
}

/** A backup series of one engine on a MemoryStorage: back up level after level, restore any level. */
class Series {
  readonly storage = new MemoryStorage("rsync-test");
  readonly chain: Manifest[] = [];
  readonly warnings: Warning[] = [];

  constructor(readonly engine: Engine, readonly compression: Compression = "zstd") {}

  async backup(source: string): Promise<Manifest> {
    const parent = this.chain[this.chain.length - 1] ?? null;
    const manifest = await runBackup({
      storage: this.storage,
      engine: this.engine,
      source,
      hostname: "h",
      name: "n",
      id: nextId(),
      level: parent ? parent.level + 1 : 0,
      parent,
      compression: this.compression,
      segmentSize: 256 * KiB,
      queueSize: 2,
      frostVersion: "test",
      onWarning: (w) => this.warnings.push(w),
    });
    this.chain.push(manifest);
    return manifest;
  }

  /** Restores levels 0..level (default: all) into `target`, created when missing. */
  async restore(target: string, level = this.chain.length - 1, from = 0): Promise<RestoreStats> {
    fs.mkdirSync(target, { recursive: true });
    return await runRestore({
      storage: this.storage,
      engines: engineForBackup,
      chain: this.chain.slice(from, level + 1),
      target,
    });
  }
}

function write(file: string, data: string | Uint8Array): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, data);
}

/** Rewrites `length` bytes of a file in place at `offset`, keeping its size. */
function rewrite(file: string, offset: number, data: Uint8Array): void {
  const fd = fs.openSync(file, "r+");
  fs.writeSync(fd, data, 0, data.length, offset);
  fs.closeSync(fd);
}

/** Reads a whole stream. */
async function bytesOf(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** Runs rsyncBackup() directly, reading both streams concurrently. */
async function directBackup(source: string, previous?: Uint8Array, pieces = 0) {
  const warnings: Warning[] = [];
  const prev = previous === undefined ? undefined : new ReadableStream<Uint8Array>({
    start(controller) {
      // In small pieces when asked: the state reader must reassemble records across chunks.
      const step = pieces > 0 ? pieces : previous.length || 1;
      for (let i = 0; i < previous.length; i += step) controller.enqueue(previous.slice(i, i + step));
      controller.close();
    },
  });
  const run = rsyncBackup(source, { previous: prev, onWarning: (w) => warnings.push(w) });
  const [data, state] = await Promise.all([bytesOf(run.stream), bytesOf(run.state)]);
  return { data, state, stats: await run.done, warnings };
}

/** Feeds `bytes` to a fresh rsyncRestore() in chunks of the given sizes (cycled) and awaits it. */
async function directRestore(target: string, bytes: Uint8Array, sizes: number[] = [MiB]) {
  const warnings: Warning[] = [];
  const r = rsyncRestore(target, { onWarning: (w) => warnings.push(w) });
  const writer = r.writable.getWriter();
  const pending: Promise<void>[] = [];
  for (let i = 0, k = 0; i < bytes.length; k++) {
    const n = sizes[k % sizes.length]!;
    pending.push(writer.write(bytes.subarray(i, i + n)));
    i += n;
  }
  pending.push(writer.close());
  await Promise.allSettled(pending);
  return { stats: await r.done, warnings };
}

async function rejectsWith(promise: Promise<unknown>, pattern: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof FrostError, `expected a FrostError, got ${err}`);
    assert.match(err.message, pattern);
    return true;
  });
}

/** Entries below `dir` whose names start like the restore's temporary files. */
function tempFiles(dir: string): string[] {
  const found: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      if (e.name.startsWith(".frost-rsync-")) found.push(path.join(d, e.name));
      if (e.isDirectory()) walk(path.join(d, e.name));
    }
  };
  walk(dir);
  return found;
}

/** A hand-made data stream, for what the backup never writes. */
class StreamBuilder {
  #parts: number[] = [...STREAM_MAGIC];
  #enc = new TextEncoder();

  u8(v: number): this {
    this.#parts.push(v & 0xff);
    return this;
  }
  u32(v: number): this {
    for (let i = 0; i < 4; i++) this.#parts.push((v >>> (8 * i)) & 0xff);
    return this;
  }
  u64(v: number): this {
    this.u32(v >>> 0);
    return this.u32(Math.floor(v / 0x1_0000_0000));
  }
  str32(s: string): this {
    const b = this.#enc.encode(s);
    this.u32(b.length);
    this.#parts.push(...b);
    return this;
  }
  raw(b: Uint8Array): this {
    this.#parts.push(...b);
    return this;
  }
  /** Entry header of `kind` at `path`: mode 0644, owner 0/0, no names, mtime 1.5e9 s. */
  entry(kind: number, p: string, mode = 0o644): this {
    this.u8(TAG.entry).u8(kind).str32(p).u32(mode).u32(0).u32(0).u8(0).u8(0);
    const mtime = new Uint8Array(8);
    new DataView(mtime.buffer).setBigInt64(0, 1_500_000_000_000_000_000n, true);
    return this.raw(mtime);
  }
  /** A whole file with `data`, hashed as the format says. */
  file(p: string, data: Uint8Array): this {
    this.entry(KIND.file, p).u32(8192).u8(0);
    if (data.length > 0) this.u8(TAG.literal).u32(data.length).raw(data);
    const trailer = new Uint8Array(12);
    new DataView(trailer.buffer).setUint32(0, data.length, true);
    new DataView(trailer.buffer).setUint32(8, 8192, true);
    // Files under one block: the hash is the SHA-256 of the bytes and the trailer.
    const hash = crypto.createHash("sha256").update(concat([data, trailer])).digest();
    return this.u8(TAG.fileEnd).u64(data.length).raw(hash);
  }
  end(): Uint8Array {
    this.u8(TAG.end);
    return new Uint8Array(this.#parts);
  }
}

describe("rsync engine round trips", () => {
  let work: string;
  before(() => {
    work = tempDir("rsync");
  });
  after(() => {
    if (!isRoot) execFileSync("chmod", ["-R", "u+rwx", work], { stdio: "ignore" });
    cleanup(work);
  });

  test("many levels of edits restore exactly at every level, and the same tree as the tar engine", async () => {
    const src = path.join(work, "many");
    const big = path.join(src, "data/big.bin");
    const base = pseudoRandom(3 * MiB + 123, 11);
    write(big, base);
    write(path.join(src, "data/zeros.bin"), new Uint8Array(2 * MiB));
    write(path.join(src, "data/log.txt"), "line\n".repeat(20_000));
    write(path.join(src, "data/small.txt"), "small\n");
    write(path.join(src, "empty"), "");
    write(path.join(src, "gone/a.txt"), "a\n");
    write(path.join(src, "gone/deeper/b.txt"), "b\n");
    write(path.join(src, "swap"), pseudoRandom(40 * KiB, 3));
    fs.mkdirSync(path.join(src, "empty-dir"));
    fs.symlinkSync("data/small.txt", path.join(src, "link"));
    fs.symlinkSync("nowhere", path.join(src, "dangling"));
    write(path.join(src, "hard/one"), pseudoRandom(100 * KiB, 5));
    fs.linkSync(path.join(src, "hard/one"), path.join(src, "hard/two"));
    execFileSync("mkfifo", [path.join(src, "fifo")]);
    fs.chmodSync(path.join(src, "data/small.txt"), 0o600);
    execFileSync("touch", ["-m", "-d", "2001-02-03 04:05:06.123456789", path.join(src, "data/small.txt")]);
    write(path.join(src, "bin/setuid"), "#!/bin/sh\n");
    fs.chmodSync(path.join(src, "bin/setuid"), 0o4755);
    if (isRoot) {
      execFileSync("mknod", [path.join(src, "null-device"), "c", "1", "3"]);
      fs.chownSync(path.join(src, "data/log.txt"), 12345, 54321);
    }

    const rsync = new Series(rsyncEngine);
    const tar = new Series(tarEngine);
    let level = 0;
    const check = async (label: string) => {
      await rsync.backup(src);
      await tar.backup(src);
      const a = path.join(work, `many-rsync-${level}`);
      const b = path.join(work, `many-tar-${level}`);
      await rsync.restore(a);
      await tar.restore(b);
      assert.doesNotThrow(() => assertSameTree(src, a), `level ${level} (${label}) differs from the source`);
      assertSameTree(b, a);
      assert.deepEqual(tempFiles(a), []);
      level++;
    };
    await check("level 0");

    // In-place block rewrites, an append, an insertion at the start, a deleted directory, a new one.
    let data: Uint8Array = base.slice();
    data.set(pseudoRandom(4 * KiB, 21), 100 * KiB);
    data.set(pseudoRandom(4 * KiB, 22), 2 * MiB + 7);
    data = concat([new TextEncoder().encode("inserted at the start"), data]);
    write(big, data);
    fs.appendFileSync(path.join(src, "data/log.txt"), "appended\n");
    fs.rmSync(path.join(src, "gone"), { recursive: true });
    write(path.join(src, "new/dir/file"), "new\n");
    await check("rewrites, append, insertion at 0, deleted and new directories");
    // The big file went as a delta: the rsync level stores far less than tar's.
    const [r1, t1] = [rsync.chain[1]!.totals.bytesStored, tar.chain[1]!.totals.bytesStored];
    assert.ok(r1 < t1 / 10, `rsync level 1 stored ${r1} bytes, tar ${t1}`);

    // Insertion in the middle, deletion at the start, truncation, zeros that shrink to nothing.
    data = concat([data.subarray(1000, MiB), pseudoRandom(5000, 23), data.subarray(MiB)]);
    write(big, data);
    fs.truncateSync(path.join(src, "data/log.txt"), 50_000);
    fs.truncateSync(path.join(src, "data/zeros.bin"), 0);
    await check("middle insertion, deletion at the start, truncation, shrink to zero");

    // A file replaced by a directory; deletion at the end; zeros grow again; a hard link added.
    fs.rmSync(path.join(src, "swap"));
    write(path.join(src, "swap/inside"), "now a directory\n");
    data = data.subarray(0, data.length - 70_000);
    write(big, data);
    write(path.join(src, "data/zeros.bin"), new Uint8Array(3 * MiB + 5));
    fs.linkSync(path.join(src, "hard/one"), path.join(src, "hard/three"));
    await check("file to directory, deletion at the end, zeros, new hard link");

    // And back to a file; insertion at the end; symlink retargeted; one hard link name removed.
    fs.rmSync(path.join(src, "swap"), { recursive: true });
    write(path.join(src, "swap"), pseudoRandom(40 * KiB, 3));
    data = concat([data, pseudoRandom(3000, 24)]);
    write(big, data);
    fs.rmSync(path.join(src, "link"));
    fs.symlinkSync("data/log.txt", path.join(src, "link"));
    fs.rmSync(path.join(src, "hard/one"));
    rewrite(path.join(src, "hard/two"), 50 * KiB, pseudoRandom(100, 25));
    await check("directory back to a file, insertion at the end, symlink and hard link changes");

    // Zeros with a hole punched in the middle; a mode change only; nothing else.
    rewrite(path.join(src, "data/zeros.bin"), MiB, pseudoRandom(10, 26));
    fs.chmodSync(path.join(src, "data/log.txt"), 0o640);
    await check("zeros rewritten, mode change");

    await check("no change");
    assert.deepEqual(rsync.warnings, []);
  });

  test("unchanged files are skipped without being read; only what changed is read and stored", async () => {
    const src = path.join(work, "skip");
    for (let i = 0; i < 50; i++) write(path.join(src, `d${i % 5}/f${i}`), pseudoRandom(10 * KiB, i + 1));
    write(path.join(src, "big"), pseudoRandom(2 * MiB, 99));
    await settle();
    const series = new Series(rsyncEngine, "none");
    const l0 = await series.backup(src);
    assert.equal(l0.totals.bytesIn, 50 * 10 * KiB + 2 * MiB);
    const l1 = await series.backup(src);
    assert.equal(l1.totals.bytesIn, 0, "a no-change level reads no file data");
    assert.ok(l1.totals.bytesStored < 4 * KiB, `a no-change level stored ${l1.totals.bytesStored} bytes`);
    assert.equal(l1.totals.files, 6, "only the directories are written");

    rewrite(path.join(src, "big"), 512 * KiB, pseudoRandom(100, 7));
    await settle();
    const l2 = await series.backup(src);
    assert.equal(l2.totals.bytesIn, 2 * MiB, "only the changed file is read");
    assert.ok(l2.totals.bytesStored < 24 * KiB, `a 100-byte rewrite stored ${l2.totals.bytesStored} bytes`);
    const out = path.join(work, "skip-out");
    await series.restore(out);
    assertSameTree(src, out);
  });

  test("an insertion at offset 0 of a few-MiB file costs about the inserted bytes", async () => {
    const src = path.join(work, "insert");
    const file = path.join(src, "vm.img");
    const size = 6 * MiB + 555;
    const base = pseudoRandom(size, 31);
    write(file, base);
    const series = new Series(rsyncEngine, "none");
    await series.backup(src);
    write(file, concat([pseudoRandom(100, 32), base]));
    const l1 = await series.backup(src);
    // 100 literal bytes, a copy reference, headers and the last partial block (555 bytes).
    assert.ok(
      l1.totals.bytesStored < 2 * KiB,
      `stored ${l1.totals.bytesStored} bytes for a 100-byte insertion`,
    );

    // 1 % of 4 KiB blocks rewritten: each costs at most one 8 KiB block.
    const data = concat([pseudoRandom(100, 32), base]);
    const blocks = Math.floor(data.length / (4 * KiB));
    for (let i = 0; i < blocks / 100; i++) {
      data.set(pseudoRandom(4 * KiB, 40 + i), ((i * 7919) % blocks) * 4 * KiB);
    }
    write(file, data);
    const l2 = await series.backup(src);
    assert.ok(l2.totals.bytesStored < 0.03 * size, `stored ${l2.totals.bytesStored} bytes for 1 % rewritten`);

    // A deletion in the middle.
    write(file, concat([data.subarray(0, 3 * MiB), data.subarray(3 * MiB + 777)]));
    const l3 = await series.backup(src);
    assert.ok(l3.totals.bytesStored < 20 * KiB, `stored ${l3.totals.bytesStored} bytes for a deletion`);
    const out = path.join(work, "insert-out");
    await series.restore(out);
    assertSameTree(src, out);
  });

  test("the state stays under 0.5 % of the data for a 64 MiB file", async () => {
    const src = path.join(work, "state");
    write(path.join(src, "f"), pseudoRandom(64 * MiB, 77));
    const series = new Series(rsyncEngine, "none");
    const m = await series.backup(src);
    assert.ok(m.totals.stateBytes <= 0.005 * 64 * MiB, `state of ${m.totals.stateBytes} bytes`);
    assert.equal(blockSizeFor(64 * MiB), 8 * KiB);
    assert.equal(blockSizeFor(2 * 1024 * MiB), 8 * KiB);
    assert.equal(blockSizeFor(4 * 1024 * MiB), 16 * KiB);
    assert.equal(blockSizeFor(2 ** 50), 4 * MiB);
  });

  test("a single-file source round-trips under its basename", async () => {
    const dir = path.join(work, "single");
    const file = path.join(dir, "disk.img");
    write(file, pseudoRandom(300 * KiB, 8));
    const series = new Series(rsyncEngine);
    await series.backup(file);
    rewrite(file, 1000, pseudoRandom(10, 9));
    fs.appendFileSync(file, "tail");
    await series.backup(file);
    const out = path.join(work, "single-out");
    await series.restore(out);
    assert.deepEqual(fs.readdirSync(out), ["disk.img"]);
    assert.deepEqual(fs.readFileSync(path.join(out, "disk.img")), fs.readFileSync(file));
  });

  test("every level option works through the pipeline: a differential on top of level 1", async () => {
    const src = path.join(work, "diff");
    const file = path.join(src, "f");
    const original = pseudoRandom(500 * KiB, 12);
    write(file, original);
    const series = new Series(rsyncEngine);
    const l0 = await series.backup(src);
    rewrite(file, 10, pseudoRandom(10, 13));
    const l1 = await series.backup(src);
    rewrite(file, 400 * KiB, pseudoRandom(10, 14));
    // --always-level 1: the next level 1 is made against level 0 again.
    series.chain.length = 1;
    const l1b = await series.backup(src);
    assert.equal(l1b.parent, l0.id);
    assert.notEqual(l1b.id, l1.id);
    const out = path.join(work, "diff-out");
    await series.restore(out);
    assertSameTree(src, out);
  });
});

describe("rsync restore refuses what it cannot apply faithfully", () => {
  let work: string;
  let src: string;
  let series: Series;
  before(async () => {
    work = tempDir("rsync-bad");
    src = path.join(work, "src");
    write(path.join(src, "disk.img"), pseudoRandom(MiB, 50));
    write(path.join(src, "other"), "other\n");
    series = new Series(rsyncEngine);
    await series.backup(src);
    rewrite(path.join(src, "disk.img"), 300 * KiB, pseudoRandom(50, 51));
    await series.backup(src);
  });
  after(() => cleanup(work));

  async function levelZero(name: string): Promise<string> {
    const target = path.join(work, name);
    await series.restore(target, 0);
    return target;
  }

  test("a base edited in the target between levels is an error naming the file; it stays untouched", async () => {
    const target = await levelZero("edited");
    const img = path.join(target, "disk.img");
    rewrite(img, 700 * KiB, new TextEncoder().encode("edited by hand"));
    const before = fs.readFileSync(img);
    await rejectsWith(series.restore(target, 1, 1), /"disk\.img".*does not match.*changed between levels/);
    assert.deepEqual(fs.readFileSync(img), before);
    assert.deepEqual(tempFiles(target), []);
  });

  test("a missing base, a base of another size or type is an error naming the file", async () => {
    const missing = await levelZero("missing");
    fs.rmSync(path.join(missing, "disk.img"));
    await rejectsWith(series.restore(missing, 1, 1), /"disk\.img".*missing from the target/);

    const shorter = await levelZero("shorter");
    fs.truncateSync(path.join(shorter, "disk.img"), 1000);
    await rejectsWith(series.restore(shorter, 1, 1), /"disk\.img".*has 1000 bytes/);

    const dir = await levelZero("dir");
    fs.rmSync(path.join(dir, "disk.img"));
    fs.mkdirSync(path.join(dir, "disk.img"));
    await rejectsWith(series.restore(dir, 1, 1), /"disk\.img".*holds a directory/);

    const link = await levelZero("link");
    fs.rmSync(path.join(link, "disk.img"));
    fs.symlinkSync("other", path.join(link, "disk.img"));
    await rejectsWith(series.restore(link, 1, 1), /"disk\.img".*holds a symlink/);
    assert.equal(fs.readFileSync(path.join(link, "other"), "utf8"), "other\n");
  });

  test("a level applied without its parent is an error, not a wrong file", async () => {
    const target = path.join(work, "skipped");
    fs.mkdirSync(target);
    await rejectsWith(series.restore(target, 1, 1), /"disk\.img"/);
  });

  test("paths that leave the target are refused", async () => {
    for (
      const [name, pattern] of [
        ["../escape", /Refusing.*"\.\." component/],
        ["/etc/escape", /Refusing.*absolute name/],
        ["a/../../escape", /Refusing.*"\.\." component/],
      ] as const
    ) {
      const target = path.join(work, `hostile-${pattern.source.length}-${name.length}`);
      fs.mkdirSync(target);
      const stream = new StreamBuilder().file(name, new TextEncoder().encode("x")).end();
      await rejectsWith(directRestore(target, stream), pattern);
    }
    assert.equal(fs.existsSync(path.join(work, "escape")), false);

    // A symlink planted by the stream, then a file through it.
    const target = path.join(work, "through-link");
    const outside = path.join(work, "outside");
    fs.mkdirSync(target);
    fs.mkdirSync(outside);
    const stream = new StreamBuilder();
    stream.entry(KIND.symlink, "evil").str32(outside);
    stream.file("evil/owned", new TextEncoder().encode("x"));
    await rejectsWith(directRestore(target, stream.end()), /Refusing.*through symlink "evil"/);
    assert.deepEqual(fs.readdirSync(outside), []);

    // A hard link to something outside.
    const t2 = path.join(work, "hardlink-out");
    fs.mkdirSync(t2);
    const s2 = new StreamBuilder();
    s2.entry(KIND.hardlink, "h").str32("../outside/x");
    await rejectsWith(directRestore(t2, s2.end()), /Refusing.*leaves the target/);

    // Deletions never follow symlinks nor remove the target itself.
    const t3 = path.join(work, "delete-through");
    fs.mkdirSync(t3);
    write(path.join(outside, "keep"), "keep");
    fs.symlinkSync(outside, path.join(t3, "ln"));
    const s3 = new StreamBuilder();
    s3.u8(TAG.delete).u8(0x6e).str32("ln/keep");
    s3.u8(TAG.delete).u8(0x64).str32(".");
    await directRestore(t3, s3.end());
    assert.ok(fs.existsSync(path.join(outside, "keep")));
    assert.ok(fs.existsSync(t3));
  });

  test("corrupt, truncated or foreign streams fail with a FrostError", async () => {
    const target = path.join(work, "corrupt");
    fs.mkdirSync(target);
    const good = new StreamBuilder().file("f", new TextEncoder().encode("hello")).end();
    await directRestore(target, good, [1]);
    assert.equal(fs.readFileSync(path.join(target, "f"), "utf8"), "hello");

    await rejectsWith(directRestore(target, good.subarray(0, good.length - 1)), /truncated/);
    await rejectsWith(directRestore(target, good.subarray(0, good.length - 20)), /truncated.*"f"/);
    await rejectsWith(directRestore(target, new TextEncoder().encode("not a stream at all")), /not an rsync/);
    await rejectsWith(directRestore(target, new Uint8Array(0)), /empty/);
    const flipped = good.slice();
    flipped[flipped.length - 45] = flipped[flipped.length - 45]! ^ 1; // inside the literal "hello"
    await rejectsWith(directRestore(target, flipped), /"f".*does not match its recorded hash/);
    await rejectsWith(
      directRestore(target, concat([good, new Uint8Array([1])])),
      /after the end|follows the end/,
    );
  });

  test("a hole op restores as a hole with the file's hash; version 2 streams restore, without hole ops", async () => {
    const target = path.join(work, "holes");
    fs.mkdirSync(target);
    // 8 KiB of data, then 3 blocks of hole, then a 100-byte tail of data (block size 8 KiB).
    const data = pseudoRandom(8192, 31);
    const tail = pseudoRandom(100, 32);
    const size = 4 * 8192 + 100;
    const whole = new Uint8Array(size);
    whole.set(data, 0);
    whole.set(tail, 4 * 8192);
    const sha = (b: Uint8Array) => crypto.createHash("sha256").update(b).digest();
    const trailer = new Uint8Array(12);
    new DataView(trailer.buffer).setUint32(0, size, true);
    new DataView(trailer.buffer).setUint32(8, 8192, true);
    const blocks = [0, 1, 2, 3].map((k) => sha(whole.subarray(k * 8192, (k + 1) * 8192)));
    const hash = crypto.createHash("sha256").update(concat([...blocks, tail, trailer])).digest();
    const body = (b: StreamBuilder, hole: boolean) => {
      b.entry(KIND.file, "sparse").u32(8192).u8(0).u8(TAG.literal).u32(8192).raw(data);
      if (hole) b.u8(TAG.hole).u64(3 * 8192);
      else b.u8(TAG.literal).u32(3 * 8192).raw(new Uint8Array(3 * 8192));
      return b.u8(TAG.literal).u32(100).raw(tail).u8(TAG.fileEnd).u64(size).raw(hash).end();
    };
    await directRestore(target, body(new StreamBuilder(), true), [1000]);
    assert.deepEqual(new Uint8Array(fs.readFileSync(path.join(target, "sparse"))), whole);
    // Version 2 (what frost wrote before hole ops): literal zeros, still restored; a hole op there is corrupt.
    const v2 = (stream: Uint8Array) => {
      const out = stream.slice();
      out[7] = 2;
      return out;
    };
    fs.rmSync(path.join(target, "sparse"));
    await directRestore(target, v2(body(new StreamBuilder(), false)));
    assert.deepEqual(new Uint8Array(fs.readFileSync(path.join(target, "sparse"))), whole);
    await rejectsWith(directRestore(target, v2(body(new StreamBuilder(), true))), /unknown operation 72/);
    // A hole that is not whole blocks is refused.
    const odd = new StreamBuilder().entry(KIND.file, "odd").u32(8192).u8(0).u8(TAG.hole).u64(100).u8(TAG.end)
      .end();
    await rejectsWith(directRestore(target, odd), /"odd" has a hole that is not whole blocks/);
  });
});

describe("rsync engine streams", () => {
  let work: string;
  before(() => {
    work = tempDir("rsync-streams");
  });
  after(() => cleanup(work));

  test("the parent state read in tiny pieces and the stream applied in odd chunk sizes give the same tree", async () => {
    const src = path.join(work, "src");
    for (let i = 0; i < 30; i++) {
      write(path.join(src, `d${i % 3}/sub${i % 2}/f${i}`), pseudoRandom(3000 * i, i));
    }
    write(path.join(src, "big"), pseudoRandom(700 * KiB, 5));
    const l0 = await directBackup(src);
    rewrite(path.join(src, "big"), 1234, pseudoRandom(3, 6));
    fs.rmSync(path.join(src, "d1"), { recursive: true });
    write(path.join(src, "d2/new"), "new");
    const l1 = await directBackup(src, l0.state, 7);
    const l1whole = await directBackup(src, l0.state);
    assert.deepEqual(l1.state.length, l1whole.state.length);
    const target = path.join(work, "out");
    fs.mkdirSync(target);
    await directRestore(target, l0.data, [1, 2, 3, 4096, 5, 65_537]);
    const r = await directRestore(target, l1.data, [3, 1, 9000, 2]);
    assert.ok(r.stats.deleted >= 11, `deleted ${r.stats.deleted}`);
    assertSameTree(src, target);
  });

  test("a parent state of another engine is refused", async () => {
    const src = path.join(work, "src2");
    write(path.join(src, "f"), "f");
    const notState = new TextEncoder().encode('{"format":"frost-tar-state","version":1,"started":"0"}\n');
    await assert.rejects(directBackup(src, notState), /not a frost rsync state/);
  });

  test("the scanner finds a base's blocks whatever their size, and signs the new file as a fresh scan does", () => {
    const base = pseudoRandom(300 * KiB + 17, 61);
    const changed = concat([base.subarray(0, 100 * KiB), pseudoRandom(5, 62), base.subarray(100 * KiB)]);
    const scan = (data: Uint8Array, blockSize: number, sigs?: Signatures) => {
      const ops: (Uint8Array | [number, number])[] = [];
      const sink = {
        literal: (b: Uint8Array, s: number, e: number) => ops.push(b.slice(s, e)),
        copy: (first: number, count: number) => ops.push([first, count]),
      };
      const scanner = new Scanner(sink, sigs, blockSize, data.length);
      for (let off = 0; off < data.length;) {
        const { buffer, offset, length } = scanner.space();
        const n = Math.min(length, data.length - off, 70_001);
        buffer.set(data.subarray(off, off + n), offset);
        scanner.advance(n);
        off += n;
      }
      return { ...scanner.finish(), ops };
    };
    const sigs = scan(base, 8 * KiB).signatures;
    for (const blockSize of [8 * KiB, 16 * KiB, 64 * KiB]) {
      const delta = scan(changed, blockSize, sigs);
      const fresh = scan(changed, blockSize);
      const rebuilt = concat([
        ...delta.ops.map((op) =>
          op instanceof Uint8Array
            ? op
            : base.subarray(op[0] * 8 * KiB, Math.min((op[0] + op[1]) * 8 * KiB, base.length))
        ),
      ]);
      assert.deepEqual(rebuilt, changed);
      // The block holding the insertion, the 5 bytes, and the last partial block of the base.
      assert.ok(delta.literalBytes <= 8 * KiB + 5 + 4 * KiB + 17, `${delta.literalBytes} literal bytes`);
      assert.deepEqual(delta.hash, fresh.hash);
      assert.deepEqual(delta.signatures.weak, fresh.signatures.weak);
      assert.deepEqual(delta.signatures.strong, fresh.signatures.strong);
    }
    // Runs of zeros: one table entry, and copies stay one contiguous reference.
    const zeros = new Uint8Array(MiB);
    const zsigs = scan(zeros, 8 * KiB).signatures;
    const again = scan(concat([new Uint8Array([1]), zeros]), 8 * KiB, zsigs);
    assert.equal(again.literalBytes, 1);
    assert.deepEqual(again.ops.slice(1), [[0, 128]]);
  });

  test("the scanner's hole() signs and hashes whole zero blocks as a scan of the zeros does, with or without a base", () => {
    const bs = 8 * KiB;
    // Data, a hole of 5 blocks from block 3, data again, a hole of 2 blocks, a partial last block.
    const file = pseudoRandom(12 * bs + 300, 71);
    file.fill(0, 3 * bs, 8 * bs);
    file.fill(0, 9 * bs, 11 * bs);
    const holes = new Map([[3 * bs, 5 * bs], [9 * bs, 2 * bs]]);
    const scan = (sigs: Signatures | undefined, skip: boolean) => {
      const ops: (Uint8Array | [number, number] | number)[] = [];
      const sink = {
        literal: (b: Uint8Array, st: number, e: number) => ops.push(b.slice(st, e)),
        copy: (first: number, count: number) => ops.push([first, count]),
        hole: (n: number) => ops.push(n),
      };
      const scanner = new Scanner(sink, sigs, bs, file.length);
      while (scanner.fileOffset < file.length) {
        const off = scanner.fileOffset;
        const hole = skip ? holes.get(off) : undefined;
        if (hole !== undefined) {
          scanner.hole(hole);
          continue;
        }
        const next = skip ? Math.min(...[...holes.keys()].filter((h) => h > off), file.length) : file.length;
        const { buffer, offset, length } = scanner.space();
        const n = Math.min(length, next - off, 5000);
        buffer.set(file.subarray(off, off + n), offset);
        scanner.advance(n);
      }
      return { ...scanner.finish(), ops };
    };
    const read = scan(undefined, false);
    // Without a base, and against the file's own signatures (every block but the tail copied).
    for (const sigs of [undefined, scan(undefined, false).signatures]) {
      const skipped = scan(sigs, true);
      assert.deepEqual(skipped.hash, read.hash);
      assert.deepEqual(skipped.signatures.weak, read.signatures.weak);
      assert.deepEqual(skipped.signatures.strong, read.signatures.strong);
      assert.deepEqual(skipped.ops.filter((op) => typeof op === "number"), [5 * bs, 2 * bs]);
      // Rebuilt from the ops (the hole ops as zeros), the file is the same.
      const rebuilt = concat(
        skipped.ops.map((op) =>
          typeof op === "number"
            ? new Uint8Array(op)
            : op instanceof Uint8Array
            ? op
            : file.subarray(op[0] * bs, Math.min((op[0] + op[1]) * bs, file.length))
        ),
      );
      assert.deepEqual(rebuilt, file);
    }
    assert.throws(() => {
      const s = new Scanner({ literal() {}, copy() {}, hole() {} }, undefined, bs, file.length);
      const { buffer, offset } = s.space();
      buffer.set(file.subarray(0, 10), offset);
      s.advance(10);
      s.hole(bs);
    }, RangeError);
  });

  test("a sparse file that shrinks into a hole before it is read is stored with a warning (flagged to be read again)", async () => {
    const src = path.join(work, "shrink");
    write(path.join(src, "a.bin"), pseudoRandom(12 * MiB, 81)); // read first: the stream fills up meanwhile
    const sparse = path.join(src, "b.img");
    write(sparse, pseudoRandom(64 * KiB, 82));
    fs.truncateSync(sparse, 8 * MiB); // a hole from 64 KiB to the end
    const warnings: Warning[] = [];
    const run = rsyncBackup(src, { onWarning: (w) => warnings.push(w) });
    const state = bytesOf(run.state);
    const reader = run.stream.getReader();
    const chunks: Uint8Array[] = [];
    // The walk has measured b.img and is held by the full stream inside a.bin: b.img shrinks now.
    chunks.push((await reader.read()).value!);
    fs.truncateSync(sparse, 100 * KiB);
    for (let r = await reader.read(); !r.done; r = await reader.read()) chunks.push(r.value);
    await state;
    await run.done;
    assert.equal(warnings.length, 1, JSON.stringify(warnings));
    assert.match(warnings[0]!.message, /file shrank while read; stored 8388608 bytes, zeros at its end/);
    const out = path.join(work, "shrink-out");
    fs.mkdirSync(out);
    await directRestore(out, concat(chunks));
    assert.equal(fs.statSync(path.join(out, "b.img")).size, 8 * MiB);
  });

  test("an abort errors both streams with an AbortedError", async () => {
    const src = path.join(work, "abort");
    write(path.join(src, "big"), pseudoRandom(20 * MiB, 9));
    const controller = new AbortController();
    const run = rsyncBackup(src, { signal: controller.signal });
    const reader = run.stream.getReader();
    await reader.read();
    controller.abort();
    await assert.rejects(run.done, AbortedError);
    await assert.rejects(bytesOf(run.state), AbortedError);
  });

  test("excluded entries are left out, and removed on restore once excluded", async () => {
    const src = path.join(work, "exclude");
    write(path.join(src, "keep/a.txt"), "a");
    write(path.join(src, "keep/b.log"), "b");
    write(path.join(src, "cache/c"), "c");
    const target = path.join(work, "exclude-out");
    fs.mkdirSync(target);
    const l0 = await directBackup(src);
    await directRestore(target, l0.data);
    const run = rsyncBackup(src, {
      exclude: ["*.log", "cache/"],
      previous: new ReadableStream({
        start(c) {
          c.enqueue(l0.state);
          c.close();
        },
      }),
    });
    const [data] = await Promise.all([bytesOf(run.stream), bytesOf(run.state)]);
    await run.done;
    const r = await directRestore(target, data);
    assert.equal(r.stats.deleted, 3); // b.log, cache/ and cache/c
    assert.deepEqual(fs.readdirSync(target).sort(), ["keep"]);
    assert.deepEqual(fs.readdirSync(path.join(target, "keep")), ["a.txt"]);
  });

  test("weakSum() is rsync's checksum", () => {
    const bytes = new TextEncoder().encode("abc");
    // a = 97+98+99 = 294, b = 3·97 + 2·98 + 99 = 586
    assert.equal(weakSum(bytes, 0, 3), 294 + 586 * 65536);
  });
});

describe("rsync engine through the command line", () => {
  let work: string;
  before(() => {
    work = tempDir("rsync-cli");
  });
  after(() => cleanup(work));

  test("frost backup --engine rsync --incremental, then restore picks the engine from the manifest", async () => {
    const src = path.join(work, "src");
    const store = path.join(work, "store");
    write(path.join(src, "vm.img"), pseudoRandom(2 * MiB, 3));
    write(path.join(src, "etc/conf"), "a=1\n");
    const args = ["backup", src, "--name", "x", "--hostname", "h", "--storage", store, "--engine", "rsync"];
    let r = await frost([...args, "--incremental"]);
    assert.equal(r.code, 0, r.stderr);
    write(
      path.join(src, "vm.img"),
      concat([new Uint8Array([1, 2, 3]), fs.readFileSync(path.join(src, "vm.img"))]),
    );
    r = await frost([...args, "--incremental", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const summary = JSON.parse(r.stdout) as { level: number; bytesStored: number };
    assert.equal(summary.level, 1);
    assert.ok(summary.bytesStored < 16 * KiB, `level 1 stored ${summary.bytesStored} bytes`);
    const out = path.join(work, "out");
    r = await frost(["restore", "--name", "x", "--hostname", "h", "--storage", store, "--to", out]);
    assert.equal(r.code, 0, r.stderr);
    assertSameTree(src, out);
  });
});
