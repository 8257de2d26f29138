/**
 * A chain restore writes each large file once, from the newest level that stores it whole (tar state
 * version 2's trailer, docs/FORMAT.md), through the real frost on real files: every point of a chain in
 * which large files are rewritten, deleted and re-added, hard-linked, sparse, moved with their folder,
 * restores exactly as its source was, whole or in part, encrypted or not, from one storage or several.
 */
import { after, before, describe, it } from "node:test";
import { Buffer } from "node:buffer";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { execFileSync } from "node:child_process";
import { cleanup, frost, pseudoRandom, tempDir } from "../_cli.ts";
import { assertSameTree } from "../_tree.ts";

const MiB = 1 << 20;

function write(root: string, rel: string, content: Uint8Array | string): void {
  fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
  fs.writeFileSync(path.join(root, rel), content);
}

/** A sparse file: data at its start and at 3 MiB, holes elsewhere, 5 MiB in all. */
function writeSparse(root: string, rel: string, seed: number): void {
  const fd = fs.openSync(path.join(root, rel), "w");
  fs.writeSync(fd, pseudoRandom(MiB + 4096, seed), 0, MiB + 4096, 0);
  fs.writeSync(fd, pseudoRandom(64 * 1024, seed + 1), 0, 64 * 1024, 3 * MiB);
  fs.ftruncateSync(fd, 5 * MiB);
  fs.closeSync(fd);
}

interface Summary {
  id: string;
  files: number;
  bytes: number;
  bytesSkipped: number;
}

