/**
 * Keeps the resident memory of a run near a ceiling under Bun (the `bun build --compile` binary), whose
 * garbage collector otherwise lets a run's short-lived garbage (tar headers, decoded chunks, stat results)
 * pile up: a restore or `ls` of 100 000 files grew to 170–230 MiB with under 20 MiB alive. A timer (and hot
 * loops, through `relieveMemory`) looks at the collector's heap and buffers a few times a second and asks
 * for a full collection when they passed a ceiling, or when the resident size grew by `RSS_MARGIN` since the
 * last one; the ceiling then becomes twice what stayed alive, so that a large live set is not collected in
 * a loop. Under Deno (V8 collects young garbage promptly) and where `bun:jsc` is missing it does nothing.
 *
 * Like `engines/_ffi_lseek.ts`, this module touches a runtime module (`bun:jsc`), and nothing else does.
 * @module
 */
import { createRequire } from "node:module";
import process from "node:process";

/** Heap plus buffer bytes above which a collection is asked for. */
const CEILING = 40 * 1024 * 1024;
/** Growth of the resident size since the last collection above which a collection is asked for. */
const RSS_MARGIN = 16 * 1024 * 1024;
/** How often the resident size is looked at (ms). */
const PERIOD = 50;

/** Starts watching the resident size (once; the timer does not keep the process alive). */
export function watchMemory(): void {
  if (started) return;
  started = true;
  const g = globalThis as unknown as { Bun?: unknown };
  if (g.Bun === undefined) return;
  try {
    const jsc = createRequire(import.meta.url)("bun:jsc") as { fullGC?: () => void; heapSize?: () => number };
    if (typeof jsc.fullGC === "function" && typeof jsc.heapSize === "function") {
      collect = jsc.fullGC;
      heapSize = jsc.heapSize;
    }
  } catch {
    collect = undefined;
  }
  if (!collect) return;
  rssCeiling = process.memoryUsage.rss() + CEILING;
  setInterval(check, PERIOD).unref();
}

/**
 * Looks at the resident size now if the last look is `PERIOD` ago: for loops that run long without giving
 * the timer a turn (a tar stream parsed from chunks that are already there). Cheap when called per chunk.
 */
export function relieveMemory(): void {
  if (collect && performance.now() - lastCheck >= PERIOD) check();
}

let started = false;
let collect: (() => void) | undefined;
let ceiling = CEILING;
let rssCeiling = 0;
let lastCheck = 0;
let heapSize: () => number = () => 0;

/** Bytes the collector holds: its heap (live objects and garbage alike) and array buffers. */
function held(): number {
  return heapSize() + process.memoryUsage().arrayBuffers;
}

function check(): void {
  lastCheck = performance.now();
  // The resident size counts too: the text of dead strings (names, printed lines) lies outside the
  // collector's heap, and it grew by 90 MiB while `ls` printed 200 000 lines with the heap flat.
  const rss = process.memoryUsage.rss();
  if (held() < ceiling && rss < rssCeiling) return;
  collect!();
  // What stays alive is not garbage: collect again only once as much again has piled up (live + 40 MiB
  // instead took 3x the collections, 2-4 s more CPU for a 1.4 GiB `verify --read-data`, for 10-20 MiB).
  // Freed pages stay mapped and are reused after a collection: the resident size grows again only once
  // more than was freed has piled up.
  ceiling = Math.max(CEILING, held() * 2);
  rssCeiling = Math.max(rss, process.memoryUsage.rss()) + RSS_MARGIN;
}

/**
 * Source text for a worker thread (see codec/compression.ts): defines `relieveMemory(bytes)`, to be called with
 * the bytes each job allocated; after every `WORKER_GARBAGE` bytes it asks `bun:jsc` for a collection (a
 * worker has its own heap, whose 1 MiB results would otherwise pile up by the hundred). A no-op elsewhere.
 */
export const WORKER_MEMORY_SOURCE = `
let relieveGarbage = 0;
let relieveCollect = null;
try { relieveCollect = require("bun:jsc").fullGC; } catch {}
function relieveMemory(bytes) {
  if (!relieveCollect) return;
  relieveGarbage += bytes;
  if (relieveGarbage < ${8 * 1024 * 1024}) return;
  relieveGarbage = 0;
  relieveCollect();
}
`;
