/**
 * The Storage contract (after restic's backend contract). Every storage — local, memory, and the remote
 * ones — implements it and passes the shared conformance suite in `tests/storage/conformance.ts`.
 *
 * Keys are relative, `/`-separated paths such as `web1_etc/manifests/20261127T101500.123Z.json`. They never
 * start with `/`, never contain empty, `.` or `..` components, and are otherwise arbitrary UTF-8.
 * @module
 */
import { concatBytes } from "../base/bytes.ts";

export { concatBytes };

/** What `stat()` and `list()` report of one stored object. */
export interface ObjectInfo {
  /** The key, relative to the storage root. */
  key: string;
  /** Size in bytes. */
  size: number;
  /** Last modification time, where the storage knows it. */
  modified?: Date;
}

/** A byte range for `get()`: `length` omitted means "to the end". */
export interface Range {
  offset: number;
  length?: number;
}

/** Options every call accepts. */
export interface CallOptions {
  signal?: AbortSignal;
  /**
   * For a read from one of several storages: no other storage had the object (or only a corrupt one), so
   * a storage that is down is tried within its retry budget instead of being skipped. Default false.
   */
  lastResort?: boolean;
}

/** Options of `put`. */
export interface PutOptions extends CallOptions {
  /**
   * The hex SHA-256 of the bytes, when the caller has it. A storage whose protocol sends one (`HashesPuts`)
   * uses it instead of hashing the bytes again; the others ignore it. It must be right: the server rejects
   * the put otherwise.
   */
  sha256?: string;
  /**
   * The object need not outlive a crash of the machine, only be whole if it does (a lock: its holder does
   * not outlive it either). A storage may then leave out making its name durable (a local folder's fsync);
   * the bytes are still flushed before the name appears. Default false.
   */
  ephemeral?: boolean;
}

/**
 * A place where frost keeps objects.
 *
 * Rules every implementation keeps:
 * - `put` is all-or-nothing: a reader never sees a partly written object, and a failed or aborted put
 *   leaves either nothing or the previous object. It may be called again with the same bytes (retry).
 * - `get` and `stat` reject with `NotFoundError` for a missing key.
 * - `list(prefix)` yields every object whose key starts with `prefix` exactly once, in no set order.
 *   `prefix` is `""` or ends with `/`, so `host_web/` never matches `host_web2/`.
 * - `listFolders(prefix)` yields, once each and in no set order, the names of the folders right below
 *   `prefix`: every `name` such that some key starts with `prefix + name + "/"`. A storage on a file system
 *   may also yield a folder that holds no object any more, S3 one that holds only unfinished multipart uploads
 *   (what `CleansLeftovers` removes). It reads one level, not the whole tree.
 * - `delete` of a missing key succeeds (idempotent).
 * - Every other failure is a `StorageError` saying whether a retry may help, with the original as `cause`.
 * - No retry loops inside an adapter: retries are a decorator composed once in `openStorages`
 *   (commands/cli.ts).
 *
 * A storage may also have optional capabilities (`StreamingPut`, `ReadsInPlace`, `CleansLeftovers`,
 * `HashesPuts`, below), which callers test for with their guards (`canStreamPut`…).
 */
export interface Storage {
  /** A display form of where this storage is (no secrets), e.g. `file:///var/backups/frost`. */
  readonly url: string;
  put(key: string, data: Uint8Array, options?: PutOptions): Promise<void>;
  get(key: string, options?: CallOptions & { range?: Range }): Promise<ReadableStream<Uint8Array>>;
  stat(key: string, options?: CallOptions): Promise<ObjectInfo>;
  list(prefix: string, options?: CallOptions): AsyncIterable<ObjectInfo>;
  listFolders(prefix: string, options?: CallOptions): AsyncIterable<string>;
  delete(key: string, options?: CallOptions): Promise<void>;
  /** Releases connections. Safe to call more than once. */
  close(): Promise<void>;
}

/*
 * Optional capabilities: a storage that has one implements its small interface beside `Storage`, the
 * decorators (retry, limit, multi) forward it, and callers test for it with its guard.
 */

