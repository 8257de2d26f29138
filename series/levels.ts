/**
 * The level rules: which backup a new backup builds on, which backups a restore applies, and backup ids.
 * Pure functions without I/O.
 *
 * These are OpenStack Freezer's rules with its bugs fixed: every backup records its parent
 * id, and the rules follow parent pointers instead of looking up "the entry with that level number", so
 * repeated levels (`--always-level`) are chosen and restored correctly. Documented differences from Freezer:
 * - The level options need no `--incremental`; `--max-level 0` and `--always-level 0` mean "level 0 only"
 *   (Freezer treats 0 as "no limit").
 * - `--restart-always-level` is measured from the chain's level-0 backup (Freezer used the top level).
 * - A newest backup above `--always-level N` (the options changed) gets a level-N differential on its
 *   level N−1 ancestor; Freezer started a new chain.
 * - A latest chain with a missing ancestor is not built on: the next backup starts a new chain.
 * @module
 */
import { FrostError, UsageError } from "../base/errors.ts";

/** One committed backup of one `<hostname>_<name>`, as its manifest records it. */
export interface BackupRecord {
  /** The backup id, from `newBackupId`. */
  id: string;
  /** 0 for a full backup, otherwise one more than its parent's level. */
  level: number;
  /** The id of the backup this one holds the changes against; null at level 0. */
  parent: string | null;
  /** The id of the chain's level-0 backup (the backup's own id at level 0). */
  chain: string;
  /** Creation time (UTC, milliseconds); normally `parseBackupId(id)`. */
  created: Date;
}

/** The level options of a backup run. Unset options are absent or `undefined`. */
export interface LevelPolicy {
  /** `--max-level N`: climb 0..N, then start a new chain. */
  maxLevel?: number;
  /** `--always-level N`: climb 0..N, then repeat level N as a differential against level N−1. */
  alwaysLevel?: number;
  /** `--restart-always-level D`: start a new chain once the chain's level 0 is more than D days old. */
  restartAlwaysLevelDays?: number;
  /** `--incremental`: levels without limit, each one above the newest backup. */
  incremental?: boolean;
}

/** What `chooseParent` decided for the next backup. */
export interface LevelChoice {
  /** The level of the new backup. */
  level: number;
  /** The backup it builds on; null for a new chain (level 0). */
  parent: BackupRecord | null;
  /** One line saying why, for logs and `--dry-run`. */
  reason: string;
}

const DAY_MS = 86_400_000;

/** Throws `UsageError` for a contradictory or malformed policy. */
export function validatePolicy(p: LevelPolicy): void {
  if (p.maxLevel !== undefined && p.alwaysLevel !== undefined) {
    throw new UsageError("--max-level and --always-level cannot be used together");
  }
  for (const [option, value] of [["--max-level", p.maxLevel], ["--always-level", p.alwaysLevel]] as const) {
    if (value !== undefined && !(Number.isSafeInteger(value) && value >= 0)) {
      throw new UsageError(`Invalid ${option} "${value}": expected a whole number of 0 or more`);
    }
  }
  const days = p.restartAlwaysLevelDays;
  if (days !== undefined && !(Number.isFinite(days) && days >= 0)) {
    throw new UsageError(`Invalid --restart-always-level "${days}": expected a number of days of 0 or more`);
  }
}

