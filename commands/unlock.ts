/**
 * `frost unlock [--name NAME] [--force]`: removes stale series locks (series/lock.ts), or with `--force` every lock of
 * one series.
 * @module
 */
import {
  type Command,
  hostnameOption,
  nameOption,
  parseOrHelp,
  STORAGE_HELP,
  STORAGE_OPTIONS,
  withStorages,
} from "./cli.ts";
import { ExitCode, UsageError } from "../base/errors.ts";
import { seriesName } from "../series/manifest.ts";
import {
  describeLock,
  type FoundLock,
  locksPrefix,
  lockState,
  readLocks,
  STALE_AFTER_MS,
  staleReason,
} from "../series/lock.ts";

const USAGE = `Usage: frost unlock [--name NAME] [--hostname HOST] [--force] [options]

backup and remove hold a lock on <hostname>_<name> while they run, so that they never interleave. A lock left
behind by a run that was killed blocks the next backup or remove of that name. unlock removes stale locks:
those of a process of this machine that is gone (backup and remove remove these themselves, with a warning),
and those not refreshed for ${STALE_AFTER_MS / 60_000} minutes (a running frost refreshes its lock every 5).

Options:
  --name NAME            only the locks of this backup name (of --hostname, default this machine);
                         without --name: the stale locks of every name on the storage (of --hostname's only,
                         with --hostname)
  --force                with --name: remove every lock of the name, also of a run that may still be going
                         (on another machine): only when you know it has ended
  --json                 print what was removed and kept as JSON
  -h, --help             this help

${STORAGE_HELP}`;

/** The unlock command. */
export const unlockCommand: Command = {
  summary: "remove stale locks left by interrupted runs",
  usage: USAGE,
  async run(ctx) {
    const parsed = parseOrHelp(ctx, USAGE, { ...STORAGE_OPTIONS, force: { type: "boolean" } }, true);
    if (!parsed) return ExitCode.ok;
    const { values, positionals } = parsed;
    if (positionals.length > 0) throw new UsageError(`Unexpected argument "${positionals[0]}"`);
    if (values.force && values.name === undefined) {
      throw new UsageError("--force needs --name: it removes every lock of one backup name");
    }
    const hostname = hostnameOption(values.hostname);
    const series = values.name === undefined
      ? undefined
      : seriesName(hostname, nameOption(values.name, "unlock"));
    // Without --name, with --hostname: that host's series only (the keys start with "<hostname>_").
    const hostPrefix = values.name === undefined && values.hostname !== undefined ? `${hostname}_` : "";
    return await withStorages(values, { create: false, ctx }, async (storage) => {
      const where = series
        ? `"${series}"`
        : hostPrefix
        ? `${hostname}'s names in ${storage.url}`
        : storage.url;
      const locks = (await readLocks(storage, series ? locksPrefix(series) : "", ctx.signal))
        .filter((l) => l.key.startsWith(hostPrefix));
      const now = new Date();
      const removed: { lock: FoundLock; why: string }[] = [];
      const kept: FoundLock[] = [];
      for (const lock of locks) {
        const state = lockState(lock, { now });
        if (state === "active" && !values.force) {
          kept.push(lock);
          continue;
        }
        await storage.delete(lock.key, { signal: ctx.signal });
        removed.push({ lock, why: state === "active" ? "--force" : staleReason(lock, state, now) });
      }
      const seriesOf = (l: FoundLock) => l.key.slice(0, l.key.indexOf("/"));
      if (values.json) {
        const show = (l: FoundLock) => ({ key: l.key, series: seriesOf(l), ...l.info });
        ctx.stdout(JSON.stringify({
          removed: removed.map((r) => ({ ...show(r.lock), reason: r.why })),
          kept: kept.map(show),
        }));
        return ExitCode.ok;
      }
      if (locks.length === 0) {
        ctx.stdout(`No locks on ${where}`);
        return ExitCode.ok;
      }
      for (const r of removed) {
        ctx.stdout(`Removed the lock of ${seriesOf(r.lock)} held by ${describeLock(r.lock)}: ${r.why}`);
      }
      for (const l of kept) {
        ctx.stdout(
          `Kept the lock of ${seriesOf(l)} held by ${describeLock(l)}: it may still be running` +
            (series ? " (--force removes it)" : ""),
        );
      }
      ctx.stdout(
        `Removed ${removed.length} lock${removed.length === 1 ? "" : "s"}, kept ${kept.length} on ${where}`,
      );
      return ExitCode.ok;
    });
  },
};
