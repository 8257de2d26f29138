/**
 * Tests of the tar engine's restore: real files, archives made by GNU tar (and by hand for hostile ones).
 * @module
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { test } from "node:test";
import type { RestoreOptions, RestoreStats, Warning } from "../../engines/engine.ts";
import { tarRestore } from "../../engines/tar_restore.ts";
import { replayTar, Tree } from "../../engines/tar_list.ts";
import { parseTime, type TarEntry, TarReader } from "../../engines/_tar_read.ts";
import { streamOf } from "../_streams.ts";
import { AbortedError, FrostError } from "../../base/errors.ts";
import { assertSameTree } from "../_tree.ts";

const root = process.getuid?.() === 0;
const MiB = 1024 * 1024;
/** GNU tar's gnu format keeps whole seconds only; posix keeps nanoseconds. */
const SECONDS = 1_000_000_000n;

function scratch(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), "frost-tar-restore-"));
}

/** Removes a scratch tree, read-only directories included (restores make some, by design). */
function cleanup(dir: string): void {
  if (!root) execFileSync("chmod", ["-R", "u+rwx", dir], { stdio: "ignore" });
  fs.rmSync(dir, { recursive: true, force: true });
}

function run(cmd: string, args: string[]): Buffer {
  return execFileSync(cmd, args, { stdio: ["ignore", "pipe", "pipe"], maxBuffer: 256 * MiB });
}

/** Sets an exact time (nanoseconds included) on a path, not following symlinks. */
function touch(p: string, sec: number, nsec = 0): void {
  run("touch", ["-h", "-d", `@${sec}.${String(nsec).padStart(9, "0")}`, p]);
}

/** Archives `src` with GNU tar as one incremental level (`snar` is created or updated). */
function gnuTar(src: string, snar: string, format: "gnu" | "posix"): Uint8Array {
  return run("tar", ["-C", src, "-g", snar, `--format=${format}`, "-cf", "-", "."]);
}

interface Outcome {
  stats: RestoreStats;
  warnings: Warning[];
}

/** The memo of the chain restored into each target so far. */
const memos = new Map<string, Map<string, unknown>>();

/** Feeds `bytes` to a fresh tarRestore() in chunks of the given sizes (cycled) and awaits it. */
async function restore(
  target: string,
  bytes: Uint8Array,
  sizes: number[] = [MiB],
  options: RestoreOptions = {},
): Promise<Outcome> {
  const warnings: Warning[] = [];
  // Levels restored into one target form one chain: they share one memo (see RestoreOptions.memo).
  let memo = memos.get(target);
  if (!memo) memos.set(target, memo = new Map());
  const r = tarRestore(target, { memo, ...options, onWarning: (w) => warnings.push(w) });
  const writer = r.writable.getWriter();
  const pending: Promise<void>[] = [];
  for (let i = 0, k = 0; i < bytes.length; k++) {
    const n = sizes[k % sizes.length]!;
    pending.push(writer.write(bytes.subarray(i, i + n)));
    i += n;
  }
  pending.push(writer.close());
  // Failures surface through `done`, which is what callers await.
  await Promise.allSettled(pending);
  return { stats: await r.done, warnings };
}

async function rejectsWith(promise: Promise<unknown>, pattern: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof FrostError, `expected a FrostError, got ${err}`);
    assert.match(err.message, pattern);
    return true;
  });
}

// ---------------------------------------------------------------------------------------------------
// Hand-written archives, for what GNU tar refuses to produce.

interface Member {
  name: string;
  /** Typeflag character; default '0'. */
  type?: string;
  data?: Uint8Array | string;
  linkname?: string;
  mode?: number;
  mtime?: number;
  devmajor?: number;
  devminor?: number;
  /** Pax records, written as an 'x' member before this one. */
  pax?: Record<string, string>;
}

function octal(buf: Uint8Array, off: number, len: number, value: number): void {
  buf.set(new TextEncoder().encode(value.toString(8).padStart(len - 1, "0") + "\0"), off);
}

function header(m: Member, size: number): Uint8Array {
  const h = new Uint8Array(512);
  const enc = new TextEncoder();
  h.set(enc.encode(m.name).subarray(0, 100), 0);
  octal(h, 100, 8, m.mode ?? (m.type === "5" || m.type === "D" ? 0o755 : 0o644));
  octal(h, 108, 8, 0);
  octal(h, 116, 8, 0);
  octal(h, 124, 12, size);
  octal(h, 136, 12, m.mtime ?? 1_600_000_000);
  h[156] = (m.type ?? "0").charCodeAt(0);
  h.set(enc.encode(m.linkname ?? "").subarray(0, 100), 157);
  h.set(enc.encode("ustar\x0000root"), 257);
  h.set(enc.encode("root"), 297);
  octal(h, 329, 8, m.devmajor ?? 0);
  octal(h, 337, 8, m.devminor ?? 0);
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.set(enc.encode(sum.toString(8).padStart(6, "0") + "\0 "), 148);
  return h;
}

/** A ustar archive of `members`, with pax headers where asked and the end-of-archive blocks. */
function tarOf(members: Member[]): Uint8Array {
  const parts: Uint8Array[] = [];
  const add = (m: Member) => {
    const data = typeof m.data === "string" ? new TextEncoder().encode(m.data) : m.data ?? new Uint8Array(0);
    parts.push(header(m, data.length), data, new Uint8Array((512 - (data.length % 512)) % 512));
  };
  for (const m of members) {
    if (m.pax) {
      let body = "";
      for (const [k, v] of Object.entries(m.pax)) {
        const rec = ` ${k}=${v}\n`;
        let len = rec.length + 1;
        while (String(len).length + new TextEncoder().encode(rec).length !== len) len++;
        body += len + rec;
      }
      add({ name: "PaxHeader", type: "x", data: body });
    }
    add(m);
  }
  parts.push(new Uint8Array(1024));
  return Buffer.concat(parts);
}

// ---------------------------------------------------------------------------------------------------
// A tree that exercises every kind of entry and awkward name.

const LONG_COMPONENT = "L".repeat(210);
const LONG_PATH = ["p".repeat(100), "q".repeat(100), "r".repeat(120)].join("/");
const LONG_TARGET = "t".repeat(160) + "/dangling";

