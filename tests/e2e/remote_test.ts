/**
 * End to end on real servers (started by tests/servers/*.sh): backup → level 1 → list → restore through the
 * frost command on S3, Swift, SFTP and FTP, and one run over several storages at once.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { cleanup, copyTree, frost, makeHostileTree, pseudoRandom, tempDir } from "../_cli.ts";
import { assertSameTree } from "../_tree.ts";
import { type ServerEnv, withServer } from "../_file_servers.ts";

interface Target {
  /** The --storage value. */
  storage: string;
  /** Extra options (credentials never go here). */
  args: string[];
  /** Environment for frost (credentials). */
  env: Record<string, string>;
}

function unique(): string {
  return `e2e-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}

function sleepMs(ms: number) {
  return new Promise((r) => setTimeout(r, ms));
}

async function ok(args: string[], env: Record<string, string>) {
  const r = await frost(args, { env });
  assert.equal(r.code, 0, `frost ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r;
}

/** Level 0, a change, level 1, then list and restore both points and compare with the source. */
async function roundTrip(target: Target | Target[]) {
  const targets = Array.isArray(target) ? target : [target];
  const storageArgs = targets.flatMap((t) => ["--storage", t.storage, ...t.args]);
  const env = Object.assign({}, ...targets.map((t) => t.env));
  const work = tempDir("remote");
  try {
    const src = path.join(work, "src");
    makeHostileTree(src);
    fs.writeFileSync(path.join(src, "three-segments.bin"), pseudoRandom(2_500_000, 5));
    const common = ["--name", "remote", "--hostname", "h1", ...storageArgs];
    await sleepMs(1100);
    copyTree(src, path.join(work, "expected0"));
    const first = JSON.parse(
      (await ok([
        "backup",
        src,
        ...common,
        "--max-level",
        "2",
        "--segment-size",
        "1M",
        "--compression",
        "none",
        "--json",
      ], env)).stdout,
    );
    fs.writeFileSync(path.join(src, "added"), "added at level 1\n");
    fs.rmSync(path.join(src, "private"));
    await sleepMs(1100);
    copyTree(src, path.join(work, "expected1"));
    const second = JSON.parse(
      (await ok(["backup", src, ...common, "--max-level", "2", "--segment-size", "1M", "--json"], env))
        .stdout,
    );
    assert.equal(second.level, 1);
    assert.equal(second.parent, first.id);
    const listed = JSON.parse((await ok(["list", ...common, "--json"], env)).stdout);
    assert.deepEqual(listed.map((l: { id: string }) => l.id), [first.id, second.id]);
    // Without --name: every series on the storage (found from its folders, not by listing every object).
    const all = JSON.parse((await ok(["list", ...storageArgs, "--json"], env)).stdout);
    assert.deepEqual(all.map((l: { id: string; name: string }) => `${l.name} ${l.id}`), [
      `remote ${first.id}`,
      `remote ${second.id}`,
    ]);
    // One download at a time, then four (the level-0 data is three segments).
    const r0 = ["--to", path.join(work, "r0"), "--date", listed[0].created, "--queue-size", "1"];
    await ok(["restore", ...common, ...r0], env);
    assertSameTree(path.join(work, "expected0"), path.join(work, "r0"));
    await ok(["restore", ...common, "--to", path.join(work, "r1"), "--queue-size", "4"], env);
    assertSameTree(path.join(work, "expected1"), path.join(work, "r1"));
    // Every storage holds the whole backup on its own.
    for (const t of targets) {
      const alone = ["--name", "remote", "--hostname", "h1", "--storage", t.storage, ...t.args];
      const one = JSON.parse((await ok(["list", ...alone, "--json"], t.env)).stdout);
      assert.equal(one.length, 2, `${t.storage} lists both backups`);
    }
    return { work, src, common, env };
  } catch (err) {
    cleanup(work);
    throw err;
  }
}

function s3Target(env: ServerEnv): Target {
  return {
    storage: `s3://${unique()}/backups`,
    args: ["--s3-endpoint", env.FROST_TEST_S3_ENDPOINT!, "--s3-path-style"],
    env: { AWS_ACCESS_KEY_ID: env.FROST_TEST_S3_KEY!, AWS_SECRET_ACCESS_KEY: env.FROST_TEST_S3_SECRET! },
  };
}

