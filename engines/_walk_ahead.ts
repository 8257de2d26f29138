/**
 * The level N walk's listing and first look, done ahead on a worker thread: the worker lists each directory
 * of the source with getdents64, sorts its names by their bytes (the walk order, see _tar_state.ts) and
 * statx()es every child relative to the open directory, depth first in walk order, while the main thread
 * compares the previous listings with the parent's state. The kernel's share of a walk (half of a no-change
 * level's time) then runs on the other core. The main thread takes each directory's listing when its walk
 * gets there (`WalkAhead.listing()`) and reads it through `ChildStat.useListing()`, as if it had made the
 * calls itself. It never waits for the worker: a directory the worker has not listed yet (or could not: it
 * could not open it, a name this runtime cannot pass on, more than `BIG_DIR` children, no FFI there) is
 * listed on the main thread as before, which also gives the warnings; the worker then only looks for the
 * subdirectories of the directories the main thread has passed (it knows how many, `PROGRESS`), to catch up.
 *
 * The listings go through a ring of shared memory (`RING_BYTES`; the worker waits while it is full), read in
 * place. Each is one record of 32-bit words: its length in bytes, the length of the directory's path below
 * the source and its bytes (padded to 4), a status (`FAILED`, `NO_XATTRS`), the number of children, then per
 * child (in byte order of the names) the length of its name, the words of `struct statx` in LISTING_WORDS
 * (_ffi_stat.ts) (the first one 0 when statx failed) and the name's bytes (padded). A record that does not
 * fit before the end of the ring starts at its beginning, after a `SKIP` word.
 * @module
 */
import { Buffer } from "node:buffer";
import os from "node:os";
import process from "node:process";
import { Worker } from "node:worker_threads";
import { WORKER_COLLECTOR_SOURCE, WORKER_FFI_SOURCE } from "../base/runtime.ts";
import { BYTE_PATHS } from "./_fs_bytes.ts";
import { decodeName, encodeName, hasEscape } from "./_names.ts";
import { compareNames } from "./_tar_state.ts";
import { type Listing, LISTING_WORDS } from "./_ffi_stat.ts";

/** Bytes of the ring of listings (a power of two, above the largest listing: BIG_DIR children). */
const RING_BYTES = 2 << 20;
/** Positions in the ring count bytes modulo 2^30 (Int32 counters that never overflow). */
const MASK = (1 << 30) - 1;
/** Int32 slots before the ring: bytes written, bytes read, done (1), directories the main thread reached. */
const WRITTEN = 0;
const READ = 1;
const DONE = 2;
const PROGRESS = 3;
const HEADER_BYTES = 16;
/** First word of a record that would not fit before the end of the ring: it starts at the beginning. */
const SKIP = 0xffffffff;
/** Bytes of listings written between two collections of the worker's garbage. */
const COLLECT_BYTES = 512 << 10;
/** Directories with more children are listed on the main thread (see the worker's `list()`). */
const BIG_DIR = 4096;
/** Status bits of a listing. */
const FAILED = 1;
const NO_XATTRS = 2;

