/**
 * The streaming AEAD of frost (private to encryption.ts): AES-256-GCM over fixed-size chunks, STREAM-style
 * nonces `prefix(7) ‖ counter(4, BE) ‖ final(1)`, and `header ‖ UTF-8(streamId)` as additional data of
 * every chunk. docs/FORMAT.md (section Encryption) specifies the bytes.
 * @module
 */
import nodeCrypto from "node:crypto";
import process from "node:process";
import { FrostError } from "../base/errors.ts";
import { outputPool } from "./_output_pool.ts";
import { type GiveBack, isShared, workerBuffer } from "../base/bytes.ts";

/** The stream magic, ASCII `FROSTENC`. */
export const STREAM_MAGIC: Uint8Array = new TextEncoder().encode("FROSTENC");
/** The stream format version this code writes and reads. */
export const STREAM_VERSION = 1;
/** Bytes of the stream header: magic (8), version (1), log2 of the chunk size (1), nonce prefix (7). */
export const HEADER_SIZE = 17;
/** Bytes of the random nonce prefix. */
export const PREFIX_SIZE = 7;
/** Bytes of an AES-GCM tag. */
export const TAG_SIZE = 16;
/**
 * Default plaintext bytes per chunk: 256 KiB (log2 = 18). Deno's WebCrypto spends about 4 ms of CPU per MiB
 * (encrypt + decrypt) on 1 MiB chunks against about 2.7 ms on 256 KiB ones (less system time); Bun runs both
 * alike.
 */
export const DEFAULT_CHUNK_LOG2 = 18;
/** Chunk sizes a reader accepts: 2^10 … 2^24 bytes (a header cannot make a reader buffer more). */
export const MIN_CHUNK_LOG2 = 10;
/** See `MIN_CHUNK_LOG2`. */
export const MAX_CHUNK_LOG2 = 24;
/** Chunks encrypted or decrypted at once (crypto.subtle runs them off the main thread). */
const IN_FLIGHT = 8;
/** The counter is 32 bits. */
const MAX_CHUNKS = 2 ** 32;

/** Why an encrypted stream could not be read. */
export type DecryptFailure = "format" | "tampered" | "truncated" | "extended";

/**
 * An encrypted stream failed to decrypt: its header is not frost's, a chunk failed authentication
 * (tampering, corruption, chunks reordered or taken from another stream or backup), or the stream was cut
 * short or had data appended. No plaintext of the failing chunk was emitted.
 */
export class DecryptionError extends FrostError {
  override name = "DecryptionError";
  /** The stream id (or label) the error is about. */
  readonly stream: string;
  /** The kind of damage. */
  readonly failure: DecryptFailure;
  /** Index of the failing chunk (0-based), or -1 for a header problem. */
  readonly chunk: number;
  /** Offset in the ciphertext where the failing chunk (or header) starts. */
  readonly offset: number;
  constructor(stream: string, failure: DecryptFailure, chunk: number, offset: number, detail: string) {
    super(`Cannot decrypt ${stream}: ${detail}`);
    this.stream = stream;
    this.failure = failure;
    this.chunk = chunk;
    this.offset = offset;
  }
}

/** What a stream needs from a data key: its AES-256-GCM CryptoKey, and its 32 bytes for node:crypto. */
export interface StreamKey {
  readonly cryptoKey: CryptoKey;
  /** The key's bytes: when given, Bun seals and opens chunks with node:crypto (see `nodeChunks`). */
  readonly raw?: Uint8Array;
}

/**
 * Under Bun, node:crypto's AES-256-GCM (BoringSSL, one synchronous call per chunk) costs about 0.13 s of CPU
 * per GiB against about 0.34 s for WebCrypto (whose calls copy the input, hop to a thread pool and resolve a
 * promise each): the chunks are sealed and opened with it. Deno's node:crypto AES-GCM runs at 185 MB/s, so
 * Deno keeps WebCrypto. Both give the same bytes: ciphertext ‖ 16-byte tag.
 */
const nodeChunks = process.versions.bun !== undefined;

/** Whether a decryptor with this key gives its input chunks back (`StreamOptions.giveBack`). */
export function decryptorGivesBackFor(key: StreamKey): boolean {
  return nodeChunks && key.raw !== undefined;
}

/**
 * AES-256-GCM of one chunk with node:crypto, written (ciphertext ‖ tag) into `out` at `at`, which has room
 * for it; returns the offset after it.
 */
