/**
 * The rsync engine's block machinery: the block-size rule, rsync's weak rolling checksum, block
 * signatures, and the scanner that reads a file once and, against the parent's signatures, turns it into
 * copy-from-parent block references and literal bytes while computing the new signatures and the file
 * hash (format in docs/FORMAT.md (section "The rsync engine")).
 *
 * The hot loops avoid allocations: the file streams through one reusable buffer, signatures live in
 * typed arrays, and the strong hash is computed only to confirm a weak-checksum hit (or the block that
 * follows the previous match, which in an unchanged region saves computing the weak checksum at all).
 * @module
 */
import crypto from "node:crypto";

/** Bytes of a block's strong hash kept in signatures: the first 16 bytes of its SHA-256. */
export const STRONG_LEN = 16;
/** Bytes of one block's signature in the state: 4 (weak) + 16 (strong). */
export const SIGNATURE_BYTES = 4 + STRONG_LEN;
/** Smallest block size. */
export const MIN_BLOCK = 8 << 10;
/** Largest block size. */
export const MAX_BLOCK = 4 << 20;
/** Files get at most this many blocks, until blocks reach MAX_BLOCK (files over 1 TiB). */
export const TARGET_BLOCKS = 1 << 18;

/**
 * The block size of a file of `size` bytes: the smallest power of two ≥ size / 2^18, clamped to
 * [8 KiB, 4 MiB]. Up to 2 GiB a file has 8 KiB blocks (a rewritten 4 KiB region costs one 8 KiB
 * literal); above, the block count stays ≤ 2^18 (signatures ≤ 5 MiB, the search table ≤ 6 MiB) up to
 * 1 TiB. Signature bytes per data byte: 20 / blockSize ≤ 0.25 %.
 */
export function blockSizeFor(size: number): number {
  let b = MIN_BLOCK;
  while (b < MAX_BLOCK && b * TARGET_BLOCKS < size) b *= 2;
  return b;
}

/**
 * rsync's weak checksum of `buf[start, start + len)`: `a = Σ x_i mod 2^16`,
 * `b = Σ (len − i)·x_i mod 2^16`, value `a + 2^16·b` (unsigned 32-bit).
 */
export function weakSum(buf: Uint8Array, start: number, len: number): number {
  let a = 0;
  let b = 0;
  for (let i = start, end = start + len; i < end; i++) {
    a = (a + buf[i]!) | 0;
    b = (b + a) | 0;
  }
  return ((a & 0xffff) | (b << 16)) >>> 0;
}

/**
 * The weak checksums of `count` consecutive blocks of `len` bytes from `buf[start]` into `out[at…]`. One
 * long loop rather than a call per block: V8 then optimizes it fully at once (on-stack replacement),
 * where per-block calls ran the slower mid-tier code for the first ~100 MB.
 */
export function weakSums(
  buf: Uint8Array,
  start: number,
  len: number,
  count: number,
  out: Uint32Array,
  at: number,
) {
  for (let k = 0; k < count; k++) {
    let a = 0;
    let b = 0;
    for (let i = start + k * len, end = i + len; i < end; i++) {
      a = (a + buf[i]!) | 0;
      b = (b + a) | 0;
    }
    out[at + k] = ((a & 0xffff) | (b << 16)) >>> 0;
  }
}

type HashFn = (data: Uint8Array) => Uint8Array;

/** One-shot SHA-256. `crypto.hash` (Deno, Bun, Node ≥ 21.7) has far less per-call cost than createHash. */
export const sha256: HashFn = typeof (crypto as { hash?: unknown }).hash === "function"
  ? (data) => crypto.hash("sha256", data, "buffer")
  : (data) => crypto.createHash("sha256").update(data).digest();

/** The block signatures of one file (full blocks only; a shorter last block has none). */
export interface Signatures {
  blockSize: number;
  count: number;
  /** Weak checksum of each block. */
  weak: Uint32Array;
  /** STRONG_LEN bytes per block: the start of the block's SHA-256. */
  strong: Uint8Array;
}