const WORKER_SOURCE = WORKER_FFI_SOURCE + WORKER_COLLECTOR_SOURCE + `
const { workerData } = require("node:worker_threads");
const { Buffer } = require("node:buffer");
const { root, rootDev, cross, flags, shared } = workerData;
const WORDS = ${JSON.stringify(LISTING_WORDS)};
const libc = runtimeLibrary(["libc.so.6", "libc.so"], {
  open: { args: ["pointer", "i32"], returns: "i32" },
  close: { args: ["i32"], returns: "i32" },
  statx: { args: ["i32", "pointer", "i32", "i32", "pointer"], returns: "i32" },
  getdents64: { args: ["i32", "pointer", "i64"], returns: "i32" },
  flistxattr: { args: ["i32", "pointer", "i64"], returns: "i64" },
});
const header = new Int32Array(shared, 0, 4);
const ring = new Uint8Array(shared, ${HEADER_BYTES}, ${RING_BYTES});
const ringWords = new Uint32Array(shared, ${HEADER_BYTES}, ${RING_BYTES / 4});
const SX = new Uint8Array(new ArrayBuffer(256));
const sx = new Uint32Array(SX.buffer);
const NAME = new Uint8Array(new ArrayBuffer(4096));
const DIRENTS = new Uint8Array(new ArrayBuffer(65536));
const XATTRS = new Uint8Array(new ArrayBuffer(65536));
let batch = new Uint8Array(256 << 10);
let words = new Uint32Array(batch.buffer);
let off = 0;
let written = 0;
/** Directories reached in walk order (the root is the first). */
let reached = 0;
const stack = [{ abs: root, rel: new Uint8Array(0) }];
function room(n) {
  if (off + n <= batch.length) return;
  const bigger = new Uint8Array(Math.max(batch.length * 2, off + n));
  bigger.set(batch.subarray(0, off));
  batch = bigger;
  words = new Uint32Array(batch.buffer);
}
function putBytes(bytes) {
  room(4 + bytes.length + 3);
  words[off >> 2] = bytes.length;
  batch.set(bytes, off + 4);
  off += 4 + ((bytes.length + 3) & ~3);
}
/** Copies the record in the batch to the ring, waiting while the ring has no room for it. */
function put() {
  const len = off;
  words[0] = len;
  let w = Atomics.load(header, ${WRITTEN});
  for (;;) {
    const r = Atomics.load(header, ${READ});
    const free = ${RING_BYTES} - ((w - r) & ${MASK});
    const tail = ${RING_BYTES} - (w & ${RING_BYTES - 1});
    if (len <= tail ? len <= free : tail + len <= free) break;
    Atomics.wait(header, ${READ}, r, 100);
  }
  let pos = w & ${RING_BYTES - 1};
  if (len > ${RING_BYTES} - pos) {
    ringWords[pos >> 2] = ${SKIP};
    w = (w + ${RING_BYTES} - pos) & ${MASK};
    pos = 0;
  }
  ring.set(batch.subarray(0, len), pos);
  Atomics.store(header, ${WRITTEN}, (w + len) & ${MASK});
  written += len;
  // The names cut out of each listing are garbage by now: collect it now and then (Bun lets it pile up).
  if (written >= ${COLLECT_BYTES} && runtimeFullGC) {
    written = 0;
    runtimeFullGC();
  }
}
function devText(major, minor) {
  if (major < 0x1000 && minor < 0x100) return String(major * 256 + minor);
  const ma = BigInt(major);
  const mi = BigInt(minor);
  const high = ((ma & 0xfffff000n) << 32n) | ((ma & 0xfffn) << 8n);
  return String(high | ((mi & 0xffffff00n) << 12n) | (mi & 0xffn));
}
function join(a, b) {
  const slash = a.length > 0 && a[a.length - 1] !== 47 ? 1 : 0;
  const out = new Uint8Array(a.length + slash + b.length);
  out.set(a);
  if (slash) out[a.length] = 47;
  out.set(b, a.length + slash);
  return out;
}
function list(dir) {
  // The main thread has passed this directory already (listed it itself): only its subdirectories matter.
  let big = Atomics.load(header, ${PROGRESS}) >= ++reached;
  off = 4;
  putBytes(dir.rel);
  room(8);
  const head = off >> 2;
  words[head] = ${FAILED};
  words[head + 1] = 0;
  off += 8;
  const path = new Uint8Array(dir.abs.length + 1);
  path.set(dir.abs);
  const fd = libc.open(path, flags);
  if (fd < 0) {
    if (!big) put();
    return;
  }
  const passed = big;
  let names = [];
  const types = [];
  for (;;) {
    const n = libc.getdents64(fd, DIRENTS, 65536n);
    if (n === 0) break;
    if (n < 0) {
      libc.close(fd);
      if (!passed) put();
      return;
    }
    for (let p = 0; p < n;) {
      const reclen = DIRENTS[p + 16] | (DIRENTS[p + 17] << 8);
      const type = DIRENTS[p + 18];
      const start = p + 19;
      let end = start;
      while (DIRENTS[end] !== 0) end++;
      p += reclen;
      const len = end - start;
      if (len <= 2 && DIRENTS[start] === 46 && (len === 1 || DIRENTS[start + 1] === 46)) continue;
      if (big) {
        if (type === 4 || type === 0) names.push(DIRENTS.slice(start, end)); // DT_DIR, DT_UNKNOWN
        continue;
      }
      names.push(DIRENTS.slice(start, end));
      types.push(type);
      if (names.length > ${BIG_DIR}) {
        // Left to the main thread: its listing would hold every child's stat at once. Only its
        // subdirectories (by their type in the listing, else statx) are looked for, to list them.
        big = true;
        names = names.filter((_, i) => types[i] === 4 || types[i] === 0);
      }
    }
  }
  if (big) {
    const maybe = names.sort(Buffer.compare);
    const dirs = [];
    for (const name of maybe) {
      if (name.length >= NAME.length) continue;
      NAME.set(name);
      NAME[name.length] = 0;
      sx[0] = 0;
      const ok = libc.statx(fd, NAME, 0x100, 0x7df, SX) === 0 && (sx[0] & 0x7df) === 0x7df;
      const isDir = ok && (sx[7] & 0xf000) === 0x4000;
      if (isDir && (cross || devText(sx[34], sx[35]) === rootDev)) dirs.push(name);
    }
    libc.close(fd);
    if (!passed) put(); // FAILED: too big
    descend(dir, dirs);
    return;
  }
  names.sort(Buffer.compare);
  const noXattrs = libc.flistxattr(fd, XATTRS, 65536n) === 0;
  const dirs = [];
  for (const name of names) {
    if (name.length >= NAME.length) {
      room(4 + 4 * WORDS.length + name.length + 3);
      words[off >> 2] = name.length;
      words[(off >> 2) + 1] = 0;
      batch.set(name, off + 4 + 4 * WORDS.length);
      off += 4 + 4 * WORDS.length + ((name.length + 3) & ~3);
      continue;
    }
    NAME.set(name);
    NAME[name.length] = 0;
    sx[0] = 0;
    const ok = libc.statx(fd, NAME, 0x100, 0x7df, SX) === 0 && (sx[0] & 0x7df) === 0x7df;
    room(4 + 4 * WORDS.length + name.length + 3);
    let w = off >> 2;
    words[w++] = name.length;
    if (ok) for (const i of WORDS) words[w++] = sx[i];
    else for (let i = 0; i < WORDS.length; i++) words[w++] = 0;
    batch.set(name, w << 2);
    off = (w << 2) + ((name.length + 3) & ~3);
    if (ok && (sx[7] & 0xf000) === 0x4000 && (cross || devText(sx[34], sx[35]) === rootDev)) dirs.push(name);
  }
  libc.close(fd);
  words[head] = noXattrs ? ${NO_XATTRS} : 0;
  words[head + 1] = names.length;
  if (off > ${RING_BYTES / 2}) {
    // Cannot happen with BIG_DIR children of 255 bytes at most; should it, the main thread lists it.
    off = (head + 2) << 2;
    words[head] = ${FAILED};
    words[head + 1] = 0;
  }
  put();
  descend(dir, dirs);
}
function descend(dir, dirs) {
  for (let i = dirs.length - 1; i >= 0; i--) {
    const name = dirs[i];
    stack.push({ abs: join(dir.abs, name), rel: dir.rel.length === 0 ? name : join(dir.rel, name) });
  }
}
if (libc) while (stack.length > 0) list(stack.pop());
Atomics.store(header, ${DONE}, 1);
`;

