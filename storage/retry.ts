/**
 * A Storage decorator that retries retriable failures with exponential backoff and jitter. Adapters contain
 * no retry loops; main.ts wraps every storage in this once.
 * @module
 */
import type { CallOptions, ObjectInfo, PutOptions, PutStream, Range, Storage } from "./storage.ts";
import { StorageError } from "./storage.ts";

/** Options of `RetryStorage`. */
export interface RetryOptions {
  /** Tries per call, the first included. Default 6. */
  attempts?: number;
  /** Delay before the first retry, in ms. Default 500. */
  baseDelayMs?: number;
  /** Upper bound of one delay, in ms. Default 30 000. */
  maxDelayMs?: number;
  /** Told about every retry (for a warning line). */
  onRetry?: (what: string, attempt: number, err: StorageError, delayMs: number) => void;
}

function isRetriable(err: unknown): err is StorageError {
  return err instanceof StorageError && err.retriable;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Retries retriable `StorageError`s; everything else passes through at once. */
export class RetryStorage implements Storage {
  readonly url: string;
  readonly #inner: Storage;
  readonly #attempts: number;
  readonly #base: number;
  readonly #max: number;
  readonly #onRetry?: RetryOptions["onRetry"];

  constructor(inner: Storage, options: RetryOptions = {}) {
    this.#inner = inner;
    this.url = inner.url;
    this.#attempts = options.attempts ?? 6;
    this.#base = options.baseDelayMs ?? 500;
    this.#max = options.maxDelayMs ?? 30_000;
    this.#onRetry = options.onRetry;
    // A streamed put cannot be replayed: only opening it is retried; its writes and commit pass through.
    if (inner.openPut) {
      this.openPut = (key, options) =>
        this.#retry(`put "${key}"`, options?.signal, () => inner.openPut!(key, options));
    }
    if (inner.getInto) {
      this.getInto = (key, buffer, options) =>
        this.#retry(`get "${key}"`, options?.signal, () => inner.getInto!(key, buffer, options));
    }
  }

  /** Present when the inner storage has it (see `Storage.getInto`). */
  readonly getInto?: (key: string, buffer: Uint8Array, options?: CallOptions) => Promise<number>;

  /** Present when the inner storage has it (see `Storage.openPut`). */
  readonly openPut?: (key: string, options?: CallOptions) => Promise<PutStream>;

  async #retry<T>(what: string, signal: AbortSignal | undefined, call: () => Promise<T>): Promise<T> {
    for (let attempt = 1;; attempt++) {
      try {
        return await call();
      } catch (err) {
        if (!isRetriable(err) || attempt >= this.#attempts || signal?.aborted) throw err;
        const delay = Math.min(this.#max, this.#base * 2 ** (attempt - 1)) * (0.5 + Math.random() / 2);
        this.#onRetry?.(what, attempt, err, delay);
        await sleep(delay, signal);
      }
    }
  }

  /** As the inner storage's. */
  get putHashes(): boolean {
    return this.#inner.putHashes === true;
  }

  put(key: string, data: Uint8Array, options?: PutOptions): Promise<void> {
    return this.#retry(`put "${key}"`, options?.signal, () => this.#inner.put(key, data, options));
  }

  /**
   * Opens the object with retries; a retriable failure in the middle of the stream re-opens it at the
   * offset reached, so the reader sees one uninterrupted stream.
   */
  async get(key: string, options?: CallOptions & { range?: Range }): Promise<ReadableStream<Uint8Array>> {
    const signal = options?.signal;
    const start = options?.range?.offset ?? 0;
    const length = options?.range?.length;
    const open = (done: number) =>
      this.#retry(`get "${key}"`, signal, () =>
        this.#inner.get(key, {
          signal,
          range: done === 0 && !options?.range
            ? undefined
            : { offset: start + done, length: length === undefined ? undefined : length - done },
        }));
    let reader = (await open(0)).getReader();
    let done = 0;
    let failures = 0;
    return new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        for (;;) {
          try {
            const r = await reader.read();
            if (r.done) return controller.close();
            done += r.value.byteLength;
            controller.enqueue(r.value);
            return;
          } catch (err) {
            if (!isRetriable(err) || ++failures >= this.#attempts || signal?.aborted) throw err;
            const delay = Math.min(this.#max, this.#base * 2 ** (failures - 1));
            this.#onRetry?.(`read "${key}"`, failures, err, delay);
            await sleep(delay, signal);
            reader = (await open(done)).getReader();
          }
        }
      },
      cancel: (reason) => reader.cancel(reason),
    });
  }

  stat(key: string, options?: CallOptions): Promise<ObjectInfo> {
    return this.#retry(`stat "${key}"`, options?.signal, () => this.#inner.stat(key, options));
  }

  /** Lists with retries; a listing that fails midway starts again and skips keys already yielded. */
  list(prefix: string, options?: CallOptions): AsyncIterable<ObjectInfo> {
    return this.#listing(`list "${prefix}"`, options, () => this.#inner.list(prefix, options), (i) => i.key);
  }

  /** As `list`, for folders. */
  listFolders(prefix: string, options?: CallOptions): AsyncIterable<string> {
    return this.#listing(
      `list the folders of "${prefix}"`,
      options,
      () => this.#inner.listFolders(prefix, options),
      (n) => n,
    );
  }

  async *#listing<T>(
    what: string,
    options: CallOptions | undefined,
    source: () => AsyncIterable<T>,
    idOf: (item: T) => string,
  ): AsyncIterable<T> {
    const seen = new Set<string>();
    for (let attempt = 1;; attempt++) {
      try {
        for await (const item of source()) {
          const id = idOf(item);
          if (seen.has(id)) continue;
          seen.add(id);
          yield item;
        }
        return;
      } catch (err) {
        if (!isRetriable(err) || attempt >= this.#attempts || options?.signal?.aborted) throw err;
        const delay = Math.min(this.#max, this.#base * 2 ** (attempt - 1));
        this.#onRetry?.(what, attempt, err, delay);
        await sleep(delay, options?.signal);
      }
    }
  }

  delete(key: string, options?: CallOptions): Promise<void> {
    return this.#retry(`delete "${key}"`, options?.signal, () => this.#inner.delete(key, options));
  }

  close(): Promise<void> {
    return this.#inner.close();
  }

  /** The storage this decorator wraps (see unwrap.ts). */
  unwrap(): Storage {
    return this.#inner;
  }
}
