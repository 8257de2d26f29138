/**
 * Sparse files end to end, through the real frost (main.ts, or dist/frost with FROST_BIN=dist/frost): levels
 * 0..2 of a tree with sparse files restored at every point with the same content and their holes as holes,
 * the level-0 data restored by GNU tar, and Freezer containers made with GNU tar --sparse.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { execFileSync, execSync } from "node:child_process";
import { cleanup, copyTree, frost, tempDir } from "../_cli.ts";
import { assertSameTree } from "../_tree.ts";
import { sparseLayout } from "../../engines/_sparse.ts";

const KiB = 1024;
const MiB = 1024 * KiB;

interface Summary {
  id: string;
  level: number;
  bytesIn: number;
  bytesStored: number;
}

async function ok(args: string[]) {
  const r = await frost(args);
  assert.equal(r.code, 0, `frost ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r;
}

const sleepMs = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Writes `text` (repeated to `length` bytes) at `offset` of `file`, creating it; then sets its size. */
function writeAt(file: string, parts: [offset: number, length: number, fill: string][], size?: number) {
  const fd = fs.openSync(file, fs.existsSync(file) ? "r+" : "w");
  for (const [offset, length, fill] of parts) {
    const bytes = Buffer.alloc(length, fill);
    fs.writeSync(fd, bytes, 0, length, offset);
  }
  if (size !== undefined) fs.ftruncateSync(fd, size);
  fs.closeSync(fd);
}

/** Bytes allocated to a file (`du`'s measure). */
function allocated(file: string): number {
  return fs.statSync(file).blocks * 512;
}

/** Whether the file system of `dir` keeps holes (a file truncated to 8 MiB takes no space). */
function keepsHoles(dir: string): boolean {
  const probe = path.join(dir, "hole-probe");
  fs.writeFileSync(probe, "x");
  fs.truncateSync(probe, 8 * MiB);
  const yes = allocated(probe) < 1 * MiB;
  fs.rmSync(probe);
  return yes;
}

/** Asserts every file of `sizes` (path under `root` → bytes at most allocated) is that small. */
function assertSmall(root: string, limits: Record<string, number>, what: string) {
  for (const [rel, limit] of Object.entries(limits)) {
    const got = allocated(path.join(root, rel));
    assert.ok(got <= limit, `${what}: ${rel} has ${got} bytes allocated, expected at most ${limit}`);
  }
}

/** The sparse files of each level and the most space each may take once restored. */
const LIMITS: Record<string, number>[] = [
  { "vm.img": 64 * KiB, "all-hole": 8 * KiB, "dir/db.sparse": 64 * KiB },
  { "vm.img": 96 * KiB, "all-hole": 64 * KiB, "dir/db.sparse": 64 * KiB },
  { "vm.img": 96 * KiB, "all-hole": 64 * KiB, "dir/db.sparse": 64 * KiB, "new.sparse": 64 * KiB },
];

