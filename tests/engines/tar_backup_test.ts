/**
 * Tests of the tar engine's backup: real files, GNU tar 1.34 as the oracle (`tar -tvf`, `tar --incremental -x`).
 * @module
 */
import fs from "node:fs";
import net from "node:net";
import { Buffer } from "node:buffer";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { describe, test } from "node:test";
import type { BackupOptions, BackupStats, Progress, Warning } from "../../engines/engine.ts";
import { tarBackup } from "../../engines/tar_backup.ts";
import {
  compareKey,
  compareNames,
  MORE,
  type ParentRecord,
  sortNames,
  stateHeader,
  stateRecord,
  tarStateEntries,
  TarStateReader,
} from "../../engines/_tar_state.ts";
import { paxRecordLength, paxTime } from "../../engines/_tar_header.ts";
import { AbortedError, FrostError } from "../../base/errors.ts";
import { assertSameTree } from "../_tree.ts";

const isRoot = process.getuid?.() === 0;
const MiB = 1024 * 1024;

function scratch(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), "frost-tar-backup-"));
}

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

/** Sets an exact time (nanoseconds included) on a path, not following symlinks. */
function touch(p: string, sec: number, nsec = 0): void {
  run("touch", ["-h", "-d", `@${sec}.${String(nsec).padStart(9, "0")}`, p]);
}

/** Random bytes (getRandomValues fills at most 64 KiB per call). */
function random(size: number): Uint8Array {
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i += 65536) crypto.getRandomValues(out.subarray(i, i + 65536));
  return out;
}

/** Number of directories in a tree, its root included. */
function countDirs(root: string): number {
  let n = 1;
  for (const d of fs.readdirSync(root, { withFileTypes: true })) {
    if (d.isDirectory()) n += countDirs(path.join(root, d.name));
  }
  return n;
}

/** Whether a tmpfs can be mounted here (root with CAP_SYS_ADMIN), for the file-system boundary test. */
function canMount(): boolean {
  if (!isRoot) return false;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "frost-mount-probe-"));
  try {
    execFileSync("mount", ["-t", "tmpfs", "tmpfs", dir], { stdio: "ignore" });
    execFileSync("umount", [dir], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  } finally {
    fs.rmdirSync(dir);
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Waits until a backup started now counts what exists now as settled: the engine re-sends files whose
 * ctime is within the second (minus 0.1 s) its parent backup started, whatever the timestamp precision.
 */
async function settle(): Promise<void> {
  await sleep(Math.floor(Date.now() / 1000) * 1000 + 1150 - Date.now());
}

interface Result {
  archive: Uint8Array;
  state: Uint8Array;
  stats: BackupStats;
  warnings: Warning[];
  progress: Progress[];
}

/** Runs tarBackup() to the end, reading both streams concurrently. */
async function backup(source: string, options: BackupOptions = {}): Promise<Result> {
  const warnings: Warning[] = [];
  const progress: Progress[] = [];
  const r = tarBackup(source, {
    onWarning: (w) => warnings.push(w),
    onProgress: (p) => progress.push(p),
    ...options,
  });
  const [archive, state] = await Promise.all([
    new Response(r.stream).arrayBuffer(),
    new Response(r.state).arrayBuffer(),
  ]);
  return {
    archive: new Uint8Array(archive),
    state: new Uint8Array(state),
    stats: await r.done,
    warnings,
    progress,
  };
}

/** A byte stream of `bytes` in pieces of `size` bytes (to split state lines across chunks). */
function streamOf(bytes: Uint8Array, size = 64 * 1024): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream({
    pull(controller) {
      if (i >= bytes.length) return controller.close();
      controller.enqueue(bytes.slice(i, i + size));
      i += size;
    },
  });
}

/** Writes an archive to a file and returns its path. */
function save(dir: string, name: string, archive: Uint8Array): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, archive);
  return file;
}

/** Member names as GNU tar lists them (literally, one per line). */
function tarNames(file: string): string[] {
  return run("tar", ["--quoting-style=literal", "-tf", file]).split("\n").filter((l) => l !== "");
}

/** Extracts archives in order with `tar --incremental -x` (deletions replayed) into a fresh directory. */
function extract(dir: string, ...archives: string[]): string {
  const out = fs.mkdtempSync(path.join(dir, "out-"));
  for (const a of archives) run("tar", ["--incremental", "-x", "-f", a, "-C", out]);
  return out;
}

/** A member as read back by a minimal parser: name, typeflag, size, pax records. */
interface Member {
  name: string;
  type: string;
  size: number;
  linkname: string;
  pax: Map<string, Uint8Array>;
}

const decoder = new TextDecoder();

function cString(b: Uint8Array): string {
  const end = b.indexOf(0);
  return decoder.decode(end < 0 ? b : b.subarray(0, end));
}

/** Parses a pax tar archive (enough to look at the headers frost writes). */
function parseArchive(bytes: Uint8Array): Member[] {
  const members: Member[] = [];
  let pax = new Map<string, Uint8Array>();
  let p = 0;
  while (p + 512 <= bytes.length) {
    const h = bytes.subarray(p, p + 512);
    if (h.every((b) => b === 0)) break;
    let sum = 8 * 32;
    for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0 : h[i]!;
    assert.equal(parseInt(cString(h.subarray(148, 156)), 8), sum, `checksum of header at ${p}`);
    const type = String.fromCharCode(h[156]!);
    let size = parseInt(cString(h.subarray(124, 136)), 8);
    const body = bytes.subarray(p + 512, p + 512 + size);
    p += 512 + Math.ceil(size / 512) * 512;
    if (type === "x") {
      pax = new Map();
      for (let i = 0; i < body.length;) {
        const sp = body.indexOf(0x20, i);
        const len = Number(decoder.decode(body.subarray(i, sp)));
        const rec = body.subarray(sp + 1, i + len - 1);
        const eq = rec.indexOf(0x3d);
        pax.set(decoder.decode(rec.subarray(0, eq)), rec.subarray(eq + 1));
        i += len;
      }
      continue;
    }
    const paxSize = pax.get("size");
    if (paxSize) {
      size = Number(decoder.decode(paxSize));
    }
    const paxPath = pax.get("path");
    const paxLink = pax.get("linkpath");
    members.push({
      name: paxPath ? decoder.decode(paxPath) : cString(h.subarray(0, 100)),
      type,
      size,
      linkname: paxLink ? decoder.decode(paxLink) : cString(h.subarray(157, 257)),
      pax,
    });
    pax = new Map();
  }
  return members;
}

