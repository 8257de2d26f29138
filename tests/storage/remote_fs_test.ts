/**
 * The helpers the remote file-system storages (SFTP, FTP) share, on their own: the removal of the temp files
 * of cut puts (the storages' own tests run it on real servers).
 * @module
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { deleteTempFiles } from "../../storage/_remote_fs.ts";
import type { ObjectInfo } from "../../storage/storage.ts";

describe("deleteTempFiles()", () => {
  it("removes every temp file of the tree, counts the bytes of those it removed, then empties folders deepest first", async () => {
    // A tree of folders, each with its temp files: "a" holds "a/b", which holds "a/b/c".
    const tree: Record<string, { temps: ObjectInfo[]; folders: string[] }> = {
      "a": { temps: [{ key: "a/.frost-tmp-1", size: 10 }], folders: ["a/b", "a/d"] },
      "a/b": { temps: [{ key: "a/b/.frost-tmp-2", size: 200 }], folders: ["a/b/c"] },
      "a/b/c": {
        temps: [{ key: "a/b/c/.frost-tmp-3", size: 3000 }, { key: "a/b/c/.frost-tmp-4", size: 5 }],
        folders: [],
      },
      "a/d": { temps: [], folders: [] },
    };
    const unlinked: string[] = [];
    const emptied: string[] = [];
    const freed = await deleteTempFiles({ dir: "a" }, {
      read: (folder) =>
        Promise.resolve({
          objects: tree[folder.dir]!.temps,
          folders: tree[folder.dir]!.folders.map((dir) => ({ dir })),
        }),
      // One was removed by someone else meanwhile: not counted.
      unlink: (temp) => {
        unlinked.push(temp.key);
        return Promise.resolve(temp.key !== "a/b/c/.frost-tmp-4");
      },
      removeEmpty: (dir) => {
        assert.equal(unlinked.length, 4, "folders go after every temp file");
        emptied.push(dir);
        return Promise.resolve();
      },
      concurrency: 2,
    });
    assert.equal(freed, 3210);
    assert.deepEqual(unlinked.sort(), [
      "a/.frost-tmp-1",
      "a/b/.frost-tmp-2",
      "a/b/c/.frost-tmp-3",
      "a/b/c/.frost-tmp-4",
    ]);
    assert.equal(emptied[0], "a/b/c");
    assert.equal(emptied.at(-1), "a");
    assert.deepEqual([...emptied].sort(), ["a", "a/b", "a/b/c", "a/d"]);
  });

  it("stops at an aborted signal and passes an unlink failure on", async () => {
    const read = () => Promise.resolve({ objects: [{ key: "x/.frost-tmp-1", size: 1 }], folders: [] });
    const controller = new AbortController();
    controller.abort(new Error("stop"));
    await assert.rejects(
      deleteTempFiles({ dir: "x" }, {
        read,
        unlink: () => Promise.resolve(true),
        removeEmpty: () => Promise.resolve(),
        concurrency: 1,
        signal: controller.signal,
      }),
      /stop/,
    );
    await assert.rejects(
      deleteTempFiles({ dir: "x" }, {
        read,
        unlink: () => Promise.reject(new Error("permission denied")),
        removeEmpty: () => assert.fail("no folder is removed after a failure"),
        concurrency: 1,
      }),
      /permission denied/,
    );
  });
});
