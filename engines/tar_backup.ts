/**
 * The tar engine's backup half: walks a directory (or one regular file) in process and writes a
 * GNU-tar-compatible incremental archive, plus the engine state the next level compares against.
 *
 * ## Archive
 *
 * Uncompressed POSIX (pax) tar as `tar -C source -g snar --format=posix -c .` writes it, so that
 * `tar --incremental -x` restores a level, deletions included:
 * - Members: the root directory `./`, then `./a`, `./a/b/` (directories end in `/`); a single-file source
 *   is one member named by its basename. Order: depth first; inside a directory its non-directories
 *   (sorted by the UTF-8 bytes of their names), then its subdirectories (same order), each followed by
 *   its own subtree.
 * - Every member has a pax `x` header, named `<dir>/PaxHeaders/<name>` like GNU tar's, holding
 *   `mtime=<seconds>.<9 digits>` (as precise as the runtime's lstat: nanoseconds in Bun and Node,
 *   milliseconds in Deno) and, where ustar cannot hold a value, `path`, `linkpath`, `size`,
 *   `uid`, `gid`, `uname`, `gname`. The ustar header repeats what fits (whole-second mtime, uname/gname
 *   from /etc/passwd and /etc/group, mode incl. setuid/setgid/sticky, devmajor/devminor).
 * - Every directory is a type `5` member whose pax header holds `GNU.dumpdir`: its children sorted by
 *   UTF-8 bytes, each as `<flag><name>\0` (`Y` in this archive, `N` unchanged since the parent level and
 *   not in this archive, `D` directory), then one more `\0`. This is what GNU tar 1.34 itself writes with
 *   `--format=posix --listed-incremental`; on `--incremental -x` it deletes what the dumpdir lacks.
 * - Names of an inode with more than one link, after the first one in the walk, are type `1` links to
 *   that first name when they are in the archive. At level N the first name may be unchanged (`N`): the
 *   link then points to a file that is not in this archive but exists where the earlier levels were
 *   restored. An unchanged name of an inode whose first name is in the archive is stored as a link
 *   too, so that links stay whole from level to level (a renamed directory changes the paths of its
 *   files, not their ctimes).
 * - Fifos, and char/block devices when running as root, are stored; sockets and (when not root)
 *   devices are left out with a warning, and are absent from the dumpdir.
 * - Mount points below the source are stored as empty directories unless `crossFileSystems`.
 * - `exclude` takes picomatch globs (with `dot: true`): a pattern without `/` matches any entry's name,
 *   one with `/` the path below the source (a leading `/` or `./` anchors it there); a trailing `/` limits
 *   a pattern to directories. Excluded entries are absent (from dumpdirs too); excluded directories are not
 *   descended into.
 * - Extended attributes (unless `options.xattrs` is false), ACLs and capabilities included, as GNU tar
 *   `--xattrs --acls` writes them: `SCHILY.acl.access`/`SCHILY.acl.default` text, then every xattr raw as
 *   `SCHILY.xattr.<name>` (see _xattrs.ts and docs/FORMAT.md). Hard-link members carry none.
 * - Names that are not valid UTF-8 cannot be read through `node:fs` strings: they are left out with a
 *   warning.
 * - A regular file with fewer blocks allocated than its size needs is searched for holes (SEEK_DATA and
 *   SEEK_HOLE, else all-zero blocks); one that has some is stored in GNU tar's PAX sparse format 1.0
 *   (`GNU.sparse.*` records, the map at the start of its data; see _sparse.ts). Other files cost nothing
 *   extra. The state records its real size.
 * - The archive ends with two zero blocks (no padding to a 10 KiB record).
 *
 * ## Engine state, format `frost-tar-state` version 2
 *
 * UTF-8 text, one JSON value per line (`\n`). The first line is a header object:
 * `{"format":"frost-tar-state","version":2,"started":"<ns>"}` where `started` is the wall-clock time the
 * backup started, in nanoseconds since the epoch. Each further line is one entry of the backed-up tree,
 * written whether or not the entry is in this archive:
 * `["<path>","<type>","<dev>","<ino>","<size>","<mtime ns>","<ctime ns>"]`, all numbers as decimal
 * strings (64-bit safe). `path` is relative to the source (`.` for the root directory, the basename for
 * a single-file source); `type` is `f` regular file, `d` directory, `l` symlink, `p` fifo, `c`/`b` char
 * or block device. Entries left out of the archive (vanished, unreadable, sockets, excluded) have no
 * record. Records come in the archive's member order (see above: depth first, non-directories before
 * directories, each group by UTF-8 bytes), which lets level N read its parent's state as a streaming
 * merge (memory flat in the number of files) and still know, before writing a directory's dumpdir,
 * which of its non-directory children are unchanged. After the last record, one trailer line
 * `{"stored":["<path>",...]}` lists the regular files of at least 1 MiB with a single link that this
 * archive holds as data (see `stateTrailer`): a chain restore writes each only from the newest level that
 * stores it. Version 1 states (no trailer) are read as well.
 *
 * ## Change detection
 *
 * A non-directory is unchanged, and left out of a level N archive (`N` in its dumpdir), when the parent's
 * state has a record with the same path and type and the same inode, size, mtime and ctime (devices are
 * not compared: snapshots remount) and that record's ctime is before the parent's `started` time (minus
 * 0.1 s, rounded down to a whole second). The last rule re-sends files changed while or just before the
 * parent was taken, which timestamps of coarse granularity could not tell apart. It matters under Deno,
 * whose `node:fs` reports mtime in milliseconds and ctime in whole seconds; Bun and Node report
 * nanoseconds. Directories are always written, with their dumpdir.
 *
 * At level N each child is first looked at with `statx()` relative to its open directory, through FFI where
 * the runtime has it (_ffi_stat.ts: exact values into one reused buffer, no Stats object, no full path); a
 * file with one link whose inode, size, mtime and ctime are those of the parent's record to the nanosecond
 * (and whose record passes the rule above) is unchanged, and its record is the parent's, copied. Without
 * FFI (or when that call fails) the first look is a number lstat (no BigInts: cheaper), whose times hold
 * about 0.24 µs, and a match within 2 µs counts. Anything else is lstat()ed again exactly (node:fs, BigInt)
 * and compared as above. Within 2 µs is as good as equal: a file changed after its parent backup started has
 * a ctime at least 0.1 s after the one recorded (the rule above), and no one can set a ctime. The listings
 * and statx() calls are made ahead on a worker thread where it can run and a core is free (_walk_ahead.ts;
 * not with `exclude`), so that they take the other core.
 *
 * ## Errors
 *
 * `tarBackup()` throws a FrostError synchronously when the source is missing, not a directory or regular
 * file, or not readable. Later failures (listing the source itself, a parent state that cannot be read)
 * error both streams with a FrostError; an abort or a cancelled archive stream errors them with an
 * AbortedError. A child that vanishes or cannot be read, or a file that changes size while read, is a
 * warning: a file that shrank is padded with zeros, one that grew is cut at the size in its header.
 *
 * ## Streams
 *
 * The archive is produced on demand (`pull()`), in chunks of 1 MiB that file data is read into directly,
 * with two chunks read ahead; memory stays flat whatever the tree. A reader that calls `run.giveBack()` with
 * the chunks it is done with gets the same buffers again, so that a backup of any size allocates
 * only a few chunks (the garbage collectors of Deno and Bun free big buffers late). The state is enqueued
 * as it is produced, in pieces of about 64 KiB, without waiting for its reader.
 * @module
 */
