/**
 * Orphans of runs that died: a backup killed with SIGKILL in the middle of its upload leaves data without a
 * manifest; the next backup (or remove) of the series, holding the lock, frees it at once and says how much,
 * and every committed backup stays restorable. Runs main.ts, or the binary with FROST_BIN=dist/frost.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import type { ChildProcess } from "node:child_process";
import { cleanup, frost, pseudoRandom, tempDir } from "../_cli.ts";
import { assertSameTree } from "../_tree.ts";
import { formatBytes } from "../../base/units.ts";
import { LocalStorage, TEMP_PREFIX } from "../../storage/local.ts";
import { LimitStorage } from "../../storage/limit.ts";
import { MultiStorage } from "../../storage/multi.ts";
import { RetryStorage } from "../../storage/retry.ts";
import { getBytes } from "../../storage/storage.ts";
import { S3Storage } from "../../storage/s3.ts";
import {
  CreateMultipartUploadCommand,
  DeleteBucketCommand,
  ListMultipartUploadsCommand,
  S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { type ServerEnv, withServer } from "../_file_servers.ts";
import { uniqueName, withSwiftServer } from "../_swift_server.ts";
import { listKeys } from "../_streams.ts";
import process from "node:process";

interface Listed {
  id: string;
  created: string;
}

describe("orphans of killed backups", () => {
  let work: string;
  let src: string;
  let big: string;
  let store: string;
  const common = () => ["--storage", store, "--hostname", "h1", "--name", "o"];
  const series = () => path.join(store, "h1_o");
  let restores = 0;

  before(() => {
    work = tempDir("orphans");
    store = path.join(work, "store");
    src = path.join(work, "src");
    fs.mkdirSync(path.join(src, "sub"), { recursive: true });
    fs.writeFileSync(path.join(src, "a.txt"), "a\n");
    fs.writeFileSync(path.join(src, "sub", "b.bin"), pseudoRandom(100_000, 5));
    big = path.join(work, "big");
    fs.mkdirSync(big);
    fs.writeFileSync(path.join(big, "x.bin"), pseudoRandom(32 << 20, 9));
  });

  after(() => cleanup(work));

  async function ok(args: string[]) {
    const r = await frost(args);
    assert.equal(r.code, 0, `frost ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
    return r;
  }

  async function listed(): Promise<Listed[]> {
    return JSON.parse((await ok(["list", ...common(), "--json"])).stdout) as Listed[];
  }

  /** The ids under backups/ that have no manifest, with the bytes of their objects (temp files left out). */
  function uncommitted(): Map<string, number> {
    const out = new Map<string, number>();
    const manifests = new Set(
      fs.readdirSync(path.join(series(), "manifests")).map((n) => n.replace(/\.json$/, "")),
    );
    const folders = path.join(series(), "backups");
    for (const id of fs.existsSync(folders) ? fs.readdirSync(folders) : []) {
      if (manifests.has(id)) continue;
      let bytes = 0;
      for (const rel of fs.readdirSync(path.join(folders, id), { recursive: true }) as string[]) {
        const file = path.join(folders, id, rel);
        // The run may still be writing: a temp file can be renamed between the listing and the stat.
        if (path.basename(file).startsWith(TEMP_PREFIX)) continue;
        const st = fs.statSync(file, { throwIfNoEntry: false });
        if (st?.isFile()) bytes += st.size;
      }
      if (bytes > 0) out.set(id, bytes);
    }
    return out;
  }

  /** Starts a backup of `big` slowed by an upload limit and kills it (SIGKILL) once 3 segments are stored. */
  async function killedBackup(): Promise<void> {
    let child: ChildProcess | undefined;
    const done = frost([
      "backup",
      big,
      ...common(),
      "--compression",
      "none",
      "--segment-size",
      "1M",
      "--upload-limit",
      "4M",
    ], { onSpawn: (c) => void (child = c) });
    const before = new Set(uncommitted().keys());
    const stored = () => [...uncommitted()].filter(([id]) => !before.has(id)).reduce((n, [, b]) => n + b, 0);
    for (let i = 0; i < 1500 && stored() < 3 << 20; i++) await new Promise((r) => setTimeout(r, 20));
    assert.ok(stored() >= 3 << 20, "the slow backup stored 3 segments");
    child!.kill("SIGKILL");
    const r = await done;
    assert.equal(r.signal, "SIGKILL", `the backup ended before it was killed: exit ${r.code} ${r.stderr}`);
  }

  function restoreAndCompare(id: string, created: string, expected: string): Promise<void> {
    const to = path.join(work, `restored-${++restores}-${id}`);
    return ok(["restore", ...common(), "--date", created, "--to", to]).then(() =>
      assertSameTree(expected, to)
    );
  }

  it("the next backup frees the data of a killed one, with a notice, and exits 0", async () => {
    await ok(["backup", src, ...common()]);
    await killedBackup();
    const orphans = uncommitted();
    assert.equal(orphans.size, 1);
    const [[orphanId, stored]] = [...orphans] as [[string, number]];
    assert.ok(stored >= 3 << 20);
    // What a put cut by the kill leaves (a run without --upload-limit left 23 MiB so): a temp file beside the
    // segments, and the folder of a run killed in its very first put, holding a temp file only.
    const folders = path.join(series(), "backups");
    fs.writeFileSync(path.join(folders, orphanId, "data", `${TEMP_PREFIX}cut`), pseudoRandom(1 << 20, 6));
    const firstPutId = "20200101T000000.000Z";
    fs.mkdirSync(path.join(folders, firstPutId, "data"), { recursive: true });
    fs.writeFileSync(path.join(folders, firstPutId, "data", `${TEMP_PREFIX}first`), pseudoRandom(5000, 7));
    const bytes = stored + (1 << 20) + 5000;

    // A dry run of remove sees it already: no live run holds the lock.
    const dry = await ok(["remove", ...common(), "--keep-last", "5", "--dry-run"]);
    assert.match(
      dry.stdout,
      new RegExp(`Would remove orphaned data of failed run h1_o ${orphanId.replace(".", "\\.")}`),
    );

    const r = await ok(["backup", src, ...common()]);
    assert.match(
      r.stderr,
      new RegExp(
        `^frost: removed the data of 2 interrupted backups of h1_o \\(${firstPutId.replace(".", "\\.")}, ${
          orphanId.replace(".", "\\.")
        }\\): ${formatBytes(bytes).replace(".", "\\.")} freed$`,
        "m",
      ),
    );
    assert.doesNotMatch(r.stderr, /warning/);
    assert.deepEqual([...uncommitted().keys()], []);
    assert.ok(!fs.existsSync(path.join(folders, orphanId)), "the killed run's folder is gone, temp file too");
    assert.ok(!fs.existsSync(path.join(folders, firstPutId)));
    const backups = await listed();
    assert.equal(backups.length, 2);
    for (const b of backups) await restoreAndCompare(b.id, b.created, src);
  });

  it("remove under the lock frees the data of a killed backup whatever its age and reports it", async () => {
    await killedBackup();
    const orphans = uncommitted();
    assert.equal(orphans.size, 1);
    const [[orphanId, bytes]] = [...orphans] as [[string, number]];
    const r = await ok(["remove", ...common(), "--keep-last", "5"]);
    assert.match(
      r.stdout,
      new RegExp(`^Removed orphaned data of failed run h1_o ${orphanId.replace(".", "\\.")}$`, "m"),
    );
    assert.match(
      r.stdout,
      new RegExp(`Removed 0 backups and 1 orphan \\(${formatBytes(bytes).replace(".", "\\.")} freed\\)`),
    );
    assert.deepEqual([...uncommitted().keys()], []);
    const backups = await listed();
    assert.equal(backups.length, 2);
    for (const b of backups) await restoreAndCompare(b.id, b.created, src);
  });
});

