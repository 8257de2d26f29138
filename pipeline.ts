/**
 * Where engine and storage meet: the backup and restore data flows of DESIGN.md.
 *
 * Backup:  engine stream → compressor → segmenter → storage writer (CountQueuingStrategy(queueSize)),
 *          and the same for the engine state, concurrently; then the manifest, last.
 * Restore: per chain member, oldest first: segments (SHA-256 checked) → decompressor → engine.restore().
 * @module
 */
import { createHash } from "node:crypto";
import type { Storage } from "./storage/storage.ts";
import { NotFoundError } from "./storage/storage.ts";
import { MultiStorage } from "./storage/multi.ts";
import type { Engine, Progress, RestoreOptions, RestoreStats, Warning } from "./engines/engine.ts";
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
import { createDecryptor, createEncryptor, type DataKey, sealText, streamId } from "./encryption.ts";
import type { BackupKeys } from "./backup_keys.ts";

/**
 * Reusable segment buffers: a stored segment's buffer goes back to the pool and is filled again, so a backup
 * of any size allocates only a few segments' worth of memory (instead of leaving the garbage collector one
 * dead 32 MiB buffer per segment).
 */
export class BufferPool {
  readonly #free: Uint8Array[] = [];
  constructor(readonly size: number, readonly keep = 4) {}
  /** A buffer of `size` bytes (contents undefined). */
  take(): Uint8Array {
    return this.#free.pop() ?? new Uint8Array(this.size);
  }
  /** Returns a buffer once nothing refers to it any more; others are left to the garbage collector. */
  give(buffer: Uint8Array): void {
    if (buffer.byteOffset === 0 && buffer.buffer.byteLength === this.size && this.#free.length < this.keep) {
      this.#free.push(new Uint8Array(buffer.buffer, 0, this.size));
    }
  }
}

/**
 * Cuts a byte stream into pieces of exactly `size` bytes (the last one shorter), copying each chunk into the
 * segment being filled at once so that no chunk is held longer than needed. With a `pool`, full-size
 * segments come from it; a stream that ends before filling its first segment gets a right-sized copy.
 */
export class Segmenter extends TransformStream<Uint8Array, Uint8Array> {
  constructor(size: number, pool?: BufferPool) {
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
      },
      flush(controller) {
        if (filled > 0) controller.enqueue(current!.subarray(0, filled));
        current = null;
      },
    });
  }
}

/** SHA-256 of bytes, hex. WebCrypto runs it off the main thread in Deno and Bun. */
async function sha256(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
  let hex = "";
  for (const b of digest) hex += b.toString(16).padStart(2, "0");
  return hex;
}

/**
 * A WritableStream of segments over a storage. Each segment is hashed and uploaded; up to `queueSize` uploads
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
    },
  ) {
    const refs: SegmentRef[] = [];
    const inFlight = new Set<Promise<void>>();
    let failure: { error: unknown } | null = null;
    const upload = async (n: number, segment: Uint8Array) => {
      const key = keyOf(n);
      const [hash] = await Promise.all([
        sha256(segment),
        storage.put(key, segment, { signal: options.signal }),
      ]);
      refs[n] = { key, size: segment.byteLength, sha256: hash };
      options.onStored?.(segment.byteLength);
      options.pool?.give(segment);
    };
    const settle = async (limit: number) => {
      while (inFlight.size > limit && !failure) await Promise.race(inFlight);
      if (failure) throw failure.error;
    };
    let next = 0;
    super({
      async write(segment) {
        const job = upload(next++, segment).then(
          () => void inFlight.delete(job),
          (error) => {
            failure ??= { error };
            inFlight.delete(job);
          },
        );
        inFlight.add(job);
        await settle(options.queueSize - 1);
      },
      async close() {
        await settle(0);
      },
      async abort() {
        await Promise.allSettled(inFlight);
      },
    }, new CountQueuingStrategy({ highWaterMark: 1 }));
    this.refs = refs;
  }
}

/**
 * A ReadableStream of the verified bytes of `segments`, read one segment ahead. A segment whose size or
 * SHA-256 differs from the manifest is never passed on: the stream errors naming the object.
 */