import fs from "./_fs_bytes.ts";
import path from "node:path";
import process from "node:process";
import { setImmediate } from "node:timers";
import type { BackupOptions, BackupRun, EngineTimes } from "./engine.ts";
import { AbortedError, failureOf, FrostError } from "../base/errors.ts";
import {
  BLOCK,
  devMajor,
  devMinor,
  emptyHeader,
  type HeaderFields,
  MAX_OCTAL_11,
  MAX_OCTAL_7,
  paxRecordLength,
  paxTime,
  TYPE,
  utf8Length,
  wholeSeconds,
  writeHeader,
  writePaxRecord,
  writeString,
} from "./_tar_header.ts";
import {
  type Kind,
  MORE,
  type ParentRecord,
  sortNames,
  stateHeader,
  stateRecord,
  stateTrailer,
  STORED_MIN,
  tailFields,
  tailStart,
  TarStateReader,
} from "./_tar_state.ts";
import { errnoText, excludeMatcher, OwnerNames } from "./_fs_common.ts";
import { hasEscape } from "./_names.ts";
import { mayHaveHoles, sparseHeaderName, type SparseLayout, sparseLayout, SparseSource } from "./_sparse.ts";
import {
  ACL_ACCESS,
  ACL_DEFAULT,
  aclToText,
  encodeXattrKeyword,
  readXattrs,
  requireXattrs,
  type Xattr,
} from "./_xattrs.ts";
import {
  BackupControl,
  closeRead,
  entryKind,
  listDir,
  lstatChild,
  lstatChildFast,
  statSource,
} from "./_walk.ts";
import { OPEN_FLAGS, PROGRESS_MS, SLICE_MS } from "./_walk.ts";
import { ChildStat, type Listing } from "./_ffi_stat.ts";
import { WalkAhead } from "./_walk_ahead.ts";
import { collectYoung, relieveMemory } from "../base/memory.ts";
import { workerBuffer } from "../base/bytes.ts";

/** Output chunk size: big enough that per-chunk costs vanish, small enough to keep memory low; one
 * compressed frame each. */
const CHUNK_SIZE = 1 << 20;
/** Chunks given back, kept for reuse: the read-ahead, frames being compressed, and one more. */
const KEEP_CHUNKS = 8;
/** Chunks of the archive prepared ahead of the consumer, so reading overlaps compression. */
const READ_AHEAD = 2;
/** State text is enqueued in pieces of about this many characters. */
const STATE_BATCH = 64 << 10;

/**
 * One child of a directory being walked, reduced to what the backup needs: a directory's whole listing
 * stays in memory while its subtree is walked, and Stats objects (a dozen BigInts each) would make
 * the garbage collector the bottleneck in big directories.
 */
interface Item {
  name: string;
  kind: Kind;
  /** In this archive (level 0: always; level N: differs from the parent's record). */
  changed: boolean;
  /** A directory on another file system than the source. */
  mount: boolean;
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  size: number;
  /** Device of char/block devices (0n for others). */
  rdev: bigint;
  /** `dev:ino` of non-directories with several links. */
  linkKey: string | undefined;
  /** A regular file with fewer blocks than its size needs: searched for holes when stored. */
  holes: boolean;
  /** The entry's state record, and where its tail (ino, size, mtime, ctime) starts. */
  line: string;
  tailAt: number;
}

function makeItem(name: string, rel: string, kind: Kind, st: fs.BigIntStats, rootDev: bigint): Item {
  const dev = String(st.dev);
  const ino = String(st.ino);
  const size = Number(st.size);
  const nlink = Number(st.nlink);
  const line = stateRecord(rel, kind, dev, ino, String(size), String(st.mtimeNs), String(st.ctimeNs));
  return {
    name,
    kind,
    changed: true,
    mount: kind === "d" && st.dev !== rootDev,
    mode: Number(st.mode) & 0o7777,
    uid: Number(st.uid),
    gid: Number(st.gid),
    nlink,
    size,
    rdev: kind === "c" || kind === "b" ? st.rdev : 0n,
    linkKey: nlink > 1 && kind !== "d" ? `${dev}:${ino}` : undefined,
    holes: kind === "f" && mayHaveHoles(st),
    line,
    tailAt: tailStart(line),
  };
}

/** Whether node:fs's BigInt lstat gives times to the nanosecond (Bun, Node; not Deno 2). */
const EXACT_LSTAT = (process.versions as Record<string, string | undefined>).deno === undefined;

/**
 * {@linkcode makeItem} from the values statx() gave `at` (exact: the same Item as from an lstat then), for
 * any kind but devices (whose numbers it does not keep).
 */
function makeItemAt(name: string, rel: string, kind: Kind, at: ChildStat, rootDev: string): Item {
  const dev = at.dev;
  const ino = at.ino;
  const sizeText = at.size;
  const nlink = at.nlink;
  const line = stateRecord(rel, kind, dev, ino, sizeText, at.mtimeNs, at.ctimeNs);
  return {
    name,
    kind,
    changed: true,
    mount: kind === "d" && dev !== rootDev,
    mode: at.mode & 0o7777,
    uid: at.uid,
    gid: at.gid,
    nlink,
    size: Number(sizeText),
    rdev: 0n,
    linkKey: nlink > 1 && kind !== "d" ? `${dev}:${ino}` : undefined,
    holes: kind === "f" && at.fewerBlocks,
    line,
    tailAt: tailStart(line),
  };
}

/**
 * Unchanged non-directories that follow each other in a directory at level N, kept as their state records
 * only (one text): all that is left to do for them is to copy those records to the new state.
 */
interface Run {
  lines: string;
  count: number;
}

/**
 * The children of a directory at level 0, packed in typed arrays by name order (a folder's listing stays
 * in memory while its subtree is walked: an Item each would cost ~300 bytes); each child's Item is made
 * when the walk reaches it. `order` holds the indexes in walk order (non-directories, then directories).
 */
interface Pack {
  names: string[];
  /** Per child: its kind (index in KIND_CODES), +8 when it may have holes. */
  flags: Uint8Array;
  /** Per child: mode, uid, gid, nlink, size. */
  nums: Float64Array;
  /** Per child: dev, ino, rdev. */
  ids: BigUint64Array;
  /** Per child: mtime, ctime (ns). */
  times: BigInt64Array;
  /** The lstat of a child with a value the arrays cannot hold (a time past 2262, say). */
  exact: Map<number, fs.BigIntStats> | undefined;
  order: Uint32Array;
  /** Children in the pack, and the next one in walk order. */
  count: number;
  next: number;
}

const KIND_CODES: readonly Kind[] = ["f", "d", "l", "p", "c", "b"];
const HOLES_FLAG = 8;

/**
 * How far (ms) a time from a number lstat may be from the parent's nanoseconds and still count as the
 * same: a double holds a time in ms to about 0.24 µs. See "Change detection" for why this is exact enough.
 */
const SAME_TIME_MS = 0.002;

/** A directory being walked: its children in walk order and where the walk is. */
interface Frame {
  /** Path components of the directory below the source (empty for the root). */
  parts: string[];
  /** Prefixes of the children's relative path, member name and file system path. */
  relPrefix: string;
  memberPrefix: string;
  absPrefix: string;
  items: (Item | Run | Pack)[];
  index: number;
  /** The frame holding only the source itself; its item is named specially. */
  top: boolean;
}

