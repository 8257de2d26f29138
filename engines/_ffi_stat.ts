/**
 * lstat() of a directory's children through libc's `statx(2)`, relative to the directory's descriptor and
 * into one reused buffer (called through the runtime adapter, base/runtime.ts): no Stats object per entry
 * for the collector, no full path for the kernel to walk again, and times exact to the nanosecond. The level
 * N walk uses it for its first look at each child (see "Change detection" in tar_backup.ts). Where the
 * runtime has no FFI or this is not Linux on x86-64 or arm64, `ChildStat.open()` returns undefined; a call
 * that fails (-1: errno is not available) tells the caller to ask node:fs again for the real error.
 * @module
 */
import process from "node:process";
import { Buffer } from "node:buffer";
import { openNativeLibrary } from "../base/runtime.ts";
import { decodeName, encodeName, hasEscape } from "./_names.ts";
import { BYTE_PATHS } from "./_fs_bytes.ts";
import { xattrNamesLength } from "./_xattrs.ts";

const LIBC_NAMES = ["libc.so.6", "libc.so"];
/** Linux open(2) flags; O_DIRECTORY differs between x86-64 and arm64. */
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;
const O_DIRECTORY: Record<string, number> = { x64: 0o200000, arm64: 0o40000 };
const AT_SYMLINK_NOFOLLOW = 0x100;
/** STATX_TYPE, MODE, NLINK, UID, GID, MTIME, CTIME, INO, SIZE, BLOCKS: all but the access time. */
const STATX_WANTED = 0x7df;
/** Bytes of `struct statx`, and where the name is put in the buffer after it. */
const STATX_SIZE = 256;
const NAME_AT = STATX_SIZE;
/** Longest name (bytes) with its NUL; longer ones go through node:fs. */
const NAME_MAX = 4096;
const TWO_32 = 4294967296;

interface Libc {
  open: (path: Uint8Array, flags: number) => number;
  close: (fd: number) => number;
  statx: (dirfd: number, path: Uint8Array, flags: number, mask: number, out: Uint8Array) => number;
}

let libc: Libc | null | undefined;
let enabled = true;
let listing = true;

/** Reads directory entries (`struct linux_dirent64`) from `fd` into `buf`; bytes read, 0 at the end, -1. */
type Getdents = (fd: number, buf: Uint8Array, size: bigint) => number;
let getdents: Getdents | null | undefined;
/** The getdents64 system call's number where glibc has no getdents64() (before 2.30). */
const SYS_GETDENTS64: Record<string, bigint> = { x64: 217n, arm64: 61n };
/** Bytes of the buffer directory entries are read into (reused). */
const DIRENTS_SIZE = 64 * 1024;

/** Turns listing through getdents64 off (false) or on again: for tests that compare it with node:fs. */
export function useNativeList(on: boolean): void {
  listing = on;
}

/** glibc's getdents64(), else the raw system call; null where neither can be called. */
function loadGetdents(): Getdents | null {
  if (getdents === undefined) {
    getdents = null;
    if (load()) {
      try {
        const lib = openNativeLibrary(LIBC_NAMES, {
          getdents64: { args: ["i32", "pointer", "i64"], returns: "i32" },
        });
        if (lib) getdents = lib.getdents64 as unknown as Getdents;
      } catch {
        getdents = null;
      }
      if (!getdents) {
        try {
          const lib = openNativeLibrary(LIBC_NAMES, {
            syscall: { args: ["i64", "i32", "pointer", "i64"], returns: "i32" },
          });
          const nr = SYS_GETDENTS64[process.arch]!;
          if (lib) getdents = (fd, buf, size) => lib.syscall(nr, fd, buf, size);
        } catch {
          getdents = null;
        }
      }
    }
  }
  return getdents;
}

/** Turns the native look off (false) or on again: for tests that compare it with node:fs. */
export function useNativeStat(on: boolean): void {
  enabled = on;
}

function load(): Libc | undefined {
  if (libc === undefined) {
    libc = null;
    if (process.platform === "linux" && O_DIRECTORY[process.arch] !== undefined) {
      try {
        const lib = openNativeLibrary(LIBC_NAMES, {
          open: { args: ["pointer", "i32"], returns: "i32" },
          close: { args: ["i32"], returns: "i32" },
          statx: { args: ["i32", "pointer", "i32", "i32", "pointer"], returns: "i32" },
        });
        if (lib) libc = lib as unknown as Libc;
      } catch {
        libc = null;
      }
    }
  }
  return libc ?? undefined;
}

