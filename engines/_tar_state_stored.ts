/**
 * Reading what a tar state's trailer lists (`Engine.storedWhole` of the tar engine): the files a level's
 * archive stores whole, which a restore of the chain need not write from the levels before it.
 * @module
 */
import { FrostError } from "../base/errors.ts";
import type { StoredWholeReader } from "./engine.ts";
import { checkStateHeaderVersion, parseStateTrailer } from "./_tar_state.ts";

const NL = 0x0a;
const BRACE = 0x7b;
/** A header line longer than this is not a frost tar state's. */
const HEADER_MAX = 4096;
const WHOSE = "the backup's state";

/**
 * Finds a tar state's trailer (the first line after the header that starts with `{`) from its bytes in
 * chunks of any size; keeps only the header's and the trailer's bytes, never a record's.
 */
export class TarStoredReader implements StoredWholeReader {
  #header: number[] | undefined = [];
  #version = 0;
  /** The trailer's bytes so far, once its line began; undefined while in records. */
  #trailer: Uint8Array[] | undefined;
  #trailerDone = false;
  /** At the start of a line (after the header). */
  #lineStart = false;

  push(chunk: Uint8Array): void {
    let i = 0;
    while (i < chunk.length && !this.#trailerDone) {
      const nl = chunk.indexOf(NL, i);
      const end = nl < 0 ? chunk.length : nl;
      if (this.#header) {
        if (this.#header.length + end - i > HEADER_MAX) throw notAState();
        for (let j = i; j < end; j++) this.#header.push(chunk[j]!);
        if (nl >= 0) this.#checkHeader();
      } else {
        if (this.#lineStart && end > i && chunk[i] === BRACE && this.#version >= 2) this.#trailer = [];
        this.#lineStart = nl >= 0;
        if (this.#trailer) {
          this.#trailer.push(chunk.slice(i, end));
          if (nl >= 0) this.#trailerDone = true;
        }
      }
      if (nl < 0) break;
      i = nl + 1;
    }
  }

  end(): ReadonlySet<string> | undefined {
    if (this.#header) this.#checkHeader();
    if (!this.#trailer) return undefined;
    let text: string;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(concat(this.#trailer));
    } catch {
      throw new FrostError(`Cannot read ${WHOSE}: it is not valid UTF-8`);
    }
    return new Set(parseStateTrailer(text, WHOSE));
  }

  #checkHeader(): void {
    let line: string;
    try {
      line = new TextDecoder("utf-8", { fatal: true }).decode(new Uint8Array(this.#header!));
    } catch {
      throw notAState();
    }
    this.#header = undefined;
    this.#version = checkStateHeaderVersion(line, WHOSE).version;
    this.#lineStart = true;
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function notAState(): FrostError {
  return new FrostError(`Cannot read ${WHOSE}: it is not a frost tar state`);
}
