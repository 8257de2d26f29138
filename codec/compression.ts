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
import { outputPool } from "./_output_pool.ts";
import { EvalWorkers } from "./_workers.ts";
import { messageOf, UsageError } from "../base/errors.ts";
import { WORKER_MEMORY_SOURCE } from "../base/memory.ts";
import { WORKER_FFI_SOURCE } from "../base/runtime.ts";
import { compressBound, nativeZstd, WORKER_ZSTD_SOURCE } from "./_zstd_native.ts";
import { type GiveBack, isShared, workerBuffer } from "../base/bytes.ts";
import { skippedChunk, type SkipPlan } from "../base/skip.ts";

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
export const BLOCK_SIZE = 1 << 20;
/** Chunks of the caller's pool from this size up are compressed in place, as frames of their own. */
const DIRECT_MIN = BLOCK_SIZE >> 1;
/** Frames compressed at once (this machine has 2 cores): one per worker; a third one waits its turn while the
 * oldest is taken (3 measured no faster and ~5 MiB more peak RSS once frames moved through shared memory). */
const IN_FLIGHT = 2;

/** A compressed frame, and its input handed back (the same bytes; a new view when it went to a worker). */
interface Compressed {
  out: Uint8Array;
  input: Uint8Array;
  /** The output buffer offered to a worker, when the result is not in it. */
  into?: Uint8Array;
  /** Time the worker spent on it (without waiting in its queue). */
  ms?: number;
}
type Compress = (input: Uint8Array) => Promise<Compressed>;

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
          // The frame's size in its header, as Bun writes it unasked (a restore skips such frames unread:
          // `DecompressorOptions.skips`); Deno's zlib writes it only when pledged.
          { params, chunkSize: chunkSizeFor(input), pledgedSrcSize: input.byteLength },
          (err, out) => err ? reject(err) : resolve({ out, input }),
        )
      );
  }
  return (input) =>
    new Promise((resolve, reject) =>
      zlib.gzip(
        input,
        { level: 6, chunkSize: chunkSizeFor(input) },
        (err, out) => err ? reject(err) : resolve({ out, input }),
      )
    );
}

/** Bytes a compression worker compares with zeros at a time, and the frames of zeros it keeps (by size). */
const ZERO_COMPARE = 1 << 20;
const ZERO_FRAMES_KEPT = 8;

