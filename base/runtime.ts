/**
 * The one runtime adapter of frost: the only module that touches runtime globals (`Deno.*`, `bun:ffi`,
 * `bun:jsc`). It offers what `node:` built-ins lack: calling a C library through the runtime's foreign
 * function interface (`Deno.dlopen` under Deno with `--allow-ffi`, `bun:ffi` under Bun and inside the
 * `bun build --compile` binary), and Bun's garbage collector hooks. Where the runtime offers none of it,
 * each function returns undefined and its caller falls back to plain JavaScript.
 * @module
 */
import { createRequire } from "node:module";

/**
 * An argument or result type of a native function: 32/64-bit integers, or a pointer passed as a
 * `Uint8Array` (its bytes are read and written in place). 64-bit arguments are given as `bigint`.
 */
export type NativeType = "i32" | "i64" | "pointer";

/** One native function: its argument types and its result type. */
export interface NativeSymbol {
  args: readonly NativeType[];
  returns: "i32" | "i64" | "void";
}

/** A native function as JavaScript calls it; integer results are numbers (0 for `void`). */
export type NativeFunction = (...args: (number | bigint | Uint8Array)[]) => number;

/** The parts of `Deno` used here. */
interface DenoFfi {
  dlopen?: (
    name: string,
    symbols: Record<string, { parameters: string[]; result: string }>,
  ) => { symbols: Record<string, (...args: unknown[]) => unknown> };
  UnsafePointer?: { of(buffer: Uint8Array): unknown; value(pointer: unknown): bigint | number };
  permissions?: { querySync?(descriptor: { name: string }): { state: string } };
}

/** The parts of `bun:ffi` used here. */
interface BunFfi {
  dlopen(
    name: string,
    symbols: Record<string, { args: number[]; returns: number }>,
  ): { symbols: Record<string, (...args: unknown[]) => unknown> };
  ptr(buffer: Uint8Array): number;
  FFIType: { i32: number; i64: number; ptr: number; void: number };
}

const runtime = globalThis as unknown as { Deno?: DenoFfi; Bun?: unknown };
let bunFfi: BunFfi | null | undefined;

/** `bun:ffi` when running under Bun, else undefined. */
function bun(): BunFfi | undefined {
  if (bunFfi === undefined) {
    bunFfi = null;
    if (runtime.Bun !== undefined) {
      try {
        bunFfi = createRequire(import.meta.url)("bun:ffi") as BunFfi;
      } catch {
        bunFfi = null;
      }
    }
  }
  return bunFfi ?? undefined;
}

/** Deno's FFI when it is there and allowed (asked without a prompt), else undefined. */
function deno(): DenoFfi | undefined {
  const d = runtime.Deno;
  if (typeof d?.dlopen !== "function") return undefined;
  try {
    if (d.permissions?.querySync && d.permissions.querySync({ name: "ffi" }).state !== "granted") {
      return undefined;
    }
  } catch {
    return undefined;
  }
  return d;
}

/**
 * Opens the first of `names` (e.g. `["libc.so.6", "libc.so"]`) that the dynamic loader finds and binds
 * `symbols` in it; undefined where the runtime has no FFI, it is not allowed, or no library opens.
 *
 * @example
 * ```ts
 * const libc = openNativeLibrary(["libc.so.6"], { getpid: { args: [], returns: "i32" } });
 * console.log(libc?.getpid());
 * ```
 */
export function openNativeLibrary<K extends string>(
  names: readonly string[],
  symbols: Record<K, NativeSymbol>,
): Record<K, NativeFunction> | undefined {
  let raw: Record<string, (...args: unknown[]) => unknown> | undefined;
  const d = deno();
  const b = d ? undefined : bun();
  for (const name of names) {
    try {
      if (d) {
        const spec: Record<string, { parameters: string[]; result: string }> = {};
        for (const [key, s] of Object.entries<NativeSymbol>(symbols)) {
          spec[key] = { parameters: s.args.map((t) => t === "pointer" ? "buffer" : t), result: s.returns };
        }
        raw = d.dlopen!(name, spec).symbols;
      } else if (b) {
        const t = b.FFIType;
        const type = { i32: t.i32, i64: t.i64, pointer: t.ptr, void: t.void };
        const spec: Record<string, { args: number[]; returns: number }> = {};
        for (const [key, s] of Object.entries<NativeSymbol>(symbols)) {
          spec[key] = { args: s.args.map((a) => type[a]), returns: type[s.returns] };
        }
        raw = b.dlopen(name, spec).symbols;
      } else {
        return undefined;
      }
      break;
    } catch {
      // Try the next name.
    }
  }
  if (!raw) return undefined;
  const out = {} as Record<K, NativeFunction>;
  for (const key of Object.keys(symbols) as K[]) {
    const fn = raw[key]!;
    // An i32 result is a number already in both runtimes: the function itself, no wrapper per call.
    out[key] = symbols[key].returns === "i32"
      ? fn as unknown as NativeFunction
      : (...args) => Number(fn(...args) ?? 0);
  }
  return out;
}

