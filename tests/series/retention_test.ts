/**
 * Chain-aware retention: property tests over random histories (made with the real level rules and a fake
 * clock) and random policies, exact cases, and one end-to-end run through the command line.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import {
  type BackupRecord,
  chooseParent,
  type LevelPolicy,
  newBackupId,
  parseBackupId,
} from "../../series/levels.ts";
import {
  bucketOf,
  describeDecision,
  isoWeek,
  planRetention,
  type RetentionBackup,
  type RetentionPolicy,
  ruleMatches,
  RULES,
} from "../../series/retention.ts";
import { cleanup, copyTree, frost, tempDir } from "../_cli.ts";
import { assertSameTree } from "../_tree.ts";

/** Deterministic random numbers (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const HOUR = 3_600_000;

/** A random history: backups made with random level options at random intervals (minutes to weeks). */
function randomHistory(random: () => number): RetentionBackup[] {
  const history: BackupRecord[] = [];
  const bytes = new Map<string, number>();
  let now = Date.UTC(2025, 0, 1) + Math.floor(random() * 365 * 24) * HOUR;
  const count = 1 + Math.floor(random() * 60);
  const policies: LevelPolicy[] = [
    {},
    { maxLevel: 1 + Math.floor(random() * 4) },
    { alwaysLevel: 1 + Math.floor(random() * 3) },
    { alwaysLevel: 1 + Math.floor(random() * 3), restartAlwaysLevelDays: 1 + Math.floor(random() * 10) },
    { incremental: true },
  ];
  let policy = policies[Math.floor(random() * policies.length)]!;
  for (let i = 0; i < count; i++) {
    // Now and then the options change (several chains, mixed kinds).
    if (random() < 0.1) policy = policies[Math.floor(random() * policies.length)]!;
    const gaps = [0, 60_000, HOUR, 6 * HOUR, 24 * HOUR, 3 * 24 * HOUR, 10 * 24 * HOUR];
    now += gaps[Math.floor(random() * gaps.length)]!;
    const choice = chooseParent(history, policy, new Date(now));
    const id = newBackupId(new Date(now), history.map((r) => r.id));
    history.push({
      id,
      level: choice.level,
      parent: choice.parent?.id ?? null,
      chain: choice.parent?.chain ?? id,
      created: parseBackupId(id),
    });
    bytes.set(id, 1 + Math.floor(random() * 1000));
  }
  return history.map((r) => ({ id: r.id, parent: r.parent, created: r.created, bytes: bytes.get(r.id)! }));
}

function randomPolicy(random: () => number): RetentionPolicy {
  const policy: RetentionPolicy = {};
  for (const rule of RULES) if (random() < 0.5) policy[rule] = Math.floor(random() * 8);
  if (Object.keys(policy).length === 0) policy.last = 1 + Math.floor(random() * 5);
  return policy;
}

