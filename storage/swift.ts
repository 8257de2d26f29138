/**
 * A storage in an OpenStack Swift container over Swift's HTTP API with `fetch` (no maintained JavaScript
 * Swift client exists, so the few calls are written here): each key is an object `<prefix>/<key>`.
 *
 * Credentials come from the environment, as for the `swift` and `openstack` command-line clients:
 * - v1 auth (tempauth, swauth, most test setups): `ST_AUTH`, `ST_USER`, `ST_KEY`; or `OS_AUTH_URL` ending
 *   in `/v1.0` with `OS_USERNAME` and `OS_PASSWORD`;
 * - Keystone v3 (any other `OS_AUTH_URL`): password auth with `OS_USERNAME` (or `OS_USER_ID`),
 *   `OS_PASSWORD`, `OS_PROJECT_NAME` (or `OS_PROJECT_ID`, `OS_TENANT_NAME`), `OS_USER_DOMAIN_NAME` (or
 *   `OS_USER_DOMAIN_ID`), `OS_PROJECT_DOMAIN_NAME` (or `OS_PROJECT_DOMAIN_ID`), both domains defaulting to
 *   `Default`; or application credentials `OS_APPLICATION_CREDENTIAL_ID` and `OS_APPLICATION_CREDENTIAL_SECRET`.
 *   The object-store endpoint is taken from the token's catalog, filtered by `OS_INTERFACE` (default
 *   `public`) and `OS_REGION_NAME`.
 * - `OS_STORAGE_URL`, when set, is the account URL used instead of the one the auth service returns (as
 *   python-swiftclient's `--os-storage-url`), e.g. to go through a proxy.
 * @module
 */
import crypto from "node:crypto";
import process from "node:process";
import { messageOf } from "../base/errors.ts";
import { checkKey, checkPrefix, checkRange, mapStreamErrors } from "./_key.ts";
import {
  checkedOpen,
  emptyRange,
  emptyStream,
  idleStream,
  isKey,
  networkFailure,
  nonEmpty,
  oneLine,
  parseObjectStoreUrl,
  rangeHeader,
} from "./_object_store.ts";
import { UPLOAD_PIECE } from "./_pieces.ts";
import {
  type CallOptions,
  NotFoundError,
  type ObjectInfo,
  type Range,
  type Storage,
  StorageError,
} from "./storage.ts";

/** Options of `new SwiftStorage()`. */
export interface SwiftOptions {
  /** Where the `ST_*` and `OS_*` settings are read. Default: `process.env`. */
  env?: Record<string, string | undefined>;
  /** Names per listing request, 1 to 10 000 (small values exercise paging in tests). Default: 10 000. */
  pageSize?: number;
  /**
   * Milliseconds a request may go without progress (connecting, sending the next MiB, waiting for the
   * answer or for the next bytes of a download) before it fails with a retriable `StorageError`.
   * Default: 120 000.
   */
  idleTimeout?: number;
}

/** Where and how to authenticate, read from the environment. */
type AuthConfig =
  | { kind: "v1"; url: string; user: string; key: string }
  | { kind: "v3"; url: string; body: unknown; interface: string; region: string | undefined };

/** A token and the account URL it is for. */
interface Session {
  token: string;
  storageUrl: string;
  /** When the token expires (ms since the epoch), where the server says. */
  expires?: number;
}

/** A failure with its reason only; `#error()` adds the action and turns it into a `StorageError`. */
class Failure extends Error {
  readonly retriable: boolean;
  constructor(reason: string, options: { retriable?: boolean; cause?: unknown } = {}) {
    super(reason, { cause: options.cause });
    this.retriable = options.retriable ?? false;
  }
}

/** Texts for the network failures `fetch` reports only in words, and whether a retry may help. */
const FETCH_FAILURES: [RegExp, string, boolean][] = [
  [/connection refused/i, "connection refused", true],
  [/connection reset/i, "connection reset", true],
  [/timed out/i, "timed out", true],
  [/dns error|failed to lookup|name or service not known|getaddrinfo/i, "cannot resolve the host name", true],
  [/certificate/i, "the server's TLS certificate is not trusted", false],
];
/** HTTP statuses after which the same call may succeed (498 is Swift's "rate limited"). */
const RETRIABLE_STATUSES = new Set([408, 425, 429, 498, 499]);
/** Statuses whose responses cannot have a body. */
const NULL_BODY_STATUSES = new Set([101, 103, 204, 205, 304]);
/** Renew a token this long before it expires. */
const EXPIRY_MARGIN = 60_000;