/** A put whose bytes arrive in pieces (local folders). */
export interface StreamingPut {
  /**
   * A put for a storage that need not hold a whole object in memory. The same all-or-nothing rule as
   * `put`: nothing is visible under `key` (and `list` shows nothing new) until `commit()` resolves;
   * `abort()`, a failed write or a failed commit leave the key as it was. Unlike `put`, it cannot be
   * replayed, so the retry decorator passes it through once.
   */
  openPut(key: string, options?: CallOptions): Promise<PutStream>;
}

/** Whole-object reads into the caller's buffer, for storages that can read without allocating. */
export interface ReadsInPlace {
  /**
   * Reads the whole object `key` into `buffer` and returns its size, or `buffer.byteLength` when the
   * object is at least that big (so a caller that passes one byte more than it expects notices a bigger
   * object). `NotFoundError` when missing.
   */
  getInto(key: string, buffer: Uint8Array, options?: CallOptions): Promise<number>;
}

/** Clean-up of what writes that never committed left behind (temp files), which `list` does not show. */
export interface CleansLeftovers {
  /**
   * Removes the leftovers under `prefix` (the temp files of a process killed in the middle of a put);
   * resolves to the bytes freed. Only for a prefix that no put is writing to (frost calls it for the
   * backups of dead runs, under the series lock).
   */
  deleteLeftovers(prefix: string, options?: CallOptions): Promise<number>;
}

/** A storage whose `put` hashes the bytes itself (S3's signature covers the payload's SHA-256). */
export interface HashesPuts {
  /**
   * True when `put` hashes the bytes (SHA-256) unless given `options.sha256`. A caller that needs the hash
   * anyway then hashes first and passes it on.
   */
  readonly putHashes: boolean;
}

/** Whether `storage` has `openPut` (`StreamingPut`). */
export function canStreamPut(storage: Storage): storage is Storage & StreamingPut {
  return typeof (storage as Partial<StreamingPut>).openPut === "function";
}

/** Whether `storage` has `getInto` (`ReadsInPlace`). */
export function canReadInPlace(storage: Storage): storage is Storage & ReadsInPlace {
  return typeof (storage as Partial<ReadsInPlace>).getInto === "function";
}

/** Whether `storage` has `deleteLeftovers` (`CleansLeftovers`). */
export function canDeleteLeftovers(storage: Storage): storage is Storage & CleansLeftovers {
  return typeof (storage as Partial<CleansLeftovers>).deleteLeftovers === "function";
}

/** Whether `storage`'s `put` hashes the bytes itself (`HashesPuts`). */
export function hashesPuts(storage: Storage): boolean {
  return (storage as Partial<HashesPuts>).putHashes === true;
}

/** An object being written by `StreamingPut.openPut`. */
export interface PutStream {
  /** Appends bytes; the caller may reuse `chunk` once the promise resolves. */
  write(chunk: Uint8Array): Promise<void>;
  /** Makes the object visible under its key, durably where the storage can. */
  commit(): Promise<void>;
  /** Drops what was written. Safe to call at any time, also after a failure or a commit (then a no-op). */
  abort(): Promise<void>;
}

/** A storage failure. `retriable` says whether trying the same call again may succeed. */
export class StorageError extends Error {
  override name = "StorageError";
  readonly retriable: boolean;
  constructor(message: string, options: { cause?: unknown; retriable?: boolean } = {}) {
    super(message, { cause: options.cause });
    this.retriable = options.retriable ?? false;
  }
}

/** The key does not exist. Never retriable. */
export class NotFoundError extends StorageError {
  override name = "NotFoundError";
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, { cause: options.cause, retriable: false });
  }
}

/** Reads a whole object into memory (for small objects: manifests, states, segments). */
export async function getBytes(storage: Storage, key: string, options?: CallOptions): Promise<Uint8Array> {
  return readAll(await storage.get(key, options));
}

/** Collects a byte stream into one array. */
export async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return chunks.length === 1 ? chunks[0]! : concatBytes(chunks);
}
