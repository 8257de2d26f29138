/**
 * Helpers shared by the storages (private to `storage/`): checks of keys, list prefixes and ranges, and
 * the mapping of a read stream's errors.
 * @module
 */
import type { Range } from "./storage.ts";

/** Throws a `TypeError` unless `key` is a valid storage key (see the rules in `storage.ts`). */
export function checkKey(key: string): void {
  if (typeof key !== "string" || key === "") {
    throw new TypeError(`Cannot use key ${JSON.stringify(key)}: it is empty`);
  }
  checkPath(key, "key");
}

/** Throws a `TypeError` unless `prefix` is `""` or a valid key path ending with `/`. */
export function checkPrefix(prefix: string): void {
  if (typeof prefix !== "string") {
    throw new TypeError(`Cannot list prefix ${String(prefix)}: it is not a string`);
  }
  if (prefix === "") return;
  if (!prefix.endsWith("/")) {
    throw new TypeError(`Cannot list prefix ${JSON.stringify(prefix)}: it must be "" or end with "/"`);
  }
  checkPath(prefix.slice(0, -1), "prefix");
}

/** Throws a `RangeError` unless `range` has a whole, non-negative offset and length. */
export function checkRange(key: string, range: Range | undefined): void {
  if (range === undefined) return;
  const { offset, length } = range;
  if (!Number.isSafeInteger(offset) || offset < 0) {
    throw new RangeError(`Cannot read "${key}": range offset ${offset} is not a whole number >= 0`);
  }
  if (length !== undefined && (!Number.isSafeInteger(length) || length < 0)) {
    throw new RangeError(`Cannot read "${key}": range length ${length} is not a whole number >= 0`);
  }
}

function checkPath(value: string, what: "key" | "prefix"): void {
  const shown = JSON.stringify(value);
  if (value.startsWith("/")) throw new TypeError(`Cannot use ${what} ${shown}: it starts with "/"`);
  if (value.includes("\0")) throw new TypeError(`Cannot use ${what} ${shown}: it contains a NUL character`);
  if (!value.isWellFormed()) {
    throw new TypeError(`Cannot use ${what} ${shown}: it is not well-formed Unicode`);
  }
  for (const part of value.split("/")) {
    if (part === "" || part === "." || part === "..") {
      throw new TypeError(`Cannot use ${what} ${shown}: it has an empty, "." or ".." component`);
    }
  }
}

/** Passes `source` through, turning its errors with `map`. */
export function mapStreamErrors(
  source: ReadableStream<Uint8Array>,
  map: (err: unknown) => unknown,
): ReadableStream<Uint8Array> {
  const reader = source.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { done, value } = await reader.read();
        if (done) controller.close();
        else controller.enqueue(value);
      } catch (err) {
        controller.error(map(err));
      }
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}
