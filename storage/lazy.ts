/**
 * A storage opened on its first call: for one of several storages that was down when the command started,
 * so that a read no other storage can serve still reaches it (through its retry decorator) later in the run.
 * @module
 */
import {
  type CallOptions,
  canDeleteLeftovers,
  type CleansLeftovers,
  type ObjectInfo,
  type PutOptions,
  type Range,
  type Storage,
} from "./storage.ts";

/**
 * Opens the storage with `open` on the first call (again on the next call when opening failed). What the
 * storage can do is known only once it is open: `deleteLeftovers` opens it and frees nothing (0) when it
 * has no leftovers to clean (`CleansLeftovers`).
 */
export class LazyStorage implements Storage, CleansLeftovers {
  readonly url: string;
  readonly #open: () => Promise<Storage>;
  #opening: Promise<Storage> | undefined;

  constructor(url: string, open: () => Promise<Storage>) {
    this.url = url;
    this.#open = open;
  }

  #storage(): Promise<Storage> {
    if (this.#opening) return this.#opening;
    const opening = this.#open();
    opening.catch(() => {
      if (this.#opening === opening) this.#opening = undefined;
    });
    return this.#opening = opening;
  }

  async put(key: string, data: Uint8Array, options?: PutOptions): Promise<void> {
    return (await this.#storage()).put(key, data, options);
  }

  async get(key: string, options?: CallOptions & { range?: Range }): Promise<ReadableStream<Uint8Array>> {
    return (await this.#storage()).get(key, options);
  }

  async stat(key: string, options?: CallOptions): Promise<ObjectInfo> {
    return (await this.#storage()).stat(key, options);
  }

  async *list(prefix: string, options?: CallOptions): AsyncIterable<ObjectInfo> {
    yield* (await this.#storage()).list(prefix, options);
  }

  async *listFolders(prefix: string, options?: CallOptions): AsyncIterable<string> {
    yield* (await this.#storage()).listFolders(prefix, options);
  }

  async delete(key: string, options?: CallOptions): Promise<void> {
    return (await this.#storage()).delete(key, options);
  }

  async deleteLeftovers(prefix: string, options?: CallOptions): Promise<number> {
    const storage = await this.#storage();
    return canDeleteLeftovers(storage) ? await storage.deleteLeftovers(prefix, options) : 0;
  }

  async close(): Promise<void> {
    const opened = await this.#opening?.catch(() => undefined);
    await opened?.close();
  }
}
