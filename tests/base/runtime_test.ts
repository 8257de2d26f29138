/**
 * base/runtime.ts, the one runtime adapter: its FFI calls a real C library (libc), gives undefined for a
 * library that is not there, and no other source file touches a runtime global (`Deno`, `Bun`, `bun:…`).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { execFileSync } from "node:child_process";
import { bunCollector, nativeAddress, openNativeLibrary } from "../../base/runtime.ts";
import { LAYERS } from "../check_layers.ts";

const ROOT = path.resolve(import.meta.dirname!, "../..");

/** The source files of the layers (tests and bench left out), relative to the repository root. */
function sources(): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
      const rel = `${dir}/${e.name}`;
      if (e.isDirectory()) walk(rel);
      else if (e.name.endsWith(".ts")) out.push(rel);
    }
  };
  for (const top of Object.keys(LAYERS)) {
    if (top === "tests" || top === "bench") continue;
    if (top.endsWith(".ts")) out.push(top);
    else walk(top);
  }
  return out;
}

describe("base/runtime.ts", () => {
  it("openNativeLibrary() calls libc through the runtime's FFI", () => {
    const libc = openNativeLibrary(["libc.so.6", "libc.so"], { getpid: { args: [], returns: "i32" } });
    assert.ok(libc, "FFI is there under deno test -A");
    assert.equal(libc.getpid(), process.pid);
  });

  it("openNativeLibrary() gives undefined for a library that is not there", () => {
    assert.equal(
      openNativeLibrary(["libfrost-none.so.9"], { nothing: { args: [], returns: "void" } }),
      undefined,
    );
  });

  it("nativeAddress() gives the address of a buffer's first byte", () => {
    const buffer = new Uint8Array(new ArrayBuffer(4096));
    const at = nativeAddress(buffer);
    assert.equal(typeof at, "bigint");
    assert.equal(nativeAddress(buffer.subarray(16)), at! + 16n);
  });

  it("bunCollector() is undefined under Deno", () => {
    assert.equal(bunCollector(), undefined);
  });

  it("bunCollector().fullGC() under Bun frees the heap blocks of what died before it returns", () => {
    // A script run by the project's Bun: 400 000 strings made, dropped, collected; the heap's capacity
    // (its blocks) then read at once, before the event loop gives the incremental sweeper a turn.
    const script = `
      import { bunCollector } from ${JSON.stringify(path.join(ROOT, "base/runtime.ts"))};
      import { createRequire } from "node:module";
      const jsc = createRequire(import.meta.url)("bun:jsc");
      const collector = bunCollector();
      let junk = [];
      for (let i = 0; i < 400000; i++) junk.push("entry " + i + " " + "x".repeat(i % 40));
      const before = jsc.heapStats().heapCapacity;
      junk = undefined;
      collector.fullGC();
      console.log(JSON.stringify({ hooks: typeof collector.edenGC, before, after: jsc.heapStats().heapCapacity }));
    `;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "frost-collector-"));
    try {
      fs.writeFileSync(path.join(dir, "collect.ts"), script);
      const out = execFileSync(path.join(ROOT, "node_modules/bun/bin/bun.exe"), [
        path.join(dir, "collect.ts"),
      ], {
        encoding: "utf8",
      });
      const { hooks, before, after } = JSON.parse(out) as { hooks: string; before: number; after: number };
      assert.equal(hooks, "function");
      assert.ok(after < before / 4, `heap capacity ${after} after the collection, ${before} before`);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("is the only source file that touches a runtime global", () => {
    const offenders: string[] = [];
    for (const file of sources()) {
      if (file === "base/runtime.ts") continue;
      const code = fs.readFileSync(path.join(ROOT, file), "utf8")
        .replace(/\/\*[\s\S]*?\*\//g, "")
        .replace(/(^|[^:])\/\/.*$/gm, "$1");
      const m = /\b(Deno|Bun)\b|["'`]bun:/.exec(code);
      if (m) offenders.push(`${file}: ${m[0]}`);
    }
    assert.deepEqual(offenders, []);
    assert.ok(sources().includes("engines/_ffi_lseek.ts"));
  });
});
