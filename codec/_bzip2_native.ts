/**
 * bzip2 decoding by the system's libbz2 (`BZ2_bzDecompressInit/BZ2_bzDecompress/BZ2_bzDecompressEnd`)
 * through the runtime adapter's FFI (base/runtime.ts); private to codec/bzip2.ts.
 * @module
 */
import os from "node:os";
import process from "node:process";
import { nativeAddress, type NativeFunction, openNativeLibrary } from "../base/runtime.ts";
import { FrostError } from "../base/errors.ts";
import type { Bunzip2Decoder } from "./_bzip2_common.ts";

const LIBBZ2_NAMES = ["libbz2.so.1.0", "libbz2.so.1", "libbz2.so"];

// Return codes of bzlib.h.
const BZ_OK = 0;
const BZ_STREAM_END = 4;
const BZ_MEM_ERROR = -3;
const BZ_DATA_ERROR = -4;
const BZ_DATA_ERROR_MAGIC = -5;

// `bz_stream` on LP64 (x86-64, arm64): offsets of its fields, checked against bzlib.h with offsetof.
const NEXT_IN = 0; // char *
const AVAIL_IN = 8; // unsigned int
const NEXT_OUT = 24; // char *
const AVAIL_OUT = 32; // unsigned int
// state (48), bzalloc (56), bzfree (64) and opaque (72) stay NULL: libbz2 then uses malloc/free.

/** Bytes of compressed input handed to libbz2 per call, and of output taken per call. */
const IN_SIZE = 1 << 20;
const OUT_SIZE = 1 << 20;

interface Libbz2 {
  init: NativeFunction;
  decompress: NativeFunction;
  end: NativeFunction;
}

let cached: Libbz2 | null | undefined;

/** libbz2's decompression functions; undefined where the runtime has no FFI or the library is missing. */
function libbz2(): Libbz2 | undefined {
  if (cached === undefined) {
    cached = null;
    if (os.endianness() === "LE" && (process.arch === "x64" || process.arch === "arm64")) {
      try {
        const lib = openNativeLibrary(LIBBZ2_NAMES, {
          BZ2_bzDecompressInit: { args: ["pointer", "i32", "i32"], returns: "i32" },
          BZ2_bzDecompress: { args: ["pointer"], returns: "i32" },
          BZ2_bzDecompressEnd: { args: ["pointer"], returns: "i32" },
        });
        if (lib) {
          cached = {
            init: lib.BZ2_bzDecompressInit,
            decompress: lib.BZ2_bzDecompress,
            end: lib.BZ2_bzDecompressEnd,
          };
        }
      } catch {
        cached = null;
      }
    }
  }
  return cached ?? undefined;
}

/** Whether libbz2 can be used here. */
export function hasLibbz2(): boolean {
  return libbz2() !== undefined;
}

/** Memory C code may point into: an `ArrayBuffer` of its own (never moved by the collector). */
function pinned(size: number): Uint8Array {
  return new Uint8Array(new ArrayBuffer(Math.max(size, 1024)), 0, size);
}

/** A libbz2 decoder over concatenated bzip2 streams, or undefined where libbz2 cannot be used. */
export function nativeBunzip2Decoder(): Bunzip2Decoder | undefined {
  const lib = libbz2();
  if (!lib) return undefined;
  const strm = pinned(80);
  const input = pinned(IN_SIZE);
  const output = pinned(OUT_SIZE);
  const inAddr = nativeAddress(input);
  const outAddr = nativeAddress(output);
  if (inAddr === undefined || outAddr === undefined) return undefined;
  return new NativeDecoder(lib, strm, input, output, inAddr, outAddr);
}

class NativeDecoder implements Bunzip2Decoder {
  readonly #lib: Libbz2;
  readonly #strm: Uint8Array;
  readonly #view: DataView;
  readonly #input: Uint8Array;
  readonly #output: Uint8Array;
  readonly #inAddr: bigint;
  readonly #outAddr: bigint;
  /** Input given by `write` and not yet copied to `#input`. */
  #chunk: Uint8Array = new Uint8Array(0);
  /** A stream is initialised in libbz2 (its state must be freed). */
  #open = false;
  /** The last call filled the output: more may come without more input. */
  #full = false;
  /** Compressed bytes fed, for messages. */
  #fed = 0;
  #streams = 0;
  #sawInput = false;
  /** `close` was called: nothing more is decoded (libbz2 is not started again). */
  #closed = false;

