/**
 * `frost restore --name NAME --to DIR [--date T]`: applies the chain of the newest backup at or before T.
 * @module
 */
import fs from "node:fs";
import {
  absolute,
  type Command,
  hostnameOption,
  KEY_OPTIONS,
  keyOptions,
  loadHistory,
  nameOption,
  openStorages,
  parse,
  ProgressLine,
  STORAGE_HELP,
  STORAGE_OPTIONS,
} from "../cli.ts";
import { ExitCode, FrostError, UsageError } from "../errors.ts";
import { manifestChain, seriesName } from "../manifest.ts";
import { formatBytes, parseDate } from "../units.ts";
import { runRestore } from "../pipeline.ts";
import { engineForBackup } from "../engines/registry.ts";
import { dataKeyOf } from "../backup_keys.ts";
import type { DataKey } from "../encryption.ts";

const USAGE = `Usage: frost restore --name NAME --to DIR [options]

Restores the newest backup of <hostname>_<name> (or the newest at or before --date) into DIR,
applying its chain from level 0.

Options:
  --name NAME            backup name (required)
  --to DIR               target directory; created if missing, must be empty unless --overwrite
  --date T               ISO 8601 date/time (local time unless a zone is given), e.g. 2026-11-20T10:00
  --overwrite            restore into a non-empty DIR, replacing what the backup holds
  --encrypt-pass-file F  the passphrase of encrypted backups (first line of F; or set FROST_PASSPHRASE)
  --encrypt-identity-file F  the identity of backups encrypted to a recipient (frost key generate)
  --json                 print a one-object summary on stdout
  -h, --help             this help

${STORAGE_HELP}`;

/** The restore command. */
export const restoreCommand: Command = {
  summary: "restore a backup into a directory",
  usage: USAGE,
  async run(ctx) {
    const { values, positionals } = parse(ctx.args, {
      ...STORAGE_OPTIONS,
      to: { type: "string" },
      date: { type: "string" },
      overwrite: { type: "boolean" },
      ...KEY_OPTIONS,
    }, true);
    if (values.help) {
      ctx.stdout(USAGE);
      return ExitCode.ok;
    }
    if (positionals.length > 0) throw new UsageError(`Unexpected argument "${positionals[0]}"`);
    const name = nameOption(values.name, "restore");
    const hostname = hostnameOption(values.hostname);
    if (values.to === undefined) throw new UsageError("frost restore needs --to DIR");
    const target = absolute(values.to);
    const at = values.date === undefined ? undefined : parseDate(values.date);

    const storage = await openStorages(values, { create: false, ctx });
    try {
      const series = seriesName(hostname, name);
      const history = await loadHistory(storage, series, ctx);
      if (history.length === 0) throw new FrostError(`No backup of "${series}" in ${storage.url}`);
      const chain = manifestChain(history, at, series);
      // Every key is opened before the target is touched: a wrong passphrase writes nothing.
      const keyOpts = await keyOptions(values);
      const keys = new Map<string, DataKey>();
      for (const m of chain) {
        const key = await dataKeyOf(m.id, m.encryption, keyOpts);
        if (key) keys.set(m.id, key);
      }
      prepareTarget(target, values.overwrite ?? false);

      const progress = new ProgressLine(ctx);
      const total = chain.reduce((n, m) => n + m.totals.bytesStored, 0);
      const started = performance.now();
      let warnings = 0;
      const stats = await runRestore({
        storage,
        engines: engineForBackup,
        chain,
        keys,
        target,
        signal: ctx.signal,
        onProgress: (p) =>
          progress.update(() => {
            const seconds = (performance.now() - started) / 1000;
            const rate = p.read / Math.max(seconds, 0.001);
            const eta = rate > 0 ? Math.max(0, (total - p.read) / rate) : 0;
            return `restore ${series} level ${p.level}: ${p.files} files, ${formatBytes(p.bytes)} written, ` +
              `${formatBytes(rate)}/s, ETA ${Math.ceil(eta)} s`;
          }),
        onWarning: (w) => {
          warnings++;
          progress.clear();
          ctx.stderr(`frost: warning: ${w.path}: ${w.message}`);
        },
      });
      progress.clear();
      const newest = chain[chain.length - 1]!;
      const seconds = Math.round(performance.now() - started) / 1000;
      if (values.json) {
        ctx.stdout(JSON.stringify({
          id: newest.id,
          level: newest.level,
          chain: chain.map((m) => m.id),
          target,
          files: stats.files,
          bytes: stats.bytes,
          deleted: stats.deleted,
          seconds,
          warnings,
        }));
      } else {
        ctx.stdout(
          `Restored ${series} ${newest.id} (level ${newest.level}, ${chain.length} backup${
            chain.length === 1 ? "" : "s"
          } applied) into ${target}: ${stats.files} entries, ${formatBytes(stats.bytes)} in ${
            seconds.toFixed(1)
          } s`,
        );
      }
      return warnings > 0 ? ExitCode.warnings : ExitCode.ok;
    } finally {
      await storage.close();
    }
  },
};

/** Creates the restore target, or checks that it is a directory and empty unless `overwrite`. */
export function prepareTarget(target: string, overwrite: boolean): void {
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(target);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") {
      throw new FrostError(`Cannot restore into "${target}": ${(err as Error).message}`, { cause: err });
    }
  }
  if (!st) {
    try {
      fs.mkdirSync(target, { recursive: true });
    } catch (err) {
      throw new FrostError(`Cannot create restore target "${target}": ${(err as Error).message}`, {
        cause: err,
      });
    }
    return;
  }
  if (!st.isDirectory()) throw new FrostError(`Cannot restore into "${target}": not a directory`);
  if (!overwrite && fs.readdirSync(target).length > 0) {
    throw new FrostError(
      `Cannot restore into "${target}": it is not empty (use --overwrite to restore into it)`,
    );
  }
}
