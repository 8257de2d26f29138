/**
 * `--metrics-file` on backup, remove and verify, through the real frost: the file parses as Prometheus text
 * format (checked by a small strict parser below), holds the run's figures, keeps other series, and keeps
 * the last success time when a run fails.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { cleanup, frost, tempDir } from "../_cli.ts";

/** Samples by `name{labels}`; throws on anything the text format does not allow. */
function parsePrometheus(text: string): Map<string, number> {
  assert.ok(text.endsWith("\n"), "the file ends with a newline");
  const samples = new Map<string, number>();
  const typed = new Map<string, string>();
  const closed = new Set<string>(); // families whose block has ended: their samples must not come back
  let current = "";
  const enter = (family: string) => {
    if (family === current) return;
    assert.ok(!closed.has(family), `family ${family} is split in two blocks`);
    if (current) closed.add(current);
    current = family;
  };
  for (const line of text.slice(0, -1).split("\n")) {
    let m = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
    if (m) {
      enter(m[2]!);
      if (m[1] === "TYPE") {
        assert.match(m[3]!, /^(counter|gauge|histogram|summary|untyped)$/, line);
        assert.ok(!typed.has(m[2]!), `a second TYPE for ${m[2]}`);
        typed.set(m[2]!, m[3]!);
      }
      continue;
    }
    m =
      /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*)\})? (\S+)(?: -?\d+)?$/
        .exec(line);
    assert.ok(m, `not a sample line: ${JSON.stringify(line)}`);
    const family = [...typed.keys()].find((f) => m![1] === f || m![1]!.startsWith(`${f}_`)) ?? m[1]!;
    enter(family);
    const value = Number(m[3] === "+Inf" ? Infinity : m[3] === "-Inf" ? -Infinity : m[3]);
    assert.ok(!Number.isNaN(value) || m[3] === "NaN", `bad value in ${line}`);
    const key = `${m[1]}{${m[2] ?? ""}}`;
    assert.ok(!samples.has(key), `duplicate sample ${key}`);
    samples.set(key, value);
  }
  return samples;
}