/** Dumpdir of a member as "<flag><name>" strings. */
function dumpdirOf(m: Member): string[] {
  const raw = m.pax.get("GNU.dumpdir");
  assert.ok(raw, `${m.name} has a GNU.dumpdir record`);
  const text = decoder.decode(raw);
  assert.ok(text.endsWith("\0"), "the dumpdir ends with an extra NUL");
  return text.split("\0").filter((s) => s !== "");
}

const LONG_COMPONENT = "long-" + "n".repeat(120) + "-" + "ü".repeat(45); // 216 bytes
const DEEP = ["deep", "d".repeat(60), "é".repeat(40), "e".repeat(70), "f".repeat(70), "g".repeat(40)]; // > 300 bytes with a file
const LONG_TARGET = "target/".repeat(22) + "end"; // 157 bytes

/** Builds a tree of names and types that break naive archivers. */
function makeHostileTree(root: string): { device: boolean } {
  const w = (rel: string, content: string | Uint8Array = rel) => {
    fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
    fs.writeFileSync(path.join(root, rel), content);
  };
  w("sp ace.txt", "with a space");
  w(`quo"te's.txt`);
  w("what?.txt");
  w("hash#.txt");
  w("star*.txt");
  w("ünïcødé ✓ 日本.txt");
  // UTF-8 order (which GNU tar's dumpdir lookup uses) differs from UTF-16 order for these two.
  w("\u{1F600}.txt", "emoji");
  w("\uFF21.txt", "fullwidth A");
  w("empty.txt", "");
  fs.mkdirSync(path.join(root, "emptydir"));
  w(LONG_COMPONENT, "long name");
  w([...DEEP, "file.txt"].join("/"), "deep");
  w("sub/nested/file.bin", random(100_000));
  w("big.bin", random(3 * MiB + 123)); // spans output chunks
  fs.symlinkSync("sp ace.txt", path.join(root, "link-rel"));
  fs.symlinkSync("does/not/exist", path.join(root, "link-dangling"));
  fs.symlinkSync(LONG_TARGET, path.join(root, "link-long"));
  w("hard1", "hard linked");
  fs.linkSync(path.join(root, "hard1"), path.join(root, "sub", "hard2"));
  fs.linkSync(path.join(root, "hard1"), path.join(root, "hard3"));
  execFileSync("mkfifo", [path.join(root, "fifo")]);
  w("setuid", "#!/bin/sh\n");
  fs.chmodSync(path.join(root, "setuid"), 0o4755);
  fs.mkdirSync(path.join(root, "sgid-dir"));
  fs.chmodSync(path.join(root, "sgid-dir"), 0o2750);
  fs.mkdirSync(path.join(root, "sticky"));
  fs.chmodSync(path.join(root, "sticky"), 0o1777);
  w("private", "secret");
  fs.chmodSync(path.join(root, "private"), 0o600);
  if (isRoot) {
    w("big-ids", "owned by a large uid");
    fs.chownSync(path.join(root, "big-ids"), 3_000_000, 3_000_001);
  }
  let device = false;
  if (isRoot) {
    try {
      execFileSync("mknod", [path.join(root, "null-dev"), "c", "1", "3"], { stdio: "ignore" });
      device = true;
    } catch {
      // No CAP_MKNOD here: the tree has no device.
    }
  }
  touch(path.join(root, "sp ace.txt"), 1_600_000_000, 123_456_789);
  touch(path.join(root, "what?.txt"), 1_000_000_000, 999_999_999);
  touch(path.join(root, "link-rel"), 1_500_000_000, 1);
  return { device };
}

function cleanup(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}

