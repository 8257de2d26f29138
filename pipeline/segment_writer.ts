/**
 * The backup side of the segments: the `Segmenter` that cuts a stream into segments and the two writers that
 * hash and store them (whole segments, or streamed into `StreamingPut.openPut`), with the storage jobs in flight.
 * @module
 */
import type { PutStream, Storage, StreamingPut } from "../storage/storage.ts";
import { hashesPuts } from "../storage/storage.ts";
import type { SegmentRef } from "../series/manifest.ts";
import { hashLeavesBuffer, type MovedHash, SegmentSha256, sha256Moving } from "../codec/hashing.ts";

import { BufferPool } from "./buffer_pool.ts";
import type { GiveBack } from "../base/bytes.ts";
import { type BackupTimes } from "./stats.ts";

/**
 * Cuts a byte stream into pieces of exactly `size` bytes (the last one shorter), copying each chunk into the
 * segment being filled at once so that no chunk is held longer than needed. With a `pool`, full-size
 * segments come from it; a stream that ends before filling its first segment gets a right-sized copy.
 */
export class Segmenter extends TransformStream<Uint8Array, Uint8Array> {
  /** `giveBack` takes back each input chunk once it has been copied. */
  constructor(size: number, pool?: BufferPool, giveBack?: GiveBack) {
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
        giveBack?.(chunk);
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
 * the first failure of any of them; the time spent waiting goes to `times.queueWaitMs`.
 */
class InFlight {
  readonly #jobs = new Set<Promise<void>>();
  #failure: { error: unknown } | null = null;
  constructor(private readonly times?: BackupTimes) {}

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
    const t0 = this.times ? performance.now() : 0;
    while (this.#jobs.size > limit && !this.#failure) await Promise.race(this.#jobs);
    if (this.times) this.times.queueWaitMs += performance.now() - t0;
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
      times?: BackupTimes;
    },
  ) {
    const refs: SegmentRef[] = [];
    const times = options.times;
    const jobs = new InFlight(times);
    const upload = async (n: number, segment: Uint8Array) => {
      const key = keyOf(n);
      const size = segment.byteLength; // (`segment` is detached once moved)
      const t0 = times ? performance.now() : 0;
      const hash = () => options.pool?.moving(segment) ?? sha256Moving(segment);
      let moved: MovedHash;
      let storeMs: number;
      if (hashesPuts(storage)) {
        // The storage would hash the bytes itself (S3's signed payload): hash first and hand it the hash.
        moved = await hash();
        const t1 = times ? performance.now() : 0;
        await storage.put(key, moved.bytes, { signal: options.signal, sha256: moved.hex });
        storeMs = times ? performance.now() - t1 : 0;
        if (times) times.hash.ms += t1 - t0;
      } else {
        // The hash runs beside the put when it leaves the segment readable: WebCrypto (Deno) copies it, and
        // under Bun a shared buffer (the pool's) is hashed in place. Other buffers move to the hashing thread
        // and back once stored (a put keeps no reference once resolved).
        const early = hashLeavesBuffer(segment) ? hash() : null;
        early?.catch(() => {}); // awaited below, unless the put fails first
        await storage.put(key, segment, { signal: options.signal });
        const t1 = times ? performance.now() : 0;
        moved = await (early ?? hash());
        storeMs = t1 - t0;
        if (times) times.hash.ms += performance.now() - t1;
      }
      if (times) {
        times.hash.bytes += size;
        times.store.ms += storeMs;
        times.store.bytes += size;
        times.store.objects++;
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

/** Chunks a `StreamingSegmentWriter` writes ahead of the hashing worker (each ~1 MiB at most, held meanwhile). */
const HASHES_BEHIND = 2;

/**
 * A WritableStream that cuts a byte stream into segments of `size` bytes (the last one shorter) and writes
 * each one to the storage as its bytes arrive (`StreamingPut.openPut`), hashing them on the way (on the
 * hashing worker while they are written, for chunks on shared memory: `SegmentSha256`): memory holds
 * no segment, only the chunk being written. A segment is committed once full, in the background; up to
 * `queueSize` segments are in flight (the one being written and the ones committing), and a write resolves
 * only when there is room, so backpressure reaches the engine. `refs` lists what was stored, in order.
 */
export class StreamingSegmentWriter extends WritableStream<Uint8Array> {
  readonly refs: SegmentRef[] = [];
  constructor(
    storage: Storage & StreamingPut,
    keyOf: (n: number) => string,
    size: number,
    options: {
      queueSize: number;
      signal?: AbortSignal;
      onStored?: (bytes: number) => void;
      times?: BackupTimes;
      /** Takes back each chunk once it has been written. */
      giveBack?: GiveBack;
    },
  ) {
    const refs: SegmentRef[] = [];
    type Open = { n: number; key: string; put: PutStream; hash: SegmentSha256; size: number };
    let current: Open | null = null;
    let next = 0;
    const times = options.times;
    const jobs = new InFlight(times);
    /** Chunks written and not yet hashed, in order: each resolves once its chunk was given back. */
    const hashing: Promise<void>[] = [];
    const commit = async (segment: Open) => {
      const t0 = times ? performance.now() : 0;
      await segment.put.commit();
      if (times) {
        times.store.ms += performance.now() - t0;
        times.store.objects++;
      }
      refs[segment.n] = { key: segment.key, size: segment.size, sha256: await segment.hash.digest() };
      options.onStored?.(segment.size);
    };
    super({
      async write(chunk) {
        jobs.check();
        let offset = 0;
        let hashings: Promise<void>[] | undefined;
        while (offset < chunk.byteLength) {
          if (!current) {
            const n = next++;
            const key = keyOf(n);
            const t0 = times ? performance.now() : 0;
            const put = await storage.openPut(key, { signal: options.signal });
            if (times) times.store.ms += performance.now() - t0;
            current = { n, key, put, hash: new SegmentSha256(), size: 0 };
          }
          const n = Math.min(size - current.size, chunk.byteLength - offset);
          const piece = n === chunk.byteLength ? chunk : chunk.subarray(offset, offset + n);
          // A hash on the worker reads the piece while it is written and after: the chunk goes back once
          // both are done (a failed hash fails the segment's commit).
          if (times) {
            const t0 = performance.now();
            const hashing = current.hash.update(piece);
            const t1 = performance.now();
            await current.put.write(piece);
            if (hashing) (hashings ??= []).push(hashing);
            times.hash.ms += t1 - t0;
            times.hash.bytes += n;
            times.store.ms += performance.now() - t1;
            times.store.bytes += n;
          } else {
            const hashing = current.hash.update(piece);
            await current.put.write(piece);
            if (hashing) (hashings ??= []).push(hashing);
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
        if (!hashings) return void options.giveBack?.(chunk);
        // Written, still being hashed: the next chunks are written meanwhile, a few at most.
        const giveBack = options.giveBack;
        hashing.push(Promise.all(hashings).then(() => giveBack?.(chunk), () => {}));
        if (hashing.length > HASHES_BEHIND) {
          const t0 = times ? performance.now() : 0;
          await hashing.shift();
          if (times) times.hash.ms += performance.now() - t0;
        }
      },
      async close() {
        if (current) {
          const last = current;
          current = null;
          jobs.add(commit(last));
        }
        await Promise.all(hashing);
        await jobs.settle(0);
      },
      async abort() {
        const open = current;
        current = null;
        open?.hash.drop();
        await open?.put.abort();
        await jobs.drain();
      },
    }, new CountQueuingStrategy({ highWaterMark: 1 }));
    this.refs = refs;
  }
}
