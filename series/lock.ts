/**
 * Series locks: `backup` and `remove` of one `<hostname>_<name>` on one storage never run at the same time.
 *
 * Storages are plain object stores without compare-and-swap, so a lock is an object of its own,
 * `<series>/locks/<lockId>.json`, and taking it follows restic's protocol: write the own lock object, then
 * list the series' locks. No other lock → taken. Every lock of a series conflicts with every other (a backup
 * with a backup too: both would choose the same parent and id). When two runs wrote their locks at the same
 * moment and each sees the other, the one with the larger lock id gives up at once; the smaller one waits a
 * moment and lists again, and takes the lock only if the other lock is gone by then. So of two runs at most one
 * goes ahead, whatever the timing; in the worst case (a very slow storage) both give up.
 *
 * A held lock is rewritten (`refreshed`) every few minutes. A lock is stale when its process is gone (same host,
 * pid not alive) or it was not refreshed for {@link STALE_AFTER_MS}. Only the first kind is broken
 * automatically (with a notice); any other lock in the way fails the run with one line naming its holder and
 * the `frost unlock` command that removes it. With several storages the lock goes through the composed storage:
 * its put lands on every storage and its list is the union, so runs sharing any one storage see each other.
 * @module
 */
import os from "node:os";
import { AbortedError, FrostError, messageOf } from "../base/errors.ts";
import { getBytes, NotFoundError, type Storage } from "../storage/storage.ts";
import { defaultHostname } from "../base/host.ts";
import { sleep } from "../base/sleep.ts";
import { seriesName } from "./manifest.ts";
import { VERSION } from "../base/version.ts";

/**
 * How lock objects are put: `ephemeral`, since a lock matters only while its process runs. One lost in a
 * crash frees the series as its holder's death does; one that survives is whole (its bytes are flushed before
 * its name appears) and is broken as dead. So a local storage fsyncs the lock file but not its folders.
 */
const LOCK_PUT = { ephemeral: true } as const;

/** How many times a run whose only conflicts are newer locks looks at the locks before it gives up. */
const TIE_LOOKS = 4;

/** What a lock protects against. Every kind conflicts with every kind; the kind is for people. */
export type LockKind = "backup" | "remove";

/** The lock object (docs/FORMAT.md, "Locks"). */
export interface LockInfo {
  format: "frost-lock";
  version: 1;
  /** `YYYYMMDDTHHMMSS.mmmZ-<16 hex>`: creation time, then random. Also the object's name. */
  id: string;
  series: string;
  kind: LockKind;
  /** The machine's own hostname (`os.hostname()`, not `--hostname`). */
  host: string;
  pid: number;
  user: string;
  /** ISO 8601 UTC. */
  created: string;
  /** ISO 8601 UTC; rewritten every {@link REFRESH_MS} while the lock is held. */
  refreshed: string;
  /** The frost version that wrote it. */
  frost: string;
}

/** A lock object found on a storage; `info` is null when it cannot be read as a lock. */
export interface FoundLock {
  key: string;
  info: LockInfo | null;
  /** The object's modification time, where the storage knows it. */
  modified?: Date;
}

/** `active` (or not known to be stale), `dead` (its process on this host is gone), `old` (not refreshed). */
export type LockState = "active" | "dead" | "old";

/** How often a held lock is rewritten. */
export const REFRESH_MS = 5 * 60_000;
/** A lock not refreshed for this long is stale (6 missed refreshes). */
export const STALE_AFTER_MS = 30 * 60_000;

/** Tuning knobs, for tests. */
export interface LockTuning {
  refreshMs?: number;
  staleMs?: number;
  /** The pause before each further look when two runs took their locks at the same moment (plus up to as much again at random). */
  tieWaitMs?: number;
  now?: () => Date;
}

/** What a command hands to {@link acquireLock}: CommandContext fits. */
export interface LockContext {
  signal?: AbortSignal;
  stderr: (line: string) => void;
}