// Bun runs zlib's async calls on the main thread, where the engine reads files: there, frames are
// compressed by worker threads instead (measured: ~2x the backup speed on 2 cores). Deno's zlib calls are
// already off the main thread, and its eval workers are slow, so Deno keeps the zlib path.
// The input's buffer is transferred to the worker and back, so that its owner can fill it again; the
// result is copied into `into` (a buffer the caller reuses) when it fits. "unzstd" decompresses a frame.
// Shared buffers (workerBuffer) are read and filled in place, never moved, and not posted back either (the
// caller has them): each shared buffer posted makes a new object that counts its whole size as memory,
// which set off a full collection on the main thread every few frames (and each reaches a worker only
// once, see _workers.ts). A result in a shared \`into\` comes
// back as its length, \`inInto\`.
// Where libzstd opens (FFI, base/runtime.ts), zstd frames are compressed and
// decompressed with it straight into \`into\` (_zstd_native.ts); node:zlib does the rest, and every frame
// libzstd rejects (so that a corrupt frame fails with node:zlib's message, as without FFI).
const WORKER_SOURCE = WORKER_MEMORY_SOURCE + WORKER_FFI_SOURCE + WORKER_ZSTD_SOURCE + `
const { parentPort } = require("node:worker_threads");
const zlib = require("node:zlib");
const level = { [zlib.constants.ZSTD_c_compressionLevel]: 1 };
const movable = (b) => !(b instanceof SharedArrayBuffer);
const mine = (v) => v && movable(v.buffer) ? v : undefined;
const compress = (kind, input) => {
  const chunkSize = input.byteLength + (input.byteLength >> 7) + 65536;
  return kind === "zstd"
    ? zlib.zstdCompressSync(input, { params: level, chunkSize })
    : zlib.gzipSync(input, { level: 6, chunkSize });
};
// A block of zeros (a disk image's empty regions) is compared (memcmp) instead of compressed: its frame,
// the same bytes the compressor gives, is kept per size and copied.
const ZEROS = Buffer.alloc(${ZERO_COMPARE});
const zeroFrames = new Map();
const zeroFrame = (kind, input) => {
  const n = input.byteLength;
  if (n === 0 || input[0] !== 0 || input[n - 1] !== 0) return undefined;
  const bytes = Buffer.from(input.buffer, input.byteOffset, n);
  for (let o = 0; o < n; o += ZEROS.length) {
    const m = Math.min(ZEROS.length, n - o);
    if (!bytes.subarray(o, o + m).equals(ZEROS.subarray(0, m))) return undefined;
  }
  const key = kind + n;
  let frame = zeroFrames.get(key);
  if (!frame) {
    frame = new Uint8Array(compress(kind, input));
    if (zeroFrames.size < ${ZERO_FRAMES_KEPT}) zeroFrames.set(key, frame);
  }
  return new Uint8Array(frame); // a copy: the result may move to the main thread
};
// A zstd frame through libzstd: in \`into\` when it fits (else in a buffer of its own), or undefined for
// node:zlib to do it (no libzstd, a frame libzstd rejects).
const viaLibzstd = (kind, input, into) => {
  if (nativeZstd === null) return undefined;
  let dst = into;
  if (kind === "unzstd") {
    // A frame without its content size (Deno's node:zlib writes them) is tried in \`into\` only.
    const size = nativeZstd.contentSize(input);
    if (size === -2 || (size === -1 && !dst)) return undefined;
    if (size >= 0 && (!dst || dst.byteLength < size)) dst = new Uint8Array(size);
    const n = nativeZstd.decompressInto(input, dst);
    return n >= 0 && (size === -1 || n === size) ? dst.subarray(0, n) : undefined;
  }
  const bound = zstdBound(input.byteLength);
  if (!dst || dst.byteLength < bound) dst = new Uint8Array(bound);
  const length = nativeZstd.compressInto(input, dst);
  return length < 0 ? undefined : dst.subarray(0, length);
};
parentPort.on("message", (message) => {
  const m = received(message);
  if (m === null) return;
  const { id, kind, input } = m;
  let into = m.into;
  const list = [input.buffer];
  const started = performance.now();
  try {
    const zeros = kind === "unzstd" ? undefined : zeroFrame(kind, input);
    const native = zeros === undefined && kind !== "gzip" ? viaLibzstd(kind, input, into) : undefined;
    const libzstd = native === undefined ? undefined : native.buffer === into?.buffer ? "into" : "own";
    let out = zeros ?? native ?? (kind === "unzstd" ? zlib.zstdDecompressSync(input) : compress(kind, input));
    let inInto;
    if (into && out.buffer === into.buffer) {
      if (!movable(into.buffer)) inInto = out.byteLength;
      into = undefined;
    } else if (into && out.byteLength <= into.byteLength) {
      relieveMemory(out.buffer.byteLength); // what was allocated: the result may be a view of more
      into.set(out);
      if (!movable(into.buffer)) inInto = out.byteLength;
      out = into.subarray(0, out.byteLength);
      into = undefined;
    } else if (out.byteOffset !== 0 || out.byteLength !== out.buffer.byteLength) out = new Uint8Array(out);
    list.push(out.buffer);
    if (into) list.push(into.buffer);
    const reply = {
      id, out: mine(out), inInto, input: mine(input), into: mine(into), ms: performance.now() - started, libzstd,
    };
    parentPort.postMessage(reply, list.filter(movable));
  } catch (err) {
    if (into) list.push(into.buffer);
    const reply = { id, input: mine(input), into: mine(into), error: String(err && err.message || err) };
    parentPort.postMessage(reply, list.filter(movable));
  }
});`;

/** What a worker hands back: the result, the input, and `into` when the result did not use it; shared buffers
 * are not handed back (a result in a shared `into` comes back as its length, `inInto`). */
interface Reply {
  id: number;
  /** libzstd made the result, straight in \`into\` or in a buffer of its own (else node:zlib did). */
  libzstd?: "into" | "own";
  out?: Uint8Array;
  inInto?: number;
  input?: Uint8Array;
  into?: Uint8Array;
  error?: string;
  ms?: number;
}

type WorkerPool = EvalWorkers<Reply>;
let pool: WorkerPool | null = null;
let decompressPool: WorkerPool | null = null;

function workers(): WorkerPool {
  return pool ??= new EvalWorkers(WORKER_SOURCE, poolSize());
}