/** Linux open(2) flags of a directory to list: O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_DIRECTORY. */
const OPEN_FLAGS: Record<string, number> = {
  x64: 0o4000 | 0o2000000 | 0o200000,
  arm64: 0o4000 | 0o2000000 | 0o40000,
};

/** Compares directories (path components below the source) in walk order: a directory before its subtree. */
function comparePaths(a: readonly string[], b: readonly string[]): number {
  const n = a.length < b.length ? a.length : b.length;
  for (let i = 0; i < n; i++) {
    const c = compareNames(a[i]!, b[i]!);
    if (c !== 0) return c;
  }
  return a.length - b.length;
}

/** A name's bytes as the walk's string for it (as ChildStat.names() and node:fs through _fs_bytes.ts do). */
function nameOf(bytes: Buffer, start: number, end: number): string {
  for (let i = start; i < end; i++) {
    if (bytes[i]! >= 0x80) return decodeName(new Uint8Array(bytes.subarray(start, end))); // not shared memory
  }
  return bytes.toString("latin1", start, end);
}

/** The directory listings of a level N walk, made ahead on a worker thread (see the module's description). */
export class WalkAhead {
  readonly #worker: Worker;
  readonly #header: Int32Array;
  readonly #words: Uint32Array;
  readonly #bytes: Buffer;
  /** Bytes read from the ring (the next record), and how far the worker may write again. */
  #read = 0;
  #released = 0;
  /** Directories asked for. */
  #asked = 0;
  #stopped = false;

