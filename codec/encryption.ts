/**
 * Encryption of frost backups: a streaming AEAD for data and state, and the wrapping of each backup's random
 * data key by a passphrase (scrypt) or by a recipient's X25519 public key (write-only hosts).
 *
 * ```
 * backup:  key = await generateDataKey();  info = await wrapDataKey(key, { passphrase });   → manifest
 *          stream.pipeThrough(createEncryptor(key, streamId(id, "data")))
 * restore: key = await unwrapDataKey(manifest.encryption, { passphrase }, id)
 *          segments.pipeThrough(createDecryptor(key, streamId(id, "data")))
 * ```
 * Only WebCrypto (AES-GCM, HKDF, X25519) and `node:crypto` (scrypt; under Bun also the AES-GCM of stream
 * chunks, see _encryption_stream.ts) are used, each where it is fast: Deno's node:crypto AES-GCM is not.
 * docs/FORMAT.md (section Encryption) specifies every byte.
 * @module
 */
import nodeCrypto from "node:crypto";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import fsp from "node:fs/promises";
import { Buffer } from "node:buffer";
import { FrostError, messageOf, UsageError } from "../base/errors.ts";
import { concatBytes, equalBytes } from "../base/bytes.ts";
import { KDF_CHILD_ARG, scryptMaxmem } from "./kdf_child.ts";
import { decryptorGivesBackFor, decryptStream, encryptStream, type StreamKey } from "./_encryption_stream.ts";
import type { Encryptor, StreamOptions } from "./_encryption_stream.ts";

export { DecryptionError } from "./_encryption_stream.ts";
export type { DecryptFailure, Encryptor, StreamOptions } from "./_encryption_stream.ts";

// ---------------------------------------------------------------------------------------------------------
// Errors

/** The passphrase or identity does not open the backup's data key. Message: `Wrong passphrase for backup "<id>"`. */
export class WrongKeyError extends FrostError {
  override name = "WrongKeyError";
}

/** The backup is encrypted and no secret of the right kind was given; the message names the flag to use. */
export class MissingKeyError extends UsageError {
  override name = "MissingKeyError";
}

// ---------------------------------------------------------------------------------------------------------
// Data keys and streams

const rawKeys = new WeakMap<DataKey, Uint8Array>();

/** A backup's random 256-bit AES-GCM data key. Opaque: its bytes leave only wrapped by `wrapDataKey`. */
export class DataKey {
  /** The non-extractable WebCrypto key used by the stream transforms. */
  readonly cryptoKey: CryptoKey;
  private constructor(cryptoKey: CryptoKey) {
    this.cryptoKey = cryptoKey;
  }

  /** @internal Builds a key from its 32 bytes (used by unwrapping and tests). */
  static async fromBytes(raw: Uint8Array): Promise<DataKey> {
    if (raw.byteLength !== 32) throw new FrostError("A data key has 32 bytes");
    const bytes = raw.slice();
    const key = new DataKey(
      await crypto.subtle.importKey("raw", bytes, "AES-GCM", false, ["encrypt", "decrypt"]),
    );
    rawKeys.set(key, bytes);
    return key;
  }
}

/** A fresh random data key for one backup. */
export function generateDataKey(): Promise<DataKey> {
  return DataKey.fromBytes(crypto.getRandomValues(new Uint8Array(32)));
}

/** The objects of a backup that are encrypted, each as its own stream. */
export type StreamKind = "data" | "state" | "manifest";

/**
 * The stream id convention: `<backupId>/<kind>`, e.g. `20261127T101500.123Z/data`. The id is bound into every
 * chunk, so chunks cannot move between the data and the state of a backup (other backups have other keys).
 */
export function streamId(backupId: string, kind: StreamKind): string {
  return `${backupId}/${kind}`;
}

/**
 * A TransformStream that encrypts its input: a 17-byte header, then AES-256-GCM chunks of 256 KiB of plaintext
 * (the last one shorter and marked final; an empty input still gives one final chunk). Several chunks are
 * encrypted at once, output in order. Input chunks must not be modified once written (as usual for streams),
 * unless `options.giveBack` is given: it gets each one back once the encryptor is done with it. Where output
 * buffers are reused (under Bun: sealed chunks gathered into ~1 MiB outputs), the result has a `giveBack`
 * that takes each output chunk back once its reader is done with its bytes.
 * @example
 * ```ts
 * const sealed = source.pipeThrough(createEncryptor(key, streamId(id, "data")));
 * ```
 */
