/**
 * Storage outages, through the frost command, with real faults: a TCP proxy (`_fault_proxy.ts`) in front of
 * the real test servers refuses, resets or stalls connections while frost runs. Outages and budgets are a
 * few seconds long, so that the file stays quick.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { cleanup, frost, pseudoRandom, type RunResult, tempDir } from "../_cli.ts";
import { assertSameTree } from "../_tree.ts";
import { type ServerEnv, withServer } from "../_file_servers.ts";
import { FaultProxy } from "../_fault_proxy.ts";

/** How frost reaches one storage through the proxy. */
interface Target {
  kind: string;
  /** The --storage value, for a fresh place on the server. */
  storage: () => string;
  /** Options and environment that point frost at the proxy. */
  args: string[];
  env: Record<string, string>;
  /**
   * Bytes through the proxy, up and down, that show a transfer is under way. FTP moves its data on
   * connections of their own, outside the proxy: only its commands and replies are counted then.
   */
  busy?: { up: number; down: number };
}

function unique(): string {
  return `outage-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits until `ready()` (polling), failing after `ms`. */
async function until(ready: () => boolean, what: string, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ready()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** Every line frost printed on stderr is its own (no SDK or library output). */
function assertOwnLines(r: RunResult): void {
  for (const line of r.stderr.split("\n")) {
    if (line === "") continue;
    assert.match(line, /^frost: /, `a foreign line on stderr: ${JSON.stringify(line)}\n${r.stderr}`);
  }
}

/** A source tree of about `mib` MiB of incompressible data in a few files. */
function makeSource(dir: string, mib: number): void {
  fs.mkdirSync(path.join(dir, "sub"), { recursive: true });
  for (let i = 0; i < mib; i++) {
    fs.writeFileSync(path.join(dir, i % 2 ? "sub" : "", `file${i}.bin`), pseudoRandom(1 << 20, 100 + i));
  }
  fs.writeFileSync(path.join(dir, "note.txt"), "some text\n");
}

/**
 * The outage cases for one storage kind. `full: false` registers the core cases only (down mid-backup, a
 * stall that never ends, an open that is never answered, two storages with one down), to keep the file
 * quick: S3 and SFTP run them all, FTP and Swift the core.
 */
function outageSuite(target: () => Target, proxy: () => FaultProxy, full: boolean): void {
  /** A case registered for the storage kinds that run them all. */
  const more = (name: string, fn: () => Promise<void>) => full ? it(name, fn) : undefined;
  let work: string;
  let src: string;
  const backupArgs = ["--segment-size", "1M", "--compression", "none", "--upload-limit", "3M"];
  const stallArgs = ["--segment-size", "4M", "--compression", "none"];
  const run = (args: string[], storage: string, extra: string[] = []) =>
    frost([...args, "--name", "o", "--hostname", "h", "--storage", storage, ...target().args, ...extra], {
      env: target().env,
    });

  before(() => {
    work = tempDir(`outage-${target().kind}`);
    src = path.join(work, "src");
    makeSource(src, 5);
  });
  after(async () => {
    await proxy().set("pass");
    cleanup(work);
  });

  it("a server down mid-backup and back after a few seconds: the backup completes, one warning, restore identical", async () => {
    const storage = target().storage();
    await proxy().set("pass");
    const start = proxy().bytesUp;
    const running = run(["backup", src], storage, backupArgs);
    await until(() => proxy().bytesUp - start > (target().busy?.up ?? 1_500_000), "the upload to start");
    await proxy().set("refuse");
    await sleep(3000);
    await proxy().set("pass");
    const r = await running;
    assert.equal(r.code, 3, r.stderr); // completed, with the outage's warning (exit 3)
    assertOwnLines(r);
    const warnings = r.stderr.split("\n").filter((l) => /not reachable/.test(l));
    assert.equal(warnings.length, 1, `one warning for the outage:\n${r.stderr}`);
    assert.match(warnings[0]!, /retrying for up to 15m/);
    assert.match(r.stderr, /answers again after \d/);
    const to = path.join(work, "restored-down");
    const restored = await run(["restore", "--to", to], storage);
    assert.equal(restored.code, 0, restored.stderr);
    assertSameTree(src, to);
  });

  more(
    "a stall mid-upload with a short --io-timeout: the stalled tries time out, the backup completes",
    async () => {
      const storage = target().storage();
      await proxy().set("pass");
      // Big segments at full speed: the stall comes in the middle of a body, the client's writes block.
      proxy().stallAt(proxy().bytesUp + (target().busy?.up ?? 2_000_000));
      const running = run(["backup", src], storage, [...stallArgs, "--io-timeout", "1s"]);
      await until(() => proxy().mode === "stall", "the stall");
      await sleep(2500);
      await proxy().set("pass");
      const r = await running;
      assert.equal(r.code, 3, r.stderr); // completed, with the outage's warning (exit 3)
      assertOwnLines(r);
      // S3: the idle timeout; SFTP: the unanswered keepalives drop the connection.
      assert.match(r.stderr, /not reachable \(.*(timed out|timeout|No response from server).*\)/i);
      const to = path.join(work, "restored-stall");
      const restored = await run(["restore", "--to", to], storage);
      assert.equal(restored.code, 0, restored.stderr);
      assertSameTree(src, to);
    },
  );

  it("a stall that never ends: each try times out and the run exits 1 within --retry-for; earlier backups intact", async () => {
    const storage = target().storage();
    await proxy().set("pass");
    const first = await run(["backup", src, "--json"], storage, backupArgs);
    assert.equal(first.code, 0, first.stderr);
    proxy().stallAt(proxy().bytesUp + (target().busy?.up ?? 2_000_000));
    const running = run(["backup", src], storage, [...stallArgs, "--io-timeout", "1s", "--retry-for", "3s"]);
    const r = await running;
    await proxy().set("pass");
    assert.equal(r.code, 1, r.stderr);
    assertOwnLines(r);
    assert.match(r.stderr, /gave up.* \(--retry-for 3s\)/);
    assert.ok(r.stderr.includes(storage), `the error names the storage:\n${r.stderr}`);
    const listed = await run(["list", "--json"], storage);
    assert.equal(listed.code, 0, listed.stderr);
    assert.deepEqual(
      JSON.parse(listed.stdout).map((b: { id: string }) => b.id),
      [JSON.parse(first.stdout).id],
      "only the earlier backup is listed",
    );
  });

  more(
    "an outage longer than --retry-for: exit 1 naming the storage, nothing listed, earlier backups intact",
    async () => {
      const storage = target().storage();
      await proxy().set("pass");
      const first = await run(["backup", src, "--json"], storage, backupArgs);
      assert.equal(first.code, 0, first.stderr);
      const start = proxy().bytesUp;
      const running = run(["backup", src], storage, [...backupArgs, "--retry-for", "2s"]);
      await until(() => proxy().bytesUp - start > (target().busy?.up ?? 1_500_000), "the upload to start");
      await proxy().set("refuse");
      const r = await running;
      await proxy().set("pass");
      assert.equal(r.code, 1, r.stderr);
      assertOwnLines(r);
      assert.match(r.stderr, /retrying for up to 2s/);
      assert.match(r.stderr, /gave up.* \(--retry-for 2s\)/);
      assert.ok(r.stderr.includes(storage), `the error names the storage:\n${r.stderr}`);
      const listed = await run(["list", "--json"], storage);
      assert.deepEqual(JSON.parse(listed.stdout).map((b: { id: string }) => b.id), [
        JSON.parse(first.stdout).id,
      ]);
      const to = path.join(work, "restored-earlier");
      const restored = await run(["restore", "--to", to], storage);
      assert.equal(restored.code, 0, restored.stderr);
      assertSameTree(src, to);
    },
  );

  more(
    "a server down when the run starts and back after a few seconds: opening it is retried, the backup completes",
    async () => {
      const storage = target().storage();
      await proxy().set("refuse");
      const connections = proxy().connections;
      const running = run(["backup", src], storage, backupArgs);
      await sleep(2500);
      await proxy().set("pass");
      const r = await running;
      assert.equal(r.code, 3, r.stderr); // completed, with the outage's warning (exit 3)
      assertOwnLines(r);
      assert.match(r.stderr, /not reachable \(.*refused.*\) when opening it; retrying for up to 15m/);
      assert.ok(proxy().connections > connections);
    },
  );

  it("a server that accepts connections and never answers: opening it times out, is retried, and gives up", async () => {
    const storage = target().storage();
    await proxy().set("stall");
    const r = await run(["list"], storage, ["--io-timeout", "1s", "--retry-for", "2s"]);
    await proxy().set("pass");
    assert.equal(r.code, 1, r.stderr);
    assertOwnLines(r);
    assert.match(r.stderr, /gave up after retrying when opening it for .* \(--retry-for 2s\)/);
  });

  more(
    "a server down mid-restore and back after a few seconds: the restore completes, identical",
    async () => {
      const storage = target().storage();
      await proxy().set("pass");
      const backup = await run(["backup", src], storage, ["--segment-size", "1M", "--compression", "none"]);
      assert.equal(backup.code, 0, backup.stderr);
      const to = path.join(work, "restored-mid");
      const connections = proxy().connections;
      const start = proxy().bytesDown;
      const running = run(["restore", "--to", to], storage, ["--download-limit", "3M"]);
      await until(
        () => proxy().bytesDown - start > (target().busy?.down ?? 1_500_000),
        "the restore to start",
      );
      await proxy().set("refuse");
      await sleep(2500);
      await proxy().set("pass");
      const r = await running;
      assert.equal(r.code, 3, r.stderr); // completed, with the outage's warning (exit 3)
      assertOwnLines(r);
      assert.match(r.stderr, /not reachable/);
      assert.ok(proxy().connections > connections);
      assertSameTree(src, to);
    },
  );

  it("two storages with this one down: restore, list and verify read the other, with a warning (exit 3)", async () => {
    const storage = target().storage();
    const local = path.join(work, "local-storage");
    await proxy().set("pass");
    const both = ["--storage", local];
    const backup = await run(["backup", src, "--json"], storage, [...both, "--segment-size", "1M"]);
    assert.equal(backup.code, 0, backup.stderr);
    for (const mode of ["refuse", "stall"] as const) {
      await proxy().set(mode);
      const extra = [...both, "--io-timeout", "1s"];
      const to = path.join(work, `restored-multi-${mode}`);
      for (
        const [args, check] of [
          [["restore", "--to", to], () => assertSameTree(src, to)],
          [["list", "--json"], (r: RunResult) => assert.equal(JSON.parse(r.stdout).length, 1)],
          [["verify", "--read-data"], (r: RunResult) => assert.match(r.stdout + r.stderr, /OK/)],
        ] as const
      ) {
        const r = await run([...args], storage, extra);
        assert.equal(r.code, 3, `${args[0]} (${mode}): ${r.stderr}`);
        assertOwnLines(r);
        assert.match(r.stderr, /warning: .*reading from the other storages/);
        assert.ok(r.stderr.includes(storage.split("://")[0]!), r.stderr);
        (check as (r: RunResult) => void)(r);
      }
    }
    await proxy().set("pass");
  });

  more(
    "two storages with this one down: backup fails naming it and says how to back up to the other",
    async () => {
      const storage = target().storage();
      const local = path.join(work, "local-storage-3");
      await proxy().set("refuse");
      const r = await run(["backup", src], storage, ["--storage", local, "--retry-for", "1s"]);
      await proxy().set("pass");
      assert.equal(r.code, 1, r.stderr);
      assertOwnLines(r);
      assert.match(r.stderr, /gave up.*; to back up to the other storages meanwhile, run without --storage /);
      assert.ok(r.stderr.includes(storage), r.stderr);
      const listed = await run(["list", "--json"], local);
      assert.ok(listed.code !== 0 || JSON.parse(listed.stdout).length === 0, "nothing committed");
    },
  );

  more(
    "two storages, this one down at start, the other missing a segment and one corrupt: restore waits for this one",
    async () => {
      const storage = target().storage();
      const local = path.join(work, "local-storage-4");
      await proxy().set("pass");
      const backup = await run(["backup", src], storage, ["--storage", local, "--segment-size", "1M"]);
      assert.equal(backup.code, 0, backup.stderr);
      // One segment missing, the next one corrupt.
      const segment = (n: string) => {
        const found = (fs.readdirSync(local, { recursive: true }) as string[])
          .filter((f) => f.endsWith(path.join("data", n)));
        assert.equal(found.length, 1, `segment ${n}: ${found}`);
        return path.join(local, found[0]!);
      };
      fs.rmSync(segment("00000002"));
      fs.writeFileSync(segment("00000003"), "corrupt");
      await proxy().set("refuse");
      const to = path.join(work, "restored-multi-missing");
      const running = run(["restore", "--to", to], storage, ["--storage", local, "--retry-for", "60s"]);
      await sleep(3000);
      await proxy().set("pass");
      const r = await running;
      assert.equal(r.code, 3, r.stderr);
      assertOwnLines(r);
      assert.match(r.stderr, /reading from the other storages/);
      assert.match(r.stderr, /answers again after/);
      assertSameTree(src, to);
    },
  );

  more(
    "two storages, this one down mid-restore: the reads go to the other at once, not after --retry-for",
    async () => {
      const storage = target().storage();
      const local = path.join(work, "local-storage-2");
      await proxy().set("pass");
      const backup = await run(["backup", src], storage, ["--storage", local, "--segment-size", "1M"]);
      assert.equal(backup.code, 0, backup.stderr);
      const to = path.join(work, "restored-multi-mid");
      const start = proxy().bytesDown;
      // This storage is the first: reads go to it while it answers.
      const running = run(["restore", "--to", to], storage, [
        "--storage",
        local,
        "--download-limit",
        "3M",
        "--retry-for",
        "60s",
      ]);
      await until(
        () => proxy().bytesDown - start > (target().busy?.down ?? 1_500_000),
        "the restore to start",
      );
      await proxy().set("reset");
      const connections = proxy().connections;
      const r = await running;
      await proxy().set("pass");
      assert.equal(r.code, 3, r.stderr);
      assertOwnLines(r);
      assert.match(r.stderr, /not reachable .*; reading from the other storages/);
      // Once found down, it is not tried again per object: only the reads under way when it went down.
      assert.ok(proxy().connections - connections <= 4, `${proxy().connections - connections} tries`);
      assertSameTree(src, to);
    },
  );
}

withServer("swift", (env: ServerEnv) => {
  describe("outages of an S3 server (Swift's s3api behind a fault proxy)", () => {
    let proxy: FaultProxy;
    before(async () => {
      proxy = await FaultProxy.start(Number(new URL(env.FROST_TEST_S3_ENDPOINT!).port));
    });
    after(() => proxy.close());
    outageSuite(
      () => ({
        kind: "s3",
        storage: () => `s3://${unique()}/backups`,
        args: ["--s3-endpoint", `http://127.0.0.1:${proxy.port}`, "--s3-path-style"],
        env: { AWS_ACCESS_KEY_ID: env.FROST_TEST_S3_KEY!, AWS_SECRET_ACCESS_KEY: env.FROST_TEST_S3_SECRET! },
      }),
      () => proxy,
      true,
    );
  });
});

