/**
 * One time model through the real frost: what `list` prints in its date column, and any backup id, is taken
 * by `--date` and picks exactly that backup whatever the TZ; `--id` picks one backup; a zone-less time is
 * local; the chosen backup is always named; a date before the first backup names the earliest.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { cleanup, frost, tempDir } from "../_cli.ts";

const ZONES = ["America/New_York", "Asia/Kolkata"];

describe("frost's times (list → --date, --id, durations)", () => {
  let dir: string;
  let store: string;
  let src: string;
  const ids: string[] = [];
  const common = () => ["--name", "etc", "--hostname", "web1", "--storage", store];

  before(async () => {
    dir = tempDir("time");
    store = path.join(dir, "store");
    src = path.join(dir, "src");
    fs.mkdirSync(src);
    for (const v of ["v1", "v2", "v3"]) {
      fs.writeFileSync(path.join(src, "a.txt"), v);
      const r = await frost(["backup", src, ...common(), "--max-level", "3", "--json"]);
      assert.equal(r.code, 0, r.stderr);
      const out = JSON.parse(r.stdout);
      assert.match(
        out.created,
        /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/,
        "backup --json: the time with its zone",
      );
      ids.push(out.id);
      // The next backup in another second, so that list shows whole seconds (not a timing assertion).
      await new Promise((res) => setTimeout(res, 1100));
    }
  });
  after(() => cleanup(dir));

  /** The CREATED column of `list`, by id, under the zone `tz`. */
  async function listed(tz: string): Promise<Map<string, string>> {
    const r = await frost(["list", ...common()], { env: { TZ: tz } });
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split("\n");
    const header = lines[0]!.split(/\s{2,}/);
    const at = header.indexOf("CREATED");
    const idAt = header.indexOf("ID");
    assert.ok(at >= 0 && idAt >= 0, lines[0]);
    return new Map(
      lines.slice(1).map((l) => {
        const cells = l.split(/\s{2,}/);
        return [cells[idAt]!, cells[at]!];
      }),
    );
  }

  async function restoredWith(args: string[], tz: string): Promise<{ content: string; out: string }> {
    const to = fs.mkdtempSync(path.join(dir, "to-"));
    fs.rmdirSync(to);
    const r = await frost(["restore", ...common(), "--to", to, ...args], { env: { TZ: tz } });
    assert.equal(r.code, 0, r.stderr);
    return { content: fs.readFileSync(path.join(to, "a.txt"), "utf8"), out: r.stdout };
  }

  for (const tz of ZONES) {
    it(`list's date column and ids round-trip through --date with TZ=${tz}`, async () => {
      const shown = await listed(tz);
      assert.equal(shown.size, 3);
      for (const [i, id] of ids.entries()) {
        const created = shown.get(id)!;
        assert.match(created, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, "a time with its zone");
        for (const date of [created, id]) {
          const { content, out } = await restoredWith(["--date", date], tz);
          assert.equal(content, `v${i + 1}`, `--date ${date} with TZ=${tz}`);
          assert.match(out, new RegExp(`^restoring web1_etc level ${i}, ${created} \\(id ${id}\\)$`, "m"));
        }
        assert.equal((await restoredWith(["--id", id], tz)).content, `v${i + 1}`);
      }
    });
  }

  it("reads a zone-less --date as local time", async () => {
    const created = new Date((await listed("UTC")).get(ids[1]!)!);
    // The same instant written in Kolkata's wall time (UTC+05:30, no daylight saving), without a zone.
    const local = new Date(created.getTime() + 330 * 60_000).toISOString().slice(0, 19);
    assert.equal((await restoredWith(["--date", local], "Asia/Kolkata")).content, "v2");
    // Read in New York, the same wall time is hours later: the newest backup.
    assert.equal((await restoredWith(["--date", local], "America/New_York")).content, "v3");
  });

  it("names the chosen backup in ls and verify, on stderr when stdout carries data", async () => {
    const ls = await frost(["ls", ...common(), "--id", ids[0]!, "--json"]);
    assert.equal(ls.code, 0, ls.stderr);
    assert.match(ls.stderr, new RegExp(`listing web1_etc level 0, .*\\(id ${ids[0]}\\)`));
    JSON.parse(ls.stdout);
    const verify = await frost(["verify", ...common(), "--id", ids[1]!]);
    assert.equal(verify.code, 0, verify.stderr);
    assert.match(
      verify.stdout,
      new RegExp(`^OK: web1_etc, chain of 2 backups up to level 1, .*\\(id ${ids[1]}\\), `, "m"),
    );
    const json = await frost(["restore", ...common(), "--plan", "--json", "--date", ids[2]!]);
    assert.equal(json.code, 0, json.stderr);
    assert.equal(JSON.parse(json.stdout).id, ids[2]);
    assert.match(json.stderr, new RegExp(`level 2, .*\\(id ${ids[2]}\\)`));
  });

  it("restore --json gives the backup's time with its zone", async () => {
    const to = path.join(dir, "json-to");
    const r = await frost(["restore", ...common(), "--to", to, "--id", ids[1]!, "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.id, ids[1]);
    assert.match(out.created, /Z$/);
    assert.match(r.stderr, /^restoring web1_etc level 1/m);
  });

  it("names the earliest backup when --date is before it, and an unknown --id", async () => {
    const early = await frost(["restore", ...common(), "--to", path.join(dir, "x"), "--date", "2020-01-01"]);
    assert.equal(early.code, 1);
    assert.match(
      early.stderr,
      new RegExp(
        `^frost: No backup of "web1_etc" at or before 2020-01-01 \\(20.*Z\\) \\(the earliest is level 0, .*\\(id ${
          ids[0]
        }\\)`,
      ),
    );
    assert.equal(early.stderr.trim().split("\n").length, 1);
    const unknown = await frost(["ls", ...common(), "--id", "20200101T000000.000Z"]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, new RegExp(`No backup "20200101T000000.000Z" .*earliest is .*${ids[0]}`));
    const both = await frost(["restore", ...common(), "--to", "x", "--id", ids[0]!, "--date", ids[0]!]);
    assert.equal(both.code, 2);
    assert.match(both.stderr, /--id and --date cannot be used together/);
  });

  it("reads 6mo and 1y as durations and refuses a bare m as ambiguous", async () => {
    for (const age of ["6mo", "1y", "2w", "12h", "30d"]) {
      const r = await frost(["remove", ...common(), "--older-than", age, "--dry-run"]);
      assert.equal(r.code, 0, `${age}: ${r.stderr}`);
    }
    const r = await frost(["remove", ...common(), "--older-than", "1m", "--dry-run"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /"1m" is ambiguous: write 1min for minutes or 1mo for months/);
    assert.equal(r.stderr.trim().split("\n").length, 1);
  });
});
