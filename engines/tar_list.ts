/**
 * The tar engine's listing API: a chain's archives replayed on a tree in memory the way the tar restore
 * replays them on disk (members add or replace entries; GNU dumpdirs of directories that already existed
 * remove what the source no longer had and replay renames). File data is skipped. `frost ls` lists the
 * tree, `frost verify --read-data` checks that the chain replays.
 * @module
 */
import { FrostError } from "../base/errors.ts";
import {
  Dumpdir,
  dumpdirDrops,
  dumpdirRenames,
  type EntryType,
  readDumpdir,
  type TarEntry,
  TarReader,
} from "./_tar_read.ts";
import { decodeName } from "./_names.ts";
import { MORE, OWN_STATE, TarStateReader } from "./_tar_state.ts";
import { collectYoung, relieveMemory } from "../base/memory.ts";

/** One entry of the replayed tree. */
export interface TreeNode {
  type: EntryType;
  mode: number;
  size: number;
  /** Seconds since the epoch (UTC); NaN when only implied by a deeper member. */
  mtime: number;
  linkname: string;
}

/** An archive name (or a user's PATH) as a path relative to the restore target: "./a//b/" → "a/b". */
export function normalize(name: string, entry: string): string {
  const out: string[] = [];
  for (const part of name.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") throw new FrostError(`Refusing "${entry}": the path leaves the target ("..")`);
    out.push(part);
  }
  return out.join("/");
}

/** Entry types by their code in `Tree`. */
const TYPES: readonly EntryType[] = ["file", "dir", "symlink", "hardlink", "char", "block", "fifo"];
const DIR = 1;

/** No entry (a link of the sibling lists, a slot of the name table). */
const NONE = -1;
/** A name-table slot whose entry was removed (probing goes on past it). */
const GONE = -2;

/**
 * The restore target, in memory: a chain's archives replayed on it as the tar restore replays them on disk.
 * Entries are numbered and kept in typed arrays: attributes, parent, siblings, and the name (UTF-16 code
 * units in one growing buffer); a directory's children are a linked list, and one open-addressing table of
 * (parent, name) finds a child by name. No object or string per entry: 200 000 entries take ~15 MiB, where
 * a Map of names per directory took ~65 MiB.
 */
export class Tree {
  #type = new Uint8Array(1024);
  #mode = new Uint32Array(1024);
  #size = new Float64Array(1024);
  #mtime = new Float64Array(1024);
  #parentOf = new Int32Array(1024);
  #first = new Int32Array(1024);
  #next = new Int32Array(1024);
  #prev = new Int32Array(1024);
  #nameAt = new Uint32Array(1024);
  #nameLength = new Uint32Array(1024);
  /** Entries marked (`mark`); made on the first mark. */
  #marks: Uint8Array | undefined;
  #count = 0;
  /** The names, one after another. */
  #names = new Uint16Array(16384);
  #namesUsed = 0;
  /** Entry numbers by hash of (parent, name); NONE: free, GONE: removed. */
  #table = new Int32Array(2048).fill(NONE);
  /** Slots that are not NONE. */
  #tableUsed = 0;
  /** Link targets of symlinks and hard links, by entry. */
  #links = new Map<number, string>();
  #tempCount = 0;
  /** Scratch for `#dropUnnamed`: the dumpdir code of each child it names (0 elsewhere, and after it). */
  #codes: Uint8Array | undefined;

  constructor() {
    const root = this.#add(NONE, "");
    this.#set(root, DIR, 0o755, 0, NaN, "");
  }