function poolSize(): number {
  return Math.max(1, Math.min(4, os.availableParallelism()));
}

/** How many compression worker threads are running (0 until a stream needs them: see `EARLY_BYTES`). */
export function compressionWorkerCount(): number {
  return pool === null ? 0 : poolSize();
}

/** How many decompression worker threads are running (0 until a stream needs one: see `DECOMPRESS_HERE`). */
export function decompressionWorkerCount(): number {
  return decompressPool === null ? 0 : 1;
}

/** One worker decompresses faster than the main thread writes files (measured: 1 GiB restored in the same
 * 2.0-2.2 s with one or two), and each worker costs memory. */
function decompressWorkers(): WorkerPool {
  return decompressPool ??= new EvalWorkers(WORKER_SOURCE, 1);
}

/**
 * Compresses (or, kind "unzstd", decompresses into `into` when it fits) `input` on a worker of `pool`. The
 * whole buffers of `input` and `into` are transferred, unless shared (`workerBuffer`): the caller must own
 * them (no other views in use until this resolves). Shared ones come back as the same views.
 */
async function runFrame(
  pool: WorkerPool,
  kind: string,
  input: Uint8Array,
  into?: Uint8Array,
): Promise<Compressed> {
  const list: ArrayBuffer[] = [];
  if (!isShared(input)) list.push(input.buffer as ArrayBuffer);
  if (into && !isShared(into)) list.push(into.buffer as ArrayBuffer);
  const m = await pool.run({ kind, input, into }, list);
  if (m.libzstd) libzstdFrames[kind === "unzstd" ? "decompressed" : "compressed"]++;
  if (m.libzstd === "into") libzstdFrames.inPlace++;
  if (m.error !== undefined) {
    throw new Error(`Cannot ${kind === "unzstd" ? "decompress" : "compress"}: ${m.error}`);
  }
  const given = isShared(input) ? input : m.input!;
  if (!into || !isShared(into)) return { out: m.out!, input: given, into: m.into, ms: m.ms };
  // The result is in the shared `into` (`inInto` bytes), or it did not fit and `into` is unused.
  if (m.inInto !== undefined) return { out: into.subarray(0, m.inInto), input: given, ms: m.ms };
  return { out: m.out!, input: given, into, ms: m.ms };
}

/** zstd frames that libzstd (FFI) compressed and decompressed in this process, on workers and here. */
const libzstdFrames = { compressed: 0, decompressed: 0, inPlace: 0 };

/** How many zstd frames libzstd (through FFI) compressed and decompressed so far in this process, the rest
 * going through node:zlib (which Deno's compressor and decompressor always use: see `compressor`), and how
 * many of them a worker's libzstd wrote straight into the output buffer it was offered (`inPlace`). */
export function libzstdFrameCounts(): { compressed: number; decompressed: number; inPlace: number } {
  return { ...libzstdFrames };
}

/** Output buffers offered to compression workers: a compressed frame of `BLOCK_SIZE` input fits. */
const COMPRESSED_SIZE = BLOCK_SIZE + (BLOCK_SIZE >> 7) + (64 << 10);

/** Compresses frames; `outputs` (Bun only) are buffers the workers may write results into (made shared:
 * the compressor's output chunks may then lie on shared memory). */
function compressor(kind: Exclude<Compression, "none">, outputs?: Uint8Array[]): Compress {
  if (!process.versions.bun) return zlibCompressor(kind);
  /** Input bytes compressed on this thread so far (see `EARLY_BYTES`). */
  let here = 0;
  // Once the workers run, small frames go there too: the main thread reads the files.
  return (input) => {
    if (pool === null && (input.byteLength < SMALL_FRAME || here < EARLY_BYTES)) {
      here += input.byteLength;
      return compressHere(kind, input);
    }
    return runFrame(
      workers(),
      kind,
      input,
      outputs ? outputs.pop() ?? workerBuffer(COMPRESSED_SIZE) : undefined,
    );
  };
}

/**
 * A stream's first bytes, up to this many, are compressed on the main thread (Bun) while no worker is
 * running yet: a small stream (a level N where little changed: its directories and state) then never starts
 * the workers, whose start costs more CPU time and memory (~0.1 s, ~30 MiB) than compressing it here. Same
 * bytes either way.
 */
const EARLY_BYTES = 16 << 20;

/**
 * Frames smaller than this (a stream's last, partial frame: a state, a no-change level) are compressed on the
 * main thread (Bun) until the workers have started: starting a worker thread costs ~10 ms, more than the
 * frame. Same bytes either way.
 */
