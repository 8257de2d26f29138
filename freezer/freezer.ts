/**
 * Reading OpenStack Freezer's tar-engine backups (read-only): the container layout, the metadata JSON, the
 * restore chain, and the stream `[openssl enc -aes-256-cfb](gzip|bzip2|xz(GNU tar incremental archive))`.
 *
 * Layout: `metadata/tar/<hbn>/<Z>/<level>_<ts>/metadata` (JSON `engine_name`, `compression`,
 * `encryption`) and `data/tar/<hbn>/<Z>/<level>_<ts>/data`, or on Swift `…/segments/%08d` behind a
 * zero-byte DLO manifest `data`.
 * @module
 */
import crypto from "node:crypto";
import zlib from "node:zlib";
import { Buffer } from "node:buffer";
import { Duplex } from "node:stream";
import * as xzModule from "xz-decompress";
import { FrostError } from "../base/errors.ts";
import { bunzip2 } from "../codec/bzip2.ts";
import { getBytes, NotFoundError, type ObjectInfo, type Storage } from "../storage/storage.ts";

/** The engine whose layout frost reads. */
export const FREEZER_ENGINE = "tar";

/** Freezer's compressions. */
export type FreezerCompression = "gzip" | "bzip2" | "xz";

/** One Freezer backup: `<hbn>/<levelZero>/<level>_<timestamp>`. */
export interface FreezerBackup {
  /** `<hostname>_<backup_name>`. */
  hbn: string;
  /** The level-0 timestamp (epoch seconds) of its chain. */
  levelZero: number;
  level: number;
  /** Epoch seconds. */
  timestamp: number;
  /** `<hbn>/<Z>/<level>_<ts>`, for messages. */
  id: string;
  engineName: string;
  compression: FreezerCompression;
  encryption: boolean;
}

const METADATA_KEY = /^metadata\/tar\/([^/]+)\/(\d+)\/(\d+)_(\d+)\/metadata$/;

/** Lists the Freezer tar backups under `metadata/tar/` (of one `hbn` when given), oldest first. */
export async function listFreezerBackups(
  storage: Storage,
  options: {
    hbn?: string;
    filter?: (hbn: string) => boolean;
    signal?: AbortSignal;
    onWarning?: (m: string) => void;
  } = {},
): Promise<FreezerBackup[]> {
  const prefix = options.hbn === undefined
    ? `metadata/${FREEZER_ENGINE}/`
    : `metadata/${FREEZER_ENGINE}/${options.hbn}/`;
  const found: { hbn: string; z: number; level: number; ts: number; key: string }[] = [];
  for await (const info of storage.list(prefix, { signal: options.signal })) {
    const m = METADATA_KEY.exec(info.key);
    if (!m) continue;
    const hbn = m[1]!;
    if (options.filter && !options.filter(hbn)) continue;
    found.push({ hbn, z: Number(m[2]), level: Number(m[3]), ts: Number(m[4]), key: info.key });
  }
  const out: FreezerBackup[] = [];
  let next = 0;
  const worker = async () => {
    while (next < found.length) {
      const f = found[next++]!;
      const id = `${f.hbn}/${f.z}/${f.level}_${f.ts}`;
      let meta: Record<string, unknown>;
      try {
        meta = JSON.parse(
          new TextDecoder().decode(await getBytes(storage, f.key, { signal: options.signal })),
        );
        if (meta === null || typeof meta !== "object") throw new Error("not a JSON object");
      } catch (err) {
        if (
          err instanceof NotFoundError || err instanceof SyntaxError ||
          (err as Error).message === "not a JSON object"
        ) {
          options.onWarning?.(
            `ignoring Freezer backup "${id}": unreadable metadata (${(err as Error).message})`,
          );
          continue;
        }
        throw err;
      }
      const compression = meta.compression ?? "gzip";
      if (compression !== "gzip" && compression !== "bzip2" && compression !== "xz") {
        options.onWarning?.(`ignoring Freezer backup "${id}": unknown compression "${String(compression)}"`);
        continue;
      }
      out.push({
        hbn: f.hbn,
        levelZero: f.z,
        level: f.level,
        timestamp: f.ts,
        id,
        engineName: typeof meta.engine_name === "string" ? meta.engine_name : FREEZER_ENGINE,
        compression,
        encryption: meta.encryption === true || meta.encryption === "True" || meta.encryption === "true",
      });
    }
  };
  await Promise.all(Array.from({ length: Math.min(8, found.length) }, worker));
  out.sort((a, b) =>
    a.hbn.localeCompare(b.hbn) || a.levelZero - b.levelZero || a.level - b.level || a.timestamp - b.timestamp
  );
  return out;
}

