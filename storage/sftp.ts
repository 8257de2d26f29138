/**
 * A storage in a folder of an SSH server, over SFTP (npm `ssh2`, pure JavaScript): each key is a file under
 * the root folder, `/` separating folders.
 *
 * URL: `sftp://user@host[:port]/absolute/path`. The path is absolute on the server; `sftp://user@host/~/rel`
 * (or no path at all) is relative to the user's home folder. Without `user@`, the local user name is used.
 *
 * Authentication is by key only (no password: a password in the URL is a usage error). The server's host
 * key is checked against an OpenSSH `known_hosts` file (plain and hashed entries, `[host]:port` form): an
 * unknown host is refused unless `acceptNewHostKey` is set, which then appends its key; a changed or
 * revoked key is always refused.
 *
 * Writes are all-or-nothing: temp file in the target folder → fsync (when the server has the
 * fsync@openssh.com extension) → rename over the key (posix-rename@openssh.com, else unlink + rename).
 * One SSH connection carries every call, with several SFTP requests in flight; it is opened again by the
 * next call after it drops.
 * @module
 */
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { Buffer } from "node:buffer";
import {
  Client,
  type ConnectConfig,
  type ServerHostKeyAlgorithm,
  type SFTPWrapper,
  type Stats,
  utils,
} from "ssh2";
import { messageOf, UsageError } from "../base/errors.ts";
import { checkPrefix, checkRange } from "./_key.ts";
import {
  checkHostKey,
  fingerprint,
  formatKnownHost,
  hostKeyAlgorithms,
  hostName,
  keyType,
  type KnownHost,
  parseKnownHosts,
} from "./_known_hosts.ts";
import {
  checkedOpen,
  checkObjectKey,
  codeOf,
  deleteTempFiles,
  emptyStream,
  networkFailure,
  nonEmpty,
  oneLine,
  parseRemoteUrl,
  remoteRoot,
  TEMP_PREFIX,
  tempName,
  walkConcurrently,
} from "./_remote_fs.ts";
import {
  type CallOptions,
  type CleansLeftovers,
  NotFoundError,
  type ObjectInfo,
  type Range,
  type Storage,
  StorageError,
} from "./storage.ts";

/**
 * The settings a user gives on the command line (`--sftp-key`, `--sftp-known-hosts`,
 * `--sftp-accept-new-host-key`).
 */
export interface SftpSettings {
  /**
   * Private key file (OpenSSH or PEM format). Default: `$FROST_SFTP_KEY`, else the first of
   * `~/.ssh/id_ed25519`, `~/.ssh/id_ecdsa`, `~/.ssh/id_rsa` that exists. An encrypted key is opened with
   * `$FROST_SFTP_KEY_PASSPHRASE`.
   */
  key?: string;
  /** The known_hosts file. Default: `$FROST_SFTP_KNOWN_HOSTS`, else `~/.ssh/known_hosts`. */
  knownHosts?: string;
  /** Accept the key of a host that is not in known_hosts, and append it there. Default: `false`. */
  acceptNewHostKey?: boolean;
}

/** Options of `SftpStorage.open()`. */
export interface SftpOptions extends SftpSettings {
  /** Create a missing root folder (and its missing parents) instead of failing. */
  create: boolean;
  /** Where the `FROST_SFTP_*` settings are read. Default: `process.env`. */
  env?: Record<string, string | undefined>;
  /** Milliseconds allowed for the TCP connection and SSH handshake. Default: 20 000. */
  timeout?: number;
  /**
   * Milliseconds the server may stay silent (no keepalive answered, no byte received) before the
   * connection is dropped and its calls fail with a retriable `StorageError`. Default: 120 000.
   */
  idleTimeout?: number;
}

/** SFTP status codes (draft-ietf-secsh-filexfer-02), as ssh2 reports them in `err.code`. */
const Status = {
  eof: 1,
  noSuchFile: 2,
  permissionDenied: 3,
  failure: 4,
  badMessage: 5,
  noConnection: 6,
  connectionLost: 7,
  unsupported: 8,
} as const;

/** Host key algorithms ssh2 offers by default (its own list, in its order). */
const HOST_KEY_ALGORITHMS = [
  "ssh-ed25519",
  "ecdsa-sha2-nistp256",
  "ecdsa-sha2-nistp384",
  "ecdsa-sha2-nistp521",
  "rsa-sha2-512",
  "rsa-sha2-256",
  "ssh-rsa",
] as const;

