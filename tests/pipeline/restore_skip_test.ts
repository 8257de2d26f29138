/**
 * `runRestore` with the real tar engine over a real (memory) storage: each member of a chain leaves unwritten
 * the large files a later member stores whole (`RestoreOptions.skipData`), and only on what the states say:
 * a member whose state says nothing (an older state version, a state that cannot be read) skips nothing and
 * makes nothing skipped. The zstd frames holding only data read past (those files, or files a partial
 * restore leaves out) are not decompressed, and every byte around them still comes where it belongs.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { runBackup, runRestore } from "../../pipeline/mod.ts";
import { tarEngine } from "../../engines/tar.ts";
import type { Engine } from "../../engines/engine.ts";
import type { Manifest } from "../../series/manifest.ts";
import { MemoryStorage } from "../../storage/memory.ts";
import { cleanup, pseudoRandom, tempDir } from "../_cli.ts";
import { assertSameTree } from "../_tree.ts";

const MiB = 1 << 20;
const SIZE = 2 * MiB;
let idClock = Date.parse("2026-02-01T00:00:00Z");
function nextId(): string {
  idClock += 1000;
  return new Date(idClock).toISOString().replace(/[-:]/g, "").replace(/(\.\d{3})Z$/, "$1Z");
}

/** Backs `src` up onto `storage` as the next level of `chain` (level 0 when empty), zstd, in segments of
 * `segmentSize` bytes, and adds its manifest to `chain`. */
async function appendLevel(
  storage: MemoryStorage,
  chain: Manifest[],
  src: string,
  name: string,
  segmentSize: number,
): Promise<void> {
  const parent = chain.at(-1) ?? null;
  chain.push(
    await runBackup({
      storage,
      engine: tarEngine,
      source: src,
      hostname: "h",
      name,
      id: nextId(),
      level: parent ? parent.level + 1 : 0,
      parent,
      compression: "zstd",
      segmentSize,
      queueSize: 2,
      frostVersion: "test",
    }),
  );
}

describe("runRestore() of a chain that stores a large file at every level", () => {
  let work: string;
  let src: string;
  const storage = new MemoryStorage();
  const chain: Manifest[] = [];

  before(async () => {
    work = tempDir("restore-skip");
    src = path.join(work, "src");
    fs.mkdirSync(src);
    fs.writeFileSync(path.join(src, "small"), "small\n");
    for (const seed of [1, 2, 3]) {
      fs.writeFileSync(path.join(src, "big"), pseudoRandom(SIZE, seed));
      await appendLevel(storage, chain, src, "n", 256 * 1024);
    }
  });
  after(() => cleanup(work));

  /** Restores the chain with the tar engine whose `storedWhole` says nothing for the members in `silent`. */
  async function restore(target: string, silent: number[] = []) {
    let n = 0;
    const engine: Engine = {
      ...tarEngine,
      // Called once per member, oldest first.
      storedWhole: () =>
        silent.includes(n++) ? { push() {}, end: () => undefined } : tarEngine.storedWhole!(),
    };
    fs.mkdirSync(target);
    const stats = await runRestore({ storage, engines: () => engine, chain, target });
    assertSameTree(src, target);
    return stats;
  }

  it("writes the file once, from the newest level", async () => {
    const stats = await restore(path.join(work, "all"));
    assert.equal(stats.skipped, 2 * SIZE);
    // The small file may be sent again at each level (changed within a second of its parent's start).
    assert.ok(stats.bytes < SIZE + 1024, `${stats.bytes} bytes written`);
  });

  it("skips nothing at a member whose state says nothing, and nothing on its account", async () => {
    // Level 1 silent: level 0 still skips (level 2 stores the file), level 1 writes it.
    assert.equal((await restore(path.join(work, "s1"), [1])).skipped, SIZE);
    // Level 0 silent (a version 1 state, say): only level 1 skips.
    assert.equal((await restore(path.join(work, "s0"), [0])).skipped, SIZE);
    // Level 2 silent: level 0 skips on level 1's account; level 1 has no later member that lists the file.
    assert.equal((await restore(path.join(work, "s2"), [2])).skipped, SIZE);
    // Only level 2 says: nothing is skipped.
    assert.equal((await restore(path.join(work, "s01"), [0, 1])).skipped, undefined);
  });

  it("restores in full when a state cannot be read", async () => {
    const key = chain[2]!.state[0]!.key;
    const good = await new Response((await storage.get(key)) as ReadableStream<Uint8Array>).arrayBuffer();
    const bad = new Uint8Array(good);
    bad[bad.length - 1]! ^= 1;
    await storage.put(key, bad);
    try {
      const stats = await restore(path.join(work, "bad"));
      // Level 2's list unknown: level 0 still skips on level 1's account.
      assert.equal(stats.skipped, SIZE);
    } finally {
      await storage.put(key, new Uint8Array(good));
    }
  });
});

