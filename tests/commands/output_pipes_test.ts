/**
 * Output through real pipes: every byte frost prints reaches a slow reader before frost exits (the Bun binary
 * used to cut piped output at 64 KiB), and a reader that closes the pipe early (`| head -1`) ends frost quietly
 * with exit code 141. Runs main.ts, or the binary with FROST_BIN=dist/frost.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { spawnSync } from "node:child_process";
import { cleanup, frost, frostCommand, pseudoRandom, tempDir } from "../_cli.ts";

const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

/** The shell words that run frost with `args`. */
function frostLine(args: string[]): string {
  return [...frostCommand(), ...args].map(quote).join(" ");
}

/** Runs `frost args | reader > out` in bash with pipefail; returns frost's exit code, its stderr and `out`. */
function piped(args: string[], reader: string, out: string) {
  const errFile = `${out}.err`;
  const r = spawnSync("bash", [
    "-c",
    `set -o pipefail; ${frostLine(args)} 2>${quote(errFile)} | ${reader} >${quote(out)}`,
  ], { env: { ...process.env, NO_COLOR: "1" } });
  return { code: r.status, stderr: fs.readFileSync(errFile, "utf8") };
}

/** Reads its input late, then all of it: frost fills the pipe and has to wait for it. */
const LATE_READER = "(sleep 0.2; cat)";
/** Reads 64 KiB at a time with a pause after each, all along the stream. */
const SLOW_READER =
  `perl -e 'while (sysread(STDIN, $b, 65536)) { print $b; select(undef, undef, undef, 0.001) }'`;

