import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import net from "node:net";
import process from "node:process";
import { SwiftStorage } from "../../storage/swift.ts";
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
import { listKeys } from "../_streams.ts";

const bytes = (text: string) => new TextEncoder().encode(text);

/** Awaits `promise` and returns what it rejected with (fails if it resolved). */
async function rejection(promise: Promise<unknown>): Promise<StorageError> {
  const err = await promise.then(() => undefined, (e: unknown) => e);
  assert.ok(err instanceof StorageError, `expected a StorageError, got ${String(err)}`);
  return err;
}

/** Counts the requests `fetch` sends to URLs matching `pattern` while `body` runs. */
async function countingFetches(pattern: RegExp, body: () => Promise<void>): Promise<number> {
  const original = globalThis.fetch;
  let count = 0;
  globalThis.fetch = (input, init) => {
    const url = input instanceof Request ? input.url : String(input);
    if (pattern.test(url)) count++;
    return original(input, init);
  };
  try {
    await body();
  } finally {
    globalThis.fetch = original;
  }
  return count;
}

/** A stand-in Keystone v3: checks the token request and answers with a catalog built by `catalog`. */
async function fakeKeystone(
  options: { token: string; catalog: (request: unknown) => unknown[]; password?: string },
): Promise<{ url: string; requests: unknown[]; close: () => Promise<void> }> {
  const requests: unknown[] = [];
  const server = http.createServer((req, res) => {
    let text = "";
    req.on("data", (chunk) => text += chunk);
    req.on("end", () => {
      if (req.method !== "POST" || req.url !== "/identity/v3/auth/tokens") {
        res.writeHead(404).end();
        return;
      }
      const request = JSON.parse(text);
      requests.push(request);
      const identity = request?.auth?.identity;
      const password = identity?.password?.user?.password ?? identity?.application_credential?.secret;
      if (password !== (options.password ?? "secret")) {
        res.writeHead(401, { "Content-Type": "application/json" }).end(
          JSON.stringify({ error: { code: 401, title: "Unauthorized" } }),
        );
        return;
      }
      const expires = new Date(Date.now() + 3600_000).toISOString();
      res.writeHead(201, { "Content-Type": "application/json", "X-Subject-Token": options.token }).end(
        JSON.stringify({ token: { expires_at: expires, catalog: options.catalog(request) } }),
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/identity/v3`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections(); // fetch keeps idle connections open
      }),
  };
}

withSwiftServer("SwiftStorage on the Swift all-in-one server", (server: SwiftServerEnv) => {
  const env = {
    ST_AUTH: server.FROST_TEST_SWIFT_AUTH,
    ST_USER: server.FROST_TEST_SWIFT_USER,
    ST_KEY: server.FROST_TEST_SWIFT_KEY,
  };
  const container = uniqueName();

  /** A v1 token and the account URL, straight from the server. */
  const session = async () => {
    const response = await fetch(env.ST_AUTH ?? "", {
      headers: { "X-Auth-User": env.ST_USER ?? "", "X-Auth-Key": env.ST_KEY ?? "" },
    });
    await response.body?.cancel();
    assert.equal(response.status, 200);
    return {
      token: response.headers.get("X-Auth-Token") ?? "",
      url: response.headers.get("X-Storage-Url") ?? "",
    };
  };

  /** Deletes every object of `name` and the container itself. */
  const removeContainer = async (name: string) => {
    const storage = new SwiftStorage(`swift://${name}`, { env });
    for (const key of await listKeys(storage, "")) await storage.delete(key);
    await storage.close();
    const { token, url } = await session();
    const response = await fetch(`${url}/${name}`, { method: "DELETE", headers: { "X-Auth-Token": token } });
    await response.body?.cancel();
    assert.ok(response.status === 204 || response.status === 404, `DELETE container: ${response.status}`);
  };

  storageConformance(
    "SwiftStorage conformance",
    () => SwiftStorage.open(`swift://${container}/conformance`, { env, create: true, pageSize: 250 }),
    () => removeContainer(container),
  );

  describe("SwiftStorage", () => {
    let storage: SwiftStorage;
    const run = uniqueName();

    before(async () => {
      storage = await SwiftStorage.open(`swift://${container}/${run}`, { env, create: true, pageSize: 7 });
    });

    after(async () => {
      for (const key of await listKeys(storage, "")) await storage.delete(key);
      await storage.close();
    });

    it("SwiftStorage.listFolders() pages through more than one page of folders, each once", async () => {
      await assertFoldersListedAcrossPages(storage, 20); // 3 pages of 7
    });

    it("SwiftStorage.list() pages through more than one listing page, each key once", async () => {
      const expected = Array.from({ length: 300 }, (_, i) => `paged/${String(i).padStart(3, "0")}`);
      for (let i = 0; i < expected.length; i += 25) {
        await Promise.all(expected.slice(i, i + 25).map((key) => storage.put(key, bytes(key))));
      }
      const listed: string[] = [];
      const requests = await countingFetches(/[?&]format=json/, async () => {
        for await (const info of storage.list("paged/")) listed.push(info.key);
      });
      assert.equal(listed.length, 300);
      assert.deepEqual([...listed].sort(), expected);
      assert.equal(requests, Math.ceil(300 / 7) + 1, "pages of 7, then an empty page");
    });

    it("SwiftStorage keeps keys under its prefix: swift://c/host_web never lists swift://c/host_web2", async () => {
      const web = new SwiftStorage(`swift://${container}/${run}/host_web`, { env });
      const web2 = new SwiftStorage(`swift://${container}/${run}/host_web2`, { env });
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

    it("SwiftStorage stores names with reserved URL characters under their exact names", async () => {
      const key = "odd/a b?c#d%2Fe+f&g=h;i";
      await storage.put(key, bytes("odd"));
      const { token, url } = await session();
      const path = `${container}/${run}/${key}`.split("/").map(encodeURIComponent).join("/");
      const response = await fetch(`${url}/${path}`, { headers: { "X-Auth-Token": token } });
      assert.equal(response.status, 200);
      assert.equal(await response.text(), "odd");
      assert.deepEqual(await listKeys(storage, "odd/"), [key]);
    });

    it("SwiftStorage authenticates again once when the server forgets its token", async () => {
      await storage.put("reauth/a", bytes("before"));
      const [host, port] = (server.FROST_TEST_SWIFT_MEMCACHED ?? "127.0.0.1:21211").split(":");
      // tempauth keeps its tokens in memcached: flushing it revokes every token.
      await new Promise<void>((resolve, reject) => {
        const socket = net.connect(Number(port), host, () => socket.write("flush_all\r\n"));
        socket.on("data", (data) => {
          socket.end();
          if (String(data).startsWith("OK")) resolve();
          else reject(new Error(`memcached answered ${String(data)}`));
        });
        socket.on("error", reject);
      });
      const authentications = await countingFetches(/\/auth\/v1\.0$/, async () => {
        assert.deepEqual(await getBytes(storage, "reauth/a"), bytes("before"));
        await storage.put("reauth/b", bytes("after"));
      });
      assert.equal(authentications, 1);
      assert.deepEqual(await getBytes(storage, "reauth/b"), bytes("after"));
    });

    it("SwiftStorage rejects wrong credentials with one clear, non-retriable line", async () => {
      const wrong = { ...env, ST_KEY: "wrong" };
      const opening = await rejection(
        SwiftStorage.open(`swift://${container}/p`, { env: wrong, create: true }),
      );
      assert.equal(opening.retriable, false);
      assert.equal(
        opening.message,
        `Cannot open swift://${container}/p: authentication failed at ${env.ST_AUTH} (401 Unauthorized)`,
      );
      const unopened = new SwiftStorage(`swift://${container}/p`, { env: wrong });
      const writing = await rejection(unopened.put("k", bytes("x")));
      assert.equal(writing.retriable, false);
      assert.equal(
        writing.message,
        `Cannot write "k" to swift://${container}/p: authentication failed at ${env.ST_AUTH} (401 Unauthorized)`,
      );
      const reading = await rejection(unopened.stat("k"));
      assert.ok(!(reading instanceof NotFoundError) && !reading.retriable);
    });

    it("SwiftStorage rejects with a retriable StorageError when the server is down", async () => {
      const down = { ...env, ST_AUTH: `http://127.0.0.1:${await closedPort()}/auth/v1.0` };
      const opening = await rejection(SwiftStorage.open(`swift://${container}`, { env: down, create: true }));
      assert.equal(opening.retriable, true, opening.message);
      assert.match(
        opening.message,
        /^Cannot open swift:\/\/.+: cannot authenticate at http:\/\/127\.0\.0\.1:\d+\/auth\/v1\.0: connection refused/,
      );
      const unopened = new SwiftStorage(`swift://${container}`, { env: down });
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
    });

    it("SwiftStorage.open() without create rejects a missing container, and with create makes it", async () => {
      const name = uniqueName();
      const missing = await rejection(SwiftStorage.open(`swift://${name}/x`, { env, create: false }));
      assert.equal(
        missing.message,
        `Cannot open swift://${name}/x: container "${name}" does not exist (404 Not Found)`,
      );
      assert.equal(missing.retriable, false);
      const gone = new SwiftStorage(`swift://${name}/x`, { env });
      const writing = await rejection(gone.put("k", bytes("x")));
      assert.match(
        writing.message,
        /^Cannot write "k" to swift:\/\/.+: container ".+" does not exist \(404 Not Found\)$/,
      );
      const created = await SwiftStorage.open(`swift://${name}/x`, { env, create: true });
      try {
        await created.put("k", bytes("x"));
        await SwiftStorage.open(`swift://${name}/x`, { env, create: true }).then((s) => s.close());
        await SwiftStorage.open(`swift://${name}/x`, { env, create: false }).then((s) => s.close());
      } finally {
        await created.close();
        await removeContainer(name);
      }
    });

    it("openStorage() opens swift:// with v1 credentials from OS_AUTH_URL/OS_USERNAME/OS_PASSWORD", async () => {
      const saved = { ...process.env };
      for (const name of Object.keys(process.env)) if (/^(ST|OS)_/.test(name)) delete process.env[name];
      process.env.OS_AUTH_URL = env.ST_AUTH;
      process.env.OS_USERNAME = env.ST_USER;
      process.env.OS_PASSWORD = env.ST_KEY;
      try {
        const opened = await openStorage(`swift://${container}/${run}/registry`, { create: false });
        try {
          assert.ok(opened instanceof SwiftStorage);
          await opened.put("k", bytes("from env"));
          assert.deepEqual(await getBytes(storage, "registry/k"), bytes("from env"));
        } finally {
          await opened.close();
        }
      } finally {
        for (const name of Object.keys(process.env)) if (!(name in saved)) delete process.env[name];
        Object.assign(process.env, saved);
      }
    });

    describe("Keystone v3 (a stand-in identity service in front of the real Swift)", () => {
      it("SwiftStorage authenticates with a password and picks the object-store endpoint of the catalog", async () => {
        const { token, url } = await session();
        const keystone = await fakeKeystone({
          token,
          catalog: () => [
            {
              type: "identity",
              endpoints: [{ interface: "public", region: "RegionTwo", url: "http://127.0.0.1:9/x" }],
            },
            {
              type: "object-store",
              endpoints: [
                {
                  interface: "internal",
                  region_id: "RegionTwo",
                  region: "RegionTwo",
                  url: "http://127.0.0.1:9/x",
                },
                {
                  interface: "public",
                  region_id: "RegionOne",
                  region: "RegionOne",
                  url: "http://127.0.0.1:9/x",
                },
                { interface: "public", region_id: "RegionTwo", region: "RegionTwo", url: `${url}/` },
              ],
            },
          ],
        });
        try {
          const v3 = {
            OS_AUTH_URL: keystone.url,
            OS_USERNAME: "backup",
            OS_PASSWORD: "secret",
            OS_PROJECT_NAME: "ops",
            OS_USER_DOMAIN_NAME: "Users",
            OS_PROJECT_DOMAIN_NAME: "Projects",
            OS_REGION_NAME: "RegionTwo",
            OS_INTERFACE: "public",
          };
          const storage = await SwiftStorage.open(`swift://${container}/${run}/keystone`, {
            env: v3,
            create: false,
          });
          try {
            await storage.put("k", bytes("via keystone"));
            assert.deepEqual(await getBytes(storage, "k"), bytes("via keystone"));
            await storage.delete("k");
          } finally {
            await storage.close();
          }
          assert.deepEqual(keystone.requests[0], {
            auth: {
              identity: {
                methods: ["password"],
                password: { user: { name: "backup", password: "secret", domain: { name: "Users" } } },
              },
              scope: { project: { name: "ops", domain: { name: "Projects" } } },
            },
          });

          const wrong = await rejection(
            SwiftStorage.open(`swift://${container}`, { env: { ...v3, OS_PASSWORD: "nope" }, create: false }),
          );
          assert.equal(
            wrong.message,
            `Cannot open swift://${container}: authentication failed at ${keystone.url}/auth/tokens (401 Unauthorized)`,
          );
          assert.equal(wrong.retriable, false);

          const nowhere = await rejection(
            SwiftStorage.open(`swift://${container}`, {
              env: { ...v3, OS_REGION_NAME: "RegionNine" },
              create: false,
            }),
          );
          assert.match(nowhere.message, /has no public object-store endpoint in region "RegionNine"/);
        } finally {
          await keystone.close();
        }
      });

      it("SwiftStorage authenticates with application credentials, and a dead endpoint is retriable", async () => {
        // The closed port is picked while the stand-in listens, so the two can never be the same port.
        let dead = "";
        const keystone = await fakeKeystone({
          token: "unused",
          catalog: () => [{
            type: "object-store",
            endpoints: [{ interface: "public", region: "RegionOne", url: `${dead}/v1/AUTH_x` }],
          }],
        });
        dead = `http://127.0.0.1:${await closedPort()}`;
        try {
          const env3 = {
            OS_AUTH_URL: keystone.url.replace(/\/v3$/, ""), // "/v3" is added when missing
            OS_APPLICATION_CREDENTIAL_ID: "app-id",
            OS_APPLICATION_CREDENTIAL_SECRET: "secret",
          };
          const storage = new SwiftStorage(`swift://${container}`, { env: env3 });
          const err = await rejection(storage.stat("k"));
          assert.deepEqual(keystone.requests[0], {
            auth: {
              identity: {
                methods: ["application_credential"],
                application_credential: { id: "app-id", secret: "secret" },
              },
            },
          });
          assert.ok(err.retriable, err.message);
          assert.equal(
            err.message.startsWith(`Cannot stat "k" in swift://${container}: cannot reach ${dead}: `),
            true,
          );
          assert.match(err.message, /connection refused/);
        } finally {
          await keystone.close();
        }
      });
    });
  });
});

describe("SwiftStorage without a server", () => {
  const env = { ST_AUTH: "http://127.0.0.1:9/auth/v1.0", ST_USER: "u", ST_KEY: "k" };

  it("new SwiftStorage() parses swift://container/prefix and rejects bad URLs with TypeError", async () => {
    const storage = new SwiftStorage("swift://backups/a/b/", { env });
    assert.equal(storage.url, "swift://backups/a/b");
    assert.equal(storage.container, "backups");
    await storage.close();
    await storage.close();
    for (const spec of ["swift://", "swift://u@c/x", "swift://c//x", "swift://c/./x", "s3://c"]) {
      assert.throws(() => new SwiftStorage(spec, { env }), TypeError, spec);
    }
    assert.throws(() => new SwiftStorage("swift://c", { env, pageSize: 10_001 }), RangeError);
  });

  it("new SwiftStorage() without credentials in the environment says what to set", () => {
    assert.throws(() => new SwiftStorage("swift://c", { env: {} }), (err: unknown) => {
      assert.ok(err instanceof StorageError && !err.retriable);
      assert.match(
        err.message,
        /^Cannot use swift:\/\/c: no Swift credentials in the environment: set ST_AUTH/,
      );
      return true;
    });
    assert.throws(
      () => new SwiftStorage("swift://c", { env: { ST_AUTH: env.ST_AUTH, ST_USER: "u" } }),
      /set ST_KEY in the environment/,
    );
    assert.throws(
      () => new SwiftStorage("swift://c", { env: { OS_AUTH_URL: "https://keystone/v3", OS_USERNAME: "u" } }),
      /set OS_PASSWORD and OS_PROJECT_NAME in the environment/,
    );
    assert.throws(
      () => new SwiftStorage("swift://c", { env: { OS_AUTH_URL: "https://keystone/v2.0" } }),
      /Keystone v2\.0 .* is not supported/,
    );
  });

  it("SwiftStorage rejects invalid keys and prefixes with TypeError before any request", async () => {
    const storage = new SwiftStorage("swift://c", { env });
    await assert.rejects(storage.put("/abs", bytes("x")), TypeError);
    await assert.rejects(storage.get("a/../b"), TypeError);
    await assert.rejects(listKeys(storage, "no-slash"), TypeError);
  });

  it("SwiftStorage rejects with a retriable StorageError when the server does not answer in time", async () => {
    const silent = await silentServer();
    const storage = new SwiftStorage("swift://c", {
      env: { ...env, ST_AUTH: `${silent.url}/auth/v1.0` },
      idleTimeout: 300,
    });
    try {
      const err = await rejection(storage.stat("k"));
      assert.equal(err.retriable, true, err.message);
      assert.equal(
        err.message,
        `Cannot stat "k" in swift://c: cannot authenticate at ${silent.url}/auth/v1.0: timed out`,
      );
    } finally {
      await storage.close();
      await silent.close();
    }
  });

  it("SwiftStorage times out a stalled upload and a stalled download, retriably", async () => {
    // A server that authenticates, then neither reads uploads nor finishes downloads.
    const server = http.createServer((req, res) => {
      const { port } = server.address() as net.AddressInfo;
      if (req.url === "/auth/v1.0") {
        res.writeHead(200, { "X-Auth-Token": "t", "X-Storage-Url": `http://127.0.0.1:${port}/v1/AUTH_x` })
          .end();
      } else if (req.method === "GET") {
        res.writeHead(200, { "Content-Length": "100" });
        res.write("0123456789");
      } else req.pause();
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as net.AddressInfo;
    const storage = new SwiftStorage("swift://c", {
      env: { ...env, ST_AUTH: `http://127.0.0.1:${port}/auth/v1.0` },
      idleTimeout: 500,
    });
    try {
      const upload = await rejection(storage.put("big", new Uint8Array(64 << 20)));
      assert.equal(upload.retriable, true, upload.message);
      assert.match(
        upload.message,
        /^Cannot write "big" to swift:\/\/c: cannot reach http:\/\/127\.0\.0\.1:\d+: timed out$/,
      );
      const stream = await storage.get("k");
      const reading = await rejection((async () => {
        for await (const _ of stream) { /* the first 10 bytes, then nothing */ }
      })());
      assert.equal(reading.retriable, true, reading.message);
      assert.match(reading.message, /^Cannot read "k" from swift:\/\/c: timed out$/);
    } finally {
      await storage.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it("openStorage() rejects a swift:// URL with credentials in it with UsageError", async () => {
    await assert.rejects(openStorage("swift://user:pw@c/x", { create: true }), { name: "UsageError" });
  });
});
