/**
 * The bench's results: their JSON shape, the bars from the issues with PASS/SHORT verdicts, the table
 * printed on the terminal and docs/BENCHMARKS.md.
 *
 * docs/BENCHMARKS.md is part generated, part hand-written: the generated part sits between the BEGIN and END
 * markers below and is replaced on every run; everything outside them (analysis such as "Where the time
 * goes") is kept as it is. bench/results/other.md (the figures of the other benches) is carried into the
 * generated part.
 * @module
 */
import fs from "node:fs";
import { type ChangeSummary, SET_KINDS, type SetKind } from "./data.ts";
import type { Machine } from "./measure.ts";
import { type Scenario, SCENARIO_TITLES, SCENARIOS } from "./tools.ts";

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
  /** Backups: MiB this step added to the storage; restores: MiB of the storage restored from. */
  storedMiB: number | null;
  /** Data-set bytes ÷ wall, MB/s (10^6); null for incrementals. */
  mbps: number | null;
  /** For a peer: peer wall ÷ frost wall (≥ 1 = frost as fast or faster). */
  frostSpeed: number | null;
  /** Every run's wall time, in run order. */
  walls: number[];
}

/** A target from the issues, checked against the measurements. */
export interface Bar {
  /** The data set it was measured on (absent: the memory-flatness run). */
  set?: string;
  bar: string;
  measured: string;
  status: "PASS" | "SHORT" | "n/a";
}

/** What the comparison run produced for one data set. */
export interface SetResults {
  set: SetKind;
  date: string;
  /** Seconds the whole set took (generation, rounds, checks). */
  seconds: number;
  machine: Machine;
  versions: Record<string, string>;
  frost: { command: string; commit: string; notes: string[] };
  data: {
    id: string;
    bytes: number;
    files: number;
    dirs: number;
    largeFiles: number;
    smallFiles: number;
    description: string;
  };
  runs: number;
  rows: Row[];
  bars: Bar[];
  /** The change rounds of the first round of runs. */
  changes: ChangeSummary[];
  /** Wall seconds of every tool's backups 1–4 (the change levels), first round. */
  levelWalls: Record<string, number[]>;
  commands: Record<string, Partial<Record<Scenario, string>>>;
  notes: string[];
  /** uptime's load averages (1, 5, 15 minutes) when the set started and when it ended. */
  load?: Load;
}

/** uptime's load averages (1, 5, 15 minutes) at the start and at the end of a run. */
export interface Load {
  start: number[];
  end: number[];
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
  /** The restore of that backup into an empty folder: best wall, highest peak RSS, every run's wall. */
  restore?: { wall: number; rssMiB: number | null; walls: number[] };
}

/** What the memory-flatness run (`--set sizes`, sizes from `--rss-sizes`) produced. */
export interface RssResults {
  date: string;
  machine: Machine;
  frost: { command: string; commit: string; notes: string[] };
  runs: number;
  rows: RssRow[];
  bars: Bar[];
  notes: string[];
  load?: Load;
}

/** What the Freezer bzip2 restore run (`--set freezer`) produced. */
export interface FreezerResults {
  date: string;
  seconds: number;
  machine: Machine;
  load: Load;
  versions: Record<string, string>;
  frost: { command: string; commit: string; notes: string[] };
  data: { description: string; bytes: number; files: number; compressed: number };
  runs: number;
  rows: Row[];
  bars: Bar[];
  commands: Record<string, string>;
  notes: string[];
}

/** bench/results/latest.json: the newest run of each data set, of the memory-flatness and Freezer runs. */
export interface Results {
  sets?: Partial<Record<SetKind, SetResults>>;
  rss?: RssResults;
  freezer?: FreezerResults;
}

/** The RSS ceiling of the issue, MiB. */
export const RSS_LIMIT_MIB = 150;
/** Peak RSS counts as flat when the biggest size needs at most this much more than the smallest. */
export const RSS_FLAT_TOLERANCE = 0.1;

function row(rows: Row[], scenario: Scenario, tool: string): Row | undefined {
  return rows.find((r) => r.scenario === scenario && r.tool === tool);
}

