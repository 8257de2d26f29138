import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { pathToFileURL } from "node:url";
import { LocalStorage, TEMP_PREFIX } from "../../storage/local.ts";
import { defaultStoragePath, openStorage } from "../../storage/registry.ts";
import { getBytes, NotFoundError, StorageError } from "../../storage/storage.ts";
import { storageConformance } from "./conformance.ts";

let conformanceRoot = "";
storageConformance(
  "LocalStorage conformance",
  async () => {
    conformanceRoot = fs.mkdtempSync(path.join(os.tmpdir(), "frost-local-conformance-"));
    return await LocalStorage.open(path.join(conformanceRoot, "store"), { create: true });
  },
  async () => {
    // The suite deleted every key it wrote: no temp file and no emptied folder may remain.
    const left = walk(path.join(conformanceRoot, "store"));
    await fs.promises.rm(conformanceRoot, { recursive: true, force: true });
    assert.deepEqual(left, [], "the storage folder is empty after the suite");
  },
);

const isRoot = process.getuid?.() === 0;

/** Every path under `dir`, relative, `/`-separated. */
function walk(dir: string): string[] {
  return (fs.readdirSync(dir, { recursive: true }) as string[]).map((p) => p.split(path.sep).join("/"))
    .sort();
}

describe("LocalStorage", () => {
  let tmp = "";
  let root = "";
  let storage: LocalStorage;

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "frost-local-"));
    root = path.join(tmp, "store");
    storage = await LocalStorage.open(root, { create: true });
  });

  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it("LocalStorage.put() leaves no temp file behind", async () => {
    await storage.put("temp/a", new Uint8Array(10));
    await storage.put("temp/a", new Uint8Array(20));
    await Promise.all([1, 2, 3].map((i) => storage.put(`temp/sub/${i}`, new Uint8Array(i))));
    assert.deepEqual(walk(path.join(root, "temp")), ["a", "sub", "sub/1", "sub/2", "sub/3"]);
  });

  it("LocalStorage.put() creates files with mode 0600 and folders with 0700", async () => {
    await storage.put("modes/dir/file", new Uint8Array(1));
    assert.equal(fs.statSync(path.join(root, "modes/dir/file")).mode & 0o777, 0o600);
    assert.equal(fs.statSync(path.join(root, "modes/dir")).mode & 0o777, 0o700);
    assert.equal(fs.statSync(root).mode & 0o777, 0o700);
  });

  it("LocalStorage.put() under a key that is a file rejects with a non-retriable StorageError and its cause", async () => {
    await storage.put("notdir/file", new Uint8Array(1));
    const err = await storage.put("notdir/file/below", new Uint8Array(1)).then(() => undefined, (e) => e);
    assert.ok(err instanceof StorageError && !(err instanceof NotFoundError), String(err));
    assert.equal(err.retriable, false);
    assert.match(
      err.message,
      /^Cannot write "notdir\/file\/below" to file:\/\/\/.+: a part of the path is not a folder$/,
    );
    assert.ok(err.cause instanceof Error && "code" in err.cause, "the cause is the filesystem error");
  });

  it("LocalStorage.put() that fails after writing its temp file removes it and keeps what was there", async () => {
    await storage.put("late/key/inside", new Uint8Array([7]));
    // The rename fails: the key's path is a non-empty folder.
    const err = await storage.put("late/key", new Uint8Array(5000)).then(() => undefined, (e) => e);
    assert.ok(err instanceof StorageError, String(err));
    assert.ok(err.cause !== undefined);
    assert.deepEqual(walk(path.join(root, "late")), ["key", "key/inside"]);
    assert.deepEqual(await getBytes(storage, "late/key/inside"), new Uint8Array([7]));
  });

  it("LocalStorage.put() into a read-only folder rejects with a non-retriable StorageError", {
    skip: isRoot ? "running as root: permissions do not apply" : false,
  }, async () => {
    await storage.put("readonly/x", new Uint8Array(1));
    fs.chmodSync(path.join(root, "readonly"), 0o500);
    try {
      const err = await storage.put("readonly/y", new Uint8Array(1)).then(() => undefined, (e) => e);
      assert.ok(err instanceof StorageError && !err.retriable, String(err));
      assert.match(err.message, /permission denied/);
    } finally {
      fs.chmodSync(path.join(root, "readonly"), 0o700);
    }
  });

  it('LocalStorage rejects keys with "..", "." or reserved temp names with TypeError and writes nothing', async () => {
    for (const key of ["../escape", "a/../../escape", "./x", `${TEMP_PREFIX}x`, `dir/${TEMP_PREFIX}y/z`]) {
      await assert.rejects(storage.put(key, new Uint8Array(1)), TypeError, key);
      await assert.rejects(storage.get(key), TypeError, key);
    }
    assert.ok(!fs.existsSync(path.join(tmp, "escape")));
  });

  it("LocalStorage.put() that is aborted removes the folders it created", async () => {
    const controller = new AbortController();
    const putting = storage.put("aborted/a/b/c", new Uint8Array(1 << 20), { signal: controller.signal });
    controller.abort();
    if (await putting.then(() => false, () => true)) assert.ok(!fs.existsSync(path.join(root, "aborted")));
    else assert.deepEqual(walk(path.join(root, "aborted")), ["a", "a/b", "a/b/c"]); // it finished first
  });

  it("LocalStorage.list() skips temp files and folders that are not objects", async () => {
    await storage.put("skip/real", new Uint8Array(1));
    fs.writeFileSync(path.join(root, "skip", `${TEMP_PREFIX}leftover`), "x");
    fs.mkdirSync(path.join(root, "skip", "empty-folder"));
    const keys: string[] = [];
    for await (const info of storage.list("skip/")) keys.push(info.key);
    assert.deepEqual(keys, ["skip/real"]);
  });

  it("LocalStorage.delete() removes the folders it empties, but not the root", async () => {
    await storage.put("prune/a/b/c", new Uint8Array(1));
    await storage.put("prune/keep", new Uint8Array(1));
    await storage.delete("prune/a/b/c");
    assert.ok(!fs.existsSync(path.join(root, "prune", "a")));
    assert.ok(fs.existsSync(path.join(root, "prune", "keep")));
    await storage.delete("prune/keep");
    assert.ok(!fs.existsSync(path.join(root, "prune")));
    assert.ok(fs.existsSync(root));
  });

  it("LocalStorage.delete() of a key that is a folder does nothing", async () => {
    await storage.put("folderkey/inside", new Uint8Array(1));
    await storage.delete("folderkey");
    assert.deepEqual(await getBytes(storage, "folderkey/inside"), new Uint8Array(1));
  });

  it("LocalStorage.url is the root's file:// URL", () => {
    assert.equal(storage.url, pathToFileURL(root).href);
    assert.equal(new LocalStorage("/srv/my backups/").url, "file:///srv/my%20backups");
  });

  it("new LocalStorage() rejects a relative root with TypeError", () => {
    assert.throws(() => new LocalStorage("relative/path"), TypeError);
  });
});

