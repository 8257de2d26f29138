/**
 * The rsync engine's backup half: walks a directory (or one regular file) in the tar engine's order and
 * writes the rsync data stream and engine state of docs/RSYNC.md. Level 0 stores every file whole; level N
 * skips unchanged files without reading them, stores new files whole, and sends changed files as
 * references to blocks of the parent's version plus literal bytes, found by a rolling search against the
 * parent's block signatures (see _rsync_delta.ts). Deleted entries are recorded.
 *
 * Walk, change detection, exclusion, mount points, hard links and warnings follow the tar engine
 * (tar_backup.ts); only the stream and the state differ. All file system calls are synchronous: an
 * awaited promise per call costs more than the call for small files.
 * @module
 */
import fs from "node:fs";
import path from "node:path";
import process from "node:process";
import { setImmediate } from "node:timers";
import type { BackupOptions, BackupRun, BackupStats } from "./engine.ts";
import { AbortedError, FrostError, messageOf } from "../errors.ts";
import { sortNames } from "./_tar_state.ts";
import { utf8Length } from "./_tar_header.ts";
import { blockSizeFor, decodeSignatures, encodeSignatures, type OpSink, Scanner } from "./_rsync_delta.ts";
import {
  ByteOut,
  DELETED_DIR,
  DELETED_OTHER,
  FLAG_REREAD,
  FLAG_SIGNATURES,
  KIND,
  META_BYTES,
  MORE,
  type ParentRecord,
  STATE_MAGIC,
  StateReader,
  STREAM_MAGIC,
  TAG,
} from "./_rsync_format.ts";
import { code, errnoText, excludeMatcher, readIdNames } from "./_rsync_fs.ts";

/** Data chunk size: big enough that per-chunk costs vanish, small enough to keep memory low. */
const CHUNK_SIZE = 2 << 20;
/** Data chunks prepared ahead of the consumer, so reading overlaps compression. */
const READ_AHEAD = 2;
/** The state is enqueued in pieces of about this size. */
const STATE_CHUNK = 64 << 10;
/** Longest stretch of work without giving the event loop a turn (abort, progress, state consumer). */
const SLICE_MS = 50;
const PROGRESS_MS = 100;

const S_IFMT = 0o170000;
const OPEN_FLAGS = fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0); // never block on a swapped-in fifo

function kindOf(mode: number): number | "socket" | undefined {
  switch (mode & S_IFMT) {
    case 0o100000:
      return KIND.file;
    case 0o040000:
      return KIND.dir;
    case 0o120000:
      return KIND.symlink;
    case 0o010000:
      return KIND.fifo;
    case 0o020000:
      return KIND.char;
    case 0o060000:
      return KIND.block;
    case 0o140000:
      return "socket";
    default:
      return undefined;
  }
}

/**
 * One child of a directory being walked. Its dev, ino, size, mtime and ctime live in its frame's `meta`
 * (40 bytes per child, as the state stores them), not in a Stats object per entry.
 */
interface Item {
  name: string;
  kind: number;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  rdev: bigint;
  /** `dev:ino` of non-directories with several links. */
  linkKey: string | undefined;
  /** A directory on another file system than the source. */
  mount: boolean;
  /** Index of its metadata in the frame's `meta`. */
  at: number;
}

/** A directory being walked: its children in walk order (non-directories first) and where the walk is. */
interface Frame {
  /** Path components of the directory below the source (empty for the root). */
  parts: string[];
  relPrefix: string;
  absPrefix: string;
  items: Item[];
  meta: Uint8Array;
  index: number;
  /** The frame holding only the source itself. */
  top: boolean;
}

