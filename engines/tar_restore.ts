/**
 * The restore half of the tar engine: applies one GNU incremental archive (or a plain ustar/pax one) to a
 * target directory, like `tar --incremental --extract --overwrite`, and never writes outside the target.
 *
 * File system calls are synchronous on purpose: an awaited promise per open/write/close costs as much as
 * the whole of `tar -x` for 20 000 small files. File data is written straight from the incoming chunks.
 * The exception: when the writer never reuses its chunks (`RestoreOptions.noGiveBack`), a large chunk that
 * lies wholly inside one file's data is written in the background (on the thread pool, at its offset), so
 * that the main thread meanwhile takes in the next chunks (a remote restore reads its sockets there).
 *
 * Sparse members (GNU tar's old 'S' headers and its PAX formats 0.0, 0.1 and 1.0) are written region by
 * region at their offsets, and their size is set last, so their holes stay holes.
 * @module
 */
import fs from "./_fs_bytes.ts";
import path from "node:path";
import type { RestoreOptions, RestoreRun, RestoreStats } from "./engine.ts";
import { FrostError } from "../base/errors.ts";
import { skippedBytes } from "../base/skip.ts";
import { fsTime, safeRel } from "./_fs_common.ts";
import {
  type DirFix,
  restoreError,
  restoreRun,
  RestoreTally,
  RestoreTarget,
  RestoreXattrs,
  type SpecialType,
} from "./_restore_fs.ts";
import type { StoredXattrs } from "./_xattrs.ts";
import {
  Dumpdir,
  dumpdirDrops,
  type DumpdirRecord,
  dumpdirRenames,
  parseDumpdir,
  readDumpdir,
  type TarEntry,
  type TarHandler,
  TarReader,
  type TarTime,
} from "./_tar_read.ts";
import { droppedChildren, recordsRenames } from "./_dumpdir_drops.ts";

/**
 * Applies one tar archive, written into `writable` in chunks of any size, to the existing directory
 * `target`. Call it once per backup level, oldest first, on the same target: directory entries that
 * carry a GNU dumpdir remove what the source no longer had, so deletions and renames replay.
 *
 * `done` resolves once directory modes and times are applied (at the end of the stream) and rejects
 * with a {@linkcode FrostError} naming the member on a corrupt or truncated archive, or on a member that
 * would leave the target (absolute name, `..`, a path through a symlink). Its `deleted` counts every
 * entry that dumpdirs removed, a removed directory's contents included. Owners are restored when
 * `options.owners` (default: running as root), by user and group name through this machine's
 * /etc/passwd and /etc/group, else by number. Mtimes are exact to the microsecond under Bun and to the
 * millisecond under Deno (node:fs limits; see `fsTime`). The target is not guarded against other
 * processes changing it during the restore.
 *
 * @example
 * ```ts ignore
 * const run = tarRestore("/restore/here");
 * await archiveStream.pipeTo(run.writable);
 * const { files, bytes, deleted } = await run.done;
 * ```
 */
export function tarRestore(target: string, options: RestoreOptions = {}): RestoreRun {
  const applier = new Applier(path.resolve(target), options);
  const reader = new TarReader(applier);
  const parse = (chunk: Uint8Array) => {
    reader.push(chunk);
    applier.tick();
  };
  const run = restoreRun(target, options, "tarRestore", {
    push(chunk) {
      // A marker for bytes the restore said it reads past (`onReadPast`): no data, nothing to write.
      const past = skippedBytes(chunk);
      if (past > 0) return reader.readPast(past);
      if (options.noGiveBack && chunk.byteLength >= BEHIND_MIN && reader.dataLeft > chunk.byteLength) {
        reader.takeData(chunk.byteLength);
        return applier.writeBehind(chunk);
      }
      // Anything else is applied once the writes behind are done (a file is closed after its last write).
      if (applier.behind) return applier.drain().then(() => parse(chunk));
      parse(chunk);
    },
    async finish() {
      await applier.drain();
      reader.finish();
      return applier.finish();
    },
    abandon: () => applier.abandon(),
  });
  // Without `noGiveBack` the reader parses and writes each chunk before push() returns, and keeps no
  // reference to it.
  return { ...run, givesBackOnWrite: true };
}

