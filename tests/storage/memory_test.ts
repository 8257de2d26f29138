import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { UsageError } from "../../base/errors.ts";
import { MemoryStorage } from "../../storage/memory.ts";
import { openStorage } from "../../storage/registry.ts";
import { getBytes, StorageError } from "../../storage/storage.ts";
import { FaultyStorage } from "./faulty_storage.ts";
import { storageConformance } from "./conformance.ts";

storageConformance("MemoryStorage conformance", () => Promise.resolve(new MemoryStorage("conformance")));

// The decorator must itself keep the contract when it injects nothing.
storageConformance(
  "FaultyStorage without faults conformance",
  () => Promise.resolve(new FaultyStorage(new MemoryStorage("faulty-conformance"))),
);

const bytes = (text: string) => new TextEncoder().encode(text);

/** Awaits `promise` and returns what it rejected with (fails if it resolved). */
async function rejection(promise: Promise<unknown>): Promise<StorageError> {
  const err = await promise.then(() => undefined, (e: unknown) => e);
  assert.ok(err instanceof StorageError, `expected a StorageError, got ${String(err)}`);
  return err;
}

describe("FaultyStorage", () => {
  it("FaultyStorage fails put() after failPutAfter calls and stores nothing", async () => {
    const inner = new MemoryStorage();
    const storage = new FaultyStorage(inner, { failPutAfter: 2 });
    await storage.put("a", bytes("1"));
    await storage.put("b", bytes("2"));
    const err = await rejection(storage.put("c", bytes("3")));
    assert.equal(err.retriable, false);
    assert.match(err.message, /^Cannot write "c" to memory:\/\/default: injected/);
    await assert.rejects(inner.stat("c"), { name: "NotFoundError" });
    assert.equal(storage.failures, 1);
    assert.equal(storage.calls.put, 3);
  });

  it("FaultyStorage fails put() of matching keys, retriably, a limited number of times", async () => {
    const inner = new MemoryStorage();
    const storage = new FaultyStorage(inner, { failPutMatching: /segments/g, retriable: true, times: 2 });
    await storage.put("web/manifest", bytes("m"));
    assert.equal((await rejection(storage.put("web/segments/0", bytes("s")))).retriable, true);
    await rejection(storage.put("web/segments/0", bytes("s")));
    await storage.put("web/segments/0", bytes("s"));
    assert.deepEqual(await getBytes(inner, "web/segments/0"), bytes("s"));
    assert.equal(storage.failures, 2);
  });

  it("FaultyStorage with failAfterWriting stores the object and still fails the put()", async () => {
    const inner = new MemoryStorage();
    const storage = new FaultyStorage(inner, { failPutMatching: /x/, failAfterWriting: true });
    await rejection(storage.put("x", bytes("data")));
    assert.deepEqual(await getBytes(inner, "x"), bytes("data"));
  });

  it("FaultyStorage fails get() of matching keys only", async () => {
    const inner = new MemoryStorage();
    await inner.put("good", bytes("g"));
    await inner.put("bad", bytes("b"));
    const storage = new FaultyStorage(inner, { failGetMatching: /^bad$/ });
    assert.deepEqual(await getBytes(storage, "good"), bytes("g"));
    assert.match(
      (await rejection(storage.get("bad"))).message,
      /^Cannot read "bad" from memory:\/\/default: /,
    );
  });

  it("FaultyStorage flips one byte of matching objects without changing the stored bytes", async () => {
    const inner = new MemoryStorage();
    const data = bytes("hello world");
    await inner.put("obj", data);
    const storage = new FaultyStorage(inner, { corruptGetMatching: /obj/ });
    const read = await getBytes(storage, "obj");
    assert.equal(read.byteLength, data.byteLength);
    assert.equal(read.filter((byte, i) => byte !== data[i]).length, 1);
    assert.deepEqual(await getBytes(inner, "obj"), data);
    assert.equal(storage.corruptions, 1);
  });

  it("FaultyStorage fails list() of matching prefixes halfway", async () => {
    const inner = new MemoryStorage();
    for (const key of ["p/1", "p/2", "p/3", "p/4"]) await inner.put(key, bytes(key));
    const storage = new FaultyStorage(inner, { failListMatching: /^p\/$/ });
    const seen: string[] = [];
    await rejection((async () => {
      for await (const info of storage.list("p/")) seen.push(info.key);
    })());
    assert.deepEqual(seen, ["p/1", "p/2"]);
  });
});

describe("openStorage() for unknown schemes", () => {
  it("openStorage() rejects an unknown scheme with UsageError naming the supported ones", async () => {
    await assert.rejects(openStorage("gopher://x", { create: true }), (err: unknown) => {
      assert.ok(err instanceof UsageError);
      assert.match(
        err.message,
        /^Unknown storage "gopher:\/\/x": frost supports file:\/\/ paths, s3:\/\//,
      );
      assert.ok(!err.message.includes("memory"), err.message);
      for (const scheme of ["s3://", "swift://"]) assert.ok(err.message.includes(scheme), err.message);
      return true;
    });
    await assert.rejects(openStorage("gopher://host/x", { create: false }), UsageError);
  });

  it("openStorage() rejects an empty spec with UsageError", async () => {
    await assert.rejects(openStorage("", { create: true }), UsageError);
  });
});
