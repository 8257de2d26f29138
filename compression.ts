/**
 * Compression transforms: `zstd` (default), `gzip` and `none`.
 *
 * Compression runs as independent frames (zstd) or members (gzip) of at most `BLOCK_SIZE` bytes, several at
 * once on libuv's thread pool, so it overlaps with the engine's reading on the main thread and uses both
 * cores. Concatenated frames/members are one valid stream for `zstd -d` and `gzip -d`.
 * @module
 */
import zlib from "node:zlib";
import { Duplex } from "node:stream";
import os from "node:os";
import { Worker } from "node:worker_threads";
import { UsageError } from "./errors.ts";

/** The compression names frost accepts. */
export const COMPRESSIONS = ["zstd", "gzip", "none"] as const;
/** One of `COMPRESSIONS`. */
export type Compression = typeof COMPRESSIONS[number];

/** Validates a `--compression` value. */
export function parseCompression(text: string): Compression {
  if ((COMPRESSIONS as readonly string[]).includes(text)) return text as Compression;
  throw new UsageError(`Unknown compression "${text}": choose one of ${COMPRESSIONS.join(", ")}`);
}

/** Input bytes per compressed frame: large enough for a good ratio, small enough to keep memory low. */
const BLOCK_SIZE = 1 << 20;
/** Frames compressed at once (this machine has 2 cores; one more keeps the pool busy). */
const IN_FLIGHT = 3;

type Compress = (input: Uint8Array) => Promise<Uint8Array>;

/** Output buffer size for one call: the whole compressed block fits (zlib's 16 KiB default pieces, joined
 * afterwards, cost Bun more than the compression itself). */
function chunkSizeFor(input: Uint8Array): number {
  return input.byteLength + (input.byteLength >> 7) + (64 << 10);
}

function zlibCompressor(kind: Exclude<Compression, "none">): Compress {
  if (kind === "zstd") {
    const params = { [zlib.constants.ZSTD_c_compressionLevel]: 1 };
    return (input) =>
      new Promise((resolve, reject) =>
        zlib.zstdCompress(
          input,
          { params, chunkSize: chunkSizeFor(input) },
          (err, out) => err ? reject(err) : resolve(out),
        )
      );
  }
  return (input) =>
    new Promise((resolve, reject) =>
      zlib.gzip(
        input,
        { level: 6, chunkSize: chunkSizeFor(input) },
        (err, out) => err ? reject(err) : resolve(out),
      )
    );
}

// Bun runs zlib's async calls on the main thread, where the engine reads files: there, frames are
// compressed by worker threads instead (measured: ~2x the backup speed on 2 cores). Deno's zlib calls are
// already off the main thread, and its eval workers are slow, so Deno keeps the zlib path.
const WORKER_SOURCE = `
const { parentPort } = require("node:worker_threads");
const zlib = require("node:zlib");
parentPort.on("message", ({ id, kind, input }) => {
  try {
    const chunkSize = input.byteLength + (input.byteLength >> 7) + 65536;
    const out = kind === "zstd"
      ? zlib.zstdCompressSync(input, { params: { [zlib.constants.ZSTD_c_compressionLevel]: 1 }, chunkSize })
      : zlib.gzipSync(input, { level: 6, chunkSize });
    const copy = out.byteOffset === 0 && out.byteLength === out.buffer.byteLength ? out : new Uint8Array(out);
    parentPort.postMessage({ id, out: copy }, [copy.buffer]);
  } catch (err) {
    parentPort.postMessage({ id, error: String(err && err.message || err) });
  }
});`;

interface Job {
  resolve: (out: Uint8Array) => void;
  reject: (err: Error) => void;
}

class WorkerPool {
  readonly #workers: Worker[] = [];
  readonly #jobs = new Map<number, Job>();
  #next = 0;
  constructor(size: number) {
    for (let i = 0; i < size; i++) {
      const worker = new Worker(WORKER_SOURCE, { eval: true });
      worker.unref();
      worker.on("message", (m: { id: number; out?: Uint8Array; error?: string }) => {
        const job = this.#jobs.get(m.id)!;
        this.#jobs.delete(m.id);
        if (m.out) job.resolve(m.out);
        else job.reject(new Error(`Cannot compress: ${m.error}`));
      });
      this.#workers.push(worker);
    }
  }
  run(kind: string, input: Uint8Array): Promise<Uint8Array> {
    // Transfer when the chunk owns its whole buffer (the engine's chunks do); copy otherwise.
    const owned = input.byteOffset === 0 && input.byteLength === input.buffer.byteLength
      ? input
      : input.slice();
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#jobs.set(id, { resolve, reject });
      this.#workers[id % this.#workers.length]!.postMessage({ id, kind, input: owned }, [
        owned.buffer as ArrayBuffer,
      ]);
    });
  }
}

let pool: WorkerPool | null = null;

function compressor(kind: Exclude<Compression, "none">): Compress {
  if (!process.versions.bun) return zlibCompressor(kind);
  pool ??= new WorkerPool(Math.max(1, Math.min(4, os.availableParallelism())));
  return (input) => pool!.run(kind, input);
}

/**
 * A TransformStream that compresses its input in independent frames, several in parallel, output in order.
 * @example
 * ```ts
 * const compressed = source.pipeThrough(createCompressor("zstd"));
 * ```
 */
export function createCompressor(kind: Compression): TransformStream<Uint8Array, Uint8Array> {
  if (kind === "none") return new TransformStream();
  const compress = compressor(kind);
  const pending: Promise<Uint8Array>[] = [];
  let buffer: Uint8Array | null = null;
  let filled = 0;
  let started = false;

  const start = async (block: Uint8Array, controller: TransformStreamDefaultController<Uint8Array>) => {
    started = true;
    const job = compress(block);
    // Avoid an unhandled rejection while the job waits its turn: the error surfaces when awaited below.
    job.catch(() => {});
    pending.push(job);
    while (pending.length > IN_FLIGHT) controller.enqueue(await pending.shift()!);
  };

  return new TransformStream<Uint8Array, Uint8Array>({
    async transform(chunk, controller) {
      let offset = 0;
      // Large chunks go straight to the pool with no copy; small ones are gathered into a block.
      if (filled === 0 && chunk.byteLength >= BLOCK_SIZE) {
        await start(chunk, controller);
        return;
      }
      while (offset < chunk.byteLength) {
        buffer ??= new Uint8Array(BLOCK_SIZE);
        const n = Math.min(BLOCK_SIZE - filled, chunk.byteLength - offset);
        buffer.set(chunk.subarray(offset, offset + n), filled);
        filled += n;
        offset += n;
        if (filled === BLOCK_SIZE) {
          const block = buffer;
          buffer = null;
          filled = 0;
          await start(block, controller);
        }
      }
    },
    async flush(controller) {
      // An empty input still gets one (empty) frame, so that it decompresses as a valid stream.
      if ((buffer && filled > 0) || !started) {
        await start(buffer?.subarray(0, filled) ?? new Uint8Array(0), controller);
      }
      while (pending.length > 0) controller.enqueue(await pending.shift()!);
    },
  });
}

/** A TransformStream that decompresses a stream written by `createCompressor` (or by zstd/gzip tools). */
export function createDecompressor(kind: Compression): TransformStream<Uint8Array, Uint8Array> {
  if (kind === "none") return new TransformStream();
  const options = { chunkSize: 1 << 20 };
  const node = kind === "zstd" ? zlib.createZstdDecompress(options) : zlib.createGunzip(options);
  return Duplex.toWeb(node) as unknown as TransformStream<Uint8Array, Uint8Array>;
}