/** One entry of a container listing: an object, or (with a delimiter) a folder. */
interface ListingEntry {
  name?: unknown;
  bytes?: unknown;
  last_modified?: unknown;
  subdir?: unknown;
}

/**
 * A storage under `swift://container/prefix`. Use `SwiftStorage.open()` to check (or create) the
 * container first.
 *
 * @example
 * ```ts ignore
 * import { SwiftStorage } from "./swift.ts";
 * const storage = await SwiftStorage.open("swift://backups/frost", {
 *   create: true,
 *   env: { ST_AUTH: "http://127.0.0.1:18080/auth/v1.0", ST_USER: "test:tester", ST_KEY: "testing" },
 * });
 * await storage.put("host_etc/hello", new TextEncoder().encode("hello"));
 * await storage.close();
 * ```
 */
export class SwiftStorage implements Storage {
  /** `swift://container[/prefix]`. */
  readonly url: string;
  /** The container. */
  readonly container: string;
  /** The name prefix of every object, `""` or ending with `/`. */
  readonly #root: string;
  readonly #auth: AuthConfig;
  /** `$OS_STORAGE_URL`: the account URL to use instead of the one the auth service gives (as swiftclient). */
  readonly #storageUrl: string | undefined;
  readonly #pageSize: number;
  readonly #timeout: number;
  /** The current session, shared by concurrent calls; replaced when the server refuses its token. */
  #session: Promise<Session> | undefined;
  /** The renewal started for each refused or expiring session. */
  readonly #renewals = new WeakMap<Session, Promise<Session>>();
  #closed = false;

  /**
   * Uses the container and prefix of `spec` (`swift://container[/prefix]`) without checking them. Throws
   * `TypeError` for a bad spec and `StorageError` when the environment has no usable credentials.
   */
  constructor(spec: string, options: SwiftOptions = {}) {
    const location = parseObjectStoreUrl(spec, "swift");
    this.url = location.url;
    this.container = location.container;
    this.#root = location.prefix === "" ? "" : `${location.prefix}/`;
    this.#auth = authConfig(options.env ?? process.env, this.url);
    const storageUrl = (options.env ?? process.env).OS_STORAGE_URL;
    this.#storageUrl = storageUrl
      ? checkUrl(storageUrl, "OS_STORAGE_URL", this.url).replace(/\/+$/, "")
      : undefined;
    const pageSize = options.pageSize ?? 10_000;
    if (!Number.isSafeInteger(pageSize) || pageSize < 1 || pageSize > 10_000) {
      throw new RangeError(
        `Cannot use Swift page size ${pageSize}: it is not a whole number from 1 to 10000`,
      );
    }
    this.#pageSize = pageSize;
    this.#timeout = options.idleTimeout ?? 120_000;
  }

