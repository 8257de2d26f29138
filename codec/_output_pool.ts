/**
 * Output buffers of one size kept for reuse (private to compression.ts and _encryption_stream.ts): a stream
 * transform fills one, enqueues it (or a view from its start), and its reader hands it back once done.
 * @module
 */
import type { GiveBack } from "../base/bytes.ts";

/** Output buffers kept: frames in flight and a few being written. */
const KEEP_OUTPUTS = 8;

/** A pool of output buffers of `size` bytes, and the function that gives chunks back to it. */
export function outputPool(size: number): { buffers: Uint8Array[]; giveBack: GiveBack } {
  const buffers: Uint8Array[] = [];
  const giveBack: GiveBack = (chunk) => {
    if (chunk.byteOffset === 0 && chunk.buffer.byteLength === size && buffers.length < KEEP_OUTPUTS) {
      buffers.push(new Uint8Array(chunk.buffer, 0, size));
    }
  };
  return { buffers, giveBack };
}
