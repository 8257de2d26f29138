/**
 * The one runtime adapter of frost: libc's `lseek(2)` through the runtime's foreign function interface,
 * for `SEEK_DATA`/`SEEK_HOLE` (finding the holes of sparse files), which `node:fs` lacks. It is the only
 * module that touches a runtime global (`Deno.dlopen` under Deno, `bun:ffi` under Bun, also inside the
 * `bun build --compile` binary). Where neither is there, or the library cannot be opened (Deno without
 * `--allow-ffi`, a libc of another name), `lseekFunction()` returns undefined and callers fall back to
 * reading the file.
 * @module
 */
import { createRequire } from "node:module";

/** `lseek(fd, offset, whence)`: the resulting offset, or -1 on error (errno is not available). */
export type Lseek = (fd: number, offset: number, whence: number) => number;

/** Linux `whence` values. */
export const SEEK_DATA = 3;
export const SEEK_HOLE = 4;

const LIBC_NAMES = ["libc.so.6", "libc.so"];

let cached: Lseek | null | undefined;

/** The first of `LIBC_NAMES` that `open` opens; undefined when none does. */
function first<T>(open: (name: string) => T): T | undefined {
  for (const name of LIBC_NAMES) {
    try {
      return open(name);
    } catch {
      // Try the next name.
    }
  }
  return undefined;
}

/** The shape of the part of `Deno.dlopen` used here. */
type DenoDlopen = (
  name: string,
  symbols: { lseek: { parameters: string[]; result: string } },
) => { symbols: { lseek: (fd: number, offset: bigint, whence: number) => number | bigint } };

/** The shape of the part of `bun:ffi` used here. */
interface BunFfi {
  dlopen(
    name: string,
    symbols: { lseek: { args: number[]; returns: number } },
  ): { symbols: { lseek: (fd: number, offset: bigint, whence: number) => number | bigint } };
  FFIType: { i32: number; i64: number };
}

function load(): Lseek | undefined {
  const g = globalThis as unknown as { Deno?: { dlopen?: DenoDlopen }; Bun?: unknown };
  let call: ((fd: number, offset: bigint, whence: number) => number | bigint) | undefined;
  if (typeof g.Deno?.dlopen === "function") {
    const dlopen = g.Deno.dlopen;
    call = first((name) => dlopen(name, { lseek: { parameters: ["i32", "i64", "i32"], result: "i64" } }))
      ?.symbols.lseek;
  } else if (g.Bun !== undefined) {
    let ffi: BunFfi | undefined;
    try {
      ffi = createRequire(import.meta.url)("bun:ffi") as BunFfi;
    } catch {
      return undefined;
    }
    const { i32, i64 } = ffi.FFIType;
    call = first((name) => ffi.dlopen(name, { lseek: { args: [i32, i64, i32], returns: i64 } }))
      ?.symbols.lseek;
  }
  if (!call) return undefined;
  const lseek = call;
  return (fd, offset, whence) => Number(lseek(fd, BigInt(offset), whence));
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