export function createEncryptor(
  key: DataKey,
  streamId: string,
  options?: StreamOptions,
): Encryptor {
  return encryptStream(streamKeyOf(key), streamId, options);
}

/**
 * A TransformStream that decrypts a stream written by `createEncryptor` with the same key and stream id.
 * Each chunk is emitted only once authenticated; a damaged, reordered, foreign, truncated or extended stream
 * errors with a `DecryptionError` that names the stream (`options.label`) and says what happened.
 */
export function createDecryptor(
  key: DataKey,
  streamId: string,
  options?: StreamOptions,
): TransformStream<Uint8Array, Uint8Array> {
  return decryptStream(streamKeyOf(key), streamId, options);
}

/**
 * Whether `createDecryptor(key, …)` hands its input chunks back through `options.giveBack` (under Bun, where
 * chunks are opened synchronously). Where it does not, its input chunks must not be reused.
 */
export function decryptorGivesBack(key: DataKey): boolean {
  return decryptorGivesBackFor(streamKeyOf(key));
}

function streamKeyOf(key: DataKey): StreamKey {
  return { cryptoKey: key.cryptoKey, raw: rawKeys.get(key) };
}

async function transformAll(bytes: Uint8Array, transform: TransformStream<Uint8Array, Uint8Array>) {
  const writer = transform.writable.getWriter();
  const parts: Uint8Array[] = [];
  const reading = (async () => {
    for await (const part of transform.readable) parts.push(part);
  })();
  const writing = (async () => {
    await writer.write(bytes);
    await writer.close();
  })();
  // Both sides fail with the same error; report it once.
  const [read, written] = await Promise.allSettled([reading, writing]);
  if (read.status === "rejected") throw read.reason;
  if (written.status === "rejected") throw written.reason;
  return concatBytes(parts);
}

/** One-shot `createEncryptor` for small objects: the same format, so either side may stream. */
export function encryptBytes(key: DataKey, streamId: string, plaintext: Uint8Array): Promise<Uint8Array> {
  return transformAll(plaintext, createEncryptor(key, streamId));
}

/** One-shot `createDecryptor`; `label` names the object in errors. */
export function decryptBytes(
  key: DataKey,
  streamId: string,
  ciphertext: Uint8Array,
  label?: string,
): Promise<Uint8Array> {
  return transformAll(ciphertext, createDecryptor(key, streamId, { label }));
}

/** Encrypts a string (e.g. a manifest field that holds a path) to base64 text for a JSON document. */
export async function sealText(key: DataKey, streamId: string, text: string): Promise<string> {
  return Buffer.from(await encryptBytes(key, streamId, new TextEncoder().encode(text))).toString("base64");
}

/** Reverses `sealText`; throws `DecryptionError` when the text was altered. */
export async function openText(
  key: DataKey,
  streamId: string,
  sealed: string,
  label?: string,
): Promise<string> {
  const bytes = await decryptBytes(key, streamId, Buffer.from(sealed, "base64"), label);
  return new TextDecoder().decode(bytes);
}

// ---------------------------------------------------------------------------------------------------------
// Key wrapping: what the manifest stores

/** scrypt parameters as stored in the manifest; `salt` is base64 (16 random bytes when frost makes it). */
export interface ScryptParams {
  name: "scrypt";
  N: number;
  r: number;
  p: number;
  salt: string;
}

/** A data key wrapped by a passphrase-derived key. */
export interface PassphraseEncryption {
  scheme: "passphrase";
  version: 1;
  kdf: ScryptParams;
  /** base64 of `iv(12) ‖ AES-256-GCM(kek, iv, dataKey, aad)(48)`. */
  wrappedKey: string;
}

/** A data key wrapped to a recipient's X25519 public key. */
export interface RecipientEncryption {
  scheme: "recipient";
  version: 1;
  /** The recipient (`frost-recipient-1…`) the backup was encrypted to. */
  recipient: string;
  /** base64 of the 32-byte ephemeral X25519 public key. */
  ephemeralPublicKey: string;
  /** base64 of `iv(12) ‖ AES-256-GCM(kek, iv, dataKey, aad)(48)`. */
  wrappedKey: string;
}

/** The manifest's `encryption` field (JSON-serializable). */
export type EncryptionInfo = PassphraseEncryption | RecipientEncryption;

