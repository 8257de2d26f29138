/**
 * `frost ls --name NAME [--date T] [PATH]`: the files of a backup point as a restore would produce them.
 *
 * Reads the chain's archives (segments checked, decrypted, decompressed) and replays them on a tree in
 * memory the way the tar restore replays them on disk: members add or replace entries, GNU dumpdirs of
 * directories that already existed remove what the source no longer had (and replay renames). Nothing is
 * written. File data is skipped, not kept.
 * @module
 */
import {
  chooseChain,
  type Command,
  hostnameOption,
  KEY_OPTIONS,
  keyOptions,
  loadHistory,
  nameOption,
  openStorages,
  parse,
  STORAGE_HELP,
  STORAGE_OPTIONS,
} from "../cli.ts";
import { ExitCode, FrostError, UsageError } from "../errors.ts";
import { seriesName } from "../manifest.ts";
import { formatBytes, parseDate } from "../units.ts";
import { readDataChunks } from "../pipeline.ts";
import { chainDataKeys } from "../backup_keys.ts";
import { parseShownName, showName } from "../engines/_names.ts";
import { Dumpdir, type EntryType, parseDumpdir, type TarEntry, TarReader } from "../engines/_tar_read.ts";

const USAGE = `Usage: frost ls --name NAME [--date T] [PATH] [options]

Lists the files of the newest backup of <hostname>_<name> (or of the newest at or before --date) as a
restore would produce them, after applying the whole chain: type and mode, size, modification time (UTC)
and path. With PATH, only that path and what is below it. Nothing is written. Tar-engine backups only.
A name byte that is not valid UTF-8 is shown as \\xHH and a backslash as \\\\ (PATH and restore's
--include take the same form); --json gives such a byte as the escape \\udcHH (U+DC80 + the byte - 0x80).

Options:
  --name NAME            backup name (required)
  --date T               ISO 8601 date/time (local time unless a zone is given)
  --encrypt-pass-file F  the passphrase of encrypted backups (or set FROST_PASSPHRASE)
  --encrypt-identity-file F  the identity of backups encrypted to a recipient
  --json                 print a JSON array of {path, type, mode, size, mtime, linkname}
  -h, --help             this help

${STORAGE_HELP}`;

/** One entry of the replayed tree. */
interface Node {
  type: EntryType;
  mode: number;
  size: number;
  /** Seconds since the epoch (UTC); NaN when only implied by a deeper member. */
  mtime: number;
  linkname: string;
  children?: Map<string, Node>;
}

/** The ls command. */
export const lsCommand: Command = {
  summary: "list the files of a backup point as restore would produce them",
  usage: USAGE,
  async run(ctx) {
    const { values, positionals } = parse(ctx.args, {
      ...STORAGE_OPTIONS,
      date: { type: "string" },
      ...KEY_OPTIONS,
    }, true);
    if (values.help) {
      ctx.stdout(USAGE);
      return ExitCode.ok;
    }
    if (positionals.length > 1) throw new UsageError(`Unexpected argument "${positionals[1]}"`);
    const name = nameOption(values.name, "ls");
    const hostname = hostnameOption(values.hostname);
    const at = values.date === undefined ? undefined : parseDate(values.date);
    const prefix = positionals[0] === undefined
      ? ""
      : normalize(parseShownName(positionals[0]), positionals[0]);

    const storage = await openStorages(values, { create: false, ctx });
    try {
      const series = seriesName(hostname, name);
      const history = await loadHistory(storage, series, ctx);
      if (history.length === 0) throw new FrostError(`No backup of "${series}" in ${storage.url}`);
      const chain = await chooseChain(storage, series, history, at);
      for (const m of chain) {
        if (m.engine !== "tar") {
          throw new FrostError(`frost ls reads tar-engine backups only; backup "${m.id}" uses "${m.engine}"`);
        }
      }
      const keyOpts = await keyOptions(values);
      const keys = await chainDataKeys(chain, keyOpts);

      const tree = new Tree();
      for (const m of chain) {
        const key = keys.get(m.id) ?? null;
        const reader = new TarReader({
          entry: (e) => {
            tree.apply(e);
            return false;
          },
          data: () => {},
          end: () => {},
          warn: () => {},
        });
        await readDataChunks(storage, m, key, (chunk) => reader.push(chunk), ctx.signal);
        reader.finish();
      }

      if (prefix !== "" && !tree.has(prefix)) {
        throw new FrostError(
          `"${positionals[0]}" is not in backup ${chain[chain.length - 1]!.id} of "${series}"`,
        );
      }
      if (values.json) {
        ctx.stdout(JSON.stringify(
          tree.list(prefix).map(([path, n]) => ({
            path,
            type: n.type,
            mode: n.mode,
            size: n.size,
            mtime: Number.isNaN(n.mtime) ? null : new Date(n.mtime * 1000).toISOString(),
            ...n.linkname && { linkname: n.linkname },
          })),
          null,
          2,
        ));
        return ExitCode.ok;
      }
      // Streamed from the tree: no row array of every path beside it.
      let entries = 0;
      let files = 0;
      let bytes = 0;
      for (const [path, n] of tree.walk(prefix)) {
        entries++;
        if (n.type === "file") {
          files++;
          bytes += n.size;
        }
        const time = Number.isNaN(n.mtime)
          ? "-".padEnd(19)
          : new Date(n.mtime * 1000).toISOString().slice(0, 19).replace("T", " ");
        const link = n.type === "symlink"
          ? ` -> ${showName(n.linkname)}`
          : n.type === "hardlink"
          ? ` (hard link of ${showName(n.linkname)})`
          : "";
        ctx.stdout(
          `${typeChar(n.type)}${modeString(n.mode)} ${String(n.size).padStart(12)} ${time} ${
            showName(path)
          }${link}`,
        );
      }
      ctx.stderr(`${entries} entries, ${files} files, ${formatBytes(bytes)}`);
      return ExitCode.ok;
    } finally {
      await storage.close();
    }
  },
};

