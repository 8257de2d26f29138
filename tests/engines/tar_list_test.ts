/**
 * The tar engine's listing API (engines/tar_list.ts): GNU tar incremental levels replayed on a `Tree`
 * give the tree the source had at each level.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { test } from "node:test";
import { markTarState, tarReplayer, Tree } from "../../engines/tar_list.ts";

/** Archives `src` with GNU tar as one incremental level (`snar` is created or updated). */
function gnuTar(src: string, snar: string): Uint8Array {
  return execFileSync("tar", ["-C", src, "-g", snar, "--format=posix", "-cf", "-", "."], {
    maxBuffer: 1 << 26,
  });
}

/** Replays `archive` on `tree` in chunks of 1000 bytes. */
function replay(tree: Tree, archive: Uint8Array): void {
  const r = tarReplayer(tree);
  for (let o = 0; o < archive.byteLength; o += 1000) r.push(archive.subarray(o, o + 1000));
  r.finish();
}

/** Every path below `dir` with its type letter, sorted as `Tree.walk` sorts them. */
function listing(dir: string, rel = ""): string[] {
  const out: string[] = [];
  for (const name of fs.readdirSync(path.join(dir, rel)).sort()) {
    const p = rel === "" ? name : `${rel}/${name}`;
    const st = fs.lstatSync(path.join(dir, p));
    out.push(`${st.isDirectory() ? "d" : st.isSymbolicLink() ? "l" : "f"} ${p}`);
    if (st.isDirectory()) out.push(...listing(dir, p));
  }
  return out;
}

function treeListing(tree: Tree): string[] {
  const letter = { dir: "d", symlink: "l", file: "f" } as Record<string, string>;
  return tree.list("").filter(([p]) => p !== ".").map(([p, n]) => `${letter[n.type] ?? "?"} ${p}`);
}

