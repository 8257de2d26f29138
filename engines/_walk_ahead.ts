/**
 * The level N walk's listing and first look, done ahead on a worker thread: the worker lists each directory
 * of the source with getdents64, sorts its names by their bytes (the walk order, see _tar_state.ts) and
 * statx()es every child relative to the open directory, depth first in walk order, while the main thread
 * compares the previous listings with the parent's state. The kernel's share of a walk (half of a no-change
 * level's time) then runs on the other core. The main thread takes each directory's listing when its walk
 * gets there (`WalkAhead.listing()`) and reads it through `ChildStat.useListing()`, as if it had made the
 * calls itself; a directory the worker has no listing for (it could not open it, a name this runtime cannot
 * pass on, the worker could not start) is listed on the main thread as before, which also gives the
 * warnings. The worker stays at most `AHEAD_BYTES` of listings ahead.
 *
 * Each listing is one record of 32-bit words in a batch (an ArrayBuffer moved to the main thread): the
 * length of the directory's path below the source and its bytes (padded to 4), a status (`FAILED`,
 * `NO_XATTRS`), the number of children, then per child (in byte order of the names) the length of its name,
 * the words of `struct statx` in LISTING_WORDS (_ffi_stat.ts) (the first one 0 when statx failed) and the name's bytes (padded).
 * @module
 */
import { Buffer } from "node:buffer";
import process from "node:process";
import { Worker } from "node:worker_threads";
import { WORKER_COLLECTOR_SOURCE, WORKER_FFI_SOURCE } from "../base/runtime.ts";
import { BYTE_PATHS } from "./_fs_bytes.ts";
import { decodeName, encodeName, hasEscape } from "./_names.ts";
import { compareNames } from "./_tar_state.ts";
import { type Listing, LISTING_WORDS } from "./_ffi_stat.ts";

/** Bytes of listings the worker may have sent that the main thread has not taken yet. */
const AHEAD_BYTES = 1 << 20;
/** A batch is sent once it holds this many bytes (and at the end). */
const BATCH_BYTES = 64 << 10;
/** Bytes of listings sent between two collections of the worker's garbage. */
const COLLECT_BYTES = 512 << 10;
/** Directories with more children are listed on the main thread (see the worker's `list()`). */
const BIG_DIR = 4096;
/** Status bits of a listing. */
const FAILED = 1;
const NO_XATTRS = 2;

