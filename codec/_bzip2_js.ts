/**
 * A bzip2 decoder in JavaScript, for runtimes where libbz2 cannot be called (private to codec/bzip2.ts).
 * Written by hand from the format (no library offers a fast streaming decoder): stream header "BZh1".."BZh9";
 * blocks of Huffman-coded MTF/RLE symbols under a Burrows–Wheeler transform and a run-length pre-pass, each
 * with its CRC; an end-of-stream marker with the combined CRC; streams may follow each other.
 *
 * A block is decoded once its compressed bytes are all there (at most about 1 MiB for "BZh9", held back
 * here), then its output is handed out in chunks of at most 1 MiB as the reader asks for them.
 * @module
 */
import { FrostError } from "../base/errors.ts";
import type { Bunzip2Decoder } from "./_bzip2_common.ts";

/** Thrown (as this one object) when a step needs bytes that have not arrived yet. */
const NEED_MORE = { needMore: true };

/** Largest output chunk. */
const OUT_CHUNK = 1 << 20;
/** Input bytes gathered before a step is tried (doubled each time a block turns out larger). */
const FIRST_WANT = 1 << 20;

const BLOCK_MAGIC_HI = 0x314159, BLOCK_MAGIC_LO = 0x265359;
const END_MAGIC_HI = 0x177245, END_MAGIC_LO = 0x385090;
const MAX_GROUPS = 6;
const MAX_ALPHA = 258;
const MAX_SELECTORS = 18002;
const MAX_CODE_LEN = 20;
/** Bits of the first-level Huffman lookup table. */
const TABLE_BITS = 10;
/** Lookup entries: `symbol | length << 16`, or one of these. */
const LONG_CODE = -1;
const BAD_CODE = -2;

/** bzip2's CRC-32: polynomial 0x04C11DB7, most significant bit first. */
const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i << 24;
    for (let k = 0; k < 8; k++) c = c & 0x80000000 ? (c << 1) ^ 0x04c11db7 : c << 1;
    t[i] = c >>> 0;
  }
  return t;
})();

// Decoder states.
/** Expects "BZh" and the block size digit (or, after a stream, the end of input). */
const HEADER = 0;
/** Expects a block's or the end-of-stream marker. */
const BLOCK = 1;
/** Hands out a decoded block. */
const OUTPUT = 2;
/** The input ended after a complete stream. */
const DONE = 3;

function corrupt(what: string): FrostError {
  return new FrostError(`bzip2: corrupt data (${what})`);
}

function hex(n: number): string {
  return `0x${n.toString(16).padStart(8, "0")}`;
}

/** The Huffman decoding tables of one coding group, built like bzip2's own (limit/base/perm). */
class HuffmanGroup {
  readonly limit = new Int32Array(MAX_CODE_LEN + 2);
  readonly base = new Int32Array(MAX_CODE_LEN + 2);
  readonly perm = new Int32Array(MAX_ALPHA);
  readonly table = new Int32Array(1 << TABLE_BITS);
  minLen = 0;
  alphaSize = 0;

  build(lengths: Uint8Array, alphaSize: number): void {
    const { limit, base, perm, table } = this;
    let minLen = 32, maxLen = 0;
    for (let i = 0; i < alphaSize; i++) {
      const l = lengths[i]!;
      if (l > maxLen) maxLen = l;
      if (l < minLen) minLen = l;
    }
    let pp = 0;
    for (let i = minLen; i <= maxLen; i++) {
      for (let j = 0; j < alphaSize; j++) if (lengths[j] === i) perm[pp++] = j;
    }
    base.fill(0);
    for (let i = 0; i < alphaSize; i++) base[lengths[i]! + 1]!++;
    for (let i = 1; i < base.length; i++) base[i]! += base[i - 1]!;
    limit.fill(0);
    let vec = 0;
    for (let i = minLen; i <= maxLen; i++) {
      vec += base[i + 1]! - base[i]!;
      limit[i] = vec - 1;
      vec <<= 1;
    }
    for (let i = minLen + 1; i <= maxLen; i++) base[i] = ((limit[i - 1]! + 1) << 1) - base[i]!;
    this.minLen = minLen;
    this.alphaSize = alphaSize;
    // The first TABLE_BITS bits decide every code that short: the same walk as bzip2's, done once.
    for (let p = 0; p < table.length; p++) {
      let zn = minLen;
      let entry = LONG_CODE;
      while (zn <= TABLE_BITS) {
        const zvec = p >>> (TABLE_BITS - zn);
        if (zvec <= limit[zn]!) {
          const idx = zvec - base[zn]!;
          entry = idx < 0 || idx >= alphaSize ? BAD_CODE : perm[idx]! | (zn << 16);
          break;
        }
        zn++;
      }
      table[p] = entry;
    }
  }
}

