/**
 * A storage in an S3 bucket (AWS, Ceph RGW, MinIO, Swift's s3api, …) over `@aws-sdk/client-s3`: each key is
 * an object `<prefix>/<key>` of the bucket.
 *
 * Credentials come from the SDK's default chain (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, `AWS_PROFILE`
 * and the shared config files, SSO, web identity, instance roles), never from the command line.
 * @module
 */
import process from "node:process";
import { createHash } from "node:crypto";
import type * as S3Sdk from "@aws-sdk/client-s3";
import { messageOf } from "../base/errors.ts";
import { uploadPieces } from "./_pieces.ts";
import { checkKey, checkPrefix, checkRange, mapStreamErrors } from "./_key.ts";
import {
  checkedOpen,
  emptyRange,
  emptyStream,
  idleStream,
  IdleWatch,
  isKey,
  networkFailure,
  nonEmpty,
  oneLine,
  parseObjectStoreUrl,
  rangeHeader,
  SILENT_LOGGER,
} from "./_object_store.ts";
import {
  type CallOptions,
  type CleansLeftovers,
  type HashesPuts,
  NotFoundError,
  type ObjectInfo,
  type PutOptions,
  type Range,
  type Storage,
  StorageError,
} from "./storage.ts";

// The SDK through `require` where there is one (Bun): the bundler then packs its CommonJS build, whose
// `require("node:http")` and the like run when an S3 storage is opened. The ESM build's imports of node
// built-ins are hoisted to the start of the bundle: they cost every run of the binary ~3 ms, local ones too.
const {
  AbortMultipartUploadCommand,
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  PutObjectCommand,
  S3Client,
} =
  (typeof require === "function"
    ? require("@aws-sdk/client-s3")
    : await import("@aws-sdk/client-s3")) as typeof S3Sdk;
type S3Client = S3Sdk.S3Client;

/** The settings a user gives on the command line (`--s3-endpoint`, `--s3-region`, `--s3-path-style`). */
export interface S3Settings {
  /**
   * URL of an S3-compatible server, e.g. `http://127.0.0.1:18080`. Default: `$FROST_S3_ENDPOINT`, else
   * AWS's endpoint for the region.
   */
  endpoint?: string;
  /** Region. Default: `$FROST_S3_REGION`, else `$AWS_REGION`, else `$AWS_DEFAULT_REGION`, else `us-east-1`. */
  region?: string;
  /**
   * Address the bucket in the path (`http://host/bucket/key`) rather than in the host name, as most
   * S3-compatible servers need. Default: `$FROST_S3_PATH_STYLE` is `1` or `true`, else false.
   */
  pathStyle?: boolean;
}

/** Options of `new S3Storage()`. */
export interface S3Options extends S3Settings {
  /**
   * Static credentials, for tests and programs that embed frost (the CLI never sets them). Default: the
   * SDK's default credential chain.
   */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Where the `FROST_S3_*` and `AWS_REGION` settings are read. Default: `process.env`. */
  env?: Record<string, string | undefined>;
  /** Keys per `ListObjectsV2` page, 1 to 1000 (small values exercise paging in tests). Default: 1000. */
  pageSize?: number;
  /** Milliseconds to wait for a connection. Default: 30 000. */
  connectionTimeout?: number;
  /**
   * Milliseconds a request may go without progress (no byte sent or received) before it fails with a
   * retriable `StorageError`. Default: 120 000.
   */
  idleTimeout?: number;
}

/** Error codes S3 servers send for wrong, expired or insufficient credentials. */
const ACCESS_CODES = new Set([
  "AccessDenied",
  "AllAccessDisabled",
  "InvalidAccessKeyId",
  "SignatureDoesNotMatch",
  "ExpiredToken",
  "InvalidToken",
  "TokenRefreshRequired",
  "InvalidSecurity",
  "AccountProblem",
  "Forbidden",
]);
/** Error codes after which the same call may succeed. */
const RETRIABLE_CODES = new Set([
  "SlowDown",
  "Throttling",
  "ThrottlingException",
  "RequestLimitExceeded",
  "TooManyRequestsException",
  "RequestThrottled",
  "RequestTimeout",
  "InternalError",
  "ServiceUnavailable",
  "OperationAborted",
]);
/** Codes the SDK gives to errors without a body (HEAD requests); they say nothing beyond the HTTP status. */
const EMPTY_CODES = new Set(["Unknown", "UnknownError", "NotFound", "Forbidden", "BadRequest"]);

