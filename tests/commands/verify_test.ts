/**
 * `frost verify`: passes on a clean store, and names every injected fault (deleted, truncated and corrupt
 * segments, a missing state object, a missing parent manifest) with exit code 1.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { cleanup, frost, pseudoRandom, tempDir } from "../_cli.ts";

interface Listed {
  id: string;
  level: number;
  parent: string | null;
}

interface ManifestFile {
  segments: { key: string; size: number }[];
  state: { key: string; size: number }[];
}

describe("frost verify", () => {
  let work: string;
  let store: string;
  let encStore: string;
  let pass: string;
  let ids: Listed[];
  let n = 0;

  const common = (s: string) => ["--name", "v", "--hostname", "h1", "--storage", s];

  before(async () => {
    work = tempDir("verify");
    const src = path.join(work, "src");
    fs.mkdirSync(path.join(src, "sub"), { recursive: true });
    fs.writeFileSync(path.join(src, "random.bin"), pseudoRandom(40_000, 3));
    fs.writeFileSync(path.join(src, "sub", "text.txt"), "hello\n".repeat(1000));
    store = path.join(work, "store");
    encStore = path.join(work, "enc-store");
    pass = path.join(work, "pass");
    fs.writeFileSync(pass, "correct horse battery staple\n");
    for (let i = 0; i < 3; i++) {
      fs.writeFileSync(path.join(src, `file${i}.bin`), pseudoRandom(10_000, 10 + i));
      for (const [s, extra] of [[store, []], [encStore, ["--encrypt-pass-file", pass]]] as const) {
        const r = await frost([
          "backup",
          src,
          ...common(s),
          "--max-level",
          "3",
          "--segment-size",
          "4K",
          ...extra,
        ]);
        assert.equal(r.code, 0, r.stderr);
      }
    }
    const r = await frost(["list", ...common(store), "--json"]);
    ids = JSON.parse(r.stdout) as Listed[];
    assert.equal(ids.length, 3);
  });

  after(() => cleanup(work));

  /** A copy of the clean store to damage. */
  function copy(): string {
    const to = path.join(work, `copy${n++}`);
    execFileSync("cp", ["-a", store, to]);
    return to;
  }

  function manifestOf(s: string, id: string): ManifestFile {
    return JSON.parse(
      fs.readFileSync(path.join(s, "h1_v", "manifests", `${id}.json`), "utf8"),
    ) as ManifestFile;
  }

  it("passes on a clean store, quick and with --read-data", async () => {
    for (
      const extra of [[], ["--read-data"], ["--all"], ["--all", "--read-data"], [
        "--read-data",
        "--sample",
        "50%",
      ]]
    ) {
      const r = await frost(["verify", ...common(store), ...extra]);
      assert.equal(r.code, 0, `verify ${extra.join(" ")}: ${r.stderr}`);
      assert.match(r.stdout, /^OK: h1_v/);
      assert.equal(r.stderr, "");
    }
    const r = await frost(["verify", ...common(store), "--json"]);
    const result = JSON.parse(r.stdout);
    assert.equal(result.ok, true);
    assert.deepEqual(result.backups, ids.map((b) => b.id));
    assert.deepEqual(result.problems, []);
  });

  it("verifies encrypted backups with the passphrase", async () => {
    const r = await frost(["verify", ...common(encStore), "--read-data", "--encrypt-pass-file", pass]);
    assert.equal(r.code, 0, r.stderr);
    const quick = await frost(["verify", ...common(encStore)]);
    assert.equal(quick.code, 0, quick.stderr);
    const noKey = await frost(["verify", ...common(encStore), "--read-data"], {
      env: { FROST_PASSPHRASE: "" },
    });
    assert.notEqual(noKey.code, 0);
    assert.match(noKey.stderr, /encrypted/);
  });

  it("names a deleted data segment", async () => {
    const s = copy();
    const key = manifestOf(s, ids[0]!.id).segments[1]!.key;
    fs.rmSync(path.join(s, key));
    for (const extra of [[], ["--read-data"]]) {
      const r = await frost(["verify", ...common(s), ...extra]);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, new RegExp(`BAD ${escape(key)}: .*missing`));
      assert.match(r.stderr, /FAILED: .*1 bad object/);
    }
  });

  it("names a truncated segment", async () => {
    const s = copy();
    const ref = manifestOf(s, ids[1]!.id).segments[0]!;
    fs.truncateSync(path.join(s, ref.key), ref.size - 10);
    for (const extra of [[], ["--read-data"]]) {
      const r = await frost(["verify", ...common(s), ...extra]);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, new RegExp(`BAD ${escape(ref.key)}: .*${ref.size - 10} bytes`));
    }
  });

  it("finds a flipped byte with --read-data only", async () => {
    const s = copy();
    const ref = manifestOf(s, ids[2]!.id).segments[0]!;
    const file = path.join(s, ref.key);
    const bytes = fs.readFileSync(file);
    bytes[Math.floor(bytes.length / 2)]! ^= 0x01;
    fs.writeFileSync(file, bytes);
    const quick = await frost(["verify", ...common(s)]);
    assert.equal(quick.code, 0, quick.stderr);
    const r = await frost(["verify", ...common(s), "--read-data"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`BAD ${escape(ref.key)}: checksum mismatch`));
    assert.equal(r.stderr.split("\n").filter((l) => l.includes("BAD ")).length, 1, r.stderr);
  });

  it("decodes the archive: a damaged stream with matching checksums is named by its backup", async () => {
    const s = copy();
    const id = ids[0]!.id;
    const manifestFile = path.join(s, "h1_v", "manifests", `${id}.json`);
    const manifest = JSON.parse(fs.readFileSync(manifestFile, "utf8"));
    const ref = manifest.segments[manifest.segments.length - 1];
    const file = path.join(s, ref.key);
    const bytes = fs.readFileSync(file).subarray(0, ref.size - 8); // cut the end of the compressed stream
    fs.writeFileSync(file, bytes);
    ref.size = bytes.length;
    ref.sha256 = createHash("sha256").update(bytes).digest("hex");
    fs.writeFileSync(manifestFile, JSON.stringify(manifest));
    const quick = await frost(["verify", ...common(s)]);
    assert.equal(quick.code, 0, quick.stderr);
    const r = await frost(["verify", ...common(s), "--read-data"]);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      new RegExp(`BAD h1_v/manifests/${escape(id)}.json: the data stream of backup .* does not decode`),
    );
  });

  it("names a missing state object", async () => {
    const s = copy();
    const key = manifestOf(s, ids[0]!.id).state[0]!.key;
    fs.rmSync(path.join(s, key));
    const r = await frost(["verify", ...common(s)]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`BAD ${escape(key)}: missing`));
  });

  it("names every bad object, and only checks the chain unless --all", async () => {
    const s = copy();
    const first = manifestOf(s, ids[0]!.id).segments[0]!.key;
    const last = manifestOf(s, ids[2]!.id).state[0]!.key;
    fs.rmSync(path.join(s, first));
    fs.rmSync(path.join(s, last));
    const r = await frost(["verify", ...common(s)]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`BAD ${escape(first)}: missing`));
    assert.match(r.stderr, new RegExp(`BAD ${escape(last)}: missing`));
    // The chain of the first backup alone does not include the newest one.
    const early = await frost(["verify", ...common(s), "--date", isoOf(ids[0]!.id)]);
    assert.equal(early.code, 1);
    assert.match(early.stderr, new RegExp(`BAD ${escape(first)}`));
    assert.doesNotMatch(early.stderr, new RegExp(escape(last)));
  });

  it("names a missing parent manifest", async () => {
    const s = copy();
    const key = `h1_v/manifests/${ids[1]!.id}.json`;
    fs.rmSync(path.join(s, key));
    for (const extra of [[], ["--all"]]) {
      const r = await frost(["verify", ...common(s), ...extra]);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, new RegExp(`BAD ${escape(key)}: missing`));
    }
  });

  it("names an unreadable manifest, and --sample 100% finds a flipped byte", async () => {
    const s = copy();
    const key = `h1_v/manifests/${ids[2]!.id}.json`;
    fs.writeFileSync(path.join(s, key), "{ not json");
    const r = await frost(["verify", ...common(s), "--all"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`BAD ${escape(key)}: unreadable manifest`));

    const t = copy();
    const ref = manifestOf(t, ids[0]!.id).state[0]!;
    const bytes = fs.readFileSync(path.join(t, ref.key));
    bytes[0]! ^= 0x80;
    fs.writeFileSync(path.join(t, ref.key), bytes);
    const sampled = await frost(["verify", ...common(t), "--read-data", "--sample", "100%"]);
    assert.equal(sampled.code, 1);
    assert.match(sampled.stderr, new RegExp(`BAD ${escape(ref.key)}: checksum mismatch`));
  });

  it("rejects bad options", async () => {
    assert.equal((await frost(["verify", ...common(store), "--sample", "10%"])).code, 2);
    assert.equal((await frost(["verify", ...common(store), "--read-data", "--sample", "0%"])).code, 2);
    assert.equal((await frost(["verify", "--storage", store])).code, 2);
  });
});

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** `20261127T101500.123Z` → ISO 8601. */
function isoOf(id: string): string {
  return id.replace(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})/, "$1-$2-$3T$4:$5:$6");
}
