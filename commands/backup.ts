/**
 * `frost backup SOURCE --name NAME`: one backup, at the level the level options choose.
 * @module
 */
import fs from "node:fs";
import {
  absolute,
  type Command,
  type CommandContext,
  hostnameOption,
  intOption,
  KEY_OPTIONS,
  keyOptions,
  loadHistory,
  nameOption,
  numberOption,
  onEveryStorage,
  parse,
  parseOrHelp,
  ProgressLine,
  STORAGE_HELP,
  STORAGE_OPTIONS,
  withStorages,
} from "./cli.ts";
import { ExitCode, FrostError, UsageError } from "../base/errors.ts";
import { type Compression, parseCompression } from "../codec/compression.ts";
import { engineForOption } from "../engines/registry.ts";
import { checkName, seriesName } from "../series/manifest.ts";
import { stdinEngine } from "../engines/stdin.ts";
import { producerStream } from "./stdin_command.ts";
import { METRICS_OPTION, metricsHelp } from "./metrics.ts";
import { describeHookEnd, runHook } from "./hooks.ts";
import { type LevelPolicy, validatePolicy } from "../series/levels.ts";
import { planBackup } from "../series/backup_plan.ts";
import { formatBytes, parseSize } from "../base/units.ts";
import {
  type BackupTimes,
  backupTimesJson,
  formatBackupTimes,
  newBackupTimes,
  runBackup,
} from "../pipeline/mod.ts";
import { VERSION } from "../base/version.ts";
import type { Engine } from "../engines/engine.ts";
import type { Manifest } from "../series/manifest.ts";
import type { KeyOptions } from "../series/keys.ts";
import { acquireLock, type Lock } from "../series/lock.ts";
import { globEscape, parseShownName, showName } from "../engines/mod.ts";
import { inside, localStoragePaths, realPath } from "./_local_storage.ts";
import { removeOrphansAtStart } from "../series/orphans.ts";

const USAGE = `Usage: frost backup SOURCE --name NAME [options]
       frost backup --stdin --name NAME [options]        (e.g. pg_dump db | frost backup --stdin --name db)

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
  --exclude GLOB              leave out matching paths (repeatable; no "/" = any basename; \\xHH: a byte)
  --cross-file-systems        descend into other file systems (default: stay on the source's)
  --no-xattrs                 leave out extended attributes, POSIX ACLs, capabilities and SELinux labels
                              (default: stored, every namespace this user can read)
  --stdin                     back up standard input (a dump piped in) instead of SOURCE: always a full
                              backup; restores to one file (named by --stdin-name, default NAME) or --stdout
  --stdin-command CMD         run CMD (sh -c) and back up its standard output as --stdin does; a CMD that
                              exits non-zero fails the backup (nothing committed), e.g. 'pg_dump app'
  --stdin-name FILE           the file name a --stdin backup restores to
  --pre-command CMD           run CMD (sh -c) before reading the source; if it fails, nothing is backed up
  --post-command CMD          run CMD after the backup, also when it failed ($FROST_BACKUP_STATUS is ok or
                              failed); a failing CMD makes the exit code 3. Both get $FROST_BACKUP_NAME,
                              $FROST_BACKUP_ID and $FROST_BACKUP_LEVEL
  --encrypt-pass-file FILE    encrypt with the passphrase on the file's first line (or set FROST_PASSPHRASE)
  --encrypt-recipient-file F  encrypt to a public recipient (frost key generate): this host cannot read it
  --encrypt-identity-file F   the identity, to read the parent's state when the host key is not available
  --json                      print a one-object summary on stdout
  --stats                     print where the time went (walk, read, tar, compress, encrypt, hash, store,
                              waiting) on stderr after the backup; with --json also as "stats"
${metricsHelp(30)}
  -h, --help                  this help

${STORAGE_HELP}`;

/** The backup command. */
/** `frost backup`'s options. */
const BACKUP_OPTIONS = {
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
  "no-xattrs": { type: "boolean" },
  stdin: { type: "boolean" },
  "stdin-name": { type: "string" },
  "stdin-command": { type: "string" },
  "pre-command": { type: "string" },
  "post-command": { type: "string" },
  stats: { type: "boolean" },
  ...METRICS_OPTION,
  ...KEY_OPTIONS,
} as const;

type BackupValues = ReturnType<typeof parse<typeof BACKUP_OPTIONS>>["values"];

