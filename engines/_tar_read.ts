/**
 * A streaming tar reader: a state machine fed with chunks of any size, split anywhere, that hands each
 * member to a handler and passes file data through as subarrays of the incoming chunks (no copies).
 * Reads GNU tar (incremental 'D' dumpdirs, 'L'/'K' long names, base-256 numbers, old 'S' sparse members),
 * POSIX pax ('x'/'g' headers, GNU.dumpdir records, sub-second times, GNU sparse formats 0.0, 0.1 and
 * 1.0), ustar and v7 headers.
 *
 * Handwritten: modern-tar's decoder makes a stream per entry (slow for many small files) and silently
 * reads GNU sparse members as plain files.
 * @module
 */
import { FrostError } from "../base/errors.ts";
import { decodeName } from "./_names.ts";
import { SparseMapParser } from "./_sparse.ts";
import { decodeXattrKeyword, type StoredXattrs, type Xattr } from "./_xattrs.ts";
import { relieveMemory } from "../base/memory.ts";

/** What a member is, once GNU and pax details are resolved. */
export type EntryType = "file" | "dir" | "symlink" | "hardlink" | "char" | "block" | "fifo";

/** A time as the archive records it: whole seconds (may be negative) plus 0 ≤ nsec < 1e9. */
export interface TarTime {
  sec: number;
  nsec: number;
}

/** One archive member with its long-name and pax records applied. */
export interface TarEntry {
  /** The member's name exactly as archived (e.g. "./a/b"), decoded as UTF-8. */
  name: string;
  type: EntryType;
  /** Data bytes that follow the header (pax `size` wins over the header field). */
  size: number;
  /** Permission bits incl. setuid/setgid/sticky. */
  mode: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  mtime: TarTime;
  /** Access time, when the archive records one (GNU incremental headers, pax `atime`). */
  atime?: TarTime;
  /** Symlink target or hard-link target name ("" for other types). */
  linkname: string;
  devmajor: number;
  devminor: number;
  /** GNU dumpdir of a directory: the names it held at backup time, each with a control letter. */
  dumpdir?: Uint8Array;
  /**
   * A GNU sparse file: `size` is its real size, and its data comes as regions, each announced by the
   * handler's `seek()`; what no region covers is a hole (zeros).
   */
  sparse?: boolean;
  /** Extended attributes and ACLs (`SCHILY.xattr.*`, `SCHILY.acl.*`, `RHT.security.selinux` records). */
  xattrs?: StoredXattrs;
  /** Stream offset of the member's first header (its long-name or pax header, if any). */
  offset: number;
}

/** Receives the members of an archive, in order. Methods may throw to stop the stream. */
export interface TarHandler {
  /** A member begins. Return true to be handed its `size` data bytes through `data()`, then `end()`. */
  entry(entry: TarEntry): boolean;
  /** The next data bytes of the current member: `bytes[start..end)`, only valid during the call. */
  data(bytes: Uint8Array, start: number, end: number): void;
  /**
   * The file offset where the next `data()` bytes of a sparse member go (called before each of its data
   * regions). Handlers that take the data of sparse members must have it.
   */
  seek?(offset: number): void;
  /** The current member's data is complete (called also when its size is 0). */
  end(): void;
  /** A non-fatal problem with the member named `name`. */
  warn(name: string, message: string): void;
  /**
   * The reader will read past the stream's bytes `[offset, offset + length)` without handing them on
   * (the data of a member not taken): the feeder may then call `TarReader.readPast(n)` in place of pushing
   * runs of them. Told in stream order, when the reader meets them.
   */
  skipping?(offset: number, length: number): void;
}

const BLOCK = 512;
/** Metadata members (long names, pax headers, dumpdirs) are held in memory; beyond this the archive is refused. */
const MAX_META = 256 * 1024 * 1024;

const HEADER = 0;
const DATA = 1;
const META = 2;
const SKIP = 3;
/** Reading the extension blocks of an old GNU sparse header (their map entries). */
const SPARSE_EXT = 4;
/** Reading the sparse map at the start of a format 1.0 member's data. */
const SPARSE_MAP = 5;

// Typeflags, as char codes.
const T_FILE = 0x30; // '0'
const T_OLDFILE = 0;
const T_LINK = 0x31; // '1'
const T_SYMLINK = 0x32; // '2'
const T_CHAR = 0x33; // '3'
const T_BLOCK = 0x34; // '4'
const T_DIR = 0x35; // '5'
const T_FIFO = 0x36; // '6'
const T_CONTIG = 0x37; // '7'
const T_PAX = 0x78; // 'x'
const T_PAX_OLD = 0x58; // 'X' (pre-POSIX Solaris spelling of 'x')
const T_GLOBAL = 0x67; // 'g'
const T_LONGNAME = 0x4c; // 'L'
const T_LONGLINK = 0x4b; // 'K'
const T_DUMPDIR = 0x44; // 'D'
const T_SPARSE = 0x53; // 'S'
const T_MULTIVOL = 0x4d; // 'M'
const T_VOLUME = 0x56; // 'V'
const T_OLDNAMES = 0x4e; // 'N'

/** Pax records that are in force for one member (global ones merged under the member's own). */
interface Pax {
  records: Map<string, string>;
  dumpdir?: Uint8Array;
  /** GNU sparse format 0.0: the values of the repeated GNU.sparse.offset and GNU.sparse.numbytes records. */
  sparseList?: number[];
  /** `SCHILY.xattr.<name>` records: names decoded, values as bytes. */
  xattrs?: Xattr[];
}