/** An entry ready to be written: everything that decides its headers. */
interface Entry {
  abs: string;
  member: string;
  paxName: string;
  item: Item;
  typeflag: number;
  /** Bytes of data after the header. */
  size: number;
  linkname: string;
  dumpdir: Uint8Array | undefined;
  /** Its extended attributes (ACLs and capabilities included), unless there are none or they are off. */
  xattrs: Xattr[] | undefined;
  fd: number;
  /** For directories: the frame of its children, pushed once the header is written. */
  frame: Frame | undefined;
  /** Its state record is written already (a directory at level N: see #listLevel()). */
  recorded?: boolean;
  /** A file with holes, stored in GNU's sparse format 1.0 (see _sparse.ts); `size` is then its stored size. */
  sparse?: SparseLayout;
}

function newChunk(size: number): Uint8Array {
  // A fresh buffer, zeroed by the allocator (calloc/mmap): cheaper than Uint8Array(n) in Deno. (Reused
  // chunks are not zeroed: #commit, #copy and #finish zero the headers and padding they write.) Under Bun
  // it is shared memory, which the compression workers read in place (an ArrayBuffer would be copied there
  // and back).
  return workerBuffer(size);
}

/** `a < b` for decimal integer strings without leading zeros (a minus sign sorts first). */
function decimalLess(a: string, b: string): boolean {
  const an = a.startsWith("-");
  const bn = b.startsWith("-");
  if (an !== bn) return an;
  if (an) return decimalLess(b.slice(1), a.slice(1));
  return a.length !== b.length ? a.length < b.length : a < b;
}

/** `decimalLess(text.slice(start, end), b)`, without cutting the string where neither is negative. */
function decimalLessAt(text: string, start: number, end: number, b: string): boolean {
  if (text.charCodeAt(start) === 45 || b.charCodeAt(0) === 45) return decimalLess(text.slice(start, end), b);
  const n = end - start;
  if (n !== b.length) return n < b.length;
  for (let i = 0; i < n; i++) {
    const x = text.charCodeAt(start + i);
    const y = b.charCodeAt(i);
    if (x !== y) return x < y;
  }
  return false;
}

/** "No chunk yet": the next pull allocates one. */
const NO_CHUNK = new Uint8Array(0);

const roundUp = (n: number) => Math.ceil(n / BLOCK) * BLOCK;

const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/** One backup run: the walk, the archive writer and the state writer. */
class TarBackup {
  readonly run: BackupRun;

  #source: string;
  #options: BackupOptions;
  #rootDev: bigint;
  #rootDevText: string;
  #isRoot = process.getuid?.() === 0;
  #exclude: ((rel: string, name: string, isDir: boolean) => boolean) | undefined;
  #c: BackupControl;

  #data!: ReadableStreamDefaultController<Uint8Array>;
  #state!: ReadableStreamDefaultController<Uint8Array>;
  #stateCancelled = false;
  #stateText = "";
  #encoder = new TextEncoder();
  #ended = false;

  #reader: TarStateReader | undefined;
  /** The level N walk's first look at children, through statx() where the runtime can call it. */
  #childStat: ChildStat | null | undefined;
  #readerOpen = false;
  /** The level N walk's listings, made ahead on a worker thread where it can run (see _walk_ahead.ts). */
  #ahead: WalkAhead | undefined;
  /** Parent records with a ctime at or after this (ns, decimal) count as changed; see "Change detection". */
  #racyLimit = "0";

  #stack: Frame[];
  #chunk: Uint8Array = NO_CHUNK;
  #off = 0;
  /** Chunks given back (not zeroed: each header, padding and end block is zeroed where it is written). */
  #free: Uint8Array[] = [];
  #times: EngineTimes | undefined;
  #pending: Entry | undefined;
  /**
   * First name seen in this walk of each inode with several links (`dev:ino`), and whether that name is
   * in this archive. Later changed names become type `1` links to it; see #keepLinks().
   */
  #links = new Map<string, { member: string; written: boolean }>();
  /** Paths of the large single-link files stored as data, for the state's trailer (see `stateTrailer`). */
  #stored: string[] = [];
  #header: HeaderFields = emptyHeader();
  #names = new OwnerNames();

  // The file whose data is being copied.
  #fd = -1;
  /** Its sparse map and regions, when it has holes. */
  #sparse: SparseSource | undefined;
  #fileAbs = "";
  #fileSize = 0;
  #filePos = 0;
  /** Data bytes still owed to the archive for the current file (read, or zeros once it failed). */
  #remaining = 0;
  #lastYield = performance.now();
  /** Entries listed so far (see #tick()). */
  #listed = 0;
  /** Time spent yielding to the event loop during this fill (not busy), and when the last fill ended. */
  #idleMs = 0;
  #filled = 0;