const DEFAULT_KEYS = ["id_ed25519", "id_ecdsa", "id_rsa"];
const FILE_MODE = 0o600;
const DIR_MODE = 0o700;
/**
 * Bytes per SFTP read or write request (OpenSSH's largest, 255 KiB; ssh2 splits requests for servers that
 * allow less), and how many requests one put() or get() keeps in flight. Measured on loopback: 64 KiB
 * requests reach ~60 MiB/s, 255 KiB ones ~90-110 MiB/s.
 */
const REQUEST_SIZE = 255 * 1024;
const WRITES_IN_FLIGHT = 16;
const READS_IN_FLIGHT = 16;
/** How many folders list() reads at once. */
const LIST_CONCURRENCY = 8;

interface Session {
  client: Client;
  sftp: SFTPWrapper;
  /** False once the connection has failed or closed: calls then open a new one. */
  alive: boolean;
}

/** Where and as whom `SftpStorage` connects, as resolved by `SftpStorage.open()`. */
interface Target {
  host: string;
  port: number;
  user: string;
  keyFile: string;
  passphrase: string | undefined;
  knownHosts: string;
  acceptNewHostKey: boolean;
  timeout: number;
  /** See `SftpOptions.idleTimeout`. */
  idleTimeout: number;
}

/**
 * A storage in a folder of an SFTP server. Use `SftpStorage.open()`.
 *
 * @example
 * ```ts ignore
 * import { SftpStorage } from "./sftp.ts";
 * const storage = await SftpStorage.open("sftp://backup@nas.example:22/srv/frost", { create: true });
 * await storage.put("web1_etc/hello", new TextEncoder().encode("hello"));
 * await storage.close();
 * ```
 */
export class SftpStorage implements Storage, CleansLeftovers {
  /** `sftp://user@host[:port]/path`, as given (no secrets: there are none in it). */
  readonly url: string;
  readonly #target: Target;
  #root = "/";
  #privateKey: Buffer | undefined;
  #session: Session | undefined;
  #connecting: Promise<Session> | undefined;
  #closed = false;

  private constructor(url: string, target: Target) {
    this.url = url;
    this.#target = target;
  }

  /** The absolute root folder on the server. */
  get root(): string {
    return this.#root;
  }

