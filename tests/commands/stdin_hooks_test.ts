/**
 * `frost backup --stdin` (a stream piped in, restored to a file or to stdout), `--pre-command` and
 * `--post-command`, and a series that changes engine — through the real frost, on real files.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { cleanup, frost, pseudoRandom, tempDir } from "../_cli.ts";

interface Listed {
  id: string;
  level: number;
  parent: string | null;
}

describe("backup --stdin and restore --stdout", () => {
  let dir: string;
  let storage: string;
  let dump: string;
  const data = pseudoRandom(5 << 20, 3);

  before(() => {
    dir = tempDir("stdin");
    storage = path.join(dir, "storage");
    dump = path.join(dir, "dump.bin");
    fs.writeFileSync(dump, data);
  });
  after(() => cleanup(dir));

  it("stores the stream and gives it back on stdout and as a file, byte for byte", async () => {
    const b = await frost(
      ["backup", "--stdin", "--name", "db", "--stdin-name", "db.dump", "--storage", storage, "--json"],
      { stdinFile: dump },
    );
    assert.equal(b.code, 0, b.stderr);
    const summary = JSON.parse(b.stdout);
    assert.equal(summary.level, 0);
    assert.equal(summary.bytesIn, data.length);

    const out = path.join(dir, "out.bin");
    const r = await frost(["restore", "--name", "db", "--storage", storage, "--stdout"], { stdoutFile: out });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /into standard output/);
    assert.deepEqual(fs.readFileSync(out), Buffer.from(data));

    const target = path.join(dir, "restored");
    const f = await frost(["restore", "--name", "db", "--storage", storage, "--to", target]);
    assert.equal(f.code, 0, f.stderr);
    assert.deepEqual(fs.readdirSync(target), ["db.dump"]);
    assert.deepEqual(fs.readFileSync(path.join(target, "db.dump")), Buffer.from(data));
    assert.equal(fs.statSync(path.join(target, "db.dump")).mode & 0o777, 0o600);

    const v = await frost(["verify", "--name", "db", "--storage", storage, "--read-data"]);
    assert.equal(v.code, 0, v.stderr + v.stdout);
  });

  it("is always a full backup, also when level options are asked for", async () => {
    const again = await frost(["backup", "--stdin", "--name", "db", "--storage", storage], {
      stdinFile: dump,
    });
    assert.equal(again.code, 0, again.stderr);
    const list = await frost(["list", "--name", "db", "--storage", storage, "--json"]);
    const rows = JSON.parse(list.stdout) as Listed[];
    assert.deepEqual(rows.map((r) => [r.level, r.parent]), [[0, null], [0, null]]);
    const lvl = await frost(["backup", "--stdin", "--name", "db", "--storage", storage, "--max-level", "3"], {
      stdinFile: dump,
    });
    assert.equal(lvl.code, 2);
    assert.match(lvl.stderr, /--max-level: a --stdin backup is always a full one/);
    const both = await frost(["backup", "--stdin", dir, "--name", "db", "--storage", storage]);
    assert.equal(both.code, 2);
  });

  it("encrypts a stream like any backup", async () => {
    const env = { FROST_PASSPHRASE: "correct horse" };
    const b = await frost(["backup", "--stdin", "--name", "secret", "--storage", storage], {
      stdinFile: dump,
      env,
    });
    assert.equal(b.code, 0, b.stderr);
    const out = path.join(dir, "secret.bin");
    const r = await frost(["restore", "--name", "secret", "--storage", storage, "--stdout"], {
      stdoutFile: out,
      env,
    });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(fs.readFileSync(out), Buffer.from(data));
    const none = await frost(["restore", "--name", "secret", "--storage", storage, "--stdout"], {
      stdoutFile: out,
    });
    assert.equal(none.code, 2);
    assert.match(none.stderr, /encrypt-pass-file/);
  });

  it("warns about an empty stream, and --stdout refuses a tree backup", async () => {
    const empty = path.join(dir, "empty");
    fs.writeFileSync(empty, "");
    const e = await frost(["backup", "--stdin", "--name", "nothing", "--storage", storage], {
      stdinFile: empty,
    });
    assert.equal(e.code, 3);
    assert.match(e.stderr, /standard input was empty/);

    const tree = path.join(dir, "tree");
    fs.mkdirSync(tree);
    fs.writeFileSync(path.join(tree, "a"), "a");
    assert.equal((await frost(["backup", tree, "--name", "tree", "--storage", storage])).code, 0);
    const r = await frost(["restore", "--name", "tree", "--storage", storage, "--stdout"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--stdout restores backups made with "frost backup --stdin"/);
  });
});

describe("--pre-command and --post-command", () => {
  let dir: string;
  let storage: string;

  before(() => {
    dir = tempDir("hooks");
    storage = path.join(dir, "storage");
  });
  after(() => cleanup(dir));

  it("runs the pre-command before reading the source (it may make it) and the post-command after", async () => {
    const src = path.join(dir, "made-by-pre");
    const log = path.join(dir, "hooks.log");
    const r = await frost([
      "backup",
      src,
      "--name",
      "hooked",
      "--storage",
      storage,
      "--json",
      "--pre-command",
      `mkdir -p '${src}' && echo dumped > '${src}/dump' && echo "pre $FROST_BACKUP_NAME $FROST_BACKUP_LEVEL" >> '${log}'; echo to-stdout`,
      "--post-command",
      `echo "post $FROST_BACKUP_STATUS $FROST_BACKUP_ID" >> '${log}'`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    // The hooks' output goes to stderr: stdout holds the JSON summary only.
    const summary = JSON.parse(r.stdout);
    assert.match(r.stderr, /to-stdout/);
    assert.deepEqual(fs.readFileSync(log, "utf8").trim().split("\n"), [
      "pre hooked 0",
      `post ok ${summary.id}`,
    ]);
    const target = path.join(dir, "restored");
    assert.equal(
      (await frost(["restore", "--name", "hooked", "--storage", storage, "--to", target])).code,
      0,
    );
    assert.equal(fs.readFileSync(path.join(target, "dump"), "utf8"), "dumped\n");
  });

  it("a failing pre-command backs up nothing and skips the post-command", async () => {
    const src = path.join(dir, "src");
    fs.mkdirSync(src, { recursive: true });
    const log = path.join(dir, "fail.log");
    const r = await frost([
      "backup",
      src,
      "--name",
      "prefail",
      "--storage",
      storage,
      "--pre-command",
      "echo locking failed >&2; exit 7",
      "--post-command",
      `echo post >> '${log}'`,
    ]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /locking failed/);
    assert.match(r.stderr, /--pre-command failed \(exit code 7\): nothing was backed up/);
    assert.equal(fs.existsSync(log), false);
    const list = await frost(["list", "--name", "prefail", "--storage", storage, "--json"]);
    assert.deepEqual(JSON.parse(list.stdout), []);
  });

  it("runs the post-command with status failed when the backup fails, and a failing post-command gives exit 3", async () => {
    const src = path.join(dir, "src2");
    fs.mkdirSync(src, { recursive: true });
    fs.writeFileSync(path.join(src, "f"), "f");
    const log = path.join(dir, "post.log");
    // Fault injection: the pre-command puts a file where the backup's objects must go.
    const r = await frost([
      "backup",
      src,
      "--name",
      "postfail",
      "--hostname",
      "h1",
      "--storage",
      storage,
      "--pre-command",
      `mkdir -p '${storage}/h1_postfail' && touch '${storage}/h1_postfail/backups'`,
      "--post-command",
      `echo "post $FROST_BACKUP_STATUS" >> '${log}'`,
    ]);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(fs.readFileSync(log, "utf8"), "post failed\n");
    fs.rmSync(path.join(storage, "h1_postfail/backups"));

    const ok = await frost([
      "backup",
      src,
      "--name",
      "postfail",
      "--hostname",
      "h1",
      "--storage",
      storage,
      "--post-command",
      "exit 5",
    ]);
    assert.equal(ok.code, 3, ok.stderr);
    assert.match(ok.stderr, /--post-command failed \(exit code 5\)/);
    const list = await frost([
      "list",
      "--name",
      "postfail",
      "--hostname",
      "h1",
      "--storage",
      storage,
      "--json",
    ]);
    assert.equal(JSON.parse(list.stdout).length, 1);
  });
});

describe("a series that changes engine", () => {
  it("starts a new chain instead of reading the other engine's state", async () => {
    const dir = tempDir("switch");
    try {
      const src = path.join(dir, "src");
      const storage = path.join(dir, "storage");
      fs.mkdirSync(src);
      fs.writeFileSync(path.join(src, "f"), "one");
      const common = ["--name", "sw", "--storage", storage, "--max-level", "3", "--json"];
      const a = await frost(["backup", src, ...common]);
      assert.equal(a.code, 0, a.stderr);
      const b = await frost(["backup", src, ...common, "--engine", "rsync"]);
      assert.equal(b.code, 0, b.stderr);
      assert.match(
        b.stderr,
        /made with the tar engine, this backup uses rsync: starting a new chain at level 0/,
      );
      assert.equal(JSON.parse(b.stdout).level, 0);
      const c = await frost(["backup", src, ...common, "--engine", "rsync"]);
      assert.equal(JSON.parse(c.stdout).level, 1);
      const target = path.join(dir, "r");
      assert.equal((await frost(["restore", "--name", "sw", "--storage", storage, "--to", target])).code, 0);
      assert.equal(fs.readFileSync(path.join(target, "f"), "utf8"), "one");
    } finally {
      cleanup(dir);
    }
  });
});
