/**
 * The one time model of the command line: how backups' times are shown (UTC with an explicit `Z`), how a
 * `--date`/`--id` picks a backup, and how the choice is announced.
 *
 * - Shown: `2026-12-07T06:08:08Z` (seconds; milliseconds only where two backups of a series share a second).
 * - `--date` takes anything shown (a time with a zone picks the same instant in any TZ), a backup id
 *   (`20261207T060808.622Z`, that exact instant), or an ISO 8601 time without zone, read as local time. A
 *   time given to the second, without fraction, covers that whole second: `list` drops milliseconds, so
 *   `--date 2026-12-07T06:08:08Z` picks the backup made at 06:08:08.622.
 * - `--id ID` picks that backup and nothing else.
 * @module
 */
import { FrostError, UsageError } from "../base/errors.ts";
import { type Manifest, manifestChain } from "./manifest.ts";
import { NoBackupError, parseBackupId } from "./levels.ts";
import { parseDate } from "../base/units.ts";

const ID_LIKE = /^\d{8}T\d{6}(\.\d{3})?Z$/i;
const WHOLE_SECOND = /[T ]\d{2}:\d{2}:\d{2}(Z|[+-]\d{2}(:?\d{2})?)?$/i;

/**
 * Parses a `--date` value into the latest instant it covers: a backup id is its exact instant; a time to
 * the second (no fraction) covers that whole second; anything else is `parseDate` (zone-less is local).
 * Throws `UsageError` naming `option` for anything else.
 */
export function parseWhen(text: string, option = "--date"): Date {
  const s = text.trim();
  if (ID_LIKE.test(s)) {
    const id = s.toUpperCase();
    try {
      return parseBackupId(id.includes(".") ? id : id.replace(/Z$/, ".999Z"));
    } catch {
      throw new UsageError(`Invalid ${option} "${text}": not a possible backup id or time`);
    }
  }
  let date: Date;
  try {
    date = parseDate(s);
  } catch (err) {
    throw new UsageError(`Invalid ${option} ${(err as Error).message.replace(/^Parse date /, "")}`);
  }
  return WHOLE_SECOND.test(s) ? new Date(date.getTime() + 999) : date;
}

/** A time as frost shows it: `2026-12-07T06:08:08Z`, or with milliseconds when `precise`. */
export function formatTime(time: string | Date, precise = false): string {
  const iso = typeof time === "string" ? new Date(time).toISOString() : time.toISOString();
  return precise ? iso : iso.replace(/\.\d+Z$/, "Z");
}

/** The backups whose second-rounded time another backup of the list shares (shown with milliseconds). */
export function sharedSeconds(history: readonly Manifest[]): Set<string> {
  const count = new Map<string, number>();
  const key = (m: Manifest) => `${m.hostname}_${m.name} ${formatTime(m.created)}`;
  for (const m of history) count.set(key(m), (count.get(key(m)) ?? 0) + 1);
  return new Set(history.filter((m) => count.get(key(m))! > 1).map((m) => m.id));
}

/** What a command was asked to pick: `--id`, `--date`, or (neither) the newest. */
export interface Selection {
  id?: string;
  date?: string;
}

/** Checks `--id` and `--date` (not both); returns the instant `--date` covers, if any. */
export function checkSelection(sel: Selection): Date | undefined {
  if (sel.id !== undefined && sel.date !== undefined) {
    throw new UsageError("--id and --date cannot be used together");
  }
  if (sel.id !== undefined && !ID_LIKE.test(sel.id.trim())) {
    throw new UsageError(`Invalid --id "${sel.id}": expected a backup id such as 20261207T060808.622Z`);
  }
  return sel.date === undefined ? undefined : parseWhen(sel.date);
}

/**
 * The chain (oldest first) a restore of the selection applies. An unknown `--id`, or a `--date` before the
 * first backup, is a `FrostError` (`NoBackupError` for the date) that names the earliest and newest backups.
 */
export function selectChain(history: readonly Manifest[], sel: Selection, series: string): Manifest[] {
  const at = checkSelection(sel);
  const sorted = [...history].sort((a, b) => a.created.localeCompare(b.created) || a.id.localeCompare(b.id));
  const range = () =>
    sorted.length === 0
      ? ""
      : ` (the earliest is ${describe(sorted[0]!)}, the newest ${describe(sorted[sorted.length - 1]!)})`;
  if (sel.id !== undefined) {
    const id = sel.id.trim().toUpperCase();
    const byId = new Map(history.map((m) => [m.id, m]));
    const target = byId.get(id);
    if (!target) {
      const err = new NoBackupError(undefined, series);
      err.message = `No backup "${id}" of "${series}"${range()}`;
      throw err;
    }
    const chain: Manifest[] = [];
    for (let cur: Manifest | undefined = target; cur; cur = cur.parent ? byId.get(cur.parent) : undefined) {
      chain.push(cur);
      if (cur.parent !== null && !byId.has(cur.parent)) {
        throw new FrostError(
          `Backup "${cur.id}" of "${series}" needs its parent "${cur.parent}", which is missing`,
        );
      }
      if (chain.length > history.length) throw new FrostError(`The chain of "${id}" of "${series}" loops`);
    }
    return chain.reverse();
  }
  try {
    return manifestChain(history, at, series);
  } catch (err) {
    if (err instanceof NoBackupError && at !== undefined) {
      const asked = sel.date!.trim();
      const utc = formatTime(at);
      err.message = `No backup of "${series}" at or before ${asked}${
        asked === utc ? "" : ` (${utc})`
      }${range()}`;
    }
    throw err;
  }
}

/** `level 2, 2026-12-07T06:08:08Z (id 20261207T060808.622Z)`. */
export function describe(m: Manifest): string {
  return `level ${m.level}, ${formatTime(m.created)} (id ${m.id})`;
}

/** The line that says which backup a command chose: `restoring web1_etc level 2, 2026-12-07T06:08:08Z …`. */
export function chosenLine(verb: string, series: string, m: Manifest): string {
  return `${verb} ${series} ${describe(m)}`;
}