  /**
   * Connects to the server of `spec` (`sftp://user@host[:port]/path`), checks the root folder and returns
   * a storage in it. With `create: true` a missing root is created; with `create: false` it must exist.
   * Rejects with `UsageError` for a malformed URL or one with a password, and with `StorageError` when
   * the key cannot be read, the host key is unknown or changed, the server refuses the key, or the root
   * is missing or not a folder (retriable only for network failures).
   */
  static async open(spec: string, options: SftpOptions): Promise<SftpStorage> {
    const parsed = parseRemoteUrl(spec, 22);
    if (parsed.scheme !== "sftp") {
      throw new UsageError(`Cannot use storage "${parsed.shown}": not an sftp:// URL`);
    }
    if (parsed.hasPassword) {
      throw new UsageError(
        `Cannot use storage "${parsed.shown}": sftp:// uses key authentication, so a password does not belong ` +
          `in the URL; remove it and pass the key with --sftp-key or FROST_SFTP_KEY`,
      );
    }
    const env = options.env ?? process.env;
    const home = env.HOME || os.homedir();
    const expand = (file: string) =>
      file === "~" || file.startsWith("~/") ? path.join(home, file.slice(1)) : file;
    const keyFile = options.key ?? nonEmpty(env.FROST_SFTP_KEY) ?? await defaultKey(home);
    if (keyFile === undefined) {
      throw new StorageError(
        `Cannot connect to ${parsed.shown}: no SSH key: none of ${
          DEFAULT_KEYS.map((name) => `~/.ssh/${name}`).join(", ")
        } exists; pass --sftp-key or set FROST_SFTP_KEY`,
      );
    }
    const target: Target = {
      host: parsed.host,
      port: parsed.port,
      user: parsed.user ?? env.USER ?? os.userInfo().username,
      keyFile: path.resolve(expand(keyFile)),
      passphrase: nonEmpty(env.FROST_SFTP_KEY_PASSPHRASE),
      knownHosts: path.resolve(
        expand(
          options.knownHosts ?? nonEmpty(env.FROST_SFTP_KNOWN_HOSTS) ??
            path.join(home, ".ssh", "known_hosts"),
        ),
      ),
      acceptNewHostKey: options.acceptNewHostKey ?? false,
      timeout: options.timeout ?? 20_000,
      idleTimeout: options.idleTimeout ?? 120_000,
    };
    const storage = new SftpStorage(parsed.shown, target);
    return await checkedOpen(storage, async () => {
      // The home folder, which realpath(".") resolves on the server.
      storage.#root = await remoteRoot(parsed.path, async () => {
        const { sftp } = await storage.#connection();
        return await call<string>((cb) => sftp.realpath(".", cb));
      });
      await storage.#checkRoot(options.create);
    });
  }

  /** Writes `data` to a temp file beside the key, fsyncs it and renames it over the key. */
  async put(key: string, data: Uint8Array, options: CallOptions = {}): Promise<void> {
    const file = this.#path(key);
    const { signal } = options;
    signal?.throwIfAborted();
    const dir = path.posix.dirname(file);
    const temp = `${dir}/${tempName()}`;
    const action = `Cannot write "${key}" to ${this.url}`;
    let session: Session | undefined;
    let handle: Buffer | undefined;
    let created = false;
    let renamed = false;
    try {
      session = await this.#connection();
      const { sftp } = session;
      for (let attempt = 1;; attempt++) {
        try {
          handle = await call<Buffer>((cb) => sftp.open(temp, "wx", { mode: FILE_MODE }, cb));
          break;
        } catch (err) {
          // A concurrent delete() may remove a folder it just left empty: create the folders again.
          if (statusOf(err) !== Status.noSuchFile || attempt >= 3) throw err;
        }
        created = (await this.#makeFolders(sftp, dir, action)) || created;
      }
      // A view, not a copy: ssh2 copies each request into its packet before put() returns.
      await writeAll(sftp, handle, Buffer.from(data.buffer, data.byteOffset, data.byteLength), signal);
      await fsync(sftp, handle);
      const closing = handle;
      handle = undefined;
      await call((cb) => sftp.close(closing, cb));
      signal?.throwIfAborted();
      await rename(sftp, temp, file);
      renamed = true;
    } catch (err) {
      if (session?.alive) {
        const { sftp } = session;
        if (handle !== undefined) await call((cb) => sftp.close(handle as Buffer, cb)).catch(() => {});
        if (!renamed) {
          await call((cb) => sftp.unlink(temp, cb)).catch(() => {});
          if (created) await this.#removeEmptyFolders(sftp, dir);
        }
      }
      throw this.#error(action, err, signal, session);
    }
  }

  /**
   * Opens the file of `key` now (so a missing key rejects here, and a later overwrite or delete does not
   * change what is read) and streams it with several read requests in flight. Cancel the stream when not
   * reading it to the end: it holds an open file on the server.
   */
  async get(key: string, options: CallOptions & { range?: Range } = {}): Promise<ReadableStream<Uint8Array>> {
    const file = this.#path(key);
    const { signal, range } = options;
    checkRange(key, range);
    signal?.throwIfAborted();
    const action = `Cannot read "${key}" from ${this.url}`;
    let session: Session | undefined;
    let handle: Buffer | undefined;
    try {
      session = await this.#connection();
      const { sftp } = session;
      try {
        handle = await call<Buffer>((cb) => sftp.open(file, "r", cb));
      } catch (err) {
        // Some servers refuse to open a folder instead of failing on reading it.
        if (statusOf(err) === Status.failure && (await statIfExists(sftp, file))?.isDirectory()) {
          throw new NotFoundError(`${action}: not found (it is a folder)`, { cause: err });
        }
        throw err;
      }
      const opened = handle;
      const stats = await call<Stats>((cb) => sftp.fstat(opened, cb));
      if (!stats.isFile()) throw new NotFoundError(`${action}: not found (it is a folder)`);
      const start = range?.offset ?? 0;
      const end = range?.length === undefined ? stats.size : Math.min(stats.size, start + range.length);
      if (start >= end) {
        handle = undefined;
        await call((cb) => sftp.close(opened, cb)).catch(() => {});
        return emptyStream();
      }
      handle = undefined; // the stream closes it
      return this.#readStream(session, opened, start, end, action, signal);
    } catch (err) {
      if (handle !== undefined && session?.alive) {
        const { sftp } = session;
        await call((cb) => sftp.close(handle as Buffer, cb)).catch(() => {});
      }
      throw this.#error(action, err, signal, session, true);
    }
  }

  /** Reports the size and modification time (whole seconds) of `key`. */
  async stat(key: string, options: CallOptions = {}): Promise<ObjectInfo> {
    const file = this.#path(key);
    const { signal } = options;
    signal?.throwIfAborted();
    const action = `Cannot stat "${key}" in ${this.url}`;
    let session: Session | undefined;
    try {
      session = await this.#connection();
      const { sftp } = session;
      const stats = await call<Stats>((cb) => sftp.stat(file, cb));
      if (!stats.isFile()) throw new NotFoundError(`${action}: not found (it is a folder)`);
      return { key, size: stats.size, modified: new Date(stats.mtime * 1000) };
    } catch (err) {
      throw this.#error(action, err, signal, session, true);
    }
  }

  /** Walks the folder of `prefix` recursively, several folders at once, and skips temp files. */
  async *list(prefix: string, options: CallOptions = {}): AsyncGenerator<ObjectInfo> {
    checkPrefix(prefix);
    const { signal } = options;
    signal?.throwIfAborted();
    const action = `Cannot list "${prefix}" in ${this.url}`;
    let session: Session | undefined;
    try {
      session = await this.#connection();
      const { sftp } = session;
      const dir = prefix === "" ? this.#root : this.#path(prefix.slice(0, -1));
      yield* walkConcurrently(
        { dir, keyPrefix: prefix },
        (folder) => readFolder(sftp, folder),
        LIST_CONCURRENCY,
        signal,
      );
    } catch (err) {
      throw this.#error(action, err, signal, session);
    }
  }

  /** The sub-folders of the folder of `prefix` (one `readdir`). */
  async *listFolders(prefix: string, options: CallOptions = {}): AsyncGenerator<string> {
    checkPrefix(prefix);
    const { signal } = options;
    signal?.throwIfAborted();
    const action = `Cannot list the folders of "${prefix}" in ${this.url}`;
    let session: Session | undefined;
    let names: string[];
    try {
      session = await this.#connection();
      const dir = prefix === "" ? this.#root : this.#path(prefix.slice(0, -1));
      const { folders } = await readFolder(session.sftp, { dir, keyPrefix: prefix });
      names = folders.map((f) => f.keyPrefix.slice(prefix.length, -1));
    } catch (err) {
      throw this.#error(action, err, signal, session);
    }
    yield* names.sort();
  }

  /** Removes `key` (a missing key is fine), then the folders it leaves empty, up to the root (kept). */
  async delete(key: string, options: CallOptions = {}): Promise<void> {
    const file = this.#path(key);
    const { signal } = options;
    signal?.throwIfAborted();
    let session: Session | undefined;
    try {
      session = await this.#connection();
      const { sftp } = session;
      try {
        await call((cb) => sftp.unlink(file, cb));
      } catch (err) {
        if (statusOf(err) === Status.noSuchFile) return;
        // A folder is not an object: deleting "a" while "a/b" exists is deleting a missing key.
        if ((await statIfExists(sftp, file).catch(() => undefined))?.isDirectory()) return;
        throw err;
      }
      await this.#removeEmptyFolders(sftp, path.posix.dirname(file));
    } catch (err) {
      throw this.#error(`Cannot delete "${key}" from ${this.url}`, err, signal, session);
    }
  }

  /**
   * Deletes the temp files of cut puts under the folder of `prefix` (see `CleansLeftovers`: a put whose
   * connection dropped could not remove its own), then the folders left empty; resolves to the bytes freed.
   */
  async deleteLeftovers(prefix: string, options: CallOptions = {}): Promise<number> {
    checkPrefix(prefix);
    const { signal } = options;
    signal?.throwIfAborted();
    const action = `Cannot delete the leftovers under "${prefix}" in ${this.url}`;
    let session: Session | undefined;
    try {
      session = await this.#connection();
      const { sftp } = session;
      const top = prefix === "" ? this.#root : this.#path(prefix.slice(0, -1));
      return await deleteTempFiles({ dir: top, keyPrefix: prefix }, {
        read: (folder: Folder) => readFolder(sftp, folder, true),
        unlink: (temp) =>
          call((cb) => sftp.unlink(this.#root === "/" ? `/${temp.key}` : `${this.#root}/${temp.key}`, cb))
            .then(
              () => true,
              (err) => {
                if (statusOf(err) !== Status.noSuchFile) throw err;
                return false; // gone meanwhile: freed by someone else
              },
            ),
        removeEmpty: (dir) => this.#removeEmptyFolders(sftp, dir),
        concurrency: LIST_CONCURRENCY,
        signal,
      });
    } catch (err) {
      throw this.#error(action, err, signal, session);
    }
  }

  /** Ends the SSH connection. Safe to call more than once. */
  async close(): Promise<void> {
    this.#closed = true;
    const session = this.#session ?? await this.#connecting?.catch(() => undefined);
    this.#session = undefined;
    if (session === undefined) return;
    session.alive = false;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 2000);
      session.client.once("close", () => {
        clearTimeout(timer);
        resolve();
      });
      session.client.end();
    });
  }

  /** Checks `key` and returns its path on the server. */
  #path(key: string): string {
    checkObjectKey(key);
    return this.#root === "/" ? `/${key}` : `${this.#root}/${key}`;
  }

  /** The open connection, or a new one when there is none (or it dropped). */
  async #connection(): Promise<Session> {
    if (this.#closed) throw new StorageError(`Cannot use ${this.url}: the storage is closed`);
    if (this.#session?.alive) return this.#session;
    this.#connecting ??= this.#connect().finally(() => {
      this.#connecting = undefined;
    });
    const session = await this.#connecting;
    if (this.#closed) throw new StorageError(`Cannot use ${this.url}: the storage is closed`);
    this.#session = session;
    return session;
  }

  async #connect(): Promise<Session> {
    const target = this.#target;
    const action = `Cannot connect to ${this.url}`;
    const privateKey = this.#privateKey ?? await readKey(target, action);
    this.#privateKey = privateKey;
    let known: KnownHost[];
    try {
      known = parseKnownHosts(await fsp.readFile(target.knownHosts, "utf8"));
    } catch (err) {
      if (codeOf(err) !== "ENOENT") {
        throw new StorageError(
          `${action}: cannot read known_hosts file "${target.knownHosts}": ${messageOf(err)}`,
          {
            cause: err,
          },
        );
      }
      known = [];
    }
    const name = hostName(target.host, target.port);
    const shownHost = target.port === 22
      ? target.host
      : `${target.host.includes(":") ? `[${target.host}]` : target.host}:${target.port}`;
    let refusal: StorageError | undefined;

    const hostVerifier = (key: Buffer, verify: (valid: boolean) => void): void => {
      const found = checkHostKey(known, name, key);
      const offered = `${keyType(key)} ${fingerprint(key)}`;
      if (found.status === "known") return verify(true);
      if (found.status === "revoked") {
        refusal = new StorageError(
          `${action}: host key of ${shownHost} (${offered}) is marked @revoked in ${target.knownHosts} ` +
            `line ${found.entry.line}`,
        );
        return verify(false);
      }
      if (found.status === "changed") {
        const entry = found.entry;
        refusal = new StorageError(
          `${action}: host key of ${shownHost} has CHANGED: the server sent ${offered}, but ` +
            `${target.knownHosts} line ${entry.line} has ${entry.type} ${
              fingerprint(entry.key)
            }. Someone may be ` +
            `intercepting the connection, or the server was reinstalled; if you trust the new key, remove the old ` +
            `one with: ssh-keygen -R "${name}" -f "${target.knownHosts}"`,
        );
        return verify(false);
      }
      if (!target.acceptNewHostKey) {
        refusal = new StorageError(
          `${action}: host key of ${shownHost} is not in ${target.knownHosts} (${offered}); add it, or pass ` +
            `--sftp-accept-new-host-key`,
        );
        return verify(false);
      }
      appendKnownHost(target.knownHosts, formatKnownHost(name, key)).then(
        () => verify(true),
        (err) => {
          refusal = new StorageError(
            `${action}: cannot add the host key of ${shownHost} to ${target.knownHosts}: ${messageOf(err)}`,
            { cause: err },
          );
          verify(false);
        },
      );
    };

    const config: ConnectConfig = {
      host: target.host,
      port: target.port,
      username: target.user,
      privateKey,
      ...(target.passphrase === undefined ? {} : { passphrase: target.passphrase }),
      readyTimeout: Math.min(target.timeout, target.idleTimeout),
      // A keepalive every third of the idle timeout; three unanswered ones drop the connection.
      keepaliveInterval: Math.max(100, Math.round(target.idleTimeout / 3)),
      keepaliveCountMax: 2,
      algorithms: {
        serverHostKey: hostKeyAlgorithms(known, name, HOST_KEY_ALGORITHMS) as ServerHostKeyAlgorithm[],
      },
      hostVerifier,
    };

    return await new Promise<Session>((resolve, reject) => {
      const client = new Client();
      let session: Session | undefined;
      const fail = (err: unknown) => {
        if (session !== undefined) {
          session.alive = false;
          return;
        }
        session = { client, sftp: undefined as unknown as SFTPWrapper, alive: false };
        client.end();
        reject(refusal ?? this.#connectError(action, err));
      };
      client.on("error", fail);
      client.on(
        "close",
        () => fail(new StorageError(`${action}: the server closed the connection`, { retriable: true })),
      );
      client.on("ready", () => {
        client.sftp((err, sftp) => {
          if (session !== undefined) return;
          if (err) return fail(err);
          session = { client, sftp, alive: true };
          sftp.on("close", () => {
            if (session !== undefined) session.alive = false;
          });
          resolve(session);
        });
      });
      try {
        client.connect(config);
        // Without it, Nagle's algorithm holds each small SFTP request back ~40 ms.
        client.setNoDelay(true);
      } catch (err) {
        fail(err);
      }
    });
  }

  /** Describes a failed connection attempt. */
  #connectError(action: string, err: unknown): StorageError {
    if (err instanceof StorageError) return err;
    const level = typeof err === "object" && err !== null && "level" in err ? err.level : undefined;
    const message = oneLine(messageOf(err));
    if (level === "client-authentication") {
      const { user, keyFile } = this.#target;
      return new StorageError(
        `${action}: the server refused key "${keyFile}" for user "${user}" (${message})`,
        { cause: err },
      );
    }
    const network = networkFailure(err);
    if (network !== undefined) {
      return new StorageError(`${action}: ${network.reason}`, { cause: err, ...network });
    }
    if (level === "client-timeout") {
      return new StorageError(`${action}: timed out during the SSH handshake`, {
        cause: err,
        retriable: true,
      });
    }
    // Protocol and handshake failures (no common algorithm, bad key format) do not go away by retrying.
    const retriable = level !== "protocol" && level !== "handshake" && level !== "client-dns";
    return new StorageError(`${action}: ${message}`, { cause: err, retriable });
  }

  /** Checks the root folder; with `create`, makes it and its missing parents. */
  async #checkRoot(create: boolean): Promise<void> {
    const session = await this.#connection();
    const { sftp } = session;
    try {
      const stats = await statIfExists(sftp, this.#root);
      if (stats === undefined) {
        if (!create) throw new StorageError(`Storage "${this.url}" does not exist`);
        await this.#makeFolders(
          sftp,
          this.#root,
          `Cannot create storage folder "${this.#root}" on ${this.url}`,
        );
      } else if (!stats.isDirectory()) {
        throw new StorageError(`Cannot use storage "${this.url}": "${this.#root}" is not a folder`);
      }
    } catch (err) {
      throw this.#error(`Cannot use storage "${this.url}"`, err, undefined, session);
    }
  }

  /** `mkdir -p dir`; returns whether it created any folder. */
  async #makeFolders(sftp: SFTPWrapper, dir: string, action: string): Promise<boolean> {
    try {
      await call((cb) => sftp.mkdir(dir, { mode: DIR_MODE }, cb));
      return true;
    } catch (err) {
      const status = statusOf(err);
      if (status === Status.noSuchFile && dir !== "/" && path.posix.dirname(dir) !== dir) {
        await this.#makeFolders(sftp, path.posix.dirname(dir), action);
        return await this.#makeFolders(sftp, dir, action);
      }
      if (status !== Status.failure) throw err;
      // Already there (a concurrent put() made it), or a file is in the way.
      const stats = await statIfExists(sftp, dir);
      if (stats?.isDirectory()) return false;
      throw new StorageError(`${action}: a part of the path is not a folder`, { cause: err });
    }
  }

  /** Removes `dir` and its parents while they are empty, stopping at the root. Best effort. */
  async #removeEmptyFolders(sftp: SFTPWrapper, dir: string): Promise<void> {
    const inside = this.#root === "/" ? "/" : `${this.#root}/`;
    while (dir.startsWith(inside) && dir !== this.#root) {
      try {
        await call((cb) => sftp.rmdir(dir, cb));
      } catch (err) {
        if (statusOf(err) !== Status.noSuchFile) return; // not empty (or not ours to remove): leave it
      }
      dir = path.posix.dirname(dir);
    }
  }

  /** Streams bytes `start` to `end` (exclusive) of an open file, then closes it. */
  #readStream(
    session: Session,
    handle: Buffer,
    start: number,
    end: number,
    action: string,
    signal: AbortSignal | undefined,
  ): ReadableStream<Uint8Array> {
    const { sftp } = session;
    const inFlight: Promise<Uint8Array>[] = [];
    let next = start;
    let open = true;
    const release = async () => {
      if (!open) return;
      open = false;
      for (const pending of inFlight) pending.catch(() => {});
      if (session.alive) await call((cb) => sftp.close(handle, cb)).catch(() => {});
    };
    const fill = () => {
      while (inFlight.length < READS_IN_FLIGHT && next < end) {
        const length = Math.min(REQUEST_SIZE, end - next);
        const reading = readFully(sftp, handle, next, length);
        reading.catch(() => {}); // observed when its turn comes
        inFlight.push(reading);
        next += length;
      }
    };
    return new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        try {
          signal?.throwIfAborted();
          fill();
          const reading = inFlight.shift();
          if (reading === undefined) {
            await release();
            controller.close();
            return;
          }
          controller.enqueue(await reading);
          fill();
        } catch (err) {
          await release();
          controller.error(this.#error(action, err, signal, session));
        }
      },
      cancel: release,
    }, { highWaterMark: 0 });
  }

  /** Turns a failure into `NotFoundError`/`StorageError`; an abort rejects with the signal's reason. */
  #error(
    action: string,
    err: unknown,
    signal: AbortSignal | undefined,
    session: Session | undefined,
    notFound = false,
  ): unknown {
    if (signal?.aborted) return signal.reason;
    if (err instanceof StorageError || err instanceof TypeError || err instanceof RangeError) return err;
    const status = statusOf(err);
    if (status === Status.noSuchFile) {
      if (notFound) return new NotFoundError(`${action}: not found`, { cause: err });
      return new StorageError(`${action}: no such file or folder`, { cause: err });
    }
    if (status === Status.permissionDenied) {
      return new StorageError(`${action}: permission denied`, { cause: err });
    }
    if (status === Status.noConnection || status === Status.connectionLost) {
      return new StorageError(`${action}: connection lost`, { cause: err, retriable: true });
    }
    if (status !== undefined) {
      const what = status === Status.unsupported
        ? "operation not supported by the server"
        : "the server reported";
      return new StorageError(`${action}: ${what}: ${oneLine(messageOf(err))}`, { cause: err });
    }
    // No SFTP status: the connection failed under the request ("No response from server", a reset, …).
    // Drop it, so that the next call (a retry) opens a new one.
    if (session !== undefined) {
      session.alive = false;
      session.client.end();
    }
    const reason = networkFailure(err)?.reason ?? oneLine(messageOf(err));
    return new StorageError(`${action}: connection lost (${reason})`, { cause: err, retriable: true });
  }
}