describe("Storage.deleteLeftovers()", () => {
  it("LocalStorage.deleteLeftovers() removes the temp files under a prefix only, through every decorator", async () => {
    const root = tempDir("leftovers");
    try {
      const local = await LocalStorage.open(root, { create: true });
      const bytes = new TextEncoder().encode("committed");
      await local.put("s/backups/1/data/00000000", bytes);
      await local.put("s/backups/2/data/00000000", bytes);
      const plant = (rel: string, size: number) => {
        fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
        fs.writeFileSync(path.join(root, rel), new Uint8Array(size));
      };
      plant(`s/backups/1/data/${TEMP_PREFIX}a`, 100);
      plant(`s/backups/1/state/${TEMP_PREFIX}b`, 10);
      plant(`s/backups/2/data/${TEMP_PREFIX}c`, 1000);
      const composed = new MultiStorage([new LimitStorage(new RetryStorage(local), { upload: 1 << 20 })]);
      assert.equal(await composed.deleteLeftovers("s/backups/1/"), 110);
      assert.ok(!fs.existsSync(path.join(root, "s/backups/1/state")), "the folder left empty is gone");
      assert.deepEqual(await getBytes(local, "s/backups/1/data/00000000"), bytes);
      assert.ok(
        fs.existsSync(path.join(root, `s/backups/2/data/${TEMP_PREFIX}c`)),
        "another prefix is left alone",
      );
      assert.equal(await composed.deleteLeftovers("s/backups/9/"), 0);
    } finally {
      cleanup(root);
    }
  });
});

