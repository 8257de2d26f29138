/**
 * Tests of the level N walk's first look through statx() and listing through getdents64
 * (engines/_ffi_stat.ts): its fields and names against node:fs and GNU stat, and a level 1 taken with it
 * against one taken with node:fs alone. Also run under `bun test`.
 * @module
 */
import fs from "node:fs";
import process from "node:process";
import os from "node:os";
import path from "node:path";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { describe, test } from "node:test";
import { ChildStat, useNativeList, useNativeStat } from "../../engines/_ffi_stat.ts";
import bytesFs, { BYTE_PATHS } from "../../engines/_fs_bytes.ts";
import { tarBackup } from "../../engines/tar_backup.ts";
import type { BackupOptions } from "../../engines/engine.ts";

function scratch(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), "frost-ffi-stat-"));
}

function touch(p: string, sec: number, nsec = 0): void {
  execFileSync("touch", ["-h", "-d", `@${sec}.${String(nsec).padStart(9, "0")}`, p]);
}

/** GNU stat's exact times of `p`, in nanoseconds as decimal text: [mtime, ctime]. */
function exactTimes(p: string): [string, string] {
  const out = execFileSync("stat", ["-c", "%.9Y %.9Z", p], { encoding: "utf8" }).trim().split(" ");
  const ns = (t: string) => {
    const [sec, frac] = t.split(".") as [string, string];
    return String(BigInt(sec) * 1_000_000_000n + (BigInt(sec) < 0n ? -1n : 1n) * BigInt(frac));
  };
  return [ns(out[0]!), ns(out[1]!)];
}

/** Waits until the wall clock is past the next whole second plus 0.15 s (see "Change detection"). */
async function settle(): Promise<void> {
  const ms = Math.floor(Date.now() / 1000) * 1000 + 1150 - Date.now();
  await new Promise((resolve) => setTimeout(resolve, ms));
}

async function backup(
  source: string,
  options: BackupOptions = {},
): Promise<{ archive: string; state: string }> {
  const r = tarBackup(source, options);
  const [archive, state] = await Promise.all([new Response(r.stream).text(), new Response(r.state).text()]);
  await r.done;
  return { archive, state };
}

/** Member names of an uncompressed archive (ustar names, which these short paths fit). */
function memberNames(archive: string): string[] {
  const names: string[] = [];
  for (let p = 0; p + 512 <= archive.length;) {
    const name = archive.slice(p, p + 100).replace(/\0.*$/s, "");
    if (name === "") break;
    const size = parseInt(archive.slice(p + 124, p + 136), 8) || 0;
    if (archive[p + 156] !== "x") names.push(name);
    p += 512 + Math.ceil(size / 512) * 512;
  }
  return names;
}

/** The state with every record's mtime and ctime replaced by the exact ones (as Bun's lstat gives them). */
function exactState(src: string, state: string): string {
  return state.split("\n").map((line, i) => {
    // The header, and a version 2 state's trailer, stay.
    if (i === 0 || line === "" || line.startsWith("{")) return line;
    const v = JSON.parse(line) as string[];
    const [mtime, ctime] = exactTimes(path.join(src, v[0]!));
    return JSON.stringify([...v.slice(0, 5), mtime, ctime]);
  }).join("\n");
}

const streamOf = (text: string) => new Response(text).body!;