describe("--metrics-file", () => {
  let dir: string;
  let store: string;
  let src: string;
  let file: string;
  const common = () => ["--name", "etc", "--hostname", "h1", "--storage", store];
  const key = (metric: string) => `frost_${metric}{hostname="h1",name="etc"}`;
  const FOREIGN = [
    "# HELP node_custom_job_ok Written by another job.",
    "# TYPE node_custom_job_ok gauge",
    'node_custom_job_ok{job="db"} 1',
    'frost_backup_exit_status{hostname="h2",name="other"} 0',
  ].join("\n") + "\n";

  before(() => {
    dir = tempDir("metrics");
    store = path.join(dir, "store");
    src = path.join(dir, "src");
    fs.mkdirSync(path.join(src, "sub"), { recursive: true });
    fs.writeFileSync(path.join(src, "a.txt"), "a".repeat(1000));
    fs.writeFileSync(path.join(src, "sub", "b.txt"), "b".repeat(5000));
    fs.mkdirSync(path.join(dir, "prom"));
    file = path.join(dir, "prom", "frost.prom");
    fs.writeFileSync(file, FOREIGN);
  });
  after(() => cleanup(dir));

  let firstSuccess = 0;

  it("backup writes its figures, labelled by host and name, and keeps other series", async () => {
    const t0 = Date.now() / 1000;
    const r = await frost(["backup", src, ...common(), "--max-level", "2", "--json", "--metrics-file", file]);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    const m = parsePrometheus(fs.readFileSync(file, "utf8"));
    assert.equal(m.get(key("backup_exit_status")), 0);
    assert.equal(m.get(key("backup_files")), out.files);
    assert.equal(m.get(key("backup_bytes_in")), out.bytesIn);
    assert.equal(m.get(key("backup_bytes_stored")), out.bytesStored);
    assert.equal(m.get(key("backup_level")), 0);
    assert.equal(m.get(key("backup_warnings")), 0);
    assert.ok(m.get(key("backup_duration_seconds"))! >= 0);
    firstSuccess = m.get(key("backup_last_success_timestamp_seconds"))!;
    assert.ok(firstSuccess >= Math.floor(t0) && firstSuccess <= Date.now() / 1000 + 1, String(firstSuccess));
    assert.equal(m.get(key("backup_last_run_timestamp_seconds")), firstSuccess);
    // What was there before stays.
    assert.equal(m.get('node_custom_job_ok{job="db"}'), 1);
    assert.equal(m.get('frost_backup_exit_status{hostname="h2",name="other"}'), 0);
    assert.deepEqual(fs.readdirSync(path.join(dir, "prom")), ["frost.prom"], "no temporary file left");
  });

  it("a second backup replaces the series' figures", async () => {
    fs.writeFileSync(path.join(src, "c.txt"), "c");
    const r = await frost(["backup", src, ...common(), "--max-level", "2", "--metrics-file", file]);
    assert.equal(r.code, 0, r.stderr);
    const m = parsePrometheus(fs.readFileSync(file, "utf8"));
    assert.equal(m.get(key("backup_level")), 1);
    assert.ok(m.get(key("backup_last_success_timestamp_seconds"))! >= firstSuccess);
    assert.equal(m.get('frost_backup_exit_status{hostname="h2",name="other"}'), 0);
  });

  it("a failed backup sets its exit status and keeps the last success", async () => {
    const before = parsePrometheus(fs.readFileSync(file, "utf8"));
    const r = await frost(["backup", path.join(dir, "missing"), ...common(), "--metrics-file", file]);
    assert.equal(r.code, 1);
    const m = parsePrometheus(fs.readFileSync(file, "utf8"));
    assert.equal(m.get(key("backup_exit_status")), 1);
    assert.equal(
      m.get(key("backup_last_success_timestamp_seconds")),
      before.get(key("backup_last_success_timestamp_seconds")),
    );
    assert.ok(
      m.get(key("backup_last_run_timestamp_seconds"))! >=
        before.get(key("backup_last_run_timestamp_seconds"))!,
    );
    assert.equal(m.get(key("backup_level")), 1, "the last success's figures stay");
  });

  it("a backup that printed a warning records exit status 3, as the process exits", async () => {
    const named = ["--name", "warned", "--hostname", "h1", "--storage", store];
    assert.equal((await frost(["backup", src, ...named])).code, 0);
    // An unreadable manifest is ignored with a warning: the run completes, with exit code 3.
    fs.writeFileSync(path.join(store, "h1_warned", "manifests", "20200101T000000.000Z.json"), "not json");
    const r = await frost(["backup", src, ...named, "--metrics-file", file]);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /^frost: warning: ignoring unreadable manifest/m);
    const m = parsePrometheus(fs.readFileSync(file, "utf8"));
    assert.equal(m.get('frost_backup_exit_status{hostname="h1",name="warned"}'), 3);
  });

  it("runs that end together all keep their series in a shared file", async () => {
    const shared = path.join(dir, "prom", "shared.prom");
    const names = ["n1", "n2", "n3", "n4"];
    const runs = await Promise.all(
      names.map((n) =>
        frost(["backup", src, "--name", n, "--hostname", "h1", "--storage", store, "--metrics-file", shared])
      ),
    );
    for (const r of runs) assert.equal(r.code, 0, r.stderr);
    const m = parsePrometheus(fs.readFileSync(shared, "utf8"));
    for (const n of names) assert.equal(m.get(`frost_backup_exit_status{hostname="h1",name="${n}"}`), 0, n);
    assert.ok(
      !fs.readdirSync(path.join(dir, "prom")).some((f) => /\.(tmp|lock)$/.test(f)),
      "no temp or lock file left",
    );
  });

  it("does not write the file while another run holds its lock, and takes over a stale lock", async () => {
    const held = path.join(dir, "prom", "held.prom");
    fs.writeFileSync(held, FOREIGN);
    fs.writeFileSync(`${held}.lock`, "");
    const args = [
      "backup",
      src,
      "--name",
      "held",
      "--hostname",
      "h1",
      "--storage",
      store,
      "--metrics-file",
      held,
    ];
    const blocked = await frost(args);
    assert.equal(blocked.code, 3, blocked.stderr);
    assert.match(
      blocked.stderr,
      /^frost: warning: cannot write --metrics-file ".*held.prom": its lock .* is held/m,
    );
    assert.equal(fs.readFileSync(held, "utf8"), FOREIGN, "unchanged");
    // A lock a killed run left (not touched for minutes) is taken over.
    const old = new Date(Date.now() - 5 * 60_000);
    fs.utimesSync(`${held}.lock`, old, old);
    const r = await frost(args);
    assert.equal(r.code, 0, r.stderr);
    const m = parsePrometheus(fs.readFileSync(held, "utf8"));
    assert.equal(m.get('frost_backup_exit_status{hostname="h1",name="held"}'), 0);
    assert.ok(!fs.existsSync(`${held}.lock`));
  });

  it("verify and remove write their own series", async () => {
    const v = await frost(["verify", ...common(), "--json", "--metrics-file", file]);
    assert.equal(v.code, 0, v.stderr);
    const verified = JSON.parse(v.stdout);
    const rm = await frost(["remove", ...common(), "--keep-last", "1", "--all", "--metrics-file", file]);
    assert.equal(rm.code, 0, rm.stderr);
    const m = parsePrometheus(fs.readFileSync(file, "utf8"));
    assert.equal(m.get(key("verify_exit_status")), 0);
    assert.equal(m.get(key("verify_objects")), verified.objects);
    assert.equal(m.get(key("verify_bytes")), verified.bytes);
    assert.equal(m.get(key("verify_problems")), 0);
    assert.equal(m.get(key("remove_exit_status")), 0);
    assert.equal(m.get(key("remove_removed_backups")), 0, "the level-1 backup needs its level 0");
    assert.equal(m.get(key("remove_kept_backups")), 2);
    assert.equal(m.get(key("backup_exit_status")), 1);
    assert.equal(m.get('node_custom_job_ok{job="db"}'), 1);
  });
});