const SMALL_FRAME = 256 << 10;

/** `input` compressed on this thread, as a worker would (same parameters and library: the same bytes). */
function compressHere(kind: Exclude<Compression, "none">, input: Uint8Array): Promise<Compressed> {
  try {
    const t0 = performance.now();
    const native = kind === "zstd" ? nativeZstd() : null;
    if (native) {
      const into = new Uint8Array(compressBound(input.byteLength));
      const n = native.compressInto(input, into);
      if (n >= 0) {
        libzstdFrames.compressed++;
        return Promise.resolve({ out: into.subarray(0, n), input, ms: performance.now() - t0 });
      }
    }
    const chunkSize = chunkSizeFor(input);
    const out = kind === "zstd"
      ? zlib.zstdCompressSync(input, { params: { [zlib.constants.ZSTD_c_compressionLevel]: 1 }, chunkSize })
      : zlib.gzipSync(input, { level: 6, chunkSize });
    return Promise.resolve({ out, input, ms: performance.now() - t0 });
  } catch (err) {
    return Promise.reject(new Error(`Cannot compress: ${messageOf(err)}`));
  }
}

/** Options of `createCompressor`. */
export interface CompressorOptions {
  /**
   * Takes back an input chunk once it is compressed. When given, every input chunk is owned by the caller's
   * pool (no other views of its buffer): the compressor may move its buffer to a worker thread, and hands
   * it back through `giveBack` (the same bytes and length, maybe a new view) when done with it. Without it,
   * chunks are copied into the compressor's own blocks. ("none" passes chunks on: see `readerGivesBack`.)
   */
  giveBack?: GiveBack;
  /** Adds each frame's compression time (ms: a worker's time on it under Bun, else from start to result;
   * frames overlap) and sizes. */
  times?: { ms: number; bytesIn: number; bytesOut: number };
  /**
   * The reader promises to hand every output chunk back through `Compressor.giveBack` once done with it,
   * so that output buffers are reused (zstd and gzip: under Bun; elsewhere giving back is a no-op). "none"
   * passes the input chunks themselves on; with `giveBack`, those given back go to it. Under Bun the reused
   * output buffers are shared memory (`workerBuffer`): a reader that hands them to WebCrypto copies them.
   */
  readerGivesBack?: boolean;
}

/** A compressing TransformStream, and where its reader gives output chunks back (`readerGivesBack`). */
export interface Compressor extends TransformStream<Uint8Array, Uint8Array> {
  giveBack?: GiveBack;
}

/**
 * A TransformStream that compresses its input in independent frames, several in parallel, output in order.
 * Its own gathering blocks are reused, so that memory stays a few blocks whatever the input.
 * @example
 * ```ts
 * const compressed = source.pipeThrough(createCompressor("zstd"));
 * ```
 */