  constructor(source: string, rootStat: fs.BigIntStats, options: BackupOptions) {
    this.#source = source;
    this.#options = options;
    this.#c = new BackupControl(source, options);
    this.#times = options.times;
    this.#rootDev = rootStat.dev;
    this.#rootDevText = String(rootStat.dev);
    this.#exclude = options.exclude ? excludeMatcher(options.exclude) : undefined;
    const started = BigInt(Date.now()) * 1_000_000n;
    if (options.previous) {
      this.#reader = new TarStateReader(options.previous);
      // Not with excludes: the worker would list excluded subtrees for nothing; nor for a root without
      // subfolders (WalkAhead.helps).
      if (
        rootStat.isDirectory() && !options.exclude?.length && WalkAhead.helps(rootStat.nlink) &&
        WalkAhead.worthIt()
      ) {
        this.#ahead = WalkAhead.start(source, this.#rootDevText, options.crossFileSystems === true);
      }
    }

    const name = rootStat.isDirectory() ? "." : path.basename(source);
    const rootItem = makeItem(name, name, rootStat.isDirectory() ? "d" : "f", rootStat, rootStat.dev);
    const dir = rootStat.isDirectory() ? source : path.dirname(source);
    this.#stack = [{
      parts: [],
      relPrefix: "",
      memberPrefix: "",
      absPrefix: dir.endsWith("/") ? dir : `${dir}/`,
      items: [rootItem],
      index: 0,
      top: true,
    }];

    const state = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#state = controller;
        controller.enqueue(this.#encoder.encode(stateHeader(started)));
      },
      cancel: () => {
        this.#stateCancelled = true;
      },
    });
    const stream = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#data = controller;
      },
      pull: () => this.#pull(),
      cancel: (reason) => {
        this.#fail(new AbortedError(`Backup of "${source}" cancelled`, { cause: reason }));
      },
    }, { highWaterMark: READ_AHEAD });
    this.run = { stream, state, done: this.#c.done, giveBack: (chunk) => this.#giveBack(chunk) };

    this.#c.listen((err) => this.#fail(err));
  }

  /** Takes back a chunk of `stream` (see BackupRun.giveBack): only full-size ones, for reuse. */
  #giveBack(chunk: Uint8Array): void {
    const buffer = chunk.buffer;
    if (chunk.byteOffset !== 0 || buffer.byteLength !== CHUNK_SIZE || this.#free.length >= KEEP_CHUNKS) {
      return;
    }
    this.#free.push(new Uint8Array(buffer, 0, CHUNK_SIZE));
  }

  async #pull(): Promise<void> {
    if (this.#ended) return;
    try {
      const times = this.#times;
      if (times) {
        const t0 = performance.now();
        if (this.#filled > 0) times.waitMs += t0 - this.#filled;
        this.#idleMs = 0;
        await this.#fill();
        this.#filled = performance.now();
        times.busyMs += this.#filled - t0 - this.#idleMs;
        times.readBytes = this.#c.stats.bytes;
      } else await this.#fill();
    } catch (err) {
      this.#fail(failureOf(err, `Cannot back up "${this.#source}"`));
    }
  }

  /** Fills one chunk (or finishes the archive) and enqueues it. */
  async #fill(): Promise<void> {
    if (this.#options.signal?.aborted) throw this.#c.aborted();
    if (this.#reader && !this.#readerOpen) {
      await this.#reader.open();
      this.#readerOpen = true;
      const limit = this.#reader.started - 100_000_000n;
      this.#racyLimit = String((limit / 1_000_000_000n) * 1_000_000_000n);
      const top = this.#stack[0];
      const only = top?.items[0] as Item | undefined;
      if (only?.kind === "f") await this.#merge([], [only], 0); // a single-file source
    }
    // A fast consumer keeps pulling through microtasks alone: give timers and I/O (abort, progress
    // reporting, uploads) a turn now and then.
    if (performance.now() - this.#lastYield >= SLICE_MS) {
      await this.#yield();
      if (this.#ended) return;
    }
    if (this.#chunk === NO_CHUNK) this.#chunk = this.#free.pop() ?? newChunk(CHUNK_SIZE);
    this.#off = 0;
    const signal = this.#options.signal;
    const times = this.#times;
    let count = 0;
    while (!this.#ended) {
      if (this.#remaining > 0) {
        if (times) {
          const t0 = performance.now();
          const done = this.#copy();
          times.readMs += performance.now() - t0;
          if (!done) break;
        } else if (!this.#copy()) break;
        continue;
      }
      if (this.#pending) {
        if (!this.#commit(this.#pending)) break;
        this.#pending = undefined;
        continue;
      }
      const frame = this.#stack[this.#stack.length - 1];
      if (!frame) {
        await this.#finish();
        return;
      }
      let item = frame.items[frame.index++];
      if (item !== undefined && "order" in item) {
        if (item.next < item.count) {
          frame.index--;
          item = this.#unpack(frame, item, item.order[item.next++]!);
        } else continue;
      }
      if (!item) {
        this.#stack.pop();
        continue;
      }
      if ("lines" in item) {
        this.#c.stats.scanned += item.count;
        this.#record(item.lines);
      } else if (item.kind === "d") {
        this.#c.stats.scanned++;
        const t0 = times ? performance.now() : 0;
        const idle = this.#idleMs;
        const entry = this.#enterDir(frame, item);
        this.#pending = entry instanceof Promise ? await entry : entry;
        if (times) times.walkMs += performance.now() - t0 - (this.#idleMs - idle); // not its turns given away
      } else if (item.changed) {
        this.#c.stats.scanned++;
        if (times) {
          const t0 = performance.now();
          this.#pending = this.#prepare(frame, item);
          times.readMs += performance.now() - t0;
        } else this.#pending = this.#prepare(frame, item);
      } else {
        this.#c.stats.scanned++;
        if (item.linkKey !== undefined && !this.#links.has(item.linkKey)) {
          this.#links.set(item.linkKey, { member: frame.memberPrefix + item.name, written: false });
        }
        this.#record(item.line);
      }
      if ((++count & 63) === 0) {
        if ((count & 4095) === 0) collectYoung();
        if (signal?.aborted) throw this.#c.aborted();
        const now = performance.now();
        if (now - this.#c.lastProgress >= PROGRESS_MS) this.#c.progress(now);
        if (now - this.#lastYield >= SLICE_MS) {
          if (this.#off > 0) break;
          await this.#yield();
        }
      }
    }
    if (this.#ended) return;
    this.#emit();
    const now = performance.now();
    if (now - this.#c.lastProgress >= PROGRESS_MS) this.#c.progress(now);
  }

  async #yield(): Promise<void> {
    const t0 = performance.now();
    await yieldToEventLoop();
    this.#lastYield = performance.now();
    this.#idleMs += this.#lastYield - t0;
  }

  /** Lists a directory and prepares its entry (header with dumpdir, frame of its children). */
  #enterDir(frame: Frame, item: Item): Entry | undefined | Promise<Entry | undefined> {
    const isRoot = frame.top;
    const rel = isRoot ? "." : frame.relPrefix + item.name;
    const abs = isRoot ? this.#source : frame.absPrefix + item.name;
    const parts = isRoot ? [] : [...frame.parts, item.name];
    const child: Frame = {
      parts,
      relPrefix: isRoot ? "" : `${rel}/`,
      memberPrefix: isRoot ? "./" : `${frame.memberPrefix}${item.name}/`,
      absPrefix: abs.endsWith("/") ? abs : `${abs}/`,
      items: [],
      index: 0,
      top: false,
    };
    if (!item.mount || this.#options.crossFileSystems) {
      if (this.#reader) {
        return this.#enterLevel(frame, item, child, abs, this.#ahead?.listing(parts));
      }
      const names = listDir(abs, isRoot, this.#source, this.#c);
      if (names === undefined) return undefined;
      const pack = this.#list(sortNames(names), child);
      child.items = [pack];
      return this.#dirEntry(frame, item, child, abs, pack);
    }
    return this.#dirEntry(frame, item, child, abs, []);
  }

  /**
   * At level N: lists a directory (from `listing`, made ahead, or else opened for statx() first and listed
   * from that descriptor where it can be) and prepares its entry.
   */
  async #enterLevel(
    frame: Frame,
    item: Item,
    child: Frame,
    abs: string,
    listing: Listing | undefined,
  ): Promise<Entry | undefined> {
    const at = listing ? this.#listingChildStat(listing) : this.#openChildStat(child);
    const names = at?.names() ?? listDir(abs, frame.top, this.#source, this.#c);
    if (names === undefined) {
      at?.closeDir();
      return undefined;
    }
    // A listing made ahead is in walk order already (sorted by the names' bytes).
    const listed = await this.#listLevel(child, listing && at ? names : sortNames(names), item, at);
    child.items = listed.files.concat(listed.dirs);
    const entry = this.#dirEntry(frame, item, child, abs, listed.byName, listed.noXattrs);
    entry.recorded = true;
    return entry;
  }

  /** The entry of a listed directory: its header with the dumpdir, and the frame of its children. */
  #dirEntry(
    frame: Frame,
    item: Item,
    child: Frame,
    abs: string,
    byName: readonly (Item | string)[] | Pack,
    noXattrs = false,
  ): Entry {
    return {
      abs,
      member: frame.top ? "./" : child.memberPrefix,
      paxName: frame.top ? "./PaxHeaders/." : `${frame.memberPrefix}PaxHeaders/${item.name}`,
      item,
      typeflag: TYPE.dir,
      size: 0,
      linkname: "",
      dumpdir: dumpdir(byName),
      xattrs: noXattrs ? undefined : this.#xattrs(abs),
      fd: -1,
      frame: child,
    };
  }

  /**
   * At level N: lstat()s the children of a directory (names sorted) and compares its non-directories with
   * the parent's state on the way. A first lstat with numbers settles the usual case, an unchanged file
   * with one link, which is kept as its parent's record only (in a Run); a changed entry, a directory
   * or a file with several links gets a second, exact lstat (BigInt) and an Item. In `byName`, a name
   * stands for an unchanged file (`N` in the dumpdir).
   *
   * The directory's own state record (`self`) is written first, and the records of the unchanged files
   * before its first changed one straight after it, so that a directory where nothing changed holds
   * nothing: the directory's entry comes next in the archive whatever happens (records are in the order
   * of the archive's entries, see the state format), so its record can be written now.
   */
  async #listLevel(
    dir: Frame,
    names: string[],
    self: Item,
    at: ChildStat | undefined,
  ): Promise<{ byName: (Item | string)[]; files: (Item | Run)[]; dirs: Item[]; noXattrs: boolean }> {
    relieveMemory();
    const reader = this.#reader!;
    const exclude = this.#exclude;
    const byName: (Item | string)[] = [];
    const files: (Item | Run)[] = [];
    const dirs: Item[] = [];
    const linked: Item[] = [];
    let run: string[] = [];
    this.#record(self.line);
    /** No changed file yet: unchanged records go to the state now. */
    let leading = true;
    const endRun = () => {
      if (run.length === 0) return;
      files.push({ lines: run.join("\n") + "\n", count: run.length });
      run = [];
    };
    const native = at !== undefined;
    // The directory has no extended attributes at all (then its entry skips reading them), asked now.
    const noXattrs = native && this.#options.xattrs !== false && at!.hasNoXattrs();
    for (let i = 0; i < names.length; i++) {
      this.#tick();
      // A big folder is one long loop: give the event loop a turn now and then, so that the state written so
      // far is taken (else it piles up until the folder ends), and abort and progress are seen.
      if ((i & 1023) === 1023 && performance.now() - this.#lastYield >= SLICE_MS) {
        await this.#yield();
        if (this.#ended) break;
      }
      const name = names[i]!;
      const rel = dir.relPrefix + name;
      if (exclude?.(rel, name, false)) continue;
      const abs = dir.absPrefix + name;
      // The first look: statx() in this directory when the runtime can, else a number lstat.
      let fast: fs.Stats | undefined;
      let mode: number;
      let nlink: number;
      if (native && at!.stat(name)) {
        mode = at!.mode;
        nlink = at!.nlink;
      } else {
        fast = lstatChildFast(abs, name, this.#c);
        if (!fast) continue;
        mode = fast.mode;
        nlink = fast.nlink;
      }
      let kind = entryKind(mode, abs, this.#isRoot, this.#c);
      if (kind === undefined || (kind === "d" && exclude?.(rel, name, true))) continue;
      let rec: ParentRecord | undefined | typeof MORE;
      if (kind !== "d") {
        rec = reader.match(dir.parts, name, false, dir.relPrefix);
        while (rec === MORE) {
          await reader.more();
          rec = reader.match(dir.parts, name, false, dir.relPrefix);
        }
        const line = nlink > 1
          ? undefined
          : fast
          ? this.#sameRecord(rec, rel, kind, fast)
          : this.#sameRecordExact(rec, rel, kind, at!);
        if (line !== undefined) {
          if (leading) {
            this.#record(line + "\n");
            this.#c.stats.scanned++;
          } else run.push(line);
          byName.push(name);
          continue;
        }
      }
      // The exact look: it decides what is stored (and, for a non-directory, whether it changed). Through
      // statx() it was the first one (its values are exact) where node:fs's are exact too (the same record
      // as before); devices, node:fs's first look and Deno (whose lstat has no nanoseconds, as in the
      // states it writes) take another.
      let it: Item;
      if (fast === undefined && EXACT_LSTAT && kind !== "c" && kind !== "b") {
        it = makeItemAt(name, rel, kind, at!, this.#rootDevText);
      } else {
        const st = lstatChild(abs, name, this.#c);
        if (!st) continue;
        if ((Number(st.mode) & 0o170000) !== (mode & 0o170000)) {
          kind = entryKind(Number(st.mode), abs, this.#isRoot, this.#c); // replaced in between
          if (kind === undefined || (kind === "d" && exclude?.(rel, name, true))) continue;
        }
        it = makeItem(name, rel, kind, st, this.#rootDev);
      }
      byName.push(it);
      if (kind === "d") {
        dirs.push(it);
        continue;
      }
      if (rec === undefined) rec = reader.match(dir.parts, name, false, dir.relPrefix); // was a directory at first
      while (rec === MORE) {
        await reader.more();
        rec = reader.match(dir.parts, name, false, dir.relPrefix);
      }
      it.changed = !this.#unchanged(rec, it);
      endRun();
      files.push(it);
      leading = false;
      if (it.linkKey !== undefined) linked.push(it);
    }
    // Not in a finally block: JSC keeps ~8 MiB more alive across this loop's awaits then (a folder of
    // 200 000 files). A failure ends the run, whose #fail() closes the directory.
    at?.closeDir();
    endRun();
    this.#keepLinks(linked);
    return { byName, files, dirs, noXattrs };
  }

  /** The ChildStat with directory `dir` open in it; undefined where statx() cannot be used or it cannot be opened. */
  #openChildStat(dir: Frame): ChildStat | undefined {
    // Loaded on first use: a single-file source lists no directory (and loading costs a few ms under Bun).
    if (this.#childStat === undefined) this.#childStat = ChildStat.open() ?? null;
    const at = this.#childStat ?? undefined;
    if (at?.openDir(dir.absPrefix) === true) return at;
    at?.closeDir();
    return undefined;
  }

  /** The ChildStat reading `listing`; undefined where statx() cannot be used here. */
  #listingChildStat(listing: Listing): ChildStat | undefined {
    if (this.#childStat === undefined) this.#childStat = ChildStat.forListings() ?? null;
    return this.#childStat?.useListing(listing);
  }

  /**
   * The next state's record of a non-directory found unchanged by a number lstat (see "Change
   * detection"): the parent's record, with this device; undefined when it may have changed.
   */
  #sameRecord(rec: ParentRecord | undefined, rel: string, kind: Kind, st: fs.Stats): string | undefined {
    if (rec === undefined || rec.kind !== kind) return undefined;
    const [ino, size, mtime, ctime] = rec.fields as [
      string,
      string,
      string,
      string,
    ];
    if (!Number.isSafeInteger(st.ino) || Number(ino) !== st.ino || Number(size) !== st.size) return undefined;
    if (Math.abs(Number(mtime) / 1e6 - st.mtimeMs) >= SAME_TIME_MS) return undefined;
    if (Math.abs(Number(ctime) / 1e6 - st.ctimeMs) >= SAME_TIME_MS) return undefined;
    if (!decimalLess(ctime, this.#racyLimit)) return undefined;
    return this.#withDevice(rec, rel, kind, String(st.dev));
  }

  /**
   * {@linkcode #sameRecord} for a first look through statx() (`at`), whose values are exact: the parent's
   * record when inode, size, mtime and ctime are the same to the nanosecond (and the record passes the
   * ctime rule), with this device; undefined when it may have changed.
   */
  #sameRecordExact(
    rec: ParentRecord | undefined,
    rel: string,
    kind: Kind,
    at: ChildStat,
  ): string | undefined {
    if (rec === undefined || rec.kind !== kind || !at.sameTail(rec.line, rec.tailAt)) return undefined;
    const line = rec.line;
    if (!decimalLessAt(line, line.lastIndexOf('","') + 3, line.length - 2, this.#racyLimit)) return undefined;
    return this.#withDevice(rec, rel, kind, at.dev);
  }

  /** The parent's record `rec` of an unchanged entry, with device `dev` (this run's). */
  #withDevice(rec: ParentRecord, rel: string, kind: Kind, dev: string): string {
    const line = rec.line;
    // The device field ends where the tail starts: `<kind>","<dev>","<ino>…`; fields hold no quotes.
    const at = rec.tailAt - 2 - dev.length;
    if (
      line.startsWith(dev, at) && line.startsWith('","', at - 3) && line.startsWith('",', at + dev.length)
    ) {
      return line;
    }
    return `[${JSON.stringify(rel)},"${kind}","${dev}",${rec.tail}`;
  }

  /** lstat()s the children of a directory (names sorted), leaving out excluded and unsupported ones. */
  #list(names: string[], dir: Frame): Pack {
    relieveMemory();
    const n = names.length;
    const pack: Pack = {
      names: [],
      flags: new Uint8Array(n),
      nums: new Float64Array(n * 5),
      ids: new BigUint64Array(n * 3),
      times: new BigInt64Array(n * 2),
      exact: undefined,
      order: new Uint32Array(n),
      count: 0,
      next: 0,
    };
    const exclude = this.#exclude;
    let dirs = 0;
    for (const name of names) {
      const rel = dir.relPrefix + name;
      if (exclude?.(rel, name, false)) continue;
      const abs = dir.absPrefix + name;
      const st = lstatChild(abs, name, this.#c);
      if (!st) continue;
      const kind = entryKind(Number(st.mode), abs, this.#isRoot, this.#c);
      if (kind === undefined || (kind === "d" && exclude?.(rel, name, true))) continue;
      const i = pack.count++;
      pack.names.push(name);
      pack.flags[i] = KIND_CODES.indexOf(kind) | (kind === "f" && mayHaveHoles(st) ? HOLES_FLAG : 0);
      const nums = pack.nums;
      nums[i * 5] = Number(st.mode);
      nums[i * 5 + 1] = Number(st.uid);
      nums[i * 5 + 2] = Number(st.gid);
      nums[i * 5 + 3] = Number(st.nlink);
      nums[i * 5 + 4] = Number(st.size);
      const ids = pack.ids;
      ids[i * 3] = st.dev;
      ids[i * 3 + 1] = st.ino;
      ids[i * 3 + 2] = kind === "c" || kind === "b" ? st.rdev : 0n;
      pack.times[i * 2] = st.mtimeNs;
      pack.times[i * 2 + 1] = st.ctimeNs;
      if (
        pack.times[i * 2] !== st.mtimeNs || pack.times[i * 2 + 1] !== st.ctimeNs || ids[i * 3] !== st.dev ||
        ids[i * 3 + 1] !== st.ino
      ) (pack.exact ??= new Map()).set(i, st);
      if (kind === "d") dirs++;
      this.#tick();
    }
    // Walk order: non-directories, then directories, each by name.
    let f = 0;
    let d = pack.count - dirs;
    for (let i = 0; i < pack.count; i++) pack.order[(pack.flags[i]! & 7) === 1 ? d++ : f++] = i;
    return pack;
  }

  /**
   * Called per entry listed: every 1024 entries a look at the memory (a folder of 200 000 files is one
   * long loop), every 4096 a young collection of their lstat results and path strings (see base/memory.ts).
   */
  #tick(): void {
    const n = ++this.#listed;
    if ((n & 1023) !== 0) return;
    relieveMemory();
    if ((n & 4095) === 0) collectYoung();
  }

  /** The Item of child `i` of a pack (see #list()). */
  #unpack(frame: Frame, pack: Pack, i: number): Item {
    const kind = KIND_CODES[pack.flags[i]! & 7]!;
    const name = pack.names[i]!;
    const exact = pack.exact?.get(i);
    if (exact) return makeItem(name, frame.relPrefix + name, kind, exact, this.#rootDev);
    const nums = pack.nums;
    const dev = pack.ids[i * 3]!;
    const ino = String(pack.ids[i * 3 + 1]);
    const size = nums[i * 5 + 4]!;
    const nlink = nums[i * 5 + 3]!;
    const line = stateRecord(
      frame.relPrefix + name,
      kind,
      String(dev),
      ino,
      String(size),
      String(pack.times[i * 2]),
      String(pack.times[i * 2 + 1]),
    );
    return {
      name,
      kind,
      changed: true,
      mount: kind === "d" && dev !== this.#rootDev,
      mode: nums[i * 5]! & 0o7777,
      uid: nums[i * 5 + 1]!,
      gid: nums[i * 5 + 2]!,
      nlink,
      size,
      rdev: pack.ids[i * 3 + 2]!,
      linkKey: nlink > 1 && kind !== "d" ? `${dev}:${ino}` : undefined,
      holes: (pack.flags[i]! & HOLES_FLAG) !== 0,
      line,
      tailAt: tailStart(line),
    };
  }

  /** Sets `changed` of non-directory children from the parent's state; a promise when it must wait. */
  #merge(parts: string[], files: Item[], from: number): Promise<void> | undefined {
    const reader = this.#reader!;
    for (let i = from; i < files.length; i++) {
      const it = files[i]!;
      const rec = reader.match(parts, it.name, false);
      if (rec === MORE) return reader.more().then(() => this.#merge(parts, files, i));
      it.changed = !this.#unchanged(rec, it);
    }
    return undefined;
  }

  /**
   * Keeps hard links whole across levels. An unchanged name of an inode whose first name in this walk is
   * in this archive (a renamed or new name, say) must be written too, as a link to it: left out, the
   * restore would keep it as a separate file. Its directory's dumpdir is not written yet, so it can
   * still change to `Y`. The opposite order is handled in #prepare(): a changed name whose first name
   * is unchanged becomes a link to that name.
   */
  #keepLinks(files: Item[]): void {
    let local: Map<string, boolean> | undefined;
    for (const it of files) {
      const key = it.linkKey;
      if (key === undefined) continue;
      const known = this.#links.get(key);
      const firstWritten = known ? known.written : local?.get(key);
      if (!it.changed && firstWritten === true) it.changed = true;
      if (firstWritten === undefined) (local ??= new Map()).set(key, it.changed);
    }
  }

  #unchanged(rec: ParentRecord | undefined, it: Item): boolean {
    if (rec === undefined || rec.kind !== it.kind) return false;
    // Same inode, size, mtime and ctime: the parent's tail equals ours (our line ends with "\n").
    const tail = rec.tail;
    if (it.line.length - 1 - it.tailAt !== tail.length || !it.line.startsWith(tail, it.tailAt)) return false;
    const ctime = tail.slice(tail.lastIndexOf('","') + 3, -2);
    return decimalLess(ctime, this.#racyLimit);
  }

  /** Prepares a changed non-directory: opens the file or reads the link now, so failures leave no header. */
  #prepare(frame: Frame, item: Item): Entry | undefined {
    const abs = frame.absPrefix + item.name;
    const member = frame.memberPrefix + item.name;
    const entry: Entry = {
      abs,
      member,
      paxName: `${frame.memberPrefix}PaxHeaders/${item.name}`,
      item,
      typeflag: TYPE.file,
      size: 0,
      linkname: "",
      dumpdir: undefined,
      xattrs: undefined,
      fd: -1,
      frame: undefined,
    };
    const linkKey = item.linkKey;
    if (linkKey !== undefined) {
      const first = this.#links.get(linkKey);
      if (first !== undefined) {
        // Also when the first name is unchanged (not in this archive): it exists where this level is
        // restored, since the levels before it are restored first.
        entry.typeflag = TYPE.hardlink;
        entry.linkname = first.member;
        return entry;
      }
    }
    switch (item.kind) {
      case "f":
        entry.size = item.size;
        if (entry.size > 0) {
          try {
            entry.fd = fs.openSync(abs, OPEN_FLAGS);
          } catch (err) {
            this.#c.warn(
              abs,
              (err as { code?: string }).code === "ENOENT"
                ? "vanished before it was read; left out"
                : `cannot open: ${errnoText(err)}; left out`,
            );
            if (frame.top) {
              throw new FrostError(`Cannot back up "${this.#source}": ${errnoText(err)}`, { cause: err });
            }
            return undefined;
          }
          if (item.holes) this.#findHoles(entry);
        }
        break;
      case "l":
        entry.typeflag = TYPE.symlink;
        try {
          entry.linkname = fs.readlinkSync(abs);
        } catch (err) {
          this.#c.warn(abs, `cannot read link: ${errnoText(err)}; left out`);
          return undefined;
        }
        break;
      case "p":
        entry.typeflag = TYPE.fifo;
        break;
      case "c":
      case "b":
        entry.typeflag = item.kind === "c" ? TYPE.char : TYPE.block;
        break;
    }
    if (linkKey !== undefined) this.#links.set(linkKey, { member, written: true });
    entry.xattrs = this.#xattrs(abs, entry.fd);
    return entry;
  }

  /**
   * Makes a file with holes a sparse entry (its size then the stored size). The holes are found now, so a
   * file that shrank since it was listed is noticed here: what it lost is stored as a hole.
   */
  #findHoles(entry: Entry): void {
    const size = entry.size;
    entry.sparse = sparseLayout(entry.fd, size);
    if (!entry.sparse) return;
    entry.size = entry.sparse.stored;
    let now = size;
    try {
      now = fs.fstatSync(entry.fd).size;
    } catch {
      // The read that follows reports it.
    }
    if (now < size) {
      this.#c.warn(
        entry.abs,
        `file shrank by ${size - now} bytes while read; padded with zeros to ${size} bytes`,
      );
    }
  }

  /** The extended attributes of `abs`, when they are stored (`options.xattrs`, default true). */
  #xattrs(abs: string, fd?: number): Xattr[] | undefined {
    if (this.#options.xattrs === false) return undefined;
    const list = readXattrs(abs, (message) => this.#c.warn(abs, message), fd);
    if (!list?.some(([name]) => utf8Length(name) !== name.length)) return list;
    return list.filter(([name]) => {
      if (utf8Length(name) === name.length) return true;
      this.#c.warn(abs, `extended attribute name "${name}" is not ASCII; stored without it`);
      return false;
    });
  }

  /**
   * The pax records of an entry's xattrs, as GNU tar's `--xattrs --acls` writes them: its ACLs as text
   * (`SCHILY.acl.access`, `SCHILY.acl.default`), then every xattr raw (`SCHILY.xattr.<name>`, the ACLs
   * included), so that `tar --xattrs --acls -x` restores them.
   */
  #xattrRecords(xattrs: Xattr[], records: [string, string | Uint8Array, number][]): void {
    for (const [which, key] of [[ACL_ACCESS, "SCHILY.acl.access"], [ACL_DEFAULT, "SCHILY.acl.default"]]) {
      const value = xattrs.find((x) => x[0] === which)?.[1];
      const text = value && aclToText(value, this.#names);
      if (text) records.push([key!, text, utf8Length(text)]);
    }
    for (const [name, value] of xattrs) {
      const key = `SCHILY.xattr.${encodeXattrKeyword(name)}`;
      records.push([key, value, value.length]);
    }
  }

  /** Writes an entry's pax and ustar headers if they fit in the chunk; false when the chunk is full. */
  #commit(e: Entry): boolean {
    const item = e.item;
    const h = this.#header;
    h.mode = item.mode;
    h.uid = item.uid;
    h.gid = item.gid;
    h.uname = this.#names.user(h.uid);
    h.gname = this.#names.group(h.gid);

    // pax records: [key, value, value bytes]; mtime always, the rest when ustar cannot hold them.
    const records: [string, string | Uint8Array, number][] = [];
    if (e.sparse) records.push(...sparseRecords(e.member, item.size));
    else if (e.member.length > 33) {
      const n = utf8Length(e.member);
      if (n > 100) records.push(["path", e.member, n]);
    }
    if (e.linkname.length > 33) {
      const n = utf8Length(e.linkname);
      if (n > 100) records.push(["linkpath", e.linkname, n]);
    }
    if (!e.sparse && (hasEscape(e.member) || hasEscape(e.linkname))) {
      binaryNames(records, e.member, e.linkname);
    }
    if (e.size > MAX_OCTAL_11) {
      const v = String(e.size);
      records.push(["size", v, v.length]);
    }
    if (h.uid > MAX_OCTAL_7) records.push(["uid", String(h.uid), String(h.uid).length]);
    if (h.gid > MAX_OCTAL_7) records.push(["gid", String(h.gid), String(h.gid).length]);
    // uname/gname need their terminating NUL within the 32-byte field.
    if (h.uname.length > 10) {
      const n = utf8Length(h.uname);
      if (n > 31) records.push(["uname", h.uname, n]);
    }
    if (h.gname.length > 10) {
      const n = utf8Length(h.gname);
      if (n > 31) records.push(["gname", h.gname, n]);
    }
    const mtimeNs = tailFields(item.line, item.tailAt)[2]!;
    const mtime = paxTime(mtimeNs);
    records.push(["mtime", mtime, mtime.length]);
    if (e.xattrs) this.#xattrRecords(e.xattrs, records);
    if (e.dumpdir) records.push(["GNU.dumpdir", e.dumpdir, e.dumpdir.length]);
    let paxSize = 0;
    for (const r of records) paxSize += paxRecordLength(r[0].length, r[2]);

    const need = BLOCK + roundUp(paxSize) + BLOCK;
    if (this.#off + need > this.#chunk.length) {
      if (this.#off > 0) return false;
      this.#chunk = newChunk(roundUp(need));
    }
    const buf = this.#chunk;
    buf.fill(0, this.#off, this.#off + need); // a reused chunk holds earlier bytes; headers need zeros
    const seconds = wholeSeconds(mtimeNs);

    // The pax header's own ustar header, as GNU tar writes it.
    h.name = e.paxName;
    h.size = paxSize;
    h.mtime = seconds;
    h.typeflag = TYPE.pax;
    h.linkname = "";
    h.devmajor = 0;
    h.devminor = 0;
    const { mode, uid, gid, uname, gname } = h;
    h.mode = 0o644;
    h.uid = 0;
    h.gid = 0;
    h.uname = "";
    h.gname = "";
    writeHeader(buf, this.#off, h);
    let p = this.#off + BLOCK;
    for (const r of records) p += writePaxRecord(buf, p, r[0], r[1], r[2]);

    h.name = e.sparse ? sparseHeaderName(e.member) : e.member;
    h.mode = mode;
    h.uid = uid;
    h.gid = gid;
    h.uname = uname;
    h.gname = gname;
    h.size = e.size;
    h.typeflag = e.typeflag;
    h.linkname = e.linkname;
    if (e.typeflag === TYPE.char || e.typeflag === TYPE.block) {
      h.devmajor = devMajor(item.rdev);
      h.devminor = devMinor(item.rdev);
    }
    writeHeader(buf, this.#off + BLOCK + roundUp(paxSize), h);
    this.#off += need;

    this.#c.stats.files++;
    if (!e.recorded) this.#record(item.line);
    if (e.frame) this.#stack.push(e.frame);
    if (e.typeflag === TYPE.file && item.size >= STORED_MIN && item.nlink === 1) {
      this.#stored.push(JSON.parse(item.line)[0] as string);
    }
    if (e.size > 0 && e.typeflag === TYPE.file) {
      this.#fd = e.fd;
      this.#fileAbs = e.abs;
      this.#fileSize = e.size;
      this.#filePos = 0;
      this.#remaining = e.size;
      if (e.sparse) this.#sparse = new SparseSource(e.sparse);
    }
    return true;
  }

  /** Copies the current file's data into the chunk; false when the chunk is full. */
  #copy(): boolean {
    const buf = this.#chunk;
    while (this.#remaining > 0) {
      const space = buf.length - this.#off;
      if (space === 0) return false;
      if (this.#fd < 0) {
        // The file failed or shrank: padded with zeros.
        const n = this.#remaining < space ? this.#remaining : space;
        buf.fill(0, this.#off, this.#off + n);
        this.#off += n;
        this.#remaining -= n;
        continue;
      }
      // Ask for one byte more than the file should have left, when it fits, to notice growth for free.
      const want = this.#remaining < space ? this.#remaining + 1 : space;
      let n: number;
      try {
        n = this.#sparse
          ? this.#sparse.read(this.#fd, buf, this.#off, Math.min(this.#remaining, space))
          : fs.readSync(this.#fd, buf, this.#off, want, this.#filePos);
      } catch (err) {
        this.#closeFile();
        this.#c.warn(this.#fileAbs, `cannot read: ${errnoText(err)}; padded with zeros`);
        continue;
      }
      if (n === 0) {
        const sparse = this.#sparse !== undefined;
        this.#closeFile();
        this.#c.warn(
          this.#fileAbs,
          sparse
            ? "file shrank while read; the rest of its data regions is stored as zeros"
            : `file shrank by ${this.#remaining} bytes while read; padded with zeros to ${this.#fileSize} bytes`,
        );
        continue;
      }
      if (n > this.#remaining) {
        buf[this.#off + this.#remaining] = 0;
        n = this.#remaining;
        this.#c.warn(this.#fileAbs, `file grew while read; cut at ${this.#fileSize} bytes`);
      }
      this.#off += n;
      this.#filePos += n;
      this.#remaining -= n;
      if (!this.#sparse?.inMap) this.#c.stats.bytes += n; // file bytes read, not the sparse map
    }
    this.#closeFile();
    const end = roundUp(this.#off); // chunk sizes are block multiples, so padding always fits
    buf.fill(0, this.#off, end);
    this.#off = end;
    return true;
  }

  #closeFile(): void {
    this.#fd = closeRead(this.#fd);
    this.#sparse = undefined;
  }

  /** Appends an entry's state record. */
  #record(line: string): void {
    this.#stateText += line;
    if (this.#stateText.length >= STATE_BATCH) this.#flushState();
  }

  #flushState(): void {
    if (this.#stateText === "") return;
    if (!this.#stateCancelled) this.#state.enqueue(this.#encoder.encode(this.#stateText));
    this.#stateText = "";
  }

  /**
   * Enqueues the filled part of the chunk: the chunk itself when mostly full, else a copy, so that
   * small outputs (an unchanged tree yields little) do not each pin a whole chunk in the consumer; the
   * chunk is then reused.
   */
  #emit(): void {
    const chunk = this.#chunk;
    if (this.#off >= chunk.length / 4) {
      this.#data.enqueue(chunk.subarray(0, this.#off));
      this.#chunk = NO_CHUNK;
    } else if (this.#off > 0) {
      this.#data.enqueue(chunk.slice(0, this.#off));
    }
    this.#off = 0;
  }

  /** Ends the archive with two zero blocks and closes both streams. */
  async #finish(): Promise<void> {
    if (this.#off + 2 * BLOCK > this.#chunk.length) {
      this.#emit();
      if (this.#chunk.length < 2 * BLOCK) this.#chunk = newChunk(2 * BLOCK);
    }
    this.#chunk.fill(0, this.#off, this.#off + 2 * BLOCK);
    this.#off += 2 * BLOCK;
    this.#emit();
    this.#record(stateTrailer(this.#stored));
    this.#flushState();
    this.#ended = true;
    this.#data.close();
    if (!this.#stateCancelled) this.#state.close();
    this.#c.succeed();
    this.#ahead?.stop();
    await this.#reader?.close();
  }

  #fail(err: unknown): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#closeFile();
    if (this.#pending?.fd !== undefined && this.#pending.fd >= 0) {
      try {
        fs.closeSync(this.#pending.fd);
      } catch {
        // Failing already.
      }
    }
    this.#pending = undefined;
    this.#childStat?.closeDir();
    this.#ahead?.stop();
    this.#data.error(err);
    if (!this.#stateCancelled) this.#state.error(err);
    void this.#reader?.close();
    this.#c.fail(err);
  }
}

/**
 * Adds what GNU tar (1.34) writes for names that are not valid UTF-8: `path` (and `linkpath`) records
 * with the raw bytes. Not `hdrcharset=BINARY`, which POSIX defines for this but GNU tar 1.34 does not
 * know ("Ignoring unknown extended header keyword" for every member); the reader accepts it.
 */
function binaryNames(
  records: [string, string | Uint8Array, number][],
  member: string,
  linkname: string,
): void {
  for (const [key, value] of [["path", member], ["linkpath", linkname]] as const) {
    if (hasEscape(value) && !records.some((r) => r[0] === key)) records.push([key, value, utf8Length(value)]);
  }
}

/** The pax records of a member in GNU's sparse format 1.0, as GNU tar writes them: [key, value, bytes]. */
function sparseRecords(member: string, realSize: number): [string, string, number][] {
  const size = String(realSize);
  return [
    ["GNU.sparse.major", "1", 1],
    ["GNU.sparse.minor", "0", 1],
    ["GNU.sparse.name", member, utf8Length(member)],
    ["GNU.sparse.realsize", size, size.length],
  ];
}

/** The GNU dumpdir of a directory: children by name, `Y`/`N`/`D` flag + name + NUL, then a NUL. */
function dumpdir(byName: readonly (Item | string)[] | Pack): Uint8Array {
  if (!Array.isArray(byName)) return packDumpdir(byName as Pack);
  let size = 1;
  for (const it of byName) size += utf8Length(typeof it === "string" ? it : it.name) + 2;
  const out = new Uint8Array(size);
  let p = 0;
  for (const it of byName) {
    if (typeof it === "string") {
      out[p] = 0x4e; // 'N': an unchanged file
      p += 1 + writeString(out, p + 1, size, it) + 1;
      continue;
    }
    out[p] = it.kind === "d" ? 0x44 : it.changed ? 0x59 : 0x4e; // 'D', 'Y', 'N'
    p += 1 + writeString(out, p + 1, size, it.name) + 1;
  }
  return out;
}

/** The dumpdir of a level 0 directory: its children are all in the archive (`Y`) or directories (`D`). */
function packDumpdir(pack: Pack): Uint8Array {
  let size = 1;
  for (let i = 0; i < pack.count; i++) size += utf8Length(pack.names[i]!) + 2;
  const out = new Uint8Array(size);
  let p = 0;
  for (let i = 0; i < pack.count; i++) {
    out[p] = (pack.flags[i]! & 7) === 1 ? 0x44 : 0x59; // 'D', 'Y'
    p += 1 + writeString(out, p + 1, size, pack.names[i]!) + 1;
  }
  return out;
}

/**
 * Backs up `source` (a directory, or a single regular file) as an uncompressed GNU-tar-compatible
 * incremental archive on `stream`, and this backup's engine state on `state` (format in the module
 * documentation). With `options.previous` (the parent's state) only what changed is stored.
 * Throws a FrostError right away when the source is missing or unreadable.
 *
 * @example
 * ```ts
 * const run = tarBackup("/etc");
 * const [archive, state] = await Promise.all([
 *   new Response(run.stream).arrayBuffer(),
 *   new Response(run.state).text(),
 * ]);
 * const stats = await run.done;
 * ```
 */
export function tarBackup(source: string, options: BackupOptions = {}): BackupRun {
  const stat = statSource(source);
  requireXattrs(source, options.xattrs);
  return new TarBackup(source, stat, options).run;
}
