/**
 * frost's benchmark against GNU tar | zstd (and restic and borg when installed): full backup, no-change
 * incremental and restore of a generated tree, alternating the tools and keeping the best of N rounds.
 * Prints a table, writes bench/results/latest.json and regenerates docs/BENCHMARKS.md.
 *
 *   deno task bench [--size 1G] [--files 20000] [--runs 3] [--tools frost,tar,restic,borg]
 *   deno task bench --smoke              # ~50 MiB, one round, ~15 s (results go to bench/results/smoke.*)
 *   deno task bench --rss-sizes 1G,4G    # frost's full backup only: peak RSS per data size
 *
 * The bench measures; it never fails a build. It exits 0 even when frost falls short of a bar.
 * @module
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { type DataParams, type DataSet, ensureDataSet, formatSize, parseSize, settle } from "./data.ts";
import {
  exec,
  haveGnuTime,
  loadAverage,
  machineFacts,
  onPath,
  shellQuote,
  syncDisks,
  versionOf,
} from "./measure.ts";
import {
  mainBars,
  type MainResults,
  markdown,
  type Results,
  type Row,
  rssBars,
  type RssResults,
  type RssRow,
  textBars,
  textTable,
} from "./report.ts";
import {
  borgTool,
  CommandError,
  frostTool,
  resticTool,
  SCENARIO_TITLES,
  SCENARIOS,
  type StepResult,
  tarTool,
  type Tool,
  type ToolContext,
} from "./tools.ts";

const BENCH = import.meta.dirname!;
const ROOT = path.dirname(BENCH);
const DATA_DIR = path.join(BENCH, "data");
const WORK_DIR = path.join(BENCH, "work");
const RESULTS_DIR = path.join(BENCH, "results");
const DOCS = path.join(ROOT, "docs", "BENCHMARKS.md");
const ALL_TOOLS = ["frost", "tar", "restic", "borg"] as const;

const USAGE = `Usage: deno task bench [options]

  --size SIZE          data set size (default 1G, or $BENCH_SIZE; K/M/G/T = KiB/MiB/GiB/TiB)
  --files N            small files (default 20000, or $BENCH_FILES)
  --runs N             rounds, best of which is kept (default 3, or $BENCH_RUNS)
  --seed N             data generator seed (default 1)
  --smoke              quick check: 50M, 800 files, 1 round; results in bench/results/smoke.{json,md}
  --tools LIST         comma-separated subset of frost,tar,restic,borg (default: all installed)
  --rss-sizes LIST     only frost's full backup at these sizes (e.g. 1G,4G): peak RSS per size
  --frost PATH         frost binary to measure (default $FROST_BIN, else dist/frost, built when stale)
  --no-build           do not build dist/frost when it is missing or older than the sources
  --timeout SECONDS    kill a command after this long (default 1800)
  --keep               keep bench/work/ (storages and archives) afterwards
  --report             only rewrite docs/BENCHMARKS.md from bench/results/latest.json
  -h, --help           this help`;

interface Options {
  size: number;
  files: number;
  runs: number;
  seed: number;
  smoke: boolean;
  tools: string[];
  rssSizes: number[] | null;
  frost: string | undefined;
  build: boolean;
  timeout: number;
  keep: boolean;
  report: boolean;
}

function log(line: string): void {
  process.stderr.write(line + "\n");
}

function options(): Options | null {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      size: { type: "string" },
      files: { type: "string" },
      runs: { type: "string" },
      seed: { type: "string" },
      smoke: { type: "boolean" },
      tools: { type: "string" },
      "rss-sizes": { type: "string" },
      frost: { type: "string" },
      "no-build": { type: "boolean" },
      timeout: { type: "string" },
      keep: { type: "boolean" },
      report: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    return null;
  }
  const int = (v: string | undefined, fallback: number, name: string) => {
    if (v === undefined || v === "") return fallback;
    if (!/^\d+$/.test(v)) throw new Error(`${name}: expected a whole number, got "${v}"`);
    return Number(v);
  };
  const smoke = values.smoke ?? false;
  const env = process.env;
  const tools = (values.tools ?? ALL_TOOLS.join(",")).split(",").map((t) => t.trim()).filter(Boolean);
  for (const t of tools) {
    if (!(ALL_TOOLS as readonly string[]).includes(t)) throw new Error(`--tools: unknown tool "${t}"`);
  }
  return {
    size: parseSize(values.size ?? (smoke ? "50M" : env.BENCH_SIZE || "1G")),
    files: int(values.files ?? (smoke ? "800" : env.BENCH_FILES), 20000, "--files"),
    runs: Math.max(1, int(values.runs ?? (smoke ? "1" : env.BENCH_RUNS), 3, "--runs")),
    seed: int(values.seed, 1, "--seed"),
    smoke,
    tools,
    rssSizes: values["rss-sizes"] ? values["rss-sizes"].split(",").map((x) => parseSize(x)) : null,
    frost: values.frost ?? env.FROST_BIN,
    build: !values["no-build"],
    timeout: int(values.timeout, smoke ? 120 : 1800, "--timeout"),
    keep: values.keep ?? false,
    report: values.report ?? false,
  };
}

/** The newest mtime of frost's sources (what dist/frost is built from). */
function newestSource(): number {
  let newest = 0;
  const skip = new Set(["node_modules", "dist", "bench", "tests", "docs", ".git", ".ci", ".tmp"]);
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      if (skip.has(e.name)) continue;
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.(ts|json)$/.test(e.name)) newest = Math.max(newest, fs.statSync(p).mtimeMs);
    }
  };
  walk(ROOT);
  return newest;
}

