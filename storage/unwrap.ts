/**
 * Seeing through the decorators, after restic's `backend.AsBackend`: a decorator that wraps one storage
 * (retry, limit) has `unwrap()`, and `asStorage` walks those down to the storage of the type asked for.
 * Callers ask "is there a MultiStorage behind this?" instead of testing the outermost object.
 * @module
 */
import type { Storage } from "./storage.ts";

/** A decorator over one storage: `unwrap()` gives the storage it wraps. */
export interface StorageWrapper extends Storage {
  unwrap(): Storage;
}

/**
 * `storage`, or the first storage of type `kind` found by unwrapping its decorators; undefined when none is
 * one.
 */
export function asStorage<T extends Storage>(
  storage: Storage,
  kind: abstract new (...args: never[]) => T,
): T | undefined {
  for (let s: Storage | undefined = storage; s !== undefined; s = (s as Partial<StorageWrapper>).unwrap?.()) {
    if (s instanceof kind) return s;
  }
  return undefined;
}