describe("frost output through pipes", () => {
  let work: string;
  let store: string;
  const common = () => ["--storage", store, "--hostname", "h1"];
  let bigSha = "";
  const BIG = 200 * 1024 * 1024 + 12345;

  before(async () => {
    work = tempDir("pipes");
    store = path.join(work, "store");
    const src = path.join(work, "src");
    fs.mkdirSync(src);
    // Enough entries that `ls --json` and `restore --dry-run --json` print more than twice a pipe's 64 KiB.
    for (let i = 0; i < 2500; i++) {
      fs.writeFileSync(path.join(src, `a file with a rather long name, number ${i}.txt`), `${i}\n`);
    }
    let r = await frost(["backup", src, "--name", "tree", ...common()]);
    assert.equal(r.code, 0, r.stderr);
    // 600 more backups of the series for `list --json`, as manifests alike the real one (listing reads
    // manifests only): far quicker than 600 backups.
    const manifests = path.join(store, "h1_tree", "manifests");
    const [first] = fs.readdirSync(manifests);
    const manifest = JSON.parse(fs.readFileSync(path.join(manifests, first!), "utf8"));
    const start = Date.parse(manifest.created);
    for (let i = 1; i <= 600; i++) {
      const created = new Date(start - i * 60_000).toISOString();
      const id = created.replace(/[-:]/g, "");
      fs.writeFileSync(
        path.join(manifests, `${id}.json`),
        JSON.stringify({ ...manifest, id, chain: id, created }, null, 2) + "\n",
      );
    }
    // A stream of 200 MiB for `restore --stdout`.
    const big = path.join(work, "big.bin");
    const data = pseudoRandom(BIG, 3);
    fs.writeFileSync(big, data);
    bigSha = crypto.createHash("sha256").update(data).digest("hex");
    r = await frost(["backup", "--stdin", "--name", "stream", "--compression", "none", ...common()], {
      stdinFile: big,
    });
    assert.equal(r.code, 0, r.stderr);
    fs.rmSync(big);
    // A backup cut into 3000 segments, all deleted: `verify` names each one on stderr (210 KiB).
    const segs = path.join(work, "segs");
    fs.mkdirSync(segs);
    fs.writeFileSync(path.join(segs, "f.bin"), pseudoRandom(3000 * 4096, 4));
    r = await frost([
      "backup",
      segs,
      "--name",
      "segs",
      "--segment-size",
      "4K",
      "--compression",
      "none",
      ...common(),
    ]);
    assert.equal(r.code, 0, r.stderr);
    const backups = path.join(store, "h1_segs", "backups");
    for (const id of fs.readdirSync(backups)) fs.rmSync(path.join(backups, id, "data"), { recursive: true });
  });

  after(() => cleanup(work));

  const outputs: [string, () => string[]][] = [
    ["ls --json", () => ["ls", "--name", "tree", "--json", ...common()]],
    ["list --json", () => ["list", "--name", "tree", "--json", ...common()]],
    [
      "restore --dry-run --json",
      () => [
        "restore",
        "--name",
        "tree",
        "--to",
        path.join(work, "nowhere"),
        "--dry-run",
        "--json",
        ...common(),
      ],
    ],
  ];

  for (const [what, args] of outputs) {
    it(`${what} reaches a late reader whole, 20 times out of 20`, async () => {
      const reference = path.join(work, "reference.json");
      const r = await frost(args(), { stdoutFile: reference });
      assert.equal(r.code, 0, r.stderr);
      const expected = fs.readFileSync(reference);
      assert.ok(expected.byteLength > 2 * 65536, `${what} prints ${expected.byteLength} bytes: too few`);
      JSON.parse(expected.toString("utf8"));
      const out = path.join(work, "out.json");
      for (let run = 1; run <= 20; run++) {
        const p = piped(args(), LATE_READER, out);
        assert.equal(p.code, 0, `run ${run}: ${p.stderr}`);
        const got = fs.readFileSync(out);
        assert.equal(got.byteLength, expected.byteLength, `run ${run}: ${got.byteLength} bytes`);
        assert.ok(got.equals(expected), `run ${run}: the output differs`);
      }
    });
  }

  it("stderr (verify naming 3000 missing segments) reaches a late reader whole, 20 times out of 20", async () => {
    const args = ["verify", "--name", "segs", ...common()];
    const r = await frost(args);
    assert.equal(r.code, 1);
    const expected = r.stderr;
    assert.ok(expected.length > 2 * 65536, `verify prints ${expected.length} bytes: too few`);
    const out = path.join(work, "err.txt");
    for (let run = 1; run <= 20; run++) {
      const p = spawnSync("bash", [
        "-c",
        `set -o pipefail; ${frostLine(args)} 2>&1 >/dev/null | ${LATE_READER} >${quote(out)}`,
      ], { env: { ...process.env, NO_COLOR: "1" } });
      assert.equal(p.status, 1, `run ${run}`);
      const got = fs.readFileSync(out, "utf8");
      assert.equal(got.length, expected.length, `run ${run}: ${got.length} characters`);
      assert.equal(got, expected, `run ${run}: stderr differs`);
    }
  });

  it("restore --stdout streams 200 MiB to a slow reader byte for byte, 3 times out of 3", () => {
    const out = path.join(work, "restored.bin");
    for (let run = 1; run <= 3; run++) {
      const p = piped(["restore", "--name", "stream", "--stdout", ...common()], SLOW_READER, out);
      assert.equal(p.code, 0, `run ${run}: ${p.stderr}`);
      assert.equal(fs.statSync(out).size, BIG, `run ${run}`);
      const sha = crypto.createHash("sha256").update(fs.readFileSync(out)).digest("hex");
      assert.equal(sha, bigSha, `run ${run}: the stream differs`);
    }
  });

  it("a reader that closes the pipe (| head -1) ends frost quietly with exit code 141", () => {
    const out = path.join(work, "head.txt");
    for (
      const args of [...outputs.map(([, a]) => a()), ["restore", "--name", "stream", "--stdout", ...common()]]
    ) {
      const p = piped(args, "head -c 1", out);
      assert.equal(p.code, 141, `frost ${args[0]}: exit ${p.code}: ${p.stderr}`);
      // Only the line naming the chosen backup (ls, restore) may precede: no error, no stack.
      const said = p.stderr.split("\n").filter((l) =>
        l !== "" && !/^(listing|restoring|planning the restore of) \S+ level \d+, /.test(l)
      );
      assert.deepEqual(said, [], `frost ${args[0]} printed on stderr`);
      assert.equal(fs.readFileSync(out).byteLength, 1);
    }
  });
});
