/**
 * frost's benchmark against GNU tar | zstd, restic, borg and duplicity (those installed): on two generated
 * data sets ("home": many small files and a few large ones; "vm": one disk image), every tool makes a full
 * backup, restores it, makes four incrementals after 1 % change rounds, restores that 5-level chain and makes
 * a no-change incremental. Prints a table per set, writes bench/results/latest.json and regenerates the
 * generated part of docs/BENCHMARKS.md.
 *
 *   deno task bench [--set home,vm] [--size 200M] [--files 10000] [--runs 1] [--tools frost,tar,…]
 *   deno task bench --smoke              # tiny sets, frost and tar, ~15 s (results go to bench/results/smoke.*)
 *   deno task bench --rss-sizes 1G,4G    # the sizes part only: frost's backup and restore, peak RSS per size
 *
 * The bench measures; it never fails a build. It exits 0 even when frost falls short of a bar.
 * @module
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import {
  applyChanges,
  type ChangeSummary,
  type DataParams,
  type DataSet,
  describeSet,
  ensureDataSet,
  hasChangeRounds,
  revertChanges,
  SET_KINDS,
  type SetKind,
  settle,
  sourceDataSet,
} from "./data.ts";
import { formatBytes, parseSize } from "../base/units.ts";
import { freezerSetup } from "./freezer_set.ts";
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
  composeDoc,
  freezerBars,
  type FreezerResults,
  markdown,
  type Results,
  type Row,
  rssBars,
  type RssResults,
  type RssRow,
  setBars,
  type SetResults,
  textBars,
  textTable,
} from "./report.ts";
import {
  CHANGE_ROUNDS,
  clearRestored,
  CommandError,
  type Scenario,
  SCENARIO_TITLES,
  SCENARIOS,
  type StepResult,
  type Tool,
  TOOL_IDS,
  type ToolId,
  TOOLS,
} from "./tools.ts";

const BENCH = import.meta.dirname!;
const ROOT = path.dirname(BENCH);
const DATA_DIR = path.join(BENCH, "data");
const WORK_DIR = path.join(BENCH, "work");
const RESULTS_DIR = path.join(BENCH, "results");
const DOCS = path.join(ROOT, "docs", "BENCHMARKS.md");
/** The generated sets whose size is chosen. */
type SizedKind = "home" | "vm";
const DEFAULT_SIZE: Record<SizedKind, string> = { home: "1.6G", vm: "2G" };
const SMOKE_SIZE: Record<SizedKind, string> = { home: "24M", vm: "16M" };
/** The parts of a run: the data sets, then the Freezer bzip2 restore and the memory-flatness run. */
const PARTS = [...SET_KINDS, "freezer", "sizes"] as const;
type Part = typeof PARTS[number];
/** What --smoke runs unless --set says otherwise ("usr" is not small, "sizes" needs GiBs). */
const SMOKE_PARTS: Part[] = ["home", "vm", "flat", "freezer"];

const USAGE = `Usage: deno task bench [options]

  --set LIST           parts to run, in this order (default: all): home, vm (generated; with 1 % change
                       rounds and a 5-level chain), usr (this machine's /usr, read only), flat (one folder of
                       --flat-files files), freezer (Freezer bzip2 restore), sizes (frost's full backup
                       and restore at each --rss-sizes: is peak RSS flat)
  --size SIZE          size of "home" and "vm" (default home 1.6G, vm 2G, or $BENCH_SIZE; K/M/G/T binary)
  --home-size SIZE     size of "home" (overrides --size)
  --vm-size SIZE       size of "vm" (overrides --size)
  --files N            small files in "home" (default 100000, or $BENCH_FILES)
  --usr-source DIR     the tree of "usr" (default /usr; never written)
  --flat-files N       files in "flat" (default 200000; smoke 2000)
  --freezer-size SIZE  the "home"-like tree behind the Freezer bzip2 backup (default 50M with 2000 small
                       files; smoke 4M with 200)
  --runs N             rounds, best of which is kept (default 2, or $BENCH_RUNS; smoke 1)
  --seed N             data generator seed (default 1)
  --smoke              quick check: home 24M/400 files, vm 16M, flat 2000 files, freezer 4M; frost and tar
                       only (unless --tools), one round, no waits between change rounds; no "usr" and no
                       "sizes" unless --set names them; results in bench/results/smoke.{json,md}
  --tools LIST         comma-separated subset of ${TOOL_IDS.join(",")}
                       (default: every installed one but borg-none; frost-rsync runs on "vm" only)
  --rss-sizes LIST     sizes of the "sizes" part (default 1G,4G; small files: 20000, or --files when given
                       here). Given without --set: only that part
  --frost-bin PATH     frost binary to measure (also --frost, or $FROST_BIN; built there when missing).
                       Default dist/frost, built when missing or older than the sources
  --no-build           never build frost
  --timeout SECONDS    kill a command after this long (default 1800)
  --keep               keep bench/work/ (storages and archives) afterwards
  --clean-data         remove the generated data sets afterwards
  --no-save            print the tables only: leave bench/results/ and docs/BENCHMARKS.md alone (a saved run
                       replaces the results of its data sets, also when --tools picks only some tools)
  --report             only rewrite docs/BENCHMARKS.md from bench/results/latest.json
  -h, --help           this help`;

