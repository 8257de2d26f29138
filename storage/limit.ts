/**
 * A Storage decorator that limits upload and download bandwidth (`--upload-limit`, `--download-limit`),
 * shared by every call through it, with a token bucket.
 * @module
 */
import type { CallOptions, ObjectInfo, PutOptions, PutStream, Range, Storage } from "./storage.ts";
import { canDeleteLeftovers, canReadInPlace, canStreamPut, hashesPuts } from "./storage.ts";

/** A token bucket: `take(n)` resolves once n bytes may pass at `rate` bytes per second. */
export class TokenBucket {
  #available: number;
  #last = performance.now();
  #queue: Promise<void> = Promise.resolve();
  constructor(readonly rate: number, readonly burst = Math.max(rate / 4, 64 * 1024)) {
    this.#available = this.burst;
  }

  /** Waits until `n` bytes may pass; callers are served in order. */
  take(n: number): Promise<void> {
    const turn = this.#queue.then(async () => {
      let need = n;
      while (need > 0) {
        const now = performance.now();
        this.#available = Math.min(this.burst, this.#available + ((now - this.#last) / 1000) * this.rate);
        this.#last = now;
        const used = Math.min(need, this.#available);
        this.#available -= used;
        need -= used;
        if (need > 0) {
          const wait = (Math.min(need, this.burst) / this.rate) * 1000;
          await new Promise((r) => setTimeout(r, wait));
        }
      }
    });
    this.#queue = turn;
    return turn;
  }
}

/**
 * Options of `LimitStorage`: bytes per second, or a bucket shared with other storages (so that one limit
 * covers them all); undefined means unlimited.
 */
export interface LimitOptions {
  upload?: number | TokenBucket;
  download?: number | TokenBucket;
}

/** Limits the bandwidth of puts and gets. */
export class LimitStorage implements Storage {
  readonly url: string;
  readonly #inner: Storage;
  readonly #up?: TokenBucket;
  readonly #down?: TokenBucket;

  constructor(inner: Storage, options: LimitOptions) {
    this.#inner = inner;
    this.url = inner.url;
    const bucket = (limit: number | TokenBucket | undefined) =>
      typeof limit === "number" ? (limit > 0 ? new TokenBucket(limit) : undefined) : limit;
    this.#up = bucket(options.upload);
    this.#down = bucket(options.download);
    if (canDeleteLeftovers(inner)) this.deleteLeftovers = (prefix, o) => inner.deleteLeftovers(prefix, o);
    if (canStreamPut(inner)) {
      const up = this.#up;
      // Each piece is paid for before it is written, as a put is.
      this.openPut = async (key, o) => {
        const put = await inner.openPut(key, o);
        if (!up) return put;
        return {
          write: async (chunk) => {
            await up.take(chunk.byteLength);
            return put.write(chunk);
          },
          commit: () => put.commit(),
          abort: () => put.abort(),
        };
      };
    }
    // Under a download limit, reads stream (`get`), so that the bytes arrive at the rate, not in bursts.
    if (canReadInPlace(inner) && !this.#down) {
      this.getInto = (key, buffer, o) => inner.getInto(key, buffer, o);
    }
  }

  /** Present when the inner storage has it (see `StreamingPut`), within the upload limit. */
  readonly openPut?: (key: string, options?: CallOptions) => Promise<PutStream>;

  /** Present when the inner storage has it (see `ReadsInPlace`) and there is no download limit. */
  readonly getInto?: (key: string, buffer: Uint8Array, options?: CallOptions) => Promise<number>;

  /** Present when the inner storage has it (see `CleansLeftovers`). */
  readonly deleteLeftovers?: (prefix: string, options?: CallOptions) => Promise<number>;

  /** As the inner storage's. */
  get putHashes(): boolean {
    return hashesPuts(this.#inner);
  }

  async put(key: string, data: Uint8Array, options?: PutOptions): Promise<void> {
    // Pay for the bytes before sending them: a put is one request with a known size.
    await this.#up?.take(data.byteLength);
    return this.#inner.put(key, data, options);
  }

  async get(key: string, options?: CallOptions & { range?: Range }): Promise<ReadableStream<Uint8Array>> {
    const stream = await this.#inner.get(key, options);
    const bucket = this.#down;
    if (!bucket) return stream;
    return stream.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        async transform(chunk, controller) {
          await bucket.take(chunk.byteLength);
          controller.enqueue(chunk);
        },
      }),
    );
  }

  stat(key: string, options?: CallOptions): Promise<ObjectInfo> {
    return this.#inner.stat(key, options);
  }

  list(prefix: string, options?: CallOptions): AsyncIterable<ObjectInfo> {
    return this.#inner.list(prefix, options);
  }

  listFolders(prefix: string, options?: CallOptions): AsyncIterable<string> {
    return this.#inner.listFolders(prefix, options);
  }

  delete(key: string, options?: CallOptions): Promise<void> {
    return this.#inner.delete(key, options);
  }

  close(): Promise<void> {
    return this.#inner.close();
  }

  /** The storage this decorator wraps (see unwrap.ts). */
  unwrap(): Storage {
    return this.#inner;
  }
}
