/**
 * The restore side of the segments: `readSegments`, each segment read and its size and SHA-256 checked.
 * @module
 */
import type { ReadsInPlace, Storage } from "../storage/storage.ts";
import { canReadInPlace, NotFoundError, StorageError } from "../storage/storage.ts";
import { standbyOf, storagesOf } from "../storage/multi.ts";
import type { SegmentRef } from "../series/manifest.ts";
import { FrostError, messageOf } from "../base/errors.ts";
import { sha256InPlace, StreamSha256 } from "../codec/hashing.ts";

import { BufferPool } from "./buffer_pool.ts";

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
  const sources = storagesOf(storage);
  const standby = standbyOf(storage);
  // A storage that is down is skipped while another is up; it is waited for only when no other has the segment.
  const fetchOne = async (ref: SegmentRef): Promise<Uint8Array[]> => {
    let failure: unknown;
    const down: Storage[] = [];
    for (const source of sources) {
      try {
        return await fetchFrom(source, ref);
      } catch (err) {
        failure ??= err;
        if (options.signal?.aborted) throw failure;
        if (err instanceof FrostError && err.cause instanceof StorageError && err.cause.retriable) {
          down.push(source);
        }
      }
    }
    for (const source of [...down, ...standby]) {
      try {
        return await fetchFrom(source, ref, true);
      } catch (err) {
        if (options.signal?.aborted) break;
        // "missing" from a storage that was down says less than the first storage's own failure.
        if (!(err instanceof FrostError && err.cause instanceof NotFoundError)) failure = err;
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
  const fetchInto = async (
    storage: Storage & ReadsInPlace,
    ref: SegmentRef,
    pool: BufferPool,
    lastResort: boolean,
  ): Promise<Uint8Array[]> => {
    const buffer = await pool.acquire();
    try {
      let size: number;
      try {
        size = await storage.getInto(ref.key, buffer.subarray(0, ref.size + 1), {
          signal: options.signal,
          lastResort,
        });
      } catch (err) {
        throw readError(storage, ref, err);
      }
      if (size !== ref.size) throw size > ref.size ? sizeError(ref, ref.size, true) : sizeError(ref, size);
      const bytes = buffer.subarray(0, size);
      // node:crypto hashes in place (WebCrypto would copy the segment first): on the hashing worker for a
      // large segment in a shared buffer (Bun), else here.
      if (await sha256InPlace(bytes) !== ref.sha256) throw corrupt(ref);
      // In pieces, so that the reader's backpressure works within a segment.
      return pool.split(bytes, PIECE_SIZE);
    } catch (err) {
      pool.give(buffer);
      throw err;
    }
  };
  // The segment is kept as the chunks the storage delivered, hashed as they arrive: no 32 MiB copy.
  const fetchFrom = async (storage: Storage, ref: SegmentRef, lastResort = false): Promise<Uint8Array[]> => {
    if (pool && canReadInPlace(storage) && ref.size < pool.size) {
      return await fetchInto(storage, ref, pool, lastResort);
    }
    const hash = new StreamSha256({ size: ref.size });
    let size = 0;
    try {
      try {
        for await (const chunk of await storage.get(ref.key, { signal: options.signal, lastResort })) {
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