for (const encrypted of [false, true]) {
  describe(`restore of a chain whose levels store large files again${encrypted ? ", encrypted" : ""}`, () => {
    let dir: string;
    let src: string;
    let a: string;
    let b: string;
    /** Backup ids and the source as it was at each, oldest first. */
    const points: { id: string; snap: string }[] = [];
    const series = (...storages: string[]) => [
      "--name",
      "skip",
      ...storages.flatMap((s) => ["--storage", s]),
      ...(encrypted ? ["--encrypt-pass-file", path.join(dir, "pass")] : []),
    ];

    const restore = async (to: string, i: number, storages: string[], extra: string[] = []) => {
      const at = points[i]!.id.replace(
        /^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)\.(\d{3})Z$/,
        "$1-$2-$3T$4:$5:$6.$7Z",
      );
      const date = new Date(Date.parse(at) + 500).toISOString();
      const r = await frost([
        "restore",
        ...series(...storages),
        "--to",
        to,
        "--date",
        date,
        "--json",
        ...extra,
      ]);
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout) as Summary;
    };

    before(async () => {
      dir = tempDir("chainskip");
      src = path.join(dir, "src");
      a = path.join(dir, "a");
      b = path.join(dir, "b");
      fs.writeFileSync(path.join(dir, "pass"), "chain skip passphrase\n");
      const backup = async () => {
        // Files changed within a second of the parent's start are sent again (Deno's ms mtimes): wait.
        await new Promise((r) => setTimeout(r, 1200));
        const r = await frost(["backup", src, ...series(a, b), "--max-level", "5", "--json"]);
        assert.equal(r.code, 0, r.stderr);
        const snap = path.join(dir, `snap-${points.length}`);
        execFileSync("cp", ["-a", src, snap]);
        points.push({ id: JSON.parse(r.stdout).id, snap });
      };
      // Level 0.
      write(src, "big.img", pseudoRandom(3 * MiB, 1));
      write(src, "gone.bin", pseudoRandom(2 * MiB, 2));
      write(src, "linked.bin", pseudoRandom(2 * MiB, 3));
      fs.linkSync(path.join(src, "linked.bin"), path.join(src, "linked.hard"));
      writeSparse(src, "sparse.img", 4);
      write(src, "dir/inner.bin", pseudoRandom(2 * MiB, 6));
      write(src, "small.txt", "small\n");
      await backup();
      // Level 1: rewritten in place (both names of the linked file change), a deletion.
      write(src, "big.img", pseudoRandom(3 * MiB, 11));
      fs.rmSync(path.join(src, "gone.bin"));
      write(src, "linked.bin", pseudoRandom(2 * MiB, 13));
      writeSparse(src, "sparse.img", 14);
      await backup();
      // Level 2: the deleted file comes back; the linked file is replaced (its other name keeps the old
      // inode); a folder is renamed (frost stores it anew under its new name).
      write(src, "big.img", pseudoRandom(3 * MiB, 21));
      write(src, "gone.bin", pseudoRandom(2 * MiB, 22));
      write(src, "linked.new", pseudoRandom(2 * MiB, 23));
      fs.renameSync(path.join(src, "linked.new"), path.join(src, "linked.bin"));
      fs.renameSync(path.join(src, "dir"), path.join(src, "dir2"));
      await backup();
      // Level 3: the folder gets its old name back; the big file once more.
      write(src, "big.img", pseudoRandom(3 * MiB, 31));
      fs.renameSync(path.join(src, "dir2"), path.join(src, "dir"));
      await backup();
      // Level 4: only a small file changes: level 3 is the newest to store big.img.
      write(src, "small.txt", "small, changed\n");
      await backup();
    });
    after(() => cleanup(dir));

    it("restores every point of the chain exactly, each large file written once", async () => {
      for (const [i, p] of points.entries()) {
        const to = path.join(dir, `out-${i}`);
        const s = await restore(to, i, [a]);
        assertSameTree(p.snap, to);
        if (i === 0) assert.equal(s.bytesSkipped, 0);
        if (i === points.length - 1) {
          // big.img at levels 0-2, sparse.img at level 0, gone.bin at level 0, dir/inner.bin at level 0.
          assert.ok(s.bytesSkipped >= 3 * 3 * MiB + 2 * MiB + 2 * MiB, `${s.bytesSkipped} bytes skipped`);
        }
        cleanup(to);
      }
    });

    it("restores a point in the middle of the chain from its own levels only", async () => {
      // Level 1's big.img is stored again by levels 2 and 3, which are not part of point 1.
      const to = path.join(dir, "middle");
      const s = await restore(to, 1, [a]);
      assertSameTree(points[1]!.snap, to);
      // Level 0's big.img and sparse.img are stored again at level 1.
      assert.ok(s.bytesSkipped >= 3 * MiB + MiB, `${s.bytesSkipped} bytes skipped`);
      cleanup(to);
    });

    it("restores a selection, skipping the same way", async () => {
      const to = path.join(dir, "part");
      const s = await restore(to, points.length - 1, [a], ["--include", "big.img", "--include", "dir/**"]);
      assert.deepEqual(fs.readdirSync(to).sort(), ["big.img", "dir"]);
      assertSameTree(path.join(points.at(-1)!.snap, "dir"), path.join(to, "dir"));
      assert.deepEqual(fs.readFileSync(path.join(to, "big.img")), fs.readFileSync(path.join(src, "big.img")));
      assert.ok(s.bytesSkipped >= 3 * 3 * MiB, `${s.bytesSkipped} bytes skipped`);
      cleanup(to);
    });

    it("restores from several storages at once", async () => {
      const to = path.join(dir, "both");
      const s = await restore(to, points.length - 1, [b, a]);
      assertSameTree(points.at(-1)!.snap, to);
      assert.ok(s.bytesSkipped > 0);
      cleanup(to);
    });

    it("says in its summary how much was skipped", async () => {
      const to = path.join(dir, "said");
      const r = await frost(["restore", ...series(a), "--to", to]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /written \(\d+(\.\d)? MiB of older copies skipped\) in /);
      cleanup(to);
    });
  });
}

/** Runs frost where it can name any file (see names_test.ts): the binary ($FROST_BIN), else main.ts under Bun. */
function frostBytes(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return frost(args, { bun: true });
}

it("skips the older copies of a large file whose name is not valid UTF-8", async () => {
  const dir = tempDir("chainskip-names");
  try {
    const src = path.join(dir, "src");
    const storage = path.join(dir, "st");
    const name = Buffer.from("caf\xe9.img", "latin1");
    const file = Buffer.concat([Buffer.from(src + "/"), name]);
    fs.mkdirSync(src);
    for (const seed of [1, 2, 3]) {
      fs.writeFileSync(file, pseudoRandom(2 * MiB, seed));
      await new Promise((r) => setTimeout(r, 1200));
      const r = await frostBytes(["backup", src, "--name", "n", "--storage", storage, "--max-level", "5"]);
      assert.equal(r.code, 0, r.stderr);
    }
    const out = path.join(dir, "out");
    const r = await frostBytes(["restore", "--name", "n", "--storage", storage, "--to", out, "--json"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).bytesSkipped, 4 * MiB);
    const restored = Buffer.concat([Buffer.from(out + "/"), name]);
    assert.deepEqual(fs.readFileSync(restored), fs.readFileSync(file));
  } finally {
    cleanup(dir);
  }
});