/** The frost command to measure, and what the report should say about it. */
function resolveFrost(opts: Options): { cmd: string[]; label: string; notes: string[] } {
  if (opts.frost) {
    const bin = path.resolve(opts.frost);
    return { cmd: [bin], label: path.relative(ROOT, bin) || bin, notes: [] };
  }
  const bin = path.join(ROOT, "dist", "frost");
  const stale = !fs.existsSync(bin) || fs.statSync(bin).mtimeMs < newestSource();
  if (stale && opts.build) {
    log(
      `frost: ${fs.existsSync(bin) ? "dist/frost is older than the sources" : "no dist/frost"}; building it…`,
    );
    const env = { ...process.env, PATH: `${path.join(ROOT, "node_modules", ".bin")}:${process.env.PATH}` };
    // The build task's command line, run by bash: `deno task` here runs node_modules/.bin/bun as a script.
    const task = (JSON.parse(fs.readFileSync(path.join(ROOT, "deno.json"), "utf8")) as {
      tasks?: Record<string, string>;
    }).tasks?.build ?? "bun build --compile --minify main.ts --outfile dist/frost";
    const r = spawnSync("bash", ["-c", task], {
      cwd: ROOT,
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    if (r.status !== 0) {
      log(`frost: build failed: ${String(r.stderr).trim().split("\n").slice(-3).join(" | ")}`);
    }
  }
  if (fs.existsSync(bin)) {
    const notes = fs.statSync(bin).mtimeMs < newestSource()
      ? [
        "dist/frost is older than the sources it was built from: these numbers may not be the current code's.",
      ]
      : [];
    return { cmd: [bin], label: "dist/frost (bun build --compile)", notes };
  }
  return {
    cmd: [process.execPath, "run", "-A", "--quiet", path.join(ROOT, "main.ts")],
    label: "deno run -A main.ts",
    notes: [
      "dist/frost was missing and could not be built: frost ran as `deno run -A main.ts` (Deno's runtime and " +
      "start-up instead of the shipped Bun binary).",
    ],
  };
}

function commitOf(): string {
  try {
    const head = exec(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]).trim();
    // Changes to the bench itself and its results do not change what is measured.
    const dirty = exec(["git", "-C", ROOT, "status", "--porcelain"]).split("\n")
      .some((l) => l.trim() !== "" && !/^.. "?(bench\/|docs\/BENCHMARKS\.md)/.test(l));
    return dirty ? `${head} + uncommitted changes` : head;
  } catch {
    return "unknown";
  }
}

function versions(frost: string[], tools: string[]): Record<string, string> {
  const v: Record<string, string> = {};
  const put = (k: string, line: string | null) => {
    const m = line ? /\d+\.\d+(\.\d+)?/.exec(line) : null;
    if (m) v[k] = m[0];
  };
  put("frost", versionOf([...frost, "--version"]));
  put("deno (runs the bench)", process.versions.deno ?? null);
  put("bun (builds dist/frost)", versionOf([path.join(ROOT, "node_modules", ".bin", "bun"), "--version"]));
  if (tools.includes("tar")) {
    put("GNU tar", versionOf(["tar", "--version"]));
    put("zstd", versionOf(["zstd", "--version"]));
  }
  if (tools.includes("restic")) put("restic", versionOf(["restic", "version"]));
  if (tools.includes("borg")) put("borg", versionOf(["borg", "--version"]));
  return v;
}

/** Reads the whole tree once so that every tool starts from a warm page cache. */
function warm(data: DataSet): void {
  const started = performance.now();
  exec(["bash", "-c", `tar -C "$1" -cf - . | cat > /dev/null`, "bash", data.root]);
  log(`data: warmed the page cache in ${((performance.now() - started) / 1000).toFixed(1)} s`);
}

function describe(data: DataSet): string {
  return `"home-lite", ${formatSize(data.bytes)} (${data.bytes} bytes) in ${data.fileCount} files and ` +
    `${data.dirCount} folders: ${data.params.files} small files of 0–64 KiB (half pseudo-English text, half random ` +
    `bytes) in a tree up to 10 folders deep, plus ${data.largeFiles} large files alternating 1 MiB of text and ` +
    `1 MiB of random bytes; seed ${data.params.seed}`;
}

function fmtStep(r: StepResult): string {
  const s = r.sample;
  const parts = [`${s.wall.toFixed(3)} s wall`];
  if (s.cpu !== null) parts.push(`${s.cpu.toFixed(2)} s cpu`);
  if (s.rssMiB !== null) parts.push(`${s.rssMiB.toFixed(0)} MiB RSS`);
  if (r.stored !== null) parts.push(`${(r.stored / 2 ** 20).toFixed(1)} MiB stored`);
  return parts.join(", ") + (r.note ? ` — ${r.note}` : "");
}

function writeJson(file: string, value: unknown): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(value, null, 2) + "\n");
}

