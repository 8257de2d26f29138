/**
 * The rsync engine's byte formats (data stream and engine state, both specified in docs/FORMAT.md (section "The rsync engine")): the
 * chunked writer both are produced with, and the streaming reader of a parent's state.
 * @module
 */
import { FrostError } from "../base/errors.ts";
import { compareKey, readParentState, recordsOf, stopParentState } from "./_tar_state.ts";
import type { StateEntry } from "./engine.ts";
import { decodeName, encodeName, hasEscape } from "./_names.ts";

/**
 * First 8 bytes of a data stream: "FRSYNC", NUL, version 3 (versions 1, without `X` records, and 2,
 * without `H` ops, are read too).
 */
export const STREAM_MAGIC = new Uint8Array([0x46, 0x52, 0x53, 0x59, 0x4e, 0x43, 0x00, 0x03]);
/** Stream versions this code reads. */
export const STREAM_VERSIONS = [1, 2, 3];
/** First 8 bytes of an engine state: "FRSYNS", NUL, version 1; then the i64 start time. */
export const STATE_MAGIC = new Uint8Array([0x46, 0x52, 0x53, 0x59, 0x4e, 0x53, 0x00, 0x01]);

/** Record tags of the data stream. */
export const TAG = {
  entry: 0x45, // 'E'
  /** Extended attributes of the entry record that follows (version 2). */
  xattrs: 0x58, // 'X'
  delete: 0x44, // 'D'
  end: 0x5a, // 'Z'
  literal: 0x4c, // 'L'
  copy: 0x43, // 'C'
  fileEnd: 0x46, // 'F'
  /** Zero bytes that are a hole of a sparse file, not stored (version 3). */
  hole: 0x48, // 'H'
} as const;

/** Entry kinds (ASCII codes): file, directory, symlink, hard link (stream only), fifo, char/block device. */
export const KIND = {
  file: 0x66, // 'f'
  dir: 0x64, // 'd'
  symlink: 0x6c, // 'l'
  hardlink: 0x68, // 'h'
  fifo: 0x70, // 'p'
  char: 0x63, // 'c'
  block: 0x62, // 'b'
} as const;

/** Classes of a deletion record: a directory (with its subtree), or anything else. */
export const DELETED_DIR = 0x64; // 'd'
export const DELETED_OTHER = 0x6e; // 'n'

/** State record flags. */
export const FLAG_SIGNATURES = 1;
/** The content stored differs from what lstat described (read error, shrank, grew): re-read next time. */
export const FLAG_REREAD = 2;

/** Bytes of a state record's metadata: dev, ino, size, mtime, ctime (u64/i64 each). */
export const META_BYTES = 40;

const encoder = new TextEncoder();

/** A fresh ArrayBuffer comes zeroed from the allocator: cheaper than `new Uint8Array(n)` in Deno. */
function newChunk(size: number): Uint8Array {
  return new Uint8Array(new ArrayBuffer(size));
}

/**
 * Writes little-endian fields into chunks of about `chunkSize` bytes and hands each full chunk to `emit`.
 * Chunks are never reused after being emitted.
 */
export class ByteOut {
  #emit: (bytes: Uint8Array) => void;
  #size: number;
  #chunk: Uint8Array;
  #dv: DataView;
  #off = 0;
  /** Bytes written in total. */
  total = 0;

  constructor(emit: (bytes: Uint8Array) => void, chunkSize: number) {
    this.#emit = emit;
    this.#size = chunkSize;
    this.#chunk = newChunk(chunkSize);
    this.#dv = new DataView(this.#chunk.buffer);
  }

  /** Bytes waiting in the current chunk. */
  get pending(): number {
    return this.#off;
  }

  /** Makes `n` contiguous bytes available in the current chunk. */
  #reserve(n: number): void {
    if (this.#off + n <= this.#chunk.length) return;
    this.flush();
    if (n > this.#chunk.length) {
      this.#chunk = newChunk(Math.max(n, this.#size));
      this.#dv = new DataView(this.#chunk.buffer);
    }
  }

  u8(v: number): void {
    this.#reserve(1);
    this.#chunk[this.#off++] = v;
    this.total++;
  }

  u32(v: number): void {
    this.#reserve(4);
    this.#dv.setUint32(this.#off, v, true);
    this.#off += 4;
    this.total += 4;
  }

  /** An unsigned 64-bit value given as a safe integer. */
  u64(v: number): void {
    this.#reserve(8);
    this.#dv.setUint32(this.#off, v >>> 0, true);
    this.#dv.setUint32(this.#off + 4, Math.floor(v / 0x1_0000_0000), true);
    this.#off += 8;
    this.total += 8;
  }

  /** A 64-bit value given as a bigint (two's complement when negative). */
  i64(v: bigint): void {
    this.#reserve(8);
    this.#dv.setBigInt64(this.#off, v, true);
    this.#off += 8;
    this.total += 8;
  }

