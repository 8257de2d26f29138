/**
 * Encrypted backups end to end through the real frost command (main.ts, or dist/frost with FROST_BIN):
 * passphrase and write-only recipient modes across levels, wrong and missing keys, and tampering.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { cleanup, copyTree, frost, makeHostileTree, tempDir } from "../_cli.ts";
import { assertSameTree } from "../_tree.ts";

const MARK = "zebra-unicorn-7731"; // a file name that must never appear in clear on the storage

async function ok(args: string[], env?: Record<string, string>) {
  const r = await frost(args, { env });
  assert.equal(r.code, 0, `frost ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r;
}

function sleepMs(ms: number) {
  return new Promise((r) => setTimeout(r, ms));
}

/** Every stored byte of a storage folder, to search for clear text. */
function storedBytes(store: string): Buffer {
  const parts: Buffer[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else parts.push(fs.readFileSync(p), Buffer.from(p));
    }
  };
  walk(store);
  return Buffer.concat(parts);
}

/** Rewrites one stored object and its manifest entry, as someone with write access to the storage could. */
function tamper(
  store: string,
  series: string,
  id: string,
  kind: "segments" | "state",
  edit: (b: Buffer) => Buffer,
) {
  const manifestFile = path.join(store, series, "manifests", `${id}.json`);
  const manifest = JSON.parse(fs.readFileSync(manifestFile, "utf8"));
  const ref = manifest[kind].at(-1);
  const file = path.join(store, ref.key);
  const bytes = edit(fs.readFileSync(file));
  fs.writeFileSync(file, bytes);
  ref.size = bytes.length;
  ref.sha256 = crypto.createHash("sha256").update(bytes).digest("hex");
  fs.writeFileSync(manifestFile, JSON.stringify(manifest));
  return ref.key as string;
}