  /**
   * Authenticates, checks that the container exists and returns a storage in it. With `create: true` a
   * missing container is created. Rejects with `StorageError` when the credentials are refused, the
   * container is missing (and not creatable), or the server cannot be reached (retriable).
   */
  static async open(spec: string, options: SwiftOptions & { create: boolean }): Promise<SwiftStorage> {
    const storage = new SwiftStorage(spec, options);
    return await checkedOpen(storage, () => storage.#check(options.create));
  }

  /**
   * Stores `data` with one PUT (Swift shows the whole object or the previous one), its MD5 as ETag. No
   * segments (SLO/DLO) and no temp objects: a cut put leaves nothing, so Swift has no `deleteLeftovers`.
   */
  async put(key: string, data: Uint8Array, options: CallOptions = {}): Promise<void> {
    const path = this.#objectPath(key);
    const { signal } = options;
    signal?.throwIfAborted();
    const action = `Cannot write "${key}" to ${this.url}`;
    try {
      // Swift checks the ETag against what it received and refuses the object (422) when they differ.
      const etag = crypto.createHash("md5").update(data).digest("hex");
      const response = await this.#request("PUT", path, {
        signal,
        body: data,
        headers: { "Content-Type": "application/octet-stream", ETag: etag },
      });
      await discard(response);
      if (response.status === 201 || response.status === 200) return;
      if (response.status === 404) throw this.#containerMissing(response);
      if (response.status === 422) {
        throw new Failure(`the server received other bytes than were sent (${statusText(response)})`, {
          retriable: true,
        });
      }
      throw statusFailure(response);
    } catch (err) {
      throw this.#error(action, err, signal);
    }
  }

  /** Streams the object, or `range` of it (a GET with a Range header, answered with 206). */
  async get(key: string, options: CallOptions & { range?: Range } = {}): Promise<ReadableStream<Uint8Array>> {
    const path = this.#objectPath(key);
    const { signal, range } = options;
    checkRange(key, range);
    signal?.throwIfAborted();
    const action = `Cannot read "${key}" from ${this.url}`;
    const empty = await emptyRange(this, key, range, signal);
    if (empty) return empty;
    const headers: Record<string, string> = {};
    const header = rangeHeader(range);
    if (header !== undefined) headers.Range = header;
    try {
      const response = await this.#request("GET", path, { signal, headers });
      if (response.status === 404) {
        await discard(response);
        throw new NotFoundError(`${action}: not found`);
      }
      // 416: the object exists but the range starts at or after its end.
      if (response.status === 416) {
        await discard(response);
        return emptyStream();
      }
      if (response.status !== 200 && response.status !== 206) {
        await discard(response);
        throw statusFailure(response);
      }
      if (response.status === 200 && headers.Range !== undefined) {
        await discard(response);
        throw new Failure("the server ignored the requested range");
      }
      if (response.body === null) return emptyStream();
      return mapStreamErrors(response.body, (err) => this.#error(action, err, signal));
    } catch (err) {
      throw this.#error(action, err, signal);
    }
  }

  /** Reports the size and modification time of `key` (a HEAD request). */
  async stat(key: string, options: CallOptions = {}): Promise<ObjectInfo> {
    const path = this.#objectPath(key);
    const { signal } = options;
    signal?.throwIfAborted();
    const action = `Cannot stat "${key}" in ${this.url}`;
    try {
      const response = await this.#request("HEAD", path, { signal });
      await discard(response);
      if (response.status === 404) throw new NotFoundError(`${action}: not found`);
      if (response.status !== 200 && response.status !== 204) throw statusFailure(response);
      const size = Number(response.headers.get("Content-Length") ?? "");
      if (!Number.isSafeInteger(size) || size < 0) throw new Failure("the server sent no object size");
      return { key, size, modified: modifiedOf(response.headers) };
    } catch (err) {
      throw this.#error(action, err, signal);
    }
  }

  /**
   * Pages through the container listing (`?format=json&prefix=…&marker=…&limit=…`) until a page comes back
   * empty; objects whose names are not valid keys are skipped.
   */
  async *list(prefix: string, options: CallOptions = {}): AsyncGenerator<ObjectInfo> {
    checkPrefix(prefix);
    for await (
      const item of this.#listing(prefix, false, options.signal, `Cannot list "${prefix}" in ${this.url}`)
    ) {
      if (typeof item.name !== "string") continue; // a "subdir" entry: not an object
      const key = item.name.startsWith(this.#root) ? item.name.slice(this.#root.length) : undefined;
      if (key === undefined || !isKey(key)) continue;
      const size = typeof item.bytes === "number" ? item.bytes : 0;
      // Swift lists UTC times without a zone: "2026-11-27T10:15:00.123450".
      const modified = typeof item.last_modified === "string"
        ? new Date(
          /[zZ]|[+-]\d\d:?\d\d$/.test(item.last_modified) ? item.last_modified : `${item.last_modified}Z`,
        )
        : undefined;
      yield { key, size, modified: modified && !Number.isNaN(modified.getTime()) ? modified : undefined };
    }
  }

  /** The `subdir` entries of a listing with `delimiter=/`, as folder names. */
  async *listFolders(prefix: string, options: CallOptions = {}): AsyncGenerator<string> {
    checkPrefix(prefix);
    const action = `Cannot list the folders of "${prefix}" in ${this.url}`;
    const start = this.#root + prefix;
    for await (const item of this.#listing(prefix, true, options.signal, action)) {
      if (typeof item.subdir !== "string" || !item.subdir.startsWith(start)) continue;
      const name = item.subdir.slice(start.length, -1);
      if (isKey(name) && !name.includes("/")) yield name;
    }
  }

  /** The entries of the listing of `prefix`, page after page (folders: `delimiter=/`, one level only). */
  async *#listing(
    prefix: string,
    folders: boolean,
    signal: AbortSignal | undefined,
    action: string,
  ): AsyncGenerator<ListingEntry> {
    let marker = "";
    for (;;) {
      signal?.throwIfAborted();
      const query = new URLSearchParams({
        format: "json",
        prefix: this.#root + prefix,
        limit: String(this.#pageSize),
        marker,
      });
      if (folders) query.set("delimiter", "/");
      let page: unknown;
      try {
        const response = await this.#request("GET", `${this.#containerPath()}?${query}`, { signal });
        if (response.status === 204) {
          await discard(response);
          return;
        }
        if (response.status === 404) {
          await discard(response);
          throw this.#containerMissing(response);
        }
        if (response.status !== 200) {
          await discard(response);
          throw statusFailure(response);
        }
        page = await response.json();
      } catch (err) {
        throw this.#error(action, err, signal);
      }
      if (!Array.isArray(page)) {
        throw new StorageError(`${action}: the server sent a listing that is not a list`);
      }
      if (page.length === 0) return;
      const previous = marker;
      for (const item of page as ListingEntry[]) {
        // The next page starts after the last name or folder of this one.
        const name = typeof item?.name === "string" ? item.name : item?.subdir;
        if (typeof name === "string") marker = name;
        if (item !== null && typeof item === "object") yield item;
      }
      if (marker === previous) {
        throw new StorageError(`${action}: the server sent a listing page without names`);
      }
    }
  }

  /** Removes `key`; a missing key is fine. */
  async delete(key: string, options: CallOptions = {}): Promise<void> {
    const path = this.#objectPath(key);
    const { signal } = options;
    signal?.throwIfAborted();
    try {
      const response = await this.#request("DELETE", path, { signal });
      await discard(response);
      if (response.status === 204 || response.status === 200 || response.status === 404) return;
      throw statusFailure(response);
    } catch (err) {
      throw this.#error(`Cannot delete "${key}" from ${this.url}`, err, signal);
    }
  }

  /** Forgets the token; `fetch` keeps no connection that needs closing. */
  close(): Promise<void> {
    this.#closed = true;
    this.#session = undefined;
    return Promise.resolve();
  }

  /** HEADs the container (creating it with `create`), which also checks the credentials. */
  async #check(create: boolean): Promise<void> {
    const action = `Cannot open ${this.url}`;
    try {
      const head = await this.#request("HEAD", this.#containerPath(), {});
      await discard(head);
      if (head.status === 204 || head.status === 200) return;
      if (head.status !== 404) throw statusFailure(head);
      if (!create) throw this.#containerMissing(head);
    } catch (err) {
      throw this.#error(action, err, undefined);
    }
    try {
      const put = await this.#request("PUT", this.#containerPath(), {});
      await discard(put);
      if (put.status !== 201 && put.status !== 202 && put.status !== 204) throw statusFailure(put);
    } catch (err) {
      throw this.#error(`Cannot create container "${this.container}" for ${this.url}`, err, undefined);
    }
  }

  /**
   * Sends one request to the account URL + `path` with the session's token. When the server refuses the
   * token (401), authenticates once more and sends the request again (the body is a replayable buffer).
   */
  async #request(
    method: string,
    path: string,
    init: { signal?: AbortSignal; body?: Uint8Array; headers?: Record<string, string> },
  ): Promise<Response> {
    if (this.#closed) throw new Failure("the storage is closed");
    let session = await this.#currentSession(init.signal);
    for (let attempt = 1;; attempt++) {
      let response: Response;
      try {
        response = await timedFetch(`${session.storageUrl}${path}`, {
          method,
          headers: { ...init.headers, "X-Auth-Token": session.token },
          body: init.body,
          signal: init.signal,
        }, this.#timeout);
      } catch (err) {
        const network = init.signal?.aborted ? undefined : fetchFailure(err);
        if (network === undefined) throw err;
        throw new Failure(`cannot reach ${new URL(session.storageUrl).origin}: ${network.reason}`, {
          cause: err,
          retriable: network.retriable,
        });
      }
      if (response.status !== 401 || attempt > 1) return response;
      await discard(response);
      session = await this.#renewSession(session, init.signal);
    }
  }

  /** The shared session, authenticating first when there is none or its token is about to expire. */
  async #currentSession(signal: AbortSignal | undefined): Promise<Session> {
    const session = await untilAborted(this.#session ?? this.#authenticate(), signal);
    if (session.expires === undefined || session.expires - Date.now() >= EXPIRY_MARGIN) return session;
    return await this.#renewSession(session, signal);
  }

  /** A new session in place of `stale`; concurrent calls renewing the same stale session share one. */
  #renewSession(stale: Session, signal: AbortSignal | undefined): Promise<Session> {
    let renewal = this.#renewals.get(stale);
    if (renewal === undefined) {
      renewal = this.#authenticate();
      this.#renewals.set(stale, renewal);
    }
    return untilAborted(renewal, signal);
  }

  /**
   * Starts an authentication and makes it the shared session; a failed one is forgotten. It is not tied to
   * one caller's signal, since other calls wait for the same session.
   */
  #authenticate(): Promise<Session> {
    const override = this.#storageUrl;
    const session =
      (this.#auth.kind === "v1" ? authV1(this.#auth, this.#timeout) : authV3(this.#auth, this.#timeout)).then(
        (s) => override ? { ...s, storageUrl: override } : s,
      );
    this.#session = session;
    session.catch(() => {
      if (this.#session === session) this.#session = undefined;
    });
    return session;
  }

  #containerPath(): string {
    return `/${encodeURIComponent(this.container)}`;
  }

  /** Checks `key` and returns the path of its object below the account URL, each segment encoded. */
  #objectPath(key: string): string {
    checkKey(key);
    return `${this.#containerPath()}/${(this.#root + key).split("/").map(encodeURIComponent).join("/")}`;
  }

  #containerMissing(response: Response): Failure {
    return new Failure(`container "${this.container}" does not exist (${statusText(response)})`);
  }

  /** Turns a failure into `NotFoundError`/`StorageError`; an abort rejects with the signal's reason. */
  #error(action: string, err: unknown, signal: AbortSignal | undefined): unknown {
    if (signal?.aborted) return signal.reason;
    if (err instanceof StorageError) return err;
    if (err instanceof Failure) {
      return new StorageError(`${action}: ${err.message}`, {
        cause: err.cause ?? err,
        retriable: err.retriable,
      });
    }
    const network = fetchFailure(err);
    if (network !== undefined) {
      return new StorageError(`${action}: ${network.reason}`, { cause: err, retriable: network.retriable });
    }
    return new StorageError(`${action}: ${oneLine(messageOf(err))}`, { cause: err });
  }
}

