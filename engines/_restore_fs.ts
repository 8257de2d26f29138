/**
 * The restore side shared by the tar and rsync engines: the writable stream a restore is fed through,
 * and the target tree, which creates entries without ever writing outside the target (paths through
 * symlinks are refused; files are created with O_EXCL, never written through an existing link).
 * @module
 */
import fs from "./_fs_bytes.ts";
import process from "node:process";
import { execFileSync } from "node:child_process";
import type { RestoreOptions, RestoreRun, RestoreStats, Selection } from "./engine.ts";
import { AbortedError, failureOf, FrostError, messageOf } from "../base/errors.ts";
import { code, count, IdMap, safeRel } from "./_fs_common.ts";
import { hasEscape } from "./_names.ts";
import { type StoredXattrs, XattrRestorer } from "./_xattrs.ts";

/** What a restore's stream drives: one engine's parser and applier. */
export interface RestoreSink {
  /**
   * Applies the next chunk of the stream (and reports progress); a promise when the stream must wait
   * before the next chunk.
   */
  push(chunk: Uint8Array): void | Promise<void>;
  /** Checks that the stream ended properly, applies directory attributes and returns the totals. */
  finish(): RestoreStats | Promise<RestoreStats>;
  /** Releases what is open after a failure. */
  abandon(): void;
}

/**
 * The writable stream and `done` promise of a restore into `target`: chunks go to `sink`, which must
 * be Uint8Arrays (`fn` names the function in that error); an abort of `options.signal`, a cancelled
 * stream or a failing sink settles `done` and abandons the sink.
 */
export function restoreRun(
  target: string,
  options: RestoreOptions,
  fn: string,
  sink: RestoreSink,
): RestoreRun {
  const signal = options.signal;
  let resolveDone!: (stats: RestoreStats) => void;
  let rejectDone!: (err: unknown) => void;
  const done = new Promise<RestoreStats>((resolve, reject) => {
    resolveDone = resolve;
    rejectDone = reject;
  });
  // The caller may be awaiting the pipe when the restore fails; the error still reaches it through `done`.
  done.catch(() => {});
  let settled = false;
  let onAbort: (() => void) | undefined;
  const settle = (err?: unknown, stats?: RestoreStats) => {
    if (settled) return;
    settled = true;
    if (onAbort) signal?.removeEventListener("abort", onAbort);
    if (stats) {
      resolveDone(stats);
    } else {
      sink.abandon();
      rejectDone(err);
    }
  };
  const aborted = () => new AbortedError(`Restore into "${target}" aborted`, { cause: signal?.reason });

  const writable = new WritableStream<Uint8Array>({
    start(controller) {
      if (!signal) return;
      if (signal.aborted) {
        const err = aborted();
        settle(err);
        throw err;
      }
      onAbort = () => {
        const err = aborted();
        settle(err);
        controller.error(err);
      };
      signal.addEventListener("abort", onAbort, { once: true });
    },
    write(chunk) {
      try {
        if (signal?.aborted) throw aborted();
        if (!(chunk instanceof Uint8Array)) {
          throw new TypeError(`${fn}() accepts Uint8Array chunks only`);
        }
        const wait = sink.push(chunk);
        if (wait) {
          return wait.catch((err) => {
            settle(err);
            throw err;
          });
        }
      } catch (err) {
        settle(err);
        throw err;
      }
    },
    async close() {
      try {
        if (signal?.aborted) throw aborted();
        settle(undefined, await sink.finish());
      } catch (err) {
        settle(err);
        throw err;
      }
    },
    abort(reason) {
      settle(reason ?? aborted());
    },
  });
  return { writable, done };
}

/** A restore's counts, reported through `options.onProgress`. */
export class RestoreTally {
  files = 0;
  bytes = 0;
  deleted = 0;
  #options: RestoreOptions;
  #lastProgress = performance.now();

  constructor(options: RestoreOptions) {
    this.#options = options;
  }

