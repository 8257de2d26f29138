/**
 * The tools the bench runs, each with the same three steps: a full backup into an empty storage, a second
 * backup of the unchanged tree (incremental where the tool has levels), and a restore of the newest backup
 * into an empty folder. Untimed preparation (init, level 0 for tar -g, clean-up) and a `sync` happen
 * before each timed command.
 * @module
 */
import fs from "node:fs";
import path from "node:path";
import { countTree, type DataSet } from "./data.ts";
import { CommandError, duBytes, exec, freshDir, measure, type Sample, syncDisks } from "./measure.ts";

/** The measured scenarios, in the order they run. */
export const SCENARIOS = ["full", "nochange", "restore"] as const;
/** One of the measured scenarios. */
export type Scenario = typeof SCENARIOS[number];

/** Table titles of the scenarios. */
export const SCENARIO_TITLES: Record<Scenario, string> = {
  full: "full backup",
  nochange: "no-change incremental",
  restore: "full restore (newest)",
};

/** What one step measured. */
export interface StepResult {
  sample: Sample;
  /** Bytes the step added to the storage (du -sb), or null. */
  stored: number | null;
  /** Something to report about this step (a failed check). */
  note?: string;
}

/** Where a tool runs. */
export interface ToolContext {
  data: DataSet;
  /** The tool's own scratch folder (storage, restore target). */
  work: string;
  /** Seconds before a command is killed. */
  timeout: number;
  /** The frost command (binary, or deno run main.ts). */
  frost: string[];
}

/** A tool under test. */
export interface Tool {
  id: "frost" | "tar" | "restic" | "borg";
  /** Name in the table. */
  label: string;
  /** The timed commands, for the report (DATA = the tree, paths shortened). */
  commands: Record<Scenario, string>;
  /** Runs one step; the steps of one round run in SCENARIOS order. */
  step(scenario: Scenario): StepResult;
  /** Removes what the tool wrote. */
  cleanup(): void;
}

const BASH = ["bash", "-c"];

function timed(ctx: ToolContext, cmd: string[], opts: { cwd?: string; env?: Record<string, string> } = {}) {
  syncDisks();
  return measure(cmd, { ...opts, timeout: ctx.timeout, scratch: path.dirname(ctx.work) });
}

/** Checks a restored tree against the data set; returns a note when it differs. */
function checkRestore(root: string, data: DataSet): string | undefined {
  if (!fs.existsSync(root)) return `restore: ${root} is missing`;
  const got = countTree(root);
  if (got.files === data.fileCount && got.bytes === data.bytes) return undefined;
  return `restore: got ${got.files} files / ${got.bytes} bytes, expected ${data.fileCount} / ${data.bytes}`;
}

/** frost: `--max-level 5` so that the second backup is level 1 on the first. */
export function frostTool(ctx: ToolContext): Tool {
  const store = path.join(ctx.work, "store");
  const target = path.join(ctx.work, "restore");
  const common = ["--name", "bench", "--hostname", "bench", "--storage", store];
  const backup = [...ctx.frost, "backup", ctx.data.root, ...common, "--max-level", "5", "--json"];
  const parse = (s: Sample, level: number): string | undefined => {
    const line = s.stdout.trim().split("\n").at(-1) ?? "";
    try {
      const summary = JSON.parse(line) as { level?: number; files?: number };
      if (summary.level !== level) return `frost made level ${summary.level}, expected ${level}`;
      return undefined;
    } catch {
      return `frost --json printed no summary: ${line.slice(0, 200)}`;
    }
  };
  return {
    id: "frost",
    label: "frost",
    commands: {
      full: "frost backup DATA --name bench --storage STORE --max-level 5 --json   (empty STORE)",
      nochange: "frost backup DATA --name bench --storage STORE --max-level 5 --json   (again: level 1)",
      restore: "frost restore --name bench --storage STORE --to OUT   (level 0 + level 1)",
    },
    step(scenario) {
      if (scenario === "full") {
        freshDir(ctx.work);
        const sample = timed(ctx, backup);
        return { sample, stored: duBytes(store), note: parse(sample, 0) };
      }
      if (scenario === "nochange") {
        const before = duBytes(store);
        const sample = timed(ctx, backup);
        return { sample, stored: duBytes(store) - before, note: parse(sample, 1) };
      }
      fs.rmSync(target, { recursive: true, force: true });
      const sample = timed(ctx, [...ctx.frost, "restore", ...common, "--to", target]);
      const note = checkRestore(target, ctx.data);
      fs.rmSync(target, { recursive: true, force: true });
      return { sample, stored: null, note };
    },
    cleanup: () => fs.rmSync(ctx.work, { recursive: true, force: true }),
  };
}

