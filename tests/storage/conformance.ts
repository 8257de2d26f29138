/**
 * The conformance suite every Storage passes (after restic's backend tests and rclone's fstest): call
 * `storageConformance()` from a storage's own test file with a way to open it.
 * @module
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { Buffer } from "node:buffer";
import { getBytes, NotFoundError, type Storage } from "../../storage/storage.ts";
import { concat, listKeys } from "../_streams.ts";

const MiB = 1 << 20;

/**
 * Registers the shared storage tests (node:test) under `describe(name)`. `open` is called once before the
 * tests; afterwards every key the suite wrote is deleted, the storage is closed (twice: close() must be
 * idempotent) and `cleanup` runs. Each test writes under its own prefix `conformance-<run>/<test>/`, so
 * runs against a shared remote store do not interfere.
 *
 * @example
 * ```ts ignore
 * import { MemoryStorage } from "../../storage/memory.ts";
 * import { storageConformance } from "./conformance.ts";
 * storageConformance("MemoryStorage", () => Promise.resolve(new MemoryStorage()));
 * ```
 */
/** Puts `count` folders of two objects each under "folders/" and checks that listFolders() yields each once. */
export async function assertFoldersListedAcrossPages(storage: Storage, count: number): Promise<void> {
  const names = Array.from({ length: count }, (_, i) => `f${String(i).padStart(3, "0")}`);
  const keys = names.flatMap((n) => [`folders/${n}/a`, `folders/${n}/b/c`]);
  await Promise.all(keys.map((key) => storage.put(key, new TextEncoder().encode(key))));
  assert.deepEqual((await collect(storage.listFolders("folders/"))).sort(), names);
}