test("Tree replays levels that delete, replace and rename entries as the source had them", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "frost-tree-"));
  try {
    const src = path.join(dir, "src");
    const snar = path.join(dir, "snar");
    fs.mkdirSync(path.join(src, "a/deep"), { recursive: true });
    fs.mkdirSync(path.join(src, "gone/sub"), { recursive: true });
    fs.mkdirSync(path.join(src, "old"));
    fs.writeFileSync(path.join(src, "a/deep/f"), "x");
    fs.writeFileSync(path.join(src, "gone/sub/g"), "y");
    fs.writeFileSync(path.join(src, "old/h"), "z");
    fs.writeFileSync(path.join(src, "file"), "1");
    fs.symlinkSync("file", path.join(src, "link"));
    const tree = new Tree();
    replay(tree, gnuTar(src, snar));
    assert.deepEqual(treeListing(tree), listing(src));
    assert.equal(tree.find("a/deep/f")?.size, 1);

    // A directory removed, one replaced by a file, a file replaced by a directory, a rename.
    fs.rmSync(path.join(src, "gone"), { recursive: true });
    fs.rmSync(path.join(src, "a/deep"), { recursive: true });
    fs.writeFileSync(path.join(src, "a/deep"), "now a file");
    fs.rmSync(path.join(src, "file"));
    fs.mkdirSync(path.join(src, "file"));
    fs.writeFileSync(path.join(src, "file/inside"), "2");
    fs.renameSync(path.join(src, "old"), path.join(src, "new"));
    replay(tree, gnuTar(src, snar));
    assert.deepEqual(treeListing(tree), listing(src));
    assert.equal(tree.find("a/deep")?.type, "file");
    assert.equal(tree.find("a/deep")?.size, 10);
    assert.equal(tree.has("a/deep/f"), false);
    assert.equal(tree.has("gone/sub/g"), false);
    assert.equal(tree.find("link")?.linkname, "file");
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("Tree.mark() marks each entry once and unmarked() lists the others in path order", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "frost-tree-"));
  try {
    const src = path.join(dir, "src");
    fs.mkdirSync(path.join(src, "d/e"), { recursive: true });
    fs.writeFileSync(path.join(src, "d/e/f"), "");
    fs.writeFileSync(path.join(src, "g"), "");
    const tree = new Tree();
    replay(tree, gnuTar(src, path.join(dir, "snar")));
    assert.equal(tree.mark("d/e"), true);
    assert.equal(tree.mark("d/e"), false);
    assert.equal(tree.mark("missing"), false);
    assert.equal(tree.mark("g"), true);
    assert.deepEqual([...tree.unmarked()], ["d", "d/e/f"]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("markTarState() marks a state's entries in the tree and counts those it does not hold", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "frost-tree-"));
  try {
    const src = path.join(dir, "src");
    fs.mkdirSync(path.join(src, "d/e"), { recursive: true });
    fs.writeFileSync(path.join(src, "d/e/f"), "");
    fs.writeFileSync(path.join(src, "g"), "");
    fs.writeFileSync(path.join(src, "h"), "");
    const tree = new Tree();
    replay(tree, gnuTar(src, path.join(dir, "snar")));
    const record = (p: string, kind: string) => JSON.stringify([p, kind, "1", "2", "0", "3", "4"]);
    const text = '{"format":"frost-tar-state","version":1,"started":"0"}\n' +
      [record(".", "d"), record("d", "d"), record("d/e", "d"), record("d/e/f", "f"), record("d//e", "d")]
        .join("\n") +
      "\n" + record("g", "f") + "\n" + record("x/y", "f") + "\n";
    const bytes = new TextEncoder().encode(text);
    // In chunks of 7 bytes: records cut anywhere.
    const state = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let o = 0; o < bytes.byteLength; o += 7) controller.enqueue(bytes.slice(o, o + 7));
        controller.close();
      },
    });
    const marks = await markTarState(tree, state);
    assert.deepEqual(marks, { entries: 6, missing: 2, firstMissing: "d//e" });
    assert.deepEqual([...tree.unmarked()], ["h"]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("markTarState() names the backup's own state, not a parent's, when it is not a state", async () => {
  const streamOf = (text: string) => new Blob([text]).stream();
  await assert.rejects(
    markTarState(new Tree(), streamOf('{"format":"frost-tar-state","version":1,"started":"0"}\n[1,2]\n')),
    /^FrostError: Cannot read the backup's state: line 2 is not a state record/,
  );
  await assert.rejects(
    markTarState(new Tree(), streamOf("GNU tar-1.34-2\n")),
    /^FrostError: Cannot read the backup's state: it is not a frost tar state/,
  );
});

test("Tree keeps thousands of entries straight through deletions, renames and re-added names", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "frost-tree-many-"));
  try {
    const src = path.join(dir, "src");
    const snar = path.join(dir, "snar");
    let seed = 12345;
    const rand = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % n;
    };
    for (let d = 0; d < 20; d++) {
      fs.mkdirSync(path.join(src, `d${d}`, "sub"), { recursive: true });
      for (let f = 0; f < 150; f++) {
        fs.writeFileSync(path.join(src, `d${d}`, f % 3 ? `f${f}` : `sub/é${f}`), "x");
      }
    }
    const tree = new Tree();
    replay(tree, gnuTar(src, snar));
    assert.deepEqual(treeListing(tree), listing(src));
    for (let level = 1; level <= 4; level++) {
      const files = listing(src).filter((l) => l.startsWith("f ")).map((l) => l.slice(2));
      for (let k = 0; k < 400; k++) fs.rmSync(path.join(src, files[rand(files.length)]!), { force: true });
      const dirs = fs.readdirSync(src).filter((n) =>
        /^d\d+$/.test(n) && fs.statSync(path.join(src, n)).isDirectory()
      );
      for (let k = 0; k < 300; k++) {
        fs.writeFileSync(path.join(src, dirs[rand(dirs.length)]!, `f${rand(200)}`), "again");
      }
      const d = dirs[rand(dirs.length)]!.slice(1);
      fs.renameSync(path.join(src, `d${d}`), path.join(src, `moved${level}`));
      fs.writeFileSync(path.join(src, `d${d}`), "a file where a folder was");
      replay(tree, gnuTar(src, snar));
      assert.deepEqual(treeListing(tree), listing(src), `level ${level}`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("Tree keeps and drops non-ASCII names as a level's dumpdir says", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "frost-tree-"));
  try {
    const src = path.join(dir, "src");
    const snar = path.join(dir, "snar");
    fs.mkdirSync(path.join(src, "dé"), { recursive: true });
    for (const name of ["naïve", "ü-gone", "plain", "dé/日本"]) fs.writeFileSync(path.join(src, name), name);
    const tree = new Tree();
    replay(tree, gnuTar(src, snar));
    fs.rmSync(path.join(src, "ü-gone"));
    fs.rmSync(path.join(src, "dé/日本"));
    fs.writeFileSync(path.join(src, "dé/ß"), "new");
    replay(tree, gnuTar(src, snar));
    assert.deepEqual(treeListing(tree), listing(src));
    assert.deepEqual(treeListing(tree), ["d dé", "f dé/ß", "f naïve", "f plain"]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