describe("retention selection (property tests)", () => {
  it("keeps what the rules select and every ancestor of it; frees only what it removes", () => {
    for (let seed = 1; seed <= 400; seed++) {
      const random = rng(seed);
      const history = randomHistory(random);
      const policy = randomPolicy(random);
      const plan = planRetention(history, policy);
      const byId = new Map(history.map((b) => [b.id, b]));
      const kept = new Set(plan.decisions.filter((d) => d.action === "keep").map((d) => d.id));
      const removed = new Set(plan.remove);
      const where = `seed ${seed}, policy ${JSON.stringify(policy)}`;

      assert.equal(plan.decisions.length, history.length, where);
      assert.equal(kept.size + removed.size, history.length, where);
      // Every backup a rule selects is kept.
      for (const [id, rules] of ruleMatches(history, policy)) {
        if (rules.length > 0) assert.ok(kept.has(id), `${where}: ${id} selected by ${rules} but removed`);
      }
      // Every kept backup keeps its whole chain.
      for (const id of kept) {
        let parent = byId.get(id)!.parent;
        while (parent !== null) {
          assert.ok(kept.has(parent), `${where}: ${id} kept but its ancestor ${parent} is removed`);
          parent = byId.get(parent)!.parent;
        }
      }
      // A backup kept only as an ancestor names a kept descendant.
      for (const d of plan.decisions) {
        if (d.action === "keep" && "neededBy" in d) assert.ok(kept.has(d.neededBy), where);
      }
      // Bytes never increase, and the freed bytes are exactly those of the removed backups.
      const total = history.reduce((n, b) => n + b.bytes, 0);
      const keptBytes = [...kept].reduce((n, id) => n + byId.get(id)!.bytes, 0);
      assert.ok(keptBytes <= total, where);
      assert.equal(keptBytes + plan.bytesFreed, total, where);
      // Deletion order is newest first.
      const order = plan.remove.map((id) => byId.get(id)!.created.getTime());
      assert.deepEqual(order, [...order].sort((a, b) => b - a), where);
      // keep-last N keeps the N newest backups.
      if (policy.last !== undefined) {
        const newest = [...history].sort((a, b) =>
          b.created.getTime() - a.created.getTime() || (a.id < b.id ? 1 : -1)
        )
          .slice(0, policy.last);
        for (const b of newest) assert.ok(kept.has(b.id), where);
      }
      // The rules pick at most N distinct buckets each, and each rule-kept backup is the newest of its bucket.
      const matches = ruleMatches(history, policy);
      for (const rule of RULES) {
        const n = policy[rule];
        const picked = history.filter((b) => matches.get(b.id)!.includes(rule));
        if (n === undefined) {
          assert.equal(picked.length, 0, where);
          continue;
        }
        const buckets = new Set(history.map((b) => bucketOf(rule, b.created, b.id)));
        assert.equal(picked.length, Math.min(n, buckets.size), `${where}: rule ${rule}`);
        for (const b of picked) {
          const bucket = bucketOf(rule, b.created, b.id);
          const newer = history.filter((o) =>
            bucketOf(rule, o.created, o.id) === bucket && o.created.getTime() > b.created.getTime()
          );
          assert.equal(newer.length, 0, `${where}: ${b.id} is not the newest of its ${rule} bucket`);
        }
      }
    }
  });
});

describe("retention selection (exact cases)", () => {
  const at = (iso: string, id: string, parent: string | null, bytes = 10): RetentionBackup => ({
    id,
    parent,
    created: new Date(iso),
    bytes,
  });

  it("keeps the chain of a kept differential, removes older differentials", () => {
    // always-level 2: L0 ← L1 ← (L2a, L2b, L2c)
    const history = [
      at("2026-01-01T00:00:00Z", "a", null, 100),
      at("2026-01-02T00:00:00Z", "b", "a", 20),
      at("2026-01-03T00:00:00Z", "c", "b", 5),
      at("2026-01-04T00:00:00Z", "d", "b", 6),
      at("2026-01-05T00:00:00Z", "e", "b", 7),
    ];
    const plan = planRetention(history, { last: 1 });
    assert.deepEqual(plan.decisions.map((d) => [d.id, describeDecision(d)]), [
      ["e", "keep (last)"],
      ["d", "remove"],
      ["c", "remove"],
      ["b", "keep (needed by e)"],
      ["a", "keep (needed by e)"],
    ]);
    assert.deepEqual(plan.remove, ["d", "c"]);
    assert.equal(plan.bytesFreed, 11);
  });

  it("applies daily, weekly and monthly buckets in UTC, newest of each", () => {
    const history = [
      at("2026-03-01T10:00:00Z", "m1", null), // Sunday, ISO week 9
      at("2026-03-01T23:59:59Z", "m2", null), // same day, newer
      at("2026-03-02T00:00:00Z", "m3", null), // Monday, week 10
      at("2026-03-31T12:00:00Z", "m4", null),
      at("2026-04-01T00:00:00Z", "m5", null),
    ];
    const plan = planRetention(history, { daily: 2, weekly: 3, monthly: 5 });
    assert.deepEqual(Object.fromEntries(plan.decisions.map((d) => [d.id, describeDecision(d)])), {
      m5: "keep (daily, weekly, monthly)",
      m4: "keep (daily, monthly)",
      m3: "keep (weekly)",
      m2: "keep (weekly)", // March's newest is m4
      m1: "remove",
    });
  });

  it("ISO weeks across a year boundary", () => {
    assert.deepEqual(isoWeek(new Date("2026-01-01T00:00:00Z")), [2026, 1]);
    assert.deepEqual(isoWeek(new Date("2027-01-01T00:00:00Z")), [2026, 53]);
    assert.deepEqual(isoWeek(new Date("2024-12-30T00:00:00Z")), [2025, 1]);
    assert.deepEqual(isoWeek(new Date("2021-01-03T23:00:00Z")), [2020, 53]);
  });

  it("keeps backups newer than a cut-off together with the rules", () => {
    const history = [
      at("2026-01-01T00:00:00Z", "a", null),
      at("2026-01-02T00:00:00Z", "b", "a"),
      at("2026-02-01T00:00:00Z", "c", null),
      at("2026-02-02T00:00:00Z", "d", "c"),
    ];
    const plan = planRetention(history, { last: 0, keepNewerThan: new Date("2026-01-02T00:00:00Z") });
    assert.deepEqual(plan.remove, []);
    assert.equal(describeDecision(plan.decisions.find((d) => d.id === "a")!), "keep (needed by b)");
    const none = planRetention(history, { last: 0 });
    assert.deepEqual(none.remove, ["d", "c", "b", "a"]);
  });
});