/** The key of `RestoreOptions.memo` under which a level hands its directory listings to the next. */
const LISTINGS = "tar.listings";

/** Smallest chunk written in the background (`Applier.writeBehind`); smaller ones are not worth the hop. */
const BEHIND_MIN = 64 * 1024;
/** Bytes written in the background at most at once: beyond, the stream waits for the oldest write. */
const BEHIND_MAX = 16 * 1024 * 1024;

/** Turns archive members into files under `root`. */
class Applier implements TarHandler {
  #t: RestoreTarget<DirFix<TarTime>>;
  #options: RestoreOptions;
  #n: RestoreTally;
  /** The regular file being written. */
  #fd = -1;
  #file: TarEntry | null = null;
  #fileAbs = "";
  #fileRel = "";
  /** Where the next data of the open file goes. */
  #pos = 0;
  /** The open file is one whose data is skipped (`#skipFile`): left empty. */
  #empty = false;
  /** Data bytes of skipped files. */
  #skipped = 0;
  /** Writes running in the background (`writeBehind`), oldest first, and their bytes. */
  #behind = new Set<Promise<void>>();
  #behindBytes = 0;
  #behindError: unknown;
  /** Stored xattrs and inherited default ACLs. */
  #x: RestoreXattrs;

  constructor(root: string, options: RestoreOptions) {
    this.#t = new RestoreTarget(root, options);
    this.#options = options;
    this.#n = new RestoreTally(options);
    this.#previous = options.memo?.get(LISTINGS) as Map<string, Uint8Array> | undefined;
    this.#x = new RestoreXattrs(this.#t.ids, options, (name, message) => this.warn(name, message));
  }