describe("ChildStat", () => {
  test("statx() in a directory gives what node:fs lstat and GNU stat give", () => {
    const lib = ChildStat.open();
    assert.ok(lib, "statx is callable here (Linux, FFI allowed)");
    const dir = scratch();
    try {
      const names = ["plain", "été-ü", "past", "future", "link", "sub"];
      fs.writeFileSync(path.join(dir, "plain"), "12345");
      fs.writeFileSync(path.join(dir, "été-ü"), "x".repeat(70_000));
      fs.writeFileSync(path.join(dir, "past"), "p");
      touch(path.join(dir, "past"), -86_400, 250_000_000);
      fs.writeFileSync(path.join(dir, "future"), "f");
      touch(path.join(dir, "future"), 10_413_792_000, 500_000_000);
      fs.symlinkSync("plain", path.join(dir, "link"));
      fs.mkdirSync(path.join(dir, "sub"));
      assert.ok(lib.openDir(dir));
      try {
        for (const name of names) {
          const p = path.join(dir, name);
          const st = fs.lstatSync(p, { bigint: true });
          assert.ok(lib.stat(name), name);
          assert.equal(lib.mode, Number(st.mode), name);
          assert.equal(lib.nlink, Number(st.nlink), name);
          assert.equal(lib.ino, String(st.ino), name);
          assert.equal(lib.size, String(st.size), name);
          assert.equal(lib.dev, String(st.dev), name);
          const [mtime, ctime] = exactTimes(p);
          assert.deepEqual([lib.mtimeNs, lib.ctimeNs], [mtime, ctime], name);
          const [ino, size] = [String(st.ino), String(st.size)];
          const next = (t: string) => String(BigInt(t) + 1n);
          const head = '["x","f","1",';
          const same = (...tail: string[]): boolean =>
            lib!.sameTail(`${head}"${tail.join('","')}"]`, head.length);
          assert.ok(same(ino, size, mtime, ctime), name);
          assert.equal(same(next(ino), size, mtime, ctime), false, name);
          assert.equal(same(ino, next(size), mtime, ctime), false, name);
          assert.equal(same(ino, size, next(mtime), ctime), false, name);
          assert.equal(same(ino, size, mtime, next(ctime)), false, name);
          assert.equal(same(ino, size, `0${mtime}`.slice(0, -1), ctime), false, name);
          assert.equal(same(ino, size, mtime, `${ctime}x`), false, name);
          assert.equal(same(ino, size, mtime), false, name);
        }
        assert.equal(lib.stat("missing"), false);
      } finally {
        lib.closeDir();
      }
      assert.ok(lib.openDir(path.join(dir, "sub")));
      assert.equal(lib.hasNoXattrs(), true, "a new folder has no xattrs");
      execFileSync("setfattr", ["-n", "user.x", "-v", "1", path.join(dir, "sub")]);
      assert.equal(lib.hasNoXattrs(), false, "a folder with one");
      lib.closeDir();
      assert.equal(lib.hasNoXattrs(), false, "no directory open");
      assert.equal(lib.openDir(path.join(dir, "plain")), false, "a file is not a directory");
      assert.equal(lib.openDir(path.join(dir, "missing")), false);
      assert.equal(lib.stat("plain"), false, "no directory open");
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("names() lists the open directory as node:fs readdir does, over many buffer refills", () => {
    const lib = ChildStat.open();
    if (!lib) return;
    const dir = scratch();
    try {
      // ~4 000 entries of up to 255 bytes: well over one 64 KiB read.
      const names = ["plain", "é café", "日本語", "..x", ".hidden", "a b\tc", "\uFFFD"];
      for (let i = 0; i < 4000; i++) names.push(`${i}-${"x".repeat(i % 240)}`);
      for (const name of names) fs.writeFileSync(path.join(dir, name), "");
      fs.mkdirSync(path.join(dir, "sub"));
      assert.ok(lib.openDir(dir));
      const listed = lib.names();
      lib.closeDir();
      assert.ok(listed);
      assert.deepEqual([...listed].sort(), fs.readdirSync(dir).sort());
      assert.equal(listed.length, names.length + 1);
      assert.ok(lib.openDir(path.join(dir, "sub")));
      assert.deepEqual(lib.names(), [], "an empty folder");
      useNativeList(false);
      assert.equal(lib.names(), undefined, "turned off");
      useNativeList(true);
      lib.closeDir();
      assert.equal(lib.names(), undefined, "no directory open");
    } finally {
      useNativeList(true);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("names() gives a name that is not UTF-8 escaped, or nothing where node:fs cannot take it back", () => {
    const lib = ChildStat.open();
    if (!lib) return;
    const dir = scratch();
    try {
      execFileSync("bash", [
        "-euc",
        `cd "$1"; touch plain $'\\xff' $'caf\\xe9' $'ok\\xc3\\xa9'`,
        "bash",
        dir,
      ]);
      assert.ok(lib.openDir(dir));
      const listed = lib.names();
      lib.closeDir();
      if (BYTE_PATHS) {
        assert.deepEqual(listed?.sort(), (bytesFs.readdirSync(dir) as string[]).sort());
        assert.ok(listed?.includes("caf\udce9"));
      } else {
        assert.equal(listed, undefined);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("tarBackup() at level N", () => {
  test("the first look through statx() finds the same changes and writes the same state as node:fs lstat", async () => {
    const dir = scratch();
    try {
      const src = path.join(dir, "src");
      fs.mkdirSync(path.join(src, "sub"), { recursive: true });
      for (const n of ["a", "b", "c", "d", "sub/e", "sub/f"]) {
        fs.writeFileSync(path.join(src, n), `${n}-before`);
      }
      fs.symlinkSync("a", path.join(src, "l"));
      touch(path.join(src, "b"), 1_700_000_000, 123_456_789);
      touch(path.join(src, "c"), 1_700_000_000, 987_654_321);
      await settle();
      const l0 = await backup(src);
      // Exact times in the parent, as the frost binary (Bun) writes them, whatever this runtime's lstat says.
      const parent = exactState(src, l0.state);
      fs.writeFileSync(path.join(src, "b"), "b-after!"); // same size, mtime put back: only the ctime moved
      touch(path.join(src, "b"), 1_700_000_000, 123_456_789);
      fs.rmSync(path.join(src, "c"));
      fs.writeFileSync(path.join(src, "c"), "c-after!"); // a new inode, same size and mtime
      touch(path.join(src, "c"), 1_700_000_000, 987_654_321);
      fs.appendFileSync(path.join(src, "sub/e"), "+");
      // New entries of every kind the first look's values now describe alone: a folder of another owner
      // and mode, a sparse file, a hard-linked pair, a symlink, a FIFO.
      const added = [
        "./new/",
        "./new/h1",
        "./new/h2",
        "./new/GNUSparseFile.0/holes",
        "./new/link",
        "./new/pipe",
      ];
      fs.mkdirSync(path.join(src, "new"), { mode: 0o750 });
      fs.writeFileSync(path.join(src, "new/h1"), "linked");
      fs.linkSync(path.join(src, "new/h1"), path.join(src, "new/h2"));
      fs.writeFileSync(path.join(src, "new/holes"), "x");
      fs.truncateSync(path.join(src, "new/holes"), 1 << 20);
      fs.symlinkSync("../a", path.join(src, "new/link"));
      execFileSync("mkfifo", [path.join(src, "new/pipe")]);
      if (process.getuid?.() === 0) {
        fs.chownSync(path.join(src, "new"), 65534, 65534);
        fs.lchownSync(path.join(src, "new/link"), 65534, 123);
      }
      const native = await backup(src, { previous: streamOf(parent) });
      // node:fs alone, from the parent this runtime wrote (Deno's lstat has no nanoseconds).
      useNativeStat(false);
      let plain;
      try {
        plain = await backup(src, { previous: streamOf(l0.state) });
      } finally {
        useNativeStat(true);
      }
      const changed = ["./", "./b", "./c", ...added, "./sub/", "./sub/e"];
      assert.deepEqual(memberNames(native.archive), changed);
      assert.deepEqual(memberNames(plain.archive), changed);
      // Where node:fs's lstat is exact (Bun: the binary), the same archive byte for byte.
      if (process.versions.bun) assert.equal(native.archive, plain.archive);
      // Unchanged files keep their parent's record; the others get the same record either way.
      const byPath = (s: string) =>
        new Map(
          s.split("\n").slice(1).filter((l) => l !== "").map((l) => [(JSON.parse(l) as string[])[0]!, l]),
        );
      const [n, p, was, wasPlain] = [
        byPath(native.state),
        byPath(plain.state),
        byPath(parent),
        byPath(l0.state),
      ];
      assert.deepEqual([...n.keys()], [...p.keys()]);
      for (const [name, line] of n) {
        if (["a", "d", "l", "sub/f"].includes(name)) {
          assert.equal(line, was.get(name), name);
          assert.equal(p.get(name), wasPlain.get(name), name);
        } else assert.equal(line, p.get(name), name);
      }
      // One nanosecond off is a change.
      const off = parent.replace(
        /^(\["d",.*,")(\d+)(","\d+"\])$/m,
        (_, a, t, b) => `${a}${BigInt(t) + 1n}${b}`,
      );
      assert.notEqual(off, parent);
      const again = await backup(src, { previous: streamOf(off) });
      assert.deepEqual(memberNames(again.archive), [
        "./",
        "./b",
        "./c",
        "./d",
        ...added,
        "./sub/",
        "./sub/e",
      ]);
      // A parent on another device number (a snapshot mounted again): same files, the records get this device.
      const moved = parent.replace(/^(\[".*?","[a-z]",")\d+"/gm, '$1999"');
      assert.notEqual(moved, parent);
      const remounted = await backup(src, { previous: streamOf(moved) });
      assert.deepEqual(memberNames(remounted.archive), changed);
      const r = byPath(remounted.state);
      for (const name of ["a", "d", "l", "sub/f"]) assert.equal(r.get(name), was.get(name), name);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
