/**
 * Tests of the level N walk's listings made ahead on a worker thread (engines/_walk_ahead.ts): each folder's
 * names and stats as ChildStat gives them on this thread, in walk order; folders skipped on the way, folders
 * it has no listing for, and big folders left to the main thread. Also run under `bun test`.
 * @module
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ChildStat, type Listing } from "../../engines/_ffi_stat.ts";
import { WalkAhead } from "../../engines/_walk_ahead.ts";
import { sortNames } from "../../engines/_tar_state.ts";
import bytesFs, { BYTE_PATHS } from "../../engines/_fs_bytes.ts";
import { execFileSync } from "node:child_process";

/** What ChildStat says of each child of the folder it reads: name, mode, nlink, ids, ino, size, times, dev */
function looks(at: ChildStat, names: string[]): string[] {
  return names.map((name) => {
    assert.ok(at.stat(name), name);
    return [name, at.mode, at.nlink, at.uid, at.gid, at.ino, at.size, at.mtimeNs, at.ctimeNs, at.dev].join(
      " ",
    );
  });
}

/** The same, from the folder opened on this thread. */
function looksHere(at: ChildStat, dir: string): { names: string[]; looks: string[] } {
  const names = sortNames(bytesFs.readdirSync(dir) as string[]);
  assert.ok(at.openDir(dir), dir);
  try {
    return { names, looks: looks(at, names) };
  } finally {
    at.closeDir();
  }
}

/** Waits until the worker has listed the whole tree (the walk itself never waits: see the module). */
async function walked(ahead: WalkAhead): Promise<WalkAhead> {
  while (!ahead.done()) await new Promise((resolve) => setTimeout(resolve, 5));
  return ahead;
}

function listingOf(ahead: WalkAhead, parts: string[]): Listing | undefined {
  return ahead.listing(parts);
}

describe("WalkAhead", () => {
  test("lists each folder in walk order with the names and stats ChildStat gives on this thread", async () => {
    const here = ChildStat.open();
    if (!here) return; // no FFI here: the walk lists on the main thread
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "frost-walk-ahead-"));
    try {
      for (const d of ["b", "a", "a/z", "a/y", "a/y/x", "é", "big", "big/in", "c"]) {
        fs.mkdirSync(path.join(root, d));
      }
      fs.writeFileSync(path.join(root, "f"), "1");
      fs.writeFileSync(path.join(root, "a/y/x/deep"), "12345");
      fs.symlinkSync("f", path.join(root, "a/link"));
      fs.linkSync(path.join(root, "f"), path.join(root, "b/hard"));
      fs.writeFileSync(path.join(root, "é/ü"), "x".repeat(70_000));
      execFileSync("sh", ["-c", 'touch "$1/c/n$(printf "\\377")m"', "sh", root]); // not UTF-8
      for (let i = 0; i < 4100; i++) fs.writeFileSync(path.join(root, "big", `f${i}`), "");
      fs.writeFileSync(path.join(root, "big/in/g"), "g");

      const ahead = WalkAhead.start(root, String(fs.statSync(root).dev), false);
      assert.ok(ahead, "it starts on Linux");
      await walked(ahead);
      const at = ChildStat.forListings()!;
      try {
        // Walk order of the folders: a folder before its subtree, siblings by the bytes of their names.
        const order = ["", "a", "a/y", "a/y/x", "a/z", "b", "big", "big/in", "c", "é"];
        const skipped = new Set(["a/y"]); // an excluded folder: its listing, not its subtree's, is dropped
        const notAhead = new Set(["big"]);
        // A name that is not UTF-8: the runtime's node:fs must take it back (Bun), else this thread lists.
        if (!BYTE_PATHS) notAhead.add("c");
        for (const rel of order) {
          if (skipped.has(rel)) continue;
          const parts = rel === "" ? [] : rel.split("/");
          const listing = listingOf(ahead, parts);
          if (notAhead.has(rel)) {
            assert.equal(listing, undefined, `${rel}: left to this thread`);
            continue;
          }
          assert.ok(listing, rel);
          const expected = looksHere(here, path.join(root, rel));
          assert.ok(at.useListing(listing));
          assert.deepEqual(at.names(), expected.names, rel);
          assert.deepEqual(looks(at, expected.names), expected.looks, rel);
          assert.equal(at.hasNoXattrs(), true, rel);
          assert.equal(at.stat("missing"), false, "a name not in the listing");
          at.closeDir();
        }
        assert.equal(listingOf(ahead, ["zz"]), undefined, "past the last folder");
      } finally {
        ahead.stop();
      }

      // Asked for at once, while the worker starts: the folders it has not reached are left to this thread
      // (it then looks only for their subfolders, to catch up); the listings it gives are right.
      const early = WalkAhead.start(root, String(fs.statSync(root).dev), false)!;
      try {
        for (const rel of ["", "a", "a/y", "a/y/x", "a/z", "b", "big", "big/in", "c", "é"]) {
          const listing = listingOf(early, rel === "" ? [] : rel.split("/"));
          if (listing === undefined) continue;
          const expected = looksHere(here, path.join(root, rel));
          assert.ok(at.useListing(listing));
          assert.deepEqual(looks(at, expected.names), expected.looks, rel);
          at.closeDir();
        }
        await walked(early);
        assert.equal(listingOf(early, ["zz"]), undefined, "past the last folder");
      } finally {
        early.stop();
      }

      // A folder the worker did not list (the main thread found one it did not): undefined, and the
      // listings that follow are still there.
      const again = await walked(WalkAhead.start(root, String(fs.statSync(root).dev), false)!);
      try {
        assert.ok(listingOf(again, ["a"]));
        assert.equal(listingOf(again, ["a", "0"]), undefined);
        assert.deepEqual((listingOf(again, ["a", "y"]))?.names, ["x"]);
      } finally {
        again.stop();
      }
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });

  test("is not wanted for a tree whose root folder has no subfolders (a one-file tree, one flat folder)", () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "frost-walk-ahead-"));
    try {
      fs.writeFileSync(path.join(root, "disk.img"), "1");
      const links = fs.lstatSync(root, { bigint: true }).nlink;
      // A file system that does not count subfolders in a folder's links (btrfs: always 1) cannot tell.
      assert.equal(WalkAhead.helps(links), links !== 2n);
      fs.mkdirSync(path.join(root, "sub"));
      assert.equal(WalkAhead.helps(fs.lstatSync(root, { bigint: true }).nlink), true);
      assert.equal(WalkAhead.helps(1n), true, "a link count of 1 says nothing (btrfs)");
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});
