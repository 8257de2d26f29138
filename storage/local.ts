/**
 * A storage in a folder of the local filesystem: each key is a file under the root, `/` separating folders.
 *
 * Writes are all-or-nothing: temp file in the target folder → fsync → rename over the key → fsync the folder.
 * Files are created with mode 0600 and folders with 0700, since backups hold other people's data.
 * @module
 */
import fs from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import crypto from "node:crypto";
import { pathToFileURL } from "node:url";
import { messageOf } from "../base/errors.ts";
import { checkKey, checkPrefix, checkRange } from "./_key.ts";
import {
  type CallOptions,
  type CleansLeftovers,
  NotFoundError,
  type ObjectInfo,
  type PutOptions,
  type PutStream,
  type Range,
  type ReadsInPlace,
  type Storage,
  StorageError,
  type StreamingPut,
} from "./storage.ts";

/** Name prefix of the temp files `put()` writes. `list()` skips such names and keys may not use them. */
export const TEMP_PREFIX = ".frost-tmp-";

const CHUNK_SIZE = 1 << 20;
const FILE_MODE = 0o600;
const DIR_MODE = 0o700;
/** How many files `list()` stats at once. */
const STAT_BATCH = 64;

/** Error codes after which the same call may succeed. */
const RETRIABLE_CODES = new Set(["EIO", "EAGAIN", "EBUSY", "EMFILE", "ENFILE", "EINTR", "ETIMEDOUT"]);

/** Readable texts for error codes (the runtimes' own messages differ and end with the path). */
const DESCRIPTIONS: Record<string, string> = {
  ENOENT: "no such file or folder",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  EROFS: "read-only file system",
  ENOSPC: "no space left on device",
  EDQUOT: "disk quota exceeded",
  EFBIG: "file too large",
  EISDIR: "is a folder",
  ENOTDIR: "a part of the path is not a folder",
  ENOTEMPTY: "folder not empty",
  EEXIST: "already exists",
  ENAMETOOLONG: "name too long",
  ELOOP: "too many levels of symbolic links",
  EIO: "input/output error",
  EAGAIN: "resource temporarily unavailable",
  EBUSY: "device or resource busy",
  EMFILE: "too many open files",
  ENFILE: "too many open files in the system",
  EINTR: "interrupted system call",
  ETIMEDOUT: "timed out",
};

/** A storage in a local folder. Use `LocalStorage.open()` to check the folder first. */
export class LocalStorage implements Storage, StreamingPut, ReadsInPlace, CleansLeftovers {
  /** The absolute, normalized root folder. */
  readonly root: string;
  /** `file://` URL of the root. */
  readonly url: string;

  /** Uses the folder `root` (an absolute path) as it is, without checking it. */
  constructor(root: string) {
    if (typeof root !== "string" || !path.isAbsolute(root)) {
      throw new TypeError(`Cannot use storage "${root}": the path is not absolute`);
    }
    this.root = path.resolve(root);
    this.url = pathToFileURL(this.root).href;
  }

