/**
 * Stream bytes a reader does not need: the reader of a decoded stream says which ranges of it it will only
 * read past (`SkipPlan.add`), and the decoder may then hand it, in place of a run of those bytes, one
 * marker chunk that only says how many bytes it stands for (`skippedChunk`, read back by `skippedBytes`).
 * The zstd decompressor (codec/) leaves such frames undecompressed; the tar restore (engines/) says what
 * it skips; the restore pipeline joins them.
 * @module
 */

/** Marker chunks and the bytes each stands for. */
const markers = new WeakMap<Uint8Array, number>();

/** A marker chunk (empty) that stands for the next `n` bytes of the stream, which were not produced. */
export function skippedChunk(n: number): Uint8Array {
  const chunk = new Uint8Array(0);
  markers.set(chunk, n);
  return chunk;
}

/** The bytes `chunk` stands for when it is a marker (`skippedChunk`), else 0. */
export function skippedBytes(chunk: Uint8Array): number {
  return chunk.byteLength === 0 ? markers.get(chunk) ?? 0 : 0;
}

/**
 * Ranges shorter than this are not kept: the decoder skips only whole frames (of up to 1 MiB), which a
 * shorter range rarely holds.
 */
const MIN_RANGE = 256 << 10;

/**
 * The ranges of a stream (as offsets from its start) its reader will read past without using them, told
 * in stream order as the reader meets them (`add`), asked by the decoder for each piece it is about to
 * produce (`covers`), in stream order too.
 */
export class SkipPlan {
  /** Ranges not passed yet: start, end and number of each (ascending, disjoint). */
  #ranges: number[] = [];
  #head = 0;
  /** Ranges told so far (the index of the next one). */
  #told = 0;

  /** The reader will not use the stream's bytes `[offset, offset + length)`. Ranges come in stream order. */
  add(offset: number, length: number): void {
    const id = this.#told++;
    if (length < MIN_RANGE) return;
    const last = this.#ranges.length;
    if (last > this.#head && offset < this.#ranges[last - 2]!) {
      throw new RangeError(`SkipPlan.add(${offset}, ${length}): ranges must come in stream order`);
    }
    if (this.#head > 64 && this.#head * 2 > last) {
      this.#ranges.splice(0, this.#head);
      this.#head = 0;
    }
    this.#ranges.push(offset, offset + length, id);
  }

  /**
   * Which range holds the whole of `[start, end)` (its number: pieces in the same range get the same), or
   * -1 when none does. Asked in stream order: ranges that end before `start` are forgotten.
   */
  covers(start: number, end: number): number {
    const r = this.#ranges;
    while (this.#head < r.length && r[this.#head + 1]! <= start) this.#head += 3;
    if (this.#head >= r.length) return -1;
    return r[this.#head]! <= start && end <= r[this.#head + 1]! ? r[this.#head + 2]! : -1;
  }
}