/** The bars of issue 18 that one data set's comparison run checks. */
export function setBars(set: string, rows: Row[], smallFiles: number): Bar[] {
  const bars: Bar[] = [];
  const push = (bar: string, measured: string, status: Bar["status"]) =>
    bars.push({ set, bar, measured, status });
  /** frost at least `need` × the peer's speed (peer wall ÷ frost wall ≥ need). */
  const speedBar = (scenario: Scenario, peer: string, peerName: string, bar: string, need: number) => {
    const f = row(rows, scenario, "frost"), t = row(rows, scenario, peer);
    if (!f || !t) return push(bar, `not measured (frost or ${peerName} did not run)`, "n/a");
    const ratio = t.wall / f.wall;
    push(
      bar,
      `${times(ratio, need)}× (frost ${s(f.wall)}, ${peerName} ${s(t.wall)})`,
      ratio >= need ? "PASS" : "SHORT",
    );
  };
  /** frost's time at most `most` × the peer's (frost wall ÷ peer wall ≤ most). */
  const timeBar = (scenario: Scenario, peer: string, peerName: string, bar: string, most: number) => {
    const f = row(rows, scenario, "frost"), t = row(rows, scenario, peer);
    if (!f || !t) return push(bar, `not measured (frost or ${peerName} did not run)`, "n/a");
    const ratio = f.wall / t.wall;
    push(
      bar,
      `frost ${s(f.wall)}, ${peerName} ${s(t.wall)} (${times(ratio, most)}× ${peerName}'s time)`,
      ratio <= most ? "PASS" : "SHORT",
    );
  };
  if (set === "home" || set === "vm" || set === "usr") {
    speedBar("full", "tar", "tar|zstd", "full backup ≥ 1.3× the speed of tar -c | zstd -1", 1.3);
  }
  const files = smallFiles > 1 ? `of ${smallFiles} files ` : "";
  if (set === "home") {
    timeBar(
      "nochange",
      "tar",
      "tar -g",
      `no-change incremental ${files}≤ 1.0× tar --listed-incremental's time`,
      1,
    );
  }
  if (set === "vm") {
    timeBar("nochange", "tar", "tar -g", "no-change incremental ≤ 2× tar --listed-incremental's time", 2);
  }
  if (set === "home" || set === "vm") {
    timeBar("change", "tar", "tar -g", "1 % change incremental ≤ 1.0× tar --listed-incremental's time", 1);
  }
  speedBar("restore", "tar", "zstd -d|tar -x", "full restore ≥ 1.2× the speed of zstd -d | tar -x", 1.2);
  speedBar("restore", "restic", "restic", "full restore faster than restic's", 1);
  if (set === "home" || set === "vm") {
    speedBar(
      "chain",
      "tar",
      "tar -x --incremental ×5",
      "restore of the 5-level chain ≥ 1.5× tar's (5 archives extracted in order)",
      1.5,
    );
  }
  bars.push(rssBar(set, rows));
  return bars;
}

/** Peak RSS ≤ the ceiling in every scenario frost (default settings) ran. */
function rssBar(set: string, rows: Row[]): Bar {
  const rss = rows.filter((r) => r.tool === "frost" && r.rssMiB !== null);
  const bar = `peak RSS ≤ ${RSS_LIMIT_MIB} MiB (frost, default settings, every scenario)`;
  if (rss.length === 0) return { set, bar, measured: "not measured", status: "n/a" };
  const worst = rss.reduce((a, b) => b.rssMiB! > a.rssMiB! ? b : a);
  const over = rss.filter((r) => r.rssMiB! > RSS_LIMIT_MIB).map((r) =>
    `${SCENARIO_TITLES[r.scenario]} ${r.rssMiB!.toFixed(0)}`
  );
  return {
    set,
    bar,
    measured: `${worst.rssMiB!.toFixed(0)} MiB (highest, in ${SCENARIO_TITLES[worst.scenario]})` +
      (over.length > 1 ? `; over: ${over.join(", ")}` : ""),
    status: worst.rssMiB! <= RSS_LIMIT_MIB ? "PASS" : "SHORT",
  };
}