function readResults(file: string): Results {
  try {
    return JSON.parse(fs.readFileSync(file, "utf8")) as Results;
  } catch {
    return {};
  }
}

/** Writes the results (merged with the other kind of run from the last time) and the Markdown. */
function publish(opts: Options, update: Results): void {
  const jsonFile = path.join(RESULTS_DIR, opts.smoke ? "smoke.json" : "latest.json");
  const mdFile = opts.smoke ? path.join(RESULTS_DIR, "smoke.md") : DOCS;
  const results = { ...readResults(jsonFile), ...update };
  // The verdicts follow the current bars, also for the kept part from an earlier run.
  if (results.main) results.main.bars = mainBars(results.main.rows);
  if (results.rss) results.rss.bars = rssBars(results.rss.rows);
  writeJson(jsonFile, results);
  fs.mkdirSync(path.dirname(mdFile), { recursive: true });
  fs.writeFileSync(mdFile, markdown(results));
  // Keep `deno fmt --check` clean (tables aligned, lines wrapped at the project's width). Through env(1):
  // Deno's child_process rewrites a spawn of its own executable into `deno run`.
  const fmt = spawnSync("env", [process.execPath, "fmt", "--quiet", jsonFile, mdFile], {
    cwd: ROOT,
    stdio: "ignore",
  });
  if (fmt.status !== 0) log("bench: deno fmt of the results failed; run `deno fmt` before committing them");
  log(`\nwrote ${path.relative(ROOT, jsonFile)} and ${path.relative(ROOT, mdFile)}`);
}

function ctxFor(data: DataSet, tool: string, opts: Options, frost: string[]): ToolContext {
  return { data, work: path.join(WORK_DIR, tool), timeout: opts.timeout, frost };
}