function newFrame(parts: string[], relPrefix: string, absPrefix: string, stats: fs.BigIntStats[]): Frame {
  const meta = new Uint8Array(META_BYTES * stats.length);
  const dv = new DataView(meta.buffer);
  stats.forEach((st, i) => {
    const o = i * META_BYTES;
    dv.setBigUint64(o, st.dev, true);
    dv.setBigUint64(o + 8, st.ino, true);
    dv.setBigUint64(o + 16, st.size, true);
    dv.setBigInt64(o + 24, st.mtimeNs, true);
    dv.setBigInt64(o + 32, st.ctimeNs, true);
  });
  return { parts, relPrefix, absPrefix, items: [], meta, index: 0, top: false };
}

function makeItem(name: string, kind: number, st: fs.BigIntStats, rootDev: bigint, at: number): Item {
  const nlink = Number(st.nlink);
  return {
    name,
    kind,
    mode: Number(st.mode) & 0o7777,
    uid: Number(st.uid),
    gid: Number(st.gid),
    size: Number(st.size),
    rdev: kind === KIND.char || kind === KIND.block ? st.rdev : 0n,
    linkKey: nlink > 1 && kind !== KIND.dir ? `${st.dev}:${st.ino}` : undefined,
    mount: kind === KIND.dir && st.dev !== rootDev,
    at,
  };
}

/** `major`/`minor` of a Linux dev_t. */
function devMajor(rdev: bigint): number {
  return Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
}
function devMinor(rdev: bigint): number {
  return Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
}

const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/** One backup run: the walk, the stream writer and the state writer. */
class RsyncBackup {
  readonly run: BackupRun;

  #source: string;
  #options: BackupOptions;
  #rootStat: fs.BigIntStats;
  #isRoot = process.getuid?.() === 0;
  #exclude: ((rel: string, name: string, isDir: boolean) => boolean) | undefined;
  #stats: BackupStats = { files: 0, bytes: 0, scanned: 0, warnings: 0 };
  #started: bigint;

  #data!: ReadableStreamDefaultController<Uint8Array>;
  #state!: ReadableStreamDefaultController<Uint8Array>;
  #stateCancelled = false;
  #out: ByteOut;
  #stateOut: ByteOut;
  #wake: (() => void) | undefined;
  #running = false;
  #ended = false;
  #resolve!: (stats: BackupStats) => void;
  #reject!: (err: unknown) => void;
  #onAbort: (() => void) | undefined;

  #reader: StateReader | undefined;
  /** Parent records with a ctime before this (ns) can be trusted; see tar_backup.ts "Change detection". */
  #racyLimit = 0n;
  #onMissing = (rec: ParentRecord) => this.#deleted(rec);

  /** First name of each inode with several links (`dev:ino`) and whether it is in this stream. */
  #links = new Map<string, { rel: string; written: boolean }>();
  #users: Map<number, string> | undefined;
  #groups: Map<number, string> | undefined;
  #scanBuffer: Uint8Array | undefined;
  #fd = -1;
  #lastProgress = 0;
  #lastYield = performance.now();

  constructor(source: string, rootStat: fs.BigIntStats, options: BackupOptions) {
    this.#source = source;
    this.#options = options;
    this.#rootStat = rootStat;
    this.#exclude = options.exclude ? excludeMatcher(options.exclude) : undefined;
    this.#started = BigInt(Date.now()) * 1_000_000n;
    if (options.previous) this.#reader = new StateReader(options.previous);
    this.#out = new ByteOut((bytes) => this.#data.enqueue(bytes), CHUNK_SIZE);
    this.#stateOut = new ByteOut((bytes) => {
      if (!this.#stateCancelled) this.#state.enqueue(bytes);
    }, STATE_CHUNK);

    const done = new Promise<BackupStats>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    // Callers that only read the streams still see the failure there; this keeps it from being unhandled.
    done.catch(() => {});

