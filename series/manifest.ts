/**
 * The backup manifest — the commit point of a backup — and the key layout on a storage.
 *
 * ```
 * <hostname>_<name>/manifests/<id>.json          the manifest, written last
 * <hostname>_<name>/backups/<id>/data/00000000   data segments
 * <hostname>_<name>/backups/<id>/state/00000000  engine state segments
 * ```
 * Listing reads `manifests/` only, so data without a manifest (a failed run) is invisible.
 * docs/FORMAT.md describes every field.
 * @module
 */
import type { Storage } from "../storage/storage.ts";
import { getBytes } from "../storage/storage.ts";
import { FrostError, UsageError } from "../base/errors.ts";
import type { Compression } from "../codec/compression.ts";
import { COMPRESSIONS } from "../codec/compression.ts";
import { checkManifestEncryption, type ManifestEncryption } from "./keys.ts";
import { type BackupRecord, restoreChain } from "./levels.ts";

/** The manifest format's name and version, checked on read. */
export const MANIFEST_FORMAT = "frost-manifest";
/** Manifests this frost writes; it reads this version and older. */
export const MANIFEST_VERSION = 1;

/** One stored object of a backup, with its SHA-256 (checked on restore before any byte is used). */
export interface SegmentRef {
  key: string;
  size: number;
  sha256: string;
}

/** What a backup holds and how to read it back. */
export interface Manifest {
  format: typeof MANIFEST_FORMAT;
  version: number;
  /** Unique, sortable: `YYYYMMDDTHHMMSS.mmmZ`. */
  id: string;
  name: string;
  hostname: string;
  level: number;
  /** The backup this one holds the changes since; null for level 0. */
  parent: string | null;
  /** The id of the chain's level-0 backup (this id for a level 0). */
  chain: string;
  /** ISO 8601 UTC with milliseconds. */
  created: string;
  engine: string;
  compression: Compression;
  /** The wrapped keys (docs/FORMAT.md, "Encryption"); null when the backup is not encrypted. */
  encryption: ManifestEncryption | null;
  /** The backed-up path (absolute); null when encrypted: it is then in `sealedSource`. */
  source: string | null;
  /** Encrypted backups: the source path, encrypted with the data key (stream id `<id>/manifest`). */
  sealedSource?: string;
  /** The frost version that wrote it. */
  frost: string;
  /** Data segments in stream order. */
  segments: SegmentRef[];
  /** Engine-state segments in stream order. */
  state: SegmentRef[];
  totals: {
    /** Entries in the archive. */
    files: number;
    /** File content bytes read from the source. */
    bytesIn: number;
    /** Bytes of all data segments as stored. */
    bytesStored: number;
    /** Bytes of all state segments as stored. */
    stateBytes: number;
    /** Non-fatal problems met while backing up. */
    warnings: number;
    /** Seconds the backup took. */
    seconds: number;
  };
}

/** `<hostname>_<name>`, the folder of one backup series. */
export function seriesName(hostname: string, name: string): string {
  return `${hostname}_${name}`;
}

/** Key prefix of a series' manifests. */
export function manifestsPrefix(series: string): string {
  return `${series}/manifests/`;
}

/** Key of a backup's manifest. */
export function manifestKey(series: string, id: string): string {
  return `${series}/manifests/${id}.json`;
}

/** Key prefix of a backup's data and state objects. */
export function backupPrefix(series: string, id: string): string {
  return `${series}/backups/${id}/`;
}

/** Deletes a backup's data and state objects (not its manifest). */
export async function deleteBackupObjects(storage: Storage, series: string, id: string): Promise<number> {
  const keys: string[] = [];
  for await (const info of storage.list(backupPrefix(series, id))) keys.push(info.key);
  for (const key of keys) await storage.delete(key);
  return keys.length;
}

/** Key of the n-th segment of a backup's data or state. */
export function segmentKey(series: string, id: string, kind: "data" | "state", n: number): string {
  return `${backupPrefix(series, id)}${kind}/${String(n).padStart(8, "0")}`;
}

const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9._+@-]*$/;