/** The Freezer bzip2 bars: ≥ 0.5× the speed of `bzip2 -dc`, and the memory ceiling. */
export function freezerBars(rows: Row[]): Bar[] {
  const set = "freezer";
  const bar = "Freezer bzip2 restore ≥ 0.5× the speed of bzip2 -dc";
  const f = row(rows, "freezer", "frost"), b = row(rows, "freezer", "bzip2");
  const speed: Bar = !f || !b
    ? { set, bar, measured: "not measured (frost or bzip2 did not run)", status: "n/a" }
    : {
      set,
      bar,
      measured: `${times(b.wall / f.wall, 0.5)}× (frost ${s(f.wall)}, bzip2 -dc ${s(b.wall)})`,
      status: b.wall / f.wall >= 0.5 ? "PASS" : "SHORT",
    };
  return [speed, rssBar(set, rows)];
}

/** The memory-flatness bars: flat from the smallest to the biggest size, and under the ceiling at each. */
export function rssBars(rows: RssRow[]): Bar[] {
  const jobs: { what: string; peaks: { size: string; rss: number }[] }[] = [
    {
      what: "full backup",
      peaks: rows.filter((r) => r.rssMiB !== null).map((r) => ({ size: r.size, rss: r.rssMiB! })),
    },
    {
      what: "full restore",
      peaks: rows.filter((r) => r.restore && r.restore.rssMiB !== null).map((r) => ({
        size: r.size,
        rss: r.restore!.rssMiB!,
      })),
    },
  ];
  const bars: Bar[] = [];
  const all: string[] = [];
  let peak = 0;
  for (const { what, peaks } of jobs) {
    const first = peaks[0], last = peaks.at(-1);
    const flat = `peak RSS of the ${what} flat from ${first?.size ?? "1 GiB"} to ${
      last?.size ?? "4 GiB"
    } (≤ +${RSS_FLAT_TOLERANCE * 100} %)`;
    if (!first || !last) {
      bars.push({ bar: flat, measured: "not measured", status: "n/a" });
      continue;
    }
    const list = peaks.map((p) => `${p.size}: ${p.rss.toFixed(0)} MiB`).join(", ");
    all.push(`${what} ${list}`);
    peak = Math.max(peak, ...peaks.map((p) => p.rss));
    if (first === last) bars.push({ bar: flat, measured: "needs two sizes", status: "n/a" });
    else {
      const growth = last.rss / first.rss - 1;
      bars.push({
        bar: flat,
        measured: `${list} (${growth >= 0 ? "+" : ""}${(growth * 100).toFixed(0)} %)`,
        status: growth <= RSS_FLAT_TOLERANCE ? "PASS" : "SHORT",
      });
    }
  }
  const ceiling = `peak RSS ≤ ${RSS_LIMIT_MIB} MiB at every size`;
  if (all.length > 0) {
    bars.push({ bar: ceiling, measured: all.join("; "), status: peak <= RSS_LIMIT_MIB ? "PASS" : "SHORT" });
  }
  return bars;
}