    const state = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#state = controller;
      },
      cancel: () => {
        this.#stateCancelled = true;
      },
    });
    const stream = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#data = controller;
      },
      pull: () => {
        if (!this.#running) {
          this.#running = true;
          void this.#main();
        }
        const wake = this.#wake;
        this.#wake = undefined;
        wake?.();
      },
      cancel: (reason) => {
        this.#fail(new AbortedError(`Backup of "${source}" cancelled`, { cause: reason }));
      },
    }, new CountQueuingStrategy({ highWaterMark: READ_AHEAD }));
    this.run = { stream, state, done };

    const signal = options.signal;
    if (signal) {
      this.#onAbort = () => this.#fail(this.#aborted());
      if (signal.aborted) queueMicrotask(this.#onAbort);
      else signal.addEventListener("abort", this.#onAbort, { once: true });
    }
  }

  async #main(): Promise<void> {
    try {
      this.#out.bytes(STREAM_MAGIC);
      this.#stateOut.bytes(STATE_MAGIC);
      this.#stateOut.i64(this.#started);
      if (this.#reader) {
        await this.#reader.open();
        const limit = this.#reader.started - 100_000_000n;
        this.#racyLimit = (limit / 1_000_000_000n) * 1_000_000_000n;
      }
      await this.#walk();
      if (this.#reader) {
        while (this.#reader.rest(this.#onMissing) === MORE) await this.#reader.more();
      }
      if (this.#ended) return;
      this.#out.u8(TAG.end);
      this.#out.flush();
      this.#stateOut.flush();
      this.#ended = true;
      this.#data.close();
      if (!this.#stateCancelled) this.#state.close();
      this.#detach();
      this.#progress(performance.now());
      this.#resolve({ ...this.#stats });
      await this.#reader?.close();
    } catch (err) {
      this.#fail(
        err instanceof FrostError || err instanceof AbortedError
          ? err
          : new FrostError(`Cannot back up "${this.#source}": ${messageOf(err)}`, { cause: err }),
      );
    }
  }

  /** Waits until the data stream wants more, when its queue is full. */
  async #drain(): Promise<void> {
    while (!this.#ended && (this.#data.desiredSize ?? 1) <= 0) {
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
    if (this.#ended) throw this.#aborted();
  }

  /** The parent's record for an entry, reading more of the parent's state as needed. */
  async #match(parts: readonly string[], name: string, isDir: boolean): Promise<ParentRecord | undefined> {
    const reader = this.#reader;
    if (!reader) return undefined;
    for (;;) {
      const rec = reader.match(parts, name, isDir, this.#onMissing);
      if (rec !== MORE) return rec;
      await reader.more();
    }
  }

  async #walk(): Promise<void> {
    const st = this.#rootStat;
    const rootDev = st.dev;
    const isDir = st.isDirectory();
    const name = isDir ? "." : path.basename(this.#source);
    const dir = isDir ? this.#source : path.dirname(this.#source);
    const top = newFrame([], "", dir.endsWith("/") ? dir : `${dir}/`, [st]);
    top.top = true;
    top.items = [makeItem(name, isDir ? KIND.dir : KIND.file, st, rootDev, 0)];
    const stack: Frame[] = [top];
    const signal = this.#options.signal;
    let count = 0;
    while (!this.#ended) {
      const frame = stack[stack.length - 1];
      if (!frame) return;
      const item = frame.items[frame.index++];
      if (!item) {
        stack.pop();
        continue;
      }
      this.#stats.scanned++;
      if (item.kind === KIND.dir) {
        const child = await this.#dir(frame, item);
        if (child) stack.push(child);
      } else {
        // Synchronous unless the parent's state must be read further or a file's data is written.
        let rec = this.#reader
          ? this.#reader.match(frame.parts, item.name, false, this.#onMissing)
          : undefined;
        while (rec === MORE) {
          await this.#reader!.more();
          rec = this.#reader!.match(frame.parts, item.name, false, this.#onMissing);
        }
        const writing = this.#nonDir(frame, item, rec);
        if (writing) await writing;
      }
      if ((++count & 63) === 0) {
        if (signal?.aborted) throw this.#aborted();
        const now = performance.now();
        if (now - this.#lastProgress >= PROGRESS_MS) this.#progress(now);
        if (now - this.#lastYield >= SLICE_MS) {
          await yieldToEventLoop();
          this.#lastYield = performance.now();
        }
      }
      if ((this.#data.desiredSize ?? 1) <= 0) await this.#drain();
    }
  }

  /** Writes a directory's entry and returns the frame of its children (undefined when left out). */
  async #dir(frame: Frame, item: Item): Promise<Frame | undefined> {
    const isRoot = frame.top;
    const rel = isRoot ? "." : frame.relPrefix + item.name;
    const abs = isRoot ? this.#source : frame.absPrefix + item.name;
    const parts = isRoot ? [] : [...frame.parts, item.name];
    const rec = isRoot ? await this.#matchRoot() : await this.#match(frame.parts, item.name, true);
    let names: string[] = [];
    if (!item.mount || this.#options.crossFileSystems) {
      try {
        names = fs.readdirSync(abs);
      } catch (err) {
        if (isRoot) {
          throw new FrostError(`Cannot back up "${this.#source}": ${errnoText(err)}`, { cause: err });
        }
        this.#warn(abs, `cannot list directory: ${errnoText(err)}; left out`);
        if (rec) this.#deleted(rec);
        return undefined;
      }
    }
    const child = this.#list(
      parts,
      isRoot ? "" : `${rel}/`,
      abs.endsWith("/") ? abs : `${abs}/`,
      sortNames(names),
    );
    this.#entry(KIND.dir, rel, item, frame);
    this.#stateRecord(KIND.dir, 0, rel, frame.meta, item.at, undefined);
    this.#stats.files++;
    return child;
  }

  /** The parent's record of the root directory (always the first record). */
  async #matchRoot(): Promise<ParentRecord | undefined> {
    const reader = this.#reader;
    if (!reader) return undefined;
    for (;;) {
      const rec = reader.matchRoot();
      if (rec !== MORE) return rec;
      await reader.more();
    }
  }

  /** lstat()s the children of a directory (names sorted), leaving out excluded and unsupported ones. */
  #list(parts: string[], relPrefix: string, absPrefix: string, names: string[]): Frame {
    const files: [string, number, fs.BigIntStats][] = [];
    const dirs: [string, number, fs.BigIntStats][] = [];
    const exclude = this.#exclude;
    for (const name of names) {
      const rel = relPrefix + name;
      if (exclude?.(rel, name, false)) continue;
      const abs = absPrefix + name;
      let st: fs.BigIntStats | undefined;
      try {
        st = fs.lstatSync(abs, { bigint: true, throwIfNoEntry: false });
      } catch (err) {
        this.#warn(abs, `cannot stat: ${errnoText(err)}; left out`);
        continue;
      }
      if (!st) {
        this.#warn(
          abs,
          name.includes("\uFFFD")
            ? "name is not valid UTF-8; left out"
            : "vanished before it was read; left out",
        );
        continue;
      }
      const kind = kindOf(Number(st.mode));
      if (kind === KIND.dir) {
        if (exclude?.(rel, name, true)) continue;
        dirs.push([name, kind, st]);
        continue;
      }
      if (kind === "socket") {
        this.#warn(abs, "socket ignored");
        continue;
      }
      if (kind === undefined) {
        this.#warn(abs, "unknown file type; left out");
        continue;
      }
      if ((kind === KIND.char || kind === KIND.block) && !this.#isRoot) {
        this.#warn(abs, "device left out: only root can back up and restore devices");
        continue;
      }
      files.push([name, kind, st]);
    }
    const all = files.concat(dirs);
    const frame = newFrame(parts, relPrefix, absPrefix, all.map((x) => x[2]));
    const rootDev = this.#rootStat.dev;
    frame.items = all.map(([name, kind, st], i) => makeItem(name, kind, st, rootDev, i));
    return frame;
  }

  /** A non-directory: skipped when unchanged, else written (whole, as a delta, or as a hard link). */
  #nonDir(frame: Frame, item: Item, rec: ParentRecord | undefined): Promise<unknown> | undefined {
    const rel = frame.relPrefix + item.name;
    let changed = !this.#unchanged(rec, frame, item);
    const key = item.linkKey;
    const first = key === undefined ? undefined : this.#links.get(key);
    if (!changed && first?.written) changed = true; // keep the link: its first name is rewritten
    if (!changed) {
      if (key !== undefined && first === undefined) this.#links.set(key, { rel, written: false });
      this.#stateRecord(item.kind, rec!.flags & FLAG_SIGNATURES, rel, frame.meta, item.at, rec!.signatures);
      return undefined;
    }
    if (first !== undefined) {
      // A later name of an inode: a link to the first name (restored before it, in this level or earlier).
      this.#entry(KIND.hardlink, rel, item, frame);
      this.#out.str32(first.rel);
      this.#stateRecord(item.kind, 0, rel, frame.meta, item.at, undefined);
      this.#stats.files++;
      return undefined;
    }
    const abs = frame.absPrefix + item.name;
    if (item.kind === KIND.file) {
      return this.#file(frame, item, rel, abs, rec).then((ok) => {
        if (!ok) return;
        this.#stats.files++;
        if (key !== undefined) this.#links.set(key, { rel, written: true });
      });
    }
    switch (item.kind) {
      case KIND.symlink: {
        let target: string;
        try {
          target = fs.readlinkSync(abs);
        } catch (err) {
          this.#unreadable(abs, `cannot read link: ${errnoText(err)}`, err, rec);
          return undefined;
        }
        this.#entry(KIND.symlink, rel, item, frame);
        this.#out.str32(target);
        this.#stateRecord(item.kind, 0, rel, frame.meta, item.at, undefined);
        break;
      }
      default:
        this.#entry(item.kind, rel, item, frame);
        if (item.kind === KIND.char || item.kind === KIND.block) {
          this.#out.u32(devMajor(item.rdev));
          this.#out.u32(devMinor(item.rdev));
        }
        this.#stateRecord(item.kind, 0, rel, frame.meta, item.at, undefined);
    }
    this.#stats.files++;
    if (key !== undefined) this.#links.set(key, { rel, written: true });
    return undefined;
  }

  #unchanged(rec: ParentRecord | undefined, frame: Frame, item: Item): boolean {
    if (rec === undefined || rec.kind !== item.kind || (rec.flags & FLAG_REREAD) !== 0) return false;
    // Same inode, size, mtime and ctime (the device is not compared: snapshots remount).
    const a = rec.meta;
    const b = frame.meta;
    const o = item.at * META_BYTES;
    for (let i = 8; i < META_BYTES; i++) if (a[i] !== b[o + i]) return false;
    const ctime = new DataView(a.buffer, a.byteOffset + 32, 8).getBigInt64(0, true);
    return ctime < this.#racyLimit;
  }

  /**
   * A changed regular file: read once, sent whole or as a delta against the parent's signatures, signed
   * as it streams through. False when it could not be opened (and is left out).
   */
  async #file(
    frame: Frame,
    item: Item,
    rel: string,
    abs: string,
    rec: ParentRecord | undefined,
  ): Promise<boolean> {
    const parentSigs = rec?.kind === KIND.file && (rec.flags & FLAG_REREAD) === 0 && rec.signatures
      ? decodeSignatures(rec.signatures)
      : undefined;
    const base = parentSigs && parentSigs.count > 0 ? parentSigs : undefined;
    const baseSize = base
      ? Number(new DataView(rec!.meta.buffer, rec!.meta.byteOffset + 16, 8).getBigUint64(0, true))
      : 0;
    let fd = -1;
    if (item.size > 0) {
      try {
        fd = fs.openSync(abs, OPEN_FLAGS);
      } catch (err) {
        if (frame.top) {
          throw new FrostError(`Cannot back up "${this.#source}": ${errnoText(err)}`, { cause: err });
        }
        this.#unreadable(abs, `cannot open: ${errnoText(err)}`, err, rec);
        return false;
      }
    }
    this.#fd = fd;
    const out = this.#out;
    const bs = blockSizeFor(item.size);
    this.#entry(KIND.file, rel, item, frame);
    out.u32(bs);
    if (base) {
      out.u8(1);
      out.u32(base.blockSize);
      out.u64(baseSize);
    } else {
      out.u8(0);
    }
    const sink: OpSink = {
      literal(buf, start, end) {
        out.u8(TAG.literal);
        out.u32(end - start);
        out.bytes(buf, start, end);
      },
      copy(first, count) {
        out.u8(TAG.copy);
        out.u32(first);
        out.u32(count);
      },
    };
    const scanner = new Scanner(sink, base, bs, item.size, this.#scanBuffer);
    this.#scanBuffer = scanner.buffer;
    let flags = 0;
    let remaining = item.size;
    while (remaining > 0 && fd >= 0) {
      const { buffer, offset, length } = scanner.space();
      // Ask for one byte more than the file should have left, when it fits, to notice growth for free.
      const want = remaining < length ? remaining + 1 : length;
      let n: number;
      try {
        n = fs.readSync(fd, buffer, offset, want, scanner.fileOffset);
      } catch (err) {
        this.#warn(abs, `cannot read: ${errnoText(err)}; stored the first ${scanner.fileOffset} bytes`);
        flags |= FLAG_REREAD;
        break;
      }
      if (n === 0) {
        this.#warn(abs, `file shrank while read; stored its ${scanner.fileOffset} bytes`);
        flags |= FLAG_REREAD;
        break;
      }
      if (n > remaining) {
        n = remaining;
        this.#warn(abs, `file grew while read; cut at ${item.size} bytes`);
        flags |= FLAG_REREAD;
      }
      scanner.advance(n);
      remaining -= n;
      this.#stats.bytes += n;
      if ((this.#data.desiredSize ?? 1) <= 0) await this.#drain();
      if (this.#options.signal?.aborted) throw this.#aborted();
      // An unchanged stretch of a big file produces next to no output, so the queue never fills: give
      // timers and I/O (abort, progress, the state's consumer) a turn now and then anyway.
      const now = performance.now();
      if (now - this.#lastProgress >= PROGRESS_MS) this.#progress(now);
      if (now - this.#lastYield >= SLICE_MS) {
        await yieldToEventLoop();
        this.#lastYield = performance.now();
        if (this.#ended) throw this.#aborted();
      }
    }
    this.#closeFile();
    const result = scanner.finish();
    out.u8(TAG.fileEnd);
    out.u64(result.size);
    out.bytes(result.hash);
    const sigs = result.signatures.count > 0 ? encodeSignatures(result.signatures) : undefined;
    this.#stateRecord(KIND.file, flags | (sigs ? FLAG_SIGNATURES : 0), rel, frame.meta, item.at, sigs);
    return true;
  }

  /**
   * An entry that exists but cannot be read: left out with a warning. Its restored version (if any) stays
   * as the parent left it, and its parent record is kept, marked to be read again next time; an entry
   * that vanished is recorded as deleted.
   */
  #unreadable(abs: string, message: string, err: unknown, rec: ParentRecord | undefined): void {
    if (code(err) === "ENOENT") {
      this.#warn(abs, "vanished before it was read; left out");
      if (rec) this.#deleted(rec);
      return;
    }
    this.#warn(abs, `${message}; left out`);
    if (rec) this.#keepRecord(rec);
  }

  #closeFile(): void {
    if (this.#fd >= 0) {
      try {
        fs.closeSync(this.#fd);
      } catch {
        // Nothing left to lose: the data is read.
      }
      this.#fd = -1;
    }
  }

  /** Writes an entry record's common part: tag, kind, path, mode, owner, mtime. */
  #entry(kind: number, rel: string, item: Item, frame: Frame): void {
    const out = this.#out;
    out.u8(TAG.entry);
    out.u8(kind);
    out.str32(rel);
    out.u32(item.mode);
    out.u32(item.uid);
    out.u32(item.gid);
    out.str8(this.#userName(item.uid));
    out.str8(this.#groupName(item.gid));
    const o = item.at * META_BYTES;
    out.bytes(frame.meta, o + 24, o + 32); // mtime, already little-endian
  }

  /** A deletion record for a parent entry missing from this walk. */
  #deleted(rec: ParentRecord): void {
    const out = this.#out;
    out.u8(TAG.delete);
    out.u8(rec.kind === KIND.dir ? DELETED_DIR : DELETED_OTHER);
    out.str32(rec.path);
  }

  /** Appends one state record. */
  #stateRecord(
    kind: number,
    flags: number,
    rel: string,
    meta: Uint8Array,
    at: number,
    signatures: Uint8Array | undefined,
  ): void {
    const s = this.#stateOut;
    s.u32(1 + 1 + 4 + utf8Length(rel) + META_BYTES + (signatures?.length ?? 0));
    s.u8(kind);
    s.u8(flags);
    s.str32(rel);
    s.bytes(meta, at * META_BYTES, (at + 1) * META_BYTES);
    if (signatures) s.bytes(signatures);
  }

  /** Re-emits a parent record as it was, marked to be read again. */
  #keepRecord(rec: ParentRecord): void {
    this.#stateRecord(rec.kind, rec.flags | FLAG_REREAD, rec.path, rec.meta, 0, rec.signatures);
  }

  #fail(err: unknown): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#closeFile();
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
    try {
      this.#data.error(err);
    } catch {
      // Already closed or errored.
    }
    if (!this.#stateCancelled) {
      try {
        this.#state.error(err);
      } catch {
        // Already closed or errored.
      }
    }
    this.#detach();
    void this.#reader?.close();
    this.#reject(err);
  }

  #aborted(): AbortedError {
    return new AbortedError(`Backup of "${this.#source}" aborted`, { cause: this.#options.signal?.reason });
  }

  #detach(): void {
    if (this.#onAbort) this.#options.signal?.removeEventListener("abort", this.#onAbort);
  }

  #warn(abs: string, message: string): void {
    this.#stats.warnings++;
    this.#options.onWarning?.({ path: abs, message });
  }

  #progress(now: number): void {
    this.#lastProgress = now;
    this.#options.onProgress?.({ files: this.#stats.files, bytes: this.#stats.bytes });
  }

  #userName(uid: number): string {
    this.#users ??= readIdNames("/etc/passwd");
    return this.#users.get(uid) ?? "";
  }

  #groupName(gid: number): string {
    this.#groups ??= readIdNames("/etc/group");
    return this.#groups.get(gid) ?? "";
  }
}