  /** `u32` length + UTF-8 bytes of `s` (escaped name bytes as themselves, see _names.ts). */
  str32(s: string): void {
    this.#reserve(4 + 3 * s.length);
    let written: number;
    if (hasEscape(s)) {
      const bytes = encodeName(s);
      this.#chunk.set(bytes, this.#off + 4);
      written = bytes.length;
    } else written = encoder.encodeInto(s, this.#chunk.subarray(this.#off + 4)).written;
    this.#dv.setUint32(this.#off, written, true);
    this.#off += 4 + written;
    this.total += 4 + written;
  }

  /** `u8` length + UTF-8 bytes of `s`; an empty string when `s` needs more than 255 bytes. */
  str8(s: string): void {
    this.#reserve(1 + 3 * s.length);
    let { written } = encoder.encodeInto(s, this.#chunk.subarray(this.#off + 1));
    if (written > 255) written = 0;
    this.#chunk[this.#off] = written;
    this.#off += 1 + written;
    this.total += 1 + written;
  }

  /** Copies `src[start, end)`, across chunks when needed. */
  bytes(src: Uint8Array, start = 0, end = src.length): void {
    while (start < end) {
      if (this.#off === this.#chunk.length) this.flush();
      const n = Math.min(end - start, this.#chunk.length - this.#off);
      this.#chunk.set(src.subarray(start, start + n), this.#off);
      this.#off += n;
      start += n;
      this.total += n;
    }
  }

  /** Emits what the current chunk holds: the chunk itself when mostly full, else a copy (it is reused). */
  flush(): void {
    if (this.#off === 0) return;
    if (this.#off >= this.#chunk.length / 4) {
      this.#emit(this.#chunk.subarray(0, this.#off));
      this.#chunk = newChunk(this.#size);
      this.#dv = new DataView(this.#chunk.buffer);
    } else {
      this.#emit(this.#chunk.slice(0, this.#off));
    }
    this.#off = 0;
  }
}

/** A record of the parent's state, as the merge needs it. Its byte views are valid until `more()`. */
export interface ParentRecord {
  parts: string[];
  /** Path as stored ("." for the root directory). */
  path: string;
  kind: number;
  flags: number;
  /** dev, ino, size, mtime, ctime: 8 bytes each, little-endian. */
  meta: Uint8Array;
  /** The encoded signatures (block size, count, weak…, strong…), when FLAG_SIGNATURES. */
  signatures: Uint8Array | undefined;
}

/** Returned by `RsyncStateReader.match()` when it must `await more()` before it can answer. */
export const MORE = Symbol("more");

const STATE_KINDS = new Set<number>([KIND.file, KIND.dir, KIND.symlink, KIND.fifo, KIND.char, KIND.block]);

/**
 * Reads a parent's state as a streaming merge: `match()` is called with keys in walk order and consumes
 * the parent's records up to that key, so memory holds one record and one input chunk, never the whole
 * state. Records passed over without a match are handed to `onMissing` (they were deleted), except
 * those below a directory handed over before (its deletion covers them).
 */
export class RsyncStateReader {
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #buf = new Uint8Array(256 << 10);
  #dv = new DataView(this.#buf.buffer);
  #pos = 0;
  #len = 0;
  #ended = false;
  #recordNo = 0;
  #next: ParentRecord | undefined;
  #skip: string[] | undefined;
  /** When the parent backup started (wall clock, ns); set by `open()`. */
  started = 0n;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.getReader();
  }

  /** Reads and checks the header. */
  async open(): Promise<void> {
    while (this.#len - this.#pos < 16 && !this.#ended) await this.more();
    if (this.#len - this.#pos < 16 || !STATE_MAGIC.every((b, i) => this.#buf[this.#pos + i] === b)) {
      const versionOnly = this.#len - this.#pos >= 8 &&
        STATE_MAGIC.subarray(0, 7).every((b, i) => this.#buf[this.#pos + i] === b);
      throw new FrostError(
        versionOnly
          ? `Cannot read the parent backup's state: version ${
            this.#buf[this.#pos + 7]
          } is not supported (this frost reads 1)`
          : "Cannot read the parent backup's state: it is not a frost rsync state",
      );
    }
    this.started = this.#dv.getBigInt64(this.#pos + 8, true);
    this.#pos += 16;
  }

  /**
   * Returns the parent's record for the entry (`parent` components + `name`), undefined when the parent
   * had none, or MORE when the buffered input ran out. Keys must come in walk order.
   */
  match(
    parent: readonly string[],
    name: string,
    isDir: boolean,
    onMissing: (rec: ParentRecord) => void,
  ): ParentRecord | undefined | typeof MORE {
    for (;;) {
      if (this.#next === undefined) {
        const rec = this.#parse();
        if (rec === undefined) return this.#ended ? undefined : MORE;
        this.#next = rec;
      }
      const next = this.#next;
      const c = compareKey(next.parts, next.kind === KIND.dir, parent, name, isDir);
      if (c > 0) return undefined;
      this.#next = undefined;
      if (c === 0) {
        this.#skip = undefined;
        return next;
      }
      this.#missing(next, onMissing);
    }
  }

  /** The parent's record of the root directory (path "."), which precedes every other record. */
  matchRoot(): ParentRecord | undefined | typeof MORE {
    if (this.#next === undefined) {
      const rec = this.#parse();
      if (rec === undefined) return this.#ended ? undefined : MORE;
      this.#next = rec;
    }
    if (this.#next.parts.length > 0 || this.#next.kind !== KIND.dir) return undefined;
    const rec = this.#next;
    this.#next = undefined;
    return rec;
  }

  /** The next record in order (for listing a state), undefined at the end, MORE when input ran out. */
  next(): ParentRecord | undefined | typeof MORE {
    if (this.#next !== undefined) {
      const rec = this.#next;
      this.#next = undefined;
      return rec;
    }
    const rec = this.#parse();
    return rec ?? (this.#ended ? undefined : MORE);
  }

  /** Hands every record left to `onMissing`; MORE when it must `await more()` first. */
  rest(onMissing: (rec: ParentRecord) => void): typeof MORE | undefined {
    for (;;) {
      if (this.#next === undefined) {
        const rec = this.#parse();
        if (rec === undefined) return this.#ended ? undefined : MORE;
        this.#next = rec;
      }
      const next = this.#next;
      this.#next = undefined;
      this.#missing(next, onMissing);
    }
  }

  #missing(rec: ParentRecord, onMissing: (rec: ParentRecord) => void): void {
    const skip = this.#skip;
    if (skip !== undefined && rec.parts.length > skip.length && skip.every((p, i) => rec.parts[i] === p)) {
      return;
    }
    this.#skip = rec.kind === KIND.dir ? rec.parts : undefined;
    onMissing(rec);
  }

  /** Buffers the next chunk of input. */
  async more(): Promise<void> {
    const result = await readParentState(this.#reader);
    if (result.done) {
      this.#ended = true;
      return;
    }
    const chunk = result.value;
    const have = this.#len - this.#pos;
    if (have + chunk.length > this.#buf.length) {
      const grown = new Uint8Array(Math.max(2 * this.#buf.length, have + chunk.length));
      grown.set(this.#buf.subarray(this.#pos, this.#len));
      this.#buf = grown;
      this.#dv = new DataView(grown.buffer);
    } else if (this.#pos > 0) {
      this.#buf.copyWithin(0, this.#pos, this.#len);
    }
    this.#buf.set(chunk, have);
    this.#pos = 0;
    this.#len = have + chunk.length;
  }

  /** Stops reading (the rest of the parent's state is not needed). */
  async close(): Promise<void> {
    await stopParentState(this.#reader);
  }

  #corrupt(why: string): FrostError {
    return new FrostError(`Cannot read the parent backup's state: record ${this.#recordNo + 1} ${why}`);
  }

  /** The next complete record, or undefined when more input is needed (or none is left). */
  #parse(): ParentRecord | undefined {
    const avail = this.#len - this.#pos;
    if (avail < 4) {
      if (this.#ended && avail > 0) throw this.#corrupt("is truncated");
      return undefined;
    }
    const p = this.#pos;
    const dv = this.#dv;
    const size = dv.getUint32(p, true);
    if (avail < 4 + size) {
      if (this.#ended) throw this.#corrupt("is truncated");
      return undefined;
    }
    if (size < 6 + META_BYTES) throw this.#corrupt("is too short");
    const kind = this.#buf[p + 4]!;
    const flags = this.#buf[p + 5]!;
    const pathLen = dv.getUint32(p + 6, true);
    const metaAt = p + 10 + pathLen;
    if (!STATE_KINDS.has(kind) || 6 + pathLen + META_BYTES > size) throw this.#corrupt("is malformed");
    const path = decodeName(this.#buf.subarray(p + 10, metaAt));
    const end = p + 4 + size;
    const sigAt = metaAt + META_BYTES;
    const signatures = (flags & FLAG_SIGNATURES) !== 0 ? this.#buf.subarray(sigAt, end) : undefined;
    if (signatures === undefined && sigAt !== end) throw this.#corrupt("is malformed");
    this.#pos = end;
    this.#recordNo++;
    return {
      parts: path === "." ? [] : path.split("/"),
      path,
      kind,
      flags,
      meta: this.#buf.subarray(metaAt, sigAt),
      signatures,
    };
  }
}

const RSYNC_TYPES = new Map<number, StateEntry["type"]>([
  [KIND.file, "file"],
  [KIND.dir, "dir"],
  [KIND.symlink, "symlink"],
  [KIND.fifo, "fifo"],
  [KIND.char, "char"],
  [KIND.block, "block"],
]);

/** Lists an rsync state's entries (the tree its backup restores to). */
export async function* rsyncStateEntries(state: ReadableStream<Uint8Array>): AsyncGenerator<StateEntry> {
  for await (const rec of recordsOf<ParentRecord>(new RsyncStateReader(state))) {
    const type = RSYNC_TYPES.get(rec.kind)!;
    // meta: dev, ino, size, mtime, ctime (8 bytes each, little-endian).
    const size = type === "file"
      ? Number(new DataView(rec.meta.buffer, rec.meta.byteOffset + 16, 8).getBigUint64(0, true))
      : 0;
    yield { path: rec.parts.join("/"), type, size };
  }
}
