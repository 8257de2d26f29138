/**
 * `frost backup --stdin-command CMD`, through the real frost: frost runs the producer, keeps its output, and
 * fails the backup (exit 1, nothing committed) when the producer exits non-zero, naming its status and last
 * stderr line.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { cleanup, frost, tempDir } from "../_cli.ts";

/** Every file under `dir`, relative. */
function files(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return (fs.readdirSync(dir, { recursive: true }) as string[])
    .filter((f) => fs.statSync(path.join(dir, f)).isFile());
}

describe("backup --stdin-command", () => {
  let dir: string;
  let store: string;
  const common = () => ["--name", "db", "--hostname", "h1", "--storage", store];
  before(() => {
    dir = tempDir("stdincmd");
    store = path.join(dir, "store");
  });
  after(() => cleanup(dir));

  it("fails the backup and commits nothing when the producer exits non-zero", async () => {
    const producer = "seq 1 50000; echo 'pg_dump: error: connection to server failed' >&2; exit 3";
    const r = await frost(["backup", "--stdin-command", producer, ...common()]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      /^frost: .*--stdin-command ".*" exited with status 3; its last stderr line: "pg_dump: error: connection to server failed"$/m,
    );
    assert.equal(files(path.join(store, "h1_db")).filter((f) => f.endsWith(".json")).length, 0);
    const list = await frost(["list", ...common(), "--json"]);
    assert.equal(list.code, 0, list.stderr);
    assert.deepEqual(JSON.parse(list.stdout), []);
  });

  it("names a producer killed by a signal", async () => {
    const r = await frost(["backup", "--stdin-command", "kill -9 $$", ...common()]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /--stdin-command "kill -9 \$\$" was killed by SIGKILL/);
    const list = await frost(["list", ...common(), "--json"]);
    assert.deepEqual(JSON.parse(list.stdout), []);
  });

  it("backs up a producer's output that restores byte for byte", async () => {
    const r = await frost(["backup", "--stdin-command", "seq 1 200000", ...common(), "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const out = path.join(dir, "restored");
    const back = await frost(["restore", ...common(), "--stdout"], { stdoutFile: out });
    assert.equal(back.code, 0, back.stderr);
    const expected = Array.from({ length: 200000 }, (_, i) => `${i + 1}\n`).join("");
    assert.equal(fs.readFileSync(out, "utf8"), expected);
  });

  it("refuses --stdin together with --stdin-command", async () => {
    const r = await frost(["backup", "--stdin", "--stdin-command", "true", ...common()]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^frost: Choose one of --stdin and --stdin-command/);
  });
});
