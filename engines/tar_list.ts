/**
 * The tar engine's listing API: a chain's archives replayed on a tree in memory the way the tar restore
 * replays them on disk (members add or replace entries; GNU dumpdirs of directories that already existed
 * remove what the source no longer had and replay renames). File data is skipped. `frost ls` lists the
 * tree, `frost verify --read-data` checks that the chain replays.
 * @module
 */
import { FrostError } from "../base/errors.ts";
import {
  dumpdirDrops,
  dumpdirRenames,
  type EntryType,
  readDumpdir,
  type TarEntry,
  TarReader,
} from "./_tar_read.ts";

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

/**
 * The restore target, in memory: a chain's archives replayed on it as the tar restore replays them on disk.
 * Entries are numbered and their attributes kept in typed arrays, each directory a Map of its children's
 * names to their numbers: no object per entry.
 */
export class Tree {
  #type = new Uint8Array(1024);
  #mode = new Uint32Array(1024);
  #size = new Float64Array(1024);
  #mtime = new Float64Array(1024);
  /** Entries marked (`mark`); made on the first mark. */
  #marks: Uint8Array | undefined;
  #count = 0;
  /** Link targets of symlinks and hard links, by entry. */
  #links = new Map<number, string>();
  /** Each directory's children, name to entry, by the directory's entry (0: the root). */
  #children: (Map<string, number> | undefined)[] = [];
  #tempCount = 0;

  constructor() {
    this.#set(this.#add(), DIR, 0o755, 0, NaN, "");
  }

  /** A new entry's number (attributes unset). */
  #add(): number {
    const i = this.#count++;
    if (i === this.#type.length) {
      const grow = <T extends Uint8Array | Uint32Array | Float64Array>(a: T): T => {
        const b = new (a.constructor as new (n: number) => T)(a.length * 2);
        b.set(a);
        return b;
      };
      this.#type = grow(this.#type);
      this.#mode = grow(this.#mode);
      this.#size = grow(this.#size);
      this.#mtime = grow(this.#mtime);
      if (this.#marks) this.#marks = grow(this.#marks);
    }
    return i;
  }

  /** Sets entry `i` (a directory gets an empty listing when it had none; another type loses its subtree). */
  #set(i: number, type: number, mode: number, size: number, mtime: number, linkname: string): void {
    if (type !== DIR) this.#drop(i);
    else this.#children[i] ??= new Map();
    this.#type[i] = type;
    this.#mode[i] = mode;
    this.#size[i] = size;
    this.#mtime[i] = mtime;
    if (linkname) this.#links.set(i, linkname);
    else this.#links.delete(i);
    if (this.#marks) this.#marks[i] = 0;
  }

  /** Forgets the subtree below entry `i` (its number stays unused). */
  #drop(i: number): void {
    const children = this.#children[i];
    if (!children) return;
    this.#children[i] = undefined;
    for (const c of children.values()) {
      this.#links.delete(c);
      this.#drop(c);
    }
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

  /** The directory holding `rel` (created as needed, like the restore's parent directories). */
  #parent(rel: string, entry: string): [Map<string, number>, string] {
    const parts = rel.split("/");
    const last = parts.pop()!;
    let dir = this.#children[0]!;
    for (const part of parts) {
      let next = dir.get(part);
      if (next === undefined) {
        next = this.#add();
        this.#set(next, DIR, 0o755, 0, NaN, "");
        dir.set(part, next);
      } else if (this.#type[next] !== DIR) {
        throw new FrostError(
          `Refusing "${entry}": its path goes through "${part}", which is not a directory`,
        );
      }
      dir = this.#children[next]!;
    }
    return [dir, last];
  }

  /** The entry at `rel` ("" is the root), or -1. */
  #find(rel: string): number {
    if (rel === "") return 0;
    let i = 0;
    for (const part of rel.split("/")) {
      const next = this.#children[i]?.get(part);
      if (next === undefined) return -1;
      i = next;
    }
    return i;
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
    const [siblings, last] = this.#parent(rel, e.name);
    const existing = siblings.get(last);
    if (e.type === "dir" && existing !== undefined && this.#type[existing] === DIR) {
      this.#dir(existing, e);
      return;
    }
    // A replaced entry keeps its number.
    const i = existing ?? this.#add();
    this.#set(i, type, e.mode, size, mtime, linkname);
    if (existing === undefined) siblings.set(last, i);
  }

  /** An existing directory met again: new attributes, and its dumpdir's renames and deletions replayed. */
  #dir(dir: number, e: TarEntry): void {
    this.#mode[dir] = e.mode;
    this.#mtime[dir] = e.mtime.sec + e.mtime.nsec / 1e9;
    if (!e.dumpdir) return;
    const { records, keep, renames } = readDumpdir(e.dumpdir);
    if (renames) {
      const moves = dumpdirRenames(records, e.name, {
        rel: (n) => normalize(n, e.name),
        temp: (dir) => `${dir}/tar.${++this.#tempCount}`.replace(/^\//, ""),
      });
      for (const [from, to] of moves) this.#rename(from, to, e.name);
    }
    const children = this.#children[dir]!;
    for (const [name, child] of children) {
      if (dumpdirDrops(keep, name, this.#type[child] === DIR)) {
        children.delete(name);
        this.#links.delete(child);
        this.#drop(child);
      }
    }
  }

  #rename(from: string, to: string, entry: string): void {
    const [fromSiblings, fromLast] = this.#parent(from, entry);
    const node = fromSiblings.get(fromLast);
    if (node === undefined) return; // as the restore: nothing to move
    fromSiblings.delete(fromLast);
    const [toSiblings, toLast] = this.#parent(to, entry);
    const replaced = toSiblings.get(toLast);
    if (replaced !== undefined) {
      this.#links.delete(replaced);
      this.#drop(replaced);
    }
    toSiblings.set(toLast, node);
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
    for (const [path, i] of this.#walk("")) if (i !== 0 && !this.#marks?.[i]) yield path;
  }

  *#walk(prefix: string): Generator<[string, number]> {
    const start = this.#find(prefix);
    if (start < 0) return;
    // An explicit stack of sorted name lists: one per directory level, not one per entry.
    yield [prefix === "" ? "." : prefix, start];
    if (this.#type[start] !== DIR) return;
    const stack: { path: string; children: Map<string, number>; names: string[]; i: number }[] = [];
    const push = (path: string, children: Map<string, number>) =>
      stack.push({ path, children, names: [...children.keys()].sort(), i: 0 });
    push(prefix === "" ? "." : prefix, this.#children[start]!);
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      if (top.i >= top.names.length) {
        stack.pop();
        continue;
      }
      const name = top.names[top.i++]!;
      const child = top.children.get(name)!;
      const path = top.path === "." ? name : `${top.path}/${name}`;
      yield [path, child];
      const grand = this.#children[child];
      if (grand) push(path, grand);
    }
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
