/**
 * Benchmark of the rsync engine (issue 5's bars), run by hand, never in CI:
 *
 *   deno run -A bench/rsync.ts [--size 1G] [--files 100000] [--runs 3] [--dir /tmp] [--keep]
 *
 * On one file of `--size` random bytes:
 *   (a) 1 % of its 4 KiB blocks rewritten at random → bytes of the level-1 stream vs the file size (≤ 3 %);
 *   (b) 1 byte inserted at offset 0 → level-1 bytes (≤ 1 %);
 *   (c) delta computation speed on one core (≥ 200 MB/s): the engine's backup of the changed file against
 *       the parent's state, streams read and dropped, wall time and CPU time of this process;
 *   plus the worst case (nothing matches), a level-1 restore of (a) checked byte for byte, and
 *   `rsync --only-write-batch` (-a --no-whole-file --ignore-times, rsync's own block size) on the same changes.
 * On `--files` small files:
 *   (d) a no-change level: file bytes read (the engine's count and the process's rchar from
 *       /proc/self/io) and time, against the tar engine's no-change level (best of `--runs`, alternating).
 * Engines are driven directly (no compression, no storage): the bars are about the engine.
 * @module
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { spawnSync } from "node:child_process";
import { parseArgs } from "node:util";
import { parseSize } from "../base/units.ts";
import type { BackupRun, Engine, RestoreStats } from "../engines/engine.ts";
import { rsyncEngine } from "../engines/rsync.ts";
import { tarEngine } from "../engines/tar.ts";

const { values } = parseArgs({
  options: {
    size: { type: "string", default: "1G" },
    files: { type: "string", default: "100000" },
    runs: { type: "string", default: "3" },
    dir: { type: "string", default: os.tmpdir() },
    keep: { type: "boolean", default: false },
  },
});

function fmtSize(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB"];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(u === 0 ? 0 : 1)} ${units[u]}`;
}

const SIZE = parseSize(values.size!);
const FILES = Number(values.files);
const RUNS = Number(values.runs);
const root = fs.mkdtempSync(path.join(values.dir!, "frost-bench-rsync-"));
const MB = 1e6;

/** xorshift bytes, fast enough for GiBs. */
function fillRandom(buf: Uint8Array, seed: number): number {
  const words = new Uint32Array(buf.buffer, buf.byteOffset, buf.byteLength >>> 2);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x >>> 0;
  }
  return x;
}

function writeRandomFile(file: string, size: number, seed: number): void {
  const fd = fs.openSync(file, "w");
  const chunk = new Uint8Array(16 << 20);
  let s = seed;
  for (let off = 0; off < size; off += chunk.length) {
    s = fillRandom(chunk, s);
    fs.writeSync(fd, chunk, 0, Math.min(chunk.length, size - off));
  }
  fs.closeSync(fd);
}

function rchar(): number {
  try {
    const m = /rchar:\s*(\d+)/.exec(fs.readFileSync("/proc/self/io", "utf8"));
    return m ? Number(m[1]) : NaN;
  } catch {
    return NaN;
  }
}

interface Measured {
  data: number;
  state: Uint8Array;
  seconds: number;
  cpuSeconds: number;
  bytesRead: number;
  rchar: number;
  peakRss: number;
}

/** Runs one engine backup, counting the data stream and keeping the state. */
async function backup(engine: Engine, source: string, previous?: Uint8Array): Promise<Measured> {
  const prev = previous === undefined ? undefined : new ReadableStream<Uint8Array>({
    start(c) {
      for (let i = 0; i < previous.length; i += 1 << 20) c.enqueue(previous.subarray(i, i + (1 << 20)));
      c.close();
    },
  });
  let peakRss = process.memoryUsage().rss;
  const timer = setInterval(() => peakRss = Math.max(peakRss, process.memoryUsage().rss), 50);
  const r0 = rchar();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const run: BackupRun = engine.backup(source, { previous: prev });
  const count = async () => {
    let n = 0;
    for await (const chunk of run.stream) n += chunk.length;
    return n;
  };
  const [data, state] = await Promise.all([count(), new Response(run.state).arrayBuffer()]);
  const stats = await run.done;
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const rc = rchar() - r0;
  clearInterval(timer);
  peakRss = Math.max(peakRss, process.memoryUsage().rss);
  return {
    data,
    state: new Uint8Array(state),
    seconds,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    bytesRead: stats.bytes,
    rchar: rc,
    peakRss,
  };
}

