/**
 * Where a local storage folder lies relative to a backup's source or a restore's target: a backup leaves
 * its own storage out, a restore never writes into it nor removes it.
 * @module
 */
import fs from "node:fs";
import path from "node:path";
import { storageSpecs } from "./cli.ts";
import { localStoragePath } from "../storage/registry.ts";

/** The real paths of the local storage folders among `--storage` values (or the default storage). */
export function localStoragePaths(values: string[] | undefined): string[] {
  return storageSpecs(values).map(localStoragePath).filter((p) => p !== undefined).map(realPath);
}

/**
 * The real path of `p` (symlinks resolved) even when it does not exist yet: its nearest existing
 * ancestor resolved, the rest appended.
 */
export function realPath(p: string): string {
  const abs = path.resolve(p);
  const rest: string[] = [];
  let at = abs;
  for (;;) {
    try {
      return path.join(fs.realpathSync(at), ...rest.reverse());
    } catch {
      const up = path.dirname(at);
      if (up === at) return abs;
      rest.push(path.basename(at));
      at = up;
    }
  }
}

/** `inner` relative to `outer` when it is `outer` itself ("") or lies below it; else undefined. */
export function inside(inner: string, outer: string): string | undefined {
  if (inner === outer) return "";
  const prefix = outer.endsWith("/") ? outer : outer + "/";
  return inner.startsWith(prefix) ? inner.slice(prefix.length) : undefined;
}
