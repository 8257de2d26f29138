/**
 * `frost backup SOURCE --name NAME`: one backup, at the level the level options choose.
 * @module
 */
import fs from "node:fs";
import {
  absolute,
  type Command,
  hostnameOption,
  intOption,
  KEY_OPTIONS,
  keyOptions,
  loadHistory,
  nameOption,
  numberOption,
  openStorages,
  parse,
  ProgressLine,
  STORAGE_HELP,
  STORAGE_OPTIONS,
} from "../cli.ts";
import { ExitCode, FrostError, UsageError } from "../errors.ts";
import { parseCompression } from "../compression.ts";
import { engineForOption } from "../engines/registry.ts";
import { type Manifest, seriesName, toRecord } from "../manifest.ts";
import { chooseParent, type LevelPolicy, newBackupId, validatePolicy } from "../levels.ts";
import { formatBytes, parseSize } from "../units.ts";
import { runBackup } from "../pipeline.ts";
import { cacheDir, kdfOf, newBackupKeys, stateKeyOf } from "../backup_keys.ts";
import { VERSION } from "../version.ts";
import type { Warning } from "../engines/engine.ts";

const USAGE = `Usage: frost backup SOURCE --name NAME [options]

Backs up SOURCE (a directory, or one file) as <hostname>_<name> on the storage.

Options:
  --name NAME                 backup name (required)
  --max-level N               levels 0..N, then a new chain
  --always-level N            levels 0..N, then every backup is level N against level N-1
  --restart-always-level D    new chain when the chain's level 0 is older than D days
  --incremental               unlimited levels, each one above the last
  --engine NAME               tar (default) or rsync (block deltas for large files that change a little)
  --compression KIND          zstd (default), gzip, none
  --segment-size SIZE         bytes per stored object (default 32MiB; K, M, G suffixes)
  --queue-size N              segments buffered for upload (default 2)
  --exclude GLOB              leave out matching paths (repeatable; no "/" = any basename)
  --cross-file-systems        descend into other file systems (default: stay on the source's)
  --encrypt-pass-file FILE    encrypt with the passphrase on the file's first line (or set FROST_PASSPHRASE)
  --encrypt-recipient-file F  encrypt to a public recipient (frost key generate): this host cannot read it
  --encrypt-identity-file F   the identity, to read the parent's state when the host key is not available
  --json                      print a one-object summary on stdout
  -h, --help                  this help

${STORAGE_HELP}`;

