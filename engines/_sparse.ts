/**
 * Sparse files for the tar engine: finding the data regions of a file with holes, and the pieces of
 * GNU tar's PAX sparse format 1.0 that frost writes and reads (GNU tar's own format, written by hand: no
 * library writes it).
 *
 * A member in format 1.0 has the pax records `GNU.sparse.major=1`, `GNU.sparse.minor=0`,
 * `GNU.sparse.name=<the real member name>` and `GNU.sparse.realsize=<the file's size>`; its ustar name is
 * `<dir>/GNUSparseFile.0/<name>` (a tar that ignores the records extracts the condensed data there). Its
 * data starts with the sparse map, decimal numbers each ended by `\n`: the number of regions, then each
 * region's offset and size; the map is padded with NULs to a 512-byte block. The regions' bytes follow,
 * one after the other; every region but the last has a size that is a multiple of 512, as GNU tar reads
 * each region in whole blocks. A file that ends with a hole ends its map with an empty region at its size
 * (GNU tar truncates the file there).
 * @module
 */
import fs from "node:fs";
import { Buffer } from "node:buffer";
import { type Lseek, lseekFunction, SEEK_DATA, SEEK_HOLE } from "./_ffi_lseek.ts";

const BLOCK = 512;
/** Granularity of holes found by reading (where lseek's SEEK_DATA is not available): a page. */
const SCAN_BLOCK = 4096;
const SCAN_READ = 1 << 20;

/**
 * Whether a regular file may have holes: fewer blocks allocated than its size needs (GNU tar's test).
 * Only such files are searched for holes, so ordinary files cost nothing extra.
 */
export function mayHaveHoles(st: fs.BigIntStats): boolean {
  return st.blocks * 512n < st.size;
}

/** A sparse file's layout: its data regions and the map text that precedes them in the archive. */
export interface SparseLayout {
  /** Offsets and sizes of the data regions, flat: `[offset0, size0, offset1, size1, …]`. */
  regions: number[];
  /** The map as it is stored at the start of the member's data, padded to a block. */
  text: Uint8Array;
  /** Bytes of the member's data in the archive: the map text plus every region. */
  stored: number;
}

/**
 * The data regions of the open file `fd` of `size` bytes as a SparseLayout, or undefined when it has no
 * holes (store it as a plain file). Uses SEEK_DATA/SEEK_HOLE where the runtime can call lseek, else reads
 * the file and counts each all-zero 4 KiB block as a hole. A read error gives undefined: the plain read
 * that follows reports it. `options.seek: false` reads even where lseek is available.
 */
export function sparseLayout(
  fd: number,
  size: number,
  options: { seek?: boolean } = {},
): SparseLayout | undefined {
  const lseek = options.seek === false ? undefined : lseekFunction();
  let regions = lseek ? seekRegions(lseek, fd, size) : undefined;
  if (regions === undefined) {
    try {
      regions = scanRegions(fd, size);
    } catch {
      return undefined;
    }
  }
  regions = normalize(regions, size);
  if (regions.length === 2 && regions[0] === 0 && regions[1] === size) return undefined;
  const text = mapText(regions);
  let stored = text.length;
  for (let i = 1; i < regions.length; i += 2) stored += regions[i]!;
  return { regions, text, stored };
}

/** Data regions by SEEK_DATA/SEEK_HOLE; undefined when the file system does not answer them. */
function seekRegions(lseek: Lseek, fd: number, size: number): number[] | undefined {
  if (lseek(fd, 0, SEEK_HOLE) < 0) return undefined;
  const regions: number[] = [];
  let pos = 0;
  while (pos < size) {
    // -1 here is ENXIO: no data after `pos` (SEEK_HOLE worked, so the call itself is supported).
    const data = lseek(fd, pos, SEEK_DATA);
    if (data < 0 || data >= size) break;
    let hole = lseek(fd, data, SEEK_HOLE);
    if (hole < 0 || hole > size) hole = size;
    if (hole <= data) return undefined;
    regions.push(data, hole - data);
    pos = hole;
  }
  return regions;
}

const ZEROS = Buffer.alloc(SCAN_BLOCK);

/** Data regions by reading: runs of 4 KiB blocks that are not all zeros. */
function scanRegions(fd: number, size: number): number[] {
  const regions: number[] = [];
  const buf = Buffer.allocUnsafe(SCAN_READ);
  let pos = 0;
  let start = -1;
  while (pos < size) {
    const n = fs.readSync(fd, buf, 0, Math.min(SCAN_READ, size - pos), pos);
    if (n === 0) break; // shrank: the plain read that follows reports it
    for (let i = 0; i < n; i += SCAN_BLOCK) {
      const len = Math.min(SCAN_BLOCK, n - i);
      const zero = buf.compare(ZEROS, 0, len, i, i + len) === 0;
      if (!zero && start < 0) start = pos + i;
      else if (zero && start >= 0) {
        regions.push(start, pos + i - start);
        start = -1;
      }
    }
    pos += n;
  }
  if (start >= 0) regions.push(start, pos - start);
  return regions;
}

/**
 * Makes regions safe to write: every region but the last a multiple of 512 bytes long (extended into the
 * hole after it, merged with the next region when they meet), and an empty region at `size` when the file
 * ends with a hole.
 */