/** Backs up `source` with the rsync engine into a data stream file (for a restore). */
async function backupToFile(source: string, previous: Uint8Array, out: string): Promise<void> {
  const prev = new ReadableStream<Uint8Array>({
    start(c) {
      c.enqueue(previous);
      c.close();
    },
  });
  const run = rsyncEngine.backup(source, { previous: prev });
  const fd = fs.openSync(out, "w");
  const write = async () => {
    for await (const chunk of run.stream) fs.writeSync(fd, chunk);
  };
  await Promise.all([write(), new Response(run.state).arrayBuffer()]);
  await run.done;
  fs.closeSync(fd);
}

async function restoreFile(
  streamFile: string,
  target: string,
): Promise<RestoreStats & { seconds: number; cpuSeconds: number }> {
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const run = rsyncEngine.restore(target);
  const writer = run.writable.getWriter();
  const fd = fs.openSync(streamFile, "r");
  const buf = new Uint8Array(1 << 20);
  for (;;) {
    const n = fs.readSync(fd, buf, 0, buf.length, null);
    if (n === 0) break;
    await writer.write(buf.slice(0, n));
  }
  fs.closeSync(fd);
  await writer.close();
  const stats = await run.done;
  const cpu = process.cpuUsage(cpu0);
  return { ...stats, seconds: (performance.now() - t0) / 1000, cpuSeconds: (cpu.user + cpu.system) / 1e6 };
}

