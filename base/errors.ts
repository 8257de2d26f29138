/**
 * Error classes shared by the CLI, the pipeline, engines and storages, and the exit codes they map to.
 * @module
 */

/** Exit codes of the `frost` command. */
export const ExitCode = {
  ok: 0,
  failure: 1,
  usage: 2,
  warnings: 3,
} as const;

/** A mistake in how frost was called: shown with a hint to `--help`, exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** A failure of the operation itself (missing backup, corrupt segment, …): exit code 1. */
export class FrostError extends Error {
  override name = "FrostError";
}

/** The run was interrupted by a signal or an AbortSignal. */
export class AbortedError extends Error {
  override name = "AbortedError";
}

/** A run interrupted after it changed something: its message says what it left, and is shown as is. */
export class InterruptedError extends AbortedError {
  override name = "InterruptedError";
}

/** Returns the message of any thrown value. */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * `err` as a failure of `action` (`Cannot back up "/srv"`): a `FrostError` with the action before its
 * message; frost's own errors and aborts as they are.
 */
export function failureOf(err: unknown, action: string): Error {
  if (err instanceof FrostError || err instanceof AbortedError) return err;
  return new FrostError(`${action}: ${messageOf(err)}`, { cause: err });
}
