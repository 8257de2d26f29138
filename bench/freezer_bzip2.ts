/**
 * Benchmark of Freezer bzip2 restores (issue 18's bar: ≥ 0.5× `bzip2 -dc`'s speed), run by hand, never in CI:
 *
 *   deno run -A bench/freezer_bzip2.ts [--frost dist/frost] [--size 50M] [--files 2000] [--runs 3]
 *                                      [--data bench/data] [--dir /tmp] [--keep]
 *
 * The data set is bench/data.ts's "home" set of `--size` bytes in `--files` small files (plus large ones),
 * seed 1, made once under `--data` and reused; its Freezer bzip2 container (level 0, made as Freezer's tar
 * engine makes it) and the tools that read it come from bench/freezer_set.ts, as `deno task bench --set
 * freezer` runs them: `bzip2 -dc > /dev/null` (the reference), `frost freezer restore` by the command given
 * (default: dist/frost, under `env -i` as a server runs it) and `bzip2 -dc | tar -x`. What this adds: frost's
 * decoder alone in this process, with libbz2 and with the JavaScript fallback. Best of `--runs`; ratios are
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
import { ensureDataSet } from "./data.ts";
import { freezerSetup } from "./freezer_set.ts";
import { loadAverage, type Sample } from "./measure.ts";

const { values } = parseArgs({
  options: {
    frost: { type: "string", default: "dist/frost" },
    size: { type: "string", default: "50M" },
    files: { type: "string", default: "2000" },
    runs: { type: "string", default: "3" },
    data: { type: "string", default: path.join(import.meta.dirname!, "data") },
    dir: { type: "string", default: os.tmpdir() },
    keep: { type: "boolean", default: false },
  },
});

const RUNS = Number(values.runs);
const frostBin = path.resolve(values.frost!);

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

const data = ensureDataSet(
  path.resolve(values.data!),
  { kind: "home", size: parseSize(values.size!), files: Number(values.files), seed: 1 },
  (line) => console.log(line),
);
const setup = freezerSetup(
  data,
  fs.mkdtempSync(path.join(values.dir!, "frost-bench-bzip2-")),
  ["env", "-i", frostBin],
  600,
);
try {
  console.log(
    `data: ${data.bytes} bytes in ${data.fileCount} files, tar.bz2 ${setup.compressed} bytes; frost: ${frostBin}; ` +
      `best of ${RUNS}; load average ${
        loadAverage().toFixed(2)
      }; default decoder here: ${bunzip2Implementation()}`,
  );
  const samples = new Map<string, Sample[]>();
  const none = { wall: Infinity, cpu: Infinity };
  const inProcess = { libbz2: none, js: none };
  const better = (a: typeof none, b: typeof none) => b.wall < a.wall ? b : a;
  for (let run = 0; run < RUNS; run++) {
    for (const tool of setup.tools) {
      const r = tool.run();
      if (r.note) throw new Error(`${tool.label}: ${r.note}`);
      samples.set(tool.id, [...samples.get(tool.id) ?? [], r.sample]);
    }
    if (bunzip2Implementation() === "libbz2") {
      inProcess.libbz2 = better(inProcess.libbz2, await decodeInProcess(setup.object, "libbz2"));
    }
    inProcess.js = better(inProcess.js, await decodeInProcess(setup.object, "js"));
  }
  const ref = best(samples.get("bzip2")!);
  show("bzip2 -dc > /dev/null", ref, ref);
  for (const impl of ["libbz2", "js"] as const) {
    if (inProcess[impl] === none) continue;
    show(`frost decoder (${impl}, in Deno)`, { ...inProcess[impl], rssMiB: null }, ref);
  }
  const frost = best(samples.get("frost")!);
  show("frost freezer restore (binary, env -i)", frost, ref);
  show("bzip2 -dc | tar -x", best(samples.get("bzip2-tar")!), ref);
  const ratio = ref.wall / frost.wall;
  console.log(
    `bar (freezer restore ≥ 0.5× bzip2 -dc's speed): ${ratio >= 0.5 ? "met" : "NOT met"} (${
      ratio.toFixed(2)
    }×)`,
  );
  if (ratio < 0.5) process.exitCode = 1;
} finally {
  if (!values.keep) setup.cleanup();
}
