/**
 * Seeing through the storage decorators (storage/unwrap.ts, after restic's AsBackend): the storages behind
 * retry and limit decorators are found whatever the order of wrapping.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { MemoryStorage } from "../../storage/memory.ts";
import { RetryStorage } from "../../storage/retry.ts";
import { LimitStorage } from "../../storage/limit.ts";
import { MultiStorage, storagesOf } from "../../storage/multi.ts";
import { asStorage } from "../../storage/unwrap.ts";

test("asStorage() and storagesOf()", async (t) => {
  const a = new MemoryStorage("a");
  const b = new MemoryStorage("b");

  await t.test("asStorage() finds the storage of a type behind retry and limit decorators", () => {
    const wrapped = new LimitStorage(new RetryStorage(a), { upload: 1e9 });
    assert.equal(asStorage(wrapped, MemoryStorage), a);
    assert.ok(asStorage(wrapped, RetryStorage) instanceof RetryStorage);
    assert.equal(asStorage(wrapped, MultiStorage), undefined);
  });

  await t.test("storagesOf() gives a MultiStorage's members, also when it is wrapped", () => {
    const multi = new MultiStorage([a, b]);
    assert.deepEqual(storagesOf(multi), [a, b]);
    assert.deepEqual(storagesOf(new RetryStorage(multi)), [a, b]);
  });

  await t.test("storagesOf() gives a single storage itself, decorators kept", () => {
    const retrying = new RetryStorage(a);
    assert.deepEqual(storagesOf(retrying), [retrying]);
    assert.deepEqual(storagesOf(b), [b]);
  });
});