describe("runRestore() of a chain whose skipped files' data spans frames at odd offsets", () => {
  let work: string;
  let src: string;
  const storage = new MemoryStorage();
  const chain: Manifest[] = [];
  /** Large files (two of them next to each other in the archive) and small ones before, between and after. */
  const LARGE: Record<string, number> = { b1: 12 * MiB + 12_345, b2: 9 * MiB + 999, b3: 6 * MiB + 4097 };
  const SMALL: Record<string, number> = { a: 777, m: 5000, z: 123_457 };

  before(async () => {
    work = tempDir("restore-skip-odd");
    src = path.join(work, "src");
    fs.mkdirSync(src);
    for (const [k, round] of [10, 20, 30].entries()) {
      for (const [name, size] of Object.entries(LARGE)) {
        fs.writeFileSync(path.join(src, name), pseudoRandom(size, round + name.charCodeAt(1)));
      }
      for (const [name, size] of Object.entries(SMALL)) {
        fs.writeFileSync(path.join(src, name), pseudoRandom(size + k, round + name.charCodeAt(0)));
      }
      await appendLevel(storage, chain, src, "odd", 300_001);
    }
  });
  after(() => cleanup(work));

  it("restores every byte of the newest files and of those around the skipped ones", async () => {
    const target = path.join(work, "out");
    fs.mkdirSync(target);
    const stats = await runRestore({ storage, engines: () => tarEngine, chain, target });
    assertSameTree(src, target);
    for (const name of [...Object.keys(LARGE), ...Object.keys(SMALL)]) {
      assert.ok(fs.readFileSync(path.join(target, name)).equals(fs.readFileSync(path.join(src, name))), name);
    }
    const large = Object.values(LARGE).reduce((a, b) => a + b, 0);
    assert.equal(stats.skipped, 2 * large);
  });

  it("restores the small files exactly when a partial restore leaves the large ones out", async () => {
    const target = path.join(work, "part");
    fs.mkdirSync(target);
    const select = (rel: string) =>
      rel === "" ? "parent" as const : rel in LARGE ? "out" as const : "in" as const;
    await runRestore({ storage, engines: () => tarEngine, chain, target, select });
    assert.deepEqual(fs.readdirSync(target).sort(), Object.keys(SMALL).sort());
    for (const name of Object.keys(SMALL)) {
      assert.ok(fs.readFileSync(path.join(target, name)).equals(fs.readFileSync(path.join(src, name))), name);
    }
  });

  it("restores an older point of the chain as it was, its own large files written", async () => {
    const target = path.join(work, "out1");
    fs.mkdirSync(target);
    const stats = await runRestore({ storage, engines: () => tarEngine, chain: chain.slice(0, 2), target });
    const large = Object.values(LARGE).reduce((a, b) => a + b, 0);
    assert.equal(stats.skipped, large);
    for (const [name, size] of Object.entries(LARGE)) {
      assert.ok(
        fs.readFileSync(path.join(target, name)).equals(pseudoRandom(size, 20 + name.charCodeAt(1))),
        name,
      );
    }
  });
});
