/**
 * Several storages and level chains: a storage added later must never receive a level whose parent it
 * lacks, so that each storage alone restores every backup it lists.
 */
import { it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { cleanup, frost, tempDir } from "../_cli.ts";
import { assertSameTree } from "../_tree.ts";

it("a storage added to a series gets a new chain, and restores alone", async () => {
  const dir = tempDir("multi-chain");
  try {
    const src = path.join(dir, "src");
    const a = path.join(dir, "a");
    const b = path.join(dir, "b");
    fs.mkdirSync(src);
    fs.writeFileSync(path.join(src, "f"), "one");
    const backup = async (...storages: string[]) => {
      await new Promise((r) => setTimeout(r, 1100));
      const r = await frost([
        "backup",
        src,
        "--name",
        "m",
        "--max-level",
        "3",
        "--json",
        ...storages.flatMap((s) => ["--storage", s]),
      ]);
      assert.equal(r.code, 0, r.stderr);
      return {
        ...JSON.parse(r.stdout) as { id: string; level: number; parent: string | null },
        stderr: r.stderr,
      };
    };
    const first = await backup(a);
    assert.equal(first.level, 0);
    fs.writeFileSync(path.join(src, "g"), "two");
    // B has nothing yet: building on A's level 0 would leave B a level 1 without its base.
    const second = await backup(a, b);
    assert.equal(second.level, 0);
    assert.match(second.stderr, /1 backup is not on every storage/);
    fs.writeFileSync(path.join(src, "h"), "three");
    const third = await backup(a, b);
    assert.equal(third.level, 1);
    assert.equal(third.parent, second.id);

    for (const storage of [a, b]) {
      const target = path.join(dir, `restore-${path.basename(storage)}`);
      const r = await frost(["restore", "--name", "m", "--storage", storage, "--to", target]);
      assert.equal(r.code, 0, r.stderr);
      assertSameTree(src, target);
    }
  } finally {
    cleanup(dir);
  }
});