/** The JavaScript decoder of concatenated bzip2 streams. */
export class JsBunzip2Decoder implements Bunzip2Decoder {
  // Input: `#buf` from `#pos`, plus chunks not yet joined to it; a bit buffer over it.
  #buf = new Uint8Array(0);
  #pos = 0;
  #bits = 0;
  #nbits = 0;
  #pending: Uint8Array[] = [];
  #pendingBytes = 0;
  /** Input bytes dropped from `#buf` so far (for messages). */
  #dropped = 0;
  #ended = false;
  #sawInput = false;
  #want = FIRST_WANT;

  #state = HEADER;
  #streams = 0;
  #blocks = 0;
  #blockSize = 0;
  #combinedCRC = 0;

  // The current block: BWT vector `#tt` (byte in the low 8 bits, next index above), output state.
  #tt = new Uint32Array(0);
  #nblock = 0;
  #used = 0;
  #tPos = 0;
  #last = -1;
  #run = 0;
  #repeat = 0;
  #storedCRC = 0;
  #crc = 0;

  readonly #groups = Array.from({ length: MAX_GROUPS }, () => new HuffmanGroup());
  readonly #selectors = new Uint8Array(MAX_SELECTORS);
  readonly #lengths = new Uint8Array(MAX_ALPHA);
  readonly #counts = new Int32Array(256);
  readonly #mtf = new Uint8Array(256);

  write(chunk: Uint8Array): void {
    if (chunk.byteLength === 0) return;
    this.#sawInput = true;
    this.#pending.push(chunk);
    this.#pendingBytes += chunk.byteLength;
  }

  end(): void {
    this.#ended = true;
  }

