/**
 * Helpers shared by the storages that are remote file systems, SFTP and FTP (private to `storage/`): their
 * `scheme://user@host:port/path` URLs, key checks with reserved temp names, network error texts and a
 * concurrent tree walk.
 * @module
 */
import crypto from "node:crypto";
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

/** The string `code` of an error or of its causes, if any. */
export function codeOf(err: unknown): string | undefined {
  for (let e = err, depth = 0; typeof e === "object" && e !== null && depth < 4; depth++) {
    if ("code" in e && typeof e.code === "string") return e.code;
    e = "cause" in e ? e.cause : undefined;
  }
  return undefined;
}

/** Texts for socket-level error codes after which a retry, on a new connection, may succeed. */
const NETWORK_ERRORS: Record<string, string> = {
  ECONNREFUSED: "connection refused",
  ECONNRESET: "connection reset",
  ECONNABORTED: "connection aborted",
  EPIPE: "connection closed",
  ETIMEDOUT: "timed out",
  EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable",
  ENETDOWN: "network down",
  EHOSTDOWN: "host down",
  EAI_AGAIN: "name lookup failed temporarily",
  ERR_STREAM_PREMATURE_CLOSE: "connection closed",
  ConnectionRefused: "connection refused", // Bun
  ConnectionClosed: "connection closed", // Bun
};

/**
 * Describes a socket-level failure (refused, reset, timed out, DNS) and says whether a retry may help, or
 * returns `undefined` when `err` is not one.
 */
export function networkFailure(err: unknown): { reason: string; retriable: boolean } | undefined {
  const code = codeOf(err);
  if (code === undefined) return undefined;
  const text = NETWORK_ERRORS[code];
  if (text !== undefined) return { reason: `${text} (${code})`, retriable: true };
  if (code === "ENOTFOUND") return { reason: `unknown host (${code})`, retriable: false };
  return undefined;
}

/** An empty byte stream. */
export function emptyStream(): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({ start: (controller) => controller.close() });
}

/** The first line of a message, at most 300 characters. */
export function oneLine(text: string): string {
  const line = text.trim().split(/\r?\n/, 1)[0] ?? "";
  return line.length > 300 ? `${line.slice(0, 297)}...` : line;
}
