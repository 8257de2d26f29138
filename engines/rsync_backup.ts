/**
 * The rsync engine's backup half: walks a directory (or one regular file) in the tar engine's order and
 * writes the rsync data stream and engine state of docs/FORMAT.md (section "The rsync engine"). Level 0 stores every file whole; level N
 * skips unchanged files without reading them, stores new files whole, and sends changed files as
 * references to blocks of the parent's version plus literal bytes, found by a rolling search against the
 * parent's block signatures (see _rsync_delta.ts). Deleted entries are recorded.
 *
 * Walk, change detection, exclusion, mount points, hard links and warnings follow the tar engine
 * (tar_backup.ts); only the stream and the state differ. All file system calls are synchronous: an
 * awaited promise per call costs more than the call for small files.
 * @module
 */
import fs from "./_fs_bytes.ts";
import path from "node:path";
import process from "node:process";
import { setImmediate } from "node:timers";
import type { BackupOptions, BackupRun } from "./engine.ts";
import { AbortedError, failureOf, FrostError } from "../base/errors.ts";
import { sortNames } from "./_tar_state.ts";
import { devMajor, devMinor, utf8Length } from "./_tar_header.ts";
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
  RsyncStateReader,
  STATE_MAGIC,
  STREAM_MAGIC,
  TAG,
} from "./_rsync_format.ts";
import { code, errnoText, excludeMatcher, OwnerNames } from "./_fs_common.ts";
import { readXattrs, requireXattrs } from "./_xattrs.ts";
import { mayHaveHoles, sparseLayout } from "./_sparse.ts";
import { BackupControl, closeRead, entryKind, listDir, lstatChild, statSource } from "./_walk.ts";
import { type FileKind, OPEN_FLAGS, PROGRESS_MS, SLICE_MS } from "./_walk.ts";

