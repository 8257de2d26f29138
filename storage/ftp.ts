/**
 * A storage in a folder of an FTP server (npm `basic-ftp`), in clear (`ftp://`) or with explicit TLS
 * (`ftps://`, AUTH TLS, certificate verified): each key is a file under the root folder, `/` separating
 * folders.
 *
 * URL: `ftp[s]://user@host[:port]/path`. The path is absolute as the server shows it (with a chroot, `/`
 * is the user's folder); `/~/rel` (or no path) is relative to the folder the server logs in to. Without
 * `user@`, the login is anonymous.
 *
 * The password never comes from the command line or the URL (a password in the URL is a usage error): it
 * is the first line of `passwordFile` (`--ftp-password-file`), else `$FROST_FTP_PASSWORD`, else the first
 * line of the file `$FROST_FTP_PASSWORD_FILE`.
 *
 * Writes are all-or-nothing: upload to a temp name in the target folder, then rename over the key (if the
 * server refuses to rename over a file, it is deleted first, which is not atomic). One FTP connection does
 * one thing at a time, so a small pool of connections (4) serves concurrent calls.
 *
 * File names: FTP servers rewrite or refuse some names (pure-ftpd turns a trailing space into `_`, control
 * characters end a command), so in each path component `%`, control characters and trailing spaces are
 * stored percent-encoded (`%25`, `%0A`, `%20`) and decoded again by `list()`. Other names are stored as
 * they are.
 * @module
 */
import fs from "node:fs";
import path from "node:path";
import process from "node:process";
import { Buffer } from "node:buffer";
import { Writable } from "node:stream";
import { Client, type FileInfo, type FTPResponse } from "basic-ftp";
import { messageOf, UsageError } from "../base/errors.ts";
import { uploadPieces } from "./_pieces.ts";
import { checkPrefix, checkRange } from "./_key.ts";
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

/** The settings a user gives on the command line (`--ftp-password-file`, `--ftp-ca-file`). */
export interface FtpSettings {
  /**
   * File whose first line is the password. Default: `$FROST_FTP_PASSWORD`, else the file
   * `$FROST_FTP_PASSWORD_FILE`.
   */
  passwordFile?: string;
  /**
   * PEM file of the certificate authorities that an `ftps://` server's certificate is verified against
   * (for a private CA or a self-signed server). Default: `$FROST_FTP_CA_FILE`, else the system's CAs.
   */
  caFile?: string;
}

/** Options of `FtpStorage.open()`. */
export interface FtpOptions extends FtpSettings {
  /** Create a missing root folder (and its missing parents) instead of failing. */
  create: boolean;
  /** Where the `FROST_FTP_*` settings are read. Default: `process.env`. */
  env?: Record<string, string | undefined>;
  /** How many connections to the server at most. Default: 4. */
  connections?: number;
  /** Milliseconds without an answer from the server before a call fails. Default: 30 000. */
  timeout?: number;
}

/** Where and as whom `FtpStorage` connects, as resolved by `FtpStorage.open()`. */
interface Target {
  host: string;
  port: number;
  user: string;
  password: string;
  /** TLS options for ftps://, `undefined` for ftp://. */
  tls: { ca?: string } | undefined;
  timeout: number;
}

/** Reply codes of a successful MKD and of "file unavailable" answers. */
const MKD_DONE = 257;
/** Idle connections unused this long are checked with NOOP before use (servers drop idle clients). */
const IDLE_CHECK_MS = 30_000;
/** A ranged read that stops this close to the end reads the rest and drops it, keeping the connection. */
const DRAIN_LIMIT = 1 << 20;
/**
 * How many bytes a get() stream buffers ahead of its reader before it stops reading the data connection.
 * Over TLS it reads (nearly) everything ahead: Deno 2.9 never reports the end of a TLS socket that was
 * paused by backpressure, so the transfer would hang until the timeout (Node and Bun are fine).
 */
const READ_AHEAD = 1 << 20;
const READ_AHEAD_TLS = 256 << 20;

/** A pooled connection and what is known of its server. */
interface Connection {
  client: Client;
  mlst: boolean;
  lastUsed: number;
}

