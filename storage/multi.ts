/**
 * Several storages as one (`--storage A --storage B`): every write goes to all of them, reads come from the
 * first that has the object and fall back to the next on a read error.
 * @module
 */
import type { CallOptions, ObjectInfo, PutOptions, Range, Storage } from "./storage.ts";
import { NotFoundError, readAll, StorageError } from "./storage.ts";
import { messageOf } from "../base/errors.ts";
import { asStorage } from "./unwrap.ts";

/**
 * Writes to every storage; a put succeeds only when it succeeded everywhere, so the manifest (written
 * last) commits a backup only once every storage has all of it. Reads try the storages in order.
 */
export class MultiStorage implements Storage {
  readonly url: string;
  readonly storages: readonly Storage[];

  constructor(storages: readonly Storage[]) {
    if (storages.length === 0) throw new TypeError("MultiStorage needs at least one storage");
    this.storages = storages;
    this.url = storages.map((s) => s.url).join(" + ");
  }

  /** True when any of the storages hashes what it puts. */
  get putHashes(): boolean {
    return this.storages.some((s) => s.putHashes === true);
  }

  async put(key: string, data: Uint8Array, options?: PutOptions): Promise<void> {
    const results = await Promise.allSettled(this.storages.map((s) => s.put(key, data, options)));
    const failed = results.flatMap((r, i) =>
      r.status === "rejected" ? [[this.storages[i]!, r.reason] as const] : []
    );
    if (failed.length === 0) return;
    if (failed.length === 1) throw failed[0]![1];
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
    const bytes = await this.#first(async (s) => readAll(await s.get(key, options)));
    return new ReadableStream({
      start(controller) {
        if (bytes.byteLength > 0) controller.enqueue(bytes);
        controller.close();
      },
    });
  }

  stat(key: string, options?: CallOptions): Promise<ObjectInfo> {
    return this.#first((s) => s.stat(key, options));
  }

  /** Every key present on any storage, once. */
  async *list(prefix: string, options?: CallOptions): AsyncIterable<ObjectInfo> {
    const seen = new Set<string>();
    for (const storage of this.storages) {
      for await (const info of storage.list(prefix, options)) {
        if (seen.has(info.key)) continue;
        seen.add(info.key);
        yield info;
      }
    }
  }

  /** Every folder present on any storage, once. */
  async *listFolders(prefix: string, options?: CallOptions): AsyncIterable<string> {
    const seen = new Set<string>();
    for (const storage of this.storages) {
      for await (const name of storage.listFolders(prefix, options)) {
        if (seen.has(name)) continue;
        seen.add(name);
        yield name;
      }
    }
  }

  async delete(key: string, options?: CallOptions): Promise<void> {
    const results = await Promise.allSettled(this.storages.map((s) => s.delete(key, options)));
    const failed = results.find((r) => r.status === "rejected") as PromiseRejectedResult | undefined;
    if (failed) throw failed.reason;
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.storages.map((s) => s.close()));
  }

  async #first<T>(call: (s: Storage) => Promise<T>): Promise<T> {
    const errors: unknown[] = [];
    for (const storage of this.storages) {
      try {
        return await call(storage);
      } catch (err) {
        errors.push(err);
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
