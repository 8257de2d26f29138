/**
 * Worker threads running an eval'd script that answers each message `{ id, … }` with one reply `{ id, … }`
 * (private to compression.ts and hashing.ts). Jobs go round robin; the threads do not keep the process alive.
 *
 * Shared buffers go to each worker once: a view on one (a field of the message, or an element of an array
 * field) is posted as `{ $shared: id, offset, length }`, with the buffer itself the first time that worker
 * gets it, and the worker makes the view again from the buffer it kept (`WORKER_SHARED_SOURCE`). Each
 * shared buffer posted makes a new object on the other side that counts its whole size as memory: posted
 * with every frame, they set off a full collection every few frames. Once the buffer is collected here,
 * the workers are told to forget it.
 * @module
 */
import { Worker } from "node:worker_threads";

/** A view on a shared buffer as posted: the buffer's id, and the buffer when the worker does not have it. */
interface SharedView {
  $shared: number;
  sab?: SharedArrayBuffer;
  offset: number;
  length: number;
}

/**
 * Source text for a worker of `EvalWorkers`: defines `received(message)`, which gives the message with its
 * shared views made again, or null for a message that was only for it (forget a buffer). Every worker
 * source starts with it and passes each message through it.
 */
export const WORKER_SHARED_SOURCE = `
const sharedBuffers = new Map();
const unshare = (v) => {
  if (v === null || typeof v !== "object") return v;
  if (Array.isArray(v)) return v.map(unshare);
  if (v.$shared === undefined) return v;
  let sab = v.sab;
  if (sab) sharedBuffers.set(v.$shared, sab);
  else sab = sharedBuffers.get(v.$shared);
  return new Uint8Array(sab, v.offset, v.length);
};
function received(message) {
  if (message.$forget !== undefined) {
    sharedBuffers.delete(message.$forget);
    return null;
  }
  for (const key of Object.keys(message)) message[key] = unshare(message[key]);
  return message;
}
`;

/** `size` worker threads running `source`; `run` posts a message and resolves with the worker's reply. */
export class EvalWorkers<Reply extends { id: number }> {
  readonly #workers: Worker[] = [];
  readonly #jobs = new Map<number, (reply: Reply) => void>();
  /** Shared buffers posted: their id and which workers have them (a bit each). */
  readonly #shared = new WeakMap<SharedArrayBuffer, { id: number; posted: number }>();
  readonly #forget = new FinalizationRegistry<number>((id) => {
    for (const worker of this.#workers) worker.postMessage({ $forget: id });
  });
  #nextShared = 0;
  #next = 0;
  constructor(source: string, size: number) {
    for (let i = 0; i < size; i++) {
      const worker = new Worker(WORKER_SHARED_SOURCE + source, { eval: true });
      worker.unref();
      worker.on("message", (reply: Reply) => {
        const resolve = this.#jobs.get(reply.id)!;
        this.#jobs.delete(reply.id);
        resolve(reply);
      });
      this.#workers.push(worker);
    }
  }
  /**
   * Posts `message` (with an `id` added) to the next worker, moving the buffers in `transfer` there: the
   * caller must own them (no other views). Views on shared buffers, as fields of `message` or in an array
   * field, arrive as views on the same memory. Resolves with the reply that carries the same id.
   */
  run(message: Record<string, unknown>, transfer: ArrayBuffer[]): Promise<Reply> {
    const id = this.#next++;
    const index = id % this.#workers.length;
    const posted: Record<string, unknown> = { id };
    for (const [key, value] of Object.entries(message)) {
      posted[key] = Array.isArray(value)
        ? value.map((v) => this.#share(v, index))
        : this.#share(value, index);
    }
    return new Promise((resolve) => {
      this.#jobs.set(id, resolve);
      this.#workers[index]!.postMessage(posted, transfer);
    });
  }

  /** `value` as posted to worker `index`: a `SharedView` for a view on a shared buffer. */
  #share(value: unknown, index: number): unknown {
    if (!(value instanceof Uint8Array) || !(value.buffer instanceof SharedArrayBuffer)) return value;
    const sab = value.buffer;
    let known = this.#shared.get(sab);
    if (!known) {
      known = { id: this.#nextShared++, posted: 0 };
      this.#shared.set(sab, known);
      this.#forget.register(sab, known.id);
    }
    const view: SharedView = { $shared: known.id, offset: value.byteOffset, length: value.byteLength };
    if ((known.posted & (1 << index)) === 0) {
      known.posted |= 1 << index;
      view.sab = sab;
    }
    return view;
  }
}