/** Builds the hostile tree; `nanos` gives sub-second mtimes (for pax), otherwise whole seconds. */
function makeHostileTree(src: string, nanos: boolean): void {
  const w = (rel: string, data: string | Uint8Array) => fs.writeFileSync(path.join(src, rel), data);
  const d = (rel: string) => fs.mkdirSync(path.join(src, rel), { recursive: true });
  w("plain.txt", "hello\n");
  w("with space.txt", "space");
  w(`quo"te's.txt`, "quotes");
  w("what?.txt", "q");
  w("hash#tag", "h");
  w("ünïcødé 日本語.txt", "unicode");
  w(LONG_COMPONENT, "long component");
  d(path.dirname(LONG_PATH));
  w(LONG_PATH, "long path");
  w("empty", "");
  d("empty dir");
  d("deep/a/b/c");
  w("deep/a/b/c/leaf", new Uint8Array(70_000).map((_, i) => (i * 7919) % 251));
  fs.symlinkSync("plain.txt", path.join(src, "link to plain"));
  fs.symlinkSync("deep/a", path.join(src, "dirlink"));
  fs.symlinkSync("nowhere/at/all", path.join(src, "dangling"));
  fs.symlinkSync(LONG_TARGET, path.join(src, "long target link"));
  w("hard1", "shared inode");
  fs.linkSync(path.join(src, "hard1"), path.join(src, "hard2"));
  fs.linkSync(path.join(src, "hard1"), path.join(src, "deep/hard3"));
  run("mkfifo", [path.join(src, "fifo")]);
  w("setuid", "#!/bin/sh\n");
  fs.chmodSync(path.join(src, "setuid"), 0o4755);
  w("private", "secret");
  fs.chmodSync(path.join(src, "private"), 0o400);
  d("sgid dir");
  fs.chmodSync(path.join(src, "sgid dir"), 0o2775);
  d("readonly");
  w("readonly/inside", "in a read-only dir");
  fs.chmodSync(path.join(src, "readonly"), 0o555);
  if (root) {
    w("numeric owner", "1234:5678");
    fs.chownSync(path.join(src, "numeric owner"), 1234, 5678);
    w("daemon owned", "daemon");
    run("chown", ["daemon:daemon", path.join(src, "daemon owned")]);
    run("mknod", [path.join(src, "null device"), "c", "1", "3"]);
    // Beyond the 7 octal digits of a ustar id field: GNU tar writes base-256 (gnu) or pax (posix).
    w("huge ids", "3000000");
    fs.chownSync(path.join(src, "huge ids"), 3_000_000, 3_000_001);
  }
  w("before 1970", "negative mtime");
  // Distinct times everywhere, set deepest first so that directory times stay put.
  const all: string[] = [];
  const walk = (rel: string) => {
    const abs = path.join(src, rel);
    if (fs.lstatSync(abs).isDirectory()) { for (const n of fs.readdirSync(abs)) walk(path.join(rel, n)); }
    all.push(abs);
  };
  walk(".");
  all.forEach((abs, i) => touch(abs, 1_500_000_000 + i * 1000, nanos ? 123_456_789 + i * 1001 : 0));
  touch(path.join(src, "before 1970"), -31_536_000, nanos ? 250_000_000 : 0);
  touch(src, 1_500_000_000);
}

/** Bytes of regular-file content in a tree, each inode once (hard links carry no data in an archive). */
function contentBytes(dir: string): number {
  const seen = new Set<number>();
  let total = 0;
  const walk = (abs: string) => {
    const st = fs.lstatSync(abs);
    if (st.isDirectory()) { for (const n of fs.readdirSync(abs)) walk(path.join(abs, n)); }
    else if (st.isFile() && !seen.has(st.ino)) {
      seen.add(st.ino);
      total += st.size;
    }
  };
  walk(dir);
  return total;
}

for (const format of ["gnu", "posix"] as const) {
  test(`tarRestore() restores a hostile tree archived by GNU tar --format=${format} in any chunking`, async () => {
    const base = scratch();
    try {
      const src = path.join(base, "src");
      fs.mkdirSync(src);
      makeHostileTree(src, format === "posix");
      const archive = gnuTar(src, path.join(base, "snar"), format);
      const precision = format === "gnu" ? SECONDS : undefined;
      for (const sizes of [[1], [511], [513], [MiB], [7, 1024, 1, 4096, 333]]) {
        const target = path.join(base, `target-${sizes.join("-")}`);
        fs.mkdirSync(target);
        const { stats, warnings } = await restore(target, archive, sizes);
        assert.deepEqual(warnings, []);
        assertSameTree(src, target, { symlinkMtimes: true, mtimePrecisionNs: precision });
        assert.equal(stats.deleted, 0);
        assert.ok(stats.files > 30, `files: ${stats.files}`);
        assert.equal(stats.bytes, contentBytes(src));
      }
    } finally {
      cleanup(base);
    }
  });
}

test("tarRestore() with noGiveBack writes large file data in the background, in any chunking", async () => {
  const base = scratch();
  try {
    const src = path.join(base, "src");
    fs.mkdirSync(path.join(src, "dir"), { recursive: true });
    const bytes = (n: number, seed: number) => new Uint8Array(n).map((_, i) => (i * 7919 + seed * 31) % 251);
    fs.writeFileSync(path.join(src, "big"), bytes(5 * MiB + 1, 1));
    fs.linkSync(path.join(src, "big"), path.join(src, "dir/big link"));
    fs.writeFileSync(path.join(src, "dir/setuid"), bytes(300_000, 2));
    fs.chmodSync(path.join(src, "dir/setuid"), 0o4755);
    fs.writeFileSync(path.join(src, "small"), "small");
    fs.writeFileSync(path.join(src, "exactly 1 MiB"), bytes(MiB, 3));
    fs.writeFileSync(path.join(src, "zz last"), bytes(2 * MiB + 511, 4));
    touch(path.join(src, "big"), 1_700_000_000, 123_456_789);
    touch(path.join(src, "dir"), 1_600_000_000);
    const archive = gnuTar(src, path.join(base, "snar"), "posix");
    for (const sizes of [[64 * 1024], [200_000, 70_000, MiB + 3], [MiB], [4 * MiB]]) {
      const target = path.join(base, `target-${sizes.join("-")}`);
      fs.mkdirSync(target);
      const { stats } = await restore(target, archive, sizes, { noGiveBack: true });
      assertSameTree(src, target, { symlinkMtimes: true });
      assert.equal(stats.bytes, contentBytes(src));
    }
    // A truncated archive still names the member, and the restore stops cleanly.
    const target = path.join(base, "truncated");
    fs.mkdirSync(target);
    await rejectsWith(
      restore(target, archive.subarray(0, archive.length - 1024 - MiB), [100_000], { noGiveBack: true }),
      /^Cannot restore "\.\/[^"]+": the archive ends inside its data/,
    );
  } finally {
    cleanup(base);
  }
});

