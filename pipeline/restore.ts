/**
 * The restore flow: per backup of the chain, oldest first: segments (SHA-256 checked) → (decrypt) →
 * decompress → `engine.restore()`.
 * @module
 */
import type { Storage } from "../storage/storage.ts";
import { canReadInPlace } from "../storage/storage.ts";
import type { Engine, Progress, RestoreOptions, RestoreStats, Warning } from "../engines/engine.ts";
import type { Manifest } from "../series/manifest.ts";
import { AbortedError, FrostError, messageOf } from "../base/errors.ts";
import { collectNow } from "../base/memory.ts";
import type { DataKey } from "../codec/encryption.ts";
import { SkipPlan } from "../base/skip.ts";

import { readSegments } from "./segment_reader.ts";
import { openStream, pipeGivingBack, readStateChunks, segmentPool } from "./decode.ts";

/** Everything a restore run needs. */
export interface RestoreJob {
  storage: Storage;
  engines: (name: string) => Engine;
  /** The chain, oldest (level 0) first. */
  chain: readonly Manifest[];
  /** The data keys of the chain's encrypted backups, by id (unwrapped before anything is written). */
  keys?: ReadonlyMap<string, DataKey>;
  /**
   * The state keys of the chain's encrypted backups, by id: with a backup's state readable (unencrypted, or
   * its key here), the restore learns what its stream stores whole and does not write those files at the
   * chain's earlier members (see `supersededFiles`). Without, nothing is skipped on its account.
   */
  stateKeys?: ReadonlyMap<string, DataKey>;
  /** An existing directory. */
  target: string;
  /**
   * Segments downloaded at once from a storage that cannot read in place (the remote ones); default 2. Each
   * one held costs up to a segment of memory.
   */
  queueSize?: number;
  /** Partial restore: the entries to restore (`RestoreOptions.select`). Default: all. */
  select?: RestoreOptions["select"];
  /** Restore extended attributes and ACLs (`RestoreOptions.xattrs`). Default: true. */
  xattrs?: boolean;
  /** Make device nodes (`RestoreOptions.devices`). Default: true. */
  devices?: boolean;
  /** The target is a new or empty folder: the chain's first member needs no look before each entry. */
  emptyTarget?: boolean;
  signal?: AbortSignal;
  onProgress?: (progress: Progress & { level: number; read: number }) => void;
  onWarning?: (warning: Warning) => void;
}

