/**
 * Where engine and storage meet: the backup and restore data flows of DESIGN.md.
 *
 * Backup:  engine stream → compressor → segmenter → storage writer (CountQueuingStrategy(queueSize)),
 *          and the same for the engine state, concurrently; then the manifest, last. A storage that takes
 *          objects in pieces (`openPut`, local folders) gets each segment as it is produced, so no
 *          segment is ever held whole in memory; the others get whole segments from a BufferPool.
 * Restore: per chain member, oldest first: segments (SHA-256 checked) → decompressor → engine.restore().
 * @module
 */
import { createHash } from "node:crypto";
import type { PutStream, Storage } from "./storage/storage.ts";
import { NotFoundError } from "./storage/storage.ts";
import { MultiStorage } from "./storage/multi.ts";
import type {
  Engine,
  EngineTimes,
  Progress,
  RestoreOptions,
  RestoreStats,
  Warning,
} from "./engines/engine.ts";
import type { Compression } from "./compression.ts";
import { createCompressor, createDecompressor } from "./compression.ts";
import type { Manifest, SegmentRef } from "./manifest.ts";
import {
  backupPrefix,
  encodeManifest,
  MANIFEST_FORMAT,
  MANIFEST_VERSION,
  manifestKey,
  segmentKey,
  seriesName,
} from "./manifest.ts";
import { AbortedError, FrostError, messageOf } from "./errors.ts";
import {
  createDecryptor,
  createEncryptor,
  type DataKey,
  decryptorGivesBack,
  sealText,
  streamId,
} from "./encryption.ts";
import type { BackupKeys } from "./backup_keys.ts";
import { hashableBuffer, hashLeavesBuffer, type MovedHash, sha256Moving, StreamSha256 } from "./hashing.ts";

/**
 * Reusable segment buffers: a stored segment's buffer goes back to the pool and is filled again, so a backup
 * of any size allocates only a few segments' worth of memory (instead of leaving the garbage collector one
 * dead 32 MiB buffer per segment).
 */
