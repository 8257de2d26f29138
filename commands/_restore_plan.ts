/**
 * What a restore does to a target that already holds something: which entries of the backup it creates,
 * which it replaces, and which existing entries it deletes. `restore --dry-run` prints it; the restore
 * reports its counts; `--delete` uses the same rule to prune the target afterwards.
 *
 * The rules (a restore never destroys what it was not asked to):
 * - `--overwrite` replaces what the backup holds and keeps everything else. The chain's own deletions
 *   still replay: an entry that an earlier level of the chain held and the restored point lacks.
 * - `--delete` (with `--overwrite`) makes the target an exact mirror of the backup point, within the
 *   `--include` patterns when given.
 * - A kept path (the storage folder inside the target) is never written, replaced or removed.
 * @module
 */
import type { Stats } from "node:fs";
import { fsBytes as fs, RestoreTarget } from "../engines/mod.ts";
import type { Selection, StateEntry } from "../engines/engine.ts";

/** A path test of a restore: `select` of the engines (partial restore, kept paths). */
export type Select = (path: string, isDir: boolean) => Selection;

/** One existing entry of the target that the restore deletes. */
export interface Deletion {
  path: string;
  type: "dir" | "file" | "symlink" | "other";
}

/** What a restore would do to its target. */
export interface RestorePlan {
  /** Entries of the backup point that the target lacks. */
  created: number;
  /** Entries of the backup point that exist in the target and are replaced. */
  replaced: ReadonlySet<string>;
  /** Existing entries that go (each directory's contents listed too), sorted. */
  deleted: Deletion[];
}

/** Options of {@linkcode planRestore}. */
export interface PlanOptions {
  /** The target directory (it may not exist yet). */
  target: string;
  /** The entries of the restored point (those selected), from its engine state. */
  entries: readonly StateEntry[];
  /** The paths that the chain's earlier levels held (chain deletions replay for them); none: only the point. */
  earlier?: Iterable<string>;
  /** `--delete`: everything in the target that the point lacks goes. */
  mirror: boolean;
  select?: Select;
}

/** Works out, writing nothing, what a restore does to `options.target`. */
export function planRestore(options: PlanOptions): RestorePlan {
  const { target, entries, select } = options;
  const exists = (rel: string) => fs.lstatSync(abs(target, rel), { throwIfNoEntry: false });
  if (!exists("")?.isDirectory()) return { created: entries.length, replaced: new Set(), deleted: [] };
  const point = new Set(entries.map((e) => e.path));
  const replaced = new Set<string>();
  for (const e of entries) if (e.path !== "" && exists(e.path)) replaced.add(e.path);
  const deleted: Deletion[] = [];
  const below = (rel: string) =>
    walk(target, rel, (r, st) => {
      deleted.push({ path: r, type: typeOf(st) });
      return "descend";
    });
  if (options.mirror) {
    walk(target, "", (rel, st) => {
      const s = select ? select(rel, st.isDirectory()) : "in";
      if (s === "out") return "skip";
      if (point.has(rel) || s === "parent") return "descend";
      deleted.push({ path: rel, type: typeOf(st) });
      if (st.isDirectory()) below(rel);
      return "skip";
    });
  } else {
    const gone = new Set<string>();
    for (const p of options.earlier ?? []) if (!point.has(p)) gone.add(p);
    // A deleted directory takes its contents along: only the topmost gone path is looked up.
    for (const p of [...gone].sort()) {
      const parent = p.lastIndexOf("/");
      if (parent > 0 && gone.has(p.slice(0, parent))) continue;
      const st = exists(p);
      if (!st) continue;
      if (select && select(p, st.isDirectory()) === "out") continue;
      deleted.push({ path: p, type: typeOf(st) });
      if (st.isDirectory()) below(p);
    }
  }
  deleted.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { created: entries.filter((e) => e.path !== "").length - replaced.size, replaced, deleted };
}

/**
 * `--delete` after a restore: removes every entry of `target` that the restored point lacks (within the
 * selection; kept and "out" paths stay). Returns the number of entries removed.
 */
export function pruneTarget(target: string, entries: readonly StateEntry[], select?: Select): number {
  const point = new Set(entries.map((e) => e.path));
  const t = new RestoreTarget<never>(target, {});
  let removed = 0;
  const doomed: string[] = [];
  walk(target, "", (rel, st) => {
    const s = select ? select(rel, st.isDirectory()) : "in";
    if (s === "out") return "skip";
    if (point.has(rel) || s === "parent") return "descend";
    doomed.push(rel);
    return "skip";
  });
  for (const rel of doomed) removed += t.remove(rel, abs(target, rel));
  return removed;
}

/** The entries below `root` (symlinks not followed; an unreadable folder counts as empty). */
export function countTree(root: string): number {
  let n = 0;
  walk(root, "", () => {
    n++;
    return "descend";
  });
  return n;
}

type Visit = (rel: string, st: Stats) => "descend" | "skip";

/** Walks the tree below `rel` under `root`, without following symlinks, as far as `visit` descends. */
function walk(root: string, rel: string, visit: Visit): void {
  let names: string[];
  try {
    names = fs.readdirSync(abs(root, rel));
  } catch {
    return; // not listable: nothing below it is known
  }
  for (const name of names.sort()) {
    const child = rel === "" ? name : rel + "/" + name;
    const st = fs.lstatSync(abs(root, child), { throwIfNoEntry: false });
    if (st && visit(child, st) === "descend" && st.isDirectory()) walk(root, child, visit);
  }
}

function abs(root: string, rel: string): string {
  return rel === "" ? root : root + "/" + rel;
}

function typeOf(st: Stats): Deletion["type"] {
  return st.isDirectory() ? "dir" : st.isSymbolicLink() ? "symlink" : st.isFile() ? "file" : "other";
}
