/**
 * libc's `lseek(2)` for `SEEK_DATA`/`SEEK_HOLE` (finding the holes of sparse files), which `node:fs` lacks,
 * called through the runtime adapter (base/runtime.ts). Where the runtime has no FFI, or the library cannot
 * be opened (Deno without `--allow-ffi`, a libc of another name), `lseekFunction()` returns undefined and
 * callers fall back to reading the file.
 * @module
 */
import { openNativeLibrary } from "../base/runtime.ts";

/** `lseek(fd, offset, whence)`: the resulting offset, or -1 on error (errno is not available). */
export type Lseek = (fd: number, offset: number, whence: number) => number;

/** Linux `whence` values. */
export const SEEK_DATA = 3;
export const SEEK_HOLE = 4;

const LIBC_NAMES = ["libc.so.6", "libc.so"];

let cached: Lseek | null | undefined;

function load(): Lseek | undefined {
  const libc = openNativeLibrary(LIBC_NAMES, { lseek: { args: ["i32", "i64", "i32"], returns: "i64" } });
  if (!libc) return undefined;
  const lseek = libc.lseek;
  return (fd, offset, whence) => lseek(fd, BigInt(offset), whence);
}

/** libc's lseek, loaded on first use; undefined where this runtime offers no way to call it. */
export function lseekFunction(): Lseek | undefined {
  if (cached === undefined) {
    try {
      cached = load() ?? null;
    } catch {
      cached = null;
    }
  }
  return cached ?? undefined;
}
