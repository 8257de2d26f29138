/**
 * `streamSegments`: a backup's segments passed on as the storage delivers them, each one's size and SHA-256
 * checked when it ends. For readers that keep nothing of what they read until the stream ended (`frost ls`
 * replays the chain on a tree in memory and prints it only afterwards): no segment is held whole (32 MiB),
 * where `readSegments` holds each one until it is checked.
 * @module
 */
import { createHash, type Hash } from "node:crypto";
import { NotFoundError, type Storage, StorageError } from "../storage/storage.ts";
import type { SegmentRef } from "../series/manifest.ts";
import { FrostError, messageOf } from "../base/errors.ts";

/** A stream of segment bytes whose checks trail them, and how to wait for the check of the segment under way. */
export interface StreamedSegments {
  /**
   * The bytes of the segments, in order; it errors (naming the object) at the end of a segment whose size or
   * SHA-256 differs from the manifest, after its bytes were passed on.
   */
  stream: ReadableStream<Uint8Array>;
  /**
   * When the reader failed on the bytes (a corrupt segment may not decode): reads the rest of the segment
   * under way and rejects with its size or checksum error if it has one, so that the reader reports the
   * corrupt object rather than what it made of it. Resolves when that segment is good, could not be read
   * to its end, or none was under way; the stream is cancelled either way.
   */
  settle(): Promise<void>;
}

/**
 * The bytes of `segments` from `storage` (one storage: a segment cannot be read again from another one once
 * its first bytes were passed on), each segment checked at its end. A storage that is down when a segment
 * is opened is asked once more as a last resort, as `readSegments` does.
 */
export function streamSegments(
  storage: Storage,
  segments: readonly SegmentRef[],
  options: { signal?: AbortSignal } = {},
): StreamedSegments {
  const { signal } = options;
  let next = 0;
  let cancelled = false;
  /** The size or checksum error of a segment, once one was found. */
  let failed: FrostError | undefined;
  let current:
    | { ref: SegmentRef; reader: ReadableStreamDefaultReader<Uint8Array>; hash: Hash; size: number }
    | undefined;
  const readError = (ref: SegmentRef, err: unknown) =>
    err instanceof NotFoundError
      ? new FrostError(`Cannot read segment "${ref.key}": it is missing from ${storage.url}`, { cause: err })
      : new FrostError(`Cannot read segment "${ref.key}": ${messageOf(err)}`, { cause: err });
  const open = async (ref: SegmentRef) => {
    let stream: ReadableStream<Uint8Array>;
    try {
      stream = await storage.get(ref.key, { signal });
    } catch (err) {
      if (signal?.aborted || !(err instanceof StorageError && err.retriable)) throw readError(ref, err);
      try {
        stream = await storage.get(ref.key, { signal, lastResort: true });
      } catch (again) {
        throw readError(ref, again);
      }
    }
    current = { ref, reader: stream.getReader(), hash: createHash("sha256"), size: 0 };
  };
  /** The next chunk of the segment under way (its size checked), or null at its end (all of it checked). */
  const read = async (): Promise<Uint8Array | null> => {
    const c = current!;
    let r: ReadableStreamReadResult<Uint8Array>;
    try {
      r = await c.reader.read();
    } catch (err) {
      throw readError(c.ref, err);
    }
    if (r.done) {
      current = undefined;
      if (c.size !== c.ref.size) {
        throw failed = new FrostError(
          `Cannot read segment "${c.ref.key}": it holds ${c.size} bytes, the manifest says ${c.ref.size}`,
        );
      }
      if (c.hash.digest("hex") !== c.ref.sha256) {
        throw failed = new FrostError(
          `Cannot read segment "${c.ref.key}": checksum mismatch (the object is corrupt)`,
        );
      }
      return null;
    }
    c.size += r.value.byteLength;
    if (c.size > c.ref.size) {
      throw failed = new FrostError(
        `Cannot read segment "${c.ref.key}": it holds more than ${c.ref.size} bytes, the manifest says ${c.ref.size}`,
      );
    }
    c.hash.update(r.value);
    return r.value;
  };
  const drop = () => {
    const c = current;
    current = undefined;
    next = segments.length;
    c?.reader.cancel().catch(() => {});
  };
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        for (;;) {
          if (!current) {
            if (next >= segments.length) return controller.close();
            await open(segments[next++]!);
          }
          const chunk = await read();
          // Cancelled meanwhile: the chunk is hashed, and `settle` reads on from there.
          if (cancelled) return;
          if (chunk) return controller.enqueue(chunk);
        }
      } catch (err) {
        if (!cancelled) drop();
        throw err;
      }
    },
    // The segment under way stays open for `settle`.
    cancel() {
      cancelled = true;
      next = segments.length;
    },
  }, new CountQueuingStrategy({ highWaterMark: 0 }));
  const settle = async () => {
    cancelled = true;
    try {
      while (current && await read() !== null) {
        // to the segment's end: its checks throw
      }
    } catch {
      // `failed` says whether it was the segment; a read error leaves the reader's own error standing.
    } finally {
      drop();
    }
    if (failed) throw failed;
  };
  return { stream, settle };
}
