/**
 * Private helpers of the tar engine: the walk order, and reading and writing the engine state
 * (format described at the top of tar_backup.ts).
 * @module
 */
import { FrostError, messageOf } from "../base/errors.ts";
import type { StateEntry } from "./engine.ts";
import { encodeName } from "./_names.ts";

/** `format` value of a state's header line. */
export const STATE_FORMAT = "frost-tar-state";
/** Version of the state format this code writes; it reads this one and version 1 (which has no trailer). */
export const STATE_VERSION = 2;

/**
 * Smallest regular file a version 2 state's trailer lists (see `stateTrailer`): a restore skips the data of
 * the earlier levels' copies only where that saves real writing.
 */
export const STORED_MIN = 1 << 20;

/** Entry types in state records: file, directory, symlink, fifo, char device, block device. */
export type Kind = "f" | "d" | "l" | "p" | "c" | "b";

const KINDS = new Set<string>(["f", "d", "l", "p", "c", "b"]);

/**
 * Compares two names in the byte order of their UTF-8 encoding (= code point order). JavaScript's `<`
 * compares UTF-16 code units, which differs only between surrogates and U+E000..U+FFFF. Names with bytes
 * that are not UTF-8 (escaped, see _names.ts) compare by their bytes.
 */
export function compareNames(a: string, b: string): number {
  if (a === b) return 0;
  const n = a.length < b.length ? a.length : b.length;
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    if ((x >= 0xdc80 && x <= 0xdcff) || (y >= 0xdc80 && y <= 0xdcff)) return compareBytes(a, b);
    if (x >= 0xd800 && y >= 0xd800) {
      // Move surrogates (code points above U+FFFF) above U+E000..U+FFFF.
      x = x < 0xe000 ? x + 0x2000 : x - 0x800;
      y = y < 0xe000 ? y + 0x2000 : y - 0x800;
    }
    return x - y;
  }
  return a.length - b.length;
}

/** Compares the bytes of two names (the rare names with an escaped byte). */
function compareBytes(a: string, b: string): number {
  const x = encodeName(a);
  const y = encodeName(b);
  const n = x.length < y.length ? x.length : y.length;
  for (let i = 0; i < n; i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
  return x.length - y.length;
}

const HIGH_UNITS = /[\ud800-\uffff]/;

/** Sorts names in place in UTF-8 byte order (the default sort when no name needs the slow comparison). */
export function sortNames(names: string[]): string[] {
  for (const name of names) {
    if (HIGH_UNITS.test(name)) return names.sort(compareNames);
  }
  return names.sort();
}

/**
 * The walk order of entries, given as path components plus "is a directory". Depth first; inside a
 * directory, non-directories come first, then directories, each group sorted by `compareNames`. So a
 * directory's own record precedes its subtree, and the records of its non-directory children directly
 * follow it, which lets the backup learn their fate (for the directory's dumpdir) before descending.
 * `b` is given as its parent's components plus its own name, to avoid building an array per entry.
 */
export function compareKey(
  a: readonly string[],
  aIsDir: boolean,
  bParent: readonly string[],
  bName: string,
  bIsDir: boolean,
): number {
  const aLen = a.length;
  const bLen = bParent.length + 1;
  const n = aLen < bLen ? aLen : bLen;
  for (let i = 0; i < n; i++) {
    const ad = i < aLen - 1 || aIsDir;
    const bd = i < bLen - 1 || bIsDir;
    if (ad !== bd) return ad ? 1 : -1;
    const c = compareNames(a[i]!, i < bLen - 1 ? bParent[i]! : bName);
    if (c !== 0) return c;
  }
  return aLen - bLen;
}

/** `compareKey` of two entries of the same directory, given by name. */
function sameDirCompare(aName: string, aIsDir: boolean, bName: string, bIsDir: boolean): number {
  if (aIsDir !== bIsDir) return aIsDir ? 1 : -1;
  return compareNames(aName, bName);
}

/** The first line of a state. */
export function stateHeader(startedNs: bigint): string {
  return `{"format":"${STATE_FORMAT}","version":${STATE_VERSION},"started":"${startedNs}"}\n`;
}

/**
 * The last line of a version 2 state: `{"stored":[<path>,...]}`, the paths (escaped as in the records) of
 * the regular files of at least `STORED_MIN` bytes with a single link that this level's archive holds as
 * data members. A restore of a chain writes such a file's data only from the newest level that stores it.
 */
export function stateTrailer(stored: readonly string[]): string {
  return `{"stored":${JSON.stringify(stored)}}\n`;
}

/**
 * The paths of a state's trailer line (`line`, without its newline); throws when `line` is not one. `whose`
 * names the state in the errors.
 */
export function parseStateTrailer(line: string, whose: string): string[] {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    v = undefined;
  }
  const stored = (v as { stored?: unknown } | undefined)?.stored;
  if (!Array.isArray(stored) || !stored.every((p) => typeof p === "string")) {
    throw new FrostError(`Cannot read ${whose}: its last line is not a state trailer`);
  }
  return stored as string[];
}