/** An archive name (or a user's PATH) as a path relative to the restore target: "./a//b/" → "a/b". */
function normalize(name: string, entry: string): string {
  const out: string[] = [];
  for (const part of name.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") throw new FrostError(`Refusing "${entry}": the path leaves the target ("..")`);
    out.push(part);
  }
  return out.join("/");
}

/** The restore target, in memory (verify replays a chain on it too). */
export class Tree {
  readonly root: Node = { type: "dir", mode: 0o755, size: 0, mtime: NaN, linkname: "", children: new Map() };
  #tempCount = 0;

  /** The directory holding `rel` (created as needed, like the restore's parent directories). */
  #parent(rel: string, entry: string): [Map<string, Node>, string] {
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

  #find(rel: string): Node | undefined {
    if (rel === "") return this.root;
    let node: Node | undefined = this.root;
    for (const part of rel.split("/")) {
      node = node?.children?.get(part);
      if (!node) return undefined;
    }
    return node;
  }

  apply(e: TarEntry): void {
    const rel = normalize(e.name, e.name);
    const node: Node = {
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
  #dir(dir: Node, attrs: Node, e: TarEntry): void {
    dir.mode = attrs.mode;
    dir.mtime = attrs.mtime;
    if (!e.dumpdir) return;
    const records = parseDumpdir(e.dumpdir);
    const keep = new Map<string, number>();
    let temp: string | undefined;
    for (let k = 0; k < records.length; k++) {
      const r = records[k]!;
      if (r.code === Dumpdir.X) {
        temp = `${normalize(r.name, e.name)}/tar.${++this.#tempCount}`.replace(/^\//, "");
      } else if (r.code === Dumpdir.R) {
        const t = records[++k];
        if (!t || t.code !== Dumpdir.T) {
          throw new FrostError(`Cannot restore "${e.name}": malformed rename records in its dumpdir`);
        }
        const from = r.name === "" ? temp : normalize(r.name, e.name);
        const to = t.name === "" ? temp : normalize(t.name, e.name);
        if (from && to) this.#rename(from, to, e.name);
      } else if (r.code !== Dumpdir.T) {
        keep.set(r.name, r.code);
      }
    }
    for (const [name, child] of dir.children!) {
      const c = keep.get(name);
      const isDir = child.type === "dir";
      if (c === undefined || (c === Dumpdir.D && !isDir) || (c === Dumpdir.Y && isDir)) {
        dir.children!.delete(name);
      }
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
  list(prefix: string): [string, Node][] {
    return [...this.walk(prefix)];
  }

  /** Whether the tree holds `rel` ("" is the root). */
  has(rel: string): boolean {
    return this.#find(rel) !== undefined;
  }

  /** The entry at `rel` ("" is the root), if any. */
  find(rel: string): Node | undefined {
    return this.#find(rel);
  }

  /** Every entry at or below `prefix`, in path order, one at a time (as `list`, without the array). */
  *walk(prefix: string): Generator<[string, Node]> {
    const start = this.#find(prefix);
    if (!start) return;
    // An explicit stack of sorted name lists: one per directory level, not one per entry.
    yield [prefix === "" ? "." : prefix, start];
    if (!start.children) return;
    const stack: { path: string; node: Node; names: string[]; i: number }[] = [];
    const push = (path: string, node: Node) =>
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

function typeChar(type: EntryType): string {
  return { file: "-", dir: "d", symlink: "l", hardlink: "-", char: "c", block: "b", fifo: "p" }[type];
}

function modeString(mode: number): string {
  const rwx = (bits: number, special: boolean, char: string) =>
    (bits & 4 ? "r" : "-") + (bits & 2 ? "w" : "-") +
    (special ? (bits & 1 ? char : char.toUpperCase()) : bits & 1 ? "x" : "-");
  return rwx(mode >> 6, (mode & 0o4000) !== 0, "s") + rwx(mode >> 3, (mode & 0o2000) !== 0, "s") +
    rwx(mode, (mode & 0o1000) !== 0, "t");
}