export class BufferPool {
  readonly #free: Uint8Array[] = [];
  readonly #mine = new WeakSet<ArrayBufferLike>();
  readonly #waiting: ((buffer: Uint8Array) => void)[] = [];
  /** Buffers handed out in several pieces (`split`): pieces not given back yet. */
  readonly #pieces = new WeakMap<ArrayBufferLike, number>();
  #made = 0;
  /** `hashable`: buffers come from `hashableBuffer` (segments to be hashed while they are stored). */
  constructor(readonly size: number, readonly keep = 4, readonly hashable = false) {}
  /** A buffer of `size` bytes (contents undefined). */
  take(): Uint8Array {
    const free = this.#free.pop();
    if (free) return free;
    const buffer = this.hashable ? hashableBuffer(this.size) : new Uint8Array(this.size);
    this.#mine.add(buffer.buffer);
    this.#made++;
    return buffer;
  }
  /**
   * A buffer, waiting for one to be given back once `keep` exist: memory stays at `keep` buffers. Only for
   * readers that give every buffer back (or stop).
   */
  acquire(): Promise<Uint8Array> {
    if (this.#free.length > 0 || this.#made < this.keep) return Promise.resolve(this.take());
    return new Promise((resolve) => this.#waiting.push(resolve));
  }
  /**
   * Returns a buffer (or a view from its start) once nothing refers to it any more; buffers that `take()`
   * did not make are ignored, and extra ones are left to the garbage collector.
   */
  give(buffer: Uint8Array): void {
    if (!this.#mine.has(buffer.buffer)) return;
    const pieces = this.#pieces.get(buffer.buffer);
    if (pieces !== undefined) {
      if (pieces > 1) return void this.#pieces.set(buffer.buffer, pieces - 1);
      this.#pieces.delete(buffer.buffer);
    } else if (buffer.byteOffset !== 0) return;
    const whole = new Uint8Array(buffer.buffer, 0, this.size);
    const waiter = this.#waiting.shift();
    if (waiter) waiter(whole);
    else if (this.#free.length < this.keep) this.#free.push(whole);
  }
  /**
   * `sha256Moving(bytes)` for a view of one of this pool's buffers: the buffer that comes back (a new
   * object under Bun) stays the pool's.
   */
  async moving(bytes: Uint8Array): Promise<MovedHash> {
    const mine = this.#mine.has(bytes.buffer);
    const moved = await sha256Moving(bytes);
    if (mine) this.#mine.add(moved.bytes.buffer);
    return moved;
  }
  /**
   * Cuts `bytes` (a view of one of this pool's buffers) into views of at most `size` bytes; the buffer
   * returns to the pool once every piece has been given back.
   */
  split(bytes: Uint8Array, size: number): Uint8Array[] {
    const pieces: Uint8Array[] = [];
    for (let o = 0; o < bytes.byteLength; o += size) pieces.push(bytes.subarray(o, o + size));
    if (pieces.length > 1) this.#pieces.set(bytes.buffer, pieces.length);
    return pieces;
  }
}

/**
 * Cuts a byte stream into pieces of exactly `size` bytes (the last one shorter), copying each chunk into the
 * segment being filled at once so that no chunk is held longer than needed. With a `pool`, full-size
 * segments come from it; a stream that ends before filling its first segment gets a right-sized copy.
 */
export class Segmenter extends TransformStream<Uint8Array, Uint8Array> {
  /** `release` takes back each input chunk once it has been copied. */
  constructor(size: number, pool?: BufferPool, release?: (chunk: Uint8Array) => void) {
    let current: Uint8Array | null = null;
    let filled = 0;
    // Small streams (an engine state) never take a full segment: grow from 1 MiB by doubling.
    let capacity = Math.min(size, 1 << 20);
    const room = (need: number) => {
      if (current && current.byteLength >= Math.min(size, filled + need)) return;
      while (capacity < size && capacity < filled + need) capacity = Math.min(size, capacity * 2);
      const next = capacity === size && pool ? pool.take() : new Uint8Array(capacity);
      if (current) next.set(current.subarray(0, filled));
      current = next;
    };
    super({
      transform(chunk, controller) {
        let offset = 0;
        while (offset < chunk.byteLength) {
          room(chunk.byteLength - offset);
          const n = Math.min(size - filled, chunk.byteLength - offset);
          current!.set(chunk.subarray(offset, offset + n), filled);
          filled += n;
          offset += n;
          if (filled === size) {
            controller.enqueue(current!);
            current = null;
            filled = 0;
          }
        }
        release?.(chunk);
      },
      flush(controller) {
        if (filled > 0) controller.enqueue(current!.subarray(0, filled));
        current = null;
      },
    });
  }
}

/**
 * Storage jobs (puts, commits) in flight: `settle(limit)` waits until at most `limit` are left and throws
 * the first failure of any of them; the time spent waiting goes to `stats.queueWaitMs`.
 */
class InFlight {
  readonly #jobs = new Set<Promise<void>>();
  #failure: { error: unknown } | null = null;
  constructor(private readonly stats?: BackupTimes) {}

  add(job: Promise<void>): void {
    const tracked: Promise<void> = job.then(
      () => void this.#jobs.delete(tracked),
      (error) => {
        this.#failure ??= { error };
        this.#jobs.delete(tracked);
      },
    );
    this.#jobs.add(tracked);
  }

  /** Throws the first failure, if any. */
  check(): void {
    if (this.#failure) throw this.#failure.error;
  }

  async settle(limit: number): Promise<void> {
    const t0 = this.stats ? performance.now() : 0;
    while (this.#jobs.size > limit && !this.#failure) await Promise.race(this.#jobs);
    if (this.stats) this.stats.queueWaitMs += performance.now() - t0;
    this.check();
  }

  /** Waits for every job to end, failed or not. */
  async drain(): Promise<void> {
    await Promise.allSettled(this.#jobs);
  }
}

/**
 * A WritableStream of segments over a storage; it takes each segment it is given. Each segment is uploaded
 * and hashed: while it is stored when the hash leaves it readable (Deno; a pool's shared buffers under Bun),
 * else (other buffers under Bun) it moves to the hashing thread and back once stored. Up to `queueSize` uploads
 * run at once (so a high-latency store, or a local disk's fsync, is not waited for serially), and a write
 * resolves only once fewer than `queueSize` are in flight, so memory stays near (queueSize + 2) segments and
 * backpressure reaches the engine. `refs` lists what was stored, in stream order.
 */
export class SegmentWriter extends WritableStream<Uint8Array> {
  readonly refs: SegmentRef[] = [];
  constructor(
    storage: Storage,
    keyOf: (n: number) => string,
    options: {
      queueSize: number;
      signal?: AbortSignal;
      onStored?: (bytes: number) => void;
      pool?: BufferPool;
      stats?: BackupTimes;
    },
  ) {
    const refs: SegmentRef[] = [];
    const stats = options.stats;
    const jobs = new InFlight(stats);
    const upload = async (n: number, segment: Uint8Array) => {
      const key = keyOf(n);
      const size = segment.byteLength; // (`segment` is detached once moved)
      const t0 = stats ? performance.now() : 0;
      const hash = () => options.pool?.moving(segment) ?? sha256Moving(segment);
      let moved: MovedHash;
      let storeMs: number;
      if (storage.putHashes) {
        // The storage would hash the bytes itself (S3's signed payload): hash first and hand it the hash.
        moved = await hash();
        const t1 = stats ? performance.now() : 0;
        await storage.put(key, moved.bytes, { signal: options.signal, sha256: moved.hex });
        storeMs = stats ? performance.now() - t1 : 0;
        if (stats) stats.hash.ms += t1 - t0;
      } else {
        // The hash runs beside the put when it leaves the segment readable: WebCrypto (Deno) copies it, and
        // under Bun a shared buffer (the pool's) is hashed in place. Other buffers move to the hashing thread
        // and back once stored (a put keeps no reference once resolved).
        const early = hashLeavesBuffer(segment) ? hash() : null;
        early?.catch(() => {}); // awaited below, unless the put fails first
        await storage.put(key, segment, { signal: options.signal });
        const t1 = stats ? performance.now() : 0;
        moved = await (early ?? hash());
        storeMs = t1 - t0;
        if (stats) stats.hash.ms += performance.now() - t1;
      }
      if (stats) {
        stats.hash.bytes += size;
        stats.store.ms += storeMs;
        stats.store.bytes += size;
        stats.store.objects++;
      }
      refs[n] = { key, size, sha256: moved.hex };
      options.onStored?.(size);
      options.pool?.give(moved.bytes);
    };
    let next = 0;
    super({
      async write(segment) {
        jobs.add(upload(next++, segment));
        await jobs.settle(options.queueSize - 1);
      },
      async close() {
        await jobs.settle(0);
      },
      async abort() {
        await jobs.drain();
      },
    }, new CountQueuingStrategy({ highWaterMark: 1 }));
    this.refs = refs;
  }
}

/**
 * A WritableStream that cuts a byte stream into segments of `size` bytes (the last one shorter) and writes
 * each one to the storage as its bytes arrive (`Storage.openPut`), hashing them on the way: memory holds
 * no segment, only the chunk being written. A segment is committed once full, in the background; up to
 * `queueSize` segments are in flight (the one being written and the ones committing), and a write resolves
 * only when there is room, so backpressure reaches the engine. `refs` lists what was stored, in order.
 */
export class StreamingSegmentWriter extends WritableStream<Uint8Array> {
  readonly refs: SegmentRef[] = [];
  constructor(
    storage: Storage & Required<Pick<Storage, "openPut">>,
    keyOf: (n: number) => string,
    size: number,
    options: {
      queueSize: number;
      signal?: AbortSignal;
      onStored?: (bytes: number) => void;
      stats?: BackupTimes;
      /** Takes back each chunk once it has been written. */
      release?: (chunk: Uint8Array) => void;
    },
  ) {
    const refs: SegmentRef[] = [];
    type Open = { n: number; key: string; put: PutStream; hash: ReturnType<typeof createHash>; size: number };
    let current: Open | null = null;
    let next = 0;
    const stats = options.stats;
    const jobs = new InFlight(stats);
    const commit = async (segment: Open) => {
      const t0 = stats ? performance.now() : 0;
      await segment.put.commit();
      if (stats) {
        stats.store.ms += performance.now() - t0;
        stats.store.objects++;
      }
      refs[segment.n] = { key: segment.key, size: segment.size, sha256: segment.hash.digest("hex") };
      options.onStored?.(segment.size);
    };
    super({
      async write(chunk) {
        jobs.check();
        let offset = 0;
        while (offset < chunk.byteLength) {
          if (!current) {
            const n = next++;
            const key = keyOf(n);
            const t0 = stats ? performance.now() : 0;
            const put = await storage.openPut(key, { signal: options.signal });
            if (stats) stats.store.ms += performance.now() - t0;
            current = { n, key, put, hash: createHash("sha256"), size: 0 };
          }
          const n = Math.min(size - current.size, chunk.byteLength - offset);
          const piece = n === chunk.byteLength ? chunk : chunk.subarray(offset, offset + n);
          if (stats) {
            const t0 = performance.now();
            current.hash.update(piece);
            const t1 = performance.now();
            await current.put.write(piece);
            stats.hash.ms += t1 - t0;
            stats.hash.bytes += n;
            stats.store.ms += performance.now() - t1;
            stats.store.bytes += n;
          } else {
            current.hash.update(piece);
            await current.put.write(piece);
          }
          current.size += n;
          offset += n;
          if (current.size === size) {
            const full = current;
            current = null;
            jobs.add(commit(full));
            await jobs.settle(options.queueSize - 1);
          }
        }
        options.release?.(chunk);
      },
      async close() {
        if (current) {
          const last = current;
          current = null;
          jobs.add(commit(last));
        }
        await jobs.settle(0);
      },
      async abort() {
        const open = current;
        current = null;
        await open?.put.abort();
        await jobs.drain();
      },
    }, new CountQueuingStrategy({ highWaterMark: 1 }));
    this.refs = refs;
  }
}

/** Chunk size of segments read whole (readSegments with a pool). */
const PIECE_SIZE = 1 << 20;

/**
 * A ReadableStream of the verified bytes of `segments`, read one segment ahead. A segment whose size or
 * SHA-256 differs from the manifest is never passed on: the stream errors naming the object.
 *
 * With a `pool` whose buffers are bigger than every segment, a storage that can read into a buffer
 * (`getInto`) fills one of them and the segment is passed on in 1 MiB views of it: the reader gives each
 * back to `pool` when done, so that reading allocates nothing per segment. At most `pool.keep` segments are
 * held (the one being read waits for a buffer).
 */
export function readSegments(
  storage: Storage,
  segments: readonly SegmentRef[],
  options: {
    signal?: AbortSignal;
    onRead?: (bytes: number) => void;
    pool?: BufferPool;
    /** How many segments are fetched ahead of the one being passed on (default 1). */
    ahead?: number;
  } = {},
): ReadableStream<Uint8Array> {
  // With several storages, a segment that is missing, unreadable or corrupt on one is read from the next.
  const sources = storage instanceof MultiStorage ? storage.storages : [storage];
  const fetchOne = async (ref: SegmentRef): Promise<Uint8Array[]> => {
    let failure: unknown;
    for (const source of sources) {
      try {
        return await fetchFrom(source, ref);
      } catch (err) {
        failure ??= err;
        if (options.signal?.aborted) break;
      }
    }
    throw failure;
  };
  const pool = options.pool;
  /** `size` bytes were read; more than the manifest's size means "at least that many". */
  const sizeError = (ref: SegmentRef, size: number, more = size > ref.size) =>
    new FrostError(
      `Cannot read segment "${ref.key}": it holds ${more ? "more than " : ""}${size} bytes, ` +
        `the manifest says ${ref.size}`,
    );
  const readError = (storage: Storage, ref: SegmentRef, err: unknown) =>
    err instanceof NotFoundError
      ? new FrostError(`Cannot read segment "${ref.key}": it is missing from ${storage.url}`, { cause: err })
      : new FrostError(`Cannot read segment "${ref.key}": ${messageOf(err)}`, { cause: err });
  const corrupt = (ref: SegmentRef) =>
    new FrostError(`Cannot read segment "${ref.key}": checksum mismatch (the object is corrupt)`);
  /** Into a buffer of the pool, passed on only when it checks out. */
  const fetchInto = async (storage: Storage, ref: SegmentRef, pool: BufferPool): Promise<Uint8Array[]> => {
    const buffer = await pool.acquire();
    try {
      let size: number;
      try {
        size = await storage.getInto!(ref.key, buffer.subarray(0, ref.size + 1), { signal: options.signal });
      } catch (err) {
        throw readError(storage, ref, err);
      }
      if (size !== ref.size) throw size > ref.size ? sizeError(ref, ref.size, true) : sizeError(ref, size);
      const bytes = buffer.subarray(0, size);
      // node:crypto hashes in place; WebCrypto would copy the segment first.
      if (createHash("sha256").update(bytes).digest("hex") !== ref.sha256) throw corrupt(ref);
      // In pieces, so that the reader's backpressure works within a segment.
      return pool.split(bytes, PIECE_SIZE);
    } catch (err) {
      pool.give(buffer);
      throw err;
    }
  };
  // The segment is kept as the chunks the storage delivered, hashed as they arrive: no 32 MiB copy.
  const fetchFrom = async (storage: Storage, ref: SegmentRef): Promise<Uint8Array[]> => {
    if (pool && storage.getInto && ref.size < pool.size) return await fetchInto(storage, ref, pool);
    const hash = new StreamSha256();
    let size = 0;
    try {
      try {
        for await (const chunk of await storage.get(ref.key, { signal: options.signal })) {
          size += chunk.byteLength;
          if (size > ref.size) break;
          hash.push(chunk);
        }
      } catch (err) {
        throw readError(storage, ref, err);
      }
      if (size !== ref.size) throw sizeError(ref, size);
    } catch (err) {
      hash.drop();
      throw err;
    }
    const { hex, chunks } = await hash.end();
    if (hex !== ref.sha256) throw corrupt(ref);
    return chunks;
  };
  let next = 0;
  /** Segments being fetched, in order: the next one to pass on and up to `depth` more. */
  const ahead: Promise<Uint8Array[]>[] = [];
  const depth = Math.max(1, options.ahead ?? 1);
  const fill = (count: number) => {
    while (ahead.length < count && next < segments.length) {
      const job = fetchOne(segments[next++]!);
      job.catch(() => {}); // surfaces when awaited in pull()
      ahead.push(job);
    }
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      fill(depth);
      const current = ahead.shift();
      if (!current) {
        controller.close();
        return;
      }
      const chunks = await current;
      fill(depth);
      for (const chunk of chunks) {
        options.onRead?.(chunk.byteLength);
        controller.enqueue(chunk);
      }
      if (ahead.length === 0) controller.close();
    },
    cancel() {
      ahead.length = 0;
      next = segments.length;
    },
  }, new CountQueuingStrategy({ highWaterMark: 0 }));
}

/** Everything a backup run needs. */
export interface BackupJob {
  storage: Storage;
  engine: Engine;
  /** Absolute source path. */
  source: string;
  hostname: string;
  name: string;
  id: string;
  level: number;
  parent: Manifest | null;
  /** The parent's state key when the parent is encrypted. */
  parentStateKey?: DataKey | null;
  /** This backup's keys; absent for an unencrypted backup. */
  keys?: BackupKeys | null;
  compression: Compression;
  segmentSize: number;
  queueSize: number;
  exclude?: string[];
  crossFileSystems?: boolean;
  /** Store extended attributes and ACLs (`BackupOptions.xattrs`). Default: true. */
  xattrs?: boolean;
  signal?: AbortSignal;
  frostVersion: string;
  onProgress?: (progress: Progress & { stored: number }) => void;
  onWarning?: (warning: Warning) => void;
  /** When given, filled with where the time went (`frost backup --stats`); see `newBackupTimes()`. */
  stats?: BackupTimes;
}

/**
 * Where a backup's time went, for the data stream (the engine state is small and left out). Times are
 * milliseconds; "ms" of a stage is the sum of the durations of its operations, which overlap other stages
 * (and, for compression and storage, each other): compare them with `wallMs`, not with their sum.
 */
export interface BackupTimes {
  wallMs: number;
  /** The engine: walk (readdir/lstat), read (open/read), and all its busy time (`busyMs`). */
  engine: EngineTimes;
  /** Frames: time a worker spent on each (Bun), or from the start of its compression to its result
   * (Deno, where zlib's thread pool runs several at once). */
  compress: { ms: number; bytesIn: number; bytesOut: number };
  /** Encryption, from handing a chunk to the encryptor until it took it; null when not encrypted. */
  encrypt: { ms: number; bytes: number } | null;
  /** SHA-256 of the stored segments. */
  hash: { ms: number; bytes: number };
  /** Writing to the storage: puts, or the writes and commits (fsync, rename) of streamed puts. */
  store: { ms: number; bytes: number; objects: number };
  /** The segment writer waiting for a free slot: segments in flight = queue size (storage backpressure). */
  queueWaitMs: number;
}

/** An empty `BackupTimes`. */
export function newBackupTimes(): BackupTimes {
  return {
    wallMs: 0,
    engine: { walkMs: 0, readMs: 0, readBytes: 0, busyMs: 0, waitMs: 0 },
    compress: { ms: 0, bytesIn: 0, bytesOut: 0 },
    encrypt: null,
    hash: { ms: 0, bytes: 0 },
    store: { ms: 0, bytes: 0, objects: 0 },
    queueWaitMs: 0,
  };
}

/** `BackupTimes` for `--json`: seconds (3 decimals) and bytes per stage. */
export function backupTimesJson(t: BackupTimes): Record<string, unknown> {
  const s = (ms: number) => Math.round(ms) / 1000;
  const e = t.engine;
  return {
    wallSeconds: s(t.wallMs),
    walk: { seconds: s(e.walkMs) },
    read: { seconds: s(e.readMs), bytes: e.readBytes },
    tar: { seconds: s(Math.max(0, e.busyMs - e.walkMs - e.readMs)) },
    engineBusy: { seconds: s(e.busyMs) },
    compress: { seconds: s(t.compress.ms), bytesIn: t.compress.bytesIn, bytesOut: t.compress.bytesOut },
    encrypt: t.encrypt && { seconds: s(t.encrypt.ms), bytes: t.encrypt.bytes },
    hash: { seconds: s(t.hash.ms), bytes: t.hash.bytes },
    store: { seconds: s(t.store.ms), bytes: t.store.bytes, objects: t.store.objects },
    backpressure: { engineWaitSeconds: s(e.waitMs), queueWaitSeconds: s(t.queueWaitMs) },
  };
}

/** `BackupTimes` as a table for people (`frost backup --stats`). */
export function formatBackupTimes(t: BackupTimes): string {
  const e = t.engine;
  const sec = (ms: number) => (ms / 1000).toFixed(2).padStart(7);
  const mb = (bytes: number) => (bytes / 1e6).toFixed(1).padStart(9);
  const rate = (bytes: number, ms: number) =>
    ms > 0 ? `${(bytes / 1e3 / ms).toFixed(0).padStart(6)} MB/s` : "";
  const row = (stage: string, ms: number, bytes?: number, note = "") =>
    (`  ${stage.padEnd(17)}${sec(ms)}${bytes === undefined ? "".padEnd(9) : mb(bytes)}  ` +
      `${bytes === undefined ? "".padEnd(11) : rate(bytes, ms)}${note ? `  ${note}` : ""}`).trimEnd();
  const lines = [
    "where the time went (data stream; stages overlap, so their times add up to more than the wall time):",
    `  ${"stage".padEnd(17)}${"s".padStart(7)}${"MB".padStart(9)}`,
    row("walk", e.walkMs, undefined, "readdir, lstat"),
    row("read", e.readMs, e.readBytes, "open, read"),
    row("tar framing", Math.max(0, e.busyMs - e.walkMs - e.readMs), undefined, "headers, state, bookkeeping"),
    row(
      "compress",
      t.compress.ms,
      t.compress.bytesIn,
      `→ ${(t.compress.bytesOut / 1e6).toFixed(1)} MB; frames overlap`,
    ),
    t.encrypt ? row("encrypt", t.encrypt.ms, t.encrypt.bytes) : "  encrypt                 —",
    row("hash", t.hash.ms, t.hash.bytes, "SHA-256 of the segments"),
    row("store", t.store.ms, t.store.bytes, `${t.store.objects} objects; writes, fsync, rename`),
    row("engine waiting", e.waitMs, undefined, "for compression/storage to take more (backpressure)"),
    row("queue waiting", t.queueWaitMs, undefined, "for segments in flight to be stored"),
    row("wall", t.wallMs),
  ];
  return lines.join("\n");
}

/**
 * Runs one backup: data and state segments first, the manifest last. On any failure (or abort) nothing is
 * committed; the objects this run wrote are deleted as far as possible (leftovers are orphans that
 * `frost remove` cleans), and every earlier backup stays as it was.
 */
export async function runBackup(job: BackupJob): Promise<Manifest> {
  const started = performance.now();
  const series = seriesName(job.hostname, job.name);
  const controller = new AbortController();
  const signal = job.signal ? AbortSignal.any([job.signal, controller.signal]) : controller.signal;
  let stored = 0;
  let last: Progress = { files: 0, bytes: 0 };

  const previous = job.parent
    ? decode(
      readSegments(job.storage, job.parent.state, { signal }),
      job.parent,
      "state",
      job.parentStateKey ?? null,
    )
    : undefined;
  const run = job.engine.backup(job.source, {
    previous,
    exclude: job.exclude,
    crossFileSystems: job.crossFileSystems,
    xattrs: job.xattrs,
    signal,
    onProgress: (p) => {
      last = p;
      job.onProgress?.({ ...p, stored });
    },
    onWarning: job.onWarning,
    stats: job.stats?.engine,
  });
  const onStored = (bytes: number) => {
    stored += bytes;
    job.onProgress?.({ ...last, stored });
  };
  const storage = job.storage;
  const data = encode(run.stream, job, "data", run.recycle);
  const state = encode(run.state, job, "state");
  const release = { data: data.giveBack, state: state.giveBack };
  const dataKey = (n: number) => segmentKey(series, job.id, "data", n);
  const stateKey = (n: number) => segmentKey(series, job.id, "state", n);
  let dataWriter: SegmentWriter | StreamingSegmentWriter;
  let stateWriter: SegmentWriter | StreamingSegmentWriter;
  const flows: Promise<unknown>[] = [];
  if (storage.openPut) {
    const streaming = storage as Storage & Required<Pick<Storage, "openPut">>;
    const options = { queueSize: job.queueSize, signal };
    dataWriter = new StreamingSegmentWriter(streaming, dataKey, job.segmentSize, {
      ...options,
      onStored,
      stats: job.stats,
      release: release.data,
    });
    stateWriter = new StreamingSegmentWriter(streaming, stateKey, job.segmentSize, {
      ...options,
      release: release.state,
    });
    flows.push(data.stream.pipeTo(dataWriter, { signal }), state.stream.pipeTo(stateWriter, { signal }));
  } else {
    const pool = new BufferPool(job.segmentSize, job.queueSize + 2, true);
    dataWriter = new SegmentWriter(storage, dataKey, {
      queueSize: job.queueSize,
      signal,
      pool,
      onStored,
      stats: job.stats,
    });
    stateWriter = new SegmentWriter(storage, stateKey, { queueSize: job.queueSize, signal });
    flows.push(
      data.stream.pipeThrough(new Segmenter(job.segmentSize, pool, release.data)).pipeTo(dataWriter, {
        signal,
      }),
      state.stream.pipeThrough(new Segmenter(job.segmentSize, undefined, release.state)).pipeTo(stateWriter, {
        signal,
      }),
    );
  }
  flows.push(run.done);
  try {
    // allSettled-then-throw: when one flow fails, abort the others and report the first real cause.
    const results = await Promise.allSettled(flows.map((p) =>
      p.catch((err) => {
        controller.abort(err);
        throw err;
      })
    ));
    const failure = results.find((r) => r.status === "rejected") as PromiseRejectedResult | undefined;
    if (failure) throw job.signal?.aborted ? new AbortedError("Backup interrupted") : failure.reason;
    const stats = await run.done;
    const manifest: Manifest = {
      format: MANIFEST_FORMAT,
      version: MANIFEST_VERSION,
      id: job.id,
      name: job.name,
      hostname: job.hostname,
      level: job.level,
      parent: job.parent?.id ?? null,
      chain: job.parent?.chain ?? job.id,
      created: idToIso(job.id),
      engine: job.engine.name,
      compression: job.compression,
      encryption: job.keys ? await job.keys.wrapped() : null,
      source: job.keys ? null : job.source,
      ...job.keys &&
        { sealedSource: await sealText(job.keys.dataKey, streamId(job.id, "manifest"), job.source) },
      frost: job.frostVersion,
      segments: dataWriter.refs,
      state: stateWriter.refs,
      totals: {
        files: stats.files,
        bytesIn: stats.bytes,
        bytesStored: sum(dataWriter.refs),
        stateBytes: sum(stateWriter.refs),
        warnings: stats.warnings,
        seconds: Math.round(performance.now() - started) / 1000,
      },
    };
    if (job.signal?.aborted) throw new AbortedError("Backup interrupted");
    // The commit point.
    await job.storage.put(manifestKey(series, job.id), encodeManifest(manifest));
    if (job.stats) job.stats.wallMs = performance.now() - started;
    return manifest;
  } catch (err) {
    controller.abort(err);
    // A manifest put that failed on one of several storages may have landed on another: un-commit first.
    await job.storage.delete(manifestKey(series, job.id)).catch(() => {});
    await deleteBackupObjects(job.storage, series, job.id).catch(() => {});
    throw err;
  }
}

/** engine bytes → compressed → (encrypted): what is cut into segments. */
function encode(
  stream: ReadableStream<Uint8Array>,
  job: BackupJob,
  kind: "data" | "state",
  recycle?: (chunk: Uint8Array) => void,
): { stream: ReadableStream<Uint8Array>; giveBack?: (chunk: Uint8Array) => void } {
  const stats = kind === "data" ? job.stats : undefined;
  // The compressor's reader gives its chunks back: the segment writer, or the encryptor when encrypting.
  const compressor = createCompressor(job.compression, {
    recycle,
    stats: stats?.compress,
    reuseOutput: true,
  });
  const compressed = stream.pipeThrough(compressor);
  if (!job.keys) return { stream: compressed, giveBack: compressor.giveBack };
  const key = kind === "data" ? job.keys.dataKey : job.keys.stateKey;
  const encryptor = createEncryptor(key, streamId(job.id, kind), { giveBack: compressor.giveBack });
  if (!stats) return { stream: compressed.pipeThrough(encryptor), giveBack: encryptor.giveBack };
  stats.encrypt = { ms: 0, bytes: 0 };
  return { stream: compressed.pipeThrough(timed(encryptor, stats.encrypt)), giveBack: encryptor.giveBack };
}

/**
 * `inner`, adding to `stat` the time from handing each chunk to it until it took the chunk (its transform
 * ran), and the bytes handed. For `--stats` only: one more stream hop per chunk.
 */
function timed(
  inner: TransformStream<Uint8Array, Uint8Array>,
  stat: { ms: number; bytes: number },
): TransformStream<Uint8Array, Uint8Array> {
  const writer = inner.writable.getWriter();
  const reader = inner.readable.getReader();
  let pumped: Promise<void> = Promise.resolve();
  return new TransformStream<Uint8Array, Uint8Array>({
    start(controller) {
      pumped = (async () => {
        for (;;) {
          const r = await reader.read();
          if (r.done) return;
          controller.enqueue(r.value);
        }
      })();
      pumped.catch(() => {});
    },
    async transform(chunk) {
      const t0 = performance.now();
      await writer.write(chunk);
      stat.ms += performance.now() - t0;
      stat.bytes += chunk.byteLength;
    },
    async flush() {
      await writer.close();
      await pumped;
    },
    async cancel(reason) {
      await writer.abort(reason).catch(() => {});
      await reader.cancel(reason).catch(() => {});
    },
  });
}

/** A backup's engine state, read back (checked, decrypted, decompressed). */
export function readState(
  storage: Storage,
  manifest: Manifest,
  key: DataKey | null,
  signal?: AbortSignal,
): ReadableStream<Uint8Array> {
  return decode(readSegments(storage, manifest.state, { signal }), manifest, "state", key);
}

/**
 * A backup's data, read back as a restore reads it (segments read whole into reused buffers, checked,
 * decrypted, decompressed into reused buffers), each chunk handed to `use`, which must be done with it when
 * it returns: memory stays at a segment and a few frames, whatever the size of the backup.
 */
export async function readDataChunks(
  storage: Storage,
  manifest: Manifest,
  key: DataKey | null,
  use: (chunk: Uint8Array) => void,
  signal?: AbortSignal,
): Promise<void> {
  const pool = segmentPool(manifest, key);
  const segments = readSegments(storage, manifest.segments, { signal, pool, ahead: 1 });
  const decoded = decodeReusing(segments, manifest, "data", key, pool, true);
  for await (const chunk of decoded.stream) {
    use(chunk);
    decoded.giveBack?.(chunk);
  }
}

/** Verified segment bytes → (decrypted) → decompressed: the engine's bytes again. */
function decode(
  segments: ReadableStream<Uint8Array>,
  manifest: Manifest,
  kind: "data" | "state",
  key: DataKey | null,
): ReadableStream<Uint8Array> {
  return decodeReusing(segments, manifest, kind, key).stream;
}

/**
 * `decode`, reusing buffers: segment buffers from `pool` (see readSegments) go back to it once decompressed,
 * and with `reuseOutput` the reader hands each output chunk back through `giveBack` when done with it.
 */
function decodeReusing(
  segments: ReadableStream<Uint8Array>,
  manifest: Manifest,
  kind: "data" | "state",
  key: DataKey | null,
  pool?: BufferPool,
  reuseOutput = false,
): { stream: ReadableStream<Uint8Array>; giveBack?: (chunk: Uint8Array) => void } {
  if (manifest.encryption && !key) {
    throw new FrostError(
      `Cannot read the ${kind} of backup "${manifest.id}": it is encrypted and no key was given`,
    );
  }
  const give = pool && ((chunk: Uint8Array) => pool.give(chunk));
  const plain = key
    ? segments.pipeThrough(
      createDecryptor(key, streamId(manifest.id, kind), {
        label: `the ${kind} of backup "${manifest.id}"`,
        giveBack: give,
      }),
    )
    : segments;
  const recycle = key ? undefined : give;
  const decompressor = createDecompressor(manifest.compression, { recycle, reuseOutput });
  return { stream: plain.pipeThrough(decompressor), giveBack: decompressor.giveBack };
}

/**
 * `stream.pipeTo(writable)` for a writable that is done with each chunk once its write resolved: then each
 * chunk goes back through `giveBack`.
 */
async function pipeGivingBack(
  stream: ReadableStream<Uint8Array>,
  writable: WritableStream<Uint8Array>,
  giveBack: (chunk: Uint8Array) => void,
  signal?: AbortSignal,
): Promise<void> {
  const reader = stream.getReader();
  const writer = writable.getWriter();
  const onAbort = () => {
    reader.cancel(signal!.reason).catch(() => {});
    writer.abort(signal!.reason).catch(() => {});
  };
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    signal?.throwIfAborted();
    for (;;) {
      const r = await reader.read();
      if (r.done) break;
      await writer.write(r.value);
      giveBack(r.value);
      signal?.throwIfAborted();
    }
    await writer.close();
  } catch (err) {
    await writer.abort(err).catch(() => {});
    await reader.cancel(err).catch(() => {});
    throw err;
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
}

/**
 * Buffers for reading a backup's segments whole (see readSegments), when what reads them gives them back:
 * the zstd decompressor does, the decryptor and the others do not.
 */
function segmentPool(manifest: Manifest, key: DataKey | null): BufferPool | undefined {
  // Segment buffers come back from the decompressor, or from the decryptor where it gives them back.
  if (
    (key && !decryptorGivesBack(key)) || manifest.compression !== "zstd" || manifest.segments.length === 0
  ) {
    return undefined;
  }
  const largest = manifest.segments.reduce((n, s) => Math.max(n, s.size), 0);
  // One segment: the next one is read once the decompressor is done with it. Reading ahead into a
  // second buffer was no faster from a local disk (2.3-2.7 s either way for 1 GiB) and cost 32 MiB.
  return new BufferPool(largest + 1, 1);
}

function sum(refs: readonly SegmentRef[]): number {
  return refs.reduce((n, r) => n + r.size, 0);
}

/** `20261127T101500.123Z` → `2026-11-27T10:15:00.123Z`. */
export function idToIso(id: string): string {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})\.(\d{3})Z$/.exec(id);
  if (!m) throw new FrostError(`Invalid backup id "${id}"`);
  return `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}.${m[7]}Z`;
}

/** Deletes a backup's data and state objects (not its manifest). */
export async function deleteBackupObjects(storage: Storage, series: string, id: string): Promise<number> {
  const keys: string[] = [];
  for await (const info of storage.list(backupPrefix(series, id))) keys.push(info.key);
  for (const key of keys) await storage.delete(key);
  return keys.length;
}

/** Everything a restore run needs. */
export interface RestoreJob {
  storage: Storage;
  engines: (name: string) => Engine;
  /** The chain, oldest (level 0) first. */
  chain: readonly Manifest[];
  /** The data keys of the chain's encrypted backups, by id (unwrapped before anything is written). */
  keys?: ReadonlyMap<string, DataKey>;
  /** An existing directory. */
  target: string;
  /**
   * Segments downloaded at once from a storage that cannot read in place (the remote ones); default 2. Each
   * one held costs up to a segment of memory.
   */
  queueSize?: number;
  /** Partial restore: the entries to restore (`RestoreOptions.select`). Default: all. */
  select?: RestoreOptions["select"];
  /** Restore extended attributes and ACLs (`RestoreOptions.xattrs`). Default: true. */
  xattrs?: boolean;
  /** Make device nodes (`RestoreOptions.devices`). Default: true. */
  devices?: boolean;
  signal?: AbortSignal;
  onProgress?: (progress: Progress & { level: number; read: number }) => void;
  onWarning?: (warning: Warning) => void;
}

/** Applies every backup of a chain to the target, oldest first. */
export async function runRestore(job: RestoreJob): Promise<RestoreStats> {
  const total: RestoreStats = { files: 0, bytes: 0, deleted: 0 };
  let read = 0;
  // Each level hands the next what the chain held, so that only the chain's own deletions are replayed.
  const memo = new Map<string, unknown>();
  // Each kind of xattr the kernel refuses is reported once for the whole chain.
  const xattrsRefused = new Set<string>();
  for (const manifest of job.chain) {
    const engine = job.engines(manifest.engine);
    let last: Progress = { files: 0, bytes: 0 };
    const key = job.keys?.get(manifest.id) ?? null;
    const run = engine.restore(job.target, {
      select: job.select,
      memo,
      xattrs: job.xattrs,
      xattrsRefused,
      devices: job.devices,
      signal: job.signal,
      // zstd output buffers are handed back and filled again; encrypted streams are left out too (not checked
      // for reuse), so chunks are kept (written behind) only for unencrypted none/gzip data.
      keepsChunks: !key && manifest.compression !== "zstd",
      onProgress: (p) => {
        last = p;
        job.onProgress?.({
          files: total.files + p.files,
          bytes: total.bytes + p.bytes,
          level: manifest.level,
          read,
        });
      },
      onWarning: job.onWarning,
    });
    const pool = segmentPool(manifest, key);
    const segments = readSegments(job.storage, manifest.segments, {
      signal: job.signal,
      pool,
      // A storage that reads in place (a local folder) reads one segment ahead into the pool; remote
      // downloads are kept `queueSize` at once, as a backup keeps its uploads.
      ahead: job.storage.getInto ? 1 : job.queueSize ?? 2,
      onRead: (bytes) => {
        read += bytes;
        job.onProgress?.({
          files: total.files + last.files,
          bytes: total.bytes + last.bytes,
          level: manifest.level,
          read,
        });
      },
    });
    const decoded = decodeReusing(segments, manifest, "data", key, pool, run.releasesChunks === true);
    const flow = decoded.giveBack
      ? pipeGivingBack(decoded.stream, run.writable, decoded.giveBack, job.signal)
      : decoded.stream.pipeTo(run.writable, { signal: job.signal });
    const [flowResult, doneResult] = await Promise.allSettled([flow, run.done]);
    if (flowResult.status === "rejected" || doneResult.status === "rejected") {
      if (job.signal?.aborted) throw new AbortedError("Restore interrupted");
      const reason = flowResult.status === "rejected"
        ? flowResult.reason
        : (doneResult as PromiseRejectedResult).reason;
      if (reason instanceof FrostError) throw reason;
      throw new FrostError(
        `Cannot restore backup "${manifest.id}" (level ${manifest.level}): ${messageOf(reason)}`,
        { cause: reason },
      );
    }
    const stats = doneResult.value;
    total.files += stats.files;
    total.bytes += stats.bytes;
    total.deleted += stats.deleted;
  }
  return total;
}
