/**
 * A Storage decorator that retries retriable failures with exponential backoff and jitter until a time
 * budget is spent. Adapters contain no retry loops; `openStorages` (commands/cli.ts) wraps every storage in
 * this once, and opens each storage through the same policy (`Retrier.run`).
 *
 * One outage gives one warning (`onOutage`) and, when the storage answers again, one notice
 * (`onRecovered`), however many calls were failing at the time.
 * @module
 */
import type { CallOptions, ObjectInfo, PutOptions, PutStream, Range, Storage } from "./storage.ts";
import { canDeleteLeftovers, canReadInPlace, canStreamPut, hashesPuts, StorageError } from "./storage.ts";
import { formatDuration } from "../base/units.ts";
import { sleep } from "../base/sleep.ts";
import { codeOf } from "./_remote.ts";

/** How long one operation keeps retrying by default: 15 minutes (restic's figure). */
export const DEFAULT_RETRY_FOR_MS = 15 * 60_000;

/** Options of `Retrier` and `RetryStorage`. */
export interface RetryOptions {
  /**
   * How long one operation keeps retrying, in ms, counted from its first failure. `0`: no retry.
   * Default {@link DEFAULT_RETRY_FOR_MS}.
   */
  retryForMs?: number;
  /** Delay before the first retry, in ms. Default 500. */
  baseDelayMs?: number;
  /** Upper bound of one delay, in ms. Default 60 000. */
  maxDelayMs?: number;
  /** Told once when the storage stops answering (`what` is the operation, `retryForMs` the budget). */
  onOutage?: (what: string, err: StorageError, retryForMs: number) => void;
  /** Told once when the storage answers again after an outage, with how long it was down. */
  onRecovered?: (downMs: number) => void;
  /** Told once when an operation spent its budget in the current outage (the run is failing). */
  onGaveUp?: () => void;
  /**
   * For the reads of a storage that is one of several (restore, list, verify): when it returns true, a
   * read that fails on this storage while it is down is not retried, so that the caller reads from the
   * next storage at once. Retried as usual when it returns false (no other storage is up).
   */
  othersUp?: () => boolean;
}

/** Whether `err` is a `StorageError` after which the same call may succeed. */
export function isRetriable(err: unknown): err is StorageError {
  return err instanceof StorageError && err.retriable;
}

/**
 * Whether `err` is a `StorageError` because the storage's host name does not resolve (ENOTFOUND). Adapters
 * call it permanent (a mistyped host at the start of a run fails at once); a `Retrier` whose storage has
 * answered before retries it, since the name did resolve: the resolver is out, as with EAI_AGAIN.
 */
export function isUnknownHost(err: unknown): err is StorageError {
  return err instanceof StorageError && codeOf(err) === "ENOTFOUND";
}

/** The short cause of a storage error: the last part of its message (`connection refused`, `HTTP 503`). */
export function shortReason(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return (message.split(": ").at(-1) ?? message).replace(/ \([A-Z][A-Z0-9_]+\)$/, "");
}

/**
 * The retry policy of one storage: runs calls, retrying retriable failures until the budget is spent,
 * and tracks whether the storage is in an outage (for the one warning and the one notice).
 */
export class Retrier {
  readonly retryForMs: number;
  readonly #base: number;
  readonly #max: number;
  readonly #options: RetryOptions;
  /** When the current outage began (`performance.now()`), or undefined while the storage answers. */
  #downSince: number | undefined;
  /**
   * Set when an operation spent its whole budget in the current outage: the run is failing, so the calls
   * that follow (the clean-up of the failed run, the lock's release) get one try each, not a budget each.
   */
  #gaveUp = false;
  /** The last retriable failure, for `skipRead`. */
  #lastError: StorageError | undefined;
  /** Whether a call went through once: from then on an unknown host is an outage (`isUnknownHost`). */
  #answered = false;

  constructor(options: RetryOptions = {}) {
    this.#options = options;
    this.retryForMs = options.retryForMs ?? DEFAULT_RETRY_FOR_MS;
    this.#base = options.baseDelayMs ?? 500;
    this.#max = options.maxDelayMs ?? 60_000;
  }

  /** True while the storage is known not to answer. */
  get down(): boolean {
    return this.#downSince !== undefined;
  }