/** The connection broke under a call (socket error, timeout, server closed it): a retry may succeed. */
class ConnectionLost extends Error {
  override name = "ConnectionLost";
}

/**
 * A storage in a folder of an FTP or FTPS server. Use `FtpStorage.open()`.
 *
 * @example
 * ```ts ignore
 * import { FtpStorage } from "./ftp.ts";
 * // FROST_FTP_PASSWORD=… in the environment
 * const storage = await FtpStorage.open("ftps://backup@ftp.example/frost", { create: true });
 * await storage.put("web1_etc/hello", new TextEncoder().encode("hello"));
 * await storage.close();
 * ```
 */
export class FtpStorage implements Storage, CleansLeftovers {
  /** `ftp[s]://user@host[:port]/path`, without password. */
  readonly url: string;
  readonly #target: Target;
  readonly #max: number;
  #root = "/";
  readonly #idle: Connection[] = [];
  #count = 0;
  readonly #waiting: (() => void)[] = [];
  #closed = false;

  private constructor(url: string, target: Target, connections: number) {
    this.url = url;
    this.#target = target;
    this.#max = connections;
  }

  /** The absolute root folder on the server. */
  get root(): string {
    return this.#root;
  }

  /**
   * Connects to the server of `spec`, checks the root folder and returns a storage in it. With
   * `create: true` a missing root is created; with `create: false` it must exist. Rejects with `UsageError`
   * for a malformed URL, a password in the URL or no password at all, and with `StorageError` when the
   * server refuses the login or the TLS certificate does not verify, or the root is missing or not a
   * folder (retriable only for network failures).
   */
  static async open(spec: string, options: FtpOptions): Promise<FtpStorage> {
    const parsed = parseRemoteUrl(spec, 21);
    if (parsed.scheme !== "ftp" && parsed.scheme !== "ftps") {
      throw new UsageError(`Cannot use storage "${parsed.shown}": not an ftp:// or ftps:// URL`);
    }
    const env = options.env ?? process.env;
    const hint = "set FROST_FTP_PASSWORD or FROST_FTP_PASSWORD_FILE, or pass --ftp-password-file";
    if (parsed.hasPassword) {
      throw new UsageError(
        `Cannot use storage "${parsed.shown}": a password in the URL would show in the process list and in ` +
          `logs; remove it and ${hint}`,
      );
    }
    // deno-lint-ignore no-control-regex
    if (/[\0-\x1f\x7f]/.test(parsed.path)) {
      throw new UsageError(`Cannot use storage "${parsed.shown}": the path has control characters`);
    }
    const password = await findPassword(options.passwordFile, env, parsed.shown);
    if (password === undefined && parsed.user !== undefined) {
      throw new UsageError(
        `Cannot use storage "${parsed.shown}": no password for user "${parsed.user}": ${hint}`,
      );
    }
    let tls: Target["tls"];
    if (parsed.scheme === "ftps") {
      const caFile = options.caFile ?? nonEmpty(env.FROST_FTP_CA_FILE);
      tls = caFile === undefined ? {} : { ca: await readSetting(caFile, "CA file", parsed.shown) };
    }
    const target: Target = {
      host: parsed.host,
      port: parsed.port,
      user: parsed.user ?? "anonymous",
      password: password ?? "anonymous@",
      tls,
      timeout: options.timeout ?? 30_000,
    };
    const storage = new FtpStorage(parsed.shown, target, Math.max(1, options.connections ?? 4));
    return await checkedOpen(storage, async () => {
      await storage.#withConnection(`Cannot use storage "${storage.url}"`, undefined, async ({ client }) => {
        storage.#root = await remoteRoot(parsed.path, () => client.pwd());
        if (await isFolder(client, storage.#root)) return;
        if (!options.create) throw new StorageError(`Storage "${storage.url}" does not exist`);
        await storage.#makeFolders(
          client,
          storage.#root,
          `Cannot create storage folder "${storage.#root}" on ${storage.url}`,
          "/",
        );
      });
    });
  }

  /** Uploads `data` to a temp name beside the key and renames it over the key. */
  async put(key: string, data: Uint8Array, options: CallOptions = {}): Promise<void> {
    const file = this.#path(key);
    const { signal } = options;
    signal?.throwIfAborted();
    const dir = path.posix.dirname(file);
    const temp = `${dir}/${tempName()}`;
    const action = `Cannot write "${key}" to ${this.url}`;
    let renamed = false;
    try {
      await this.#withConnection(action, signal, async ({ client }) => {
        for (let attempt = 1;; attempt++) {
          try {
            await upload(client, data, temp, signal);
            break;
          } catch (err) {
            // 553 (pure-ftpd) or 550: the folder may be missing, or a concurrent delete() just removed it.
            if (!isReply(err, 550, 553) || attempt >= 3) throw err;
            await this.#makeFolders(client, dir, action);
          }
        }
        signal?.throwIfAborted();
        await renameOver(client, temp, file);
        renamed = true;
      });
    } catch (err) {
      if (!renamed && !this.#closed) {
        // The temp file exists after an upload, and maybe after an aborted one: remove it (best effort).
        await this.#withConnection(action, undefined, ({ client }) => client.remove(temp, true)).catch(
          () => {},
        );
      }
      throw err;
    }
  }

  /**
   * Checks that `key` exists now (a missing key rejects here) and streams it; the transfer starts at the
   * first read and holds one connection until the end. Cancel the stream when not reading it to the end.
   */
  async get(key: string, options: CallOptions & { range?: Range } = {}): Promise<ReadableStream<Uint8Array>> {
    const file = this.#path(key);
    const { signal, range } = options;
    checkRange(key, range);
    signal?.throwIfAborted();
    const action = `Cannot read "${key}" from ${this.url}`;
    const { size } = await this.#withConnection(
      action,
      signal,
      (connection) => statFile(connection, file, action),
    );
    const start = range?.offset ?? 0;
    const end = range?.length === undefined ? Infinity : Math.min(size, start + range.length);
    if (start >= Math.min(size, end)) return emptyStream();
    return this.#download(file, start, end, size, action, signal);
  }

  /** Reports the size and modification time of `key` (MLST, else SIZE). */
  async stat(key: string, options: CallOptions = {}): Promise<ObjectInfo> {
    const file = this.#path(key);
    const { signal } = options;
    signal?.throwIfAborted();
    const action = `Cannot stat "${key}" in ${this.url}`;
    const info = await this.#withConnection(
      action,
      signal,
      (connection) => statFile(connection, file, action),
    );
    return { key, ...info };
  }

  /** Walks the folder of `prefix` recursively (MLSD where the server has it), on several connections. */
  async *list(prefix: string, options: CallOptions = {}): AsyncGenerator<ObjectInfo> {
    checkPrefix(prefix);
    const { signal } = options;
    signal?.throwIfAborted();
    const action = `Cannot list "${prefix}" in ${this.url}`;
    const dir = prefix === "" ? this.#root : this.#path(prefix.slice(0, -1));
    yield* walkConcurrently(
      { dir, keyPrefix: prefix },
      (folder) =>
        this.#withConnection(action, signal, ({ client }) => readFolder(client, folder, this.#root, action)),
      this.#max,
      signal,
    );
  }

  /** The sub-folders of the folder of `prefix` (one listing). */
  async *listFolders(prefix: string, options: CallOptions = {}): AsyncGenerator<string> {
    checkPrefix(prefix);
    const { signal } = options;
    signal?.throwIfAborted();
    const action = `Cannot list the folders of "${prefix}" in ${this.url}`;
    const dir = prefix === "" ? this.#root : this.#path(prefix.slice(0, -1));
    const { folders } = await this.#withConnection(
      action,
      signal,
      ({ client }) => readFolder(client, { dir, keyPrefix: prefix }, this.#root, action),
    );
    yield* folders.map((f) => f.keyPrefix.slice(prefix.length, -1)).sort();
  }

  /** Removes `key` (a missing key is fine), then the folders it leaves empty, up to the root (kept). */
  async delete(key: string, options: CallOptions = {}): Promise<void> {
    const file = this.#path(key);
    const { signal } = options;
    signal?.throwIfAborted();
    const action = `Cannot delete "${key}" from ${this.url}`;
    await this.#withConnection(action, signal, async (connection) => {
      const { client } = connection;
      try {
        await client.send(`DELE ${file}`);
      } catch (err) {
        if (!isReply(err, 550)) throw err;
        // Missing, or a folder (not an object): both are a missing key. Anything else is a real failure.
        const exists = await statFile(connection, file, action).then(() => true, (e) => {
          if (e instanceof NotFoundError) return false;
          throw e;
        });
        if (exists) throw err;
        return;
      }
      await this.#removeEmptyFolders(client, path.posix.dirname(file));
    });
  }

  /**
   * Deletes the temp files of cut uploads under the folder of `prefix` (see `CleansLeftovers`: a put whose
   * connection dropped could not remove its own), then the folders left empty; resolves to the bytes freed.
   */
  async deleteLeftovers(prefix: string, options: CallOptions = {}): Promise<number> {
    checkPrefix(prefix);
    const { signal } = options;
    signal?.throwIfAborted();
    const action = `Cannot delete the leftovers under "${prefix}" in ${this.url}`;
    const top = prefix === "" ? this.#root : this.#path(prefix.slice(0, -1));
    return await deleteTempFiles({ dir: top, keyPrefix: prefix }, {
      read: (folder: Folder) =>
        this.#withConnection(
          action,
          signal,
          ({ client }) => readFolder(client, folder, this.#root, action, true),
        ),
      unlink: (temp) =>
        this.#withConnection(action, signal, async (connection) => {
          const file = `${top}/${this.#encodedPath(temp.key.slice(prefix.length))}`;
          try {
            await connection.client.send(`DELE ${file}`);
            return true;
          } catch (err) {
            if (!isReply(err, 550)) throw err;
            // Gone meanwhile is fine; a file that is still there could not be deleted.
            const gone = await statFile(connection, file, action).then(() => false, (e) => {
              if (e instanceof NotFoundError) return true;
              throw e;
            });
            if (!gone) throw err;
            return false;
          }
        }),
      removeEmpty: (dir) =>
        this.#withConnection(action, signal, ({ client }) => this.#removeEmptyFolders(client, dir)),
      concurrency: this.#max,
      signal,
    });
  }

  /** Closes every connection. Safe to call more than once. */
  close(): Promise<void> {
    this.#closed = true;
    for (const { client } of this.#idle.splice(0)) client.close();
    for (const wake of this.#waiting.splice(0)) wake();
    return Promise.resolve();
  }

  /** Checks `key` and returns its path on the server (names percent-encoded where needed). */
  #path(key: string): string {
    checkObjectKey(key);
    const encoded = key.split("/").map(encodeName).join("/");
    return this.#root === "/" ? `/${encoded}` : `${this.#root}/${encoded}`;
  }

  /** `relative` (a key or a part of one) with each name percent-encoded where needed. */
  #encodedPath(relative: string): string {
    return relative.split("/").map(encodeName).join("/");
  }

  /**
   * Runs `body` with a pooled connection and turns its failure into `NotFoundError`/`StorageError` (an
   * abort rejects with the signal's reason). A connection that broke is closed, not put back.
   */
  async #withConnection<T>(
    action: string,
    signal: AbortSignal | undefined,
    body: (connection: Connection) => Promise<T>,
  ): Promise<T> {
    let connection: Connection | undefined;
    let reusable = false;
    try {
      connection = await this.#acquire(action);
      const result = await body(connection);
      reusable = true;
      return result;
    } catch (err) {
      const client = connection?.client;
      // A reply (4xx/5xx) leaves the connection usable; anything else (socket, timeout, abort) does not.
      reusable = client !== undefined && !client.closed && replyCode(err) !== undefined;
      const lost = client !== undefined && client.closed && replyCode(err) === undefined;
      throw this.#error(action, lost ? new ConnectionLost(messageOf(err), { cause: err }) : err, signal);
    } finally {
      if (connection !== undefined) this.#release(connection, reusable);
    }
  }

  async #acquire(action: string): Promise<Connection> {
    for (;;) {
      if (this.#closed) throw new StorageError(`${action}: the storage is closed`);
      const idle = this.#idle.pop();
      if (idle !== undefined) {
        if (!idle.client.closed && Date.now() - idle.lastUsed < IDLE_CHECK_MS) return idle;
        if (!idle.client.closed && await idle.client.send("NOOP").then(() => true, () => false)) return idle;
        idle.client.close();
        this.#count--;
        continue;
      }
      if (this.#count < this.#max) {
        this.#count++;
        try {
          return await this.#connect();
        } catch (err) {
          this.#count--;
          this.#waiting.shift()?.();
          throw err;
        }
      }
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    }
  }

  #release(connection: Connection, reusable: boolean): void {
    if (reusable && !this.#closed && !connection.client.closed) {
      connection.lastUsed = Date.now();
      this.#idle.push(connection);
    } else {
      connection.client.close();
      this.#count--;
    }
    this.#waiting.shift()?.();
  }

  /** Connects and logs in; the steps of basic-ftp's `access()`, so that a failure says which one failed. */
  async #connect(): Promise<Connection> {
    const target = this.#target;
    const client = new Client(target.timeout);
    let step: "connect" | "tls" | "login" = "connect";
    try {
      await client.connect(target.host, target.port);
      if (target.tls !== undefined) {
        step = "tls";
        // `host` lets data connections resume the control connection's TLS session (as access() does).
        await client.useTLS({ ...target.tls, host: target.host });
      }
      step = "login";
      await client.sendIgnoringError("OPTS UTF8 ON"); // before USER, for non-ASCII names (as access() does)
      await client.login(target.user, target.password);
      await client.useDefaultSettings();
      const features = await client.features();
      return { client, mlst: features.has("MLST"), lastUsed: Date.now() };
    } catch (err) {
      client.close();
      throw this.#connectError(err, step);
    }
  }

  /** Describes a failed connection or login. */
  #connectError(err: unknown, step: "connect" | "tls" | "login"): StorageError {
    const action = `Cannot connect to ${this.url}`;
    const code = replyCode(err);
    const reply = oneLine(messageOf(err));
    if (code !== undefined) {
      if (step === "login" && code >= 500) {
        return new StorageError(`${action}: the server refused user "${this.#target.user}" (${reply})`, {
          cause: err,
        });
      }
      if (step === "tls" && code >= 500) {
        return new StorageError(`${action}: the server refused TLS (AUTH TLS: ${reply})`, { cause: err });
      }
      // 421 "too many connections" and other 4xx replies are transient.
      return new StorageError(`${action}: ${reply}`, { cause: err, retriable: code < 500 });
    }
    const errorCode = codeOf(err) ?? "";
    if (/CERT|SELF_SIGNED|UNABLE_TO_|ALTNAME|HOSTNAME/.test(errorCode)) {
      return new StorageError(
        `${action}: the server's TLS certificate does not verify: ${reply} (${errorCode}); if the ` +
          `server uses a private CA or a self-signed certificate, pass it with --ftp-ca-file or FROST_FTP_CA_FILE`,
        { cause: err },
      );
    }
    const network = networkFailure(err);
    if (network !== undefined) {
      return new StorageError(`${action}: ${network.reason}`, { cause: err, ...network });
    }
    // basic-ftp's own failures ("Timeout (control socket)", "Server sent FIN packet unexpectedly, …").
    return new StorageError(`${action}: ${reply}`, { cause: err, retriable: true });
  }

  /**
   * `mkdir -p dir` for a folder below `base` (a folder that exists: the root unless told), top-down with MKD
   * alone: MKD of a folder that exists fails harmlessly, while probing with CWD first is not free (pure-ftpd
   * answers each failed CWD in a row 100 ms later than the one before). Concurrent calls for one folder are
   * fine.
   */
  async #makeFolders(client: Client, dir: string, action: string, base = this.#root): Promise<void> {
    let at = base;
    let last: FTPResponse | undefined;
    for (const part of path.posix.relative(base, dir).split("/")) {
      if (part === "") continue;
      at = path.posix.join(at, part);
      last = await client.sendIgnoringError(`MKD ${at}`);
    }
    if (last === undefined || last.code === MKD_DONE) return;
    // Refused: fine when the folder is there (made earlier, or just now by a concurrent call).
    if (await isFolder(client, dir)) return;
    throw new StorageError(`${action}: cannot create folder "${dir}" (${oneLine(last.message)})`);
  }

  /** Removes `dir` and its parents while they are empty, stopping at the root. Best effort. */
  async #removeEmptyFolders(client: Client, dir: string): Promise<void> {
    const inside = this.#root === "/" ? "/" : `${this.#root}/`;
    while (dir.startsWith(inside) && dir !== this.#root) {
      const reply = await client.sendIgnoringError(`RMD ${dir}`);
      if (reply.code >= 300 && !/no such/i.test(reply.message)) return; // not empty: leave it
      dir = path.posix.dirname(dir);
    }
  }

  /** Streams `start` up to `end` (exclusive, or Infinity for "to the end") of `file` with REST + RETR. */
  #download(
    file: string,
    start: number,
    end: number,
    size: number,
    action: string,
    signal: AbortSignal | undefined,
  ): ReadableStream<Uint8Array> {
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    let position = start;
    let started = false;
    let done = false;
    let resume: (() => void) | undefined;
    const stopEarly = Number.isFinite(end) && size - end > DRAIN_LIMIT;
    const readAhead = this.#target.tls === undefined ? READ_AHEAD : READ_AHEAD_TLS;
    const finish = () => {
      if (done) return;
      done = true;
      controller.close();
    };
    const sink = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        if (done) return callback(); // the rest of a ranged read, drained to keep the connection
        const piece = position + chunk.byteLength > end ? chunk.subarray(0, end - position) : chunk;
        position += piece.byteLength;
        controller.enqueue(new Uint8Array(piece.buffer, piece.byteOffset, piece.byteLength));
        if (position >= end) {
          finish();
          return stopEarly ? callback(new RangeComplete()) : callback();
        }
        // desiredSize is minus the bytes queued (highWaterMark 0, sized by byteLength).
        if ((controller.desiredSize ?? 0) > -readAhead) callback();
        else resume = callback;
      },
    });
    const onAbort = () => sink.destroy(signal?.reason);
    const run = async () => {
      signal?.addEventListener("abort", onAbort, { once: true });
      try {
        await this.#withConnection(action, signal, ({ client }) => client.downloadTo(sink, file, start));
        finish();
      } catch (err) {
        if (done) return; // finished (a ranged read stopped early) or cancelled: the error is ours
        done = true;
        controller.error(err);
      } finally {
        signal?.removeEventListener("abort", onAbort);
      }
    };
    return new ReadableStream<Uint8Array>({
      start(c) {
        controller = c;
      },
      pull() {
        if (!started) {
          started = true;
          void run();
        }
        const wake = resume;
        resume = undefined;
        wake?.();
      },
      cancel(reason) {
        done = true;
        sink.destroy(reason instanceof Error ? reason : undefined);
      },
    }, { highWaterMark: 0, size: (chunk) => chunk.byteLength });
  }

  /** Turns a failure into `NotFoundError`/`StorageError`; an abort rejects with the signal's reason. */
  #error(action: string, err: unknown, signal: AbortSignal | undefined): unknown {
    if (signal?.aborted) return signal.reason;
    if (err instanceof StorageError || err instanceof TypeError || err instanceof RangeError) return err;
    const code = replyCode(err);
    const reply = oneLine(messageOf(err));
    if (code !== undefined) {
      // 4xx replies are transient by definition (421 closing, 425/426 data connection, 450/451/452 busy
      // or local error).
      return new StorageError(`${action}: ${reply}`, { cause: err, retriable: code >= 400 && code < 500 });
    }
    if (err instanceof ConnectionLost) {
      const network = networkFailure(err.cause);
      return new StorageError(`${action}: connection lost (${network?.reason ?? reply})`, {
        cause: err.cause,
        retriable: true,
      });
    }
    const network = networkFailure(err);
    if (network !== undefined) {
      return new StorageError(`${action}: ${network.reason}`, { cause: err, ...network });
    }
    return new StorageError(`${action}: ${reply}`, { cause: err });
  }
}

