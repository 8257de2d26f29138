/**
 * Benchmark of Freezer bzip2 restores (issue 18's bar: ≥ 0.5× `bzip2 -dc`'s speed), run by hand, never in CI:
 *
 *   deno run -A bench/freezer_bzip2.ts [--frost dist/frost] [--size 50M] [--runs 3] [--dir /tmp] [--keep]
 *
 * A tree of `--size` bytes (half pseudo-random, half compressible text, in files of 1 MiB and less) is
 * archived by GNU tar and compressed by `bzip2 -9` into a Freezer container (one level-0 `data` object).
 * Measured, best of `--runs`, all on the same file: `bzip2 -dc > /dev/null` (the reference); frost's decoder
 * in this process, with libbz2 and with the JavaScript fallback; `frost freezer restore` by the command
 * given (default: dist/frost, under `env -i` as a server runs it) against `bzip2 -dc | tar -x`. Ratios are
 * speeds relative to `bzip2 -dc` (its time / the other's time, wall and CPU; ≥ 0.5 by wall time meets the
 * bar; CPU time is the steadier figure on a busy machine).
 * @module
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { Readable } from "node:stream";
import { parseArgs } from "node:util";
import { parseSize } from "../base/units.ts";
import { bunzip2, type Bunzip2Implementation, bunzip2Implementation } from "../codec/bzip2.ts";
import { exec, freshDir, loadAverage, measure, type Sample, syncDisks } from "./measure.ts";

const { values } = parseArgs({
  options: {
    frost: { type: "string", default: "dist/frost" },
    size: { type: "string", default: "50M" },
    runs: { type: "string", default: "3" },
    dir: { type: "string", default: os.tmpdir() },
    keep: { type: "boolean", default: false },
  },
});

const SIZE = parseSize(values.size!);
const RUNS = Number(values.runs);
const frostBin = path.resolve(values.frost!);
const root = fs.mkdtempSync(path.join(values.dir!, "frost-bench-bzip2-"));
const opts = { timeout: 600, scratch: root };
const Z = 1700000000;

/** Deterministic bytes: pseudo-random (xorshift) or text with repeats. */
function content(size: number, seed: number, random: boolean): Uint8Array {
  const out = new Uint8Array(size);
  let x = seed >>> 0 || 1;
  if (random) {
    const words = new Uint32Array(out.buffer, 0, Math.floor(size / 4));
    for (let i = 0; i < words.length; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      words[i] = x >>> 0;
    }
    return out;
  }
  const line = new TextEncoder().encode(`file ${seed}: the quick brown fox jumps over the lazy dog `);
  for (let i = 0; i < size; i++) {
    if (i % 4096 === 0) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
    }
    out[i] = line[(i + (x & 63)) % line.length]!;
  }
  return out;
}

/** Seconds (wall and CPU) frost's decoder takes in this process for `file`. */
async function decodeInProcess(
  file: string,
  implementation: Bunzip2Implementation,
): Promise<{ wall: number; cpu: number }> {
  const started = performance.now();
  const cpu = process.cpuUsage();
  const input = Readable.toWeb(
    fs.createReadStream(file, { highWaterMark: 1 << 20 }),
  ) as unknown as ReadableStream<
    Uint8Array
  >;
  let bytes = 0;
  for await (const chunk of bunzip2(input, { implementation })) bytes += chunk.byteLength;
  if (bytes === 0) throw new Error("decoded nothing");
  const used = process.cpuUsage(cpu);
  return { wall: (performance.now() - started) / 1000, cpu: (used.user + used.system) / 1e6 };
}

/** One result line: wall and CPU time, peak RSS, and speed relative to `ref` (bzip2 -dc's wall and CPU). */
function show(
  name: string,
  s: { wall: number; cpu: number | null; rssMiB: number | null },
  ref: { wall: number; cpu: number | null },
) {
  const cpu = s.cpu === null ? "" : `  cpu ${s.cpu.toFixed(2)} s`;
  const rss = s.rssMiB === null ? "" : `  peak RSS ${s.rssMiB.toFixed(0)} MiB`;
  const byCpu = s.cpu === null || ref.cpu === null ? "" : `, by CPU ${(ref.cpu / s.cpu).toFixed(2)}×`;
  console.log(
    `${name.padEnd(40)} ${s.wall.toFixed(2)} s${cpu}${rss}  speed ${(ref.wall / s.wall).toFixed(2)}×${byCpu}`,
  );
}

