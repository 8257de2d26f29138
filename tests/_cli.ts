/**
 * Test helpers: run the real `frost` (main.ts under this Deno, or the built binary named by $FROST_BIN) and
 * build the hostile fixture tree.
 * @module
 */
import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const ROOT = path.resolve(import.meta.dirname!, "..");

/**
 * The command that runs frost: `$FROST_BIN` (the built binary), else main.ts under the running Deno, or with
 * `bun` under the project's Bun (which names any file: non-UTF-8 names, see names_test.ts).
 */
export function frostCommand(bun = false): string[] {
  const bin = process.env.FROST_BIN;
  if (bin) return [path.resolve(ROOT, bin)];
  if (bun) return [path.join(ROOT, "node_modules/bun/bin/bun.exe"), path.join(ROOT, "main.ts")];
  return [process.execPath, "run", "-A", "--quiet", path.join(ROOT, "main.ts")];
}

/** What a frost run printed and returned. */
export interface RunResult {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/** Options of `frost()`. */
export interface RunOptions {
  env?: Record<string, string>;
  cwd?: string;
  /** A file whose content is the child's standard input (default: none). */
  stdinFile?: string;
  /** A file that receives the child's standard output (then `stdout` is ""). */
  stdoutFile?: string;
  /** Called with the child once started (to send signals). */
  onSpawn?: (child: ReturnType<typeof spawn>) => void;
  /**
   * Run as `nobody` (uid/gid 65534, no groups) through setpriv, with HOME and the Deno cache in a folder of
   * its own; the caller (root) makes the files it works on accessible.
   */
  asNobody?: boolean;
  /** Without `$FROST_BIN`, run main.ts under Bun instead of Deno (see `frostCommand`). */
  bun?: boolean;
}

/** The home of `nobody` runs (`RunOptions.asNobody`): writable by it. */
function nobodyHome(): string {
  const home = path.join(os.tmpdir(), "frost-nobody-home");
  fs.mkdirSync(home, { recursive: true, mode: 0o777 });
  fs.chmodSync(home, 0o777);
  return home;
}

/** Runs frost with `args` and resolves when it exits. */
export function frost(args: string[], options: RunOptions = {}): Promise<RunResult> {
  const [cmd, ...pre] = options.asNobody
    ? ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", ...frostCommand(options.bun)]
    : frostCommand(options.bun);
  const nobodyEnv = options.asNobody
    ? { HOME: nobodyHome(), DENO_DIR: path.join(nobodyHome(), "deno"), XDG_DATA_HOME: "", XDG_CACHE_HOME: "" }
    : {};
  const input = options.stdinFile === undefined ? undefined : fs.openSync(options.stdinFile, "r");
  const output = options.stdoutFile === undefined ? undefined : fs.openSync(options.stdoutFile, "w");
  return new Promise((resolve, reject) => {
    const child = spawn(cmd!, [...pre, ...args], {
      cwd: options.cwd ?? os.tmpdir(),
      env: { ...process.env, NO_COLOR: "1", ...nobodyEnv, ...options.env },
      stdio: [input ?? "ignore", output ?? "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout?.on("data", (d) => stdout += d);
    child.stderr!.on("data", (d) => stderr += d);
    child.on("error", reject);
    child.on("close", (code, signal) => {
      if (input !== undefined) fs.closeSync(input);
      if (output !== undefined) fs.closeSync(output);
      resolve({ code, signal, stdout, stderr });
    });
    options.onSpawn?.(child);
  });
}

/** Makes a fresh temporary directory (removed by `cleanup`). */
/** Whether strace is installed and may trace here (containers often forbid ptrace). */
export function hasStrace(): boolean {
  try {
    execFileSync("strace", ["-f", "-qq", "-o", "/dev/null", "true"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

export function tempDir(label: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `frost-${label}-`));
}

/** Removes a directory tree. */
export function cleanup(...dirs: string[]): void {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
}

/** Deterministic pseudo-random bytes (xorshift), fast enough for 100 MiB. */
export function pseudoRandom(size: number, seed = 1): Uint8Array {
  const out = new Uint8Array(size);
  const words = new Uint32Array(out.buffer, 0, Math.floor(size / 4));
  let x = seed >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x >>> 0;
  }
  return out;
}

/** A long component name of 200+ bytes (multi-byte characters included). */
export const LONG_NAME = "long-" + "ä".repeat(60) + "-" + "x".repeat(80) + ".txt";

/**
 * Builds the hostile tree the end-to-end tests back up: awkward names, empty files and dirs, symlinks
 * (dangling too), hard links, a fifo, a setuid file, nanosecond mtimes and, when `bigFile` is set, a file of
 * that many bytes.
 */
export function makeHostileTree(root: string, options: { bigFile?: number } = {}): void {
  const w = (rel: string, data: string | Uint8Array, mode?: number) => {
    const p = path.join(root, rel);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, data);
    if (mode !== undefined) fs.chmodSync(p, mode);
  };
  fs.mkdirSync(root, { recursive: true });
  w("plain.txt", "hello\n");
  w('with space/it\'s "quoted".txt', "quotes\n");
  w("q?/hash#and*star", "glob chars\n");
  w("ünïcødé/日本語.txt", "unicode\n");
  w(`deep/${"d".repeat(90)}/${"e".repeat(90)}/${LONG_NAME}`, "long path\n");
  w("empty", "");
  fs.mkdirSync(path.join(root, "empty-dir"));
  w("bin/setuid", "#!/bin/sh\n", 0o4755);
  w("bin/setgid-sticky", "x", 0o2755);
  w("private", "secret\n", 0o600);
  fs.symlinkSync("plain.txt", path.join(root, "link-to-plain"));
  fs.symlinkSync("does/not/exist", path.join(root, "dangling"));
  fs.symlinkSync("../" + "t".repeat(150), path.join(root, "deep/long-target"));
  w("hard/a", "hard linked\n");
  fs.linkSync(path.join(root, "hard/a"), path.join(root, "hard/b"));
  execFileSync("mkfifo", [path.join(root, "fifo")]);
  if (options.bigFile) {
    const chunk = pseudoRandom(1 << 20, 7);
    const fd = fs.openSync(path.join(root, "big.bin"), "w");
    for (let off = 0; off < options.bigFile; off += chunk.byteLength) {
      // Half random, half text, so compression has something to do.
      const piece = (off / chunk.byteLength) % 2 === 0
        ? chunk
        : new TextEncoder().encode("abc ".repeat(1 << 18));
      fs.writeSync(fd, piece.subarray(0, Math.min(piece.byteLength, options.bigFile - off)));
    }
    fs.closeSync(fd);
  }
  // Nanosecond mtimes on a few files (GNU touch writes them exactly).
  execFileSync("touch", ["-m", "-d", "2024-02-29 12:34:56.123456789", path.join(root, "plain.txt")]);
  execFileSync("touch", ["-m", "-d", "2001-01-01 00:00:00.000000001", path.join(root, "empty")]);
}

/** Copies a tree exactly (GNU cp -a keeps modes, ns mtimes, links, fifos). */
export function copyTree(from: string, to: string): void {
  execFileSync("cp", ["-a", from, to]);
}