/** Ends a ranged download early (the connection is then dropped, not drained). */
class RangeComplete extends Error {
  override name = "RangeComplete";
}

/** Uploads `data` with STOR; an abort destroys the source, which makes basic-ftp drop the connection. */
async function upload(client: Client, data: Uint8Array, remote: string, signal: AbortSignal | undefined) {
  const source = uploadPieces(data);
  const onAbort = () =>
    source.destroy(signal?.reason instanceof Error ? signal.reason : new Error("aborted"));
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    await client.uploadFrom(source, remote);
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
}

/** RNFR/RNTO over an existing file; a server that refuses to replace one gets DELE first (not atomic). */
async function renameOver(client: Client, from: string, to: string): Promise<void> {
  await client.send(`RNFR ${from}`);
  try {
    await client.send(`RNTO ${to}`);
  } catch (err) {
    if (!isReply(err, 550, 553)) throw err;
    await client.sendIgnoringError(`DELE ${to}`);
    await client.send(`RNFR ${from}`);
    await client.send(`RNTO ${to}`);
  }
}

/** Size and time of a file: MLST when the server has it, else SIZE. A folder or a 550 is NotFoundError. */
async function statFile(
  connection: Connection,
  file: string,
  action: string,
): Promise<{ size: number; modified?: Date }> {
  const { client } = connection;
  try {
    if (connection.mlst) {
      const reply = await client.send(`MLST ${file}`);
      const facts = parseFacts(reply.message);
      const type = facts.get("type")?.toLowerCase();
      if (type !== "file") {
        throw new NotFoundError(
          `${action}: not found (it is ${type === undefined ? "not a file" : `a ${type}`})`,
        );
      }
      const size = Number(facts.get("size") ?? facts.get("sizd"));
      if (!Number.isSafeInteger(size)) {
        throw new StorageError(`${action}: the server's MLST reply has no size`);
      }
      const modified = parseTime(facts.get("modify"));
      return modified === undefined ? { size } : { size, modified };
    }
    return { size: await client.size(file) };
  } catch (err) {
    if (isReply(err, 550)) throw new NotFoundError(`${action}: not found`, { cause: err });
    throw err;
  }
}

