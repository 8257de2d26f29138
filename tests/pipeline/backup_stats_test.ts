/**
 * `frost backup --stats`: the per-stage breakdown on stderr and, with --json, as `stats`.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { cleanup, frost, pseudoRandom, tempDir } from "../_cli.ts";

interface Stage {
  seconds: number;
  bytes?: number;
}

interface StatsSummary {
  bytesIn: number;
  bytesStored: number;
  seconds: number;
  stats: {
    wallSeconds: number;
    walk: Stage;
    read: Stage;
    tar: Stage;
    engineBusy: Stage;
    compress: { seconds: number; bytesIn: number; bytesOut: number };
    encrypt: Stage | null;
    hash: Stage;
    store: { seconds: number; bytes: number; objects: number };
    backpressure: { engineWaitSeconds: number; queueWaitSeconds: number };
  };
}

describe("frost backup --stats", () => {
  let work: string;
  let src: string;
  let fileBytes = 0;
  before(() => {
    work = tempDir("stats");
    src = path.join(work, "src");
    fs.mkdirSync(path.join(src, "a/b"), { recursive: true });
    const files: [string, Uint8Array][] = [
      ["big.bin", pseudoRandom(3_000_000, 1)],
      ["a/text", new TextEncoder().encode("hello stats\n".repeat(20_000))],
      ["a/b/small", new Uint8Array([1, 2, 3])],
    ];
    for (const [name, bytes] of files) {
      fs.writeFileSync(path.join(src, name), bytes);
      fileBytes += bytes.byteLength;
    }
  });
  after(() => cleanup(work));

  it("--json has a stats object whose stages add up with the summary", async () => {
    const store = path.join(work, "store");
    const r = await frost([
      "backup",
      src,
      "--name",
      "s",
      "--hostname",
      "h",
      "--storage",
      store,
      "--segment-size",
      "1M",
      "--stats",
      "--json",
    ], { env: { FROST_CACHE_DIR: path.join(work, "cache") } });
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as StatsSummary;
    const s = out.stats;
    assert.equal(out.bytesIn, fileBytes);
    assert.equal(s.read.bytes, fileBytes, "read = the file bytes");
    assert.ok(s.compress.bytesIn > fileBytes, "compress reads the whole archive, headers included");
    assert.equal(s.compress.bytesOut, out.bytesStored, "unencrypted: compressed bytes = stored bytes");
    assert.equal(s.hash.bytes, out.bytesStored);
    assert.equal(s.store.bytes, out.bytesStored);
    assert.equal(s.store.objects, Math.ceil(out.bytesStored / (1 << 20)), "one object per data segment");
    assert.equal(s.encrypt, null);
    for (
      const [name, v] of Object.entries({
        wall: s.wallSeconds,
        walk: s.walk.seconds,
        read: s.read.seconds,
        tar: s.tar.seconds,
        compress: s.compress.seconds,
        hash: s.hash.seconds,
        store: s.store.seconds,
        engineWait: s.backpressure.engineWaitSeconds,
        queueWait: s.backpressure.queueWaitSeconds,
      })
    ) {
      assert.ok(Number.isFinite(v) && v >= 0, `${name}: ${v}`);
    }
    assert.ok(
      s.wallSeconds > 0 && s.wallSeconds <= out.seconds + 0.05,
      `wall ${s.wallSeconds} vs ${out.seconds}`,
    );
    assert.ok(s.engineBusy.seconds <= s.wallSeconds + 0.05);
    assert.ok(s.walk.seconds + s.read.seconds <= s.engineBusy.seconds + 0.01);
    assert.match(r.stderr, /where the time went/);
    assert.match(r.stderr, /\n {2}compress +\d+\.\d\d/);
  });

  it("without --stats there is no stats object and no table", async () => {
    const store = path.join(work, "store2");
    const r = await frost(["backup", src, "--name", "s", "--hostname", "h", "--storage", store, "--json"], {
      env: { FROST_CACHE_DIR: path.join(work, "cache") },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { stats?: unknown }).stats, undefined);
    assert.doesNotMatch(r.stderr, /where the time went/);
  });

  it("an encrypted backup reports its encryption stage", async () => {
    const store = path.join(work, "store3");
    const pass = path.join(work, "pass");
    fs.writeFileSync(pass, "correct horse\n");
    const r = await frost(
      ["backup", src, "--name", "s", "--hostname", "h", "--storage", store, "--stats", "--json"].concat([
        "--encrypt-pass-file",
        pass,
      ]),
      { env: { FROST_CACHE_DIR: path.join(work, "cache") } },
    );
    assert.equal(r.code, 0, r.stderr);
    const s = (JSON.parse(r.stdout) as StatsSummary).stats;
    assert.ok(s.encrypt !== null && s.encrypt.bytes === s.compress.bytesOut, JSON.stringify(s.encrypt));
    assert.ok(s.store.bytes >= s.compress.bytesOut, "encryption adds tags");
  });
});
