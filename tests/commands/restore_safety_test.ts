/**
 * A restore never destroys what it was not asked to: `--overwrite` replaces what the backup holds and keeps
 * everything else (the chain's own deletions still replay), `--delete` mirrors, `--dry-run` lists both, and a
 * local storage folder is never written, replaced or removed by a restore nor backed up by a backup. Through
 * the real frost (main.ts, or the binary with FROST_BIN) on real files, as root and as `nobody`.
 * @module
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { cleanup, frost, tempDir } from "../_cli.ts";

/** Every path below `root` (sorted, relative), with "/" after directories. */
function tree(root: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const name of fs.readdirSync(path.join(root, rel)).sort()) {
      const r = rel === "" ? name : `${rel}/${name}`;
      const st = fs.lstatSync(path.join(root, r));
      out.push(st.isDirectory() ? r + "/" : r);
      if (st.isDirectory()) walk(r);
    }
  };
  walk("");
  return out;
}

function write(root: string, rel: string, data: string): void {
  fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
  fs.writeFileSync(path.join(root, rel), data);
}

async function ok(args: string[], options: Parameters<typeof frost>[1] = {}) {
  const r = await frost(args, options);
  assert.equal(r.code, 0, `frost ${args.join(" ")}: exit ${r.code}\n${r.stderr}`);
  return r;
}

for (const engine of ["tar", "rsync"]) {
  describe(`restore --overwrite / --delete (${engine} engine)`, () => {
    it("--overwrite keeps what the backup never held, replays the chain's deletions, and counts both", async () => {
      const dir = tempDir("safe");
      try {
        const src = path.join(dir, "src");
        const store = path.join(dir, "store");
        write(src, "a/f", "one");
        write(src, "b/gone", "deleted at level 1");
        write(src, "top", "top v0");
        const common = ["--name", "s", "--storage", store];
        await ok(["backup", src, ...common, "--max-level", "2", "--engine", engine]);
        fs.rmSync(path.join(src, "b/gone"));
        write(src, "top", "top v1");
        write(src, "new", "new at level 1");
        await ok(["backup", src, ...common, "--max-level", "2", "--engine", engine]);

        // The target holds files of its own, one where the chain's deleted file was, one the backup replaces.
        const target = path.join(dir, "target");
        write(target, "mine", "the user's");
        write(target, "b/user", "the user's too");
        write(target, "b/gone", "an older restore left this");
        write(target, "top", "stale");
        write(target, "a/f", "stale");

        const dry = await ok(["restore", ...common, "--to", target, "--overwrite", "--dry-run", "--json"]);
        const plan = JSON.parse(dry.stdout) as {
          entries: { path: string; action: string }[];
          deletions: { path: string }[];
          entriesCreated: number;
          entriesReplaced: number;
          entriesDeleted: number;
        };
        const action = Object.fromEntries(plan.entries.map((e) => [e.path, e.action]));
        assert.equal(action["top"], "replace");
        assert.equal(action["a/f"], "replace");
        assert.equal(action["new"], "create");
        assert.deepEqual(plan.deletions.map((d) => d.path), ["b/gone"]);
        assert.equal(plan.entriesDeleted, 1);
        assert.equal(plan.entriesReplaced, 4); // top, a, a/f and b
        assert.equal(fs.readFileSync(path.join(target, "top"), "utf8"), "stale", "dry run wrote nothing");

        const r = await ok(["restore", ...common, "--to", target, "--overwrite"]);
        assert.match(r.stdout, /\d+ created, \d+ replaced, 1 deleted/);
        assert.deepEqual(tree(target), ["a/", "a/f", "b/", "b/user", "mine", "new", "top"]);
        assert.equal(fs.readFileSync(path.join(target, "mine"), "utf8"), "the user's");
        assert.equal(fs.readFileSync(path.join(target, "b/user"), "utf8"), "the user's too");
        assert.equal(fs.readFileSync(path.join(target, "top"), "utf8"), "top v1");
        assert.equal(fs.readFileSync(path.join(target, "a/f"), "utf8"), "one");

        // --delete makes it a mirror; its dry run names what goes.
        const dryDelete = await ok([
          "restore",
          ...common,
          "--to",
          target,
          "--overwrite",
          "--delete",
          "--dry-run",
        ]);
        assert.match(dryDelete.stdout, /^delete +- +b\/user$/m);
        assert.match(dryDelete.stdout, /^delete +- +mine$/m);
        assert.match(dryDelete.stdout, /0 created, \d+ replaced, 2 deleted/);
        const mirrored = await ok([
          "restore",
          ...common,
          "--to",
          target,
          "--overwrite",
          "--delete",
          "--json",
        ]);
        assert.equal(JSON.parse(mirrored.stdout).entriesDeleted, 2);
        assert.deepEqual(tree(target), ["a/", "a/f", "b/", "new", "top"]);

        // A partial restore with --delete mirrors only what its patterns select.
        write(target, "mine", "again");
        write(target, "a/extra", "inside the selection");
        await ok(["restore", ...common, "--to", target, "--overwrite", "--delete", "--include", "a"]);
        assert.deepEqual(tree(target), ["a/", "a/f", "b/", "mine", "new", "top"]);
      } finally {
        cleanup(dir);
      }
    });
  });
}

