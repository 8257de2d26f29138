/**
 * End-to-end: extended attributes, POSIX ACLs, file capabilities and SELinux labels through the real frost
 * (main.ts, or dist/frost with FROST_BIN=dist/frost), both engines, levels 0..2; GNU tar as the oracle of
 * the tar engine's level-0 stream; a restore as `nobody`; `--no-xattrs` and `--no-devices`.
 * getfattr/setfattr (attr) and getfacl/setfacl (acl) do the checking.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import process from "node:process";
import crypto from "node:crypto";
import { execFileSync, execSync, spawnSync } from "node:child_process";
import { cleanup, frost, frostCommand, hasStrace, tempDir } from "../_cli.ts";
import { tarRestore } from "../../engines/tar_restore.ts";
import { rsyncBackup } from "../../engines/rsync_backup.ts";
import { rsyncRestore } from "../../engines/rsync_restore.ts";
import type { Warning } from "../../engines/engine.ts";

const isRoot = process.getuid?.() === 0;
const NOBODY = 65534;

function sh(cmd: string, args: string[], cwd?: string): string {
  return execFileSync(cmd, args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

function hasCommand(name: string): boolean {
  try {
    execSync(`command -v ${name}`, { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** Gives `file` the capability cap_net_raw+ep (what /usr/bin/ping carries), with setcap when installed. */
function setCapability(file: string): void {
  if (hasCommand("setcap")) sh("setcap", ["cap_net_raw+ep", file]);
  // The same value, raw: a version-2 capability with CAP_NET_RAW (bit 13) permitted and effective.
  else {sh("setfattr", [
      "-n",
      "security.capability",
      "-v",
      "0x0100000200200000000000000000000000000000",
      file,
    ]);}
}

/** The relative paths of a tree, the root "." first, sorted. */
function paths(root: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const name of fs.readdirSync(path.join(root, rel)).sort()) {
      const child = rel === "." ? name : `${rel}/${name}`;
      out.push(child);
      if (fs.lstatSync(path.join(root, child)).isDirectory()) walk(child);
    }
  };
  walk(".");
  return [".", ...out];
}

interface DescribeOptions {
  /** Leave out owners (a restore as non-root makes everything the restorer's). */
  owners?: boolean;
  /** Leave out xattrs whose name matches. */
  drop?: RegExp;
}

/**
 * Everything the tests compare of a tree, as text: per entry its type, mode, owner, size, content hash or
 * link target, every xattr (getfattr, hex values, symlinks' own) and its ACLs (getfacl).
 */
function describeTree(root: string, options: DescribeOptions = {}): string {
  const lines: string[] = [];
  for (const rel of paths(root)) {
    const abs = path.join(root, rel);
    const st = fs.lstatSync(abs);
    const type = st.isDirectory()
      ? "d"
      : st.isSymbolicLink()
      ? "l"
      : st.isFIFO()
      ? "p"
      : st.isFile()
      ? "f"
      : "?";
    const what = st.isFile()
      ? crypto.createHash("sha256").update(fs.readFileSync(abs)).digest("hex").slice(0, 16)
      : st.isSymbolicLink()
      ? `-> ${fs.readlinkSync(abs)}`
      : "";
    const owner = options.owners === false ? "" : ` ${st.uid}:${st.gid}`;
    lines.push(
      `${rel} ${type} ${(st.mode & 0o7777).toString(8)}${owner} ${st.isFile() ? st.size : ""} ${what}`,
    );
    const attrs = sh("getfattr", ["-h", "-d", "-m", "-", "-e", "hex", "--absolute-names", "--", rel], root)
      .split("\n")
      .filter((l) => l !== "" && !l.startsWith("# file:") && !(options.drop?.test(l) ?? false));
    for (const a of attrs) lines.push(`  x ${a}`);
    if (!st.isSymbolicLink()) {
      const acl = sh("getfacl", ["-c", "-E", "--", rel], root).split("\n").filter((l) => l !== "");
      for (const a of acl) lines.push(`  a ${a}`);
    }
  }
  return lines.join("\n");
}

