/**
 * The restore half of the tar engine: applies one GNU incremental archive (or a plain ustar/pax one) to a
 * target directory, like `tar --incremental --extract --overwrite`, and never writes outside the target.
 *
 * All file system calls are synchronous on purpose: an awaited promise per open/write/close costs as much
 * as the whole of `tar -x` for 20 000 small files. File data is written straight from the incoming chunks.
 * @module
 */
import fs from "node:fs";
import path from "node:path";
import { execFileSync } from "node:child_process";
import type { RestoreOptions, RestoreRun, RestoreStats } from "./engine.ts";
import { AbortedError, FrostError, messageOf } from "../errors.ts";
import {
  Dumpdir,
  parseDumpdir,
  type TarEntry,
  type TarHandler,
  TarReader,
  type TarTime,
} from "./_tar_read.ts";

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
      applier.abandon();
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
          throw new TypeError("tarRestore() accepts Uint8Array chunks only");
        }
        reader.push(chunk);
        applier.tick();
      } catch (err) {
        settle(err);
        throw err;
      }
    },
    close() {
      try {
        if (signal?.aborted) throw aborted();
        reader.finish();
        settle(undefined, applier.finish());
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

/** Directory attributes applied once the stream has ended. */
interface DirFix {
  name: string;
  depth: number;
  mode: number;
  uid: number;
  gid: number;
  mtime: TarTime;
  atime?: TarTime;
}

const CREATE = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL;

/** Turns archive members into files under `root`. */
class Applier implements TarHandler {
  #root: string;
  #options: RestoreOptions;
  #owners: boolean;
  #superuser: boolean;
  #umask: number;
  /**
   * Relative paths (under root) already checked in this run to be real directories, not symlinks.
   * Entries leave when the archive removes a directory or puts a symlink in its place.
   */
  #verified = new Set<string>([""]);
  #fixups = new Map<string, DirFix>();
  #ids = new IdMap();
  #files = 0;
  #bytes = 0;
  #deleted = 0;
  #lastProgress = performance.now();
  /** The regular file being written. */
  #fd = -1;
  #file: TarEntry | null = null;
  #fileAbs = "";

  constructor(root: string, options: RestoreOptions) {
    this.#root = root;
    this.#options = options;
    this.#superuser = process.getuid?.() === 0;
    this.#owners = options.owners ?? this.#superuser;
    this.#umask = process.umask();
  }

  entry(e: TarEntry): boolean {
    try {
      const rel = safeRel(e.name, e.name);
      switch (e.type) {
        case "file":
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
      this.#files++;
      return false;
    } catch (err) {
      throw wrap(err, e.name);
    }
  }

  data(bytes: Uint8Array, start: number, end: number): void {
    try {
      while (start < end) {
        const n = fs.writeSync(this.#fd, bytes, start, end - start);
        start += n;
        this.#bytes += n;
      }
    } catch (err) {
      throw wrap(err, this.#file?.name ?? "");
    }
  }

  end(): void {
    const e = this.#file!;
    try {
      const fd = this.#fd;
      // chown before chmod: chown clears setuid/setgid.
      if (this.#owners) fs.fchownSync(fd, this.#ids.uid(e.uname, e.uid), this.#ids.gid(e.gname, e.gid));
      if ((e.mode & 0o7000) !== 0 || (e.mode & this.#umask & 0o777) !== 0) fs.fchmodSync(fd, e.mode);
      // Deno's futimes fails (EINVAL) on negative times with a fraction; its path-based utimes does not.
      const negative = e.mtime.sec < 0 || (e.atime?.sec ?? 0) < 0;
      if (!negative) fs.futimesSync(fd, fsTime(e.atime), fsTime(e.mtime));
      this.#fd = -1;
      this.#file = null;
      fs.closeSync(fd);
      if (negative) fs.utimesSync(this.#fileAbs, fsTime(e.atime), fsTime(e.mtime));
      this.#files++;
    } catch (err) {
      throw wrap(err, e.name);
    }
  }

  warn(name: string, message: string): void {
    this.#options.onWarning?.({ path: name, message });
  }

  /** Reports progress at most every 100 ms. */
  tick(): void {
    const now = performance.now();
    if (now - this.#lastProgress >= 100 && this.#options.onProgress) {
      this.#lastProgress = now;
      this.#options.onProgress({ files: this.#files, bytes: this.#bytes });
    }
  }

  /** Applies directory owners, modes and times, deepest first, and returns the totals. */
  finish(): RestoreStats {
    const dirs = [...this.#fixups.entries()].sort((a, b) => b[1].depth - a[1].depth);
    for (const [rel, fix] of dirs) {
      try {
        // A later member may have replaced the directory or one of its parents by a symlink.
        if (rel !== "" && !this.#parentsSafe(rel)) continue;
        const abs = this.#abs(rel);
        if (!fs.lstatSync(abs, { throwIfNoEntry: false })?.isDirectory()) continue;
        if (this.#owners) fs.lchownSync(abs, fix.uid, fix.gid);
        fs.chmodSync(abs, fix.mode);
        fs.utimesSync(abs, fsTime(fix.atime), fsTime(fix.mtime));
      } catch (err) {
        throw wrap(err, fix.name);
      }
    }
    this.#options.onProgress?.({ files: this.#files, bytes: this.#bytes });
    return { files: this.#files, bytes: this.#bytes, deleted: this.#deleted };
  }

  /** Releases the open file, if any, after a failure. Directory attributes stay unapplied. */
  abandon(): void {
    if (this.#fd >= 0) {
      try {
        fs.closeSync(this.#fd);
      } catch {
        // Already failing: the first error is the one to report.
      }
      this.#fd = -1;
    }
  }

  #abs(rel: string): string {
    return rel === "" ? this.#root : this.#root + "/" + rel;
  }

  #openFile(e: TarEntry, rel: string): boolean {
    if (rel === "") throw new FrostError(`Cannot restore "${e.name}": the target root is not a file`);
    this.#parents(rel, e.name);
    const abs = this.#abs(rel);
    const mode = e.mode & 0o777;
    let fd: number;
    try {
      // O_EXCL: one call in the common case, never writes through an existing symlink or hard link.
      fd = fs.openSync(abs, CREATE, mode);
    } catch (err) {
      if (code(err) !== "EEXIST") throw err;
      this.#remove(rel, abs);
      fd = fs.openSync(abs, CREATE, mode);
    }
    this.#fd = fd;
    this.#file = e;
    this.#fileAbs = abs;
    return true;
  }

  #dir(e: TarEntry, rel: string): void {
    const abs = this.#abs(rel);
    let existed = true;
    if (rel === "") {
      this.#makeWritable(abs);
    } else {
      this.#parents(rel, e.name);
      try {
        // Created private; the archived mode comes at the end, so a read-only directory can still be filled.
        fs.mkdirSync(abs, 0o700);
        existed = false;
      } catch (err) {
        if (code(err) !== "EEXIST") throw err;
        const st = fs.lstatSync(abs);
        if (st.isDirectory()) {
          this.#makeWritable(abs, st.mode);
        } else {
          this.#remove(rel, abs);
          fs.mkdirSync(abs, 0o700);
          existed = false;
        }
      }
      this.#verified.add(rel);
    }
    if (existed && e.dumpdir) this.#purge(rel, abs, e);
    this.#fixups.set(rel, {
      name: e.name,
      depth: rel === "" ? -1 : count(rel, "/"),
      mode: e.mode,
      uid: this.#owners ? this.#ids.uid(e.uname, e.uid) : e.uid,
      gid: this.#owners ? this.#ids.gid(e.gname, e.gid) : e.gid,
      mtime: e.mtime,
      atime: e.atime,
    });
  }

  /** As non-root, an existing directory must let us create and remove entries until the end. */
  #makeWritable(abs: string, mode?: number): void {
    if (this.#superuser) return;
    const m = mode ?? fs.lstatSync(abs).mode;
    if ((m & 0o700) !== 0o700) fs.chmodSync(abs, (m & 0o7777) | 0o700);
  }

  #symlink(e: TarEntry, rel: string): void {
    if (rel === "") throw new FrostError(`Cannot restore "${e.name}": the target root is not a symlink`);
    this.#parents(rel, e.name);
    const abs = this.#abs(rel);
    try {
      fs.symlinkSync(e.linkname, abs);
    } catch (err) {
      if (code(err) !== "EEXIST") throw err;
      this.#remove(rel, abs);
      fs.symlinkSync(e.linkname, abs);
    }
    this.#verified.delete(rel);
    if (this.#owners) fs.lchownSync(abs, this.#ids.uid(e.uname, e.uid), this.#ids.gid(e.gname, e.gid));
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
    if (rel === "") throw new FrostError(`Cannot restore "${e.name}": the target root is not a hard link`);
    let to: string;
    try {
      to = safeRel(e.linkname, e.name);
    } catch {
      throw new FrostError(
        `Refusing to restore "${e.name}": its link target "${e.linkname}" leaves the target`,
      );
    }
    if (to === "") throw new FrostError(`Cannot restore "${e.name}": it is a hard link to the target root`);
    this.#parents(rel, e.name);
    if (!this.#parentsSafe(to)) {
      throw new FrostError(
        `Refusing to restore "${e.name}": its link target "${e.linkname}" goes through a symlink or is missing`,
      );
    }
    const abs = this.#abs(rel);
    const absTo = this.#abs(to);
    try {
      fs.linkSync(absTo, abs);
    } catch (err) {
      if (code(err) === "ENOENT") {
        throw new FrostError(`Cannot restore "${e.name}": its link target "${e.linkname}" does not exist`);
      }
      if (code(err) !== "EEXIST") throw err;
      const have = fs.lstatSync(abs, { bigint: true });
      const want = fs.lstatSync(absTo, { bigint: true });
      if (have.ino === want.ino && have.dev === want.dev) return; // already that link
      this.#remove(rel, abs);
      fs.linkSync(absTo, abs);
    }
  }

  /** Fifos and devices: node has no mkfifo/mknod, so the coreutils commands make them. */
  #special(e: TarEntry, rel: string): boolean {
    if (rel === "") throw new FrostError(`Cannot restore "${e.name}": the target root is not a ${e.type}`);
    if (e.type !== "fifo" && !this.#superuser) {
      this.warn(e.name, `skipped: restoring a ${e.type} device needs root`);
      return false;
    }
    this.#parents(rel, e.name);
    const abs = this.#abs(rel);
    if (fs.lstatSync(abs, { throwIfNoEntry: false })) this.#remove(rel, abs);
    const mode = (e.mode & 0o777).toString(8);
    const args = e.type === "fifo"
      ? ["-m", mode, "--", abs]
      : ["-m", mode, "--", abs, e.type === "char" ? "c" : "b", String(e.devmajor), String(e.devminor)];
    try {
      execFileSync(e.type === "fifo" ? "mkfifo" : "mknod", args, { stdio: ["ignore", "ignore", "pipe"] });
    } catch (err) {
      const stderr = (err as { stderr?: Uint8Array }).stderr;
      const why = stderr?.length ? new TextDecoder().decode(stderr).trim() : messageOf(err);
      this.warn(e.name, `skipped: cannot create the ${e.type}: ${why}`);
      return false;
    }
    if (this.#owners) fs.lchownSync(abs, this.#ids.uid(e.uname, e.uid), this.#ids.gid(e.gname, e.gid));
    if (e.mode & 0o7000) fs.chmodSync(abs, e.mode);
    fs.utimesSync(abs, fsTime(e.atime), fsTime(e.mtime));
    return true;
  }

  /**
   * Makes sure every parent of `rel` is a real directory inside the root, creating missing ones.
   * Refuses a path through a symlink: the archive could have planted one pointing anywhere.
   */
  #parents(rel: string, name: string): void {
    const slash = rel.lastIndexOf("/");
    if (slash < 0 || this.#verified.has(rel.slice(0, slash))) return;
    let i = rel.indexOf("/");
    while (i > 0 && i <= slash) {
      const dir = rel.slice(0, i);
      if (!this.#verified.has(dir)) {
        const abs = this.#abs(dir);
        const st = fs.lstatSync(abs, { throwIfNoEntry: false });
        if (!st) {
          fs.mkdirSync(abs, 0o777);
        } else if (st.isSymbolicLink()) {
          throw new FrostError(
            `Refusing to restore "${name}": path leaves the target (through symlink "${dir}")`,
          );
        } else if (!st.isDirectory()) {
          throw new FrostError(`Cannot restore "${name}": "${dir}" is not a directory`);
        }
        this.#verified.add(dir);
      }
      i = rel.indexOf("/", i + 1);
    }
  }

  /** Like #parents but only checks: true when every parent of `rel` exists and is a real directory. */
  #parentsSafe(rel: string): boolean {
    let i = rel.indexOf("/");
    while (i > 0) {
      const dir = rel.slice(0, i);
      if (!this.#verified.has(dir)) {
        if (!fs.lstatSync(this.#abs(dir), { throwIfNoEntry: false })?.isDirectory()) return false;
        this.#verified.add(dir);
      }
      i = rel.indexOf("/", i + 1);
    }
    return true;
  }

  /** Removes a file or a directory tree without following symlinks; returns the number of entries removed. */
  #remove(rel: string, abs: string): number {
    const st = fs.lstatSync(abs, { throwIfNoEntry: false });
    if (!st) return 0;
    if (!st.isDirectory()) {
      fs.unlinkSync(abs);
      return 1;
    }
    this.#makeWritable(abs, st.mode);
    let n = 0;
    for (const d of fs.readdirSync(abs, { withFileTypes: true })) {
      const childAbs = abs + "/" + d.name;
      if (d.isDirectory()) {
        n += this.#remove(rel + "/" + d.name, childAbs);
      } else {
        fs.unlinkSync(childAbs);
        n++;
      }
    }
    fs.rmdirSync(abs);
    this.#verified.delete(rel);
    this.#fixups.delete(rel);
    return n + 1;
  }

  /**
   * Replays a GNU dumpdir on an existing directory: first the renames it records (R/T pairs, X for a
   * temporary name), then removes every child that the source no longer had, as GNU tar does.
   */
  #purge(rel: string, abs: string, e: TarEntry): void {
    const records = parseDumpdir(e.dumpdir!);
    const keep = new Map<string, number>();
    let renames = false;
    for (const r of records) {
      if (r.code === Dumpdir.R || r.code === Dumpdir.X) renames = true;
      else if (r.code !== Dumpdir.T) keep.set(r.name, r.code);
    }
    if (renames) this.#renames(records, e.name);
    for (const d of fs.readdirSync(abs, { withFileTypes: true })) {
      const c = keep.get(d.name);
      const isDir = d.isDirectory();
      if (c === undefined || (c === Dumpdir.D && !isDir) || (c === Dumpdir.Y && isDir)) {
        this.#deleted += this.#remove(rel === "" ? d.name : rel + "/" + d.name, abs + "/" + d.name);
      }
    }
  }

  #renames(records: { code: number; name: string }[], name: string): void {
    const malformed = () =>
      new FrostError(`Cannot restore "${name}": malformed rename records in its dumpdir`);
    let temp: string | undefined;
    for (let k = 0; k < records.length; k++) {
      const r = records[k]!;
      if (r.code === Dumpdir.X) {
        const dir = safeRel(r.name, name);
        if (!this.#parentsSafe(dir + "/x")) throw malformed();
        temp = path.relative(this.#root, fs.mkdtempSync(this.#abs(dir) + "/tar."));
      } else if (r.code === Dumpdir.R) {
        const t = records[++k];
        if (!t || t.code !== Dumpdir.T) throw malformed();
        const from = r.name === "" ? temp : safeRel(r.name, name);
        const to = t.name === "" ? temp : safeRel(t.name, name);
        if (!from || !to) throw malformed();
        this.#rename(from, to, name);
      }
    }
    // Directories moved: what was verified under their old names no longer says anything.
    this.#verified.clear();
    this.#verified.add("");
  }

  #rename(from: string, to: string, name: string): void {
    if (!this.#parentsSafe(from)) {
      throw new FrostError(`Refusing to restore "${name}": rename source "${from}" goes through a symlink`);
    }
    this.#parents(to, name);
    const absFrom = this.#abs(from);
    const absTo = this.#abs(to);
    if (!fs.lstatSync(absFrom, { throwIfNoEntry: false })) {
      // Already renamed (the level was applied before) or never restored: nothing to move.
      if (!fs.lstatSync(absTo, { throwIfNoEntry: false })?.isDirectory()) {
        this.warn(name, `cannot rename "${from}" to "${to}": "${from}" does not exist`);
      }
      return;
    }
    fs.renameSync(absFrom, absTo);
  }
}

/** Maps owner names to ids through this machine's /etc/passwd and /etc/group, like GNU tar. */
class IdMap {
  #users: Map<string, number> | undefined;
  #groups: Map<string, number> | undefined;

  uid(uname: string, uid: number): number {
    if (uname === "") return uid;
    this.#users ??= readIds("/etc/passwd");
    return this.#users.get(uname) ?? uid;
  }

  gid(gname: string, gid: number): number {
    if (gname === "") return gid;
    this.#groups ??= readIds("/etc/group");
    return this.#groups.get(gname) ?? gid;
  }
}

function readIds(file: string): Map<string, number> {
  const ids = new Map<string, number>();
  let text = "";
  try {
    text = fs.readFileSync(file, "utf8");
  } catch {
    return ids; // no such database: numeric ids it is
  }
  for (const line of text.split("\n")) {
    const f = line.split(":");
    const id = Number(f[2]);
    if (f.length > 2 && f[0] && !ids.has(f[0]) && Number.isInteger(id)) ids.set(f[0], id);
  }
  return ids;
}

/**
 * Normalises an archive name to a path relative to the target ("" is the target itself): drops "./"
 * and empty components, refuses absolute names and "..".
 */
function safeRel(name: string, member: string): string {
  if (name.startsWith("/")) {
    throw new FrostError(`Refusing to restore "${member}": path leaves the target (absolute name)`);
  }
  if (name.includes("\0")) throw new FrostError(`Refusing to restore "${member}": name contains a NUL byte`);
  // Fast path for the common "./a/b" shape.
  let s = name.startsWith("./") ? name.slice(2) : name;
  if (s.endsWith("/")) s = s.replace(/\/+$/, "");
  if (!s.includes("//") && !/(^|\/)\.\.?(\/|$)/.test(s)) return s;
  const out: string[] = [];
  for (const part of s.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      throw new FrostError(`Refusing to restore "${member}": path leaves the target (".." component)`);
    }
    out.push(part);
  }
  return out.join("/");
}

/**
 * The value to hand to node's utimes for an archived time. Node's API takes seconds as a double, which
 * cannot hold every nanosecond; the middle of the microsecond survives the runtimes' conversions intact:
 * Bun keeps whole microseconds, Deno's node:fs truncates to milliseconds (measured; see tests/_tree.ts).
 * Negative times go as a Date, because node replaces negative numbers by the current time.
 */
function fsTime(t: TarTime | undefined): number | Date {
  if (!t) return Date.now() / 1000;
  if (t.sec < 0) return new Date(t.sec * 1000 + Math.floor(t.nsec / 1e6));
  if (t.nsec === 0) return t.sec;
  return t.sec + (Math.floor(t.nsec / 1000) * 1000 + 500) / 1e9;
}

function count(s: string, ch: string): number {
  let n = 0;
  for (let i = s.indexOf(ch); i >= 0; i = s.indexOf(ch, i + 1)) n++;
  return n;
}

function code(err: unknown): string | undefined {
  return (err as { code?: string } | null)?.code;
}

function wrap(err: unknown, name: string): Error {
  if (err instanceof FrostError || err instanceof AbortedError) return err;
  return new FrostError(`Cannot restore "${name}": ${messageOf(err)}`, { cause: err });
}