describe("encrypted backups with a passphrase", () => {
  let work: string;
  let src: string;
  let store: string;
  let pass: string;
  const ids: string[] = [];
  const expected: string[] = [];
  let common: string[];

  before(async () => {
    work = tempDir("enc");
    src = path.join(work, "src");
    store = path.join(work, "store");
    pass = path.join(work, "pass");
    fs.writeFileSync(pass, "correct horse battery staple\nignored second line\n");
    makeHostileTree(src, { bigFile: 3 * 1024 * 1024 });
    fs.writeFileSync(path.join(src, `${MARK}.txt`), `${MARK}\n`);
    common = ["--name", "enc", "--hostname", "h1", "--storage", store, "--encrypt-pass-file", pass];
    for (let level = 0; level < 3; level++) {
      await sleepMs(1100);
      const dst = path.join(work, `expected${level}`);
      copyTree(src, dst);
      expected.push(dst);
      const r = await ok(["backup", src, ...common, "--max-level", "3", "--json"]);
      const summary = JSON.parse(r.stdout);
      assert.equal(summary.level, level);
      ids.push(summary.id);
      fs.appendFileSync(path.join(src, "plain.txt"), `level ${level + 1}\n`);
      fs.rmSync(path.join(src, level === 0 ? "private" : "empty"), { force: true });
      fs.writeFileSync(path.join(src, `added-${level}`), "x".repeat(level * 1000));
    }
  });
  after(() => cleanup(work));

  it("restores every level exactly with the passphrase", async () => {
    const listed = JSON.parse((await ok(["list", "--storage", store, "--json"])).stdout);
    for (let i = 0; i < ids.length; i++) {
      const created = listed.find((l: { id: string }) => l.id === ids[i]).created;
      assert.equal(listed.find((l: { id: string }) => l.id === ids[i]).encrypted, true);
      const to = path.join(work, `restored${i}`);
      await ok(["restore", ...common, "--to", to, "--date", created]);
      assertSameTree(expected[i]!, to);
    }
  });

  it("keeps file names and the source path out of every stored object", () => {
    const all = storedBytes(store);
    assert.equal(all.indexOf(MARK), -1, "a file name is stored in clear");
    assert.equal(all.indexOf(src), -1, "the source path is stored in clear");
  });

  it("takes the passphrase from FROST_PASSPHRASE too", async () => {
    const to = path.join(work, "from-env");
    const args = ["restore", "--name", "enc", "--hostname", "h1", "--storage", store, "--to", to];
    await ok(args, { FROST_PASSPHRASE: "correct horse battery staple" });
    assertSameTree(expected[2]!, to);
  });

  it("refuses a wrong passphrase before writing anything", async () => {
    const wrong = path.join(work, "wrong");
    fs.writeFileSync(wrong, "incorrect horse\n");
    const to = path.join(work, "wrong-target");
    const r = await frost([
      ...["restore", "--name", "enc", "--hostname", "h1", "--storage", store],
      ...["--to", to, "--encrypt-pass-file", wrong],
    ]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^frost: Wrong passphrase for backup "\d{8}T\d{6}\.\d{3}Z"\n$/);
    assert.ok(!fs.existsSync(to), "nothing was written into the target");
    const b = await frost([
      "backup",
      src,
      "--name",
      "enc",
      "--hostname",
      "h1",
      "--storage",
      store,
      "--max-level",
      "3",
      ...[
        "--encrypt-pass-file",
        wrong,
      ],
    ]);
    assert.equal(b.code, 1);
    assert.match(b.stderr, /Wrong passphrase/);
  });

  it("names the flag to use when no key is given, and refuses an empty pass file", async () => {
    const r = await frost([
      "restore",
      "--name",
      "enc",
      "--hostname",
      "h1",
      "--storage",
      store,
      "--to",
      path.join(work, "nokey"),
    ]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /is encrypted: pass --encrypt-pass-file FILE/);
    const empty = path.join(work, "empty-pass");
    fs.writeFileSync(empty, "\n");
    const e = await frost(["backup", src, "--name", "x", "--storage", store, "--encrypt-pass-file", empty]);
    assert.equal(e.code, 2);
    assert.match(e.stderr, /empty/);
    const missing = await frost([
      "backup",
      src,
      "--name",
      "x",
      "--storage",
      store,
      "--encrypt-pass-file",
      "/nonexistent",
    ]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /Cannot read pass file "\/nonexistent"/);
  });

  it("detects a tampered or truncated data segment even when the manifest checksum was updated", async () => {
    const copy = path.join(work, "tamper-store");
    fs.cpSync(store, copy, { recursive: true });
    const key = tamper(copy, "h1_enc", ids[0]!, "segments", (b) => {
      b[Math.floor(b.length / 2)]! ^= 0x01;
      return b;
    });
    const to = path.join(work, "tampered");
    const r = await frost([
      "restore",
      ...common.slice(0, 4),
      "--storage",
      copy,
      "--encrypt-pass-file",
      pass,
      "--to",
      to,
    ]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /Cannot decrypt the data of backup/);
    assert.ok(key.length > 0);

    const copy2 = path.join(work, "truncate-store");
    fs.cpSync(store, copy2, { recursive: true });
    tamper(copy2, "h1_enc", ids[2]!, "segments", (b) => b.subarray(0, b.length - 100));
    const r2 = await frost([
      ...["restore", "--name", "enc", "--hostname", "h1", "--storage", copy2],
      ...["--encrypt-pass-file", pass, "--to", path.join(work, "truncated")],
    ]);
    assert.equal(r2.code, 1);
    assert.match(r2.stderr, /Cannot decrypt the data of backup .*(truncated|tampered)/);
  });

  it("detects a tampered engine state when the next level reads it", async () => {
    const copy = path.join(work, "state-store");
    fs.cpSync(store, copy, { recursive: true });
    tamper(copy, "h1_enc", ids[2]!, "state", (b) => {
      b[b.length - 5]! ^= 0x80;
      return b;
    });
    const r = await frost([
      ...["backup", src, "--name", "enc", "--hostname", "h1", "--storage", copy, "--max-level", "3"],
      ...["--encrypt-pass-file", pass],
    ]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /Cannot decrypt the state of backup/);
    const listed = JSON.parse((await ok(["list", "--storage", copy, "--json"])).stdout);
    assert.equal(listed.length, 3, "the failed backup is not listed");
  });
});

/** The children of `pid` whose command line matches `pattern`, with their nice values (Linux /proc). */
function childrenOf(pid: number, pattern: RegExp): { pid: string; nice: number }[] {
  const found: { pid: string; nice: number }[] = [];
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[1]) !== pid) continue;
      if (!pattern.test(fs.readFileSync(`/proc/${entry}/cmdline`, "utf8"))) continue;
      found.push({ pid: entry, nice: Number(fields[16]) });
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