describe("LocalStorage.open()", () => {
  let tmp = "";
  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "frost-open-"));
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it("LocalStorage.open() with create: true creates a missing root whose parent exists", async () => {
    const root = path.join(tmp, "new");
    const storage = await LocalStorage.open(root, { create: true });
    assert.equal(storage.root, root);
    assert.ok(fs.statSync(root).isDirectory());
    await LocalStorage.open(root, { create: true }); // and accepts it when it exists
    await LocalStorage.open(root, { create: false });
  });

  it("LocalStorage.open() with create: true rejects a root whose parent is missing", async () => {
    const root = path.join(tmp, "mnt", "x", "frost");
    await assert.rejects(LocalStorage.open(root, { create: true }), (err: unknown) => {
      assert.ok(err instanceof StorageError);
      assert.equal(
        err.message,
        `Cannot use storage "${root}": parent folder "${path.join(tmp, "mnt", "x")}" does not exist`,
      );
      return true;
    });
    assert.ok(!fs.existsSync(path.join(tmp, "mnt")));
  });

  it("LocalStorage.open() with create: false rejects a missing root", async () => {
    const root = path.join(tmp, "absent");
    await assert.rejects(LocalStorage.open(root, { create: false }), (err: unknown) => {
      assert.ok(err instanceof StorageError);
      assert.equal(err.message, `Storage "${root}" does not exist`);
      return true;
    });
    assert.ok(!fs.existsSync(root));
  });

  it("LocalStorage.open() rejects a root that is a file", async () => {
    const file = path.join(tmp, "a-file");
    fs.writeFileSync(file, "x");
    for (const create of [true, false]) {
      await assert.rejects(LocalStorage.open(file, { create }), (err: unknown) => {
        assert.ok(err instanceof StorageError);
        assert.equal(err.message, `Cannot use storage "${file}": it is not a folder`);
        return true;
      });
    }
  });

  it("LocalStorage.open() rejects a root below a file with StorageError", async () => {
    const file = path.join(tmp, "another-file");
    fs.writeFileSync(file, "x");
    await assert.rejects(LocalStorage.open(path.join(file, "frost"), { create: true }), StorageError);
    await assert.rejects(LocalStorage.open(path.join(file, "frost"), { create: false }), StorageError);
  });

  it("LocalStorage.open() with create: true rejects a root that is not writable", {
    skip: isRoot ? "running as root: permissions do not apply" : false,
  }, async () => {
    const root = path.join(tmp, "readonly");
    fs.mkdirSync(root, { mode: 0o500 });
    await assert.rejects(LocalStorage.open(root, { create: true }), /is not writable/);
    await LocalStorage.open(root, { create: false });
  });
});