/** The facts of an MLST reply (`250-…\n type=file;size=5;modify=…; /path\n250 End`), lower-cased names. */
function parseFacts(message: string): Map<string, string> {
  const facts = new Map<string, string>();
  const line = message.split(/\r?\n/).find((l) => l.startsWith(" ")) ?? "";
  const space = line.indexOf(" ", 1);
  for (const fact of line.slice(1, space === -1 ? undefined : space).split(";")) {
    const equals = fact.indexOf("=");
    if (equals > 0) facts.set(fact.slice(0, equals).toLowerCase(), fact.slice(equals + 1));
  }
  return facts;
}

/** Parses an MLSx time `YYYYMMDDHHMMSS[.sss]` (UTC). */
function parseTime(value: string | undefined): Date | undefined {
  const match = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(?:\.(\d{1,3}))?$/.exec(value ?? "");
  if (match === null) return undefined;
  const [y, mo, d, h, mi, s] = match.slice(1, 7).map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const ms = match[7] === undefined ? 0 : Number(match[7].padEnd(3, "0"));
  return new Date(Date.UTC(y, mo - 1, d, h, mi, s, ms));
}

/** Whether `dir` is a folder (CWD succeeds). */
async function isFolder(client: Client, dir: string): Promise<boolean> {
  return (await client.sendIgnoringError(`CWD ${dir}`)).code < 300;
}

