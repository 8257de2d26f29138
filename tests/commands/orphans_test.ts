/**
 * Orphans of runs that died: a backup killed with SIGKILL in the middle of its upload leaves data without a
 * manifest; the next backup (or remove) of the series, holding the lock, frees it at once and says how much,
 * and every committed backup stays restorable. Runs main.ts, or the binary with FROST_BIN=dist/frost.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import type { ChildProcess } from "node:child_process";
import { cleanup, frost, pseudoRandom, tempDir } from "../_cli.ts";
import { assertSameTree } from "../_tree.ts";
import { formatBytes } from "../../base/units.ts";
import { LocalStorage, TEMP_PREFIX } from "../../storage/local.ts";
import { LimitStorage } from "../../storage/limit.ts";
import { MultiStorage } from "../../storage/multi.ts";
import { RetryStorage } from "../../storage/retry.ts";
import { getBytes } from "../../storage/storage.ts";

interface Listed {
  id: string;
  created: string;
}

describe("orphans of killed backups", () => {
  let work: string;
  let src: string;
  let big: string;
  let store: string;
  const common = () => ["--storage", store, "--hostname", "h1", "--name", "o"];
  const series = () => path.join(store, "h1_o");
  let restores = 0;

  before(() => {
    work = tempDir("orphans");
    store = path.join(work, "store");
    src = path.join(work, "src");
    fs.mkdirSync(path.join(src, "sub"), { recursive: true });
    fs.writeFileSync(path.join(src, "a.txt"), "a\n");
    fs.writeFileSync(path.join(src, "sub", "b.bin"), pseudoRandom(100_000, 5));
    big = path.join(work, "big");
    fs.mkdirSync(big);
    fs.writeFileSync(path.join(big, "x.bin"), pseudoRandom(32 << 20, 9));
  });

  after(() => cleanup(work));

  async function ok(args: string[]) {
    const r = await frost(args);
    assert.equal(r.code, 0, `frost ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
    return r;
  }

  async function listed(): Promise<Listed[]> {
    return JSON.parse((await ok(["list", ...common(), "--json"])).stdout) as Listed[];
  }

  /** The ids under backups/ that have no manifest, with the bytes of their objects (temp files left out). */
  function uncommitted(): Map<string, number> {
    const out = new Map<string, number>();
    const manifests = new Set(
      fs.readdirSync(path.join(series(), "manifests")).map((n) => n.replace(/\.json$/, "")),
    );
    const folders = path.join(series(), "backups");
    for (const id of fs.existsSync(folders) ? fs.readdirSync(folders) : []) {
      if (manifests.has(id)) continue;
      let bytes = 0;
      for (const rel of fs.readdirSync(path.join(folders, id), { recursive: true }) as string[]) {
        const file = path.join(folders, id, rel);
        if (fs.statSync(file).isFile() && !path.basename(file).startsWith(TEMP_PREFIX)) {
          bytes += fs.statSync(file).size;
        }
      }
      if (bytes > 0) out.set(id, bytes);
    }
    return out;
  }

  /** Starts a backup of `big` slowed by an upload limit and kills it (SIGKILL) once 3 segments are stored. */
  async function killedBackup(): Promise<void> {
    let child: ChildProcess | undefined;
    const done = frost([
      "backup",
      big,
      ...common(),
      "--compression",
      "none",
      "--segment-size",
      "1M",
      "--upload-limit",
      "4M",
    ], { onSpawn: (c) => void (child = c) });
    const before = new Set(uncommitted().keys());
    const stored = () => [...uncommitted()].filter(([id]) => !before.has(id)).reduce((n, [, b]) => n + b, 0);
    for (let i = 0; i < 1500 && stored() < 3 << 20; i++) await new Promise((r) => setTimeout(r, 20));
    assert.ok(stored() >= 3 << 20, "the slow backup stored 3 segments");
    child!.kill("SIGKILL");
    const r = await done;
    assert.equal(r.signal, "SIGKILL", `the backup ended before it was killed: exit ${r.code} ${r.stderr}`);
  }

  function restoreAndCompare(id: string, created: string, expected: string): Promise<void> {
    const to = path.join(work, `restored-${++restores}-${id}`);
    return ok(["restore", ...common(), "--date", created, "--to", to]).then(() =>
      assertSameTree(expected, to)
    );
  }

  it("the next backup frees the data of a killed one, with a notice, and exits 0", async () => {
    await ok(["backup", src, ...common()]);
    await killedBackup();
    const orphans = uncommitted();
    assert.equal(orphans.size, 1);
    const [[orphanId, stored]] = [...orphans] as [[string, number]];
    assert.ok(stored >= 3 << 20);
    // What a put cut by the kill leaves (a run without --upload-limit left 23 MiB so): a temp file beside the
    // segments, and the folder of a run killed in its very first put, holding a temp file only.
    const folders = path.join(series(), "backups");
    fs.writeFileSync(path.join(folders, orphanId, "data", `${TEMP_PREFIX}cut`), pseudoRandom(1 << 20, 6));
    const firstPutId = "20200101T000000.000Z";
    fs.mkdirSync(path.join(folders, firstPutId, "data"), { recursive: true });
    fs.writeFileSync(path.join(folders, firstPutId, "data", `${TEMP_PREFIX}first`), pseudoRandom(5000, 7));
    const bytes = stored + (1 << 20) + 5000;

    // A dry run of remove sees it already: no live run holds the lock.
    const dry = await ok(["remove", ...common(), "--keep-last", "5", "--dry-run"]);
    assert.match(
      dry.stdout,
      new RegExp(`Would remove orphaned data of failed run h1_o ${orphanId.replace(".", "\\.")}`),
    );

    const r = await ok(["backup", src, ...common()]);
    assert.match(
      r.stderr,
      new RegExp(
        `^frost: removed the data of 2 interrupted backups of h1_o \\(${firstPutId.replace(".", "\\.")}, ${
          orphanId.replace(".", "\\.")
        }\\): ${formatBytes(bytes).replace(".", "\\.")} freed$`,
        "m",
      ),
    );
    assert.doesNotMatch(r.stderr, /warning/);
    assert.deepEqual([...uncommitted().keys()], []);
    assert.ok(!fs.existsSync(path.join(folders, orphanId)), "the killed run's folder is gone, temp file too");
    assert.ok(!fs.existsSync(path.join(folders, firstPutId)));
    const backups = await listed();
    assert.equal(backups.length, 2);
    for (const b of backups) await restoreAndCompare(b.id, b.created, src);
  });

  it("remove under the lock frees the data of a killed backup whatever its age and reports it", async () => {
    await killedBackup();
    const orphans = uncommitted();
    assert.equal(orphans.size, 1);
    const [[orphanId, bytes]] = [...orphans] as [[string, number]];
    const r = await ok(["remove", ...common(), "--keep-last", "5"]);
    assert.match(
      r.stdout,
      new RegExp(`^Removed orphaned data of failed run h1_o ${orphanId.replace(".", "\\.")}$`, "m"),
    );
    assert.match(
      r.stdout,
      new RegExp(`Removed 0 backups and 1 orphan \\(${formatBytes(bytes).replace(".", "\\.")} freed\\)`),
    );
    assert.deepEqual([...uncommitted().keys()], []);
    const backups = await listed();
    assert.equal(backups.length, 2);
    for (const b of backups) await restoreAndCompare(b.id, b.created, src);
  });
});

