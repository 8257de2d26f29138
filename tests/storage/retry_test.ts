/**
 * The retry policy (`storage/retry.ts`): a time budget per operation, one warning per outage, permanent
 * failures at once, reads that go elsewhere while another storage is up.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { MemoryStorage } from "../../storage/memory.ts";
import { Retrier, RetryStorage, shortReason } from "../../storage/retry.ts";
import { getBytes, NotFoundError, type Storage, StorageError } from "../../storage/storage.ts";
import { S3Storage } from "../../storage/s3.ts";
import { MultiStorage, storagesOf } from "../../storage/multi.ts";
import { FaultyStorage } from "./faulty_storage.ts";

const bytes = new TextEncoder().encode("hello");

describe("RetryStorage", () => {
  it("with --retry-for 0 tries once", async () => {
    const faulty = new FaultyStorage(new MemoryStorage(), { failPutMatching: /./, retriable: true });
    const storage = new RetryStorage(faulty, { retryForMs: 0 });
    await assert.rejects(storage.put("a", bytes), /injected/);
    assert.equal(faulty.failures, 1);
  });

  it("fails a permanent error at once, with its own message and no outage warning", async () => {
    const faulty = new FaultyStorage(new MemoryStorage(), { failPutMatching: /./ });
    const outages: string[] = [];
    const storage = new RetryStorage(faulty, { baseDelayMs: 1, onOutage: (what) => outages.push(what) });
    await assert.rejects(storage.put("a", bytes), (err: Error) => !/gave up/.test(err.message));
    assert.equal(faulty.failures, 1);
    assert.deepEqual(outages, []);
  });

  it("retries until the budget is spent, then later calls of the same outage get one try each", async () => {
    const faulty = new FaultyStorage(new MemoryStorage(), { failPutMatching: /./, retriable: true });
    const outages: string[] = [];
    const storage = new RetryStorage(faulty, {
      baseDelayMs: 1,
      maxDelayMs: 10,
      retryForMs: 100,
      onOutage: (what) => outages.push(what),
    });
    await assert.rejects(
      storage.put("a", bytes),
      /gave up after retrying writing "a" for .*--retry-for 100ms/,
    );
    const tries = faulty.failures;
    assert.ok(tries > 2, `${tries} tries`);
    await assert.rejects(
      storage.put("b", bytes),
      /injected transient failure; gave up: no answer for .* \(--retry-for 100ms\)/,
    );
    assert.equal(faulty.failures, tries + 1, "one try once the run is failing");
    assert.deepEqual(outages, ['writing "a"'], "one warning for the whole outage");
  });

  it("says once when the storage answers again", async () => {
    const memory = new MemoryStorage();
    const faulty = new FaultyStorage(memory, { failPutMatching: /./, retriable: true, times: 3 });
    const lines: string[] = [];
    const storage = new RetryStorage(faulty, {
      baseDelayMs: 1,
      onOutage: (what) => lines.push(`down ${what}`),
      onRecovered: () => lines.push("up"),
    });
    await storage.put("a", bytes);
    await storage.put("b", bytes);
    assert.deepEqual(lines, ['down writing "a"', "up"]);
  });

  it("a read of a storage that is down fails at once while another storage is up", async () => {
    const memory = new MemoryStorage();
    await memory.put("k", bytes);
    const faulty = new FaultyStorage(memory, { failGetMatching: /./, retriable: true });
    let othersUp = true;
    const storage = new RetryStorage(faulty, { baseDelayMs: 1, retryForMs: 200, othersUp: () => othersUp });
    await assert.rejects(
      storage.get("k"),
      (err: StorageError) => err.retriable && /injected/.test(err.message),
    );
    assert.equal(faulty.failures, 1);
    othersUp = false;
    await assert.rejects(storage.get("k"), /gave up/);
    assert.ok(faulty.failures > 2);
  });

  it("a last-resort read of a storage that is down is retried although another storage is up", async () => {
    const memory = new MemoryStorage();
    await memory.put("k", bytes);
    const faulty = new FaultyStorage(memory, { failGetMatching: /./, retriable: true, times: 3 });
    const retrier = new Retrier({ baseDelayMs: 1, othersUp: () => true });
    retrier.markDown(new StorageError("down at start", { retriable: true }));
    const storage = new RetryStorage(faulty, retrier);
    await assert.rejects(storage.get("k"), /down at start/);
    assert.equal(faulty.failures, 0, "skipped without a try");
    assert.deepEqual(await getBytes(storage, "k", { lastResort: true }), bytes);
    assert.equal(faulty.failures, 3);
    assert.equal(retrier.down, false);
  });
});

describe("RetryStorage and a host name that does not resolve (ENOTFOUND)", () => {
  /**
   * A memory storage whose next `outage` puts go to a real S3Storage on a host that never resolves
   * (`.invalid`), as when the resolver stops answering for the storage's name in the middle of a run.
   */
  function resolverOutage() {
    const memory = new MemoryStorage();
    const unresolved = new S3Storage("s3://bucket", {
      endpoint: "http://frost-test.invalid:18080",
      pathStyle: true,
      credentials: { accessKeyId: "a", secretAccessKey: "b" },
      env: {},
    });
    const state = { outage: 0 };
    const storage: Storage = {
      url: memory.url,
      put: (key, data, options) =>
        state.outage-- > 0 ? unresolved.put(key, data, options) : memory.put(key, data, options),
      get: (key, options) => memory.get(key, options),
      stat: (key, options) => memory.stat(key, options),
      list: (prefix, options) => memory.list(prefix, options),
      listFolders: (prefix, options) => memory.listFolders(prefix, options),
      delete: (key, options) => memory.delete(key, options),
      close: () => unresolved.close(),
    };
    return { storage, state };
  }

  it("fails at once, without an outage warning, before the storage ever answered", async () => {
    const { storage, state } = resolverOutage();
    const outages: string[] = [];
    const retrying = new RetryStorage(storage, { baseDelayMs: 1, onOutage: (what) => outages.push(what) });
    state.outage = 1;
    await assert.rejects(retrying.put("a", bytes), (err: Error) => {
      assert.match(err.message, /unknown host \(ENOTFOUND\)$/);
      return true;
    });
    assert.deepEqual(outages, []);
    await storage.close();
  });

  it("retries it within the budget, as an outage, once the storage has answered", async () => {
    const { storage, state } = resolverOutage();
    const outages: string[] = [];
    let recovered = 0;
    const retrying = new RetryStorage(storage, {
      baseDelayMs: 1,
      maxDelayMs: 5,
      onOutage: (what, err) => outages.push(`${what}: ${shortReason(err)}`),
      onRecovered: () => recovered++,
    });
    await retrying.put("a", bytes);
    state.outage = 2;
    await retrying.put("b", bytes);
    assert.deepEqual(await getBytes(retrying, "b"), bytes);
    assert.deepEqual(outages, ['writing "b": unknown host']);
    assert.equal(recovered, 1);
    // Past the budget it fails as any outage does.
    const short = new RetryStorage(storage, { baseDelayMs: 1, maxDelayMs: 5, retryForMs: 50 });
    await short.put("c", bytes);
    state.outage = Infinity;
    await assert.rejects(
      short.put("d", bytes),
      /unknown host \(ENOTFOUND\); gave up after retrying writing "d"/,
    );
    await storage.close();
  });
});