function normalize(regions: number[], size: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < regions.length; i += 2) {
    const offset = regions[i]!;
    let end = offset + regions[i + 1]!;
    if (end % BLOCK !== 0) end = Math.min(size, Math.ceil(end / BLOCK) * BLOCK);
    const last = out.length - 2;
    if (last >= 0 && out[last]! + out[last + 1]! >= offset) out[last + 1] = end - out[last]!;
    else out.push(offset, end - offset);
  }
  const n = out.length;
  if (n === 0 || out[n - 2]! + out[n - 1]! < size) out.push(size, 0);
  return out;
}

/** The map text of format 1.0: count, then offset and size of each region, one per line; block-padded. */
function mapText(regions: number[]): Uint8Array {
  const text = `${regions.length / 2}\n${regions.join("\n")}\n`;
  const out = new Uint8Array(Math.ceil(text.length / BLOCK) * BLOCK);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
  return out;
}

/** The ustar name of a format 1.0 member: `<dir>/GNUSparseFile.0/<name>` (dir `.` for a bare name). */
export function sparseHeaderName(member: string): string {
  const slash = member.lastIndexOf("/");
  return slash < 0
    ? `./GNUSparseFile.0/${member}`
    : `${member.slice(0, slash)}/GNUSparseFile.0/${member.slice(slash + 1)}`;
}

/**
 * Produces a sparse member's data for the archive: the map text, then each region read from the file.
 */
export class SparseSource {
  #layout: SparseLayout;
  #textPos = 0;
  /** The last `read()` gave bytes of the map, not of the file. */
  inMap = false;
  /** Index in `regions` of the region being read, its position and bytes left. */
  #index = -2;
  #pos = 0;
  #left = 0;

  constructor(layout: SparseLayout) {
    this.#layout = layout;
  }

  /**
   * Writes up to `max` next bytes into `buf[off…]` and returns how many; 0 when the file ended early (it
   * shrank). Read errors are thrown.
   */
  read(fd: number, buf: Uint8Array, off: number, max: number): number {
    const text = this.#layout.text;
    this.inMap = this.#textPos < text.length;
    if (this.inMap) {
      const n = Math.min(max, text.length - this.#textPos);
      buf.set(text.subarray(this.#textPos, this.#textPos + n), off);
      this.#textPos += n;
      return n;
    }
    const regions = this.#layout.regions;
    while (this.#left === 0) {
      this.#index += 2;
      if (this.#index >= regions.length) return 0;
      this.#pos = regions[this.#index]!;
      this.#left = regions[this.#index + 1]!;
    }
    const n = fs.readSync(fd, buf, off, Math.min(max, this.#left), this.#pos);
    this.#pos += n;
    this.#left -= n;
    return n;
  }
}

/**
 * Parses a format 1.0 map from the start of a member's data, fed in pieces of any size: a count, then
 * that many offset/size pairs, each a decimal number ended by `\n`.
 */
export class SparseMapParser {
  /** The regions read so far, flat (offset, size, …). */
  readonly regions: number[] = [];
  #count = -1;
  #value = 0;
  #digits = 0;
  /** Bytes of the map text consumed so far. */
  consumed = 0;
  /** Set once the last number is read. */
  done = false;

  /**
   * Consumes bytes `b[start, end)` up to the end of the map; returns the bytes used, or -1 when the map is
   * malformed (a character other than a digit or `\n`, an empty or oversized number).
   */
  push(b: Uint8Array, start: number, end: number): number {
    let i = start;
    while (i < end && !this.done) {
      const c = b[i++]!;
      if (c >= 0x30 && c <= 0x39) {
        this.#value = this.#value * 10 + (c - 0x30);
        if (++this.#digits > 16 || !Number.isSafeInteger(this.#value)) return -1;
        continue;
      }
      if (c !== 0x0a || this.#digits === 0) return -1;
      if (this.#count < 0) this.#count = this.#value;
      else this.regions.push(this.#value);
      this.#value = 0;
      this.#digits = 0;
      if (this.regions.length === 2 * this.#count) this.done = true; // also for a count of 0
    }
    this.consumed += i - start;
    return i - start;
  }
}

/**
 * Writes `buf[0, len)` at offset `pos` of a new file `fd`, leaving out each all-zero 4 KiB block (aligned
 * in the file, or the part of one that `buf` holds): those read back as zeros once the file's size is set
 * (ftruncate) and take no space. For restores whose format does not say where the holes were (the rsync
 * engine), as `rsync --sparse` does.
 */
export function writeSkippingZeros(fd: number, buf: Uint8Array, len: number, pos: number): void {
  const b = Buffer.from(buf.buffer, buf.byteOffset, len);
  let runStart = -1; // start (in buf) of the non-zero bytes not yet written
  let i = 0;
  while (i < len) {
    const end = Math.min(len, i + SCAN_BLOCK - ((pos + i) % SCAN_BLOCK));
    const zero = b.compare(ZEROS, 0, end - i, i, end) === 0;
    if (zero && runStart >= 0) {
      writeAll(fd, buf, runStart, i, pos);
      runStart = -1;
    } else if (!zero && runStart < 0) runStart = i;
    i = end;
  }
  if (runStart >= 0) writeAll(fd, buf, runStart, len, pos);
}

function writeAll(fd: number, buf: Uint8Array, start: number, end: number, pos: number): void {
  while (start < end) {
    const n = fs.writeSync(fd, buf, start, end - start, pos + start);
    start += n;
  }
}
