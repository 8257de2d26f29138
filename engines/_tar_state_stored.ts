/**
 * Reading what a tar state's trailer lists (`Engine.storedWhole` of the tar engine): the files a level's
 * archive stores whole, which a restore of the chain need not write from the levels before it.
 * @module
 */
import { FrostError } from "../base/errors.ts";
import type { StoredWholeReader } from "./engine.ts";
import { concatBytes } from "../base/bytes.ts";
import { OWN_STATE, parseStateTrailer, StateHeaderGatherer } from "./_tar_state.ts";

const NL = 0x0a;
const BRACE = 0x7b;

/**
 * Finds a tar state's trailer (its last line, when that starts with `{`) from its bytes in chunks of any
 * size: each chunk is searched from its end for its last line breaks (no look at the records); keeps only
 * the header's bytes, the last complete line when it may be the trailer, and the unfinished line.
 */
export class TarStoredReader implements StoredWholeReader {
  #header = new StateHeaderGatherer(OWN_STATE);
  /** The last complete line, when it starts with `{`. */
  #last: Uint8Array | undefined;
  /** The bytes of the line not yet ended. */
  #open: Uint8Array[] = [];

  push(chunk: Uint8Array): void {
    let i = 0;
    if (!this.#header.done && (i = this.#header.take(chunk)) < 0) return;
    const rest = chunk.subarray(i);
    const last = rest.lastIndexOf(NL);
    if (last < 0) {
      if (rest.length > 0) this.#open.push(rest.slice());
      return;
    }
    const prev = last === 0 ? -1 : rest.lastIndexOf(NL, last - 1);
    const line = prev < 0
      ? concatBytes([...this.#open, rest.subarray(0, last)])
      : rest.subarray(prev + 1, last);
    this.#last = line[0] === BRACE ? line.slice() : undefined;
    this.#open = last + 1 < rest.length ? [rest.slice(last + 1)] : [];
  }

  end(): ReadonlySet<string> | undefined {
    this.#header.end();
    if (this.#open.length > 0) {
      const line = concatBytes(this.#open);
      this.#last = line[0] === BRACE ? line : undefined;
    }
    if (this.#header.version < 2 || !this.#last) return undefined;
    let text: string;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(this.#last);
    } catch {
      throw new FrostError(`Cannot read ${OWN_STATE}: it is not valid UTF-8`);
    }
    return new Set(parseStateTrailer(text, OWN_STATE));
  }
}
