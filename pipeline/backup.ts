/**
 * The backup flow: engine stream → compressor → (encryptor) → segmenter → segment writer
 * (CountQueuingStrategy(queueSize)), and the same for the engine state, concurrently; then the manifest,
 * last. A storage that takes objects in pieces (`openPut`, local folders) gets each segment as it is
 * produced, so no segment is ever held whole in memory; the others get whole segments from a BufferPool.
 * @module
 */
import type { Storage } from "../storage/storage.ts";
import { canStreamPut } from "../storage/storage.ts";
import type { Engine, Progress, Warning } from "../engines/engine.ts";
import type { Compression } from "../codec/compression.ts";
import { createCompressor } from "../codec/compression.ts";
import type { Manifest, SegmentRef } from "../series/manifest.ts";
import {
  deleteBackupObjects,
  encodeManifest,
  MANIFEST_FORMAT,
  MANIFEST_VERSION,
  manifestKey,
  segmentKey,
  seriesName,
} from "../series/manifest.ts";
import { idToIso } from "../series/levels.ts";
import { AbortedError } from "../base/errors.ts";
import type { GiveBack } from "../base/bytes.ts";
import { createEncryptor, type DataKey, sealText, streamId } from "../codec/encryption.ts";
import type { BackupKeys } from "../series/keys.ts";

import { BufferPool } from "./buffer_pool.ts";
import { Segmenter, SegmentWriter, StreamingSegmentWriter } from "./segment_writer.ts";
import { readSegments } from "./segment_reader.ts";
import type { BackupTimes } from "./stats.ts";
import { openStream } from "./decode.ts";

/** Everything a backup run needs. */
export interface BackupJob {
  storage: Storage;
  engine: Engine;
  /** Absolute source path. */
  source: string;
  hostname: string;
  name: string;
  id: string;
  level: number;
  parent: Manifest | null;
  /** The parent's state key when the parent is encrypted. */
  parentStateKey?: DataKey | null;
  /** This backup's keys; absent for an unencrypted backup. */
  keys?: BackupKeys | null;
  compression: Compression;
  segmentSize: number;
  queueSize: number;
  exclude?: string[];
  crossFileSystems?: boolean;
  /** Store extended attributes and ACLs (`BackupOptions.xattrs`). Default: true. */
  xattrs?: boolean;
  signal?: AbortSignal;
  frostVersion: string;
  onProgress?: (progress: Progress & { stored: number }) => void;
  onWarning?: (warning: Warning) => void;
  /** When given, filled with where the time went (`frost backup --stats`); see `newBackupTimes()`. */
  times?: BackupTimes;
}

/**
 * Runs one backup: data and state segments first, the manifest last. On any failure (or abort) nothing is
 * committed; the objects this run wrote are deleted as far as possible (leftovers are orphans that
 * `frost remove` cleans), and every earlier backup stays as it was.
 */