/** One folder of a list() walk. */
interface Folder {
  dir: string;
  keyPrefix: string;
}

/**
 * Lists one folder: CWD into it, then MLSD (or LIST) without a path argument, which servers may glob. With
 * `temps`, the objects are the temp files (`TEMP_PREFIX`, for `deleteLeftovers`) instead of the others. A
 * missing folder is empty; the failed CWD is followed by one into `root` (which exists), because pure-ftpd
 * delays each failed CWD in a row by 100 ms more than the one before.
 */
async function readFolder(
  client: Client,
  folder: Folder,
  root: string,
  action: string,
  temps = false,
): Promise<{ objects: ObjectInfo[]; folders: Folder[] }> {
  const objects: ObjectInfo[] = [];
  const folders: Folder[] = [];
  const reply = await client.sendIgnoringError(`CWD ${folder.dir}`);
  if (reply.code >= 300) {
    if (/denied|permission|not allowed/i.test(reply.message)) {
      throw new StorageError(`${action}: cannot enter folder "${folder.dir}" (${oneLine(reply.message)})`);
    }
    await client.sendIgnoringError(`CWD ${root}`);
    return { objects, folders }; // missing, or not a folder: nothing below it
  }
  const entries: FileInfo[] = await client.list();
  for (const entry of entries) {
    const temp = entry.name.startsWith(TEMP_PREFIX);
    if ((temp && !temps) || entry.name.includes("/")) continue;
    const name = decodeName(entry.name);
    if (entry.isDirectory) {
      if (!temp) {
        folders.push({ dir: `${folder.dir}/${entry.name}`, keyPrefix: `${folder.keyPrefix}${name}/` });
      }
    } else if (entry.isFile && temp === temps) {
      const info: ObjectInfo = { key: folder.keyPrefix + name, size: entry.size };
      if (entry.modifiedAt !== undefined) info.modified = entry.modifiedAt;
      objects.push(info);
    }
  }
  return { objects, folders };
}

