/**
 * planBackup() (series/backup_plan.ts): what a new backup builds on, and the notices when it cannot build on
 * the parent the level rules chose.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { planBackup } from "../../series/backup_plan.ts";
import { type Manifest, MANIFEST_FORMAT, MANIFEST_VERSION } from "../../series/manifest.ts";

function manifest(id: string, level: number, parent: string | null, chain: string, engine = "tar"): Manifest {
  const created = `${id.slice(0, 4)}-${id.slice(4, 6)}-${id.slice(6, 8)}T${id.slice(9, 11)}:${
    id.slice(11, 13)
  }:${id.slice(13, 19)}Z`;
  return {
    format: MANIFEST_FORMAT,
    version: MANIFEST_VERSION,
    id,
    name: "etc",
    hostname: "h",
    level,
    parent,
    chain,
    created,
    engine,
    compression: "zstd",
    encryption: null,
    source: "/etc",
    frost: "test",
    segments: [],
    state: [],
    totals: { files: 0, bytesIn: 0, bytesStored: 0, stateBytes: 0, warnings: 0, seconds: 0 },
  };
}

const L0 = manifest("20261201T100000.000Z", 0, null, "20261201T100000.000Z");
const L1 = manifest("20261202T100000.000Z", 1, L0.id, L0.id);
const now = new Date("2026-12-03T10:00:00.000Z");

test("planBackup()", async (t) => {
  await t.test("climbs a level on the newest backup and makes a new id, without notices", async () => {
    const notices: string[] = [];
    const plan = await planBackup({
      series: "h_etc",
      history: [L0, L1],
      policy: { maxLevel: 3 },
      engine: "tar",
      keys: {},
      now,
      onNotice: (line) => notices.push(line),
    });
    assert.equal(plan.parent?.id, L1.id);
    assert.equal(plan.level, 2);
    assert.equal(plan.keys, null);
    assert.equal(plan.parentStateKey, null);
    assert.equal(plan.id, "20261203T100000.000Z");
    assert.deepEqual(notices, []);
  });

  await t.test("starts a new chain when the parent was made with another engine, and says so", async () => {
    const notices: string[] = [];
    const plan = await planBackup({
      series: "h_etc",
      history: [L0, L1],
      policy: { maxLevel: 3 },
      engine: "rsync",
      keys: {},
      now,
      onNotice: (line) => notices.push(line),
    });
    assert.equal(plan.parent, null);
    assert.equal(plan.level, 0);
    assert.equal(notices.length, 1);
    assert.match(
      notices[0]!,
      /made with the tar engine, this backup uses rsync: starting a new chain at level 0/,
    );
  });

  await t.test("builds only on backups every storage holds, and says how many are left out", async () => {
    const notices: string[] = [];
    const plan = await planBackup({
      series: "h_etc",
      history: [L0, L1],
      usable: [L0],
      policy: { maxLevel: 3 },
      engine: "tar",
      keys: {},
      now,
      onNotice: (line) => notices.push(line),
    });
    assert.equal(plan.parent?.id, L0.id);
    assert.equal(plan.level, 1);
    assert.match(notices[0]!, /^frost: 1 backup is not on every storage/);
  });

  await t.test("a --stdin backup is always level 0", async () => {
    const plan = await planBackup({
      series: "h_etc",
      history: [L0, L1],
      policy: { maxLevel: 3 },
      engine: "stdin",
      fromStdin: true,
      keys: {},
      now,
    });
    assert.equal(plan.parent, null);
    assert.equal(plan.level, 0);
  });
});
