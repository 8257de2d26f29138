/**
 * A streaming tar reader: a state machine fed with chunks of any size, split anywhere, that hands each
 * member to a handler and passes file data through as subarrays of the incoming chunks (no copies).
 * Reads GNU tar (incremental 'D' dumpdirs, 'L'/'K' long names, base-256 numbers), POSIX pax ('x'/'g'
 * headers, GNU.dumpdir records, sub-second times), ustar and v7 headers.
 *
 * Handwritten: modern-tar's decoder makes a stream per entry (slow for many small files) and silently
 * reads GNU sparse members as plain files.
 * @module
 */
import { FrostError } from "../errors.ts";
import { decodeXattrKeyword, type StoredXattrs, type Xattr } from "./_xattrs.ts";

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
  /** The current member's data is complete (called also when its size is 0). */
  end(): void;
  /** A non-fatal problem with the member named `name`. */
  warn(name: string, message: string): void;
}

const BLOCK = 512;
/** Metadata members (long names, pax headers, dumpdirs) are held in memory; beyond this the archive is refused. */
const MAX_META = 256 * 1024 * 1024;

const HEADER = 0;
const DATA = 1;
const META = 2;
const SKIP = 3;

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
  /** `SCHILY.xattr.<name>` records: names decoded, values as bytes. */
  xattrs?: Xattr[];
}