describe("openStorage() for local paths", () => {
  let tmp = "";
  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "frost-registry-"));
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it("openStorage() opens a relative path against the current folder", async () => {
    const relative = path.relative(process.cwd(), path.join(tmp, "rel"));
    const storage = await openStorage(relative, { create: true });
    assert.ok(storage instanceof LocalStorage);
    assert.equal(storage.root, path.join(tmp, "rel"));
  });

  it("openStorage() opens a file:// URL, percent-encoding included", async () => {
    const root = path.join(tmp, "with space");
    const storage = await openStorage(pathToFileURL(root).href, { create: true });
    assert.ok(storage instanceof LocalStorage);
    assert.equal(storage.root, root);
    await assert.rejects(
      openStorage(pathToFileURL(path.join(tmp, "nope")).href, { create: false }),
      StorageError,
    );
  });

  it("openStorage() rejects a file:// URL with a host with UsageError", async () => {
    await assert.rejects(openStorage("file://server/share", { create: true }), { name: "UsageError" });
  });

  it("defaultStoragePath() prefers $FROST_STORAGE, then /var/backups/frost for root, then the XDG data folder", () => {
    const home = "/home/u";
    assert.equal(defaultStoragePath({ env: { FROST_STORAGE: "/x/y", HOME: home }, uid: 0 }), "/x/y");
    assert.equal(
      defaultStoragePath({ env: { FROST_STORAGE: "", HOME: home }, uid: 0 }),
      "/var/backups/frost",
    );
    assert.equal(
      defaultStoragePath({ env: { XDG_DATA_HOME: "/data", HOME: home }, uid: 1000 }),
      "/data/frost",
    );
    assert.equal(defaultStoragePath({ env: { HOME: home }, uid: 1000 }), "/home/u/.local/share/frost");
    // The XDG spec says a relative $XDG_DATA_HOME is ignored.
    assert.equal(
      defaultStoragePath({ env: { XDG_DATA_HOME: "rel", HOME: home }, uid: 1000 }),
      "/home/u/.local/share/frost",
    );
  });
});

describe("LocalStorage reads under abort", () => {
  it("an abort during many concurrent reads rejects them cleanly; no read returns short bytes", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "frost-local-abort-"));
    try {
      const storage = await LocalStorage.open(path.join(dir, "store"), { create: true });
      const small = new TextEncoder().encode('{"lock":true}\n');
      const big = new Uint8Array(3 << 20).map((_, i) => i * 7);
      await storage.put("s/small", small);
      await storage.put("s/big", big);
      for (let round = 0; round < 20; round++) {
        const controller = new AbortController();
        const reason = new Error("stop");
        const reads = Array.from({ length: 16 }, (_, i) => {
          const [key, want] = i % 4 === 0 ? ["s/big", big] : ["s/small", small];
          return getBytes(storage, key, { signal: controller.signal }).then(
            (bytes) => assert.deepEqual(bytes, want),
            (err) => assert.equal(err, reason),
          );
        });
        setTimeout(() => controller.abort(reason), round % 4);
        await Promise.all(reads);
      }
      // An uncaught error from a read stream would have ended the test process before this point.
      await new Promise((r) => setTimeout(r, 100));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
