/**
 * Orphans: the data and state objects of backups that have no manifest, left by runs that died before their
 * commit (kill -9, a power cut, a lost connection). They are invisible to every command; this finds and
 * removes them.
 *
 * Whether an object without a manifest belongs to a dead run or to one still writing is told by the series
 * lock: every backup and remove of a series holds it, so a caller that holds it knows that no other run of
 * the series is writing, and every backup without a manifest is an orphan, whatever its age. A caller without
 * the lock (`remove --dry-run`) counts a backup younger than {@link ORPHAN_AGE_MS} only when no live lock of
 * the series exists.
 * @module
 */
import type { Storage } from "../storage/storage.ts";
import { canDeleteLeftovers } from "../storage/storage.ts";
import { backupPrefix, manifestsPrefix } from "./manifest.ts";
import { locksPrefix, lockState, readLocks } from "./lock.ts";
import { formatBytes } from "../base/units.ts";
import { messageOf } from "../base/errors.ts";
import { idToIso } from "./levels.ts";

/** Without the lock, a backup without a manifest younger than this may be a run in progress. */
export const ORPHAN_AGE_MS = 24 * 3600 * 1000;

/** The objects of one backup without a manifest. */
export interface Orphan {
  id: string;
  keys: string[];
  bytes: number;
}

/** Options of {@link findOrphans}. */
export interface FindOrphansOptions {
  /** True when the caller holds the series lock (then no age limit applies). */
  locked: boolean;
  /** The current time in ms (default `Date.now()`). */
  now?: number;
  signal?: AbortSignal;
}

const MANIFEST_KEY = /^[^/]+\/manifests\/([^/]+)\.json$/;

/**
 * The orphans of `series` on `storage`, oldest first. A backup counts as committed when its manifest object
 * exists, readable or not: the data of a manifest that cannot be read is never taken for an orphan.
 */
export async function findOrphans(
  storage: Storage,
  series: string,
  options: FindOrphansOptions,
): Promise<Orphan[]> {
  const { signal } = options;
  const committed = new Set<string>();
  for await (const info of storage.list(manifestsPrefix(series), { signal })) {
    const id = MANIFEST_KEY.exec(info.key)?.[1];
    if (id !== undefined) committed.add(id);
  }
  let minAgeMs = 0;
  if (!options.locked) {
    const locks = await readLocks(storage, locksPrefix(series), signal);
    if (locks.some((lock) => lockState(lock) === "active")) minAgeMs = ORPHAN_AGE_MS;
  }
  const now = options.now ?? Date.now();
  // One folder per backup: only the folders of backups without a manifest are listed key by key (a series
  // may hold millions of segments).
  const orphans: Orphan[] = [];
  for await (const id of storage.listFolders(`${series}/backups/`, { signal })) {
    if (committed.has(id)) continue;
    let created: number;
    try {
      created = Date.parse(idToIso(id));
    } catch {
      continue; // not a backup id: not frost's
    }
    if (now - created < minAgeMs) continue;
    const orphan: Orphan = { id, keys: [], bytes: 0 };
    for await (const info of storage.list(backupPrefix(series, id), { signal })) {
      orphan.keys.push(info.key);
      orphan.bytes += info.size;
    }
    // A run killed in its first put leaves a folder with nothing listed in it, only what deleteLeftovers finds.
    if (orphan.keys.length > 0 || canDeleteLeftovers(storage)) orphans.push(orphan);
  }
  return orphans.sort((a, b) => a.id.localeCompare(b.id));
}

/**
 * Deletes the objects of `orphans`, a few at a time, and what their unfinished writes left where the storage
 * can tell (`CleansLeftovers`); resolves to the bytes freed. Only for orphans found under the lock.
 */
export async function deleteOrphans(
  storage: Storage,
  series: string,
  orphans: readonly Orphan[],
  signal?: AbortSignal,
): Promise<number> {
  const keys = orphans.flatMap((o) => o.keys);
  const width = 8;
  for (let i = 0; i < keys.length; i += width) {
    await Promise.all(keys.slice(i, i + width).map((key) => storage.delete(key, { signal })));
  }
  let freed = orphans.reduce((n, o) => n + o.bytes, 0);
  for (const o of orphans) {
    freed += canDeleteLeftovers(storage)
      ? await storage.deleteLeftovers(backupPrefix(series, o.id), { signal })
      : 0;
  }
  return freed;
}

/**
 * What `backup` does once it holds the lock: removes the orphans of `series` and says what it freed on
 * `stderr` (a notice). A failure to remove them is a warning, not a failure of the backup: resolves to false.
 */
export async function removeOrphansAtStart(
  storage: Storage,
  series: string,
  signal: AbortSignal,
  stderr: (line: string) => void,
): Promise<boolean> {
  try {
    const orphans = await findOrphans(storage, series, { locked: true, signal });
    if (orphans.length === 0) return true;
    const freed = await deleteOrphans(storage, series, orphans, signal);
    stderr(
      `frost: removed the data of ${orphans.length} interrupted backup${
        orphans.length === 1 ? "" : "s"
      } of ${series} (${orphans.slice(0, 3).map((o) => o.id).join(", ")}${
        orphans.length > 3 ? ", …" : ""
      }): ${formatBytes(freed)} freed`,
    );
    return true;
  } catch (err) {
    signal.throwIfAborted();
    stderr(`frost: warning: cannot remove the data of interrupted backups of ${series}: ${messageOf(err)}`);
    return false;
  }
}
