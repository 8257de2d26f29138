/**
 * File-system helpers shared by the tar and rsync engines, so that both treat a tree the same way:
 * error texts, exclude patterns, owner names and ids, safe restore paths and times.
 * @module
 */
import fs from "node:fs";
import picomatch from "picomatch";
import { FrostError, messageOf } from "../base/errors.ts";
import type { Selection } from "./engine.ts";

/** The `code` of a system error. */
export function code(err: unknown): string | undefined {
  return (err as { code?: string } | null)?.code;
}

/** Message text for a system error: "no such file or directory" rather than "ENOENT: …, lstat '/x'". */
export function errnoText(err: unknown): string {
  switch (code(err)) {
    case "ENOENT":
      return "no such file or directory";
    case "EACCES":
    case "EPERM":
      return "permission denied";
    case "ENOTDIR":
      return "not a directory";
    case "ELOOP":
      return "too many levels of symbolic links";
    case "EIO":
      return "input/output error";
    default:
      return messageOf(err);
  }
}

/** How many times `ch` occurs in `s`. */
export function count(s: string, ch: string): number {
  let n = 0;
  for (let i = s.indexOf(ch); i >= 0; i = s.indexOf(ch, i + 1)) n++;
  return n;
}

/**
 * Builds the exclude test: picomatch globs with `dot: true`; a pattern without `/` matches any entry's
 * name, one with `/` the path below the source (as in .gitignore, a leading `/` anchors a one-part pattern
 * there: `/tmp` is the source's `tmp` only, `tmp` any entry so named; a leading `./` is the same); a
 * trailing `/` limits a pattern to directories.
 */
export function excludeMatcher(
  patterns: readonly string[],
): ((rel: string, name: string, isDir: boolean) => boolean) | undefined {
  const base: string[] = [];
  const full: string[] = [];
  const dirBase: string[] = [];
  const dirFull: string[] = [];
  for (const raw of patterns) {
    let p = raw;
    let anchored = false;
    while (p.startsWith("./") || p.startsWith("/")) {
      p = p.slice(p.startsWith("/") ? 1 : 2);
      anchored = true;
    }
    // A trailing "/" matches directories only, as in .gitignore.
    const dirOnly = p.length > 1 && p.endsWith("/");
    if (dirOnly) p = p.replace(/\/+$/, "");
    if (p === "") continue;
    (anchored || p.includes("/") ? (dirOnly ? dirFull : full) : (dirOnly ? dirBase : base)).push(p);
  }
  const compile = (list: string[]) => list.length > 0 ? picomatch(list, { dot: true }) : undefined;
  const b = compile(base);
  const f = compile(full);
  const db = compile(dirBase);
  const df = compile(dirFull);
  if (!b && !f && !db && !df) return undefined;
  return (rel, name, isDir) =>
    (b?.(name) ?? false) || (f?.(rel) ?? false) ||
    (isDir && ((db?.(name) ?? false) || (df?.(rel) ?? false)));
}

/** `literal` as a glob that matches exactly that path (picomatch's special characters escaped). */
export function globEscape(literal: string): string {
  return literal.replace(/[\\*?[\]{}()!+@|^$]/g, (c) => "\\" + c);
}

/**
 * A restore's path test that also keeps `kept` (paths relative to the target, e.g. a storage folder that
 * lies inside it) as they are: a kept path and everything below it is "out" (never written, replaced or
 * removed), a directory above one is "parent" at most (restored, but never removed or replaced as a
 * whole). `select` is the partial restore's own test, if any.
 */
export function keepingSelect(
  select: ((path: string, isDir: boolean) => Selection) | undefined,
  kept: readonly string[],
): ((path: string, isDir: boolean) => Selection) | undefined {
  if (kept.length === 0) return select;
  return (path, isDir) => {
    for (const k of kept) {
      if (path === k || path.startsWith(k + "/") || k === "") return "out";
    }
    const s = select ? select(path, isDir) : "in";
    if (s !== "in" || !isDir) return s;
    for (const k of kept) if (path === "" || k.startsWith(path + "/")) return "parent";
    return s;
  };
}

/** A partial restore's path test, built from `--include` patterns by {@linkcode includeSelector}. */
export interface IncludeSelector {
  /** Where `path` (relative to the backup's root) stands: see `Selection` in engine.ts. */
  select(path: string, isDir: boolean): Selection;
  /** Whether `path` itself matches `pattern` (one of the patterns given) or lies below a match. */
  covers(pattern: string, path: string): boolean;
}

/**
 * Builds the partial-restore test: every pattern is a path relative to the backup's root (a leading
 * `./` or `/` is ignored, as is a trailing `/`) with picomatch globs (`*`, `?`, `[…]`, `**`, dot files
 * included). An entry is restored when it or one of its parent directories matches a pattern; the
 * directories leading to a pattern's fixed part (or below it, when the pattern has globs) are "parent".
 */