/** Reads the credentials settings, failing with a `StorageError` that says what to set. */
function authConfig(env: Record<string, string | undefined>, url: string): AuthConfig {
  const get = (name: string) => nonEmpty(env[name]);
  const missing = (names: string[]) =>
    new StorageError(`Cannot use ${url}: set ${names.join(" and ")} in the environment`);
  const stAuth = get("ST_AUTH");
  if (stAuth !== undefined) {
    const user = get("ST_USER"), key = get("ST_KEY");
    if (user === undefined || key === undefined) throw missing(["ST_USER", "ST_KEY"].filter((n) => !get(n)));
    return { kind: "v1", url: checkUrl(stAuth, "ST_AUTH", url), user, key };
  }
  const authUrl = get("OS_AUTH_URL");
  if (authUrl === undefined) {
    throw new StorageError(
      `Cannot use ${url}: no Swift credentials in the environment: set ST_AUTH, ST_USER and ST_KEY (v1 auth), ` +
        `or OS_AUTH_URL, OS_USERNAME, OS_PASSWORD and OS_PROJECT_NAME (Keystone v3)`,
    );
  }
  const base = checkUrl(authUrl, "OS_AUTH_URL", url).replace(/\/+$/, "");
  if (/\/v1(\.0)?$/.test(base)) {
    const user = get("OS_USERNAME"), key = get("OS_PASSWORD");
    if (user === undefined || key === undefined) {
      throw missing(["OS_USERNAME", "OS_PASSWORD"].filter((n) => !get(n)));
    }
    return { kind: "v1", url: base, user, key };
  }
  if (/\/v2\.0$/.test(base)) {
    throw new StorageError(
      `Cannot use ${url}: Keystone v2.0 (OS_AUTH_URL ${base}) is not supported: use its v3 URL`,
    );
  }
  const domain = (prefix: string) => {
    const id = get(`${prefix}_ID`);
    return id !== undefined ? { id } : { name: get(`${prefix}_NAME`) ?? "Default" };
  };
  let body: unknown;
  const credentialId = get("OS_APPLICATION_CREDENTIAL_ID");
  if (credentialId !== undefined) {
    const secret = get("OS_APPLICATION_CREDENTIAL_SECRET");
    if (secret === undefined) throw missing(["OS_APPLICATION_CREDENTIAL_SECRET"]);
    body = {
      auth: {
        identity: {
          methods: ["application_credential"],
          application_credential: { id: credentialId, secret },
        },
      },
    };
  } else {
    const userId = get("OS_USER_ID"), userName = get("OS_USERNAME"), password = get("OS_PASSWORD");
    const projectId = get("OS_PROJECT_ID"), projectName = get("OS_PROJECT_NAME") ?? get("OS_TENANT_NAME");
    const needed = [
      userId === undefined && userName === undefined ? "OS_USERNAME" : undefined,
      password === undefined ? "OS_PASSWORD" : undefined,
      projectId === undefined && projectName === undefined ? "OS_PROJECT_NAME" : undefined,
    ].filter((n) => n !== undefined);
    if (needed.length > 0) throw missing(needed);
    const user = userId !== undefined
      ? { id: userId, password }
      : { name: userName, password, domain: domain("OS_USER_DOMAIN") };
    const project = projectId !== undefined
      ? { id: projectId }
      : { name: projectName, domain: domain("OS_PROJECT_DOMAIN") };
    body = { auth: { identity: { methods: ["password"], password: { user } }, scope: { project } } };
  }
  return {
    kind: "v3",
    url: /\/v3$/.test(base) ? base : `${base}/v3`,
    body,
    interface: (get("OS_INTERFACE") ?? get("OS_ENDPOINT_TYPE") ?? "public").replace(/URL$/, ""),
    region: get("OS_REGION_NAME"),
  };
}