export async function runBackup(job: BackupJob): Promise<Manifest> {
  const started = performance.now();
  const series = seriesName(job.hostname, job.name);
  const controller = new AbortController();
  const signal = job.signal ? AbortSignal.any([job.signal, controller.signal]) : controller.signal;
  let stored = 0;
  let last: Progress = { files: 0, bytes: 0 };

  const previous = job.parent
    ? openStream(
      readSegments(job.storage, job.parent.state, { signal }),
      job.parent,
      "state",
      job.parentStateKey ?? null,
    ).stream
    : undefined;
  const run = job.engine.backup(job.source, {
    previous,
    exclude: job.exclude,
    crossFileSystems: job.crossFileSystems,
    xattrs: job.xattrs,
    signal,
    onProgress: (p) => {
      last = p;
      job.onProgress?.({ ...p, stored });
    },
    onWarning: job.onWarning,
    times: job.times?.engine,
  });
  const onStored = (bytes: number) => {
    stored += bytes;
    job.onProgress?.({ ...last, stored });
  };
  const storage = job.storage;
  const data = encode(run.stream, job, "data", run.giveBack);
  const state = encode(run.state, job, "state");
  const giveBack = { data: data.giveBack, state: state.giveBack };
  const dataKey = (n: number) => segmentKey(series, job.id, "data", n);
  const stateKey = (n: number) => segmentKey(series, job.id, "state", n);
  let dataWriter: SegmentWriter | StreamingSegmentWriter;
  let stateWriter: SegmentWriter | StreamingSegmentWriter;
  const flows: Promise<unknown>[] = [];
  if (canStreamPut(storage)) {
    const streaming = storage;
    const options = { queueSize: job.queueSize, signal };
    dataWriter = new StreamingSegmentWriter(streaming, dataKey, job.segmentSize, {
      ...options,
      onStored,
      times: job.times,
      giveBack: giveBack.data,
    });
    stateWriter = new StreamingSegmentWriter(streaming, stateKey, job.segmentSize, {
      ...options,
      giveBack: giveBack.state,
    });
    flows.push(data.stream.pipeTo(dataWriter, { signal }), state.stream.pipeTo(stateWriter, { signal }));
  } else {
    const pool = new BufferPool(job.segmentSize, job.queueSize + 2, true);
    dataWriter = new SegmentWriter(storage, dataKey, {
      queueSize: job.queueSize,
      signal,
      pool,
      onStored,
      times: job.times,
    });
    stateWriter = new SegmentWriter(storage, stateKey, { queueSize: job.queueSize, signal });
    flows.push(
      data.stream.pipeThrough(new Segmenter(job.segmentSize, pool, giveBack.data)).pipeTo(dataWriter, {
        signal,
      }),
      state.stream.pipeThrough(new Segmenter(job.segmentSize, undefined, giveBack.state)).pipeTo(
        stateWriter,
        {
          signal,
        },
      ),
    );
  }
  flows.push(run.done);
  try {
    // allSettled-then-throw: when one flow fails, abort the others and report the first real cause.
    const results = await Promise.allSettled(flows.map((p) =>
      p.catch((err) => {
        controller.abort(err);
        throw err;
      })
    ));
    const failure = results.find((r) => r.status === "rejected") as PromiseRejectedResult | undefined;
    if (failure) throw job.signal?.aborted ? new AbortedError("Backup interrupted") : failure.reason;
    const stats = await run.done;
    const manifest: Manifest = {
      format: MANIFEST_FORMAT,
      version: MANIFEST_VERSION,
      id: job.id,
      name: job.name,
      hostname: job.hostname,
      level: job.level,
      parent: job.parent?.id ?? null,
      chain: job.parent?.chain ?? job.id,
      created: idToIso(job.id),
      engine: job.engine.name,
      compression: job.compression,
      encryption: job.keys ? await job.keys.wrapped() : null,
      source: job.keys ? null : job.source,
      ...job.keys &&
        { sealedSource: await sealText(job.keys.dataKey, streamId(job.id, "manifest"), job.source) },
      frost: job.frostVersion,
      segments: dataWriter.refs,
      state: stateWriter.refs,
      totals: {
        files: stats.files,
        bytesIn: stats.bytes,
        bytesStored: sum(dataWriter.refs),
        stateBytes: sum(stateWriter.refs),
        warnings: stats.warnings,
        seconds: Math.round(performance.now() - started) / 1000,
      },
    };
    if (job.signal?.aborted) throw new AbortedError("Backup interrupted");
    // The commit point.
    await job.storage.put(manifestKey(series, job.id), encodeManifest(manifest));
    if (job.times) job.times.wallMs = performance.now() - started;
    return manifest;
  } catch (err) {
    controller.abort(err);
    // A manifest put that failed on one of several storages may have landed on another: un-commit first.
    await job.storage.delete(manifestKey(series, job.id)).catch(() => {});
    await deleteBackupObjects(job.storage, series, job.id).catch(() => {});
    throw err;
  }
}

/** engine bytes → compressed → (encrypted): what is cut into segments. */
function encode(
  stream: ReadableStream<Uint8Array>,
  job: BackupJob,
  kind: "data" | "state",
  giveBack?: GiveBack,
): { stream: ReadableStream<Uint8Array>; giveBack?: GiveBack } {
  const times = kind === "data" ? job.times : undefined;
  // The compressor's reader gives its chunks back: the segment writer, or the encryptor when encrypting.
  const compressor = createCompressor(job.compression, {
    giveBack,
    times: times?.compress,
    readerGivesBack: true,
  });
  const compressed = stream.pipeThrough(compressor);
  if (!job.keys) return { stream: compressed, giveBack: compressor.giveBack };
  const key = kind === "data" ? job.keys.dataKey : job.keys.stateKey;
  const encryptor = createEncryptor(key, streamId(job.id, kind), { giveBack: compressor.giveBack });
  if (!times) return { stream: compressed.pipeThrough(encryptor), giveBack: encryptor.giveBack };
  times.encrypt = { ms: 0, bytes: 0 };
  return { stream: compressed.pipeThrough(timed(encryptor, times.encrypt)), giveBack: encryptor.giveBack };
}

/**
 * `inner`, adding to `stat` the time from handing each chunk to it until it took the chunk (its transform
 * ran), and the bytes handed. For `--stats` only: one more stream hop per chunk.
 */
function timed(
  inner: TransformStream<Uint8Array, Uint8Array>,
  stat: { ms: number; bytes: number },
): TransformStream<Uint8Array, Uint8Array> {
  const writer = inner.writable.getWriter();
  const reader = inner.readable.getReader();
  let pumped: Promise<void> = Promise.resolve();
  return new TransformStream<Uint8Array, Uint8Array>({
    start(controller) {
      pumped = (async () => {
        for (;;) {
          const r = await reader.read();
          if (r.done) return;
          controller.enqueue(r.value);
        }
      })();
      pumped.catch(() => {});
    },
    async transform(chunk) {
      const t0 = performance.now();
      await writer.write(chunk);
      stat.ms += performance.now() - t0;
      stat.bytes += chunk.byteLength;
    },
    async flush() {
      await writer.close();
      await pumped;
    },
    async cancel(reason) {
      await writer.abort(reason).catch(() => {});
      await reader.cancel(reason).catch(() => {});
    },
  });
}

function sum(refs: readonly SegmentRef[]): number {
  return refs.reduce((n, r) => n + r.size, 0);
}
