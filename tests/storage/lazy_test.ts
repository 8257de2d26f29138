/**
 * LazyStorage (a storage down at start, opened by its first call): its optional clean-up reaches the storage
 * it opens, through the decorators composed over it.
 * @module
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { LazyStorage } from "../../storage/lazy.ts";
import { LocalStorage, TEMP_PREFIX } from "../../storage/local.ts";
import { MemoryStorage } from "../../storage/memory.ts";
import { RetryStorage } from "../../storage/retry.ts";
import { LimitStorage } from "../../storage/limit.ts";
import { canDeleteLeftovers, StorageError } from "../../storage/storage.ts";

describe("LazyStorage", () => {
  it("LazyStorage.deleteLeftovers() opens the storage and frees its temp files, through retry and limit", async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "frost-lazy-"));
    try {
      const root = path.join(tmp, "store");
      await (await LocalStorage.open(root, { create: true })).put(
        "s/backups/1/data/00000000",
        new Uint8Array(3),
      );
      const temp = path.join(root, "s/backups/2/data", TEMP_PREFIX + "cut");
      fs.mkdirSync(path.dirname(temp), { recursive: true });
      fs.writeFileSync(temp, new Uint8Array(1234));
      let opens = 0;
      let down = true;
      const lazy = new LazyStorage(root, () => {
        opens++;
        if (down) return Promise.reject(new StorageError("down", { retriable: true }));
        return LocalStorage.open(root, { create: false });
      });
      const composed = new LimitStorage(new RetryStorage(lazy, { retryForMs: 0 }), { upload: 1 << 20 });
      assert.ok(canDeleteLeftovers(lazy));
      assert.ok(canDeleteLeftovers(composed), "the decorators see it and forward it");
      await assert.rejects(lazy.deleteLeftovers("s/backups/2/"), /down/);
      down = false;
      assert.equal(await composed.deleteLeftovers!("s/backups/2/"), 1234);
      assert.equal(fs.existsSync(temp), false);
      assert.equal(await lazy.deleteLeftovers("s/backups/2/"), 0, "idempotent");
      assert.equal(opens, 2, "opened once it answered, then kept");
      assert.equal((await lazy.stat("s/backups/1/data/00000000")).size, 3);
      await composed.close();
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  it("LazyStorage.deleteLeftovers() frees nothing on a storage that leaves none", async () => {
    const memory = new MemoryStorage();
    assert.equal(canDeleteLeftovers(memory), false);
    const lazy = new LazyStorage("memory:", () => Promise.resolve(memory));
    assert.equal(await lazy.deleteLeftovers("s/backups/1/"), 0);
  });
});