describe("sparse files", () => {
  let work: string;
  let src: string;
  let store: string;
  let holes: boolean;
  const expected: string[] = [];
  const points: Summary[] = [];
  const created: string[] = [];

  before(async () => {
    work = tempDir("sparse");
    src = path.join(work, "src");
    store = path.join(work, "store");
    fs.mkdirSync(path.join(src, "dir"), { recursive: true });
    holes = keepsHoles(work);
    // Data at the start, in the middle and near the end, then a trailing hole.
    writeAt(path.join(src, "vm.img"), [[0, 4 * KiB, "A"], [3 * MiB, 8 * KiB, "B"], [
      7 * MiB + 100,
      3000,
      "C",
    ]], 9 * MiB);
    // A file that is all hole.
    writeAt(path.join(src, "all-hole"), [], 5 * MiB);
    // Data that ends in the middle of a block, then a hole, then data up to the end.
    writeAt(path.join(src, "dir/db.sparse"), [[0, 700, "d"], [2 * MiB, 5000, "e"]]);
    // Not sparse, but mostly zero blocks: stored and restored byte for byte.
    writeAt(path.join(src, "zeros.bin"), [[0, 256 * KiB, "\0"], [100 * KiB, 1, "z"]]);
    fs.writeFileSync(path.join(src, "plain.txt"), "plain\n");
    const common = ["--name", "sp", "--hostname", "h1", "--storage", store, "--max-level", "2"];
    const level = async (i: number) => {
      await sleepMs(1500); // changes within a second of a backup are re-read by the next level anyway
      const dst = path.join(work, `expected${i}`);
      copyTree(src, dst);
      expected.push(dst);
      const r = await ok(["backup", src, ...common, "--json"]);
      points.push(JSON.parse(r.stdout) as Summary);
      const listed = JSON.parse(
        (await ok(["list", "--storage", store, "--name", "sp", "--hostname", "h1", "--json"])).stdout,
      ) as { id: string; created: string }[];
      created.push(listed.find((l) => l.id === points[i]!.id)!.created);
    };
    await level(0);
    // Level 1: data written into the hole of vm.img, all-hole replaced by a new file with data.
    writeAt(path.join(src, "vm.img"), [[5 * MiB, 4 * KiB, "D"]]);
    fs.rmSync(path.join(src, "all-hole"));
    writeAt(path.join(src, "all-hole"), [[1 * MiB, 10, "F"]], 6 * MiB);
    await level(1);
    // Level 2: vm.img cut short (its end now a hole of another size), a new sparse file, zeros.bin changed.
    fs.truncateSync(path.join(src, "vm.img"), 6 * MiB);
    fs.truncateSync(path.join(src, "vm.img"), 8 * MiB);
    writeAt(path.join(src, "new.sparse"), [[4 * MiB, 1, "n"]], 4 * MiB + 1);
    writeAt(path.join(src, "zeros.bin"), [[200 * KiB, 1, "y"]]);
    await level(2);
  });
  after(() => cleanup(work));

  it("backs up levels 0..2 without reading or storing the holes", () => {
    assert.deepEqual(points.map((p) => p.level), [0, 1, 2]);
    for (const p of points) {
      assert.ok(p.bytesIn < 1 * MiB, `level ${p.level} read ${p.bytesIn} bytes`);
      assert.ok(p.bytesStored < 64 * KiB, `level ${p.level} stored ${p.bytesStored} bytes`);
    }
  });

  it("restores every point with the same content, the holes as holes", async () => {
    for (let i = 0; i < 3; i++) {
      const to = path.join(work, `restored${i}`);
      await ok([
        "restore",
        "--name",
        "sp",
        "--hostname",
        "h1",
        "--storage",
        store,
        "--to",
        to,
        "--date",
        created[i]!,
      ]);
      assertSameTree(expected[i]!, to);
      for (const name of fs.readdirSync(expected[i]!, { recursive: true }) as string[]) {
        const file = path.join(expected[i]!, name);
        if (fs.statSync(file).isFile()) execFileSync("cmp", [file, path.join(to, name)]);
      }
      if (holes) assertSmall(to, LIMITS[i]!, `restore of level ${i}`);
    }
  });

  it("lists the real sizes", async () => {
    const r = await ok(["ls", "--name", "sp", "--hostname", "h1", "--storage", store, "--json"]);
    const sizes = Object.fromEntries(
      (JSON.parse(r.stdout) as { path: string; size: number }[]).map((e) => [e.path, e.size]),
    );
    assert.equal(sizes["vm.img"], 8 * MiB);
    assert.equal(sizes["all-hole"], 6 * MiB);
    assert.equal(sizes["new.sparse"], 4 * MiB + 1);
    assert.equal(sizes["dir/db.sparse"], 2 * MiB + 5000);
  });

  it("writes level-0 data that GNU tar restores with its holes (zstd -d | tar --incremental -x)", () => {
    const out = path.join(work, "gnutar");
    fs.mkdirSync(out);
    const segDir = path.join(store, "h1_sp", "backups", points[0]!.id, "data");
    const segs = fs.readdirSync(segDir).sort().map((s) => `'${path.join(segDir, s)}'`);
    execSync(`cat ${segs.join(" ")} | zstd -dc | tar -x --incremental -C '${out}'`);
    assertSameTree(expected[0]!, out);
    if (holes) assertSmall(out, LIMITS[0]!, "GNU tar's restore of level 0");
  });

  it("writes levels that GNU tar replays (levels 0, 1, 2 with --incremental), holes kept", () => {
    const out = path.join(work, "gnutar-chain");
    fs.mkdirSync(out);
    for (let i = 0; i < 3; i++) {
      const segDir = path.join(store, "h1_sp", "backups", points[i]!.id, "data");
      const segs = fs.readdirSync(segDir).sort().map((s) => `'${path.join(segDir, s)}'`);
      execSync(`cat ${segs.join(" ")} | zstd -dc | tar -x --incremental -C '${out}'`);
      assertSameTree(expected[i]!, out);
      if (holes) assertSmall(out, LIMITS[i]!, `GNU tar's restore of levels 0..${i}`);
    }
  });

  it("restores Freezer containers made with GNU tar --sparse (gnu and posix formats, levels 0 and 1)", async () => {
    for (const format of ["gnu", "posix"]) {
      const root = path.join(work, `freezer-${format}`);
      const fsrc = path.join(work, `freezer-src-${format}`);
      copyTree(expected[0]!, fsrc);
      const snar = path.join(work, `snar-${format}`);
      const z = 1700000000;
      const snapshots: string[] = [];
      for (let level = 0; level < 2; level++) {
        if (level === 1) {
          writeAt(path.join(fsrc, "vm.img"), [[6 * MiB, 4 * KiB, "G"]]);
          fs.rmSync(path.join(fsrc, "all-hole"));
          writeAt(path.join(fsrc, "all-hole"), [[2 * MiB, 3, "H"]], 7 * MiB);
          await sleepMs(1100);
        }
        snapshots.push(path.join(work, `freezer-expected-${format}${level}`));
        copyTree(fsrc, snapshots[level]!);
        // Freezer's tar engine command, with --sparse.
        const data = execFileSync("tar", [
          "--create",
          "-z",
          "--warning=none",
          "--no-check-device",
          "--one-file-system",
          "--preserve-permissions",
          "--same-owner",
          "--seek",
          "--ignore-failed-read",
          "--sparse",
          `--format=${format}`,
          `--listed-incremental=${snar}`,
          ".",
        ], { cwd: fsrc, maxBuffer: 64 * MiB });
        const dir = `${z}/${level}_${z + 60 * level}`;
        const put = (key: string, bytes: Uint8Array | string) => {
          fs.mkdirSync(path.dirname(path.join(root, key)), { recursive: true });
          fs.writeFileSync(path.join(root, key), bytes);
        };
        put(
          `metadata/tar/web1_etc/${dir}/metadata`,
          JSON.stringify({ engine_name: "tar", compression: "gzip", encryption: false }),
        );
        put(`data/tar/web1_etc/${dir}/engine_metadata`, "snar");
        put(`data/tar/web1_etc/${dir}/data`, data);
      }
      for (let level = 0; level < 2; level++) {
        const to = path.join(work, `freezer-restored-${format}${level}`);
        const date = new Date((z + 60 * level + 30) * 1000).toISOString();
        await ok([
          "freezer",
          "restore",
          ...["--storage", root, "--hostname", "web1", "--name", "etc", "--to", to, "--date", date],
        ]);
        assertSameTree(snapshots[level]!, to, { mtimePrecisionNs: format === "gnu" ? 1_000_000_000n : 0n });
        if (holes) assertSmall(to, LIMITS[level === 0 ? 0 : 1]!, `Freezer ${format} level ${level}`);
      }
    }
  });

  it("the rsync engine backs up levels 0 and 1 without reading the holes and restores them as holes", async () => {
    const rstore = path.join(work, "rsync-store");
    const common = ["--name", "sr", "--hostname", "h1", "--storage", rstore];
    const backup = async () =>
      JSON.parse(
        (await ok(["backup", src, ...common, "--engine", "rsync", "--max-level", "1", "--json"])).stdout,
      ) as Summary;
    const l0 = await backup();
    const to = path.join(work, "rsync-restored");
    const restored = JSON.parse((await ok(["restore", ...common, "--to", to, "--json"])).stdout);
    assertSameTree(expected[2]!, to);
    // Holes are not written, and the summary does not count them as written (vm.img alone is 9 MiB).
    if (holes) assert.ok(restored.bytes < 1 * MiB, `rsync restore says ${restored.bytes} bytes written`);
    if (holes) assertSmall(to, LIMITS[2]!, "rsync restore");
    // Level 1: data written into vm.img's hole and at its end, sent as a delta against level 0.
    await sleepMs(1500);
    writeAt(path.join(src, "vm.img"), [[2 * MiB + 5, 3000, "R"], [8 * MiB - 100, 100, "S"]]);
    const expected1 = path.join(work, "rsync-expected1");
    copyTree(src, expected1);
    const l1 = await backup();
    assert.equal(l1.level, 1);
    for (const p of [l0, l1]) {
      if (holes) assert.ok(p.bytesIn < 1 * MiB, `rsync level ${p.level} read ${p.bytesIn} bytes`);
      assert.ok(p.bytesStored < 64 * KiB, `rsync level ${p.level} stored ${p.bytesStored} bytes`);
    }
    const to1 = path.join(work, "rsync-restored1");
    await ok(["restore", ...common, "--to", to1]);
    assertSameTree(expected1, to1);
    execFileSync("cmp", [path.join(expected1, "vm.img"), path.join(to1, "vm.img")]);
    if (holes) assertSmall(to1, { ...LIMITS[2]!, "vm.img": 128 * KiB }, "rsync restore of level 1");
  });
});

