/**
 * Running one measured command: wall time (from here), CPU time and peak RSS (from GNU time's wait4
 * rusage, which covers the whole process tree: CPU is summed, peak RSS is that of the biggest single
 * process), plus the small helpers around it (du, sync, machine facts).
 * @module
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

/** One measured run of a command. */
export interface Sample {
  /** Seconds, measured here around the child (includes process start). */
  wall: number;
  /** user + sys seconds of the command and its children; null without GNU time. */
  cpu: number | null;
  /** Peak resident set size of the largest process of the tree, MiB; null without GNU time. */
  rssMiB: number | null;
  stdout: string;
  stderr: string;
}

/** A command that failed (non-zero exit, signal, timeout). */
export class CommandError extends Error {}

const GNU_TIME = "/usr/bin/time";
/** GNU time, when installed (bench/setup installs it). */
export const haveGnuTime: boolean = fs.existsSync(GNU_TIME);

/** Options of `measure()`. */
export interface MeasureOptions {
  cwd?: string;
  env?: Record<string, string>;
  /** Seconds before the command is killed (through coreutils `timeout`). */
  timeout: number;
  /** Where GNU time writes its line. */
  scratch: string;
}

/** Runs `cmd` once under GNU time and returns what it cost; throws CommandError when it fails. */
export function measure(cmd: string[], opts: MeasureOptions): Sample {
  const timeFile = path.join(opts.scratch, `time-${process.pid}.txt`);
  fs.rmSync(timeFile, { force: true });
  const guarded = ["timeout", "--kill-after=10", String(Math.ceil(opts.timeout)), ...cmd];
  const argv = haveGnuTime ? [GNU_TIME, "-f", "%e %U %S %M", "-o", timeFile, ...guarded] : guarded;
  const started = performance.now();
  const r = spawnSync(argv[0]!, argv.slice(1), {
    cwd: opts.cwd,
    env: { ...process.env, ...opts.env },
    stdio: ["ignore", "pipe", "pipe"],
    maxBuffer: 64 * 1024 * 1024,
    encoding: "utf8",
  });
  const wall = (performance.now() - started) / 1000;
  if (r.error) throw new CommandError(`${cmd[0]}: ${r.error.message}`);
  if (r.status !== 0) {
    const why = r.status === 124 || r.status === 137
      ? `timed out after ${opts.timeout} s`
      : `exit ${r.status}`;
    throw new CommandError(`${shellQuote(cmd)}: ${why}: ${lastLines(r.stderr || r.stdout, 3)}`);
  }
  let cpu: number | null = null;
  let rssMiB: number | null = null;
  if (haveGnuTime) {
    const line = fs.readFileSync(timeFile, "utf8").trim().split("\n").at(-1) ?? "";
    const [, user, sys, maxKiB] = line.split(/\s+/).map(Number);
    if (user !== undefined && sys !== undefined && maxKiB !== undefined && !Number.isNaN(maxKiB)) {
      cpu = user + sys;
      rssMiB = maxKiB / 1024;
    }
    fs.rmSync(timeFile, { force: true });
  }
  return { wall, cpu, rssMiB, stdout: r.stdout, stderr: r.stderr };
}

/** Runs a helper command (not measured); throws CommandError when it fails. */
export function exec(cmd: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): string {
  const r = spawnSync(cmd[0]!, cmd.slice(1), {
    cwd: opts.cwd,
    env: { ...process.env, ...opts.env },
    stdio: ["ignore", "pipe", "pipe"],
    maxBuffer: 64 * 1024 * 1024,
    encoding: "utf8",
  });
  if (r.error) throw new CommandError(`${cmd[0]}: ${r.error.message}`);
  if (r.status !== 0) {
    throw new CommandError(`${shellQuote(cmd)}: exit ${r.status}: ${lastLines(r.stderr, 3)}`);
  }
  return r.stdout;
}

/** The first line a command prints, or null when it cannot run. */
export function versionOf(cmd: string[]): string | null {
  // Through env(1): Deno's child_process rewrites a spawn of its own executable into `deno run`.
  const r = spawnSync("env", cmd, { stdio: ["ignore", "pipe", "pipe"], encoding: "utf8" });
  if (r.error || r.status !== 0) return null;
  return (r.stdout || r.stderr).trim().split("\n")[0] ?? null;
}

/** True when `name` is a command on PATH. */
export function onPath(name: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${name}`], { stdio: "ignore" }).status === 0;
}

/** Flushes dirty pages so that one run's writeback does not land in the next run's time. */
export function syncDisks(): void {
  spawnSync("sync", [], { stdio: "ignore" });
}

/** `du -sb`: apparent bytes under `p` (files and folders), 0 when missing. */
export function duBytes(p: string): number {
  if (!fs.existsSync(p)) return 0;
  const out = exec(["du", "-sb", p]);
  return Number(out.split(/\s/)[0]);
}

/** Removes and recreates a folder. */
export function freshDir(p: string): void {
  fs.rmSync(p, { recursive: true, force: true });
  fs.mkdirSync(p, { recursive: true });
}

/** Facts about this machine, for the report. */
export interface Machine {
  cpus: number;
  cpuModel: string;
  memoryGiB: number;
  /** 1-minute load average when the bench started (other work on the machine adds noise). */
  loadAverage: number;
  kernel: string;
  os: string;
  filesystem: string;
}

/** Reads the machine facts; `dir` is where the bench writes (its filesystem is reported). */
export function machineFacts(dir: string): Machine {
  let cpuModel = "unknown";
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(fs.readFileSync("/proc/cpuinfo", "utf8"));
    if (m) cpuModel = m[1]!.trim();
  } catch { /* not Linux */ }
  let osName = `${os.type()} ${os.arch()}`;
  try {
    const m = /^PRETTY_NAME="?([^"\n]+)"?$/m.exec(fs.readFileSync("/etc/os-release", "utf8"));
    if (m) osName = m[1]!;
  } catch { /* no os-release */ }
  let filesystem = "unknown";
  try {
    filesystem =
      exec(["df", "--output=fstype,source", dir]).trim().split("\n")[1]?.trim().replace(/\s+/, " on ") ??
        filesystem;
  } catch { /* no df */ }
  return {
    cpus: os.cpus().length,
    cpuModel,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30 * 10) / 10,
    loadAverage: loadAverage(),
    kernel: os.release(),
    os: osName,
    filesystem,
  };
}

/** Quotes argv for display in a shell. */
export function shellQuote(argv: string[]): string {
  return argv.map((a) => /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`).join(" ");
}

function lastLines(text: string, n: number): string {
  return text.trim().split("\n").slice(-n).join(" | ").slice(0, 600);
}

/** The 1-minute load average, two decimals. */
export function loadAverage(): number {
  return Math.round((os.loadavg()[0] ?? 0) * 100) / 100;
}