/** Calls an ssh2 callback-style function as a promise (a synchronous throw rejects it too). */
function call<T = void>(
  start: (callback: (err: Error | undefined | null, value: T) => void) => void,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    try {
      start((err, value) => (err ? reject(err) : resolve(value)));
    } catch (err) {
      reject(err);
    }
  });
}

/** The SFTP status code of an ssh2 error, if it has one. */
function statusOf(err: unknown): number | undefined {
  if (typeof err !== "object" || err === null || !("code" in err)) return undefined;
  return typeof err.code === "number" ? err.code : undefined;
}

/** `stat` that returns `undefined` for a missing path. */
async function statIfExists(sftp: SFTPWrapper, file: string): Promise<Stats | undefined> {
  try {
    return await call<Stats>((cb) => sftp.stat(file, cb));
  } catch (err) {
    if (statusOf(err) === Status.noSuchFile) return undefined;
    throw err;
  }
}

/** Writes all of `data` at offset 0 with up to WRITES_IN_FLIGHT requests pending; stops early on abort. */
async function writeAll(sftp: SFTPWrapper, handle: Buffer, data: Buffer, signal: AbortSignal | undefined) {
  let offset = 0;
  let failure: unknown;
  const pending = new Set<Promise<void>>();
  while (offset < data.byteLength && failure === undefined && !signal?.aborted) {
    const position = offset;
    const length = Math.min(REQUEST_SIZE, data.byteLength - position);
    const writing: Promise<void> = call((cb) => sftp.write(handle, data, position, length, position, cb))
      .then(
        () => {
          pending.delete(writing);
        },
        (err) => {
          pending.delete(writing);
          failure ??= err;
        },
      );
    pending.add(writing);
    offset += length;
    if (pending.size >= WRITES_IN_FLIGHT) await Promise.race(pending);
  }
  await Promise.all(pending);
  if (failure !== undefined) throw failure;
  signal?.throwIfAborted();
}