/**
 * scrypt cost for new passphrase backups: 160 MiB and ≥ 0.25 s on the reference machine (Bun ≈ 0.28–0.45 s,
 * Deno ≈ 0.55–0.6 s). r = 10 rather than 8: N = 2^17, r = 8 took as little as 0.22 s under Bun.
 */
export const DEFAULT_SCRYPT = { N: 2 ** 17, r: 10, p: 1 } as const;

/** Fresh scrypt parameters with a random 16-byte salt (`cost` overrides N, r, p). */
export function newScryptParams(cost: { N?: number; r?: number; p?: number } = {}): ScryptParams {
  const salt = Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString("base64");
  return checkScrypt({ name: "scrypt", ...DEFAULT_SCRYPT, ...cost, salt }, "scrypt parameters");
}

/** A function computing scrypt (32 bytes of output); injectable for tests. */
export type ScryptFunction = (
  passphrase: Uint8Array,
  salt: Uint8Array,
  cost: { N: number; r: number; p: number },
  signal?: AbortSignal,
) => Promise<Uint8Array>;

/** `node:crypto` scrypt on the thread pool, with `maxmem` sized to the parameters. */
export const nodeScrypt: ScryptFunction = (passphrase, salt, cost) =>
  new Promise((resolve, reject) => {
    const { N, r, p } = cost;
    nodeCrypto.scrypt(passphrase, salt, 32, { N, r, p, maxmem: scryptMaxmem(cost) }, (err, key) => {
      if (err) reject(err);
      else resolve(new Uint8Array(key.buffer, key.byteOffset, key.byteLength));
    });
  });

/** How this program runs `kdf_child.ts`: the built binary runs itself, Deno and Bun run the file. */
function kdfChildCommand(): string[] {
  const script = () => fileURLToPath(new URL("./kdf_child.ts", import.meta.url));
  if (process.versions.bun !== undefined) {
    const builtBinary = import.meta.url.includes("/$bunfs/") || import.meta.url.includes("~BUN");
    return builtBinary ? [process.execPath, KDF_CHILD_ARG] : [process.execPath, script()];
  }
  return [process.execPath, "run", "--quiet", "--no-config", "--allow-sys=setPriority,getPriority", script()];
}

/**
 * scrypt in a child process (see `kdf_child.ts`) at the CPU priority `nice` (19, the lowest, for a
 * derivation that should take only the CPU the rest of frost and the machine leave idle). Resolves with the
 * key and the priority the child ran at (null when the system refused to change it). Aborting `signal`
 * kills the child.
 */
export function childScryptDetailed(
  passphrase: Uint8Array,
  salt: Uint8Array,
  cost: { N: number; r: number; p: number },
  options: { nice?: number; signal?: AbortSignal } = {},
): Promise<{ key: Uint8Array; priority: number | null }> {
  const signal = options.signal;
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new Error("Key derivation stopped"));
    const [command, ...args] = kdfChildCommand();
    const child = spawn(command!, args, { stdio: ["pipe", "pipe", "ignore"] });
    let settled = false;
    const settle = (how: () => void) => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener("abort", stop);
      how();
    };
    const stop = () => {
      child.kill("SIGKILL");
      settle(() => reject(new Error("Key derivation stopped")));
    };
    signal?.addEventListener("abort", stop, { once: true });
    const out: Buffer[] = [];
    child.stdout!.on("data", (chunk: Buffer) => out.push(chunk));
    child.on("error", (err) => settle(() => reject(err)));
    child.on("close", (code, killedBy) =>
      settle(() => {
        try {
          const reply = JSON.parse(Buffer.concat(out).toString("utf8")) as {
            key?: string;
            priority?: number | null;
            error?: string;
          };
          if (reply.key) {
            return resolve({
              key: new Uint8Array(Buffer.from(reply.key, "hex")),
              priority: reply.priority ?? null,
            });
          }
          reject(new Error(reply.error ?? "no key"));
        } catch {
          reject(
            new Error(`Key derivation process ended (${killedBy ?? `exit code ${code}`}) without a key`),
          );
        }
      }));
    child.stdin!.on("error", () => {}); // a child that died early: reported by "close"
    child.stdin!.end(JSON.stringify({
      passphrase: Buffer.from(passphrase).toString("base64"),
      salt: Buffer.from(salt).toString("base64"),
      ...cost,
      nice: options.nice ?? 0,
    }));
  });
}