export const backupCommand: Command = {
  summary: "back up a directory or file",
  usage: USAGE,
  async run(ctx) {
    const parsed = parseOrHelp(ctx, USAGE, BACKUP_OPTIONS, true);
    if (!parsed) return ExitCode.ok;
    const { values } = parsed;
    const o = await backupOptions(values, parsed.positionals, ctx);
    return await withStorages(values, { create: true, ctx }, async (storage) => {
      let lock: Lock | undefined;
      try {
        const { series, name, hostname, fromStdin, source } = o;
        lock = await acquireLock(storage, { hostname, name }, "backup", ctx); // before reading the history
        // Under the lock no other run of the series writes: what runs that died left is freed first.
        const cleanupOk = await removeOrphansAtStart(storage, series, lock.signal, ctx.stderr);
        const history = await loadHistory(storage, series, ctx);
        const plan = await planBackup({
          series,
          history,
          // With several storages a new level builds only on backups that every one of them holds.
          usable: await onEveryStorage(storage, series, history),
          policy: o.policy,
          engine: o.engine.name,
          fromStdin,
          keys: o.keys,
          now: new Date(),
          onNotice: (line) => ctx.stderr(line),
        });
        const hooks = new BackupHooks(values, { name, id: plan.id, level: plan.level }, ctx, lock.signal);
        await hooks.pre(() => fromStdin || checkSource(source));
        const progress = new ProgressLine(ctx);
        const times = values.stats ? newBackupTimes() : undefined;
        const manifest = await runBackup({
          id: plan.id,
          level: plan.level,
          parent: plan.parent,
          parentStateKey: plan.parentStateKey,
          keys: plan.keys,
          storage,
          engine: o.engine,
          source,
          hostname,
          name,
          compression: o.compression,
          segmentSize: o.segmentSize,
          queueSize: o.queueSize,
          exclude: o.exclude,
          crossFileSystems: values["cross-file-systems"],
          xattrs: !values["no-xattrs"],
          signal: lock.signal,
          frostVersion: VERSION,
          times,
          onProgress: (p) =>
            progress.update(() =>
              `backup ${series} level ${plan.level}: ${p.files} files, ${formatBytes(p.bytes)} read, ${
                formatBytes(p.stored)
              } stored`
            ),
          onWarning: (w) => {
            progress.clear();
            ctx.stderr(`frost: warning: ${showName(w.path)}: ${w.message}`);
          },
        }).catch(async (err) => {
          progress.clear();
          await hooks.post("failed");
          throw err;
        });
        progress.clear();
        const postOk = await hooks.post("ok");
        report(manifest, o, times, values.json === true, ctx);
        return manifest.totals.warnings > 0 || !postOk || !cleanupOk ? ExitCode.warnings : ExitCode.ok;
      } finally {
        await lock?.release();
      }
    });
  },
};

/** What `frost backup`'s options say, checked before any storage is opened. */
interface BackupSetup {
  name: string;
  hostname: string;
  series: string;
  fromStdin: boolean;
  /** The SOURCE path made absolute, or "-" for standard input. */
  source: string;
  policy: LevelPolicy;
  engine: Engine;
  compression: Compression;
  segmentSize: number;
  queueSize: number;
  exclude: string[];
  keys: KeyOptions;
}

/** Checks `frost backup`'s options (usage errors) and reads the key files they name. */
async function backupOptions(
  values: BackupValues,
  positionals: string[],
  ctx: CommandContext,
): Promise<BackupSetup> {
  const stdinCommand = values["stdin-command"];
  if (stdinCommand !== undefined && values.stdin) {
    throw new UsageError("Choose one of --stdin and --stdin-command");
  }
  if (stdinCommand !== undefined && stdinCommand.trim() === "") {
    throw new UsageError("--stdin-command needs a command");
  }
  const fromStdin = (values.stdin ?? false) || stdinCommand !== undefined;
  if (fromStdin && positionals.length > 0) {
    throw new UsageError(`--stdin backs up standard input: no SOURCE path ("${positionals[0]}") with it`);
  }
  if (!fromStdin && positionals.length !== 1) {
    throw new UsageError("frost backup needs exactly one SOURCE path");
  }
  if (!fromStdin && values["stdin-name"] !== undefined) {
    throw new UsageError("--stdin-name goes with --stdin");
  }
  const name = nameOption(values.name, "backup");
  const hostname = hostnameOption(values.hostname);
  const policy: LevelPolicy = {
    maxLevel: intOption(values["max-level"], "--max-level"),
    alwaysLevel: intOption(values["always-level"], "--always-level"),
    restartAlwaysLevelDays: numberOption(values["restart-always-level"], "--restart-always-level"),
    incremental: values.incremental,
  };
  validatePolicy(policy);
  let engine = engineForOption(values.engine);
  if (fromStdin) {
    const levels = ["max-level", "always-level", "restart-always-level", "incremental"] as const;
    const given = levels.find((o) => values[o] !== undefined);
    if (given) throw new UsageError(`--${given}: a --stdin backup is always a full one (level 0)`);
    const input = stdinCommand !== undefined
      ? producerStream(stdinCommand, { signal: ctx.signal, onStderr: (line) => ctx.stderr(line) })
      : ctx.stdin?.();
    if (!input) {
      throw new UsageError("--stdin reads a stream piped into frost, and standard input is a terminal");
    }
    const file = values["stdin-name"] ?? name;
    checkName(file, "--stdin-name");
    engine = stdinEngine({ input, file });
  }
  const compression = parseCompression(values.compression);
  const segmentSize = parseSize(values["segment-size"], "--segment-size");
  if (segmentSize < 4096) {
    throw new UsageError(`Invalid --segment-size "${values["segment-size"]}": at least 4K`);
  }
  const queueSize = intOption(values["queue-size"], "--queue-size", 1)!;
  // A --stdin backup records "-" as its source.
  const source = fromStdin ? "-" : absolute(positionals[0]!);
  // Checked now, and again after a --pre-command (which may make it).
  if (values["pre-command"] === undefined && !fromStdin) checkSource(source);
  const exclude = [
    ...(values.exclude ?? []).map((p) => parseShownName(p, { glob: true })),
    ...storagesLeftOut(source, fromStdin, values.storage, ctx),
  ];
  const keys = await keyOptions(values);
  if (keys.passphrase !== undefined && keys.recipient !== undefined) {
    throw new UsageError(
      "Choose one of --encrypt-pass-file (or FROST_PASSPHRASE) and --encrypt-recipient-file",
    );
  }
  const series = seriesName(hostname, name);
  return {
    name,
    hostname,
    series,
    fromStdin,
    source,
    policy,
    engine,
    compression,
    segmentSize,
    queueSize,
    exclude,
    keys,
  };
}