  /** Records that a call went through: ends an outage, with its notice. */
  succeeded(): void {
    this.#answered = true;
    if (this.#downSince === undefined) return;
    const down = performance.now() - this.#downSince;
    this.#downSince = undefined;
    this.#gaveUp = false;
    this.#options.onRecovered?.(down);
  }

  /**
   * Records a failure of a call that began its retries at `since` (undefined: the first failure), and
   * either returns the delay before the next try or throws: `err` itself when it is not retriable (an
   * unknown host is, once the storage has answered), the budget is 0, or the call is a read that another
   * storage can serve; a `StorageError` naming the operation and the time waited when the budget is spent.
   */
  failed(what: string, err: unknown, since: number | undefined, tries: number, read = false): number {
    if (this.#answered && !isRetriable(err) && isUnknownHost(err)) {
      // Thrown on as an outage too (a read goes to another storage, which retries this one as a last resort).
      err = new StorageError(err.message, { cause: err, retriable: true });
    }
    if (!isRetriable(err) || this.retryForMs <= 0) throw err;
    const now = performance.now();
    this.#lastError = err;
    if (this.#downSince === undefined) {
      this.#downSince = now;
      this.#options.onOutage?.(what, err, this.retryForMs);
    }
    if (read && this.#options.othersUp?.()) throw err;
    if (this.#gaveUp) {
      throw new StorageError(
        `${err.message}; gave up: no answer for ${formatDuration(now - (this.#downSince ?? now))} ` +
          `(--retry-for ${formatDuration(this.retryForMs)})`,
        { cause: err, retriable: false },
      );
    }
    const waited = now - (since ?? now);
    const left = this.retryForMs - waited;
    if (left <= 0) {
      this.#gaveUp = true;
      this.#options.onGaveUp?.();
      throw new StorageError(
        `${err.message}; gave up after retrying ${what} for ${formatDuration(waited)} ` +
          `(--retry-for ${formatDuration(this.retryForMs)})`,
        { cause: err, retriable: false },
      );
    }
    const delay = Math.min(this.#max, this.#base * 2 ** Math.min(tries - 1, 30)) * (0.5 + Math.random() / 2);
    return Math.min(delay, left);
  }

  /**
   * Records that the storage is down without a try (it did not open): reads skip it while another
   * storage is up, and its first success ends the outage with the usual notice. The caller has warned.
   */
  markDown(err: StorageError): void {
    this.#downSince ??= performance.now();
    this.#lastError = err;
  }

  /**
   * For a read: the error to fail with at once, without trying, while this storage is down and another
   * one is up (so that a restore does not try a dead server, or wait out its idle timeout, per object).
   */
  skipRead(): StorageError | undefined {
    if (this.#downSince === undefined || !this.#lastError || !this.#options.othersUp?.()) return undefined;
    return this.#lastError;
  }

  /**
   * Runs `call`, retrying retriable failures within the budget. `read`: see `RetryOptions.othersUp` (pass
   * false for a read with `CallOptions.lastResort`).
   */
  async run<T>(
    what: string,
    signal: AbortSignal | undefined,
    call: () => Promise<T>,
    read = false,
  ): Promise<T> {
    let since: number | undefined;
    const skip = read ? this.skipRead() : undefined;
    if (skip) throw skip;
    for (let tries = 1;; tries++) {
      try {
        const result = await call();
        this.succeeded();
        return result;
      } catch (err) {
        if (signal?.aborted) throw err;
        const delay = this.failed(what, err, since, tries, read);
        since ??= performance.now();
        await sleep(delay, signal);
      }
    }
  }
}

/** Retries retriable `StorageError`s; everything else passes through at once. */
export class RetryStorage implements Storage {
  readonly url: string;
  readonly #inner: Storage;
  readonly retrier: Retrier;

  constructor(inner: Storage, options: RetryOptions | Retrier = {}) {
    this.#inner = inner;
    this.url = inner.url;
    this.retrier = options instanceof Retrier ? options : new Retrier(options);
    // A streamed put cannot be replayed: only opening it is retried; its writes and commit pass through.
    if (canStreamPut(inner)) {
      this.openPut = (key, options) =>
        this.retrier.run(`writing "${key}"`, options?.signal, () => inner.openPut(key, options));
    }
    if (canReadInPlace(inner)) {
      this.getInto = (key, buffer, options) =>
        this.retrier.run(
          `reading "${key}"`,
          options?.signal,
          () => inner.getInto(key, buffer, options),
          !options?.lastResort,
        );
    }
    if (canDeleteLeftovers(inner)) {
      this.deleteLeftovers = (prefix, options) =>
        this.retrier.run(
          `deleting leftovers under "${prefix}"`,
          options?.signal,
          () => inner.deleteLeftovers(prefix, options),
        );
    }
  }

  /** Present when the inner storage has it (see `CleansLeftovers`). */
  readonly deleteLeftovers?: (prefix: string, options?: CallOptions) => Promise<number>;

  /** Present when the inner storage has it (see `ReadsInPlace`). */
  readonly getInto?: (key: string, buffer: Uint8Array, options?: CallOptions) => Promise<number>;

  /** Present when the inner storage has it (see `StreamingPut`). */
  readonly openPut?: (key: string, options?: CallOptions) => Promise<PutStream>;

  /** As the inner storage's. */
  get putHashes(): boolean {
    return hashesPuts(this.#inner);
  }

  put(key: string, data: Uint8Array, options?: PutOptions): Promise<void> {
    return this.retrier.run(`writing "${key}"`, options?.signal, () => this.#inner.put(key, data, options));
  }

  /**
   * Opens the object with retries; a retriable failure in the middle of the stream re-opens it at the
   * offset reached, so the reader sees one uninterrupted stream. The budget of a re-open counts from the
   * failure, and starts again once bytes flow.
   */
  async get(key: string, options?: CallOptions & { range?: Range }): Promise<ReadableStream<Uint8Array>> {
    const signal = options?.signal;
    const start = options?.range?.offset ?? 0;
    const length = options?.range?.length;
    const what = `reading "${key}"`;
    const open = (done: number) =>
      this.#inner.get(key, {
        signal,
        range: done === 0 && !options?.range
          ? undefined
          : { offset: start + done, length: length === undefined ? undefined : length - done },
      });
    const read = !options?.lastResort;
    let reader = (await this.retrier.run(what, signal, () => open(0), read)).getReader();
    let done = 0;
    return new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        let since: number | undefined;
        for (let tries = 1;; tries++) {
          try {
            if (since !== undefined) {
              reader = (await open(done)).getReader();
              this.retrier.succeeded();
            }
            const r = await reader.read();
            if (r.done) return controller.close();
            done += r.value.byteLength;
            controller.enqueue(r.value);
            return;
          } catch (err) {
            if (signal?.aborted) throw err;
            const delay = this.retrier.failed(what, err, since, tries, read);
            since ??= performance.now();
            await sleep(delay, signal);
          }
        }
      },
      cancel: (reason) => reader.cancel(reason),
    });
  }

  stat(key: string, options?: CallOptions): Promise<ObjectInfo> {
    return this.retrier.run(
      `checking "${key}"`,
      options?.signal,
      () => this.#inner.stat(key, options),
      !options?.lastResort,
    );
  }

  /** Lists with retries; a listing that fails midway starts again and skips keys already yielded. */
  list(prefix: string, options?: CallOptions): AsyncIterable<ObjectInfo> {
    return this.#listing(
      `listing "${prefix}"`,
      options,
      () => this.#inner.list(prefix, options),
      (i) => i.key,
    );
  }

  /** As `list`, for folders. */
  listFolders(prefix: string, options?: CallOptions): AsyncIterable<string> {
    return this.#listing(
      `listing the folders of "${prefix}"`,
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
    let since: number | undefined;
    const skip = this.retrier.skipRead();
    if (skip) throw skip;
    for (let tries = 1;; tries++) {
      try {
        for await (const item of source()) {
          if (since !== undefined) {
            since = undefined;
            tries = 1;
          }
          this.retrier.succeeded();
          const id = idOf(item);
          if (seen.has(id)) continue;
          seen.add(id);
          yield item;
        }
        this.retrier.succeeded();
        return;
      } catch (err) {
        if (options?.signal?.aborted) throw err;
        const delay = this.retrier.failed(what, err, since, tries, true);
        since ??= performance.now();
        await sleep(delay, options?.signal);
      }
    }
  }

  delete(key: string, options?: CallOptions): Promise<void> {
    return this.retrier.run(`deleting "${key}"`, options?.signal, () => this.#inner.delete(key, options));
  }

  close(): Promise<void> {
    return this.#inner.close();
  }

  /** The storage this decorator wraps (see unwrap.ts). */
  unwrap(): Storage {
    return this.#inner;
  }
}