/** The sparse member being read. */
interface Sparse {
  /** Data regions, flat: offset, size, … (format 1.0: filled by `parser`). */
  regions: number[];
  /** Index in `regions` of the next region, and data bytes left in the current one. */
  next: number;
  regionLeft: number;
  /** Format 1.0: the map at the start of the data, and the padding after it still to skip. */
  parser: SparseMapParser | undefined;
  mapPad: number;
  /** Old GNU: a map entry with an empty size ended the list (later extension entries are ignored). */
  ended: boolean;
  /** Data bytes of the member in the archive, and their padding to a block. */
  stored: number;
  pad: number;
}

const EMPTY = new Uint8Array(0);
const utf8Lossy = new TextDecoder("utf-8");

/**
 * Parses a tar stream pushed in chunks and drives a {@linkcode TarHandler}.
 * Tolerates zero blocks between archives (like `tar --ignore-zeros`), but `finish()` insists that the
 * stream ended on a member boundary after an end-of-archive block.
 */
export class TarReader {
  #h: TarHandler;
  #state = HEADER;
  /** Holds a header that arrived split across chunks. */
  #hdr = new Uint8Array(BLOCK);
  #hdrFill = 0;
  /** DATA/META: data bytes still to come; SKIP: bytes still to skip. */
  #left = 0;
  /** Zero padding after the current member's data. */
  #pad = 0;
  #meta = new Uint8Array(0);
  #metaFill = 0;
  #metaType = 0;
  /** The member whose data is being read (DATA, or META for a GNU 'D' dumpdir). */
  #entry: TarEntry | null = null;
  /**
   * Header name of the metadata member being read, for messages; a pax header's is kept as its bytes
   * (`#metaNameBytes[0, #metaNameLength)`, when the length is ≥ 0) and decoded only for a message.
   */
  #metaName = "";
  #metaNameBytes = new Uint8Array(100);
  #metaNameLength = -1;
  /** The last uname and gname decoded: most members repeat them. */
  #uname = newMemo(32);
  #gname = newMemo(32);
  #longName: string | undefined;
  #longLink: string | undefined;
  #pax: Pax | undefined;
  #global = new Map<string, string>();
  /** Stream offset of the first header of the member being assembled (-1: none pending). */
  #memberStart = -1;
  /** Stream offset of the current chunk's first byte. */
  #base = 0;
  /** The last block read was a zero block (an end-of-archive marker). */
  #atEnd = false;
  #lastName = "";
  #sparse: Sparse | null = null;
  /** The SKIP state was entered for a member's data and not told to the handler yet (`skipping`). */
  #tellSkip = false;

  constructor(handler: TarHandler) {
    this.#h = handler;
  }