/** fsync@openssh.com when the server has it (a no-op otherwise). */
async function fsync(sftp: SFTPWrapper, handle: Buffer): Promise<void> {
  try {
    await call((cb) => sftp.ext_openssh_fsync(handle, cb));
  } catch (err) {
    if (statusOf(err) === undefined && /not support/i.test(messageOf(err))) return;
    throw err;
  }
}

/** Renames over an existing file: posix-rename@openssh.com, else unlink then rename (not atomic). */
async function rename(sftp: SFTPWrapper, from: string, to: string): Promise<void> {
  try {
    await call((cb) => sftp.ext_openssh_rename(from, to, cb));
    return;
  } catch (err) {
    if (statusOf(err) !== undefined || !/not support/i.test(messageOf(err))) throw err;
  }
  try {
    await call((cb) => sftp.rename(from, to, cb));
  } catch (err) {
    if (statusOf(err) !== Status.failure) throw err;
    await call((cb) => sftp.unlink(to, cb)).catch(() => {});
    await call((cb) => sftp.rename(from, to, cb));
  }
}

/** Reads exactly `length` bytes at `position` into a new buffer (SFTP may answer a read with fewer bytes). */
async function readFully(
  sftp: SFTPWrapper,
  handle: Buffer,
  position: number,
  length: number,
): Promise<Uint8Array> {
  const buffer = Buffer.allocUnsafe(length);
  let filled = 0;
  while (filled < length) {
    const got = await call<number>((cb) =>
      sftp.read(
        handle,
        buffer,
        filled,
        length - filled,
        position + filled,
        (err, bytesRead) => cb(err, bytesRead),
      )
    );
    if (got === 0) {
      throw new StorageError(`the object ended at byte ${position + filled} while it was being read`, {
        retriable: true,
      });
    }
    filled += got;
  }
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
}