describe("tarBackup()", () => {
  test("level 0 of a hostile tree lists with tar -tvf and extracts with tar --incremental to an equal tree", async () => {
    const dir = scratch();
    try {
      const src = path.join(dir, "src");
      fs.mkdirSync(src);
      const { device } = makeHostileTree(src);
      const r = await backup(src);
      assert.deepEqual(r.warnings, []);
      const file = save(dir, "l0.tar", r.archive);

      const listing = run("tar", ["--quoting-style=literal", "-tvf", file]);
      assert.match(listing, /^drwx.* \.\/$/m);
      assert.match(listing, / \.\/sub\/hard2 link to \.\/hard1$/m);
      assert.match(listing, / \.\/hard3 link to \.\/hard1$/m);
      assert.match(listing, new RegExp(` \\./link-long -> ${LONG_TARGET}$`, "m"));
      assert.match(listing, /^prw-r--r-- .* \.\/fifo$/m);
      assert.match(listing, /^-rwsr-xr-x .* \.\/setuid$/m);
      assert.match(listing, /^drwxr-s--- .* \.\/sgid-dir\/$/m);
      assert.match(listing, /^drwxrwxrwt .* \.\/sticky\/$/m);
      if (isRoot) assert.match(listing, /^-rw-r--r-- 3000000\/3000001 .* \.\/big-ids$/m);
      if (device) assert.match(listing, /^crw-r--r-- .* 1,3 .* \.\/null-dev$/m);
      assert.ok(listing.includes(`./${LONG_COMPONENT}\n`));
      assert.ok(listing.includes(`./${DEEP.join("/")}/file.txt\n`));
      assert.ok(Buffer.byteLength(`./${DEEP.join("/")}/file.txt`) > 300);

      const names = tarNames(file);
      assert.equal(names[0], "./");
      assert.equal(names.length, new Set(names).size, "no member twice");
      assert.equal(r.stats.files, names.length);
      assert.equal(r.stats.scanned, names.length);
      assert.equal(r.stats.warnings, 0);
      const fileBytes = ["big.bin", "sub/nested/file.bin"].reduce(
        (n, f) => n + fs.statSync(path.join(src, f)).size,
        0,
      );
      assert.ok(r.stats.bytes > fileBytes, "content bytes counted");

      const out = extract(dir, file);
      assertSameTree(src, out);
    } finally {
      cleanup(dir);
    }
  });

  test("chunks given back hold whatever their reader left there: the archive is the same bytes", async () => {
    // The engine reuses the chunks given back without zeroing them: each header, padding and end block
    // zeroes itself. A reader that scribbles over every chunk before giving it back changes nothing.
    const dir = scratch();
    try {
      const src = path.join(dir, "src");
      fs.mkdirSync(src);
      makeHostileTree(src);
      for (let i = 0; i < 300; i++) fs.writeFileSync(path.join(src, `small-${i}`), random(i * 37 + 1));
      fs.writeFileSync(path.join(src, "odd-large"), random(3 * MiB + 777));
      fs.writeFileSync(path.join(src, "empty"), "");
      const plain = await backup(src);
      const r = tarBackup(src, {});
      const state = new Response(r.state).arrayBuffer();
      const pieces: Uint8Array[] = [];
      let reused = 0;
      for await (const chunk of r.stream) {
        pieces.push(chunk.slice());
        if (chunk.byteOffset === 0) {
          new Uint8Array(chunk.buffer).fill(0xaa);
          reused++;
        }
        r.giveBack?.(chunk);
      }
      await state;
      await r.done;
      assert.ok(reused > 2, "chunks were given back");
      assert.ok(Buffer.concat(pieces).equals(Buffer.from(plain.archive)), "the same archive");
    } finally {
      cleanup(dir);
    }
  });

  test("every member has a pax mtime with nine decimals, as precise as the runtime's lstat", async () => {
    const dir = scratch();
    try {
      const src = path.join(dir, "src");
      fs.mkdirSync(src);
      fs.writeFileSync(path.join(src, "ns"), "x");
      touch(path.join(src, "ns"), 1_600_000_000, 123_456_789);
      fs.writeFileSync(path.join(src, "old"), "x");
      touch(path.join(src, "old"), 1_000_000_000, 5);
      const r = await backup(src);
      const members = parseArchive(r.archive);
      for (const m of members) assert.match(decoder.decode(m.pax.get("mtime")), /^\d+\.\d{9}$/, m.name);
      const ns = members.find((m) => m.name === "./ns")!;
      const seen = fs.lstatSync(path.join(src, "ns"), { bigint: true }).mtimeNs;
      assert.equal(decoder.decode(ns.pax.get("mtime")), paxTime(String(seen)));
      const out = extract(dir, save(dir, "a.tar", r.archive));
      assert.equal(fs.lstatSync(path.join(out, "ns"), { bigint: true }).mtimeNs, seen);
      if (seen % 1_000_000n !== 0n) {
        // Bun and Node report nanoseconds; Deno's node:fs milliseconds (see engines/tar_backup.ts).
        assert.equal(decoder.decode(ns.pax.get("mtime")), "1600000000.123456789");
      }
    } finally {
      cleanup(dir);
    }
  });

  test("directories carry a sorted GNU.dumpdir, the state lists every entry in walk order", async () => {
    const dir = scratch();
    try {
      const src = path.join(dir, "src");
      fs.mkdirSync(src);
      makeHostileTree(src);
      const r = await backup(src);
      const members = parseArchive(r.archive);
      const root = members[0]!;
      assert.equal(root.name, "./");
      assert.equal(root.type, "5");
      const entries = dumpdirOf(root);
      const children = fs.readdirSync(src);
      assert.deepEqual(entries.map((e) => e.slice(1)), sortNames([...children]));
      for (const e of entries) {
        const isDir = fs.lstatSync(path.join(src, e.slice(1))).isDirectory();
        assert.equal(e[0], isDir ? "D" : "Y", e);
      }
      assert.deepEqual(dumpdirOf(members.find((m) => m.name === "./emptydir/")!), []);
      // GNU tar shows the same listing.
      const verbose = run("tar", [
        "--incremental",
        "--quoting-style=literal",
        "-tvvf",
        save(dir, "a.tar", r.archive),
      ]);
      assert.ok(verbose.includes("\nD sub\n"));

      const lines = new TextDecoder().decode(r.state).split("\n").filter((l) => l !== "");
      const header = JSON.parse(lines[0]!);
      assert.equal(header.format, "frost-tar-state");
      assert.equal(header.version, 2);
      assert.match(header.started, /^\d+$/);
      // The trailer: the large single-link files this archive stores as data.
      assert.deepEqual(JSON.parse(lines[lines.length - 1]!), { stored: ["big.bin"] });
      const records = lines.slice(1, -1).map((l) => JSON.parse(l) as string[]);
      assert.equal(records.length, members.length);
      assert.deepEqual(records[0]!.slice(0, 2), [".", "d"]);
      for (const rec of records) assert.equal(rec.length, 7);
      // Records follow the archive's member order, which is the walk order of compareKey().
      const rel = (m: Member) => m.name === "./" ? "." : m.name.replace(/^\.\//, "").replace(/\/$/, "");
      assert.deepEqual(records.map((r) => r[0]), members.map(rel));
      const key = (p: string) => p === "." ? [] : p.split("/");
      for (let i = 1; i < records.length; i++) {
        const a = records[i - 1]!;
        const b = records[i]!;
        const bk = key(b[0]!);
        const c = compareKey(key(a[0]!), a[1] === "d", bk.slice(0, -1), bk[bk.length - 1]!, b[1] === "d");
        assert.ok(c < 0, `${a[0]} before ${b[0]}`);
      }
      const big = records.find((r) => r[0] === "big.bin")!;
      const st = fs.lstatSync(path.join(src, "big.bin"), { bigint: true });
      assert.deepEqual(big, [
        "big.bin",
        "f",
        String(st.dev),
        String(st.ino),
        String(st.size),
        String(st.mtimeNs),
        String(st.ctimeNs),
      ]);
    } finally {
      cleanup(dir);
    }
  });

  test("level 1 holds only what changed; level 0 then level 1 extract to the new tree, deletions included", async () => {
    const dir = scratch();
    try {
      const src = path.join(dir, "src");
      fs.mkdirSync(src);
      makeHostileTree(src);
      await settle();
      const l0 = await backup(src);
      const f0 = save(dir, "l0.tar", l0.archive);

      fs.writeFileSync(path.join(src, "sp ace.txt"), "modified, and longer than before");
      fs.writeFileSync(path.join(src, "new.txt"), "new");
      fs.mkdirSync(path.join(src, "newdir"));
      fs.writeFileSync(path.join(src, "newdir", "x"), "x");
      fs.rmSync(path.join(src, "what?.txt"));
      fs.rmSync(path.join(src, "emptydir"), { recursive: true });
      fs.rmSync(path.join(src, DEEP[0]!, DEEP[1]!), { recursive: true });
      fs.renameSync(path.join(src, "hash#.txt"), path.join(src, "hash2#.txt"));
      fs.chmodSync(path.join(src, "star*.txt"), 0o640);
      // A file that becomes a directory.
      fs.rmSync(path.join(src, "\uFF21.txt"));
      fs.mkdirSync(path.join(src, "\uFF21.txt"));
      fs.writeFileSync(path.join(src, "\uFF21.txt", "inner"), "inner");
      // A directory that becomes a file.
      fs.rmSync(path.join(src, "sgid-dir"), { recursive: true });
      fs.writeFileSync(path.join(src, "sgid-dir"), "now a file");
      // A directory that becomes a symlink.
      fs.rmSync(path.join(src, "sticky"), { recursive: true });
      fs.symlinkSync("sub", path.join(src, "sticky"));
      // New content for an inode with three names.
      fs.appendFileSync(path.join(src, "hard1"), ", changed");
      await settle();

      // The parent's state arrives in small pieces, splitting lines: the merge must not care.
      const l1 = await backup(src, { previous: streamOf(l0.state, 37) });
      assert.deepEqual(l1.warnings, []);
      const f1 = save(dir, "l1.tar", l1.archive);
      const names = tarNames(f1);
      const nonDirs = names.filter((n) => !n.endsWith("/")).sort();
      assert.deepEqual(
        nonDirs,
        [
          "./hard1",
          "./hard3",
          "./hash2#.txt",
          "./new.txt",
          "./newdir/x",
          "./sgid-dir",
          "./sp ace.txt",
          "./star*.txt",
          "./sticky",
          "./sub/hard2",
          "./\uFF21.txt/inner",
        ].sort(),
      );
      assert.equal(names.length - nonDirs.length, countDirs(src), "every directory is in the archive");
      assert.equal(l1.stats.files, names.length);
      assert.ok(l1.stats.scanned > l1.stats.files);

      const l1Members = parseArchive(l1.archive);
      assert.equal(l1Members.find((m) => m.name === "./hard1")!.type, "0");
      assert.deepEqual(
        l1Members.filter((m) => m.type === "1").map((m) => [m.name, m.linkname]),
        [["./hard3", "./hard1"], ["./sub/hard2", "./hard1"]],
      );
      const rootDump = dumpdirOf(l1Members[0]!);
      assert.ok(rootDump.includes("Ynew.txt"));
      assert.ok(rootDump.includes("Nbig.bin"));
      assert.ok(rootDump.includes("Yhard1"));
      assert.ok(rootDump.includes("Nsetuid"));
      assert.ok(rootDump.includes("D\uFF21.txt"));
      assert.ok(rootDump.includes("Ysgid-dir"));
      assert.ok(!rootDump.some((e) => e.slice(1) === "what?.txt"));

      const out = extract(dir, f0, f1);
      assertSameTree(src, out);

      // Level 2 on top of level 1 (its state came from a level-N run) finds nothing new.
      const l2 = await backup(src, { previous: streamOf(l1.state) });
      const f2 = save(dir, "l2.tar", l2.archive);
      assert.deepEqual(tarNames(f2).filter((n) => !n.endsWith("/")), []);
      assertSameTree(src, extract(dir, f0, f1, f2));
    } finally {
      cleanup(dir);
    }
  });

  test("hard links stay whole when a directory holding one of the names is renamed", async () => {
    const dir = scratch();
    try {
      const src = path.join(dir, "src");
      for (const d of ["d1", "z1", "d2"]) fs.mkdirSync(path.join(src, d), { recursive: true });
      fs.writeFileSync(path.join(src, "d1", "f"), "inode X");
      fs.linkSync(path.join(src, "d1", "f"), path.join(src, "z1", "h"));
      fs.writeFileSync(path.join(src, "d2", "k"), "inode Y");
      fs.linkSync(path.join(src, "d2", "k"), path.join(src, "g"));
      await settle();
      const l0 = await backup(src);
      // Renaming a directory leaves its files' ctimes alone: only the new paths look changed.
      fs.renameSync(path.join(src, "d1"), path.join(src, "a1")); // a1/f now comes before the unchanged z1/h
      fs.renameSync(path.join(src, "d2"), path.join(src, "a2")); // a2/k comes after the unchanged g
      const l1 = await backup(src, { previous: streamOf(l0.state) });
      const members = parseArchive(l1.archive).filter((m) => m.type !== "5");
      assert.deepEqual(members.map((m) => [m.name, m.type, m.linkname]), [
        ["./a1/f", "0", ""],
        ["./a2/k", "1", "./g"], // a link to a name that is not in this archive, only in the restored tree
        ["./z1/h", "1", "./a1/f"],
      ]);
      const out = extract(dir, save(dir, "l0.tar", l0.archive), save(dir, "l1.tar", l1.archive));
      assertSameTree(src, out);
    } finally {
      cleanup(dir);
    }
  });

  test("level 1 of an unchanged tree holds only directory entries", async () => {
    const dir = scratch();
    try {
      const src = path.join(dir, "src");
      fs.mkdirSync(src);
      makeHostileTree(src);
      await settle();
      const l0 = await backup(src);
      const l1 = await backup(src, { previous: streamOf(l0.state) });
      const members = parseArchive(l1.archive);
      assert.deepEqual(members.filter((m) => m.type !== "5").map((m) => m.name), []);
      assert.equal(l1.stats.bytes, 0);
      assert.equal(l1.stats.scanned, l0.stats.scanned);
      for (const m of members) {
        for (const e of dumpdirOf(m)) assert.ok(e[0] === "N" || e[0] === "D", `${m.name}: ${e}`);
      }
      // The state describes the same tree; only level 0 stores the large file.
      const body = (s: Uint8Array) => new TextDecoder().decode(s).split("\n").slice(1, -2);
      assert.deepEqual(body(l1.state), body(l0.state));
      const trailer = (s: Uint8Array) => new TextDecoder().decode(s).split("\n").at(-2);
      assert.equal(trailer(l0.state), '{"stored":["big.bin"]}');
      assert.equal(trailer(l1.state), '{"stored":[]}');
      const out = extract(dir, save(dir, "l0.tar", l0.archive), save(dir, "l1.tar", l1.archive));
      assertSameTree(src, out);
    } finally {
      cleanup(dir);
    }
  });

  test("files changed just before their parent backup are sent again (coarse timestamps are not trusted)", async () => {
    const dir = scratch();
    try {
      const src = path.join(dir, "src");
      fs.mkdirSync(src);
      fs.writeFileSync(path.join(src, "fresh"), "x");
      const l0 = await backup(src); // no settle(): "fresh" changed within the second of this run
      const l1 = await backup(src, { previous: streamOf(l0.state) });
      assert.deepEqual(tarNames(save(dir, "l1.tar", l1.archive)), ["./", "./fresh"]);
    } finally {
      cleanup(dir);
    }
  });

  test("a file rewritten in the same second with its size and mtime put back is sent again (its ctime moved)", async () => {
    const dir = scratch();
    try {
      const src = path.join(dir, "src");
      fs.mkdirSync(src);
      for (const n of ["a", "b", "c"]) fs.writeFileSync(path.join(src, n), `${n}-before`);
      touch(path.join(src, "b"), 1_700_000_000, 123_456_789);
      await settle();
      const l0 = await backup(src);
      const before = fs.lstatSync(path.join(src, "b"), { bigint: true });
      fs.writeFileSync(path.join(src, "b"), "b-after!"); // same size
      touch(path.join(src, "b"), 1_700_000_000, 123_456_789);
      const after = fs.lstatSync(path.join(src, "b"), { bigint: true });
      assert.equal(after.mtimeNs, before.mtimeNs);
      assert.equal(after.size, before.size);
      assert.equal(after.ino, before.ino);
      const l1 = await backup(src, { previous: streamOf(l0.state) });
      assert.deepEqual(tarNames(save(dir, "l1.tar", l1.archive)), ["./", "./b"]);
      const out = extract(dir, save(dir, "l0.tar", l0.archive), save(dir, "l1b.tar", l1.archive));
      assert.equal(fs.readFileSync(path.join(out, "b"), "utf8"), "b-after!");
    } finally {
      cleanup(dir);
    }
  });

  test("an unchanged file on another device number is not sent again; the new state has the new device", async () => {
    const dir = scratch();
    try {
      const src = path.join(dir, "src");
      fs.mkdirSync(path.join(src, "d"), { recursive: true });
      for (const n of ["a", "b", "d/c"]) fs.writeFileSync(path.join(src, n), n);
      await settle();
      const l0 = await backup(src);
      // As after a snapshot is mounted again: every record names another device.
      const text = new TextDecoder().decode(l0.state);
      const moved = text.replace(/^(\[".*?","[a-z]",")\d+"/gm, '$1999"');
      assert.notEqual(moved, text);
      const l1 = await backup(src, { previous: streamOf(new TextEncoder().encode(moved)) });
      assert.deepEqual(tarNames(save(dir, "l1.tar", l1.archive)), ["./", "./d/"]);
      assert.equal(
        new TextDecoder().decode(l1.state).split("\n").slice(1).join("\n"),
        text.split("\n").slice(1).join("\n"),
      );
    } finally {
      cleanup(dir);
    }
  });

  test("times past 2262 and before 1970 reach the state and the pax headers exactly", async () => {
    const dir = scratch();
    try {
      const src = path.join(dir, "src");
      fs.mkdirSync(src);
      const times: Record<string, [number, number]> = {
        future: [10_413_792_000, 500_000_000], // 2300: more nanoseconds than an int64 holds
        past: [-86_400, 250_000_000],
        now: [1_700_000_000, 0],
      };
      for (const [name, [sec, nsec]] of Object.entries(times)) {
        fs.writeFileSync(path.join(src, name), name);
        touch(path.join(src, name), sec, nsec);
      }
      const r = await backup(src);
      const lines = new TextDecoder().decode(r.state).split("\n").slice(1).filter((l) => l !== "");
      for (const name of Object.keys(times)) {
        const st = fs.lstatSync(path.join(src, name), { bigint: true });
        const rec = lines.map((l) => JSON.parse(l) as string[]).find((v) => v[0] === name)!;
        assert.equal(rec[5], String(st.mtimeNs), name);
        assert.equal(rec[6], String(st.ctimeNs), name);
        const member = parseArchive(r.archive).find((m) => m.name === `./${name}`)!;
        assert.equal(decoder.decode(member.pax.get("mtime")), paxTime(String(st.mtimeNs)), name);
      }
    } finally {
      cleanup(dir);
    }
  });

  test("level 1 of a big folder read from a parent state in small pieces: changed files stored, the state as a level 0's", async () => {
    const dir = scratch();
    try {
      const src = path.join(dir, "src");
      fs.mkdirSync(path.join(src, "sub"), { recursive: true });
      const name = (i: number) => `f${String(i).padStart(3, "0")}`;
      for (let i = 0; i < 300; i++) fs.writeFileSync(path.join(src, name(i)), `file ${i}`);
      for (let i = 0; i < 20; i++) fs.writeFileSync(path.join(src, "sub", name(i)), `sub ${i}`);
      fs.linkSync(path.join(src, name(5)), path.join(src, "sub", "link"));
      await settle();
      const l0 = await backup(src);
      const changed = new Set<string>();
      for (let i = 0; i < 300; i += 7) {
        fs.writeFileSync(path.join(src, name(i)), `changed ${i}`);
        changed.add(`./${name(i)}`);
      }
      for (let i = 3; i < 300; i += 50) {
        fs.rmSync(path.join(src, name(i)));
        changed.delete(`./${name(i)}`);
      }
      fs.writeFileSync(path.join(src, "new"), "new");
      changed.add("./new");
      fs.writeFileSync(path.join(src, "sub", name(1)), "changed in sub");
      changed.add(`./sub/${name(1)}`);
      const l1 = await backup(src, { previous: streamOf(l0.state, 100) });
      const members = parseArchive(l1.archive);
      assert.deepEqual(
        members.filter((m) => m.type !== "5").map((m) => m.name).sort(),
        [...changed].sort(),
      );
      const top = dumpdirOf(members.find((m) => m.name === "./")!);
      for (const e of top) {
        const flag = e === "Dsub" ? "D" : changed.has(`./${e.slice(1)}`) ? "Y" : "N";
        assert.equal(e[0], flag, e);
      }
      assert.equal(top.length, 300 - 6 + 1 + 1);
      assert.equal(l1.stats.scanned, 1 + 295 + 1 + 21);
      // Its state is the one a level 0 of the tree would have (same records, same order).
      const fresh = await backup(src);
      const body = (st: Uint8Array) => new TextDecoder().decode(st).split("\n").slice(1);
      assert.deepEqual(body(l1.state), body(fresh.state));
      const out = extract(dir, save(dir, "l0.tar", l0.archive), save(dir, "l1.tar", l1.archive));
      assertSameTree(src, out);
    } finally {
      cleanup(dir);
    }
  });

  test("exclude leaves out basenames, paths below the source, and whole directories", async () => {
    const dir = scratch();
    try {
      const src = path.join(dir, "src");
      for (
        const f of ["a.log", "keep.txt", "d/b.log", "d/keep", "cache/x", "d/cache", "sub/skip/y", "sub/keep"]
      ) {
        fs.mkdirSync(path.dirname(path.join(src, f)), { recursive: true });
        fs.writeFileSync(path.join(src, f), f);
      }
      fs.mkdirSync(path.join(src, ".hidden"));
      fs.writeFileSync(path.join(src, ".hidden", "h.log"), "h");
      fs.writeFileSync(path.join(src, "top"), "anchored: left out");
      fs.writeFileSync(path.join(src, "d/top"), "not at the root: kept");
      const r = await backup(src, { exclude: ["*.log", "cache/", "sub/skip/*", "/top"] });
      const names = tarNames(save(dir, "a.tar", r.archive));
      assert.deepEqual(names.sort(), [
        "./",
        "./.hidden/",
        "./d/",
        "./d/cache",
        "./d/keep",
        "./d/top",
        "./keep.txt",
        "./sub/",
        "./sub/keep",
        "./sub/skip/",
      ]);
      const members = parseArchive(r.archive);
      assert.deepEqual(dumpdirOf(members[0]!), ["D.hidden", "Dd", "Ykeep.txt", "Dsub"]);
      assert.deepEqual(dumpdirOf(members.find((m) => m.name === "./sub/skip/")!), []);
      const state = new TextDecoder().decode(r.state);
      assert.ok(!state.includes("a.log") && !state.includes("cache/x"));
    } finally {
      cleanup(dir);
    }
  });

  test("a single-file source is one member named by its basename", async () => {
    const dir = scratch();
    try {
      const file = path.join(dir, "only file.txt");
      fs.writeFileSync(file, "just me");
      await settle();
      const r = await backup(file);
      const f = save(dir, "a.tar", r.archive);
      assert.deepEqual(tarNames(f), ["only file.txt"]);
      const out = extract(dir, f);
      assert.equal(fs.readFileSync(path.join(out, "only file.txt"), "utf8"), "just me");
      assert.equal(
        fs.statSync(path.join(out, "only file.txt")).mtimeMs,
        fs.statSync(file).mtimeMs,
      );
      const state = new TextDecoder().decode(r.state).split("\n");
      assert.equal(JSON.parse(state[1]!)[0], "only file.txt");

      // Unchanged: the level 1 archive is empty (two zero blocks).
      const l1 = await backup(file, { previous: streamOf(r.state) });
      assert.equal(l1.archive.length, 1024);
      assert.ok(l1.archive.every((b) => b === 0));
      assert.equal(l1.stats.files, 0);
      assert.equal(l1.stats.scanned, 1);

      fs.appendFileSync(file, " and more");
      const l2 = await backup(file, { previous: streamOf(l1.state) });
      assert.deepEqual(tarNames(save(dir, "l2.tar", l2.archive)), ["only file.txt"]);
    } finally {
      cleanup(dir);
    }
  });

  const mountable = canMount();
  test("a mount point below the source is an empty directory unless crossFileSystems", {
    skip: mountable ? false : "cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)",
  }, async () => {
    const dir = scratch();
    const src = path.join(dir, "src");
    const mnt = path.join(src, "mnt");
    fs.mkdirSync(mnt, { recursive: true });
    fs.writeFileSync(path.join(src, "here.txt"), "here");
    execFileSync("mount", ["-t", "tmpfs", "tmpfs", mnt], { stdio: "ignore" });
    try {
      fs.writeFileSync(path.join(mnt, "inside.txt"), "inside");
      const r = await backup(src);
      assert.deepEqual(tarNames(save(dir, "a.tar", r.archive)), ["./", "./here.txt", "./mnt/"]);
      assert.deepEqual(dumpdirOf(parseArchive(r.archive).find((m) => m.name === "./mnt/")!), []);
      const all = await backup(src, { crossFileSystems: true });
      assert.deepEqual(tarNames(save(dir, "b.tar", all.archive)), [
        "./",
        "./here.txt",
        "./mnt/",
        "./mnt/inside.txt",
      ]);
    } finally {
      execFileSync("umount", [mnt]);
      cleanup(dir);
    }
  });

  test("a file that vanishes, shrinks or grows while the backup runs is a warning, not a failure", async () => {
    const dir = scratch();
    try {
      const src = path.join(dir, "src");
      fs.mkdirSync(src);
      // Names sort so that "0big" is read first; the others are listed (lstat) but not read yet while the
      // consumer holds back, because the archive stream only produces on demand.
      const big = path.join(src, "0big");
      fs.writeFileSync(big, new Uint8Array(32 * MiB).fill(7));
      fs.writeFileSync(path.join(src, "m-grows"), "1234");
      fs.writeFileSync(path.join(src, "s-shrinks"), "123456789");
      fs.writeFileSync(path.join(src, "z-vanishes"), "bye");
      // A sparse file: data at 0 and at 1 MiB, 2 MiB long.
      const sparse = path.join(src, "p-sparse-shrinks");
      const fd = fs.openSync(sparse, "w");
      fs.writeSync(fd, new Uint8Array(4096).fill(1), 0, 4096, 0);
      fs.writeSync(fd, new Uint8Array(4096).fill(2), 0, 4096, MiB);
      fs.ftruncateSync(fd, 2 * MiB);
      fs.closeSync(fd);
      const warnings: Warning[] = [];
      const r = tarBackup(src, { onWarning: (w) => warnings.push(w) });
      const state = new Response(r.state).text();
      const reader = r.stream.getReader();
      const chunks: Uint8Array[] = [];
      const first = await reader.read();
      assert.ok(!first.done);
      chunks.push(first.value);
      fs.rmSync(path.join(src, "z-vanishes"));
      fs.appendFileSync(path.join(src, "m-grows"), "5678");
      fs.truncateSync(path.join(src, "s-shrinks"), 3);
      fs.truncateSync(sparse, 512 * 1024); // its second region is gone
      fs.truncateSync(big, 20 * MiB); // 0big is being read: the rest becomes zeros
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        chunks.push(value);
      }
      const stats = await r.done;
      await state;
      assert.equal(stats.warnings, 5);
      assert.deepEqual(
        warnings.map((w) => path.basename(w.path)).sort(),
        ["0big", "m-grows", "p-sparse-shrinks", "s-shrinks", "z-vanishes"],
      );
      assert.match(warnings.find((w) => w.path.endsWith("p-sparse-shrinks"))!.message, /shrank/);
      assert.match(warnings.find((w) => w.path.endsWith("z-vanishes"))!.message, /vanished/);
      assert.match(warnings.find((w) => w.path.endsWith("m-grows"))!.message, /grew/);
      assert.match(warnings.find((w) => w.path.endsWith("s-shrinks"))!.message, /shrank/);

      const file = save(dir, "a.tar", Buffer.concat(chunks));
      assert.deepEqual(tarNames(file), ["./", "./0big", "./m-grows", "./p-sparse-shrinks", "./s-shrinks"]);
      const out = extract(dir, file);
      assert.equal(fs.readFileSync(path.join(out, "m-grows"), "utf8"), "1234");
      assert.equal(fs.readFileSync(path.join(out, "s-shrinks"), "utf8"), "123\0\0\0\0\0\0");
      // Stored at the size it had when listed, its lost region as zeros.
      const sparseOut = fs.readFileSync(path.join(out, "p-sparse-shrinks"));
      assert.equal(sparseOut.length, 2 * MiB);
      assert.deepEqual([sparseOut[0], sparseOut[4095], sparseOut[4096], sparseOut[MiB]], [1, 1, 0, 0]);
      const restored = fs.readFileSync(path.join(out, "0big"));
      assert.equal(restored.length, 32 * MiB);
      assert.equal(restored[20 * MiB - 1], 7);
      assert.equal(restored[20 * MiB], 0);
    } finally {
      cleanup(dir);
    }
  });

  test("sockets are left out with a warning", async () => {
    const dir = scratch();
    const server = net.createServer();
    try {
      const src = path.join(dir, "src");
      fs.mkdirSync(src);
      fs.writeFileSync(path.join(src, "file"), "f");
      await new Promise<void>((resolve) => server.listen(path.join(src, "sock"), resolve));
      const r = await backup(src);
      assert.deepEqual(tarNames(save(dir, "a.tar", r.archive)), ["./", "./file"]);
      assert.deepEqual(dumpdirOf(parseArchive(r.archive)[0]!), ["Yfile"]);
      assert.equal(r.warnings.length, 1);
      assert.match(r.warnings[0]!.message, /socket/);
      assert.equal(r.stats.warnings, 1);
    } finally {
      await new Promise((resolve) => server.close(resolve));
      cleanup(dir);
    }
  });

  test("a sparse file of 8 GiB and more keeps its size in GNU.sparse.realsize, its holes out of the archive", async () => {
    const dir = scratch();
    try {
      const src = path.join(dir, "src");
      fs.mkdirSync(src);
      const size = 8 * 1024 * MiB + 1;
      fs.writeFileSync(path.join(src, "huge"), "");
      fs.truncateSync(path.join(src, "huge"), size); // sparse: no disk space used
      const r = tarBackup(src);
      const [archive, state] = await Promise.all([
        new Response(r.stream).bytes(),
        new Response(r.state).text(),
      ]);
      await r.done;
      assert.ok(archive.length < 8192, `${archive.length} bytes`);
      assert.match(state, new RegExp(`\\["huge","f","\\d+","\\d+","${size}",`));
      // GNU sparse format 1.0: the real name and size in pax records, the map (one empty region at the
      // end: all hole) as the member's data.
      const huge = parseArchive(archive).find((m) => m.name === "./GNUSparseFile.0/huge")!;
      assert.equal(decoder.decode(huge.pax.get("GNU.sparse.name")), "./huge");
      assert.equal(decoder.decode(huge.pax.get("GNU.sparse.realsize")), String(size));
      assert.equal(huge.size, 512);
      assert.equal(huge.pax.get("size"), undefined);
    } finally {
      cleanup(dir);
    }
  });

  test("an abort errors both streams with AbortedError", async () => {
    const dir = scratch();
    try {
      const src = path.join(dir, "src");
      fs.mkdirSync(src);
      fs.writeFileSync(path.join(src, "big"), new Uint8Array(16 * MiB));
      const ac = new AbortController();
      const r = tarBackup(src, { signal: ac.signal });
      const state = new Response(r.state).text();
      const reader = r.stream.getReader();
      assert.ok(!(await reader.read()).done);
      ac.abort();
      await assert.rejects(async () => {
        while (!(await reader.read()).done);
      }, AbortedError);
      await assert.rejects(state, AbortedError);
      await assert.rejects(r.done, AbortedError);
    } finally {
      cleanup(dir);
    }
  });

  test("an already aborted signal fails the backup", async () => {
    const dir = scratch();
    try {
      const r = tarBackup(dir, { signal: AbortSignal.abort() });
      await assert.rejects(new Response(r.stream).arrayBuffer(), AbortedError);
      await assert.rejects(r.done, AbortedError);
    } finally {
      cleanup(dir);
    }
  });

  test("a missing or unsupported source throws a FrostError right away", () => {
    const dir = scratch();
    try {
      const missing = path.join(dir, "missing");
      assert.throws(() => tarBackup(missing), (err: unknown) => {
        assert.ok(err instanceof FrostError);
        assert.equal(err.message, `Cannot back up "${missing}": no such file or directory`);
        return true;
      });
      execFileSync("mkfifo", [path.join(dir, "fifo")]);
      assert.throws(() => tarBackup(path.join(dir, "fifo")), /not a directory or a regular file/);
    } finally {
      cleanup(dir);
    }
  });

  test("a parent state that is not a frost tar state errors the streams with a FrostError", async () => {
    const dir = scratch();
    try {
      fs.writeFileSync(path.join(dir, "f"), "f");
      const bad = new TextEncoder().encode("GNU tar-1.34-2\n");
      const r = tarBackup(dir, { previous: streamOf(bad) });
      void new Response(r.state).arrayBuffer().catch(() => {});
      await assert.rejects(new Response(r.stream).arrayBuffer(), /not a frost tar state/);
      await assert.rejects(r.done, FrostError);

      const future = new TextEncoder().encode('{"format":"frost-tar-state","version":99,"started":"0"}\n');
      const r2 = tarBackup(dir, { previous: streamOf(future) });
      void new Response(r2.state).arrayBuffer().catch(() => {});
      await assert.rejects(r2.done, /version 99 is not supported/);

      const garbled = new TextEncoder().encode(
        '{"format":"frost-tar-state","version":1,"started":"0"}\n[1,2]\n',
      );
      const r3 = tarBackup(dir, { previous: streamOf(garbled) });
      void new Response(r3.state).arrayBuffer().catch(() => {});
      void new Response(r3.stream).arrayBuffer().catch(() => {});
      await assert.rejects(
        r3.done,
        /^FrostError: Cannot read the parent backup's state: line 2 is not a state record/,
      );

      // restore --dry-run/--include and ls read a backup's own state: the message does not say "parent".
      const listing = async () => {
        for await (const _ of tarStateEntries(streamOf(garbled))) { /* drain */ }
      };
      await assert.rejects(
        listing(),
        /^FrostError: Cannot read the backup's state: line 2 is not a state record/,
      );
      await assert.rejects(
        async () => {
          for await (const _ of tarStateEntries(streamOf(future))) { /* drain */ }
        },
        /Cannot read the backup's state: version 99 is not supported/,
      );
    } finally {
      cleanup(dir);
    }
  });

  test("progress reports end with the final totals", async () => {
    const dir = scratch();
    try {
      fs.writeFileSync(path.join(dir, "f"), "12345");
      const r = await backup(dir);
      assert.ok(r.progress.length >= 1);
      assert.deepEqual(r.progress[r.progress.length - 1], { files: 2, bytes: 5 });
      assert.deepEqual(r.stats, { files: 2, bytes: 5, scanned: 2, warnings: 0 });
    } finally {
      cleanup(dir);
    }
  });
});

describe("tar backup helpers", () => {
  test("compareNames() orders by UTF-8 bytes", () => {
    const names = ["b", "a", "\u{1F600}", "\uFF21", "ä", "B", "a b", "ab", ""];
    const byBytes = [...names].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
    assert.deepEqual([...names].sort(compareNames), byBytes);
    assert.deepEqual(sortNames([...names]), byBytes);
    assert.deepEqual(sortNames(["b", "a", "c"]), ["a", "b", "c"]);
  });

  test("compareKey() walks depth first, non-directories before directories", () => {
    const walk: [string, boolean][] = [
      [".", true],
      ["z", false],
      ["a", true],
      ["a/y", false],
      ["a/b", true],
      ["a/b/x", false],
      ["a/c", true],
      ["b", true],
    ];
    const parts = (p: string) => p === "." ? [] : p.split("/");
    for (let i = 0; i < walk.length; i++) {
      for (let j = 0; j < walk.length; j++) {
        const [a, aDir] = walk[i]!;
        const [b, bDir] = walk[j]!;
        if (b === ".") continue;
        const bp = parts(b);
        const c = compareKey(parts(a), aDir, bp.slice(0, -1), bp[bp.length - 1]!, bDir);
        assert.equal(Math.sign(c), Math.sign(i - j), `${a} vs ${b}`);
      }
    }
  });

  test("TarStateReader merges a parent state streamed in small pieces, in walk order", async () => {
    const rec = (p: string, kind: "f" | "d") => stateRecord(p, kind, "1", `ino-${p}`, "0", "1", "2");
    const text = stateHeader(1_000_000_000_000n) +
      [
        rec(".", "d"),
        rec("a", "f"),
        rec("c", "f"),
        rec("d", "d"),
        rec("d/x", "f"),
        rec("e", "d"),
        rec("e/y", "f"),
      ]
        .join("");
    const reader = new TarStateReader(streamOf(new TextEncoder().encode(text), 5));
    await reader.open();
    assert.equal(reader.started, 1_000_000_000_000n);
    const lookup = async (parent: string[], name: string): Promise<ParentRecord | undefined> => {
      for (;;) {
        const r = reader.match(parent, name, false);
        if (r !== MORE) return r;
        await reader.more();
      }
    };
    // The current tree: "a" deleted, "b" new, "c" kept, dir "d" deleted, "e/y" kept, "e/z" new.
    assert.equal(await lookup([], "b"), undefined);
    assert.equal((await lookup([], "c"))?.tail, '"ino-c","0","1","2"]');
    assert.equal((await lookup(["e"], "y"))?.tail, '"ino-e/y","0","1","2"]');
    assert.equal(await lookup(["e"], "z"), undefined);
    await reader.close();
  });

  test("paxTime() and paxRecordLength() format like GNU tar", () => {
    assert.equal(paxTime("1795797177876795991"), "1795797177.876795991");
    assert.equal(paxTime("5"), "0.000000005");
    assert.equal(paxTime("0"), "0.000000000");
    assert.equal(paxTime("-1500000000"), "-1.500000000");
    assert.equal(paxTime("-5"), "-0.000000005");
    assert.equal(paxRecordLength("mtime".length, 20), 30); // "30 mtime=1795797177.876795991\n"
    assert.equal(paxRecordLength(1, 93), 99); // "99 k=…\n"
    assert.equal(paxRecordLength(1, 94), 101); // the length gains a digit by counting itself
    assert.equal(paxRecordLength(1, 95), 102);
  });
});