/** `rsync -a --no-whole-file --only-write-batch` from `src` to `dest` (which holds the old version). */
function rsyncBatch(src: string, dest: string, batch: string, extra: string[] = []) {
  const t0 = performance.now();
  const r = spawnSync("rsync", [
    "-a",
    "--no-whole-file",
    "--ignore-times",
    ...extra,
    `--only-write-batch=${batch}`,
    `${src}/`,
    `${dest}/`,
  ], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  const seconds = (performance.now() - t0) / 1000;
  if (r.status !== 0) return { seconds, size: NaN, error: String(r.stderr) || String(r.error) };
  const size = fs.statSync(batch).size;
  fs.rmSync(batch, { force: true });
  fs.rmSync(`${batch}.sh`, { force: true });
  return { seconds, size, error: "" };
}

const haveRsync = spawnSync("rsync", ["--version"], { stdio: "ignore" }).status === 0;

interface Row {
  what: string;
  value: string;
  bar: string;
  ok: string;
}
const rows: Row[] = [];
const row = (what: string, value: string, bar = "", ok: boolean | undefined = undefined) =>
  rows.push({ what, value, bar, ok: ok === undefined ? "" : ok ? "yes" : "NO" });
const pct = (n: number) => `${(100 * n / SIZE).toFixed(3)} %`;

async function bigFile(): Promise<void> {
  const srcDir = path.join(root, "src");
  const baseDir = path.join(root, "base");
  fs.mkdirSync(srcDir);
  fs.mkdirSync(baseDir);
  const img = path.join(srcDir, "disk.img");
  console.error(`writing ${fmtSize(SIZE)} of random data…`);
  writeRandomFile(img, SIZE, 12345);
  fs.copyFileSync(img, path.join(baseDir, "disk.img"));

  console.error("level 0…");
  const l0 = await backup(rsyncEngine, srcDir);
  row(
    "level 0: time",
    `${l0.seconds.toFixed(2)} s (${(SIZE / MB / l0.seconds).toFixed(0)} MB/s wall, ${
      (SIZE / MB / l0.cpuSeconds).toFixed(0)
    } MB/s CPU)`,
  );
  row(
    "level 0: state size",
    `${fmtSize(l0.state.length)} (${pct(l0.state.length)})`,
    "≤ 0.5 %",
    l0.state.length <= 0.005 * SIZE,
  );

  // (a) 1 % of the 4 KiB blocks rewritten at random.
  const blocks = Math.floor(SIZE / 4096);
  const picked = new Set<number>();
  let x = 987654321;
  while (picked.size < Math.max(1, Math.floor(blocks / 100))) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    picked.add((x >>> 0) % blocks);
  }
  const fd = fs.openSync(img, "r+");
  const block = new Uint8Array(4096);
  let s = 4242;
  for (const b of picked) {
    s = fillRandom(block, s);
    fs.writeSync(fd, block, 0, 4096, b * 4096);
  }
  fs.closeSync(fd);
  console.error("(a) level 1 after 1 % of 4 KiB blocks rewritten…");
  const a = await backup(rsyncEngine, srcDir, l0.state);
  row(
    `(a) ${picked.size} random 4 KiB blocks rewritten: level-1 data`,
    `${fmtSize(a.data)} (${pct(a.data)})`,
    "≤ 3 %",
    a.data <= 0.03 * SIZE,
  );
  row(
    "(c) delta speed, case (a)",
    `${(SIZE / MB / a.seconds).toFixed(0)} MB/s wall, ${(SIZE / MB / a.cpuSeconds).toFixed(0)} MB/s CPU (${
      a.seconds.toFixed(2)
    } s)`,
    "≥ 200 MB/s",
    SIZE / MB / a.seconds >= 200,
  );
  row("    peak RSS during (a)", fmtSize(a.peakRss));
  if (haveRsync) {
    const r = rsyncBatch(srcDir, baseDir, path.join(root, "batch-a"));
    row(
      "    rsync --only-write-batch, (a)",
      r.error || `${fmtSize(r.size)} (${pct(r.size)}) in ${r.seconds.toFixed(2)} s`,
    );
    const r8 = rsyncBatch(srcDir, baseDir, path.join(root, "batch-a8"), ["--block-size=8192"]);
    row(
      "    rsync --only-write-batch -B 8192, (a)",
      r8.error || `${fmtSize(r8.size)} (${pct(r8.size)}) in ${r8.seconds.toFixed(2)} s`,
    );
  }
  // A level-1 restore of (a) onto the old version, checked byte for byte.
  const streamFile = path.join(root, "a.stream");
  await backupToFile(srcDir, l0.state, streamFile);
  const target = path.join(root, "restore");
  fs.mkdirSync(target);
  fs.copyFileSync(path.join(baseDir, "disk.img"), path.join(target, "disk.img"));
  const rs = await restoreFile(streamFile, target);
  const same = spawnSync("cmp", ["-s", img, path.join(target, "disk.img")]).status === 0;
  row(
    "    level-1 restore of (a) (rebuild + hash check)",
    `${rs.seconds.toFixed(2)} s (${(SIZE / MB / rs.seconds).toFixed(0)} MB/s wall, ${
      (SIZE / MB / rs.cpuSeconds).toFixed(0)
    } MB/s CPU), ${same ? "identical" : "DIFFERENT"}`,
    "identical",
    same,
  );
  fs.rmSync(target, { recursive: true });
  fs.rmSync(streamFile);

  // (b) 1 byte inserted at offset 0 (of the original file).
  console.error("(b) level 1 after 1 byte inserted at offset 0…");
  {
    const out = fs.openSync(img, "w");
    fs.writeSync(out, new Uint8Array([0x42]));
    const inp = fs.openSync(path.join(baseDir, "disk.img"), "r");
    const buf = new Uint8Array(16 << 20);
    for (;;) {
      const n = fs.readSync(inp, buf, 0, buf.length, null);
      if (n === 0) break;
      fs.writeSync(out, buf, 0, n);
    }
    fs.closeSync(inp);
    fs.closeSync(out);
  }
  const b = await backup(rsyncEngine, srcDir, l0.state);
  row(
    "(b) 1 byte inserted at offset 0: level-1 data",
    `${fmtSize(b.data)} (${pct(b.data)})`,
    "≤ 1 %",
    b.data <= 0.01 * SIZE,
  );
  row(
    "(c) delta speed, case (b)",
    `${(SIZE / MB / b.seconds).toFixed(0)} MB/s wall, ${(SIZE / MB / b.cpuSeconds).toFixed(0)} MB/s CPU`,
    "≥ 200 MB/s",
    SIZE / MB / b.seconds >= 200,
  );
  if (haveRsync) {
    const r = rsyncBatch(srcDir, baseDir, path.join(root, "batch-b"));
    row(
      "    rsync --only-write-batch, (b)",
      r.error || `${fmtSize(r.size)} (${pct(r.size)}) in ${r.seconds.toFixed(2)} s`,
    );
  }

  // Worst case: nothing matches, every byte is rolled.
  console.error("worst case: a file with nothing in common…");
  writeRandomFile(img, SIZE, 999);
  const w = await backup(rsyncEngine, srcDir, l0.state);
  row(
    "    worst case (no block matches): delta speed",
    `${(SIZE / MB / w.seconds).toFixed(0)} MB/s wall, ${(SIZE / MB / w.cpuSeconds).toFixed(0)} MB/s CPU`,
  );
  fs.rmSync(srcDir, { recursive: true });
  fs.rmSync(baseDir, { recursive: true });
}