function swiftTarget(env: ServerEnv): Target {
  return {
    storage: `swift://${unique()}/backups`,
    args: [],
    env: {
      ST_AUTH: env.FROST_TEST_SWIFT_AUTH!,
      ST_USER: env.FROST_TEST_SWIFT_USER!,
      ST_KEY: env.FROST_TEST_SWIFT_KEY!,
    },
  };
}

function sftpTarget(env: ServerEnv): Target {
  return {
    storage: `${env.FROST_TEST_SFTP_URL}/${unique()}`,
    args: ["--sftp-key", env.FROST_TEST_SFTP_KEY!, "--sftp-known-hosts", env.FROST_TEST_SFTP_KNOWN_HOSTS!],
    env: {},
  };
}

function ftpTarget(env: ServerEnv): Target {
  return {
    storage: `${env.FROST_TEST_FTP_URL}/${unique()}`,
    args: [],
    env: { FROST_FTP_PASSWORD: env.FROST_TEST_FTP_PASSWORD! },
  };
}

describe("frost on real storage servers", () => {
  withServer("swift", (env) => {
    it("backs up and restores on S3 (Swift s3api)", async () =>
      cleanup((await roundTrip(s3Target(env))).work));
    it("backs up and restores on Swift", async () => cleanup((await roundTrip(swiftTarget(env))).work));
    it("fails with one clear line on wrong S3 credentials", async () => {
      const t = s3Target(env);
      const r = await frost(["list", "--storage", t.storage, ...t.args], {
        env: { AWS_ACCESS_KEY_ID: "test:tester", AWS_SECRET_ACCESS_KEY: "wrong" },
      });
      assert.equal(r.code, 1);
      assert.match(r.stderr, /^frost: .*s3:\/\/.*(denied|SignatureDoesNotMatch|InvalidAccessKeyId)/);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    });
  });
  withServer("sshd", (env) => {
    it("backs up and restores over SFTP", async () => cleanup((await roundTrip(sftpTarget(env))).work));
    it("refuses an unknown SFTP host key unless accepted", async () => {
      const t = sftpTarget(env);
      const work = tempDir("hostkey");
      try {
        const known = path.join(work, "known_hosts");
        fs.writeFileSync(known, "");
        const args = [
          "list",
          "--storage",
          t.storage,
          "--sftp-key",
          env.FROST_TEST_SFTP_KEY!,
          "--sftp-known-hosts",
          known,
        ];
        const r = await frost(args);
        assert.equal(r.code, 1);
        assert.match(r.stderr, /host key of 127\.0\.0\.1:12222 is not in .*--sftp-accept-new-host-key/);
        await ok(["backup", work, "--name", "k", ...args.slice(1), "--sftp-accept-new-host-key"], {});
        assert.match(fs.readFileSync(known, "utf8"), /127\.0\.0\.1/);
      } finally {
        cleanup(work);
      }
    });
  });
  withServer("ftp", (env) => {
    it("backs up and restores over FTP", async () => cleanup((await roundTrip(ftpTarget(env))).work));
  });
  withServer("sshd", (sshd) => {
    it("keeps every backup on several storages and restores from the next when one loses data", async () => {
      const local = tempDir("multi-local");
      try {
        const sftp = sftpTarget(sshd);
        const { work, common, env } = await roundTrip([{ storage: local, args: [], env: {} }, sftp]);
        try {
          // The local copy loses a segment: restore reads it from the SFTP copy.
          const series = path.join(local, "h1_remote", "backups");
          const [id] = fs.readdirSync(series).sort();
          fs.rmSync(path.join(series, id!, "data", "00000001"));
          await ok(["restore", ...common, "--to", path.join(work, "fallback")], env);
          assertSameTree(path.join(work, "expected1"), path.join(work, "fallback"));
          // A corrupt segment (one flipped byte) is read from the next storage too, also when a bandwidth
          // limit is set (its decorator sits on each storage, below the several-storages one).
          const segment = path.join(series, id!, "data", "00000000");
          const bytes = fs.readFileSync(segment);
          bytes[bytes.length >> 1]! ^= 0x40;
          fs.writeFileSync(segment, bytes);
          const limited = path.join(work, "fallback-limited");
          await ok(
            ["restore", ...common, "--to", limited, "--download-limit", "1G", "--upload-limit", "1G"],
            env,
          );
          assertSameTree(path.join(work, "expected1"), limited);
        } finally {
          cleanup(work);
        }
      } finally {
        cleanup(local);
      }
    });
  });
});