  /** Reports progress at most every 100 ms. */
  tick(): void {
    const now = performance.now();
    if (now - this.#lastProgress >= 100 && this.#options.onProgress) {
      this.#lastProgress = now;
      this.#options.onProgress({ files: this.files, bytes: this.bytes });
    }
  }

  /** Reports the final progress and returns the totals. */
  totals(): RestoreStats {
    this.#options.onProgress?.({ files: this.files, bytes: this.bytes });
    return { files: this.files, bytes: this.bytes, deleted: this.deleted };
  }
}

/** Directory attributes applied once the stream has ended; `T` is the engine's time. */
export interface DirFix<T> {
  name: string;
  depth: number;
  mode: number;
  uid: number;
  gid: number;
  mtime: T;
  atime?: T;
  /** Its stored extended attributes (set at the end, after chmod). */
  xattrs?: StoredXattrs;
  /** Attributes it has that the archive does not list are removed (see `ApplyOptions.clear`). */
  xattrsClear?: boolean;
}

/** A failure while restoring the entry `name`, as a `FrostError` that names it (frost's own errors as they are). */
export function restoreError(err: unknown, name: string): Error {
  return failureOf(err, `Cannot restore "${name}"`);
}

/**
 * The extended attributes of a restore, as both engines apply them: each entry's stored ones (none with
 * `options.xattrs: false`), and the default ACLs that the directories a stream makes give what is made in
 * them.
 */
export class RestoreXattrs {
  /** Sets stored xattrs; undefined when `options.xattrs` is false. */
  readonly #x: XattrRestorer | undefined;
  /** Directories (relative paths) given a default ACL by this stream: what is made in them inherits it. */
  readonly #defaults = new Set<string>();

  constructor(ids: IdMap, options: RestoreOptions, warn: (name: string, message: string) => void) {
    if (options.xattrs !== false) this.#x = new XattrRestorer(ids, warn, options.xattrsRefused);
  }