/** Encodes signatures as the state stores them: u32 block size, u32 count, weak u32 LE ×count, strong. */
export function encodeSignatures(s: Signatures): Uint8Array {
  const out = new Uint8Array(8 + s.count * SIGNATURE_BYTES);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, s.blockSize, true);
  dv.setUint32(4, s.count, true);
  for (let i = 0; i < s.count; i++) dv.setUint32(8 + 4 * i, s.weak[i]!, true);
  out.set(s.strong.subarray(0, s.count * STRONG_LEN), 8 + 4 * s.count);
  return out;
}

/** Decodes `encodeSignatures()` output; undefined when malformed. */
export function decodeSignatures(bytes: Uint8Array): Signatures | undefined {
  if (bytes.length < 8) return undefined;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const blockSize = dv.getUint32(0, true);
  const count = dv.getUint32(4, true);
  if (blockSize === 0 || bytes.length !== 8 + count * SIGNATURE_BYTES) return undefined;
  const weak = new Uint32Array(count);
  for (let i = 0; i < count; i++) weak[i] = dv.getUint32(8 + 4 * i, true);
  const strong = bytes.slice(8 + 4 * count);
  return { blockSize, count, weak, strong };
}

/** Where the scanner's output goes, in stream order. */
export interface OpSink {
  /** Literal bytes `buf[start, end)` (only valid during the call). */
  literal(buf: Uint8Array, start: number, end: number): void;
  /** `count` whole blocks of the base, from block `first` on. */
  copy(first: number, count: number): void;
  /** `n` zero bytes that are a hole of the file (whole blocks; see `Scanner.hole`). */
  hole?(n: number): void;
}

const zeroDigests = new Map<number, Uint8Array>();

/** The SHA-256 of `size` zero bytes (a block of a hole), computed once per block size. */
export function zeroBlockDigest(size: number): Uint8Array {
  let d = zeroDigests.get(size);
  if (!d) zeroDigests.set(size, d = sha256(new Uint8Array(size)));
  return d;
}

/** What a scan produced. */
export interface ScanResult {
  /** Bytes scanned (the file's content as stored). */
  size: number;
  signatures: Signatures;
  /** The file hash (docs/FORMAT.md (section "The rsync engine")): SHA-256 over the blocks' SHA-256s, the tail, size and block size. */
  hash: Uint8Array;
  /** Bytes sent as literals, and as block references. */
  literalBytes: number;
  copiedBytes: number;
}

const FILTER_MULT = 0x2c1b3c6d;
const TABLE_MULT = 0x9e3779b1 | 0;
/**
 * The filter is a blocked Bloom filter: a checksum hashed to `f` sets three bits of the 32-bit word chosen
 * by the top bits of `f` (roll() inlines the same computation). With 16 bits per block ~1 % of the
 * positions that are not in the table pass it, for one load per position.
 */
function filterBits(f: number): number {
  const g = f ^ (f >>> 16);
  return (1 << (g & 31)) | (1 << ((g >>> 5) & 31)) | (1 << ((g >>> 10) & 31));
}

/** Scratch for roll()'s two running sums. */
const roller = new Int32Array(2);

/**
 * Rolls the window `buf[p, p + bs)` (sums in `sums`) one byte at a time until its weak checksum is one of
 * the table's, or `p` reaches `limit`; returns `p`. Kept apart from the rest of the search so that its
 * loop, the hot one, is optimized on its own and never deoptimized by the rarely taken paths around it.
 */
