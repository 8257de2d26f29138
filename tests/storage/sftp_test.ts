import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Buffer } from "node:buffer";
import { utils } from "ssh2";
import { UsageError } from "../../base/errors.ts";
import { SftpStorage } from "../../storage/sftp.ts";
import { openStorage } from "../../storage/registry.ts";
import { getBytes, NotFoundError, StorageError } from "../../storage/storage.ts";
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

/** The SHA256 fingerprint of an OpenSSH public key line, as ssh-keygen -l prints it. */
function fingerprintOf(publicLine: string): string {
  const blob = Buffer.from(publicLine.split(" ")[1] ?? "", "base64");
  return `SHA256:${crypto.createHash("sha256").update(blob).digest("base64").replace(/=+$/, "")}`;
}

withServer("sshd", (env: ServerEnv) => {
  const url = env.FROST_TEST_SFTP_URL ?? "";
  const key = env.FROST_TEST_SFTP_KEY ?? "";
  const knownHosts = env.FROST_TEST_SFTP_KNOWN_HOSTS ?? "";
  const hostKey = env.FROST_TEST_SFTP_HOST_KEY ?? "";
  const { hostname, port } = new URL(url);
  const hostPort = `[${hostname}]:${port}`;

  storageConformance(
    "SftpStorage conformance",
    () => SftpStorage.open(url, { create: true, key, knownHosts }),
  );

  describe("SftpStorage", () => {
    let tmp = "";
    before(() => {
      tmp = fs.mkdtempSync(path.join(os.tmpdir(), "frost-sftp-"));
    });
    after(() => fs.rmSync(tmp, { recursive: true, force: true }));
    /** A fresh file path in the temp folder. */
    let counter = 0;
    const file = (name: string) => path.join(tmp, `${++counter}-${name}`);

    it("SftpStorage.open() refuses a host that is not in known_hosts, with the key's fingerprint", async () => {
      const empty = file("known_hosts");
      fs.writeFileSync(empty, "# nothing yet\n");
      const err = await rejection(SftpStorage.open(url, { create: true, key, knownHosts: empty }));
      assert.equal(err.retriable, false);
      assert.equal(
        err.message,
        `Cannot connect to ${url}: host key of ${hostname}:${port} is not in ${empty} ` +
          `(ssh-ed25519 ${fingerprintOf(hostKey)}); add it, or pass --sftp-accept-new-host-key`,
      );
      assert.equal(fs.readFileSync(empty, "utf8"), "# nothing yet\n");
    });

    it("SftpStorage.open() with acceptNewHostKey adds the key to known_hosts, then knows the host", async () => {
      const created = path.join(tmp, "new-dir", "known_hosts");
      const storage = await SftpStorage.open(url, {
        create: true,
        key,
        knownHosts: created,
        acceptNewHostKey: true,
      });
      await storage.close();
      assert.equal(fs.readFileSync(created, "utf8"), `${hostPort} ${hostKey}\n`);
      assert.equal(fs.statSync(created).mode & 0o777, 0o600);
      const again = await SftpStorage.open(url, { create: false, key, knownHosts: created });
      await again.close();
      assert.equal(fs.readFileSync(created, "utf8"), `${hostPort} ${hostKey}\n`, "added once");
    });

    it("SftpStorage.open() refuses a changed host key, even with acceptNewHostKey", async () => {
      const other = utils.generateKeyPairSync("ed25519").public.split(" ").slice(0, 2).join(" ");
      const changed = file("known_hosts");
      const text = `otherhost ${hostKey}\n${hostPort} ${other}\n`;
      fs.writeFileSync(changed, text);
      for (const acceptNewHostKey of [false, true]) {
        const err = await rejection(
          SftpStorage.open(url, { create: true, key, knownHosts: changed, acceptNewHostKey }),
        );
        assert.equal(err.retriable, false);
        assert.match(
          err.message,
          new RegExp(
            `^Cannot connect to ${url}: host key of ${hostname}:${port} has CHANGED: the server sent ssh-ed25519 ` +
              `${
                fingerprintOf(hostKey).replace(/[+/]/g, "\\$&")
              }, but ${changed} line 2 has ssh-ed25519 SHA256:`,
          ),
        );
        assert.match(err.message, /ssh-keygen -R/);
      }
      assert.equal(fs.readFileSync(changed, "utf8"), text);
    });

    it("SftpStorage.open() accepts a hashed known_hosts entry and refuses a @revoked key", async () => {
      const salt = crypto.randomBytes(20);
      const hash = crypto.createHmac("sha1", salt).update(hostPort).digest("base64");
      const hashed = file("known_hosts");
      fs.writeFileSync(hashed, `|1|${salt.toString("base64")}|${hash} ${hostKey}\n`);
      await (await SftpStorage.open(url, { create: true, key, knownHosts: hashed })).close();
      fs.appendFileSync(hashed, `@revoked * ${hostKey}\n`);
      const err = await rejection(SftpStorage.open(url, { create: true, key, knownHosts: hashed }));
      assert.match(err.message, /is marked @revoked in .+ line 2$/);
    });

    it("SftpStorage.open() with a key the server does not accept rejects with one non-retriable line", async () => {
      const wrong = file("id_ed25519");
      fs.writeFileSync(wrong, utils.generateKeyPairSync("ed25519").private, { mode: 0o600 });
      const err = await rejection(SftpStorage.open(url, { create: true, key: wrong, knownHosts }));
      assert.equal(err.retriable, false);
      assert.equal(
        err.message,
        `Cannot connect to ${url}: the server refused key "${wrong}" for user "sftpuser" ` +
          `(All configured authentication methods failed)`,
      );
    });

    it("SftpStorage.open() reads an encrypted key with FROST_SFTP_KEY_PASSPHRASE, and says when it is missing or wrong", async () => {
      const encrypted = file("id_ed25519");
      fs.copyFileSync(key, encrypted);
      fs.chmodSync(encrypted, 0o600);
      execFileSync("ssh-keygen", ["-q", "-p", "-P", "", "-N", "sesame", "-f", encrypted]);
      let err = await rejection(SftpStorage.open(url, { create: true, key: encrypted, knownHosts, env: {} }));
      assert.equal(err.retriable, false);
      assert.equal(
        err.message,
        `Cannot connect to ${url}: key file "${encrypted}": it is encrypted: set FROST_SFTP_KEY_PASSPHRASE`,
      );
      err = await rejection(
        SftpStorage.open(url, {
          create: true,
          key: encrypted,
          knownHosts,
          env: { FROST_SFTP_KEY_PASSPHRASE: "nope" },
        }),
      );
      assert.match(err.message, /cannot decrypt it with FROST_SFTP_KEY_PASSPHRASE/);
      const storage = await SftpStorage.open(url, {
        create: true,
        knownHosts,
        env: { FROST_SFTP_KEY: encrypted, FROST_SFTP_KEY_PASSPHRASE: "sesame" },
      });
      await storage.close();
    });

    it("SftpStorage.open() takes the key and known_hosts from FROST_SFTP_KEY and FROST_SFTP_KNOWN_HOSTS", async () => {
      const storage = await SftpStorage.open(url, {
        create: true,
        env: { FROST_SFTP_KEY: key, FROST_SFTP_KNOWN_HOSTS: knownHosts },
      });
      await storage.close();
    });

    it("SftpStorage.open() with a missing key file names it", async () => {
      const missing = path.join(tmp, "no-such-key");
      const err = await rejection(SftpStorage.open(url, { create: true, key: missing, knownHosts }));
      assert.equal(
        err.message,
        `Cannot connect to ${url}: cannot read key file "${missing}": no such file (pass --sftp-key or set FROST_SFTP_KEY)`,
      );
    });

    it("SftpStorage.open() to a closed port rejects with a retriable StorageError", async () => {
      const closed = `sftp://sftpuser@127.0.0.1:${await closedPort()}/x`;
      const err = await rejection(SftpStorage.open(closed, { create: true, key, knownHosts }));
      assert.equal(err.retriable, true);
      assert.match(err.message, new RegExp(`^Cannot connect to ${closed}: connection refused`));
    });

    it("SftpStorage.open() rejects a password in the URL with UsageError", async () => {
      const withPassword = url.replace("sftpuser@", "sftpuser:secret@");
      for (
        const opening of [
          SftpStorage.open(withPassword, { create: true, key, knownHosts }),
          openStorage(withPassword, { create: true }),
        ]
      ) {
        const err = await opening.then(() => undefined, (e: unknown) => e);
        assert.ok(err instanceof UsageError, String(err));
        assert.doesNotMatch(err.message, /secret/);
        assert.match(err.message, /--sftp-key/);
      }
    });

    it("SftpStorage.open() with create: false rejects a missing root, and with create: true makes it", async () => {
      const missing = `${url}/not-yet-${crypto.randomBytes(4).toString("hex")}/deeper`;
      const err = await rejection(SftpStorage.open(missing, { create: false, key, knownHosts }));
      assert.equal(err.message, `Storage "${missing}" does not exist`);
      const storage = await SftpStorage.open(missing, { create: true, key, knownHosts });
      await storage.put("x", bytes("x"));
      await storage.delete("x");
      await storage.close();
    });

    it("SftpStorage.open() resolves /~/ against the home folder", async () => {
      const absolute = await SftpStorage.open(url, { create: false, key, knownHosts });
      await absolute.close();
      const home = path.posix.dirname(absolute.root);
      const relative = await SftpStorage.open(
        url.replace(/(:\d+)\/.*$/, `$1/~/${path.posix.basename(absolute.root)}`),
        {
          create: false,
          key,
          knownHosts,
        },
      );
      await relative.close();
      assert.equal(relative.root, absolute.root);
      assert.equal(home, path.posix.dirname(relative.root));
    });

    it("openStorage() opens sftp:// URLs with the sftp options", async () => {
      const storage = await openStorage(url, { create: true, sftp: { key, knownHosts } });
      assert.ok(storage instanceof SftpStorage);
      assert.equal(storage.url, url);
      await storage.close();
    });

    it("SftpStorage reconnects after the connection drops; a read cut in the middle fails retriably", async () => {
      const proxy = await cuttableProxy(Number(port));
      const proxied = `sftp://sftpuser@127.0.0.1:${proxy.port}${new URL(url).pathname}`;
      const known = file("known_hosts");
      fs.writeFileSync(known, `[127.0.0.1]:${proxy.port} ${hostKey}\n`);
      const storage = await SftpStorage.open(proxied, { create: true, key, knownHosts: known });
      try {
        const data = new Uint8Array(crypto.randomBytes(8 << 20));
        await storage.put("drop/object", data);
        const reader = (await storage.get("drop/object")).getReader();
        await reader.read();
        proxy.cut();
        const err = await (async () => {
          for (;;) if ((await reader.read()).done) return undefined;
        })().then(() => undefined, (e: unknown) => e);
        assert.ok(
          err instanceof StorageError && err.retriable,
          `expected a retriable StorageError, got ${String(err)}`,
        );
        assert.match(err.message, /^Cannot read "drop\/object" from sftp:/);
        // The next call opens a new connection.
        assert.deepEqual(await getBytes(storage, "drop/object"), data);
        await storage.delete("drop/object");
        await assert.rejects(storage.stat("drop/object"), NotFoundError);
      } finally {
        await storage.close();
        await proxy.close();
      }
    });

    it("SftpStorage.deleteLeftovers() frees the temp file of a put cut by a connection reset, once", async () => {
      const proxy = await FaultProxy.start(Number(port));
      const proxied = `sftp://sftpuser@127.0.0.1:${proxy.port}${new URL(url).pathname}`;
      const known = file("known_hosts");
      fs.writeFileSync(known, `[127.0.0.1]:${proxy.port} ${hostKey}\n`);
      const series = `leftovers-${crypto.randomBytes(4).toString("hex")}`;
      const storage = await SftpStorage.open(proxied, { create: true, key, knownHosts: known });
      const direct = await SftpStorage.open(url, { create: true, key, knownHosts });
      try {
        await direct.put(`${series}/backups/2/data/00000000`, bytes("committed"));
        // A put stalled after 2 MiB of its 8, then reset: it cannot remove its temp file.
        proxy.stallAt(proxy.bytesUp + (2 << 20));
        const putting = storage.put(`${series}/backups/1/data/00000000`, new Uint8Array(8 << 20));
        putting.catch(() => {});
        const temps = (dir: string) =>
          fs.existsSync(dir)
            ? (fs.readdirSync(dir, { recursive: true }) as string[]).filter((f) =>
              path.basename(f).startsWith(TEMP_PREFIX)
            )
            : [];
        const folder = path.join(direct.root, series, "backups", "1");
        const written = () => {
          const [left] = temps(folder);
          return left === undefined ? 0 : fs.statSync(path.join(folder, left)).size;
        };
        // Stalled, and the server wrote some of what it got: the reset cuts the put in its middle.
        for (let i = 0; i < 1000 && (proxy.mode !== "stall" || written() === 0); i++) {
          await new Promise((r) => setTimeout(r, 10));
        }
        assert.ok(written() > 0, "the put was stalled with bytes written");
        await proxy.set("reset");
        const err = await rejection(putting);
        assert.equal(err.retriable, true, err.message);
        // The server may still write what it had received before it saw the reset: wait until it is done.
        let size = written();
        for (let i = 0; i < 100; i++) {
          await new Promise((r) => setTimeout(r, 50));
          if (written() === size) break;
          size = written();
        }
        assert.ok(size > 0 && size < 8 << 20, "the cut put left a temp file");
        assert.deepEqual(await Array.fromAsync(direct.list(`${series}/`), (i) => i.key), [
          `${series}/backups/2/data/00000000`,
        ]);

        assert.equal(await direct.deleteLeftovers(`${series}/backups/1/`), size);
        assert.deepEqual(temps(path.join(direct.root, series)), []);
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

    it("SftpStorage calls after close() reject without reconnecting", async () => {
      const storage = await SftpStorage.open(url, { create: true, key, knownHosts });
      await storage.close();
      const err = await rejection(storage.stat("anything"));
      assert.match(err.message, /the storage is closed/);
    });
  });
});