/**
 * The native address of `buffer`'s first byte, to store in a C struct; undefined without FFI. The buffer
 * must be a view of an `ArrayBuffer` made with `new ArrayBuffer(n)`, n ≥ 1 KiB (such memory never moves),
 * and be kept alive while C code may use the address.
 */
export function nativeAddress(buffer: Uint8Array): bigint | undefined {
  const d = deno();
  if (d?.UnsafePointer) return BigInt(d.UnsafePointer.value(d.UnsafePointer.of(buffer)));
  const b = bun();
  if (b) return BigInt(b.ptr(buffer));
  return undefined;
}

/**
 * Bun's collector hooks (`bun:jsc`): a full collection, the heap's size in bytes, and a collection of the
 * young generation (eden) where there is one. The full collection sweeps at once where `bun:jsc` can
 * (`gcAndSweep`): the blocks, strings and buffers of what died are freed before the next allocation, not by
 * the incremental sweeper over later turns of the event loop, which a hot loop does not give it (400 000
 * dead strings: `fullGC` alone left the heap 39 MiB of blocks, `gcAndSweep` under 1 MiB). Peak RSS of
 * `verify --read-data` of 200 000 files fell from 161-180 to 144-152 MiB, of /usr from 166-171 to 153-159
 * MiB, for the same CPU time.
 */
export interface Collector {
  fullGC(): void;
  heapSize(): number;
  edenGC?: () => void;
}

/** `bun:jsc`'s collector hooks under Bun; undefined elsewhere (V8 collects young garbage promptly). */
export function bunCollector(): Collector | undefined {
  if (runtime.Bun === undefined) return undefined;
  try {
    const jsc = createRequire(import.meta.url)("bun:jsc") as Partial<Collector> & { gcAndSweep?: unknown };
    if (typeof jsc.fullGC === "function" && typeof jsc.heapSize === "function") {
      const edenGC = typeof jsc.edenGC === "function" ? jsc.edenGC : undefined;
      const fullGC = typeof jsc.gcAndSweep === "function" ? jsc.gcAndSweep as () => void : jsc.fullGC;
      return { fullGC, heapSize: jsc.heapSize, edenGC };
    }
  } catch {
    // No bun:jsc.
  }
  return undefined;
}

/**
 * Source text for a worker thread: defines `runtimeFullGC`, Bun's full collection (`bun:jsc`), or null
 * where there is none.
 */
export const WORKER_COLLECTOR_SOURCE =
  `let runtimeFullGC = null;\ntry { runtimeFullGC = require("bun:jsc").fullGC; } catch {}\n`;

/**
 * Source text for a worker thread: defines `runtimeLibrary(names, symbols)`, `openNativeLibrary()` for a
 * worker (the same `symbols` shape; `pointer` arguments are `Uint8Array`s, `i64` ones `bigint`s, results
 * numbers), or null where the runtime has no FFI or it is not allowed.
 */
export const WORKER_FFI_SOURCE = `
function runtimeLibrary(names, symbols) {
  let open = null;
  const d = globalThis.Deno;
  if (d && typeof d.dlopen === "function") {
    try {
      if (d.permissions?.querySync && d.permissions.querySync({ name: "ffi" }).state !== "granted") return null;
    } catch { return null; }
    const spec = {};
    for (const [key, s] of Object.entries(symbols)) {
      spec[key] = { parameters: s.args.map((t) => t === "pointer" ? "buffer" : t), result: s.returns };
    }
    open = (name) => d.dlopen(name, spec).symbols;
  } else if (globalThis.Bun !== undefined) {
    let b;
    try { b = require("bun:ffi"); } catch { return null; }
    const t = b.FFIType;
    const type = { i32: t.i32, i64: t.i64, pointer: t.ptr, void: t.void };
    const spec = {};
    for (const [key, s] of Object.entries(symbols)) {
      spec[key] = { args: s.args.map((a) => type[a]), returns: type[s.returns] };
    }
    open = (name) => b.dlopen(name, spec).symbols;
  } else return null;
  for (const name of names) {
    let raw;
    try { raw = open(name); } catch { continue; }
    const out = {};
    for (const key of Object.keys(symbols)) {
      const fn = raw[key];
      out[key] = symbols[key].returns === "i32" ? fn : (...args) => Number(fn(...args) ?? 0);
    }
    return out;
  }
  return null;
}
`;
