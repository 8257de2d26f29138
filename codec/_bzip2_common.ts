/**
 * The contract of a bzip2 decoder (private to codec/: libbz2's in _bzip2_native.ts, JavaScript's in
 * _bzip2_js.ts; codec/bzip2.ts turns one into a stream).
 * @module
 */

/**
 * A pull decoder of concatenated bzip2 streams. The caller gives input with `write` only after `read`
 * returned null, says the input ended with `end`, drains `read` again, then calls `finish`. Every method
 * throws a `FrostError` "bzip2: …" on corrupt input.
 */
export interface Bunzip2Decoder {
  /** More compressed bytes (the decoder may keep a reference until `read` returns null). */
  write(chunk: Uint8Array): void;
  /** No more input comes (the decoder may now decode what it held back). */
  end(): void;
  /** The next decompressed bytes (a fresh array the caller owns), or null when more input is needed. */
  read(): Uint8Array | null;
  /** Checks that the input ended at the end of a stream; throws on a truncated or empty input. */
  finish(): void;
  /** Frees what the decoder holds (native memory); safe to call twice. */
  close(): void;
}