export function createCompressor(kind: Compression, options: CompressorOptions = {}): Compressor {
  const { giveBack, times: stats } = options;
  if (kind === "none") {
    // Chunks pass through as they are; those the reader gives back go straight back to the caller's pool.
    const through: Compressor = new TransformStream();
    if (giveBack && options.readerGivesBack) through.giveBack = giveBack;
    return through;
  }
  const reuse = options.readerGivesBack === true && process.versions.bun !== undefined;
  const outputs = reuse ? outputPool(COMPRESSED_SIZE) : undefined;
  const compress = compressor(kind, outputs?.buffers);
  /** Frames being compressed, in order; `ours` when the input is one of the gathering blocks. */
  const pending: { job: Promise<Compressed>; ours: boolean }[] = [];
  /** Gathering blocks that finished compressing, ready to be filled again. */
  const free: Uint8Array[] = [];
  let buffer: Uint8Array | null = null;
  let filled = 0;
  let started = false;

  // Shared with the workers under Bun (`workerBuffer`): posting them costs no copy.
  const newBlock = () => free.pop() ?? workerBuffer(BLOCK_SIZE);
  const output = async (controller: TransformStreamDefaultController<Uint8Array>) => {
    const { job, ours } = pending.shift()!;
    const { out, input, into } = await job;
    if (into) outputs?.giveBack(into);
    if (!ours) giveBack?.(input);
    else if (free.length <= IN_FLIGHT) free.push(new Uint8Array(input.buffer, 0, BLOCK_SIZE));
    controller.enqueue(out);
  };
  const start = async (
    block: Uint8Array,
    ours: boolean,
    controller: TransformStreamDefaultController<Uint8Array>,
  ) => {
    started = true;
    // Read before compress(): a worker takes the block's buffer.
    const t0 = stats ? performance.now() : 0;
    const size = block.byteLength;
    let job = compress(block);
    if (stats) {
      job = job.then((r) => {
        stats.ms += r.ms ?? performance.now() - t0;
        stats.bytesIn += size;
        stats.bytesOut += r.out.byteLength;
        return r;
      });
    }
    // Avoid an unhandled rejection while the job waits its turn: the error surfaces when awaited below.
    job.catch(() => {});
    pending.push({ job, ours });
    while (pending.length > IN_FLIGHT) await output(controller);
  };

  const stream: Compressor = new TransformStream<Uint8Array, Uint8Array>({
    async transform(chunk, controller) {
      let offset = 0;
      // Large chunks of the caller's pool go straight to compression with no copy, as frames of their own
      // (a frame need not be BLOCK_SIZE: the engine's chunks are often a header's room short of it); what
      // was gathered before goes first, as a shorter frame. Other chunks are gathered.
      if (giveBack && chunk.byteLength >= DIRECT_MIN) {
        if (buffer && filled > 0) {
          const block = buffer.subarray(0, filled);
          buffer = null;
          filled = 0;
          await start(block, true, controller);
        }
        await start(chunk, false, controller);
        return;
      }
      while (offset < chunk.byteLength) {
        buffer ??= newBlock();
        const n = Math.min(BLOCK_SIZE - filled, chunk.byteLength - offset);
        buffer.set(chunk.subarray(offset, offset + n), filled);
        filled += n;
        offset += n;
        if (filled === BLOCK_SIZE) {
          const block = buffer;
          buffer = null;
          filled = 0;
          await start(block, true, controller);
        }
      }
      giveBack?.(chunk);
    },
    async flush(controller) {
      // An empty input still gets one (empty) frame, so that it decompresses as a valid stream.
      if ((buffer && filled > 0) || !started) {
        await start((buffer ?? newBlock()).subarray(0, filled), true, controller);
      }
      buffer = null;
      while (pending.length > 0) await output(controller);
    },
  });
  // Only shared buffers are kept for the workers to fill: frames compressed on this thread (`EARLY_BYTES`)
  // come out of zlib on plain buffers of the same size, which, kept, went on as every later frame's output
  // (copied back from the worker, and hashed on this thread by `SegmentSha256`).
  if (outputs) stream.giveBack = (chunk) => isShared(chunk) && outputs.giveBack(chunk);
  return stream;
}

/** Options of `createDecompressor`. */
export interface DecompressorOptions {
  /** zstd: takes back each input chunk once it has been copied in. */
  giveBack?: GiveBack;
  /**
   * zstd: the reader promises to hand every output chunk back through `Decompressor.giveBack` once done
   * with it, so that output buffers are reused (under Bun; elsewhere giving back is a no-op).
   */
  readerGivesBack?: boolean;
  /**
   * zstd: output ranges the reader will not use. A frame whose header gives its content size and whose
   * whole output lies in one of them is not decompressed: a marker chunk (`skippedChunk`, base/skip.ts)
   * of that size comes in its place (consecutive ones as one). Frames partly in a range come whole. The
   * reader must take markers for what they stand for. Default: every frame is decompressed.
   */
  skips?: SkipPlan;
}

/** A decompressing TransformStream, and where its reader gives output chunks back (`readerGivesBack`). */
export interface Decompressor extends TransformStream<Uint8Array, Uint8Array> {
  giveBack?: GiveBack;
}

/**
 * A TransformStream that decompresses a stream written by `createCompressor` (or by zstd/gzip tools).
 */
export function createDecompressor(kind: Compression, options: DecompressorOptions = {}): Decompressor {
  if (kind === "none") return new TransformStream();
  if (kind === "zstd") return zstdDecompressor(options);
  const node = zlib.createGunzip({ chunkSize: 1 << 20 });
  return Duplex.toWeb(node) as unknown as TransformStream<Uint8Array, Uint8Array>;
}

const ZSTD_MAGIC = 0xfd2fb528;
/** Frames decompressed at once. */
const DECOMPRESS_IN_FLIGHT = 3;

