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
import { cleanup, frost, pseudoRandom, tempDir } from "./_cli.ts";
import { assertSameTree } from "./_tree.ts";
import { formatBytes } from "../base/units.ts";
import { TEMP_PREFIX } from "../storage/local.ts";

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
    const backups = path.join(series(), "backups");
    for (const id of fs.existsSync(backups) ? fs.readdirSync(backups) : []) {
      if (manifests.has(id)) continue;
      let bytes = 0;
      for (const rel of fs.readdirSync(path.join(backups, id), { recursive: true }) as string[]) {
        const file = path.join(backups, id, rel);
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
    const [[orphanId, bytes]] = [...orphans] as [[string, number]];
    assert.ok(bytes >= 3 << 20);

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
        `^frost: removed the data of 1 interrupted backup of h1_o \\(${orphanId.replace(".", "\\.")}\\): ${
          formatBytes(bytes).replace(".", "\\.")
        } freed$`,
        "m",
      ),
    );
    assert.doesNotMatch(r.stderr, /warning/);
    assert.deepEqual([...uncommitted().keys()], []);
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