/** `--pre-command` and `--post-command`, with the backup's name, id and level in their environment. */
class BackupHooks {
  readonly #env: Record<string, string>;
  constructor(
    readonly values: { "pre-command"?: string; "post-command"?: string },
    backup: { name: string; id: string; level: number },
    readonly ctx: CommandContext,
    readonly signal: AbortSignal,
  ) {
    this.#env = {
      FROST_BACKUP_NAME: backup.name,
      FROST_BACKUP_ID: backup.id,
      FROST_BACKUP_LEVEL: String(backup.level),
    };
  }

  /** Runs `--pre-command`, if any (a failure stops the backup), then `check`s the source again. */
  async pre(check: () => unknown): Promise<void> {
    const pre = this.values["pre-command"];
    if (pre === undefined) return;
    const result = await runHook(pre, this.#env, this.ctx.stderr, this.signal);
    if (result.code !== 0) {
      throw new FrostError(`--pre-command failed (${describeHookEnd(result)}): nothing was backed up`);
    }
    check();
  }

  /** Runs `--post-command`, if any; false when it failed (said in a warning). */
  async post(status: "ok" | "failed"): Promise<boolean> {
    const post = this.values["post-command"];
    if (post === undefined) return true;
    const result = await runHook(post, { ...this.#env, FROST_BACKUP_STATUS: status }, this.ctx.stderr);
    if (result.code === 0) return true;
    this.ctx.stderr(`frost: warning: --post-command failed (${describeHookEnd(result)})`);
    return false;
  }
}

/** The backup's metrics, its line (or JSON) on stdout and, with `--stats`, where the time went. */
function report(
  manifest: Manifest,
  o: BackupSetup,
  times: BackupTimes | undefined,
  json: boolean,
  ctx: CommandContext,
): void {
  const t = manifest.totals;
  ctx.metrics?.({
    files: t.files,
    bytes_in: t.bytesIn,
    bytes_stored: t.bytesStored,
    level: manifest.level,
    warnings: t.warnings,
  });
  if (json) {
    ctx.stdout(JSON.stringify({
      id: manifest.id,
      created: manifest.created,
      name: o.name,
      hostname: o.hostname,
      level: manifest.level,
      parent: manifest.parent,
      chain: manifest.chain,
      files: t.files,
      bytesIn: t.bytesIn,
      bytesStored: t.bytesStored,
      seconds: t.seconds,
      warnings: t.warnings,
      ...times && { stats: backupTimesJson(times) },
    }));
  } else {
    ctx.stdout(
      `Backed up ${
        o.fromStdin ? "standard input" : o.source
      } as ${o.series} ${manifest.id}: level ${manifest.level}` +
        `${manifest.parent ? ` on ${manifest.parent}` : ""}, ${t.files} files, ` +
        `${formatBytes(t.bytesIn)} read, ${formatBytes(t.bytesStored)} stored in ${t.seconds.toFixed(1)} s` +
        (t.warnings ? `, ${t.warnings} warning${t.warnings === 1 ? "" : "s"}` : ""),
    );
  }
  if (times) ctx.stderr(`frost: ${formatBackupTimes(times)}`);
}

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

/**
 * Exclude patterns for the local storage folders that lie inside the source (each said in a notice): a
 * backup never backs up its own storage. A source that is a storage folder, or lies inside one, is refused.
 */
function storagesLeftOut(
  source: string,
  fromStdin: boolean,
  storages: string[] | undefined,
  ctx: CommandContext,
): string[] {
  if (fromStdin) return [];
  const real = realPath(source);
  const out: string[] = [];
  for (const store of localStoragePaths(storages)) {
    if (inside(real, store) !== undefined) {
      throw new UsageError(
        `Cannot back up "${source}": it is ${
          real === store ? "the storage folder" : `inside the storage folder "${store}"`
        } (back up another folder, or use another --storage)`,
      );
    }
    const rel = inside(store, real);
    if (rel === undefined) continue;
    ctx.stderr(
      `frost: notice: the storage folder "${store}" lies inside the source: it is left out of the backup`,
    );
    out.push("/" + globEscape(rel) + "/");
  }
  return out;
}
