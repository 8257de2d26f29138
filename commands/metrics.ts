/**
 * `--metrics-file PATH` on backup, remove and verify: after each run, frost writes what a monitoring system
 * needs in the Prometheus text format that node_exporter's textfile collector reads, one set of series per
 * command and `<hostname>_<name>`:
 *
 * ```
 * frost_backup_last_run_timestamp_seconds{hostname="web1",name="etc"} 1.7653e9
 * frost_backup_last_success_timestamp_seconds{hostname="web1",name="etc"} 1.7653e9
 * frost_backup_exit_status{hostname="web1",name="etc"} 0
 * frost_backup_duration_seconds, frost_backup_files, _bytes_in, _bytes_stored, _level, _warnings
 * ```
 *
 * The file is rewritten atomically (temporary file, fsync, rename) under a lock file (`PATH.lock`), keeping
 * every other series already in it, so several jobs can share one file. A failed run updates the run time and exit status and leaves the
 * last success time (and the figures of that success) as they were. The format is written by hand: it is a
 * few lines of text (see the Prometheus exposition format).
 * @module
 */
import fs from "node:fs";
import path from "node:path";
import { type Command, runNoticingWarnings } from "./cli.ts";
import { AbortedError, ExitCode, messageOf, UsageError } from "../base/errors.ts";
import { defaultHostname } from "../base/host.ts";

/** The option every command that writes metrics declares (for its help, checks and completion). */
export const METRICS_OPTION = { "metrics-file": { type: "string" } } as const;

/** The option's help, its description starting at column `width`. */
export function metricsHelp(width: number): string {
  return `  ${
    "--metrics-file PATH".padEnd(width - 2)
  }write the run's figures for Prometheus (node_exporter ` +
    `textfile\n${" ".repeat(width)}collector) to PATH, atomically, keeping other series in it`;
}

const HELP: Record<string, string> = {
  last_run_timestamp_seconds: "When the last run ended (Unix time).",
  last_success_timestamp_seconds: "When the last successful run ended (Unix time).",
  exit_status: "Exit status of the last run (0 ok, 1 failure, 2 usage, 3 warnings).",
  duration_seconds: "Wall time of the last run.",
  files: "Files in the last successful run's backup.",
  bytes_in: "Bytes read by the last successful backup.",
  bytes_stored: "Bytes stored by the last successful backup.",
  level: "Level of the last successful backup.",
  warnings: "Warnings of the last successful run.",
  removed_backups: "Backups removed by the last successful run.",
  kept_backups: "Backups kept by the last successful run.",
  objects: "Objects checked by the last verify run.",
  bytes: "Bytes checked by the last verify run.",
  problems: "Bad objects found by the last verify run.",
};