const WORKER_SOURCE = WORKER_FFI_SOURCE + WORKER_COLLECTOR_SOURCE + `
const { parentPort, workerData } = require("node:worker_threads");
const { Buffer } = require("node:buffer");
const { root, rootDev, cross, flags } = workerData;
const WORDS = ${JSON.stringify(LISTING_WORDS)};
const libc = runtimeLibrary(["libc.so.6", "libc.so"], {
  open: { args: ["pointer", "i32"], returns: "i32" },
  close: { args: ["i32"], returns: "i32" },
  statx: { args: ["i32", "pointer", "i32", "i32", "pointer"], returns: "i32" },
  getdents64: { args: ["i32", "pointer", "i64"], returns: "i32" },
  flistxattr: { args: ["i32", "pointer", "i64"], returns: "i64" },
});
const SX = new Uint8Array(new ArrayBuffer(256));
const sx = new Uint32Array(SX.buffer);
const NAME = new Uint8Array(new ArrayBuffer(4096));
const DIRENTS = new Uint8Array(new ArrayBuffer(65536));
const XATTRS = new Uint8Array(new ArrayBuffer(65536));
let batch = new Uint8Array(${BATCH_BYTES * 2});
let words = new Uint32Array(batch.buffer);
let off = 0;
let ahead = 0;
let waiting = false;
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
function devText(major, minor) {
  if (major < 0x1000 && minor < 0x100) return String(major * 256 + minor);
  const ma = BigInt(major);
  const mi = BigInt(minor);
  return String(((ma & 0xfffff000n) << 32n) | ((ma & 0xfffn) << 8n) | ((mi & 0xffffff00n) << 12n) | (mi & 0xffn));
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
  putBytes(dir.rel);
  room(8);
  const head = off >> 2;
  words[head] = ${FAILED};
  words[head + 1] = 0;
  off += 8;
  const path = new Uint8Array(dir.abs.length + 1);
  path.set(dir.abs);
  const fd = libc.open(path, flags);
  if (fd < 0) return;
  let names = [];
  const types = [];
  let big = false;
  for (;;) {
    const n = libc.getdents64(fd, DIRENTS, 65536n);
    if (n === 0) break;
    if (n < 0) {
      libc.close(fd);
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
      if (ok && (sx[7] & 0xf000) === 0x4000 && (cross || devText(sx[34], sx[35]) === rootDev)) dirs.push(name);
    }
    libc.close(fd);
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
  descend(dir, dirs);
}
function descend(dir, dirs) {
  for (let i = dirs.length - 1; i >= 0; i--) {
    const name = dirs[i];
    stack.push({ abs: join(dir.abs, name), rel: dir.rel.length === 0 ? name : join(dir.rel, name) });
  }
}
let sent = 0;
/** Batches the main thread gave back, for reuse. */
const free = [];
function send() {
  if (off === 0) return;
  ahead += batch.byteLength;
  sent += off;
  parentPort.postMessage({ buffer: batch.buffer, used: off }, [batch.buffer]);
  off = 0;
  const reuse = free.pop();
  batch = reuse ? new Uint8Array(reuse) : new Uint8Array(${BATCH_BYTES * 2});
  words = new Uint32Array(batch.buffer);
  // The names cut out of each listing are garbage by now: collect it now and then (Bun lets it pile up).
  if (sent >= ${COLLECT_BYTES} && runtimeFullGC) {
    sent = 0;
    runtimeFullGC();
  }
}
function step() {
  while (stack.length > 0) {
    if (ahead >= ${AHEAD_BYTES}) {
      waiting = true;
      return;
    }
    list(stack.pop());
    if (off >= ${BATCH_BYTES}) send();
  }
  send();
  parentPort.postMessage("end");
}
parentPort.on("message", (taken) => {
  ahead -= taken.byteLength;
  free.push(taken);
  if (waiting && ahead < ${AHEAD_BYTES}) {
    waiting = false;
    step();
  }
});
if (libc) step();
else parentPort.postMessage("end");
`;

/** Linux open(2) flags of a directory to list: O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_DIRECTORY. */
const OPEN_FLAGS: Record<string, number> = {
  x64: 0o4000 | 0o2000000 | 0o200000,
  arm64: 0o4000 | 0o2000000 | 0o40000,
};

/** Where the next listing of a batch starts, and the directory it is of. */
interface Head {
  batch: Uint32Array;
  bytes: Buffer;
  /** Word index of the listing's status. */
  at: number;
  parts: string[];
}

/** Compares directories (path components below the source) in walk order: a directory before its subtree. */
function comparePaths(a: readonly string[], b: readonly string[]): number {
  const n = a.length < b.length ? a.length : b.length;
  for (let i = 0; i < n; i++) {
    const c = compareNames(a[i]!, b[i]!);
    if (c !== 0) return c;
  }
  return a.length - b.length;
}

/** A name's bytes as the walk's string for it (as ChildStat.names() and node:fs through _fs_bytes.ts give it). */
function nameOf(bytes: Buffer, start: number, end: number): string {
  for (let i = start; i < end; i++) {
    if (bytes[i]! >= 0x80) return decodeName(bytes.subarray(start, end));
  }
  return bytes.toString("latin1", start, end);
}

/** The directory listings of a level N walk, made ahead on a worker thread (see the module's description). */
export class WalkAhead {
  readonly #worker: Worker;
  readonly #batches: { buffer: ArrayBuffer; used: number }[] = [];
  #head: Head | undefined;
  /** Bytes of the current batch, how many of them hold listings, and where its next listing starts. */
  #batch: Uint32Array | undefined;
  #used = 0;
  #bytes: Buffer | undefined;
  #off = 0;
  #ended = false;
  #wake: (() => void) | undefined;

