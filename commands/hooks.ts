/**
 * `--pre-command` and `--post-command`: shell commands run around a backup, as Freezer's modes quiesce a
 * database around theirs. Their output goes to frost's stderr (stdout may carry `--json`).
 * @module
 */
import { spawn } from "node:child_process";
import process from "node:process";
import { FrostError, messageOf } from "../base/errors.ts";

/** How a hook ended. */
export interface HookResult {
  /** Exit code; null when it was ended by a signal. */
  code: number | null;
  signal: NodeJS.Signals | null;
}

/**
 * Runs `command` with `sh -c`, stdin closed, the lines of its stdout and stderr copied to `stderr`, and
 * `env` added to frost's environment. An abort of `signal` ends it with SIGTERM. Rejects only when it
 * cannot be started.
 */
export function runHook(
  command: string,
  env: Record<string, string>,
  stderr: (line: string) => void,
  signal?: AbortSignal,
): Promise<HookResult> {
  const out = lines(stderr);
  const err = lines(stderr);
  return new Promise((resolve, reject) => {
    let child;
    try {
      child = spawn("/bin/sh", ["-c", command], {
        stdio: ["ignore", "pipe", "pipe"],
        env: { ...process.env, ...env },
      });
    } catch (err) {
      reject(new FrostError(`Cannot run "${command}": ${messageOf(err)}`, { cause: err }));
      return;
    }
    const onAbort = () => child.kill("SIGTERM");
    signal?.addEventListener("abort", onAbort, { once: true });
    child.stdout.on("data", out.push);
    child.stderr.on("data", err.push);
    child.on("error", (err) => {
      signal?.removeEventListener("abort", onAbort);
      reject(new FrostError(`Cannot run "${command}": ${messageOf(err)}`, { cause: err }));
    });
    child.on("close", (code, sig) => {
      signal?.removeEventListener("abort", onAbort);
      out.flush();
      err.flush();
      resolve({ code, signal: sig });
    });
  });
}

/** "exit code 3" or "killed by SIGTERM". */
export function describeHookEnd(result: HookResult): string {
  return result.signal ? `killed by ${result.signal}` : `exit code ${result.code}`;
}

/** Splits a byte stream into lines for `emit` (a last unterminated line on `flush`). */
function lines(emit: (line: string) => void) {
  const decoder = new TextDecoder();
  let rest = "";
  return {
    push: (chunk: Uint8Array) => {
      rest += decoder.decode(chunk, { stream: true });
      let i;
      while ((i = rest.indexOf("\n")) >= 0) {
        emit(rest.slice(0, i));
        rest = rest.slice(i + 1);
      }
    },
    flush: () => {
      rest += decoder.decode();
      if (rest !== "") emit(rest);
      rest = "";
    },
  };
}