/** One folder of a list() walk. */
interface Folder {
  dir: string;
  keyPrefix: string;
}

/**
 * Reads one folder: its files (symbolic links to files included) and its sub-folders. With `temps`, the
 * objects are the temp files (`TEMP_PREFIX`, for `deleteLeftovers`) instead of the others.
 */
async function readFolder(
  sftp: SFTPWrapper,
  folder: Folder,
  temps = false,
): Promise<{ objects: ObjectInfo[]; folders: Folder[] }> {
  const objects: ObjectInfo[] = [];
  const folders: Folder[] = [];
  let entries: Awaited<ReturnType<typeof readdir>>;
  try {
    entries = await readdir(sftp, folder.dir);
  } catch (err) {
    if (statusOf(err) === Status.noSuchFile) return { objects, folders };
    throw err;
  }
  for (const entry of entries) {
    const name = entry.filename;
    const temp = name.startsWith(TEMP_PREFIX);
    if (name === "." || name === ".." || (temp && !temps) || name.includes("/")) continue;
    const file = `${folder.dir}/${name}`;
    let stats: Stats | undefined = entry.attrs;
    if (stats.isSymbolicLink() && !temp) stats = await statIfExists(sftp, file).catch(() => undefined);
    if (stats === undefined) continue;
    if (stats.isDirectory()) {
      if (!temp) folders.push({ dir: file, keyPrefix: `${folder.keyPrefix}${name}/` });
    } else if (stats.isFile() && temp === temps) {
      objects.push({
        key: folder.keyPrefix + name,
        size: stats.size,
        modified: new Date(stats.mtime * 1000),
      });
    }
  }
  return { objects, folders };
}

