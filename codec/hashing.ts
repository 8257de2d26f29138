/**
 * SHA-256 of whole segments off the main thread, where the engine reads files and the storages move bytes.
 *
 * - Bun: the segment's buffer is transferred to one hashing worker thread and back (no copy), or, made on a
 *   SharedArrayBuffer (`hashableBuffer`), hashed there in place while it is being stored; node:crypto
 *   hashes it there at ~1.7 GB/s. On the main thread the same hash cost ~0.6 s of CPU per GiB, next to
 *   the reads and socket writes that bound a remote backup or restore.
 * - Elsewhere (Deno): WebCrypto's digest, which copies the bytes and hashes them on Deno's thread pool.
 *
 * Downloads are hashed as their chunks arrive (`StreamSha256`): under Bun large chunks move to the same
 * worker in ~1 MiB batches and back; small ones, and every chunk under Deno, are hashed on the main thread.
 * @module
 */
import { Buffer } from "node:buffer";
import process from "node:process";
import { createHash } from "node:crypto";
import { EvalWorkers } from "./_workers.ts";
import { isShared } from "../base/bytes.ts";

const WORKER_SOURCE = `
const { parentPort } = require("node:worker_threads");
const { createHash } = require("node:crypto");
const streams = new Map();
parentPort.on("message", (message) => {
  const m = received(message);
  if (m === null) return;
  const { id, chunks, stream, end, drop } = m;
  let bytes = m.bytes;
  let hex = null;
  let error = null;
  try {
    if (bytes) {
      hex = createHash("sha256").update(bytes).digest("hex");
      // A shared buffer was hashed in place: nothing to give back.
      if (bytes.buffer instanceof SharedArrayBuffer) bytes = undefined;
    } else if (drop) {
      streams.delete(stream);
    } else {
      let hash = streams.get(stream);
      if (!hash) streams.set(stream, hash = createHash("sha256"));
      for (const chunk of chunks) hash.update(chunk);
      if (end) {
        streams.delete(stream);
        hex = hash.digest("hex");
      }
    }
  } catch (err) {
    streams.delete(stream);
    error = String((err && err.message) || err);
  }
  const moved = bytes ? [bytes.buffer] : chunks ? chunks.map((c) => c.buffer) : [];
  // Shared chunks (SegmentSha256) were hashed in place: they are posted back, not moved. (Not posting them
  // back measured 15-20 MiB more peak RSS in a backup of 50 000 files; again 10-20 MiB more in one of
  // 100 000 files once shared buffers reached the workers only once, for 0.3-0.5 s less CPU.)
  parentPort.postMessage({ id, bytes, chunks, hex, error }, moved.filter((b) => !(b instanceof SharedArrayBuffer)));
});`;

interface Reply {
  id: number;
  bytes?: Uint8Array;
  chunks?: Uint8Array[];
  hex: string | null;
  error: string | null;
}

let worker: EvalWorkers<Reply> | null = null;

/**
 * Whether `sha256Moving` moves the buffer to another thread (Bun). Where it does not (WebCrypto copies the
 * bytes when called), a hash may start while something else still reads the bytes.
 */
export const HASH_MOVES_BUFFER: boolean = process.versions.bun !== undefined;

/**
 * A buffer of `size` bytes that `sha256Moving` hashes without taking it away: under Bun it is made on a
 * SharedArrayBuffer, which the worker hashes in place while the main thread still reads it (a segment being
 * stored).
 */
export function hashableBuffer(size: number): Uint8Array {
  return HASH_MOVES_BUFFER ? new Uint8Array(new SharedArrayBuffer(size)) : new Uint8Array(size);
}

/**
 * Whether `sha256Moving(bytes)` leaves `bytes` readable while it runs: WebCrypto (Deno) copies them when
 * called, and a shared buffer (Bun) is hashed in place. Otherwise the buffer moves to the worker and back.
 */
export function hashLeavesBuffer(bytes: Uint8Array): boolean {
  return !HASH_MOVES_BUFFER || bytes.byteLength === 0 || bytes.buffer instanceof SharedArrayBuffer;
}

/** Hex SHA-256 of `bytes` and the bytes again: the same view, or (Bun) a view of the buffer moved back. */
export interface MovedHash {
  hex: string;
  bytes: Uint8Array;
}

/**
 * The SHA-256 (hex) of `bytes`, computed off the main thread. Under Bun the WHOLE buffer of `bytes` moves to
 * a worker thread and back: the caller must own it (no other views in use until this resolves) and must use
 * the returned `bytes` afterwards (the old buffer is detached). A shared buffer (`hashableBuffer`) is hashed
 * in place instead and may be read meanwhile (see `hashLeavesBuffer`). Rejects only if hashing itself fails.
 */