describe("Storage.deleteLeftovers()", () => {
  it("LocalStorage.deleteLeftovers() removes the temp files under a prefix only, through every decorator", async () => {
    const root = tempDir("leftovers");
    try {
      const local = await LocalStorage.open(root, { create: true });
      const bytes = new TextEncoder().encode("committed");
      await local.put("s/backups/1/data/00000000", bytes);
      await local.put("s/backups/2/data/00000000", bytes);
      const plant = (rel: string, size: number) => {
        fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
        fs.writeFileSync(path.join(root, rel), new Uint8Array(size));
      };
      plant(`s/backups/1/data/${TEMP_PREFIX}a`, 100);
      plant(`s/backups/1/state/${TEMP_PREFIX}b`, 10);
      plant(`s/backups/2/data/${TEMP_PREFIX}c`, 1000);
      const composed = new MultiStorage([new LimitStorage(new RetryStorage(local), { upload: 1 << 20 })]);
      assert.equal(await composed.deleteLeftovers("s/backups/1/"), 110);
      assert.ok(!fs.existsSync(path.join(root, "s/backups/1/state")), "the folder left empty is gone");
      assert.deepEqual(await getBytes(local, "s/backups/1/data/00000000"), bytes);
      assert.ok(
        fs.existsSync(path.join(root, `s/backups/2/data/${TEMP_PREFIX}c`)),
        "another prefix is left alone",
      );
      assert.equal(await composed.deleteLeftovers("s/backups/9/"), 0);
    } finally {
      cleanup(root);
    }
  });
});