  read(): Uint8Array | null {
    for (;;) {
      if (this.#state === OUTPUT) {
        const out = this.#output();
        if (out.byteLength > 0) return out;
        continue;
      }
      if (this.#state === DONE) return null;
      const available = this.#buf.byteLength - this.#pos + this.#pendingBytes;
      if (!this.#ended && available < this.#want) return null;
      this.#join();
      const pos = this.#pos, bits = this.#bits, nbits = this.#nbits;
      try {
        if (this.#state === HEADER) this.#header();
        else this.#block();
        this.#want = FIRST_WANT;
      } catch (err) {
        if (err !== NEED_MORE) throw err;
        this.#pos = pos;
        this.#bits = bits;
        this.#nbits = nbits;
        if (this.#ended) {
          throw new FrostError(
            `bzip2: truncated stream (the input ends inside ${
              this.#state === HEADER ? "a stream header" : `block ${this.#blocks + 1}`
            } of stream ${this.#streams + 1}, after ${this.#dropped + this.#buf.byteLength} bytes)`,
          );
        }
        this.#want = Math.max(this.#want, available) * 2;
        return null;
      }
    }
  }

  finish(): void {
    if (this.#state !== DONE) throw new FrostError("bzip2: truncated stream");
  }

  close(): void {
    this.#tt = new Uint32Array(0);
    this.#buf = new Uint8Array(0);
    this.#pending = [];
  }

  /** Joins the pending chunks to the unread part of `#buf`. */
  #join(): void {
    if (this.#pending.length === 0) return;
    const rest = this.#buf.subarray(this.#pos);
    const joined = new Uint8Array(rest.byteLength + this.#pendingBytes);
    joined.set(rest);
    let at = rest.byteLength;
    for (const c of this.#pending) {
      joined.set(c, at);
      at += c.byteLength;
    }
    this.#dropped += this.#pos;
    this.#buf = joined;
    this.#pos = 0;
    this.#pending = [];
    this.#pendingBytes = 0;
  }

  /** The next `n` (≤ 24) bits. */
  #get(n: number): number {
    while (this.#nbits < n) {
      if (this.#pos >= this.#buf.byteLength) throw NEED_MORE;
      this.#bits = (this.#bits << 8) | this.#buf[this.#pos++]!;
      this.#nbits += 8;
    }
    this.#nbits -= n;
    return (this.#bits >>> this.#nbits) & ((1 << n) - 1);
  }

  #get32(): number {
    return ((this.#get(16) << 16) | this.#get(16)) >>> 0;
  }

  #header(): void {
    if (this.#ended && this.#pos >= this.#buf.byteLength && this.#nbits < 8) {
      if (this.#streams === 0) {
        throw new FrostError(
          this.#sawInput
            ? "bzip2: truncated stream (no stream header)"
            : "bzip2: empty input (not a bzip2 stream)",
        );
      }
      this.#state = DONE;
      return;
    }
    const b = this.#get(8), z = this.#get(8), h = this.#get(8), level = this.#get(8);
    if (b !== 0x42 || z !== 0x5a || h !== 0x68 || level < 0x31 || level > 0x39) {
      throw new FrostError(
        this.#streams === 0
          ? "bzip2: not a bzip2 stream (bad magic bytes)"
          : `bzip2: data after the end of stream ${this.#streams} is not a bzip2 stream (bad magic bytes at byte ${
            this.#dropped + this.#pos - 4
          })`,
      );
    }
    this.#blockSize = (level - 0x30) * 100000;
    if (this.#tt.length < this.#blockSize) this.#tt = new Uint32Array(this.#blockSize);
    this.#combinedCRC = 0;
    this.#blocks = 0;
    this.#state = BLOCK;
  }

  /** Reads a block (whole) or the end-of-stream marker. */
  #block(): void {
    const hi = this.#get(24), lo = this.#get(24);
    if (hi === END_MAGIC_HI && lo === END_MAGIC_LO) {
      const stored = this.#get32();
      if (stored !== this.#combinedCRC) {
        throw new FrostError(
          `bzip2: stream CRC mismatch in stream ${this.#streams + 1} (stored ${hex(stored)}, computed ${
            hex(this.#combinedCRC)
          }): corrupt data`,
        );
      }
      this.#nbits -= this.#nbits & 7; // Streams start on a byte boundary.
      this.#streams++;
      this.#state = HEADER;
      return;
    }
    if (hi !== BLOCK_MAGIC_HI || lo !== BLOCK_MAGIC_LO) {
      throw corrupt(`bad block header in block ${this.#blocks + 1}`);
    }
    const storedCRC = this.#get32();
    if (this.#get(1)) {
      throw new FrostError(
        "bzip2: randomised blocks (written by bzip2 0.9.0 and older) are not supported without libbz2",
      );
    }
    const origPtr = this.#get(24);

    // The bytes in use.
    const seqToUnseq = new Uint8Array(256);
    let inUse = 0;
    const used16 = this.#get(16);
    for (let i = 0; i < 16; i++) {
      if (used16 & (0x8000 >>> i)) {
        const bits = this.#get(16);
        for (let j = 0; j < 16; j++) if (bits & (0x8000 >>> j)) seqToUnseq[inUse++] = i * 16 + j;
      }
    }
    if (inUse === 0) throw corrupt("a block uses no byte values");
    const alphaSize = inUse + 2;

    // Coding groups and the selector of each 50 symbols (move-to-front coded).
    const nGroups = this.#get(3);
    if (nGroups < 2 || nGroups > MAX_GROUPS) throw corrupt(`${nGroups} coding tables`);
    let nSelectors = this.#get(15);
    if (nSelectors < 1) throw corrupt("no selectors");
    const order = [0, 1, 2, 3, 4, 5];
    const selectors = this.#selectors;
    for (let i = 0; i < nSelectors; i++) {
      let j = 0;
      while (this.#get(1)) {
        if (++j >= nGroups) throw corrupt("bad selector");
      }
      const v = order[j]!;
      for (; j > 0; j--) order[j] = order[j - 1]!;
      order[0] = v;
      if (i < MAX_SELECTORS) selectors[i] = v;
    }
    if (nSelectors > MAX_SELECTORS) nSelectors = MAX_SELECTORS;

    // Code lengths, delta coded, and the decoding tables.
    const lengths = this.#lengths;
    for (let t = 0; t < nGroups; t++) {
      let len = this.#get(5);
      for (let i = 0; i < alphaSize; i++) {
        for (;;) {
          if (len < 1 || len > MAX_CODE_LEN) throw corrupt("bad code length");
          if (!this.#get(1)) break;
          len += this.#get(1) ? -1 : 1;
        }
        lengths[i] = len;
      }
      this.#groups[t]!.build(lengths, alphaSize);
    }

    // The symbols: move-to-front indexes and RUNA/RUNB-coded runs of the front byte, until end-of-block.
    const tt = this.#tt;
    const counts = this.#counts;
    counts.fill(0);
    const mtf = this.#mtf;
    for (let i = 0; i < inUse; i++) mtf[i] = seqToUnseq[i]!;
    const eob = inUse + 1;
    const nblockMax = this.#blockSize;
    const buf = this.#buf;
    const end = buf.byteLength;
    let pos = this.#pos, bits = this.#bits, nbits = this.#nbits;
    let nblock = 0;
    let groupNo = -1, groupPos = 0;
    let group = this.#groups[0]!;
    let table = group.table;
    let runN = 0, runLen = 0;
    for (;;) {
      if (groupPos === 0) {
        if (++groupNo >= nSelectors) throw corrupt("more symbols than selectors");
        groupPos = 50;
        group = this.#groups[selectors[groupNo]!]!;
        table = group.table;
      }
      groupPos--;
      // A valid symbol is always followed by at least 80 bits (a block or end-of-stream marker and a CRC),
      // so asking for 20 bits here never asks for more than a complete stream holds.
      while (nbits < MAX_CODE_LEN) {
        if (pos >= end) throw NEED_MORE;
        bits = (bits << 8) | buf[pos++]!;
        nbits += 8;
      }
      let sym: number;
      const entry = table[(bits >>> (nbits - TABLE_BITS)) & ((1 << TABLE_BITS) - 1)]!;
      if (entry >= 0) {
        nbits -= entry >>> 16;
        sym = entry & 0xffff;
      } else {
        if (entry === BAD_CODE) throw corrupt("bad Huffman code");
        let zn = group.minLen > TABLE_BITS ? group.minLen : TABLE_BITS + 1;
        let zvec = (bits >>> (nbits - zn)) & ((1 << zn) - 1);
        while (zvec > group.limit[zn]!) {
          if (++zn > MAX_CODE_LEN) throw corrupt("bad Huffman code");
          zvec = (bits >>> (nbits - zn)) & ((1 << zn) - 1);
        }
        nbits -= zn;
        const idx = zvec - group.base[zn]!;
        if (idx < 0 || idx >= group.alphaSize) throw corrupt("bad Huffman code");
        sym = group.perm[idx]!;
      }
      if (sym <= 1) {
        if (runN === 0) {
          runN = 1;
          runLen = 0;
        } else if (runN >= 2 * 1024 * 1024) throw corrupt("run too long");
        runLen += (sym + 1) * runN;
        runN <<= 1;
        continue;
      }
      if (runN !== 0) {
        if (runLen > nblockMax - nblock) throw corrupt("block longer than its stream header allows");
        const uc = mtf[0]!;
        counts[uc]! += runLen;
        tt.fill(uc, nblock, nblock + runLen);
        nblock += runLen;
        runN = 0;
      }
      if (sym === eob) break;
      if (nblock >= nblockMax) throw corrupt("block longer than its stream header allows");
      const nn = sym - 1;
      const uc = mtf[nn]!;
      if (nn < 16) {
        for (let k = nn; k > 0; k--) mtf[k] = mtf[k - 1]!;
      } else {
        mtf.copyWithin(1, 0, nn);
      }
      mtf[0] = uc;
      counts[uc]!++;
      tt[nblock++] = uc;
    }
    this.#pos = pos;
    this.#bits = bits;
    this.#nbits = nbits;
    if (origPtr >= nblock) throw corrupt(`block ${this.#blocks + 1}: origin pointer past its end`);

    // Inverse Burrows–Wheeler: link each position to the next.
    const cftab = new Int32Array(256);
    for (let i = 0, sum = 0; i < 256; i++) {
      cftab[i] = sum;
      sum += counts[i]!;
    }
    for (let i = 0; i < nblock; i++) {
      const uc = tt[i]! & 0xff;
      tt[cftab[uc]!++]! |= i << 8;
    }
    this.#nblock = nblock;
    this.#used = 0;
    this.#tPos = tt[origPtr]! >>> 8;
    this.#last = -1;
    this.#run = 0;
    this.#repeat = 0;
    this.#storedCRC = storedCRC;
    this.#crc = 0xffffffff;
    this.#state = OUTPUT;
  }

  /** The next output of the current block (undoing the run-length pre-pass); checks its CRC at its end. */
  #output(): Uint8Array {
    const tt = this.#tt;
    const nblock = this.#nblock;
    let used = this.#used, tPos = this.#tPos, last = this.#last, run = this.#run, repeat = this.#repeat;
    // Only as large as the block can still give (a count byte stands for at most 255 bytes).
    const size = Math.min(OUT_CHUNK, repeat + (nblock - used) * 255);
    const out = new Uint8Array(size);
    let n = 0;
    if (repeat > 0) {
      const k = Math.min(repeat, size);
      out.fill(last, 0, k);
      n = k;
      repeat -= k;
      if (repeat === 0) last = -1;
    }
    while (n < size && used < nblock) {
      tPos = tt[tPos]!;
      const b = tPos & 0xff;
      tPos >>>= 8;
      used++;
      if (run === 4) {
        const k = Math.min(b, size - n);
        out.fill(last, n, n + k);
        n += k;
        repeat = b - k;
        run = 0;
        if (repeat === 0) last = -1;
        continue;
      }
      out[n++] = b;
      if (b === last) run++;
      else {
        last = b;
        run = 1;
      }
    }
    this.#used = used;
    this.#tPos = tPos;
    this.#last = last;
    this.#run = run;
    this.#repeat = repeat;
    let crc = this.#crc;
    for (let i = 0; i < n; i++) crc = (crc << 8) ^ CRC_TABLE[((crc >>> 24) ^ out[i]!) & 0xff]!;
    this.#crc = crc;
    if (used === nblock && repeat === 0) {
      const computed = ~crc >>> 0;
      this.#blocks++;
      if (computed !== this.#storedCRC) {
        throw new FrostError(
          `bzip2: block CRC mismatch in block ${this.#blocks} of stream ${this.#streams + 1} (stored ${
            hex(this.#storedCRC)
          }, computed ${hex(computed)}): corrupt data`,
        );
      }
      this.#combinedCRC = (((this.#combinedCRC << 1) | (this.#combinedCRC >>> 31)) ^ computed) >>> 0;
      this.#state = BLOCK;
    }
    return n === size ? out : out.subarray(0, n);
  }
}