async function manyFiles(): Promise<void> {
  const tree = path.join(root, "tree");
  console.error(`creating ${FILES} small files…`);
  const buf = new Uint8Array(4096);
  fillRandom(buf, 7);
  const perDir = 1000;
  for (let i = 0; i < FILES; i++) {
    const dir = path.join(tree, `d${Math.floor(i / perDir)}`);
    if (i % perDir === 0) fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, `f${i}`), buf.subarray(0, (i * 37) % 4096));
  }
  // Files changed in the second their parent backup started are read again: let the tree age.
  await new Promise((r) => setTimeout(r, Math.floor(Date.now() / 1000) * 1000 + 1200 - Date.now()));
  console.error("level 0 of both engines…");
  const l0r = await backup(rsyncEngine, tree);
  const l0t = await backup(tarEngine, tree);
  row(
    `(d) ${FILES} files: level 0, rsync engine`,
    `${l0r.seconds.toFixed(2)} s, state ${fmtSize(l0r.state.length)}`,
  );
  row(`    level 0, tar engine`, `${l0t.seconds.toFixed(2)} s, state ${fmtSize(l0t.state.length)}`);
  let bestR: Measured | undefined;
  let bestT: Measured | undefined;
  for (let i = 0; i < RUNS; i++) {
    console.error(`no-change levels, round ${i + 1}/${RUNS}…`);
    const r = await backup(rsyncEngine, tree, l0r.state);
    const t = await backup(tarEngine, tree, l0t.state);
    if (!bestR || r.seconds < bestR.seconds) bestR = r;
    if (!bestT || t.seconds < bestT.seconds) bestT = t;
  }
  row(
    "(d) no-change level, rsync engine: file bytes read",
    `${bestR!.bytesRead} (engine), ${bestR!.rchar} (rchar, all reads)`,
    "0",
    bestR!.bytesRead === 0,
  );
  row(
    "(d) no-change level: rsync vs tar engine (best of " + RUNS + ")",
    `${bestR!.seconds.toFixed(3)} s vs ${bestT!.seconds.toFixed(3)} s wall, ${
      bestR!.cpuSeconds.toFixed(3)
    } s vs ${bestT!.cpuSeconds.toFixed(3)} s CPU (stream ${fmtSize(bestR!.data)} vs ${fmtSize(bestT!.data)})`,
    "rsync ≤ tar",
    bestR!.seconds <= bestT!.seconds,
  );
  fs.rmSync(tree, { recursive: true });
}

try {
  console.error(`frost rsync bench: ${fmtSize(SIZE)}, ${FILES} files, in ${root}`);
  if (SIZE > 0) await bigFile();
  if (FILES > 0) await manyFiles();
} finally {
  if (!values.keep) fs.rmSync(root, { recursive: true, force: true });
}

const w1 = Math.max(...rows.map((r) => r.what.length));
const w2 = Math.max(...rows.map((r) => r.value.length));
const w3 = Math.max(4, ...rows.map((r) => r.bar.length));
console.log(`${"measure".padEnd(w1)}  ${"result".padEnd(w2)}  ${"bar".padEnd(w3)}  met`);
console.log(`${"-".repeat(w1)}  ${"-".repeat(w2)}  ${"-".repeat(w3)}  ---`);
for (const r of rows) {
  console.log(`${r.what.padEnd(w1)}  ${r.value.padEnd(w2)}  ${r.bar.padEnd(w3)}  ${r.ok}`);
}
console.log(
  `\n(${os.cpus()[0]?.model ?? "?"}, ${os.cpus().length} cores, load ${os.loadavg()[0]?.toFixed(2)})`,
);
