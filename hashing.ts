/**
 * SHA-256 of whole segments off the main thread, where the engine reads files and the storages move bytes.
 *
 * - Bun: the segment's buffer is transferred to one hashing worker thread and back (no copy); node:crypto
 *   hashes it there at ~1.7 GB/s. On the main thread the same hash cost ~0.6 s of CPU per GiB, next to
 *   the reads and socket writes that bound a remote backup or restore.
 * - Elsewhere (Deno): WebCrypto's digest, which copies the bytes and hashes them on Deno's thread pool.
 * @module
 */
import { Buffer } from "node:buffer";
import process from "node:process";
import { EvalWorkers } from "./_workers.ts";

const WORKER_SOURCE = `
const { parentPort } = require("node:worker_threads");
const { createHash } = require("node:crypto");
parentPort.on("message", ({ id, bytes }) => {
  let hex = null;
  let error = null;
  try {
    hex = createHash("sha256").update(bytes).digest("hex");
  } catch (err) {
    error = String((err && err.message) || err);
  }
  parentPort.postMessage({ id, bytes, hex, error }, [bytes.buffer]);
});`;

interface Reply {
  id: number;
  bytes: Uint8Array;
  hex: string | null;
  error: string | null;
}

let worker: EvalWorkers<Reply> | null = null;

/**
 * Whether `sha256Moving` moves the buffer to another thread (Bun). Where it does not (WebCrypto copies the
 * bytes when called), a hash may start while something else still reads the bytes.
 */
export const HASH_MOVES_BUFFER: boolean = process.versions.bun !== undefined;

/** Hex SHA-256 of `bytes` and the bytes again: the same view, or (Bun) a view of the buffer moved back. */
export interface MovedHash {
  hex: string;
  bytes: Uint8Array;
}

/**
 * The SHA-256 (hex) of `bytes`, computed off the main thread. Under Bun the WHOLE buffer of `bytes` moves to
 * a worker thread and back: the caller must own it (no other views in use until this resolves) and must use
 * the returned `bytes` afterwards (the old buffer is detached). Rejects only if hashing itself fails.
 */
export async function sha256Moving(bytes: Uint8Array): Promise<MovedHash> {
  if (!HASH_MOVES_BUFFER || bytes.byteLength === 0) {
    const digest = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
    return { hex: Buffer.from(digest).toString("hex"), bytes };
  }
  worker ??= new EvalWorkers<Reply>(WORKER_SOURCE, 1);
  const reply = await worker.run({ bytes }, [bytes.buffer as ArrayBuffer]);
  if (reply.error !== null) throw new Error(`Cannot hash a segment: ${reply.error}`);
  return { hex: reply.hex!, bytes: reply.bytes };
}