  /**
   * Checks the folder `root` (absolute) and returns a storage in it. With `create: true` a missing root is
   * created (its parent must exist, so that an unmounted disk is noticed) and the root must be writable;
   * with `create: false` the root must exist and be readable. Throws `StorageError` otherwise.
   */
  static async open(root: string, options: { create: boolean }): Promise<LocalStorage> {
    if (typeof root !== "string" || !path.isAbsolute(root)) {
      throw new TypeError(`Cannot use storage "${root}": the path is not absolute`);
    }
    root = path.resolve(root);
    const failure = (what: string, err: unknown) =>
      new StorageError(`Cannot use storage "${root}": ${what}${describe(err)}`, {
        cause: err,
        retriable: isRetriable(err),
      });
    let stats = await statIfExists(root).catch((err) => {
      throw failure("", err);
    });
    if (stats === undefined) {
      if (!options.create) throw new StorageError(`Storage "${root}" does not exist`);
      const parent = path.dirname(root);
      const parentStats = await statIfExists(parent).catch((err) => {
        throw failure(`cannot check parent folder "${parent}": `, err);
      });
      if (parentStats === undefined) {
        throw new StorageError(`Cannot use storage "${root}": parent folder "${parent}" does not exist`);
      }
      if (!parentStats.isDirectory()) {
        throw new StorageError(`Cannot use storage "${root}": parent "${parent}" is not a folder`);
      }
      try {
        await fsp.mkdir(root, { mode: DIR_MODE });
      } catch (err) {
        if (codeOf(err) !== "EEXIST") {
          throw new StorageError(`Cannot create storage folder "${root}": ${describe(err)}`, {
            cause: err,
            retriable: isRetriable(err),
          });
        }
      }
      stats = await fsp.stat(root).catch((err) => {
        throw failure("", err);
      });
    }
    if (!stats.isDirectory()) throw new StorageError(`Cannot use storage "${root}": it is not a folder`);
    const { R_OK, W_OK, X_OK } = fs.constants;
    try {
      fs.accessSync(root, options.create ? W_OK | X_OK : R_OK | X_OK);
    } catch (err) {
      throw failure(`the folder is not ${options.create ? "writable" : "readable"}: `, err);
    }
    return new LocalStorage(root);
  }

  /** Writes `data` to a temp file beside the key, fsyncs it, renames it over the key and fsyncs the folder. */
  async put(key: string, data: Uint8Array, options: PutOptions = {}): Promise<void> {
    const put = await this.#openPut(key, options, options.ephemeral === true);
    try {
      await put.write(data);
      await put.commit();
    } finally {
      await put.abort();
    }
  }

  /**
   * The same steps as `put`, with the bytes written to the temp file as they come: temp file → writes →
   * fsync → rename over the key → fsync the folder. Until the rename the object is a temp file that
   * `list()` skips; a failure or `abort()` removes it (and the folders this put created, when empty).
   */
  openPut(key: string, options: CallOptions = {}): Promise<PutStream> {
    return this.#openPut(key, options, false);
  }

  /** `openPut`; `ephemeral` (see PutOptions): the folders are not fsynced after the rename. */
  async #openPut(key: string, options: CallOptions, ephemeral: boolean): Promise<PutStream> {
    const file = this.#file(key);
    const { signal } = options;
    signal?.throwIfAborted();
    const dir = path.dirname(file);
    const temp = path.join(dir, TEMP_PREFIX + crypto.randomBytes(8).toString("hex"));
    const action = `Cannot write "${key}" to ${this.url}`;
    let handle: fsp.FileHandle | undefined;
    let parents: string[];
    let madeAt: number;
    try {
      ({ handle, parents, madeAt } = await this.#openTemp(dir, temp, action));
    } catch (err) {
      await this.#removeEmptyFolders(dir);
      throw this.#error(action, err, signal);
    }
    /** "open": writing; "failed"/"aborted": temp file gone; "renamed": the object is visible. */
    let state: "open" | "failed" | "aborted" | "renamed" = "open";
    let busy: Promise<unknown> = Promise.resolve();
    const cleanUp = async () => {
      const h = handle;
      handle = undefined;
      await h?.close().catch(() => {});
      await fsp.rm(temp, { force: true }).catch(() => {});
      await this.#removeEmptyFolders(dir); // the ones this put created, unless another object is there
    };
    const fail = async (err: unknown): Promise<never> => {
      if (state === "open") {
        state = "failed";
        await cleanUp();
      }
      throw this.#error(action, err, signal);
    };
    const check = () => {
      if (state !== "open") {
        throw new StorageError(`${action}: the write was ${state === "renamed" ? "committed" : state}`);
      }
    };
    return {
      write: async (chunk) => {
        check();
        try {
          signal?.throwIfAborted();
          for (let done = 0; done < chunk.byteLength;) {
            done += (await handle!.write(chunk, done, chunk.byteLength - done)).bytesWritten;
          }
        } catch (err) {
          return await fail(err);
        }
      },
      commit: async () => {
        check();
        try {
          await handle!.sync();
          const closing = handle!;
          handle = undefined;
          await closing.close();
          signal?.throwIfAborted();
          await fsp.rename(temp, file);
          state = "renamed";
        } catch (err) {
          return await fail(err);
        }
        const renamedAt = ++folderChanges;
        if (ephemeral) return;
        try {
          // The object is now visible; fsync the folders whose entries changed so it survives a crash.
          await syncFolderSince(dir, renamedAt);
          for (const changed of parents) await syncFolderSince(changed, madeAt);
        } catch (err) {
          throw this.#error(action, err, signal);
        }
      },
      abort: () => {
        if (state === "open") {
          state = "aborted";
          busy = cleanUp();
        }
        return busy.then(() => {});
      },
    };
  }