/**
 * scrypt in a child process at normal priority, so that its memory stays out of frost's; in frost itself
 * (`nodeScrypt`) when no child can run.
 */
export const childScrypt: ScryptFunction = (passphrase, salt, cost, signal) =>
  childScryptDetailed(passphrase, salt, cost, { signal }).then(
    (derived) => derived.key,
    (err) => {
      if (signal?.aborted) throw err;
      return nodeScrypt(passphrase, salt, cost);
    },
  );

/** scrypt in a child process at nice 19 (see `childScryptDetailed`). */
export const idleScrypt: ScryptFunction = async (passphrase, salt, cost, signal) =>
  (await childScryptDetailed(passphrase, salt, cost, { nice: 19, signal })).key;

interface Derivation {
  kek: Promise<CryptoKey>;
  /** A background derivation not yet done: starts a normal-priority one that races it. */
  hurry?: () => void;
}

/**
 * Derives passphrase key-encryption keys once per (passphrase, salt, parameters) within the process and
 * reuses them, so a run that unwraps a whole chain (whose backups share a salt) and wraps the next backup's
 * key derives once. Concurrent requests share one derivation.
 *
 * Derivations run in a child process (`childScrypt`), so that scrypt's memory stays out of frost's. A backup
 * asks for its key in the background: scrypt then runs at nice 19 (`idleScrypt`) beside the data stream,
 * which needs the key only for the manifest. Asking for the same key normally, or `hurry()`, starts a
 * normal-priority derivation that races the idle one (it matters when other processes keep the CPUs busy).
 */
export class KeyRing {
  /** How many keys this ring has started to derive (a hurried key counts once). */
  derivations = 0;
  readonly #scrypt: ScryptFunction;
  readonly #idleScrypt: ScryptFunction;
  readonly #keks = new Map<string, Derivation>();
  constructor(options: { scrypt?: ScryptFunction; idleScrypt?: ScryptFunction } = {}) {
    this.#scrypt = options.scrypt ?? childScrypt;
    this.#idleScrypt = options.idleScrypt ?? idleScrypt;
  }