function sealInto(
  raw: Uint8Array,
  iv: Uint8Array,
  aad: Uint8Array,
  piece: Uint8Array,
  out: Uint8Array,
  at: number,
): number {
  const cipher = nodeCrypto.createCipheriv("aes-256-gcm", raw, iv);
  cipher.setAAD(aad);
  const body = cipher.update(piece);
  cipher.final();
  out.set(body, at);
  out.set(cipher.getAuthTag(), at + body.byteLength);
  return at + body.byteLength + TAG_SIZE;
}

/** Sealed chunks are gathered into outputs of about this size (node:crypto path). */
const OUTPUT_TARGET = 1 << 20;

/** Opens one chunk (ciphertext ‖ tag) with node:crypto; throws when it does not authenticate. */
function openSync(raw: Uint8Array, iv: Uint8Array, aad: Uint8Array, piece: Uint8Array): Uint8Array {
  const size = piece.byteLength - TAG_SIZE;
  const decipher = nodeCrypto.createDecipheriv("aes-256-gcm", raw, iv);
  decipher.setAAD(aad);
  decipher.setAuthTag(piece.subarray(size));
  const plain = decipher.update(piece.subarray(0, size));
  decipher.final(); // throws on a bad tag: `plain` is then dropped unseen
  return plain;
}

/** Options of the stream transforms. */
export interface StreamOptions {
  /** log2 of the plaintext chunk size, 10…24; default 18 (256 KiB). Only the encryptor uses it. */
  chunkLog2?: number;
  /** How errors name the stream; default `encrypted stream "<streamId>"`. */
  label?: string;
  /**
   * Called with each input chunk once the transform holds no reference to its bytes, so that the writer may
   * fill the same buffer again (a compressor's output pool, a segment reader's buffers). The decryptor calls
   * it only where it opens chunks synchronously (see `decryptorGivesBackFor`); elsewhere chunks are not
   * given back.
   */
  giveBack?: GiveBack;
}

/**
 * Cuts a byte stream into pieces of exactly `size` bytes and calls `emit` for each, telling whether it is
 * the last one. A full piece is held back until more bytes (or the end) show whether it is final. The end
 * always emits one final piece, which is empty only when nothing at all was pushed.
 *
 * With `reuse`, `emit` must be done with the piece's bytes when it returns (crypto.subtle copies its input
 * when called): the chunker then fills the same buffer again. Two buffers serve a whole stream instead of a
 * fresh one per piece, which saves the main thread allocating, zeroing and page-faulting 256 KiB per chunk
 * (and the copy into WebCrypto reads from a cache-warm buffer).
 */
class Chunker {
  #buffer: Uint8Array | null = null;
  #filled = 0;
  #held: Uint8Array | null = null;
  /** The held piece is one of the chunker's buffers (not part of an input chunk). */
  #heldOwn = false;
  #spare: Uint8Array | null = null;
  constructor(
    private readonly size: number,
    private readonly emit: (piece: Uint8Array, final: boolean) => Promise<void> | void,
    private readonly reuse = false,
  ) {}

