/**
 * Turns a storage spec given on the command line (a path or a URL) into a Storage.
 * @module
 */
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { messageOf, UsageError } from "../errors.ts";
import { LocalStorage } from "./local.ts";
import { MemoryStorage } from "./memory.ts";
import { type Storage, StorageError } from "./storage.ts";

/** Options of `openStorage()`. */
export interface OpenStorageOptions {
  /** Create a missing storage (backup) instead of failing (restore, list). */
  create: boolean;
}

type Opener = (spec: string, options: OpenStorageOptions) => Promise<Storage>;

/**
 * The URL schemes frost knows, in one place: those it opens, and those planned. A spec without a scheme
 * is a local path.
 */
const SCHEMES: Record<string, { shown: string; open: Opener }> = {
  file: { shown: "file:// paths", open: openFileUrl },
  memory: { shown: "memory://", open: openMemory },
};
const PLANNED_SCHEMES = ["s3", "swift", "sftp", "ftp"];

/** Process-wide named memory storages, so that several commands in one test process share one. */
const memoryStorages = new Map<string, MemoryStorage>();

/**
 * Opens the storage that `spec` names:
 * - a path (relative ones are resolved against the current folder) or a `file:///abs/path` URL: a
 *   `LocalStorage`, checked by `LocalStorage.open()`;
 * - `memory://name`: a `MemoryStorage` shared by every `openStorage()` of that name in this process (for
 *   tests); with `create: false` it must have been opened with `create: true` before.
 *
 * Rejects with `UsageError` for an empty spec or an unknown scheme, and with `StorageError` when the
 * storage is missing or unusable.
 *
 * @example
 * ```ts
 * import { openStorage } from "./registry.ts";
 * const storage = await openStorage("memory://example", { create: true });
 * console.log(storage.url); // memory://example
 * ```
 */
export async function openStorage(spec: string, options: OpenStorageOptions): Promise<Storage> {
  if (spec === "") throw new UsageError("Cannot open storage: the storage path is empty");
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//.exec(spec)?.[1]?.toLowerCase();
  if (scheme === undefined) return await LocalStorage.open(path.resolve(spec), options);
  const known = SCHEMES[scheme];
  if (known === undefined) throw new UsageError(`Unknown storage "${spec}": ${supportedText()}`);
  return await known.open(spec, options);
}

/**
 * The storage used when none is given:
 * 1. `$FROST_STORAGE` when set and not empty (any spec `openStorage()` accepts);
 * 2. `/var/backups/frost` when running as root;
 * 3. `$XDG_DATA_HOME/frost` when `$XDG_DATA_HOME` is an absolute path;
 * 4. `~/.local/share/frost` otherwise.
 *
 * `options.env` defaults to `process.env` and `options.uid` to `process.getuid()` (for tests).
 */
export function defaultStoragePath(
  options: { env?: Record<string, string | undefined>; uid?: number } = {},
): string {
  const env = options.env ?? process.env;
  const fromEnv = env.FROST_STORAGE;
  if (fromEnv !== undefined && fromEnv !== "") return fromEnv;
  if ((options.uid ?? process.getuid?.()) === 0) return "/var/backups/frost";
  const dataHome = env.XDG_DATA_HOME;
  // The XDG spec says relative values are invalid and must be ignored.
  if (dataHome !== undefined && path.isAbsolute(dataHome)) return path.join(dataHome, "frost");
  return path.join(env.HOME || os.homedir(), ".local", "share", "frost");
}

function supportedText(): string {
  const supported = Object.values(SCHEMES).map((s) => s.shown).join(" and ");
  const planned = PLANNED_SCHEMES.length > 1
    ? `${PLANNED_SCHEMES.slice(0, -1).join(", ")} and ${PLANNED_SCHEMES.at(-1)} are planned`
    : `${PLANNED_SCHEMES.join("")} is planned`;
  return `frost supports ${supported} (${planned})`;
}

async function openFileUrl(spec: string, options: OpenStorageOptions): Promise<Storage> {
  let file: string;
  try {
    file = fileURLToPath(new URL(spec));
  } catch (err) {
    throw new UsageError(`Cannot use storage "${spec}": ${messageOf(err)} (use file:///absolute/path)`, {
      cause: err,
    });
  }
  return await LocalStorage.open(file, options);
}

function openMemory(spec: string, options: OpenStorageOptions): Promise<Storage> {
  const name = spec.slice(spec.indexOf("://") + 3);
  let storage = memoryStorages.get(name);
  if (storage === undefined) {
    if (!options.create) return Promise.reject(new StorageError(`Storage "${spec}" does not exist`));
    storage = new MemoryStorage(name);
    memoryStorages.set(name, storage);
  }
  return Promise.resolve(storage);
}
