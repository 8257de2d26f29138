/**
 * Series locks (lock.ts, `frost unlock`): taking and releasing, the holder named on a conflict, stale locks
 * (dead process on this host, not refreshed), refresh and loss, several storages; then through the command
 * line: a foreign lock stops backup and remove without harm, and real concurrent runs of one series never
 * interleave.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { type ChildProcess, spawnSync } from "node:child_process";
import { cleanup, frost, pseudoRandom, type RunResult, tempDir } from "../_cli.ts";
import { assertSameTree } from "../_tree.ts";
import { LocalStorage } from "../../storage/local.ts";
import { MultiStorage } from "../../storage/multi.ts";
import type { Storage } from "../../storage/storage.ts";
import { acquireLock, type LockInfo, lockState, processAlive, readLocks } from "../../series/lock.ts";
import { listSeries, loadManifests } from "../../series/manifest.ts";
import { unlockCommand } from "../../commands/unlock.ts";
import { FrostError } from "../../base/errors.ts";

const TARGET = { hostname: "h1", name: "c" };
const SERIES = "h1_c";
const FAST = { tieWaitMs: 30 };

/** A CommandContext-like sink that keeps what was printed. */
function sink(args: string[] = []) {
  const out: string[] = [];
  const err: string[] = [];
  return {
    ctx: {
      args,
      signal: new AbortController().signal,
      stdout: (l: string) => void out.push(l),
      stderr: (l: string) => void err.push(l),
      interactive: false,
    },
    out,
    err,
  };
}

/** Writes a lock object as another run would. */
async function plantLock(storage: Storage, fields: Partial<LockInfo> & { id: string }): Promise<string> {
  const now = new Date().toISOString();
  const info: LockInfo = {
    format: "frost-lock",
    version: 1,
    series: SERIES,
    kind: "remove",
    host: "elsewhere",
    pid: 4242,
    user: "bob",
    created: now,
    refreshed: now,
    frost: "0.0.0",
    ...fields,
  };
  const key = `${SERIES}/locks/${fields.id}.json`;
  await storage.put(key, new TextEncoder().encode(JSON.stringify(info)));
  return key;
}

async function lockKeys(storage: Storage): Promise<string[]> {
  return (await readLocks(storage, "")).map((l) => l.key);
}

/** The pid of a process that has exited. */
function deadPid(): number {
  const pid = spawnSync("true").pid!;
  assert.ok(!processAlive(pid));
  return pid;
}

