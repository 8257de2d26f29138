/**
 * `frost completion bash|zsh|fish`, through the real frost: the scripts parse in their shells, complete
 * commands, options and file names, and offer exactly the options each command's help lists.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { execFileSync, spawnSync } from "node:child_process";
import { cleanup, frost, tempDir } from "../_cli.ts";

const has = (shell: string) => spawnSync(shell, ["-c", "true"]).status === 0;
const COMMANDS = ["backup", "restore", "list", "remove", "verify", "ls", "unlock", "key", "freezer"];

describe("frost completion", () => {
  let dir: string;
  const scripts: Record<string, string> = {};
  before(async () => {
    dir = tempDir("completion");
    for (const shell of ["bash", "zsh", "fish"]) {
      const r = await frost(["completion", shell]);
      assert.equal(r.code, 0, r.stderr);
      scripts[shell] = path.join(dir, `frost.${shell}`);
      fs.writeFileSync(scripts[shell], r.stdout);
    }
    fs.writeFileSync(path.join(dir, "some-file.pass"), "x");
  });
  after(() => cleanup(dir));

  /** What the bash script offers for the words typed so far (the last one being completed). */
  function bashComplete(...words: string[]): string[] {
    const script = `source ${JSON.stringify(scripts.bash)}; COMP_WORDS=(${
      words.map((w) => JSON.stringify(w)).join(" ")
    }); COMP_CWORD=${words.length - 1}; _frost; printf '%s\\n' "\${COMPREPLY[@]}"`;
    return execFileSync("bash", ["-c", script], { cwd: dir, encoding: "utf8" }).split("\n").filter(Boolean);
  }

  it("bash: completes commands, options and file names", () => {
    execFileSync("bash", ["-n", scripts.bash!]);
    assert.deepEqual(bashComplete("frost", "bac"), ["backup"]);
    assert.deepEqual(bashComplete("frost", "restore", "--ov"), ["--overwrite"]);
    assert.ok(bashComplete("frost", "restore", "--").includes("--id"));
    assert.ok(bashComplete("frost", "backup", "--").includes("--metrics-file"));
    assert.deepEqual(bashComplete("frost", "backup", "--encrypt-pass-file", "some"), ["some-file.pass"]);
    assert.deepEqual(bashComplete("frost", "backup", "--name", "so"), [], "a name is not a file");
  });

  it("bash: offers every option each command's help lists", async () => {
    for (const command of COMMANDS) {
      const help = await frost([command, "--help"]);
      assert.equal(help.code, 0);
      // Option lines of the help: "  --name NAME   …" or "  -h, --help   …".
      const listed = [...help.stdout.matchAll(/^ {2,}(?:-\w, )?--([a-z0-9-]+)/gm)].map((m) => `--${m[1]}`);
      const offered = new Set(bashComplete("frost", command, "--"));
      for (const option of new Set(listed)) {
        assert.ok(offered.has(option), `frost ${command}: ${option} is in --help but not completed`);
      }
    }
  });

  it("zsh: the script parses", { skip: !has("zsh") && "zsh is not installed" }, () => {
    execFileSync("zsh", ["-n", scripts.zsh!]);
    assert.match(fs.readFileSync(scripts.zsh!, "utf8"), /^#compdef frost$/m);
  });

  it("fish: the script parses and completes", { skip: !has("fish") && "fish is not installed" }, () => {
    execFileSync("fish", ["-n", scripts.fish!]);
    const complete = (line: string) =>
      execFileSync("fish", ["-c", `source ${scripts.fish}; complete -C ${JSON.stringify(line)}`], {
        encoding: "utf8",
      }).split("\n").map((l) => l.split("\t")[0]).filter(Boolean);
    assert.deepEqual(complete("frost bac"), ["backup"]);
    assert.ok(complete("frost restore --").includes("--overwrite"));
    assert.deepEqual(complete("frost freezer "), ["list", "restore"]);
  });

  it("refuses a missing or unknown shell with exit 2", async () => {
    for (const args of [["completion"], ["completion", "tcsh"]]) {
      const r = await frost(args);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /^frost: frost completion needs one shell: bash, zsh or fish/);
    }
  });
});