  /**
   * Opens the file of `key` now (so a missing key rejects here, and a later overwrite or delete does not
   * change what is read) and streams it in 1 MiB chunks. Cancel the stream when not reading it to the end.
   */
  async get(key: string, options: CallOptions & { range?: Range } = {}): Promise<ReadableStream<Uint8Array>> {
    const file = this.#file(key);
    const { signal, range } = options;
    checkRange(key, range);
    signal?.throwIfAborted();
    const action = `Cannot read "${key}" from ${this.url}`;
    let handle: fsp.FileHandle | undefined;
    try {
      handle = await fsp.open(file, "r");
      const stats = await handle.stat();
      if (!stats.isFile()) throw new NotFoundError(`${action}: not found (it is a folder)`);
      const start = range?.offset ?? 0;
      if (range?.length === 0 || start >= stats.size) {
        await handle.close();
        return new ReadableStream({ start: (controller) => controller.close() });
      }
      const end = range?.length === undefined ? stats.size : Math.min(stats.size, start + range.length);
      const fh = handle;
      handle = undefined; // the stream closes it
      // Read by hand rather than with createReadStream({ signal }): under Deno an abort during concurrent
      // reads made that stream throw an uncaught AbortError that ended the process.
      let pos = start;
      let closed = false;
      const close = async () => {
        if (closed) return;
        closed = true;
        await fh.close().catch(() => {});
      };
      return new ReadableStream<Uint8Array>({
        pull: async (controller) => {
          try {
            signal?.throwIfAborted();
            const want = Math.min(CHUNK_SIZE, end - pos);
            const chunk = new Uint8Array(want);
            const { bytesRead } = want > 0 ? await fh.read(chunk, 0, want, pos) : { bytesRead: 0 };
            signal?.throwIfAborted();
            if (bytesRead > 0) {
              pos += bytesRead;
              controller.enqueue(bytesRead === want ? chunk : chunk.subarray(0, bytesRead));
            }
            // The end of the range, or of a file that shrank since it was opened.
            if (bytesRead === 0 || pos >= end) {
              await close();
              controller.close();
            }
          } catch (err) {
            await close();
            throw this.#error(action, err, signal);
          }
        },
        cancel: close,
      }, { highWaterMark: 0 });
    } catch (err) {
      await handle?.close().catch(() => {});
      throw this.#error(action, err, signal, true);
    }
  }

  /** Reads the file of `key` into `buffer` (see `ReadsInPlace`), with no allocation per read. */
  async getInto(key: string, buffer: Uint8Array, options: CallOptions = {}): Promise<number> {
    const file = this.#file(key);
    const { signal } = options;
    signal?.throwIfAborted();
    const action = `Cannot read "${key}" from ${this.url}`;
    let handle: fsp.FileHandle | undefined;
    try {
      handle = await fsp.open(file, "r");
      let size = 0;
      while (size < buffer.byteLength) {
        signal?.throwIfAborted();
        const { bytesRead } = await handle.read(buffer, size, buffer.byteLength - size, size);
        if (bytesRead === 0) break;
        size += bytesRead;
      }
      return size;
    } catch (err) {
      throw this.#error(action, err, signal, true);
    } finally {
      await handle?.close().catch(() => {});
    }
  }