/** One record line of a state. All numbers are decimal strings so that 64-bit values survive JSON. */
export function stateRecord(
  path: string,
  kind: Kind,
  dev: string,
  ino: string,
  size: string,
  mtimeNs: string,
  ctimeNs: string,
): string {
  return `[${JSON.stringify(path)},"${kind}","${dev}","${ino}","${size}","${mtimeNs}","${ctimeNs}"]\n`;
}

/**
 * Where the "tail" of a record line starts: its last four fields `"<ino>","<size>","<mtime>","<ctime>"]`.
 * Two records describe an unchanged entry when their tails are equal (the device is not compared).
 * Found from the end, since only the path can contain `","`.
 */
export function tailStart(line: string): number {
  let i = line.length;
  for (let n = 0; n < 4; n++) i = line.lastIndexOf('","', i - 1);
  return i + 2;
}

/** The fields of a record's tail: [ino, size, mtime, ctime]. */
export function tailFields(line: string, start: number): string[] {
  const end = line.lastIndexOf('"]');
  return line.slice(start + 1, end).split('","');
}

/** A record of the parent's state, as the merge needs it. */
export class ParentRecord {
  #parts: string[] | undefined;
  #tail: string | undefined;
  #fields: string[] | undefined;
  constructor(
    /** Its path below the source (`.` for the root). */
    readonly path: string,
    readonly kind: Kind,
    /** Where the tail (see `tail`) starts in `line`. */
    readonly tailAt: number,
    /** The whole record line (without its `\n`): an unchanged entry's record in the next state, as is. */
    readonly line: string,
  ) {}

  /** `"<ino>","<size>","<mtime>","<ctime>"]`, cut from the line when first asked for. */
  get tail(): string {
    return this.#tail ??= this.line.slice(this.tailAt);
  }

  /** The tail's fields [ino, size, mtime, ctime], split when first asked for. */
  get fields(): string[] {
    return this.#fields ??= tailFields(this.line, this.tailAt);
  }

  /** The path's components (none for the root), split when first asked for. */
  get parts(): string[] {
    return this.#parts ??= this.path === "." ? [] : this.path.split("/");
  }
}

/** What a state reader names in its messages: a level N reads its parent's state, the other readers (restore,
 * verify) a backup's own. */
const PARENT_STATE = "the parent backup's state";
export const OWN_STATE = "the backup's state";

/** The next chunk of a parent backup's (or `what`) state; a failure to read it says so. */
export async function readParentState(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  what = PARENT_STATE,
): Promise<ReadableStreamReadResult<Uint8Array>> {
  try {
    return await reader.read();
  } catch (err) {
    throw new FrostError(`Cannot read ${what}: ${messageOf(err)}`, { cause: err });
  }
}

