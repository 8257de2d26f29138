/**
 * Storages the command line refuses, through the real frost (main.ts, or dist/frost with FROST_BIN): a
 * `memory://` storage (it would keep nothing), a storage host that does not resolve, and a storage path
 * that is a file.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { cleanup, frost, tempDir } from "../_cli.ts";

describe("storages the command line refuses", () => {
  let work: string;
  let src: string;

  before(() => {
    work = tempDir("bad-storage");
    src = path.join(work, "src");
    fs.mkdirSync(src);
    fs.writeFileSync(path.join(src, "a.txt"), "a\n");
  });

  after(() => cleanup(work));

  it("backup --storage memory://x is a usage error that does not advertise memory://", async () => {
    const r = await frost(["backup", src, "--name", "m", "--storage", "memory://x"]);
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.equal(r.stdout, "");
    assert.match(r.stderr, /^frost: Unknown storage "memory:\/\/x": frost supports file:\/\/ paths, /);
    assert.ok(!/memory:\/\/[^x]/.test(r.stderr), r.stderr);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
  });

  it("a storage host name that does not resolve fails at once with one line, not after the retry budget", async () => {
    const s3 = ["--s3-endpoint", "http://frost-test.invalid:18080", "--s3-path-style"];
    for (
      const [spec, args, env] of [
        ["s3://bucket/frost", s3, { AWS_ACCESS_KEY_ID: "a", AWS_SECRET_ACCESS_KEY: "b" }],
        ["ftp://backup@frost-test.invalid/frost", [], { FROST_FTP_PASSWORD: "x" }],
      ] as const
    ) {
      // The default budget (15 minutes) would outlast the test if an unknown host were retried here.
      const r = await frost(["backup", src, "--name", "n", "--storage", spec, ...args], { env });
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /^frost: .*frost-test\.invalid.*: unknown host \(ENOTFOUND\)\n$/);
      assert.doesNotMatch(r.stderr, /retry|not answering/i);
    }
  });

  for (const command of ["backup", "list", "restore"]) {
    it(`${command} with a storage path that is a file fails with one line naming it`, async () => {
      const file = path.join(work, "a-file");
      fs.writeFileSync(file, "not a storage\n");
      const args = command === "backup"
        ? ["backup", src, "--name", "f", "--storage", file]
        : command === "list"
        ? ["list", "--storage", file]
        : ["restore", "--name", "f", "--storage", file, "--to", path.join(work, "out")];
      const r = await frost(args);
      assert.equal(r.code, 1, r.stderr);
      assert.equal(r.stderr, `frost: Cannot use storage "${file}": it is not a folder\n`);
      assert.equal(fs.readFileSync(file, "utf8"), "not a storage\n");
      assert.ok(!fs.existsSync(path.join(work, "out")));
    });
  }
});