function checkUrl(value: string, name: string, url: string): string {
  if (!/^https?:\/\/[^/]/i.test(value)) {
    throw new StorageError(`Cannot use ${url}: ${name} "${value}" is not an http:// or https:// URL`);
  }
  return value;
}

/** v1 auth: GET the auth URL with X-Auth-User/X-Auth-Key, get X-Auth-Token and X-Storage-Url. */
async function authV1(auth: Extract<AuthConfig, { kind: "v1" }>, timeout: number): Promise<Session> {
  const response = await authFetch(auth.url, {
    method: "GET",
    headers: { "X-Auth-User": auth.user, "X-Auth-Key": auth.key },
  }, timeout);
  await discard(response);
  if (response.status !== 200 && response.status !== 204) throw authFailure(auth.url, response);
  const token = response.headers.get("X-Auth-Token") ?? response.headers.get("X-Storage-Token");
  const storageUrl = response.headers.get("X-Storage-Url");
  if (token === null || storageUrl === null) {
    throw new Failure(`authentication at ${auth.url} gave no X-Auth-Token or X-Storage-Url`);
  }
  const seconds = Number(response.headers.get("X-Auth-Token-Expires") ?? "");
  return {
    token,
    storageUrl: storageUrl.replace(/\/+$/, ""),
    expires: Number.isFinite(seconds) && seconds > 0 ? Date.now() + seconds * 1000 : undefined,
  };
}