  /** Whether what is made at `rel` inherits a default ACL that this stream gave its directory. */
  inherits(rel: string): boolean {
    if (this.#defaults.size === 0) return false;
    const slash = rel.lastIndexOf("/");
    return this.#defaults.has(slash < 0 ? "" : rel.slice(0, slash));
  }

  /** Applies the stored xattrs of the entry at `rel` (not a directory) to `abs`, after chown and chmod. */
  entry(abs: string, rel: string, name: string, stored: StoredXattrs | undefined, mode: number): void {
    const clear = this.inherits(rel);
    if (this.#x && (stored || clear)) this.#x.apply(abs, name, stored, { dir: false, mode, clear });
  }

  /** Applies a symlink's stored xattrs to `abs`. */
  symlink(abs: string, name: string, stored: StoredXattrs | undefined, mode: number): void {
    if (this.#x && stored) {
      this.#x.apply(abs, name, stored, { dir: false, symlink: true, mode, clear: false });
    }
  }

  /**
   * A directory at `rel` that `t.dir()` just made (or found, `existed`): one made in a directory with a
   * default ACL inherited it, and an inherited access ACL may leave the owner without write permission, so
   * it is made writable until the end; its own default ACL is set now, before its children are made (they
   * inherit it, as they did in the source). The target itself keeps what it had. Returns whether the
   * xattrs it has that the stream does not list go at the end (`DirFix.xattrsClear`).
   */
  dir<F>(t: RestoreTarget<F>, rel: string, name: string, stored: StoredXattrs | undefined, existed: boolean) {
    const inherits = !existed && this.inherits(rel);
    if (inherits) t.makeWritable(t.abs(rel));
    const clear = rel !== "" && (existed || inherits);
    if (this.#x && (stored || clear)) {
      if (this.#x.applyDefault(t.abs(rel), name, stored, clear)) this.#defaults.add(rel);
      else this.#defaults.delete(rel);
    }
    return clear;
  }

  /**
   * Applies the directory attributes kept in `t.fixups` (owners, modes, xattrs, times; `time` gives what
   * utimes takes), deepest first, once the stream has ended.
   */
  fixDirs<T>(t: RestoreTarget<DirFix<T>>, time: (t: T | undefined) => number | Date): void {
    const dirs = [...t.fixups.entries()].sort((a, b) => b[1].depth - a[1].depth);
    for (const [rel, fix] of dirs) {
      try {
        const found = t.fixupStat(rel);
        if (found === undefined) continue;
        const { abs, st } = found;
        // What already holds (a later level of a chain finds most folders as the one before left them) is
        // not set again: each such call dirties the inode in the file system's journal.
        const chown = t.owners && (Number(st.uid) !== fix.uid || Number(st.gid) !== fix.gid);
        if (chown) fs.lchownSync(abs, fix.uid, fix.gid);
        if (chown || (Number(st.mode) & 0o7777) !== (fix.mode & 0o7777)) fs.chmodSync(abs, fix.mode);
        if (this.#x && (fix.xattrs || fix.xattrsClear)) {
          this.#x.apply(abs, fix.name, fix.xattrs, {
            dir: true,
            mode: fix.mode,
            clear: fix.xattrsClear ?? false,
          });
        }
        // Without a stored atime, utimes would set it to now: the one a previous level set is as good.
        const atime = time(fix.atime);
        const mtime = time(fix.mtime);
        if (
          !sameMicrosecond(st.mtimeNs, mtime) ||
          (fix.atime !== undefined && !sameMicrosecond(st.atimeNs, atime))
        ) {
          fs.utimesSync(abs, atime, mtime);
        }
      } catch (err) {
        throw restoreError(err, fix.name);
      }
    }
  }
}

/**
 * Whether a file time of `ns` nanoseconds is what utimes given `t` (as `fsTime` makes it) would set, to the
 * microsecond: the precision restores keep.
 */
export function sameMicrosecond(ns: bigint, t: number | Date): boolean {
  const us = typeof t === "number" ? Math.floor(t * 1e6) : t.getTime() * 1000;
  return Number.isSafeInteger(us) && ns >= 0n && ns / 1000n === BigInt(us);
}

const CREATE = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL;

/** A special file's type, as the restore messages name it. */
export type SpecialType = "fifo" | "char" | "block";

/**
 * The target directory of a restore: creates and removes entries under `root`, checking every parent
 * on the way. `F` is what the engine keeps per directory until the end (its attributes, in `fixups`).
 */
export class RestoreTarget<F> {
  readonly root: string;
  readonly superuser = process.getuid?.() === 0;
  /** Whether owners are restored (`options.owners`, default: running as root). */
  readonly owners: boolean;
  readonly umask = process.umask();
  /** Owner names to this machine's ids. */
  readonly ids = new IdMap();
  /**
   * Relative paths (under root) already checked in this run to be real directories, not symlinks.
   * Entries leave when the restore removes a directory or puts a symlink in its place.
   */
  readonly verified = new Set<string>([""]);
  /** Directory attributes applied at the end, by relative path; a removed directory leaves. */
  readonly fixups = new Map<string, F>();
  /**
   * Directories (relative paths) this run made: nothing else is in them, so an entry made there needs no
   * look first. Elsewhere an entry is looked for (lstat) before it is made: a call that fails with EEXIST
   * costs an Error object with its stack, one per replaced file.
   */
  readonly #made = new Set<string>();
  /** A partial restore's path test (`options.select`); undefined when everything is restored. */
  readonly select: ((path: string, isDir: boolean) => Selection) | undefined;

  readonly #options: RestoreOptions;

  constructor(root: string, options: RestoreOptions) {
    this.root = root;
    this.owners = options.owners ?? this.superuser;
    this.select = options.select;
    this.#options = options;
    if (options.emptyTarget) this.#made.add("");
  }

  /** Where `rel` stands in this restore ("in" when it is not partial). */
  selection(rel: string, isDir: boolean): Selection {
    return this.select ? this.select(rel, isDir) : "in";
  }