/** A time from `struct statx_timestamp` as decimal nanoseconds (as node:fs's BigInt `mtimeNs` prints). */
function nsText(lo: number, hi: number, nsec: number): string {
  if (hi >= 0 && hi < 0x100000) {
    const sec = hi * TWO_32 + lo;
    if (sec === 0) return String(nsec);
    const n = String(nsec);
    return String(sec) + "000000000".slice(n.length) + n;
  }
  return String((BigInt(hi) * BigInt(TWO_32) + BigInt(lo)) * 1_000_000_000n + BigInt(nsec));
}

/**
 * The decimal digits of `text` from `start` to `end` as a number: exact up to 2^53, at least 2^53 beyond;
 * -1 when there are none, more than 16 or something else.
 */
function digits(text: string, start: number, end: number): number {
  if (end <= start || end - start > 16) return -1;
  let v = 0;
  for (let i = start; i < end; i++) {
    const d = text.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return -1;
    v = v * 10 + d;
  }
  return v;
}

/** A 64-bit unsigned field as decimal text. */
function u64Text(lo: number, hi: number): string {
  return hi < 0x200000 ? String(hi * TWO_32 + lo) : String(BigInt(hi) * BigInt(TWO_32) + BigInt(lo));
}

/**
 * A directory's children listed and statx()ed elsewhere (a worker thread, see _walk_ahead.ts), for
 * `ChildStat.useListing()`: the names in walk order and, per name, where its `struct statx` words are.
 */
export interface Listing {
  names: string[];
  /** The directory has no extended attributes at all. */
  noXattrs: boolean;
  /** Words of `struct statx` (those of LISTING_WORDS, the first one 0 where it failed). */
  words: Uint32Array;
  /** Per name, the index in `words` of its first word. */
  at: Int32Array;
}

/** The 32-bit words of `struct statx` a Listing keeps per child, in its order: those read below. */
export const LISTING_WORDS: readonly number[] = [
  0,
  4,
  5,
  6,
  7,
  8,
  9,
  10,
  11,
  12,
  13,
  24,
  25,
  26,
  28,
  29,
  30,
  34,
  35,
];

/**
 * Looks at the children of one directory at a time: `openDir()` (or `useListing()`), then `stat(name)` per
 * child and its fields, then `closeDir()`.
 */
export class ChildStat {
  /** libc, loaded on the first `openDir()` when made by `forListings()`. */
  #libc: Libc | undefined;
  readonly #flags: number;
  /** `struct statx`, then the name being looked at (NUL-terminated). */
  readonly #buf = new Uint8Array(new ArrayBuffer(STATX_SIZE + NAME_MAX));
  readonly #u32 = new Uint32Array(this.#buf.buffer, 0, STATX_SIZE / 4);
  readonly #i32 = new Int32Array(this.#buf.buffer, 0, STATX_SIZE / 4);
  readonly #name = this.#buf.subarray(NAME_AT);
  /** Directory entries being listed (made on first use; a Buffer for its cheap ASCII strings). */
  #dirents: Buffer | undefined;
  #fd = -1;
  /** The listing being read instead of an open directory, and the index of the next name in it. */
  #listing: Listing | undefined;
  #next = 0;
  /** The last device seen, and its text (a walk mostly stays on one). */
  #devMajor = -1;
  #devMinor = -1;
  #devText = "";

  private constructor(lib: Libc | undefined) {
    this.#libc = lib;
    this.#flags = O_NONBLOCK | O_CLOEXEC | O_DIRECTORY[process.arch]!;
  }

  /** A ChildStat, or undefined where the runtime cannot call statx (or `useNativeStat(false)`). */
  static open(): ChildStat | undefined {
    if (!enabled) return undefined;
    const lib = load();
    return lib ? new ChildStat(lib) : undefined;
  }

  /**
   * A ChildStat that reads listings made elsewhere (`useListing()`) and loads libc only once it opens a
   * directory itself (`openDir()` is false where it cannot); undefined after `useNativeStat(false)`.
   */
  static forListings(): ChildStat | undefined {
    return enabled ? new ChildStat(undefined) : undefined;
  }

