/**
 * Helpers every remote storage shares (private to `storage/`): network error texts and codes, the empty
 * stream of an empty read, one-line server messages. `_object_store.ts` (S3, Swift) and `_remote_fs.ts`
 * (SFTP, FTP) re-export them beside their own helpers.
 * @module
 */

/** Error codes of a failed connection or transfer after which the same call, on a new connection, may succeed. */
const NETWORK_CODES: Record<string, string> = {
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
  UND_ERR_SOCKET: "connection closed",
  UND_ERR_CONNECT_TIMEOUT: "connect timed out",
  UND_ERR_HEADERS_TIMEOUT: "timed out waiting for the response",
  UND_ERR_BODY_TIMEOUT: "timed out reading the response",
  ConnectionRefused: "connection refused", // Bun
  ConnectionClosed: "connection closed", // Bun
};

/** The string `code` of an error or of its causes, if any. */
export function codeOf(err: unknown): string | undefined {
  for (let e = err, depth = 0; typeof e === "object" && e !== null && depth < 4; depth++) {
    if ("code" in e && typeof e.code === "string") return e.code;
    e = "cause" in e ? e.cause : undefined;
  }
  return undefined;
}

/**
 * Describes a failure below the storage's protocol (refused, reset, timed out, DNS) and says whether a
 * retry may help, or returns `undefined` when `err` is not one.
 */
export function networkFailure(err: unknown): { reason: string; retriable: boolean } | undefined {
  const code = codeOf(err);
  if (code !== undefined && code in NETWORK_CODES) {
    return { reason: `${NETWORK_CODES[code]} (${code})`, retriable: true };
  }
  if (code === "ENOTFOUND") return { reason: `unknown host (${code})`, retriable: false };
  if (typeof err === "object" && err !== null && "name" in err && err.name === "TimeoutError") {
    return { reason: "timed out", retriable: true };
  }
  return undefined;
}

/** An environment variable's value, undefined when it is unset or empty. */
export function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === "" ? undefined : value;
}

/** An empty byte stream. */
export function emptyStream(): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({ start: (controller) => controller.close() });
}

/** The first line of a message (server error pages can be long), at most `max` characters (default 300). */
export function oneLine(text: string, max = 300): string {
  const line = text.trim().split(/\r?\n/, 1)[0] ?? "";
  return line.length > max ? `${line.slice(0, max - 3)}...` : line;
}

/** `storage` once `check()` has passed; when it fails, `storage` is closed and the failure rethrown. */
export async function checkedOpen<S extends { close(): Promise<void> }>(
  storage: S,
  check: () => Promise<void>,
): Promise<S> {
  try {
    await check();
    return storage;
  } catch (err) {
    await storage.close();
    throw err;
  }
}
