/**
 * zstd frames through the system's libzstd (FFI, base/runtime.ts), private to compression.ts: a frame is
 * compressed or decompressed straight into a buffer the caller gives (a shared output buffer of a worker),
 * with one compression and one decompression context reused per thread. Measured under Bun on 1 MiB
 * frames of a disk image: compression ~20 % faster than `zlib.zstdCompressSync`, decompression ~2× faster
 * (no new buffer per frame, no copy afterwards). The frames are the same format (level 1, content size
 * in the header, no checksum), often the same bytes.
 *
 * Where the runtime has no FFI (or it is not allowed) or no libzstd opens, everything here answers "not
 * done" (a negative length) and the caller uses node:zlib, as it does for a frame libzstd rejects: node:zlib
 * then gives the error message.
 * @module
 */
import { type NativeFunction, openNativeLibrary } from "../base/runtime.ts";

/** Names the dynamic loader is asked for, in order (Debian/Ubuntu's libzstd1 has the first). */
export const LIBZSTD_NAMES = ["libzstd.so.1", "libzstd.so"];

/** The libzstd functions used (contexts are passed as `i64` addresses; `size_t` is 64-bit on Linux). */
const SYMBOLS = {
  ZSTD_createCCtx: { args: [], returns: "i64" },
  ZSTD_compressCCtx: { args: ["i64", "pointer", "i64", "pointer", "i64", "i32"], returns: "i64" },
  ZSTD_createDCtx: { args: [], returns: "i64" },
  ZSTD_decompressDCtx: { args: ["i64", "pointer", "i64", "pointer", "i64"], returns: "i64" },
  ZSTD_getFrameContentSize: { args: ["pointer", "i64"], returns: "i64" },
} as const;

/** frost's compression level (the same as node:zlib's frames). */
const LEVEL = 1;

/** The largest frame content decompressed into a buffer of its own here (bigger: node:zlib decides). */
const OWN_BUFFER_MAX = 64 << 20;

/** libzstd's functions as `openNativeLibrary` (or a worker's `runtimeLibrary`) gives them. */
type ZstdLibrary = Record<keyof typeof SYMBOLS, NativeFunction>;

/**
 * The `NativeZstd` of `lib` (an opened libzstd): contexts made on first use, one of each kind, reused.
 * Self-contained (it names nothing of this module: `bound`, `level` and `ownMax` come as arguments), because
 * the worker source is made from its text, so that the main thread and the workers run the same code.
 */
function zstdOver(lib: ZstdLibrary, bound: (n: number) => number, level: number, ownMax: number): NativeZstd {
  let cctx = 0;
  let dctx = 0;
  return {
    compressInto(input, into) {
      if (into.byteLength < bound(input.byteLength)) return -1;
      if (cctx === 0 && (cctx = lib.ZSTD_createCCtx()) === 0) return -1;
      return lib.ZSTD_compressCCtx(cctx, into, into.byteLength, input, input.byteLength, level);
    },
    decompressInto(input, into) {
      if (dctx === 0 && (dctx = lib.ZSTD_createDCtx()) === 0) return -1;
      return lib.ZSTD_decompressDCtx(dctx, into, into.byteLength, input, input.byteLength);
    },
    contentSize(input) {
      const n = lib.ZSTD_getFrameContentSize(input, input.byteLength);
      return n === -1 || (n >= 0 && n <= ownMax) ? n : -2;
    },
  };
}

/** `ZSTD_COMPRESSBOUND(n)`: the most bytes a frame of `n` input bytes takes. Self-contained, as `zstdOver`. */
export function compressBound(n: number): number {
  return n + (n >>> 8) + (n < 131072 ? (131072 - n) >>> 11 : 0);
}

/**
 * Source text for a worker thread, after `WORKER_FFI_SOURCE`: defines `zstdBound(n)` (`compressBound`) and
 * `nativeZstd`, null without FFI or libzstd, else `{ compressInto(input, into), decompressInto(input, into),
 * contentSize(input) }` as `NativeZstd` describes: `zstdOver`'s and `compressBound`'s own text.
 */
export const WORKER_ZSTD_SOURCE = `
const zstdBound = ${compressBound};
const nativeZstd = (() => {
  const lib = runtimeLibrary(${JSON.stringify(LIBZSTD_NAMES)}, ${JSON.stringify(SYMBOLS)});
  return lib === null ? null : (${zstdOver})(lib, zstdBound, ${LEVEL}, ${OWN_BUFFER_MAX});
})();
`;

/** libzstd for this thread; every method answers -1 for "not done" (use node:zlib instead). */
export interface NativeZstd {
  /** Compresses `input` into `into` (which must hold `ZSTD_compressBound` bytes): the frame's length. */
  compressInto(input: Uint8Array, into: Uint8Array): number;
  /** Decompresses the frame(s) `input` into `into`: the content's length (-1 if corrupt or too big). */
  decompressInto(input: Uint8Array, into: Uint8Array): number;
  /** The content size that the frame header of `input` states (at most 64 MiB), -1 when it states none
   * (frames of node:zlib under Deno), -2 for a bad header or a bigger size. */
  contentSize(input: Uint8Array): number;
}

let here: NativeZstd | null | undefined;

/** libzstd on this thread (opened once), or null where it cannot be opened. */
export function nativeZstd(): NativeZstd | null {
  if (here !== undefined) return here;
  const lib = openNativeLibrary(LIBZSTD_NAMES, SYMBOLS);
  return here = lib ? zstdOver(lib, compressBound, LEVEL, OWN_BUFFER_MAX) : null;
}