/** Applies every backup of a chain to the target, oldest first. */
export async function runRestore(job: RestoreJob): Promise<RestoreStats> {
  const total: RestoreStats = { files: 0, bytes: 0, deleted: 0 };
  let read = 0;
  // Each level hands the next what the chain held, so that only the chain's own deletions are replayed.
  const memo = new Map<string, unknown>();
  // Each kind of xattr the kernel refuses is reported once for the whole chain.
  const xattrsRefused = new Set<string>();
  // One segment buffer for the whole chain: each level's segments are all given back when it ends.
  let lastPool: ReturnType<typeof segmentPool>;
  const skips = await supersededFiles(job);
  for (const [level, manifest] of job.chain.entries()) {
    const engine = job.engines(manifest.engine);
    let last: Progress = { files: 0, bytes: 0 };
    const key = job.keys?.get(manifest.id) ?? null;
    // What the last level's decoder and members left is garbage: freed before this level makes more.
    collectNow();
    // What the restore reads past (skipped files' data) the zstd decompressor need not decompress.
    const plan = manifest.compression === "zstd" ? new SkipPlan() : undefined;
    const run = engine.restore(job.target, {
      select: job.select,
      memo,
      xattrs: job.xattrs,
      xattrsRefused,
      devices: job.devices,
      skipData: skips[level],
      onReadPast: plan && ((offset, length) => plan.add(offset, length)),
      emptyTarget: job.emptyTarget === true && manifest === job.chain[0],
      signal: job.signal,
      // zstd output buffers are handed back and filled again; encrypted streams are left out too (not checked
      // for reuse), so chunks are kept (written behind) only for unencrypted none/gzip data.
      noGiveBack: !key && manifest.compression !== "zstd",
      onProgress: (p) => {
        last = p;
        job.onProgress?.({
          files: total.files + p.files,
          bytes: total.bytes + p.bytes,
          level: manifest.level,
          read,
        });
      },
      onWarning: job.onWarning,
    });
    const pool = segmentPool(manifest, key, lastPool);
    lastPool = pool ?? lastPool;
    const segments = readSegments(job.storage, manifest.segments, {
      signal: job.signal,
      pool,
      // A storage that reads in place (a local folder) reads one segment ahead into the pool; remote
      // downloads are kept `queueSize` at once, as a backup keeps its uploads.
      ahead: canReadInPlace(job.storage) ? 1 : job.queueSize ?? 2,
      onRead: (bytes) => {
        read += bytes;
        job.onProgress?.({
          files: total.files + last.files,
          bytes: total.bytes + last.bytes,
          level: manifest.level,
          read,
        });
      },
    });
    const decoded = openStream(segments, manifest, "data", key, {
      pool,
      readerGivesBack: run.givesBackOnWrite === true,
      skips: plan,
    });
    const flow = decoded.giveBack
      ? pipeGivingBack(decoded.stream, run.writable, decoded.giveBack, job.signal)
      : decoded.stream.pipeTo(run.writable, { signal: job.signal });
    const [flowResult, doneResult] = await Promise.allSettled([flow, run.done]);
    if (flowResult.status === "rejected" || doneResult.status === "rejected") {
      if (job.signal?.aborted) throw new AbortedError("Restore interrupted");
      const reason = flowResult.status === "rejected"
        ? flowResult.reason
        : (doneResult as PromiseRejectedResult).reason;
      if (reason instanceof FrostError) throw reason;
      throw new FrostError(
        `Cannot restore backup "${manifest.id}" (level ${manifest.level}): ${messageOf(reason)}`,
        { cause: reason },
      );
    }
    const stats = doneResult.value;
    total.files += stats.files;
    total.bytes += stats.bytes;
    total.deleted += stats.deleted;
    if (stats.skipped) total.skipped = (total.skipped ?? 0) + stats.skipped;
  }
  return total;
}

/**
 * For each member of the chain, the files whose data it need not write (`RestoreOptions.skipData`): those
 * its own state lists as stored whole that a later member's state lists too; that member writes them
 * whole again. Read from the states (segments checked as always) before anything is written. A member whose
 * state says nothing (an older state format, an engine without `storedWhole`, no state key, a state that
 * cannot be read) skips nothing and makes nothing skipped.
 */
async function supersededFiles(job: RestoreJob): Promise<(ReadonlySet<string> | undefined)[]> {
  const chain = job.chain;
  const skips: (ReadonlySet<string> | undefined)[] = chain.map(() => undefined);
  if (chain.length < 2) return skips;
  const lists: (ReadonlySet<string> | undefined)[] = [];
  for (const m of chain) lists.push(await storedWhole(job, m));
  const later = new Set<string>();
  for (let j = chain.length - 1; j >= 0; j--) {
    const own = lists[j];
    if (!own) continue;
    const skip = new Set<string>();
    for (const p of own) if (later.has(p)) skip.add(p);
    if (skip.size > 0) skips[j] = skip;
    for (const p of own) later.add(p);
  }
  return skips;
}

/** What a chain member's state says its stream stores whole (`Engine.storedWhole`), if it says. */
async function storedWhole(job: RestoreJob, m: Manifest): Promise<ReadonlySet<string> | undefined> {
  const reader = job.engines(m.engine).storedWhole?.();
  const key = m.encryption ? job.stateKeys?.get(m.id) : null;
  if (!reader || key === undefined || m.state.length === 0) return undefined;
  try {
    await readStateChunks(job.storage, m, key, (chunk) => reader.push(chunk), job.signal);
    return reader.end();
  } catch {
    if (job.signal?.aborted) throw new AbortedError("Restore interrupted");
    // Only an optimisation: without the list, this member's files are all written.
    return undefined;
  }
}
