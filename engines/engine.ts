/**
 * The Engine contract. An engine turns a source tree into one byte stream per backup (plus an engine
 * state that the next level compares against) and applies such streams to a target directory.
 * Engines never import `storage/`: the pipeline joins the two.
 * @module
 */
import type { GiveBack } from "../base/bytes.ts";

/** Running counts an engine reports while it works. */
export interface Progress {
  /** Entries (files, dirs, links, …) written to or applied from the stream so far. */
  files: number;
  /** File content bytes read (backup) or written (restore) so far. */
  bytes: number;
}

/** A non-fatal problem (file vanished, changed while read, unreadable). The run goes on. */
export interface Warning {
  path: string;
  message: string;
  /** Information the user asked for (e.g. a device skipped under `devices: false`), not a problem. */
  notice?: boolean;
}

/** Options of `Engine.backup()`. */
export interface BackupOptions {
  /**
   * The parent backup's engine state, decoded (decompressed, decrypted) — absent for level 0.
   * The engine reads it as it walks, so memory stays flat in the number of files.
   */
  previous?: ReadableStream<Uint8Array>;
  /** Glob patterns to leave out. Default: none. */
  exclude?: string[];
  /** Descend into other file systems. Default: false (stay on the source's file system). */
  crossFileSystems?: boolean;
  /** Store extended attributes, ACLs and capabilities (every namespace the user can read). Default: true. */
  xattrs?: boolean;
  /** Aborts the walk; the stream then errors with an AbortedError. */
  signal?: AbortSignal;
  /** Called now and then with running totals. */
  onProgress?: (progress: Progress) => void;
  /** Called for every non-fatal problem. */
  onWarning?: (warning: Warning) => void;
  /** When given, the engine adds the time it spends in each part of its work (ms) and the bytes read. */
  times?: EngineTimes;
}

/** Where an engine's time goes (`BackupOptions.stats`); every field is a running sum. */
export interface EngineTimes {
  /** Listing directories and stat()ing entries. */
  walkMs: number;
  /** Opening and reading files. */
  readMs: number;
  /** File bytes read. */
  readBytes: number;
  /** All the time spent producing data, walk and read included (the rest is headers, state, bookkeeping). */
  busyMs: number;
  /** Time between producing one chunk and being asked for the next: waiting for the reader (backpressure). */
  waitMs: number;
}

/** Totals of a finished backup stream. */
export interface BackupStats {
  /** Entries written to the archive. */
  files: number;
  /** File content bytes read. */
  bytes: number;
  /** Entries looked at (unchanged ones included). */
  scanned: number;
  /** Number of warnings. */
  warnings: number;
}

/** What `Engine.backup()` returns. Both streams must be read concurrently. */
export interface BackupRun {
  /** The backup's data (e.g. a GNU incremental tar archive), uncompressed. */
  stream: ReadableStream<Uint8Array>;
  /** This backup's engine state, produced as the walk goes on; closes after `stream` ends. */
  state: ReadableStream<Uint8Array>;
  /** Resolves with totals once both streams have ended; rejects if the backup failed. */
  done: Promise<BackupStats>;
  /**
   * Optional: where the reader of `stream` gives each chunk back once done with it (see `GiveBack`), so that
   * the engine can fill its buffer again instead of allocating a new one.
   */
  giveBack?: GiveBack;
}

/**
 * Where a path stands in a partial restore: "in" (restored, with everything below it), "parent" (a
 * directory that may lead to selected entries: made only when one of them needs it, deletions inside
 * it applied only to selected entries) or "out" (left alone).
 */
export type Selection = "in" | "parent" | "out";