describe("frost remove with keep rules (end to end)", () => {
  let work: string;
  let src: string;
  let store: string;
  const snapshots = new Map<string, string>();
  const common = () => ["--name", "r", "--hostname", "h1", "--storage", store];

  before(async () => {
    work = tempDir("retention");
    src = path.join(work, "src");
    store = path.join(work, "store");
    fs.mkdirSync(src);
    // always-level 2: levels 0, 1, 2, 2, 2 (differentials on the level 1).
    for (let i = 0; i < 5; i++) {
      fs.writeFileSync(path.join(src, `f${i}.txt`), `file ${i}\n`.repeat(100 * (i + 1)));
      if (i === 3) fs.rmSync(path.join(src, "f1.txt"));
      const r = await frost(["backup", src, ...common(), "--always-level", "2", "--json"]);
      assert.equal(r.code, 0, r.stderr);
      const id = (JSON.parse(r.stdout) as { id: string }).id;
      const snap = path.join(work, `snap-${i}`);
      copyTree(src, snap);
      snapshots.set(id, snap);
    }
  });

  after(() => cleanup(work));

  it("dry run explains, remove keeps the chains of what is kept, each kept backup restores", async () => {
    const ids = [...snapshots.keys()];
    const dry = await frost(["remove", ...common(), "--keep-last", "2", "--dry-run"]);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, new RegExp(`${esc(ids[4]!)} level 2: keep \\(last\\)`));
    assert.match(dry.stdout, new RegExp(`${esc(ids[3]!)} level 2: keep \\(last\\)`));
    assert.match(dry.stdout, new RegExp(`${esc(ids[2]!)} level 2: remove`));
    assert.match(dry.stdout, new RegExp(`${esc(ids[1]!)} level 1: keep \\(needed by ${esc(ids[4]!)}\\)`));
    assert.match(dry.stdout, new RegExp(`${esc(ids[0]!)} level 0: keep \\(needed by ${esc(ids[4]!)}\\)`));
    assert.match(dry.stdout, /Would remove 1 backup .*; 4 backups kept/);
    assert.equal((await listIds()).length, 5, "a dry run removes nothing");

    const all = await frost(["remove", ...common(), "--keep-last", "0"]);
    assert.equal(all.code, 2);
    assert.match(all.stderr, /would remove every backup.*--all/);
    assert.equal((await listIds()).length, 5);

    const r = await frost(["remove", ...common(), "--keep-last", "2"]);
    assert.equal(r.code, 0, r.stderr);
    const left = await listIds();
    assert.deepEqual(left, [ids[0], ids[1], ids[3], ids[4]]);
    assert.ok(!fs.existsSync(path.join(store, "h1_r", "backups", ids[2]!)));
    for (const id of left) {
      const to = path.join(work, `restore-${id}`);
      const restored = await frost(["restore", ...common(), "--to", to, "--date", isoOf(id!)]);
      assert.equal(restored.code, 0, restored.stderr);
      assertSameTree(snapshots.get(id!)!, to);
    }
    const verified = await frost(["verify", ...common(), "--all", "--read-data"]);
    assert.equal(verified.code, 0, verified.stderr);
  });

  it("random keep-last policies on a mixed history: every kept backup restores as it was backed up", async () => {
    // A second series with changing level options: several chains, differentials and incrementals.
    const mixed = ["--name", "m", "--hostname", "h1"];
    const msrc = path.join(work, "msrc");
    fs.mkdirSync(msrc);
    const options = [["--max-level", "2"], ["--always-level", "2"], ["--incremental"], [], [
      "--always-level",
      "1",
    ]];
    const random = rng(7);
    const snaps = new Map<string, string>();
    for (let i = 0; i < 9; i++) {
      fs.writeFileSync(path.join(msrc, `g${i % 4}.txt`), `version ${i}\n`.repeat(50 + i));
      if (i === 5) fs.rmSync(path.join(msrc, "g0.txt"));
      const opts = options[Math.floor(random() * options.length)]!;
      const r = await frost(["backup", msrc, ...mixed, "--storage", store, ...opts, "--json"]);
      assert.equal(r.code, 0, r.stderr);
      const id = (JSON.parse(r.stdout) as { id: string }).id;
      const snap = path.join(work, `msnap-${i}`);
      copyTree(msrc, snap);
      snaps.set(id, snap);
    }
    for (const keep of [1, 3, 5]) {
      const copy = path.join(work, `mstore-${keep}`);
      fs.cpSync(store, copy, { recursive: true });
      const args = [...mixed, "--storage", copy];
      const plan = await frost(["remove", ...args, "--keep-last", String(keep), "--json", "--dry-run"]);
      assert.equal(plan.code, 0, plan.stderr);
      const decisions =
        (JSON.parse(plan.stdout) as { decisions: { id: string; action: string }[] }).decisions;
      const keptIds = decisions.filter((d) => d.action === "keep").map((d) => d.id).sort();
      const r = await frost(["remove", ...args, "--keep-last", String(keep)]);
      assert.equal(r.code, 0, r.stderr);
      const listed = await frost(["list", ...args, "--json"]);
      const left = (JSON.parse(listed.stdout) as { id: string }[]).map((b) => b.id).sort();
      assert.deepEqual(left, keptIds);
      // The keep-last rule selected the newest `keep` backups: each restores to its own snapshot.
      for (const id of [...snaps.keys()].slice(-keep)) {
        assert.ok(left.includes(id));
        const to = path.join(work, `mrestore-${keep}-${id}`);
        const restored = await frost(["restore", ...args, "--to", to, "--date", isoOf(id)]);
        assert.equal(restored.code, 0, restored.stderr);
        assertSameTree(snaps.get(id)!, to);
      }
      const verified = await frost(["verify", ...args, "--all"]);
      assert.equal(verified.code, 0, verified.stderr);
    }
  });

  async function listIds(): Promise<string[]> {
    const r = await frost(["list", ...common(), "--json"]);
    return (JSON.parse(r.stdout) as { id: string }[]).map((b) => b.id);
  }
});

function esc(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

function isoOf(id: string): string {
  return id.replace(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})/, "$1-$2-$3T$4:$5:$6");
}
