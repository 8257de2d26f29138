/**
 * Byte-array helpers shared by every layer.
 * @module
 */
import process from "node:process";

/** The bytes of `parts` one after another, in a new array. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.byteLength;
  }
  return out;
}

/** Whether `a` and `b` hold the same bytes. */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Gives a chunk back to whoever lent it, once the taker is done with its bytes, so that its buffer can be
 * filled again instead of a new one allocated (the same bytes and length; it may be a new view, e.g. after a
 * trip to a worker thread). Whoever calls it must not use the chunk afterwards. Everywhere chunks travel
 * back, the callback is named `giveBack` and has this type.
 */
export type GiveBack = (chunk: Uint8Array) => void;

/**
 * Under Bun, posting an ArrayBuffer to a worker thread copies it, even in the transfer list (measured:
 * ~0.3 ms per MiB each way), while a SharedArrayBuffer is shared in ~0.03 ms: buffers that worker threads
 * read or fill (compression frames, segment hashing) are made shared there. Deno keeps plain ones.
 */
export const SHARE_WITH_WORKERS: boolean = process.versions.bun !== undefined;

/**
 * A zeroed buffer of `size` bytes that worker threads can read and fill in place: on a SharedArrayBuffer
 * under Bun (`SHARE_WITH_WORKERS`), else a plain one. Not for WebCrypto, which refuses shared memory.
 */
export function workerBuffer(size: number): Uint8Array {
  return SHARE_WITH_WORKERS
    ? new Uint8Array(new SharedArrayBuffer(size))
    : new Uint8Array(new ArrayBuffer(size));
}

/** Whether `bytes` lies on shared memory (then it is posted to a worker without a transfer, and not moved). */
export function isShared(bytes: Uint8Array): boolean {
  return typeof SharedArrayBuffer !== "undefined" && bytes.buffer instanceof SharedArrayBuffer;
}