  /** Reports the size and modification time of `key`. */
  async stat(key: string, options: CallOptions = {}): Promise<ObjectInfo> {
    const file = this.#file(key);
    const { signal } = options;
    signal?.throwIfAborted();
    const action = `Cannot stat "${key}" in ${this.url}`;
    try {
      const stats = await fsp.stat(file);
      if (!stats.isFile()) throw new NotFoundError(`${action}: not found (it is a folder)`);
      return { key, size: stats.size, modified: stats.mtime };
    } catch (err) {
      throw this.#error(action, err, signal, true);
    }
  }

  /** Walks the folder of `prefix` recursively (files of a folder first, sorted) and skips temp files. */
  async *list(prefix: string, options: CallOptions = {}): AsyncGenerator<ObjectInfo> {
    checkPrefix(prefix);
    const { signal } = options;
    const dir = prefix === "" ? this.root : path.join(this.root, prefix);
    yield* this.#walk(dir, prefix, signal);
  }

  /** The sub-folders of the folder of `prefix` (temp names skipped), sorted. */
  async *listFolders(prefix: string, options: CallOptions = {}): AsyncGenerator<string> {
    checkPrefix(prefix);
    const { signal } = options;
    signal?.throwIfAborted();
    let entries: fs.Dirent[];
    try {
      entries = await fsp.readdir(prefix === "" ? this.root : path.join(this.root, prefix), {
        withFileTypes: true,
      });
    } catch (err) {
      const code = codeOf(err);
      if (code === "ENOENT" || code === "ENOTDIR") return;
      throw this.#error(`Cannot list the folders of "${prefix}" in ${this.url}`, err, signal);
    }
    const names = entries.filter((e) => e.isDirectory() && !e.name.startsWith(TEMP_PREFIX)).map((e) =>
      e.name
    );
    yield* names.sort();
  }

  /** Removes `key` (a missing key is fine), then the folders it leaves empty, up to but not including the root. */
  async delete(key: string, options: CallOptions = {}): Promise<void> {
    const file = this.#file(key);
    const { signal } = options;
    signal?.throwIfAborted();
    try {
      await fsp.unlink(file);
    } catch (err) {
      const code = codeOf(err);
      if (code === "ENOENT" || code === "ENOTDIR") return;
      // A folder is not an object: deleting "a" while "a/b" exists is deleting a missing key.
      if (code === "EISDIR" || code === "ENOTEMPTY" || code === "EPERM") {
        const stats = await fsp.lstat(file).catch(() => undefined);
        if (stats?.isDirectory()) return;
      }
      throw this.#error(`Cannot delete "${key}" from ${this.url}`, err, signal);
    }
    await this.#removeEmptyFolders(path.dirname(file));
  }

  /** Deletes the temp files under the folder of `prefix` (see `CleansLeftovers`), then the folders left empty. */
  async deleteLeftovers(prefix: string, options: CallOptions = {}): Promise<number> {
    checkPrefix(prefix);
    const { signal } = options;
    let freed = 0;
    const walk = async (dir: string): Promise<void> => {
      signal?.throwIfAborted();
      let entries: fs.Dirent[];
      try {
        entries = await fsp.readdir(dir, { withFileTypes: true });
      } catch (err) {
        if (codeOf(err) === "ENOENT" || codeOf(err) === "ENOTDIR") return;
        throw this.#error(`Cannot list "${prefix}" in ${this.url}`, err, signal);
      }
      for (const entry of entries) {
        const abs = path.join(dir, entry.name);
        if (entry.isDirectory()) {
          await walk(abs);
        } else if (entry.name.startsWith(TEMP_PREFIX)) {
          try {
            const size = (await fsp.lstat(abs)).size;
            await fsp.unlink(abs);
            freed += size;
          } catch (err) {
            if (codeOf(err) !== "ENOENT") throw this.#error(`Cannot delete "${abs}"`, err, signal);
          }
        }
      }
      await this.#removeEmptyFolders(dir);
    };
    await walk(prefix === "" ? this.root : path.join(this.root, prefix));
    return freed;
  }

