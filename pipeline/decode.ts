/**
 * A stored stream decoded: `openStream` turns a backup's verified segment bytes back into the engine's bytes
 * ((decrypt) → decompress). The restore, the next level's backup (its parent's state), `ls` and `verify`
 * all read through it.
 * @module
 */
import type { Storage } from "../storage/storage.ts";
import { createDecompressor } from "../codec/compression.ts";
import type { Manifest } from "../series/manifest.ts";
import { FrostError } from "../base/errors.ts";
import type { GiveBack } from "../base/bytes.ts";
import type { SkipPlan } from "../base/skip.ts";
import { createDecryptor, type DataKey, decryptorGivesBack, streamId } from "../codec/encryption.ts";

import { BufferPool } from "./buffer_pool.ts";
import { readSegments } from "./segment_reader.ts";
import { streamSegments } from "./segment_stream.ts";
import { standbyOf, storagesOf } from "../storage/multi.ts";

/** A backup's engine state, read back (checked, decrypted, decompressed). */
export function readState(
  storage: Storage,
  manifest: Manifest,
  key: DataKey | null,
  signal?: AbortSignal,
): ReadableStream<Uint8Array> {
  return openStream(readSegments(storage, manifest.state, { signal }), manifest, "state", key).stream;
}

/**
 * A backup's data, read back (segments checked, decrypted, decompressed into reused buffers), each chunk
 * handed to `use`, which must be done with it when it returns and must keep nothing of what it made of the
 * chunks when this rejects: from one storage a segment's bytes reach `use` before its checks at its end
 * (`streamSegments`). Memory stays at a few frames (a segment, from several storages), whatever the size
 * of the backup.
 */
export async function readDataChunks(
  storage: Storage,
  manifest: Manifest,
  key: DataKey | null,
  use: (chunk: Uint8Array) => void,
  signal?: AbortSignal,
): Promise<void> {
  // From one storage, the segments are passed on as they arrive and checked at their ends (`use` keeps
  // nothing until the stream ended): no segment is held whole. From several, a bad copy is read again from
  // the next storage, so each segment is held until it checks out.
  if (storagesOf(storage).length === 1 && standbyOf(storage).length === 0) {
    const segments = streamSegments(storage, manifest.segments, { signal });
    const decoded = openStream(segments.stream, manifest, "data", key, { readerGivesBack: true });
    try {
      for await (const chunk of decoded.stream) {
        use(chunk);
        decoded.giveBack?.(chunk);
      }
    } catch (err) {
      // A corrupt segment is named as such, not by what decoding made of its bytes.
      await segments.settle();
      throw err;
    }
    return;
  }
  await readPooledChunks(storage, manifest, "data", key, use, signal);
}

/**
 * A backup's engine state, read as `readDataChunks` reads its data (into reused buffers), each chunk handed
 * to `use`, which must be done with it when it returns: a state of 200 000 entries (17 MiB) read through
 * `readState` left ~45 MiB of dead chunks to the garbage collector.
 */
export async function readStateChunks(
  storage: Storage,
  manifest: Manifest,
  key: DataKey | null,
  use: (chunk: Uint8Array) => void,
  signal?: AbortSignal,
): Promise<void> {
  await readPooledChunks(storage, manifest, "state", key, use, signal);
}

/**
 * The data or state stream of `manifest`, each segment read whole into a pool buffer and checked before it
 * is decoded, each decoded chunk handed to `use` and given back.
 */
async function readPooledChunks(
  storage: Storage,
  manifest: Manifest,
  kind: "data" | "state",
  key: DataKey | null,
  use: (chunk: Uint8Array) => void,
  signal?: AbortSignal,
): Promise<void> {
  const list = kind === "data" ? manifest.segments : manifest.state;
  const pool = segmentPool({ ...manifest, segments: list }, key);
  const segments = readSegments(storage, list, { signal, pool, ahead: 1 });
  const decoded = openStream(segments, manifest, kind, key, { pool, readerGivesBack: true });
  for await (const chunk of decoded.stream) {
    use(chunk);
    decoded.giveBack?.(chunk);
  }
}

/** A decoded stream, and where its reader gives each chunk back when `readerGivesBack` was asked for. */
export interface DecodedStream {
  stream: ReadableStream<Uint8Array>;
  giveBack?: GiveBack;
}

/** How `openStream` reuses buffers; by default it does not. */
export interface OpenStreamOptions {
  /** Where the segment buffers (see readSegments) go back once decompressed. */
  pool?: BufferPool;
  /** The reader hands each output chunk back through `giveBack` when done with it. Default: false. */
  readerGivesBack?: boolean;
  /** What the reader will not use (`DecompressorOptions.skips`): it then takes marker chunks. Default: none. */
  skips?: SkipPlan;
}

/**
 * The one decode path of a stored stream: verified segment bytes (`readSegments`) → (decrypted with `key`)
 * → decompressed: the engine's bytes again. Throws when the backup is encrypted and no key is given.
 */
export function openStream(
  segments: ReadableStream<Uint8Array>,
  manifest: Manifest,
  kind: "data" | "state",
  key: DataKey | null,
  options: OpenStreamOptions = {},
): DecodedStream {
  const { pool, readerGivesBack = false, skips } = options;
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
  const giveInputBack = key ? undefined : give;
  const decompressor = createDecompressor(manifest.compression, {
    giveBack: giveInputBack,
    readerGivesBack,
    skips,
  });
  return { stream: plain.pipeThrough(decompressor), giveBack: decompressor.giveBack };
}

/**
 * `stream.pipeTo(writable)` for a writable that is done with each chunk once its write resolved: then each
 * chunk goes back through `giveBack`.
 */
export async function pipeGivingBack(
  stream: ReadableStream<Uint8Array>,
  writable: WritableStream<Uint8Array>,
  giveBack: GiveBack,
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
 * the zstd decompressor does, the decryptor and the others do not. `reuse` is returned when its buffers are
 * big enough (a chain's levels read through one pool).
 */
export function segmentPool(
  manifest: Manifest,
  key: DataKey | null,
  reuse?: BufferPool,
): BufferPool | undefined {
  // Segment buffers come back from the decompressor, or from the decryptor where it gives them back.
  if (
    (key && !decryptorGivesBack(key)) || manifest.compression !== "zstd" || manifest.segments.length === 0
  ) {
    return undefined;
  }
  const largest = manifest.segments.reduce((n, s) => Math.max(n, s.size), 0);
  // `reuse` (the previous level's pool, every buffer back): no second segment buffer while the first awaits
  // the garbage collector.
  if (reuse && reuse.size > largest) return reuse;
  // One segment: the next one is read once the decompressor is done with it. Reading ahead into a
  // second buffer was no faster from a local disk (2.3-2.7 s either way for 1 GiB) and cost 32 MiB.
  // Unencrypted: on shared memory under Bun (`hashable`), so that the segment's hash runs on the hashing
  // worker, in place (`sha256InPlace`).
  return new BufferPool(largest + 1, 1, key === null);
}
