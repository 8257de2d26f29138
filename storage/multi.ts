/**
 * Several storages as one (`--storage A --storage B`): every write goes to all of them, reads come from the
 * first that has the object and fall back to the next on a read error.
 * @module
 */
import type { CallOptions, ObjectInfo, PutOptions, Range, Storage } from "./storage.ts";
import { canDeleteLeftovers, hashesPuts, NotFoundError, readAll, StorageError } from "./storage.ts";
import { messageOf } from "../base/errors.ts";
import { asStorage } from "./unwrap.ts";

/**
 * Writes to every storage; a put succeeds only when it succeeded everywhere, so the manifest (written
 * last) commits a backup only once every storage has all of it. Reads try the storages in order.
 */
export class MultiStorage implements Storage {
  readonly url: string;
  readonly storages: readonly Storage[];
  /**
   * Storages that were down when the command started: not written, listed or verified, only read as a
   * last resort when none of `storages` has the object (`CallOptions.lastResort`).
   */
  readonly standby: readonly Storage[];

  constructor(storages: readonly Storage[], options: { standby?: readonly Storage[] } = {}) {
    if (storages.length === 0) throw new TypeError("MultiStorage needs at least one storage");
    this.storages = storages;
    this.standby = options.standby ?? [];
    this.url = storages.map((s) => s.url).join(" + ");
  }

  /** Removes the leftovers under `prefix` on every storage that has them (`CleansLeftovers`). */
  async deleteLeftovers(prefix: string, options?: CallOptions): Promise<number> {
    let freed = 0;
    for (const s of this.storages) {
      freed += canDeleteLeftovers(s) ? await s.deleteLeftovers(prefix, options) : 0;
    }
    return freed;
  }

  /** True when any of the storages hashes what it puts. */
  get putHashes(): boolean {
    return this.storages.some(hashesPuts);
  }

  async put(key: string, data: Uint8Array, options?: PutOptions): Promise<void> {
    const results = await Promise.allSettled(this.storages.map((s) => s.put(key, data, options)));
    const failed = results.flatMap((r, i) =>
      r.status === "rejected" ? [[this.storages[i]!, r.reason] as const] : []
    );
    if (failed.length === 0) return;
    if (failed.length === 1) {
      const [storage, err] = failed[0]!;
      if (!(err instanceof StorageError) || err.retriable) throw err;
      throw new StorageError(
        `${err.message}; to back up to the other storages meanwhile, run without --storage ${storage.url}`,
        { cause: err },
      );
    }
    throw new StorageError(
      `Cannot write "${key}" to ${failed.length} storages: ${
        failed.map(([s, e]) => `${s.url}: ${messageOf(e)}`).join("; ")
      }`,
      { cause: failed[0]![1], retriable: failed.every(([, e]) => e instanceof StorageError && e.retriable) },
    );
  }

  /**
   * Reads the whole object from the first storage that has it; on any read error (missing, corrupt
   * transfer, server down) the next storage is tried. Objects are segments (bounded by --segment-size),
   * so buffering one is fine.
   */
  async get(key: string, options?: CallOptions & { range?: Range }): Promise<ReadableStream<Uint8Array>> {
    const bytes = await this.#first(async (s, last) => readAll(await s.get(key, { ...options, ...last })));
    return new ReadableStream({
      start(controller) {
        if (bytes.byteLength > 0) controller.enqueue(bytes);
        controller.close();
      },
    });
  }

  stat(key: string, options?: CallOptions): Promise<ObjectInfo> {
    return this.#first((s, last) => s.stat(key, { ...options, ...last }));
  }

  /**
   * Every key present on any storage, once. A storage that fails with a retriable error (it is down: its
   * retry decorator gave up at once because another storage is up) is skipped, as long as another one
   * listed; the warning is its decorator's.
   */
  list(prefix: string, options?: CallOptions): AsyncIterable<ObjectInfo> {
    return this.#union((s) => s.list(prefix, options), (info) => info.key);
  }

  /** Every folder present on any storage, once; a storage that is down is skipped as by `list`. */
  listFolders(prefix: string, options?: CallOptions): AsyncIterable<string> {
    return this.#union((s) => s.listFolders(prefix, options), (name) => name);
  }

  async *#union<T>(source: (s: Storage) => AsyncIterable<T>, idOf: (item: T) => string): AsyncIterable<T> {
    const seen = new Set<string>();
    let failure: unknown;
    let listed = false;
    for (const storage of this.storages) {
      try {
        for await (const item of source(storage)) {
          const id = idOf(item);
          if (seen.has(id)) continue;
          seen.add(id);
          yield item;
        }
        listed = true;
      } catch (err) {
        if (!(err instanceof StorageError && err.retriable)) throw err;
        failure ??= err;
      }
    }
    if (!listed && failure !== undefined) throw failure;
  }

  async delete(key: string, options?: CallOptions): Promise<void> {
    const results = await Promise.allSettled(this.storages.map((s) => s.delete(key, options)));
    const failed = results.find((r) => r.status === "rejected") as PromiseRejectedResult | undefined;
    if (failed) throw failed.reason;
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.storages, ...this.standby].map((s) => s.close()));
  }

  /**
   * The first storage's answer; a storage that is down (retriable failure: its decorator skipped it while
   * another was up), then each standby storage, is retried within its budget, as a last resort, when no
   * other one had the object.
   */
  async #first<T>(call: (s: Storage, options: { lastResort?: boolean }) => Promise<T>): Promise<T> {
    const errors: unknown[] = [];
    const down: Storage[] = [];
    for (const storage of this.storages) {
      try {
        return await call(storage, {});
      } catch (err) {
        errors.push(err);
        if (err instanceof StorageError && err.retriable) down.push(storage);
      }
    }
    for (const storage of [...down, ...this.standby]) {
      try {
        return await call(storage, { lastResort: true });
      } catch (err) {
        const i = this.storages.indexOf(storage);
        if (i >= 0) errors[i] = err;
        else if (!(err instanceof NotFoundError)) errors.push(err);
      }
    }
    if (errors.every((e) => e instanceof NotFoundError)) throw errors[0];
    const real = errors.find((e) => !(e instanceof NotFoundError));
    throw real;
  }
}

/** The storages behind `storage`: the members of a MultiStorage (behind any decorator), or `storage` alone. */
export function storagesOf(storage: Storage): readonly Storage[] {
  return asStorage(storage, MultiStorage)?.storages ?? [storage];
}

/** The storages read as a last resort behind `storage` (`MultiStorage.standby`), or none. */
export function standbyOf(storage: Storage): readonly Storage[] {
  return asStorage(storage, MultiStorage)?.standby ?? [];
}