describe("the passphrase key derivation", () => {
  it("runs in a child process at nice 19 beside the backup, and the backup restores", {
    skip: process.platform !== "linux" && "reads the child's priority from /proc (Linux only)",
  }, async () => {
    const work = tempDir("enc-kdf");
    try {
      const src = path.join(work, "src");
      fs.mkdirSync(src);
      fs.writeFileSync(path.join(src, "big.bin"), crypto.randomBytes(48 * 1024 * 1024));
      const pass = path.join(work, "pass");
      fs.writeFileSync(pass, "kdf child\n");
      const common = ["--name", "kdf", "--storage", path.join(work, "store"), "--encrypt-pass-file", pass];
      const seen = new Map<string, number>();
      let polling = true;
      const poll = async (pid: number) => {
        while (polling) {
          for (const c of childrenOf(pid, /__kdf|kdf_child\.ts/)) {
            seen.set(c.pid, Math.max(c.nice, seen.get(c.pid) ?? 0));
          }
          await sleepMs(5);
        }
      };
      let polled: Promise<void> = Promise.resolve();
      const r = await frost(["backup", src, ...common, "--compression", "none"], {
        onSpawn: (child) => polled = poll(child.pid!),
      });
      polling = false;
      await polled;
      assert.equal(r.code, 0, r.stderr);
      // One child at nice 19; a loaded machine may finish the data first, and the manifest then hurries the
      // key with a second child at frost's own priority.
      const nices = [...seen.values()].sort((a, b) => a - b);
      assert.ok(nices.length === 1 || nices.length === 2, `derivation children: ${nices}`);
      assert.deepEqual(nices, nices.length === 1 ? [19] : [os.getPriority(), 19].sort((a, b) => a - b));
      const out = path.join(work, "out");
      await ok(["restore", ...common, "--to", out]);
      assertSameTree(src, out);
    } finally {
      cleanup(work);
    }
  });
});

describe("write-only backups encrypted to a recipient", () => {
  it("back up without the identity, across levels, and restore only with it", async () => {
    const work = tempDir("recipient");
    try {
      const env = { FROST_CACHE_DIR: path.join(work, "cache") };
      const src = path.join(work, "src");
      makeHostileTree(src);
      const store = path.join(work, "store");
      const key = path.join(work, "frost.key");
      const gen = await ok(["key", "generate", "--out", key]);
      assert.match(gen.stdout, /^frost-recipient-1:/);
      assert.equal(fs.statSync(key).mode & 0o777, 0o600);
      const common = ["--name", "wo", "--hostname", "h1", "--storage", store];
      const args = [
        "backup",
        src,
        ...common,
        "--incremental",
        "--encrypt-recipient-file",
        `${key}.pub`,
        "--json",
      ];
      await sleepMs(1100);
      const first = JSON.parse((await ok(args, env)).stdout);
      fs.writeFileSync(path.join(src, "later"), "later\n");
      await sleepMs(1100);
      const expected = path.join(work, "expected");
      copyTree(src, expected);
      const second = JSON.parse((await ok(args, env)).stdout);
      assert.equal(second.level, 1);
      assert.equal(second.parent, first.id);
      assert.ok(second.bytesIn < 1000, "the level-1 backup only read what changed");

      const denied = await frost(["restore", ...common, "--to", path.join(work, "denied")], { env });
      assert.equal(denied.code, 2);
      assert.match(denied.stderr, /--encrypt-identity-file/);
      const other = path.join(work, "other.key");
      await ok(["key", "generate", "--out", other]);
      const wrong = await frost([
        "restore",
        ...common,
        "--to",
        path.join(work, "w"),
        "--encrypt-identity-file",
        other,
      ]);
      assert.equal(wrong.code, 1);
      assert.match(wrong.stderr, /Wrong identity for backup/);

      const to = path.join(work, "restored");
      await ok(["restore", ...common, "--to", to, "--encrypt-identity-file", key]);
      assertSameTree(expected, to);

      // A fresh host (no host key) cannot read the state: it starts a new chain instead of failing, with a
      // warning, so exit code 3.
      const fresh = await frost(args, { env: { FROST_CACHE_DIR: path.join(work, "fresh-cache") } });
      assert.equal(fresh.code, 3, fresh.stderr);
      assert.equal(JSON.parse(fresh.stdout).level, 0);
      assert.match(fresh.stderr, /starting a new chain/);
    } finally {
      cleanup(work);
    }
  });
});