withServer("sshd", (env: ServerEnv) => {
  describe("outages of an SFTP server (sshd behind a fault proxy)", () => {
    let proxy: FaultProxy;
    let dir: string;
    before(async () => {
      const url = new URL(env.FROST_TEST_SFTP_URL!);
      proxy = await FaultProxy.start(Number(url.port));
      dir = tempDir("outage-sftp-keys");
      fs.writeFileSync(
        path.join(dir, "known_hosts"),
        `[127.0.0.1]:${proxy.port} ${env.FROST_TEST_SFTP_HOST_KEY}\n`,
      );
    });
    after(async () => {
      await proxy.close();
      cleanup(dir);
    });
    outageSuite(
      () => {
        const url = new URL(env.FROST_TEST_SFTP_URL!);
        return {
          kind: "sftp",
          storage: () => `sftp://${url.username}@127.0.0.1:${proxy.port}${url.pathname}/${unique()}`,
          args: ["--sftp-key", env.FROST_TEST_SFTP_KEY!, "--sftp-known-hosts", path.join(dir, "known_hosts")],
          env: {},
        };
      },
      () => proxy,
      true,
    );
  });
});

withServer("ftp", (env: ServerEnv) => {
  describe("outages of an FTP server (pure-ftpd's control connection behind a fault proxy)", () => {
    let proxy: FaultProxy;
    before(async () => {
      proxy = await FaultProxy.start(Number(new URL(env.FROST_TEST_FTP_URL!).port));
    });
    after(() => proxy.close());
    outageSuite(
      () => {
        const url = new URL(env.FROST_TEST_FTP_URL!);
        return {
          kind: "ftp",
          storage: () => `ftp://${url.username}@127.0.0.1:${proxy.port}${url.pathname}/${unique()}`,
          args: [],
          env: { FROST_FTP_PASSWORD: env.FROST_TEST_FTP_PASSWORD! },
          busy: { up: 1800, down: 3500 },
        };
      },
      () => proxy,
      false,
    );
  });
});

withServer("swift", (env: ServerEnv) => {
  describe("outages of a Swift server (auth and account URL behind a fault proxy)", () => {
    let proxy: FaultProxy;
    before(async () => {
      proxy = await FaultProxy.start(Number(new URL(env.FROST_TEST_SWIFT_AUTH!).port));
    });
    after(() => proxy.close());
    outageSuite(
      () => ({
        kind: "swift",
        storage: () => `swift://${unique()}/backups`,
        args: [],
        env: {
          ST_AUTH: `http://127.0.0.1:${proxy.port}${new URL(env.FROST_TEST_SWIFT_AUTH!).pathname}`,
          ST_USER: env.FROST_TEST_SWIFT_USER!,
          ST_KEY: env.FROST_TEST_SWIFT_KEY!,
          // The auth answers with the server's own account URL: this one goes through the proxy too.
          OS_STORAGE_URL: `http://127.0.0.1:${proxy.port}/v1/AUTH_${
            env.FROST_TEST_SWIFT_USER!.split(":")[0]
          }`,
        },
      }),
      () => proxy,
      false,
    );
  });
});