  /** Opens directory `abs` for the `stat()`s that follow; false when it cannot be (use node:fs then). */
  openDir(abs: string): boolean {
    this.closeDir();
    const path = this.#cString(abs);
    if (path === undefined) return false;
    const lib = this.#libc ??= load();
    if (lib === undefined) return false;
    const fd = lib.open(path, this.#flags);
    this.#fd = fd;
    return fd >= 0;
  }

  /**
   * The names in the open directory (not "." and ".."), read with getdents64 into a reused buffer: the same
   * strings as node:fs's readdir through _fs_bytes.ts (a name that is not valid UTF-8 escaped, see
   * _names.ts). Undefined when they cannot be read so (no getdents64, an error, or such a name where this
   * runtime's node:fs cannot take it back): list it with node:fs then, which gives the error.
   */
  names(): string[] | undefined {
    if (this.#listing) return this.#listing.names;
    if (this.#fd < 0 || !listing) return undefined;
    const read = loadGetdents();
    if (!read) return undefined;
    const buf = this.#dirents ??= Buffer.from(new ArrayBuffer(DIRENTS_SIZE));
    const out: string[] = [];
    for (;;) {
      const n = read(this.#fd, buf, BigInt(DIRENTS_SIZE));
      if (n === 0) return out;
      if (n < 0) return undefined;
      for (let p = 0; p < n;) {
        const reclen = buf[p + 16]! | (buf[p + 17]! << 8);
        const start = p + 19;
        let end = start;
        let ascii = true;
        for (let c = buf[end]!; c !== 0; c = buf[++end]!) if (c >= 0x80) ascii = false;
        p += reclen;
        if (ascii) {
          const len = end - start;
          if (len <= 2 && buf[start] === 46 && (len === 1 || buf[start + 1] === 46)) continue; // "." and ".."
          out.push(buf.toString("latin1", start, end));
          continue;
        }
        const name = decodeName(buf.subarray(start, end));
        if (!BYTE_PATHS && hasEscape(name)) return undefined;
        out.push(name);
      }
    }
  }

  /** Closes the directory opened last, if any. */
  closeDir(): void {
    if (this.#fd >= 0) this.#libc!.close(this.#fd);
    this.#fd = -1;
    this.#listing = undefined;
  }

  /**
   * Reads `list` for the `names()`, `hasNoXattrs()` and `stat()`s that follow, instead of an open
   * directory (until `closeDir()`). Its names must be asked for in its order; a name not found after the
   * last one asked for is not statx()ed (false: ask node:fs). Undefined after `useNativeList(false)`.
   */
  useListing(list: Listing): this | undefined {
    this.closeDir();
    if (!listing) return undefined;
    this.#listing = list;
    this.#next = 0;
    return this;
  }

  /**
   * Whether the open directory has no extended attributes at all (`flistxattr()` lists none); false when
   * it has some or that cannot be told (read them as usual then).
   */
  hasNoXattrs(): boolean {
    if (this.#listing) return this.#listing.noXattrs;
    return this.#fd >= 0 && xattrNamesLength(this.#fd) === 0;
  }

  /**
   * lstat()s child `name` of the open directory into the fields below; false when that fails or the file
   * system leaves out a field (ask node:fs: it gives the error, or the same answer).
   */
  stat(name: string): boolean {
    if (this.#listing) return this.#listed(name);
    if (this.#fd < 0) return false;
    const path = this.#cString(name);
    if (path === undefined) return false;
    const u = this.#u32;
    u[0] = 0;
    if (this.#libc!.statx(this.#fd, path, AT_SYMLINK_NOFOLLOW, STATX_WANTED, this.#buf) !== 0) return false;
    return (u[0]! & STATX_WANTED) === STATX_WANTED;
  }

  /** `stat(name)` from the listing: its words copied where statx() would have put them. */
  #listed(name: string): boolean {
    const { names, words, at } = this.#listing!;
    let i = this.#next;
    while (i < names.length && names[i] !== name) i++;
    if (i === names.length) return false;
    this.#next = i + 1;
    const u = this.#u32;
    let w = at[i]!;
    for (const index of LISTING_WORDS) u[index] = words[w++]!;
    return (u[0]! & STATX_WANTED) === STATX_WANTED;
  }

  /** The file type and permission bits (`st_mode`). */
  get mode(): number {
    return this.#u32[7]! & 0xffff;
  }
  get nlink(): number {
    return this.#u32[4]!;
  }
  get uid(): number {
    return this.#u32[5]!;
  }
  get gid(): number {
    return this.#u32[6]!;
  }
  /** Whether it has fewer 512-byte blocks than its size needs (a regular file may then have holes). */
  get fewerBlocks(): boolean {
    const u = this.#u32;
    if (u[11]! >= 0x200000 || u[13]! >= 0x800) {
      return (BigInt(u[13]!) * BigInt(TWO_32) + BigInt(u[12]!)) * 512n <
        BigInt(u[11]!) * BigInt(TWO_32) + BigInt(u[10]!);
    }
    return (u[13]! * TWO_32 + u[12]!) * 512 < u[11]! * TWO_32 + u[10]!;
  }
  /** The inode number, as decimal text. */
  get ino(): string {
    return u64Text(this.#u32[8]!, this.#u32[9]!);
  }
  /** The size in bytes, as decimal text. */
  get size(): string {
    return u64Text(this.#u32[10]!, this.#u32[11]!);
  }
  /** The modification time in nanoseconds since the epoch, as decimal text. */
  get mtimeNs(): string {
    return nsText(this.#u32[28]!, this.#i32[29]!, this.#u32[30]!);
  }
  /** The status change time in nanoseconds since the epoch, as decimal text. */
  get ctimeNs(): string {
    return nsText(this.#u32[24]!, this.#i32[25]!, this.#u32[26]!);
  }
  /**
   * Whether inode, size, mtime and ctime are those of a state record's tail, `"<ino>","<size>","<mtime
   * ns>","<ctime ns>"]` starting at `start` in `line`: read digit by digit, no string made where the
   * values are below 2^53 (times: whole seconds), compared as text otherwise.
   */
  sameTail(line: string, start: number): boolean {
    let p = start + 1;
    let e = line.indexOf('"', p);
    if (e < 0 || !this.#sameU64(line, p, e, 8)) return false;
    p = e + 3;
    e = line.indexOf('"', p);
    if (e < 0 || !this.#sameU64(line, p, e, 10)) return false;
    p = e + 3;
    e = line.indexOf('"', p);
    if (e < 0 || !this.#sameTime(line, p, e, 28)) return false;
    p = e + 3;
    e = line.indexOf('"', p);
    return e >= 0 && e + 2 === line.length && this.#sameTime(line, p, e, 24);
  }

  /** Whether `line` from `start` to `end` is the 64-bit field at 32-bit index `at` of the buffer. */
  #sameU64(line: string, start: number, end: number, at: number): boolean {
    const lo = this.#u32[at]!;
    const hi = this.#u32[at + 1]!;
    if (hi >= 0x200000) return line.slice(start, end) === u64Text(lo, hi);
    return digits(line, start, end) === hi * TWO_32 + lo; // exact: the right side is below 2^53
  }

  /** Whether `line` from `start` to `end` is the time at 32-bit index `at` of the buffer, in decimal ns. */
  #sameTime(line: string, start: number, end: number, at: number): boolean {
    const lo = this.#u32[at]!;
    const hi = this.#i32[at + 1]!;
    const nsec = this.#u32[at + 2]!;
    if (hi < 0 || hi >= 0x100000 || (hi === 0 && lo === 0)) {
      return line.slice(start, end) === nsText(lo, hi, nsec);
    }
    // Whole seconds (≥ 1, below 2^52) then exactly nine digits of nanoseconds.
    return digits(line, start, end - 9) === hi * TWO_32 + lo && digits(line, end - 9, end) === nsec;
  }

  /** The device, as glibc's `makedev(major, minor)` in decimal (node:fs's `dev`). */
  get dev(): string {
    const major = this.#u32[34]!;
    const minor = this.#u32[35]!;
    if (major === this.#devMajor && minor === this.#devMinor) return this.#devText;
    this.#devMajor = major;
    this.#devMinor = minor;
    if (major < 0x1000 && minor < 0x100) return this.#devText = String(major * 256 + minor);
    const ma = BigInt(major);
    const mi = BigInt(minor);
    return this.#devText = String(
      ((ma & 0xfffff000n) << 32n) | ((ma & 0xfffn) << 8n) | ((mi & 0xffffff00n) << 12n) | (mi & 0xffn),
    );
  }

  /** `s` as a NUL-terminated string of its bytes in the buffer's name area; undefined when too long. */
  #cString(s: string): Uint8Array | undefined {
    const out = this.#name;
    const n = s.length;
    if (n >= NAME_MAX) return undefined;
    let i = 0;
    for (; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) break;
      out[i] = c;
    }
    if (i === n) {
      out[n] = 0;
      return out;
    }
    const bytes = hasEscape(s) ? encodeName(s) : encoder.encode(s);
    if (bytes.length >= NAME_MAX) return undefined;
    out.set(bytes);
    out[bytes.length] = 0;
    return out;
  }
}

const encoder = new TextEncoder();