/** The chain to restore and what frost had to decide on the way. */
export interface FreezerChain {
  chain: FreezerBackup[];
  /** Human-readable notes on ambiguous same-level entries (always-level). */
  notices: string[];
}

/**
 * Freezer's restore chain, with timestamps settling its ambiguity: the newest level-0 chain whose `Z` is at
 * or before `at` (epoch ms; default now), its entries at or before `at`, levels 0..max in order. Where a
 * level holds several entries (always-level: each one a differential against level-1), the newest at or
 * before `at` is applied for the top level, and for a lower level the newest one older than the entry
 * chosen above it (its likeliest parent).
 */
export function freezerChain(backups: FreezerBackup[], hbn: string, at?: number): FreezerChain {
  const limit = at === undefined ? Infinity : Math.floor(at / 1000);
  const mine = backups.filter((b) => b.hbn === hbn);
  if (mine.length === 0) throw new FrostError(`No Freezer backup named "${hbn}" found`);
  const zs = [...new Set(mine.map((b) => b.levelZero))].filter((z) => z <= limit).sort((a, b) => a - b);
  if (zs.length === 0) {
    throw new FrostError(
      `No Freezer backup of "${hbn}" at or before ${new Date(at!).toISOString()} (the oldest is from ${
        new Date(Math.min(...mine.map((b) => b.levelZero)) * 1000).toISOString()
      })`,
    );
  }
  const z = zs[zs.length - 1]!;
  const entries = mine.filter((b) => b.levelZero === z && b.timestamp <= limit);
  const byLevel = new Map<number, FreezerBackup[]>();
  for (const b of entries) byLevel.set(b.level, [...byLevel.get(b.level) ?? [], b]);
  if (byLevel.size === 0) {
    throw new FrostError(`Freezer chain ${hbn}/${z} has no backup at or before the date`);
  }
  const max = Math.max(...byLevel.keys());
  const chain: FreezerBackup[] = [];
  const notices: string[] = [];
  let ceiling = Infinity;
  for (let level = max; level >= 0; level--) {
    const same = byLevel.get(level) ?? [];
    // A parent is never newer than its child (the same second is possible).
    const candidates = same.filter((b) => b.timestamp <= ceiling).sort((a, b) => a.timestamp - b.timestamp);
    const pick = candidates[candidates.length - 1];
    if (!pick) {
      const above = level === max ? "" : `at or before ${chain[0]!.level}_${chain[0]!.timestamp} `;
      throw new FrostError(
        `Freezer chain ${hbn}/${z} has no level-${level} backup ${above}(levels 0..${max} are needed)`,
      );
    }
    if (same.length > 1) {
      const all = same.map((b) => `${b.level}_${b.timestamp}`).join(", ");
      const picked = `${pick.level}_${pick.timestamp}`;
      notices.push(
        level === max
          ? `chain ${hbn}/${z} holds ${same.length} level-${level} backups at or before the date (${all}): ` +
            `always-level, each a differential against level ${level - 1}; applying levels 0..${level - 1} ` +
            `and only the newest, ${picked} (Freezer itself would pick one of them arbitrarily)`
          : `chain ${hbn}/${z} holds ${same.length} level-${level} backups (${all}); using ${picked}, the ` +
            `newest at or before ${chain[0]!.level}_${chain[0]!.timestamp}, as its parent`,
      );
    }
    chain.unshift(pick);
    ceiling = pick.timestamp;
  }
  return { chain, notices };
}

/** The objects holding one backup's stream, in order: `data`, or Swift's `segments/%08d`. */
export async function dataObjects(
  storage: Storage,
  backup: FreezerBackup,
  signal?: AbortSignal,
): Promise<string[]> {
  const dir = `data/${FREEZER_ENGINE}/${backup.hbn}/${backup.levelZero}/${backup.level}_${backup.timestamp}/`;
  let data: ObjectInfo | undefined;
  const segments: { n: number; key: string }[] = [];
  for await (const info of storage.list(dir, { signal })) {
    const rest = info.key.slice(dir.length);
    if (rest === "data") data = info;
    const m = /^segments\/(\d+)$/.exec(rest);
    if (m) segments.push({ n: Number(m[1]), key: info.key });
  }
  if (data && data.size > 0) return [data.key];
  if (segments.length === 0) {
    if (data) return [data.key];
    throw new FrostError(`Freezer backup "${backup.id}" has no data (${dir}data is missing)`);
  }
  segments.sort((a, b) => a.n - b.n);
  segments.forEach((s, i) => {
    if (s.n !== i) {
      throw new FrostError(`Freezer backup "${backup.id}" misses segment ${String(i).padStart(8, "0")}`);
    }
  });
  return segments.map((s) => s.key);
}

