/**
 * An interrupted restore says what it left in the target, and running it again with --overwrite finishes it.
 * Runs main.ts, or the binary with FROST_BIN=dist/frost.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import type { ChildProcess } from "node:child_process";
import { cleanup, frost, pseudoRandom, tempDir } from "../_cli.ts";
import { assertSameTree } from "../_tree.ts";

describe("an interrupted restore", () => {
  let work: string;
  let src: string;
  let store: string;
  const common = () => ["--storage", store, "--hostname", "h1", "--name", "r"];

  before(async () => {
    work = tempDir("restore-int");
    store = path.join(work, "store");
    src = path.join(work, "src");
    const noise = pseudoRandom(4096, 4);
    for (let d = 0; d < 20; d++) {
      fs.mkdirSync(path.join(src, `dir ${d}`), { recursive: true });
      for (let f = 0; f < 100; f++) {
        fs.writeFileSync(path.join(src, `dir ${d}`, `file ${f}.bin`), noise.subarray(0, 1000 + f * 30));
      }
    }
    const r = await frost(["backup", src, ...common(), "--compression", "none", "--segment-size", "256K"]);
    assert.equal(r.code, 0, r.stderr);
  });

  after(() => cleanup(work));

  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    it(`says what it left on ${signal}, and the rerun with --overwrite finishes it`, async () => {
      const to = path.join(work, `to-${signal}`);
      let child: ChildProcess | undefined;
      // Slowed down by a download limit so that the signal lands in the middle.
      const done = frost(["restore", ...common(), "--to", to, "--download-limit", "1M"], {
        onSpawn: (c) => void (child = c),
      });
      const count = () => fs.existsSync(to) ? fs.readdirSync(to, { recursive: true }).length : 0;
      for (let i = 0; i < 1500 && count() < 50; i++) await new Promise((r) => setTimeout(r, 20));
      assert.ok(count() >= 50, "the restore wrote 50 entries");
      child!.kill(signal);
      const r = await done;
      const code = signal === "SIGINT" ? 130 : 143;
      assert.ok(r.code === code || r.signal === signal, `exit ${r.code} ${r.signal}: ${r.stderr}`);
      const left = count();
      assert.ok(left < 2021, `the restore finished before the signal (${left} entries)`);
      assert.match(
        r.stderr,
        new RegExp(
          `^frost: restore interrupted: ${left} entries written to ${
            to.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")
          }; run it again with --overwrite to finish$`,
          "m",
        ),
      );
      assert.doesNotMatch(r.stderr, /committed/);

      const again = await frost(["restore", ...common(), "--to", to, "--overwrite"]);
      assert.equal(again.code, 0, again.stderr);
      assertSameTree(src, to);
    });
  }
});