  async push(bytes: Uint8Array): Promise<void> {
    let offset = 0;
    while (offset < bytes.byteLength) {
      if (this.#held) {
        const held = this.#held;
        this.#held = null;
        const emitted = this.emit(held, false);
        if (this.reuse && this.#heldOwn) this.#spare = held;
        await emitted;
      }
      // Whole pieces of a large input are used in place (crypto.subtle copies its input when called).
      if (this.#filled === 0 && bytes.byteLength - offset >= this.size) {
        this.#held = bytes.subarray(offset, offset + this.size);
        this.#heldOwn = false;
        offset += this.size;
        continue;
      }
      if (!this.#buffer) {
        this.#buffer = this.#spare ?? new Uint8Array(this.size);
        this.#spare = null;
      }
      const n = Math.min(this.size - this.#filled, bytes.byteLength - offset);
      this.#buffer.set(bytes.subarray(offset, offset + n), this.#filled);
      this.#filled += n;
      offset += n;
      if (this.#filled === this.size) {
        this.#held = this.#buffer;
        this.#heldOwn = true;
        this.#buffer = null;
        this.#filled = 0;
      }
    }
  }

  /** Whether the held piece is a view of `bytes` (the last ones pushed): the next push or end() emits it. */
  holdsViewOf(bytes: Uint8Array): boolean {
    return this.#held !== null && !this.#heldOwn && this.#held.buffer === bytes.buffer;
  }

  /**
   * Copies a held piece that is a view of the last pushed bytes into a buffer of the chunker's own, so that
   * the caller may reuse the pushed bytes' buffer. Needed only when the push ended on a piece boundary.
   */
  detach(): void {
    if (!this.#held || this.#heldOwn) return;
    const own = this.#spare ?? new Uint8Array(this.size);
    this.#spare = null;
    own.set(this.#held);
    this.#held = own;
    this.#heldOwn = true;
  }

  /** Emits the final piece; returns its size. */
  async end(): Promise<number> {
    const last = this.#held ?? this.#buffer?.subarray(0, this.#filled) ?? new Uint8Array(0);
    this.#held = this.#buffer = this.#spare = null;
    this.#filled = 0;
    await this.emit(last, true);
    return last.byteLength;
  }
}

/** The 12-byte nonce of chunk `index`. */
function nonceOf(prefix: Uint8Array, index: number, final: boolean): Uint8Array<ArrayBuffer> {
  const nonce = new Uint8Array(12);
  nonce.set(prefix, 0);
  new DataView(nonce.buffer).setUint32(PREFIX_SIZE, index);
  nonce[11] = final ? 1 : 0;
  return nonce;
}

/** The additional data of every chunk: the 17-byte header followed by the UTF-8 stream id. */
function aadOf(header: Uint8Array, streamId: string): Uint8Array<ArrayBuffer> {
  const id = new TextEncoder().encode(streamId);
  const aad = new Uint8Array(header.byteLength + id.byteLength);
  aad.set(header, 0);
  aad.set(id, header.byteLength);
  return aad;
}

function makeHeader(chunkLog2: number, prefix: Uint8Array): Uint8Array {
  const header = new Uint8Array(HEADER_SIZE);
  header.set(STREAM_MAGIC, 0);
  header[8] = STREAM_VERSION;
  header[9] = chunkLog2;
  header.set(prefix, 10);
  return header;
}

function checkChunkLog2(value: number): number {
  if (!Number.isInteger(value) || value < MIN_CHUNK_LOG2 || value > MAX_CHUNK_LOG2) {
    throw new RangeError(`chunkLog2 must be an integer from ${MIN_CHUNK_LOG2} to ${MAX_CHUNK_LOG2}`);
  }
  return value;
}

/** A queue of chunk jobs that enqueues their results in order, keeping at most IN_FLIGHT running. */
class OrderedJobs {
  readonly #pending: Promise<Uint8Array>[] = [];
  constructor(private readonly controller: TransformStreamDefaultController<Uint8Array>) {}
  async add(job: Promise<Uint8Array>): Promise<void> {
    job.catch(() => {}); // the rejection surfaces when the job reaches the head of the queue
    this.#pending.push(job);
    while (this.#pending.length >= IN_FLIGHT) this.controller.enqueue(await this.#pending.shift()!);
  }
  async drain(): Promise<void> {
    while (this.#pending.length > 0) this.controller.enqueue(await this.#pending.shift()!);
  }
}

/** An encrypting TransformStream, and where its reader may give output chunks back for reuse. */
export interface Encryptor extends TransformStream<Uint8Array, Uint8Array> {
  /**
   * Present where output buffers are reused (under Bun): the reader may hand each output chunk back once
   * done with its bytes. A reader that does not simply leaves them to the garbage collector.
   */
  giveBack?: GiveBack;
}

/** See `createEncryptor` in encryption.ts. */
export function encryptStream(
  key: StreamKey,
  streamId: string,
  options: StreamOptions = {},
): Encryptor {
  const chunkLog2 = checkChunkLog2(options.chunkLog2 ?? DEFAULT_CHUNK_LOG2);
  const prefix = crypto.getRandomValues(new Uint8Array(PREFIX_SIZE));
  const header = makeHeader(chunkLog2, prefix);
  const aad = aadOf(header, streamId);
  const giveBack = options.giveBack;
  const raw = nodeChunks ? key.raw : undefined;
  // node:crypto: sealed chunks are gathered into ~1 MiB outputs from a pool (one write and one stream chunk
  // per MiB, as unencrypted, instead of two per chunk; the reader's giveBack refills the same buffers). Made
  // shared (`workerBuffer`: under Bun, where this path runs), so that the segment's hash runs on the hashing
  // worker, reading them in place (`SegmentSha256`), as for the compressor's outputs.
  const sealed = 2 ** chunkLog2 + TAG_SIZE;
  const outputSize = Math.max(1, Math.floor(OUTPUT_TARGET / 2 ** chunkLog2)) * sealed;
  const outputs = raw ? outputPool(outputSize) : undefined;
  let out: Uint8Array | null = null;
  let outFilled = 0;
  /** The input chunk the chunker's held piece is a view of, given back once that piece is emitted. */
  let lent: Uint8Array | null = null;
  let jobs: OrderedJobs;
  let flushOut: () => void;
  let index = 0;
  const chunker = new Chunker(2 ** chunkLog2, (piece, final) => {
    if (index >= MAX_CHUNKS) {
      throw new FrostError(`Cannot encrypt "${streamId}": the stream exceeds 2^32 chunks`);
    }
    const iv = nonceOf(prefix, index++, final);
    if (raw) {
      out ??= outputs!.buffers.pop() ?? workerBuffer(outputSize);
      outFilled = sealInto(raw, iv, aad, piece, out, outFilled);
      if (outputSize - outFilled < sealed) flushOut();
      return;
    }
    // crypto.subtle.encrypt copies `piece` before it returns (WebCrypto: "a copy of the bytes held by the
    // data parameter"), so the chunker may refill it at once.
    const job = crypto.subtle.encrypt(
      { name: "AES-GCM", iv, additionalData: aad },
      key.cryptoKey,
      // WebCrypto refuses shared memory (a compressor's output under Bun): a copy of plain memory then.
      (isShared(piece) ? piece.slice() : piece) as Uint8Array<ArrayBuffer>,
    ).then((out) => new Uint8Array(out));
    return jobs.add(job);
  }, true);
  const stream: Encryptor = new TransformStream<Uint8Array, Uint8Array>({
    start(controller) {
      jobs = new OrderedJobs(controller);
      flushOut = () => {
        if (out && outFilled > 0) controller.enqueue(out.subarray(0, outFilled));
        out = null;
        outFilled = 0;
      };
      controller.enqueue(header.slice());
    },
    async transform(chunk) {
      await chunker.push(chunk);
      if (!giveBack) return;
      // A non-empty push emitted the piece held before it: the chunk that piece was a view of is free.
      if (lent && chunk.byteLength > 0) {
        giveBack(lent);
        lent = null;
      }
      // A piece held as a view of this chunk goes out with the next push (or the end): the chunk is given
      // back then, instead of the piece being copied now.
      if (chunker.holdsViewOf(chunk)) lent = chunk;
      else giveBack(chunk);
    },
    async flush() {
      await chunker.end();
      if (lent) giveBack!(lent);
      lent = null;
      flushOut();
      await jobs.drain();
    },
  });
  if (outputs) stream.giveBack = outputs.giveBack;
  return stream;
}

/** See `createDecryptor` in encryption.ts. */
export function decryptStream(
  key: StreamKey,
  streamId: string,
  options: StreamOptions = {},
): TransformStream<Uint8Array, Uint8Array> {
  const label = options.label ?? `encrypted stream "${streamId}"`;
  const header = new Uint8Array(HEADER_SIZE);
  let headerFilled = 0;
  let chunker: Chunker | null = null;
  let jobs: OrderedJobs;
  let emit: (part: Uint8Array) => void;
  let index = 0;
  let pieceSize = 0;

  const fail = (failure: DecryptFailure, chunk: number, detail: string) =>
    new DecryptionError(label, failure, chunk, chunk < 0 ? 0 : HEADER_SIZE + chunk * pieceSize, detail);

  const raw = nodeChunks ? key.raw : undefined;
  const open = (
    prefix: Uint8Array,
    aad: Uint8Array<ArrayBuffer>,
    piece: Uint8Array,
    n: number,
    final: boolean,
  ): Promise<Uint8Array> =>
    crypto.subtle.decrypt(
      { name: "AES-GCM", iv: nonceOf(prefix, n, final), additionalData: aad },
      key.cryptoKey,
      piece as Uint8Array<ArrayBuffer>,
    ).then((out) => new Uint8Array(out));

  /**
   * Why chunk `n` (of `size` bytes) failed: a final chunk that opens as a middle one (`opensOtherwise`) means
   * the stream was cut there; a middle one that opens as final, that data was appended.
   */
  const explain = (size: number, n: number, final: boolean, opensOtherwise: boolean): DecryptionError => {
    const where = `chunk ${n} (ciphertext bytes ${HEADER_SIZE + n * pieceSize}–` +
      `${HEADER_SIZE + n * pieceSize + size - 1})`;
    if (opensOtherwise && final) {
      return fail("truncated", n, `the stream is truncated: it ends after ${where} with no final chunk`);
    }
    if (opensOtherwise) {
      return fail("extended", n, `${where} is marked final but more data follows it (data was appended)`);
    }
    if (final && size < TAG_SIZE) {
      return fail("truncated", n, `the stream is truncated or corrupt: ${where} is shorter than a tag`);
    }
    return fail(
      "tampered",
      n,
      `${where} failed authentication: the data was tampered with, corrupted, truncated, or chunks were ` +
        `reordered or taken from another stream`,
    );
  };

  /** WebCrypto: explains a failed chunk, trying it again with the other final flag. */
  const diagnose = async (
    prefix: Uint8Array,
    aad: Uint8Array<ArrayBuffer>,
    piece: Uint8Array,
    n: number,
    final: boolean,
  ): Promise<never> => {
    const opensOtherwise = piece.byteLength >= TAG_SIZE &&
      await open(prefix, aad, piece, n, !final).then(() => true, () => false);
    throw explain(piece.byteLength, n, final, opensOtherwise);
  };

  /** node:crypto (Bun): opens chunk `n` at once, or throws why it failed. */
  const openNow = (
    raw: Uint8Array,
    prefix: Uint8Array,
    aad: Uint8Array,
    piece: Uint8Array,
    n: number,
    final: boolean,
  ): Uint8Array => {
    const opens = (asFinal: boolean) => {
      try {
        return openSync(raw, nonceOf(prefix, n, asFinal), aad, piece);
      } catch {
        return null;
      }
    };
    const plain = piece.byteLength >= TAG_SIZE ? opens(final) : null;
    if (plain) return plain;
    throw explain(piece.byteLength, n, final, piece.byteLength >= TAG_SIZE && opens(!final) !== null);
  };

  const startChunks = () => {
    if (header.subarray(0, 8).some((b, i) => b !== STREAM_MAGIC[i])) {
      throw fail("format", -1, "not a frost encrypted stream (bad magic)");
    }
    if (header[8] !== STREAM_VERSION) {
      throw fail("format", -1, `unsupported encrypted stream version ${header[8]}`);
    }
    const chunkLog2 = header[9]!;
    if (chunkLog2 < MIN_CHUNK_LOG2 || chunkLog2 > MAX_CHUNK_LOG2) {
      throw fail("format", -1, `bad chunk size 2^${chunkLog2} in the header (tampered or corrupt)`);
    }
    pieceSize = 2 ** chunkLog2 + TAG_SIZE;
    const prefix = header.slice(10, 10 + PREFIX_SIZE);
    const aad = aadOf(header, streamId);
    chunker = new Chunker(pieceSize, (piece, final) => {
      const n = index++;
      if (n >= MAX_CHUNKS) throw fail("tampered", n, "the stream exceeds 2^32 chunks");
      if (final && piece.byteLength === 0 && n === 0) {
        throw fail("truncated", n, "the stream is truncated: it holds a header and no chunk");
      }
      // Only a chunk that fails is tried a second time, with the other final flag, to explain the failure.
      if (raw) return emit(openNow(raw, prefix, aad, piece, n, final));
      const job = piece.byteLength < TAG_SIZE
        ? diagnose(prefix, aad, piece, n, final)
        : open(prefix, aad, piece, n, final).catch(() => diagnose(prefix, aad, piece, n, final));
      return jobs.add(job);
    }, raw !== undefined);
  };

  // node:crypto opens each piece before the chunker goes on, so the chunker may reuse its buffers and the
  // input chunks may go back to the writer.
  const giveBack = raw ? options.giveBack : undefined;
  return new TransformStream<Uint8Array, Uint8Array>({
    start(controller) {
      jobs = new OrderedJobs(controller);
      emit = (part) => controller.enqueue(part);
    },
    async transform(chunk) {
      let bytes = chunk;
      if (!chunker) {
        const n = Math.min(HEADER_SIZE - headerFilled, bytes.byteLength);
        header.set(bytes.subarray(0, n), headerFilled);
        headerFilled += n;
        bytes = bytes.subarray(n);
        if (headerFilled < HEADER_SIZE) return giveBack?.(chunk);
        startChunks();
      }
      await chunker!.push(bytes);
      if (giveBack) {
        chunker!.detach();
        giveBack(chunk);
      }
    },
    async flush() {
      if (!chunker) {
        throw fail(
          "truncated",
          -1,
          `the stream is truncated: it holds ${headerFilled} bytes, less than a header`,
        );
      }
      await chunker.end();
      await jobs.drain();
    },
  });
}