  /**
   * Where a directory's stored attributes go at the end of a restore: its absolute path, or undefined
   * when it is gone, was replaced (by a later member, or a symlink on its path), or, in a partial
   * restore, was not made or walked through by this restore.
   */
  fixupPath(rel: string): string | undefined {
    return this.fixupStat(rel)?.abs;
  }

  /** {@linkcode fixupPath} with the directory's lstat (times in nanoseconds). */
  fixupStat(rel: string): { abs: string; st: fs.BigIntStats } | undefined {
    if (rel !== "" && !this.parentsSafe(rel)) return undefined;
    if (this.select && !this.verified.has(rel)) return undefined;
    const abs = this.abs(rel);
    const st = fs.lstatSync(abs, { bigint: true, throwIfNoEntry: false });
    return st?.isDirectory() ? { abs, st } : undefined;
  }

  /**
   * A hard link's message when its target is left out of a partial restore (the link cannot be made),
   * else undefined.
   */
  linkLeftOut(linkname: string, name: string): string | undefined {
    if (!this.select) return undefined;
    let to: string;
    try {
      to = safeRel(linkname, name);
    } catch {
      return undefined; // hardlink() refuses it with the right error
    }
    return this.select(to, false) === "out"
      ? `not restored: it is a hard link to "${linkname}", which the --include patterns leave out`
      : undefined;
  }

  /**
   * A deletion recorded by the backup, in a partial restore: removes `rel` when it is selected, and
   * only the selected entries below it when it is a directory on the way to some ("parent"), then the
   * directory itself if that left it empty. Returns the number of entries removed.
   */
  removeSelected(rel: string, abs: string): number {
    const st = fs.lstatSync(abs, { throwIfNoEntry: false });
    if (!st) return 0;
    const s = this.selection(rel, st.isDirectory());
    if (s === "in") return this.remove(rel, abs);
    if (s === "out") return 0;
    this.makeWritable(abs, st.mode);
    let n = 0;
    for (const name of fs.readdirSync(abs)) n += this.removeSelected(rel + "/" + name, abs + "/" + name);
    try {
      fs.rmdirSync(abs);
    } catch (err) {
      if (code(err) === "ENOTEMPTY" || code(err) === "EEXIST") return n;
      throw err;
    }
    this.verified.delete(rel);
    this.fixups.delete(rel);
    return n + 1;
  }

  /** The depth of a directory's fixup: deepest are applied first, the root (-1) last. */
  static depth(rel: string): number {
    return rel === "" ? -1 : count(rel, "/");
  }

  abs(rel: string): string {
    return rel === "" ? this.root : this.root + "/" + rel;
  }

  /**
   * Makes sure every parent of `rel` is a real directory inside the root, creating missing ones.
   * Refuses a path through a symlink: the backup could have planted one pointing anywhere.
   */
  parents(rel: string, name: string): void {
    const slash = rel.lastIndexOf("/");
    if (slash < 0 || this.verified.has(rel.slice(0, slash))) return;
    let i = rel.indexOf("/");
    while (i > 0 && i <= slash) {
      const dir = rel.slice(0, i);
      if (!this.verified.has(dir)) {
        const abs = this.abs(dir);
        const st = fs.lstatSync(abs, { throwIfNoEntry: false });
        if (!st) {
          fs.mkdirSync(abs, 0o777);
          this.#made.add(dir);
        } else if (st.isSymbolicLink()) {
          throw new FrostError(
            `Refusing to restore "${name}": path leaves the target (through symlink "${dir}")`,
          );
        } else if (!st.isDirectory()) {
          throw new FrostError(`Cannot restore "${name}": "${dir}" is not a directory`);
        }
        this.verified.add(dir);
      }
      i = rel.indexOf("/", i + 1);
    }
  }

  /** Like parents() but only checks: true when every parent of `rel` exists and is a real directory. */
  parentsSafe(rel: string): boolean {
    let i = rel.indexOf("/");
    while (i > 0) {
      const dir = rel.slice(0, i);
      if (!this.verified.has(dir)) {
        if (!fs.lstatSync(this.abs(dir), { throwIfNoEntry: false })?.isDirectory()) return false;
        this.verified.add(dir);
      }
      i = rel.indexOf("/", i + 1);
    }
    return true;
  }

