/**
 * Keeps the resident memory of a run near a ceiling under Bun (the `bun build --compile` binary), whose
 * garbage collector otherwise lets a run's short-lived garbage (tar headers, decoded chunks, stat results)
 * pile up: a restore or `ls` of 100 000 files grew to 170–230 MiB with under 20 MiB alive. A timer (and hot
 * loops, through `relieveMemory`) looks at the collector's heap and buffers a few times a second and asks
 * for a full collection when they passed a ceiling, or when the resident size grew by `RSS_MARGIN` since the
 * last one; the ceiling then becomes twice what stayed alive, so that a large live set is not collected in
 * a loop. Under Deno (V8 collects young garbage promptly) and where `bun:jsc` is missing it does nothing.
 *
 * The collector hooks come from the runtime adapter, base/runtime.ts.
 * @module
 */
import process from "node:process";
import { bunCollector, WORKER_COLLECTOR_SOURCE } from "./runtime.ts";

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
  const jsc = bunCollector();
  if (!jsc) return;
  collect = jsc.fullGC;
  heapSize = jsc.heapSize;
  collectEden = jsc.edenGC;
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

/**
 * Collects the young generation now (Bun; elsewhere a no-op): for loops that make many short-lived
 * objects per entry (a walk's lstat results and path strings). Cheap, unlike a full collection: called every
 * few thousand entries it keeps a walk of 200 000 files ~15 MiB smaller at no measurable cost (measured:
 * the strings' memory, outside the heap size that `relieveMemory` watches, is freed too).
 */
export function collectYoung(): void {
  collectEden?.();
}

/**
 * Asks for a full collection now (Bun; elsewhere a no-op): between the phases of a run (a chain's levels
 * replayed, then the tree listed), so that the next phase reuses what the last one left instead of growing
 * the resident size until the watcher's next look.
 */
export function collectNow(): void {
  if (collect) collected();
}

let started = false;
let collect: (() => void) | undefined;
let collectEden: (() => void) | undefined;
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
  collected(rss);
}

/** A full collection, and the next ceilings from what stayed alive. */
function collected(rss = process.memoryUsage.rss()): void {
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
${WORKER_COLLECTOR_SOURCE}let relieveGarbage = 0;
const relieveCollect = runtimeFullGC;
function relieveMemory(bytes) {
  if (!relieveCollect) return;
  relieveGarbage += bytes;
  if (relieveGarbage < ${8 * 1024 * 1024}) return;
  relieveGarbage = 0;
  relieveCollect();
}
`;
