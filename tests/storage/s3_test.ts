import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import net from "node:net";
import process from "node:process";
import { createHash } from "node:crypto";
import { Buffer } from "node:buffer";
import {
  CreateMultipartUploadCommand,
  DeleteBucketCommand,
  ListMultipartUploadsCommand,
  S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { S3Storage } from "../../storage/s3.ts";
import { openStorage } from "../../storage/registry.ts";
import { getBytes, NotFoundError, StorageError } from "../../storage/storage.ts";
import {
  closedPort,
  silentServer,
  type SwiftServerEnv,
  uniqueName,
  withSwiftServer,
} from "../_swift_server.ts";
import { assertFoldersListedAcrossPages, storageConformance } from "./conformance.ts";
import { pseudoRandom } from "../_cli.ts";
import { listKeys } from "../_streams.ts";

const bytes = (text: string) => new TextEncoder().encode(text);

/** Awaits `promise` and returns what it rejected with (fails if it resolved). */
async function rejection(promise: Promise<unknown>): Promise<StorageError> {
  const err = await promise.then(() => undefined, (e: unknown) => e);
  assert.ok(err instanceof StorageError, `expected a StorageError, got ${String(err)}`);
  return err;
}

withSwiftServer("S3Storage on the Swift s3api server", (env: SwiftServerEnv) => {
  const endpoint = env.FROST_TEST_S3_ENDPOINT ?? "";
  const credentials = {
    accessKeyId: env.FROST_TEST_S3_KEY ?? "",
    secretAccessKey: env.FROST_TEST_S3_SECRET ?? "",
  };
  const settings = { endpoint, pathStyle: true, region: "us-east-1", credentials, env: {} };
  const bucket = uniqueName();

  /** Deletes every object of `bucket` and the bucket itself. */
  const removeBucket = async (name: string) => {
    const storage = new S3Storage(`s3://${name}`, settings);
    for (const key of await listKeys(storage, "")) await storage.delete(key);
    await storage.close();
    const client = new S3Client({ endpoint, region: "us-east-1", forcePathStyle: true, credentials });
    try {
      await client.send(new DeleteBucketCommand({ Bucket: name }));
    } finally {
      client.destroy();
    }
  };

  storageConformance(
    "S3Storage conformance",
    () => S3Storage.open(`s3://${bucket}/conformance`, { ...settings, create: true, pageSize: 250 }),
    () => removeBucket(bucket),
  );

  describe("S3Storage", () => {
    let storage: S3Storage;
    const run = uniqueName();

    before(async () => {
      storage = await S3Storage.open(`s3://${bucket}/${run}`, { ...settings, create: true, pageSize: 7 });
    });

    after(async () => {
      for (const key of await listKeys(storage, "")) await storage.delete(key);
      await storage.close();
    });

    it("S3Storage.listFolders() pages through more than one page of folders, each once", async () => {
      await assertFoldersListedAcrossPages(storage, 20); // 3 pages of 7
    });

    it("S3Storage.list() pages through more than one ListObjectsV2 page, each key once", async () => {
      const expected = Array.from({ length: 300 }, (_, i) => `paged/${String(i).padStart(3, "0")}`);
      for (let i = 0; i < expected.length; i += 25) {
        await Promise.all(expected.slice(i, i + 25).map((key) => storage.put(key, bytes(key))));
      }
      const listed: string[] = [];
      for await (const info of storage.list("paged/")) listed.push(info.key);
      assert.equal(listed.length, 300); // 43 pages of 7
      assert.deepEqual([...listed].sort(), expected);
    });

    it("S3Storage keeps keys under its prefix: s3://b/host_web never lists s3://b/host_web2", async () => {
      const web = new S3Storage(`s3://${bucket}/${run}/host_web`, settings);
      const web2 = new S3Storage(`s3://${bucket}/${run}/host_web2`, settings);
      try {
        await web.put("a", bytes("web"));
        await web2.put("a", bytes("web2"));
        await web2.put("host_web/b", bytes("web2"));
        assert.deepEqual(await listKeys(web, ""), ["a"]);
        assert.deepEqual(await listKeys(web2, ""), ["a", "host_web/b"]);
        assert.deepEqual(await getBytes(web, "a"), bytes("web"));
        assert.deepEqual(await listKeys(storage, "host_web/"), ["host_web/a"]);
      } finally {
        await web.close();
        await web2.close();
      }
    });

    it("S3Storage.put() sends a given SHA-256 as the signed payload hash: the server checks it", async () => {
      assert.equal(storage.putHashes, true);
      const data = bytes("hashed by the caller");
      const sha256 = createHash("sha256").update(data).digest("hex");
      await storage.put("hashed/right", data, { sha256 });
      assert.deepEqual(await getBytes(storage, "hashed/right"), data);
      // With a hash the body goes out in 1 MiB pieces: empty, and a size just over a piece boundary.
      const bodies: [string, Uint8Array][] = [["empty", new Uint8Array(0)], [
        "pieces",
        pseudoRandom(2 * 1024 * 1024 + 1, 3),
      ]];
      for (const [name, body] of bodies) {
        const hex = createHash("sha256").update(body).digest("hex");
        await storage.put(`hashed/${name}`, body, { sha256: hex });
        assert.ok(Buffer.from(await getBytes(storage, `hashed/${name}`)).equals(body), name);
      }
      // A hash that does not match the bytes: the server refuses the put (not retriable), nothing is stored.
      const wrong = (sha256[0] === "0" ? "1" : "0") + sha256.slice(1);
      const err = await rejection(storage.put("hashed/wrong", data, { sha256: wrong }));
      assert.match(err.message, /^Cannot write "hashed\/wrong" to s3:\/\/.*HTTP 400/);
      assert.equal(err.retriable, false);
      await assert.rejects(storage.stat("hashed/wrong"), NotFoundError);
    });

    it("S3Storage.deleteLeftovers() aborts the unfinished multipart uploads under a prefix only, across pages", async () => {
      const client = new S3Client({ endpoint, region: "us-east-1", forcePathStyle: true, credentials });
      /** Starts a multipart upload of `key` (below the storage's prefix) and uploads parts that are never completed. */
      const start = async (key: string, sizes: number[]) => {
        const Key = `${run}/${key}`;
        const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key }));
        for (const [i, size] of sizes.entries()) {
          await client.send(
            new UploadPartCommand({
              Bucket: bucket,
              Key,
              UploadId,
              PartNumber: i + 1,
              Body: pseudoRandom(size, i),
            }),
          );
        }
      };
      const uploads = async (prefix: string) =>
        (await client.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: `${run}/${prefix}` })))
          .Uploads?.map((u) => u.Key) ?? [];
      try {
        await storage.put("mp/backups/1/data/00000000", bytes("committed"));
        let expected = 0;
        for (let i = 0; i < 9; i++) {
          await start(`mp/backups/1/data/${String(i + 1).padStart(8, "0")}`, [1000 + i, 10]);
          expected += 1010 + i;
        }
        await start("mp/backups/10/data/00000000", [500]);
        assert.equal((await uploads("mp/backups/1/")).length, 9);

        assert.equal(await storage.deleteLeftovers("mp/backups/1/"), expected); // pages of 7
        assert.deepEqual(await uploads("mp/backups/1/"), []);
        assert.deepEqual(await uploads("mp/backups/10/"), [`${run}/mp/backups/10/data/00000000`]);
        assert.deepEqual(await getBytes(storage, "mp/backups/1/data/00000000"), bytes("committed"));
        assert.equal(await storage.deleteLeftovers("mp/backups/1/"), 0, "idempotent");
        assert.equal(await storage.deleteLeftovers("mp/backups/10/"), 500);
      } finally {
        client.destroy();
      }
    });

    it("S3Storage.listFolders() also lists the folders that hold only unfinished multipart uploads, each once", async () => {
      const client = new S3Client({ endpoint, region: "us-east-1", forcePathStyle: true, credentials });
      const start = async (key: string) => {
        const Key = `${run}/${key}`;
        const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key }));
        await client.send(
          new UploadPartCommand({ Bucket: bucket, Key, UploadId, PartNumber: 1, Body: bytes(key) }),
        );
      };
      try {
        await storage.put("uf/a/data/00000000", bytes("a"));
        await storage.put("uf/b/data/00000000", bytes("b"));
        await start("uf/b/data/00000001");
        await start("uf/b/data/00000002");
        // Upload-only folders across pages of 7, two uploads in one of them, one upload right at the prefix.
        const only = Array.from({ length: 10 }, (_, i) => `u${String(i).padStart(2, "0")}`);
        for (const name of only) await start(`uf/${name}/data/00000000`);
        await start("uf/u03/data/00000001");
        await start("uf/loose");
        const listed: string[] = [];
        for await (const name of storage.listFolders("uf/")) listed.push(name);
        assert.deepEqual([...listed].sort(), ["a", "b", ...only]);
        const none: string[] = [];
        for await (const name of storage.listFolders("uf/a/")) none.push(name);
        assert.deepEqual(none, ["data"]);
        assert.ok(await storage.deleteLeftovers("uf/") > 0);
        listed.length = 0;
        for await (const name of storage.listFolders("uf/")) listed.push(name);
        assert.deepEqual(listed.sort(), ["a", "b"], "aborted uploads leave no folder");
      } finally {
        client.destroy();
      }
    });

    it("S3Storage rejects wrong credentials with one clear, non-retriable line", async () => {
      const wrong = { ...settings, credentials: { ...credentials, secretAccessKey: "wrong" } };
      const opening = await rejection(S3Storage.open(`s3://${bucket}/p`, { ...wrong, create: true }));
      assert.equal(opening.retriable, false);
      assert.match(opening.message, new RegExp(`^Cannot open s3://${bucket}/p: access denied \\(\\w+\\)$`));
      const unopened = new S3Storage(`s3://${bucket}/p`, wrong);
      try {
        const writing = await rejection(unopened.put("k", bytes("x")));
        assert.equal(writing.retriable, false);
        assert.ok(!(writing instanceof NotFoundError));
        assert.match(
          writing.message,
          new RegExp(`^Cannot write "k" to s3://${bucket}/p: access denied \\(\\w+\\)$`),
        );
        assert.ok(writing.cause !== undefined, "the SDK error is the cause");
        const reading = await rejection(unopened.stat("k"));
        assert.equal(reading.retriable, false);
        assert.ok(!(reading instanceof NotFoundError));
        assert.match(reading.message, /: access denied \(HTTP 403\)$/);
      } finally {
        await unopened.close();
      }
    });

    it("S3Storage rejects with a retriable StorageError when the server is down", async () => {
      const down = { ...settings, endpoint: `http://127.0.0.1:${await closedPort()}` };
      const opening = await rejection(S3Storage.open(`s3://${bucket}`, { ...down, create: true }));
      assert.equal(opening.retriable, true, opening.message);
      assert.match(
        opening.message,
        /^Cannot open s3:\/\/.+: cannot reach http:\/\/127\.0\.0\.1:\d+: connection refused/,
      );
      const unopened = new S3Storage(`s3://${bucket}`, down);
      try {
        for (
          const call of [
            () => unopened.put("k", bytes("x")),
            () => unopened.get("k"),
            () => unopened.stat("k"),
            () => listKeys(unopened, ""),
            () => unopened.delete("k"),
          ]
        ) {
          const err = await rejection(call());
          assert.equal(err.retriable, true, err.message);
          assert.ok(!(err instanceof NotFoundError));
        }
      } finally {
        await unopened.close();
      }
    });

    it("S3Storage.open() without create rejects a missing bucket, and with create makes it", async () => {
      const name = uniqueName();
      const missing = await rejection(S3Storage.open(`s3://${name}/x`, { ...settings, create: false }));
      assert.equal(
        missing.message,
        `Cannot open s3://${name}/x: bucket "${name}" does not exist (NoSuchBucket)`,
      );
      assert.equal(missing.retriable, false);
      const created = await S3Storage.open(`s3://${name}/x`, { ...settings, create: true });
      try {
        await created.put("k", bytes("x"));
        await S3Storage.open(`s3://${name}/x`, { ...settings, create: true }).then((s) => s.close());
        await S3Storage.open(`s3://${name}/x`, { ...settings, create: false }).then((s) => s.close());
      } finally {
        await created.close();
        await removeBucket(name);
      }
    });

    it("S3Storage calls on a missing bucket reject with a clear non-retriable StorageError", async () => {
      const gone = new S3Storage(`s3://${uniqueName()}`, settings);
      try {
        const err = await rejection(gone.put("k", bytes("x")));
        assert.match(
          err.message,
          /^Cannot write "k" to s3:\/\/frost-test-.+: bucket ".+" does not exist \(NoSuchBucket\)$/,
        );
        assert.equal(err.retriable, false);
      } finally {
        await gone.close();
      }
    });

    it("openStorage() opens s3:// with the s3 options and credentials from the environment", async () => {
      const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
      process.env.AWS_ACCESS_KEY_ID = credentials.accessKeyId;
      process.env.AWS_SECRET_ACCESS_KEY = credentials.secretAccessKey;
      try {
        const opened = await openStorage(`s3://${bucket}/${run}/registry`, {
          create: false,
          s3: { endpoint, pathStyle: true, region: "us-east-1" },
        });
        try {
          assert.ok(opened instanceof S3Storage);
          assert.equal(opened.url, `s3://${bucket}/${run}/registry`);
          await opened.put("k", bytes("from env"));
          assert.deepEqual(await getBytes(storage, "registry/k"), bytes("from env"));
        } finally {
          await opened.close();
        }
      } finally {
        for (
          const [name, value] of [["AWS_ACCESS_KEY_ID", saved.id], ["AWS_SECRET_ACCESS_KEY", saved.secret]]
        ) {
          if (value === undefined) delete process.env[name as string];
          else process.env[name as string] = value;
        }
      }
    });
  });
});