export function readSegments(
  storage: Storage,
  segments: readonly SegmentRef[],
  options: { signal?: AbortSignal; onRead?: (bytes: number) => void } = {},
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
  // The segment is kept as the chunks the storage delivered, hashed as they arrive: no 32 MiB copy.
  const fetchFrom = async (storage: Storage, ref: SegmentRef): Promise<Uint8Array[]> => {
    const chunks: Uint8Array[] = [];
    const hash = createHash("sha256");
    let size = 0;
    try {
      for await (const chunk of await storage.get(ref.key, { signal: options.signal })) {
        size += chunk.byteLength;
        if (size > ref.size) break;
        hash.update(chunk);
        chunks.push(chunk);
      }
    } catch (err) {
      if (err instanceof NotFoundError) {
        throw new FrostError(`Cannot read segment "${ref.key}": it is missing from ${storage.url}`, {
          cause: err,
        });
      }
      throw new FrostError(`Cannot read segment "${ref.key}": ${messageOf(err)}`, { cause: err });
    }
    if (size !== ref.size) {
      throw new FrostError(
        `Cannot read segment "${ref.key}": it holds ${size > ref.size ? "more than " : ""}${size} bytes, ` +
          `the manifest says ${ref.size}`,
      );
    }
    if (hash.digest("hex") !== ref.sha256) {
      throw new FrostError(`Cannot read segment "${ref.key}": checksum mismatch (the object is corrupt)`);
    }
    return chunks;
  };
  let next = 0;
  let ahead: Promise<Uint8Array[]> | null = null;
  const start = () => {
    const ref = segments[next++];
    if (!ref) return null;
    const job = fetchOne(ref);
    job.catch(() => {}); // surfaces when awaited in pull()
    return job;
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const current = ahead ?? start();
      if (!current) {
        controller.close();
        return;
      }
      const chunks = await current;
      ahead = start();
      for (const chunk of chunks) {
        options.onRead?.(chunk.byteLength);
        controller.enqueue(chunk);
      }
      if (!ahead) controller.close();
    },
    cancel() {
      ahead = null;
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
  signal?: AbortSignal;
  frostVersion: string;
  onProgress?: (progress: Progress & { stored: number }) => void;
  onWarning?: (warning: Warning) => void;
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
    signal,
    onProgress: (p) => {
      last = p;
      job.onProgress?.({ ...p, stored });
    },
    onWarning: job.onWarning,
  });
  const pool = new BufferPool(job.segmentSize, job.queueSize + 2);
  const dataWriter = new SegmentWriter(job.storage, (n) => segmentKey(series, job.id, "data", n), {
    queueSize: job.queueSize,
    signal,
    pool,
    onStored: (bytes) => {
      stored += bytes;
      job.onProgress?.({ ...last, stored });
    },
  });
  const stateWriter = new SegmentWriter(job.storage, (n) => segmentKey(series, job.id, "state", n), {
    queueSize: job.queueSize,
    signal,
  });
  const flows = [
    encode(run.stream, job, "data").pipeThrough(new Segmenter(job.segmentSize, pool)).pipeTo(dataWriter, {
      signal,
    }),
    encode(run.state, job, "state").pipeThrough(new Segmenter(job.segmentSize)).pipeTo(stateWriter, {
      signal,
    }),
    run.done,
  ];
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
      encryption: job.keys ? await job.keys.manifest : null,
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
): ReadableStream<Uint8Array> {
  const compressed = stream.pipeThrough(createCompressor(job.compression));
  if (!job.keys) return compressed;
  const key = kind === "data" ? job.keys.dataKey : job.keys.stateKey;
  return compressed.pipeThrough(createEncryptor(key, streamId(job.id, kind)));
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

/** Verified segment bytes → (decrypted) → decompressed: the engine's bytes again. */
function decode(
  segments: ReadableStream<Uint8Array>,
  manifest: Manifest,
  kind: "data" | "state",
  key: DataKey | null,
): ReadableStream<Uint8Array> {
  if (manifest.encryption && !key) {
    throw new FrostError(
      `Cannot read the ${kind} of backup "${manifest.id}": it is encrypted and no key was given`,
    );
  }
  const plain = key
    ? segments.pipeThrough(
      createDecryptor(key, streamId(manifest.id, kind), { label: `the ${kind} of backup "${manifest.id}"` }),
    )
    : segments;
  return plain.pipeThrough(createDecompressor(manifest.compression));
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
  /** Partial restore: the entries to restore (`RestoreOptions.select`). Default: all. */
  select?: RestoreOptions["select"];
  signal?: AbortSignal;
  onProgress?: (progress: Progress & { level: number; read: number }) => void;
  onWarning?: (warning: Warning) => void;
}

/** Applies every backup of a chain to the target, oldest first. */
export async function runRestore(job: RestoreJob): Promise<RestoreStats> {
  const total: RestoreStats = { files: 0, bytes: 0, deleted: 0 };
  let read = 0;
  for (const manifest of job.chain) {
    const engine = job.engines(manifest.engine);
    let last: Progress = { files: 0, bytes: 0 };
    const run = engine.restore(job.target, {
      select: job.select,
      signal: job.signal,
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
    const segments = readSegments(job.storage, manifest.segments, {
      signal: job.signal,
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
    const flow = decode(segments, manifest, "data", job.keys?.get(manifest.id) ?? null).pipeTo(run.writable, {
      signal: job.signal,
    });
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
