/**
 * The backup side shared by the tar and rsync engines: checking the source, listing and lstat()ing the
 * tree with the same warnings, and the run's bookkeeping (stats, warnings, progress, abort, `done`).
 * @module
 */
import fs from "./_fs_bytes.ts";
import { BYTE_PATHS } from "./_fs_bytes.ts";
import type { BackupOptions, BackupStats } from "./engine.ts";
import { AbortedError, FrostError } from "../base/errors.ts";
import { errnoText } from "./_fs_common.ts";

/** Longest stretch of work without giving the event loop a turn (abort, progress, state consumer). */
export const SLICE_MS = 50;
/** Shortest time between progress reports. */
export const PROGRESS_MS = 100;
/** Flags to open a file to back up with: never block on a fifo swapped in for it. */
export const OPEN_FLAGS = fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0);

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;
const S_IFIFO = 0o010000;
const S_IFCHR = 0o020000;
const S_IFBLK = 0o060000;
const S_IFSOCK = 0o140000;

/** What an entry is: `f` regular file, `d` directory, `l` symlink, `p` fifo, `c`/`b` char/block device. */
export type FileKind = "f" | "d" | "l" | "p" | "c" | "b";

function kindOf(mode: number): FileKind | "s" | undefined {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return "f";
    case S_IFDIR:
      return "d";
    case S_IFLNK:
      return "l";
    case S_IFIFO:
      return "p";
    case S_IFCHR:
      return "c";
    case S_IFBLK:
      return "b";
    case S_IFSOCK:
      return "s";
    default:
      return undefined;
  }
}

/**
 * The kind of the entry at `abs` from its lstat mode; undefined (with a warning) for what a backup
 * leaves out: sockets, unknown types, and devices unless running as root (`isRoot`).
 */
export function entryKind(
  mode: number,
  abs: string,
  isRoot: boolean,
  run: BackupControl,
): FileKind | undefined {
  const kind = kindOf(mode);
  if (kind === "s") {
    run.warn(abs, "socket ignored");
    return undefined;
  }
  if (kind === undefined) {
    run.warn(abs, "unknown file type; left out");
    return undefined;
  }
  if ((kind === "c" || kind === "b") && !isRoot) {
    run.warn(abs, "device left out: only root can back up and restore devices");
    return undefined;
  }
  return kind;
}

/**
 * lstat()s a backup source: a directory (readable and searchable) or a regular file (readable). Throws a
 * FrostError when it is missing, unreadable or of another type.
 */
export function statSource(source: string): fs.BigIntStats {
  let st: fs.BigIntStats;
  try {
    st = fs.statSync(source, { bigint: true });
    if (st.isDirectory()) fs.accessSync(source, fs.constants.R_OK | fs.constants.X_OK);
    else if (st.isFile()) fs.accessSync(source, fs.constants.R_OK);
  } catch (err) {
    throw new FrostError(`Cannot back up "${source}": ${errnoText(err)}`, { cause: err });
  }
  if (!st.isDirectory() && !st.isFile()) {
    throw new FrostError(`Cannot back up "${source}": not a directory or a regular file`);
  }
  return st;
}

/**
 * The names in directory `abs`; undefined (with a warning) when it cannot be listed. That the source
 * itself (`isRoot`) cannot be listed is an error.
 */
export function listDir(
  abs: string,
  isRoot: boolean,
  source: string,
  run: BackupControl,
): string[] | undefined {
  try {
    return fs.readdirSync(abs);
  } catch (err) {
    if (isRoot) {
      throw new FrostError(`Cannot back up "${source}": ${errnoText(err)}`, { cause: err });
    }
    run.warn(abs, `cannot list directory: ${errnoText(err)}; left out`);
    return undefined;
  }
}

