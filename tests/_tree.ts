/**
 * Test helpers: describe a directory tree exactly and compare two trees.
 * @module
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import crypto from "node:crypto";
import assert from "node:assert/strict";

/**
 * The mtime precision restores guarantee on this runtime, in nanoseconds; trees are compared at it.
 *
 * Restores set times through node:fs `utimes`, which takes seconds as a double, so nanoseconds cannot
 * all survive. Passing the middle of the microsecond (what the tar restore does), Bun keeps whole
 * microseconds exactly, while Deno's node:fs truncates every time to whole milliseconds (numbers,
 * Dates and strings alike; futimes and lutimes too). Measured once here rather than assumed, by
 * setting 1700000000.123456 s + 500 ns on a scratch file and seeing which unit comes back intact.
 */
export const MTIME_PRECISION_NS: bigint = probeMtimePrecision();

function probeMtimePrecision(): bigint {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "frost-mtime-"));
  try {
    const file = path.join(dir, "probe");
    fs.writeFileSync(file, "");
    const want = 1_700_000_000_123_456_500n;
    fs.utimesSync(file, 1_700_000_000.1234565, 1_700_000_000.1234565);
    const got = fs.statSync(file, { bigint: true }).mtimeNs;
    for (const unit of [1n, 1_000n, 1_000_000n]) if (got / unit === want / unit) return unit;
    return 1_000_000_000n;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** One entry of a tree as the comparison sees it. */
export interface TreeEntry {
  type: "file" | "dir" | "symlink" | "fifo" | "char" | "block" | "socket";
  /** Permission bits incl. setuid/setgid/sticky (lstat mode & 0o7777); not compared for symlinks. */
  mode: number;
  /** Modification time in whole microseconds (compared at {@linkcode MTIME_PRECISION_NS} only). */
  mtimeUs: bigint;
  size?: number;
  sha256?: string;
  target?: string;
  rdev?: number;
  uid: number;
  gid: number;
  /** For files with nlink > 1: the sorted relative paths sharing the inode, within the tree. */
  links?: string[];
}

/** Walks `root` (not following symlinks) and returns relative path → entry, the root itself as ".". */
export function snapshotTree(root: string, options: { mtimes?: boolean } = {}): Map<string, TreeEntry> {
  const out = new Map<string, TreeEntry>();
  const inodes = new Map<bigint, string[]>();
  const walk = (rel: string) => {
    const abs = rel === "." ? root : path.join(root, rel);
    const st = fs.lstatSync(abs, { bigint: true });
    const mode = Number(st.mode & 0o7777n);
    const mtimeUs = options.mtimes === false ? 0n : st.mtimeNs / 1000n;
    const base = { mode, mtimeUs, uid: Number(st.uid), gid: Number(st.gid) };
    if (st.isDirectory()) {
      out.set(rel, { type: "dir", ...base });
      for (const name of fs.readdirSync(abs).sort()) walk(rel === "." ? name : path.join(rel, name));
    } else if (st.isFile()) {
      const hash = crypto.createHash("sha256").update(fs.readFileSync(abs)).digest("hex");
      out.set(rel, { type: "file", ...base, size: Number(st.size), sha256: hash });
      if (st.nlink > 1n) {
        const list = inodes.get(st.ino) ?? [];
        list.push(rel);
        inodes.set(st.ino, list);
      }
    } else if (st.isSymbolicLink()) {
      out.set(rel, {
        type: "symlink",
        mode: 0,
        mtimeUs,
        uid: base.uid,
        gid: base.gid,
        target: fs.readlinkSync(abs),
      });
    } else if (st.isFIFO()) {
      out.set(rel, { type: "fifo", ...base });
    } else if (st.isCharacterDevice() || st.isBlockDevice()) {
      out.set(rel, { type: st.isCharacterDevice() ? "char" : "block", ...base, rdev: Number(st.rdev) });
    } else {
      out.set(rel, { type: "socket", ...base });
    }
  };
  walk(".");
  for (const list of inodes.values()) {
    const sorted = list.sort();
    for (const rel of sorted) out.get(rel)!.links = sorted;
  }
  return out;
}

/** Options of `assertSameTree`. */
export interface CompareOptions {
  /** Compare mtimes (default true). Directory mtimes of the root are never compared. */
  mtimes?: boolean;
  /** Compare uid/gid (default: only when running as root). */
  owners?: boolean;
  /** Compare symlink mtimes (default false: not every platform sets them). */
  symlinkMtimes?: boolean;
  /**
   * Compare mtimes only to this many nanoseconds, when coarser than {@linkcode MTIME_PRECISION_NS}
   * (e.g. 1e9 for archives that keep whole seconds, like GNU tar's gnu format). Default: that constant.
   */
  mtimePrecisionNs?: bigint;
}

/** Asserts that two trees hold the same entries with the same content, type, mode, mtime, link targets. */
export function assertSameTree(expected: string, actual: string, options: CompareOptions = {}): void {
  const a = snapshotTree(expected);
  const b = snapshotTree(actual);
  const owners = options.owners ?? process.getuid?.() === 0;
  // Whole units of the compared precision, in microseconds (1n = exact to the microsecond).
  const precision = options.mtimePrecisionNs && options.mtimePrecisionNs > MTIME_PRECISION_NS
    ? options.mtimePrecisionNs
    : MTIME_PRECISION_NS;
  const unit = precision >= 1000n ? precision / 1000n : 1n;
  const norm = (m: Map<string, TreeEntry>) => {
    const o: Record<string, unknown> = {};
    for (const [k, v] of m) {
      const e: Record<string, unknown> = { ...v };
      if (k === "." || options.mtimes === false || (v.type === "symlink" && !options.symlinkMtimes)) {
        delete e.mtimeUs;
      } else {
        e.mtimeUs = v.mtimeUs / unit;
      }
      if (!owners) {
        delete e.uid;
        delete e.gid;
      }
      if (k === ".") delete e.mode;
      o[k] = e;
    }
    return o;
  };
  assert.deepStrictEqual(norm(b), norm(a));
}