/** `base` seen through hooks on put, list and delete (a storage that is slow at chosen moments). */
function hooked(
  base: Storage,
  hooks: { afterPut?: () => Promise<void>; onList?: () => void; beforeDelete?: () => Promise<void> },
): Storage {
  return new Proxy(base, {
    get(target, prop) {
      if (prop === "put") {
        return async (...args: Parameters<Storage["put"]>) => {
          await target.put(...args);
          await hooks.afterPut?.();
        };
      }
      if (prop === "list") {
        return (...args: Parameters<Storage["list"]>) => {
          hooks.onList?.();
          return target.list(...args);
        };
      }
      if (prop === "delete") {
        return async (...args: Parameters<Storage["delete"]>) => {
          await hooks.beforeDelete?.();
          return await target.delete(...args);
        };
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

const hoursAgo = (h: number) => new Date(Date.now() - h * 3600_000).toISOString();

describe("series locks", () => {
  let work: string;
  let storage: LocalStorage;
  before(async () => {
    work = tempDir("lock");
    storage = await LocalStorage.open(path.join(work, "store"), { create: true });
  });
  after(async () => {
    await storage.close();
    cleanup(work);
  });

  it("takes a lock object with owner, host, pid and time, and removes it on release", async () => {
    const { ctx, err } = sink();
    const lock = await acquireLock(storage, TARGET, "backup", ctx, FAST);
    const [found] = await readLocks(storage, `${SERIES}/locks/`);
    assert.equal(found?.key, lock.key);
    assert.match(lock.key, /^h1_c\/locks\/\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{16}\.json$/);
    const info = found!.info!;
    assert.equal(info.kind, "backup");
    assert.equal(info.series, SERIES);
    assert.equal(info.host, os.hostname());
    assert.equal(info.pid, process.pid);
    assert.equal(info.created, info.refreshed);
    assert.ok(Math.abs(Date.parse(info.created) - Date.now()) < 60_000);
    assert.equal(lockState(found!), "active");
    await lock.release();
    await lock.release(); // twice is fine
    assert.deepEqual(await lockKeys(storage), []);
    assert.deepEqual(err, []);
  });

  it("a second run of the series fails naming the holder, and leaves no lock of its own", async () => {
    const first = await acquireLock(storage, TARGET, "remove", sink().ctx, FAST);
    try {
      await assert.rejects(acquireLock(storage, TARGET, "backup", sink().ctx, FAST), (e: Error) => {
        assert.ok(e instanceof FrostError);
        assert.match(
          e.message,
          new RegExp(
            `^Backup "h1_c" is locked by remove \\(pid ${process.pid} of .* on ${os.hostname()}, since ` +
              `\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ\\); run "frost unlock --name c --hostname h1 --force" if ` +
              `that process is gone$`,
          ),
        );
        return true;
      });
      // Another series is not affected.
      const other = await acquireLock(storage, { hostname: "h1", name: "c2" }, "backup", sink().ctx, FAST);
      await other.release();
      assert.deepEqual(await lockKeys(storage), [first.key]);
    } finally {
      await first.release();
    }
  });

  it("of runs that start at the same moment exactly one takes the lock", async () => {
    for (let round = 0; round < 5; round++) {
      const results = await Promise.allSettled(
        [0, 1, 2].map(() => acquireLock(storage, TARGET, "backup", sink().ctx, FAST)),
      );
      const won = results.filter((r) => r.status === "fulfilled");
      assert.equal(won.length, 1, `round ${round}: ${results.map((r) => r.status)}`);
      for (const r of results) {
        if (r.status === "rejected") assert.match(String(r.reason), /is locked by backup/);
      }
      const lock = (won[0] as PromiseFulfilledResult<Awaited<ReturnType<typeof acquireLock>>>).value;
      assert.deepEqual(await lockKeys(storage), [lock.key]);
      await lock.release();
    }
    assert.deepEqual(await lockKeys(storage), []);
  });

  it("an older run outlasts a newer run that is slow to delete its lock, and takes the lock", async () => {
    // The newer run B sees the older run A's lock and gives up, but its delete of its own lock lands only
    // once A has looked three times (a slow storage, a busy machine). A must not give up before then.
    let looksByA = 0;
    let thirdLook!: () => void;
    const aLookedThrice = new Promise<void>((resolve) => (thirdLook = resolve));
    let bLanded!: () => void;
    const bPut = new Promise<void>((resolve) => (bLanded = resolve));
    const aView = hooked(storage, {
      afterPut: () => bPut, // A looks only once B's lock is there too
      onList: () => void (++looksByA === 3 && thirdLook()),
    });
    const a = acquireLock(aView, TARGET, "backup", sink().ctx, {
      ...FAST,
      now: () => new Date(Date.now() - 1000), // A started first: its lock is the older one
    });
    while ((await lockKeys(storage)).length === 0) await new Promise((r) => setTimeout(r, 5));
    const aDone = a.then(() => {}, () => {});
    const bView = hooked(storage, {
      afterPut: () => Promise.resolve(bLanded()),
      beforeDelete: () => Promise.race([aLookedThrice, aDone]),
    });
    const [ra, rb] = await Promise.allSettled([
      a,
      acquireLock(bView, TARGET, "backup", sink().ctx, FAST),
    ]);
    assert.equal(rb.status, "rejected");
    assert.match(String((rb as PromiseRejectedResult).reason), /is locked by backup/);
    assert.equal(
      ra.status,
      "fulfilled",
      `A gave up after ${looksByA} looks: ${(ra as PromiseRejectedResult).reason}`,
    );
    const lock = (ra as PromiseFulfilledResult<Awaited<ReturnType<typeof acquireLock>>>).value;
    assert.deepEqual(await lockKeys(storage), [lock.key]);
    await lock.release();
  });

  it("breaks the lock of a dead process of this host, with a notice", async () => {
    const pid = deadPid();
    const key = await plantLock(storage, {
      id: "20260101T000000.000Z-00000000000000aa",
      host: os.hostname(),
      pid,
      kind: "backup",
    });
    assert.equal(lockState((await readLocks(storage, `${SERIES}/locks/`))[0]!), "dead");
    const { ctx, err } = sink();
    const lock = await acquireLock(storage, TARGET, "remove", ctx, FAST);
    assert.equal(err.length, 1);
    assert.match(
      err[0]!,
      new RegExp(
        `^frost: removing the lock of "h1_c" left by backup \\(pid ${pid} .*that process is gone$`,
      ),
    );
    assert.deepEqual(await lockKeys(storage), [lock.key]);
    assert.notEqual(lock.key, key);
    await lock.release();
  });

  it("reports a lock not refreshed for long as stale but does not break it; unlock does", async () => {
    const key = await plantLock(storage, {
      id: "20260101T000000.000Z-00000000000000bb",
      created: hoursAgo(3),
      refreshed: hoursAgo(2),
    });
    await assert.rejects(
      acquireLock(storage, TARGET, "backup", sink().ctx, FAST),
      /^FrostError: Backup "h1_c" is locked by remove \(pid 4242 of bob on elsewhere, since .*\), not refreshed for 2 h: it looks stale; run "frost unlock --name c --hostname h1" to remove it$/,
    );
    assert.deepEqual(await lockKeys(storage), [key]);
    // A fresh foreign lock next to it: `unlock` (all series) removes only the stale one.
    const fresh = await plantLock(storage, { id: "20260101T000000.000Z-00000000000000cc" });
    const { ctx, out } = sink(["--storage", path.join(work, "store")]);
    assert.equal(await unlockCommand.run(ctx), 0);
    assert.match(
      out.join("\n"),
      /Removed the lock of h1_c held by remove \(pid 4242 .*\): not refreshed for 2 h/,
    );
    assert.match(out.join("\n"), /Kept the lock of h1_c held by remove .*: it may still be running/);
    assert.deepEqual(await lockKeys(storage), [fresh]);
    // --force needs --name, and then removes every lock of that series.
    await assert.rejects(
      unlockCommand.run(sink(["--storage", path.join(work, "store"), "--force"]).ctx),
      /needs --name/,
    );
    const forced = sink([
      "--storage",
      path.join(work, "store"),
      "--name",
      "c",
      "--hostname",
      "h1",
      "--force",
    ]);
    assert.equal(await unlockCommand.run(forced.ctx), 0);
    assert.match(forced.out.join("\n"), /Removed 1 lock, kept 0 on "h1_c"/);
    assert.deepEqual(await lockKeys(storage), []);
  });

  it("treats an unreadable lock object as held; unlock --force removes it", async () => {
    await storage.put(`${SERIES}/locks/garbage.json`, new TextEncoder().encode("{not json"));
    await assert.rejects(
      acquireLock(storage, TARGET, "backup", sink().ctx, FAST),
      /locked by an unreadable lock object "h1_c\/locks\/garbage\.json"/,
    );
    const s = sink([
      "--storage",
      path.join(work, "store"),
      "--name",
      "c",
      "--hostname",
      "h1",
      "--force",
      "--json",
    ]);
    assert.equal(await unlockCommand.run(s.ctx), 0);
    assert.equal(JSON.parse(s.out[0]!).removed[0].key, `${SERIES}/locks/garbage.json`);
    assert.deepEqual(await lockKeys(storage), []);
  });

  it("refreshes a held lock, and stops the run when its lock object vanished", async () => {
    const lock = await acquireLock(storage, TARGET, "backup", sink().ctx, { ...FAST, refreshMs: 40 });
    const created = lock.info.created;
    await new Promise((r) => setTimeout(r, 150));
    const [found] = await readLocks(storage, `${SERIES}/locks/`);
    assert.ok(Date.parse(found!.info!.refreshed) > Date.parse(created), "refreshed was rewritten");
    assert.equal(found!.info!.created, created);
    assert.ok(!lock.signal.aborted);
    // frost unlock --force from elsewhere (again, should it meet a refresh in flight that writes it back).
    for (let i = 0; i < 100 && !lock.signal.aborted; i++) {
      await storage.delete(lock.key);
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(lock.signal.aborted);
    await assert.rejects(lock.release(), /lock of "h1_c" was removed by someone else/);
    assert.deepEqual(await lockKeys(storage), []);
  });

  it("with several storages, a lock is on every one and conflicts with a run on any one of them", async () => {
    const a = await LocalStorage.open(path.join(work, "multi-a"), { create: true });
    const b = await LocalStorage.open(path.join(work, "multi-b"), { create: true });
    const both = new MultiStorage([a, b]);
    try {
      const lock = await acquireLock(both, TARGET, "backup", sink().ctx, FAST);
      assert.deepEqual(await lockKeys(a), [lock.key]);
      assert.deepEqual(await lockKeys(b), [lock.key]);
      await assert.rejects(acquireLock(b, TARGET, "remove", sink().ctx, FAST), /is locked by backup/);
      await lock.release();
      assert.deepEqual(await lockKeys(a), []);
      assert.deepEqual(await lockKeys(b), []);
      // And the other way round.
      const onB = await acquireLock(b, TARGET, "remove", sink().ctx, FAST);
      await assert.rejects(acquireLock(both, TARGET, "backup", sink().ctx, FAST), /is locked by remove/);
      assert.deepEqual(await lockKeys(a), [], "the failed run left nothing on the other storage");
      await onB.release();
    } finally {
      await both.close();
    }
  });

  it("lock objects are not backups: listing and manifest loading ignore them", async () => {
    await plantLock(storage, { id: "20260101T000000.000Z-00000000000000dd" });
    assert.deepEqual(await listSeries(storage), []);
    assert.deepEqual(await loadManifests(storage, SERIES), []);
    await storage.delete(`${SERIES}/locks/20260101T000000.000Z-00000000000000dd.json`);
  });
});

describe("locks through the command line", () => {
  let work: string;
  let src: string;
  before(() => {
    work = tempDir("lock-e2e");
    src = path.join(work, "src");
    fs.mkdirSync(path.join(src, "d"), { recursive: true });
    fs.writeFileSync(path.join(src, "a.txt"), "alpha\n");
    fs.writeFileSync(path.join(src, "d", "b.bin"), pseudoRandom(100_000, 3));
  });
  after(() => cleanup(work));

  const common = (store: string) => ["--name", "c", "--hostname", "h1", "--storage", store];

  async function ok(args: string[]): Promise<RunResult> {
    const r = await frost(args);
    assert.equal(r.code, 0, `frost ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
    return r;
  }

  async function listed(store: string): Promise<{ id: string; created: string }[]> {
    return JSON.parse((await ok(["list", ...common(store), "--json"])).stdout);
  }

  /** Every listed backup restores (verify decodes every stream) and the newest restores to `tree`. */
  async function assertHealthy(store: string, tree: string) {
    await ok(["verify", ...common(store), "--all", "--read-data"]);
    const to = tempDir("lock-restore");
    try {
      await ok(["restore", ...common(store), "--to", to, "--overwrite"]);
      assertSameTree(tree, to);
    } finally {
      cleanup(to);
    }
    // No lock objects, and no data of a backup that was not committed.
    const series = path.join(store, "h1_c");
    assert.ok(
      !fs.existsSync(path.join(series, "locks")) || fs.readdirSync(path.join(series, "locks")).length === 0,
    );
    const ids = (await listed(store)).map((l) => l.id).sort();
    assert.deepEqual(fs.readdirSync(path.join(series, "backups")).sort(), ids);
  }

  it("a foreign lock stops backup and remove with one line and exit 1; earlier backups stay; unlock", async () => {
    const store = path.join(work, "foreign");
    await ok(["backup", src, ...common(store)]);
    const before = await listed(store);
    const storage = await LocalStorage.open(store, { create: false });
    try {
      const key = await plantLock(storage, { id: "20260101T000000.000Z-00000000000000ee" });
      const message =
        /^frost: Backup "h1_c" is locked by remove \(pid 4242 of bob on elsewhere, since [^)]*\); run "frost unlock --name c --hostname h1 --force" if that process is gone\n$/;
      const b = await frost(["backup", src, ...common(store)]);
      assert.equal(b.code, 1, b.stderr);
      assert.match(b.stderr, message);
      const r = await frost(["remove", ...common(store), "--keep-last", "1", "--all"]);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, message);
      // Read-only commands take no lock; a dry run neither.
      await ok(["remove", ...common(store), "--keep-last", "1", "--dry-run"]);
      assert.deepEqual(await listed(store), before);
      assert.deepEqual(await lockKeys(storage), [key]);
      // unlock keeps a lock that may be live; --force removes it.
      const kept = await ok(["unlock", ...common(store)]);
      assert.match(kept.stdout, /Kept the lock of h1_c .* \(--force removes it\)\nRemoved 0 locks, kept 1/);
      assert.deepEqual(await lockKeys(storage), [key]);
      await ok(["unlock", ...common(store), "--force"]);
      assert.deepEqual(await lockKeys(storage), []);
      await ok(["backup", src, ...common(store)]);
      assert.equal((await listed(store)).length, 2);
      await assertHealthy(store, src);
    } finally {
      await storage.close();
    }
  });

  it("a lock left by a killed run on this host is broken by the next backup, with a notice (exit 0)", async () => {
    const store = path.join(work, "dead");
    const storage = await LocalStorage.open(store, { create: true });
    try {
      await plantLock(storage, {
        id: "20260101T000000.000Z-00000000000000ff",
        host: os.hostname(),
        pid: deadPid(),
      });
      const r = await ok(["backup", src, ...common(store)]);
      assert.match(
        r.stderr,
        /^frost: removing the lock of "h1_c" left by remove .*: that process is gone\n$/,
      );
      await assertHealthy(store, src);
    } finally {
      await storage.close();
    }
  });

  /**
   * Starts a backup of `big` that takes several seconds (upload limit) and resolves once its lock object
   * exists, with the promise of its result.
   */
  async function slowBackup(store: string, big: string) {
    const locks = path.join(store, "h1_c", "locks");
    let child: ChildProcess | undefined;
    const done = frost([
      "backup",
      big,
      ...common(store),
      "--compression",
      "none",
      "--upload-limit",
      "1M",
    ], {
      onSpawn: (c) => void (child = c),
    });
    for (
      let i = 0;
      i < 600 && !(fs.existsSync(locks) && fs.readdirSync(locks).some((n) => n.endsWith(".json")));
      i++
    ) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(fs.readdirSync(locks).length > 0, "the slow backup took its lock");
    return { done, child: child! };
  }

  it("a second backup and a remove during a running backup fail; the running one commits", async () => {
    const store = path.join(work, "concurrent");
    const big = path.join(work, "big");
    fs.mkdirSync(big);
    fs.writeFileSync(path.join(big, "x.bin"), pseudoRandom(5 << 20, 11));
    await ok(["backup", src, ...common(store)]); // an earlier backup that remove must not take
    const slow = await slowBackup(store, big);
    const [b, r] = await Promise.all([
      frost(["backup", src, ...common(store)]),
      frost(["remove", ...common(store), "--keep-last", "1"]),
    ]);
    for (const x of [b, r]) {
      assert.equal(x.code, 1, x.stderr);
      assert.match(
        x.stderr,
        /^frost: Backup "h1_c" is locked by backup \(pid \d+ [^)]*\)( and 1 other run)?; run "frost unlock .*\n$/,
      );
    }
    const first = await slow.done;
    assert.equal(first.code, 0, first.stderr);
    assert.equal((await listed(store)).length, 2);
    await assertHealthy(store, big);
  });

  it("an interrupted backup releases its lock", async () => {
    const store = path.join(work, "interrupted");
    const big = path.join(work, "big2");
    fs.mkdirSync(big);
    fs.writeFileSync(path.join(big, "x.bin"), pseudoRandom(5 << 20, 12));
    await ok(["backup", src, ...common(store)]);
    const slow = await slowBackup(store, big);
    slow.child.kill("SIGINT");
    const r = await slow.done;
    assert.ok(r.code === 130 || r.signal === "SIGINT", `exit ${r.code} ${r.signal}: ${r.stderr}`);
    assert.equal((await listed(store)).length, 1);
    await assertHealthy(store, src);
  });

  it("backups and removes started together never interleave: one wins or they run one after the other", async () => {
    const store = path.join(work, "race");
    await ok(["backup", src, ...common(store)]);
    for (let round = 0; round < 3; round++) {
      const runs: Promise<RunResult>[] = [
        frost(["backup", src, ...common(store), "--max-level", "2"]),
        frost(["backup", src, ...common(store), "--max-level", "2"]),
      ];
      if (round > 0) runs.push(frost(["remove", ...common(store), "--keep-last", "2"]));
      const results = await Promise.all(runs);
      for (const r of results) {
        assert.ok(r.code === 0 || r.code === 1, `exit ${r.code}: ${r.stderr}`);
        if (r.code === 1) assert.match(r.stderr, /^frost: Backup "h1_c" is locked by (backup|remove) .*\n$/);
      }
      assert.ok(results.some((r) => r.code === 0), results.map((r) => r.stderr).join(""));
      await assertHealthy(store, src);
    }
  });
});
