/**
 * File-system helpers of the rsync engine that behave exactly like the tar engine's (exclude patterns,
 * error texts, owner names, safe restore paths, times). The tar engine keeps its copies private to
 * tar_backup.ts and tar_restore.ts; these mirror them so that both engines treat a tree the same way.
 * @module
 */
import fs from "node:fs";
import picomatch from "picomatch";
import { FrostError, messageOf } from "../errors.ts";

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

/** The `code` of a system error. */
export function code(err: unknown): string | undefined {
  return (err as { code?: string } | null)?.code;
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

/**
 * Builds the exclude test, as the tar engine does: picomatch globs with `dot: true`; a pattern without
 * `/` matches any entry's name, one with `/` the path below the source (a leading `./` or `/` is
 * ignored); a trailing `/` limits a pattern to directories.
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
    while (p.startsWith("./")) p = p.slice(2);
    while (p.startsWith("/")) p = p.slice(1);
    const dirOnly = p.length > 1 && p.endsWith("/");
    if (dirOnly) p = p.replace(/\/+$/, "");
    if (p === "") continue;
    (p.includes("/") ? (dirOnly ? dirFull : full) : (dirOnly ? dirBase : base)).push(p);
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

/**
 * Normalises a stored path to one relative to the target ("" is the target itself): drops "." and
 * empty components, refuses absolute names, ".." and NUL bytes.
 */
export function safeRel(name: string, entry: string): string {
  if (name.startsWith("/")) {
    throw new FrostError(`Refusing to restore "${entry}": path leaves the target (absolute name)`);
  }
  if (name.includes("\0")) throw new FrostError(`Refusing to restore "${entry}": name contains a NUL byte`);
  if (name === ".") return "";
  if (!name.includes("//") && !/(^|\/)\.\.?(\/|$)/.test(name) && !name.endsWith("/")) return name;
  const out: string[] = [];
  for (const part of name.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      throw new FrostError(`Refusing to restore "${entry}": path leaves the target (".." component)`);
    }
    out.push(part);
  }
  return out.join("/");
}

/**
 * The value to hand to node's utimes for a time in nanoseconds (see the tar engine's `fsTime`): the
 * middle of the microsecond survives the runtimes' conversions (Bun keeps microseconds, Deno's node:fs
 * milliseconds); negative times go as a Date, because node replaces negative numbers by the current time.
 */
export function fsTime(ns: bigint | undefined): number | Date {
  if (ns === undefined) return Date.now() / 1000;
  const sec = ns >= 0n ? ns / 1_000_000_000n : -((-ns + 999_999_999n) / 1_000_000_000n);
  const nsec = Number(ns - sec * 1_000_000_000n);
  const s = Number(sec);
  if (s < 0) return new Date(s * 1000 + Math.floor(nsec / 1e6));
  if (nsec === 0) return s;
  return s + (Math.floor(nsec / 1000) * 1000 + 500) / 1e9;
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