function readdir(sftp: SFTPWrapper, dir: string) {
  return call<Parameters<Parameters<SFTPWrapper["readdir"]>[1]>[1]>((cb) => sftp.readdir(dir, cb));
}

/** Reads and parses the private key, with messages that say what to do. */
async function readKey(target: Target, action: string): Promise<Buffer> {
  let data: Buffer;
  try {
    data = await fsp.readFile(target.keyFile);
  } catch (err) {
    const reason = codeOf(err) === "ENOENT" ? "no such file" : messageOf(err);
    throw new StorageError(
      `${action}: cannot read key file "${target.keyFile}": ${reason} (pass --sftp-key or set FROST_SFTP_KEY)`,
      { cause: err },
    );
  }
  const parsed = utils.parseKey(data, target.passphrase);
  if (parsed instanceof Error) {
    const message = messageOf(parsed);
    const reason = /passphrase/i.test(message) && target.passphrase === undefined
      ? "it is encrypted: set FROST_SFTP_KEY_PASSPHRASE"
      : target.passphrase !== undefined && /decrypt|passphrase|bad/i.test(message)
      ? "cannot decrypt it with FROST_SFTP_KEY_PASSPHRASE (wrong passphrase?)"
      : `not a private key ssh2 can read (${oneLine(message)})`;
    throw new StorageError(`${action}: key file "${target.keyFile}": ${reason}`, { cause: parsed });
  }
  return data;
}

/** Appends a line to known_hosts, creating the file (0600) and its folder (0700) when missing. */
async function appendKnownHost(file: string, line: string): Promise<void> {
  await fsp.mkdir(path.dirname(file), { recursive: true, mode: DIR_MODE });
  let prefix = "";
  try {
    const text = await fsp.readFile(file, "utf8");
    if (text !== "" && !text.endsWith("\n")) prefix = "\n";
  } catch (err) {
    if (codeOf(err) !== "ENOENT") throw err;
  }
  await fsp.appendFile(file, prefix + line, { mode: FILE_MODE });
}

/** The first default key file that exists. */
async function defaultKey(home: string): Promise<string | undefined> {
  for (const name of DEFAULT_KEYS) {
    const file = path.join(home, ".ssh", name);
    if (await fsp.access(file).then(() => true, () => false)) return file;
  }
  return undefined;
}
