/**
 * bzip2 decompression (Freezer's `-j` backups), streamed in flat memory: by the system's libbz2 through the
 * runtime's FFI where it can be used (fast: `bzip2 -dc`'s own code), else by a decoder written here in
 * JavaScript (no library offers a fast streaming one). Concatenated streams (pbzip2, `cat a.bz2 b.bz2`)
 * decode as one; corrupt, truncated or empty input fails with a `FrostError` "bzip2: …", CRC mismatches
 * included.
 * @module
 */
import { FrostError, messageOf } from "../base/errors.ts";
import { hasLibbz2, nativeBunzip2Decoder } from "./_bzip2_native.ts";
import { JsBunzip2Decoder } from "./_bzip2_js.ts";

/** Which decoder `bunzip2` uses: `"libbz2"` or `"js"`. */
export type Bunzip2Implementation = "libbz2" | "js";

/** The decoder `bunzip2` uses by default here: libbz2 when the runtime can call it, else JavaScript. */
export function bunzip2Implementation(): Bunzip2Implementation {
  return hasLibbz2() ? "libbz2" : "js";
}

/** Options of `bunzip2`. */
export interface Bunzip2Options {
  /** The decoder (default: `bunzip2Implementation()`); `"libbz2"` throws where libbz2 cannot be used. */
  implementation?: Bunzip2Implementation;
}

/**
 * Decompresses `input`, one or more concatenated bzip2 streams. Output chunks are at most 1 MiB and are
 * made only as the reader asks for them, so memory stays flat whatever the size (input is held back
 * up to one compressed block).
 *
 * @example
 * ```ts
 * import fs from "node:fs";
 * import { Readable } from "node:stream";
 * const plain = bunzip2(Readable.toWeb(fs.createReadStream("backup.tar.bz2")) as ReadableStream<Uint8Array>);
 * ```
 */
export function bunzip2(
  input: ReadableStream<Uint8Array>,
  options: Bunzip2Options = {},
): ReadableStream<Uint8Array> {
  const which = options.implementation ?? bunzip2Implementation();
  const dec = which === "libbz2" ? nativeBunzip2Decoder() : new JsBunzip2Decoder();
  if (!dec) throw new FrostError("bzip2: libbz2 cannot be used here (no FFI, or no libbz2.so.1.0)");
  const reader = input.getReader();
  let ended = false;
  let cancelled = false;
  /** Runs a decoder step; on failure frees the decoder, cancels the input and throws a FrostError. */
  const decode = <T>(step: () => T): T => {
    try {
      return step();
    } catch (err) {
      dec.close();
      reader.cancel(err).catch(() => {});
      if (err instanceof FrostError) throw err;
      throw new FrostError(`bzip2: corrupt data (${messageOf(err)})`, { cause: err });
    }
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      for (;;) {
        const out = decode(() => dec.read());
        if (out) {
          controller.enqueue(out);
          return;
        }
        if (ended) {
          decode(() => dec.finish());
          dec.close();
          controller.close();
          return;
        }
        let next: ReadableStreamReadResult<Uint8Array>;
        try {
          next = await reader.read();
        } catch (err) {
          dec.close();
          throw err;
        }
        if (cancelled) return;
        if (next.done) {
          ended = true;
          decode(() => dec.end());
        } else {
          decode(() => dec.write(next.value));
        }
      }
    },
    async cancel(reason) {
      cancelled = true;
      dec.close();
      await reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}