test("tarRestore() rejects malformed GNU sparse maps, naming the member", async () => {
  const v1 = { "GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "./img" };
  const map = (text: string, data = "") => text + "\0".repeat(512 - text.length) + data;
  const cases: [string, Uint8Array, RegExp][] = [
    [
      "a 1.0 map with a letter",
      tarOf([{ name: "x", pax: { ...v1, "GNU.sparse.realsize": "100" }, data: map("1\n0\n1x\n", "a") }]),
      /sparse member "\.\/img": malformed sparse map/,
    ],
    [
      "a region past the real size",
      tarOf([{ name: "x", pax: { ...v1, "GNU.sparse.realsize": "10" }, data: map("1\n8\n4\n", "abcd") }]),
      /sparse member "\.\/img": its sparse map has a region out of order or past its size \(8, 4\)/,
    ],
    [
      "more mapped bytes than stored",
      tarOf([{ name: "x", pax: { ...v1, "GNU.sparse.realsize": "100" }, data: map("1\n0\n50\n", "ab") }]),
      /sparse member "\.\/img": its sparse map holds 50 bytes, the archive 2/,
    ],
    [
      "a 0.1 map with an odd count",
      tarOf([{ name: "y", pax: { "GNU.sparse.size": "100", "GNU.sparse.map": "0,5,9" }, data: "abcde" }]),
      /sparse member "y": bad GNU.sparse.map/,
    ],
    [
      "an unknown format",
      tarOf([{ name: "z", pax: { "GNU.sparse.major": "2", "GNU.sparse.minor": "0" }, data: "" }]),
      /^Cannot restore "z": GNU sparse format 2\.0 is not supported/,
    ],
  ];
  for (const [what, archive, message] of cases) {
    const target = scratch();
    try {
      await rejectsWith(restore(target, archive, [100]), message);
    } catch (err) {
      throw new Error(`${what}: ${(err as Error).message}`);
    } finally {
      cleanup(target);
    }
  }
});

test("tarRestore() with noGiveBack writes the large regions of a sparse member at their offsets", async () => {
  const base = scratch();
  try {
    const src = path.join(base, "src");
    fs.mkdirSync(src);
    const bytes = (n: number, seed: number) => new Uint8Array(n).map((_, i) => (i * 7919 + seed * 31) % 251);
    const fd = fs.openSync(path.join(src, "image"), "w");
    fs.writeSync(fd, bytes(3 * MiB, 1), 0, 3 * MiB, 0);
    fs.writeSync(fd, bytes(3 * MiB + 5, 2), 0, 3 * MiB + 5, 8 * MiB);
    fs.ftruncateSync(fd, 20 * MiB);
    fs.closeSync(fd);
    const want = fs.readFileSync(path.join(src, "image"));
    for (const format of ["gnu", "posix"]) {
      const archive = run("tar", ["-C", src, "-S", `--format=${format}`, "-cf", "-", "image"]);
      for (const sizes of [[64 * 1024], [200_000, 70_000, MiB + 3], [4 * MiB]]) {
        const target = path.join(base, `target-${format}-${sizes.join("-")}`);
        fs.mkdirSync(target);
        const { stats } = await restore(target, archive, sizes, { noGiveBack: true });
        assert.ok(fs.readFileSync(path.join(target, "image")).equals(want), `${format} ${sizes.join(",")}`);
        assert.ok(
          stats.bytes >= 6 * MiB + 5 && stats.bytes <= 6 * MiB + 8192,
          `${stats.bytes} bytes written`,
        );
        assert.ok(fs.statSync(path.join(target, "image")).blocks * 512 < 8 * MiB);
      }
    }
  } finally {
    cleanup(base);
  }
});

test("tarRestore() with noGiveBack stops with AbortedError in the middle of a large file", async () => {
  const target = scratch();
  try {
    const controller = new AbortController();
    const r = tarRestore(target, { signal: controller.signal, noGiveBack: true });
    const writer = r.writable.getWriter();
    const archive = tarOf([{ name: "large", data: new Uint8Array(8 * MiB).fill(7) }]);
    for (let i = 0; i < 4 * MiB; i += 256 * 1024) await writer.write(archive.subarray(i, i + 256 * 1024));
    controller.abort();
    await assert.rejects(r.done, AbortedError);
    await assert.rejects(writer.write(new Uint8Array(512)));
    // The file was closed once its writes ended: it can be removed and the target cleaned up.
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.ok(fs.statSync(path.join(target, "large")).size <= 4 * MiB);
  } finally {
    cleanup(target);
  }
});

// ---------------------------------------------------------------------------------------------------
// Incremental levels.

function levelZeroTree(src: string): void {
  const w = (rel: string, data: string) => {
    fs.mkdirSync(path.dirname(path.join(src, rel)), { recursive: true });
    fs.writeFileSync(path.join(src, rel), data);
  };
  for (const f of ["keep.txt", "mod.txt", "del.txt", "ren.txt", "chmod.txt", "f2d", "f2sym", "hl_a"]) w(f, f);
  w("d2f/inner", "inner");
  w("dir_keep/a", "a");
  w("dir_keep/b", "b");
  w("dir_del/x", "x");
  w("dir_del/sub/y", "y");
  w("dir_ren/p", "p");
  w("dir_ren/q/r", "r");
  w("ro/inside.txt", "inside");
  fs.chmodSync(path.join(src, "ro"), 0o555);
  fs.symlinkSync("keep.txt", path.join(src, "sym2f"));
  fs.symlinkSync("dir_keep", path.join(src, "lnk"));
}

function levelOneChanges(src: string): void {
  const p = (rel: string) => path.join(src, rel);
  fs.writeFileSync(p("mod.txt"), "modified at level 1");
  fs.rmSync(p("del.txt"));
  fs.renameSync(p("ren.txt"), p("renamed.txt"));
  fs.chmodSync(p("chmod.txt"), 0o600);
  fs.rmSync(p("f2d"));
  fs.mkdirSync(p("f2d"));
  fs.writeFileSync(p("f2d/inner"), "file became dir");
  fs.rmSync(p("d2f"), { recursive: true });
  fs.writeFileSync(p("d2f"), "dir became file");
  fs.rmSync(p("sym2f"));
  fs.writeFileSync(p("sym2f"), "symlink became file");
  fs.rmSync(p("f2sym"));
  fs.symlinkSync("mod.txt", p("f2sym"));
  fs.linkSync(p("hl_a"), p("hl_b"));
  fs.rmSync(p("dir_del"), { recursive: true });
  fs.renameSync(p("dir_ren"), p("dir_renamed"));
  fs.writeFileSync(p("dir_renamed/new.txt"), "new in renamed dir");
  fs.writeFileSync(p("new.txt"), "new at level 1");
  fs.mkdirSync(p("newdir/deep"), { recursive: true });
  fs.writeFileSync(p("newdir/deep/file"), "deep new");
  fs.chmodSync(p("dir_keep"), 0o750);
  fs.chmodSync(p("ro"), 0o755);
  fs.writeFileSync(p("ro/added.txt"), "added to read-only dir");
  fs.chmodSync(p("ro"), 0o555);
  fs.rmSync(p("lnk"));
  fs.symlinkSync("dir_renamed", p("lnk"));
}

function levelTwoChanges(src: string): void {
  const p = (rel: string) => path.join(src, rel);
  fs.rmSync(p("newdir"), { recursive: true });
  fs.mkdirSync(p("del.txt"));
  fs.writeFileSync(p("del.txt/now a dir"), "deleted name came back as a dir");
  fs.renameSync(p("dir_renamed"), p("dir_ren"));
  fs.rmSync(p("hl_a"));
  fs.appendFileSync(p("keep.txt"), " changed at level 2");
  fs.rmSync(p("f2d"), { recursive: true });
  fs.symlinkSync("keep.txt", p("f2d"));
  fs.rmSync(p("dir_keep/a"));
}

/** Copies the source as it is now, times and links included, to compare a restore against later. */
function freeze(src: string, dest: string): void {
  run("cp", ["-a", src, dest]);
}

for (const format of ["gnu", "posix"] as const) {
  test(`tarRestore() replays GNU tar --format=${format} levels 0, 1, 2 exactly, deletions and renames included`, async () => {
    const base = scratch();
    try {
      const src = path.join(base, "src");
      const snar = path.join(base, "snar");
      fs.mkdirSync(src);
      levelZeroTree(src);
      const levels: Uint8Array[] = [gnuTar(src, snar, format)];
      freeze(src, path.join(base, "exp0"));
      await new Promise((r) => setTimeout(r, 20));
      levelOneChanges(src);
      levels.push(gnuTar(src, snar, format));
      freeze(src, path.join(base, "exp1"));
      await new Promise((r) => setTimeout(r, 20));
      levelTwoChanges(src);
      levels.push(gnuTar(src, snar, format));
      freeze(src, path.join(base, "exp2"));

      // The level-1 archive really records a directory rename, and level 2 renames it back.
      assert.ok(Buffer.from(levels[1]!).includes("R./dir_ren\0T./dir_renamed\0"));
      assert.ok(Buffer.from(levels[2]!).includes("R./dir_renamed\0T./dir_ren\0"));

      const target = path.join(base, "target");
      fs.mkdirSync(target);
      const precision = format === "gnu" ? SECONDS : undefined;
      const deleted: number[] = [];
      for (let level = 0; level < levels.length; level++) {
        const { stats, warnings } = await restore(target, levels[level]!, [100_000]);
        assert.deepEqual(warnings, []);
        assertSameTree(path.join(base, `exp${level}`), target, {
          symlinkMtimes: true,
          mtimePrecisionNs: precision,
        });
        deleted.push(stats.deleted);
      }
      assert.equal(deleted[0], 0);
      // Level 1: at least del.txt and dir_del (+ x, sub, sub/y). Entries whose kind changed (f2d, d2f) are
      // removed either here or when their new kind is written, as GNU tar's timing marks them: the trees
      // compared above are what counts.
      assert.ok(deleted[1]! >= 5, `level 1 deleted ${deleted[1]}`);
      assert.ok(deleted[2]! >= 4, `level 2 deleted ${deleted[2]}`);
    } finally {
      cleanup(base);
    }
  });
}

test("tarRestore() keeps unchanged files ('N' in the dumpdir) and moves renamed directories", async () => {
  const base = scratch();
  try {
    const src = path.join(base, "src");
    const snar = path.join(base, "snar");
    fs.mkdirSync(path.join(src, "old/sub"), { recursive: true });
    fs.writeFileSync(path.join(src, "old/unchanged"), "kept by rename");
    fs.writeFileSync(path.join(src, "old/sub/x"), "x");
    const l0 = gnuTar(src, snar, "gnu");
    await new Promise((r) => setTimeout(r, 20));
    fs.renameSync(path.join(src, "old"), path.join(src, "new"));
    const l1 = gnuTar(src, snar, "gnu");
    // The level-1 archive holds no data for the unchanged file: only the rename brings it over.
    assert.ok(!Buffer.from(l1).includes("kept by rename"));
    const target = path.join(base, "target");
    fs.mkdirSync(target);
    await restore(target, l0);
    await restore(target, l1);
    assert.equal(fs.readFileSync(path.join(target, "new/unchanged"), "utf8"), "kept by rename");
    assert.ok(!fs.existsSync(path.join(target, "old")));
    assertSameTree(src, target, { mtimePrecisionNs: SECONDS });
  } finally {
    cleanup(base);
  }
});

test("tarRestore() leaves the folders a later level finds as they are untouched (their change time stays)", async () => {
  const base = scratch();
  try {
    const src = path.join(base, "src");
    const snar = path.join(base, "snar");
    fs.mkdirSync(path.join(src, "same/deep"), { recursive: true });
    fs.mkdirSync(path.join(src, "changed"));
    fs.writeFileSync(path.join(src, "same/deep/f"), "unchanged");
    fs.writeFileSync(path.join(src, "changed/f"), "before");
    fs.chmodSync(path.join(src, "same"), 0o750);
    touch(path.join(src, "same/deep"), 1_600_000_000);
    touch(path.join(src, "same"), 1_600_000_100);
    const l0 = gnuTar(src, snar, "gnu");
    await new Promise((r) => setTimeout(r, 20));
    fs.writeFileSync(path.join(src, "changed/f"), "after, longer");
    fs.chmodSync(path.join(src, "changed"), 0o705);
    touch(path.join(src, "changed"), 1_600_000_200);
    const l1 = gnuTar(src, snar, "gnu");
    const target = path.join(base, "target");
    fs.mkdirSync(target);
    await restore(target, l0);
    // GNU stat: Deno's node:fs gives ctime in whole seconds only.
    const ctime = (rel: string) => run("stat", ["-c", "%z", path.join(target, rel)]).toString().trim();
    const before = { same: ctime("same"), deep: ctime("same/deep") };
    await new Promise((r) => setTimeout(r, 20));
    await restore(target, l1);
    // Owner, mode and times already hold: no chown, chmod or utimes touched them.
    assert.deepEqual({ same: ctime("same"), deep: ctime("same/deep") }, before);
    // What changed is applied all the same.
    assert.equal(fs.lstatSync(path.join(target, "changed")).mode & 0o7777, 0o705);
    assertSameTree(src, target, { mtimePrecisionNs: SECONDS });
  } finally {
    cleanup(base);
  }
});

/** The paths (type-marked: "d " a directory) of a replayed tree, or of a real one, sorted. */
function listedPaths(tree: Tree): string[] {
  return tree.list("").map(([p, n]) => `${n.type === "dir" ? "d" : "-"} ${p}`).sort();
}

function diskPaths(root: string, rel = "."): string[] {
  const out = [`d ${rel}`];
  for (const d of fs.readdirSync(path.join(root, rel), { withFileTypes: true })) {
    const child = rel === "." ? d.name : `${rel}/${d.name}`;
    if (d.isDirectory()) out.push(...diskPaths(root, child));
    else out.push(`- ${child}`);
  }
  return out.sort();
}

test("tarRestore() and the listing Tree replay a swap of two directories (GNU tar's X temporary) alike", async () => {
  const base = scratch();
  try {
    const src = path.join(base, "src");
    const snar = path.join(base, "snar");
    fs.mkdirSync(path.join(src, "a"), { recursive: true });
    fs.mkdirSync(path.join(src, "b"));
    fs.writeFileSync(path.join(src, "a/fa"), "A");
    fs.writeFileSync(path.join(src, "b/fb"), "B");
    const l0 = gnuTar(src, snar, "gnu");
    await new Promise((r) => setTimeout(r, 20));
    fs.renameSync(path.join(src, "a"), path.join(src, "t"));
    fs.renameSync(path.join(src, "b"), path.join(src, "a"));
    fs.renameSync(path.join(src, "t"), path.join(src, "b"));
    const l1 = gnuTar(src, snar, "gnu");
    // A rename cycle: GNU tar breaks it through a temporary directory (X) and empty R/T names.
    assert.ok(Buffer.from(l1).includes("X.\0"));
    const target = path.join(base, "target");
    fs.mkdirSync(target);
    await restore(target, l0);
    await restore(target, l1);
    const tree = new Tree();
    for (const level of [l0, l1]) await replayTar(streamOf([level]), tree);
    const expected = ["d .", "d a", "- a/fb", "d b", "- b/fa"].sort();
    assert.deepEqual(diskPaths(target), expected);
    assert.deepEqual(listedPaths(tree), expected);
  } finally {
    cleanup(base);
  }
});

test("tarRestore() replays a GNU tar rename of a directory onto a name that was a file (or a symlink)", async () => {
  const base = scratch();
  try {
    const src = path.join(base, "src");
    const snar = path.join(base, "snar");
    const outside = path.join(base, "outside");
    fs.mkdirSync(outside);
    fs.writeFileSync(path.join(outside, "keep"), "not ours");
    fs.mkdirSync(path.join(src, "a/sub"), { recursive: true });
    fs.mkdirSync(path.join(src, "b"));
    fs.writeFileSync(path.join(src, "a/unchanged"), "moved by the rename only");
    fs.writeFileSync(path.join(src, "a/sub/x"), "x");
    fs.writeFileSync(path.join(src, "b/y"), "y");
    fs.writeFileSync(path.join(src, "f"), "a file at level 0");
    fs.symlinkSync(outside, path.join(src, "s"));
    const l0 = gnuTar(src, snar, "gnu");
    await new Promise((r) => setTimeout(r, 20));
    // What GNU tar also records when a deleted folder's inode goes to a new folder made where a file was.
    fs.rmSync(path.join(src, "f"));
    fs.renameSync(path.join(src, "a"), path.join(src, "f"));
    fs.rmSync(path.join(src, "s"));
    fs.renameSync(path.join(src, "b"), path.join(src, "s"));
    const l1 = gnuTar(src, snar, "gnu");
    assert.ok(Buffer.from(l1).includes("R./a\0T./f\0"));
    assert.ok(!Buffer.from(l1).includes("moved by the rename only"));
    const target = path.join(base, "target");
    fs.mkdirSync(target);
    await restore(target, l0);
    const { stats } = await restore(target, l1);
    assert.equal(fs.readFileSync(path.join(target, "f/unchanged"), "utf8"), "moved by the rename only");
    assert.ok(!fs.existsSync(path.join(target, "a")));
    assert.ok(fs.lstatSync(path.join(target, "s")).isDirectory());
    assert.deepEqual(fs.readdirSync(outside), ["keep"]);
    assert.ok(stats.deleted >= 2, `deleted ${stats.deleted}`);
    assertSameTree(src, target, { mtimePrecisionNs: SECONDS });
    const tree = new Tree();
    for (const level of [l0, l1]) await replayTar(streamOf([level]), tree);
    assert.deepEqual(listedPaths(tree), diskPaths(target));
  } finally {
    cleanup(base);
  }
});

test("tarRestore() leaves a directory with content at a rename's target (the rename fails)", async () => {
  const dumpdir = new TextEncoder().encode("R./a\0T./f\0Df\0\0");
  const target = scratch();
  try {
    fs.mkdirSync(path.join(target, "a"));
    fs.mkdirSync(path.join(target, "f"));
    fs.writeFileSync(path.join(target, "f/mine"), "not in the backup");
    await rejectsWith(
      restore(target, tarOf([{ name: "./", type: "D", data: dumpdir }])),
      /^Cannot restore "\.\/": cannot rename "a" to "f": "f" is a folder that holds entries/,
    );
    assert.equal(fs.readFileSync(path.join(target, "f/mine"), "utf8"), "not in the backup");
  } finally {
    cleanup(target);
  }
});

test("tarRestore() and the listing Tree refuse the same malformed dumpdir renames", async () => {
  // An empty R name stands for the X temporary directory: without an X before it, nothing does.
  for (const records of ["R\0T./x\0\0", "R./x\0\0", "R./x\0Dx\0\0"]) {
    const archive = tarOf([{ name: "./", type: "D", data: new TextEncoder().encode(records) }]);
    const pattern = /^Cannot restore "\.\/": malformed rename records in its dumpdir/;
    await assertRefused(archive, pattern);
    await rejectsWith(replayTar(streamOf([archive]), new Tree()), pattern);
  }
});
// ---------------------------------------------------------------------------------------------------
// Plain archives and overwriting.

test("tarRestore() restores plain ustar and pax archives, global headers included", async () => {
  const base = scratch();
  try {
    const src = path.join(base, "src");
    fs.mkdirSync(path.join(src, "d"), { recursive: true });
    fs.writeFileSync(path.join(src, "d/f"), "plain");
    fs.writeFileSync(path.join(src, "g"), "global");
    for (
      const args of [["--format=ustar"], [
        "--format=pax",
        "--pax-option=comment=frost,globexthdr.name=%d/GlobalHead",
      ]]
    ) {
      const archive = run("tar", ["-C", src, ...args, "-cf", "-", "."]);
      const target = path.join(base, "target" + args.length);
      fs.mkdirSync(target);
      await restore(target, archive, [1000]);
      assertSameTree(src, target, { mtimePrecisionNs: args.length === 1 ? SECONDS : undefined });
    }
  } finally {
    cleanup(base);
  }
});

test("tarRestore() replaces existing entries without writing through symlinks or hard links", async () => {
  const base = scratch();
  try {
    const target = path.join(base, "target");
    const sentinel = path.join(base, "sentinel");
    fs.mkdirSync(target);
    fs.mkdirSync(sentinel);
    fs.writeFileSync(path.join(sentinel, "victim"), "safe");
    fs.symlinkSync(path.join(sentinel, "victim"), path.join(target, "f"));
    fs.writeFileSync(path.join(target, "shared"), "shared");
    fs.linkSync(path.join(target, "shared"), path.join(target, "other"));
    fs.mkdirSync(path.join(target, "was dir/sub"), { recursive: true });
    fs.writeFileSync(path.join(target, "was dir/sub/x"), "x");
    fs.writeFileSync(path.join(target, "was file"), "file");
    fs.writeFileSync(path.join(target, "old"), "existing from an earlier level");
    fs.writeFileSync(path.join(sentinel, "keep"), "not purged");
    fs.symlinkSync("../sentinel", path.join(target, "purge me"));
    const archive = tarOf([
      // A directory with an empty dumpdir where the target has a symlink: replaced, never purged through.
      { name: "purge me/", type: "D", data: "\0" },
      { name: "f", data: "new content" },
      { name: "shared", data: "replaced" },
      { name: "was dir", data: "now a file" },
      { name: "was file/", type: "5", mode: 0o755 },
      { name: "link to old", type: "1", linkname: "old" },
    ]);
    await restore(target, archive, [100]);
    assert.equal(fs.readFileSync(path.join(sentinel, "victim"), "utf8"), "safe");
    assert.ok(fs.lstatSync(path.join(target, "f")).isFile());
    assert.equal(fs.readFileSync(path.join(target, "f"), "utf8"), "new content");
    assert.equal(fs.readFileSync(path.join(target, "shared"), "utf8"), "replaced");
    assert.equal(fs.readFileSync(path.join(target, "other"), "utf8"), "shared");
    assert.equal(fs.readFileSync(path.join(target, "was dir"), "utf8"), "now a file");
    assert.ok(fs.lstatSync(path.join(target, "was file")).isDirectory());
    assert.equal(fs.statSync(path.join(target, "was file")).mode & 0o7777, 0o755);
    assert.equal(
      fs.statSync(path.join(target, "link to old")).ino,
      fs.statSync(path.join(target, "old")).ino,
    );
    assert.ok(fs.lstatSync(path.join(target, "purge me")).isDirectory());
    assert.equal(fs.readFileSync(path.join(sentinel, "keep"), "utf8"), "not purged");
  } finally {
    cleanup(base);
  }
});

// ---------------------------------------------------------------------------------------------------
// Hostile archives: each is refused, and nothing appears outside the target.

async function assertRefused(
  archive: Uint8Array,
  pattern: RegExp,
  setup?: (target: string) => void,
): Promise<void> {
  const base = scratch();
  try {
    const target = path.join(base, "target");
    const sentinel = path.join(base, "sentinel");
    fs.mkdirSync(target);
    fs.mkdirSync(sentinel);
    setup?.(target);
    await rejectsWith(restore(target, archive, [700]), pattern);
    assert.deepEqual(fs.readdirSync(base).sort(), ["sentinel", "target"]);
    assert.deepEqual(fs.readdirSync(sentinel), []);
    assert.ok(!fs.existsSync("/tmp/frost-abs-evil"));
    assert.ok(!fs.existsSync(path.join(os.tmpdir(), "pwned")));
  } finally {
    cleanup(base);
  }
}

test('tarRestore() refuses "../evil" and names it', async () => {
  await assertRefused(
    tarOf([{ name: "ok", data: "fine" }, { name: "../evil", data: "x" }]),
    /^Refusing to restore "\.\.\/evil": path leaves the target/,
  );
  await assertRefused(
    tarOf([{ name: "../sentinel/evil", data: "x" }]),
    /"\.\.\/sentinel\/evil": path leaves/,
  );
});

test("tarRestore() refuses absolute names, also from GNU tar --absolute-names", async () => {
  await assertRefused(
    tarOf([{ name: "/tmp/frost-abs-evil", data: "x" }]),
    /"\/tmp\/frost-abs-evil": path leaves/,
  );
  const base = scratch();
  try {
    fs.writeFileSync(path.join(base, "abs"), "absolute");
    const archive = run("tar", ["-P", "--format=posix", "-cf", "-", path.join(base, "abs")]);
    await assertRefused(archive, /^Refusing to restore "\/.*\/abs": path leaves the target/);
  } finally {
    cleanup(base);
  }
});

test('tarRestore() refuses "a/../../x" and a pax path with ".."', async () => {
  await assertRefused(
    tarOf([{ name: "a/", type: "5" }, { name: "a/../../x", data: "x" }]),
    /"a\/\.\.\/\.\.\/x"/,
  );
  await assertRefused(
    tarOf([{ name: "innocent", data: "x", pax: { path: "a/../../sentinel/x" } }]),
    /^Refusing to restore "a\/\.\.\/\.\.\/sentinel\/x"/,
  );
});

test("tarRestore() refuses a path through a symlink the archive planted", async () => {
  const sentinelOf = (t: string) => path.join(path.dirname(t), "sentinel");
  await assertRefused(
    tarOf([
      { name: "l", type: "2", linkname: "../sentinel" },
      { name: "l/pwned", data: "x" },
    ]),
    /^Refusing to restore "l\/pwned": path leaves the target \(through symlink "l"\)/,
  );
  await assertRefused(
    tarOf([{ name: "up", type: "2", linkname: ".." }, { name: "up/sentinel/pwned/", type: "5" }]),
    /"up\/sentinel\/pwned\/"/,
  );
  await assertRefused(
    tarOf([{ name: "tmp", type: "2", linkname: os.tmpdir() }, {
      name: "tmp/pwned",
      type: "2",
      linkname: "x",
    }]),
    /"tmp\/pwned"/,
  );
  // A symlink that replaces a directory verified earlier in the same run.
  await assertRefused(
    tarOf([
      { name: "d/", type: "5" },
      { name: "d/ok", data: "fine" },
      { name: "d", type: "2", linkname: "../sentinel" },
      { name: "d/pwned", data: "x" },
    ]),
    /"d\/pwned"/,
  );
  // Doubled slashes after "./" must not skip the check (a bug found in review: ".//l/pwned" once became
  // "/l/pwned" and bypassed the parent-directory check).
  for (const name of [".//l/pwned", "././/l/pwned", "l//pwned", ".///l/./pwned"]) {
    await assertRefused(
      tarOf([{ name: "./l", type: "2", linkname: "../sentinel" }, { name, data: "x" }]),
      /path leaves the target/,
    );
  }
  // A symlink left in the target by an earlier level.
  await assertRefused(
    tarOf([{ name: "old/pwned", data: "x" }]),
    /"old\/pwned": path leaves the target/,
    (t) => fs.symlinkSync(sentinelOf(t), path.join(t, "old")),
  );
});

test("tarRestore() refuses hard links that leave the target", async () => {
  await assertRefused(
    tarOf([{ name: "h", type: "1", linkname: "../../etc/passwd" }]),
    /^Refusing to restore "h": its link target "\.\.\/\.\.\/etc\/passwd" leaves the target/,
  );
  await assertRefused(tarOf([{ name: "h", type: "1", linkname: "/etc/passwd" }]), /"h": its link target/);
  await assertRefused(
    tarOf([{ name: "s", type: "2", linkname: "/etc" }, { name: "h", type: "1", linkname: "s/passwd" }]),
    /^Refusing to restore "h": its link target "s\/passwd" goes through a symlink/,
  );
});

test("tarRestore() refuses dumpdir renames that leave the target", async () => {
  const dumpdir = new TextEncoder().encode("R../sentinel\0T./stolen\0\0");
  await assertRefused(tarOf([{ name: "./", type: "D", data: dumpdir }]), /^Refusing to restore "\.\/"/);
  const dumpdir2 = new TextEncoder().encode("R./x\0T/tmp/frost-abs-evil\0\0");
  await assertRefused(
    tarOf([{ name: "./", type: "D", data: dumpdir2 }]),
    /path leaves the target/,
    (t) => fs.mkdirSync(path.join(t, "x")),
  );
});

// ---------------------------------------------------------------------------------------------------
// Damaged and unsupported archives.

test("tarRestore() rejects a truncated archive naming the member or the offset", async () => {
  const base = scratch();
  try {
    const src = path.join(base, "src");
    fs.mkdirSync(src);
    fs.writeFileSync(path.join(src, "big"), new Uint8Array(10_000).fill(1));
    const archive = gnuTar(src, path.join(base, "snar"), "posix");
    const at = Buffer.from(archive).indexOf(Buffer.alloc(10_000, 1));
    const target = path.join(base, "target");
    fs.mkdirSync(target);
    await rejectsWith(
      restore(target, archive.subarray(0, at + 5000), [4096]),
      /^Cannot restore "\.\/big": the archive ends inside its data/,
    );
    await rejectsWith(restore(target, archive.subarray(0, at - 512 - 100)), /truncated at byte/);
    await rejectsWith(restore(target, archive.subarray(0, at + 10_240)), /without an end-of-archive block/);
    await rejectsWith(restore(target, new Uint8Array(0)), /the stream is empty/);
  } finally {
    cleanup(base);
  }
});

/** The members TarReader hands on from `archive` (data not taken). */
function membersOf(archive: Uint8Array): TarEntry[] {
  const out: TarEntry[] = [];
  const reader = new TarReader({
    entry(e) {
      out.push(e);
      return false;
    },
    data() {},
    end() {},
    warn() {},
  });
  reader.push(archive);
  reader.finish();
  return out;
}

test("TarReader accepts a header checksum summed as signed bytes, and no other", () => {
  const archive = tarOf([{ name: "é-ü", data: "s" }]);
  // Old writers summed the header as signed chars: each byte ≥ 128 counts 256 less.
  let signed = 8 * 0x20;
  for (let i = 0; i < 512; i++) {
    const c = archive[i]!;
    if (i < 148 || i >= 156) signed += c >= 128 ? c - 256 : c;
  }
  archive.set(new TextEncoder().encode(signed.toString(8).padStart(6, "0") + "\0 "), 148);
  assert.deepEqual(membersOf(archive).map((e) => e.name), ["é-ü"]);
  archive.set(new TextEncoder().encode((signed + 256).toString(8).padStart(6, "0") + "\0 "), 148);
  assert.throws(() => membersOf(archive), /bad header checksum at byte 0/);
});

test("TarReader reads pax records as UTF-8, short and long, ASCII or not", () => {
  const acl = "user::rw-,user:jürgen:r--,group::r--,mask::r--,other::r--";
  const long = "g".repeat(70);
  const [e] = membersOf(tarOf([{
    name: "p",
    data: "",
    pax: { uname: "jürgen", gname: long, mtime: "1700000000.123456789", "SCHILY.acl.access": acl },
  }]));
  assert.equal(e?.uname, "jürgen");
  assert.equal(e?.gname, long);
  assert.deepEqual(e?.mtime, { sec: 1_700_000_000, nsec: 123_456_789 });
  assert.equal(e?.xattrs?.aclAccess, acl);
});

test("TarReader names a metadata member that is malformed or too large, and a bad pax record", () => {
  const malformed = tarOf([{ name: "PaxHeaders/a", type: "x", data: "5 x\n" }, { name: "a", data: "" }]);
  assert.throws(() => membersOf(malformed), /malformed pax record in "PaxHeaders\/a"/);
  const badUid = tarOf([{ name: "a", data: "", pax: { uid: "12x" } }]);
  assert.throws(() => membersOf(badUid), /bad pax "uid" record for "a" at byte 1024$/);
  const badTime = tarOf([{ name: "b", data: "", pax: { mtime: "1.2.3" } }]);
  assert.throws(() => membersOf(badTime), /bad pax "mtime" record for "b" at byte 1024$/);
  const huge = header({ name: "././@LongLink", type: "L" }, 300 * MiB);
  assert.throws(() => membersOf(huge), /metadata member "\.\/\.\/@LongLink" at byte 0 is too large/);
});

test("parseTime() reads pax times exactly and refuses malformed ones", () => {
  assert.deepEqual(parseTime("1700000000.123456789"), { sec: 1_700_000_000, nsec: 123_456_789 });
  assert.deepEqual(parseTime("1700000000.1234567891"), { sec: 1_700_000_000, nsec: 123_456_789 });
  assert.deepEqual(parseTime("5.5"), { sec: 5, nsec: 500_000_000 });
  assert.deepEqual(parseTime("7."), { sec: 7, nsec: 0 });
  assert.deepEqual(parseTime("007"), { sec: 7, nsec: 0 });
  assert.deepEqual(parseTime("-1.5"), { sec: -2, nsec: 500_000_000 });
  assert.deepEqual(parseTime("-3"), { sec: -3, nsec: 0 });
  for (const bad of ["", "-", ".5", "1.2.3", "1e9", " 1", "1 ", "+1", "1.-2", "99999999999999999999"]) {
    assert.equal(parseTime(bad), undefined, bad);
  }
});

test("tarRestore() rejects a flipped header byte as a bad checksum", async () => {
  const archive = tarOf([{ name: "a", data: "aaa" }, { name: "b", data: "bbb" }]);
  const target = scratch();
  try {
    const flipped = archive.slice();
    flipped[1024 + 3] = flipped[1024 + 3]! ^ 0x20;
    await rejectsWith(
      restore(target, flipped),
      /^Cannot read archive: bad header checksum at byte 1024 \(after "a"\)/,
    );
    const first = archive.slice();
    first[0] = first[0]! ^ 1;
    await rejectsWith(restore(target, first, [1]), /bad header checksum at byte 0$/);
  } finally {
    cleanup(target);
  }
});

test("tarRestore() restores GNU sparse members (old GNU, pax 0.0, 0.1, 1.0) with their holes, in any chunking", async () => {
  const base = scratch();
  try {
    const src = path.join(base, "src");
    fs.mkdirSync(src);
    // 40 regions: more than an old GNU header holds (4), so extension blocks follow it; a trailing hole.
    const fd = fs.openSync(path.join(src, "sparse"), "w");
    for (let i = 0; i < 40; i++) {
      fs.writeSync(fd, Buffer.alloc(100 * i + 1, 0x41 + i), 0, 100 * i + 1, i * MiB);
    }
    fs.ftruncateSync(fd, 41 * MiB);
    fs.closeSync(fd);
    fs.closeSync(fs.openSync(path.join(src, "hole"), "w"));
    fs.truncateSync(path.join(src, "hole"), 8 * MiB);
    const variants = [
      ["--format=gnu"],
      ...["0.0", "0.1", "1.0"].map((v) => ["--format=posix", `--sparse-version=${v}`]),
    ];
    for (const args of variants) {
      const archive = run("tar", ["-C", src, "-S", ...args, "-cf", "-", "./sparse", "./hole"]);
      for (const [k, sizes] of [[MiB], [777, 512, 3], [100_000]].entries()) {
        const target = path.join(base, `t${args.join("")}${k}`);
        fs.mkdirSync(target);
        await restore(target, archive, sizes, { noGiveBack: k === 2 });
        for (const name of ["sparse", "hole"]) {
          assert.ok(
            fs.readFileSync(path.join(target, name)).equals(fs.readFileSync(path.join(src, name))),
            `${name} ${args.join(" ")}`,
          );
          const st = fs.statSync(path.join(target, name));
          assert.ok(st.blocks * 512 <= 2 * MiB, `${name} ${args.join(" ")}: ${st.blocks} blocks allocated`);
        }
      }
    }
    const target = path.join(base, "tm");
    fs.mkdirSync(target);
    await rejectsWith(
      restore(target, tarOf([{ name: "part", type: "M", data: "x" }])),
      /^Cannot restore "part": a multi-volume continuation is not supported/,
    );
  } finally {
    cleanup(base);
  }
});

// ---------------------------------------------------------------------------------------------------
// Devices, owners, signals, progress.

test("tarRestore() makes devices as root and warns instead otherwise", async () => {
  const target = scratch();
  try {
    const { warnings } = await restore(
      target,
      tarOf([{ name: "null", type: "3", devmajor: 1, devminor: 3 }]),
    );
    const st = fs.lstatSync(path.join(target, "null"), { throwIfNoEntry: false });
    if (st) {
      assert.ok(st.isCharacterDevice());
      assert.equal(st.rdev, fs.statSync("/dev/null").rdev);
      assert.deepEqual(warnings, []);
    } else {
      assert.equal(warnings.length, 1);
      assert.equal(warnings[0]!.path, "null");
      assert.match(warnings[0]!.message, /^skipped:/);
    }
  } finally {
    cleanup(target);
  }
});

test(
  "tarRestore() with owners: false leaves files to the restoring user",
  { skip: !root && "needs root" },
  async () => {
    const target = scratch();
    try {
      // Owner names unknown here: the numeric ids apply, as with GNU tar.
      const pax = { uid: "1234", gid: "5678", uname: "frost-no-such-user", gname: "frost-no-such-group" };
      const archive = tarOf([{ name: "f", data: "x", pax }]);
      await restore(target, archive, [MiB], { owners: false });
      assert.equal(fs.statSync(path.join(target, "f")).uid, process.getuid!());
      const target2 = path.join(target, "owned");
      fs.mkdirSync(target2);
      await restore(target2, archive);
      assert.equal(fs.statSync(path.join(target2, "f")).uid, 1234);
      assert.equal(fs.statSync(path.join(target2, "f")).gid, 5678);
    } finally {
      cleanup(target);
    }
  },
);

test("tarRestore() stops with AbortedError when its signal aborts", async () => {
  const target = scratch();
  try {
    const controller = new AbortController();
    const r = tarRestore(target, { signal: controller.signal });
    const writer = r.writable.getWriter();
    await writer.write(tarOf([{ name: "a", data: "a" }]).subarray(0, 1024));
    controller.abort();
    await assert.rejects(r.done, AbortedError);
    await assert.rejects(writer.write(new Uint8Array(512)));
  } finally {
    cleanup(target);
  }
});

test("tarRestore() reports progress and totals", async () => {
  const target = scratch();
  try {
    const seen: number[] = [];
    const archive = tarOf([{ name: "d/", type: "5" }, { name: "d/a", data: "12345" }, {
      name: "b",
      data: "",
    }]);
    const { stats } = await restore(target, archive, [MiB], { onProgress: (p) => seen.push(p.files) });
    assert.deepEqual(stats, { files: 3, bytes: 5, deleted: 0 });
    assert.equal(seen.at(-1), 3);
  } finally {
    cleanup(target);
  }
});

test("tarRestore() keeps a pre-1970 time, down to the second at least for symlinks", async () => {
  const target = scratch();
  try {
    const archive = tarOf([
      { name: "old file", data: "x", pax: { mtime: "-1.5" } },
      { name: "old link", type: "2", linkname: "old file", pax: { mtime: "-1.5" } },
    ]);
    await restore(target, archive);
    assert.equal(fs.lstatSync(path.join(target, "old file"), { bigint: true }).mtimeNs, -1_500_000_000n);
    const link = fs.lstatSync(path.join(target, "old link"), { bigint: true }).mtimeNs;
    assert.ok(link === -1_500_000_000n || link === -2_000_000_000n, `symlink mtime ${link}`);
  } finally {
    cleanup(target);
  }
});

test("tarRestore() leaves the files of skipData empty, data read past, their links and attributes made", async () => {
  const dir = scratch();
  try {
    const src = path.join(dir, "src");
    fs.mkdirSync(src);
    const big = new Uint8Array(3 * MiB).map((_, i) => (i * 7) & 0xff);
    fs.writeFileSync(path.join(src, "big"), big);
    fs.chmodSync(path.join(src, "big"), 0o640);
    touch(path.join(src, "big"), 1700000000, 123456789);
    fs.linkSync(path.join(src, "big"), path.join(src, "big.link"));
    // A sparse file: data at 0 and 4 MiB, 6 MiB in all.
    const fd = fs.openSync(path.join(src, "sparse"), "w");
    fs.writeSync(fd, big, 0, MiB, 0);
    fs.writeSync(fd, big, 0, MiB, 4 * MiB);
    fs.ftruncateSync(fd, 6 * MiB);
    fs.closeSync(fd);
    fs.writeFileSync(path.join(src, "keep"), big.subarray(0, 2 * MiB));
    const archive = run("tar", [
      "-C",
      src,
      "--format=posix",
      "--sparse",
      "-cf",
      "-",
      "big",
      "big.link",
      "sparse",
      "keep",
    ]);
    for (const noGiveBack of [false, true]) {
      const out = path.join(dir, `out-${noGiveBack}`);
      fs.mkdirSync(out);
      const { stats } = await restore(out, archive, [100_000, MiB, 5], {
        skipData: new Set(["big", "sparse"]),
        noGiveBack,
      });
      assert.equal(stats.skipped, 3 * MiB + 6 * MiB);
      assert.equal(stats.bytes, 2 * MiB);
      assert.equal(stats.files, 4);
      const st = fs.statSync(path.join(out, "big"), { bigint: true });
      assert.equal(st.size, 0n);
      assert.equal(Number(st.mode & 0o777n), 0o640);
      assert.equal(st.mtimeNs / 1_000_000n, 1700000000123n);
      // The link made at this level points to the (empty) file: a later level that stores the file whole
      // replaces it, and links it again if the link is still one then.
      assert.equal(fs.statSync(path.join(out, "big.link")).ino, Number(st.ino));
      assert.equal(fs.statSync(path.join(out, "sparse")).size, 0);
      assert.deepEqual(fs.readFileSync(path.join(out, "keep")), Buffer.from(big.subarray(0, 2 * MiB)));
    }
    // Without skipData, the same archive restores whole (and reports nothing skipped).
    const whole = path.join(dir, "whole");
    fs.mkdirSync(whole);
    const { stats } = await restore(whole, archive);
    assert.equal(stats.skipped, undefined);
    assertSameTree(src, whole);
  } finally {
    cleanup(dir);
  }
});