  constructor(
    lib: Libbz2,
    strm: Uint8Array,
    input: Uint8Array,
    output: Uint8Array,
    inAddr: bigint,
    outAddr: bigint,
  ) {
    this.#lib = lib;
    this.#strm = strm;
    this.#view = new DataView(strm.buffer, strm.byteOffset, strm.byteLength);
    this.#input = input;
    this.#output = output;
    this.#inAddr = inAddr;
    this.#outAddr = outAddr;
  }

  write(chunk: Uint8Array): void {
    if (chunk.byteLength > 0) this.#sawInput = true;
    this.#chunk = this.#chunk.byteLength === 0 ? chunk : concat(this.#chunk, chunk);
  }

  end(): void {
    // libbz2 decodes as input comes: nothing is held back.
  }

  read(): Uint8Array | null {
    const v = this.#view;
    for (;;) {
      if (this.#closed) return null;
      let availIn = v.getUint32(AVAIL_IN, true);
      if (availIn === 0 && !this.#full) {
        if (this.#chunk.byteLength === 0) return null;
        const n = Math.min(this.#chunk.byteLength, IN_SIZE);
        this.#input.set(this.#chunk.subarray(0, n));
        this.#chunk = this.#chunk.subarray(n);
        v.setBigUint64(NEXT_IN, this.#inAddr, true);
        v.setUint32(AVAIL_IN, n, true);
        availIn = n;
      }
      if (!this.#open) {
        const rc = this.#lib.init(this.#strm, 0, 0);
        if (rc !== BZ_OK) throw new FrostError(`bzip2: cannot start libbz2's decoder (error ${rc})`);
        this.#open = true;
      }
      v.setBigUint64(NEXT_OUT, this.#outAddr, true);
      v.setUint32(AVAIL_OUT, OUT_SIZE, true);
      const rc = this.#lib.decompress(this.#strm);
      const left = v.getUint32(AVAIL_IN, true);
      this.#fed += availIn - left;
      const produced = OUT_SIZE - v.getUint32(AVAIL_OUT, true);
      this.#full = produced === OUT_SIZE;
      if (rc === BZ_STREAM_END) {
        this.#endStream();
        this.#streams++;
        this.#full = false;
      } else if (rc !== BZ_OK) {
        this.close();
        throw new FrostError(this.#describe(rc));
      }
      if (produced > 0) return this.#output.slice(0, produced);
    }
  }

  finish(): void {
    if (this.#open || this.#full) {
      this.close();
      throw new FrostError(
        `bzip2: truncated stream (the input ends after ${this.#fed} bytes, inside stream ${
          this.#streams + 1
        })`,
      );
    }
    if (!this.#sawInput) throw new FrostError("bzip2: empty input (not a bzip2 stream)");
  }

  close(): void {
    this.#closed = true;
    if (this.#open) this.#endStream();
  }

  #endStream(): void {
    this.#lib.end(this.#strm);
    this.#open = false;
  }

  #describe(rc: number): string {
    const at = `after ${this.#fed} compressed bytes`;
    if (rc === BZ_DATA_ERROR_MAGIC) {
      return this.#streams === 0
        ? `bzip2: not a bzip2 stream (bad magic bytes)`
        : `bzip2: data after the end of stream ${this.#streams} is not a bzip2 stream (bad magic bytes ${at})`;
    }
    if (rc === BZ_DATA_ERROR) {
      return `bzip2: corrupt data (a block or stream CRC mismatch, or an invalid block, ${at})`;
    }
    if (rc === BZ_MEM_ERROR) return "bzip2: out of memory";
    return `bzip2: libbz2 failed (error ${rc}, ${at})`;
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a);
  out.set(b, a.byteLength);
  return out;
}