  /**
   * The AES-256-GCM key-encryption key for a passphrase and scrypt parameters; derived at idle priority
   * when `background` (see the class comment).
   */
  passphraseKek(
    passphrase: string,
    kdf: ScryptParams,
    options: { background?: boolean } = {},
  ): Promise<CryptoKey> {
    const secret = new TextEncoder().encode(passphrase);
    const id = [
      nodeCrypto.createHash("sha256").update(secret).digest("hex"),
      kdf.N,
      kdf.r,
      kdf.p,
      kdf.salt,
    ].join(":");
    const known = this.#keks.get(id);
    if (known) {
      if (!options.background) known.hurry?.();
      return known.kek;
    }
    this.derivations++;
    const salt = Buffer.from(kdf.salt, "base64");
    let bytes: Promise<Uint8Array>;
    let hurry: (() => void) | undefined;
    if (options.background) {
      let urgent: Promise<Uint8Array> | undefined;
      const derive = () => urgent ??= this.#scrypt(secret, salt, kdf);
      const hurried = new Promise<Uint8Array>((resolve, reject) => {
        hurry = () => derive().then(resolve, reject);
      });
      const stopIdle = new AbortController();
      // An idle derivation that fails (no child process here) falls back to a normal one.
      const idle = this.#idleScrypt(secret, salt, kdf, stopIdle.signal).catch(() => derive());
      bytes = Promise.race([idle, hurried]);
      bytes.catch(() => {}).finally(() => {
        entry.hurry = undefined;
        stopIdle.abort();
      });
    } else {
      bytes = this.#scrypt(secret, salt, kdf);
    }
    const entry: Derivation = {
      hurry,
      kek: bytes.then((raw) =>
        crypto.subtle.importKey("raw", raw as Uint8Array<ArrayBuffer>, "AES-GCM", false, [
          "encrypt",
          "decrypt",
        ])
      ),
    };
    this.#keks.set(id, entry);
    entry.kek.catch(() => this.#keks.delete(id));
    return entry.kek;
  }

  /** Hurries every background derivation still running (see the class comment). */
  hurry(): void {
    for (const entry of this.#keks.values()) entry.hurry?.();
  }

  /** Forgets every derived key. */
  clear(): void {
    this.#keks.clear();
  }
}

/** The process-wide ring `wrapDataKey` and `unwrapDataKey` use by default. */
export const sharedKeyRing: KeyRing = new KeyRing();

const WRAP_LABEL = "frost-key-1";
const HKDF_INFO = "frost-key-1 x25519 kek";

function passphraseAad(kdf: ScryptParams): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(
    `${WRAP_LABEL}|passphrase|scrypt|N=${kdf.N}|r=${kdf.r}|p=${kdf.p}|salt=${kdf.salt}`,
  );
}

function recipientAad(recipient: string, ephemeral: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(`${WRAP_LABEL}|recipient|x25519|${recipient}|${ephemeral}`);
}

async function seal(kek: CryptoKey, raw: Uint8Array, aad: Uint8Array<ArrayBuffer>): Promise<string> {
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const sealed = new Uint8Array(
    await crypto.subtle.encrypt(
      { name: "AES-GCM", iv, additionalData: aad },
      kek,
      raw as Uint8Array<ArrayBuffer>,
    ),
  );
  return Buffer.concat([iv, sealed]).toString("base64");
}

/** The data key's bytes, or null when the tag check fails. */
async function unseal(
  kek: CryptoKey,
  wrapped: string,
  aad: Uint8Array<ArrayBuffer>,
): Promise<Uint8Array | null> {
  const bytes = Buffer.from(wrapped, "base64");
  try {
    return new Uint8Array(
      await crypto.subtle.decrypt(
        { name: "AES-GCM", iv: bytes.subarray(0, 12), additionalData: aad },
        kek,
        bytes.subarray(12),
      ),
    );
  } catch {
    return null;
  }
}

/** Where a data key is wrapped to: a passphrase (optionally reusing a previous backup's `kdf`), or a recipient. */
export type WrapTarget = { passphrase: string; kdf?: ScryptParams; background?: boolean } | {
  recipient: string;
};

/**
 * Wraps a backup's data key for its manifest. With a passphrase, pass the `kdf` of the series' previous
 * backup to reuse its salt and cost, so that one derivation serves the whole chain (the ring caches it).
 * A `kdf` cheaper than `DEFAULT_SCRYPT` (e.g. an altered manifest) is not reused: fresh parameters are made.
 * `background` derives the passphrase key at idle priority (see `KeyRing`).
 */
export async function wrapDataKey(
  key: DataKey,
  target: WrapTarget,
  ring: KeyRing = sharedKeyRing,
): Promise<EncryptionInfo> {
  const raw = rawKeys.get(key);
  if (!raw) throw new FrostError("Not a data key");
  if ("passphrase" in target) {
    if (target.passphrase === "") throw new UsageError("The passphrase is empty");
    const previous = target.kdf && checkScrypt({ ...target.kdf }, "scrypt parameters");
    const strong = previous &&
      previous.N * previous.r * previous.p >= DEFAULT_SCRYPT.N * DEFAULT_SCRYPT.r * DEFAULT_SCRYPT.p &&
      previous.N >= DEFAULT_SCRYPT.N;
    const kdf = strong ? previous : newScryptParams();
    const kek = await ring.passphraseKek(target.passphrase, kdf, { background: target.background });
    return { scheme: "passphrase", version: 1, kdf, wrappedKey: await seal(kek, raw, passphraseAad(kdf)) };
  }
  const recipientKey = parseRecipient(target.recipient);
  const ephemeral = crypto.getRandomValues(new Uint8Array(32));
  const ephemeralPrivate = await importX25519Private(ephemeral);
  const ephemeralPublic = await x25519PublicOf(ephemeralPrivate);
  const kek = await recipientKek(ephemeralPrivate, recipientKey, ephemeralPublic, recipientKey);
  const recipient = formatKey(RECIPIENT_PREFIX, recipientKey);
  const ephemeralText = Buffer.from(ephemeralPublic).toString("base64");
  return {
    scheme: "recipient",
    version: 1,
    recipient,
    ephemeralPublicKey: ephemeralText,
    wrappedKey: await seal(kek, raw, recipientAad(recipient, ephemeralText)),
  };
}

/** The secrets a run has; `identity` is the text of an identity file (or its key line). */
export interface Secrets {
  passphrase?: string;
  identity?: string;
}

/**
 * Unwraps a backup's data key. Throws `MissingKeyError` when no secret of the right kind is given,
 * `WrongKeyError` (`Wrong passphrase for backup "<id>"` / `Wrong identity for backup "<id>"`) when it does not
 * open the key, and `FrostError` when the encryption info is malformed or was altered.
 */
export async function unwrapDataKey(
  info: EncryptionInfo,
  secrets: Secrets,
  backupId: string,
  ring: KeyRing = sharedKeyRing,
): Promise<DataKey> {
  const checked = checkEncryptionInfo(info, `backup "${backupId}"`);
  let raw: Uint8Array | null;
  if (checked.scheme === "passphrase") {
    if (!secrets.passphrase) {
      throw new MissingKeyError(
        `backup "${backupId}" is encrypted: pass --encrypt-pass-file FILE (or set FROST_PASSPHRASE)`,
      );
    }
    const kek = await ring.passphraseKek(secrets.passphrase, checked.kdf);
    raw = await unseal(kek, checked.wrappedKey, passphraseAad(checked.kdf));
    if (!raw) throw new WrongKeyError(`Wrong passphrase for backup "${backupId}"`);
  } else {
    if (!secrets.identity) {
      throw new MissingKeyError(`backup "${backupId}" is encrypted: pass --encrypt-identity-file FILE`);
    }
    const identity = parseIdentity(secrets.identity);
    const privateKey = await importX25519Private(identity);
    const publicKey = await x25519PublicOf(privateKey);
    const recipientKey = parseRecipient(checked.recipient);
    if (!equalBytes(publicKey, recipientKey)) {
      throw new WrongKeyError(`Wrong identity for backup "${backupId}"`);
    }
    const ephemeralPublic = Buffer.from(checked.ephemeralPublicKey, "base64");
    let kek: CryptoKey;
    try {
      kek = await recipientKek(privateKey, ephemeralPublic, ephemeralPublic, recipientKey);
    } catch (err) {
      throw new FrostError(`Cannot unwrap the data key of backup "${backupId}": bad ephemeral public key`, {
        cause: err,
      });
    }
    raw = await unseal(kek, checked.wrappedKey, recipientAad(checked.recipient, checked.ephemeralPublicKey));
    if (!raw) {
      throw new FrostError(
        `Cannot unwrap the data key of backup "${backupId}": its encryption info is corrupt or was tampered with`,
      );
    }
  }
  if (raw.byteLength !== 32) {
    throw new FrostError(`Cannot unwrap the data key of backup "${backupId}": bad length`);
  }
  return DataKey.fromBytes(raw);
}

function checkScrypt(kdf: ScryptParams, where: string): ScryptParams {
  const bad = (what: string) => new FrostError(`Invalid encryption info in ${where}: ${what}`);
  if (kdf === null || typeof kdf !== "object" || kdf.name !== "scrypt") throw bad("unknown key derivation");
  const { N, r, p, salt } = kdf;
  if (!Number.isSafeInteger(N) || N < 2 || N > 2 ** 22 || (N & (N - 1)) !== 0) throw bad(`bad scrypt N ${N}`);
  if (!Number.isSafeInteger(r) || r < 1 || r > 64) throw bad(`bad scrypt r ${r}`);
  if (!Number.isSafeInteger(p) || p < 1 || p > 16) throw bad(`bad scrypt p ${p}`);
  if (128 * N * r > 2 ** 30) throw bad("scrypt parameters need more than 1 GiB");
  if (!isBase64(salt, 8, 64)) throw bad("bad scrypt salt");
  return { name: "scrypt", N, r, p, salt };
}

function isBase64(value: unknown, minBytes: number, maxBytes: number): value is string {
  if (typeof value !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(value) || value.length % 4 !== 0) {
    return false;
  }
  const n = Buffer.from(value, "base64").byteLength;
  return n >= minBytes && n <= maxBytes;
}

/**
 * Checks an `encryption` value read from a manifest (`where` names it in errors) and returns a clean copy
 * holding only the known fields.
 */
export function checkEncryptionInfo(value: unknown, where: string): EncryptionInfo {
  const bad = (what: string) => new FrostError(`Invalid encryption info in ${where}: ${what}`);
  if (value === null || typeof value !== "object") throw bad("not an object");
  const info = value as Record<string, unknown>;
  if (info.version !== 1) throw bad(`unsupported version ${String(info.version)}`);
  if (!isBase64(info.wrappedKey, 60, 60)) throw bad("bad wrappedKey");
  if (info.scheme === "passphrase") {
    const kdf = checkScrypt(info.kdf as ScryptParams, where);
    return { scheme: "passphrase", version: 1, kdf, wrappedKey: info.wrappedKey };
  }
  if (info.scheme === "recipient") {
    if (typeof info.recipient !== "string") throw bad("bad recipient");
    try {
      parseRecipient(info.recipient);
    } catch {
      throw bad("bad recipient");
    }
    if (!isBase64(info.ephemeralPublicKey, 32, 32)) throw bad("bad ephemeralPublicKey");
    return {
      scheme: "recipient",
      version: 1,
      recipient: info.recipient,
      ephemeralPublicKey: info.ephemeralPublicKey,
      wrappedKey: info.wrappedKey,
    };
  }
  throw bad(`unknown scheme ${JSON.stringify(info.scheme)}`);
}

// ---------------------------------------------------------------------------------------------------------
// X25519 identities and recipients

/** Prefix of an identity (secret key) line. */
export const IDENTITY_PREFIX = "FROST-SECRET-KEY-1:";
/** Prefix of a recipient (public key) line. */
export const RECIPIENT_PREFIX = "frost-recipient-1:";

/** PKCS#8 wrapping of a raw X25519 private key: the fixed 16-byte DER prefix (RFC 8410). */
const PKCS8_X25519 = Buffer.from("302e020100300506032b656e04220420", "hex");

function checksum(prefix: string, key: Uint8Array): Uint8Array {
  return nodeCrypto.createHash("sha256").update(prefix).update(key).digest().subarray(0, 4);
}

/** `prefix ‖ base64url(key(32) ‖ SHA-256(prefix ‖ key)[0..4])`, no padding: 48 characters after the prefix. */
function formatKey(prefix: string, key: Uint8Array): string {
  return prefix + Buffer.concat([key, checksum(prefix, key)]).toString("base64url");
}

function parseKey(prefix: string, text: string, what: string): Uint8Array {
  const body = text.slice(prefix.length);
  if (!text.startsWith(prefix) || !/^[A-Za-z0-9_-]{48}$/.test(body)) {
    throw new UsageError(`Not a frost ${what}: expected one line "${prefix}" followed by 48 characters`);
  }
  const bytes = new Uint8Array(Buffer.from(body, "base64url"));
  const key = bytes.slice(0, 32);
  if (!equalBytes(bytes.subarray(32), checksum(prefix, key))) {
    throw new UsageError(`Not a frost ${what}: its checksum does not match (a typo or a damaged copy?)`);
  }
  return key;
}

/** The one meaningful line of a key file: blank lines and `#` comments are skipped. */
function keyLine(text: string, what: string): string {
  const lines = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== "" && !l.startsWith("#"));
  if (lines.length !== 1) {
    throw new UsageError(`Not a frost ${what}: expected exactly one key line, found ${lines.length}`);
  }
  return lines[0]!;
}