describe("restore and the storage folder", () => {
  it("refuses a target that is or lies inside a local storage, and --delete without --overwrite", async () => {
    const dir = tempDir("safe");
    try {
      const src = path.join(dir, "src");
      const store = path.join(dir, "store");
      write(src, "f", "x");
      const common = ["--name", "s", "--storage", store];
      await ok(["backup", src, ...common]);
      const before = tree(store);
      for (const to of [store, path.join(store, "sub"), path.join(store, "vm_s")]) {
        const r = await frost(["restore", ...common, "--to", to, "--overwrite"]);
        assert.equal(r.code, 2, r.stderr);
        assert.match(
          r.stderr,
          /^frost: Cannot restore into ".*": it is (the storage folder|inside the storage)/,
        );
      }
      const noOverwrite = await frost(["restore", ...common, "--to", path.join(dir, "t"), "--delete"]);
      assert.equal(noOverwrite.code, 2);
      assert.match(noOverwrite.stderr, /--delete .* needs --overwrite/);
      assert.deepEqual(tree(store), before);
      // A target that is a file.
      write(dir, "afile", "x");
      const file = await frost(["restore", ...common, "--to", path.join(dir, "afile")]);
      assert.equal(file.code, 1);
      assert.match(file.stderr, /not a directory/);
    } finally {
      cleanup(dir);
    }
  });

  it("a backup leaves out its storage inside the source; a restore --delete into it keeps the storage", async () => {
    const dir = tempDir("safe");
    try {
      // The usual mistake: the storage lives in the tree that is backed up (/var and /var/backups/frost).
      const root = path.join(dir, "var");
      const store = path.join(root, "backups/frost");
      write(root, "lib/data", "data");
      write(root, "backups/other", "not the storage");
      const common = ["--name", "var", "--storage", store];
      const b = await ok(["backup", root, ...common]);
      assert.match(
        b.stderr,
        /notice: the storage folder ".*backups\/frost" lies inside the source: it is left out/,
      );
      assert.doesNotMatch(b.stderr, /warning/);
      const ls = await ok(["ls", ...common]);
      assert.doesNotMatch(ls.stdout, /backups\/frost/);
      assert.match(ls.stdout, /backups\/other/);

      // Restoring over the same tree, mirroring: the storage survives, and so does every backup in it.
      write(root, "lib/junk", "goes");
      const r = await ok(["restore", ...common, "--to", root, "--overwrite", "--delete"]);
      assert.match(
        r.stderr,
        /notice: the storage folder ".*backups\/frost" lies inside the target: it is left as it is/,
      );
      assert.equal(fs.existsSync(path.join(root, "lib/junk")), false);
      const list = await ok(["list", ...common, "--json"]);
      assert.equal((JSON.parse(list.stdout) as unknown[]).length, 1);
      const check = path.join(dir, "check");
      await ok(["restore", ...common, "--to", check]);
      assert.equal(fs.readFileSync(path.join(check, "lib/data"), "utf8"), "data");

      // A source that is the storage folder is refused.
      const self = await frost(["backup", store, ...common]);
      assert.equal(self.code, 2);
      assert.match(self.stderr, /it is the storage folder/);
    } finally {
      cleanup(dir);
    }
  });

  it("an older backup that holds the storage folder never writes into it", async () => {
    const dir = tempDir("safe");
    try {
      // Made as before the fix: the tree holds a folder that later becomes the storage's place.
      const src = path.join(dir, "src");
      write(src, "keep/f", "kept");
      write(src, "store/vm_x/manifests/forged.json", "{}");
      const first = path.join(dir, "first");
      await ok(["backup", src, "--name", "x", "--storage", first]);
      // The storage now lives at target/store (copied there whole), and the restore reads from it.
      const target = path.join(dir, "target");
      fs.mkdirSync(target);
      fs.cpSync(first, path.join(target, "store"), { recursive: true });
      const before = tree(path.join(target, "store"));
      const common = ["--name", "x", "--storage", path.join(target, "store")];
      await ok(["restore", ...common, "--to", target, "--overwrite", "--delete"]);
      assert.deepEqual(tree(path.join(target, "store")), before);
      assert.equal(fs.readFileSync(path.join(target, "keep/f"), "utf8"), "kept");
      await ok(["list", ...common]);
    } finally {
      cleanup(dir);
    }
  });
});

describe("restore as nobody", () => {
  it(
    "--overwrite into a folder holding root's files leaves them alone (no attempt to delete them)",
    { skip: process.getuid?.() !== 0 ? "needs root (to make root's files and run as nobody)" : false },
    async () => {
      const dir = tempDir("safe");
      try {
        fs.chmodSync(dir, 0o755);
        const src = path.join(dir, "src");
        const store = path.join(dir, "store");
        write(src, "etc/app.conf", "restored");
        fs.mkdirSync(store);
        fs.chownSync(src, 65534, 65534);
        for (const p of ["etc", "etc/app.conf"]) fs.chownSync(path.join(src, p), 65534, 65534);
        fs.chownSync(store, 65534, 65534);
        const common = ["--name", "n", "--storage", store];
        await ok(["backup", src, ...common], { asNobody: true });
        // The target is nobody's, but holds a folder of root's that the backup never held.
        const target = path.join(dir, "target");
        write(target, "sys/root-only", "root's");
        fs.chmodSync(path.join(target, "sys"), 0o755);
        fs.chownSync(target, 65534, 65534);
        const r = await ok(["restore", ...common, "--to", target, "--overwrite"], { asNobody: true });
        assert.doesNotMatch(r.stderr, /permission denied|warning/i);
        assert.equal(fs.readFileSync(path.join(target, "sys/root-only"), "utf8"), "root's");
        assert.equal(fs.readFileSync(path.join(target, "etc/app.conf"), "utf8"), "restored");
      } finally {
        cleanup(dir);
      }
    },
  );
});
