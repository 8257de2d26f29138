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
  children?: Map<string, TreeNode>;
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

/** The restore target, in memory: a chain's archives replayed on it as the tar restore replays them on disk. */
export class Tree {
  readonly root: TreeNode = {
    type: "dir",
    mode: 0o755,
    size: 0,
    mtime: NaN,
    linkname: "",
    children: new Map(),
  };
  #tempCount = 0;

  /** The directory holding `rel` (created as needed, like the restore's parent directories). */
  #parent(rel: string, entry: string): [Map<string, TreeNode>, string] {
    const parts = rel.split("/");
    const last = parts.pop()!;
    let dir = this.root;
    for (const part of parts) {
      let next = dir.children!.get(part);
      if (!next) {
        next = { type: "dir", mode: 0o755, size: 0, mtime: NaN, linkname: "", children: new Map() };
        dir.children!.set(part, next);
      } else if (next.type !== "dir") {
        throw new FrostError(
          `Refusing "${entry}": its path goes through "${part}", which is not a directory`,
        );
      }
      dir = next;
    }
    return [dir.children!, last];
  }

  #find(rel: string): TreeNode | undefined {
    if (rel === "") return this.root;
    let node: TreeNode | undefined = this.root;
    for (const part of rel.split("/")) {
      node = node?.children?.get(part);
      if (!node) return undefined;
    }
    return node;
  }

  apply(e: TarEntry): void {
    const rel = normalize(e.name, e.name);
    const node: TreeNode = {
      type: e.type,
      mode: e.mode,
      size: e.type === "file" ? e.size : 0,
      mtime: e.mtime.sec + e.mtime.nsec / 1e9,
      linkname: e.linkname,
    };
    if (e.type === "hardlink") {
      const target = this.#find(normalize(e.linkname, e.name));
      node.size = target?.size ?? 0;
      node.linkname = normalize(e.linkname, e.name);
    }
    if (rel === "") {
      if (e.type !== "dir") throw new FrostError(`Cannot restore "${e.name}": the target root is not a file`);
      this.#dir(this.root, node, e);
      return;
    }
    const [siblings, last] = this.#parent(rel, e.name);
    const existing = siblings.get(last);
    if (e.type === "dir") {
      if (existing?.type === "dir") {
        this.#dir(existing, node, e);
        return;
      }
      node.children = new Map();
    }
    siblings.set(last, node);
  }

  /** An existing directory met again: new attributes, and its dumpdir's renames and deletions replayed. */
  #dir(dir: TreeNode, attrs: TreeNode, e: TarEntry): void {
    dir.mode = attrs.mode;
    dir.mtime = attrs.mtime;
    if (!e.dumpdir) return;
    const { records, keep, renames } = readDumpdir(e.dumpdir);
    if (renames) {
      const moves = dumpdirRenames(records, e.name, {
        rel: (n) => normalize(n, e.name),
        temp: (dir) => `${dir}/tar.${++this.#tempCount}`.replace(/^\//, ""),
      });
      for (const [from, to] of moves) this.#rename(from, to, e.name);
    }
    for (const [name, child] of dir.children!) {
      if (dumpdirDrops(keep, name, child.type === "dir")) dir.children!.delete(name);
    }
  }

  #rename(from: string, to: string, entry: string): void {
    const [fromSiblings, fromLast] = this.#parent(from, entry);
    const node = fromSiblings.get(fromLast);
    if (!node) return; // as the restore: nothing to move
    fromSiblings.delete(fromLast);
    const [toSiblings, toLast] = this.#parent(to, entry);
    toSiblings.set(toLast, node);
  }

  /** Every entry at or below `prefix`, in path order. */
  list(prefix: string): [string, TreeNode][] {
    return [...this.walk(prefix)];
  }

  /** The entry at `rel` ("" is the root), if any. */
  find(rel: string): TreeNode | undefined {
    return this.#find(rel);
  }

  /** Whether the tree holds `rel` ("" is the root). */
  has(rel: string): boolean {
    return this.#find(rel) !== undefined;
  }

  /** Every entry at or below `prefix`, in path order, one at a time (as `list`, without the array). */
  *walk(prefix: string): Generator<[string, TreeNode]> {
    const start = this.#find(prefix);
    if (!start) return;
    // An explicit stack of sorted name lists: one per directory level, not one per entry.
    yield [prefix === "" ? "." : prefix, start];
    if (!start.children) return;
    const stack: { path: string; node: TreeNode; names: string[]; i: number }[] = [];
    const push = (path: string, node: TreeNode) =>
      stack.push({ path, node, names: [...node.children!.keys()].sort(), i: 0 });
    push(prefix === "" ? "." : prefix, start);
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      if (top.i >= top.names.length) {
        stack.pop();
        continue;
      }
      const name = top.names[top.i++]!;
      const child = top.node.children!.get(name)!;
      const path = top.path === "." ? name : `${top.path}/${name}`;
      yield [path, child];
      if (child.children) push(path, child);
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