  /** Feeds the next chunk of the archive. Throws a FrostError on a corrupt header. */
  push(chunk: Uint8Array): void {
    relieveMemory();
    const n = chunk.length;
    let i = 0;
    while (i < n) {
      switch (this.#state) {
        case HEADER:
        case SPARSE_EXT: {
          if (this.#hdrFill === 0 && n - i >= BLOCK) {
            // The common case: the whole header lies inside this chunk, parse it in place.
            const at = this.#base + i;
            i += BLOCK;
            if (this.#state === HEADER) this.#header(chunk, i - BLOCK, at);
            else this.#sparseExt(chunk, i - BLOCK);
          } else {
            const take = Math.min(BLOCK - this.#hdrFill, n - i);
            this.#hdr.set(chunk.subarray(i, i + take), this.#hdrFill);
            this.#hdrFill += take;
            i += take;
            if (this.#hdrFill === BLOCK) {
              this.#hdrFill = 0;
              if (this.#state === HEADER) this.#header(this.#hdr, 0, this.#base + i - BLOCK);
              else this.#sparseExt(this.#hdr, 0);
            }
          }
          break;
        }
        case SPARSE_MAP:
          i = this.#sparseMap(chunk, i, n);
          break;
        case DATA: {
          if (this.#sparse) {
            i = this.#sparseData(chunk, i, n);
            break;
          }
          const take = Math.min(this.#left, n - i);
          this.#left -= take;
          i += take;
          this.#h.data(chunk, i - take, i);
          if (this.#left === 0) {
            this.#entry = null;
            this.#h.end();
            this.#skipPadding();
          }
          break;
        }
        case META: {
          const take = Math.min(this.#left, n - i);
          this.#meta.set(chunk.subarray(i, i + take), this.#metaFill);
          this.#metaFill += take;
          this.#left -= take;
          i += take;
          if (this.#left === 0) this.#metaDone();
          break;
        }
        default: {
          if (this.#tellSkip) {
            this.#tellSkip = false;
            this.#h.skipping?.(this.#base + i, this.#left);
          }
          const take = Math.min(this.#left, n - i);
          this.#left -= take;
          i += take;
          if (this.#left === 0) this.#state = HEADER;
        }
      }
    }
    if (this.#tellSkip) {
      this.#tellSkip = false;
      this.#h.skipping?.(this.#base + n, this.#left);
    }
    this.#base += n;
  }

  /**
   * Takes the next `n` bytes of the stream as read past, unseen: they must lie inside the range the reader
   * is skipping (told by `TarHandler.skipping`).
   */
  readPast(n: number): void {
    if (!(this.#state === SKIP && n >= 0 && n <= this.#left)) {
      throw new Error(
        `readPast(${n}) outside a skipped range (${this.#state === SKIP ? this.#left : 0} left)`,
      );
    }
    this.#left -= n;
    this.#base += n;
    if (this.#left === 0) this.#state = HEADER;
  }

  /** Data bytes of the current member still to come through `data()` (0 outside a member's data). */
  get dataLeft(): number {
    if (this.#state !== DATA) return 0;
    // A sparse member: the bytes left in its current region, which are written at consecutive offsets.
    return this.#sparse ? Math.min(this.#left, this.#sparse.regionLeft) : this.#left;
  }

  /**
   * Takes the next `n` bytes of the stream as data of the current member without handing them to
   * `data()`: the caller writes them itself. `n` must be less than `dataLeft`, so the member does not end.
   */
  takeData(n: number): void {
    if (!(n >= 0 && n < this.dataLeft)) throw new Error(`takeData(${n}) with ${this.dataLeft} bytes left`);
    this.#left -= n;
    if (this.#sparse) this.#sparse.regionLeft -= n;
    this.#base += n;
  }

  /** Declares the end of the stream: throws a FrostError if the archive is truncated. */
  finish(): void {
    if (
      this.#state === DATA || this.#state === SPARSE_MAP || this.#state === SPARSE_EXT ||
      (this.#state === META && this.#entry)
    ) {
      throw new FrostError(
        `Cannot restore "${this.#entry?.name}": the archive ends inside its data (at byte ${this.#base})`,
      );
    }
    if (this.#state !== HEADER || this.#hdrFill !== 0 || this.#memberStart >= 0) {
      throw new FrostError(
        `Cannot read archive: it is truncated at byte ${this.#base}${this.#after()}`,
      );
    }
    if (!this.#atEnd) {
      throw new FrostError(
        this.#base === 0
          ? "Cannot read archive: the stream is empty"
          : `Cannot read archive: it ends at byte ${this.#base} without an end-of-archive block${this.#after()}`,
      );
    }
  }

  #after(): string {
    return this.#lastName ? ` (after "${this.#lastName}")` : "";
  }

  #skipPadding(): void {
    if (this.#pad > 0) {
      this.#state = SKIP;
      this.#left = this.#pad;
    } else {
      this.#state = HEADER;
    }
  }

  #skip(bytes: number): void {
    if (bytes > 0) {
      this.#state = SKIP;
      this.#left = bytes;
      this.#tellSkip = this.#h.skipping !== undefined;
    } else {
      this.#state = HEADER;
    }
  }

  #header(b: Uint8Array, o: number, at: number): void {
    if (b[o + 148] === 0 && isZeroBlock(b, o)) {
      if (this.#memberStart >= 0) {
        throw new FrostError(
          `Cannot read archive: a header at byte ${this.#memberStart} is followed by no member`,
        );
      }
      this.#atEnd = true;
      return;
    }
    this.#atEnd = false;
    if (!checksumOk(b, o)) {
      throw new FrostError(`Cannot read archive: bad header checksum at byte ${at}${this.#after()}`);
    }
    if (this.#memberStart < 0) this.#memberStart = at;
    const type = b[o + 156]!;
    const size = num(b, o + 124, 12);
    if (Number.isNaN(size) || size < 0) {
      throw new FrostError(`Cannot read archive: bad size field in the header at byte ${at}${this.#after()}`);
    }
    this.#pad = (BLOCK - (size % BLOCK)) % BLOCK;

    if (
      type === T_LONGNAME || type === T_LONGLINK || type === T_PAX || type === T_PAX_OLD || type === T_GLOBAL
    ) {
      let n = 0;
      while (n < 100 && b[o + n] !== 0) this.#metaNameBytes[n] = b[o + n++]!;
      this.#metaNameLength = n;
      this.#startMeta(type, size, undefined, at);
      return;
    }

    const magic = isUstar(b, o);
    const gnu = magic && b[o + 262] === 0x20; // "ustar  \0": GNU, atime/ctime where POSIX has the prefix
    const ustar = magic && b[o + 262] === 0; // "ustar\0": POSIX, with a prefix field
    let name = this.#longName ?? "";
    if (name === "") {
      name = str(b, o, 100, this.#h);
      if (ustar && b[o + 345] !== 0) name = str(b, o + 345, 155, this.#h) + "/" + name;
    }
    const pax = this.#effectivePax();
    const paxPath = pax?.records.get("path");
    if (paxPath) name = paxPath;
    // GNU sparse formats 0.1 and 1.0 keep the real name here (the header's is "…/GNUSparseFile.N/…").
    const sparseName = pax?.records.get("GNU.sparse.name");
    if (sparseName) name = sparseName;
    this.#lastName = name;

    if (type === T_MULTIVOL) throw unsupported(name, "a multi-volume continuation");
    if (type === T_OLDNAMES) throw unsupported(name, "an old GNU long-name ('N') member");

    const start = this.#memberStart;
    this.#memberStart = -1;
    this.#longName = undefined;
    const longLink = this.#longLink;
    this.#longLink = undefined;
    this.#pax = undefined;
    if (type === T_VOLUME) {
      this.#skip(size + this.#pad);
      return;
    }

    let entryType: EntryType;
    switch (type) {
      case T_FILE:
      case T_OLDFILE:
      case T_CONTIG:
      case T_SPARSE:
        // Pre-POSIX archives mark directories only by a trailing slash.
        entryType = type === T_OLDFILE && name.endsWith("/") ? "dir" : "file";
        break;
      case T_LINK:
        entryType = "hardlink";
        break;
      case T_SYMLINK:
        entryType = "symlink";
        break;
      case T_CHAR:
        entryType = "char";
        break;
      case T_BLOCK:
        entryType = "block";
        break;
      case T_DIR:
      case T_DUMPDIR:
        entryType = "dir";
        break;
      case T_FIFO:
        entryType = "fifo";
        break;
      default:
        // POSIX: an unknown type is read as a regular file (GNU tar does the same, with a warning).
        this.#h.warn(name, `unknown member type '${String.fromCharCode(type)}': restored as a regular file`);
        entryType = "file";
    }

    const entry: TarEntry = {
      name,
      type: entryType,
      size,
      mode: num(b, o + 100, 8) & 0o7777,
      uid: num(b, o + 108, 8),
      gid: num(b, o + 116, 8),
      uname: memoStr(b, o + 265, 32, this.#uname, this.#h),
      gname: memoStr(b, o + 297, 32, this.#gname, this.#h),
      mtime: { sec: num(b, o + 136, 12), nsec: 0 },
      linkname: longLink ?? str(b, o + 157, 100, this.#h),
      devmajor: num(b, o + 329, 8),
      devminor: num(b, o + 337, 8),
      offset: start,
    };
    if (gnu) {
      // GNU incremental archives keep atime (and ctime) where POSIX has the prefix.
      const atime = num(b, o + 345, 12);
      if (atime > 0) entry.atime = { sec: atime, nsec: 0 };
    }
    if (pax) applyPax(entry, pax, at);
    if (
      Number.isNaN(entry.mode) || Number.isNaN(entry.uid) || Number.isNaN(entry.gid) ||
      Number.isNaN(entry.mtime.sec) || Number.isNaN(entry.devmajor) || Number.isNaN(entry.devminor)
    ) {
      throw new FrostError(`Cannot read archive: bad numeric field in the header of "${name}" at byte ${at}`);
    }
    if (entry.size !== size) this.#pad = (BLOCK - (entry.size % BLOCK)) % BLOCK;

    if (type === T_DUMPDIR) {
      // The GNU dumpdir is this directory's data: read it before the handler sees the directory.
      this.#entry = entry;
      this.#startMeta(type, entry.size, name, at);
      return;
    }
    if (type === T_SPARSE) {
      this.#oldGnuSparse(b, o, entry, at);
      return;
    }
    if (entryType === "file" && pax && isPaxSparse(pax)) {
      this.#paxSparse(entry, pax, at);
      return;
    }
    if (this.#h.entry(entry)) {
      if (entry.size === 0) {
        this.#h.end();
        this.#skipPadding();
      } else {
        this.#entry = entry;
        this.#state = DATA;
        this.#left = entry.size;
      }
    } else {
      this.#skip(entry.size + this.#pad);
    }
  }

  /** An old GNU 'S' member: map entries in its header, then in extension blocks while they are flagged. */
  #oldGnuSparse(b: Uint8Array, o: number, entry: TarEntry, at: number): void {
    const realSize = num(b, o + 483, 12);
    if (Number.isNaN(realSize) || realSize < 0) throw badSparse(entry.name, `bad real size (at byte ${at})`);
    const stored = entry.size;
    entry.size = realSize;
    entry.sparse = true;
    this.#sparse = {
      regions: [],
      next: 0,
      regionLeft: 0,
      parser: undefined,
      mapPad: 0,
      ended: false,
      stored,
      pad: this.#pad,
    };
    this.#oldGnuEntries(b, o + 386, 4);
    this.#entry = entry;
    if (b[o + 482] !== 0) this.#state = SPARSE_EXT;
    else this.#sparseStart();
  }

  /** An extension block of an old GNU sparse header: 21 map entries, then its own "extended" flag. */
  #sparseExt(b: Uint8Array, o: number): void {
    this.#oldGnuEntries(b, o, 21);
    if (b[o + 504] === 0) this.#sparseStart();
  }

  /** Adds `count` old GNU map entries (12-byte offset, 12-byte size) from `b[o]` until one is empty. */
  #oldGnuEntries(b: Uint8Array, o: number, count: number): void {
    const s = this.#sparse!;
    for (let k = 0; k < count && !s.ended; k++) {
      const p = o + 24 * k;
      if (b[p + 12] === 0) {
        s.ended = true;
        break;
      }
      const offset = num(b, p, 12);
      const size = num(b, p + 12, 12);
      if (!(offset >= 0 && size >= 0)) throw badSparse(this.#entry?.name ?? this.#lastName, "bad map entry");
      s.regions.push(offset, size);
    }
  }

  /** A pax member with GNU.sparse records: format 0.0 and 0.1 carry the map in records, 1.0 in its data. */
  #paxSparse(entry: TarEntry, pax: Pax, at: number): void {
    const r = pax.records;
    const major = r.get("GNU.sparse.major");
    const minor = r.get("GNU.sparse.minor");
    const bad = (why: string) => badSparse(entry.name, `${why} (at byte ${at})`);
    const decimal = (v: string | undefined): number => {
      if (v === undefined || !/^\d+$/.test(v) || !Number.isSafeInteger(Number(v))) return NaN;
      return Number(v);
    };
    let regions: number[] | undefined;
    let realSize: number;
    if (major !== undefined && major !== "0") {
      if (major !== "1" || (minor !== undefined && minor !== "0")) {
        throw unsupported(entry.name, `GNU sparse format ${major}.${minor ?? "0"}`);
      }
      realSize = decimal(r.get("GNU.sparse.realsize") ?? r.get("GNU.sparse.size"));
    } else {
      realSize = decimal(r.get("GNU.sparse.size") ?? r.get("GNU.sparse.realsize"));
      const map = r.get("GNU.sparse.map");
      if (map !== undefined) {
        regions = map === "" ? [] : map.split(",").map(decimal);
        if (regions.length % 2 !== 0 || regions.some(Number.isNaN)) throw bad("bad GNU.sparse.map");
      } else {
        regions = pax.sparseList ?? [];
        if (regions.length % 2 !== 0 || regions.some(Number.isNaN)) {
          throw bad("unpaired GNU.sparse.offset/numbytes records");
        }
      }
    }
    if (Number.isNaN(realSize)) throw bad("no valid real size");
    const stored = entry.size;
    entry.size = realSize;
    entry.sparse = true;
    this.#sparse = {
      regions: regions ?? [],
      next: 0,
      regionLeft: 0,
      parser: regions ? undefined : new SparseMapParser(),
      mapPad: 0,
      ended: true,
      stored,
      pad: this.#pad,
    };
    this.#entry = entry;
    this.#sparseStart();
  }

  /** The sparse member's map is known (or, format 1.0, next in the data): hands it to the handler. */
  #sparseStart(): void {
    const s = this.#sparse!;
    const entry = this.#entry!;
    this.#entry = null;
    if (!s.parser) checkRegions(entry, s.regions, s.stored);
    if (!this.#h.entry(entry)) {
      this.#sparse = null;
      this.#skip(s.stored + s.pad);
      return;
    }
    this.#entry = entry;
    this.#left = s.stored;
    this.#pad = s.pad;
    if (s.parser) {
      if (s.stored === 0) throw badSparse(entry.name, "its sparse map is missing");
      this.#state = SPARSE_MAP;
    } else {
      this.#state = DATA;
      this.#sparseData(EMPTY, 0, 0);
    }
  }

  /** Format 1.0: reads the map at the start of the data, then its padding to a block. */
  #sparseMap(chunk: Uint8Array, i: number, n: number): number {
    const s = this.#sparse!;
    const parser = s.parser!;
    const name = this.#entry!.name;
    if (!parser.done) {
      const used = parser.push(chunk, i, Math.min(n, i + this.#left));
      if (used < 0) throw badSparse(name, "malformed sparse map");
      i += used;
      this.#left -= used;
      if (!parser.done) {
        if (this.#left === 0) throw badSparse(name, "its sparse map runs past its data");
        return i;
      }
      s.mapPad = (BLOCK - (parser.consumed % BLOCK)) % BLOCK;
      if (s.mapPad > this.#left) throw badSparse(name, "its sparse map runs past its data");
      s.regions = parser.regions;
      checkRegions(this.#entry!, s.regions, this.#left - s.mapPad);
    }
    const take = Math.min(s.mapPad, n - i);
    s.mapPad -= take;
    this.#left -= take;
    i += take;
    if (s.mapPad === 0) {
      s.parser = undefined;
      this.#state = DATA;
      this.#sparseData(EMPTY, 0, 0); // starts the first region, or ends a member without data
    }
    return i;
  }

  /** Hands `chunk[i, n)` on as data of the sparse member's regions; returns where it stopped. */
  #sparseData(chunk: Uint8Array, i: number, n: number): number {
    const s = this.#sparse!;
    while (s.regionLeft === 0 && s.next < s.regions.length) {
      const offset = s.regions[s.next]!;
      const size = s.regions[s.next + 1]!;
      s.next += 2;
      if (size > 0) {
        this.#h.seek?.(offset);
        s.regionLeft = size;
      }
    }
    let take = Math.min(this.#left, n - i);
    if (s.regionLeft > 0) {
      if (take > s.regionLeft) take = s.regionLeft;
      s.regionLeft -= take;
      if (take > 0) this.#h.data(chunk, i, i + take);
    } // else: bytes after the last region, which no map entry places; dropped
    this.#left -= take;
    i += take;
    if (this.#left === 0) {
      this.#entry = null;
      this.#sparse = null;
      this.#state = DATA; // for #skipPadding's HEADER/SKIP choice
      this.#h.end();
      this.#skipPadding();
    }
    return i;
  }

  /** `name` undefined: the header's, copied into `#metaNameBytes` by the caller. */
  #startMeta(type: number, size: number, name: string | undefined, at: number): void {
    if (name !== undefined) {
      this.#metaName = name;
      this.#metaNameLength = -1;
    }
    if (size > MAX_META) {
      throw new FrostError(
        `Cannot read archive: metadata member "${this.#metaLabel()}" at byte ${at} is too large (${size} bytes)`,
      );
    }
    this.#metaType = type;
    this.#meta = new Uint8Array(size);
    this.#metaFill = 0;
    if (size === 0) {
      this.#metaDone();
    } else {
      this.#state = META;
      this.#left = size;
    }
  }

  #metaDone(): void {
    const data = this.#meta;
    this.#meta = new Uint8Array(0);
    switch (this.#metaType) {
      case T_LONGNAME:
        this.#longName = cString(data, this.#h);
        break;
      case T_LONGLINK:
        this.#longLink = cString(data, this.#h);
        break;
      case T_PAX:
      case T_PAX_OLD:
        this.#pax = parsePax(data) ?? this.#malformedPax();
        break;
      case T_GLOBAL: {
        const g = parsePax(data) ?? this.#malformedPax();
        for (const [key, value] of g.records) {
          if (value === "") this.#global.delete(key);
          else this.#global.set(key, value);
        }
        // A global header is a member of its own, not a prefix of the next one.
        this.#memberStart = -1;
        break;
      }
      case T_DUMPDIR: {
        const entry = this.#entry!;
        this.#entry = null;
        entry.dumpdir = data;
        if (this.#h.entry(entry)) this.#h.end();
        break;
      }
    }
    this.#skipPadding();
  }

  /** The name of the metadata member being read, for messages. */
  #metaLabel(): string {
    if (this.#metaNameLength < 0) return this.#metaName;
    return str(this.#metaNameBytes, 0, this.#metaNameLength, this.#h);
  }

  #malformedPax(): never {
    throw new FrostError(`Cannot read archive: malformed pax record in "${this.#metaLabel()}"`);
  }

  #effectivePax(): Pax | undefined {
    if (this.#global.size === 0) return this.#pax;
    // Only per-member attributes make sense globally; a global path or size would apply to every member.
    const records = new Map<string, string>();
    for (const [key, value] of this.#global) {
      if (key !== "path" && key !== "linkpath" && key !== "size") records.set(key, value);
    }
    if (this.#pax) { for (const [key, value] of this.#pax.records) records.set(key, value); }
    return {
      records,
      dumpdir: this.#pax?.dumpdir,
      sparseList: this.#pax?.sparseList,
      xattrs: this.#pax?.xattrs,
    };
  }
}

/** Whether a pax header describes a GNU sparse member (any format). */
function isPaxSparse(pax: Pax): boolean {
  const r = pax.records;
  return r.has("GNU.sparse.major") || r.has("GNU.sparse.size") || r.has("GNU.sparse.realsize") ||
    r.has("GNU.sparse.map") || pax.sparseList !== undefined;
}

/** Checks that regions lie inside the file, in order, and that the archive holds their data. */
function checkRegions(entry: TarEntry, regions: number[], stored: number): void {
  let sum = 0;
  let end = 0;
  for (let k = 0; k < regions.length; k += 2) {
    const offset = regions[k]!;
    const size = regions[k + 1]!;
    if (offset < end || offset + size > entry.size) {
      throw badSparse(
        entry.name,
        `its sparse map has a region out of order or past its size (${offset}, ${size})`,
      );
    }
    end = offset + size;
    sum += size;
  }
  if (sum > stored) {
    throw badSparse(entry.name, `its sparse map holds ${sum} bytes, the archive ${stored}`);
  }
}

function badSparse(name: string, why: string): FrostError {
  return new FrostError(`Cannot read archive: sparse member "${name}": ${why}`);
}

function unsupported(name: string, what: string): FrostError {
  return new FrostError(`Cannot restore "${name}": ${what} is not supported`);
}

function isUstar(b: Uint8Array, o: number): boolean {
  return b[o + 257] === 0x75 && b[o + 258] === 0x73 && b[o + 259] === 0x74 && b[o + 260] === 0x61 &&
    b[o + 261] === 0x72;
}

function isZeroBlock(b: Uint8Array, o: number): boolean {
  for (let i = o; i < o + BLOCK; i++) if (b[i] !== 0) return false;
  return true;
}

/** The header checksum: the sum of all bytes with the checksum field read as spaces (signed sums accepted too). */
function checksumOk(b: Uint8Array, o: number): boolean {
  const want = num(b, o + 148, 8);
  let unsigned = 8 * 32;
  for (let i = o, end = o + 148; i < end; i++) unsigned += b[i]!;
  for (let i = o + 156, end = o + BLOCK; i < end; i++) unsigned += b[i]!;
  if (want === unsigned) return true;
  // Signed: each byte ≥ 128 counts 256 less (rare: only old writers summed signed chars).
  let high = 0;
  for (let i = o, end = o + BLOCK; i < end; i++) if (b[i]! >= 128 && (i < o + 148 || i >= o + 156)) high++;
  return want === unsigned - 256 * high;
}

/** Reads an octal field (leading spaces, ended by space or NUL) or a GNU base-256 one; NaN if malformed. */
function num(b: Uint8Array, o: number, len: number): number {
  const first = b[o]!;
  if (first & 0x80) {
    // Base-256: big-endian two's complement; 0x80 marks a positive number, 0xff a negative one.
    const negative = first === 0xff;
    let v = negative ? -1 : first & 0x3f;
    for (let i = o + 1; i < o + len; i++) v = v * 256 + b[i]!;
    return Number.isSafeInteger(v) ? v : NaN;
  }
  const end = o + len;
  let i = o;
  while (i < end && b[i] === 0x20) i++;
  let v = 0;
  for (; i < end; i++) {
    const c = b[i]!;
    if (c < 0x30 || c > 0x37) break;
    v = v * 8 + (c - 0x30);
  }
  if (i < end && b[i] !== 0 && b[i] !== 0x20) return NaN;
  return v;
}

/** Decodes a NUL-terminated header string field. */
function str(b: Uint8Array, o: number, len: number, h: TarHandler): string {
  let end = o;
  const max = o + len;
  let ascii = true;
  while (end < max && b[end] !== 0) {
    if (b[end]! >= 0x80) ascii = false;
    end++;
  }
  if (end === o) return "";
  // Plain ASCII is by far the most common; skip the decoder for it.
  if (ascii) return String.fromCharCode.apply(null, b.subarray(o, end) as unknown as number[]);
  return decode(b.subarray(o, end), h);
}

/** A decoded text and the bytes it came from (`bytes[0, length)`; length -1: none yet). */
interface Memo {
  bytes: Uint8Array;
  length: number;
  text: string;
}

function newMemo(size: number): Memo {
  return { bytes: new Uint8Array(size), length: -1, text: "" };
}

/**
 * `str()` for a field that repeats from header to header: the bytes are compared with those of the last
 * call given `m`, and their text reused when they are the same (no string or view made).
 */
function memoStr(b: Uint8Array, o: number, len: number, m: Memo, h: TarHandler): string {
  let n = 0;
  while (n < len && b[o + n] !== 0) n++;
  return memoText(b, o, o + n, m) ?? remember(m, b, o, n, str(b, o, len, h));
}

/** The memo's text when `b[start, end)` are its bytes, else undefined. */
function memoText(b: Uint8Array, start: number, end: number, m: Memo): string | undefined {
  const n = end - start;
  if (n !== m.length) return undefined;
  for (let k = 0; k < n; k++) if (b[start + k] !== m.bytes[k]) return undefined;
  return m.text;
}

/** Keeps `text` and its bytes `b[o, o + n)` in the memo (when they fit); returns `text`. */
function remember(m: Memo, b: Uint8Array, o: number, n: number, text: string): string {
  if (n <= m.bytes.length) {
    for (let k = 0; k < n; k++) m.bytes[k] = b[o + k]!;
    m.length = n;
    m.text = text;
  }
  return text;
}

function cString(data: Uint8Array, h: TarHandler): string {
  const nul = data.indexOf(0);
  return decode(nul < 0 ? data : data.subarray(0, nul), h);
}

/** Decodes a name (or a link target) reversibly: bytes that are not UTF-8 are kept (see _names.ts). */
function decode(bytes: Uint8Array, _h: TarHandler): string {
  return decodeName(bytes);
}

const XATTR_PREFIX = "SCHILY.xattr.";
/** The last pax key read (most members have one record: mtime). */
const keyMemo = newMemo(64);

/**
 * Parses pax records: "<length> <key>=<value>\n", value as bytes for GNU.dumpdir, else UTF-8; undefined when
 * one is malformed.
 */
function parsePax(data: Uint8Array): Pax | undefined {
  const pax: Pax = { records: new Map() };
  let i = 0;
  while (i < data.length) {
    if (data[i] === 0) break; // some writers pad the record block with NULs
    let len = 0;
    let j = i;
    while (j < data.length && data[j]! >= 0x30 && data[j]! <= 0x39) len = len * 10 + (data[j++]! - 0x30);
    const end = i + len;
    if (j === i || data[j] !== 0x20 || end > data.length || data[end - 1] !== 0x0a) return undefined;
    let eq = j + 1;
    while (eq < end - 1 && data[eq] !== 0x3d) eq++;
    if (data[eq] !== 0x3d) return undefined;
    const key = memoText(data, j + 1, eq, keyMemo) ??
      remember(keyMemo, data, j + 1, eq - j - 1, paxText(data, j + 1, eq));
    const value = data.subarray(eq + 1, end - 1);
    if (key === "GNU.dumpdir") pax.dumpdir = value.slice();
    else if (key === "GNU.sparse.offset" || key === "GNU.sparse.numbytes") {
      // Format 0.0 repeats these two in turn, one pair per region.
      const v = utf8Lossy.decode(value);
      (pax.sparseList ??= []).push(/^\d+$/.test(v) ? Number(v) : NaN);
    } else if (key === "path" || key === "linkpath" || key === "GNU.sparse.name") {
      pax.records.set(key, decodeName(value)); // raw bytes, as GNU tar writes them (hdrcharset=BINARY)
    } else if (key.startsWith(XATTR_PREFIX)) {
      (pax.xattrs ??= []).push([decodeXattrKeyword(key.slice(XATTR_PREFIX.length)), value.slice()]);
    } else pax.records.set(key, paxText(data, eq + 1, end - 1));
    i = end;
  }
  return pax;
}

/**
 * `data[start, end)` as text, UTF-8 decoded lossily. Short ASCII (keys, numbers, times: nearly every
 * record) skips the decoder, a native call that costs more than the record.
 */
function paxText(data: Uint8Array, start: number, end: number): string {
  const bytes = data.subarray(start, end);
  if (end - start > 64) return utf8Lossy.decode(bytes);
  for (let i = start; i < end; i++) if (data[i]! >= 0x80) return utf8Lossy.decode(bytes);
  return String.fromCharCode.apply(null, bytes as unknown as number[]);
}

function applyPax(e: TarEntry, pax: Pax, at: number): void {
  const r = pax.records;
  // Module functions rather than closures: this runs once per member.
  const linkpath = r.get("linkpath");
  if (linkpath) e.linkname = linkpath;
  e.size = paxInt(r, "size", e, at) ?? e.size;
  e.uid = paxInt(r, "uid", e, at) ?? e.uid;
  e.gid = paxInt(r, "gid", e, at) ?? e.gid;
  e.uname = r.get("uname") || e.uname;
  e.gname = r.get("gname") || e.gname;
  e.mtime = paxTimeRecord(r, "mtime", e, at) ?? e.mtime;
  e.atime = paxTimeRecord(r, "atime", e, at) ?? e.atime;
  e.devmajor = paxInt(r, "SCHILY.devmajor", e, at) ?? e.devmajor;
  e.devminor = paxInt(r, "SCHILY.devminor", e, at) ?? e.devminor;
  if (pax.dumpdir) e.dumpdir = pax.dumpdir;
  const aclAccess = r.get("SCHILY.acl.access");
  const aclDefault = r.get("SCHILY.acl.default");
  const selinux = r.get("RHT.security.selinux");
  if (pax.xattrs || aclAccess !== undefined || aclDefault !== undefined || selinux) {
    const list = pax.xattrs ?? [];
    // GNU tar --selinux: the label as text (the xattr holds it with a trailing NUL).
    if (selinux && !list.some((x) => x[0] === "security.selinux")) {
      list.push(["security.selinux", new TextEncoder().encode(selinux + "\0")]);
    }
    e.xattrs = { list, aclAccess, aclDefault };
  }
}

function badPax(key: string, e: TarEntry, at: number): FrostError {
  return new FrostError(`Cannot read archive: bad pax "${key}" record for "${e.name}" at byte ${at}`);
}

/** The decimal integer record `key` (undefined when absent or empty); throws when malformed. */
function paxInt(r: Map<string, string>, key: string, e: TarEntry, at: number): number | undefined {
  const v = r.get(key);
  if (v === undefined || v === "") return undefined;
  const n = Number(v);
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(n)) throw badPax(key, e, at);
  return n;
}

/** The time record `key` (undefined when absent or empty); throws when malformed. */
function paxTimeRecord(r: Map<string, string>, key: string, e: TarEntry, at: number): TarTime | undefined {
  const v = r.get(key);
  if (v === undefined || v === "") return undefined;
  const t = parseTime(v);
  if (!t) throw badPax(key, e, at);
  return t;
}

/** Parses a pax time ("1700000000.123456789", "-1.5") exactly into seconds and nanoseconds. */
export function parseTime(v: string): TarTime | undefined {
  // By hand, not by a regular expression: one per member, and the match's strings cost more than this.
  const n = v.length;
  const negative = n > 0 && v.charCodeAt(0) === 0x2d;
  let i = negative ? 1 : 0;
  const start = i;
  let sec = 0;
  for (let c = v.charCodeAt(i) - 0x30; i < n && c >= 0 && c <= 9; c = v.charCodeAt(++i) - 0x30) {
    sec = sec * 10 + c;
  }
  if (i === start || !Number.isSafeInteger(sec)) return undefined;
  let nsec = 0;
  if (i < n) {
    if (v.charCodeAt(i) !== 0x2e) return undefined;
    let digits = 0;
    for (i++; i < n; i++) {
      const c = v.charCodeAt(i) - 0x30;
      if (c < 0 || c > 9) return undefined;
      if (digits < 9) {
        nsec = nsec * 10 + c;
        digits++;
      }
    }
    for (; digits < 9; digits++) nsec *= 10;
  }
  if (negative && nsec > 0) return { sec: -sec - 1, nsec: 1_000_000_000 - nsec };
  return { sec: negative ? -sec : sec, nsec };
}

/** Control letters of dumpdir entries. */
export const Dumpdir = {
  /** Named child, dumped in this archive. */
  Y: 0x59,
  /** Named child, not dumped (unchanged): keep what the target has. */
  N: 0x4e,
  /** Named child that is a directory. */
  D: 0x44,
  /** Rename source (a path), followed by its `T` destination. */
  R: 0x52,
  /** Rename destination. */
  T: 0x54,
  /** Directory in which to make a temporary name for breaking a rename cycle. */
  X: 0x58,
} as const;

/** One dumpdir record: its control letter and the name (or path, for R/T/X) after it. */
export interface DumpdirRecord {
  code: number;
  name: string;
}

/** Splits a GNU dumpdir into its records (NUL-separated, ended by an empty one). */
export function parseDumpdir(data: Uint8Array): DumpdirRecord[] {
  const out: DumpdirRecord[] = [];
  let i = 0;
  while (i < data.length && data[i] !== 0) {
    let end = data.indexOf(0, i);
    if (end < 0) end = data.length;
    out.push({ code: data[i]!, name: decodeName(data.subarray(i + 1, end)) });
    i = end + 1;
  }
  return out;
}

/** A GNU dumpdir read for replaying it on a directory that exists already. */
export interface DumpdirListing {
  records: DumpdirRecord[];
  /** The children it names, each with its code (Y, N or D): the others go. */
  keep: Map<string, number>;
  /** Whether it records renames (R/T pairs, X temporary directories): see `dumpdirRenames`. */
  renames: boolean;
}

/** Reads a GNU dumpdir for its replay (`dumpdirDrops`, `dumpdirRenames`). */
export function readDumpdir(data: Uint8Array): DumpdirListing {
  const records = parseDumpdir(data);
  const keep = new Map<string, number>();
  let renames = false;
  for (const r of records) {
    if (r.code === Dumpdir.R || r.code === Dumpdir.X) renames = true;
    else if (r.code !== Dumpdir.T) keep.set(r.name, r.code);
  }
  return { records, keep, renames };
}

/**
 * Whether a directory's dumpdir (its `keep`) removes its child `name`, a directory or not: a child it does
 * not name, or names as the other kind (D for a directory, Y for anything else).
 */
export function dumpdirDrops(keep: ReadonlyMap<string, number>, name: string, isDir: boolean): boolean {
  const c = keep.get(name);
  return c === undefined || (c === Dumpdir.D && !isDir) || (c === Dumpdir.Y && isDir);
}

/**
 * The renames a dumpdir records, in order, as [from, to] paths made by `paths.rel`. An X record makes a
 * temporary directory in its directory (`paths.temp`, given that directory's path; undefined: refused), which
 * an empty R or T name then stands for: GNU tar's way of breaking a rename cycle. Throws on records that do
 * not pair up (`entry` is the member named in the error).
 */
export function* dumpdirRenames(
  records: readonly DumpdirRecord[],
  entry: string,
  paths: { rel(name: string): string; temp(dir: string): string | undefined },
): Generator<[from: string, to: string]> {
  const malformed = () =>
    new FrostError(`Cannot restore "${entry}": malformed rename records in its dumpdir`);
  let temp: string | undefined;
  for (let k = 0; k < records.length; k++) {
    const r = records[k]!;
    if (r.code === Dumpdir.X) {
      temp = paths.temp(paths.rel(r.name));
      if (temp === undefined) throw malformed();
    } else if (r.code === Dumpdir.R) {
      const t = records[++k];
      if (!t || t.code !== Dumpdir.T) throw malformed();
      const from = r.name === "" ? temp : paths.rel(r.name);
      const to = t.name === "" ? temp : paths.rel(t.name);
      if (!from || !to) throw malformed();
      yield [from, to];
    }
  }
}