/** Checks a `--name` or `--hostname` value: it becomes part of every key on every storage. */
export function checkName(value: string, option: string): string {
  if (!SAFE_NAME.test(value) || value.length > 128) {
    throw new UsageError(
      `Invalid ${option} "${value}": use letters, digits and . _ + @ - (at most 128, starting with a letter or digit)`,
    );
  }
  return value;
}

/** Serializes a manifest (stable field order, indented: it is small and read by people too). */
export function encodeManifest(manifest: Manifest): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(manifest, null, 2) + "\n");
}

/** Parses and checks a manifest; `where` names the object in errors. */
export function decodeManifest(bytes: Uint8Array, where: string): Manifest {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder().decode(bytes));
  } catch (err) {
    throw new FrostError(`Cannot read manifest "${where}": not valid JSON`, { cause: err });
  }
  const m = value as Partial<Manifest>;
  const bad = (what: string) => new FrostError(`Cannot read manifest "${where}": ${what}`);
  if (m === null || typeof m !== "object" || m.format !== MANIFEST_FORMAT) throw bad("not a frost manifest");
  if (typeof m.version !== "number" || m.version > MANIFEST_VERSION) {
    throw bad(`format version ${m.version} is newer than this frost understands (${MANIFEST_VERSION})`);
  }
  if (typeof m.id !== "string" || typeof m.chain !== "string" || typeof m.level !== "number") {
    throw bad("id, chain or level missing");
  }
  if (m.parent !== null && typeof m.parent !== "string") throw bad("bad parent");
  if (typeof m.created !== "string" || Number.isNaN(Date.parse(m.created))) throw bad("bad creation time");
  if (!(COMPRESSIONS as readonly string[]).includes(m.compression as string)) {
    throw bad(`unknown compression "${m.compression}"`);
  }
  if (!Array.isArray(m.segments) || !Array.isArray(m.state)) throw bad("segment list missing");
  m.encryption = checkManifestEncryption(m.encryption, where);
  return m as Manifest;
}

/**
 * Lists the ids of the series that have at least one manifest (for `frost list` without `--name`): the
 * top-level folders, then the manifests folder of each, never the segments (a storage may hold millions).
 */
export async function listSeries(storage: Storage): Promise<string[]> {
  const series: string[] = [];
  for await (const folder of storage.listFolders("")) {
    for await (const info of storage.list(manifestsPrefix(folder))) {
      if (/^[^/]+\/manifests\/[^/]+\.json$/.test(info.key)) {
        series.push(folder); // one manifest is enough: the rest of the listing is not read
        break;
      }
    }
  }
  return series.sort();
}

/** Reads every committed manifest of a series. Unreadable manifests are reported through `onError`. */
export async function loadManifests(
  storage: Storage,
  series: string,
  onError: (key: string, err: unknown) => void = (_key, err) => {
    throw err;
  },
): Promise<Manifest[]> {
  const keys: string[] = [];
  for await (const info of storage.list(manifestsPrefix(series))) {
    if (/^[^/]+\/manifests\/[^/]+\.json$/.test(info.key)) keys.push(info.key);
  }
  keys.sort();
  const out: Manifest[] = [];
  // A few reads at a time: listing is latency-bound on remote storages.
  const width = 8;
  for (let i = 0; i < keys.length; i += width) {
    const batch = keys.slice(i, i + width);
    const results = await Promise.allSettled(batch.map((key) => getBytes(storage, key)));
    results.forEach((result, j) => {
      const key = batch[j]!;
      try {
        if (result.status === "rejected") throw result.reason;
        out.push(decodeManifest(result.value, key));
      } catch (err) {
        onError(key, err);
      }
    });
  }
  return out;
}

/** The fields of a manifest the level rules look at. */
export function toRecord(m: Manifest): BackupRecord {
  return { id: m.id, level: m.level, parent: m.parent, chain: m.chain, created: new Date(m.created) };
}

/** The manifests a restore at `at` applies, oldest first (see `restoreChain` for the errors). */
export function manifestChain(
  history: readonly Manifest[],
  at: Date | undefined,
  series: string,
): Manifest[] {
  const byId = new Map(history.map((m) => [m.id, m]));
  return restoreChain(history.map(toRecord), at, series).map((r) => byId.get(r.id)!);
}
