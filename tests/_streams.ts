/**
 * Small helpers the tests share: byte arrays and streams of them, and the keys a storage lists.
 * @module
 */
import { concatBytes, type Storage } from "../storage/storage.ts";

/** The bytes of `parts` one after another, in a new array. */
export const concat: (parts: readonly Uint8Array[]) => Uint8Array = concatBytes;

/** A stream of `chunks`, one per pull (the array is left as it is). */
export function streamOf(chunks: readonly Uint8Array[]): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream({
    pull(controller) {
      if (i < chunks.length) controller.enqueue(chunks[i++]!);
      else controller.close();
    },
  });
}

/** Everything `stream` gives, as one array; each chunk is copied as it comes (its buffer may be reused). */
export async function collect(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const chunk of stream) parts.push(chunk.slice());
  return concat(parts);
}

/** The keys `storage.list(prefix)` yields, sorted. */
export async function listKeys(storage: Storage, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const info of storage.list(prefix)) out.push(info.key);
  return out.sort();
}
