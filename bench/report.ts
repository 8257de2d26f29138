/**
 * The bench's results: their JSON shape, the bars from the issues with PASS/SHORT verdicts, the table
 * printed on the terminal and docs/BENCHMARKS.md.
 * @module
 */
import fs from "node:fs";
import type { Machine } from "./measure.ts";
import { type Scenario, SCENARIO_TITLES } from "./tools.ts";

/** One line of the table: the best of the runs of one tool in one scenario. */
export interface Row {
  scenario: Scenario;
  tool: string;
  label: string;
  /** Best (lowest) wall time of the runs, seconds. */
  wall: number;
  /** CPU seconds (user + sys) of that best run. */
  cpu: number | null;
  /** Highest peak RSS over all runs, MiB. */
  rssMiB: number | null;
  /** Bytes this step added to the storage, MiB. */
  storedMiB: number | null;
  /** Data-set bytes ÷ wall, MB/s (10^6); null for the no-change backup. */
  mbps: number | null;
  /** For a peer: peer wall ÷ frost wall (≥ 1 = frost as fast or faster). */
  frostSpeed: number | null;
  /** Every run's wall time, in run order. */
  walls: number[];
}

/** A target from the issues, checked against the measurements. */
export interface Bar {
  bar: string;
  measured: string;
  status: "PASS" | "SHORT" | "n/a";
}

/** What the default (comparison) run produced. */
export interface MainResults {
  date: string;
  machine: Machine;
  versions: Record<string, string>;
  frost: { command: string; commit: string; notes: string[] };
  data: { id: string; bytes: number; files: number; dirs: number; largeFiles: number; description: string };
  runs: number;
  rows: Row[];
  bars: Bar[];
  commands: Record<string, Record<Scenario, string>>;
  notes: string[];
}

/** One size of the memory-flatness run. */
export interface RssRow {
  size: string;
  bytes: number;
  files: number;
  wall: number;
  rssMiB: number | null;
  mbps: number;
  walls: number[];
}

/** What `--rss-sizes` produced. */
export interface RssResults {
  date: string;
  machine: Machine;
  frost: { command: string; commit: string; notes: string[] };
  runs: number;
  rows: RssRow[];
  bars: Bar[];
  notes: string[];
}

/** bench/results/latest.json: the newest of each kind of run. */
export interface Results {
  main?: MainResults;
  rss?: RssResults;
}

/** The RSS ceiling of the issue, MiB. */
export const RSS_LIMIT_MIB = 150;
/** Peak RSS counts as flat when the biggest size needs at most this much more than the smallest. */
export const RSS_FLAT_TOLERANCE = 0.1;

function row(rows: Row[], scenario: Scenario, tool: string): Row | undefined {
  return rows.find((r) => r.scenario === scenario && r.tool === tool);
}

/** The bars that the comparison run can check. */
export function mainBars(rows: Row[]): Bar[] {
  const bars: Bar[] = [];
  const ratioBar = (scenario: Scenario, bar: string, peerName: string) => {
    const f = row(rows, scenario, "frost"), t = row(rows, scenario, "tar");
    if (!f || !t) return bars.push({ bar, measured: "not measured (frost or tar failed)", status: "n/a" });
    const ratio = t.wall / f.wall;
    bars.push({
      bar,
      measured: `${ratio.toFixed(2)}× (frost ${s(f.wall)}, ${peerName} ${s(t.wall)})`,
      status: ratio >= 0.8 ? "PASS" : "SHORT",
    });
  };
  ratioBar("full", "backup speed ≥ 0.8× tar | zstd -1", "tar|zstd");
  ratioBar("restore", "restore speed ≥ 0.8× zstd -d | tar -x", "zstd -d|tar -x");
  const fi = row(rows, "nochange", "frost"), ti = row(rows, "nochange", "tar");
  if (!fi || !ti) {
    bars.push({
      bar: "no-change incremental ≤ tar --listed-incremental",
      measured: "not measured",
      status: "n/a",
    });
  } else {
    bars.push({
      bar: "no-change incremental ≤ tar --listed-incremental",
      measured: `frost ${s(fi.wall)}, tar -g ${s(ti.wall)} (${(fi.wall / ti.wall).toFixed(1)}× tar's time)`,
      status: fi.wall <= ti.wall ? "PASS" : "SHORT",
    });
  }
  const rss = rows.filter((r) => r.tool === "frost" && r.rssMiB !== null).map((r) => r.rssMiB!);
  if (rss.length === 0) {
    bars.push({
      bar: `peak RSS ≤ ${RSS_LIMIT_MIB} MiB (default settings)`,
      measured: "not measured",
      status: "n/a",
    });
  } else {
    const peak = Math.max(...rss);
    const worst = rows.find((r) => r.tool === "frost" && r.rssMiB === peak)!;
    bars.push({
      bar: `peak RSS ≤ ${RSS_LIMIT_MIB} MiB (default settings)`,
      measured: `${peak.toFixed(0)} MiB (highest, in ${SCENARIO_TITLES[worst.scenario]})`,
      status: peak <= RSS_LIMIT_MIB ? "PASS" : "SHORT",
    });
  }
  return bars;
}