  /** A new entry's number, named `name` in directory `parent` (not linked in; attributes unset). */
  #add(parent: number, name: string): number {
    const i = this.#count++;
    if (i === this.#type.length) {
      const grow = <T extends Uint8Array | Uint32Array | Int32Array | Float64Array>(a: T): T => {
        const b = new (a.constructor as new (n: number) => T)(a.length * 2);
        b.set(a);
        return b;
      };
      this.#type = grow(this.#type);
      this.#mode = grow(this.#mode);
      this.#size = grow(this.#size);
      this.#mtime = grow(this.#mtime);
      this.#parentOf = grow(this.#parentOf);
      this.#first = grow(this.#first);
      this.#next = grow(this.#next);
      this.#prev = grow(this.#prev);
      this.#nameAt = grow(this.#nameAt);
      this.#nameLength = grow(this.#nameLength);
      if (this.#marks) this.#marks = grow(this.#marks);
    }
    this.#parentOf[i] = parent;
    this.#first[i] = NONE;
    this.#next[i] = NONE;
    this.#prev[i] = NONE;
    this.#setName(i, name);
    return i;
  }

  #setName(i: number, name: string): void {
    if (this.#namesUsed + name.length > this.#names.length) {
      const b = new Uint16Array(Math.max(this.#names.length * 2, this.#namesUsed + name.length));
      b.set(this.#names.subarray(0, this.#namesUsed));
      this.#names = b;
    }
    const at = this.#namesUsed;
    for (let k = 0; k < name.length; k++) this.#names[at + k] = name.charCodeAt(k);
    this.#nameAt[i] = at;
    this.#nameLength[i] = name.length;
    this.#namesUsed += name.length;
  }

  /** The name of entry `i`. */
  #name(i: number): string {
    const at = this.#nameAt[i]!;
    const end = at + this.#nameLength[i]!;
    let out = "";
    for (let k = at; k < end; k += 4096) {
      out += String.fromCharCode(...this.#names.subarray(k, Math.min(end, k + 4096)));
    }
    return out;
  }

  /** The hash of child name `i` of `parent` (as `#childIn` makes it for a name), from the names buffer. */
  #hashOf(parent: number, i: number): number {
    let h = (parent ^ 0x811c9dc5) >>> 0;
    h = Math.imul(h, 0x01000193);
    const names = this.#names;
    const end = this.#nameAt[i]! + this.#nameLength[i]!;
    for (let k = this.#nameAt[i]!; k < end; k++) h = Math.imul(h ^ names[k]!, 0x01000193);
    return h >>> 0;
  }

  #named(i: number, name: string): boolean {
    if (this.#nameLength[i] !== name.length) return false;
    const at = this.#nameAt[i]!;
    for (let k = 0; k < name.length; k++) if (this.#names[at + k] !== name.charCodeAt(k)) return false;
    return true;
  }

  /** The child `name` of directory `dir`, or NONE. */
  #child(dir: number, name: string): number {
    return this.#childIn(dir, name, 0, name.length);
  }

  /**
   * `#child(dir, name)` for a name given as bytes `b[start, end)` without making its string, when they are
   * all ASCII (their UTF-16 code units are then the bytes); undefined for other names.
   */
  #childAscii(dir: number, b: Uint8Array, start: number, end: number): number | undefined {
    let h = (dir ^ 0x811c9dc5) >>> 0;
    h = Math.imul(h, 0x01000193);
    for (let k = start; k < end; k++) {
      if (b[k]! >= 0x80) return undefined;
      h = Math.imul(h ^ b[k]!, 0x01000193);
    }
    const mask = this.#table.length - 1;
    const names = this.#names;
    const length = end - start;
    for (let slot = (h >>> 0) & mask;; slot = (slot + 1) & mask) {
      const i = this.#table[slot]!;
      if (i === NONE) return NONE;
      if (i === GONE || this.#parentOf[i] !== dir || this.#nameLength[i] !== length) continue;
      const at = this.#nameAt[i]! - start;
      let k = start;
      while (k < end && names[at + k] === b[k]) k++;
      if (k === end) return i;
    }
  }

  /** Links entry `i` (named, its parent set) into its parent's listing and the name table. */
  #link(i: number): void {
    if ((this.#tableUsed + 1) * 2 > this.#table.length) this.#rehash();
    const dir = this.#parentOf[i]!;
    const mask = this.#table.length - 1;
    let slot = this.#hashOf(dir, i) & mask;
    while (this.#table[slot]! >= 0) slot = (slot + 1) & mask;
    if (this.#table[slot] === NONE) this.#tableUsed++;
    this.#table[slot] = i;
    const head = this.#first[dir]!;
    this.#next[i] = head;
    this.#prev[i] = NONE;
    if (head !== NONE) this.#prev[head] = i;
    this.#first[dir] = i;
  }

  /** Takes entry `i` out of its parent's listing and the name table (its number stays unused). */
  #unlink(i: number): void {
    const dir = this.#parentOf[i]!;
    const mask = this.#table.length - 1;
    for (let slot = this.#hashOf(dir, i) & mask;; slot = (slot + 1) & mask) {
      const at = this.#table[slot]!;
      if (at === NONE) break;
      if (at === i) {
        this.#table[slot] = GONE;
        break;
      }
    }
    const prev = this.#prev[i]!;
    const next = this.#next[i]!;
    if (prev === NONE) this.#first[dir] = next;
    else this.#next[prev] = next;
    if (next !== NONE) this.#prev[next] = prev;
    this.#next[i] = NONE;
    this.#prev[i] = NONE;
  }

  /** A table twice as big when more than a quarter of it is taken by live entries, else as big (no GONEs). */
  #rehash(): void {
    let live = 0;
    for (const i of this.#table) if (i >= 0) live++;
    const size = live * 4 > this.#table.length ? this.#table.length * 2 : this.#table.length;
    const old = this.#table;
    this.#table = new Int32Array(size).fill(NONE);
    this.#tableUsed = 0;
    const mask = size - 1;
    for (const i of old) {
      if (i < 0) continue;
      let slot = this.#hashOf(this.#parentOf[i]!, i) & mask;
      while (this.#table[slot] !== NONE) slot = (slot + 1) & mask;
      this.#table[slot] = i;
      this.#tableUsed++;
    }
  }

  /** The order of the names of entries `a` and `b` (UTF-16 code units, as `<` compares strings). */
  #compareNames(a: number, b: number): number {
    const names = this.#names;
    const at = this.#nameAt[a]!;
    const bt = this.#nameAt[b]!;
    const al = this.#nameLength[a]!;
    const bl = this.#nameLength[b]!;
    const n = Math.min(al, bl);
    for (let k = 0; k < n; k++) {
      const d = names[at + k]! - names[bt + k]!;
      if (d !== 0) return d;
    }
    return al - bl;
  }

  /** The children of directory `dir` (a copy: the listing may change while it is used). */
  #childrenOf(dir: number): number[] {
    const out: number[] = [];
    for (let c = this.#first[dir]!; c !== NONE; c = this.#next[c]!) out.push(c);
    return out;
  }

  /** Sets entry `i` (a directory keeps its listing; another type loses its subtree). */
  #set(i: number, type: number, mode: number, size: number, mtime: number, linkname: string): void {
    if (type !== DIR) this.#drop(i);
    this.#type[i] = type;
    this.#mode[i] = mode;
    this.#size[i] = size;
    this.#mtime[i] = mtime;
    if (linkname) this.#links.set(i, linkname);
    else this.#links.delete(i);
    if (this.#marks) this.#marks[i] = 0;
  }

  /** Forgets the subtree below entry `i` (their numbers stay unused). */
  #drop(i: number): void {
    const stack = [i];
    while (stack.length > 0) {
      const d = stack.pop()!;
      for (const c of this.#childrenOf(d)) {
        this.#unlink(c);
        this.#links.delete(c);
        stack.push(c);
      }
    }
  }

  /** Removes entry `i` and its subtree. */
  #remove(i: number): void {
    this.#unlink(i);
    this.#links.delete(i);
    this.#drop(i);
  }

  /** Entry `i` as an object. */
  #node(i: number): TreeNode {
    return {
      type: TYPES[this.#type[i]!]!,
      mode: this.#mode[i]!,
      size: this.#size[i]!,
      mtime: this.#mtime[i]!,
      linkname: this.#links.get(i) ?? "",
    };
  }

  /** The directory holding `rel` (created as needed, like the restore's parent directories), and its name. */
  #parent(rel: string, entry: string): [number, string] {
    const parts = rel.split("/");
    const last = parts.pop()!;
    let dir = 0;
    for (const part of parts) {
      let next = this.#child(dir, part);
      if (next === NONE) {
        next = this.#add(dir, part);
        this.#set(next, DIR, 0o755, 0, NaN, "");
        this.#link(next);
      } else if (this.#type[next] !== DIR) {
        throw new FrostError(
          `Refusing "${entry}": its path goes through "${part}", which is not a directory`,
        );
      }
      dir = next;
    }
    return [dir, last];
  }

  /**
   * The entry at `rel` ("" is the root), or -1. Its parts are looked up where they are in `rel`, not cut out
   * (`verify --read-data` looks up every path of the chain's newest state).
   */
  #find(rel: string): number {
    if (rel === "") return 0;
    let i = 0;
    for (let start = 0;;) {
      let end = rel.indexOf("/", start);
      if (end < 0) end = rel.length;
      if (this.#type[i] !== DIR) return -1;
      i = this.#childIn(i, rel, start, end);
      if (i === NONE || end === rel.length) return i === NONE ? -1 : i;
      start = end + 1;
    }
  }

  /** `#child(dir, s.slice(start, end))` without making the slice. */
  #childIn(dir: number, s: string, start: number, end: number): number {
    let h = (dir ^ 0x811c9dc5) >>> 0;
    h = Math.imul(h, 0x01000193);
    for (let k = start; k < end; k++) h = Math.imul(h ^ s.charCodeAt(k), 0x01000193);
    const mask = this.#table.length - 1;
    const names = this.#names;
    const length = end - start;
    for (let slot = (h >>> 0) & mask;; slot = (slot + 1) & mask) {
      const i = this.#table[slot]!;
      if (i === NONE) return NONE;
      if (i === GONE || this.#parentOf[i] !== dir || this.#nameLength[i] !== length) continue;
      const at = this.#nameAt[i]! - start;
      let k = start;
      while (k < end && names[at + k] === s.charCodeAt(k)) k++;
      if (k === end) return i;
    }
  }

  apply(e: TarEntry): void {
    const rel = normalize(e.name, e.name);
    const type = TYPES.indexOf(e.type);
    let size = e.type === "file" ? e.size : 0;
    let linkname = e.linkname;
    const mtime = e.mtime.sec + e.mtime.nsec / 1e9;
    if (e.type === "hardlink") {
      linkname = normalize(e.linkname, e.name);
      const target = this.#find(linkname);
      size = target < 0 ? 0 : this.#size[target]!;
    }
    if (rel === "") {
      if (e.type !== "dir") throw new FrostError(`Cannot restore "${e.name}": the target root is not a file`);
      this.#dir(0, e);
      return;
    }
    const [dir, last] = this.#parent(rel, e.name);
    const existing = this.#child(dir, last);
    if (e.type === "dir" && existing !== NONE && this.#type[existing] === DIR) {
      this.#dir(existing, e);
      return;
    }
    // A replaced entry keeps its number.
    const i = existing !== NONE ? existing : this.#add(dir, last);
    this.#set(i, type, e.mode, size, mtime, linkname);
    if (existing === NONE) this.#link(i);
  }

  /** An existing directory met again: new attributes, and its dumpdir's renames and deletions replayed. */
  #dir(dir: number, e: TarEntry): void {
    this.#mode[dir] = e.mode;
    this.#mtime[dir] = e.mtime.sec + e.mtime.nsec / 1e9;
    if (!e.dumpdir) return;
    if (this.#dropUnnamed(dir, e.dumpdir)) return;
    const { records, keep, renames } = readDumpdir(e.dumpdir);
    if (renames) {
      const moves = dumpdirRenames(records, e.name, {
        rel: (n) => normalize(n, e.name),
        temp: (dir) => `${dir}/tar.${++this.#tempCount}`.replace(/^\//, ""),
      });
      for (const [from, to] of moves) this.#rename(from, to, e.name);
    }
    for (const child of this.#childrenOf(dir)) {
      if (dumpdirDrops(keep, this.#name(child), this.#type[child] === DIR)) this.#remove(child);
    }
  }

  /**
   * A dumpdir without renames replayed as `dumpdirDrops` does it (the last record of a name counts), read
   * straight from its bytes: each named child is found and its code noted in `#codes`, then the children
   * without a fitting code go. No record objects and no map of names: the dumpdir of a folder of 200 000
   * files made ~60 MiB of them. False (nothing done) when the dumpdir records renames.
   */
  #dropUnnamed(dir: number, dumpdir: Uint8Array): boolean {
    for (let i = 0; i < dumpdir.length && dumpdir[i] !== 0; i = dumpdir.indexOf(0, i) + 1 || dumpdir.length) {
      if (dumpdir[i] === Dumpdir.R || dumpdir[i] === Dumpdir.X) return false;
    }
    if (this.#codes === undefined || this.#codes.length < this.#type.length) {
      this.#codes = new Uint8Array(this.#type.length);
    }
    const codes = this.#codes;
    for (let i = 0; i < dumpdir.length && dumpdir[i] !== 0;) {
      let end = dumpdir.indexOf(0, i);
      if (end < 0) end = dumpdir.length;
      const code = dumpdir[i]!;
      if (code !== Dumpdir.T) {
        const child = this.#childAscii(dir, dumpdir, i + 1, end) ??
          this.#child(dir, decodeName(dumpdir.subarray(i + 1, end)));
        if (child !== NONE) codes[child] = code;
      }
      i = end + 1;
    }
    for (let c = this.#first[dir]!; c !== NONE;) {
      const next = this.#next[c]!;
      const code = codes[c]!;
      codes[c] = 0;
      const isDir = this.#type[c] === DIR;
      if (code === 0 || (code === Dumpdir.D && !isDir) || (code === Dumpdir.Y && isDir)) this.#remove(c);
      c = next;
    }
    return true;
  }

  #rename(from: string, to: string, entry: string): void {
    const [fromDir, fromLast] = this.#parent(from, entry);
    const node = this.#child(fromDir, fromLast);
    if (node === NONE) return; // as the restore: nothing to move
    this.#unlink(node);
    const [toDir, toLast] = this.#parent(to, entry);
    const replaced = this.#child(toDir, toLast);
    if (replaced !== NONE) this.#remove(replaced);
    this.#parentOf[node] = toDir;
    if (!this.#named(node, toLast)) this.#setName(node, toLast);
    this.#link(node);
  }

  /** Every entry at or below `prefix`, in path order. */
  list(prefix: string): [string, TreeNode][] {
    return [...this.walk(prefix)];
  }

  /** The entry at `rel` ("" is the root), if any. */
  find(rel: string): TreeNode | undefined {
    const i = this.#find(rel);
    return i < 0 ? undefined : this.#node(i);
  }

  /** Whether the tree holds `rel` ("" is the root). */
  has(rel: string): boolean {
    return this.#find(rel) >= 0;
  }

  /**
   * Marks the entry at `rel` ("" is the root): true when it is there and was not marked yet. Replacing an
   * entry unmarks it.
   */
  mark(rel: string): boolean {
    const i = this.#find(rel);
    if (i < 0) return false;
    this.#marks ??= new Uint8Array(this.#type.length);
    if (this.#marks[i]) return false;
    this.#marks[i] = 1;
    return true;
  }

  /** Every entry at or below `prefix`, in path order, one at a time (as `list`, without the array). */
  *walk(prefix: string): Generator<[string, TreeNode]> {
    for (const [path, i] of this.#walk(prefix)) yield [path, this.#node(i)];
  }

  /** The paths of the entries below the root that `mark` did not mark, in path order. */
  *unmarked(): Generator<string> {
    const marks = this.#marks;
    // The paths of marked files are not even made.
    const unmarked = (i: number) => !marks?.[i];
    for (const [path, i] of this.#walk("", unmarked)) if (i !== 0 && unmarked(i)) yield path;
  }

  /** The entries at or below `prefix` in path order; files for which `want` says false are left out. */
  *#walk(prefix: string, want?: (i: number) => boolean): Generator<[string, number]> {
    const start = this.#find(prefix);
    if (start < 0) return;
    // An explicit stack of sorted child lists: one per directory level, not one per entry.
    yield [prefix === "" ? "." : prefix, start];
    if (this.#type[start] !== DIR) return;
    // Each level's children sorted by name in place (code unit order, as strings sort): no name strings.
    const stack: { path: string; entries: Int32Array; i: number }[] = [];
    const push = (path: string, dir: number) => {
      const entries = Int32Array.from(this.#childrenOf(dir));
      stack.push({ path, entries: entries.sort((a, b) => this.#compareNames(a, b)), i: 0 });
    };
    push(prefix === "" ? "." : prefix, start);
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      if (top.i >= top.entries.length) {
        stack.pop();
        continue;
      }
      const child = top.entries[top.i++]!;
      if (want && this.#type[child] !== DIR && !want(child)) continue;
      const name = this.#name(child);
      const path = top.path === "." ? name : `${top.path}/${name}`;
      yield [path, child];
      if (this.#type[child] === DIR) push(path, child);
    }
  }
}

/** What `markTarState` found: the state's entries below the root, and those the tree does not hold. */
export interface StateMarks {
  entries: number;
  missing: number;
  /** The first missing entry's path ("" when none). */
  firstMissing: string;
}

/**
 * Marks in `tree` (`Tree.mark`) each entry below the root of the tar engine state `state` (a backup's
 * recorded tree, as `tarStateEntries` lists it). Its records are read in a loop that awaits only for more
 * input, and nothing but the path is taken from them (the engine's async `entries` made a promise, an entry
 * and the parsed size per record), and the young generation is collected every 4096 records (Bun): the
 * comparison is where `verify --read-data` of /usr or of 200 000 files in one folder peaked.
 */
export async function markTarState(tree: Tree, state: ReadableStream<Uint8Array>): Promise<StateMarks> {
  const out: StateMarks = { entries: 0, missing: 0, firstMissing: "" };
  const reader = new TarStateReader(state, OWN_STATE);
  await reader.open();
  try {
    for (;;) {
      const rec = reader.next();
      if (rec === MORE) {
        await reader.more();
        continue;
      }
      if (rec === undefined) return out;
      if (rec.path === ".") continue;
      // A loop that rarely awaits: the memory watcher's timer gets few turns, and the records die young.
      if (++out.entries % 1024 === 0) {
        if (out.entries % 4096 === 0) collectYoung();
        relieveMemory();
      }
      if (!tree.mark(rec.path) && out.missing++ === 0) out.firstMissing = rec.path;
    }
  } finally {
    await reader.close();
  }
}

/**
 * A tar archive taken in chunk by chunk (the engine's bytes of one backup), each member replayed on `tree`
 * when given; file data is skipped. `push` and `finish` throw on a malformed archive.
 */
export function tarReplayer(tree?: Tree): { push(chunk: Uint8Array): void; finish(): void } {
  const reader = new TarReader({
    entry: (e) => {
      tree?.apply(e);
      return false;
    },
    data: () => {},
    end: () => {},
    warn: () => {},
  });
  return { push: (chunk) => reader.push(chunk), finish: () => reader.finish() };
}

/**
 * Reads the tar archive `stream` (the engine's bytes of one backup) to its end-of-archive block, replaying
 * each member on `tree` when given; file data is skipped. Rejects on a malformed archive.
 */
export async function replayTar(stream: ReadableStream<Uint8Array>, tree?: Tree): Promise<void> {
  const replay = tarReplayer(tree);
  for await (const chunk of stream) replay.push(chunk);
  replay.finish();
}