function roll(
  buf: Uint8Array,
  p: number,
  limit: number,
  bs: number,
  filter: Int32Array,
  filterShift: number,
  slots: Int32Array,
  shift: number,
  mask: number,
  sums: Int32Array,
): number {
  let a = sums[0]!;
  let b = sums[1]!;
  outer: for (;;) {
    const w = (b << 16) | a;
    const f = Math.imul(w, FILTER_MULT);
    const g = f ^ (f >>> 16);
    const m = (1 << (g & 31)) | (1 << ((g >>> 5) & 31)) | (1 << ((g >>> 10) & 31));
    if ((filter[f >>> filterShift]! & m) === m) {
      let h = (Math.imul(w, TABLE_MULT) >>> shift) << 1;
      while (slots[h + 1]! >= 0) {
        if (slots[h] === w) break outer;
        h = (h + 2) & mask;
      }
    }
    if (p >= limit) break;
    const out = buf[p]!;
    a = (a - out + buf[p + bs]!) & 0xffff;
    b = (b - Math.imul(bs, out) + a) & 0xffff;
    p++;
  }
  sums[0] = a;
  sums[1] = b;
  return p;
}

/** Longest chain of equal weak checksums searched (against crafted files that collide on purpose). */
const MAX_CHAIN = 64;
/** Bytes read from the file per read call. */
const PIECE = 1 << 20;
const NO_WEAK = new Uint32Array(0);
const NO_BYTES = new Uint8Array(0);
/** Room kept after the data for the file hash's trailer (u64 size, u32 block size). */
const TRAILER = 12;

/**
 * The search table over a base file's signatures. `slots` is open addressing (linear probing, load ≤ 1/2)
 * over the distinct weak checksums: per slot the checksum (as int32) and the first block having it
 * (-1: empty); `next` chains the other blocks with the same checksum and another strong hash (identical
 * blocks, such as runs of zeros, are kept once, at their lowest index). A Bloom filter over the checksums
 * (see filterBits) lets the rolling loop skip most positions after one load from a small array.
 */
class BlockTable {
  readonly slots: Int32Array;
  readonly mask: number;
  readonly shift: number;
  readonly next: Int32Array;
  readonly filter: Int32Array;
  readonly filterShift: number;

  constructor(sigs: Signatures) {
    const n = sigs.count;
    let fbits = 10;
    while ((1 << fbits) < 16 * n && fbits < 22) fbits++;
    this.filter = new Int32Array((1 << fbits) >>> 5);
    this.filterShift = 32 - (fbits - 5);
    let bits = 4;
    while ((1 << bits) < 2 * n && bits < 30) bits++;
    this.slots = new Int32Array(2 << bits);
    for (let i = 1; i < this.slots.length; i += 2) this.slots[i] = -1;
    this.mask = (2 << bits) - 1;
    this.shift = 32 - bits;
    this.next = new Int32Array(n).fill(-1);
    const { weak, strong } = sigs;
    const slots = this.slots;
    const next = this.next;
    // Inserted last to first so chains list lower block numbers first.
    for (let i = n - 1; i >= 0; i--) {
      const w = weak[i]! | 0;
      const f = Math.imul(w, FILTER_MULT);
      this.filter[f >>> this.filterShift]! |= filterBits(f);
      let h = (Math.imul(w, TABLE_MULT) >>> this.shift) << 1;
      while (slots[h + 1]! >= 0 && slots[h] !== w) h = (h + 2) & this.mask;
      let j = slots[h + 1]!;
      if (j < 0) {
        slots[h] = w;
        slots[h + 1] = i;
        continue;
      }
      let steps = 0;
      let prev = -1;
      while (j >= 0 && steps < MAX_CHAIN && !sameStrong(strong, j * STRONG_LEN, strong, i * STRONG_LEN)) {
        prev = j;
        j = next[j]!;
        steps++;
      }
      if (j >= 0 && steps < MAX_CHAIN) {
        // The same block at a higher index: this lower one takes its place.
        next[i] = next[j]!;
        if (prev < 0) slots[h + 1] = i;
        else next[prev] = i;
      } else {
        next[i] = slots[h + 1]!;
        slots[h + 1] = i;
      }
    }
  }

