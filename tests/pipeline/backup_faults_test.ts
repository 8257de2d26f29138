/**
 * Backups and restores through the pipeline with the real tar engine, over storages that fail on purpose:
 * retries, the "nothing listed after a failure" rule, several storages at once, and bandwidth limits.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { runBackup, runRestore } from "../../pipeline/mod.ts";
import { tarEngine } from "../../engines/tar.ts";
import { engineForBackup } from "../../engines/registry.ts";
import { loadManifests, type Manifest } from "../../series/manifest.ts";
import { MemoryStorage } from "../../storage/memory.ts";
import { MultiStorage } from "../../storage/multi.ts";
import { RetryStorage } from "../../storage/retry.ts";
import { LimitStorage, TokenBucket } from "../../storage/limit.ts";
import type { Storage } from "../../storage/storage.ts";
import { FaultyStorage } from "../storage/faulty_storage.ts";
import { cleanup, pseudoRandom, tempDir } from "../_cli.ts";
import { assertSameTree } from "../_tree.ts";

let idClock = Date.parse("2026-01-01T00:00:00Z");
function nextId(): string {
  idClock += 1000;
  return new Date(idClock).toISOString().replace(/[-:]/g, "").replace(/(\.\d{3})Z$/, "$1Z");
}

function backup(storage: Storage, source: string, parent: Manifest | null = null) {
  return runBackup({
    storage,
    engine: tarEngine,
    source,
    hostname: "h",
    name: "n",
    id: nextId(),
    level: parent ? parent.level + 1 : 0,
    parent,
    compression: "zstd",
    segmentSize: 64 * 1024,
    queueSize: 2,
    frostVersion: "test",
  });
}

async function restoreInto(storage: Storage, chain: Manifest[], target: string) {
  fs.mkdirSync(target, { recursive: true });
  return await runRestore({ storage, engines: engineForBackup, chain, target });
}

async function allKeys(storage: Storage): Promise<string[]> {
  const keys: string[] = [];
  for await (const info of storage.list("")) keys.push(info.key);
  return keys.sort();
}

describe("backups over failing storages", () => {
  let work: string;
  let src: string;
  before(() => {
    work = tempDir("faults");
    src = path.join(work, "src");
    fs.mkdirSync(path.join(src, "d"), { recursive: true });
    fs.writeFileSync(path.join(src, "random.bin"), pseudoRandom(400_000, 9));
    fs.writeFileSync(path.join(src, "d/text"), "some text\n".repeat(1000));
  });
  after(() => cleanup(work));

  it("retries transient put failures and commits the backup", async () => {
    const faulty = new FaultyStorage(new MemoryStorage("retry-ok"), {
      failPutMatching: /data\/0000000[01]$/,
      retriable: true,
      times: 3,
    });
    const outages: string[] = [];
    let recoveries = 0;
    const storage = new RetryStorage(faulty, {
      baseDelayMs: 1,
      onOutage: (what) => outages.push(what),
      onRecovered: () => recoveries++,
    });
    const m = await backup(storage, src);
    assert.equal(faulty.failures, 3);
    // Segments 0 and 1 fail in turn: at most one outage each, not one warning per try.
    assert.ok(outages.length >= 1 && outages.length <= 2, `${outages.length} outage warnings`);
    assert.equal(recoveries, outages.length, "one notice when it answers again");
    assert.deepEqual((await loadManifests(storage, "h_n")).map((x) => x.id), [m.id]);
    await restoreInto(storage, [m], path.join(work, "retry-restored"));
    assertSameTree(src, path.join(work, "retry-restored"));
  });

  it("does not retry a permanent failure: the backup fails, nothing is listed, nothing is left", async () => {
    const memory = new MemoryStorage("permanent");
    const first = await backup(memory, src);
    const before = await allKeys(memory);
    const faulty = new FaultyStorage(memory, { failPutMatching: /data\/00000002$/ });
    const storage = new RetryStorage(faulty, { baseDelayMs: 1 });
    await assert.rejects(backup(storage, src, first), /injected/);
    assert.equal(faulty.failures, 1, "no retry of a non-retriable error");
    assert.deepEqual((await loadManifests(memory, "h_n")).map((x) => x.id), [first.id]);
    assert.deepEqual(await allKeys(memory), before, "the failed run's segments were cleaned up");
    await restoreInto(memory, [first], path.join(work, "permanent-restored"));
    assertSameTree(src, path.join(work, "permanent-restored"));
  });

  it("gives up when the retry budget is spent on a storage that stays down", async () => {
    const faulty = new FaultyStorage(new MemoryStorage("down"), { failPutMatching: /./, retriable: true });
    const outages: string[] = [];
    const storage = new RetryStorage(faulty, {
      baseDelayMs: 1,
      maxDelayMs: 20,
      retryForMs: 300,
      onOutage: (what) => outages.push(what),
    });
    await assert.rejects(
      backup(storage, src),
      /injected transient failure; gave up after retrying writing ".*" for .* \(--retry-for 300ms\)/,
    );
    assert.equal(outages.length, 1);
    assert.ok(faulty.failures > 3, `retried until the budget was spent (${faulty.failures} tries)`);
    assert.deepEqual(await allKeys(faulty), []);
  });

  it("with several storages, commits only when every storage has the backup", async () => {
    const a = new MemoryStorage("multi-a");
    const b = new MemoryStorage("multi-b");
    const failingB = new FaultyStorage(b, { failPutMatching: /manifests\// });
    await assert.rejects(backup(new MultiStorage([a, failingB]), src), /injected/);
    assert.deepEqual(await loadManifests(a, "h_n"), [], "not listed on the storage that took the manifest");
    assert.deepEqual(await allKeys(a), []);
    assert.deepEqual(await allKeys(b), []);

    const m = await backup(new MultiStorage([a, b]), src);
    assert.equal((await loadManifests(a, "h_n")).length, 1);
    assert.equal((await loadManifests(b, "h_n")).length, 1);
    assert.deepEqual(await allKeys(a), await allKeys(b));

    // The first storage returns corrupt bytes and misses a segment: restore reads them from the second.
    await a.delete(m.segments[1]!.key);
    const corruptA = new FaultyStorage(a, { corruptGetMatching: /data\/00000000$/ });
    const target = path.join(work, "multi-restored");
    await restoreInto(new MultiStorage([corruptA, b]), [m], target);
    assertSameTree(src, target);
    assert.ok(corruptA.corruptions >= 1);
  });

  it("a bandwidth-limited storage stores the same bytes, no faster than the limit", async () => {
    const bucket = new TokenBucket(1_000_000, 100_000);
    const t0 = performance.now();
    await bucket.take(100_000); // the burst
    await bucket.take(300_000);
    assert.ok(performance.now() - t0 >= 250, "300 kB past the burst at 1 MB/s takes at least 0.3 s");

    const memory = new MemoryStorage("limited");
    const limited = new LimitStorage(memory, { upload: 50_000_000, download: 50_000_000 });
    const m = await backup(limited, src);
    const target = path.join(work, "limited-restored");
    await restoreInto(limited, [m], target);
    assertSameTree(src, target);
  });
});