/** Options of `Engine.restore()`. */
export interface RestoreOptions {
  /** Restore owners (uid/gid). Default: only when running as root. */
  owners?: boolean;
  /** Restore extended attributes, ACLs and capabilities stored with the entries. Default: true. */
  xattrs?: boolean;
  /**
   * Kinds of extended attributes the kernel refused so far (filled by the restore; share one set between
   * the levels of a restore so that each kind is reported once). Default: a new set per level.
   */
  xattrsRefused?: Set<string>;
  /** Make device nodes. Default: true (as GNU tar); false skips them with a notice. */
  devices?: boolean;
  /**
   * The target held nothing when this stream began (a new or empty folder, first member of the chain):
   * entries at its top are made at once, without looking for something to replace first (O_EXCL still
   * guards against what appears meanwhile). Default: false.
   */
  emptyTarget?: boolean;
  /**
   * Partial restore: which entries (paths relative to the backup's root, as `frost ls` shows them) to
   * restore. Default: all.
   */
  select?: (path: string, isDir: boolean) => Selection;
  signal?: AbortSignal;
  onProgress?: (progress: Progress) => void;
  onWarning?: (warning: Warning) => void;
  /**
   * What one restore run hands from each member of its chain to the next (created empty by the caller,
   * once per run, and given to every member's restore, oldest first). An engine keeps there what the next
   * level needs to tell the chain's own deletions from entries the backup never held (the tar engine: the
   * previous level's directory listings). Without it every member is applied as the first of its chain:
   * nothing is deleted.
   */
  memo?: Map<string, unknown>;
  /**
   * Paths (as the engine state writes them) of regular files whose data this member must not write: the
   * engine's `storedWhole` lists them for this member and for a later member of the same chain, which
   * writes them whole again. Each is made empty here (owner, mode and times as stored) and its data is read
   * past, unwritten. Default: none.
   */
  skipData?: ReadonlySet<string>;
  /**
   * Told each range of the stream (offsets from its start, in stream order) that the restore will read past
   * without using it (the data of a member it skips, e.g. for `skipData`). Once told, the writer may write
   * in place of runs of those bytes marker chunks that stand for them (base/skip.ts `skippedChunk`); engines
   * that never tell it never get one. Default: none.
   */
  onReadPast?: (offset: number, length: number) => void;
  /**
   * The writer never wants a chunk it has written into the restore's stream given back: the restore may keep
   * chunks after their `write()` resolved (the tar engine then writes large file data in the background).
   */
  noGiveBack?: boolean;
}

/** Totals of one applied stream. */
export interface RestoreStats {
  files: number;
  bytes: number;
  /** Entries removed because a later level recorded their deletion. */
  deleted: number;
  /** File data bytes not written because a later level stores the file whole (`RestoreOptions.skipData`). */
  skipped?: number;
}

/** What `Engine.restore()` returns: write one backup's stream into `writable`, then await `done`. */
export interface RestoreRun {
  writable: WritableStream<Uint8Array>;
  /**
   * True when `writable` gives each chunk back as its `write()` resolves (it keeps no reference to it), so
   * that the writer may fill the chunk's buffer again.
   */
  givesBackOnWrite?: boolean;
  /** Resolves once the stream is fully applied (directory times fixed up), rejects on any error. */
  done: Promise<RestoreStats>;
}

/** One entry of a backup point, as listed from its engine state. */
export interface StateEntry {
  /** Path relative to the backup's root ("" for the root itself). */
  path: string;
  type: "file" | "dir" | "symlink" | "fifo" | "char" | "block";
  /** Content bytes (files), 0 otherwise. */
  size: number;
}

/** A backup engine. */
export interface Engine {
  /** Recorded in manifests; selects the engine on restore. */
  readonly name: string;
  /** Backs up `source` (a directory or a single file). */
  backup(source: string, options?: BackupOptions): BackupRun;
  /**
   * Applies one backup's stream to `target` (an existing directory). Called once per chain member,
   * oldest first. Never writes outside `target`.
   */
  restore(target: string, options?: RestoreOptions): RestoreRun;
  /**
   * The entries of the tree a backup point restores to, read from that backup's engine state (decoded):
   * what a restore of it would write, without reading its data.
   */
  entries(state: ReadableStream<Uint8Array>): AsyncIterable<StateEntry>;
  /**
   * Optional: counts what `entries` would list, from the same decoded state fed chunk by chunk, without
   * making an object per entry (a restore into a new or empty target needs only the count).
   */
  countEntries?(): EntryCounter;
  /**
   * Optional: reads, from a backup's decoded engine state fed chunk by chunk, the paths of the regular files
   * its stream stores whole (as data, not as links) and that a restore may leave unwritten at the earlier
   * members of its chain (see `RestoreOptions.skipData`). Without it, or when the state does not say
   * (`end()` gives undefined), nothing is skipped.
   */
  storedWhole?(): StoredWholeReader;
}

/** Reads what a backup's state says its stream stores whole (`Engine.storedWhole`). */
export interface StoredWholeReader {
  /** Takes the next bytes of the state; keeps no reference to `chunk`. */
  push(chunk: Uint8Array): void;
  /** The paths; undefined when the state does not list them; throws when the state is not the engine's. */
  end(): ReadonlySet<string> | undefined;
}

/** Counts a backup point's entries from its decoded engine state (`Engine.countEntries`). */
export interface EntryCounter {
  /** Takes the next bytes of the state; keeps no reference to `chunk`. */
  push(chunk: Uint8Array): void;
  /** The entries, and those but the root (""); throws when the state is not the engine's. */
  end(): { count: number; nonRoot: number };
}