  /** The first block whose weak checksum is `w` (as int32), or -1. */
  first(w: number): number {
    const slots = this.slots;
    let h = (Math.imul(w, TABLE_MULT) >>> this.shift) << 1;
    for (;;) {
      const j = slots[h + 1]!;
      if (j < 0 || slots[h] === w) return j;
      h = (h + 2) & this.mask;
    }
  }
}

function sameStrong(a: Uint8Array, ai: number, b: Uint8Array, bi: number): boolean {
  for (let k = 0; k < STRONG_LEN; k++) if (a[ai + k] !== b[bi + k]) return false;
  return true;
}

/**
 * Scans one file's bytes, fed in order through `space()`/`advance()`. Without a base every byte is a
 * literal; with one, a rolling search finds the base's blocks anywhere in the file.
 *
 * @example
 * ```ts ignore
 * const scanner = new Scanner(sink, parentSignatures, blockSizeFor(size), size);
 * for (;;) {
 *   const { buffer, offset, length } = scanner.space();
 *   const n = fs.readSync(fd, buffer, offset, length, scanner.fileOffset);
 *   if (n === 0) break;
 *   scanner.advance(n);
 * }
 * const { signatures, hash } = scanner.finish();
 * ```
 */
export class Scanner {
  readonly #sink: OpSink;
  readonly #base: Signatures | undefined;
  readonly #table: BlockTable | undefined;
  /** Block size of the new signatures. */
  readonly #bs: number;
  readonly #buf: Uint8Array;
  /** File offset of buf[0]. */
  #bufStart = 0;
  /** Valid bytes in buf. */
  #end = 0;

  // New signatures, and the full SHA-256 of each block for the file hash.
  #weak: Uint32Array;
  #strong: Uint8Array;
  #digests: Uint8Array;
  /** 1 where the matcher already filled a block's signature. */
  #have: Uint8Array;
  #count = 0;
  /** File offset of the next block to sign. */
  #signAt = 0;

  // Matcher state (buffer indexes).
  #pos = 0;
  #lit = 0;
  #rolling = false;
  #a = 0;
  #b = 0;
  /** The base block expected next (the one after the last match). */
  #expect = 0;
  #copyFirst = -1;
  #copyCount = 0;
  #literalBytes = 0;
  #copiedBytes = 0;