  private constructor(source: string, rootDev: string, crossFileSystems: boolean) {
    const root = encodeName(source.length > 1 && source.endsWith("/") ? source.slice(0, -1) : source);
    const shared = new SharedArrayBuffer(HEADER_BYTES + RING_BYTES);
    this.#header = new Int32Array(shared, 0, 4);
    this.#words = new Uint32Array(shared, HEADER_BYTES, RING_BYTES / 4);
    this.#bytes = Buffer.from(shared, HEADER_BYTES, RING_BYTES);
    this.#worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { root, rootDev, cross: crossFileSystems, flags: OPEN_FLAGS[process.arch], shared },
    });
    this.#worker.unref();
    this.#worker.on("error", () => this.stop());
  }

  /**
   * Whether a worker would have a core to itself: at least two, and the load average of the last minute
   * below their number. On a busy machine the worker's own costs (its start, its compiled code: ~0.1 s of
   * CPU for 100 000 files) outweigh what it takes off the main thread.
   */
  static worthIt(): boolean {
    const cores = os.availableParallelism();
    return cores >= 2 && os.loadavg()[0]! < cores;
  }

  /**
   * Whether listing ahead can help the walk of a tree whose root folder has `rootLinks` links: not when that
   * folder has no subfolders (a link count of 2: a folder has 2 plus one per subfolder on ext4, xfs, tmpfs…;
   * btrfs always says 1, which counts as "maybe"). The main thread lists the root itself before a worker
   * could, so there the worker would only cost its start: ~20 ms of CPU in a no-change level of one file.
   */
  static helps(rootLinks: bigint | number): boolean {
    return BigInt(rootLinks) !== 2n;
  }

  /** Starts listing the tree at directory `source` (on device `rootDev`) ahead; undefined where it cannot. */
  static start(source: string, rootDev: string, crossFileSystems: boolean): WalkAhead | undefined {
    if (process.platform !== "linux" || OPEN_FLAGS[process.arch] === undefined) return undefined;
    try {
      return new WalkAhead(source, rootDev, crossFileSystems);
    } catch {
      return undefined;
    }
  }

  /**
   * The listing of the directory at `parts` below the source, when the worker has made it already;
   * undefined when not (list it on this thread then). Every directory the walk lists must be asked for, in
   * walk order; listings of directories skipped on the way are dropped. A listing is read in place until
   * the next call (its memory goes back to the worker then).
   */
  listing(parts: readonly string[]): Listing | undefined {
    const header = this.#header;
    Atomics.store(header, PROGRESS, ++this.#asked);
    this.#release();
    if (this.#stopped) return undefined;
    const words = this.#words;
    for (;;) {
      const read = this.#read;
      if (((Atomics.load(header, WRITTEN) - read) & MASK) === 0) return undefined;
      const at = (read & (RING_BYTES - 1)) >> 2;
      const len = words[at]!;
      if (len === SKIP) {
        this.#read = (read + RING_BYTES - (at << 2)) & MASK;
        continue;
      }
      const relLen = words[at + 1]!;
      const rel = relLen === 0 ? "" : nameOf(this.#bytes, (at + 2) << 2, ((at + 2) << 2) + relLen);
      const c = comparePaths(rel === "" ? [] : rel.split("/"), parts);
      if (c > 0) return undefined;
      this.#read = (read + len) & MASK;
      if (c === 0) return this.#take(at + 2 + ((relLen + 3) >> 2));
      this.#release();
    }
  }

  /** Whether the worker has written every listing it will (it walked the whole tree, or could not start). */
  done(): boolean {
    return Atomics.load(this.#header, DONE) === 1;
  }

  /** Stops the worker. */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    void this.#worker.terminate();
  }

  /** Lets the worker write over the records read so far. */
  #release(): void {
    if (this.#released === this.#read) return;
    this.#released = this.#read;
    Atomics.store(this.#header, READ, this.#read);
    Atomics.notify(this.#header, READ);
  }

  /** The listing whose status is at word `w` of the ring; undefined when it failed or cannot be used here. */
  #take(w: number): Listing | undefined {
    const words = this.#words;
    const status = words[w]!;
    const count = words[w + 1]!;
    if ((status & FAILED) !== 0) return undefined;
    w += 2;
    const names: string[] = new Array(count);
    const at = new Int32Array(count);
    for (let i = 0; i < count; i++) {
      const len = words[w]!;
      at[i] = w + 1;
      const start = (w + 1 + LISTING_WORDS.length) << 2;
      const name = nameOf(this.#bytes, start, start + len);
      if (!BYTE_PATHS && hasEscape(name)) return undefined;
      names[i] = name;
      w += 1 + LISTING_WORDS.length + ((len + 3) >> 2);
    }
    return { names, noXattrs: (status & NO_XATTRS) !== 0, words, at };
  }
}