/** Orders backups oldest first: by creation time, then by id. */
function compareRecords(a: BackupRecord, b: BackupRecord): number {
  const dt = a.created.getTime() - b.created.getTime();
  if (dt !== 0) return dt;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** The newest of `records` (by created, then id), or undefined when empty. */
function newest(records: Iterable<BackupRecord>): BackupRecord | undefined {
  let best: BackupRecord | undefined;
  for (const r of records) if (best === undefined || compareRecords(r, best) > 0) best = r;
  return best;
}

/**
 * Follows parent pointers from `start` to its level-0 backup. Returns the path newest first (`start` first),
 * or throws `FrostError` when a parent is missing, a cycle is found, or the root is not a level-0 backup.
 */
function ancestry(start: BackupRecord, byId: ReadonlyMap<string, BackupRecord>): BackupRecord[] {
  const path = [start];
  const seen = new Set([start.id]);
  let current = start;
  while (current.parent !== null) {
    const parent = byId.get(current.parent);
    if (parent === undefined) {
      throw new FrostError(`Backup "${current.id}" needs its parent "${current.parent}", which is missing`);
    }
    if (seen.has(parent.id)) {
      throw new FrostError(`Follow the parents of backup "${start.id}": "${parent.id}" is its own ancestor`);
    }
    seen.add(parent.id);
    path.push(parent);
    current = parent;
  }
  if (current.level !== 0) {
    throw new FrostError(`Backup "${current.id}" is at level ${current.level} but has no parent`);
  }
  return path;
}

function indexById(history: readonly BackupRecord[]): Map<string, BackupRecord> {
  return new Map(history.map((r) => [r.id, r]));
}

function optionName(policy: LevelPolicy): string {
  if (policy.maxLevel !== undefined) return `max-level ${policy.maxLevel}`;
  if (policy.alwaysLevel !== undefined) return `always-level ${policy.alwaysLevel}`;
  return "incremental";
}

/**
 * Chooses the level and parent of the next backup, given every committed backup of the same
 * `<hostname>_<name>` (any order) and the current time. The new backup's chain is `parent.chain`, or its own
 * id when `parent` is null. Throws `UsageError` for an invalid policy (see `validatePolicy`).
 */
export function chooseParent(history: readonly BackupRecord[], policy: LevelPolicy, now: Date): LevelChoice {
  validatePolicy(policy);
  const levels = policy.maxLevel !== undefined || policy.alwaysLevel !== undefined ||
    policy.incremental === true;
  if (!levels) return { level: 0, parent: null, reason: "level 0: no level option" };
  const latest = newest(history);
  if (latest === undefined) return { level: 0, parent: null, reason: "level 0: first backup" };
  const option = optionName(policy);
  if (policy.maxLevel === 0 || policy.alwaysLevel === 0) {
    return { level: 0, parent: null, reason: `new chain: every backup is level 0 (${option})` };
  }

  // Everything below builds on the latest chain, so that chain must be whole back to its level 0.
  const byId = indexById(history);
  let path: BackupRecord[];
  try {
    path = ancestry(latest, byId);
  } catch (err) {
    if (!(err instanceof FrostError)) throw err;
    return { level: 0, parent: null, reason: `new chain: the latest chain is broken (${err.message})` };
  }

  if (policy.maxLevel !== undefined && latest.level >= policy.maxLevel) {
    return {
      level: 0,
      parent: null,
      reason: `new chain: ${latest.id} is at level ${latest.level} (${option})`,
    };
  }

  const days = policy.restartAlwaysLevelDays;
  if (days !== undefined) {
    const root = path[path.length - 1]!;
    const age = now.getTime() - root.created.getTime();
    if (age > days * DAY_MS) {
      return {
        level: 0,
        parent: null,
        reason: `new chain: chain started ${
          (age / DAY_MS).toFixed(1)
        } days ago (restart-always-level ${days})`,
      };
    }
  }

  const always = policy.alwaysLevel;
  if (always !== undefined && latest.level >= always) {
    // A differential: level `always` again, on the level always−1 backup this chain's newest builds on.
    const base = path.find((r) => r.level === always - 1);
    if (base === undefined) {
      return {
        level: 0,
        parent: null,
        reason: `new chain: ${latest.id} has no level ${always - 1} ancestor (${option})`,
      };
    }
    return { level: always, parent: base, reason: `level ${always} on ${base.id} (${option})` };
  }

  const level = latest.level + 1;
  return { level, parent: latest, reason: `level ${level} on ${latest.id} (${option})` };
}

/** No backup exists at or before the requested time. `at` is undefined when no time was asked for. */
export class NoBackupError extends FrostError {
  override name = "NoBackupError";
  /** The restore time asked for, if any. */
  readonly at: Date | undefined;
  /** The `<hostname>_<name>` searched, if the caller gave it. */
  readonly backupName: string | undefined;
  constructor(at?: Date, backupName?: string) {
    const of = backupName === undefined ? "" : ` of "${backupName}"`;
    super(at === undefined ? `No backup${of}` : `No backup${of} at or before ${formatInstant(at)}`);
    this.at = at;
    this.backupName = backupName;
  }
}

/** An ISO 8601 UTC time, without milliseconds when they are zero: `2026-01-01T00:00:00Z`. */
function formatInstant(d: Date): string {
  if (Number.isNaN(d.getTime())) return "an invalid date";
  return d.toISOString().replace(/\.000Z$/, "Z");
}

/**
 * The backups a restore applies, oldest (level 0) first: the newest backup created at or before `at` (all
 * backups when `at` is undefined; ties broken by id), then its parents back to level 0. Throws
 * `NoBackupError` (naming `backupName` when given) when there is no such backup, and `FrostError` when a
 * parent is missing from `history`.
 */
export function restoreChain(
  history: readonly BackupRecord[],
  at?: Date,
  backupName?: string,
): BackupRecord[] {
  if (at !== undefined && Number.isNaN(at.getTime())) {
    throw new UsageError("Restore at an invalid date");
  }
  const limit = at?.getTime();
  const target = newest(
    limit === undefined ? history : history.filter((r) => r.created.getTime() <= limit),
  );
  if (target === undefined) throw new NoBackupError(at, backupName);
  return ancestry(target, indexById(history)).reverse();
}

const ID_PATTERN = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})\.(\d{3})Z$/;