  /** Removes a file or a directory tree without following symlinks; returns the number of entries removed. */
  remove(rel: string, abs: string): number {
    const st = fs.lstatSync(abs, { throwIfNoEntry: false });
    if (!st) return 0;
    if (!st.isDirectory()) {
      fs.unlinkSync(abs);
      return 1;
    }
    this.makeWritable(abs, st.mode);
    let n = 0;
    for (const d of fs.readdirSync(abs, { withFileTypes: true })) {
      const childAbs = abs + "/" + d.name;
      if (d.isDirectory()) {
        n += this.remove(rel + "/" + d.name, childAbs);
      } else {
        fs.unlinkSync(childAbs);
        n++;
      }
    }
    fs.rmdirSync(abs);
    this.verified.delete(rel);
    this.fixups.delete(rel);
    return n + 1;
  }

  /** As non-root, an existing directory must let us create and remove entries until the end. */
  makeWritable(abs: string, mode?: number): void {
    if (this.superuser) return;
    const m = mode ?? fs.lstatSync(abs).mode;
    if ((m & 0o700) !== 0o700) fs.chmodSync(abs, (m & 0o7777) | 0o700);
  }

  /**
   * Makes `rel` a directory (the root: makes it writable), replacing a non-directory; true when the
   * directory existed already.
   */
  dir(rel: string, name: string): boolean {
    const abs = this.abs(rel);
    if (rel === "") {
      this.makeWritable(abs);
      return true;
    }
    let existed = true;
    this.parents(rel, name);
    const there = this.#maybeThere(rel) ? fs.lstatSync(abs, { throwIfNoEntry: false }) : undefined;
    if (there?.isDirectory()) {
      // The usual case on a chain's later levels, without the cost of an Error and its stack.
      this.makeWritable(abs, there.mode);
      this.verified.add(rel);
      return true;
    }
    try {
      if (there) throw Object.assign(new Error("exists"), { code: "EEXIST" });
      // Created private; the stored mode comes at the end, so a read-only directory can still be filled.
      fs.mkdirSync(abs, 0o700);
      existed = false;
      this.#made.add(rel);
    } catch (err) {
      if (code(err) !== "EEXIST") throw err;
      const st = there ?? fs.lstatSync(abs);
      if (st.isDirectory()) {
        this.makeWritable(abs, st.mode);
      } else {
        this.remove(rel, abs);
        fs.mkdirSync(abs, 0o700);
        existed = false;
        this.#made.add(rel);
      }
    }
    this.verified.add(rel);
    return existed;
  }

  /** Whether something may be at `rel` already: its directory was not made by this run. */
  #maybeThere(rel: string): boolean {
    const slash = rel.lastIndexOf("/");
    return !this.#made.has(slash < 0 ? "" : rel.slice(0, slash));
  }