describe("sparseLayout()", () => {
  it("finds the same data regions by reading zero blocks as by SEEK_DATA/SEEK_HOLE", () => {
    const work = tempDir("sparse-layout");
    try {
      const file = path.join(work, "f");
      writeAt(file, [[0, 700, "a"], [64 * KiB, 8 * KiB, "b"], [3 * MiB + 5, 10, "c"]], 5 * MiB);
      const fd = fs.openSync(file, "r");
      try {
        const read = sparseLayout(fd, 5 * MiB, { seek: false })!;
        // Whole 4 KiB blocks that are not all zeros, and an empty region at the end: a trailing hole.
        assert.deepEqual(read.regions, [0, 4 * KiB, 64 * KiB, 8 * KiB, 3 * MiB, 4 * KiB, 5 * MiB, 0]);
        assert.equal(
          new TextDecoder().decode(read.text).replace(/\0+$/, ""),
          `4\n${read.regions.join("\n")}\n`,
        );
        assert.equal(read.stored, 512 + 16 * KiB);
        if (keepsHoles(work)) {
          const seek = sparseLayout(fd, 5 * MiB)!;
          // Holes have the file system's granularity (4 KiB or more here).
          assert.equal(seek.regions.length, read.regions.length);
          assert.deepEqual(seek.regions.slice(-2), [5 * MiB, 0]);
        }
        const whole = path.join(work, "full");
        writeAt(whole, [[0, 64 * KiB, "x"]]);
        const fd2 = fs.openSync(whole, "r");
        assert.equal(sparseLayout(fd2, 64 * KiB, { seek: false }), undefined);
        assert.equal(sparseLayout(fd2, 64 * KiB), undefined);
        fs.closeSync(fd2);
      } finally {
        fs.closeSync(fd);
      }
    } finally {
      cleanup(work);
    }
  });
});