/** The 32-byte X25519 private key of an identity (file text or key line). Throws `UsageError` if malformed. */
export function parseIdentity(text: string): Uint8Array {
  return parseKey(IDENTITY_PREFIX, keyLine(text, "identity"), "identity");
}

/** The 32-byte X25519 public key of a recipient (file text or line). Throws `UsageError` if malformed. */
export function parseRecipient(text: string): Uint8Array {
  return parseKey(RECIPIENT_PREFIX, keyLine(text, "recipient"), "recipient");
}

async function importX25519Private(raw: Uint8Array): Promise<CryptoKey> {
  const pkcs8 = new Uint8Array(48);
  pkcs8.set(PKCS8_X25519, 0);
  pkcs8.set(raw, 16);
  return await crypto.subtle.importKey("pkcs8", pkcs8, { name: "X25519" }, true, ["deriveBits"]);
}

async function x25519PublicOf(privateKey: CryptoKey): Promise<Uint8Array> {
  const jwk = await crypto.subtle.exportKey("jwk", privateKey);
  return new Uint8Array(Buffer.from(jwk.x!, "base64url"));
}

/** KEK = HKDF-SHA256(ikm = X25519(private, peer), salt = ephemeralPublic ‖ recipientPublic, info). */
async function recipientKek(
  privateKey: CryptoKey,
  peerPublic: Uint8Array,
  ephemeralPublic: Uint8Array,
  recipientPublic: Uint8Array,
): Promise<CryptoKey> {
  const peer = await crypto.subtle.importKey(
    "raw",
    peerPublic as Uint8Array<ArrayBuffer>,
    { name: "X25519" },
    true,
    [],
  );
  // WebCrypto rejects low-order points (an all-zero shared secret) in Deno and Bun; check anyway.
  const shared = new Uint8Array(
    await crypto.subtle.deriveBits({ name: "X25519", public: peer }, privateKey, 256),
  );
  if (shared.every((b) => b === 0)) throw new FrostError("X25519 gave an all-zero shared secret");
  const ikm = await crypto.subtle.importKey("raw", shared, "HKDF", false, ["deriveBits"]);
  const salt = new Uint8Array(64);
  salt.set(ephemeralPublic, 0);
  salt.set(recipientPublic, 32);
  const bits = await crypto.subtle.deriveBits(
    { name: "HKDF", hash: "SHA-256", salt, info: new TextEncoder().encode(HKDF_INFO) },
    ikm,
    256,
  );
  return await crypto.subtle.importKey("raw", bits, "AES-GCM", false, ["encrypt", "decrypt"]);
}

