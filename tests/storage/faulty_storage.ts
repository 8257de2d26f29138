/**
 * A storage decorator for tests that fails on purpose, to check how callers (retry, pipeline, restore)
 * handle storage failures and corrupt data.
 * @module
 */
import {
  type CallOptions,
  type ObjectInfo,
  type Range,
  type Storage,
  StorageError,
} from "../../storage/storage.ts";

/** Which calls `FaultyStorage` fails, and how. Every option is off by default. */
export interface FaultyStorageOptions {
  /** Let this many `put()` calls succeed, then fail the later ones. */
  failPutAfter?: number;
  /** Fail `put()` of keys matching this. */
  failPutMatching?: RegExp;
  /** Fail `get()` of keys matching this. */
  failGetMatching?: RegExp;
  /** Fail `list()` of prefixes matching this, after it yielded half of the objects. */
  failListMatching?: RegExp;
  /** Flip one byte (the first one streamed) of `get()` results for keys matching this. */
  corruptGetMatching?: RegExp;
  /** Whether the thrown `StorageError`s say a retry may help. Default: false. */
  retriable?: boolean;
  /** Inject at most this many failures, then behave (for retry tests). Default: no limit. */
  times?: number;
  /**
   * When a `put()` fails, store the object first and fail afterwards, as when a reply is lost after the
   * upload succeeded. Default: false (nothing is stored).
   */
  failAfterWriting?: boolean;
}

/**
 * Wraps `inner` and fails the calls its options select with a `StorageError` whose message contains
 * "injected". Corruption is silent. Counters say what happened.
 *
 * @example
 * ```ts
 * import { MemoryStorage } from "../../storage/memory.ts";
 * import { FaultyStorage } from "./faulty_storage.ts";
 * const storage = new FaultyStorage(new MemoryStorage(), { failPutMatching: /segments/, times: 1, retriable: true });
 * await storage.put("web/segments/0", new Uint8Array(1)).catch((err) => console.log(err.retriable)); // true
 * await storage.put("web/segments/0", new Uint8Array(1)); // the second try succeeds
 * ```
 */
export class FaultyStorage implements Storage {
  /** The wrapped storage's URL. */
  readonly url: string;
  /** Calls made to each method, failed ones included. */
  readonly calls: Record<"put" | "get" | "stat" | "list" | "delete", number> = {
    put: 0,
    get: 0,
    stat: 0,
    list: 0,
    delete: 0,
  };
  /** Failures injected so far (corruptions not counted). */
  failures = 0;
  /** Objects corrupted so far. */
  corruptions = 0;
  readonly #inner: Storage;
  readonly #options: FaultyStorageOptions;

  /** Wraps `inner`; see `FaultyStorageOptions`. */
  constructor(inner: Storage, options: FaultyStorageOptions = {}) {
    this.#inner = inner;
    this.#options = options;
    this.url = inner.url;
  }

  /** Fails when `failPutAfter` or `failPutMatching` says so, else stores through the wrapped storage. */
  async put(key: string, data: Uint8Array, options?: CallOptions): Promise<void> {
    this.calls.put++;
    const { failPutAfter, failPutMatching } = this.#options;
    const fail = (failPutAfter !== undefined && this.calls.put > failPutAfter) ||
      matches(failPutMatching, key);
    if (fail && this.#inject()) {
      if (this.#options.failAfterWriting) await this.#inner.put(key, data, options);
      throw this.#error(`Cannot write "${key}" to ${this.url}`);
    }
    await this.#inner.put(key, data, options);
  }

  /** Fails for `failGetMatching`; flips the first byte for `corruptGetMatching`. */
  async get(key: string, options?: CallOptions & { range?: Range }): Promise<ReadableStream<Uint8Array>> {
    this.calls.get++;
    if (matches(this.#options.failGetMatching, key) && this.#inject()) {
      throw this.#error(`Cannot read "${key}" from ${this.url}`);
    }
    const stream = await this.#inner.get(key, options);
    if (!matches(this.#options.corruptGetMatching, key)) return stream;
    let flipped = false;
    return stream.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform: (chunk, controller) => {
          if (!flipped && chunk.byteLength > 0) {
            flipped = true;
            this.corruptions++;
            chunk = new Uint8Array(chunk); // a copy: never change the wrapped storage's bytes
            chunk[0] = (chunk[0] ?? 0) ^ 0xff;
          }
          controller.enqueue(chunk);
        },
      }),
    );
  }

  /** Passes through. */
  stat(key: string, options?: CallOptions): Promise<ObjectInfo> {
    this.calls.stat++;
    return this.#inner.stat(key, options);
  }

  /** Passes through, or fails halfway for `failListMatching`. */
  async *list(prefix: string, options?: CallOptions): AsyncGenerator<ObjectInfo> {
    this.calls.list++;
    if (!matches(this.#options.failListMatching, prefix)) {
      yield* this.#inner.list(prefix, options);
      return;
    }
    const all: ObjectInfo[] = [];
    for await (const info of this.#inner.list(prefix, options)) all.push(info);
    const half = Math.floor(all.length / 2);
    yield* all.slice(0, half);
    if (this.#inject()) throw this.#error(`Cannot list "${prefix}" in ${this.url}`);
    yield* all.slice(half);
  }

  /** Folders are listed without faults (listing them is one request). */
  listFolders(prefix: string, options?: CallOptions): AsyncIterable<string> {
    return this.#inner.listFolders(prefix, options);
  }

  /** Passes through. */
  delete(key: string, options?: CallOptions): Promise<void> {
    this.calls.delete++;
    return this.#inner.delete(key, options);
  }

  /** Closes the wrapped storage. */
  close(): Promise<void> {
    return this.#inner.close();
  }

  /** Counts a failure unless `times` are used up; returns whether to fail. */
  #inject(): boolean {
    if (this.#options.times !== undefined && this.failures >= this.#options.times) return false;
    this.failures++;
    return true;
  }

  #error(action: string): StorageError {
    const retriable = this.#options.retriable ?? false;
    return new StorageError(`${action}: injected ${retriable ? "transient" : "permanent"} failure`, {
      retriable,
      cause: new Error("FaultyStorage"),
    });
  }
}

function matches(pattern: RegExp | undefined, value: string): boolean {
  if (pattern === undefined) return false;
  pattern.lastIndex = 0; // a /g or /y pattern keeps state between test() calls
  return pattern.test(value);
}