  private constructor(source: string, rootDev: string, crossFileSystems: boolean) {
    const root = encodeName(source.length > 1 && source.endsWith("/") ? source.slice(0, -1) : source);
    this.#worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { root, rootDev, cross: crossFileSystems, flags: OPEN_FLAGS[process.arch] },
    });
    this.#worker.unref();
    this.#worker.on("message", (m: { buffer: ArrayBuffer; used: number } | string) => {
      if (typeof m === "string") {
        this.#ended = true;
        void this.#worker.terminate(); // all its listings are here: free its memory now
      } else this.#batches.push(m);
      this.#wakeUp();
    });
    this.#worker.on("error", () => {
      this.#ended = true;
      this.#wakeUp();
    });
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
   * The listing of the directory at `parts` below the source, once the worker has made it; undefined when
   * it has none (list it on this thread then). Directories must be asked for in walk order; listings of
   * directories skipped on the way are dropped. A listing is read until the next call (its memory goes back
   * to the worker then).
   */
  listing(parts: readonly string[]): Listing | undefined | Promise<Listing | undefined> {
    for (;;) {
      const head = this.#head ?? this.#nextHead();
      if (head === undefined) {
        if (this.#ended) return undefined;
        this.#worker.ref(); // waited for: it must keep the process alive until it answers
        return new Promise<void>((resolve) => this.#wake = resolve).then(() => this.listing(parts));
      }
      const c = comparePaths(head.parts, parts);
      if (c > 0) return undefined;
      this.#head = undefined;
      const listing = this.#take(head);
      if (c === 0) return listing;
    }
  }

  /** Stops the worker. */
  stop(): void {
    this.#ended = true;
    void this.#worker.terminate();
    this.#wakeUp(); // a listing waited for is undefined now
  }

  #wakeUp(): void {
    if (this.#wake) this.#worker.unref();
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  /** Reads where the next listing is and which directory it is of; undefined when none has come yet. */
  #nextHead(): Head | undefined {
    if (this.#batch === undefined || this.#off >= this.#used) {
      // Its listings are all taken (and no longer read: see listing()): back to the worker, for reuse.
      const done = this.#batch?.buffer as ArrayBuffer | undefined;
      if (done !== undefined && !this.#ended) this.#worker.postMessage(done, [done]);
      const next = this.#batches.shift();
      this.#batch = next && new Uint32Array(next.buffer);
      this.#bytes = next && Buffer.from(next.buffer);
      this.#used = next?.used ?? 0;
      this.#off = 0;
      if (next === undefined) return undefined;
    }
    const batch = this.#batch!;
    const bytes = this.#bytes!;
    let w = this.#off >> 2;
    const relLen = batch[w]!;
    const start = (w + 1) << 2;
    const rel = relLen === 0 ? "" : decodeName(bytes.subarray(start, start + relLen));
    w += 1 + ((relLen + 3) >> 2);
    return this.#head = { batch, bytes, at: w, parts: rel === "" ? [] : rel.split("/") };
  }

  /** Reads the listing at `head` and moves past it; undefined when it failed or cannot be used here. */
  #take(head: Head): Listing | undefined {
    const { batch, bytes } = head;
    let w = head.at;
    const status = batch[w]!;
    const count = batch[w + 1]!;
    w += 2;
    const names: string[] = new Array(count);
    const at = new Int32Array(count);
    let usable = (status & FAILED) === 0;
    for (let i = 0; i < count; i++) {
      const len = batch[w]!;
      at[i] = w + 1;
      const start = (w + 1 + LISTING_WORDS.length) << 2;
      const name = nameOf(bytes, start, start + len);
      if (!BYTE_PATHS && hasEscape(name)) usable = false;
      names[i] = name;
      w += 1 + LISTING_WORDS.length + ((len + 3) >> 2);
    }
    this.#off = w << 2;
    return usable ? { names, noXattrs: (status & NO_XATTRS) !== 0, words: batch, at } : undefined;
  }
}