/**
 * Backs up `source` (a directory, or a single regular file) as an rsync data stream on `stream`, and this
 * backup's engine state on `state` (formats in docs/RSYNC.md). With `options.previous` (the parent's
 * state) only what changed is stored, changed files as deltas against the parent's version.
 * Throws a FrostError right away when the source is missing or unreadable.
 *
 * @example
 * ```ts ignore
 * const run = rsyncBackup("/var/lib/images");
 * const [data, state] = await Promise.all([
 *   new Response(run.stream).arrayBuffer(),
 *   new Response(run.state).arrayBuffer(),
 * ]);
 * const stats = await run.done;
 * ```
 */
export function rsyncBackup(source: string, options: BackupOptions = {}): BackupRun {
  let st: fs.BigIntStats;
  try {
    st = fs.statSync(source, { bigint: true });
    if (st.isDirectory()) fs.accessSync(source, fs.constants.R_OK | fs.constants.X_OK);
    else if (st.isFile()) fs.accessSync(source, fs.constants.R_OK);
  } catch (err) {
    throw new FrostError(`Cannot back up "${source}": ${errnoText(err)}`, { cause: err });
  }
  if (!st.isDirectory() && !st.isFile()) {
    throw new FrostError(`Cannot back up "${source}": not a directory or a regular file`);
  }
  return new RsyncBackup(source, st, options).run;
}