function formatBackupId(t: number): string {
  const d = new Date(t);
  const year = d.getUTCFullYear();
  if (Number.isNaN(t) || year < 0 || year > 9999) {
    throw new FrostError(`Make a backup id for ${formatInstant(d)}: the year must be 0 to 9999`);
  }
  const p = (n: number, w = 2) => String(n).padStart(w, "0");
  return `${p(year, 4)}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}T` +
    `${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}.${p(d.getUTCMilliseconds(), 3)}Z`;
}

/**
 * The creation time a backup id encodes. Throws `FrostError` when `id` is not of the form
 * `YYYYMMDDTHHMMSS.mmmZ` or names an impossible time.
 */
export function parseBackupId(id: string): Date {
  const m = ID_PATTERN.exec(id);
  if (m !== null) {
    const [y, mo, d, h, mi, s, ms] = m.slice(1).map(Number) as [
      number,
      number,
      number,
      number,
      number,
      number,
      number,
    ];
    const date = new Date(0);
    date.setUTCFullYear(y, mo - 1, d);
    date.setUTCHours(h, mi, s, ms);
    if (formatBackupId(date.getTime()) === id) return date;
  }
  throw new FrostError(`Parse backup id "${id}": expected a UTC time such as 20261127T101500.123Z`);
}

/**
 * A new backup id: `now` in UTC as `YYYYMMDDTHHMMSS.mmmZ` (sortable and safe in keys). When that is not
 * greater than every existing id (same millisecond, clock set back), it is the newest existing id's time plus
 * 1 ms instead, so ids are unique and increase. Existing ids that are not backup ids are ignored.
 */
export function newBackupId(now: Date, existingIds: Iterable<string>): string {
  let max = -Infinity;
  for (const id of existingIds) {
    if (!ID_PATTERN.test(id)) continue;
    let t: number;
    try {
      t = parseBackupId(id).getTime();
    } catch {
      continue;
    }
    if (t > max) max = t;
  }
  const t = now.getTime();
  if (Number.isNaN(t)) throw new FrostError("Make a backup id: the clock gave an invalid date");
  return formatBackupId(t > max ? t : max + 1);
}

/** `20261127T101500.123Z` → `2026-11-27T10:15:00.123Z`. */
export function idToIso(id: string): string {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})\.(\d{3})Z$/.exec(id);
  if (!m) throw new FrostError(`Invalid backup id "${id}"`);
  return `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}.${m[7]}Z`;
}
