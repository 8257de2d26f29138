/**
 * The README's scheduling section: its systemd service and timer and its cron line parse, every frost command
 * line in them is one the real frost accepts, and `systemd-analyze verify` passes the units where installed.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { execFileSync, spawnSync } from "node:child_process";
import { cleanup, frost, frostCommand, tempDir } from "../_cli.ts";

const README = fs.readFileSync(path.join(import.meta.dirname!, "..", "..", "README.md"), "utf8");
const FROST = "/usr/local/bin/frost";

/** The fenced code blocks of the README's "Scheduling" section. */
function blocks(): string[] {
  const section = README.split(/^### Scheduling$/m)[1]?.split(/^##/m)[0];
  assert.ok(section, "the README has a Scheduling section");
  return [...section.matchAll(/^```\w*\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
}

/** A systemd unit file as sections of [key, value] pairs; throws on a line that is not one. */
function parseUnit(text: string): Map<string, [string, string][]> {
  const sections = new Map<string, [string, string][]>();
  let current: [string, string][] | undefined;
  for (const line of text.split("\n")) {
    if (line.trim() === "" || /^[#;]/.test(line)) continue;
    const head = /^\[([A-Za-z]+)\]$/.exec(line);
    if (head) {
      current = [];
      sections.set(head[1]!, current);
      continue;
    }
    const kv = /^([A-Za-z]+)=(.*)$/.exec(line);
    assert.ok(kv && current, `not a unit file line: ${JSON.stringify(line)}`);
    current.push([kv[1]!, kv[2]!]);
  }
  return sections;
}

const get = (s: [string, string][] | undefined, key: string) =>
  s?.filter(([k]) => k === key).map(([, v]) => v) ?? [];

/** The frost arguments of a command line that starts with the installed binary's path. */
function frostArgs(command: string): string[] {
  const words = command.trim().split(/\s+/);
  assert.equal(words[0], FROST, command);
  assert.ok(!words.some((w) => /^[<>|&;]|^2>/.test(w)), `no shell syntax expected in ${command}`);
  return words.slice(1);
}

/** Asserts that frost accepts `args` (every option known, every value of the right form) via `--help`. */
async function assertAccepted(args: string[]): Promise<void> {
  const r = await frost([...args, "--help"], { env: { FROST_STORAGE: "/nonexistent" } });
  assert.equal(r.code, 0, `frost ${args.join(" ")}: ${r.stderr}`);
}

describe("the README's scheduling section", () => {
  let dir: string;
  const units = new Map<string, string>();
  let cron = "";
  before(() => {
    dir = tempDir("schedule");
    for (const b of blocks()) {
      const name = /^# \/etc\/systemd\/system\/(\S+)\n/.exec(b)?.[1];
      if (name) units.set(name, b);
      else if (/^\S+ \S+ \S+ \S+ \S+ \S+ \//m.test(b)) cron = b.trim();
    }
  });
  after(() => cleanup(dir));

  it("has a service and timer pair that parse, and the service's commands are frost's", async () => {
    const services = [...units.keys()].filter((n) => n.endsWith(".service"));
    assert.equal(services.length, 1, [...units.keys()].join(", "));
    const service = parseUnit(units.get(services[0]!)!);
    const timer = parseUnit(units.get(services[0]!.replace(/\.service$/, ".timer"))!);
    assert.deepEqual(get(service.get("Service"), "Type"), ["oneshot"]);
    assert.ok(get(service.get("Service"), "SuccessExitStatus").includes("3"), "exit 3 (warnings) is success");
    const commands = get(service.get("Service"), "ExecStart");
    assert.ok(commands.length >= 1);
    for (const c of commands) await assertAccepted(frostArgs(c));
    assert.equal(get(timer.get("Timer"), "OnCalendar").length, 1);
    assert.deepEqual(get(timer.get("Timer"), "Persistent"), ["true"]);
    assert.deepEqual(get(timer.get("Install"), "WantedBy"), ["timers.target"]);
  });

  it("has a cron line in /etc/cron.d form whose command frost accepts", async () => {
    const fields = cron.split(/\s+/);
    assert.ok(fields.length > 7, cron);
    for (const f of fields.slice(0, 5)) assert.match(f, /^(\*|\d+(-\d+)?)(\/\d+)?(,(\*|\d+(-\d+)?))*$/, f);
    assert.equal(fields[5], "root");
    await assertAccepted(frostArgs(fields.slice(6).join(" ")));
  });

  const analyze = spawnSync("systemd-analyze", ["--version"]).status === 0;
  it("passes systemd-analyze verify", { skip: !analyze && "systemd-analyze is not installed" }, () => {
    // The units as installed, with ExecStart pointing at this frost (verify checks the executable exists).
    const bin = path.join(dir, "frost");
    fs.writeFileSync(bin, `#!/bin/sh\nexec ${frostCommand().map((w) => `'${w}'`).join(" ")} "$@"\n`, {
      mode: 0o755,
    });
    const files: string[] = [];
    for (const [name, text] of units) {
      const file = path.join(dir, name);
      fs.writeFileSync(file, text.replaceAll(FROST, bin));
      files.push(file);
    }
    execFileSync("systemd-analyze", ["verify", ...files], {
      stdio: ["ignore", "pipe", "pipe"],
      timeout: 60_000,
    });
  });
});