/** Key prefix of a series' locks. */
export function locksPrefix(series: string): string {
  return `${series}/locks/`;
}

const LOCK_KEY = /^([^/]+)\/locks\/([^/]+)\.json$/;

/** True for the key of a lock object (so that listings can tell them apart). */
export function isLockKey(key: string): boolean {
  return LOCK_KEY.test(key);
}

/** This machine's name as locks record it. */
export function thisHost(): string {
  return os.hostname();
}

function thisUser(): string {
  try {
    const name = os.userInfo().username;
    if (name && name !== "unknown") return name;
  } catch {
    // no passwd entry: fall through
  }
  return process.env.USER ?? process.env.LOGNAME ?? "";
}

/** True unless `pid` certainly does not exist on this machine. */
export function processAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== "ESRCH"; // EPERM: alive, someone else's
  }
}

function compactTime(d: Date): string {
  return d.toISOString().replace(/[-:]/g, "");
}

function newLockId(now: Date): string {
  const random = crypto.getRandomValues(new Uint8Array(8));
  return `${compactTime(now)}-${Array.from(random, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

function encodeLock(info: LockInfo): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(info, null, 2) + "\n");
}

function decodeLock(bytes: Uint8Array): LockInfo | null {
  try {
    const v = JSON.parse(new TextDecoder().decode(bytes)) as Partial<LockInfo> | null;
    if (
      v && typeof v === "object" && v.format === "frost-lock" && typeof v.id === "string" &&
      typeof v.kind === "string" && typeof v.host === "string" && typeof v.pid === "number" &&
      typeof v.created === "string" && !Number.isNaN(Date.parse(v.created)) &&
      typeof v.refreshed === "string" && !Number.isNaN(Date.parse(v.refreshed))
    ) {
      return v as LockInfo;
    }
  } catch {
    // not JSON
  }
  return null;
}

/** Reads the locks under `prefix` (one series' `locks/`, or `""` for the whole storage). */
export async function readLocks(
  storage: Storage,
  prefix: string,
  signal?: AbortSignal,
): Promise<FoundLock[]> {
  const found: { key: string; modified?: Date }[] = [];
  for await (const info of storage.list(prefix, { signal })) {
    if (isLockKey(info.key)) found.push({ key: info.key, modified: info.modified });
  }
  const out: FoundLock[] = [];
  await Promise.all(found.map(async (f) => {
    try {
      // No signal here: lock objects are tiny, and an abort in the middle of a local read fails badly in Deno.
      out.push({ ...f, info: decodeLock(await getBytes(storage, f.key)) });
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err; // released meanwhile: not a lock any more
    }
  }));
  return out.sort((a, b) => a.key.localeCompare(b.key));
}

/** Whether a lock is held by a live run as far as this machine can tell. */
export function lockState(lock: FoundLock, options: { now?: Date; staleMs?: number } = {}): LockState {
  const now = (options.now ?? new Date()).getTime();
  const staleMs = options.staleMs ?? STALE_AFTER_MS;
  if (!lock.info) return lock.modified && now - lock.modified.getTime() > staleMs ? "old" : "active";
  if (lock.info.host === thisHost() && !processAlive(lock.info.pid)) return "dead";
  return now - Date.parse(lock.info.refreshed) > staleMs ? "old" : "active";
}

function ago(ms: number): string {
  const minutes = Math.round(ms / 60_000);
  if (minutes < 120) return `${minutes} min`;
  const hours = Math.round(minutes / 60);
  return hours < 48 ? `${hours} h` : `${Math.round(hours / 24)} days`;
}

function shortIso(iso: string): string {
  return iso.replace(/\.\d+Z$/, "Z");
}

/** `remove (pid 1234 on web1, since 2026-11-27T10:15:00Z)`, or a description of an unreadable object. */
export function describeLock(lock: FoundLock): string {
  if (!lock.info) {
    return `an unreadable lock object "${lock.key}"${
      lock.modified ? ` (written ${shortIso(lock.modified.toISOString())})` : ""
    }`;
  }
  const i = lock.info;
  return `${i.kind} (pid ${i.pid}${i.user ? ` of ${i.user}` : ""} on ${i.host}, since ${
    shortIso(i.created)
  })`;
}

/** Why a stale lock is stale, for messages. */
export function staleReason(lock: FoundLock, state: LockState, now = new Date()): string {
  if (state === "dead") return "that process is gone";
  const at = lock.info ? Date.parse(lock.info.refreshed) : lock.modified?.getTime() ?? now.getTime();
  return `not refreshed for ${ago(now.getTime() - at)}`;
}

/** A held lock: refreshed in the background until `release()`. */
export class Lock {
  readonly key: string;
  /** Aborted when the caller's signal is, or when the lock object vanished (someone ran `unlock --force`). */
  readonly signal: AbortSignal;
  readonly #storage: Storage;
  readonly #lost = new AbortController();
  readonly #refreshMs: number;
  readonly #now: () => Date;
  readonly #warn: (line: string) => void;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #refreshing: Promise<void> = Promise.resolve();
  #released = false;
  #info: LockInfo;

  constructor(
    storage: Storage,
    key: string,
    info: LockInfo,
    options: { signal?: AbortSignal; refreshMs: number; now: () => Date; warn: (line: string) => void },
  ) {
    this.#storage = storage;
    this.key = key;
    this.#info = info;
    this.#refreshMs = options.refreshMs;
    this.#now = options.now;
    this.#warn = options.warn;
    this.signal = options.signal ? AbortSignal.any([options.signal, this.#lost.signal]) : this.#lost.signal;
    this.#schedule();
  }

  /** The lock object as last written. */
  get info(): LockInfo {
    return this.#info;
  }

  #schedule(): void {
    this.#timer = setTimeout(() => {
      this.#refreshing = this.#refresh().finally(() => {
        if (!this.#released && !this.#lost.signal.aborted) this.#schedule();
      });
    }, this.#refreshMs);
    // A forgotten lock must not keep the process alive.
    (this.#timer as { unref?: () => void }).unref?.();
  }

  async #refresh(): Promise<void> {
    try {
      await this.#storage.stat(this.key);
    } catch (err) {
      if (err instanceof NotFoundError) {
        this.#lost.abort(
          new FrostError(
            `The lock of "${this.info.series}" was removed by someone else (frost unlock --force?) while this ` +
              `${this.info.kind} ran; it stopped`,
          ),
        );
        return;
      }
      this.#warn(`frost: warning: cannot check the lock of "${this.info.series}": ${messageOf(err)}`);
      return;
    }
    const info = { ...this.info, refreshed: this.#now().toISOString() };
    try {
      await this.#storage.put(this.key, encodeLock(info), LOCK_PUT);
      this.#info = info;
    } catch (err) {
      this.#warn(`frost: warning: cannot refresh the lock of "${this.info.series}": ${messageOf(err)}`);
    }
  }

  /** Stops refreshing and deletes the lock object. Throws the reason when the lock was lost while held. */
  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    clearTimeout(this.#timer);
    await this.#refreshing;
    if (this.#lost.signal.aborted) {
      await this.#storage.delete(this.key).catch(() => {}); // should a refresh in flight have written it back
      throw this.#lost.signal.reason;
    }
    try {
      await this.#storage.delete(this.key);
    } catch (err) {
      this.#warn(
        `frost: warning: cannot remove the lock "${this.key}" (${
          messageOf(err)
        }); "frost unlock --force" will`,
      );
    }
  }
}

async function exists(storage: Storage, key: string, signal?: AbortSignal): Promise<boolean> {
  try {
    await storage.stat(key, { signal });
    return true;
  } catch (err) {
    if (err instanceof NotFoundError) return false;
    throw err;
  }
}

/** The `frost unlock` command to suggest: with `--force` for a lock not known to be stale. */
function unlockHint(hostname: string, name: string, force: boolean): string {
  const host = hostname === defaultHostname() ? "" : ` --hostname ${hostname}`;
  return `frost unlock --name ${name}${host}${force ? " --force" : ""}`;
}

/**
 * Takes the lock of series `<hostname>_<name>` on `storage`, or fails with a `FrostError` naming the holder.
 * Locks of dead processes of this host are removed on the way, with a notice on `ctx.stderr`.
 */
export async function acquireLock(
  storage: Storage,
  target: { hostname: string; name: string },
  kind: LockKind,
  ctx: LockContext,
  tuning: LockTuning = {},
): Promise<Lock> {
  const now = tuning.now ?? (() => new Date());
  const staleMs = tuning.staleMs ?? STALE_AFTER_MS;
  const tieWaitMs = tuning.tieWaitMs ?? 500;
  const series = seriesName(target.hostname, target.name);
  const signal = ctx.signal;
  signal?.throwIfAborted();
  const created = now();
  const id = newLockId(created);
  const key = `${locksPrefix(series)}${id}.json`;
  const info: LockInfo = {
    format: "frost-lock",
    version: 1,
    id,
    series,
    kind,
    host: thisHost(),
    pid: process.pid,
    user: thisUser(),
    created: created.toISOString(),
    refreshed: created.toISOString(),
    frost: VERSION,
  };
  try {
    await storage.put(key, encodeLock(info), { ...LOCK_PUT, signal });
    for (let look = 0;; look++) {
      const conflicts: FoundLock[] = [];
      for (const other of await readLocks(storage, locksPrefix(series), signal)) {
        if (other.key === key) continue;
        const state = lockState(other, { now: now(), staleMs });
        if (state === "dead") {
          // A run that gives up deletes its lock before it exits: a lock still there once its process has
          // ended was left behind.
          if (!(await exists(storage, other.key, signal))) continue;
          // A notice, not a warning: nothing is wrong any more once that lock is gone.
          ctx.stderr(
            `frost: removing the lock of "${series}" left by ${describeLock(other)}: ${
              staleReason(other, state)
            }`,
          );
          await storage.delete(other.key, { signal });
          continue;
        }
        conflicts.push(other);
      }
      if (conflicts.length === 0) break;
      // Only newer locks in the way: they may be runs that started with this one and will see this lock and
      // give up (a newer lock that sees an older one always does), though a busy machine or a slow storage
      // may take a while to delete theirs. Look again after a pause, up to TIE_LOOKS times; whatever is still
      // there then wins (a newer run that listed before this lock landed may hold the series). This run wins
      // only at a look that finds no lock but its own, so two runs never both win.
      if (look < TIE_LOOKS - 1 && conflicts.every((c) => c.key > key)) {
        await sleep(tieWaitMs * (1 + Math.random()), signal);
        continue;
      }
      const holder = conflicts[0]!;
      const state = lockState(holder, { now: now(), staleMs });
      const others = conflicts.length - 1;
      const more = others > 0 ? ` and ${others} other run${others === 1 ? "" : "s"}` : "";
      throw new FrostError(
        state === "old"
          ? `Backup "${series}" is locked by ${describeLock(holder)}${more}, ${
            staleReason(holder, state, now())
          }: it looks stale; run "${unlockHint(target.hostname, target.name, false)}" to remove it`
          : `Backup "${series}" is locked by ${describeLock(holder)}${more}; run "${
            unlockHint(target.hostname, target.name, true)
          }" if that process is gone`,
      );
    }
  } catch (err) {
    await storage.delete(key).catch(() => {});
    if (signal?.aborted && !(err instanceof FrostError)) throw new AbortedError("Interrupted");
    throw err;
  }
  return new Lock(storage, key, info, {
    signal,
    refreshMs: tuning.refreshMs ?? REFRESH_MS,
    now,
    warn: ctx.stderr,
  });
}