/** The memory-flatness bars: flat from the smallest to the biggest size, and under the ceiling at each. */
export function rssBars(rows: RssRow[]): Bar[] {
  const measured = rows.filter((r) => r.rssMiB !== null);
  const first = measured[0], last = measured.at(-1);
  const flat = `peak RSS flat from ${first?.size ?? "1 GiB"} to ${last?.size ?? "4 GiB"} (≤ +${
    RSS_FLAT_TOLERANCE * 100
  } %)`;
  const ceiling = `peak RSS ≤ ${RSS_LIMIT_MIB} MiB at every size`;
  if (!first || !last) return [{ bar: flat, measured: "not measured", status: "n/a" }];
  const list = measured.map((r) => `${r.size}: ${r.rssMiB!.toFixed(0)} MiB`).join(", ");
  const peak = Math.max(...measured.map((r) => r.rssMiB!));
  const bars: Bar[] = [];
  if (first === last) bars.push({ bar: flat, measured: "needs two sizes", status: "n/a" });
  else {
    const growth = last.rssMiB! / first.rssMiB! - 1;
    bars.push({
      bar: flat,
      measured: `${list} (${growth >= 0 ? "+" : ""}${(growth * 100).toFixed(0)} %)`,
      status: growth <= RSS_FLAT_TOLERANCE ? "PASS" : "SHORT",
    });
  }
  bars.push({ bar: ceiling, measured: list, status: peak <= RSS_LIMIT_MIB ? "PASS" : "SHORT" });
  return bars;
}

function s(seconds: number): string {
  return seconds < 10 ? `${seconds.toFixed(2)} s` : `${seconds.toFixed(1)} s`;
}

function num(v: number | null, digits: number): string {
  return v === null ? "—" : v.toFixed(digits);
}

const HEADER = ["scenario", "tool", "wall s", "cpu s", "peak RSS MiB", "stored MiB", "MB/s", "frost speed ×"];

function cells(r: Row): string[] {
  return [
    SCENARIO_TITLES[r.scenario],
    r.label,
    r.wall < 1 ? r.wall.toFixed(3) : r.wall.toFixed(2),
    num(r.cpu, 2),
    num(r.rssMiB, 0),
    r.storedMiB === null ? "—" : r.storedMiB < 10 ? r.storedMiB.toFixed(2) : r.storedMiB.toFixed(0),
    num(r.mbps, 0),
    r.frostSpeed === null ? "" : `${r.frostSpeed.toFixed(2)}`,
  ];
}

/** The table as aligned text for the terminal. */
export function textTable(rows: Row[]): string {
  const all = [HEADER, ...rows.map(cells)];
  const widths = HEADER.map((_, i) => Math.max(...all.map((c) => c[i]!.length)));
  return all.map((c, n) =>
    c.map((v, i) => i < 2 ? v.padEnd(widths[i]!) : v.padStart(widths[i]!)).join("  ") +
    (n === 0 ? "\n" + widths.map((w) => "-".repeat(w)).join("  ") : "")
  ).join("\n");
}

