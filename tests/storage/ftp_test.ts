import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import crypto from "node:crypto";
import { UsageError } from "../../base/errors.ts";
import { FtpStorage } from "../../storage/ftp.ts";
import { openStorage } from "../../storage/registry.ts";
import { getBytes, StorageError } from "../../storage/storage.ts";
import { closedPort, cuttableProxy, type ServerEnv, withServer } from "../_file_servers.ts";
import { storageConformance } from "./conformance.ts";
import { FaultProxy } from "../_fault_proxy.ts";
import { TEMP_PREFIX } from "../../storage/local.ts";

const bytes = (text: string) => new TextEncoder().encode(text);

/** Awaits `promise` and returns the StorageError it rejected with (fails otherwise). */
async function rejection(promise: Promise<unknown>): Promise<StorageError> {
  const err = await promise.then(() => undefined, (e: unknown) => e);
  assert.ok(err instanceof StorageError, `expected a StorageError, got ${String(err)}`);
  return err;
}

withServer("ftp", (env: ServerEnv) => {
  const url = env.FROST_TEST_FTP_URL ?? "";
  const tlsUrl = env.FROST_TEST_FTPS_URL ?? "";
  const password = env.FROST_TEST_FTP_PASSWORD ?? "";
  const caFile = env.FROST_TEST_FTPS_CA ?? "";
  const withPassword = { FROST_FTP_PASSWORD: password };

  storageConformance(
    "FtpStorage conformance",
    () => FtpStorage.open(url, { create: true, env: withPassword }),
  );
  storageConformance(
    "FtpStorage over TLS (ftps://) conformance",
    () => FtpStorage.open(tlsUrl, { create: true, caFile, env: withPassword }),
  );

  describe("FtpStorage", () => {
    let tmp = "";
    before(() => {
      tmp = fs.mkdtempSync(path.join(os.tmpdir(), "frost-ftp-"));
    });
    after(() => fs.rmSync(tmp, { recursive: true, force: true }));

    it("FtpStorage.open() with a wrong password rejects with one non-retriable line", async () => {
      const err = await rejection(
        FtpStorage.open(url, { create: true, env: { FROST_FTP_PASSWORD: "wrong" } }),
      );
      assert.equal(err.retriable, false);
      assert.equal(
        err.message,
        `Cannot connect to ${url}: the server refused user "ftpuser" (530 Login authentication failed)`,
      );
    });

    it("FtpStorage.open() rejects a password in the URL with UsageError, without showing it", async () => {
      const inUrl = url.replace("ftpuser@", `ftpuser:${password}@`);
      for (
        const opening of [FtpStorage.open(inUrl, { create: true }), openStorage(inUrl, { create: true })]
      ) {
        const err = await opening.then(() => undefined, (e: unknown) => e);
        assert.ok(err instanceof UsageError, String(err));
        assert.ok(!err.message.includes(password), err.message);
        assert.match(err.message, /FROST_FTP_PASSWORD/);
      }
    });

    it("FtpStorage.open() without a password for the user rejects with UsageError", async () => {
      const err = await FtpStorage.open(url, { create: true, env: {} }).then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(err instanceof UsageError, String(err));
      assert.equal(
        err.message,
        `Cannot use storage "${url}": no password for user "ftpuser": set FROST_FTP_PASSWORD or ` +
          `FROST_FTP_PASSWORD_FILE, or pass --ftp-password-file`,
      );
    });

    it("FtpStorage.open() reads the first line of the password file, from the option or FROST_FTP_PASSWORD_FILE", async () => {
      const file = path.join(tmp, "password");
      fs.writeFileSync(file, `${password}\nsecond line\n`, { mode: 0o600 });
      await (await FtpStorage.open(url, { create: true, passwordFile: file, env: {} })).close();
      await (await FtpStorage.open(url, { create: true, env: { FROST_FTP_PASSWORD_FILE: file } })).close();
      // The option wins over the variables.
      await (await FtpStorage.open(url, {
        create: true,
        passwordFile: file,
        env: { FROST_FTP_PASSWORD: "wrong" },
      }))
        .close();
      const missing = path.join(tmp, "no-such-file");
      const err = await rejection(FtpStorage.open(url, { create: true, passwordFile: missing }));
      assert.equal(
        err.message,
        `Cannot connect to ${url}: cannot read password file "${missing}": no such file`,
      );
    });

    it("FtpStorage.open() to a closed port rejects with a retriable StorageError", async () => {
      const closed = `ftp://ftpuser@127.0.0.1:${await closedPort()}/x`;
      const err = await rejection(FtpStorage.open(closed, { create: true, env: withPassword }));
      assert.equal(err.retriable, true);
      assert.match(err.message, new RegExp(`^Cannot connect to ${closed}: connection refused`));
    });

    it("FtpStorage.open() of ftps:// verifies the certificate: a self-signed one is refused without its CA", async () => {
      const err = await rejection(FtpStorage.open(tlsUrl, { create: true, env: withPassword }));
      assert.equal(err.retriable, false);
      assert.match(
        err.message,
        new RegExp(
          `^Cannot connect to ${tlsUrl}: the server's TLS certificate does not verify: .+--ftp-ca-file or FROST_FTP_CA_FILE$`,
        ),
      );
      await (await FtpStorage.open(tlsUrl, {
        create: true,
        env: { ...withPassword, FROST_FTP_CA_FILE: caFile },
      }))
        .close();
    });

    it("FtpStorage.open() with create: false rejects a missing root, and with create: true makes it", async () => {
      const missing = `${url}/not-yet-${crypto.randomBytes(4).toString("hex")}/deeper`;
      const err = await rejection(FtpStorage.open(missing, { create: false, env: withPassword }));
      assert.equal(err.message, `Storage "${missing}" does not exist`);
      const storage = await FtpStorage.open(missing, { create: true, env: withPassword });
      await storage.put("x", bytes("x"));
      await storage.delete("x");
      await storage.close();
    });

    it("FtpStorage.put() makes the missing folders of a deep key, and names the folder it cannot make", async () => {
      const storage = await FtpStorage.open(url, { create: true, env: withPassword });
      const p = `folders-${crypto.randomBytes(4).toString("hex")}`;
      try {
        // Four new folders at once, written concurrently on several connections.
        const keys = ["a/b/c/d/1", "a/b/c/d/2", "a/b/e/3", "a/4"].map((k) => `${p}/${k}`);
        await Promise.all(keys.map((key) => storage.put(key, bytes(key))));
        for (const key of keys) assert.deepEqual(await getBytes(storage, key), bytes(key));
        // A file where a folder should be: the put fails with one line naming that folder.
        const err = await rejection(storage.put(`${p}/a/4/x`, bytes("x")));
        assert.match(
          err.message,
          new RegExp(`^Cannot write "${p}/a/4/x" to ftp://.*cannot create folder ".*/${p}/a/4"`),
        );
        assert.deepEqual(await getBytes(storage, `${p}/a/4`), bytes(`${p}/a/4`));
        for (const key of keys) await storage.delete(key);
        const left: string[] = [];
        for await (const info of storage.list(`${p}/`)) left.push(info.key);
        assert.deepEqual(left, []);
      } finally {
        await storage.close();
      }
    });

    it("FtpStorage stores names the server would change (trailing spaces, %, control characters) encoded", async () => {
      const storage = await FtpStorage.open(url, { create: true, env: withPassword });
      try {
        const p = `encoded-${crypto.randomBytes(4).toString("hex")}/`;
        const keys = [`${p}trailing  `, `${p}dir /100% done`, `${p}line\nbreak\r\ttab`, `${p}%41`];
        for (const key of keys) await storage.put(key, bytes(key));
        for (const key of keys) assert.deepEqual(await getBytes(storage, key), bytes(key));
        const listed: string[] = [];
        for await (const info of storage.list(p)) listed.push(info.key);
        assert.deepEqual(listed.sort(), [...keys].sort());
        for (const key of keys) await storage.delete(key);
      } finally {
        await storage.close();
      }
    });

    it("openStorage() opens ftp:// and ftps:// URLs with the ftp options", async () => {
      const file = path.join(tmp, "password-registry");
      fs.writeFileSync(file, password);
      for (const [spec, scheme] of [[url, "ftp:"], [tlsUrl, "ftps:"]] as const) {
        const storage = await openStorage(spec, { create: true, ftp: { passwordFile: file, caFile } });
        assert.ok(storage instanceof FtpStorage);
        assert.equal(new URL(storage.url).protocol, scheme);
        await storage.close();
      }
    });

    it("FtpStorage replaces a connection that dropped; a call on it fails retriably", async () => {
      const proxy = await cuttableProxy(Number(new URL(url).port));
      const proxied = `ftp://ftpuser@127.0.0.1:${proxy.port}${new URL(url).pathname}`;
      const storage = await FtpStorage.open(proxied, { create: true, env: withPassword, connections: 1 });
      try {
        await storage.put("drop/object", bytes("before"));
        proxy.cut();
        const err = await rejection(storage.stat("drop/object"));
        assert.equal(err.retriable, true, err.message);
        assert.match(err.message, /^Cannot stat "drop\/object" in ftp:.+: connection lost/);
        assert.deepEqual(await getBytes(storage, "drop/object"), bytes("before"));
        await storage.delete("drop/object");
      } finally {
        await storage.close();
        await proxy.close();
      }
    });

    it("FtpStorage.deleteLeftovers() frees the temp file of an upload cut by a connection reset, once", async () => {
      const proxy = await FaultProxy.start(Number(new URL(url).port));
      const proxied = `ftp://ftpuser@127.0.0.1:${proxy.port}${new URL(url).pathname}`;
      const storage = await FtpStorage.open(proxied, { create: true, env: withPassword, connections: 1 });
      const direct = await FtpStorage.open(url, { create: true, env: withPassword });
      const series = `leftovers-${crypto.randomBytes(4).toString("hex")}`;
      // The server's folder of the storage, as the test server script lays it out (chroot in ftp/home).
      const home = path.join(process.env.FROST_SERVERS_DIR || "/tmp/frost-servers", "ftp", "home");
      const folder = path.join(home, new URL(url).pathname, series, "backups", "1");
      const temps = (dir: string) =>
        fs.existsSync(dir)
          ? (fs.readdirSync(dir, { recursive: true }) as string[]).filter((f) =>
            path.basename(f).startsWith(TEMP_PREFIX)
          )
          : [];
      const written = () => {
        const [left] = temps(folder);
        return left === undefined ? 0 : fs.statSync(path.join(folder, left)).size;
      };
      try {
        await direct.put(`${series}/backups/2/data/00000000`, bytes("committed"));
        const putting = storage.put(`${series}/backups/1/data/00000000`, new Uint8Array(64 << 20));
        putting.catch(() => {});
        for (let i = 0; i < 1000 && written() === 0; i++) await new Promise((r) => setTimeout(r, 10));
        assert.ok(written() > 0, "the upload has begun");
        // The control connection is reset and no new one gets through: the put cannot remove its temp file.
        await proxy.set("refuse");
        const err = await rejection(putting);
        assert.equal(err.retriable, true, err.message);
        // The server may still write what it had received: wait until it is done.
        let size = written();
        for (let i = 0; i < 100; i++) {
          await new Promise((r) => setTimeout(r, 50));
          if (written() === size) break;
          size = written();
        }
        assert.ok(size > 0, "the cut upload left a temp file");
        assert.deepEqual(await Array.fromAsync(direct.list(`${series}/`), (i) => i.key), [
          `${series}/backups/2/data/00000000`,
        ]);

        assert.equal(await direct.deleteLeftovers(`${series}/backups/1/`), size);
        assert.deepEqual(temps(path.join(home, new URL(url).pathname, series)), []);
        assert.ok(!fs.existsSync(folder), "the folders left empty are gone");
        assert.deepEqual(await getBytes(direct, `${series}/backups/2/data/00000000`), bytes("committed"));
        assert.equal(await direct.deleteLeftovers(`${series}/backups/1/`), 0, "idempotent");
        assert.equal(await direct.deleteLeftovers(`${series}/backups/9/`), 0);
        await direct.delete(`${series}/backups/2/data/00000000`);
      } finally {
        await storage.close();
        await direct.close();
        await proxy.close();
      }
    });
  });
});
