/**
 * Counting a tar state's entries without reading them (`Engine.countEntries` of the tar engine): a restore
 * into a new or empty target needs only how many entries it makes, and parsing 200 000 records into objects
 * to count them cost ~40 MiB of garbage.
 * @module
 */
import type { EntryCounter } from "./engine.ts";
import { OWN_STATE, StateHeaderGatherer } from "./_tar_state.ts";

const NL = 0x0a;
/** `[".",`: how the root's record (path ".") starts; no other path is written as `"."`. */
const ROOT = [0x5b, 0x22, 0x2e, 0x22, 0x2c];

/**
 * Counts the records of a tar state (one per non-empty line after the header line but a version 2 state's
 * trailer, as `tarStateEntries` lists them) and the root's, from its bytes in chunks of any size; keeps no
 * chunk.
 */
export class TarStateCounter implements EntryCounter {
  #header = new StateHeaderGatherer(OWN_STATE);
  #count = 0;
  #root = 0;
  /** Bytes of the current line so far, and its first bytes. */
  #lineLength = 0;
  #lineStart: number[] = [];

  push(chunk: Uint8Array): void {
    let i = 0;
    if (!this.#header.done && (i = this.#header.take(chunk)) < 0) return;
    while (i < chunk.length) {
      const nl = chunk.indexOf(NL, i);
      const end = nl < 0 ? chunk.length : nl;
      for (let j = i; j < end && this.#lineStart.length < ROOT.length; j++) this.#lineStart.push(chunk[j]!);
      this.#lineLength += end - i;
      if (nl < 0) break;
      this.#endLine();
      i = nl + 1;
    }
  }

  end(): { count: number; nonRoot: number } {
    this.#header.end();
    this.#endLine();
    return { count: this.#count, nonRoot: this.#count - this.#root };
  }

  #endLine(): void {
    // Records start with "["; a version 2 state's trailer with "{" (see `stateTrailer`).
    if (this.#lineLength > 0 && this.#lineStart[0] !== 0x7b) {
      this.#count++;
      if (this.#lineStart.length === ROOT.length && this.#lineStart.every((b, i) => b === ROOT[i])) {
        this.#root++;
      }
    }
    this.#lineLength = 0;
    this.#lineStart.length = 0;
  }
}