describe("S3Storage without a server", () => {
  it("new S3Storage() parses s3://bucket/prefix and rejects bad URLs with TypeError", async () => {
    const storage = new S3Storage("s3://bucket/a/b/", { env: {}, region: "us-east-1" });
    assert.equal(storage.url, "s3://bucket/a/b");
    assert.equal(storage.bucket, "bucket");
    await storage.close();
    await storage.close();
    for (
      const spec of [
        "s3://",
        "s3:///x",
        "s3://user:secret@bucket/x",
        "s3://b//x",
        "s3://b/a/../x",
        "sftp://b",
      ]
    ) {
      assert.throws(() => new S3Storage(spec, { env: {} }), TypeError, spec);
    }
    assert.throws(() => new S3Storage("s3://b", { env: {}, pageSize: 0 }), RangeError);
    assert.throws(() => new S3Storage("s3://b", { env: {}, endpoint: "127.0.0.1:9000" }), TypeError);
  });

  it("S3Storage rejects invalid keys and prefixes with TypeError before any request", async () => {
    const storage = new S3Storage("s3://bucket", {
      env: {},
      endpoint: "http://127.0.0.1:9",
      region: "us-east-1",
    });
    await assert.rejects(storage.put("/abs", bytes("x")), TypeError);
    await assert.rejects(storage.get("a//b"), TypeError);
    await assert.rejects(listKeys(storage, "no-slash"), TypeError);
    await storage.close();
  });

  it("S3Storage rejects with a retriable StorageError when the server does not answer in time", async () => {
    const silent = await silentServer();
    const storage = new S3Storage("s3://bucket", {
      env: {},
      endpoint: silent.url,
      region: "us-east-1",
      pathStyle: true,
      credentials: { accessKeyId: "a", secretAccessKey: "b" },
      idleTimeout: 300,
    });
    try {
      const err = await rejection(storage.stat("k"));
      assert.equal(err.retriable, true, err.message);
      assert.match(
        err.message,
        /^Cannot stat "k" in s3:\/\/bucket: cannot reach http:\/\/127\.0\.0\.1:\d+: timed out/,
      );
    } finally {
      await storage.close();
      await silent.close();
    }
  });

  it("S3Storage times out a stalled upload and a stalled download, retriably", async () => {
    // A server that neither reads uploads nor finishes downloads.
    const server = http.createServer((req, res) => {
      if (req.method === "GET") {
        res.writeHead(200, { "Content-Length": "100", "Content-Type": "application/octet-stream" });
        res.write("0123456789");
      } else req.pause();
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as net.AddressInfo;
    const storage = new S3Storage("s3://bucket", {
      env: {},
      endpoint: `http://127.0.0.1:${port}`,
      region: "us-east-1",
      pathStyle: true,
      credentials: { accessKeyId: "a", secretAccessKey: "b" },
      idleTimeout: 500,
    });
    try {
      const upload = await rejection(storage.put("big", new Uint8Array(64 << 20)));
      assert.equal(upload.retriable, true, upload.message);
      assert.match(
        upload.message,
        /^Cannot write "big" to s3:\/\/bucket: cannot reach http:\/\/127\.0\.0\.1:\d+: timed out/,
      );
      const stream = await storage.get("k");
      const reading = await rejection((async () => {
        for await (const _ of stream) { /* the first 10 bytes, then nothing */ }
      })());
      assert.equal(reading.retriable, true, reading.message);
      assert.match(
        reading.message,
        /^Cannot read "k" from s3:\/\/bucket: cannot reach http:\/\/127\.0\.0\.1:\d+: timed out/,
      );
    } finally {
      await storage.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it("openStorage() rejects an s3:// URL without a bucket with UsageError", async () => {
    await assert.rejects(openStorage("s3://", { create: true }), { name: "UsageError" });
  });
});