  entry(e: TarEntry): boolean {
    try {
      const rel = safeRel(e.name, e.name);
      if (this.#t.select) {
        const s = this.#t.select(rel, e.type === "dir");
        if (s === "out") return false;
        if (s === "parent") {
          this.#parentDir(e, rel);
          return false;
        }
        if (e.type === "hardlink") {
          const why = this.#t.linkLeftOut(e.linkname, e.name);
          if (why !== undefined) {
            this.warn(e.name, why);
            return false;
          }
        }
      }
      switch (e.type) {
        case "file":
          if (this.#options.skipData?.has(rel)) {
            this.#skipFile(e, rel);
            return false;
          }
          return this.#openFile(e, rel);
        case "dir":
          this.#dir(e, rel);
          break;
        case "symlink":
          this.#symlink(e, rel);
          break;
        case "hardlink":
          this.#hardlink(e, rel);
          break;
        default:
          if (!this.#special(e, rel)) return false;
      }
      this.#n.files++;
      return false;
    } catch (err) {
      throw restoreError(err, e.name);
    }
  }

  data(bytes: Uint8Array, start: number, end: number): void {
    try {
      while (start < end) {
        const n = fs.writeSync(this.#fd, bytes, start, end - start, this.#pos);
        start += n;
        this.#pos += n;
        this.#n.bytes += n;
      }
    } catch (err) {
      throw restoreError(err, this.#file?.name ?? "");
    }
  }

  /** A sparse member's next data region starts at `offset`: holes are left unwritten. */
  seek(offset: number): void {
    this.#pos = offset;
  }

  /** Whether writes started by `writeBehind` are still running. */
  get behind(): boolean {
    return this.#behind.size > 0;
  }

  /**
   * Writes `bytes` (the next data of the open file, not its end) on the thread pool at their offset, and
   * keeps them until written. Returns a promise when more than `BEHIND_MAX` bytes are being written: the
   * stream then waits for the oldest write. A failed write is reported by the next wait or `drain()`.
   */
  writeBehind(bytes: Uint8Array): Promise<void> | undefined {
    const fd = this.#fd;
    const name = this.#file!.name;
    const at = this.#pos;
    this.#pos += bytes.byteLength;
    const written = new Promise<void>((resolve, reject) => {
      const from = (offset: number) => {
        fs.write(fd, bytes, offset, bytes.byteLength - offset, at + offset, (err, n) => {
          if (err) return reject(restoreError(err, name));
          this.#n.bytes += n;
          if (offset + n < bytes.byteLength) return from(offset + n);
          resolve();
        });
      };
      from(0);
    });
    const job = written.catch((err) => void (this.#behindError ??= err)).finally(() => {
      this.#behind.delete(job);
      this.#behindBytes -= bytes.byteLength;
      this.#n.tick();
    });
    this.#behind.add(job);
    this.#behindBytes += bytes.byteLength;
    if (this.#behindBytes > BEHIND_MAX || this.#behindError) return this.#waitOldest();
  }

  /** Waits until every write behind has ended; throws the first one's failure. */
  async drain(): Promise<void> {
    while (this.#behind.size > 0) await Promise.all(this.#behind);
    if (this.#behindError) throw this.#behindError;
  }

  async #waitOldest(): Promise<void> {
    while (this.#behindBytes > BEHIND_MAX) await this.#behind.values().next().value;
    if (this.#behindError) throw this.#behindError;
  }

  end(): void {
    const e = this.#file!;
    try {
      const fd = this.#fd;
      // A sparse file's size: its holes, a trailing one included, take no space.
      if (e.sparse && !this.#empty) fs.ftruncateSync(fd, e.size);
      // chown before chmod: chown clears setuid/setgid.
      if (this.#t.owners) fs.fchownSync(fd, this.#t.ids.uid(e.uname, e.uid), this.#t.ids.gid(e.gname, e.gid));
      if ((e.mode & 0o7000) !== 0 || (e.mode & this.#t.umask & 0o777) !== 0) fs.fchmodSync(fd, e.mode);
      // After the data, chown and chmod: each of them drops security.capability.
      this.#x.entry(this.#fileAbs, this.#fileRel, e.name, e.xattrs, e.mode);
      // Deno's futimes fails (EINVAL) on negative times with a fraction; its path-based utimes does not.
      const negative = e.mtime.sec < 0 || (e.atime?.sec ?? 0) < 0;
      if (!negative) fs.futimesSync(fd, fsTime(e.atime), fsTime(e.mtime));
      this.#fd = -1;
      this.#file = null;
      this.#empty = false;
      fs.closeSync(fd);
      if (negative) fs.utimesSync(this.#fileAbs, fsTime(e.atime), fsTime(e.mtime));
      this.#n.files++;
    } catch (err) {
      throw restoreError(err, e.name);
    }
  }

  warn(name: string, message: string): void {
    this.#options.onWarning?.({ path: name, message });
  }

  skipping(offset: number, length: number): void {
    this.#options.onReadPast?.(offset, length);
  }

  /** Reports progress at most every 100 ms. */
  tick(): void {
    this.#n.tick();
  }

  /** Applies directory owners, modes and times, deepest first, and returns the totals. */
  finish(): RestoreStats {
    this.#options.memo?.set(LISTINGS, this.#listings);
    this.#x.fixDirs(this.#t, fsTime);
    const totals = this.#n.totals();
    return this.#skipped > 0 ? { ...totals, skipped: this.#skipped } : totals;
  }

  /**
   * Releases the open file, if any, after a failure: once the writes behind have ended, so that none lands
   * in a file that reuses the descriptor. Directory attributes stay unapplied.
   */
  abandon(): void {
    if (this.#fd >= 0) {
      const fd = this.#fd;
      const close = () => {
        try {
          fs.closeSync(fd);
        } catch {
          // Already failing: the first error is the one to report.
        }
      };
      if (this.#behind.size > 0) void Promise.all(this.#behind).then(close);
      else close();
      this.#fd = -1;
    }
  }

  /**
   * A file that a later level of the chain stores whole (`RestoreOptions.skipData`): made empty, with its
   * attributes, and its data read past. Made at all so that what this level and the next ones do to the
   * path (replace it, delete it) goes as without the skip.
   */
  #skipFile(e: TarEntry, rel: string): void {
    this.#openFile(e, rel);
    this.#empty = true;
    this.#skipped += e.size;
    this.end();
  }

  #openFile(e: TarEntry, rel: string): boolean {
    if (rel === "") throw new FrostError(`Cannot restore "${e.name}": the target root is not a file`);
    this.#t.parents(rel, e.name);
    const abs = this.#t.abs(rel);
    this.#fd = this.#t.createFile(rel, abs, e.mode & 0o777);
    this.#pos = 0;
    this.#file = e;
    this.#fileAbs = abs;
    this.#fileRel = rel;
    return true;
  }

  /** This level's directory listings (dumpdirs) by path, handed to the next level through `options.memo`. */
  #listings = new Map<string, Uint8Array>();
  /** The previous level's listings: what the chain held there (undefined for the first member of a chain). */
  #previous: Map<string, Uint8Array> | undefined;

  #dir(e: TarEntry, rel: string): void {
    const existed = this.#t.dir(rel, e.name);
    if (e.dumpdir) this.#listings.set(rel, e.dumpdir);
    if (existed && e.dumpdir) this.#purge(rel, this.#t.abs(rel), e);
    this.#fixup(e, rel, e.xattrs, this.#x.dir(this.#t, rel, e.name, e.xattrs, existed));
  }

  /**
   * A partial restore's directory on the way to selected entries: made only when one of them needs it
   * (its attributes are then applied at the end); deletions inside it reach selected entries only.
   */
  #parentDir(e: TarEntry, rel: string): void {
    if (e.dumpdir) this.#listings.set(rel, e.dumpdir);
    if (e.dumpdir && this.#t.parentsSafe(rel)) {
      const abs = this.#t.abs(rel);
      if (fs.lstatSync(abs, { throwIfNoEntry: false })?.isDirectory()) this.#purge(rel, abs, e);
    }
    this.#fixup(e, rel, e.xattrs, false);
  }

  #fixup(e: TarEntry, rel: string, xattrs?: StoredXattrs, xattrsClear?: boolean): void {
    this.#t.fixups.set(rel, {
      xattrs,
      xattrsClear,
      name: e.name,
      depth: RestoreTarget.depth(rel),
      mode: e.mode,
      uid: this.#t.owners ? this.#t.ids.uid(e.uname, e.uid) : e.uid,
      gid: this.#t.owners ? this.#t.ids.gid(e.gname, e.gid) : e.gid,
      mtime: e.mtime,
      atime: e.atime,
    });
  }

  #symlink(e: TarEntry, rel: string): void {
    const abs = this.#t.symlink(rel, e.name, e.linkname);
    if (this.#t.owners) fs.lchownSync(abs, this.#t.ids.uid(e.uname, e.uid), this.#t.ids.gid(e.gname, e.gid));
    this.#x.symlink(abs, e.name, e.xattrs, e.mode);
    try {
      fs.lutimesSync(abs, fsTime(e.atime), fsTime(e.mtime));
    } catch (err) {
      // Deno's lutimes fails (EINVAL) on negative times with a fraction: keep the whole second there.
      if (e.mtime.sec >= 0 && (e.atime?.sec ?? 0) >= 0) throw err;
      const whole = (t: TarTime | undefined) => t && { sec: t.sec, nsec: 0 };
      fs.lutimesSync(abs, fsTime(whole(e.atime)), fsTime(whole(e.mtime)));
    }
  }

  #hardlink(e: TarEntry, rel: string): void {
    this.#t.hardlink(rel, e.name, e.linkname);
  }

  /** Fifos and devices. */
  #special(e: TarEntry, rel: string): boolean {
    const type = e.type as SpecialType;
    const warn = (name: string, message: string) => this.warn(name, message);
    const abs = this.#t.special(rel, e.name, type, e.mode, e.devmajor, e.devminor, warn);
    if (abs === undefined) return false;
    if (this.#t.owners) fs.lchownSync(abs, this.#t.ids.uid(e.uname, e.uid), this.#t.ids.gid(e.gname, e.gid));
    if (e.mode & 0o7000) fs.chmodSync(abs, e.mode);
    this.#x.entry(abs, rel, e.name, e.xattrs, e.mode);
    fs.utimesSync(abs, fsTime(e.atime), fsTime(e.mtime));
    return true;
  }

  /**
   * Replays a GNU dumpdir on an existing directory: first the renames it records (R/T pairs, X for a
   * temporary name), then removes the chain's own deletions: each child that the previous level's listing
   * of this directory held and this one lacks (or holds as another kind). Unlike GNU tar, what the chain
   * never held stays: a restore replaces what the backup holds and keeps everything else. The first
   * member of a chain deletes nothing.
   */
  #purge(rel: string, abs: string, e: TarEntry): void {
    if (recordsRenames(e.dumpdir!)) this.#renames(readDumpdir(e.dumpdir!).records, e.name);
    const before = this.#previous?.get(rel);
    if (before === undefined) return;
    const drops = droppedChildren(before, e.dumpdir!);
    if (drops) {
      for (const [name, test] of drops) {
        const childAbs = abs + "/" + name;
        if (test !== "any") {
          const st = fs.lstatSync(childAbs, { throwIfNoEntry: false });
          if (!st || st.isDirectory() !== (test === "dir")) continue;
        }
        const childRel = rel === "" ? name : rel + "/" + name;
        this.#n.deleted += this.#t.select
          ? this.#t.removeSelected(childRel, childAbs)
          : this.#t.remove(childRel, childAbs);
      }
      return;
    }
    // Listings out of byte order (not written by frost or GNU tar): compared as sets.
    const { keep } = readDumpdir(e.dumpdir!);
    const held = new Set<string>();
    for (const r of parseDumpdir(before)) if (r.code !== Dumpdir.R && r.code !== Dumpdir.T) held.add(r.name);
    for (const d of fs.readdirSync(abs, { withFileTypes: true })) {
      if (!held.has(d.name)) continue;
      if (dumpdirDrops(keep, d.name, d.isDirectory())) {
        const childRel = rel === "" ? d.name : rel + "/" + d.name;
        this.#n.deleted += this.#t.select
          ? this.#t.removeSelected(childRel, abs + "/" + d.name)
          : this.#t.remove(childRel, abs + "/" + d.name);
      }
    }
  }

  #renames(records: DumpdirRecord[], name: string): void {
    const renames = dumpdirRenames(records, name, {
      rel: (n) => safeRel(n, name),
      temp: (dir) =>
        this.#t.parentsSafe(dir + "/x")
          ? path.relative(this.#t.root, fs.mkdtempSync(this.#t.abs(dir) + "/tar."))
          : undefined,
    });
    for (const [from, to] of renames) this.#rename(from, to, name);
    // Directories moved: what was verified under their old names no longer says anything.
    this.#t.verified.clear();
    this.#t.verified.add("");
  }

  #rename(from: string, to: string, name: string): void {
    if (!this.#t.parentsSafe(from)) {
      throw new FrostError(`Refusing to restore "${name}": rename source "${from}" goes through a symlink`);
    }
    this.#t.parents(to, name);
    const absFrom = this.#t.abs(from);
    const absTo = this.#t.abs(to);
    if (!fs.lstatSync(absFrom, { throwIfNoEntry: false })) {
      // Already renamed (the level was applied before) or never restored: nothing to move.
      if (!fs.lstatSync(absTo, { throwIfNoEntry: false })?.isDirectory()) {
        this.warn(name, `cannot rename "${from}" to "${to}": "${from}" does not exist`);
      }
      return;
    }
    // GNU tar records renames of directories only, so the level says `to` is a directory now. A folder
    // that is gone may leave its inode to a new one made where a file was: GNU tar then records a rename
    // onto that file's name. The non-directory there goes first (a symlink itself, never what it points
    // to); a directory stays, and renaming onto one that holds anything fails.
    const there = fs.lstatSync(absTo, { throwIfNoEntry: false });
    if (there && !there.isDirectory()) {
      this.#n.deleted += this.#t.remove(to, absTo);
    }
    try {
      fs.renameSync(absFrom, absTo);
    } catch (err) {
      const c = (err as { code?: string }).code;
      if (c !== "ENOTEMPTY" && c !== "EEXIST") throw err;
      throw new FrostError(
        `Cannot restore "${name}": cannot rename "${from}" to "${to}": "${to}" is a folder that holds entries`,
        { cause: err },
      );
    }
    // What the chain held under the old name, it now holds under the new one.
    const previous = this.#previous;
    if (previous) {
      const moved: [string, Uint8Array][] = [];
      for (const [k, v] of previous) {
        if (k === from || k.startsWith(from + "/")) moved.push([to + k.slice(from.length), v]);
      }
      for (const [k] of moved) previous.delete(from + k.slice(to.length));
      for (const [k, v] of moved) previous.set(k, v);
    }
  }
}