function best(samples: Sample[]): Sample {
  return samples.reduce((a, b) => b.wall < a.wall ? b : a);
}

try {
  const src = path.join(root, "src");
  fs.mkdirSync(src);
  for (let i = 0, done = 0; done < SIZE; i++) {
    const size = Math.min(SIZE - done, (1 << 20) - (i % 7) * 70001);
    fs.mkdirSync(path.join(src, `d${i % 10}`), { recursive: true });
    fs.writeFileSync(path.join(src, `d${i % 10}`, `f${i}`), content(size, i + 1, i % 2 === 0));
    done += size;
  }
  const store = path.join(root, "store");
  const dir = `bench_data/${Z}/0_${Z}`;
  fs.mkdirSync(path.join(store, "metadata/tar", dir), { recursive: true });
  fs.mkdirSync(path.join(store, "data/tar", dir), { recursive: true });
  fs.writeFileSync(
    path.join(store, "metadata/tar", dir, "metadata"),
    JSON.stringify({ engine_name: "tar", compression: "bzip2", encryption: false }),
  );
  const data = path.join(store, "data/tar", dir, "data");
  exec([
    "sh",
    "-c",
    `tar -C '${src}' --create --listed-incremental='${root}/snar' . | bzip2 -9 > '${data}'`,
  ]);
  console.log(
    `data: ${SIZE} bytes in ${fs.readdirSync(src, { recursive: true }).length} entries, tar.bz2 ${
      fs.statSync(data).size
    } bytes; frost: ${frostBin}; best of ${RUNS}; load average ${loadAverage().toFixed(2)}; ` +
      `default decoder here: ${bunzip2Implementation()}`,
  );

  const dc: Sample[] = [], frost: Sample[] = [], tar: Sample[] = [];
  const none = { wall: Infinity, cpu: Infinity };
  const inProcess = { libbz2: none, js: none };
  const better = (a: typeof none, b: typeof none) => b.wall < a.wall ? b : a;
  for (let run = 0; run < RUNS; run++) {
    dc.push(measure(["sh", "-c", `bzip2 -dc '${data}' > /dev/null`], opts));
    if (bunzip2Implementation() === "libbz2") {
      inProcess.libbz2 = better(inProcess.libbz2, await decodeInProcess(data, "libbz2"));
    }
    inProcess.js = better(inProcess.js, await decodeInProcess(data, "js"));
    const to = path.join(root, "restored");
    fs.rmSync(to, { recursive: true, force: true });
    syncDisks();
    frost.push(measure(
      [
        "env",
        "-i",
        frostBin,
        "freezer",
        "restore",
        "--storage",
        store,
        "--hostname",
        "bench",
        "--name",
        "data",
        "--to",
        to,
      ],
      opts,
    ));
    const tarTo = path.join(root, "tar-restored");
    freshDir(tarTo);
    syncDisks();
    tar.push(measure(["sh", "-c", `bzip2 -dc '${data}' | tar -C '${tarTo}' -xf -`], opts));
    if (run === 0) exec(["diff", "-r", src, to]);
  }
  const ref = best(dc);
  show("bzip2 -dc > /dev/null", best(dc), ref);
  for (const impl of ["libbz2", "js"] as const) {
    if (inProcess[impl] === none) continue;
    show(`frost decoder (${impl}, in Deno)`, { ...inProcess[impl], rssMiB: null }, ref);
  }
  show("frost freezer restore (binary, env -i)", best(frost), ref);
  show("bzip2 -dc | tar -x", best(tar), ref);
  const ratio = ref.wall / best(frost).wall;
  console.log(
    `bar (freezer restore ≥ 0.5× bzip2 -dc's speed): ${ratio >= 0.5 ? "met" : "NOT met"} (${
      ratio.toFixed(2)
    }×)`,
  );
  if (ratio < 0.5) process.exitCode = 1;
} finally {
  if (!values.keep) fs.rmSync(root, { recursive: true, force: true });
}
