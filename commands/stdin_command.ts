/**
 * `backup --stdin-command CMD`: frost runs the producer (`sh -c CMD`, as restic's `--stdin-from-command`)
 * and backs up its standard output. Unlike `CMD | frost backup --stdin`, frost sees the exit status: a
 * producer that fails fails the backup, so nothing is committed.
 * @module
 */
import { spawn } from "node:child_process";
import { FrostError } from "../base/errors.ts";

/** Options of `producerStream`. */
export interface ProducerOptions {
  /** Stops the producer (SIGTERM) when aborted. */
  signal?: AbortSignal;
  /** Receives each line the producer writes to its stderr (default: dropped). */
  onStderr?: (line: string) => void;
}

/**
 * The standard output of `sh -c command` as a byte stream. The producer starts on the first read (so a
 * backup that fails before reading never runs it). The stream closes only once the producer has exited
 * with status 0; otherwise it errors with a `FrostError` naming the command, its exit status (or signal)
 * and the last line it wrote to stderr. Cancelling the stream stops the producer.
 */
export function producerStream(command: string, options: ProducerOptions = {}): ReadableStream<Uint8Array> {
  let child: ReturnType<typeof spawn> | undefined;
  let chunks: AsyncIterator<Buffer> | undefined;
  let exited: Promise<{ code: number | null; signal: string | null }> | undefined;
  let lastLine = "";
  let partial = "";
  const start = () => {
    child = spawn("sh", ["-c", command], { stdio: ["ignore", "pipe", "pipe"] });
    exited = new Promise((resolve, reject) => {
      child!.on(
        "error",
        (err) =>
          reject(new FrostError(`Cannot run --stdin-command "${command}": ${err.message}`, { cause: err })),
      );
      child!.on("close", (code, signal) => resolve({ code, signal }));
    });
    exited.catch(() => {});
    child.stderr!.setEncoding("utf8");
    child.stderr!.on("data", (text: string) => {
      const lines = (partial + text).split("\n");
      partial = lines.pop()!;
      for (const line of lines) {
        if (line.trim() !== "") lastLine = line.trim();
        options.onStderr?.(line);
      }
    });
    child.stderr!.on("end", () => {
      if (partial.trim() !== "") lastLine = partial.trim();
      if (partial !== "") options.onStderr?.(partial);
      partial = "";
    });
    chunks = child.stdout![Symbol.asyncIterator]();
    options.signal?.addEventListener("abort", () => child?.kill("SIGTERM"), { once: true });
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (!child) start();
      const next = await chunks!.next();
      if (!next.done) {
        controller.enqueue(new Uint8Array(next.value.buffer, next.value.byteOffset, next.value.byteLength));
        return;
      }
      const { code, signal } = await exited!;
      if (code === 0) {
        controller.close();
        return;
      }
      const status = signal ? `was killed by ${signal}` : `exited with status ${code}`;
      throw new FrostError(
        `--stdin-command "${command}" ${status}${
          lastLine ? `; its last stderr line: ${JSON.stringify(lastLine)}` : ""
        }`,
      );
    },
    cancel() {
      child?.kill("SIGTERM");
    },
  }, { highWaterMark: 0 });
}
