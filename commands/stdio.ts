/**
 * Standard output and error of the `frost` process (used by main.ts only): every byte written reaches the
 * reader before the process exits, and a reader that went away (`frost ls | head -1`) ends the run quietly.
 *
 * `process.exit()` in a Bun-compiled binary drops what is still queued for a pipe (output was cut at 64 KiB);
 * `writable.end(callback)` calls back only once the queue is written, in Bun and in Deno, so the exit waits
 * for it. A closed pipe (EPIPE) marks standard output broken: later lines are dropped, and the run exits with
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
  process.stdout.on("error", () => {
    outBroken = true;
  });
  process.stderr.on("error", () => {
    errBroken = true;
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
  if (!outBroken) process.stdout.write(line + "\n");
}

/** Writes a line to standard error, unless it is closed. */
export function writeErr(line: string): void {
  if (!errBroken) process.stderr.write(line + "\n");
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