/**
 * A storage under `s3://bucket/prefix`. Use `S3Storage.open()` to check (or create) the bucket first.
 *
 * @example
 * ```ts ignore
 * import { S3Storage } from "./s3.ts";
 * const storage = await S3Storage.open("s3://backups/frost", {
 *   create: true,
 *   endpoint: "http://127.0.0.1:18080",
 *   pathStyle: true,
 * });
 * await storage.put("host_etc/hello", new TextEncoder().encode("hello"));
 * await storage.close();
 * ```
 */
export class S3Storage implements Storage, HashesPuts, CleansLeftovers {
  /** `s3://bucket[/prefix]`. */
  readonly url: string;
  /** The bucket. */
  readonly bucket: string;
  /** The key prefix of every object, `""` or ending with `/`. */
  readonly #root: string;
  readonly #client: S3Client;
  readonly #pageSize: number;
  /** How the endpoint shows in messages. */
  readonly #server: string;
  /** Whether the endpoint is AWS's own. */
  readonly #aws: boolean;
  /** Milliseconds a request may move no byte (`S3Options.idleTimeout`). */
  readonly #idle: number;
  #closed = false;

  /** Uses the bucket and prefix of `spec` (`s3://bucket[/prefix]`) without checking them. */
  constructor(spec: string, options: S3Options = {}) {
    const location = parseObjectStoreUrl(spec, "s3");
    this.url = location.url;
    this.bucket = location.container;
    this.#root = location.prefix === "" ? "" : `${location.prefix}/`;
    const env = options.env ?? process.env;
    const endpoint = options.endpoint ?? nonEmpty(env.FROST_S3_ENDPOINT);
    if (endpoint !== undefined && !/^https?:\/\/[^/]/i.test(endpoint)) {
      throw new TypeError(`Cannot use S3 endpoint "${endpoint}": it is not an http:// or https:// URL`);
    }
    const region = options.region ?? nonEmpty(env.FROST_S3_REGION) ?? nonEmpty(env.AWS_REGION) ??
      nonEmpty(env.AWS_DEFAULT_REGION) ?? "us-east-1";
    const pathStyle = options.pathStyle ?? /^(1|true|yes)$/i.test(env.FROST_S3_PATH_STYLE ?? "");
    const pageSize = options.pageSize ?? 1000;
    if (!Number.isSafeInteger(pageSize) || pageSize < 1 || pageSize > 1000) {
      throw new RangeError(`Cannot use S3 page size ${pageSize}: it is not a whole number from 1 to 1000`);
    }
    this.#pageSize = pageSize;
    this.#server = endpoint ?? `AWS S3 (${region})`;
    this.#aws = endpoint === undefined;
    this.#idle = options.idleTimeout ?? 120_000;
    this.#client = new S3Client({
      // The SDK would print some failures on the console itself; frost prints its own lines.
      logger: SILENT_LOGGER,
      region,
      endpoint,
      forcePathStyle: pathStyle,
      credentials: options.credentials,
      // Retries are frost's decorator, composed once in commands/cli.ts.
      maxAttempts: 1,
      // Every put's integrity rests on its signed payload hash (x-amz-content-sha256), which the server
      // checks: frost's own SHA-256 for segments, the SDK's for other objects. A flexible checksum on top
      // (CRC32 by default) would make the SDK send a streamed body as aws-chunked, which Swift's s3api
      // refuses ("NotImplemented").
      requestChecksumCalculation: "WHEN_REQUIRED",
      followRegionRedirects: true,
      requestHandler: {
        connectionTimeout: options.connectionTimeout ?? 30_000,
        socketTimeout: this.#idle,
      },
    });
  }

  /**
   * Checks that the bucket exists and is readable with the credentials and returns a storage in it. With
   * `create: true` a missing bucket is created. Rejects with `StorageError` when the bucket is missing (and
   * not creatable), the credentials are refused, or the server cannot be reached (retriable).
   */
  static async open(spec: string, options: S3Options & { create: boolean }): Promise<S3Storage> {
    const storage = new S3Storage(spec, options);
    return await checkedOpen(storage, () => storage.#check(options.create));
  }

  /** The SDK signs the SHA-256 of every put's payload (`x-amz-content-sha256`); `put` takes it when given. */
  readonly putHashes = true;

  /**
   * Stores `data` with one PutObject: S3 shows either the whole object or the previous one. With
   * `options.sha256` the request carries it as the signed payload hash, so the SDK does not hash the bytes
   * again and the server checks that what it got is what the caller hashed; the body then goes out in
   * 1 MiB pieces, each written once the socket has taken the one before (`uploadPieces`).
   */
  async put(key: string, data: Uint8Array, options: PutOptions = {}): Promise<void> {
    const objectKey = this.#key(key);
    const { signal, sha256 } = options;
    signal?.throwIfAborted();
    const action = `Cannot write "${key}" to ${this.url}`;
    // The body goes in pieces, so that the idle timeout sees it move; the SDK cannot hash a stream, so
    // the payload hash is computed here when the caller has none.
    const payloadHash = sha256 ?? createHash("sha256").update(data).digest("hex");
    const watch = new IdleWatch(this.#idle, signal);
    const command = new PutObjectCommand({
      Bucket: this.bucket,
      Key: objectKey,
      Body: uploadPieces(data, watch.touch),
      ContentLength: data.byteLength,
      ContentType: "application/octet-stream",
    });
    command.middlewareStack.add((next) => (args) => {
      (args.request as { headers: Record<string, string> }).headers["x-amz-content-sha256"] = payloadHash;
      return next(args);
    }, { step: "build", name: "frostPayloadSha256" });
    try {
      await this.#send((abortSignal) => this.#client.send(command, { abortSignal }), signal, action, watch);
    } catch (err) {
      throw this.#error(action, err, signal);
    }
  }

  /** Streams the object, or `range` of it (a ranged GetObject). */
  async get(key: string, options: CallOptions & { range?: Range } = {}): Promise<ReadableStream<Uint8Array>> {
    const objectKey = this.#key(key);
    const { signal, range } = options;
    checkRange(key, range);
    signal?.throwIfAborted();
    const action = `Cannot read "${key}" from ${this.url}`;
    const empty = await emptyRange(this, key, range, signal);
    if (empty) return empty;
    const header = rangeHeader(range);
    try {
      const response = await this.#send(
        (abortSignal) =>
          this.#client.send(
            new GetObjectCommand({ Bucket: this.bucket, Key: objectKey, Range: header }),
            { abortSignal },
          ),
        signal,
        action,
      );
      const body = response.Body;
      if (header !== undefined && response.ContentRange === undefined) {
        await body?.transformToWebStream().cancel().catch(() => {});
        throw new StorageError(`${action}: the server ignored the requested range`);
      }
      if (body === undefined) return emptyStream();
      const watched = idleStream(
        body.transformToWebStream(),
        this.#idle,
        signal,
        () => this.#timeout(action),
      );
      return mapStreamErrors(watched, (err) => this.#error(action, err, signal));
    } catch (err) {
      // 416: the object exists but the range starts at or after its end.
      if (statusOf(err) === 416 && !signal?.aborted) return emptyStream();
      throw this.#error(action, err, signal, true);
    }
  }

  /** Reports the size and modification time of `key` (HeadObject). */
  async stat(key: string, options: CallOptions = {}): Promise<ObjectInfo> {
    const objectKey = this.#key(key);
    const { signal } = options;
    signal?.throwIfAborted();
    try {
      const head = await this.#send(
        (abortSignal) =>
          this.#client.send(
            new HeadObjectCommand({ Bucket: this.bucket, Key: objectKey }),
            { abortSignal },
          ),
        signal,
        `Cannot stat "${key}" in ${this.url}`,
      );
      return { key, size: head.ContentLength ?? 0, modified: head.LastModified };
    } catch (err) {
      throw this.#error(`Cannot stat "${key}" in ${this.url}`, err, signal, true);
    }
  }

  /** Pages through ListObjectsV2 with continuation tokens; objects whose names are not valid keys are skipped. */
  async *list(prefix: string, options: CallOptions = {}): AsyncGenerator<ObjectInfo> {
    checkPrefix(prefix);
    for await (
      const page of this.#pages(prefix, false, options.signal, `Cannot list "${prefix}" in ${this.url}`)
    ) {
      for (const item of page.Contents ?? []) {
        const key = item.Key?.startsWith(this.#root) ? item.Key.slice(this.#root.length) : undefined;
        if (key === undefined || !isKey(key)) continue; // e.g. a "folder/" marker made by a console
        yield { key, size: item.Size ?? 0, modified: item.LastModified };
      }
    }
  }

  /**
   * The common prefixes of a ListObjectsV2 with delimiter "/", as folder names, then those of the unfinished
   * multipart uploads (ListMultipartUploads) that no object has: a folder holding only an upload cut in the
   * middle is one a file system's temp file would make, and `deleteLeftovers` aborts its upload.
   */
  async *listFolders(prefix: string, options: CallOptions = {}): AsyncGenerator<string> {
    checkPrefix(prefix);
    const action = `Cannot list the folders of "${prefix}" in ${this.url}`;
    const start = this.#root + prefix;
    const folder = (common: { Prefix?: string }) => {
      const name = common.Prefix?.startsWith(start) ? common.Prefix.slice(start.length, -1) : undefined;
      return name !== undefined && isKey(name) && !name.includes("/") ? name : undefined;
    };
    // Few in practice (uploads are aborted with their orphan): held while the objects' folders stream.
    const uploads = new Set<string>();
    for await (const page of this.#uploadPages(start, "/", options.signal, action)) {
      for (const common of page.CommonPrefixes ?? []) {
        const name = folder(common);
        if (name !== undefined) uploads.add(name);
      }
    }
    for await (const page of this.#pages(prefix, true, options.signal, action)) {
      for (const common of page.CommonPrefixes ?? []) {
        const name = folder(common);
        if (name === undefined) continue;
        uploads.delete(name);
        yield name;
      }
    }
    yield* uploads;
  }

  /**
   * The pages of a ListMultipartUploads of `start` (a bucket prefix), with `delimiter` if given; none where
   * the server or a policy does not allow listing uploads (AccessDenied, NotImplemented): there are none
   * frost could have left.
   */
  async *#uploadPages(
    start: string,
    delimiter: string | undefined,
    signal: AbortSignal | undefined,
    action: string,
  ) {
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    do {
      signal?.throwIfAborted();
      let page;
      try {
        page = await this.#send(
          (abortSignal) =>
            this.#client.send(
              new ListMultipartUploadsCommand({
                Bucket: this.bucket,
                Prefix: start,
                Delimiter: delimiter,
                MaxUploads: this.#pageSize,
                KeyMarker: keyMarker,
                UploadIdMarker: uploadIdMarker,
              }),
              { abortSignal },
            ),
          signal,
          action,
        );
      } catch (err) {
        const status = statusOf(err);
        if (status === 501 || status === 403 || ACCESS_CODES.has(codeOf(err) ?? "")) return;
        throw this.#error(action, err, signal);
      }
      yield page;
      keyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
      uploadIdMarker = page.IsTruncated ? page.NextUploadIdMarker : undefined;
      if (page.IsTruncated && keyMarker === undefined) {
        throw new StorageError(`${action}: the server sent a truncated listing without a next marker`);
      }
    } while (keyMarker !== undefined);
  }

  /** The pages of a listing of `prefix` (folders: with delimiter "/", so one level only). */
  async *#pages(prefix: string, folders: boolean, signal: AbortSignal | undefined, action: string) {
    let token: string | undefined;
    do {
      signal?.throwIfAborted();
      let page;
      try {
        page = await this.#send(
          (abortSignal) =>
            this.#client.send(
              new ListObjectsV2Command({
                Bucket: this.bucket,
                Prefix: this.#root + prefix,
                MaxKeys: this.#pageSize,
                ContinuationToken: token,
                Delimiter: folders ? "/" : undefined,
              }),
              { abortSignal },
            ),
          signal,
          action,
        );
      } catch (err) {
        throw this.#error(action, err, signal);
      }
      yield page;
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
      if (page.IsTruncated && token === undefined) {
        throw new StorageError(`${action}: the server sent a truncated listing without a continuation token`);
      }
    } while (token !== undefined);
  }

  /** Removes `key`; a missing key is fine. */
  async delete(key: string, options: CallOptions = {}): Promise<void> {
    const objectKey = this.#key(key);
    const { signal } = options;
    signal?.throwIfAborted();
    try {
      await this.#send(
        (abortSignal) =>
          this.#client.send(
            new DeleteObjectCommand({ Bucket: this.bucket, Key: objectKey }),
            { abortSignal },
          ),
        signal,
        `Cannot delete "${key}" from ${this.url}`,
      );
    } catch (err) {
      if (statusOf(err) === 404 && codeOf(err) !== "NoSuchBucket" && !signal?.aborted) return;
      throw this.#error(`Cannot delete "${key}" from ${this.url}`, err, signal);
    }
  }

  /**
   * Aborts the unfinished multipart uploads under `prefix` (see `CleansLeftovers`), which S3 keeps, and
   * bills, until they are completed or aborted; resolves to the bytes of their parts (ListParts, one request
   * per upload). frost's own `put` is one PutObject, so a run killed in its middle leaves no upload: these
   * come from other tools (or an older frost) writing there. A server or policy that does not allow listing
   * uploads (AccessDenied, NotImplemented) has none frost could have left: that resolves to 0.
   */
  async deleteLeftovers(prefix: string, options: CallOptions = {}): Promise<number> {
    checkPrefix(prefix);
    const { signal } = options;
    const action = `Cannot delete the unfinished uploads under "${prefix}" in ${this.url}`;
    const send = <T>(make: (abortSignal: AbortSignal) => Promise<T>) => this.#send(make, signal, action);
    let freed = 0;
    try {
      for await (const page of this.#uploadPages(this.#root + prefix, undefined, signal, action)) {
        for (const upload of page.Uploads ?? []) {
          if (upload.Key === undefined || upload.UploadId === undefined) continue;
          const { Key, UploadId } = upload;
          let parts = 0;
          let partMarker: string | undefined;
          do {
            const listed = await send((abortSignal) =>
              this.#client.send(
                new ListPartsCommand({ Bucket: this.bucket, Key, UploadId, PartNumberMarker: partMarker }),
                { abortSignal },
              )
            ).catch((err) => {
              if (codeOf(err) === "NoSuchUpload") return undefined; // completed or aborted meanwhile
              throw err;
            });
            for (const part of listed?.Parts ?? []) parts += part.Size ?? 0;
            partMarker = listed?.IsTruncated ? listed.NextPartNumberMarker : undefined;
          } while (partMarker !== undefined);
          try {
            await send((abortSignal) =>
              this.#client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key, UploadId }), {
                abortSignal,
              })
            );
            freed += parts;
          } catch (err) {
            if (codeOf(err) !== "NoSuchUpload") throw err;
          }
        }
      }
      return freed;
    } catch (err) {
      throw this.#error(action, err, signal);
    }
  }

  /** Closes the SDK's connections. */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#client.destroy();
    }
    return Promise.resolve();
  }

  /** Lists one key to check bucket and credentials (its errors carry a reason, HeadBucket's do not). */
  async #check(create: boolean): Promise<void> {
    const action = `Cannot open ${this.url}`;
    try {
      await this.#send(
        (abortSignal) =>
          this.#client.send(
            new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.#root, MaxKeys: 1 }),
            { abortSignal },
          ),
        undefined,
        action,
      );
      return;
    } catch (err) {
      if (codeOf(err) !== "NoSuchBucket") throw this.#error(action, err, undefined);
      if (!create) {
        throw new StorageError(`${action}: bucket "${this.bucket}" does not exist (NoSuchBucket)`, {
          cause: err,
        });
      }
    }
    try {
      const region = await this.#client.config.region();
      await this.#send(
        (abortSignal) =>
          this.#client.send(
            new CreateBucketCommand({
              Bucket: this.bucket,
              // AWS wants the region named, except for us-east-1.
              CreateBucketConfiguration: region === "us-east-1" || !this.#aws
                ? undefined
                : { LocationConstraint: region as never },
            }),
            { abortSignal },
          ),
        undefined,
        `Cannot create bucket "${this.bucket}" for ${this.url}`,
      );
    } catch (err) {
      const code = codeOf(err);
      if (code === "BucketAlreadyOwnedByYou") return; // created meanwhile
      if (code === "BucketAlreadyExists") {
        throw new StorageError(
          `Cannot create bucket "${this.bucket}" for ${this.url}: the name is taken by another account (${code})`,
          { cause: err },
        );
      }
      throw this.#error(`Cannot create bucket "${this.bucket}" for ${this.url}`, err, undefined);
    }
  }

  /**
   * Runs `send` (one command, given the abort signal to pass on) under an idle timeout: `watch`, or a new
   * one that nothing touches (the whole exchange must then end within the timeout). A timeout rejects with
   * a retriable `StorageError`.
   */
  async #send<T>(
    send: (abortSignal: AbortSignal) => Promise<T>,
    signal: AbortSignal | undefined,
    action: string,
    watch = new IdleWatch(this.#idle, signal),
  ): Promise<T> {
    try {
      return await send(watch.signal);
    } catch (err) {
      if (watch.fired && !signal?.aborted) throw this.#timeout(action, err);
      throw err;
    } finally {
      watch.stop();
    }
  }

  /** The failure of a request that moved no byte for the idle timeout. */
  #timeout(action: string, cause?: unknown): StorageError {
    return new StorageError(
      `${action}: cannot reach ${this.#server}: timed out (no byte moved for ${this.#idle / 1000} s)`,
      { cause, retriable: true },
    );
  }

  /** Checks `key` and returns its object key. */
  #key(key: string): string {
    checkKey(key);
    return this.#root + key;
  }

  /** Turns an SDK failure into `NotFoundError`/`StorageError`; an abort rejects with the signal's reason. */
  #error(action: string, err: unknown, signal: AbortSignal | undefined, notFound = false): unknown {
    if (signal?.aborted) return signal.reason;
    if (err instanceof StorageError) return err;
    const status = statusOf(err);
    const code = codeOf(err);
    if (status === undefined) {
      if (err instanceof Error && err.name === "CredentialsProviderError") {
        return new StorageError(
          `${action}: no S3 credentials: ${oneLine(err.message)} ` +
            `(set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)`,
          { cause: err },
        );
      }
      const network = networkFailure(err);
      if (network !== undefined) {
        return new StorageError(`${action}: cannot reach ${this.#server}: ${network.reason}`, {
          cause: err,
          retriable: network.retriable,
        });
      }
      return new StorageError(`${action}: ${oneLine(messageOf(err))}`, { cause: err });
    }
    // HEAD responses have no body: their code only repeats the status.
    const known = code !== undefined && !EMPTY_CODES.has(code);
    const reason = known ? code : `HTTP ${status}`;
    if (code === "NoSuchBucket") {
      return new StorageError(`${action}: bucket "${this.bucket}" does not exist (${reason})`, {
        cause: err,
      });
    }
    if (notFound && (status === 404 || code === "NoSuchKey")) {
      return new NotFoundError(`${action}: not found`, { cause: err });
    }
    if (status === 401 || status === 403 || (code !== undefined && ACCESS_CODES.has(code))) {
      return new StorageError(`${action}: access denied (${reason})`, { cause: err });
    }
    // 501 (not implemented) and 507 (out of space, over quota) do not go away by waiting.
    const retriable = (status >= 500 && status !== 501 && status !== 507) || status === 429 ||
      status === 408 ||
      (code !== undefined && RETRIABLE_CODES.has(code));
    const text = known ? `${oneLine(messageOf(err))} (${code}, HTTP ${status})` : `HTTP ${status}`;
    return new StorageError(`${action}: ${text}`, { cause: err, retriable });
  }
}

/** The HTTP status of an SDK service error. */
function statusOf(err: unknown): number | undefined {
  if (typeof err !== "object" || err === null || !("$metadata" in err)) return undefined;
  const metadata = err.$metadata as { httpStatusCode?: unknown } | undefined;
  return typeof metadata?.httpStatusCode === "number" ? metadata.httpStatusCode : undefined;
}

/** The S3 error code of an SDK service error (`NoSuchKey`, `SlowDown`, …). */
function codeOf(err: unknown): string | undefined {
  if (typeof err !== "object" || err === null) return undefined;
  if ("Code" in err && typeof err.Code === "string") return err.Code;
  return "$metadata" in err && err instanceof Error ? err.name : undefined;
}
