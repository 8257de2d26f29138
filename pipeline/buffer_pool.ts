/**
 * Reusable segment buffers (`BufferPool`), shared by the segment writers and the segment reader.
 * @module
 */
import { hashableBuffer, type MovedHash, sha256Moving } from "../codec/hashing.ts";

/**
 * Reusable segment buffers: a stored segment's buffer goes back to the pool and is filled again, so a backup
 * of any size allocates only a few segments' worth of memory (instead of leaving the garbage collector one
 * dead 32 MiB buffer per segment).
 */
export class BufferPool {
  readonly #free: Uint8Array[] = [];
  readonly #mine = new WeakSet<ArrayBufferLike>();
  readonly #waiting: ((buffer: Uint8Array) => void)[] = [];
  /** Buffers handed out in several pieces (`split`): pieces not given back yet. */
  readonly #pieces = new WeakMap<ArrayBufferLike, number>();
  #made = 0;
  /** `hashable`: buffers come from `hashableBuffer` (segments to be hashed while they are stored). */
  constructor(readonly size: number, readonly keep = 4, readonly hashable = false) {}
  /** A buffer of `size` bytes (contents undefined). */
  take(): Uint8Array {
    const free = this.#free.pop();
    if (free) return free;
    const buffer = this.hashable ? hashableBuffer(this.size) : new Uint8Array(this.size);
    this.#mine.add(buffer.buffer);
    this.#made++;
    return buffer;
  }
  /**
   * A buffer, waiting for one to be given back once `keep` exist: memory stays at `keep` buffers. Only for
   * readers that give every buffer back (or stop).
   */
  acquire(): Promise<Uint8Array> {
    if (this.#free.length > 0 || this.#made < this.keep) return Promise.resolve(this.take());
    return new Promise((resolve) => this.#waiting.push(resolve));
  }
  /**
   * Returns a buffer (or a view from its start) once nothing refers to it any more; buffers that `take()`
   * did not make are ignored, and extra ones are left to the garbage collector.
   */
  give(buffer: Uint8Array): void {
    if (!this.#mine.has(buffer.buffer)) return;
    const pieces = this.#pieces.get(buffer.buffer);
    if (pieces !== undefined) {
      if (pieces > 1) return void this.#pieces.set(buffer.buffer, pieces - 1);
      this.#pieces.delete(buffer.buffer);
    } else if (buffer.byteOffset !== 0) return;
    const whole = new Uint8Array(buffer.buffer, 0, this.size);
    const waiter = this.#waiting.shift();
    if (waiter) waiter(whole);
    else if (this.#free.length < this.keep) this.#free.push(whole);
  }
  /**
   * `sha256Moving(bytes)` for a view of one of this pool's buffers: the buffer that comes back (a new
   * object under Bun) stays the pool's.
   */
  async moving(bytes: Uint8Array): Promise<MovedHash> {
    const mine = this.#mine.has(bytes.buffer);
    const moved = await sha256Moving(bytes);
    if (mine) this.#mine.add(moved.bytes.buffer);
    return moved;
  }
  /**
   * Cuts `bytes` (a view of one of this pool's buffers) into views of at most `size` bytes; the buffer
   * returns to the pool once every piece has been given back.
   */
  split(bytes: Uint8Array, size: number): Uint8Array[] {
    const pieces: Uint8Array[] = [];
    for (let o = 0; o < bytes.byteLength; o += size) pieces.push(bytes.subarray(o, o + size));
    if (pieces.length > 1) this.#pieces.set(bytes.buffer, pieces.length);
    return pieces;
  }
}
