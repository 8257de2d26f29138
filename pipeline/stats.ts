/**
 * Where a backup's time went (`frost backup --stats`): `BackupTimes`, its table and its JSON.
 * @module
 */
import type { EngineTimes } from "../engines/engine.ts";

/**
 * Where a backup's time went, for the data stream (the engine state is small and left out). Times are
 * milliseconds; "ms" of a stage is the sum of the durations of its operations, which overlap other stages
 * (and, for compression and storage, each other): compare them with `wallMs`, not with their sum.
 */
export interface BackupTimes {
  wallMs: number;
  /** The engine: walk (readdir/lstat), read (open/read), and all its busy time (`busyMs`). */
  engine: EngineTimes;
  /** Frames: time a worker spent on each (Bun), or from the start of its compression to its result
   * (Deno, where zlib's thread pool runs several at once). */
  compress: { ms: number; bytesIn: number; bytesOut: number };
  /** Encryption, from handing a chunk to the encryptor until it took it; null when not encrypted. */
  encrypt: { ms: number; bytes: number } | null;
  /** SHA-256 of the stored segments. */
  hash: { ms: number; bytes: number };
  /** Writing to the storage: puts, or the writes and commits (fsync, rename) of streamed puts. */
  store: { ms: number; bytes: number; objects: number };
  /** The segment writer waiting for a free slot: segments in flight = queue size (storage backpressure). */
  queueWaitMs: number;
}

/** An empty `BackupTimes`. */
export function newBackupTimes(): BackupTimes {
  return {
    wallMs: 0,
    engine: { walkMs: 0, readMs: 0, readBytes: 0, busyMs: 0, waitMs: 0 },
    compress: { ms: 0, bytesIn: 0, bytesOut: 0 },
    encrypt: null,
    hash: { ms: 0, bytes: 0 },
    store: { ms: 0, bytes: 0, objects: 0 },
    queueWaitMs: 0,
  };
}

/** `BackupTimes` for `--json`: seconds (3 decimals) and bytes per stage. */
export function backupTimesJson(t: BackupTimes): Record<string, unknown> {
  const s = (ms: number) => Math.round(ms) / 1000;
  const e = t.engine;
  return {
    wallSeconds: s(t.wallMs),
    walk: { seconds: s(e.walkMs) },
    read: { seconds: s(e.readMs), bytes: e.readBytes },
    tar: { seconds: s(Math.max(0, e.busyMs - e.walkMs - e.readMs)) },
    engineBusy: { seconds: s(e.busyMs) },
    compress: { seconds: s(t.compress.ms), bytesIn: t.compress.bytesIn, bytesOut: t.compress.bytesOut },
    encrypt: t.encrypt && { seconds: s(t.encrypt.ms), bytes: t.encrypt.bytes },
    hash: { seconds: s(t.hash.ms), bytes: t.hash.bytes },
    store: { seconds: s(t.store.ms), bytes: t.store.bytes, objects: t.store.objects },
    backpressure: { engineWaitSeconds: s(e.waitMs), queueWaitSeconds: s(t.queueWaitMs) },
  };
}

/** `BackupTimes` as a table for people (`frost backup --stats`). */
export function formatBackupTimes(t: BackupTimes): string {
  const e = t.engine;
  const sec = (ms: number) => (ms / 1000).toFixed(2).padStart(7);
  const mb = (bytes: number) => (bytes / 1e6).toFixed(1).padStart(9);
  const rate = (bytes: number, ms: number) =>
    ms > 0 ? `${(bytes / 1e3 / ms).toFixed(0).padStart(6)} MB/s` : "";
  const row = (stage: string, ms: number, bytes?: number, note = "") =>
    (`  ${stage.padEnd(17)}${sec(ms)}${bytes === undefined ? "".padEnd(9) : mb(bytes)}  ` +
      `${bytes === undefined ? "".padEnd(11) : rate(bytes, ms)}${note ? `  ${note}` : ""}`).trimEnd();
  const lines = [
    "where the time went (data stream; stages overlap, so their times add up to more than the wall time):",
    `  ${"stage".padEnd(17)}${"s".padStart(7)}${"MB".padStart(9)}`,
    row("walk", e.walkMs, undefined, "readdir, lstat"),
    row("read", e.readMs, e.readBytes, "open, read"),
    row("tar framing", Math.max(0, e.busyMs - e.walkMs - e.readMs), undefined, "headers, state, bookkeeping"),
    row(
      "compress",
      t.compress.ms,
      t.compress.bytesIn,
      `→ ${(t.compress.bytesOut / 1e6).toFixed(1)} MB; frames overlap`,
    ),
    t.encrypt ? row("encrypt", t.encrypt.ms, t.encrypt.bytes) : "  encrypt                 —",
    row("hash", t.hash.ms, t.hash.bytes, "SHA-256 of the segments"),
    row("store", t.store.ms, t.store.bytes, `${t.store.objects} objects; writes, fsync, rename`),
    row("engine waiting", e.waitMs, undefined, "for compression/storage to take more (backpressure)"),
    row("queue waiting", t.queueWaitMs, undefined, "for segments in flight to be stored"),
    row("wall", t.wallMs),
  ];
  return lines.join("\n");
}