  /** Nothing to release. */
  close(): Promise<void> {
    return Promise.resolve();
  }

  /** Checks `key` and returns its file. */
  #file(key: string): string {
    checkKey(key);
    if (key.split("/").some((part) => part.startsWith(TEMP_PREFIX))) {
      throw new TypeError(
        `Cannot use key ${JSON.stringify(key)}: names starting with "${TEMP_PREFIX}" are reserved`,
      );
    }
    return path.join(this.root, key);
  }

  /**
   * Creates the folders of `dir` and the temp file. A concurrent `delete()` may remove a folder it just
   * left empty between the two steps, so on ENOENT the folders are created again (a race, not a retry).
   * Returns the handle and the folders (other than `dir`) whose entries changed.
   */
  async #openTemp(
    dir: string,
    temp: string,
    action: string,
  ): Promise<{ handle: fsp.FileHandle; parents: string[]; madeAt: number }> {
    let topmost: string | undefined;
    for (let attempt = 1;; attempt++) {
      let created: string | undefined;
      try {
        created = await fsp.mkdir(dir, { recursive: true, mode: DIR_MODE });
        ++folderChanges;
      } catch (err) {
        // Deno reports a file in the way as EEXIST, Node as ENOTDIR: say the same for both.
        if (codeOf(err) !== "EEXIST") throw err;
        throw new StorageError(`${action}: ${DESCRIPTIONS.ENOTDIR}`, { cause: err });
      }
      if (created !== undefined && (topmost === undefined || created.length < topmost.length)) {
        topmost = created;
      }
      try {
        const handle = await fsp.open(temp, "wx", FILE_MODE);
        const madeAt = folderChanges;
        const parents: string[] = [];
        if (topmost !== undefined) {
          const last = path.dirname(topmost);
          for (let d = dir; d !== last && d !== path.dirname(d);) {
            d = path.dirname(d);
            parents.push(d);
          }
        }
        return { handle, parents, madeAt };
      } catch (err) {
        if (codeOf(err) !== "ENOENT" || attempt >= 3) throw err;
      }
    }
  }

  async *#walk(dir: string, keyPrefix: string, signal: AbortSignal | undefined): AsyncGenerator<ObjectInfo> {
    signal?.throwIfAborted();
    const action = `Cannot list "${keyPrefix}" in ${this.url}`;
    let entries: fs.Dirent[];
    try {
      entries = await fsp.readdir(dir, { withFileTypes: true });
    } catch (err) {
      const code = codeOf(err);
      if (code === "ENOENT" || code === "ENOTDIR") return;
      throw this.#error(action, err, signal);
    }
    const files: string[] = [];
    const folders: string[] = [];
    for (const entry of entries) {
      if (entry.name.startsWith(TEMP_PREFIX)) continue;
      if (entry.isDirectory()) folders.push(entry.name);
      else if (entry.isFile() || entry.isSymbolicLink()) files.push(entry.name);
    }
    files.sort();
    folders.sort();
    for (let i = 0; i < files.length; i += STAT_BATCH) {
      signal?.throwIfAborted();
      const infos = await Promise.all(
        files.slice(i, i + STAT_BATCH).map(async (name) => {
          try {
            const stats = await fsp.stat(path.join(dir, name));
            return stats.isFile()
              ? { key: keyPrefix + name, size: stats.size, modified: stats.mtime }
              : undefined;
          } catch (err) {
            if (codeOf(err) === "ENOENT") return undefined; // deleted meanwhile, or a dangling link
            throw this.#error(action, err, signal);
          }
        }),
      );
      for (const info of infos) if (info !== undefined) yield info;
    }
    for (const folder of folders) yield* this.#walk(path.join(dir, folder), `${keyPrefix}${folder}/`, signal);
  }

  /** Removes `dir` and its parents while they are empty, stopping at the root. Best effort. */
  async #removeEmptyFolders(dir: string): Promise<void> {
    const inside = this.root.endsWith(path.sep) ? this.root : this.root + path.sep;
    while (dir.startsWith(inside) && dir !== this.root) {
      try {
        await fsp.rmdir(dir);
      } catch (err) {
        if (codeOf(err) !== "ENOENT") return; // not empty (or not ours to remove): leave it
      }
      dir = path.dirname(dir);
    }
  }

  /** Turns a failure into `NotFoundError`/`StorageError`; an abort rejects with the signal's reason. */
  #error(action: string, err: unknown, signal: AbortSignal | undefined, notFound = false): unknown {
    if (signal?.aborted) return signal.reason;
    if (err instanceof StorageError) return err;
    const code = codeOf(err);
    if (notFound && (code === "ENOENT" || code === "ENOTDIR")) {
      return new NotFoundError(`${action}: not found`, { cause: err });
    }
    return new StorageError(`${action}: ${describe(err)}`, { cause: err, retriable: isRetriable(err) });
  }
}

