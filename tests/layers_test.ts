/**
 * The layer check of `deno task check` (tests/check_layers.ts): imports point down, `_` files stay private to
 * their folder, and the repository keeps to both.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { importViolation, layerViolations, specifiersOf } from "./check_layers.ts";

test("the layer check", async (t) => {
  await t.test("the repository has no upward, sideways or foreign private import", () => {
    assert.deepEqual(layerViolations(path.resolve(import.meta.dirname!, "..")), []);
  });

  await t.test("an import of a layer above is refused", () => {
    assert.match(importViolation("series/lock.ts", "commands/cli.ts") ?? "", /a layer above/);
    assert.match(importViolation("codec/encryption.ts", "storage/storage.ts") ?? "", /a layer above/);
    assert.match(importViolation("engines/tar.ts", "main.ts") ?? "", /a layer above/);
  });

  await t.test("engines and storage never import each other", () => {
    assert.match(importViolation("engines/tar.ts", "storage/storage.ts") ?? "", /never import each other/);
    assert.match(importViolation("storage/local.ts", "engines/engine.ts") ?? "", /never import each other/);
  });

  await t.test("a `_` file is imported only from its own folder", () => {
    assert.match(importViolation("commands/ls.ts", "engines/_tar_read.ts") ?? "", /private to engines/);
    assert.equal(importViolation("engines/tar.ts", "engines/_tar_read.ts"), null);
  });

  await t.test("imports down the layers, within a folder, and from tests are fine", () => {
    assert.equal(importViolation("main.ts", "commands/cli.ts"), null);
    assert.equal(importViolation("commands/ls.ts", "engines/mod.ts"), null);
    assert.equal(importViolation("pipeline/mod.ts", "storage/storage.ts"), null);
    assert.equal(importViolation("series/lock.ts", "base/host.ts"), null);
    assert.equal(importViolation("tests/ls_test.ts", "engines/_tar_read.ts"), null);
  });

  await t.test("a folder in no layer is named", () => {
    assert.match(importViolation("util/x.ts", "base/errors.ts") ?? "", /in no layer/);
  });

  await t.test("static, type-only, dynamic, re-export and URL specifiers are all read", () => {
    const source = [
      `import { a } from "../base/errors.ts";`,
      `import type { B } from './engine.ts';`,
      `export { c } from "./_names.ts";`,
      `const s3 = await import("./s3.ts");`,
      `new URL("./kdf_child.ts", import.meta.url);`,
      `import "node:fs";`,
    ].join("\n");
    assert.deepEqual(specifiersOf(source), [
      "../base/errors.ts",
      "./engine.ts",
      "./_names.ts",
      "./s3.ts",
      "./kdf_child.ts",
    ]);
  });
});