describe("MultiStorage", () => {
  it("reads from a standby storage only when no member has the object", async () => {
    const member = new MemoryStorage();
    const standby = new MemoryStorage();
    await member.put("a", bytes);
    await standby.put("b", new TextEncoder().encode("from standby"));
    const multi = new MultiStorage([member], { standby: [standby] });
    assert.deepEqual(await getBytes(multi, "a"), bytes);
    assert.equal(new TextDecoder().decode(await getBytes(multi, "b")), "from standby");
    await assert.rejects(getBytes(multi, "c"), NotFoundError);
    assert.deepEqual(storagesOf(multi), [member], "a standby storage is no member (not listed or verified)");
  });
});

describe("Retrier", () => {
  it("waits at most 60 s between tries and never past the budget", () => {
    const retrier = new Retrier({ retryForMs: 3_600_000 });
    const err = new StorageError("x", { retriable: true });
    const start = performance.now();
    for (let tries = 1; tries < 40; tries++) {
      const delay = retrier.failed("w", err, start, tries);
      assert.ok(delay > 0 && delay <= 60_000, `try ${tries}: ${delay}`);
    }
    const short = new Retrier({ retryForMs: 1000 });
    assert.ok(short.failed("w", err, performance.now() - 900, 20) <= 100);
  });

  it("shortReason keeps the cause of a storage message", () => {
    assert.equal(
      shortReason(new Error("Cannot open s3://b: cannot reach http://h: connection refused (ECONNREFUSED)")),
      "connection refused",
    );
  });
});