/** Stops reading a parent backup's state (the rest is not needed). */
export async function stopParentState(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<void> {
  try {
    await reader.cancel();
  } catch {
    // The parent's stream failing now cannot change this backup.
  }
}

/** Returned by `TarStateReader.match()` when it must `await more()` before it can answer. */
export const MORE = Symbol("more");

const DIGITS = /^-?\d+$/;

/**
 * Checks a tar state's header line (`line`, without its newline): a frost tar state of a version this code
 * reads (1 or 2); returns its `started` time. `whose` names the state in the errors ("the backup's state").
 */
export function checkStateHeader(line: string, whose: string): bigint {
  return BigInt(checkStateHeaderVersion(line, whose).started);
}

/**
 * `checkStateHeaderVersion` of a header line given as its bytes (without the `\n`), as the streaming readers
 * gather it: bytes that are not UTF-8 are not a frost tar state either.
 */
function checkStateHeaderBytes(
  bytes: readonly number[],
  whose: string,
): { version: number; started: bigint } {
  let line: string;
  try {
    line = new TextDecoder("utf-8", { fatal: true }).decode(new Uint8Array(bytes));
  } catch {
    throw new FrostError(`Cannot read ${whose}: it is not a frost tar state`);
  }
  return checkStateHeaderVersion(line, whose);
}

/** A header line longer than this is not a frost tar state's. */
const HEADER_MAX = 4096;
const NEWLINE = 0x0a;

/**
 * A tar state's header line gathered from its bytes in chunks of any size (the streaming readers that keep
 * no records) and checked once it is whole (`checkStateHeaderBytes`).
 */
export class StateHeaderGatherer {
  #bytes: number[] | undefined = [];
  #version = 0;
  readonly #whose: string;

  /** `whose` names the state in the errors. */
  constructor(whose: string) {
    this.#whose = whose;
  }

  /** Whether the header line is whole and checked. */
  get done(): boolean {
    return this.#bytes === undefined;
  }

  /** The checked header's version (0 until `done`). */
  get version(): number {
    return this.#version;
  }

  /**
   * Takes `chunk` from `from` up to the header's newline and then checks the header: the index after that
   * newline, or -1 when the chunk ends first (all of it taken).
   */
  take(chunk: Uint8Array, from = 0): number {
    const bytes = this.#bytes!;
    const nl = chunk.indexOf(NEWLINE, from);
    const end = nl < 0 ? chunk.length : nl;
    if (bytes.length + end - from > HEADER_MAX) {
      throw new FrostError(`Cannot read ${this.#whose}: it is not a frost tar state`);
    }
    for (let j = from; j < end; j++) bytes.push(chunk[j]!);
    if (nl < 0) return -1;
    this.end();
    return nl + 1;
  }

  /** Checks the header if that was not done yet (a state that ends in its first line, or is empty). */
  end(): void {
    if (this.#bytes === undefined) return;
    const bytes = this.#bytes;
    this.#bytes = undefined;
    this.#version = checkStateHeaderBytes(bytes, this.#whose).version;
  }
}

/** `checkStateHeader`, also giving the version. */
export function checkStateHeaderVersion(line: string, whose: string): { version: number; started: bigint } {
  let header: unknown;
  try {
    header = JSON.parse(line);
  } catch {
    header = undefined;
  }
  const h = header as { format?: unknown; version?: unknown; started?: unknown } | undefined;
  if (h?.format !== STATE_FORMAT || typeof h.started !== "string" || !DIGITS.test(h.started)) {
    throw new FrostError(`Cannot read ${whose}: it is not a frost tar state`);
  }
  if (h.version !== 1 && h.version !== STATE_VERSION) {
    throw new FrostError(
      `Cannot read ${whose}: version ${
        String(h.version)
      } is not supported (this frost reads 1 and ${STATE_VERSION})`,
    );
  }
  return { version: h.version, started: BigInt(h.started) };
}

/**
 * Reads a parent's state as a streaming merge: `match()` is called with keys in walk order and consumes
 * the parent's records up to that key, so memory holds one input chunk, never the whole state.
 */
export class TarStateReader {
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #decoder = new TextDecoder("utf-8", { fatal: true });
  #text = "";
  #pos = 0;
  #ended = false;
  #lineNo = 0;
  #next: ParentRecord | undefined;
  #version = 0;
  /** When the parent backup started (wall clock, ns); set by `open()`. */
  started = 0n;

  #what: string;

  /** `what` names the state in messages (default: "the parent backup's state"). */
  constructor(stream: ReadableStream<Uint8Array>, what = PARENT_STATE) {
    this.#reader = stream.getReader();
    this.#what = what;
  }

  /** Reads and checks the header line. */
  async open(): Promise<void> {
    let line = this.#line();
    while (line === undefined && !this.#ended) {
      await this.more();
      line = this.#line();
    }
    const header = checkStateHeaderVersion(line ?? "", this.#what);
    this.started = header.started;
    this.#version = header.version;
  }

  /**
   * Returns the parent's record for the entry (`parent` components + `name`), undefined when the parent
   * had none, or MORE when the buffered input ran out. Keys must come in walk order. `prefix`, when given,
   * is `parent` as a path with a trailing `/` ("" for the root): records in the same directory are then
   * compared by name alone.
   */
  match(
    parent: readonly string[],
    name: string,
    isDir: boolean,
    prefix?: string,
  ): ParentRecord | undefined | typeof MORE {
    for (;;) {
      if (this.#next === undefined) {
        const line = this.#line();
        if (line === undefined) return this.#ended ? undefined : MORE;
        if (line === "") continue;
        this.#next = this.#parse(line);
      }
      const rec = this.#next;
      const p = rec.path;
      // The usual case first: the record is the entry's (no name cut out and compared).
      if (
        prefix !== undefined && p.length === prefix.length + name.length && (rec.kind === "d") === isDir &&
        p.endsWith(name) && p.startsWith(prefix)
      ) {
        this.#next = undefined;
        return rec;
      }
      const c = prefix !== undefined && p.startsWith(prefix) && p.indexOf("/", prefix.length) < 0 && p !== "."
        ? sameDirCompare(p.slice(prefix.length), rec.kind === "d", name, isDir)
        : compareKey(rec.parts, rec.kind === "d", parent, name, isDir);
      if (c > 0) return undefined;
      this.#next = undefined;
      if (c === 0) return rec;
    }
  }

  /** The next record in order (for listing a state), undefined at the end, MORE when input ran out. */
  next(): ParentRecord | undefined | typeof MORE {
    for (;;) {
      if (this.#next !== undefined) {
        const rec = this.#next;
        this.#next = undefined;
        return rec;
      }
      const line = this.#line();
      if (line === undefined) return this.#ended ? undefined : MORE;
      if (line !== "") return this.#parse(line);
    }
  }

  /** Buffers the next chunk of input. */
  async more(): Promise<void> {
    const result = await readParentState(this.#reader, this.#what);
    let text: string;
    try {
      text = result.done ? this.#decoder.decode() : this.#decoder.decode(result.value, { stream: true });
    } catch (err) {
      throw new FrostError(`Cannot read ${this.#what}: it is not valid UTF-8`, { cause: err });
    }
    this.#text = this.#text.slice(this.#pos) + text;
    this.#pos = 0;
    if (result.done) this.#ended = true;
  }

  /** Stops reading (the rest of the parent's state is not needed). */
  async close(): Promise<void> {
    await stopParentState(this.#reader);
  }

  #line(): string | undefined {
    const i = this.#text.indexOf("\n", this.#pos);
    if (i < 0) {
      if (!this.#ended || this.#pos >= this.#text.length) return undefined;
      const last = this.#text.slice(this.#pos);
      this.#pos = this.#text.length;
      this.#lineNo++;
      if (last.charCodeAt(0) === 0x7b && this.#version >= 2) return this.#endRecords();
      return last;
    }
    const line = this.#text.slice(this.#pos, i);
    this.#pos = i + 1;
    this.#lineNo++;
    // A version 2 state's trailer ends its records (records start with "[").
    if (line.charCodeAt(0) === 0x7b && this.#version >= 2) return this.#endRecords();
    return line;
  }

  /** Ends the records at the trailer (which the merge and the listing do not need). */
  #endRecords(): undefined {
    this.#ended = true;
    this.#text = "";
    this.#pos = 0;
    return undefined;
  }

  #parse(line: string): ParentRecord {
    // Fast path: without backslashes no JSON string has escapes (nor quotes), and `","` only separates
    // fields; the fields are not cut out until asked for.
    if (line.indexOf("\\") < 0 && line.startsWith('["') && line.endsWith('"]')) {
      const end = line.indexOf('","', 2);
      const kind = line[end + 3];
      if (end > 0 && line.startsWith('","', end + 4) && kind !== undefined && KINDS.has(kind)) {
        let separators = 1;
        let devEnd = -1;
        for (let q = end + 4; (q = line.indexOf('","', q + 3)) >= 0;) {
          if (++separators === 2) devEnd = q;
        }
        // `["<path>","<kind>","<dev>","` precedes the tail's opening quote.
        if (separators === 5) return new ParentRecord(line.slice(2, end), kind as Kind, devEnd + 2, line);
      }
    }
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      v = undefined;
    }
    if (
      !Array.isArray(v) || v.length < 7 || typeof v[0] !== "string" || !KINDS.has(v[1]) ||
      !v.slice(2, 7).every((x) => typeof x === "string")
    ) {
      throw new FrostError(
        `Cannot read ${this.#what}: line ${this.#lineNo} is not a state record`,
      );
    }
    return new ParentRecord(v[0] as string, v[1] as Kind, tailStart(line), line);
  }
}

/** What `recordsOf` needs of a state reader (`TarStateReader` and `RsyncStateReader` have it). */
export interface RecordSource<R> {
  open(): Promise<void>;
  /** The next record; undefined at the end; a symbol (the reader's MORE) when input ran out. */
  next(): R | undefined | symbol;
  more(): Promise<void>;
  close(): Promise<void>;
}

/** Every record of a state, in order (for listing it, not for a merge). */
export async function* recordsOf<R>(reader: RecordSource<R>): AsyncGenerator<R> {
  await reader.open();
  try {
    for (;;) {
      const rec = reader.next();
      if (typeof rec === "symbol") {
        await reader.more();
        continue;
      }
      if (rec === undefined) return;
      yield rec;
    }
  } finally {
    await reader.close();
  }
}

const TAR_TYPES = { f: "file", d: "dir", l: "symlink", p: "fifo", c: "char", b: "block" } as const;

/** Lists a tar state's entries (the tree its backup restores to). */
export async function* tarStateEntries(state: ReadableStream<Uint8Array>): AsyncGenerator<StateEntry> {
  for await (const rec of recordsOf<ParentRecord>(new TarStateReader(state, OWN_STATE))) {
    const size = rec.kind === "f" ? Number(tailFields(rec.tail, 0)[1]) : 0;
    yield { path: rec.path === "." ? "" : rec.path, type: TAR_TYPES[rec.kind], size };
  }
}