/** Keystone v3: POST /v3/auth/tokens, take X-Subject-Token and the object-store endpoint of the catalog. */
async function authV3(auth: Extract<AuthConfig, { kind: "v3" }>, timeout: number): Promise<Session> {
  const tokensUrl = `${auth.url}/auth/tokens`;
  const response = await authFetch(tokensUrl, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(auth.body),
  }, timeout);
  if (response.status !== 201 && response.status !== 200) {
    await discard(response);
    throw authFailure(tokensUrl, response);
  }
  const token = response.headers.get("X-Subject-Token");
  let body: unknown;
  try {
    body = await response.json();
  } catch (err) {
    throw new Failure(`authentication at ${tokensUrl} sent a response that is not JSON`, { cause: err });
  }
  if (token === null) throw new Failure(`authentication at ${tokensUrl} gave no X-Subject-Token`);
  const { catalog, expires_at } = (body as { token?: { catalog?: unknown; expires_at?: unknown } })?.token ??
    {};
  type Endpoint = { interface?: unknown; region?: unknown; region_id?: unknown; url?: unknown };
  const services = Array.isArray(catalog) ? catalog as { type?: unknown; endpoints?: unknown }[] : [];
  const endpoints = services
    .filter((service) => service?.type === "object-store" && Array.isArray(service.endpoints))
    .flatMap((service) => service.endpoints as Endpoint[]);
  const endpoint = endpoints.find((e) =>
    e?.interface === auth.interface && typeof e.url === "string" &&
    (auth.region === undefined || e.region_id === auth.region || e.region === auth.region)
  );
  if (endpoint === undefined) {
    const where = auth.region === undefined ? "" : ` in region "${auth.region}"`;
    throw new Failure(
      `the service catalog of ${tokensUrl} has no ${auth.interface} object-store endpoint${where} ` +
        `(set OS_INTERFACE or OS_REGION_NAME)`,
    );
  }
  const expires = typeof expires_at === "string" ? Date.parse(expires_at) : NaN;
  return {
    token,
    storageUrl: (endpoint.url as string).replace(/\/+$/, ""),
    expires: Number.isNaN(expires) ? undefined : expires,
  };
}