/** lstat()s the child `name` of a directory at `abs`; undefined (with a warning) when it cannot be. */
export function lstatChild(abs: string, name: string, run: BackupControl): fs.BigIntStats | undefined {
  let st: fs.BigIntStats | undefined;
  try {
    st = fs.lstatSync(abs, { bigint: true, throwIfNoEntry: false });
  } catch (err) {
    run.warn(abs, `cannot stat: ${errnoText(err)}; left out`);
    return undefined;
  }
  if (!st) lstatMissing(abs, name, run);
  return st;
}

/**
 * {@linkcode lstatChild} with numbers instead of BigInts: cheaper (no BigInt per field), for a first look
 * that only needs the times to the microsecond (see "Change detection" in tar_backup.ts).
 */
export function lstatChildFast(abs: string, name: string, run: BackupControl): fs.Stats | undefined {
  let st: fs.Stats | undefined;
  try {
    st = fs.lstatSync(abs, NO_THROW);
  } catch (err) {
    run.warn(abs, `cannot stat: ${errnoText(err)}; left out`);
    return undefined;
  }
  if (!st) lstatMissing(abs, name, run);
  return st;
}

const NO_THROW = { throwIfNoEntry: false } as const;

function lstatMissing(abs: string, name: string, run: BackupControl): void {
  // Under Deno, names that are not UTF-8 reach us with U+FFFD in them: Deno cannot give their bytes.
  run.warn(
    abs,
    name.includes("\uFFFD") && !BYTE_PATHS
      ? "name is not valid UTF-8 and this runtime cannot read it (the frost binary can); left out"
      : "vanished before it was read; left out",
  );
}

/** Closes a file descriptor being read (if any: >= 0), ignoring errors; returns -1. */
export function closeRead(fd: number): -1 {
  if (fd >= 0) {
    try {
      fs.closeSync(fd);
    } catch {
      // Nothing left to lose: the data is read.
    }
  }
  return -1;
}

/** A backup run's bookkeeping: its stats, warnings, progress reports, abort signal and `done` promise. */
export class BackupControl {
  readonly stats: BackupStats = { files: 0, bytes: 0, scanned: 0, warnings: 0 };
  readonly done: Promise<BackupStats>;
  /** When progress was last reported (performance.now()). */
  lastProgress = 0;
  #source: string;
  #options: BackupOptions;
  #resolve!: (stats: BackupStats) => void;
  #reject!: (err: unknown) => void;
  #onAbort: (() => void) | undefined;

  constructor(source: string, options: BackupOptions) {
    this.#source = source;
    this.#options = options;
    this.done = new Promise<BackupStats>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    // Callers that only read the streams still see the failure there; this keeps it from being unhandled.
    this.done.catch(() => {});
  }

  /** Calls `fail` with an AbortedError once `options.signal` aborts (soon, when it has already). */
  listen(fail: (err: AbortedError) => void): void {
    const signal = this.#options.signal;
    if (signal) {
      this.#onAbort = () => fail(this.aborted());
      if (signal.aborted) queueMicrotask(this.#onAbort);
      else signal.addEventListener("abort", this.#onAbort, { once: true });
    }
  }

  /** Stops listening to the abort signal. */
  detach(): void {
    if (this.#onAbort) this.#options.signal?.removeEventListener("abort", this.#onAbort);
  }

  aborted(): AbortedError {
    return new AbortedError(`Backup of "${this.#source}" aborted`, { cause: this.#options.signal?.reason });
  }

  warn(abs: string, message: string): void {
    this.stats.warnings++;
    this.#options.onWarning?.({ path: abs, message });
  }

  progress(now: number): void {
    this.lastProgress = now;
    this.#options.onProgress?.({ files: this.stats.files, bytes: this.stats.bytes });
  }

  /** Ends a successful run: stops listening, reports the final progress and resolves `done`. */
  succeed(): void {
    this.detach();
    this.progress(performance.now());
    this.#resolve({ ...this.stats });
  }

  /** Ends a failed run: stops listening and rejects `done`. */
  fail(err: unknown): void {
    this.detach();
    this.#reject(err);
  }
}