/** The comparison run. */
function runMain(opts: Options): void {
  const frost = resolveFrost(opts);
  const notes: string[] = [];
  if (!haveGnuTime) {
    notes.push("GNU time (/usr/bin/time) is missing: no CPU time or peak RSS (run bash bench/setup).");
  }
  const wanted = opts.tools;
  const available = wanted.filter((t) => {
    const missing = t === "tar"
      ? ["tar", "zstd"].filter((c) => !onPath(c))
      : t === "frost"
      ? []
      : [t].filter((c) => !onPath(c));
    if (missing.length > 0) {
      notes.push(`${t} skipped: ${missing.join(", ")} not installed (bash bench/setup).`);
    }
    return missing.length === 0;
  });
  const machine = machineFacts(BENCH);
  const data = ensureDataSet(DATA_DIR, { size: opts.size, files: opts.files, seed: opts.seed }, log);
  fs.mkdirSync(WORK_DIR, { recursive: true });
  warm(data);
  settle(DATA_DIR, data);
  const makers: Record<string, (c: ToolContext) => Tool> = {
    frost: frostTool,
    tar: tarTool,
    restic: resticTool,
    borg: borgTool,
  };
  const tools = available.map((t) => makers[t]!(ctxFor(data, t, opts, frost.cmd)));
  log(`frost: ${shellQuote(frost.cmd)}`);
  for (const n of frost.notes) log(`frost: ${n}`);

  const samples = new Map<string, StepResult[]>();
  const failures = new Map<string, string>();
  const started = performance.now();
  for (let round = 0; round < opts.runs; round++) {
    const failed = new Set<string>();
    for (const scenario of SCENARIOS) {
      const order = tools.map((_, i) => tools[(i + round) % tools.length]!);
      for (const tool of order) {
        if (failed.has(tool.id)) continue;
        const key = `${scenario}/${tool.id}`;
        try {
          const r = tool.step(scenario);
          samples.set(key, [...(samples.get(key) ?? []), r]);
          log(
            `round ${round + 1}/${opts.runs}  ${SCENARIO_TITLES[scenario].padEnd(22)} ${
              tool.label.padEnd(14)
            } ${fmtStep(r)}`,
          );
          if (r.note) {
            notes.push(`${tool.label}, ${SCENARIO_TITLES[scenario]}, round ${round + 1}: ${r.note}`);
          }
        } catch (err) {
          if (!(err instanceof CommandError)) throw err;
          failed.add(tool.id);
          failures.set(key, err.message);
          log(
            `round ${round + 1}/${opts.runs}  ${SCENARIO_TITLES[scenario].padEnd(22)} ${
              tool.label.padEnd(14)
            } FAILED: ${err.message}`,
          );
        }
      }
    }
  }
  for (const [key, message] of failures) {
    const [scenario, tool] = key.split("/");
    notes.push(`${tool} failed in ${SCENARIO_TITLES[scenario as keyof typeof SCENARIO_TITLES]}: ${message}`);
  }
  if (!opts.keep) { for (const t of tools) t.cleanup(); }
  log(`bench: ${((performance.now() - started) / 1000).toFixed(0)} s of rounds`);
  busyNote(machine.loadAverage, notes);

  const rows: Row[] = [];
  for (const scenario of SCENARIOS) {
    const frostBest = best(samples.get(`${scenario}/frost`));
    for (const tool of tools) {
      const runs = samples.get(`${scenario}/${tool.id}`);
      const b = best(runs);
      if (!runs || !b) continue;
      const rss = runs.map((r) => r.sample.rssMiB).filter((x): x is number => x !== null);
      rows.push({
        scenario,
        tool: tool.id,
        label: tool.label,
        wall: b.sample.wall,
        cpu: b.sample.cpu,
        rssMiB: rss.length ? Math.max(...rss) : null,
        storedMiB: b.stored === null ? null : b.stored / 2 ** 20,
        mbps: scenario === "nochange" ? null : data.bytes / 1e6 / b.sample.wall,
        frostSpeed: tool.id === "frost" || !frostBest ? null : b.sample.wall / frostBest.sample.wall,
        walls: runs.map((r) => r.sample.wall),
      });
    }
  }
  const bars = mainBars(rows);
  const result: MainResults = {
    date: new Date().toISOString(),
    machine,
    versions: versions(frost.cmd, available),
    frost: { command: frost.label, commit: commitOf(), notes: frost.notes },
    data: {
      id: data.id,
      bytes: data.bytes,
      files: data.fileCount,
      dirs: data.dirCount,
      largeFiles: data.largeFiles,
      description: describe(data),
    },
    runs: opts.runs,
    rows,
    bars,
    commands: Object.fromEntries(tools.map((t) => [t.label, t.commands])),
    notes,
  };

  console.log(
    `\nfrost bench, ${result.date}: ${
      formatSize(data.bytes)
    } in ${data.fileCount} files, best of ${opts.runs}, warm cache`,
  );
  console.log(
    `machine: ${machine.cpus} × ${machine.cpuModel}, ${machine.memoryGiB} GiB, kernel ${machine.kernel}`,
  );
  console.log(`versions: ${Object.entries(result.versions).map(([k, v]) => `${k} ${v}`).join("; ")}`);
  console.log(`frost: ${frost.label}${frost.notes.length ? ` (${frost.notes.join(" ")})` : ""}\n`);
  console.log(textTable(rows));
  console.log("\n" + textBars(bars));
  if (notes.length) console.log("\nnotes:\n" + notes.map((n) => `- ${n}`).join("\n"));
  publish(opts, { main: result });
}