interface Options {
  parts: Part[];
  sizes: Record<SizedKind, number>;
  files: number;
  usrSource: string;
  flatFiles: number;
  freezerSize: number;
  freezerFiles: number;
  rssFiles: number;
  runs: number;
  seed: number;
  smoke: boolean;
  tools: ToolId[];
  rssSizes: number[];
  frost: string | undefined;
  build: boolean;
  timeout: number;
  keep: boolean;
  cleanData: boolean;
  report: boolean;
  save: boolean;
}

function log(line: string): void {
  process.stderr.write(line + "\n");
}

function options(): Options | null {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      set: { type: "string" },
      size: { type: "string" },
      "home-size": { type: "string" },
      "vm-size": { type: "string" },
      files: { type: "string" },
      "usr-source": { type: "string" },
      "flat-files": { type: "string" },
      "freezer-size": { type: "string" },
      runs: { type: "string" },
      seed: { type: "string" },
      smoke: { type: "boolean" },
      tools: { type: "string" },
      "rss-sizes": { type: "string" },
      frost: { type: "string" },
      "frost-bin": { type: "string" },
      "no-build": { type: "boolean" },
      timeout: { type: "string" },
      keep: { type: "boolean" },
      "clean-data": { type: "boolean" },
      report: { type: "boolean" },
      "no-save": { type: "boolean" },
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
  const list = (v: string) => v.split(",").map((t) => t.trim()).filter(Boolean);
  const smoke = values.smoke ?? false;
  const env = process.env;
  const parts = values.set === undefined
    ? values["rss-sizes"] ? ["sizes"] : smoke ? SMOKE_PARTS : [...PARTS]
    : values.set === "all"
    ? [...PARTS]
    : list(values.set);
  for (const s of parts) {
    if (!(PARTS as readonly string[]).includes(s)) throw new Error(`--set: unknown part "${s}"`);
  }
  const tools = values.tools === undefined
    ? TOOL_IDS.filter((t) =>
      !TOOLS[t].optIn && (!smoke || t === "frost" || t === "frost-rsync" || t === "tar")
    )
    : values.tools === "all"
    ? [...TOOL_IDS]
    : list(values.tools);
  for (const t of tools) {
    if (!(TOOL_IDS as readonly string[]).includes(t)) throw new Error(`--tools: unknown tool "${t}"`);
  }
  const both = values.size ?? (smoke ? undefined : env.BENCH_SIZE || undefined);
  const sizeOf = (k: SizedKind) =>
    parseSize(values[`${k}-size`] ?? both ?? (smoke ? SMOKE_SIZE[k] : DEFAULT_SIZE[k]));
  const frost = values["frost-bin"] ?? values.frost ?? env.FROST_BIN;
  const files = int(values.files ?? (smoke ? "400" : env.BENCH_FILES), 100000, "--files");
  return {
    parts: PARTS.filter((p) => parts.includes(p)),
    sizes: { home: sizeOf("home"), vm: sizeOf("vm") },
    files,
    usrSource: path.resolve(values["usr-source"] ?? "/usr"),
    flatFiles: Math.max(1, int(values["flat-files"], smoke ? 2000 : 200000, "--flat-files")),
    freezerSize: parseSize(values["freezer-size"] ?? (smoke ? "4M" : "50M")),
    freezerFiles: smoke ? 200 : 2000,
    rssFiles: values["rss-sizes"] && values.files ? files : 20000,
    runs: Math.max(1, int(values.runs ?? (smoke ? "1" : env.BENCH_RUNS), 2, "--runs")),
    seed: int(values.seed, 1, "--seed"),
    smoke,
    tools: tools as ToolId[],
    rssSizes: list(values["rss-sizes"] ?? "1G,4G").map((x) => parseSize(x)),
    frost: frost || undefined,
    build: !values["no-build"],
    timeout: int(values.timeout, smoke ? 120 : 1800, "--timeout"),
    keep: values.keep ?? false,
    cleanData: values["clean-data"] ?? false,
    report: values.report ?? false,
    save: !values["no-save"],
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

/** Builds frost into `bin` with the `build` task's command line (its --outfile replaced); true on success. */
function build(bin: string): boolean {
  const env = { ...process.env, PATH: `${path.join(ROOT, "node_modules", ".bin")}:${process.env.PATH}` };
  const task = (JSON.parse(fs.readFileSync(path.join(ROOT, "deno.json"), "utf8")) as {
    tasks?: Record<string, string>;
  }).tasks?.build ?? "bun build --compile --minify --bytecode --format esm main.ts --outfile dist/frost";
  fs.mkdirSync(path.dirname(bin), { recursive: true });
  const r = spawnSync(
    "bash",
    ["-c", `${task.replace(/\s--outfile\s+\S+/, "")} --outfile "$1"`, "bash", bin],
    {
      cwd: ROOT,
      env,
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  if (r.status !== 0) {
    log(`frost: build failed: ${String(r.stderr).trim().split("\n").slice(-3).join(" | ")}`);
  }
  return r.status === 0 && fs.existsSync(bin);
}

/** The frost command to measure, and what the report should say about it. */
function resolveFrost(opts: Options): { cmd: string[]; label: string; notes: string[] } {
  if (opts.frost) {
    const bin = path.resolve(opts.frost);
    const built = !fs.existsSync(bin) && opts.build;
    if (built) {
      log(`frost: no ${bin}; building it…`);
      build(bin);
    }
    if (!fs.existsSync(bin)) throw new Error(`frost: ${bin} does not exist`);
    const rel = path.relative(ROOT, bin);
    const label = rel && !rel.startsWith("..") ? rel : bin;
    const notes = built ? [] : [
      `${label} was given with --frost-bin and built outside the bench: the commit named here is the checkout's ` +
      "when the bench ran, not necessarily the one the binary was built from.",
    ];
    return { cmd: [bin], label, notes };
  }
  const bin = path.join(ROOT, "dist", "frost");
  const stale = !fs.existsSync(bin) || fs.statSync(bin).mtimeMs < newestSource();
  if (stale && opts.build) {
    log(
      `frost: ${fs.existsSync(bin) ? "dist/frost is older than the sources" : "no dist/frost"}; building it…`,
    );
    build(bin);
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

function versions(frost: string[], tools: ToolId[]): Record<string, string> {
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
  if (tools.includes("borg") || tools.includes("borg-none")) put("borg", versionOf(["borg", "--version"]));
  if (tools.includes("duplicity")) put("duplicity", versionOf(["duplicity", "--version"]));
  return v;
}

/** Reads the whole tree once so that every tool starts from a warm page cache. */
function warm(data: DataSet): void {
  const started = performance.now();
  exec(["bash", "-c", `tar -C "$1" -cf - . | cat > /dev/null`, "bash", data.root]);
  log(`data: warmed the page cache in ${((performance.now() - started) / 1000).toFixed(1)} s`);
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
    const r = JSON.parse(fs.readFileSync(file, "utf8")) as Results & { main?: unknown };
    // Results from before the data sets ("main": one home-lite tree) are not comparable: dropped.
    delete r.main;
    return r;
  } catch {
    return {};
  }
}

/** Writes the results (merged with the other sets and kinds of run from the last time) and the Markdown. */
function publish(opts: Options, update: Results): void {
  const jsonFile = path.join(RESULTS_DIR, opts.smoke ? "smoke.json" : "latest.json");
  const mdFile = opts.smoke ? path.join(RESULTS_DIR, "smoke.md") : DOCS;
  const old = readResults(jsonFile);
  const results: Results = { ...old, ...update, sets: { ...old.sets, ...update.sets } };
  // The verdicts follow the current bars, also for the kept part from an earlier run.
  for (const set of Object.values(results.sets ?? {})) {
    if (set) set.bars = setBars(set.set, set.rows, set.set === "vm" ? 1 : set.data.smallFiles);
  }
  if (results.rss) results.rss.bars = rssBars(results.rss.rows);
  if (results.freezer) results.freezer.bars = freezerBars(results.freezer.rows);
  writeJson(jsonFile, results);
  fs.mkdirSync(path.dirname(mdFile), { recursive: true });
  const existing = fs.existsSync(mdFile) ? fs.readFileSync(mdFile, "utf8") : null;
  const doc = composeDoc(opts.smoke ? null : existing, markdown(results, { other: !opts.smoke }));
  fs.writeFileSync(mdFile, doc.text);
  if (doc.kept.length > 0) log(`bench: kept the hand-written sections ${doc.kept.join("; ")}`);
  // Keep `deno fmt --check` clean (tables aligned, lines wrapped at the project's width). Through env(1):
  // Deno's child_process rewrites a spawn of its own executable into `deno run`.
  const fmt = spawnSync("env", [process.execPath, "fmt", "--quiet", jsonFile, mdFile], {
    cwd: ROOT,
    stdio: "ignore",
  });
  if (fmt.status !== 0) log("bench: deno fmt of the results failed; run `deno fmt` before committing them");
  log(`wrote ${path.relative(ROOT, jsonFile)} and ${path.relative(ROOT, mdFile)}`);
}

/** The tools that run on `set`, with notes for those that cannot. */
function toolsFor(set: SetKind, opts: Options, notes: string[]): ToolId[] {
  return opts.tools.filter((t) => {
    const kind = TOOLS[t];
    if (kind.sets && !kind.sets.includes(set)) return false;
    const missing = kind.needs.filter((c) => !onPath(c));
    if (missing.length > 0) {
      notes.push(`${t} skipped: ${missing.join(", ")} not installed (bash bench/setup).`);
      return false;
    }
    return true;
  });
}

function best(runs: StepResult[] | undefined): StepResult | undefined {
  if (!runs || runs.length === 0) return undefined;
  return runs.reduce((a, b) => b.sample.wall < a.sample.wall ? b : a);
}

/** One data set: every tool through every scenario, `opts.runs` times. */
function runSet(kind: SetKind, opts: Options, frost: ReturnType<typeof resolveFrost>): SetResults {
  const setStarted = performance.now();
  const notes: string[] = [];
  if (!haveGnuTime) {
    notes.push("GNU time (/usr/bin/time) is missing: no CPU time or peak RSS (run bash bench/setup).");
  }
  const ids = toolsFor(kind, opts, notes);
  const machine = machineFacts(BENCH);
  const loadStart = loads();
  const changing = hasChangeRounds(kind);
  const params: DataParams = {
    kind,
    size: kind === "home" || kind === "vm" ? opts.sizes[kind] : 0,
    files: kind === "vm" ? 1 : kind === "flat" ? opts.flatFiles : opts.files,
    seed: opts.seed,
    ...(kind === "usr" ? { source: opts.usrSource } : {}),
  };
  const data = kind === "usr" ? sourceDataSet(params, log) : ensureDataSet(DATA_DIR, params, log);
  fs.mkdirSync(WORK_DIR, { recursive: true });
  warm(data);
  const settleSeconds = opts.smoke ? 0 : 2.5;
  const tools = ids.map((t) =>
    TOOLS[t].make({ data, work: path.join(WORK_DIR, t), timeout: opts.timeout, frost: frost.cmd })
  );
  log(
    `\n== data set "${kind}": ${formatBytes(data.bytes)} in ${data.fileCount} files; tools: ${
      ids.join(", ")
    }`,
  );

  const samples = new Map<string, StepResult[]>();
  const failures = new Map<string, string>();
  const changes: ChangeSummary[] = [];
  const levelWalls: Record<string, number[]> = {};
  const bytesAt = new Map<Scenario, number>();
  for (let round = 0; round < opts.runs; round++) {
    if (data.state !== 0) revertChanges(data);
    if (changing) settle(data, settleSeconds);
    const failed = new Set<string>();
    const order = tools.map((_, i) => tools[(i + round) % tools.length]!);
    const step = (scenario: Scenario | null, what: string, run: (t: Tool) => StepResult) => {
      for (const tool of order) {
        if (failed.has(tool.id)) continue;
        try {
          // Every timed step starts with no dirty pages of earlier steps: a tool that fsyncs (frost
          // commits durably) must not wait for another step's writeback.
          syncDisks();
          const r = run(tool);
          if (scenario) {
            const key = `${scenario}/${tool.id}`;
            samples.set(key, [...(samples.get(key) ?? []), r]);
          }
          log(`round ${round + 1}/${opts.runs}  ${what.padEnd(24)} ${tool.label.padEnd(22)} ${fmtStep(r)}`);
          if (r.note) notes.push(`${tool.label}, ${what}, round ${round + 1}: ${r.note}`);
          if (round === 0 && what.startsWith("level")) {
            (levelWalls[tool.label] ??= []).push(Math.round(r.sample.wall * 1000) / 1000);
          }
        } catch (err) {
          if (err instanceof Skip) continue;
          if (!(err instanceof CommandError)) throw err;
          failed.add(tool.id);
          failures.set(`${tool.label}/${what}`, err.message);
          log(
            `round ${round + 1}/${opts.runs}  ${what.padEnd(24)} ${
              tool.label.padEnd(22)
            } FAILED: ${err.message}`,
          );
        }
      }
      if (scenario) bytesAt.set(scenario, data.bytes);
    };
    step("full", SCENARIO_TITLES.full, (t) => t.backup(0));
    step("restore", SCENARIO_TITLES.restore, (t) => t.restore(0));
    // "usr" and "flat" have no change rounds: the no-change level is level 1.
    const levels = changing ? CHANGE_ROUNDS : 0;
    for (let k = 1; k <= levels; k++) {
      const c = applyChanges(data, k);
      if (round === 0) changes.push(c);
      log(
        `data: change round ${k}: ${
          kind === "vm"
            ? `${c.blocks} blocks`
            : `${c.modified} modified, ${c.added} added, ${c.deleted} deleted`
        } (${(c.bytesWritten / 2 ** 20).toFixed(1)} MiB) in ${c.seconds.toFixed(1)} s`,
      );
      settle(data, settleSeconds);
      step(k === 1 ? "change" : null, `level ${k} (1 % changed)`, (t) => t.backup(k));
    }
    if (changing) {
      step("chain", SCENARIO_TITLES.chain, (t) => t.restore(CHANGE_ROUNDS));
      settle(data, settleSeconds);
    }
    step("nochange", SCENARIO_TITLES.nochange, (t) => t.backup(levels + 1));
    // Peak RSS of reading the whole chain back (frost only): ls and verify --read-data of the newest backup.
    const only = (scenario: "ls" | "verify", run: (t: Tool) => StepResult | undefined) =>
      step(scenario, SCENARIO_TITLES[scenario], (t) => {
        const r = run(t);
        if (!r) throw new Skip();
        return r;
      });
    only("ls", (t) => t.ls?.());
    only("verify", (t) => t.verify?.());
    if (!opts.keep || round < opts.runs - 1) {
      for (const t of tools) t.cleanup();
    }
  }
  if (changing) revertChanges(data);
  clearRestored(WORK_DIR);
  for (const [key, message] of failures) {
    const [tool, what] = key.split("/");
    notes.push(`${tool} failed in ${what} (and skipped the rest of that round): ${message}`);
  }
  const loadEnd = loads();
  busyNote(machine.loadAverage, notes);

  const rows: Row[] = [];
  for (const scenario of SCENARIOS) {
    const frostBest = best(samples.get(`${scenario}/frost`));
    for (const tool of tools) {
      const runs = samples.get(`${scenario}/${tool.id}`);
      const b = best(runs);
      if (!runs || !b) continue;
      const rss = runs.map((r) => r.sample.rssMiB).filter((x): x is number => x !== null);
      const throughput = scenario === "full" || scenario === "restore" || scenario === "chain" ||
        scenario === "verify";
      rows.push({
        scenario,
        tool: tool.id,
        label: tool.label,
        wall: b.sample.wall,
        cpu: b.sample.cpu,
        rssMiB: rss.length ? Math.max(...rss) : null,
        storedMiB: b.stored === null ? null : b.stored / 2 ** 20,
        mbps: throughput ? (bytesAt.get(scenario) ?? data.bytes) / 1e6 / b.sample.wall : null,
        frostSpeed: tool.id === "frost" || tool.id === "frost-rsync" || !frostBest
          ? null
          : b.sample.wall / frostBest.sample.wall,
        walls: runs.map((r) => r.sample.wall),
      });
    }
  }
  const smallFiles = kind === "home" ? opts.files : kind === "vm" ? 1 : data.initial.fileCount;
  const result: SetResults = {
    set: kind,
    date: new Date().toISOString(),
    seconds: (performance.now() - setStarted) / 1000,
    machine,
    versions: versions(frost.cmd, ids),
    frost: { command: frost.label, commit: commitOf(), notes: frost.notes },
    data: {
      id: data.id,
      bytes: data.initial.bytes,
      files: data.initial.fileCount,
      dirs: data.dirCount,
      largeFiles: data.largeFiles,
      smallFiles,
      description: describeSet(data),
    },
    runs: opts.runs,
    rows,
    bars: setBars(kind, rows, smallFiles),
    changes,
    levelWalls,
    commands: Object.fromEntries(tools.map((t) => [t.label, t.commands])),
    notes,
    load: { start: loadStart, end: loadEnd },
  };
  console.log(
    `\n"${kind}": ${formatBytes(data.bytes)} in ${data.fileCount} files, ${
      opts.runs === 1 ? "one round" : `best of ${opts.runs}`
    }, warm cache, ${Math.round(result.seconds)} s in all`,
  );
  console.log(textTable(rows));
  console.log("\n" + textBars(result.bars));
  if (notes.length) console.log("\nnotes:\n" + notes.map((n) => `- ${n}`).join("\n"));
  if (opts.cleanData && kind !== "usr") {
    fs.rmSync(data.root, { recursive: true, force: true });
    fs.rmSync(path.join(DATA_DIR, `${data.id}.json`), { force: true });
  }
  return result;
}

/** A step a tool does not have (ls, verify: frost only). */
class Skip extends Error {}

/** uptime's load averages (1, 5, 15 minutes), two decimals. */
function loads(): number[] {
  return os.loadavg().map((x) => Math.round(x * 100) / 100);
}

/** The comparison run: each selected part in turn, published after each. */
function runMain(opts: Options): void {
  const frost = resolveFrost(opts);
  const machine = machineFacts(BENCH);
  log(`frost: ${shellQuote(frost.cmd)}`);
  for (const n of frost.notes) log(`frost: ${n}`);
  console.log(
    `frost bench: machine ${machine.cpus} × ${machine.cpuModel}, ${machine.memoryGiB} GiB, kernel ${machine.kernel}; ` +
      `load average ${loads().join(" ")}; parts ${opts.parts.join(", ")}; ${
        opts.runs === 1 ? "one round" : `best of ${opts.runs}`
      }`,
  );
  const started = performance.now();
  for (const part of opts.parts) {
    if (part === "freezer") {
      const result = runFreezer(opts, frost);
      if (result && opts.save) publish(opts, { freezer: result });
    } else if (part === "sizes") {
      const result = runRss(opts, frost);
      if (opts.save) publish(opts, { rss: result });
    } else {
      const result = runSet(part, opts, frost);
      if (opts.save) publish(opts, { sets: { [part]: result } });
    }
  }
  log(
    `bench: ${((performance.now() - started) / 1000).toFixed(0)} s in all; load average ${loads().join(" ")}`,
  );
}

/** The Freezer bzip2 restore: frost freezer restore vs bzip2 -dc, on a Freezer-made level 0. */
function runFreezer(opts: Options, frost: ReturnType<typeof resolveFrost>): FreezerResults | null {
  const started = performance.now();
  const notes: string[] = [];
  for (const c of ["tar", "bzip2"]) {
    if (!onPath(c)) {
      log(`freezer: skipped: ${c} is not installed (bash bench/setup)`);
      return null;
    }
  }
  const machine = machineFacts(BENCH);
  const loadStart = loads();
  const params: DataParams = {
    kind: "home",
    size: opts.freezerSize,
    files: opts.freezerFiles,
    seed: opts.seed,
  };
  const data = ensureDataSet(DATA_DIR, params, log);
  const setup = freezerSetup(data, path.join(WORK_DIR, "freezer"), frost.cmd, opts.timeout);
  log(
    `\n== Freezer bzip2 restore: ${formatBytes(data.bytes)} in ${data.fileCount} files, bzip2 stream ${
      formatBytes(setup.compressed)
    } (made in ${setup.seconds.toFixed(1)} s)`,
  );
  const samples = new Map<string, StepResult[]>();
  const failed = new Set<string>();
  for (let round = 0; round < opts.runs; round++) {
    const order = setup.tools.map((_, i) => setup.tools[(i + round) % setup.tools.length]!);
    for (const tool of order) {
      if (failed.has(tool.id)) continue;
      try {
        const r = tool.run();
        samples.set(tool.id, [...(samples.get(tool.id) ?? []), r]);
        log(
          `round ${round + 1}/${opts.runs}  ${"Freezer bzip2 restore".padEnd(24)} ${tool.label.padEnd(22)} ${
            fmtStep(r)
          }`,
        );
        if (r.note) notes.push(`${tool.label}, round ${round + 1}: ${r.note}`);
      } catch (err) {
        if (!(err instanceof CommandError)) throw err;
        failed.add(tool.id);
        notes.push(`${tool.label} failed: ${err.message}`);
        log(`round ${round + 1}/${opts.runs}  ${tool.label} FAILED: ${err.message}`);
      }
    }
  }
  if (!opts.keep) setup.cleanup();
  const loadEnd = loads();
  busyNote(machine.loadAverage, notes);
  const frostBest = best(samples.get("frost"));
  const rows: Row[] = [];
  for (const tool of setup.tools) {
    const runs = samples.get(tool.id);
    const b = best(runs);
    if (!runs || !b) continue;
    const rss = runs.map((r) => r.sample.rssMiB).filter((x): x is number => x !== null);
    rows.push({
      scenario: "freezer",
      tool: tool.id,
      label: tool.label,
      wall: b.sample.wall,
      cpu: b.sample.cpu,
      rssMiB: rss.length ? Math.max(...rss) : null,
      storedMiB: setup.compressed / 2 ** 20,
      mbps: data.bytes / 1e6 / b.sample.wall,
      frostSpeed: tool.id === "frost" || !frostBest ? null : b.sample.wall / frostBest.sample.wall,
      walls: runs.map((r) => r.sample.wall),
    });
  }
  const result: FreezerResults = {
    date: new Date().toISOString(),
    seconds: (performance.now() - started) / 1000,
    machine,
    load: { start: loadStart, end: loadEnd },
    versions: (() => {
      const v = versions(frost.cmd, ["tar"]);
      const m = /\d+\.\d+(\.\d+)?/.exec(versionOf(["bash", "-c", "bzip2 --help 2>&1 | head -1"]) ?? "");
      if (m) v.bzip2 = m[0];
      delete v.zstd;
      return v;
    })(),
    frost: { command: frost.label, commit: commitOf(), notes: frost.notes },
    data: {
      description: describeSet(data).replace(/; a change round .*(; seed)/, "$1"),
      bytes: data.bytes,
      files: data.fileCount,
      compressed: setup.compressed,
    },
    runs: opts.runs,
    rows,
    bars: freezerBars(rows),
    commands: Object.fromEntries(setup.tools.map((t) => [t.label, t.command])),
    notes,
  };
  console.log(
    `\nFreezer bzip2 restore: ${formatBytes(data.bytes)} in ${data.fileCount} files, ${
      opts.runs === 1 ? "one round" : `best of ${opts.runs}`
    }`,
  );
  console.log(textTable(rows));
  console.log("\n" + textBars(result.bars));
  if (notes.length) console.log("\nnotes:\n" + notes.map((n) => `- ${n}`).join("\n"));
  return result;
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

/** The memory-flatness run: frost's full backup of "home" at each size, and its restore. */
function runRss(opts: Options, frost: ReturnType<typeof resolveFrost>): RssResults {
  const sizes = opts.rssSizes;
  const machine = machineFacts(BENCH);
  const loadStart = loads();
  const rows: RssRow[] = [];
  const notes: string[] = [];
  log(`\n== sizes: frost's full backup and restore of "home" at ${sizes.map(formatBytes).join(", ")}`);
  for (const size of sizes) {
    const params: DataParams = { kind: "home", size, files: opts.rssFiles, seed: opts.seed };
    const data = ensureDataSet(DATA_DIR, params, log);
    warm(data);
    settle(data);
    const tool = TOOLS.frost.make({
      data,
      work: path.join(WORK_DIR, "frost"),
      timeout: opts.timeout,
      frost: frost.cmd,
    });
    const runs: StepResult[] = [];
    const restores: StepResult[] = [];
    for (let round = 0; round < opts.runs; round++) {
      try {
        const r = tool.backup(0);
        runs.push(r);
        log(`rss ${formatBytes(size)} round ${round + 1}/${opts.runs}: backup ${fmtStep(r)}`);
        const rr = tool.restore(0);
        restores.push(rr);
        log(`rss ${formatBytes(size)} round ${round + 1}/${opts.runs}: restore ${fmtStep(rr)}`);
        if (rr.note) notes.push(`${formatBytes(size)}, restore, round ${round + 1}: ${rr.note}`);
      } catch (err) {
        if (!(err instanceof CommandError)) throw err;
        log(`rss ${formatBytes(size)} round ${round + 1}/${opts.runs}: FAILED: ${err.message}`);
        break;
      }
    }
    tool.cleanup();
    clearRestored(WORK_DIR);
    syncDisks();
    const b = best(runs);
    if (!b) continue;
    const peakOf = (steps: StepResult[]) => {
      const rss = steps.map((r) => r.sample.rssMiB).filter((x): x is number => x !== null);
      return rss.length ? Math.max(...rss) : null;
    };
    const br = best(restores);
    rows.push({
      size: formatBytes(data.bytes),
      bytes: data.bytes,
      files: data.fileCount,
      wall: b.sample.wall,
      rssMiB: peakOf(runs),
      mbps: data.bytes / 1e6 / b.sample.wall,
      walls: runs.map((r) => r.sample.wall),
      ...(br
        ? {
          restore: {
            wall: br.sample.wall,
            rssMiB: peakOf(restores),
            walls: restores.map((r) => r.sample.wall),
          },
        }
        : {}),
    });
    if (opts.cleanData) {
      fs.rmSync(data.root, { recursive: true, force: true });
      fs.rmSync(path.join(DATA_DIR, `${data.id}.json`), { force: true });
    }
  }
  const bars = rssBars(rows);
  const loadEnd = loads();
  busyNote(machine.loadAverage, notes);
  const result: RssResults = {
    date: new Date().toISOString(),
    machine,
    frost: { command: frost.label, commit: commitOf(), notes: frost.notes },
    runs: opts.runs,
    rows,
    bars,
    notes,
    load: { start: loadStart, end: loadEnd },
  };
  console.log(
    `\nfrost full backup and restore, peak RSS by data size (best wall of ${opts.runs}, highest RSS):`,
  );
  const mib = (x: number | null | undefined) =>
    x === null || x === undefined ? "   —" : x.toFixed(0).padStart(4);
  for (const r of rows) {
    console.log(
      `  ${r.size.padEnd(9)} ${String(r.files).padStart(6)} files  backup ${
        r.wall.toFixed(2).padStart(7)
      } s ` +
        `${mib(r.rssMiB)} MiB ${r.mbps.toFixed(0)} MB/s  restore ${
          r.restore ? r.restore.wall.toFixed(2).padStart(7) : "      —"
        } s ${mib(r.restore?.rssMiB)} MiB`,
    );
  }
  console.log("\n" + textBars(bars));
  if (notes.length) console.log("\nnotes:\n" + notes.map((n) => `- ${n}`).join("\n"));
  return result;
}

const opts = options();
if (opts) {
  if (opts.report) publish(opts, {});
  else runMain(opts);
}