async function ok(args: string[], what = args.join(" ")): Promise<string> {
  const r = await frost(args);
  assert.equal(r.code, 0, `frost ${what} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/** Runs frost as nobody (uid and gid 65534, no groups) with `home` as its home; its exit code and stderr. */
function asNobody(home: string, args: string[]): { code: number | null; stderr: string } {
  const [cmd, ...pre] = frostCommand();
  const r = spawnSync("setpriv", [
    "--reuid",
    String(NOBODY),
    "--regid",
    String(NOBODY),
    "--clear-groups",
    "env",
    `HOME=${home}`,
    `DENO_DIR=${home}/deno`,
    cmd!,
    ...pre,
    ...args,
  ], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  return { code: r.status, stderr: r.stderr };
}

const sleepMs = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The data segments of a backup, decompressed, as one tar stream written to `file`. */
function dataStream(store: string, series: string, id: string, file: string): string {
  const dir = path.join(store, series, "backups", id, "data");
  const segs = fs.readdirSync(dir).sort().map((s) => path.join(dir, s));
  execSync(`cat ${segs.map((s) => `'${s}'`).join(" ")} | zstd -dc > '${file}'`);
  return file;
}

for (const engine of ["tar", "rsync"]) {
  describe(`${engine} engine: xattrs, ACLs, capabilities and SELinux labels`, {
    skip: !isRoot && "needs root (trusted.* and security.* attributes, capabilities, a restore as nobody)",
  }, () => {
    let work: string;
    let src: string;
    let store: string;
    const expected: string[] = [];
    const ids: string[] = [];
    const common = () => ["--name", "x", "--hostname", "h1", "--storage", store];

    const backup = async (snapAt: number) => {
      // Changes and backups a second apart: a change within a second of a backup's start is re-sent by
      // the next level anyway, which would hide a change detection that does not work.
      await sleepMs(1100);
      expected[snapAt] = describeTree(src);
      const out = await ok(["backup", src, ...common(), "--max-level", "5", "--json"]);
      const summary = JSON.parse(out) as { id: string; level: number; warnings: number };
      assert.equal(summary.level, snapAt);
      assert.equal(summary.warnings, 0);
      ids[snapAt] = summary.id;
      await sleepMs(1100);
    };

    before(async () => {
      work = tempDir(`xattrs-${engine}`);
      fs.chmodSync(work, 0o755); // the restore as nobody reads the storage
      src = path.join(work, "src");
      store = path.join(work, "store");
      const at = (rel: string) => path.join(src, rel);
      fs.mkdirSync(src);
      fs.writeFileSync(at("f"), "acl file\n", { mode: 0o640 });
      fs.chmodSync(at("f"), 0o640);
      sh("setfacl", ["-m", "u:nobody:rw", at("f")]); // mask rw-: stat shows group rw-, the group entry is r--
      sh("setfattr", ["-n", "user.x", "-v", "hello", at("f")]);
      sh("setfattr", ["-n", "user.bin", "-v", "0x00ff0a3d25", at("f")]); // NUL, 0xff, newline, '=', '%'
      fs.writeFileSync(at("g"), "trusted\n");
      sh("setfattr", ["-n", "trusted.x", "-v", "tv", at("g")]);
      sh("setfattr", ["-n", "user.x", "-v", "one", at("g")]);
      fs.writeFileSync(at("cap"), "#!/bin/sh\n", { mode: 0o755 });
      fs.chmodSync(at("cap"), 0o755);
      setCapability(at("cap"));
      fs.writeFileSync(at("label"), "labelled\n");
      sh("setfattr", ["-n", "security.selinux", "-v", "system_u:object_r:etc_t:s0", at("label")]);
      fs.writeFileSync(at("plain"), "no attributes\n");
      fs.symlinkSync("g", at("sym"));
      sh("setfattr", ["-h", "-n", "trusted.s", "-v", "on a symlink", at("sym")]);
      fs.mkdirSync(at("d"));
      sh("setfacl", ["-d", "-m", "u:nobody:rx", at("d")]);
      sh("setfacl", ["-m", "g:nogroup:rx", at("d")]);
      fs.writeFileSync(at("d/inherited"), "inherits the default ACL\n");
      execFileSync("mkfifo", [at("d/fifo")]);
      fs.mkdirSync(at("d/sub")); // inherits the default ACL as its own default and access ACL
      fs.mkdirSync(at("e"));
      sh("setfattr", ["-n", "user.dir", "-v", "1", at("e")]);
      fs.writeFileSync(at("e/plain"), "x\n");
      await backup(0);

      // Level 1: an ACL-only change, an xattr-only change, a changed default ACL with a new file made under
      // it, an xattr removed from a directory.
      sh("setfacl", ["-m", "u:daemon:r", at("f")]);
      sh("setfattr", ["-n", "user.x", "-v", "two", at("g")]);
      sh("setfacl", ["-d", "-m", "g:nogroup:rwx", at("d")]);
      fs.writeFileSync(at("d/new"), "made under the new default ACL\n");
      fs.writeFileSync(at("d/stripped"), "its inherited ACL removed\n");
      sh("setfacl", ["-b", at("d/stripped")]);
      sh("setfattr", ["-x", "user.dir", at("e")]);
      await backup(1);

      // Level 2: ACLs removed (the mode's group bits become the group entry's again), a capability
      // removed and another one added, the default ACL removed, a symlink's attribute changed.
      sh("setfacl", ["-b", at("f")]);
      sh("setfattr", ["-x", "security.capability", at("cap")]);
      fs.writeFileSync(at("cap2"), "#!/bin/sh\n", { mode: 0o750 });
      fs.chmodSync(at("cap2"), 0o750);
      setCapability(at("cap2"));
      sh("setfacl", ["-k", at("d")]);
      sh("setfattr", ["-h", "-n", "trusted.s", "-v", "changed", at("sym")]);
      await backup(2);
    });

    after(() => cleanup(work));

    it("restores every level exactly: xattrs of every namespace, ACLs with their mask, capabilities, modes", async () => {
      for (let i = 0; i < 3; i++) {
        const to = path.join(work, `restored${i}`);
        const listed = JSON.parse(await ok(["list", ...common(), "--json"])) as {
          id: string;
          created: string;
        }[];
        const created = listed.find((l) => l.id === ids[i])!.created;
        await ok(["restore", ...common(), "--to", to, "--date", created]);
        assert.equal(describeTree(to), expected[i], `level ${i}`);
      }
      // The restore is not a no-op: the source had them.
      assert.match(expected[0]!, /user:nobody:rw-/);
      assert.match(expected[0]!, /group::r--/);
      assert.match(expected[0]!, /security\.capability=0x/);
      assert.match(expected[0]!, /trusted\.s=0x/);
      assert.match(expected[1]!, /default:group:nogroup:rwx/);
    });

    if (engine === "tar") {
      it("stores an xattr- or ACL-only change again at the next level, and leaves unchanged files out", () => {
        const names = (i: number) =>
          sh("tar", ["-tf", dataStream(store, "h1_x", ids[i]!, path.join(work, `level${i}.tar`))]).split(
            "\n",
          );
        const level1 = names(1);
        assert.ok(level1.includes("./f"), "the ACL-only change of f");
        assert.ok(level1.includes("./g"), "the xattr-only change of g");
        assert.ok(!level1.includes("./cap") && !level1.includes("./plain"), level1.join(" "));
        assert.ok(names(2).includes("./sym"), "the symlink's changed attribute");
      });

      it("writes a level-0 stream that GNU tar --xattrs --acls restores exactly", () => {
        const out = path.join(work, "gnutar0");
        fs.mkdirSync(out);
        const archive = dataStream(store, "h1_x", ids[0]!, path.join(work, "level0.tar"));
        sh("tar", [
          "--xattrs",
          "--xattrs-include=*",
          "--acls",
          "--incremental",
          "-x",
          "-f",
          archive,
          "-C",
          out,
        ]);
        assert.equal(describeTree(out), expected[0]);
      });
    }

    it("restores as nobody what the kernel allows, with one warning per kind refused (exit 3)", () => {
      const to = path.join(work, "as-nobody");
      fs.mkdirSync(to);
      fs.chownSync(to, NOBODY, NOBODY);
      const home = path.join(work, "nobody-home");
      fs.mkdirSync(home);
      fs.chownSync(home, NOBODY, NOBODY);
      sh("chmod", ["-R", "a+rX", store]); // the storage keeps its folders private
      const r = asNobody(home, ["restore", ...common(), "--to", to, "--overwrite"]);
      assert.equal(r.code, 3, r.stderr);
      const warnings = r.stderr.split("\n").filter((l) => l.startsWith("frost: warning:"));
      // trusted.* (on g and on the symlink, at every level) and the capabilities: one warning each. Whether
      // a non-root user may set security.selinux depends on the kernel's security modules: one warning when
      // it may not, else the label is restored.
      const selinux = warnings.filter((w) => /SELinux labels .* not restored/.test(w)).length;
      assert.equal(warnings.filter((w) => /trusted\.\* extended attributes not restored/.test(w)).length, 1);
      assert.equal(warnings.filter((w) => /file capabilities .* not restored/.test(w)).length, 1);
      assert.ok(selinux <= 1, r.stderr);
      assert.equal(warnings.length, 2 + selinux, r.stderr);
      // Everything else is as in the source: user.* attributes, ACLs, modes.
      const drop = selinux ? /^(trusted\.|security\.)/ : /^(trusted\.|security\.capability)/;
      assert.equal(describeTree(to, { owners: false, drop }), describeTree(src, { owners: false, drop }));
    });
  });
}

describe("--no-xattrs and --no-devices", {
  skip: !isRoot && "needs root (a device node, trusted.* attributes)",
}, () => {
  let work: string;
  let src: string;
  let store: string;
  const common = () => ["--hostname", "h1", "--storage", store];

  before(async () => {
    work = tempDir("no-xattrs");
    src = path.join(work, "src");
    store = path.join(work, "store");
    fs.mkdirSync(src);
    fs.writeFileSync(path.join(src, "f"), "x\n", { mode: 0o640 });
    fs.chmodSync(path.join(src, "f"), 0o640);
    sh("setfattr", ["-n", "user.x", "-v", "hello", path.join(src, "f")]);
    sh("setfacl", ["-m", "u:nobody:rw", path.join(src, "f")]);
    execFileSync("mknod", [path.join(src, "null"), "c", "1", "3"]);
    await ok(["backup", src, "--name", "with", ...common()]);
    await ok(["backup", src, "--name", "without", "--no-xattrs", ...common()]);
  });

  after(() => cleanup(work));

  const attrs = (file: string) => sh("getfattr", ["-d", "-m", "-", "--absolute-names", file]);

  it("backup --no-xattrs stores none, restore --no-xattrs sets none", async () => {
    for (const [name, flags] of [["without", []], ["with", ["--no-xattrs"]]] as const) {
      const to = path.join(work, `${name}${flags.length}`);
      await ok(["restore", "--name", name, ...common(), "--to", to, ...flags]);
      assert.equal(attrs(path.join(to, "f")), "");
      // The mode as stat showed it, the ACL mask in the group bits, as before this feature.
      assert.equal(fs.statSync(path.join(to, "f")).mode & 0o777, 0o660);
    }
    const to = path.join(work, "with-all");
    await ok(["restore", "--name", "with", ...common(), "--to", to]);
    assert.match(attrs(path.join(to, "f")), /user\.x="hello"/);
  });

  for (const engine of ["tar", "rsync"]) {
    it(`restore --no-devices skips device nodes with a notice (${engine} engine)`, async () => {
      await ok(["backup", src, "--name", `dev-${engine}`, "--engine", engine, ...common()]);
      const plain = path.join(work, `dev-${engine}`);
      await ok(["restore", "--name", `dev-${engine}`, ...common(), "--to", plain]);
      assert.ok(fs.lstatSync(path.join(plain, "null")).isCharacterDevice());
      const to = path.join(work, `nodev-${engine}`);
      const r = await frost(["restore", "--name", `dev-${engine}`, ...common(), "--to", to, "--no-devices"]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /null: char device skipped \(--no-devices\)/);
      assert.ok(!fs.existsSync(path.join(to, "null")));
      assert.ok(fs.existsSync(path.join(to, "f")));
    });
  }
});

describe("the tar engine restores what GNU tar --xattrs --acls archived", {
  skip: !isRoot && "needs root (trusted.* attributes, capabilities)",
}, () => {
  let work: string;
  let src: string;
  before(() => {
    work = tempDir("gnu-xattrs");
    src = path.join(work, "src");
    fs.mkdirSync(path.join(src, "d"), { recursive: true });
    fs.writeFileSync(path.join(src, "f"), "x\n", { mode: 0o640 });
    fs.chmodSync(path.join(src, "f"), 0o640);
    sh("setfacl", ["-m", "u:nobody:rw,g:nogroup:r", path.join(src, "f")]);
    sh("setfattr", ["-n", "user.bin", "-v", "0x00ff0a3d25", path.join(src, "f")]);
    sh("setfattr", ["-n", "trusted.t", "-v", "t", path.join(src, "f")]);
    fs.writeFileSync(path.join(src, "cap"), "#!/bin/sh\n");
    setCapability(path.join(src, "cap"));
    sh("setfacl", ["-d", "-m", "u:nobody:rx", path.join(src, "d")]);
    fs.writeFileSync(path.join(src, "d/inherited"), "y\n");
    sh("setfacl", ["-b", path.join(src, "d/inherited")]); // no ACL, in a directory with a default ACL
  });
  after(() => cleanup(work));

  const restore = async (archive: Uint8Array, to: string): Promise<Warning[]> => {
    fs.mkdirSync(to);
    const warnings: Warning[] = [];
    const run = tarRestore(to, { onWarning: (w) => warnings.push(w) });
    const writer = run.writable.getWriter();
    // Odd chunk sizes split the pax records (binary values included) across chunks.
    for (let i = 0; i < archive.length; i += 333) await writer.write(archive.subarray(i, i + 333));
    await writer.close();
    await run.done;
    return warnings;
  };

  it("xattrs of every namespace, ACLs and capabilities (--xattrs --xattrs-include='*' --acls)", async () => {
    const archive = execFileSync("tar", [
      "--xattrs",
      "--xattrs-include=*",
      "--acls",
      "--format=posix",
      "-C",
      src,
      "-cf",
      "-",
      ".",
    ], { maxBuffer: 64 << 20 });
    const to = path.join(work, "all");
    assert.deepEqual(await restore(archive, to), []);
    assert.equal(describeTree(to), describeTree(src));
  });

  it("ACLs from their text alone (--acls without --xattrs)", async () => {
    const archive = execFileSync("tar", ["--acls", "--format=posix", "-C", src, "-cf", "-", "."], {
      maxBuffer: 64 << 20,
    });
    const to = path.join(work, "acls");
    assert.deepEqual(await restore(archive, to), []);
    const drop = /^(user|trusted|security)\./;
    assert.equal(describeTree(to, { drop }), describeTree(src, { drop }));
  });

  it("reports an ACL the kernel rejects once, not once per file, and restores the rest", async () => {
    const two = path.join(work, "two");
    fs.mkdirSync(two);
    for (const name of ["a", "b"]) {
      fs.writeFileSync(path.join(two, name), `${name}\n`);
      sh("setfacl", ["-m", "u:nobody:rw", path.join(two, name)]);
      sh("setfattr", ["-n", "user.x", "-v", name, path.join(two, name)]);
    }
    const archive = new Uint8Array(
      execFileSync("tar", ["--xattrs", "--xattrs-include=*", "--format=posix", "-C", two, "-cf", "-", "."]),
    );
    // Give each stored ACL's first entry an unknown tag (0x40): same length, so the pax records stay valid.
    const acl = [2, 0, 0, 0, 1, 0, 6, 0];
    let patched = 0;
    for (let i = 0; i + acl.length <= archive.length; i++) {
      if (acl.every((b, k) => archive[i + k] === b)) {
        archive[i + 4] = 0x40;
        patched++;
      }
    }
    assert.equal(patched, 2);
    const to = path.join(work, "rejected");
    const warnings = await restore(archive, to);
    assert.equal(warnings.length, 1, JSON.stringify(warnings));
    assert.match(warnings[0]!.message, /^POSIX ACLs not restored: invalid argument \(reported once/);
    for (const name of ["a", "b"]) {
      assert.match(
        sh("getfattr", ["-d", "--absolute-names", path.join(to, name)]),
        new RegExp(`user\\.x="${name}"`),
      );
    }
  });
});

describe("rsync stream versions", () => {
  let work: string;
  let src: string;
  before(() => {
    work = tempDir("rsync-versions");
    src = path.join(work, "src");
    fs.mkdirSync(src);
    fs.writeFileSync(path.join(src, "f"), "x\n");
    sh("setfattr", ["-n", "user.x", "-v", "hello", path.join(src, "f")]); // any user may set user.*
  });
  after(() => cleanup(work));

  const streamOf = async (xattrs: boolean): Promise<Uint8Array> => {
    const run = rsyncBackup(src, { xattrs });
    const [data] = await Promise.all([
      new Response(run.stream).arrayBuffer(),
      new Response(run.state).text(),
    ]);
    await run.done;
    return new Uint8Array(data);
  };
  const restore = async (stream: Uint8Array, to: string): Promise<void> => {
    fs.mkdirSync(to);
    const run = rsyncRestore(to);
    const writer = run.writable.getWriter();
    await Promise.allSettled([writer.write(stream), writer.close()]);
    await run.done;
  };

  it("writes version 3 with an X record for an entry's xattrs, and still reads versions 2 and 1", async () => {
    const v3 = await streamOf(true);
    assert.equal(v3[7], 3);
    // Version 2 is version 3 without H (hole) records: this file has none.
    const v2 = v3.slice();
    v2[7] = 2;
    await restore(v2, path.join(work, "v2"));
    assert.match(sh("getfattr", ["-d", "--absolute-names", path.join(work, "v2/f")]), /user\.x="hello"/);
    // A version 1 stream is a version 2 stream without X records.
    const v1 = await streamOf(false);
    v1[7] = 1;
    await restore(v1, path.join(work, "v1"));
    assert.equal(fs.readFileSync(path.join(work, "v1/f"), "utf8"), "x\n");
    // X records are not part of version 1, and unknown versions are refused by name.
    const bad = v2.slice();
    bad[7] = 1;
    await assert.rejects(restore(bad, path.join(work, "bad1")), /unknown record tag 88/);
    bad[7] = 4;
    await assert.rejects(
      restore(bad, path.join(work, "bad4")),
      /version 4 is not supported \(this frost reads 1, 2 and 3\)/,
    );
  });
});

describe("a restore as nobody under a default ACL that leaves the owner no write permission", {
  skip: !isRoot && "needs root (to run frost as nobody)",
}, () => {
  let work: string;
  before(() => {
    work = tempDir("acl-readonly");
    fs.chmodSync(work, 0o755);
    const src = path.join(work, "src");
    fs.mkdirSync(path.join(src, "d"), { recursive: true });
    // What is made in d gets r-x for its owner; root filled d/s anyway.
    sh("setfacl", ["-d", "-m", "u::r-x,g::r-x,o::r-x", path.join(src, "d")]);
    fs.mkdirSync(path.join(src, "d/s"));
    fs.writeFileSync(path.join(src, "d/s/f"), "x\n");
  });
  after(() => cleanup(work));

  for (const engine of ["tar", "rsync"]) {
    it(`fills the directories it makes there, then gives them their ACLs (${engine} engine)`, async () => {
      const store = path.join(work, `store-${engine}`);
      const common = ["--name", "ro", "--hostname", "h1", "--storage", store];
      await ok(["backup", path.join(work, "src"), ...common, "--engine", engine]);
      sh("chmod", ["-R", "a+rX", store]);
      const home = path.join(work, `home-${engine}`);
      const to = path.join(work, `to-${engine}`);
      for (const dir of [home, to]) {
        fs.mkdirSync(dir);
        fs.chownSync(dir, NOBODY, NOBODY);
      }
      const r = asNobody(home, ["restore", ...common, "--to", to, "--overwrite"]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(fs.readFileSync(path.join(to, "d/s/f"), "utf8"), "x\n");
      assert.equal(
        describeTree(to, { owners: false }),
        describeTree(path.join(work, "src"), { owners: false }),
      );
    });
  }
});

describe("frost under Deno without --allow-ffi (the xattr addon cannot load)", {
  skip: process.env.FROST_BIN !== undefined && "runs main.ts under Deno; the binary always has the addon",
}, () => {
  const ROOT = path.resolve(import.meta.dirname!, "../..");
  const DENO = path.join(ROOT, "node_modules/deno/deno");
  let work: string;
  let src: string;
  let store: string;
  /** main.ts under Deno with every permission but FFI. */
  const noFfi = (args: string[]) =>
    spawnSync(DENO, [
      "run",
      "--allow-read",
      "--allow-write",
      "--allow-env",
      "--allow-sys",
      "--allow-run",
      "main.ts",
      ...args,
    ], {
      cwd: ROOT,
      encoding: "utf8",
      env: { ...process.env, NO_COLOR: "1" },
    });
  before(() => {
    work = tempDir("no-ffi");
    src = path.join(work, "src");
    store = path.join(work, "store");
    fs.mkdirSync(src);
    fs.writeFileSync(path.join(src, "f"), "x\n");
    fs.writeFileSync(path.join(src, "g"), "y\n");
    sh("setfattr", ["-n", "user.x", "-v", "hello", path.join(src, "f")]);
    sh("setfattr", ["-n", "user.y", "-v", "world", path.join(src, "g")]);
  });
  after(() => cleanup(work));

  it("starts, refuses a backup that would lose xattrs unless --no-xattrs, and warns once on restore", async () => {
    const common = ["--name", "nf", "--hostname", "h1", "--storage", store];
    assert.equal(noFfi(["--version"]).status, 0);
    for (const engine of ["tar", "rsync"]) {
      const refused = noFfi(["backup", src, ...common, "--engine", engine]);
      assert.equal(refused.status, 1, refused.stderr);
      assert.equal(
        refused.stderr,
        `frost: Cannot back up "${src}": extended attributes and ACLs cannot be read or set here: the native ` +
          "xattr addon did not load (run frost's sources with --allow-ffi); give --no-xattrs to back up " +
          "without them\n",
      );
    }
    assert.equal(noFfi(["list", ...common]).status, 0, "nothing was backed up");
    const without = noFfi([
      "backup",
      src,
      "--name",
      "plain",
      "--hostname",
      "h1",
      "--storage",
      store,
      "--no-xattrs",
    ]);
    assert.equal(without.status, 0, without.stderr);
    // Made with the addon (frost's usual run), restored without it: the data, and one warning.
    const made = await frost(["backup", src, ...common]);
    assert.equal(made.code, 0, made.stderr);
    const to = path.join(work, "restored");
    const r = noFfi(["restore", ...common, "--to", to]);
    assert.equal(r.status, 3, r.stderr);
    const warnings = r.stderr.split("\n").filter((l) => l.startsWith("frost: warning:"));
    assert.equal(warnings.length, 1, r.stderr);
    assert.match(
      warnings[0]!,
      /extended attributes and ACLs cannot be read or set here.*not restored \(reported once/,
    );
    assert.equal(fs.readFileSync(path.join(to, "f"), "utf8"), "x\n");
    assert.equal(fs.readFileSync(path.join(to, "g"), "utf8"), "y\n");
    const quiet = noFfi(["restore", ...common, "--to", path.join(work, "quiet"), "--no-xattrs"]);
    assert.equal(quiet.status, 0, quiet.stderr);
  });
});

describe("the xattr addon is loaded on first use", {
  skip: !hasStrace() && "strace is not installed or may not trace here",
}, () => {
  /** The `.node` files (native addons: the binary writes its copy to a temp file) that `frost args` opens. */
  const addonsOpened = (args: string[]) => {
    const work = tempDir("addon");
    try {
      const log = path.join(work, "trace");
      const [cmd, ...rest] = frostCommand();
      execFileSync("strace", ["-f", "-qq", "-e", "trace=open,openat", "-o", log, cmd!, ...rest, ...args], {
        stdio: "ignore",
      });
      return fs.readFileSync(log, "utf8").split("\n").filter((l) => /\.node"/.test(l));
    } finally {
      cleanup(work);
    }
  };

  it("frost --version, and a backup with --no-xattrs, do not load it", () => {
    assert.deepEqual(addonsOpened(["--version"]), []);
    const work = tempDir("addon-backup");
    try {
      fs.mkdirSync(path.join(work, "src"));
      fs.writeFileSync(path.join(work, "src", "a"), "a");
      const store = path.join(work, "store");
      assert.deepEqual(
        addonsOpened(["backup", path.join(work, "src"), "--name", "n", "--storage", store, "--no-xattrs"]),
        [],
      );
    } finally {
      cleanup(work);
    }
  });
});

describe("the binary where its xattr addon cannot be unpacked", {
  skip: process.env.FROST_BIN === undefined &&
    "the binary unpacks the addon; main.ts loads it from node_modules",
}, () => {
  it("fails the backup with a message naming the temp folder and --no-xattrs, and lists nothing", async () => {
    const work = tempDir("addon-tmpdir");
    try {
      const src = path.join(work, "src");
      fs.mkdirSync(src);
      fs.writeFileSync(path.join(src, "a"), "a");
      const store = path.join(work, "store");
      const env = { TMPDIR: path.join(work, "missing") };
      const failed = await frost(["backup", src, "--name", "n", "--storage", store], { env });
      assert.equal(failed.code, 1, failed.stderr);
      assert.match(
        failed.stderr,
        /^frost: Cannot read the extended attributes of .*\$TMPDIR.*give --no-xattrs/,
      );
      assert.equal(failed.stderr.trim().split("\n").length, 1, failed.stderr);
      const listed = await frost(["list", "--name", "n", "--storage", store, "--json"]);
      assert.deepEqual(JSON.parse(listed.stdout), []);
      const without = await frost(["backup", src, "--name", "n", "--storage", store, "--no-xattrs"], { env });
      assert.equal(without.code, 0, without.stderr);
    } finally {
      cleanup(work);
    }
  });
});
