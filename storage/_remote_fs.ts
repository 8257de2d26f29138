/**
 * Helpers shared by the storages that are remote file systems, SFTP and FTP (private to `storage/`): their
 * `scheme://user@host:port/path` URLs, key checks with reserved temp names, a concurrent tree walk and the
 * removal of temp files left by cut puts; the helpers of every remote storage come from `_remote.ts`.
 * @module
 */
import crypto from "node:crypto";
import path from "node:path";
import { UsageError } from "../base/errors.ts";
import { checkKey } from "./_key.ts";
import { TEMP_PREFIX } from "./local.ts";
import type { ObjectInfo } from "./storage.ts";

export { TEMP_PREFIX };

/** The parts of `scheme://user@host:port/path`. */
export interface RemoteUrl {
  scheme: string;
  /** Percent-decoded user name, `undefined` when the URL has none. */
  user: string | undefined;
  /** Host name or IP address, without the brackets of an IPv6 address. */
  host: string;
  port: number;
  /** Percent-decoded path, `""` when the URL has none. */
  path: string;
  /** Whether the URL holds a password (which callers refuse). */
  hasPassword: boolean;
  /** Display form without password: `scheme://user@host[:port]/path`. */
  shown: string;
}

/** Parses a remote storage URL; throws `UsageError` when it is not one. */
export function parseRemoteUrl(spec: string, defaultPort: number): RemoteUrl {
  const bad = (what: string, cause?: unknown) =>
    new UsageError(`Cannot use storage "${redact(spec)}": ${what}`, { cause });
  let url: URL;
  try {
    url = new URL(spec);
  } catch (err) {
    throw bad("it is not a valid URL", err);
  }
  const scheme = url.protocol.slice(0, -1).toLowerCase();
  if (url.hostname === "") throw bad(`the URL has no host (use ${scheme}://user@host:port/path)`);
  if (url.search !== "" || url.hash !== "") {
    throw bad(`the URL has a "?" or "#" part (percent-encode them in paths: %3F, %23)`);
  }
  const decode = (text: string, what: string) => {
    try {
      return decodeURIComponent(text);
    } catch (err) {
      throw bad(`the ${what} is not valid percent-encoding`, err);
    }
  };
  const user = url.username === "" ? undefined : decode(url.username, "user name");
  const path = decode(url.pathname, "path");
  if (path.includes("\0")) throw bad("the path has a NUL character");
  const port = url.port === "" ? defaultPort : Number(url.port);
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  const shownHost = url.hostname + (url.port === "" ? "" : `:${url.port}`);
  const shown = `${scheme}://${url.username === "" ? "" : `${url.username}@`}${shownHost}${url.pathname}`;
  return { scheme, user, host, port, path, hasPassword: url.password !== "", shown };
}

/** `spec` with the password of its URL (if any) replaced by `***`, for messages. */
export function redact(spec: string): string {
  return spec.replace(/^([a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^/@:]*):[^/@]*@/, "$1:***@");
}

/** `checkKey()` plus: no path component may start with the reserved temp prefix. */
export function checkObjectKey(key: string): void {
  checkKey(key);
  if (key.split("/").some((part) => part.startsWith(TEMP_PREFIX))) {
    throw new TypeError(
      `Cannot use key ${JSON.stringify(key)}: names starting with "${TEMP_PREFIX}" are reserved`,
    );
  }
}

/** A fresh temp file name for a `put()`. */
export function tempName(): string {
  return TEMP_PREFIX + crypto.randomBytes(8).toString("hex");
}

/**
 * Walks a tree of folders with up to `concurrency` folder reads in flight and yields the objects in no set
 * order. `read(dir)` returns a folder's objects and its sub-folders (each passed to `read` again).
 */
export async function* walkConcurrently<D>(
  root: D,
  read: (dir: D) => Promise<{ objects: ObjectInfo[]; folders: D[] }>,
  concurrency: number,
  signal: AbortSignal | undefined,
): AsyncGenerator<ObjectInfo> {
  const waiting: D[] = [root];
  const running = new Map<number, Promise<{ id: number; objects: ObjectInfo[]; folders: D[] }>>();
  let nextId = 0;
  try {
    while (waiting.length > 0 || running.size > 0) {
      signal?.throwIfAborted();
      while (waiting.length > 0 && running.size < concurrency) {
        const dir = waiting.shift() as D;
        const id = nextId++;
        running.set(id, read(dir).then((result) => ({ id, ...result })));
      }
      const { id, objects, folders } = await Promise.race(running.values());
      running.delete(id);
      waiting.push(...folders);
      yield* objects;
    }
  } finally {
    // Reads still running when the caller stops early or one fails: let them settle unobserved.
    for (const pending of running.values()) pending.catch(() => {});
  }
}

/** What `deleteTempFiles` does on one storage. */
export interface TempFileOps<D> {
  /** Reads one folder: its temp files (as objects, keys from the storage's root) and its sub-folders. */
  read(folder: D): Promise<{ objects: ObjectInfo[]; folders: D[] }>;
  /** Removes one temp file; false when it was gone already (removed by someone else). */
  unlink(temp: ObjectInfo): Promise<boolean>;
  /** Removes the folder `dir` and its parents up to the storage's root while they are empty. */
  removeEmpty(dir: string): Promise<void>;
  /** Folder reads in flight at once. */
  concurrency: number;
  signal?: AbortSignal;
}

/**
 * `deleteLeftovers` of the remote file systems (see `CleansLeftovers`): walks the folders from `top`,
 * removes each temp file found, then the folders left empty, deepest first (so that a folder that held
 * only emptied folders goes too); resolves to the bytes freed.
 */
export async function deleteTempFiles<D extends { dir: string }>(
  top: D,
  ops: TempFileOps<D>,
): Promise<number> {
  const dirs: string[] = [];
  const temps: ObjectInfo[] = [];
  const read = (folder: D) => {
    dirs.push(folder.dir);
    return ops.read(folder);
  };
  for await (const temp of walkConcurrently(top, read, ops.concurrency, ops.signal)) temps.push(temp);
  let freed = 0;
  for (const temp of temps) {
    ops.signal?.throwIfAborted();
    if (await ops.unlink(temp)) freed += temp.size;
  }
  for (const dir of dirs.sort((a, b) => b.length - a.length)) await ops.removeEmpty(dir);
  return freed;
}

/**
 * The storage folder that a URL's path names: "" and "/~[/…]" are relative to the login's home folder
 * (`home()`, asked only then); normalized, without a trailing "/".
 */
export async function remoteRoot(urlPath: string, home: () => Promise<string>): Promise<string> {
  let root = urlPath;
  if (root === "" || root === "/~" || root.startsWith("/~/")) {
    root = path.posix.join(await home(), root.slice(2));
  }
  root = path.posix.normalize(root);
  return root.length > 1 && root.endsWith("/") ? root.slice(0, -1) : root;
}

export { checkedOpen, codeOf, emptyStream, networkFailure, nonEmpty, oneLine } from "./_remote.ts";