export function includeSelector(patterns: readonly string[]): IncludeSelector {
  const compiled = patterns.map((raw) => {
    let p = raw;
    while (p.startsWith("./")) p = p.slice(2);
    while (p.startsWith("/")) p = p.slice(1);
    p = p.replace(/\/+$/, "");
    if (p === "" || p === ".") {
      return { raw, test: () => true, base: [] as string[], glob: true };
    }
    const scan = picomatch.scan(p);
    const base = scan.base === "" ? [] : scan.base.split("/");
    return { raw, test: picomatch(p, { dot: true }), base, glob: scan.isGlob };
  });
  const matches = (path: string, test: (p: string) => boolean): boolean => {
    if (test(path)) return true;
    for (let i = path.indexOf("/"); i > 0; i = path.indexOf("/", i + 1)) {
      if (test(path.slice(0, i))) return true;
    }
    return false;
  };
  return {
    select(path, isDir) {
      if (path === "") return compiled.some((c) => c.test("")) ? "in" : "parent";
      for (const c of compiled) if (matches(path, c.test)) return "in";
      if (!isDir) return "out";
      const parts = path.split("/");
      for (const c of compiled) {
        const n = Math.min(parts.length, c.base.length);
        let same = true;
        for (let i = 0; i < n && same; i++) same = parts[i] === c.base[i];
        // A directory on the way to the pattern's fixed part, or below it when globs may match deeper.
        if (same && (parts.length < c.base.length || c.glob)) return "parent";
      }
      return "out";
    },
    covers(pattern, path) {
      const c = compiled.find((x) => x.raw === pattern);
      return c !== undefined && matches(path, c.test);
    },
  };
}

/** Reads /etc/passwd or /etc/group into id → name (first name wins, as getpwuid does). */
export function readIdNames(file: string): Map<number, string> {
  const names = new Map<number, string>();
  let text = "";
  try {
    text = fs.readFileSync(file, "utf8");
  } catch {
    return names;
  }
  for (const line of text.split("\n")) {
    const fields = line.split(":");
    const name = fields[0];
    const id = Number(fields[2]);
    if (name && fields.length >= 3 && Number.isInteger(id) && !names.has(id)) names.set(id, name);
  }
  return names;
}

/** Names owner ids through this machine's /etc/passwd and /etc/group ("" when unknown), read once. */
export class OwnerNames {
  #users: Map<number, string> | undefined;
  #groups: Map<number, string> | undefined;

  user(uid: number): string {
    this.#users ??= readIdNames("/etc/passwd");
    return this.#users.get(uid) ?? "";
  }

  group(gid: number): string {
    this.#groups ??= readIdNames("/etc/group");
    return this.#groups.get(gid) ?? "";
  }
}

/** Maps owner names to ids through this machine's /etc/passwd and /etc/group, like GNU tar. */
export class IdMap {
  #users: Map<string, number> | undefined;
  #groups: Map<string, number> | undefined;

  uid(uname: string, uid: number): number {
    if (uname === "") return uid;
    this.#users ??= readIds("/etc/passwd");
    return this.#users.get(uname) ?? uid;
  }

  gid(gname: string, gid: number): number {
    if (gname === "") return gid;
    this.#groups ??= readIds("/etc/group");
    return this.#groups.get(gname) ?? gid;
  }
}

function readIds(file: string): Map<string, number> {
  const ids = new Map<string, number>();
  let text = "";
  try {
    text = fs.readFileSync(file, "utf8");
  } catch {
    return ids; // no such database: numeric ids it is
  }
  for (const line of text.split("\n")) {
    const f = line.split(":");
    const id = Number(f[2]);
    if (f.length > 2 && f[0] && !ids.has(f[0]) && Number.isInteger(id)) ids.set(f[0], id);
  }
  return ids;
}

/**
 * Normalises a stored path (archive member name, stream path, link target) to one relative to the
 * target ("" is the target itself): drops "." and empty components, refuses absolute names, ".." and
 * NUL bytes. The result never starts with "/". `entry` names the entry in the error messages.
 */
export function safeRel(name: string, entry: string): string {
  if (name.startsWith("/")) {
    throw new FrostError(`Refusing to restore "${entry}": path leaves the target (absolute name)`);
  }
  if (name.includes("\0")) throw new FrostError(`Refusing to restore "${entry}": name contains a NUL byte`);
  // Fast path for the common "./a/b" and "a/b" shapes.
  let s = name.startsWith("./") ? name.slice(2) : name;
  if (s.endsWith("/")) s = s.replace(/\/+$/, "");
  if (!s.startsWith("/") && !s.includes("//") && !/(^|\/)\.\.?(\/|$)/.test(s)) return s;
  const out: string[] = [];
  for (const part of s.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      throw new FrostError(`Refusing to restore "${entry}": path leaves the target (".." component)`);
    }
    out.push(part);
  }
  return out.join("/");
}

/** A stored time: whole seconds (may be negative) plus 0 ≤ nsec < 1e9. */
export interface FsTime {
  sec: number;
  nsec: number;
}

/**
 * The value to hand to node's utimes for a stored time (undefined: now). Node's API takes seconds as a
 * double, which cannot hold every nanosecond; the middle of the microsecond survives the runtimes'
 * conversions intact: Bun keeps whole microseconds, Deno's node:fs truncates to milliseconds (measured;
 * see tests/_tree.ts). Negative times go as a Date, because node replaces negative numbers by the
 * current time.
 */
export function fsTime(t: FsTime | undefined): number | Date {
  if (!t) return Date.now() / 1000;
  if (t.sec < 0) return new Date(t.sec * 1000 + Math.floor(t.nsec / 1e6));
  if (t.nsec === 0) return t.sec;
  return t.sec + (Math.floor(t.nsec / 1000) * 1000 + 500) / 1e9;
}

/** {@linkcode fsTime} for a time in nanoseconds since the epoch. */
export function fsTimeNs(ns: bigint | undefined): number | Date {
  if (ns === undefined) return fsTime(undefined);
  const sec = ns >= 0n ? ns / 1_000_000_000n : -((-ns + 999_999_999n) / 1_000_000_000n);
  return fsTime({ sec: Number(sec), nsec: Number(ns - sec * 1_000_000_000n) });
}