/** Data chunk size: big enough that per-chunk costs vanish, small enough to keep memory low. */
const CHUNK_SIZE = 2 << 20;
/** Data chunks prepared ahead of the consumer, so reading overlaps compression. */
const READ_AHEAD = 2;
/** The state is enqueued in pieces of about this size. */
const STATE_CHUNK = 64 << 10;
/** The stream's kind of each entry kind of the walk. */
const KIND_OF: Record<FileKind, number> = {
  f: KIND.file,
  d: KIND.dir,
  l: KIND.symlink,
  p: KIND.fifo,
  c: KIND.char,
  b: KIND.block,
};

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
  /** A regular file with fewer blocks allocated than its size needs: it may have holes. */
  holes: boolean;
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
    holes: kind === KIND.file && mayHaveHoles(st),
    at,
  };
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
  #c: BackupControl;
  #started: bigint;

  #data!: ReadableStreamDefaultController<Uint8Array>;
  #state!: ReadableStreamDefaultController<Uint8Array>;
  #stateCancelled = false;
  #out: ByteOut;
  #stateOut: ByteOut;
  #wake: (() => void) | undefined;
  #running = false;
  #ended = false;

  #reader: RsyncStateReader | undefined;
  /** Parent records with a ctime before this (ns) can be trusted; see tar_backup.ts "Change detection". */
  #racyLimit = 0n;
  #onMissing = (rec: ParentRecord) => this.#deleted(rec);

  /** First name of each inode with several links (`dev:ino`) and whether it is in this stream. */
  #links = new Map<string, { rel: string; written: boolean }>();
  #names = new OwnerNames();
  #scanBuffer: Uint8Array | undefined;
  #fd = -1;
  #lastYield = performance.now();

  constructor(source: string, rootStat: fs.BigIntStats, options: BackupOptions) {
    this.#source = source;
    this.#options = options;
    this.#c = new BackupControl(source, options);
    this.#rootStat = rootStat;
    this.#exclude = options.exclude ? excludeMatcher(options.exclude) : undefined;
    this.#started = BigInt(Date.now()) * 1_000_000n;
    if (options.previous) this.#reader = new RsyncStateReader(options.previous);
    this.#out = new ByteOut((bytes) => this.#data.enqueue(bytes), CHUNK_SIZE);
    this.#stateOut = new ByteOut((bytes) => {
      if (!this.#stateCancelled) this.#state.enqueue(bytes);
    }, STATE_CHUNK);

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
    this.run = { stream, state, done: this.#c.done };

    this.#c.listen((err) => this.#fail(err));
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
      this.#c.succeed();
      await this.#reader?.close();
    } catch (err) {
      this.#fail(failureOf(err, `Cannot back up "${this.#source}"`));
    }
  }

  /** Waits until the data stream wants more, when its queue is full. */
  async #drain(): Promise<void> {
    while (!this.#ended && (this.#data.desiredSize ?? 1) <= 0) {
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
    if (this.#ended) throw this.#c.aborted();
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
      this.#c.stats.scanned++;
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
        if (signal?.aborted) throw this.#c.aborted();
        const now = performance.now();
        if (now - this.#c.lastProgress >= PROGRESS_MS) this.#c.progress(now);
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
      const listed = listDir(abs, isRoot, this.#source, this.#c);
      if (listed === undefined) {
        if (rec) this.#deleted(rec);
        return undefined;
      }
      names = listed;
    }
    const child = this.#list(
      parts,
      isRoot ? "" : `${rel}/`,
      abs.endsWith("/") ? abs : `${abs}/`,
      sortNames(names),
    );
    this.#entry(KIND.dir, rel, item, frame);
    this.#stateRecord(KIND.dir, 0, rel, frame.meta, item.at, undefined);
    this.#c.stats.files++;
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
      const st = lstatChild(abs, name, this.#c);
      if (!st) continue;
      const kind = entryKind(Number(st.mode), abs, this.#isRoot, this.#c);
      if (kind === undefined) continue;
      if (kind === "d") {
        if (exclude?.(rel, name, true)) continue;
        dirs.push([name, KIND.dir, st]);
        continue;
      }
      files.push([name, KIND_OF[kind], st]);
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
      this.#c.stats.files++;
      return undefined;
    }
    const abs = frame.absPrefix + item.name;
    if (item.kind === KIND.file) {
      return this.#file(frame, item, rel, abs, rec).then((ok) => {
        if (!ok) return;
        this.#c.stats.files++;
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
    this.#c.stats.files++;
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
      hole(n) {
        out.u8(TAG.hole);
        out.u64(n);
      },
    };
    // The holes of a sparse file, as whole blocks: skipped, not read (the bytes around them are).
    const holes = fd >= 0 && item.holes ? holeBlocks(fd, item.size, bs) : [];
    let nextHole = 0;
    const scanner = new Scanner(sink, base, bs, item.size, this.#scanBuffer);
    this.#scanBuffer = scanner.buffer;
    let flags = 0;
    let remaining = item.size;
    while (remaining > 0 && fd >= 0) {
      const holeAt = holes[nextHole] ?? Infinity;
      if (scanner.fileOffset === holeAt) {
        const n = holes[nextHole + 1]!;
        scanner.hole(n);
        remaining -= n;
        nextHole += 2;
        continue;
      }
      const { buffer, offset, length } = scanner.space();
      // Ask for one byte more than the file should have left, when it fits, to notice growth for free.
      const want = holeAt - scanner.fileOffset < length
        ? holeAt - scanner.fileOffset
        : remaining < length
        ? remaining + 1
        : length;
      let n: number;
      try {
        n = fs.readSync(fd, buffer, offset, want, scanner.fileOffset);
      } catch (err) {
        this.#c.warn(abs, `cannot read: ${errnoText(err)}; stored the first ${scanner.fileOffset} bytes`);
        flags |= FLAG_REREAD;
        break;
      }
      if (n === 0) {
        this.#c.warn(abs, `file shrank while read; stored its ${scanner.fileOffset} bytes`);
        flags |= FLAG_REREAD;
        break;
      }
      if (n > remaining) {
        n = remaining;
        this.#c.warn(abs, `file grew while read; cut at ${item.size} bytes`);
        flags |= FLAG_REREAD;
      }
      scanner.advance(n);
      remaining -= n;
      this.#c.stats.bytes += n;
      if ((this.#data.desiredSize ?? 1) <= 0) await this.#drain();
      if (this.#options.signal?.aborted) throw this.#c.aborted();
      // An unchanged stretch of a big file produces next to no output, so the queue never fills: give
      // timers and I/O (abort, progress, the state's consumer) a turn now and then anyway.
      const now = performance.now();
      if (now - this.#c.lastProgress >= PROGRESS_MS) this.#c.progress(now);
      if (now - this.#lastYield >= SLICE_MS) {
        await yieldToEventLoop();
        this.#lastYield = performance.now();
        if (this.#ended) throw this.#c.aborted();
      }
    }
    // Holes are not read, so a file that shrank into one is only seen here.
    if (nextHole > 0 && (flags & FLAG_REREAD) === 0 && fs.fstatSync(fd).size < item.size) {
      this.#c.warn(abs, `file shrank while read; stored ${item.size} bytes, zeros at its end`);
      flags |= FLAG_REREAD;
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
      this.#c.warn(abs, "vanished before it was read; left out");
      if (rec) this.#deleted(rec);
      return;
    }
    this.#c.warn(abs, `${message}; left out`);
    if (rec) this.#keepRecord(rec);
  }

  #closeFile(): void {
    this.#fd = closeRead(this.#fd);
  }

  /**
   * Writes an entry record's common part: tag, kind, path, mode, owner, mtime; before it, the entry's
   * extended attributes (an `X` record) when it has any and they are stored.
   */
  #entry(kind: number, rel: string, item: Item, frame: Frame): void {
    const out = this.#out;
    if (kind !== KIND.hardlink && this.#options.xattrs !== false) {
      const abs = frame.top ? this.#source : frame.absPrefix + item.name;
      const list = readXattrs(abs, (message) => this.#c.warn(abs, message))
        ?.filter(([name]) => {
          if (utf8Length(name) <= 255) return true;
          this.#c.warn(abs, `extended attribute name "${name.slice(0, 40)}…" is too long; stored without it`);
          return false;
        });
      if (list && list.length > 0) {
        out.u8(TAG.xattrs);
        out.u32(list.length);
        for (const [name, value] of list) {
          out.str8(name);
          out.u32(value.length);
          out.bytes(value);
        }
      }
    }
    out.u8(TAG.entry);
    out.u8(kind);
    out.str32(rel);
    out.u32(item.mode);
    out.u32(item.uid);
    out.u32(item.gid);
    out.str8(this.#names.user(item.uid));
    out.str8(this.#names.group(item.gid));
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
    void this.#reader?.close();
    this.#c.fail(err);
  }
}

/**
 * The holes of the open file `fd` of `size` bytes that cover whole blocks of `bs` bytes, flat:
 * `[offset0, length0, …]`, in order; none when it has no holes (see `sparseLayout`).
 */
function holeBlocks(fd: number, size: number, bs: number): number[] {
  const layout = sparseLayout(fd, size);
  if (!layout) return [];
  const out: number[] = [];
  const regions = layout.regions;
  let from = 0; // end of the data before the hole
  for (let i = 0; i <= regions.length; i += 2) {
    const to = i < regions.length ? regions[i]! : size; // start of the data after it
    const start = Math.ceil(from / bs) * bs;
    const end = Math.floor(to / bs) * bs;
    if (end > start) out.push(start, end - start);
    if (i < regions.length) from = regions[i]! + regions[i + 1]!;
  }
  return out;
}

/**
 * Backs up `source` (a directory, or a single regular file) as an rsync data stream on `stream`, and this
 * backup's engine state on `state` (formats in docs/FORMAT.md (section "The rsync engine")). With `options.previous` (the parent's
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
  const stat = statSource(source);
  requireXattrs(source, options.xattrs);
  return new RsyncBackup(source, stat, options).run;
}