/** A new X25519 key pair: `identity` (secret, `FROST-SECRET-KEY-1…`) and `recipient` (public, `frost-recipient-1…`). */
export async function generateIdentity(): Promise<{ identity: string; recipient: string }> {
  const secret = crypto.getRandomValues(new Uint8Array(32));
  const publicKey = await x25519PublicOf(await importX25519Private(secret));
  return { identity: formatKey(IDENTITY_PREFIX, secret), recipient: formatKey(RECIPIENT_PREFIX, publicKey) };
}

/** The recipient (public key line) of an identity. */
export async function recipientOf(identity: string): Promise<string> {
  return formatKey(
    RECIPIENT_PREFIX,
    await x25519PublicOf(await importX25519Private(parseIdentity(identity))),
  );
}

// ---------------------------------------------------------------------------------------------------------
// Secret files

/** Secret files are small: reading stops after this many bytes (or, with `firstLine`, at the first `\n`). */
const SECRET_FILE_LIMIT = 64 * 1024;

async function readText(path: string, what: string, firstLine = false): Promise<string> {
  try {
    const file = await fsp.open(path, "r");
    try {
      const buffer = Buffer.alloc(SECRET_FILE_LIMIT);
      let filled = 0;
      while (filled < buffer.byteLength) {
        const { bytesRead } = await file.read(buffer, filled, buffer.byteLength - filled, null);
        if (bytesRead === 0) break;
        filled += bytesRead;
        if (firstLine && buffer.subarray(filled - bytesRead, filled).includes(0x0a)) break;
      }
      return buffer.subarray(0, filled).toString("utf8");
    } finally {
      await file.close();
    }
  } catch (err) {
    throw new UsageError(`Cannot read ${what} "${path}": ${messageOf(err)}`, { cause: err });
  }
}