/** `timedFetch` for the auth calls, whose network failures name the auth URL. */
async function authFetch(url: string, init: FetchInit, timeout: number): Promise<Response> {
  try {
    return await timedFetch(url, init, timeout);
  } catch (err) {
    const network = fetchFailure(err);
    if (network === undefined) throw err;
    throw new Failure(`cannot authenticate at ${url}: ${network.reason}`, {
      cause: err,
      retriable: network.retriable,
    });
  }
}

function authFailure(url: string, response: Response): Failure {
  if (response.status === 401 || response.status === 403) {
    return new Failure(`authentication failed at ${url} (${statusText(response)})`);
  }
  return new Failure(`cannot authenticate at ${url} (${statusText(response)})`, {
    retriable: response.status >= 500 || RETRIABLE_STATUSES.has(response.status),
  });
}

/** A `Failure` for an unexpected HTTP status. */
function statusFailure(response: Response): Failure {
  const status = response.status;
  if (status === 401 || status === 403) return new Failure(`access denied (${statusText(response)})`);
  // 501 (not implemented) and 507 (out of space) do not go away by waiting.
  const retriable = (status >= 500 && status !== 501 && status !== 507) || RETRIABLE_STATUSES.has(status);
  return new Failure(`${retriable ? "server error" : "request refused"} (${statusText(response)})`, {
    retriable,
  });
}