/** A note when something else kept the CPUs busy while the bench ran. */
function busyNote(loadAtStart: number, notes: string[]): void {
  const end = loadAverage();
  if (Math.max(loadAtStart, end) > 1) {
    notes.push(
      `The machine was busy with other work (load average ${loadAtStart} at the start, ${end} at the end, on ` +
        `${os.cpus().length} CPUs): absolute times are noisy; compare tools within this run, not across runs.`,
    );
  }
}

function best(runs: StepResult[] | undefined): StepResult | undefined {
  if (!runs || runs.length === 0) return undefined;
  return runs.reduce((a, b) => b.sample.wall < a.sample.wall ? b : a);
}

/** The memory-flatness run: frost's full backup at each size. */
function runRss(opts: Options, sizes: number[]): void {
  const frost = resolveFrost(opts);
  const machine = machineFacts(BENCH);
  const rows: RssRow[] = [];
  for (const size of sizes) {
    const params: DataParams = { size, files: opts.files, seed: opts.seed };
    const data = ensureDataSet(DATA_DIR, params, log);
    warm(data);
    settle(DATA_DIR, data);
    const tool = frostTool(ctxFor(data, "frost", opts, frost.cmd));
    const runs: StepResult[] = [];
    for (let round = 0; round < opts.runs; round++) {
      try {
        const r = tool.step("full");
        runs.push(r);
        log(`rss ${formatSize(size)} round ${round + 1}/${opts.runs}: ${fmtStep(r)}`);
      } catch (err) {
        if (!(err instanceof CommandError)) throw err;
        log(`rss ${formatSize(size)} round ${round + 1}/${opts.runs}: FAILED: ${err.message}`);
        break;
      }
    }
    tool.cleanup();
    syncDisks();
    const b = best(runs);
    if (!b) continue;
    const rss = runs.map((r) => r.sample.rssMiB).filter((x): x is number => x !== null);
    rows.push({
      size: formatSize(size),
      bytes: data.bytes,
      files: data.fileCount,
      wall: b.sample.wall,
      rssMiB: rss.length ? Math.max(...rss) : null,
      mbps: data.bytes / 1e6 / b.sample.wall,
      walls: runs.map((r) => r.sample.wall),
    });
  }
  const bars = rssBars(rows);
  const notes: string[] = [];
  busyNote(machine.loadAverage, notes);
  const result: RssResults = {
    date: new Date().toISOString(),
    machine,
    frost: { command: frost.label, commit: commitOf(), notes: frost.notes },
    runs: opts.runs,
    rows,
    bars,
    notes,
  };
  console.log(`\nfrost full backup, peak RSS by data size (best wall of ${opts.runs}, highest RSS):`);
  for (const r of rows) {
    console.log(
      `  ${r.size.padEnd(9)} ${String(r.files).padStart(6)} files  ${r.wall.toFixed(2).padStart(7)} s  ` +
        `${r.rssMiB === null ? "—" : r.rssMiB.toFixed(0).padStart(4)} MiB  ${r.mbps.toFixed(0)} MB/s`,
    );
  }
  console.log("\n" + textBars(bars));
  if (notes.length) console.log("\nnotes:\n" + notes.map((n) => `- ${n}`).join("\n"));
  publish(opts, { rss: result });
}

const opts = options();
if (opts) {
  if (opts.report) publish(opts, {});
  else if (opts.rssSizes) runRss(opts, opts.rssSizes);
  else runMain(opts);
}
