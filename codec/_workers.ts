/**
 * Worker threads running an eval'd script that answers each message `{ id, … }` with one reply `{ id, … }`
 * (private to compression.ts and hashing.ts). Jobs go round robin; the threads do not keep the process alive.
 * @module
 */
import { Worker } from "node:worker_threads";

/** `size` worker threads running `source`; `run` posts a message and resolves with the worker's reply. */
export class EvalWorkers<Reply extends { id: number }> {
  readonly #workers: Worker[] = [];
  readonly #jobs = new Map<number, (reply: Reply) => void>();
  #next = 0;
  constructor(source: string, size: number) {
    for (let i = 0; i < size; i++) {
      const worker = new Worker(source, { eval: true });
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
   * caller must own them (no other views). Resolves with the reply that carries the same id.
   */
  run(message: Record<string, unknown>, transfer: ArrayBuffer[]): Promise<Reply> {
    const id = this.#next++;
    return new Promise((resolve) => {
      this.#jobs.set(id, resolve);
      this.#workers[id % this.#workers.length]!.postMessage({ ...message, id }, transfer);
    });
  }
}
