/**
 * Level rules: Freezer's worked cases (level choice and restore chains), with its bugs fixed, run with a fake clock.
 * @module
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { FrostError, UsageError } from "../../base/errors.ts";
import {
  type BackupRecord,
  chooseParent,
  type LevelPolicy,
  newBackupId,
  NoBackupError,
  parseBackupId,
  restoreChain,
  validatePolicy,
} from "../../series/levels.ts";

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const T0 = Date.UTC(2026, 10, 20, 10, 0, 0, 0);

/** One simulated run: the record committed and the reason given. */
interface Run {
  record: BackupRecord;
  reason: string;
}

/**
 * Runs `chooseParent` once per time in `times` (ms since the epoch), committing each backup to `history` the
 * way the backup command does: id from `newBackupId`, created from the id, chain from the parent.
 */
function simulate(policy: LevelPolicy, times: number[], history: BackupRecord[] = []): Run[] {
  const runs: Run[] = [];
  for (const t of times) {
    const now = new Date(t);
    const choice = chooseParent(history, policy, now);
    const id = newBackupId(now, history.map((r) => r.id));
    const record: BackupRecord = {
      id,
      level: choice.level,
      parent: choice.parent?.id ?? null,
      chain: choice.parent?.chain ?? id,
      created: parseBackupId(id),
    };
    if (choice.parent !== null) assert.equal(choice.level, choice.parent.level + 1, choice.reason);
    history.push(record);
    runs.push({ record, reason: choice.reason });
  }
  return runs;
}

/** `n` run times `step` ms apart from T0. */
function every(step: number, n: number): number[] {
  return Array.from({ length: n }, (_, i) => T0 + i * step);
}

/** The levels of each chain, chains in order of creation. */
function chainLevels(records: readonly BackupRecord[]): number[][] {
  const chains = new Map<string, number[]>();
  for (const r of records) {
    const levels = chains.get(r.chain) ?? [];
    levels.push(r.level);
    chains.set(r.chain, levels);
  }
  return [...chains.values()];
}

function records(runs: readonly Run[]): BackupRecord[] {
  return runs.map((r) => r.record);
}

