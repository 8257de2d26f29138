/**
 * Benchmark of one real or flat tree (issue 18's "usr" and "one folder of 200 000 files"), run by hand:
 *
 *   deno run -A bench/tree.ts --source /usr [--frost dist/frost] [--runs 2] [--dir /tmp] [--keep]
 *   deno run -A bench/tree.ts --flat 200000 [--frost dist/frost] [--runs 2] [--dir /tmp] [--keep]
 *
 * `--source` backs up an existing tree (read only: nothing is written there); `--flat N` makes one folder
 * of N small files (0–99 bytes) first. frost (the binary given, under `env -i` as a server runs it) makes a
 * full backup, a no-change level, then `ls`, `verify --read-data` and a restore into an empty folder; GNU
 * tar does the same jobs side by side (`tar -c | zstd -1`, `tar -g` with nothing changed, `zstd -d | tar -x`).
 * Reported per job: best wall time of `--runs`, CPU seconds (user + sys) and the highest peak RSS (GNU
 * time), and frost's speed as a multiple of tar's. `deno task bench --set usr,flat` measures the same jobs
 * as data sets of the main bench (with every installed peer, bars and the report); this script stays for a
 * quick look at one tree.
 * @module
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { freshDir, measure, type Sample, syncDisks } from "./measure.ts";

const { values } = parseArgs({
  options: {
    source: { type: "string" },
    flat: { type: "string" },
    frost: { type: "string", default: "dist/frost" },
    runs: { type: "string", default: "2" },
    dir: { type: "string", default: os.tmpdir() },
    keep: { type: "boolean", default: false },
  },
});
if ((values.source === undefined) === (values.flat === undefined)) {
  throw new Error("give one of --source DIR and --flat N");
}
const RUNS = Number(values.runs);
const frostBin = path.resolve(values.frost!);
const root = fs.mkdtempSync(path.join(values.dir!, "frost-bench-tree-"));
const opts = { timeout: 3600, scratch: root };

/** Best wall, its CPU, and the highest peak RSS over the runs of one job. */
interface Best {
  wall: number;
  cpu: number | null;
  rss: number | null;
}
const results = new Map<string, Best>();

function note(job: string, s: Sample): void {
  const b = results.get(job);
  const rss = Math.max(b?.rss ?? 0, s.rssMiB ?? 0) || null;
  if (!b || s.wall < b.wall) results.set(job, { wall: s.wall, cpu: s.cpu, rss });
  else b.rss = rss;
}

try {
  let source = values.source ? path.resolve(values.source) : "";
  if (values.flat !== undefined) {
    source = path.join(root, "flat");
    fs.mkdirSync(source);
    const n = Number(values.flat);
    const bytes = new Uint8Array(100).fill(0x79);
    for (let i = 0; i < n; i++) {
      fs.writeFileSync(path.join(source, `f${String(i).padStart(7, "0")}`), bytes.subarray(0, i % 100));
    }
  }
  const parent = path.dirname(source);
  const base = path.basename(source);
  console.log(
    `tree: ${source}; frost: ${frostBin}; best of ${RUNS}; load average ${os.loadavg()[0]!.toFixed(2)}`,
  );
  const frost = (...args: string[]) => ["env", "-i", frostBin, ...args];
  for (let run = 0; run < RUNS; run++) {
    const store = path.join(root, "store");
    const to = path.join(root, "restored");
    freshDir(store);
    fs.rmSync(to, { recursive: true, force: true });
    const name = ["--name", "tree", "--storage", store];
    syncDisks();
    note("full backup / frost", measure(frost("backup", source, ...name, "--max-level", "5"), opts));
    note(
      "no-change incremental / frost",
      measure(frost("backup", source, ...name, "--max-level", "5"), opts),
    );
    note("ls / frost", measure(frost("ls", ...name), opts));
    note("verify --read-data / frost", measure(frost("verify", ...name, "--read-data"), opts));
    syncDisks();
    note("restore / frost", measure(frost("restore", ...name, "--to", to), opts));
    fs.rmSync(to, { recursive: true, force: true });

    const archive = path.join(root, "l0.tar.zst");
    const snar = path.join(root, "l0.snar");
    fs.rmSync(snar, { force: true });
    syncDisks();
    note(
      "full backup / tar",
      measure(["sh", "-c", `tar -C '${parent}' -cf - '${base}' | zstd -1 -q -f -o '${archive}'`], opts),
    );
    measure(["tar", "-C", parent, `--listed-incremental=${snar}`, "-cf", "/dev/null", base], opts);
    fs.copyFileSync(snar, snar + ".1");
    note(
      "no-change incremental / tar",
      measure([
        "sh",
        "-c",
        `tar -C '${parent}' --listed-incremental='${snar}.1' -cf - '${base}' | zstd -1 -q -f -o '${archive}.1'`,
      ], opts),
    );
    freshDir(to);
    syncDisks();
    note("restore / tar", measure(["sh", "-c", `zstd -dc '${archive}' | tar -C '${to}' -xf -`], opts));
    fs.rmSync(to, { recursive: true, force: true });
  }
  console.log(
    `${"job".padEnd(34)} ${"wall s".padStart(8)} ${"cpu s".padStart(8)} ${"RSS MiB".padStart(8)}  frost ×`,
  );
  for (const [job, b] of results) {
    const [what, tool] = job.split(" / ");
    const tar = tool === "frost" ? results.get(`${what} / tar`) : undefined;
    console.log(
      `${job.padEnd(34)} ${b.wall.toFixed(2).padStart(8)} ${(b.cpu?.toFixed(2) ?? "—").padStart(8)} ${
        (b.rss?.toFixed(0) ?? "—").padStart(8)
      }  ${tar ? `${(tar.wall / b.wall).toFixed(2)}× tar's speed` : ""}`,
    );
  }
} finally {
  if (!values.keep) fs.rmSync(root, { recursive: true, force: true });
}
