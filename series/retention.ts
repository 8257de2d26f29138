/**
 * Chain-aware retention for `frost remove --keep-last/--keep-daily/--keep-weekly/--keep-monthly`.
 * Pure functions without I/O.
 *
 * The rules are restic's: going from the newest backup to the oldest, `--keep-last N` keeps the N newest,
 * and `--keep-daily N` keeps the newest backup of each of the N newest days that have backups (weekly: ISO
 * weeks, monthly: calendar months; all in UTC). What is new: a kept backup keeps every ancestor it needs to
 * be restored (its parent, the parent's parent, … down to level 0), so no kept backup ever loses its chain.
 * @module
 */

/** One backup as retention sees it. */
export interface RetentionBackup {
  id: string;
  /** The backup this one holds the changes against; null at level 0. */
  parent: string | null;
  created: Date;
  /** Stored bytes (data and state) freed when it is removed. */
  bytes: number;
}

/** How many of each kind to keep. Absent means the rule is not used; 0 keeps none by that rule. */
export interface RetentionPolicy {
  last?: number;
  daily?: number;
  weekly?: number;
  monthly?: number;
  /** Backups created at or after this time are kept too (rule "newer than cut-off"). */
  keepNewerThan?: Date;
}

/** The rules, in the order they are shown. */
export const RULES = ["last", "daily", "weekly", "monthly"] as const;
/** One keep rule. */
export type Rule = typeof RULES[number];

/** What retention decided for one backup. */
export type Decision =
  | { id: string; action: "keep"; rules: string[] }
  | { id: string; action: "keep"; rules: []; neededBy: string }
  | { id: string; action: "remove" };

/** The outcome for a whole series. */
export interface RetentionPlan {
  /** Every backup, newest first. */
  decisions: Decision[];
  /** Ids to remove, newest first (the order to delete them in). */
  remove: string[];
  /** Bytes of the removed backups. */
  bytesFreed: number;
}

/** True when the policy names at least one keep rule (or a cut-off). */
export function hasRules(policy: RetentionPolicy): boolean {
  return RULES.some((r) => policy[r] !== undefined) || policy.keepNewerThan !== undefined;
}

/** Newest first: by creation time, then by id. */
function newestFirst(a: RetentionBackup, b: RetentionBackup): number {
  return b.created.getTime() - a.created.getTime() || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);
}

/** The bucket a backup falls into for a rule (UTC). `last`: every backup is its own bucket. */
export function bucketOf(rule: Rule, created: Date, id: string): string {
  const y = created.getUTCFullYear();
  const m = created.getUTCMonth() + 1;
  switch (rule) {
    case "last":
      return id;
    case "daily":
      return `${y}-${m}-${created.getUTCDate()}`;
    case "monthly":
      return `${y}-${m}`;
    case "weekly": {
      const [year, week] = isoWeek(created);
      return `${year}-W${week}`;
    }
  }
}

/** The ISO 8601 week-numbering year and week of a UTC date. */
export function isoWeek(date: Date): [number, number] {
  const d = new Date(Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate()));
  const day = d.getUTCDay() || 7; // Monday 1 … Sunday 7
  d.setUTCDate(d.getUTCDate() + 4 - day); // the Thursday of this week decides the year
  const year = d.getUTCFullYear();
  const week = Math.ceil(((d.getTime() - Date.UTC(year, 0, 1)) / 86_400_000 + 1) / 7);
  return [year, week];
}

/** The rules that select each backup (before ancestors are added), by id. */
export function ruleMatches(
  backups: readonly RetentionBackup[],
  policy: RetentionPolicy,
): Map<string, string[]> {
  const sorted = [...backups].sort(newestFirst);
  const out = new Map<string, string[]>(sorted.map((b) => [b.id, []]));
  for (const rule of RULES) {
    let left = policy[rule];
    if (left === undefined) continue;
    let lastBucket: string | undefined;
    for (const b of sorted) {
      if (left <= 0) break;
      const bucket = bucketOf(rule, b.created, b.id);
      if (bucket === lastBucket) continue;
      lastBucket = bucket;
      left--;
      out.get(b.id)!.push(rule);
    }
  }
  const cutoff = policy.keepNewerThan?.getTime();
  if (cutoff !== undefined) {
    for (const b of sorted) if (b.created.getTime() >= cutoff) out.get(b.id)!.push("newer than cut-off");
  }
  return out;
}

/**
 * Decides which backups to keep: those a rule selects, plus every ancestor of those (a parent missing from
 * `backups` ends the walk: nothing more can be kept). Everything else is removed, newest first.
 */
export function planRetention(backups: readonly RetentionBackup[], policy: RetentionPolicy): RetentionPlan {
  const sorted = [...backups].sort(newestFirst);
  const byId = new Map(sorted.map((b) => [b.id, b]));
  const matches = ruleMatches(sorted, policy);
  const neededBy = new Map<string, string>();
  // Newest first, so an ancestor is credited to its newest kept descendant.
  for (const b of sorted) {
    if (matches.get(b.id)!.length === 0) continue;
    const seen = new Set([b.id]);
    let parentId = b.parent;
    while (parentId !== null && !seen.has(parentId)) {
      seen.add(parentId);
      const parent = byId.get(parentId);
      if (!parent) break;
      if (matches.get(parentId)!.length === 0 && !neededBy.has(parentId)) neededBy.set(parentId, b.id);
      parentId = parent.parent;
    }
  }
  const decisions: Decision[] = sorted.map((b) => {
    const rules = matches.get(b.id)!;
    if (rules.length > 0) return { id: b.id, action: "keep", rules };
    const by = neededBy.get(b.id);
    if (by !== undefined) return { id: b.id, action: "keep", rules: [], neededBy: by };
    return { id: b.id, action: "remove" };
  });
  const remove = decisions.filter((d) => d.action === "remove").map((d) => d.id);
  const bytesFreed = remove.reduce((n, id) => n + byId.get(id)!.bytes, 0);
  return { decisions, remove, bytesFreed };
}

/** How a decision is shown: `keep (daily, weekly)`, `keep (needed by <id>)` or `remove`. */
export function describeDecision(d: Decision): string {
  if (d.action === "remove") return "remove";
  if ("neededBy" in d) return `keep (needed by ${d.neededBy})`;
  return `keep (${d.rules.join(", ")})`;
}