  /** Creates the file `abs` (at `rel`, parents checked) for writing, replacing what was there; its fd. */
  createFile(rel: string, abs: string, mode: number): number {
    // What is there is removed first (see `#made`); O_EXCL still guards against what appears meanwhile.
    if (this.#maybeThere(rel) && fs.lstatSync(abs, { throwIfNoEntry: false })) this.remove(rel, abs);
    try {
      // O_EXCL: one call in the common case, never writes through an existing symlink or hard link.
      return fs.openSync(abs, CREATE, mode);
    } catch (err) {
      if (code(err) !== "EEXIST") throw err;
      this.remove(rel, abs);
      return fs.openSync(abs, CREATE, mode);
    }
  }

  /** Makes `rel` a symlink to `target`, replacing what was there; returns its absolute path. */
  symlink(rel: string, name: string, target: string): string {
    if (rel === "") throw new FrostError(`Cannot restore "${name}": the target root is not a symlink`);
    this.parents(rel, name);
    const abs = this.abs(rel);
    try {
      fs.symlinkSync(target, abs);
    } catch (err) {
      if (code(err) !== "EEXIST") throw err;
      this.remove(rel, abs);
      fs.symlinkSync(target, abs);
    }
    this.verified.delete(rel);
    return abs;
  }

  /** Makes `rel` a hard link to the stored path `linkname` (inside the target, not a directory). */
  hardlink(rel: string, name: string, linkname: string): void {
    if (rel === "") throw new FrostError(`Cannot restore "${name}": the target root is not a hard link`);
    let to: string;
    try {
      to = safeRel(linkname, name);
    } catch {
      throw new FrostError(
        `Refusing to restore "${name}": its link target "${linkname}" leaves the target`,
      );
    }
    if (to === "") throw new FrostError(`Cannot restore "${name}": it is a hard link to the target root`);
    this.parents(rel, name);
    if (!this.parentsSafe(to)) {
      throw new FrostError(
        `Refusing to restore "${name}": its link target "${linkname}" goes through a symlink or is missing`,
      );
    }
    const abs = this.abs(rel);
    const absTo = this.abs(to);
    const missing = () =>
      new FrostError(`Cannot restore "${name}": its link target "${linkname}" does not exist`);
    const st = fs.lstatSync(absTo, { throwIfNoEntry: false });
    if (!st) throw missing();
    if (st.isDirectory()) {
      throw new FrostError(`Cannot restore "${name}": its link target "${linkname}" is a directory`);
    }
    try {
      fs.linkSync(absTo, abs);
    } catch (err) {
      if (code(err) === "ENOENT") throw missing();
      if (code(err) !== "EEXIST") throw err;
      const have = fs.lstatSync(abs, { bigint: true });
      const want = fs.lstatSync(absTo, { bigint: true });
      if (have.ino === want.ino && have.dev === want.dev) return; // already that link
      this.remove(rel, abs);
      fs.linkSync(absTo, abs);
    }
  }

  /**
   * Makes `rel` a fifo or device (node has no mkfifo/mknod, so the coreutils commands make them),
   * replacing what was there. Returns its absolute path, or undefined when it was skipped with a warning
   * (devices need root; the command failed).
   */
  special(
    rel: string,
    name: string,
    type: SpecialType,
    mode: number,
    major: number,
    minor: number,
    warn: (name: string, message: string) => void,
  ): string | undefined {
    if (type !== "fifo" && this.#options.devices === false) {
      this.#options.onWarning?.({
        path: name,
        message: `${type} device skipped (--no-devices)`,
        notice: true,
      });
      return undefined;
    }
    if (rel === "") throw new FrostError(`Cannot restore "${name}": the target root is not a ${type}`);
    if (type !== "fifo" && !this.superuser) {
      warn(name, `skipped: restoring a ${type} device needs root`);
      return undefined;
    }
    this.parents(rel, name);
    const abs = this.abs(rel);
    if (fs.lstatSync(abs, { throwIfNoEntry: false })) this.remove(rel, abs);
    const m = (mode & 0o777).toString(8);
    // A command's arguments are text: a name that is not UTF-8 is made under a temporary name first.
    const made = hasEscape(abs) ? `${this.root}/.frost-special.${process.pid}` : abs;
    const args = type === "fifo"
      ? ["-m", m, "--", made]
      : ["-m", m, "--", made, type === "char" ? "c" : "b", String(major), String(minor)];
    try {
      execFileSync(type === "fifo" ? "mkfifo" : "mknod", args, { stdio: ["ignore", "ignore", "pipe"] });
      if (made !== abs) fs.renameSync(made, abs);
    } catch (err) {
      const stderr = (err as { stderr?: Uint8Array }).stderr;
      const why = stderr?.length ? new TextDecoder().decode(stderr).trim() : messageOf(err);
      warn(name, `skipped: cannot create the ${type}: ${why}`);
      return undefined;
    }
    return abs;
  }
}