/** The bars as aligned text. */
export function textBars(bars: Bar[]): string {
  const w = Math.max(...bars.map((b) => b.bar.length));
  return bars.map((b) => `${b.status.padEnd(5)}  ${b.bar.padEnd(w)}  ${b.measured}`).join("\n");
}

function mdTable(header: string[], lines: string[][], right: number[] = []): string {
  const align = header.map((_, i) => right.includes(i) ? "---:" : "---");
  const cell = (c: string) => c.replace(/\|/g, "\\|");
  return [header, align, ...lines].map((l) => `| ${l.map(cell).join(" | ")} |`).join("\n");
}

function mdBars(bars: Bar[]): string {
  return mdTable(
    ["bar (from the issues)", "measured", "verdict"],
    bars.map((b) => [b.bar, b.measured, b.status === "SHORT" ? "**SHORT**" : b.status]),
  );
}

function machineLine(m: Machine): string {
  return `${m.cpus} × ${m.cpuModel}, ${m.memoryGiB} GiB RAM, ${m.os}, kernel ${m.kernel}, writing to ` +
    `${m.filesystem}, load average ${m.loadAverage ?? "?"} at the start`;
}

/** docs/BENCHMARKS.md from the newest results of each kind. */
export function markdown(results: Results): string {
  const out: string[] = [];
  out.push("# frost benchmarks", "");
  out.push(
    "Generated by `bench/run.ts` (`deno task bench`); do not edit by hand — rerun the bench instead.",
    "Machine-readable results: `bench/results/latest.json`.",
    "",
    "## How to run",
    "",
    "```",
    "bash bench/setup                         # apt-get: tar, zstd, GNU time, restic, borgbackup",
    "deno task bench                          # = deno run -A bench/run.ts: 1 GiB, frost vs tar|zstd, restic, borg",
    "deno run -A bench/run.ts --smoke         # ~50 MiB, one round, 10–20 s; writes bench/results/smoke.*",
    "deno run -A bench/run.ts --rss-sizes 1G,4G   # frost's full backup only: peak RSS per data size",
    "```",
    "",
    "The bench measures `dist/frost` and builds it first (the `build` task's command) when it is missing or older",
    "than the sources; without a binary it falls back to `deno run -A main.ts` and says so. It never fails a build.",
    "",
    "Other flags: `--size 2G`, `--files 50000`, `--runs 5`, `--tools frost,tar`, `--frost PATH` (or `$FROST_BIN`),",
    "`--timeout SECONDS`, `--keep` (leave `bench/work/`). `BENCH_SIZE`, `BENCH_FILES`, `BENCH_RUNS` set the defaults.",
    "",
  );
  const m = results.main;
  if (m) {
    out.push(`## Comparison (${m.date})`, "");
    out.push(`- Machine: ${machineLine(m.machine)}.`);
    out.push(`- frost: \`${m.frost.command}\` at commit ${m.frost.commit}.`);
    for (const n of m.frost.notes) out.push(`- **${n}**`);
    out.push(`- Versions: ${Object.entries(m.versions).map(([k, v]) => `${k} ${v}`).join("; ")}.`);
    const tarFull = row(m.rows, "full", "tar");
    const ratio = tarFull?.storedMiB
      ? `; tar | zstd -1 stores ${(tarFull.storedMiB * 2 ** 20 / m.data.bytes * 100).toFixed(0)} % of it`
      : "";
    out.push(`- Data: ${m.data.description}${ratio}.`);
    out.push(
      `- Method: ${m.runs} round${
        m.runs === 1 ? "" : "s"
      }; in each round every scenario runs for every tool, the tools' order rotating from`,
      "  round to round; the table keeps each tool's best (lowest) wall time and the CPU time of that run, and the",
      "  highest peak RSS of all rounds. Warm page cache (the tree is read once before the first round; caches are",
      "  not dropped). `sync` runs, untimed, before every timed command, because writes on this VM are bimodal",
      "  (page-cache writeback). Wall time is measured around the process; CPU (user + sys) and peak RSS come from",
      "  GNU `time` (`%U %S %M`); for a pipeline CPU is summed over its processes and peak RSS is that of its biggest",
      "  process (so tar|zstd's is tar's or zstd's, not their sum). Stored = bytes the step added (`du -sb`).",
      "  MB/s = data-set bytes ÷ wall (10^6 B/s).",
      "- `frost speed ×` = the peer's wall time ÷ frost's, in the same scenario: ≥ 1 means frost is as fast or faster.",
      "- frost, restic and borg fsync what they write; `zstd -o` does not, so tar|zstd's backup time excludes the",
      "  flush that frost's includes. `zstd -1` without `-T` compresses on one thread (tar and zstd are two processes,",
      "  so the pipeline uses both cores); restic uses all cores by default.",
      "",
    );
    out.push(
      mdTable(
        [...HEADER, "every run's wall s"],
        m.rows.map((r) => [...cells(r), r.walls.map((w) => w.toFixed(2)).join(" / ")]),
        [2, 3, 4, 5, 6, 7],
      ),
      "",
    );
    out.push("### Bars", "", mdBars(m.bars), "");
    const short = m.bars.filter((b) => b.status === "SHORT");
    if (short.length === 0) out.push("frost meets every bar measured here.", "");
    else out.push("Where frost falls short:", "", ...short.map((b) => `- ${b.bar}: ${b.measured}.`), "");
    if (m.notes.length > 0) out.push("### Notes", "", ...m.notes.map((n) => `- ${n}`), "");
    out.push(
      "### Exact commands",
      "",
      "DATA = the data-set folder; STORE, REPO, OUT = fresh folders in `bench/work/`.",
      "",
    );
    for (const [tool, cmds] of Object.entries(m.commands)) {
      out.push(`- ${tool}:`);
      for (const [sc, c] of Object.entries(cmds)) {
        out.push(`  - ${SCENARIO_TITLES[sc as Scenario]}: \`${c}\``);
      }
    }
    out.push("");
  } else {
    out.push("## Comparison", "", "Not run yet: `deno task bench`.", "");
  }
  const r = results.rss;
  out.push("## Memory flatness (frost full backup only)", "");
  if (r) {
    out.push(
      `${r.date}; ${machineLine(r.machine)}; frost \`${r.frost.command}\` at commit ${r.frost.commit}; ` +
        `best wall of ${r.runs} run${
          r.runs === 1 ? "" : "s"
        }, highest peak RSS. The larger sets keep the same number of small files and ` +
        "add large files, so memory is compared at a growing byte count.",
      "",
    );
    for (const n of r.frost.notes) out.push(`- **${n}**`, "");
    out.push(
      mdTable(
        ["data", "files", "wall s", "peak RSS MiB", "MB/s"],
        r.rows.map((x) => [x.size, String(x.files), x.wall.toFixed(2), num(x.rssMiB, 0), x.mbps.toFixed(0)]),
        [1, 2, 3, 4],
      ),
      "",
      mdBars(r.bars),
      "",
    );
    const short = r.bars.filter((b) => b.status === "SHORT");
    if (short.length > 0) {
      out.push(
        "Where frost falls short:",
        "",
        ...short.map((b) => `- ${b.bar}: ${b.measured}.`),
        "",
      );
    }
    if (r.notes?.length) out.push(...r.notes.map((n) => `- ${n}`), "");
  } else {
    out.push("Not run yet: `deno task bench --rss-sizes 1G,4G`.", "");
  }
  // The other benches (rsync engine, remote storages, encryption) print their tables; their latest figures
  // are kept by hand in bench/results/other.md and carried into this page.
  try {
    out.push(fs.readFileSync(new URL("./results/other.md", import.meta.url), "utf8").trimEnd(), "");
  } catch {
    // none recorded yet
  }
  return out.join("\n");
}