/**
 * The same on remote storages: a backup killed (SIGKILL) in the middle of a put leaves what that put had
 * written, a temp file on SFTP and FTP (seen in the servers' folders on this machine); the next backup frees
 * it with the orphan's data and says how much. S3 puts are single PutObjects: a kill leaves no multipart
 * upload, checked too.
 */
describe("orphans of killed backups on remote storages", () => {
  interface Remote {
    storage: string;
    args: string[];
    env: Record<string, string>;
    /** The series folder on this machine (file servers), where temp files can be seen. */
    folder?: string;
    /** The storage, opened by the test, to see objects and uploads that the server folder does not show. */
    open?: () => Promise<S3Storage>;
  }
  let work: string;
  let src: string;
  let big: string;

  before(() => {
    work = tempDir("remote-orphans");
    src = path.join(work, "src");
    fs.mkdirSync(src);
    fs.writeFileSync(path.join(src, "a.txt"), "a\n");
    big = path.join(work, "big");
    fs.mkdirSync(big);
    fs.writeFileSync(path.join(big, "x.bin"), pseudoRandom(48 << 20, 9));
  });
  after(() => cleanup(work));

  const unique = () => `orphans-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  /** Files under `dir`, relative, with their sizes. */
  function files(dir: string): Map<string, number> {
    const out = new Map<string, number>();
    if (!fs.existsSync(dir)) return out;
    for (const rel of fs.readdirSync(dir, { recursive: true }) as string[]) {
      // A file the server renames or removes between the listing and this look is not there any more.
      const stats = fs.statSync(path.join(dir, rel), { throwIfNoEntry: false });
      if (stats?.isFile()) out.set(rel, stats.size);
    }
    return out;
  }
  const isTemp = (rel: string) => path.basename(rel).startsWith(TEMP_PREFIX);

  /**
   * Backs up `src`, then starts a backup of `big` in 4 MiB segments and kills it (SIGKILL) once `cut()`
   * says a put is under way. Returns the options that name the series.
   */
  async function killThenBackup(remote: Remote, cut: () => Promise<boolean>): Promise<string[]> {
    const common = ["--storage", remote.storage, ...remote.args, "--hostname", "h1", "--name", "o"];
    const run = async (args: string[]) => {
      const r = await frost(args, { env: remote.env });
      assert.equal(r.code, 0, `frost ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
      return r;
    };
    await run(["backup", src, ...common]);
    let child: ChildProcess | undefined;
    const done = frost(
      ["backup", big, ...common, "--compression", "none", "--segment-size", "4M"],
      { env: remote.env, onSpawn: (c) => void (child = c) },
    );
    let seen = false;
    for (let i = 0; i < 3000 && !seen; i++) {
      seen = await cut();
      if (!seen) await sleep(5);
    }
    child!.kill("SIGKILL");
    const killed = await done;
    assert.ok(seen, `no put was seen under way: ${killed.stderr}`);
    assert.equal(killed.signal, "SIGKILL", `the backup ended before it was killed: ${killed.stderr}`);
    return common;
  }

  for (
    const [name, server, target] of [
      ["SFTP", "sshd", (env: ServerEnv): Remote => {
        const id = unique();
        return {
          storage: `${env.FROST_TEST_SFTP_URL}/${id}`,
          args: [
            "--sftp-key",
            env.FROST_TEST_SFTP_KEY!,
            "--sftp-known-hosts",
            env.FROST_TEST_SFTP_KNOWN_HOSTS!,
          ],
          env: {},
          folder: path.join(new URL(env.FROST_TEST_SFTP_URL!).pathname, id, "h1_o"),
        };
      }],
      ["FTP", "ftp", (env: ServerEnv): Remote => {
        const id = unique();
        const home = path.join(process.env.FROST_SERVERS_DIR || "/tmp/frost-servers", "ftp", "home");
        return {
          storage: `${env.FROST_TEST_FTP_URL}/${id}`,
          args: [],
          env: { FROST_FTP_PASSWORD: env.FROST_TEST_FTP_PASSWORD! },
          folder: path.join(home, new URL(env.FROST_TEST_FTP_URL!).pathname, id, "h1_o"),
        };
      }],
    ] as const
  ) {
    withServer(server, (env) => {
      it(`the next backup frees the data and the temp file of a backup killed in a put on ${name}`, async () => {
        const remote = target(env);
        try {
          const backups = path.join(remote.folder!, "backups");
          const cutPut = () => {
            const all = files(backups);
            const temp = [...all].some(([rel, size]) => isTemp(rel) && size > 0);
            return Promise.resolve(
              temp && [...all.keys()].some((rel) => !isTemp(rel) && rel.includes("data")),
            );
          };
          // The kill lands a moment after the look: when the put under way finished meanwhile, the killed run
          // left no temp file. That orphan is freed by a backup and the kill tried again (at most 5 times).
          let common: string[] = [];
          let orphan: [string, number][] = [];
          let committed = 0;
          for (let attempt = 1;; attempt++) {
            common = await killThenBackup(remote, cutPut);
            committed++;
            // The server may still write what it had received when the connection dropped: wait until done.
            const manifests = new Set(
              [...files(path.join(remote.folder!, "manifests")).keys()].map((n) => n.replace(/\.json$/, "")),
            );
            const orphanFiles = () =>
              [...files(backups)].filter(([rel]) => !manifests.has(rel.split(path.sep)[0]!));
            let before = JSON.stringify(orphanFiles());
            for (let i = 0; i < 100; i++) {
              await sleep(50);
              const now = JSON.stringify(orphanFiles());
              if (now === before) break;
              before = now;
            }
            orphan = orphanFiles();
            if (orphan.some(([rel]) => isTemp(rel)) || attempt === 5) break;
            const freed = await frost(["backup", src, ...common], { env: remote.env });
            assert.equal(freed.code, 0, freed.stderr);
            committed++;
          }
          assert.ok(orphan.some(([rel]) => isTemp(rel)), "the killed put left a temp file");
          const ids = new Set(orphan.map(([rel]) => rel.split(path.sep)[0]!));
          assert.equal(ids.size, 1);
          const [orphanId] = [...ids] as [string];
          const bytes = orphan.reduce((n, [, size]) => n + size, 0);

          const r = await frost(["backup", src, ...common], { env: remote.env });
          assert.equal(r.code, 0, r.stderr);
          assert.match(
            r.stderr,
            new RegExp(
              `^frost: removed the data of 1 interrupted backup of h1_o \\(${
                orphanId.replace(".", "\\.")
              }\\): ${formatBytes(bytes).replace(".", "\\.")} freed$`,
              "m",
            ),
          );
          assert.deepEqual([...files(remote.folder!).keys()].filter(isTemp), [], "no temp file is left");
          assert.ok(!fs.existsSync(path.join(backups, orphanId)), "the killed run's folder is gone");
          const listed = await frost(["list", ...common, "--json"], { env: remote.env });
          assert.equal(JSON.parse(listed.stdout).length, committed + 1);
        } finally {
          // The storage folder, on the server's disk here. The server may still be closing the killed run's
          // session and write there meanwhile (ENOTEMPTY): try again a few times.
          await removeSettled(path.dirname(remote.folder!));
        }
      });
    });
  }

  withSwiftServer("the swift server runs (S3)", (env) => {
    /**
     * Runs `body` on a new bucket (frost's storage `s3://<bucket>/backups`), then empties and removes it;
     * `uploads()` lists the bucket's unfinished multipart uploads.
     */
    async function withBucket(
      body: (b: {
        bucket: string;
        remote: Remote;
        storage: S3Storage;
        client: S3Client;
        uploads: () => Promise<unknown[]>;
      }) => Promise<void>,
    ): Promise<void> {
      const bucket = uniqueName();
      const settings = {
        endpoint: env.FROST_TEST_S3_ENDPOINT!,
        pathStyle: true,
        region: "us-east-1",
        credentials: { accessKeyId: env.FROST_TEST_S3_KEY!, secretAccessKey: env.FROST_TEST_S3_SECRET! },
        env: {},
      };
      const remote: Remote = {
        storage: `s3://${bucket}/backups`,
        args: ["--s3-endpoint", settings.endpoint, "--s3-path-style"],
        env: {
          AWS_ACCESS_KEY_ID: settings.credentials.accessKeyId,
          AWS_SECRET_ACCESS_KEY: settings.credentials.secretAccessKey,
        },
      };
      const storage = await S3Storage.open(`s3://${bucket}/backups`, { ...settings, create: true });
      const client = new S3Client({ ...settings, forcePathStyle: true });
      const uploads = async () =>
        (await client.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: "backups/" })))
          .Uploads ?? [];
      try {
        await body({ bucket, remote, storage, client, uploads });
      } finally {
        for (const key of await listKeys(storage, "")) await storage.delete(key);
        await storage.close();
        await client.send(new DeleteBucketCommand({ Bucket: bucket })).catch(() => {});
        client.destroy();
      }
    }

    it("the next backup frees the data of a backup killed in a put on S3, which leaves no multipart upload", async () => {
      await withBucket(async ({ bucket, remote, storage, client, uploads }) => {
        const committed = async () => new Set(await listKeys(storage, "h1_o/manifests/"));
        const uncommitted = async () => {
          const manifests = [...await committed()].map((k) => k.split("/").at(-1)!.replace(/\.json$/, ""));
          return (await listKeys(storage, "h1_o/backups/")).filter((k) =>
            !manifests.includes(k.split("/")[2]!)
          );
        };
        const common = await killThenBackup(remote, async () => (await uncommitted()).length >= 2);
        // A PutObject the server had wholly received when the run died may still land: wait until the
        // orphan's objects stop changing.
        let orphan = await uncommitted();
        for (let i = 0; i < 50; i++) {
          await sleep(200);
          const now = await uncommitted();
          if (JSON.stringify(now) === JSON.stringify(orphan)) break;
          orphan = now;
        }
        assert.ok(orphan.length >= 2);
        assert.deepEqual(await uploads(), [], "a killed PutObject leaves no multipart upload");
        // What a multipart writer cut in the middle leaves in the orphan's folder (another tool, or an older
        // frost): an upload with a part, never completed. It goes with the orphan, its part's bytes counted.
        const Key = `backups/${orphan[0]!.split("/").slice(0, 3).join("/")}/data/99999999`;
        const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key }));
        const part = pseudoRandom(3 << 20, 4);
        await client.send(
          new UploadPartCommand({ Bucket: bucket, Key, UploadId, PartNumber: 1, Body: part }),
        );
        assert.equal((await uploads()).length, 1);
        let bytes = part.byteLength;
        for (const key of orphan) bytes += (await storage.stat(key)).size;
        const r = await frost(["backup", src, ...common], { env: remote.env });
        assert.equal(r.code, 0, r.stderr);
        assert.match(
          r.stderr,
          new RegExp(
            `^frost: removed the data of 1 interrupted backup of h1_o \\(.+\\): ${
              formatBytes(bytes).replace(".", "\\.")
            } freed$`,
            "m",
          ),
        );
        assert.deepEqual(await uncommitted(), []);
        assert.deepEqual(await uploads(), []);
      });
    });

    it("the next backup aborts the unfinished multipart upload of an orphan that holds no object on S3", async () => {
      await withBucket(async ({ bucket, remote, storage, client, uploads }) => {
        const common = ["--storage", remote.storage, ...remote.args, "--hostname", "h1", "--name", "o"];
        const runEnv = remote.env;
        const first = await frost(["backup", src, ...common], { env: runEnv });
        assert.equal(first.code, 0, first.stderr);
        // A multipart writer cut in its first part (another tool, or an older frost): no object at all.
        const Key = "backups/h1_o/backups/20200101T000000.000Z/data/00000000";
        const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key }));
        const part = pseudoRandom(2 << 20, 6);
        await client.send(
          new UploadPartCommand({ Bucket: bucket, Key, UploadId, PartNumber: 1, Body: part }),
        );
        assert.deepEqual(await listKeys(storage, "h1_o/backups/20200101T000000.000Z/"), []);
        const r = await frost(["backup", src, ...common], { env: runEnv });
        assert.equal(r.code, 0, r.stderr);
        assert.match(
          r.stderr,
          new RegExp(
            `^frost: removed the data of 1 interrupted backup of h1_o \\(20200101T000000\\.000Z\\): ${
              formatBytes(part.byteLength).replace(".", "\\.")
            } freed$`,
            "m",
          ),
        );
        assert.deepEqual(await uploads(), []);
        const listed = await frost(["list", ...common, "--json"], { env: runEnv });
        assert.equal(JSON.parse(listed.stdout).length, 2);
      });
    });
  });
});

/** Removes `dir` and everything in it, trying again for a few seconds while something still writes there. */
async function removeSettled(dir: string): Promise<void> {
  for (let i = 0;; i++) {
    try {
      fs.rmSync(dir, { recursive: true, force: true });
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOTEMPTY" || i >= 50) throw err;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}