/**
 * Where a zstd frame that starts at byte 0 of `buf` ends, scanning from `scan` (the state of the last
 * call); `end` is 0 while more bytes are needed. Skippable frames are recognised (`skip`). Follows the
 * frame format of RFC 8878: header, then blocks (3-byte headers) up to the last one, then the checksum.
 */
interface FrameScan {
  /** Next byte to look at: 0 = the header; after it, the next block header (or the end). */
  at: number;
  /** The last block was seen: the frame ends at `at`. */
  last: boolean;
  skip: boolean;
}

function scanFrame(buf: Uint8Array, len: number, s: FrameScan): number {
  if (s.at === 0) {
    if (len < 5) return 0;
    const magic = (buf[0]! | buf[1]! << 8 | buf[2]! << 16 | buf[3]! << 24) >>> 0;
    if ((magic & 0xfffffff0) === 0x184d2a50) {
      if (len < 8) return 0;
      s.skip = true;
      s.last = true;
      s.at = 8 + ((buf[4]! | buf[5]! << 8 | buf[6]! << 16 | buf[7]! << 24) >>> 0);
    } else {
      if (magic !== ZSTD_MAGIC) throw new Error("Cannot decompress: not zstd data (unknown frame magic)");
      const fhd = buf[4]!;
      const single = (fhd >> 5) & 1;
      const fcs = fhd >> 6;
      s.at = 5 + (single ? 0 : 1) + [0, 1, 2, 4][fhd & 3]! + (fcs === 0 ? single : [1, 2, 4, 8][fcs]!);
      s.last = false;
      s.skip = false;
      // The checksum flag: 4 bytes after the last block.
      if (fhd & 4) s.at = -s.at;
    }
  }
  while (!s.last) {
    const checksum = s.at < 0;
    const at = checksum ? -s.at : s.at;
    if (len < at + 3) return 0;
    const bh = buf[at]! | buf[at + 1]! << 8 | buf[at + 2]! << 16;
    const type = (bh >> 1) & 3;
    if (type === 3) throw new Error("Cannot decompress: corrupt zstd data (reserved block type)");
    let next = at + 3 + (type === 1 ? 1 : bh >>> 3);
    if (bh & 1) {
      s.last = true;
      if (checksum) next += 4;
      s.at = next;
    } else s.at = checksum ? -next : next;
  }
  return len >= s.at ? s.at : 0;
}

/**
 * The bytes the zstd frame at the start of `frame` decompresses to, as its header says (Frame_Content_Size,
 * RFC 8878 3.1.1.1), or -1 when it does not say (or says more than a safe integer).
 */
export function frameContentSize(frame: Uint8Array): number {
  if (frame.byteLength < 6) return -1;
  const fhd = frame[4]!;
  const single = (fhd >> 5) & 1;
  const flag = fhd >> 6;
  const size = flag === 0 ? single : [1, 2, 4, 8][flag]!;
  const at = 5 + (single ? 0 : 1) + [0, 1, 2, 4][fhd & 3]!;
  if (size === 0 || frame.byteLength < at + size) return -1;
  const b = (i: number) => frame[at + i]!;
  switch (size) {
    case 1:
      return b(0);
    case 2:
      return (b(0) | b(1) << 8) + 256;
    case 4:
      return (b(0) | b(1) << 8 | b(2) << 16 | b(3) << 24) >>> 0;
    default: {
      const low = (b(0) | b(1) << 8 | b(2) << 16 | b(3) << 24) >>> 0;
      const high = (b(4) | b(5) << 8 | b(6) << 16 | b(7) << 24) >>> 0;
      const n = high * 2 ** 32 + low;
      return Number.isSafeInteger(n) ? n : -1;
    }
  }
}

function zstdDecompressFrame(frame: Uint8Array): Promise<Compressed> {
  return new Promise((resolve, reject) =>
    zlib.zstdDecompress(
      frame,
      { chunkSize: 1 << 20 },
      (err, out) => err ? reject(err) : resolve({ out, input: frame }),
    )
  );
}

/** The zstd frame `frame` decompressed on this thread: with libzstd where it opens (node:zlib for a frame
 * it rejects, which then throws node:zlib's error), into a buffer of the frame's content size. */
function zstdDecompressHere(frame: Uint8Array): Uint8Array {
  const native = nativeZstd();
  const size = native ? native.contentSize(frame) : -1;
  if (native && size >= 0) {
    const out = new Uint8Array(size);
    if (native.decompressInto(frame, out) === size) {
      libzstdFrames.decompressed++;
      return out;
    }
  }
  return zlib.zstdDecompressSync(frame);
}

