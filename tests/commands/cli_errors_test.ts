/**
 * Every mistake on the command line, through the real frost: one line `frost: …` in frost's words (never
 * node's "argument is ambiguous"), exit code 2, and "did you mean" for a mistyped command or option.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { cleanup, frost, tempDir } from "../_cli.ts";
import { closest, editDistance } from "../../commands/cli_options.ts";

describe("command-line errors", () => {
  let dir: string;
  before(() => {
    dir = tempDir("clierr");
  });
  after(() => cleanup(dir));

  const store = () => path.join(dir, "store");
  const cases: [string, () => string[], RegExp][] = [
    ["a mistyped command", () => ["bakup", "/etc"], /unknown command "bakup" \(did you mean "backup"\?\)/],
    [
      "a mistyped option",
      () => ["backup", "/etc", "--nmae", "etc"],
      /Unknown option "--nmae" \(did you mean --name\?\)/,
    ],
    [
      "a mistyped option of restore",
      () => ["restore", "--overwirte"],
      /Unknown option "--overwirte" \(did you mean --overwrite\?\)/,
    ],
    [
      "a mistyped Freezer option",
      () => ["--action", "backup", "--path-to-bakup", "/etc"],
      /Unknown option "--path-to-bakup" \(did you mean --path-to-backup\?\)/,
    ],
    ["an unknown short option", () => ["ls", "-z"], /Unknown option "-z"/],
    [
      "a negative duration",
      () => ["remove", "--name", "x", "--storage", store(), "--older-than", "-5d"],
      /Parse --older-than "-5d": expected/,
    ],
    [
      "a negative level",
      () => ["backup", dir, "--name", "x", "--storage", store(), "--max-level", "-1"],
      /Invalid --max-level "-1": expected a whole number ≥ 0/,
    ],
    [
      "a negative always-level",
      () => ["backup", dir, "--name", "x", "--storage", store(), "--always-level", "-2"],
      /Invalid --always-level "-2"/,
    ],
    [
      "a negative restart-always-level",
      () => ["backup", dir, "--name", "x", "--storage", store(), "--restart-always-level", "-2"],
      /Invalid --restart-always-level "-2"/,
    ],
    [
      "a negative segment size",
      () => ["backup", dir, "--name", "x", "--storage", store(), "--segment-size", "-1M"],
      /--segment-size "-1M"/,
    ],
    [
      "a negative queue size",
      () => ["restore", "--name", "x", "--storage", store(), "--to", dir, "--queue-size", "-3"],
      /Invalid --queue-size "-3"/,
    ],
    [
      "a negative keep rule",
      () => ["remove", "--name", "x", "--storage", store(), "--keep-last", "-2"],
      /Invalid --keep-last "-2"/,
    ],
    [
      "a negative upload limit",
      () => ["list", "--storage", store(), "--upload-limit", "-10M"],
      /--upload-limit "-10M"/,
    ],
    [
      "a negative date",
      () => ["ls", "--name", "x", "--date", "-1"],
      /Invalid --date "-1": expected an ISO 8601/,
    ],
    ["a missing value", () => ["list", "--storage"], /^frost: Option --storage needs a value/],
    [
      "an option where a value belongs",
      () => ["list", "--storage", "--json"],
      /Option --storage needs a value \(found the option "--json" instead\)/,
    ],
    ["a value given to a flag", () => ["list", "--json=yes"], /Option --json takes no value/],
    ["an unexpected argument", () => ["list", "extra"], /Unexpected argument "extra"/],
    ["an ambiguous m", () => ["remove", "--name", "x", "--older-than", "1m"], /"1m" is ambiguous/],
  ];
  for (const [what, args, pattern] of cases) {
    it(`${what} is one line in frost's words with exit 2`, async () => {
      const r = await frost(args(), { env: { FROST_STORAGE: store() } });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /^frost: /);
      assert.match(r.stderr, pattern);
      assert.doesNotMatch(r.stderr, /ambiguous\.|To specify|ERR_PARSE_ARGS/);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
      assert.equal(r.stdout, "");
    });
  }

  it("still takes values that start with a dash where a value belongs", async () => {
    // An exclude pattern may start with "-": it is the option's value, not an option.
    const r = await frost([
      "backup",
      dir,
      "--name",
      "x",
      "--storage",
      store(),
      "--exclude",
      "-tmp",
      "--json",
    ]);
    assert.equal(r.code, 0, r.stderr);
  });

  it("suggests close names only", () => {
    assert.equal(editDistance("nmae", "name"), 1);
    assert.equal(closest("bakup", ["backup", "restore"]), "backup");
    assert.equal(closest("xyzzy", ["backup", "restore", "list"]), undefined);
    assert.equal(closest("rest", ["backup", "restore"]), "restore");
  });
});