/**
 * Changes to folders so far (mkdir, rename into one), counted in order: a folder fsync that began after
 * change n (its `started` > n) makes change n durable.
 */
let folderChanges = 0;
/** The last fsync begun of each folder: when, and its outcome. */
const folderSyncs = new Map<string, { started: number; done: Promise<void> }>();

/**
 * fsyncs folder `dir` unless an fsync of it that began after change `changedAt` (see `folderChanges`) has
 * succeeded or is under way, which makes that change durable too; then waits for that one. So two objects
 * put at once into new folders of one backup fsync their common parent once.
 */
async function syncFolderSince(dir: string, changedAt: number): Promise<void> {
  const last = folderSyncs.get(dir);
  if (last !== undefined && last.started > changedAt) return await last.done;
  const entry = { started: ++folderChanges, done: syncFolder(dir) };
  if (folderSyncs.size >= 256) folderSyncs.clear();
  folderSyncs.set(dir, entry);
  try {
    await entry.done;
  } catch (err) {
    if (folderSyncs.get(dir) === entry) folderSyncs.delete(dir);
    throw err;
  }
}

/** fsyncs a folder so that renames and new entries in it are durable. */
async function syncFolder(dir: string): Promise<void> {
  const handle = await fsp.open(dir, "r");
  try {
    await handle.sync();
  } catch (err) {
    // Some filesystems cannot fsync a folder; the rename is still done.
    const code = codeOf(err);
    if (code !== "EINVAL" && code !== "ENOTSUP" && code !== "EBADF") throw err;
  } finally {
    await handle.close();
  }
}

/** `stat` that returns `undefined` for a missing path. */
async function statIfExists(file: string): Promise<fs.Stats | undefined> {
  try {
    return await fsp.stat(file);
  } catch (err) {
    if (codeOf(err) === "ENOENT") return undefined;
    throw err;
  }
}

function codeOf(err: unknown): string | undefined {
  if (typeof err !== "object" || err === null || !("code" in err)) return undefined;
  return typeof err.code === "string" ? err.code : undefined;
}

function isRetriable(err: unknown): boolean {
  const code = codeOf(err);
  return code !== undefined && RETRIABLE_CODES.has(code);
}

function describe(err: unknown): string {
  const code = codeOf(err);
  return (code === undefined ? undefined : DESCRIPTIONS[code]) ?? messageOf(err);
}
