/**
 * Standard output and error of the `frost` process (used by main.ts only): every byte written reaches the
 * reader before the process exits, and a reader that went away (`frost ls | head -1`) ends the run quietly.
 *
 * `process.exit()` in a Bun-compiled binary drops what is still queued for a pipe (output was cut at 64 KiB).
 * Measured in the binary (Bun 1.x) with 500 KB of lines to a reader that starts late: `write("", callback)`
 * calls back before the queue is written (64 KB arrived), `writableLength` reads 0 while bytes are still queued
 * (so waiting for "drain" waits for nothing), while `writable.end(callback)` calls back only once everything
 * is written (500 KB arrived, in Deno too); so the exit waits for `end()` of both streams. A closed pipe (EPIPE) marks standard output broken: later lines are dropped, and the run exits with
 * {@link EXIT_BROKEN_PIPE}, the code a shell reports for a tool killed by SIGPIPE, without a message.
 * @module
 */

/** Exit code when standard output was closed by its reader (128 + SIGPIPE), as `yes | head -1` reports. */
export const EXIT_BROKEN_PIPE = 141;

let outBroken = false;
let errBroken = false;
let watching = false;

/** Listens for errors on standard output and error (EPIPE and the like) instead of crashing on them. */
export function watchStdio(): void {
  if (watching) return;
  watching = true;
  // A write after end() (a late line while exiting) is dropped; any other error means the reader is gone.
  const lost = (err: unknown) => (err as { code?: string })?.code !== "ERR_STREAM_WRITE_AFTER_END";
  process.stdout.on("error", (err) => {
    if (lost(err)) outBroken = true;
  });
  process.stderr.on("error", (err) => {
    if (lost(err)) errBroken = true;
  });
}

/** True once standard output failed (its reader closed the pipe). */
export function stdoutBroken(): boolean {
  return outBroken;
}

/** Marks standard output broken (a write's callback reported an error). */
export function markStdoutBroken(): void {
  outBroken = true;
}

/** Writes a line to standard output, unless its reader has gone. */
export function writeOut(line: string): void {
  if (!outBroken && !process.stdout.writableEnded) process.stdout.write(line + "\n");
}

/** Writes a line to standard error, unless it is closed. */
export function writeErr(line: string): void {
  if (!errBroken && !process.stderr.writableEnded) process.stderr.write(line + "\n");
}

function ended(stream: NodeJS.WriteStream, broken: () => boolean): Promise<void> {
  if (broken() || stream.writableEnded) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const done = () => {
      stream.off("error", done);
      resolve();
    };
    stream.once("error", done);
    stream.end(done);
  });
}

/** Waits until standard output and error are written out (or failed), then exits with `code`. */
export async function exitAfterOutput(code: number): Promise<never> {
  await Promise.all([ended(process.stdout, () => outBroken), ended(process.stderr, () => errBroken)]);
  process.exit(outBroken ? EXIT_BROKEN_PIPE : code);
}
