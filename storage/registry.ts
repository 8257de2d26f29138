/**
 * Turns a storage spec given on the command line (a path or a URL) into a Storage.
 * @module
 */
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { messageOf, UsageError } from "../base/errors.ts";
import { LocalStorage } from "./local.ts";
import type { FtpSettings } from "./ftp.ts";
import type { S3Settings } from "./s3.ts";
import type { SftpSettings } from "./sftp.ts";
import type { Storage } from "./storage.ts";

/** Options of `openStorage()`. */
export interface OpenStorageOptions {
  /** Create a missing storage (backup) instead of failing (restore, list). */
  create: boolean;
  /**
   * Milliseconds a request of a remote storage may move no byte, either way, before it fails with a
   * retriable `StorageError` (`--io-timeout`). Default: each storage's own (2 minutes).
   */
  ioTimeoutMs?: number;
  /** Endpoint, region and addressing for `s3://` (`--s3-*` options); each defaults to its `FROST_S3_*` variable. */
  s3?: S3Settings;
  /** Key, known_hosts file and host key acceptance for `sftp://` (`--sftp-*` options); see `SftpSettings`. */
  sftp?: SftpSettings;
  /** Password file and CA file for `ftp://` and `ftps://` (`--ftp-*` options); see `FtpSettings`. */
  ftp?: FtpSettings;
}

type Opener = (spec: string, options: OpenStorageOptions) => Promise<Storage>;

/**
 * The URL schemes frost knows, in one place: those it opens, and those planned. A spec without a scheme
 * is a local path.
 */
const SCHEMES: Record<string, { shown: string; open: Opener }> = {
  file: { shown: "file:// paths", open: openFileUrl },
  s3: { shown: "s3://bucket/prefix", open: openS3 },
  swift: { shown: "swift://container/prefix", open: openSwift },
  sftp: { shown: "sftp://user@host/path", open: openSftp },
  ftp: { shown: "ftp://user@host/path", open: openFtp },
  ftps: { shown: "ftps://user@host/path", open: openFtp },
};
const PLANNED_SCHEMES: string[] = [];

/**
 * Opens the storage that `spec` names:
 * - a path (relative ones are resolved against the current folder) or a `file:///abs/path` URL: a
 *   `LocalStorage`, checked by `LocalStorage.open()`;
 * - `s3://bucket[/prefix]`: an `S3Storage` (`S3Storage.open()`) with `options.s3`, credentials from the AWS
 *   SDK's default chain;
 * - `swift://container[/prefix]`: a `SwiftStorage` (`SwiftStorage.open()`), credentials from the `ST_*` or
 *   `OS_*` variables;
 * - `sftp://user@host[:port]/path`: an `SftpStorage` (`SftpStorage.open()`) with `options.sftp`, key
 *   authentication, host key checked against known_hosts;
 * - `ftp://user@host[:port]/path` and `ftps://…` (explicit TLS): an `FtpStorage` (`FtpStorage.open()`) with
 *   `options.ftp`, password from `$FROST_FTP_PASSWORD` or a file.
 *
 * There is no `memory://` here: a storage that keeps nothing past the process is no place for a backup (tests
 * use `MemoryStorage` directly).
 *
 * Rejects with `UsageError` for an empty spec or an unknown scheme, and with `StorageError` when the
 * storage is missing or unusable.
 *
 * @example
 * ```ts
 * import { openStorage } from "./registry.ts";
 * const storage = await openStorage("/tmp/frost-example", { create: true });
 * console.log(storage.url); // file:///tmp/frost-example
 * ```
 */
export async function openStorage(spec: string, options: OpenStorageOptions): Promise<Storage> {
  if (spec === "") throw new UsageError("Cannot open storage: the storage path is empty");
  const scheme = schemeOf(spec);
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
  const and = (items: string[]) =>
    items.length > 1 ? `${items.slice(0, -1).join(", ")} and ${items.at(-1)}` : items.join("");
  const supported = and(Object.values(SCHEMES).map((s) => s.shown));
  if (PLANNED_SCHEMES.length === 0) return `frost supports ${supported}`;
  const verb = PLANNED_SCHEMES.length > 1 ? "are" : "is";
  return `frost supports ${supported} (${and(PLANNED_SCHEMES)} ${verb} planned)`;
}

/** The URL scheme of a storage spec, lower case; undefined for a local path. */
function schemeOf(spec: string): string | undefined {
  return /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//.exec(spec)?.[1]?.toLowerCase();
}

/**
 * The folder a storage spec names when it is a local storage (a path, resolved, or a `file://` URL);
 * undefined for a remote one or a bad `file://` URL (which `openStorage` reports).
 */
export function localStoragePath(spec: string): string | undefined {
  const scheme = schemeOf(spec);
  if (scheme === undefined) return path.resolve(spec);
  if (scheme !== "file") return undefined;
  try {
    return fileURLToPath(new URL(spec));
  } catch {
    return undefined;
  }
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

// The SDKs load only when their scheme is used, so that local backups start fast.
async function openS3(spec: string, options: OpenStorageOptions): Promise<Storage> {
  const { S3Storage } = await import("./s3.ts");
  return await openRemote(() =>
    S3Storage.open(spec, { ...options.s3, create: options.create, idleTimeout: options.ioTimeoutMs })
  );
}

async function openSwift(spec: string, options: OpenStorageOptions): Promise<Storage> {
  const { SwiftStorage } = await import("./swift.ts");
  return await openRemote(() =>
    SwiftStorage.open(spec, { create: options.create, idleTimeout: options.ioTimeoutMs })
  );
}

async function openSftp(spec: string, options: OpenStorageOptions): Promise<Storage> {
  const { SftpStorage } = await import("./sftp.ts");
  return await openRemote(() =>
    SftpStorage.open(spec, { ...options.sftp, create: options.create, idleTimeout: options.ioTimeoutMs })
  );
}

async function openFtp(spec: string, options: OpenStorageOptions): Promise<Storage> {
  const { FtpStorage } = await import("./ftp.ts");
  return await openRemote(() =>
    FtpStorage.open(spec, { ...options.ftp, create: options.create, timeout: options.ioTimeoutMs })
  );
}

/** Runs `open`, reporting a malformed URL or option (a TypeError or RangeError) as a UsageError. */
async function openRemote(open: () => Promise<Storage>): Promise<Storage> {
  try {
    return await open();
  } catch (err) {
    // The adapters' messages already name the storage or the option.
    if (err instanceof TypeError || err instanceof RangeError) {
      throw new UsageError(messageOf(err), { cause: err });
    }
    throw err;
  }
}