/** What `timedFetch` sends. */
interface FetchInit {
  method: string;
  headers: Record<string, string>;
  /** Sent in 1 MiB chunks, so that the progress of an upload is seen; JSON text as it is. */
  body?: Uint8Array | string;
  signal?: AbortSignal;
}

/**
 * `fetch` that fails with a `TimeoutError` after `timeout` ms without progress: while connecting, between
 * two chunks of the upload, while waiting for the answer, and while a read of the response body waits
 * for the server (not while the caller does not read). The caller's signal aborts it all along.
 */
async function timedFetch(url: string, init: FetchInit, timeout: number): Promise<Response> {
  const timer = new AbortController();
  let id: ReturnType<typeof setTimeout> | undefined;
  const arm = () => {
    clearTimeout(id);
    id = setTimeout(
      () => timer.abort(new DOMException(`no progress in ${timeout} ms`, "TimeoutError")),
      timeout,
    );
  };
  const disarm = () => clearTimeout(id);
  const signal = init.signal ? AbortSignal.any([init.signal, timer.signal]) : timer.signal;
  const headers = { ...init.headers };
  let body: BodyInit | undefined = typeof init.body === "string" ? init.body : undefined;
  if (init.body instanceof Uint8Array) {
    const data = init.body;
    let offset = 0;
    headers["Content-Length"] = String(data.byteLength);
    body = new ReadableStream<Uint8Array>({
      pull(controller) {
        arm();
        if (offset >= data.byteLength) return controller.close();
        const end = Math.min(offset + UPLOAD_PIECE, data.byteLength);
        controller.enqueue(data.subarray(offset, end));
        offset = end;
      },
    }, { highWaterMark: 0 });
  }
  arm();
  let response: Response;
  try {
    // `duplex` is needed for a stream body but missing from some runtimes' RequestInit type.
    response = await fetch(
      url,
      { method: init.method, headers, body, signal, duplex: "half" } as RequestInit,
    );
  } finally {
    disarm();
  }
  if (response.body === null || NULL_BODY_STATUSES.has(response.status)) return response;
  // Aborting the signal does not always fail a pending body read (seen in Deno): idleStream races it too.
  const watched = idleStream(
    response.body,
    timeout,
    signal,
    () => new DOMException(`no progress in ${timeout} ms`, "TimeoutError"),
  );
  return new Response(watched, {
    status: response.status,
    statusText: response.statusText,
    headers: response.headers,
  });
}

/** Describes a failure of `fetch` below HTTP, or returns `undefined` when `err` is not one. */
function fetchFailure(err: unknown): { reason: string; retriable: boolean } | undefined {
  const network = networkFailure(err);
  if (network !== undefined) return network;
  // fetch rejects with a TypeError for every network error; the runtimes put the detail in the cause
  // (Deno: "error sending request for url (…): client error (Connect): tcp connect error: Connection refused").
  if (err instanceof TypeError) {
    const detail = oneLine(err.cause instanceof Error ? err.cause.message : err.message);
    const known = FETCH_FAILURES.find(([pattern]) => pattern.test(detail));
    if (known !== undefined) return { reason: known[1], retriable: known[2] };
    return { reason: `network error (${detail.split(": ").at(-1)})`, retriable: true };
  }
  return undefined;
}

/** `promise`, or a rejection with the signal's reason as soon as `signal` aborts. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return promise;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/** Reads and drops a response body so its connection can be reused. */
async function discard(response: Response): Promise<void> {
  await response.body?.cancel().catch(() => {});
}

function statusText(response: Response): string {
  return `${response.status}${response.statusText ? ` ${response.statusText}` : ""}`;
}

/** X-Timestamp (seconds with a fraction) when present, else Last-Modified (whole seconds). */
function modifiedOf(headers: Headers): Date | undefined {
  const timestamp = Number(headers.get("X-Timestamp") ?? "");
  // Floored like the listing's microseconds, so that stat() and list() agree.
  if (Number.isFinite(timestamp) && timestamp > 0) return new Date(Math.floor(timestamp * 1000));
  const lastModified = Date.parse(headers.get("Last-Modified") ?? "");
  return Number.isNaN(lastModified) ? undefined : new Date(lastModified);
}