  /**
   * `sink` receives the ops; `base` are the parent's signatures (none: the file is sent whole);
   * `blockSize` is the new signatures' block size; `expectedSize` bounds their count (more bytes than
   * that may not be fed).
   */
  constructor(
    sink: OpSink,
    base: Signatures | undefined,
    blockSize: number,
    expectedSize: number,
    buffer?: Uint8Array,
  ) {
    if (!warmedUp) {
      warmedUp = true;
      warmUp();
    }
    this.#sink = sink;
    this.#base = base && base.count > 0 ? base : undefined;
    this.#table = this.#base ? new BlockTable(this.#base) : undefined;
    this.#bs = blockSize;
    const largest = Math.max(blockSize, this.#base?.blockSize ?? 0);
    const cap = Math.max(4 * PIECE, 4 * largest) + TRAILER;
    this.#buf = buffer && buffer.length >= cap ? buffer : new Uint8Array(cap);
    const n = Math.floor(expectedSize / blockSize);
    this.#weak = n === 0 ? NO_WEAK : new Uint32Array(n);
    this.#strong = n === 0 ? NO_BYTES : new Uint8Array(n * STRONG_LEN);
    this.#digests = n === 0 ? NO_BYTES : new Uint8Array(n * 32);
    this.#have = n === 0 ? NO_BYTES : new Uint8Array(n);
  }

  /** The buffer the file streams through; hand it to the next Scanner to save allocating one. */
  get buffer(): Uint8Array {
    return this.#buf;
  }

  /** File offset of the next byte to feed. */
  get fileOffset(): number {
    return this.#bufStart + this.#end;
  }

  /** Where to put the next bytes: `buffer[offset, offset + length)`. Makes room when needed. */
  space(): { buffer: Uint8Array; offset: number; length: number } {
    const room = this.#buf.length - TRAILER;
    if (room - this.#end < PIECE) this.#compact();
    return { buffer: this.#buf, offset: this.#end, length: Math.min(PIECE, room - this.#end) };
  }

  /** Processes `n` new bytes written at `space().offset`. */
  advance(n: number): void {
    const start = this.#end;
    this.#end += n;
    if (this.#table) {
      this.#match();
      this.#sign(this.#bufStart + this.#pos);
    } else {
      this.#emitLiteral(start, this.#end);
      this.#sign(Number.MAX_SAFE_INTEGER);
    }
  }

  /**
   * Takes `n` zero bytes, a hole of the file, without their being read: they go out as one hole op, and
   * their blocks get the signatures of zero blocks, so signatures and file hash are those of the zeros.
   * `fileOffset` and `n` must be multiples of the block size; what was fed before is matched and sent
   * first (the search starts again after the hole).
   */
  hole(n: number): void {
    const bs = this.#bs;
    const at = this.fileOffset;
    if (at % bs !== 0 || n % bs !== 0 || !this.#sink.hole) {
      throw new RangeError(`Cannot take a hole of ${n} bytes at ${at}: not whole blocks of ${bs}`);
    }
    if (n === 0) return;
    if (this.#table) {
      this.#match();
      this.#emitLiteral(this.#lit, this.#end);
      this.#rolling = false;
    }
    this.#flushCopy();
    this.#pos = this.#lit = this.#end;
    this.#sign(Number.MAX_SAFE_INTEGER);
    const digest = zeroBlockDigest(bs);
    const blocks = Math.min(n / bs, this.#weak.length - this.#count);
    for (let k = this.#count, end = this.#count + blocks; k < end; k++) {
      this.#weak[k] = 0; // rsync's weak checksum of zeros
      this.#digests.set(digest, k * 32);
      this.#strong.set(digest.subarray(0, STRONG_LEN), k * STRONG_LEN);
    }
    this.#count += blocks;
    this.#signAt = at + n;
    this.#sink.hole(n);
    this.#bufStart = at + n;
    this.#end = this.#pos = this.#lit = 0;
  }

  /** Ends the file: the rest is literal, the last signatures are computed, the file hash is made. */
  finish(): ScanResult {
    if (this.#table) {
      this.#match();
      this.#emitLiteral(this.#lit, this.#end);
      this.#lit = this.#end;
    }
    this.#flushCopy();
    this.#sign(Number.MAX_SAFE_INTEGER);
    const size = this.#bufStart + this.#end;
    const count = this.#count;
    const tailStart = this.#signAt - this.#bufStart;
    // The trailer goes right after the tail (the buffer keeps room for it): one hash call for small files.
    const buf = this.#buf;
    const dv = new DataView(buf.buffer, buf.byteOffset + this.#end, TRAILER);
    dv.setUint32(0, size >>> 0, true);
    dv.setUint32(4, Math.floor(size / 0x1_0000_0000), true);
    dv.setUint32(8, this.#bs, true);
    const tail = buf.subarray(tailStart, this.#end + TRAILER);
    const hash = count === 0
      ? sha256(tail)
      : crypto.createHash("sha256").update(this.#digests.subarray(0, count * 32)).update(tail).digest();
    return {
      size,
      signatures: {
        blockSize: this.#bs,
        count,
        weak: this.#weak.subarray(0, count),
        strong: this.#strong.subarray(0, count * STRONG_LEN),
      },
      hash,
      literalBytes: this.#literalBytes,
      copiedBytes: this.#copiedBytes,
    };
  }

  /** Drops consumed bytes from the buffer, keeping the pending window, literal and unsigned block. */
  #compact(): void {
    if (this.#table) {
      // Pending literal bytes go out now, so that only the window and the unsigned block stay.
      this.#emitLiteral(this.#lit, this.#pos);
      this.#lit = this.#pos;
    }
    const keep = Math.min(this.#table ? this.#pos : this.#end, this.#signAt - this.#bufStart);
    if (keep <= 0) return;
    this.#buf.copyWithin(0, keep, this.#end);
    this.#bufStart += keep;
    this.#end -= keep;
    this.#pos -= keep;
    this.#lit -= keep;
  }

  /** Signs every complete block of the new file that starts before file offset `limit`. */
  #sign(limit: number): void {
    const bs = this.#bs;
    const buf = this.#buf;
    const fileEnd = this.#bufStart + this.#end;
    let todo = 0;
    while (
      this.#signAt + todo * bs < limit && this.#signAt + (todo + 1) * bs <= fileEnd &&
      this.#count + todo < this.#weak.length
    ) todo++;
    if (todo === 0) return;
    const first = this.#count;
    const at = this.#signAt - this.#bufStart;
    const have = this.#have;
    for (let k = 0; k < todo;) {
      if (have[first + k] === 1) { // signed by the matcher
        k++;
        continue;
      }
      let run = 1;
      while (k + run < todo && have[first + k + run] === 0) run++;
      weakSums(buf, at + k * bs, bs, run, this.#weak, first + k);
      k += run;
    }
    for (let k = 0; k < todo; k++) {
      if (have[first + k] === 1) continue;
      const o = at + k * bs;
      const d = sha256(buf.subarray(o, o + bs));
      this.#digests.set(d, (first + k) * 32);
      this.#strong.set(d.subarray(0, STRONG_LEN), (first + k) * STRONG_LEN);
    }
    this.#count += todo;
    this.#signAt += todo * bs;
  }

  #emitLiteral(start: number, end: number): void {
    if (end <= start) return;
    this.#flushCopy();
    this.#sink.literal(this.#buf, start, end);
    this.#literalBytes += end - start;
  }

  #flushCopy(): void {
    if (this.#copyCount > 0) {
      this.#sink.copy(this.#copyFirst, this.#copyCount);
      this.#copyCount = 0;
    }
  }

  /** A match of base block `m` at buffer index `p`, whose SHA-256 is `digest`. */
  #matched(m: number, p: number, digest: Uint8Array): void {
    const base = this.#base!;
    const bs = base.blockSize;
    this.#emitLiteral(this.#lit, p);
    if (this.#copyCount > 0 && this.#copyFirst + this.#copyCount === m) {
      this.#copyCount++;
    } else {
      this.#flushCopy();
      this.#copyFirst = m;
      this.#copyCount = 1;
    }
    this.#copiedBytes += bs;
    // The window is a block of the new file too: its signature is known (same bytes as base block m).
    const off = this.#bufStart + p;
    if (bs === this.#bs && off % bs === 0) {
      const k = off / bs;
      if (k < this.#have.length) {
        this.#have[k] = 1;
        this.#weak[k] = base.weak[m]!;
        this.#digests.set(digest, k * 32);
        this.#strong.set(digest.subarray(0, STRONG_LEN), k * STRONG_LEN);
      }
    }
    this.#lit = p + bs;
    this.#expect = m + 1;
    this.#rolling = false;
  }

  /** The rolling search over the buffered bytes; stops when the window cannot be completed. */
  #match(): void {
    const base = this.#base!;
    const table = this.#table!;
    const bs = base.blockSize;
    const n = base.count;
    const baseWeak = base.weak;
    const baseStrong = base.strong;
    const next = table.next;
    const buf = this.#buf;
    const end = this.#end;
    // The window [p, p + bs) can roll on while the byte entering it is buffered.
    const limit = end - bs;
    let p = this.#pos;
    let a = this.#a;
    let b = this.#b;
    outer: while (p <= limit) {
      let digest: Uint8Array | undefined;
      if (!this.#rolling) {
        // Right after a match (or at the start): try the base's next block first, on its strong hash
        // alone. In unchanged regions this is the only work per block.
        const e = this.#expect;
        if (e < n) {
          digest = sha256(buf.subarray(p, p + bs));
          if (sameStrong(digest, 0, baseStrong, e * STRONG_LEN)) {
            this.#matched(e, p, digest);
            p += bs;
            continue;
          }
        }
        const w = weakSum(buf, p, bs);
        a = w & 0xffff;
        b = w >>> 16;
        this.#rolling = true;
      }
      for (;;) {
        const w = (b << 16) | a;
        let j = table.first(w);
        if (j >= 0) {
          let steps = 0;
          digest ??= sha256(buf.subarray(p, p + bs));
          while (j >= 0 && steps < MAX_CHAIN && !sameStrong(digest, 0, baseStrong, j * STRONG_LEN)) {
            j = next[j]!;
            steps++;
          }
          if (j >= 0 && steps < MAX_CHAIN) {
            // Prefer the block after the previous match when it has the same content (runs of zeros).
            const e = this.#expect;
            const m = e < n && e !== j && (baseWeak[e]! | 0) === w &&
                sameStrong(digest, 0, baseStrong, e * STRONG_LEN)
              ? e
              : j;
            this.#matched(m, p, digest);
            p += bs;
            continue outer;
          }
        }
        if (p >= limit) break outer; // the next byte is not buffered yet
        digest = undefined;
        // One step, then on to the next position whose weak checksum may be in the table.
        const out = buf[p]!;
        a = (a - out + buf[p + bs]!) & 0xffff;
        b = (b - Math.imul(bs, out) + a) & 0xffff;
        roller[0] = a;
        roller[1] = b;
        p = roll(
          buf,
          p + 1,
          limit,
          bs,
          table.filter,
          table.filterShift,
          table.slots,
          table.shift,
          table.mask,
          roller,
        );
        a = roller[0]!;
        b = roller[1]!;
      }
    }
    this.#pos = p;
    this.#a = a;
    this.#b = b;
  }
}

let warmedUp = false;

/**
 * Runs every path of the scanner once on a few blocks, before the first real scan (~10 ms, so not at
 * load time: every frost command loads this module). V8 optimizes the long loops on stack while they
 * run; code after them that never ran before has no type feedback, and the optimized code then
 * deoptimized on every call (measured: once per 1 MiB read, 2–3× slower overall; weakSum 4× slower).
 */
function warmUp(): void {
  weakSum(new Uint8Array(64), 0, 64);
  weakSums(new Uint8Array(64), 0, 16, 4, new Uint32Array(4), 0);
  const bs = MIN_BLOCK;
  const data = new Uint8Array(6 * bs);
  let x = 1;
  for (let i = 0; i < data.length; i++) {
    x = Math.imul(x, 1103515245) + 12345;
    data[i] = x >>> 24;
  }
  const sink: OpSink = { literal() {}, copy() {} };
  const feed = (scanner: Scanner, bytes: Uint8Array) => {
    for (let off = 0; off < bytes.length;) {
      const { buffer, offset, length } = scanner.space();
      const n = Math.min(length, bytes.length - off, 3 * bs + 5);
      buffer.set(bytes.subarray(off, off + n), offset);
      scanner.advance(n);
      off += n;
    }
    return scanner.finish();
  };
  const base = feed(new Scanner(sink, undefined, bs, data.length), data).signatures;
  const changed = new Uint8Array(data.length + 1);
  changed.set(data.subarray(0, 2 * bs));
  changed[2 * bs] = 7; // an insertion, then a rewritten block
  changed.set(data.subarray(2 * bs), 2 * bs + 1);
  changed.fill(3, 4 * bs, 5 * bs);
  for (let i = 0; i < 3; i++) feed(new Scanner(sink, base, bs, changed.length), changed);
}