/** Percent-encodes `%`, control characters and trailing spaces of one path component. */
function encodeName(name: string): string {
  const escaped = name.replace(
    // deno-lint-ignore no-control-regex
    /[%\0-\x1f\x7f]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, "0")}`,
  );
  const trailing = /( +)$/.exec(escaped)?.[1]?.length ?? 0;
  return trailing === 0 ? escaped : escaped.slice(0, -trailing) + "%20".repeat(trailing);
}

/** Reverses `encodeName()`. */
function decodeName(name: string): string {
  return name.replace(/%([0-9A-Fa-f]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

/** The reply code of a basic-ftp FTPError, if `err` is one. */
function replyCode(err: unknown): number | undefined {
  if (typeof err !== "object" || err === null || !("code" in err)) return undefined;
  return typeof err.code === "number" ? err.code : undefined;
}

function isReply(err: unknown, ...codes: number[]): boolean {
  const code = replyCode(err);
  return code !== undefined && codes.includes(code);
}

/**
 * The password: the first line of `passwordFile`, else `$FROST_FTP_PASSWORD`, else the first line of the
 * file `$FROST_FTP_PASSWORD_FILE`; `undefined` when none is set.
 */
async function findPassword(
  passwordFile: string | undefined,
  env: Record<string, string | undefined>,
  shown: string,
): Promise<string | undefined> {
  const fromEnv = nonEmpty(env.FROST_FTP_PASSWORD);
  const file = passwordFile ?? (fromEnv === undefined ? nonEmpty(env.FROST_FTP_PASSWORD_FILE) : undefined);
  if (file === undefined) return fromEnv;
  return (await readSetting(file, "password file", shown)).split(/\r?\n/, 1)[0] ?? "";
}

/** Reads a small file named in the settings, or throws a StorageError naming it. */
async function readSetting(file: string, what: string, shown: string): Promise<string> {
  try {
    return await fs.promises.readFile(file, "utf8");
  } catch (err) {
    const reason = codeOf(err) === "ENOENT" ? "no such file" : messageOf(err);
    throw new StorageError(`Cannot connect to ${shown}: cannot read ${what} "${file}": ${reason}`, {
      cause: err,
    });
  }
}