export async function sha256Moving(bytes: Uint8Array): Promise<MovedHash> {
  if (!HASH_MOVES_BUFFER || bytes.byteLength === 0) {
    const digest = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
    return { hex: Buffer.from(digest).toString("hex"), bytes };
  }
  const shared = bytes.buffer instanceof SharedArrayBuffer;
  const reply = await hashWorker().run({ bytes }, shared ? [] : [bytes.buffer as ArrayBuffer]);
  if (reply.error !== null) throw new Error(`Cannot hash a segment: ${reply.error}`);
  return { hex: reply.hex!, bytes: shared ? bytes : reply.bytes! };
}

/**
 * The SHA-256 (hex) of `bytes`, which stay readable: on the hashing worker, in place, when they lie on shared
 * memory (`hashableBuffer`, under Bun) and are more than `HERE_MAX` bytes (a segment read whole), else with
 * node:crypto on this thread (a small segment does not start the worker).
 */
export async function sha256InPlace(bytes: Uint8Array): Promise<string> {
  if (!HASH_MOVES_BUFFER || !isShared(bytes) || bytes.byteLength <= HERE_MAX) {
    return createHash("sha256").update(bytes).digest("hex");
  }
  return (await sha256Moving(bytes)).hex;
}

function hashWorker(): EvalWorkers<Reply> {
  return worker ??= new EvalWorkers<Reply>(WORKER_SOURCE, 1);
}

/** Bytes a `StreamSha256` sends to the worker at a time. */
const BATCH_BYTES = 1 << 20;
/**
 * Smallest mean chunk size (of the first batch) for which a `StreamSha256` moves chunks to the worker. Moving
 * a buffer has a cost of its own: for 64–128 KiB chunks (Swift's and S3's downloads under Bun) it cost more
 * than hashing them on the main thread (restores 15 % slower); for 512 KiB ones (FTP) restores got 8 % faster.
 */
const MOVE_MIN = 256 * 1024;
/** Streams of at most this many bytes (announced) are hashed on the main thread: see `StreamSha256`. */
const HERE_MAX = 8 << 20;
let nextStream = 0;

/**
 * The SHA-256 of chunks that arrive one by one (a download), keeping the chunks. Under Bun, when the chunks
 * of the first ~1 MiB are large on average (`MOVE_MIN`), they move to the hashing worker in batches of about
 * 1 MiB and back, so the hash (~0.6 s of CPU per GiB) runs beside the download instead of on the main thread;
 * a chunk that shares its buffer with other views is copied first. Otherwise node:crypto hashes the chunks on
 * the main thread. After `push`, use only the chunks that `end()` gives back; call `drop()` instead of `end()`
 * to give up.
 */
export class StreamSha256 {
  /** Set once the first batch decided against the worker (or `size` did). */
  #local: ReturnType<typeof createHash> | null = null;

  /**
   * `size`, when given, is how many bytes the stream will have: one of at most `HERE_MAX` is hashed on
   * this thread (a small segment, such as a level N's state: starting the worker costs more than it).
   */
  constructor(options: { size?: number } = {}) {
    if (options.size !== undefined && options.size <= HERE_MAX) this.#local = createHash("sha256");
  }
  readonly #stream = nextStream++;
  readonly #sent: Promise<Reply>[] = [];
  /** Chunks not sent to the worker: the batch being gathered, or all of them when hashing locally. */
  #batch: Uint8Array[] = [];
  #batchBytes = 0;