/** Escapes a label value (backslash, double quote, newline). */
function escapeLabel(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

interface Family {
  name: string;
  comments: string[];
  samples: { labels: string; line: string }[];
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+\S+(\s+\S+)?$/;

/** Groups a text-format file into families (HELP/TYPE lines and their samples), in order. */
function parseFamilies(text: string): Family[] {
  const families: Family[] = [];
  const byName = new Map<string, Family>();
  const family = (name: string) => {
    let f = byName.get(name);
    if (!f) {
      f = { name, comments: [], samples: [] };
      byName.set(name, f);
      families.push(f);
    }
    return f;
  };
  let current: Family | undefined;
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    const comment = /^#\s*(HELP|TYPE)\s+(\S+)/.exec(line);
    if (comment) {
      current = family(comment[2]!);
      current.comments.push(line);
      continue;
    }
    if (line.startsWith("#")) continue;
    const m = SAMPLE.exec(line);
    if (!m) continue; // not a sample: dropped rather than left to break the file
    const name = m[1]!;
    // A histogram's or summary's _bucket/_sum/_count samples belong to the family declared above them.
    const owner = byName.has(name) || !current || !name.startsWith(current.name) ? family(name) : current;
    owner.samples.push({ labels: m[2] ?? "", line });
  }
  return families;
}

/** What one run reports. */
export interface RunReport {
  command: string;
  hostname: string;
  name: string;
  exitStatus: number;
  /** When the run ended. */
  ended: Date;
  seconds: number;
  /** The run's figures (files, bytes_in, …); empty when it failed. */
  figures: Record<string, number>;
}

/** The text of `existing` (a text-format file, or "") with `report`'s series replaced. */
export function mergeMetrics(existing: string, report: RunReport): string {
  const families = parseFamilies(existing);
  const labels = `{hostname="${escapeLabel(report.hostname)}",name="${escapeLabel(report.name)}"}`;
  const ok = report.exitStatus === ExitCode.ok || report.exitStatus === ExitCode.warnings;
  const values: [string, number][] = [
    ["last_run_timestamp_seconds", report.ended.getTime() / 1000],
    ["exit_status", report.exitStatus],
    ["duration_seconds", Math.round(report.seconds * 1000) / 1000],
  ];
  if (ok) {
    values.push(["last_success_timestamp_seconds", report.ended.getTime() / 1000]);
    for (const [k, v] of Object.entries(report.figures)) values.push([k, v]);
  }
  for (const [key, value] of values) {
    const name = `frost_${report.command}_${key}`;
    let f = families.find((x) => x.name === name);
    if (!f) {
      f = { name, comments: [], samples: [] };
      families.push(f);
    }
    f.comments = [`# HELP ${name} ${HELP[key] ?? key.replace(/_/g, " ")}`, `# TYPE ${name} gauge`];
    f.samples = f.samples.filter((s) => s.labels !== labels);
    f.samples.push({ labels, line: `${name}${labels} ${value}` });
  }
  return families.map((f) => [...f.comments, ...f.samples.map((s) => s.line)].join("\n")).join("\n") + "\n";
}

/** Writes `text` to `file` atomically: a temporary file beside it, fsync, rename. */
function writeAtomic(file: string, text: string): void {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  try {
    const fd = fs.openSync(tmp, "w", 0o644);
    try {
      fs.writeFileSync(fd, text);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

/**
 * Runs `fn` holding the lock file `lock` (created exclusively), so that jobs sharing one metrics file do not
 * drop each other's series (each holds it for milliseconds). Waits up to 10 s; a lock older than a minute was left by a killed run and is
 * taken over.
 */
async function withFileLock(lock: string, fn: () => void): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      fs.closeSync(fs.openSync(lock, "wx", 0o644));
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const age = Date.now() - (fs.statSync(lock, { throwIfNoEntry: false })?.mtimeMs ?? Date.now());
      if (age > 60_000) fs.rmSync(lock, { force: true });
      else if (Date.now() > deadline) throw new Error(`its lock "${lock}" is held by another run`);
      else await new Promise((resolve) => setTimeout(resolve, 20 + Math.random() * 30));
    }
  }
  try {
    fn();
  } finally {
    fs.rmSync(lock, { force: true });
  }
}

/** The last value of `--option V` / `--option=V` in `args` (before a `--`). */
function scan(args: readonly string[], option: string): string | undefined {
  let value: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--") break;
    if (a === `--${option}`) value = args[++i];
    else if (a.startsWith(`--${option}=`)) value = a.slice(option.length + 3);
  }
  return value;
}

/**
 * `command` that, when given `--metrics-file PATH`, writes its run's metrics to PATH whatever the outcome
 * (the command reports its figures through `ctx.metrics`). A file that cannot be written is a warning
 * (exit 3 instead of 0).
 */
export function withMetrics(name: "backup" | "remove" | "verify", command: Command): Command {
  return {
    ...command,
    async run(ctx) {
      const file = scan(ctx.args, "metrics-file");
      const help = ctx.args.some((a) => a === "--help" || a === "-h");
      if (file === undefined || file === "" || help) return command.run(ctx);
      const started = performance.now();
      const figures: Record<string, number> = {};
      let code: number = ExitCode.failure;
      let failure: unknown;
      try {
        // The exit status the process gives: a run that printed a warning and returns 0 exits 3.
        code = await runNoticingWarnings(command, { ...ctx, metrics: (f) => Object.assign(figures, f) });
      } catch (err) {
        failure = err;
        code = err instanceof UsageError ? ExitCode.usage : ExitCode.failure;
        if (err instanceof AbortedError || ctx.signal.aborted) code = ExitCode.failure;
      }
      const report: RunReport = {
        command: name,
        hostname: scan(ctx.args, "hostname") ?? defaultHostname(),
        name: scan(ctx.args, "name") ?? "",
        exitStatus: code,
        ended: new Date(),
        seconds: (performance.now() - started) / 1000,
        figures: failure === undefined ? figures : {},
      };
      try {
        await withFileLock(`${file}.lock`, () => {
          let existing = "";
          try {
            existing = fs.readFileSync(file, "utf8");
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
          }
          writeAtomic(file, mergeMetrics(existing, report));
        });
      } catch (err) {
        ctx.stderr(`frost: warning: cannot write --metrics-file "${file}": ${messageOf(err)}`);
        if (failure === undefined && code === ExitCode.ok) code = ExitCode.warnings;
      }
      if (failure !== undefined) throw failure;
      return code;
    },
  };
}