/** A deterministic shuffle (so a failure reproduces). */
function shuffled<T>(items: readonly T[], seed: number): T[] {
  const out = [...items];
  let s = seed;
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

function ids(chain: readonly BackupRecord[]): string[] {
  return chain.map((r) => r.id);
}

describe("validatePolicy", () => {
  it("rejects --max-level with --always-level (Freezer let max-level win)", () => {
    assert.throws(() => validatePolicy({ maxLevel: 2, alwaysLevel: 3 }), {
      name: "UsageError",
      message: "--max-level and --always-level cannot be used together",
    });
    assert.throws(
      () => chooseParent([], { maxLevel: 2, alwaysLevel: 3, incremental: true }, new Date(T0)),
      UsageError,
    );
  });

  it("rejects negative and fractional levels and negative days", () => {
    for (const p of [{ maxLevel: -1 }, { maxLevel: 1.5 }, { alwaysLevel: -2 }, { alwaysLevel: NaN }]) {
      assert.throws(() => validatePolicy(p), UsageError, JSON.stringify(p));
    }
    assert.throws(() => validatePolicy({ maxLevel: -1 }), {
      message: 'Invalid --max-level "-1": expected a whole number of 0 or more',
    });
    assert.throws(() => validatePolicy({ restartAlwaysLevelDays: -1 }), UsageError);
    assert.throws(() => validatePolicy({ restartAlwaysLevelDays: Infinity }), UsageError);
  });

  it("accepts zero levels, fractional days and the empty policy", () => {
    validatePolicy({});
    validatePolicy({ maxLevel: 0 });
    validatePolicy({ alwaysLevel: 0, restartAlwaysLevelDays: 0.5 });
    validatePolicy({ incremental: true, restartAlwaysLevelDays: 7 });
  });
});

describe("chooseParent", () => {
  it("without a level option, 3 runs make 3 level-0 chains", () => {
    const runs = simulate({}, every(HOUR, 3));
    assert.deepEqual(chainLevels(records(runs)), [[0], [0], [0]]);
    assert.ok(runs.every((r) => r.record.parent === null && r.record.chain === r.record.id));
    assert.equal(runs[1]!.reason, "level 0: no level option");
  });

  it("without a level option, --restart-always-level changes nothing", () => {
    const runs = simulate({ restartAlwaysLevelDays: 1 }, every(HOUR, 3));
    assert.deepEqual(chainLevels(records(runs)), [[0], [0], [0]]);
  });

  it("max-level 3, 7 runs: [0,1,2,3] then [0,1,2], each built on the one before", () => {
    const runs = simulate({ maxLevel: 3, incremental: true }, every(HOUR, 7));
    const recs = records(runs);
    assert.deepEqual(chainLevels(recs), [[0, 1, 2, 3], [0, 1, 2]]);
    for (const [i, r] of recs.entries()) {
      assert.equal(r.parent, r.level === 0 ? null : recs[i - 1]!.id);
    }
    assert.equal(runs[0]!.reason, "level 0: first backup");
    assert.equal(runs[2]!.reason, `level 2 on ${recs[1]!.id} (max-level 3)`);
    assert.equal(runs[4]!.reason, `new chain: ${recs[3]!.id} is at level 3 (max-level 3)`);
  });

  it("max-level works without --incremental", () => {
    assert.deepEqual(chainLevels(records(simulate({ maxLevel: 1 }, every(HOUR, 5)))), [[0, 1], [0, 1], [0]]);
  });

  it("max-level 0 makes every backup level 0 (Freezer: no limit)", () => {
    const runs = simulate({ maxLevel: 0, incremental: true }, every(HOUR, 4));
    assert.deepEqual(chainLevels(records(runs)), [[0], [0], [0], [0]]);
    assert.equal(runs[1]!.reason, "new chain: every backup is level 0 (max-level 0)");
  });

  it("incremental alone, 5 runs: 0,1,2,3,4 in one chain", () => {
    const runs = simulate({ incremental: true }, every(HOUR, 5));
    const recs = records(runs);
    assert.deepEqual(chainLevels(recs), [[0, 1, 2, 3, 4]]);
    for (const [i, r] of recs.entries()) assert.equal(r.parent, i === 0 ? null : recs[i - 1]!.id);
    assert.equal(runs[4]!.reason, `level 4 on ${recs[3]!.id} (incremental)`);
  });

  it("always-level 2, 6 runs: 0,1,2,2,2,2 in one chain, each 2 on the 1", () => {
    const runs = simulate({ alwaysLevel: 2, incremental: true }, every(HOUR, 6));
    const recs = records(runs);
    assert.deepEqual(chainLevels(recs), [[0, 1, 2, 2, 2, 2]]);
    const one = recs[1]!;
    for (const r of recs.slice(2)) assert.equal(r.parent, one.id);
    assert.equal(runs[5]!.reason, `level 2 on ${one.id} (always-level 2)`);
  });

  it("always-level works without --incremental; always-level 0 makes only level 0", () => {
    assert.deepEqual(chainLevels(records(simulate({ alwaysLevel: 1 }, every(HOUR, 4)))), [[0, 1, 1, 1]]);
    assert.deepEqual(chainLevels(records(simulate({ alwaysLevel: 0 }, every(HOUR, 3)))), [[0], [0], [0]]);
  });

  it("always-level on a chain already above it: a level-N differential on the N-1 ancestor", () => {
    const history = records(simulate({ incremental: true }, every(HOUR, 4))); // 0,1,2,3
    const choice = chooseParent(history, { alwaysLevel: 2 }, new Date(T0 + 5 * HOUR));
    assert.equal(choice.level, 2);
    assert.equal(choice.parent, history[1]);
  });

  it("restart-always-level 1 day, runs every 36 h: every run a new level 0", () => {
    for (const policy of [{ alwaysLevel: 1 }, { maxLevel: 3 }, { incremental: true }]) {
      const runs = simulate({ ...policy, restartAlwaysLevelDays: 1 }, every(36 * HOUR, 4));
      assert.deepEqual(chainLevels(records(runs)), [[0], [0], [0], [0]], JSON.stringify(policy));
      assert.match(runs[1]!.reason, /^new chain: chain started 1\.5 days ago \(restart-always-level 1\)$/);
    }
  });

  it("always-level 1, restart 1 day, runs every 12 h: 0@0h 1@12h 1@24h, new chain at 36h", () => {
    // At 24 h the level 0 is exactly 1 day old: not "more than", so no restart yet.
    const runs = simulate({ alwaysLevel: 1, restartAlwaysLevelDays: 1 }, every(12 * HOUR, 9));
    const recs = records(runs);
    assert.deepEqual(recs.map((r) => r.level), [0, 1, 1, 0, 1, 1, 0, 1, 1]);
    assert.deepEqual(chainLevels(recs), [[0, 1, 1], [0, 1, 1], [0, 1, 1]]);
    assert.equal(recs[2]!.parent, recs[0]!.id);
    assert.equal(runs[3]!.reason, "new chain: chain started 1.5 days ago (restart-always-level 1)");
  });

  it("restart is measured from the chain's level 0, not from its newest backup (Freezer's bug)", () => {
    // Freezer measured from the top level (12 h old at every run) and never restarted here.
    const runs = simulate({ incremental: true, restartAlwaysLevelDays: 1 }, every(12 * HOUR, 6));
    assert.deepEqual(chainLevels(records(runs)), [[0, 1, 2], [0, 1, 2]]);
  });

  it("restart takes fractional days", () => {
    const runs = simulate({ incremental: true, restartAlwaysLevelDays: 0.25 }, every(4 * HOUR, 4));
    assert.deepEqual(chainLevels(records(runs)), [[0, 1], [0, 1]]); // 0h, 4h | 8h (8 h > 6 h), 12h
  });

  it("builds on the newest backup, whatever the order of the history", () => {
    const history = records(simulate({ alwaysLevel: 2 }, every(HOUR, 5)));
    const now = new Date(T0 + 6 * HOUR);
    const expected = chooseParent(history, { alwaysLevel: 2 }, now);
    for (let seed = 1; seed <= 20; seed++) {
      assert.deepEqual(chooseParent(shuffled(history, seed), { alwaysLevel: 2 }, now), expected);
    }
    const max = records(simulate({ maxLevel: 2 }, every(HOUR, 5)));
    for (let seed = 1; seed <= 20; seed++) {
      const choice = chooseParent(shuffled(max, seed), { maxLevel: 2 }, now);
      assert.equal(choice.level, 2);
      assert.equal(choice.parent, max[4]);
    }
  });

  it("breaks a tie of creation times by id", () => {
    const created = new Date(T0);
    const a: BackupRecord = { id: "a", level: 0, parent: null, chain: "a", created };
    const b: BackupRecord = { id: "b", level: 0, parent: null, chain: "b", created };
    assert.equal(chooseParent([b, a], { incremental: true }, new Date(T0 + 1)).parent, b);
    assert.equal(chooseParent([a, b], { incremental: true }, new Date(T0 + 1)).parent, b);
  });

  it("starts a new chain when the latest chain has lost a backup", () => {
    const history = records(simulate({ incremental: true }, every(HOUR, 3)));
    const broken = history.filter((r) => r.level !== 1);
    const choice = chooseParent(broken, { incremental: true }, new Date(T0 + 4 * HOUR));
    assert.equal(choice.level, 0);
    assert.equal(choice.parent, null);
    assert.equal(
      choice.reason,
      `new chain: the latest chain is broken (Backup "${history[2]!.id}" needs its parent "${
        history[1]!.id
      }", which is missing)`,
    );
  });
});

describe("restoreChain", () => {
  it("always-level 2: latest restores 0, 1 and the LAST 2 (Freezer restored an earlier one)", () => {
    const recs = records(simulate({ alwaysLevel: 2, incremental: true }, every(HOUR, 6)));
    assert.deepEqual(ids(restoreChain(recs)), [recs[0]!.id, recs[1]!.id, recs[5]!.id]);
  });

  it("always-level 2: a date just after the 2nd level 2 restores 0, 1 and that 2", () => {
    const recs = records(simulate({ alwaysLevel: 2, incremental: true }, every(HOUR, 6)));
    const second2 = recs[3]!;
    const at = new Date(second2.created.getTime() + 1000);
    assert.deepEqual(ids(restoreChain(recs, at)), [recs[0]!.id, recs[1]!.id, second2.id]);
  });

  it("a date between chains gives the older chain cut at the date (max-level 1, hourly)", () => {
    // Chains 0@T0, 1@T0+1h | 0@T0+2h.
    const recs = records(simulate({ maxLevel: 1, incremental: true }, every(HOUR, 3)));
    assert.deepEqual(chainLevels(recs), [[0, 1], [0]]);
    assert.deepEqual(ids(restoreChain(recs, new Date(T0 + 1.5 * HOUR))), [recs[0]!.id, recs[1]!.id]);
    assert.deepEqual(ids(restoreChain(recs, new Date(T0 + 0.5 * HOUR))), [recs[0]!.id]);
    assert.deepEqual(ids(restoreChain(recs)), [recs[2]!.id]);
    assert.deepEqual(ids(restoreChain(recs, new Date(T0 + 10 * DAY))), [recs[2]!.id]);
  });

  it("a date equal to a backup's creation time includes it", () => {
    const recs = records(simulate({ incremental: true }, every(HOUR, 3)));
    assert.deepEqual(ids(restoreChain(recs, recs[1]!.created)), [recs[0]!.id, recs[1]!.id]);
    assert.deepEqual(ids(restoreChain(recs, new Date(recs[1]!.created.getTime() - 1))), [recs[0]!.id]);
  });

  it("a date before the first backup is a NoBackupError the CLI can name", () => {
    const recs = records(simulate({ incremental: true }, every(HOUR, 2)));
    const at = new Date("2026-01-01T00:00:00Z");
    assert.throws(() => restoreChain(recs, at, "web1_etc"), (err) => {
      assert.ok(err instanceof NoBackupError);
      assert.ok(err instanceof FrostError);
      assert.equal(err.message, 'No backup of "web1_etc" at or before 2026-01-01T00:00:00Z');
      assert.equal(err.at, at);
      assert.equal(err.backupName, "web1_etc");
      return true;
    });
    assert.throws(() => restoreChain(recs, new Date("2026-01-01T00:00:00.250Z")), {
      name: "NoBackupError",
      message: "No backup at or before 2026-01-01T00:00:00.250Z",
    });
    assert.throws(() => restoreChain([], undefined, "web1_etc"), { message: 'No backup of "web1_etc"' });
  });

  it("a missing parent is a FrostError naming both ids", () => {
    const recs = records(simulate({ incremental: true }, every(HOUR, 3)));
    const broken = recs.filter((r) => r !== recs[1]);
    assert.throws(() => restoreChain(broken), {
      name: "FrostError",
      message: `Backup "${recs[2]!.id}" needs its parent "${recs[1]!.id}", which is missing`,
    });
    // The part of the chain before the gap still restores.
    assert.deepEqual(ids(restoreChain(broken, recs[0]!.created)), [recs[0]!.id]);
  });

  it("a parent cycle or a root above level 0 is a FrostError, not a hang", () => {
    const created = new Date(T0);
    const a: BackupRecord = { id: "a", level: 1, parent: "b", chain: "a", created };
    const b: BackupRecord = { id: "b", level: 1, parent: "a", chain: "a", created };
    assert.throws(() => restoreChain([a, b]), FrostError);
    const orphan: BackupRecord = { id: "c", level: 2, parent: null, chain: "c", created };
    assert.throws(() => restoreChain([orphan]), { message: 'Backup "c" is at level 2 but has no parent' });
  });

  it("gives the same chain whatever the order of the history", () => {
    const recs = records(simulate({ alwaysLevel: 2, restartAlwaysLevelDays: 0.2 }, every(HOUR, 12)));
    for (const at of [undefined, ...recs.map((r) => new Date(r.created.getTime() + 1))]) {
      const expected = ids(restoreChain(recs, at));
      for (let seed = 1; seed <= 10; seed++) {
        assert.deepEqual(ids(restoreChain(shuffled(recs, seed), at)), expected);
      }
    }
  });
});

describe("backup ids", () => {
  it("are the UTC time with milliseconds, and parse back", () => {
    const now = new Date("2026-11-27T10:15:00.123Z");
    assert.equal(newBackupId(now, []), "20261127T101500.123Z");
    assert.equal(parseBackupId("20261127T101500.123Z").toISOString(), "2026-11-27T10:15:00.123Z");
    assert.equal(newBackupId(new Date("0999-01-02T03:04:05.006Z"), []), "09990102T030405.006Z");
  });

  it("strictly increase when the clock repeats or goes backwards", () => {
    const existing: string[] = [];
    const times = [T0, T0, T0, T0 - HOUR, T0 + 1, T0 + 5000, T0 - DAY, T0 + 5000];
    for (const t of times) existing.push(newBackupId(new Date(t), existing));
    assert.deepEqual(existing, [...existing].sort());
    assert.equal(new Set(existing).size, existing.length);
    assert.deepEqual(existing.map((id) => parseBackupId(id).getTime() - T0), [
      0,
      1,
      2,
      3,
      4,
      5000,
      5001,
      5002,
    ]);
  });

  it("keep the clock's time when it is ahead of every existing id; ignore ids of another form", () => {
    assert.equal(
      newBackupId(new Date(T0), ["20201127T101500.123Z", "latest", "29991231T235959.999"]),
      "20261120T100000.000Z",
    );
  });

  it("reject malformed and impossible ids", () => {
    for (
      const id of [
        "",
        "20261127T101500Z",
        "20261127T101500.123",
        "20261327T101500.123Z",
        "20260230T101500.123Z",
        "20261127T241500.123Z",
        " 20261127T101500.123Z",
      ]
    ) {
      assert.throws(() => parseBackupId(id), FrostError, id);
    }
    assert.throws(() => parseBackupId("x"), {
      message: 'Parse backup id "x": expected a UTC time such as 20261127T101500.123Z',
    });
  });
});