  push(chunk: Uint8Array): void {
    if (chunk.byteLength === 0) return;
    this.#local?.update(chunk);
    this.#batch.push(chunk);
    this.#batchBytes += chunk.byteLength;
    if (!this.#local && this.#batchBytes >= BATCH_BYTES) this.#flush(false);
  }

  /** The hex digest and the chunks pushed, in order. */
  async end(): Promise<{ hex: string; chunks: Uint8Array[] }> {
    if (!this.#local) this.#flush(true);
    if (this.#local) return { hex: this.#local.digest("hex"), chunks: this.#batch };
    const replies = await Promise.all(this.#sent);
    const failed = replies.find((r) => r.error !== null);
    if (failed) throw new Error(`Cannot hash a segment: ${failed.error}`);
    return { hex: replies.at(-1)!.hex!, chunks: replies.flatMap((r) => r.chunks!) };
  }

  /** Gives up: the worker forgets this hash (the chunks sent are dropped when they come back). */
  drop(): void {
    this.#batch = [];
    if (this.#sent.length === 0) return;
    for (const sent of this.#sent) sent.catch(() => {});
    hashWorker().run({ stream: this.#stream, drop: true }, []).catch(() => {});
  }

  /**
   * Sends the batch to the worker, or (first batch, small chunks or not Bun) starts hashing locally. Called
   * only while not hashing locally, so nothing sent yet means this is the first batch.
   */
  #flush(end: boolean): void {
    if (this.#sent.length === 0) {
      const mean = this.#batchBytes / Math.max(1, this.#batch.length);
      if (!HASH_MOVES_BUFFER || mean < MOVE_MIN) {
        this.#local = createHash("sha256");
        for (const chunk of this.#batch) this.#local.update(chunk);
        return;
      }
    }
    // Only a chunk that is the whole of its own buffer moves; others (views, repeats) go as copies.
    const moving = new Set<ArrayBufferLike>();
    const chunks = this.#batch.map((c) => {
      const whole = c.byteOffset === 0 && c.byteLength === c.buffer.byteLength &&
        c.buffer instanceof ArrayBuffer;
      if (!whole || moving.has(c.buffer)) return c.slice();
      moving.add(c.buffer);
      return c;
    });
    this.#batch = [];
    this.#batchBytes = 0;
    const transfer = chunks.map((c) => c.buffer as ArrayBuffer);
    this.#sent.push(hashWorker().run({ stream: this.#stream, chunks, end }, transfer));
  }
}

/** Bytes a `SegmentSha256` gathers before it decides where to hash (starting the worker costs ~10 ms). */
const SHARED_MIN = 64 * 1024;

/**
 * The SHA-256 of a segment written chunk by chunk (a streamed upload), off the main thread where it can be:
 * under Bun, when the chunk that brings the segment to `SHARED_MIN` bytes lies on shared memory
 * (`workerBuffer`: a compressor's or an encryptor's output), every chunk is hashed in place by the hashing
 * worker, in order, while the caller writes it; the small chunks before it (copies: an encrypted stream's
 * header, the rest of a chunk cut at the previous segment's end) and other chunks of such a segment are
 * copied there. Otherwise node:crypto hashes on this thread. Same digest.
 */
export class SegmentSha256 {
  #local: ReturnType<typeof createHash> | null = null;
  #stream = -1;
  /** Updates sent to the worker; `digest()` checks that each one succeeded. */
  #sent: Promise<void>[] = [];
  /** Copies of the first chunks, while they are fewer than `SHARED_MIN` bytes: nothing is decided yet. */
  #first: Uint8Array[] = [];
  #firstBytes = 0;

  /**
   * Adds `chunk`. When the result is a promise, the chunk's bytes must stay as they are until it resolves
   * (the worker reads them in place); it rejects only if hashing fails.
   */
  update(chunk: Uint8Array): Promise<void> | undefined {
    if (this.#local) return void this.#local.update(chunk);
    if (this.#stream < 0) {
      if (HASH_MOVES_BUFFER && this.#firstBytes + chunk.byteLength < SHARED_MIN) {
        this.#first.push(chunk.slice());
        this.#firstBytes += chunk.byteLength;
        return undefined;
      }
      if (!HASH_MOVES_BUFFER || !isShared(chunk)) {
        this.#hashHere();
        return void this.#local!.update(chunk);
      }
      this.#stream = nextStream++;
      if (this.#first.length > 0) {
        this.#send(this.#first, this.#first.map((c) => c.buffer as ArrayBuffer));
        this.#first = [];
      }
    }
    return this.#send([chunk], []);
  }

  /** Hashes on this thread from now on, starting with the first chunks kept. */
  #hashHere(): void {
    this.#local = createHash("sha256");
    for (const chunk of this.#first) this.#local.update(chunk);
    this.#first = [];
  }

  #send(chunks: Uint8Array[], transfer: ArrayBuffer[]): Promise<void> {
    const sent = hashWorker().run({ stream: this.#stream, chunks, end: false }, transfer).then((reply) => {
      if (reply.error !== null) throw new Error(`Cannot hash a segment: ${reply.error}`);
    });
    sent.catch(() => {}); // surfaces in digest()
    this.#sent.push(sent);
    return sent;
  }

  /** The hex digest of everything added. */
  async digest(): Promise<string> {
    if (this.#stream < 0) {
      if (!this.#local) this.#hashHere();
      return this.#local!.digest("hex");
    }
    await Promise.all(this.#sent);
    const reply = await hashWorker().run({ stream: this.#stream, chunks: [], end: true }, []);
    if (reply.error !== null) throw new Error(`Cannot hash a segment: ${reply.error}`);
    return reply.hex!;
  }

  /** Gives up: the worker forgets this hash. */
  drop(): void {
    if (this.#stream < 0) return;
    hashWorker().run({ stream: this.#stream, drop: true }, []).catch(() => {});
  }
}