export function storageConformance(
  name: string,
  open: () => Promise<Storage>,
  cleanup?: () => Promise<void>,
): void {
  describe(name, () => {
    const run = `conformance-${Date.now().toString(36)}-${crypto.randomBytes(4).toString("hex")}`;
    let opened: Storage | undefined;
    let counter = 0;
    /** The opened storage (fails clearly if `open` failed). */
    const s = (): Storage => {
      assert.ok(opened, "the storage was not opened");
      return opened;
    };
    /** A fresh key prefix for one test. */
    const fresh = (label: string): string => `${run}/${String(++counter).padStart(2, "0")}-${label}/`;

    before(async () => {
      opened = await open();
    });

    after(async () => {
      try {
        if (opened !== undefined) {
          const keys = (await collect(opened.list(`${run}/`))).map((info) => info.key);
          await inParallel(keys, 16, (key) => s().delete(key));
          await opened.close();
          await opened.close();
        }
      } finally {
        await cleanup?.();
      }
    });

    // --- missing keys ---

    it("get() rejects with NotFoundError for a missing key", async () => {
      await assert.rejects(s().get(`${fresh("missing")}nothing-here`), NotFoundError);
    });

    it("stat() rejects with NotFoundError for a missing key", async () => {
      await assert.rejects(s().stat(`${fresh("missing")}nothing-here`), NotFoundError);
    });

    it("get() and stat() reject with NotFoundError for a key that is only the folder of other keys", async () => {
      const p = fresh("folder");
      await s().put(`${p}dir/file`, bytes("x"));
      await assert.rejects(s().get(`${p}dir`), NotFoundError);
      await assert.rejects(s().stat(`${p}dir`), NotFoundError);
      await assert.rejects(s().get(`${p}dir/other`), NotFoundError);
      await assert.rejects(s().get(`${p}dir/file/below`), NotFoundError);
    });

    // --- round trips ---

    for (
      const [label, size] of [["an empty", 0], ["a 1-byte", 1], ["a 5 MiB random", 5 * MiB + 3]] as const
    ) {
      it(`put() then get() returns ${label} object byte-exact, and stat() its size`, async () => {
        const key = `${fresh("roundtrip")}object`;
        const data = random(size);
        await s().put(key, data);
        assertSameBytes(await getBytes(s(), key), data);
        const info = await s().stat(key);
        assert.equal(info.key, key);
        assert.equal(info.size, size);
        if (info.modified !== undefined) {
          assert.ok(
            info.modified instanceof Date && !Number.isNaN(info.modified.getTime()),
            "modified is a Date",
          );
        }
      });
    }

    it("get() streams Uint8Array chunks", async () => {
      const key = `${fresh("chunks")}object`;
      await s().put(key, random(2 * MiB + 1));
      let total = 0;
      for await (const chunk of await s().get(key)) {
        assert.ok(chunk instanceof Uint8Array, "each chunk is a Uint8Array");
        total += chunk.byteLength;
      }
      assert.equal(total, 2 * MiB + 1);
    });

    it("put() overwrites an existing object, with a longer and then a shorter one", async () => {
      const key = `${fresh("overwrite")}object`;
      await s().put(key, bytes("first"));
      const longer = random(100_000);
      await s().put(key, longer);
      assertSameBytes(await getBytes(s(), key), longer);
      await s().put(key, bytes("short"));
      assertSameBytes(await getBytes(s(), key), bytes("short"));
      assert.equal((await s().stat(key)).size, 5);
      assert.deepEqual(await listKeys(s(), key.slice(0, key.lastIndexOf("/") + 1)), [key]);
    });

    it("put() keeps the bytes it was given, whatever the caller does with its buffer afterwards", async () => {
      const key = `${fresh("copy-in")}object`;
      const data = bytes("original");
      await s().put(key, data);
      data.fill(0);
      assertSameBytes(await getBytes(s(), key), bytes("original"));
      // A Node Buffer too, whose slice() is a view and not a copy.
      const buffer = Buffer.from("buffer");
      await s().put(key, buffer);
      buffer.fill(0);
      assertSameBytes(await getBytes(s(), key), bytes("buffer"));
    });

    it("get() returns bytes the caller may change without changing the object", async () => {
      const key = `${fresh("copy-out")}object`;
      await s().put(key, bytes("original"));
      (await getBytes(s(), key)).fill(0);
      for await (const chunk of await s().get(key)) chunk.fill(0);
      assertSameBytes(await getBytes(s(), key), bytes("original"));
    });

    it("put() stores a view of a larger buffer as the view's bytes only", async () => {
      const key = `${fresh("view")}object`;
      const buffer = bytes("0123456789");
      await s().put(key, buffer.subarray(3, 7));
      assertSameBytes(await getBytes(s(), key), bytes("3456"));
    });

    // --- ranges ---

    describe("ranged reads", () => {
      const size = 3 * MiB + 17;
      const data = random(size);
      let key = "";
      const read = (offset: number, length?: number) =>
        readAll(s().get(key, { range: length === undefined ? { offset } : { offset, length } }));

      before(async () => {
        key = `${fresh("range")}object`;
        await s().put(key, data);
      });

      it("get() with a range reads the first bytes", async () => {
        assertSameBytes(await read(0, 10), data.subarray(0, 10));
      });

      it("get() with a range reads from the middle across chunk boundaries", async () => {
        assertSameBytes(await read(MiB - 5, 2 * MiB + 3), data.subarray(MiB - 5, 3 * MiB - 2));
      });

      it("get() with an offset and no length reads to the end", async () => {
        assertSameBytes(await read(size - 100), data.subarray(size - 100));
        assertSameBytes(await read(0), data);
      });

      it("get() with a range that ends exactly at the end reads the last bytes", async () => {
        assertSameBytes(await read(size - 1, 1), data.subarray(size - 1));
        assertSameBytes(await read(0, size), data);
      });

      it("get() with a zero length reads nothing", async () => {
        assert.equal((await read(0, 0)).byteLength, 0);
        assert.equal((await read(12345, 0)).byteLength, 0);
      });

      it("get() with an offset at the end reads nothing", async () => {
        assert.equal((await read(size)).byteLength, 0);
      });

      it("get() rejects with RangeError for a negative or fractional range", async () => {
        await assert.rejects(s().get(key, { range: { offset: -1 } }), RangeError);
        await assert.rejects(s().get(key, { range: { offset: 0, length: -1 } }), RangeError);
        await assert.rejects(s().get(key, { range: { offset: 0.5 } }), RangeError);
      });

      it("get() with a range still rejects with NotFoundError for a missing key", async () => {
        await assert.rejects(s().get(`${key}-missing`, { range: { offset: 0, length: 1 } }), NotFoundError);
      });
    });

    // --- list ---

    it("list() yields nothing for a prefix without objects", async () => {
      assert.deepEqual(await listKeys(s(), fresh("empty")), []);
    });

    it("list() of host_web/ never yields keys of host_web2/ or host_webx", async () => {
      const p = fresh("boundary");
      const inside = [`${p}host_web/a`, `${p}host_web/sub/b`];
      for (const key of [...inside, `${p}host_web2/c`, `${p}host_web2/host_web/d`, `${p}host_webx`]) {
        await s().put(key, bytes(key));
      }
      assert.deepEqual(await listKeys(s(), `${p}host_web/`), inside);
      assert.deepEqual(await listKeys(s(), `${p}host_web2/`), [
        `${p}host_web2/c`,
        `${p}host_web2/host_web/d`,
      ]);
    });

    it("list() yields nested keys with / separators, each with its size", async () => {
      const p = fresh("nested");
      const expected = new Map<string, number>([
        [`${p}top`, 3],
        [`${p}a/one`, 0],
        [`${p}a/b/two`, 10],
        [`${p}a/b/c/d/e/three`, 1000],
        [`${p}z/four`, 7],
      ]);
      for (const [key, size] of expected) await s().put(key, random(size));
      const infos = await collect(s().list(p));
      assert.deepEqual(new Map(infos.map((info) => [info.key, info.size])), expected);
      assert.equal(infos.length, expected.size);
      assert.deepEqual(await listKeys(s(), `${p}a/b/`), [`${p}a/b/c/d/e/three`, `${p}a/b/two`]);
    });

    it("list() yields each of 1100 keys exactly once", async () => {
      const p = fresh("many");
      const expected = Array.from({ length: 1100 }, (_, i) => `${p}${i % 2 ? "odd" : "even"}/${i}`);
      await inParallel(expected, 16, (key) => s().put(key, bytes(key)));
      const listed = await listKeys(s(), p);
      assert.equal(listed.length, expected.length);
      assert.deepEqual(listed, [...expected].sort());
    });

    it('list("") yields every object, each once', async () => {
      const p = fresh("all");
      const mine = [`${p}x`, `${p}y/z`];
      for (const key of mine) await s().put(key, bytes(key));
      const all = (await collect(s().list(""))).map((info) => info.key);
      assert.equal(new Set(all).size, all.length, "no key is listed twice");
      for (const key of mine) assert.ok(all.includes(key), `list("") yields ${key}`);
    });

    it("listFolders() yields each folder right below a prefix once, and nothing for a missing one", async () => {
      const p = fresh("folders");
      for (const key of [`${p}a/b/c`, `${p}a/d`, `${p}a/e`, `${p}f/g`, `${p}top`, `${p}host_web2/x`]) {
        await s().put(key, bytes(key));
      }
      const folders = async (prefix: string) => (await collect(s().listFolders(prefix))).sort();
      assert.deepEqual(await folders(p), ["a", "f", "host_web2"]);
      assert.deepEqual(await folders(`${p}a/`), ["b"]);
      assert.deepEqual(await folders(`${p}f/`), []);
      assert.deepEqual(await folders(`${p}missing/`), []);
      assert.ok((await folders("")).includes(run), 'listFolders("") yields the folder of this run');
      await assert.rejects(collect(s().listFolders("no-slash")), TypeError);
    });

    it("list() reports the same sizes as stat()", async () => {
      const p = fresh("sizes");
      for (const size of [0, 1, 4096, 70_000]) await s().put(`${p}${size}`, random(size));
      for (const info of await collect(s().list(p))) assert.equal(info.size, (await s().stat(info.key)).size);
    });

    it('list() rejects with TypeError for a prefix that is not "" and does not end with /', async () => {
      for (const prefix of ["host_web", "/abs/", "a//", "a/../"]) {
        await assert.rejects(collect(s().list(prefix)), TypeError, `prefix ${JSON.stringify(prefix)}`);
      }
    });

    // --- key names ---

    it("put(), get(), stat(), list() and delete() handle hostile key names", async () => {
      const p = fresh("hostile");
      const names = [
        "with space",
        " leading and trailing space ",
        "question?mark",
        "hash#tag",
        "percent%20encoded",
        "100%",
        "single'quote",
        'double"quote',
        "back`tick",
        "plus+sign",
        "amp&ersand=eq;semi",
        "brackets[1](2){3}<4>",
        "star*pipe|dollar$at@bang!",
        "tilde~comma,colon:",
        "-leading-dash",
        ".hidden",
        "..dots-prefix",
        "a..b",
        "caf\u00e9", // NFC
        "cafe\u0301", // NFD: a different key, never normalized
        "日本語のファイル",
        "emoji 😀🎉",
        "x".repeat(200),
        "é".repeat(100), // 200 bytes of UTF-8
      ];
      const expected: string[] = [];
      for (const name of names) {
        for (const key of [`${p}${name}`, `${p}dir ${name.slice(0, 50)}/${name}`]) {
          await s().put(key, bytes(key));
          expected.push(key);
        }
      }
      for (const key of expected) {
        assertSameBytes(await getBytes(s(), key), bytes(key), key);
        assert.equal((await s().stat(key)).size, bytes(key).byteLength, key);
      }
      assert.deepEqual(await listKeys(s(), p), [...expected].sort());
      for (const key of expected) await s().delete(key);
      assert.deepEqual(await listKeys(s(), p), []);
    });

    it("put(), get(), stat() and delete() reject invalid keys with TypeError", async () => {
      const p = fresh("invalid");
      for (
        const key of ["", "/abs", `${p}a//b`, `${p}a/./b`, `${p}a/../b`, `${p}dir/`, "..", ".", `${p}nul\0x`]
      ) {
        const shown = JSON.stringify(key);
        await assert.rejects(s().put(key, bytes("x")), TypeError, `put(${shown})`);
        await assert.rejects(s().get(key), TypeError, `get(${shown})`);
        await assert.rejects(s().stat(key), TypeError, `stat(${shown})`);
        await assert.rejects(s().delete(key), TypeError, `delete(${shown})`);
      }
      assert.deepEqual(await listKeys(s(), p), []);
    });

    // --- delete ---

    it("delete() removes the object from get(), stat() and list()", async () => {
      const p = fresh("delete");
      await s().put(`${p}gone`, bytes("x"));
      await s().delete(`${p}gone`);
      await assert.rejects(s().get(`${p}gone`), NotFoundError);
      await assert.rejects(s().stat(`${p}gone`), NotFoundError);
      assert.deepEqual(await listKeys(s(), p), []);
    });

    it("delete() of a missing key succeeds, also twice and inside a missing folder", async () => {
      const p = fresh("delete-missing");
      await s().delete(`${p}never`);
      await s().delete(`${p}never`);
      await s().delete(`${p}no/such/folder/key`);
      await s().put(`${p}file`, bytes("x"));
      await s().delete(`${p}file/below`);
      assert.deepEqual(await listKeys(s(), p), [`${p}file`]);
    });

    it("delete() leaves other keys alone, those sharing a prefix included", async () => {
      const p = fresh("delete-siblings");
      for (const key of [`${p}d/x`, `${p}d/y`, `${p}dx`, `${p}d2/x`]) await s().put(key, bytes(key));
      await s().delete(`${p}d/x`);
      assert.deepEqual(await listKeys(s(), p), [`${p}d/y`, `${p}d2/x`, `${p}dx`]);
    });

    it("put() works again in a folder that delete() emptied", async () => {
      const p = fresh("delete-reuse");
      await s().put(`${p}a/b/c`, bytes("1"));
      await s().delete(`${p}a/b/c`);
      assert.deepEqual(await listKeys(s(), p), []);
      await s().put(`${p}a/b/c`, bytes("2"));
      assertSameBytes(await getBytes(s(), `${p}a/b/c`), bytes("2"));
    });

    // --- aborts, failures, concurrency ---

    it("put() with an already aborted signal rejects and stores nothing", async () => {
      const p = fresh("abort-before");
      await assert.rejects(s().put(`${p}object`, random(1000), { signal: AbortSignal.abort() }));
      await assert.rejects(s().get(`${p}object`), NotFoundError);
      assert.deepEqual(await listKeys(s(), p), []);
    });

    it("get(), stat(), list() and delete() with an already aborted signal reject", async () => {
      const p = fresh("abort-others");
      await s().put(`${p}object`, bytes("x"));
      const signal = AbortSignal.abort();
      await assert.rejects(s().get(`${p}object`, { signal }));
      await assert.rejects(s().stat(`${p}object`, { signal }));
      await assert.rejects(collect(s().list(p, { signal })));
      await assert.rejects(s().delete(`${p}object`, { signal }));
      assertSameBytes(await getBytes(s(), `${p}object`), bytes("x"));
    });

    it("a put() aborted while it runs stores either the whole object or nothing", async () => {
      const p = fresh("abort-during");
      const data = random(4 * MiB);
      for (const delay of [0, 1, 5]) {
        const key = `${p}object-${delay}`;
        const controller = new AbortController();
        const putting = s().put(key, data, { signal: controller.signal });
        setTimeout(() => controller.abort(), delay);
        const stored = await putting.then(() => true, () => false);
        // A remote server may commit the upload before (or just after) the abort reaches it, so a rejected
        // put can still leave the object, or leave it a moment later (Swift's listing also lags behind its
        // objects): what must never exist is a partial one — checked here and for every key listed below.
        let present: Uint8Array | null = null;
        try {
          present = await getBytes(s(), key);
        } catch (err) {
          if (!(err instanceof NotFoundError)) throw err;
        }
        if (stored) assert.ok(present, `${key} was stored`);
        if (present) assertSameBytes(present, data, key);
      }
      for (const info of await collect(s().list(p))) {
        assert.equal(info.size, data.byteLength);
        // An upload the server finished after the abort may be listed a moment before it can be read.
        const read = () => getBytes(s(), info.key);
        const bytes = await read().catch((err) =>
          err instanceof NotFoundError
            ? new Promise((r) => setTimeout(r, 1000)).then(read)
            : Promise.reject(err)
        );
        assertSameBytes(bytes, data, info.key);
      }
    });

    it("an aborted put() over an existing object leaves the previous object", async () => {
      const key = `${fresh("abort-overwrite")}object`;
      await s().put(key, bytes("previous"));
      await assert.rejects(s().put(key, random(1000), { signal: AbortSignal.abort() }));
      assertSameBytes(await getBytes(s(), key), bytes("previous"));
    });

    it("concurrent put() calls to different keys all store their bytes", async () => {
      const p = fresh("concurrent");
      const objects = Array.from(
        { length: 24 },
        (_, i) => ({ key: `${p}${i % 3}/object-${i}`, data: random(256 * 1024) }),
      );
      await Promise.all(objects.map(({ key, data }) => s().put(key, data)));
      for (const { key, data } of objects) assertSameBytes(await getBytes(s(), key), data, key);
      assert.equal((await listKeys(s(), p)).length, objects.length);
    });

    it("concurrent put() calls to one key leave one of the versions whole", async () => {
      const key = `${fresh("concurrent-same")}object`;
      const versions = Array.from({ length: 8 }, () => random(512 * 1024));
      await Promise.all(versions.map((data) => s().put(key, data)));
      const stored = await getBytes(s(), key);
      assert.ok(versions.some((data) => equalBytes(stored, data)), "the object is one of the versions");
      assert.deepEqual(await listKeys(s(), key.slice(0, key.lastIndexOf("/") + 1)), [key]);
    });
  });
}

/** Reads all of the stream a `get()` promise gives. */
async function readAll(stream: Promise<ReadableStream<Uint8Array>>): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of await stream) chunks.push(chunk);
  return concat(chunks);
}

/** Collects an async iterable (the errors it throws reject the promise). */
async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

/** Runs `task` over `items`, at most `limit` at a time. */
async function inParallel<T>(items: T[], limit: number, task: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++] as T;
      await task(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

function bytes(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

function random(size: number): Uint8Array {
  return new Uint8Array(crypto.randomBytes(size));
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(
    Buffer.from(b.buffer, b.byteOffset, b.byteLength),
  );
}

/** Compares bytes without printing megabytes on failure. */
function assertSameBytes(actual: Uint8Array, expected: Uint8Array, what = "object"): void {
  if (equalBytes(actual, expected)) return;
  const hash = (b: Uint8Array) => crypto.createHash("sha256").update(b).digest("hex").slice(0, 16);
  assert.fail(
    `${what}: got ${actual.byteLength} bytes (sha256 ${hash(actual)}), ` +
      `expected ${expected.byteLength} bytes (sha256 ${hash(expected)})`,
  );
}