const utf8 = new TextDecoder("utf-8", { fatal: true });
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
  /** Header name of the metadata member being read, for messages. */
  #metaName = "";
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

  constructor(handler: TarHandler) {
    this.#h = handler;
  }

  /** Feeds the next chunk of the archive. Throws a FrostError on a corrupt header. */
  push(chunk: Uint8Array): void {
    const n = chunk.length;
    let i = 0;
    while (i < n) {
      switch (this.#state) {
        case HEADER: {
          if (this.#hdrFill === 0 && n - i >= BLOCK) {
            // The common case: the whole header lies inside this chunk, parse it in place.
            const at = this.#base + i;
            i += BLOCK;
            this.#header(chunk, i - BLOCK, at);
          } else {
            const take = Math.min(BLOCK - this.#hdrFill, n - i);
            this.#hdr.set(chunk.subarray(i, i + take), this.#hdrFill);
            this.#hdrFill += take;
            i += take;
            if (this.#hdrFill === BLOCK) {
              this.#hdrFill = 0;
              this.#header(this.#hdr, 0, this.#base + i - BLOCK);
            }
          }
          break;
        }
        case DATA: {
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
          const take = Math.min(this.#left, n - i);
          this.#left -= take;
          i += take;
          if (this.#left === 0) this.#state = HEADER;
        }
      }
    }
    this.#base += n;
  }

  /** Data bytes of the current member still to come through `data()` (0 outside a member's data). */
  get dataLeft(): number {
    return this.#state === DATA ? this.#left : 0;
  }

  /**
   * Takes the next `n` bytes of the stream as data of the current member without handing them to
   * `data()`: the caller writes them itself. `n` must be less than `dataLeft`, so the member does not end.
   */
  takeData(n: number): void {
    if (!(n >= 0 && n < this.dataLeft)) throw new Error(`takeData(${n}) with ${this.dataLeft} bytes left`);
    this.#left -= n;
    this.#base += n;
  }

  /** Declares the end of the stream: throws a FrostError if the archive is truncated. */
  finish(): void {
    if (this.#state === DATA || (this.#state === META && this.#entry)) {
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
      this.#startMeta(type, size, str(b, o, 100, this.#h), at);
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
    this.#lastName = name;

    if (pax) {
      for (const key of pax.records.keys()) {
        if (key.startsWith("GNU.sparse.")) throw unsupported(name, "a GNU sparse file");
      }
    }
    if (type === T_SPARSE) throw unsupported(name, "a GNU sparse file");
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
      uname: str(b, o + 265, 32, this.#h),
      gname: str(b, o + 297, 32, this.#h),
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

  #startMeta(type: number, size: number, name: string, at: number): void {
    if (size > MAX_META) {
      throw new FrostError(
        `Cannot read archive: metadata member "${name}" at byte ${at} is too large (${size} bytes)`,
      );
    }
    this.#metaType = type;
    this.#metaName = name;
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
        this.#pax = parsePax(data, this.#metaName);
        break;
      case T_GLOBAL: {
        const g = parsePax(data, this.#metaName);
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

  #effectivePax(): Pax | undefined {
    if (this.#global.size === 0) return this.#pax;
    // Only per-member attributes make sense globally; a global path or size would apply to every member.
    const records = new Map<string, string>();
    for (const [key, value] of this.#global) {
      if (key !== "path" && key !== "linkpath" && key !== "size") records.set(key, value);
    }
    if (this.#pax) { for (const [key, value] of this.#pax.records) records.set(key, value); }
    return { records, dumpdir: this.#pax?.dumpdir, xattrs: this.#pax?.xattrs };
  }
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
  let unsigned = 0;
  let signed = 0;
  for (let i = o; i < o + BLOCK; i++) {
    const c = i >= o + 148 && i < o + 156 ? 32 : b[i]!;
    unsigned += c;
    signed += c >= 128 ? c - 256 : c;
  }
  return want === unsigned || want === signed;
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

function cString(data: Uint8Array, h: TarHandler): string {
  const nul = data.indexOf(0);
  return decode(nul < 0 ? data : data.subarray(0, nul), h);
}

function decode(bytes: Uint8Array, h: TarHandler): string {
  try {
    return utf8.decode(bytes);
  } catch {
    const name = utf8Lossy.decode(bytes);
    h.warn(name, "name is not valid UTF-8: restored with replacement characters");
    return name;
  }
}

const XATTR_PREFIX = "SCHILY.xattr.";

/** Parses pax records: "<length> <key>=<value>\n", value as bytes for GNU.dumpdir, else UTF-8. */
function parsePax(data: Uint8Array, headerName: string): Pax {
  const pax: Pax = { records: new Map() };
  let i = 0;
  while (i < data.length) {
    if (data[i] === 0) break; // some writers pad the record block with NULs
    let len = 0;
    let j = i;
    while (j < data.length && data[j]! >= 0x30 && data[j]! <= 0x39) len = len * 10 + (data[j++]! - 0x30);
    const end = i + len;
    if (j === i || data[j] !== 0x20 || end > data.length || data[end - 1] !== 0x0a) {
      throw new FrostError(`Cannot read archive: malformed pax record in "${headerName}"`);
    }
    let eq = j + 1;
    while (eq < end - 1 && data[eq] !== 0x3d) eq++;
    if (data[eq] !== 0x3d) {
      throw new FrostError(`Cannot read archive: malformed pax record in "${headerName}"`);
    }
    const key = utf8Lossy.decode(data.subarray(j + 1, eq));
    const value = data.subarray(eq + 1, end - 1);
    if (key === "GNU.dumpdir") pax.dumpdir = value.slice();
    else if (key.startsWith(XATTR_PREFIX)) {
      (pax.xattrs ??= []).push([decodeXattrKeyword(key.slice(XATTR_PREFIX.length)), value.slice()]);
    } else pax.records.set(key, utf8Lossy.decode(value));
    i = end;
  }
  return pax;
}

function applyPax(e: TarEntry, pax: Pax, at: number): void {
  const r = pax.records;
  const bad = (key: string): FrostError =>
    new FrostError(`Cannot read archive: bad pax "${key}" record for "${e.name}" at byte ${at}`);
  const int = (key: string): number | undefined => {
    const v = r.get(key);
    if (v === undefined || v === "") return undefined;
    if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v))) throw bad(key);
    return Number(v);
  };
  const time = (key: string): TarTime | undefined => {
    const v = r.get(key);
    if (v === undefined || v === "") return undefined;
    const t = parseTime(v);
    if (!t) throw bad(key);
    return t;
  };
  const linkpath = r.get("linkpath");
  if (linkpath) e.linkname = linkpath;
  e.size = int("size") ?? e.size;
  e.uid = int("uid") ?? e.uid;
  e.gid = int("gid") ?? e.gid;
  e.uname = r.get("uname") || e.uname;
  e.gname = r.get("gname") || e.gname;
  e.mtime = time("mtime") ?? e.mtime;
  e.atime = time("atime") ?? e.atime;
  e.devmajor = int("SCHILY.devmajor") ?? e.devmajor;
  e.devminor = int("SCHILY.devminor") ?? e.devminor;
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

/** Parses a pax time ("1700000000.123456789", "-1.5") exactly into seconds and nanoseconds. */
export function parseTime(v: string): TarTime | undefined {
  const m = /^(-?)(\d+)(?:\.(\d*))?$/.exec(v);
  if (!m) return undefined;
  let sec = Number(m[2]);
  let nsec = Number(((m[3] ?? "") + "000000000").slice(0, 9));
  if (!Number.isSafeInteger(sec)) return undefined;
  if (m[1] === "-") {
    sec = -sec;
    if (nsec > 0) {
      sec -= 1;
      nsec = 1_000_000_000 - nsec;
    }
  }
  return { sec, nsec };
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
    out.push({ code: data[i]!, name: utf8Lossy.decode(data.subarray(i + 1, end)) });
    i = end + 1;
  }
  return out;
}