/** GNU tar piped into zstd -1 (zstd's default: one compression thread, so two processes in all). */
export function tarTool(ctx: ToolContext): Tool {
  const out = ctx.work;
  const target = path.join(ctx.work, "restore");
  const full = path.join(out, "full.tar.zst");
  const pipe = (tarArgs: string, file: string) => [
    ...BASH,
    `set -o pipefail; tar -C "$1" ${tarArgs} -cf - . | zstd -1 -q -o "$2"`,
    "bash",
    ctx.data.root,
    file,
  ];
  return {
    id: "tar",
    label: "tar | zstd -1",
    commands: {
      full: "tar -C DATA -cf - . | zstd -1 -q -o full.tar.zst",
      nochange: "tar -C DATA --listed-incremental=l1.snar -cf - . | zstd -1 -q -o l1.tar.zst   " +
        "(l1.snar = copy of the snar of an untimed level 0)",
      restore: "zstd -dc full.tar.zst | tar -x -C OUT",
    },
    step(scenario) {
      if (scenario === "full") {
        freshDir(out);
        const sample = timed(ctx, pipe("", full));
        return { sample, stored: fs.statSync(full).size };
      }
      if (scenario === "nochange") {
        const snar0 = path.join(out, "l0.snar"), snar1 = path.join(out, "l1.snar");
        const l0 = path.join(out, "l0.tar.zst"), l1 = path.join(out, "l1.tar.zst");
        exec(pipe(`--listed-incremental="${snar0}"`, l0)); // untimed level 0
        fs.rmSync(l0);
        fs.copyFileSync(snar0, snar1);
        const sample = timed(ctx, pipe(`--listed-incremental="${snar1}"`, l1));
        return { sample, stored: fs.statSync(l1).size + fs.statSync(snar1).size };
      }
      freshDir(target);
      const sample = timed(ctx, [
        ...BASH,
        `set -o pipefail; zstd -dc "$1" | tar -x -C "$2"`,
        "bash",
        full,
        target,
      ]);
      const note = checkRestore(target, ctx.data);
      fs.rmSync(target, { recursive: true, force: true });
      return { sample, stored: null, note };
    },
    cleanup: () => fs.rmSync(ctx.work, { recursive: true, force: true }),
  };
}

/** restic with its defaults (compression auto, all cores), its cache inside the work folder. */
export function resticTool(ctx: ToolContext): Tool {
  const repo = path.join(ctx.work, "repo");
  const target = path.join(ctx.work, "restore");
  const env = {
    RESTIC_PASSWORD: "x",
    RESTIC_REPOSITORY: repo,
    RESTIC_CACHE_DIR: path.join(ctx.work, "cache"),
  };
  const backup = ["restic", "backup", "--quiet", "--host", "bench", ctx.data.root];
  return {
    id: "restic",
    label: "restic",
    commands: {
      full: "restic init; restic backup --host bench DATA   (RESTIC_PASSWORD=x; init untimed)",
      nochange: "restic backup --host bench DATA   (again)",
      restore: "restic restore latest --target OUT",
    },
    step(scenario) {
      if (scenario === "full") {
        freshDir(ctx.work);
        exec(["restic", "init", "--quiet"], { env });
        const before = duBytes(repo);
        const sample = timed(ctx, backup, { env });
        return { sample, stored: duBytes(repo) - before };
      }
      if (scenario === "nochange") {
        const before = duBytes(repo);
        const sample = timed(ctx, backup, { env });
        return { sample, stored: duBytes(repo) - before };
      }
      fs.rmSync(target, { recursive: true, force: true });
      const sample = timed(ctx, ["restic", "restore", "latest", "--quiet", "--target", target], { env });
      // restic restores the absolute path below the target.
      const note = checkRestore(path.join(target, ctx.data.root), ctx.data);
      fs.rmSync(target, { recursive: true, force: true });
      return { sample, stored: null, note };
    },
    cleanup: () => fs.rmSync(ctx.work, { recursive: true, force: true }),
  };
}

/** borg with an unencrypted repository and zstd level 1, run from inside the tree. */
export function borgTool(ctx: ToolContext): Tool {
  const repo = path.join(ctx.work, "repo");
  const target = path.join(ctx.work, "restore");
  const env = {
    BORG_PASSPHRASE: "",
    BORG_BASE_DIR: path.join(ctx.work, "base"),
    BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: "yes",
    BORG_RELOCATED_REPO_ACCESS_IS_OK: "yes",
  };
  const create = (
    archive: string,
  ) => ["borg", "create", "--compression", "zstd,1", `${repo}::${archive}`, "."];
  return {
    id: "borg",
    label: "borg",
    commands: {
      full: "borg init -e none REPO; cd DATA && borg create --compression zstd,1 REPO::a1 .   (init untimed)",
      nochange: "cd DATA && borg create --compression zstd,1 REPO::a2 .",
      restore: "cd OUT && borg extract REPO::a2",
    },
    step(scenario) {
      if (scenario === "full") {
        freshDir(ctx.work);
        exec(["borg", "init", "-e", "none", repo], { env });
        const before = duBytes(repo);
        const sample = timed(ctx, create("a1"), { env, cwd: ctx.data.root });
        return { sample, stored: duBytes(repo) - before };
      }
      if (scenario === "nochange") {
        const before = duBytes(repo);
        const sample = timed(ctx, create("a2"), { env, cwd: ctx.data.root });
        return { sample, stored: duBytes(repo) - before };
      }
      freshDir(target);
      const sample = timed(ctx, ["borg", "extract", `${repo}::a2`], { env, cwd: target });
      const note = checkRestore(target, ctx.data);
      fs.rmSync(target, { recursive: true, force: true });
      return { sample, stored: null, note };
    },
    cleanup: () => fs.rmSync(ctx.work, { recursive: true, force: true }),
  };
}

export { CommandError };