/** The backup command. */
export const backupCommand: Command = {
  summary: "back up a directory or file",
  usage: USAGE,
  async run(ctx) {
    const { values, positionals } = parse(ctx.args, {
      ...STORAGE_OPTIONS,
      "max-level": { type: "string" },
      "always-level": { type: "string" },
      "restart-always-level": { type: "string" },
      incremental: { type: "boolean" },
      engine: { type: "string", default: "tar" },
      compression: { type: "string", default: "zstd" },
      "segment-size": { type: "string", default: "32MiB" },
      "queue-size": { type: "string", default: "2" },
      exclude: { type: "string", multiple: true },
      "cross-file-systems": { type: "boolean" },
      ...KEY_OPTIONS,
    }, true);
    if (values.help) {
      ctx.stdout(USAGE);
      return ExitCode.ok;
    }
    if (positionals.length !== 1) throw new UsageError("frost backup needs exactly one SOURCE path");
    const name = nameOption(values.name, "backup");
    const hostname = hostnameOption(values.hostname);
    const policy: LevelPolicy = {
      maxLevel: intOption(values["max-level"], "--max-level"),
      alwaysLevel: intOption(values["always-level"], "--always-level"),
      restartAlwaysLevelDays: numberOption(values["restart-always-level"], "--restart-always-level"),
      incremental: values.incremental,
    };
    validatePolicy(policy);
    const engine = engineForOption(values.engine);
    const compression = parseCompression(values.compression);
    const segmentSize = parseSize(values["segment-size"], "--segment-size");
    if (segmentSize < 4096) {
      throw new UsageError(`Invalid --segment-size "${values["segment-size"]}": at least 4K`);
    }
    const queueSize = intOption(values["queue-size"], "--queue-size", 1)!;
    const source = absolute(positionals[0]!);
    checkSource(source);
    const keyOpts = await keyOptions(values);
    if (keyOpts.passphrase !== undefined && keyOpts.recipient !== undefined) {
      throw new UsageError(
        "Choose one of --encrypt-pass-file (or FROST_PASSPHRASE) and --encrypt-recipient-file",
      );
    }

    const storage = await openStorages(values, { create: true, ctx });
    try {
      const series = seriesName(hostname, name);
      const history = await loadHistory(storage, series, ctx);
      const now = new Date();
      const byId = new Map(history.map((m) => [m.id, m]));
      const choice = chooseParent(history.map(toRecord), policy, now);
      let parent: Manifest | null = choice.parent ? byId.get(choice.parent.id)! : null;
      // Open the parent's state first: a wrong passphrase stops the run before anything is written.
      let parentStateKey = parent ? await stateKeyOf(parent.id, parent.encryption, keyOpts) : null;
      if (parentStateKey === "unavailable") {
        ctx.stderr(
          `frost: warning: this host cannot read the state of ${series} ${parent!.id} (no host key in ` +
            `${cacheDir()}, or another host made it): starting a new chain at level 0`,
        );
        parent = null;
        parentStateKey = null;
      }
      const level = parent ? choice.level : 0;
      const latestKdf = kdfOf(
        parent?.encryption ?? [...history].sort((a, b) => b.id.localeCompare(a.id))[0]?.encryption ?? null,
      );
      const keys = await newBackupKeys(keyOpts, latestKdf);
      const id = newBackupId(now, byId.keys());
      const warnings: Warning[] = [];
      const progress = new ProgressLine(ctx);
      const manifest = await runBackup({
        storage,
        engine,
        source,
        hostname,
        name,
        id,
        level,
        parent,
        parentStateKey,
        keys,
        compression,
        segmentSize,
        queueSize,
        exclude: values.exclude,
        crossFileSystems: values["cross-file-systems"],
        signal: ctx.signal,
        frostVersion: VERSION,
        onProgress: (p) =>
          progress.update(() =>
            `backup ${series} level ${level}: ${p.files} files, ${formatBytes(p.bytes)} read, ${
              formatBytes(p.stored)
            } stored`
          ),
        onWarning: (w) => {
          warnings.push(w);
          progress.clear();
          ctx.stderr(`frost: warning: ${w.path}: ${w.message}`);
        },
      });
      progress.clear();
      const t = manifest.totals;
      if (values.json) {
        ctx.stdout(JSON.stringify({
          id: manifest.id,
          name,
          hostname,
          level: manifest.level,
          parent: manifest.parent,
          chain: manifest.chain,
          files: t.files,
          bytesIn: t.bytesIn,
          bytesStored: t.bytesStored,
          seconds: t.seconds,
          warnings: t.warnings,
        }));
      } else {
        ctx.stdout(
          `Backed up ${source} as ${series} ${manifest.id}: level ${manifest.level}` +
            `${manifest.parent ? ` on ${manifest.parent}` : ""}, ${t.files} files, ` +
            `${formatBytes(t.bytesIn)} read, ${formatBytes(t.bytesStored)} stored in ${
              t.seconds.toFixed(1)
            } s` +
            (t.warnings ? `, ${t.warnings} warning${t.warnings === 1 ? "" : "s"}` : ""),
        );
      }
      return t.warnings > 0 ? ExitCode.warnings : ExitCode.ok;
    } finally {
      await storage.close();
    }
  },
};

function checkSource(source: string): void {
  let st: fs.Stats;
  try {
    st = fs.statSync(source);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === "ENOENT"
      ? "no such file or directory"
      : code === "EACCES"
      ? "permission denied"
      : code;
    throw new FrostError(`Cannot back up "${source}": ${why}`, { cause: err });
  }
  if (!st.isDirectory() && !st.isFile()) {
    throw new FrostError(`Cannot back up "${source}": not a directory or regular file`);
  }
}