/** The objects `keys` as one stream, read one after the other. */
export function concatObjects(
  storage: Storage,
  keys: string[],
  options: { signal?: AbortSignal; onRead?: (bytes: number) => void } = {},
): ReadableStream<Uint8Array> {
  let index = 0;
  let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      for (;;) {
        if (!reader) {
          if (index >= keys.length) {
            controller.close();
            return;
          }
          reader = (await storage.get(keys[index++]!, { signal: options.signal })).getReader();
        }
        const { value, done } = await reader.read();
        if (done) {
          reader = undefined;
          continue;
        }
        if (value.byteLength === 0) continue;
        options.onRead?.(value.byteLength);
        controller.enqueue(value);
        return;
      }
    },
    async cancel(reason) {
      await reader?.cancel(reason);
    },
  }, { highWaterMark: 0 });
}

/** Reads the first `n` bytes of a stream (fewer at its end) and cancels it. */
export async function peek(stream: ReadableStream<Uint8Array>, n: number): Promise<Uint8Array> {
  const reader = stream.getReader();
  const out = new Uint8Array(n);
  let filled = 0;
  try {
    while (filled < n) {
      const { value, done } = await reader.read();
      if (done) break;
      const take = Math.min(value.byteLength, n - filled);
      out.set(value.subarray(0, take), filled);
      filled += take;
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  return out.subarray(0, filled);
}

/** The password `openssl enc -pass file:F` uses: the first line, without its newline (at most 1023 bytes). */
export function opensslPassword(file: Uint8Array): Uint8Array {
  let end = file.indexOf(0x0a);
  if (end < 0) end = file.byteLength;
  return file.subarray(0, Math.min(end, 1023));
}

/** OpenSSL's EVP_BytesToKey with one iteration: 32 key bytes and 16 IV bytes. */
export function bytesToKey(digest: "sha256" | "md5", password: Uint8Array, salt: Uint8Array) {
  const parts: Buffer[] = [];
  let size = 0;
  let prev: Buffer = Buffer.alloc(0);
  while (size < 48) {
    prev = crypto.createHash(digest).update(prev).update(password).update(salt).digest();
    parts.push(prev);
    size += prev.byteLength;
  }
  const all = Buffer.concat(parts);
  return { key: all.subarray(0, 32), iv: all.subarray(32, 48) };
}

const SALTED = new TextEncoder().encode("Salted__");
const MAGIC: Record<FreezerCompression, number[][]> = {
  gzip: [[0x1f, 0x8b, 0x08]],
  bzip2: [[0x42, 0x5a, 0x68, 0x31], [0x42, 0x5a, 0x68, 0x39]], // "BZh" + block size digit 1..9
  xz: [[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]],
};

/** Whether `head` starts like a stream of `compression`. */
export function hasMagic(head: Uint8Array, compression: FreezerCompression): boolean {
  if (compression === "bzip2") {
    return head.length >= 4 && head[0] === 0x42 && head[1] === 0x5a && head[2] === 0x68 && head[3]! >= 0x31 &&
      head[3]! <= 0x39;
  }
  return MAGIC[compression].some((m) => head.length >= m.length && m.every((b, i) => head[i] === b));
}

/** A decryption key found for one backup. */
export interface FreezerKey {
  key: Uint8Array;
  iv: Uint8Array;
  digest: "sha256" | "md5";
}

/**
 * Finds the key of an encrypted backup from the first 32 bytes of its stream: SHA-256 (OpenSSL ≥ 1.1), else
 * MD5 (older OpenSSL), whichever decrypts to the compression's magic. Throws a "Wrong passphrase" error.
 */
export function findKey(backup: FreezerBackup, head: Uint8Array, password: Uint8Array): FreezerKey {
  if (head.byteLength < 16 || !SALTED.every((b, i) => head[i] === b)) {
    throw new FrostError(
      `Freezer backup "${backup.id}" is marked encrypted but does not start with openssl's "Salted__" header`,
    );
  }
  const salt = head.subarray(8, 16);
  for (const digest of ["sha256", "md5"] as const) {
    const { key, iv } = bytesToKey(digest, password, salt);
    const plain = cfbDecryptAll(key, iv, head.subarray(16));
    if (hasMagic(plain, backup.compression)) return { key, iv, digest };
  }
  throw new FrostError(
    `Wrong passphrase for Freezer backup "${backup.id}" (neither the SHA-256 nor the MD5 key decrypts it ` +
      `to ${backup.compression} data)`,
  );
}

/** Checks an unencrypted stream's start against its compression. */
export function checkPlainHead(backup: FreezerBackup, head: Uint8Array): void {
  if (hasMagic(head, backup.compression)) return;
  if (head.byteLength >= 8 && SALTED.every((b, i) => head[i] === b)) {
    throw new FrostError(
      `Freezer backup "${backup.id}" is encrypted (openssl "Salted__" header) though its metadata says not; ` +
        `give --encrypt-pass-file`,
    );
  }
  throw new FrostError(`Freezer backup "${backup.id}" is not ${backup.compression} data (bad magic bytes)`);
}

function ecb(key: Uint8Array): crypto.Cipher {
  const cipher = crypto.createCipheriv("aes-256-ecb", key, null);
  cipher.setAutoPadding(false);
  return cipher;
}

function cfbDecryptAll(key: Uint8Array, iv: Uint8Array, data: Uint8Array): Uint8Array {
  const out: Uint8Array[] = [];
  const t = cfbTransformer(key, iv);
  out.push(t.push(data), t.end());
  return Buffer.concat(out);
}

/**
 * AES-256-CFB128 decryption (what `openssl enc -d -aes-256-cfb` does) on AES-ECB, which every runtime has
 * (Deno's node:crypto lacks CFB): plain[i] = cipher[i] XOR E(cipher[i-1]), with cipher[-1] = IV, so the
 * keystream of a whole chunk is one ECB call.
 */
function cfbTransformer(key: Uint8Array, iv: Uint8Array) {
  const cipher = ecb(key);
  let prev = Buffer.from(iv);
  let rest = Buffer.alloc(0);
  return {
    push(chunk: Uint8Array): Uint8Array {
      const data = rest.byteLength > 0 ? Buffer.concat([rest, chunk]) : Buffer.from(chunk);
      const blocks = Math.floor(data.byteLength / 16);
      rest = Buffer.from(data.subarray(blocks * 16));
      if (blocks === 0) return new Uint8Array(0);
      const full = data.subarray(0, blocks * 16);
      const input = Buffer.concat([prev, full.subarray(0, full.byteLength - 16)]);
      const stream = cipher.update(input);
      const out = new Uint8Array(full.byteLength);
      for (let i = 0; i < out.byteLength; i++) out[i] = full[i]! ^ stream[i]!;
      prev = Buffer.from(full.subarray(full.byteLength - 16));
      return out;
    },
    end(): Uint8Array {
      if (rest.byteLength === 0) return new Uint8Array(0);
      const stream = cipher.update(prev);
      const out = new Uint8Array(rest.byteLength);
      for (let i = 0; i < out.byteLength; i++) out[i] = rest[i]! ^ stream[i]!;
      rest = Buffer.alloc(0);
      return out;
    },
  };
}

/** Strips openssl's 16-byte `Salted__` header and decrypts the rest. */
export function opensslDecrypt(key: FreezerKey): TransformStream<Uint8Array, Uint8Array> {
  const t = cfbTransformer(key.key, key.iv);
  let skip = 16;
  return new TransformStream({
    transform(chunk, controller) {
      if (skip > 0) {
        const n = Math.min(skip, chunk.byteLength);
        skip -= n;
        chunk = chunk.subarray(n);
      }
      const out = t.push(chunk);
      if (out.byteLength > 0) controller.enqueue(out);
    },
    flush(controller) {
      const out = t.end();
      if (out.byteLength > 0) controller.enqueue(out);
    },
  });
}

type XzClass = new (s: ReadableStream<Uint8Array>) => ReadableStream<Uint8Array>;
const xzExports = xzModule as unknown as {
  XzReadableStream?: XzClass;
  default?: { XzReadableStream?: XzClass };
};

/** Decompresses `stream` as Freezer's `compression`. */
export function decompress(
  stream: ReadableStream<Uint8Array>,
  compression: FreezerCompression,
): ReadableStream<Uint8Array> {
  if (compression === "gzip") {
    const gunzip = Duplex.toWeb(zlib.createGunzip({ chunkSize: 1 << 20 })) as unknown as TransformStream<
      Uint8Array,
      Uint8Array
    >;
    return stream.pipeThrough(gunzip);
  }
  if (compression === "xz") {
    const Xz = xzExports.XzReadableStream ?? xzExports.default?.XzReadableStream;
    if (!Xz) throw new FrostError("The xz decoder (xz-decompress) is not available in this build");
    return relabel(new Xz(stream), "xz");
  }
  return bunzip2(stream);
}

/** Passes `stream` through, turning its errors into "<what>: corrupt or truncated stream (…)". */
function relabel(stream: ReadableStream<Uint8Array>, what: string): ReadableStream<Uint8Array> {
  const reader = stream.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      let result: ReadableStreamReadResult<Uint8Array>;
      try {
        result = await reader.read();
      } catch (err) {
        throw new FrostError(
          `${what}: corrupt or truncated stream (${(err as Error)?.message ?? String(err)})`,
          {
            cause: err,
          },
        );
      }
      if (result.done) controller.close();
      else controller.enqueue(result.value);
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}