/** A ratio with two decimals, or three when two would round it onto the bar `limit`. */
function times(ratio: number, limit: number): string {
  const two = ratio.toFixed(2);
  return Number(two) === limit && ratio !== limit ? ratio.toFixed(3) : two;
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

/** Rows in table order: by scenario, then in the order given. */
export function sortRows(rows: Row[]): Row[] {
  return SCENARIOS.flatMap((sc) => rows.filter((r) => r.scenario === sc));
}

/** The table as aligned text for the terminal. */
export function textTable(rows: Row[]): string {
  const all = [HEADER, ...sortRows(rows).map(cells)];
  const widths = HEADER.map((_, i) => Math.max(...all.map((c) => c[i]!.length)));
  return all.map((c, n) =>
    c.map((v, i) => i < 2 ? v.padEnd(widths[i]!) : v.padStart(widths[i]!)).join("  ") +
    (n === 0 ? "\n" + widths.map((w) => "-".repeat(w)).join("  ") : "")
  ).join("\n");
}

/** The bars as aligned text. */
export function textBars(bars: Bar[]): string {
  const name = (b: Bar) => (b.set ? `[${b.set}] ` : "") + b.bar;
  const w = Math.max(...bars.map((b) => name(b).length));
  return bars.map((b) => `${b.status.padEnd(5)}  ${name(b).padEnd(w)}  ${b.measured}`).join("\n");
}

function mdTable(header: string[], lines: string[][], right: number[] = []): string {
  const align = header.map((_, i) => right.includes(i) ? "---:" : "---");
  const cell = (c: string) => c.replace(/\|/g, "\\|");
  return [header, align, ...lines].map((l) => `| ${l.map(cell).join(" | ")} |`).join("\n");
}

function mdBars(bars: Bar[], withSet: boolean): string {
  return mdTable(
    [...(withSet ? ["data set"] : []), "bar (issue 18)", "measured", "verdict"],
    bars.map((b) => [
      ...(withSet ? [b.set ?? ""] : []),
      b.bar,
      b.measured,
      b.status === "SHORT" ? "**SHORT**" : b.status,
    ]),
  );
}

function hostLine(m: Machine): string {
  return `${m.cpus} × ${m.cpuModel} (nproc ${m.cpus}), ${m.memoryGiB} GiB RAM, ${m.os}, kernel ${m.kernel}, ` +
    `writing to ${m.filesystem}`;
}

function loadLine(m: Machine, load?: Load): string {
  const avg = (l: number[]) => l.map((x) => x.toFixed(2)).join(" ");
  return load
    ? `load average (1, 5, 15 min) ${avg(load.start)} at the start, ${avg(load.end)} at the end`
    : `load average ${m.loadAverage ?? "?"} at the start`;
}

function machineLine(m: Machine, load?: Load): string {
  return `${hostLine(m)}, ${loadLine(m, load)}`;
}

const HOW_TO_RUN = [
  "## How to run",
  "",
  "```",
  "bash bench/setup                   # apt-get: tar, zstd, bzip2, GNU time, restic, borgbackup, duplicity",
  "deno task bench                    # = deno run -A bench/run.ts: every part, every installed tool, best of 2",
  "deno task bench --set home,usr     # some parts: home, vm, usr, flat, freezer, sizes",
  "deno task bench --smoke            # tiny home, vm, flat, freezer; frost and tar; ~20 s; bench/results/smoke.*",
  "deno task bench --rss-sizes 1G,4G  # only the sizes part: frost's backup and restore, peak RSS per size",
  "deno task bench --report           # rewrite this page from bench/results/latest.json",
  "```",
  "",
  'Parts (`--set`, default all, in this order): "home" 1.6 GiB with 100 000 small files and "vm" one 2 GiB',
  'disk image (generated; with 1 % change rounds and a 5-level chain); "usr" this machine\'s /usr backed up in',
  "place, read only (`--usr-source DIR`; a restore needs as much free space in `bench/work/` as the tree);",
  '"flat" one folder of 200 000 tiny files (`--flat-files N`); "freezer" a Freezer bzip2 backup of a 50 MiB',
  'tree restored by frost and by `bzip2 -dc` (`--freezer-size`); "sizes" frost\'s full backup and restore of',
  '"home" at 1 GiB and 4 GiB with 20 000 small files (`--rss-sizes`). Every part keeps the best of two',
  "rounds (`--runs 2`; `--runs 3` for three). The full default run was not timed here: expect roughly 30–45 minutes on a 2-core",
  "machine with frost and tar only (the restores of 100 000 files and of /usr dominate), plus about as much",
  "again when restic, borg and duplicity are installed; generating the sets (about 8 GiB) adds a few minutes the",
  "first time. Sizes: `--size 200M` (home and vm), `--home-size`, `--vm-size`, `--files 10000`; `--seed N`.",
  "Tools: `--tools` with `frost,frost-rsync,tar,restic,borg,borg-none,duplicity` (default: every installed one",
  'but `borg-none`; `frost-rsync` runs on "vm" only). frost: `--frost-bin PATH` (or `$FROST_BIN`; built there',
  "with the `build` task's command when missing), default `dist/frost`, rebuilt when older than the sources",
  "(`--no-build` to keep it). `--keep` leaves `bench/work/`; `--clean-data` removes the generated sets",
  "afterwards; `--timeout SECONDS` per command (default 1800). The bench measures; it never fails a build.",
  "`--no-save` prints the tables only; otherwise a run replaces the saved results of the parts it ran (also",
  "when `--tools` picks only some tools).",
  "",
];

const METHOD = [
  "## Method",
  "",
  "For each data set and round, every tool runs the same sequence on the same tree, one tool after another",
  "(the order rotating from round to round):",
  "",
  "1. **full backup** into an empty storage (backup 0 = level 0);",
  "2. **full restore (newest)** of that backup into an empty folder;",
  '3. ("home" and "vm" only) change round 1, then **1 % change incremental** (backup 1 = level 1); change',
  "   rounds 2–4 each followed by a backup (levels 2–4, untimed in the table; their times are in `levelWalls` in",
  "   the JSON);",
  '4. ("home" and "vm" only) **restore 5-level chain**: the newest backup (level 4), which needs level 0 and the',
  "   four change levels (tar: the five archives extracted in order with `--incremental`; restic, borg: the 5th",
  "   snapshot/archive; duplicity: the full backup and four incrementals);",
  '5. **no-change incremental**: one more backup of the unchanged tree (level 5; level 1 on "usr" and "flat");',
  "6. frost only, for its peak RSS: **ls** of the newest backup (output to /dev/null) and **verify --read-data**",
  "   (reads, checks and decodes every segment of the newest backup's chain).",
  "",
  "Every restore is checked: the same number of files and bytes as the tree, and byte for byte the files the",
  'last change round wrote plus every 50th file (the whole image for "vm"). The tree is put back to its',
  "generated state afterwards (the change rounds journal what they overwrite), so the next run starts from the",
  "same bytes. After a change round the bench waits until the tree is 2.5 s old before the next backup, so that",
  "a backup does not start within the second after a change (frost, like git, re-reads files whose ctime is that",
  'close to the parent backup\'s start). "usr" is never written: the bench only reads it.',
  "",
  'The Freezer bzip2 restore: a "home"-like tree is backed up once, untimed, the way OpenStack Freezer\'s tar',
  "engine does it (`tar --create -j --listed-incremental=… .` from inside the tree, with Freezer's tar options)",
  "into Freezer's container layout (`metadata/tar/bench_data/<ts>/0_<ts>/metadata`, `data/tar/…/data`); then",
  "`frost freezer restore` restores it into an empty folder, `bzip2 -dc data > /dev/null` decompresses it (the",
  "bar's anchor) and `bzip2 -dc data | tar -x --incremental` restores it (the same job as frost's, for",
  "reference).",
  "",
  "Warm page cache (the tree is read once before the first round; caches are not dropped). `sync` runs, untimed,",
  "before every timed command. Restored trees are checked, then renamed aside, and deleted only after the data",
  "set's last round, followed by a 35 s wait: on ext4 without a journal (this machine's disk) creating a file",
  "skips every inode freed in about the last 30 s, and restores timed right after deleting 100 000 files took",
  "2–3× longer for every tool. Wall time is measured around the process; CPU (user + sys) and peak RSS come from",
  "GNU `time` (`%U %S %M`, the figures `time -v` prints); for a pipeline CPU is summed over its processes and",
  "peak RSS is that of its biggest process. With more than one round the table keeps each tool's best (lowest)",
  "wall time and that run's CPU, and the highest peak RSS of all rounds. Stored: for backups the bytes the step",
  "added to the storage (`du -sb`), for restores the size of the whole storage restored from (tar: the archives",
  "and the snapshot file). MB/s = data-set bytes ÷ wall (10^6 B/s), for full backups, restores and verify.",
  "`frost speed ×` = the peer's wall time ÷ frost's in the same scenario: ≥ 1 means frost is as fast or faster.",
  "The load average (uptime's 1, 5 and 15 minutes) is recorded at the start and at the end of every part: above",
  "about 1 per core, other work shared the CPUs and absolute times are noisy.",
  "",
  "Restores of many small files are dominated by the kernel's cost of creating files (sys time), which varies a",
  "lot on a shared VM: the same restore has taken from 4 to 30 s from one run to the next. Compare restore",
  "figures within one run, and rerun with `--runs 3` when they matter.",
  "",
  "frost, restic and borg fsync what they write; `zstd -o` does not, so tar|zstd's backup time excludes the flush",
  "that frost's includes. `zstd -1` without `-T` compresses on one thread (tar and zstd are two processes, so the",
  "pipeline uses both cores); restic uses all cores by default; borg and duplicity use one. frost runs with",
  "`--max-level 5`, so backups 0–5 form one chain; `frost --engine rsync` (block deltas inside large files) is",
  'an extra row on "vm", on its own storage. duplicity runs with `--no-encryption` (gzip, its default) on a',
  "`file://` target; restic with its defaults (a password is required; compression auto); borg with",
  "`-e none` and `--compression zstd,1` (`borg-none`: `--compression none`).",
  "",
];

function setSection(r: SetResults): string[] {
  const out: string[] = [];
  out.push(`## Data set "${r.set}" (${r.date})`, "");
  out.push(`- Data: ${r.data.description}.`);
  const tarFull = row(r.rows, "full", "tar");
  if (tarFull?.storedMiB) {
    out.push(
      `- tar | zstd -1 stores ${(tarFull.storedMiB * 2 ** 20 / r.data.bytes * 100).toFixed(0)} % of it.`,
    );
  }
  if (r.changes.length > 0) {
    const c = r.changes[0]!;
    const what = r.set === "vm"
      ? `${c.blocks} blocks of 4 KiB rewritten`
      : `${c.modified} files modified, ${c.added} added, ${c.deleted} deleted`;
    out.push(
      `- Change round 1: ${what} (${
        (c.bytesWritten / 2 ** 20).toFixed(1)
      } MiB written); rounds 2–${r.changes.length} alike.`,
    );
  }
  out.push(`- Machine: ${machineLine(r.machine, r.load)}.`);
  out.push(`- frost: \`${r.frost.command}\` at commit ${r.frost.commit}.`);
  for (const n of r.frost.notes) out.push(`- **${n}**`);
  out.push(`- Versions: ${Object.entries(r.versions).map(([k, v]) => `${k} ${v}`).join("; ")}.`);
  out.push(
    `- ${r.runs} round${r.runs === 1 ? "" : "s"}; the whole set took ${Math.round(r.seconds)} s.`,
    "",
  );
  out.push(
    mdTable(
      [...HEADER, "every run's wall s"],
      sortRows(r.rows).map((x) => [...cells(x), x.walls.map((w) => w.toFixed(2)).join(" / ")]),
      [2, 3, 4, 5, 6, 7],
    ),
    "",
  );
  out.push(mdBars(r.bars, false), "");
  if (r.notes.length > 0) out.push("Notes:", "", ...r.notes.map((n) => `- ${n}`), "");
  out.push(
    "Exact commands (DATA = the data-set folder; STORE, REPO, TARGET, OUT = folders in `bench/work/`):",
    "",
  );
  for (const [tool, cmds] of Object.entries(r.commands)) {
    out.push(`- ${tool}:`);
    for (const sc of SCENARIOS) {
      if (cmds[sc]) out.push(`  - ${SCENARIO_TITLES[sc]}: \`${cmds[sc]}\``);
    }
  }
  out.push("");
  return out;
}

function freezerSection(r: FreezerResults): string[] {
  const out: string[] = [];
  out.push(`## Freezer bzip2 restore (${r.date})`, "");
  out.push(
    `- Data: ${r.data.description}; Freezer's \`tar -j\` stream of it is ${
      (r.data.compressed / 2 ** 20).toFixed(1)
    } MiB ` +
      `(one level-0 \`data\` object, no encryption).`,
    `- Machine: ${machineLine(r.machine, r.load)}.`,
    `- frost: \`${r.frost.command}\` at commit ${r.frost.commit}.`,
    ...r.frost.notes.map((n) => `- **${n}**`),
    `- Versions: ${Object.entries(r.versions).map(([k, v]) => `${k} ${v}`).join("; ")}.`,
    `- ${r.runs} round${r.runs === 1 ? "" : "s"}; the whole run took ${Math.round(r.seconds)} s.`,
    "",
    mdTable(
      [...HEADER, "every run's wall s"],
      r.rows.map((x) => [...cells(x), x.walls.map((w) => w.toFixed(2)).join(" / ")]),
      [2, 3, 4, 5, 6, 7],
    ),
    "",
    mdBars(r.bars, false),
    "",
  );
  if (r.notes.length > 0) out.push("Notes:", "", ...r.notes.map((n) => `- ${n}`), "");
  out.push("Exact commands (STORE = the Freezer container in `bench/work/`, OUT = an empty folder):", "");
  for (const [tool, cmd] of Object.entries(r.commands)) out.push(`- ${tool}: \`${cmd}\``);
  out.push("");
  return out;
}

/** The generated part of docs/BENCHMARKS.md (or of bench/results/smoke.md). */
export function markdown(results: Results, opts: { other?: boolean } = {}): string {
  const out: string[] = [];
  out.push(
    "Generated by `bench/run.ts` (`deno task bench`) between these markers; rerun the bench instead of editing",
    "it. Text outside the markers is kept as it is. Machine-readable results: `bench/results/latest.json`.",
    "",
    ...HOW_TO_RUN,
  );
  const sets = Object.values(results.sets ?? {}).filter((x): x is SetResults => !!x);
  const bars = [
    ...sets.flatMap((x) => x.bars),
    ...(results.freezer?.bars ?? []),
    ...(results.rss?.bars ?? []),
  ];
  out.push("## Summary: the bars of issue 18", "");
  if (bars.length === 0) out.push("Not run yet: `deno task bench`.", "");
  else {
    const runs: { label: string; r: { date: string; runs: number; machine: Machine; load?: Load } }[] = [
      ...sets.map((r) => ({ label: `"${r.set}"`, r })),
      ...(results.freezer ? [{ label: "freezer", r: results.freezer }] : []),
      ...(results.rss ? [{ label: "home, by size", r: results.rss }] : []),
    ];
    const hosts = new Set(runs.map(({ r }) => hostLine(r.machine)));
    const one = hosts.size === 1;
    out.push(
      "Measured side by side, one data set after another, keeping each tool's best wall time of the rounds,",
      `warm page cache. ${
        one ? `Machine: ${[...hosts][0]}. Load` : "Machine and load"
      } average (uptime's 1, 5`,
      "and 15 minutes) of each part:",
      "",
      ...runs.map(({ label, r }) =>
        `- ${label} (${r.date}, ${r.runs === 1 ? "one round" : `best of ${r.runs}`}): ${
          one ? loadLine(r.machine, r.load) : machineLine(r.machine, r.load)
        }.`
      ),
      "",
    );
    const missing = [
      ...SET_KINDS.filter((k) => !results.sets?.[k]).map((k) => ({ part: k, what: `data set "${k}"` })),
      ...(results.freezer ? [] : [{ part: "freezer", what: "the Freezer bzip2 restore" }]),
      ...(results.rss ? [] : [{ part: "sizes", what: "the memory flatness from 1 GiB to 4 GiB" }]),
    ];
    if (missing.length > 0) {
      out.push(
        `Not measured yet, so its bars are missing below: ${
          missing.map((m) => `${m.what} (\`deno task bench --set ${m.part}\`)`).join(", ")
        }.`,
        "",
      );
    }
    out.push(mdBars(bars.map((b) => ({ ...b, set: b.set ?? "home, by size" })), true), "");
    const short = bars.filter((b) => b.status === "SHORT");
    if (short.length === 0) out.push("frost meets every bar measured here.", "");
    else {
      out.push(
        "Where frost falls short:",
        "",
        ...short.map((b) => `- ${b.set ? `"${b.set}": ` : ""}${b.bar}: ${b.measured}.`),
        "",
      );
    }
  }
  for (const set of sets) out.push(...setSection(set));
  if (results.freezer) out.push(...freezerSection(results.freezer));
  out.push(...METHOD);
  const r = results.rss;
  out.push("## Memory flatness (frost's full backup and restore by data size)", "");
  if (r) {
    out.push(
      `${r.date}; ${
        machineLine(r.machine, r.load)
      }; frost \`${r.frost.command}\` at commit ${r.frost.commit}; ` +
        `best wall of ${r.runs} run${
          r.runs === 1 ? "" : "s"
        }, highest peak RSS. "home" sets with the same number of small files; the larger sets add large ` +
        "files, so memory is compared at a growing byte count.",
      "",
    );
    for (const n of r.frost.notes) out.push(`- **${n}**`, "");
    out.push(
      mdTable(
        [
          "data",
          "files",
          "backup wall s",
          "backup peak RSS MiB",
          "backup MB/s",
          "restore wall s",
          "restore peak RSS MiB",
        ],
        r.rows.map((x) => [
          x.size,
          String(x.files),
          x.wall.toFixed(2),
          num(x.rssMiB, 0),
          x.mbps.toFixed(0),
          x.restore ? x.restore.wall.toFixed(2) : "—",
          num(x.restore?.rssMiB ?? null, 0),
        ]),
        [1, 2, 3, 4, 5, 6],
      ),
      "",
      mdBars(r.bars, false),
      "",
    );
    if (r.notes?.length) out.push(...r.notes.map((n) => `- ${n}`), "");
  } else {
    out.push("Not run yet: `deno task bench --set sizes`.", "");
  }
  // The other benches (rsync engine, remote storages, encryption) print their tables; their latest figures
  // are kept by hand in bench/results/other.md and carried into this page.
  if (opts.other !== false) {
    try {
      out.push(fs.readFileSync(new URL("./results/other.md", import.meta.url), "utf8").trimEnd(), "");
    } catch {
      // none recorded yet
    }
  }
  return out.join("\n");
}

const TITLE = "# frost benchmarks";
const BEGIN = "<!-- BEGIN generated by bench/report.ts: replaced on every run -->";
const END = "<!-- END generated by bench/report.ts: hand-written sections go below -->";
/** Headings the generator writes (now or in earlier versions): in a page without markers, these are its own. */
const GENERATED_HEADING =
  /^(## (How to run|Comparison|Summary|Data set|Freezer bzip2|Method|Memory flatness)|### (Bars|Notes|Exact commands)$)/;

/**
 * The page: `generated` between the markers of `existing`, whose text outside the markers is kept. A page
 * from before the markers keeps its sections that neither the generator nor bench/results/other.md wrote.
 * Returns the page and the headings of the kept hand-written sections.
 */
export function composeDoc(existing: string | null, generated: string): { text: string; kept: string[] } {
  const body = `${BEGIN}\n\n${generated.trimEnd()}\n\n${END}`;
  if (existing === null || existing.trim() === "") return { text: `${TITLE}\n\n${body}\n`, kept: [] };
  const b = existing.indexOf(BEGIN), e = existing.indexOf(END);
  if (b >= 0 && e > b) {
    const before = existing.slice(0, b), after = existing.slice(e + END.length);
    const kept = [...after.matchAll(/^#{2,3} .*$/gm)].map((m) => m[0]);
    return { text: `${before}${body}${after.trimEnd() === "" ? "\n" : after}`, kept };
  }
  // No markers: split into sections at "## " and "### " headings (outside code fences).
  let otherHeadings = new Set<string>();
  try {
    const other = fs.readFileSync(new URL("./results/other.md", import.meta.url), "utf8");
    otherHeadings = new Set([...other.matchAll(/^#{2,3} .*$/gm)].map((m) => m[0].trim()));
  } catch {
    // no other.md
  }
  const lines = existing.split("\n");
  const blocks: { heading: string; level: number; lines: string[] }[] = [];
  let fence = false;
  for (const line of lines) {
    if (/^(```|~~~)/.test(line)) fence = !fence;
    const m = fence ? null : /^(#{2,3}) /.exec(line);
    if (m) blocks.push({ heading: line.trim(), level: m[1]!.length, lines: [line] });
    else blocks.at(-1)?.lines.push(line);
  }
  const keptBlocks: string[] = [];
  const kept: string[] = [];
  let parentGenerated = false;
  for (const block of blocks) {
    const generatedHere = GENERATED_HEADING.test(block.heading) || otherHeadings.has(block.heading);
    if (block.level === 2) parentGenerated = generatedHere;
    const keep = block.level === 2 ? !generatedHere : !parentGenerated || !generatedHere;
    if (keep) {
      keptBlocks.push(block.lines.join("\n").trimEnd());
      kept.push(block.heading);
    }
  }
  const after = keptBlocks.length ? `\n\n${keptBlocks.join("\n\n")}\n` : "\n";
  return { text: `${TITLE}\n\n${body}${after}`, kept };
}