/** `buf`'s bytes in a new buffer of at least `size` bytes (twice as big, at least). */
function grown(buf: Uint8Array, size: number): Uint8Array {
  const bigger = new Uint8Array(Math.max(buf.byteLength * 2, size));
  bigger.set(buf);
  return bigger;
}

/** A frame queued by `zstdDecompressor`: decompressed by `job`, or skipped (no `job`: `size` bytes not
 * needed, in the range numbered `range` of the `SkipPlan`). `size`: output bytes, -1 when unknown. */
interface PendingFrame {
  job?: Promise<Compressed>;
  size: number;
  range?: number;
}

/** Output bytes of a stream decompressed on the main thread (Bun) before its frames go to the worker: a level
 * N's parent state (200 000 files: ~18 MiB) is read without starting it (when no stream started it yet). */
const DECOMPRESS_HERE = 32 << 20;

/** Output buffers offered to decompression workers: a frame of `createCompressor` fits (bigger frames,
 * e.g. the 2 MiB ones of earlier frost versions, come back in buffers of their own). */
const OUTPUT_SIZE = BLOCK_SIZE + 4096;

/**
 * zstd decompression frame by frame: the stream is cut at frame boundaries and each frame is decompressed
 * on its own, several at once (off the main thread in Deno), output in order. Deno's streaming zstd
 * decompressor stops (silently, or with "Unknown frame descriptor") at a frame boundary that does not fall
 * at the end of one of its output buffers; whole frames avoid that. Frames are buffered whole: frost writes
 * frames of at most a few MiB.
 */
