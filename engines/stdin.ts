/**
 * The stdin engine: one byte stream (a database dump piped in, say) kept as it came. Its data is the stream
 * itself (so `zstd -d` of the segments gives the dump back); its state is one JSON line naming the file
 * and its size. Every backup of it is a full one: there is nothing to compare a stream against.
 * @module
 */
import fs from "node:fs";
import path from "node:path";
import type { BackupRun, Engine, RestoreRun, StateEntry } from "./engine.ts";
import { FrostError, messageOf } from "../base/errors.ts";
import { restoreRun, RestoreTally, RestoreTarget } from "./_restore_fs.ts";
import { safeRel } from "./_fs_common.ts";

/** The engine name recorded in manifests. */
export const STDIN_ENGINE = "stdin";

const STATE_FORMAT = "frost-stdin-state";

/** Where a stdin backup comes from and goes to. */
export interface StdinOptions {
  /** Backup: the stream to store. */
  input?: ReadableStream<Uint8Array>;
  /** The file name it restores to inside the target (and lists as). Default "stdin". */
  file?: string;
  /** Restore: write the bytes here instead of into a file under the target (e.g. stdout). */
  output?: WritableStream<Uint8Array>;
}

/** A stdin engine reading from or writing to the given places. */
export function stdinEngine(io: StdinOptions = {}): Engine {
  const file = io.file ?? "stdin";
  return {
    name: STDIN_ENGINE,
    backup: (_source, options = {}) => backup(io.input, file, options),
    restore: (target, options = {}) => {
      const rel = safeRel(file, file);
      if (options.select && options.select(rel, false) === "out") return discard();
      return io.output ? toWritable(io.output, options) : toFile(target, rel, options);
    },
    entries: stateEntries,
  };
}

function backup(
  input: ReadableStream<Uint8Array> | undefined,
  file: string,
  options: Parameters<Engine["backup"]>[1] = {},
): BackupRun {
  if (!input) throw new FrostError("The stdin engine backs up a stream: none was given");
  let bytes = 0;
  let last = performance.now();
  let endState!: (size: number) => void;
  let failState!: (err: unknown) => void;
  const sized = new Promise<number>((resolve, reject) => {
    endState = resolve;
    failState = reject;
  });
  sized.catch(() => {});
  const signal = options.signal;
  const reader = input.getReader();
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (signal?.aborted) throw signal.reason;
      let result: ReadableStreamReadResult<Uint8Array>;
      try {
        result = await reader.read();
      } catch (err) {
        const failure = new FrostError(`Cannot read standard input: ${messageOf(err)}`, { cause: err });
        failState(failure);
        throw failure;
      }
      if (result.done) {
        controller.close();
        options.onProgress?.({ files: 1, bytes });
        // Most often the producer failed (pg_dump … | frost backup --stdin): say so.
        if (bytes === 0) options.onWarning?.({ path: file, message: "standard input was empty" });
        endState(bytes);
        return;
      }
      bytes += result.value.length;
      const now = performance.now();
      if (now - last >= 100) {
        last = now;
        options.onProgress?.({ files: 0, bytes });
      }
      controller.enqueue(result.value);
    },
    async cancel(reason) {
      failState(reason);
      await reader.cancel(reason).catch(() => {});
    },
  });
  const state = new ReadableStream<Uint8Array>({
    async start(controller) {
      try {
        const size = await sized;
        const line = JSON.stringify({ format: STATE_FORMAT, version: 1, file, size }) + "\n";
        controller.enqueue(new TextEncoder().encode(line));
        controller.close();
      } catch (err) {
        controller.error(err);
      }
    },
  });
  const done = sized.then((size) => ({ files: 1, bytes: size, scanned: 1, warnings: size === 0 ? 1 : 0 }));
  return { stream, state, done };
}

/** Writes the stream into `target/rel`, replacing a file there (never through a symlink). */
function toFile(target: string, rel: string, options: Parameters<Engine["restore"]>[1] = {}): RestoreRun {
  const t = new RestoreTarget<never>(path.resolve(target), options);
  const n = new RestoreTally(options);
  let fd = -1;
  const open = () => {
    t.parents(rel, rel);
    fd = t.createFile(rel, t.abs(rel), 0o600);
  };
  return restoreRun(target, options, "stdin restore", {
    push(chunk) {
      try {
        if (fd < 0) open();
        for (let off = 0; off < chunk.length;) off += fs.writeSync(fd, chunk, off, chunk.length - off);
      } catch (err) {
        throw new FrostError(`Cannot restore "${rel}": ${messageOf(err)}`, { cause: err });
      }
      n.bytes += chunk.length;
      n.tick();
    },
    finish() {
      try {
        if (fd < 0) open();
        fs.closeSync(fd);
        fd = -1;
      } catch (err) {
        throw new FrostError(`Cannot restore "${rel}": ${messageOf(err)}`, { cause: err });
      }
      n.files = 1;
      return n.totals();
    },
    abandon() {
      if (fd >= 0) fs.closeSync(fd);
      fd = -1;
    },
  });
}

/** Pipes the bytes into `output` (closing it at the end). */
function toWritable(
  output: WritableStream<Uint8Array>,
  options: Parameters<Engine["restore"]>[1] = {},
): RestoreRun {
  const n = new RestoreTally(options);
  const counter = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      n.bytes += chunk.length;
      n.tick();
      controller.enqueue(chunk);
    },
  });
  const done = counter.readable.pipeTo(output, { signal: options.signal }).then(() => {
    n.files = 1;
    return n.totals();
  });
  done.catch(() => {});
  return { writable: counter.writable, done };
}

/** Reads and drops the stream (the file is left out of a partial restore). */
function discard(): RestoreRun {
  const writable = new WritableStream<Uint8Array>();
  return { writable, done: Promise.resolve({ files: 0, bytes: 0, deleted: 0 }) };
}

async function* stateEntries(state: ReadableStream<Uint8Array>): AsyncGenerator<StateEntry> {
  let text = "";
  const decoder = new TextDecoder();
  for await (const chunk of state) text += decoder.decode(chunk, { stream: true });
  text += decoder.decode();
  let v: { format?: unknown; file?: unknown; size?: unknown } | undefined;
  try {
    v = JSON.parse(text);
  } catch {
    v = undefined;
  }
  if (v?.format !== STATE_FORMAT || typeof v.file !== "string" || typeof v.size !== "number") {
    throw new FrostError("Cannot read the backup's state: it is not a frost stdin state");
  }
  yield { path: v.file, type: "file", size: v.size };
}