/**
 * The passphrase of a pass file: its first line without the line ending (`\n` or `\r\n`). An unreadable
 * file or an empty first line is a `UsageError` naming the file.
 */
export async function readPassFile(path: string): Promise<string> {
  const text = await readText(path, "pass file", true);
  const passphrase = text.split("\n", 1)[0]!.replace(/\r$/, "");
  if (passphrase === "") {
    throw new UsageError(`Pass file "${path}" is empty: its first line must hold the passphrase`);
  }
  return passphrase;
}

/** The identity (key line) of an identity file; `UsageError` naming the file when unreadable or malformed. */
export async function readIdentityFile(path: string): Promise<string> {
  const text = await readText(path, "identity file");
  try {
    parseIdentity(text);
  } catch (err) {
    throw new UsageError(`Identity file "${path}": ${messageOf(err)}`, { cause: err });
  }
  return keyLine(text, "identity");
}

/** The recipient line of a recipient file; `UsageError` naming the file when unreadable or malformed. */
export async function readRecipientFile(path: string): Promise<string> {
  const text = await readText(path, "recipient file");
  try {
    parseRecipient(text);
  } catch (err) {
    throw new UsageError(`Recipient file "${path}": ${messageOf(err)}`, { cause: err });
  }
  return keyLine(text, "recipient");
}
