/**
 * An existing Freezer restore line, run unchanged with frost in place of freezer-agent, on a container made
 * in the layout Freezer's tar engine writes (GNU tar --listed-incremental of `.`, gzip, the metadata/ and
 * data/ objects): with no frost backup of the name there, frost reads the Freezer backups, with a notice.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { execFileSync } from "node:child_process";
import { cleanup, copyTree, frost, tempDir } from "../_cli.ts";
import { assertSameTree } from "../_tree.ts";
import { withServer } from "../_file_servers.ts";

const Z = 1700000000;
/** GNU tar's gnu format keeps whole seconds. */
const SECOND = 1_000_000_000n;

describe("frost --action restore|info on a Freezer container", () => {
  let dir: string;
  let store: string;
  const snapshots: string[] = [];

  /** One Freezer tar level of `src` (level 0 when `snar` is new) written into the container. */
  function freezerLevel(src: string, snar: string, level: number) {
    const ts = Z + 60 * level;
    const data = execFileSync("tar", ["--create", "-z", `--listed-incremental=${snar}`, "."], { cwd: src });
    const at = `h1_gz/${Z}/${level}_${ts}`;
    const put = (key: string, bytes: string | Uint8Array) => {
      fs.mkdirSync(path.dirname(path.join(store, key)), { recursive: true });
      fs.writeFileSync(path.join(store, key), bytes);
    };
    put(
      `metadata/tar/${at}/metadata`,
      JSON.stringify({ engine_name: "tar", compression: "gzip", encryption: false }),
    );
    put(`data/tar/${at}/engine_metadata`, fs.readFileSync(snar));
    put(`data/tar/${at}/data`, data);
  }

  before(() => {
    dir = tempDir("fzfallback");
    store = path.join(dir, "container");
    const src = path.join(dir, "src");
    const snar = path.join(dir, "snar");
    fs.mkdirSync(path.join(src, "sub"), { recursive: true });
    fs.writeFileSync(path.join(src, "a.txt"), "alpha\n");
    fs.writeFileSync(path.join(src, "sub", "b.txt"), "bravo\n");
    freezerLevel(src, snar, 0);
    snapshots.push(path.join(dir, "snap0"));
    copyTree(src, snapshots[0]!);
    fs.writeFileSync(path.join(src, "a.txt"), "alpha, changed\n");
    fs.rmSync(path.join(src, "sub", "b.txt"));
    fs.writeFileSync(path.join(src, "c.txt"), "charlie\n");
    freezerLevel(src, snar, 1);
    snapshots.push(path.join(dir, "snap1"));
    copyTree(src, snapshots[1]!);
  });
  after(() => cleanup(dir));

  const line = (...more: string[]) => [
    ...["--backup-name", "gz", "--hostname", "h1", "--storage", "local", "--container", store],
    ...more,
  ];

  it("restores the newest Freezer point with Freezer's own restore line", async () => {
    const to = path.join(dir, "restored");
    const r = await frost(["--action", "restore", ...line("--restore-abs-path", to)]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /note: no frost backup of "h1_gz" in .*, but Freezer backups: reading those/);
    assertSameTree(snapshots[1]!, to, { mtimePrecisionNs: SECOND });
  });

  it("restores an earlier point with --restore-from-date", async () => {
    const to = path.join(dir, "restored0");
    const date = new Date((Z + 30) * 1000).toISOString().slice(0, 19);
    const r = await frost([
      "--action",
      "restore",
      ...line("--restore-abs-path", to, "--restore-from-date", date),
    ], {
      env: { TZ: "UTC" },
    });
    assert.equal(r.code, 0, r.stderr);
    assertSameTree(snapshots[0]!, to, { mtimePrecisionNs: SECOND });
  });

  it("lists the Freezer backups with --action info", async () => {
    const r = await frost(["--action", "info", ...line()]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /note: no frost backup of "h1_gz"/);
    assert.match(r.stdout, /h1_gz/);
  });

  it("uses frost's own backups when the name has some, without a notice", async () => {
    const src = path.join(dir, "frostsrc");
    fs.mkdirSync(src);
    fs.writeFileSync(path.join(src, "frost.txt"), "made by frost\n");
    const b = await frost(["--action", "backup", "--path-to-backup", src, ...line()]);
    assert.equal(b.code, 0, b.stderr);
    const to = path.join(dir, "restored-frost");
    const r = await frost(["--action", "restore", ...line("--restore-abs-path", to)]);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /Freezer backups/);
    assert.equal(fs.readFileSync(path.join(to, "frost.txt"), "utf8"), "made by frost\n");
  });

  withServer("sshd", (env) => {
    it("restores over SFTP with Freezer's ssh storage line", async () => {
      // Freezer's SSH storage writes plain files: the same layout, in a folder the test server serves.
      const url = new URL(env.FROST_TEST_SFTP_URL!);
      const container = path.join(
        decodeURIComponent(url.pathname),
        `fzfallback-${process.pid}-${Date.now()}`,
      );
      fs.mkdirSync(container);
      try {
        execFileSync("cp", ["-r", path.join(store, "metadata"), path.join(store, "data"), container]);
        const to = path.join(dir, "restored-sftp");
        const r = await frost([
          ...["--action", "restore", "--backup-name", "gz", "--hostname", "h1", "--storage", "ssh"],
          ...["--ssh-host", url.hostname, "--ssh-port", url.port, "--ssh-username", url.username],
          ...["--ssh-key", env.FROST_TEST_SFTP_KEY!, "--container", container, "--restore-abs-path", to],
        ], { env: { FROST_SFTP_KNOWN_HOSTS: env.FROST_TEST_SFTP_KNOWN_HOSTS! } });
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stderr, /note: no frost backup of "h1_gz" in sftp:.*, but Freezer backups/);
        assertSameTree(snapshots[1]!, to, { mtimePrecisionNs: SECOND });
      } finally {
        cleanup(container);
      }
    });
  });

  it("still says there is no backup when the container has neither", async () => {
    const r = await frost(
      ["--action", "restore", ...line("--restore-abs-path", path.join(dir, "x"))].map((a) =>
        a === "gz" ? "nothing" : a
      ),
    );
    assert.equal(r.code, 1);
    assert.match(r.stderr, /No backup of "h1_nothing"/);
  });
});
