/**
 * Warnings exit 3; an unreadable manifest that may be the point asked for is an error, never a silent
 * fallback to an older point; and `verify --read-data` reports what restore would refuse or restore wrong
 * (a parent cycle, a level on the wrong parent). Runs main.ts, or the binary with FROST_BIN=dist/frost.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { execFileSync } from "node:child_process";
import { cleanup, frost, makeHostileTree, tempDir } from "../_cli.ts";
import { assertSameTree } from "../_tree.ts";

interface Listed {
  id: string;
  level: number;
  parent: string | null;
  created: string;
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

describe("exit codes, unreadable manifests and what verify reports", () => {
  let work: string;
  let store: string;
  let pass: string;
  let ids: Listed[];
  let n = 0;
  const base = (s: string) => ["--name", "x", "--hostname", "h1", "--storage", s];
  const common = (s: string) => [...base(s), "--encrypt-pass-file", pass];

  before(async () => {
    work = tempDir("exit-codes");
    store = path.join(work, "store");
    pass = path.join(work, "pass");
    fs.writeFileSync(pass, "correct horse battery staple\n");
    const src = path.join(work, "src");
    // Level 0: a hostile tree; level 1 adds b.txt and renames a folder; level 2 adds c.txt and deletes one.
    makeHostileTree(src);
    fs.writeFileSync(path.join(src, "a.txt"), "a\n");
    const steps = [
      () => {},
      () => {
        fs.writeFileSync(path.join(src, "b.txt"), "b\n");
        fs.renameSync(path.join(src, "ünïcødé"), path.join(src, "renamed"));
      },
      () => {
        fs.writeFileSync(path.join(src, "c.txt"), "c\n");
        fs.rmSync(path.join(src, "plain.txt"));
      },
    ];
    for (const step of steps) {
      step();
      // A file changed in the second a backup starts is stored again by the next level (the engine's racy
      // rule): wait past it, so that level 2 holds no b.txt of its own and the re-parenting below loses it.
      await new Promise((resolve) => setTimeout(resolve, 1200));
      const r = await frost(["backup", src, ...common(store), "--max-level", "3"]);
      assert.equal(r.code, 0, r.stderr);
    }
    const r = await frost(["list", ...base(store), "--json"]);
    ids = (JSON.parse(r.stdout) as Listed[]).sort((a, b) => a.id.localeCompare(b.id));
    assert.deepEqual(ids.map((m) => m.level), [0, 1, 2]);
  });

  after(() => cleanup(work));

  /** A copy of the store to damage. */
  function copy(): string {
    const to = path.join(work, `copy${n++}`);
    execFileSync("cp", ["-a", store, to]);
    return to;
  }

  const manifestFile = (s: string, id: string) => path.join(s, "h1_x", "manifests", `${id}.json`);

  function editManifest(s: string, id: string, change: (m: Record<string, unknown>) => void): void {
    const m = JSON.parse(fs.readFileSync(manifestFile(s, id), "utf8")) as Record<string, unknown>;
    change(m);
    fs.writeFileSync(manifestFile(s, id), JSON.stringify(m, null, 2) + "\n");
  }

  it("verify --read-data passes on the healthy chain (renames and deletions replayed)", async () => {
    const r = await frost(["verify", ...common(store), "--read-data"]);
    assert.equal(r.code, 0, r.stderr);
    const all = await frost(["verify", ...common(store), "--read-data", "--all"]);
    assert.equal(all.code, 0, all.stderr);
  });

  it("a corrupt newest manifest: restore and ls fail naming it, never restore an older point", async () => {
    const s = copy();
    const newest = ids[2]!;
    fs.writeFileSync(manifestFile(s, newest.id), "{ not json");
    const key = `h1_x/manifests/${newest.id}.json`;
    const dates = [[], ["--date", new Date(Date.parse(newest.created) + 60_000).toISOString()]];
    for (const date of dates) {
      const to = path.join(work, `to-${n++}`);
      const r = await frost(["restore", ...common(s), "--to", to, ...date]);
      assert.equal(r.code, 1, r.stderr);
      assert.match(
        r.stderr,
        new RegExp(`^frost: Cannot read manifest "${escape(key)}": not valid JSON; it may be`, "m"),
      );
      assert.ok(!fs.existsSync(to) || fs.readdirSync(to).length === 0, "nothing restored");
      const ls = await frost(["ls", ...common(s), ...date]);
      assert.equal(ls.code, 1, ls.stderr);
      assert.match(ls.stderr, new RegExp(`^frost: Cannot read manifest "${escape(key)}"`, "m"));
    }
    // A point before it is still restored, with a warning (exit 3).
    const to = path.join(work, `to-${n++}`);
    const r = await frost(["restore", ...common(s), "--to", to, "--date", ids[1]!.created]);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /^frost: warning: ignoring unreadable manifest/m);
    // list shows the others, with the warning: exit 3.
    const list = await frost(["list", ...base(s)]);
    assert.equal(list.code, 3, list.stderr);
  });

  it("verify --read-data reports a parent cycle that restore refuses", async () => {
    const s = copy();
    editManifest(s, ids[1]!.id, (m) => m.parent = ids[2]!.id);
    const to = path.join(work, `to-${n++}`);
    const restore = await frost(["restore", ...common(s), "--to", to]);
    assert.equal(restore.code, 1, restore.stderr);
    assert.match(restore.stderr, /its own ancestor/);
    for (const all of [[], ["--all"]]) {
      const r = await frost(["verify", ...common(s), "--read-data", ...all]);
      assert.equal(r.code, 1, `verify ${all}: ${r.stderr}`);
      assert.match(r.stderr, /^frost: BAD h1_x\/manifests\/.*restore refuses it: .*(own ancestor|cycle)/m);
    }
  });

  it("verify --read-data reports an encrypted level put on the wrong parent, which restores a file short", async () => {
    const s = copy();
    editManifest(s, ids[2]!.id, (m) => m.parent = ids[0]!.id);
    const to = path.join(work, `to-${n++}`);
    await frost(["restore", ...common(s), "--to", to]);
    assert.ok(!fs.existsSync(path.join(to, "b.txt")), "the chain restores without b.txt");
    const r = await frost(["verify", ...common(s), "--read-data"]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(
        `^frost: BAD h1_x/manifests/${
          escape(ids[2]!.id)
        }\\.json: restoring its chain gives another tree .*"b\\.txt"`,
        "m",
      ),
    );
  });

  it("the healthy chain restores whole", async () => {
    const to = path.join(work, `to-${n++}`);
    const r = await frost(["restore", ...common(store), "--to", to]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(fs.existsSync(path.join(to, "b.txt")) && fs.existsSync(path.join(to, "c.txt")));
    assertSameTree(path.join(work, "src"), to);
  });
});
