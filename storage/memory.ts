/**
 * A storage in memory, for tests: a Map from key to bytes. It keeps the same rules as the other storages
 * (key checks, NotFoundError, copies in and out) so that code tested against it behaves the same elsewhere.
 * @module
 */
import { checkKey, checkPrefix, checkRange } from "./_key.ts";
import { type CallOptions, NotFoundError, type ObjectInfo, type Range, type Storage } from "./storage.ts";

const CHUNK_SIZE = 1 << 20;

interface Entry {
  bytes: Uint8Array;
  modified: Date;
}

/**
 * A storage that keeps objects in a Map. `put` copies the bytes it is given and `get` streams copies, so
 * callers may reuse their buffers.
 *
 * @example
 * ```ts
 * import { getBytes } from "./storage.ts";
 * import { MemoryStorage } from "./memory.ts";
 * const storage = new MemoryStorage("example");
 * await storage.put("host_web/a", new Uint8Array([1, 2, 3]));
 * console.log(await getBytes(storage, "host_web/a")); // Uint8Array [1, 2, 3]
 * ```
 */
export class MemoryStorage implements Storage {
  /** `memory://<name>`. */
  readonly url: string;
  readonly #objects = new Map<string, Entry>();

  /** Creates an empty storage; `name` (default `"default"`) only shows in `url` and messages. */
  constructor(name = "default") {
    this.url = `memory://${name}`;
  }

  /** Stores a copy of `data` under `key`. */
  put(key: string, data: Uint8Array, options: CallOptions = {}): Promise<void> {
    return settle(() => {
      checkKey(key);
      options.signal?.throwIfAborted();
      // new Uint8Array() copies; Buffer#slice() would return a view.
      this.#objects.set(key, { bytes: new Uint8Array(data), modified: new Date() });
    });
  }

  /** Streams a copy of the object (or of `range` of it) in chunks of at most 1 MiB. */
  get(key: string, options: CallOptions & { range?: Range } = {}): Promise<ReadableStream<Uint8Array>> {
    return settle(() => {
      checkRange(key, options.range);
      const { bytes } = this.#entry(key, `Cannot read "${key}" from ${this.url}`, options.signal);
      const start = Math.min(options.range?.offset ?? 0, bytes.byteLength);
      const length = options.range?.length;
      const end = length === undefined ? bytes.byteLength : Math.min(start + length, bytes.byteLength);
      // Copy now: the reader sees the object as it was at get(), whatever happens to the Map later.
      const copy = bytes.slice(start, end);
      const signal = options.signal;
      let offset = 0;
      return new ReadableStream<Uint8Array>({
        pull(controller) {
          if (signal?.aborted) return controller.error(signal.reason);
          if (offset >= copy.byteLength) return controller.close();
          const chunkEnd = Math.min(offset + CHUNK_SIZE, copy.byteLength);
          controller.enqueue(copy.subarray(offset, chunkEnd));
          offset = chunkEnd;
        },
      }, { highWaterMark: 0 });
    });
  }

  /** Reports the size and time of the last `put` of `key`. */
  stat(key: string, options: CallOptions = {}): Promise<ObjectInfo> {
    return settle(() => {
      const entry = this.#entry(key, `Cannot stat "${key}" in ${this.url}`, options.signal);
      return { key, size: entry.bytes.byteLength, modified: new Date(entry.modified) };
    });
  }

  /** Yields the objects whose key starts with `prefix`, sorted by key, as they were when listing began. */
  async *list(prefix: string, options: CallOptions = {}): AsyncGenerator<ObjectInfo> {
    checkPrefix(prefix);
    const matches = [...this.#objects].filter(([key]) => key.startsWith(prefix));
    matches.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    for (const [key, entry] of matches) {
      options.signal?.throwIfAborted();
      yield { key, size: entry.bytes.byteLength, modified: new Date(entry.modified) };
    }
  }

  /** The next key components below `prefix` of the keys that continue below it, sorted. */
  async *listFolders(prefix: string, options: CallOptions = {}): AsyncGenerator<string> {
    checkPrefix(prefix);
    const names = new Set<string>();
    for (const key of this.#objects.keys()) {
      if (!key.startsWith(prefix)) continue;
      const end = key.indexOf("/", prefix.length);
      if (end > prefix.length) names.add(key.slice(prefix.length, end));
    }
    for (const name of [...names].sort()) {
      options.signal?.throwIfAborted();
      yield name;
    }
  }

  /** Removes `key`; a missing key is fine. */
  delete(key: string, options: CallOptions = {}): Promise<void> {
    return settle(() => {
      checkKey(key);
      options.signal?.throwIfAborted();
      this.#objects.delete(key);
    });
  }

  #entry(key: string, action: string, signal: AbortSignal | undefined): Entry {
    checkKey(key);
    signal?.throwIfAborted();
    const entry = this.#objects.get(key);
    if (entry === undefined) throw new NotFoundError(`${action}: not found`);
    return entry;
  }

  /** Does nothing: the objects stay, so a named storage can be opened again (see `registry.ts`). */
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** Runs `fn` now and returns its result as a promise, turning a throw into a rejection. */
function settle<T>(fn: () => T | Promise<T>): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (err) {
    return Promise.reject(err);
  }
}
