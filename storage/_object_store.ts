/**
 * Helpers shared by the object-store storages, S3 and Swift (private to `storage/`): their URLs and the
 * stream wrappers of `get()`; the helpers of every remote storage come from `_remote.ts`.
 * @module
 */
import { checkKey, checkPrefix } from "./_key.ts";
import type { Range, Storage } from "./storage.ts";
import { emptyStream } from "./_remote.ts";

/** Where `s3://bucket/prefix` or `swift://container/prefix` points. */
export interface ObjectStoreLocation {
  /** The bucket or container. */
  container: string;
  /** The key prefix without leading or trailing `/`; `""` for the top of the container. */
  prefix: string;
  /** The display form `<scheme>://<container>[/<prefix>]`. */
  url: string;
}

/**
 * Parses `<scheme>://<container>[/<prefix>][/]`. The prefix is taken as written (no percent-decoding), so
 * what the user types is the key prefix. Throws `TypeError` for another scheme, an empty or odd container
 * name (credentials such as `user@` included: they never belong in a URL), or a prefix with empty, `.` or
 * `..` components.
 */
export function parseObjectStoreUrl(spec: string, scheme: string): ObjectStoreLocation {
  const head = `${scheme}://`;
  if (typeof spec !== "string" || spec.slice(0, head.length).toLowerCase() !== head) {
    throw new TypeError(`Cannot use storage "${spec}": it does not start with ${head}`);
  }
  const rest = spec.slice(head.length);
  const slash = rest.indexOf("/");
  const container = slash === -1 ? rest : rest.slice(0, slash);
  const prefix = slash === -1 ? "" : rest.slice(slash + 1).replace(/\/+$/, "");
  const what = scheme === "s3" ? "bucket" : "container";
  if (container === "") throw new TypeError(`Cannot use storage "${spec}": the ${what} name is empty`);
  if (!/^[A-Za-z0-9._-]+$/.test(container)) {
    // Not echoed: a mistyped "user:secret@" must not end up in a log.
    throw new TypeError(
      `Cannot use storage "${head}…": the ${what} name may only have letters, digits, ".", "_" and "-"`,
    );
  }
  if (prefix !== "") {
    try {
      checkPrefix(`${prefix}/`);
    } catch (err) {
      throw new TypeError(`Cannot use storage "${spec}": the prefix is not a valid key path`, { cause: err });
    }
  }
  return { container, prefix, url: `${head}${container}${prefix === "" ? "" : `/${prefix}`}` };
}

export { checkedOpen, emptyStream, networkFailure, nonEmpty, oneLine } from "./_remote.ts";

/**
 * The answer to a `get()` of a zero-length `range`: an empty stream once `stat` found the key (a missing key
 * still rejects); undefined for any other range, which the caller reads.
 */
export async function emptyRange(
  storage: Pick<Storage, "stat">,
  key: string,
  range: Range | undefined,
  signal: AbortSignal | undefined,
): Promise<ReadableStream<Uint8Array> | undefined> {
  if (range?.length !== 0) return undefined;
  await storage.stat(key, { signal });
  return emptyStream();
}

/** The HTTP `Range` header value of a `get()` range: undefined for the whole object. */
export function rangeHeader(range: Range | undefined): string | undefined {
  const offset = range?.offset ?? 0;
  if (range === undefined || (offset === 0 && range.length === undefined)) return undefined;
  return `bytes=${offset}-${range.length === undefined ? "" : offset + range.length - 1}`;
}

/** Whether `key` is a valid storage key (listings skip the names of other programs that are not). */
export function isKey(key: string): boolean {
  try {
    checkKey(key);
    return true;
  } catch {
    return false;
  }
}

/**
 * An idle timer for one request: `signal` aborts (and `fired` turns true) once `ms` pass without `touch()`.
 * The caller's signal aborts it too. `stop()` disarms it for good.
 */
export class IdleWatch {
  readonly signal: AbortSignal;
  fired = false;
  readonly #ms: number;
  readonly #timer = new AbortController();
  #id: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;

  constructor(ms: number, signal?: AbortSignal) {
    this.#ms = ms;
    this.signal = signal ? AbortSignal.any([signal, this.#timer.signal]) : this.#timer.signal;
    this.touch();
  }

  /** Something moved: the timer starts again. */
  touch = (): void => {
    clearTimeout(this.#id);
    if (this.#stopped) return;
    this.#id = setTimeout(() => {
      this.fired = true;
      this.#timer.abort(new DOMException(`no byte moved in ${this.#ms} ms`, "TimeoutError"));
    }, this.#ms);
  };

  /** Disarms the timer until the next `touch()` (while the caller is not reading). */
  pause(): void {
    clearTimeout(this.#id);
  }

  /** Disarms the timer for good. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#id);
  }
}

/**
 * `stream`, failing with `onTimeout()` when a read waits `ms` for the source (not while the caller does
 * not read), and with `signal`'s reason when it aborts; the source is cancelled then.
 */
export function idleStream(
  stream: ReadableStream<Uint8Array>,
  ms: number,
  signal: AbortSignal | undefined,
  onTimeout: () => unknown,
): ReadableStream<Uint8Array> {
  const reader = stream.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      let id: ReturnType<typeof setTimeout> | undefined;
      let onAbort = () => {};
      const stopped = new Promise<never>((_, reject) => {
        id = setTimeout(() => reject(onTimeout()), ms);
        onAbort = () => reject(signal!.reason);
        if (signal?.aborted) onAbort();
        else signal?.addEventListener("abort", onAbort, { once: true });
      });
      try {
        const { done, value } = await Promise.race([reader.read(), stopped]);
        if (done) controller.close();
        else controller.enqueue(value);
      } catch (err) {
        reader.cancel(err).catch(() => {});
        throw err;
      } finally {
        clearTimeout(id);
        signal?.removeEventListener("abort", onAbort);
      }
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}

/** A logger for SDKs that must print nothing (frost prints its own lines). */
export const SILENT_LOGGER = {
  trace: () => {},
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
};