function zstdDecompressor(options: DecompressorOptions): Decompressor {
  const { giveBack: giveInputBack, skips } = options;
  // Under Bun, whose zlib calls run on the main thread, frames go to the worker threads; the first small
  // ones (a state, a no-change level: the whole stream) are decompressed here, without starting a worker.
  const bun = process.versions.bun !== undefined;
  const reuse = bun && options.readerGivesBack === true;
  const { buffers: outputs, giveBack } = outputPool(OUTPUT_SIZE);
  let here = 0;
  const decompress = (frame: Uint8Array): Promise<Compressed> => {
    if (!bun) return zstdDecompressFrame(frame);
    // Once the worker runs (an earlier stream of the run started it), every frame goes there: frames
    // decompressed here left ~20 MiB more resident memory (`ls` of /usr: its level 1's frames).
    if (frame.byteLength < SMALL_FRAME && here < DECOMPRESS_HERE && decompressPool === null) {
      try {
        const out = zstdDecompressHere(frame);
        here += out.byteLength;
        return Promise.resolve({ out, input: frame });
      } catch (err) {
        return Promise.reject(new Error(`Cannot decompress: ${messageOf(err)}`));
      }
    }
    here = DECOMPRESS_HERE;
    return runFrame(
      decompressWorkers(),
      "unzstd",
      frame,
      reuse ? outputs.pop() ?? new Uint8Array(OUTPUT_SIZE) : undefined,
    );
  };
  const free: Uint8Array[] = [];
  const take = (need: number) => {
    const b = free.pop();
    if (b && b.byteLength >= need) return b;
    if (b) free.push(b);
    return new Uint8Array(Math.max(need, COMPRESSED_SIZE));
  };
  let buf = take(0);
  let len = 0;
  let scan: FrameScan = { at: 0, last: false, skip: false };
  /** The frame being gathered in `buf` is not decompressed: only what its scan reads is copied. */
  let passing = false;
  /** Frames in order: being decompressed (`job`), or left undecompressed (see `skipFrame`). */
  const pending: PendingFrame[] = [];
  /** Output bytes handed on so far, markers included. */
  let emitted = 0;
  /**
   * Whether the frame at the start of `frame`, of `size` output bytes (-1: unknown), lies wholly in a
   * range of `skips`: then it is queued as skipped (joined to the skipped frames just before it in the
   * same range), not decompressed. Its place in the output is known when every frame before it still
   * queued has a known size.
   */
  const skipFrame = (size: number): boolean => {
    if (!skips || size <= 0) return false;
    let start = emitted;
    for (const p of pending) {
      if (p.size < 0) return false;
      start += p.size;
    }
    const range = skips.covers(start, start + size);
    if (range < 0) return false;
    const last = pending.at(-1);
    if (last && !last.job && last.range === range) last.size += size;
    else pending.push({ size, range });
    return true;
  };
  const output = async (controller: TransformStreamDefaultController<Uint8Array>) => {
    const next = pending.shift()!;
    if (!next.job) {
      emitted += next.size;
      controller.enqueue(skippedChunk(next.size));
      return;
    }
    const { out, input, into } = await next.job;
    emitted += out.byteLength;
    if (free.length <= DECOMPRESS_IN_FLIGHT) free.push(new Uint8Array(input.buffer));
    if (into) giveBack(into);
    if (out.byteLength > 0) controller.enqueue(out);
    else giveBack(out);
  };
  /**
   * The frame `frame[0, end)` is complete (scanned with `scan`): left undecompressed when it is skipped,
   * else decompressed, from `frame` when `own` (a buffer of this decompressor), else from a copy.
   */
  const frameEnded = async (
    frame: Uint8Array,
    end: number,
    own: boolean,
    controller: TransformStreamDefaultController<Uint8Array>,
  ) => {
    const skippable = scan.skip;
    scan = { at: 0, last: false, skip: false };
    const size = skips && !skippable ? frameContentSize(frame) : -1;
    if (skippable || skipFrame(size)) {
      if (own && free.length <= DECOMPRESS_IN_FLIGHT) free.push(frame);
      return;
    }
    let input = frame;
    if (!own) {
      input = take(end);
      input.set(frame.subarray(0, end));
    }
    const job = decompress(input.subarray(0, end));
    job.catch(() => {}); // surfaces when awaited in output()
    pending.push({ job, size });
    while (pending.length > DECOMPRESS_IN_FLIGHT) await output(controller);
  };
  const stream: Decompressor = new TransformStream<Uint8Array, Uint8Array>({
    async transform(chunk, controller) {
      let offset = 0;
      while (offset < chunk.byteLength) {
        if (len === 0) {
          // A frame starts here. When it ends in this chunk, it is taken from there: copied once, into a
          // buffer of its own, to be decompressed; not at all when it is skipped.
          const rest = chunk.subarray(offset);
          const end = scanFrame(rest, rest.byteLength, scan);
          if (end > 0) {
            offset += end;
            await frameEnded(rest, end, false, controller);
            continue;
          }
          // Else it is gathered in `buf`, the scan going on from where it stopped; a frame that is skipped
          // (queued as such now), or a skippable one, is only scanned (`passing`).
          passing = scan.skip || (scan.at !== 0 && skipFrame(frameContentSize(rest)));
          while (pending.length > DECOMPRESS_IN_FLIGHT) await output(controller);
        }
        // Only what the scan needs next (its header, the next block header, or the rest up to its end): the
        // frame's blocks are copied, not what follows it.
        const at = Math.abs(scan.at);
        const need = at === 0 ? 5 : scan.last ? at : at + 3;
        let n = Math.min(chunk.byteLength - offset, Math.max(need - len, 1));
        if (passing) {
          // `buf` gets only the bytes the scan reads (block headers), at their places.
          const from = Math.max(len, at);
          if (from < len + n) {
            if (len + n > buf.byteLength) buf = grown(buf, len + n);
            buf.set(chunk.subarray(offset + from - len, offset + n), from);
          }
        } else {
          if (len === buf.byteLength) buf = grown(buf, len + 1);
          n = Math.min(n, buf.byteLength - len);
          buf.set(chunk.subarray(offset, offset + n), len);
        }
        len += n;
        offset += n;
        const end = scanFrame(buf, len, scan);
        if (end > 0) {
          // The frame began in an earlier chunk, so what follows it came from this one: it is read from here
          // again.
          offset -= len - end;
          len = 0;
          if (passing) {
            // Skipped (queued when it began) or skippable: nothing to hand on.
            passing = false;
            scan = { at: 0, last: false, skip: false };
            continue;
          }
          const frame = buf;
          buf = take(0);
          await frameEnded(frame, end, true, controller);
        }
      }
      giveInputBack?.(chunk);
    },
    async flush(controller) {
      while (pending.length > 0) await output(controller);
      if (len > 0) throw new Error("Cannot decompress: the zstd data ends in the middle of a frame");
    },
  });
  if (reuse) stream.giveBack = giveBack;
  return stream;
}
