/**
 * The deletions a GNU dumpdir replays, found by walking two listings side by side as bytes: a restore level
 * of 100 000 names otherwise made an object per name (both listings' records, a Set, a Map, a directory
 * listing of the target), ~35 MiB more peak memory in a chain's second level.
 * @module
 */
import { decodeName } from "./_names.ts";
import { Dumpdir } from "./_tar_read.ts";

/**
 * What decides whether a child goes: `any` — it goes whatever it is; `notDir` — unless it is a directory
 * (the new listing names it `D`); `dir` — if it is a directory (named `Y`: dumped as a non-directory).
 */
export type DropTest = "any" | "notDir" | "dir";

/**
 * The children of a directory that a dumpdir replay may remove: each name that the previous level's listing
 * `before` holds (any record but R and T) and that `now` does not keep as it is on disk — `now` does not name
 * it (any record but R, T and X), or names it as the other kind (see `dumpdirDrops`). Each comes with the
 * test its entry on disk must pass. Names that cannot be a directory entry ("", ".", "..", or with a "/",
 * such as an X record's path) are passed over in both, as a directory listing never shows them. Undefined
 * when either listing's other names are not in strictly increasing byte order (as frost and GNU tar write
 * them): the caller then compares them as sets.
 */
export function droppedChildren(before: Uint8Array, now: Uint8Array): [string, DropTest][] | undefined {
  const kept = (code: number) => code !== Dumpdir.R && code !== Dumpdir.T && code !== Dumpdir.X;
  if (!increasing(now, kept)) return undefined;
  const out: [string, DropTest][] = [];
  let j = 0; // the next record of `now`
  let lastStart = -1;
  let lastEnd = -1;
  for (let i = 0; i < before.length && before[i] !== 0;) {
    const code = before[i]!;
    let end = before.indexOf(0, i);
    if (end < 0) end = before.length;
    const start = i + 1;
    i = end + 1;
    if (code === Dumpdir.R || code === Dumpdir.T || !entryName(before, start, end)) continue;
    if (lastStart >= 0 && compareBytes(before, lastStart, lastEnd, before, start, end) >= 0) return undefined;
    lastStart = start;
    lastEnd = end;
    // Move `now` up to the first kept name not below this one.
    let match = -1;
    while (j < now.length && now[j] !== 0) {
      let nEnd = now.indexOf(0, j);
      if (nEnd < 0) nEnd = now.length;
      if (kept(now[j]!) && entryName(now, j + 1, nEnd)) {
        const c = compareBytes(now, j + 1, nEnd, before, start, end);
        if (c === 0) match = now[j]!;
        if (c >= 0) break;
      }
      j = nEnd + 1;
    }
    const test: DropTest | undefined = match < 0
      ? "any"
      : match === Dumpdir.D
      ? "notDir"
      : match === Dumpdir.Y
      ? "dir"
      : undefined;
    if (test) out.push([decodeName(before.subarray(start, end)), test]);
  }
  return out;
}

/** Whether a dumpdir records renames (R/T pairs, X temporary directories), as `readDumpdir` tells. */
export function recordsRenames(data: Uint8Array): boolean {
  for (let i = 0; i < data.length && data[i] !== 0;) {
    if (data[i] === Dumpdir.R || data[i] === Dumpdir.X) return true;
    const end = data.indexOf(0, i);
    if (end < 0) break;
    i = end + 1;
  }
  return false;
}

/** Whether the entry names of the records of `data` that `use` takes are in strictly increasing byte order. */
function increasing(data: Uint8Array, use: (code: number) => boolean): boolean {
  let lastStart = -1;
  let lastEnd = -1;
  for (let i = 0; i < data.length && data[i] !== 0;) {
    let end = data.indexOf(0, i);
    if (end < 0) end = data.length;
    if (use(data[i]!) && entryName(data, i + 1, end)) {
      if (lastStart >= 0 && compareBytes(data, lastStart, lastEnd, data, i + 1, end) >= 0) return false;
      lastStart = i + 1;
      lastEnd = end;
    }
    i = end + 1;
  }
  return true;
}

/** Byte order of `a[aStart..aEnd)` and `b[bStart..bEnd)`. */
function compareBytes(
  a: Uint8Array,
  aStart: number,
  aEnd: number,
  b: Uint8Array,
  bStart: number,
  bEnd: number,
) {
  const n = Math.min(aEnd - aStart, bEnd - bStart);
  for (let k = 0; k < n; k++) {
    const d = a[aStart + k]! - b[bStart + k]!;
    if (d !== 0) return d;
  }
  return (aEnd - aStart) - (bEnd - bStart);
}

/** Whether `data[start..end)` can be a directory entry's name: not "", ".", "..", no "/". */
function entryName(data: Uint8Array, start: number, end: number): boolean {
  const n = end - start;
  if (
    n === 0 || (n === 1 && data[start] === 0x2e) ||
    (n === 2 && data[start] === 0x2e && data[start + 1] === 0x2e)
  ) {
    return false;
  }
  return data.subarray(start, end).indexOf(0x2f) < 0;
}
