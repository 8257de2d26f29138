/**
 * `frost freezer list|restore`: reads OpenStack Freezer's tar-engine backups (never writes into them).
 * @module
 */
import fs from "node:fs";
import os from "node:os";
import { prepareTarget } from "./restore.ts";
import {
  absolute,
  type Command,
  type CommandContext,
  parse,
  parseOrHelp,
  ProgressLine,
  STORAGE_HELP,
  STORAGE_OPTIONS,
  withStorages,
} from "./cli.ts";
import { AbortedError, ExitCode, FrostError, messageOf, UsageError } from "../base/errors.ts";
import { formatBytes, parseDate } from "../base/units.ts";
import { tarRestore } from "../engines/tar_restore.ts";
import type { RestoreStats } from "../engines/engine.ts";
import {
  checkPlainHead,
  concatObjects,
  dataObjects,
  decompress,
  findKey,
  type FreezerBackup,
  freezerChain,
  type FreezerKey,
  listFreezerBackups,
  opensslDecrypt,
  opensslPassword,
  peek,
} from "../freezer/freezer.ts";

const USAGE = `Usage: frost freezer list    --storage S [--hostname H] [--name N] [--json]
       frost freezer restore --storage S --hostname H --name N --to DIR [options]

Reads backups made by OpenStack Freezer's tar engine (read-only): the layout
metadata/tar/<hostname>_<name>/<level0_ts>/<level>_<ts>/metadata and data/tar/.../data (or Swift's
.../segments/NNNNNNNN), compressed with gzip, bzip2 or xz, optionally encrypted with openssl enc -aes-256-cfb.
--storage is Freezer's --container (e.g. swift://freezer_backups, s3://bucket/prefix, /srv/freezer).

restore applies the newest level-0 chain at or before --date, levels 0..N in order (deletions included).
With --always-level backups, several level-N entries are differentials against level N-1: only the newest
at or before --date is applied (a notice says so).

Options:
  --hostname HOST        Freezer's --hostname (default: this machine's hostname)
  --name NAME            Freezer's --backup-name (required for restore)
  --to DIR               restore target; created if missing, must be empty unless --overwrite
  --date T               restore the state at T (ISO 8601, local time unless a zone is given)
  --overwrite            restore into a non-empty DIR: what the backup holds is replaced, the rest kept
  --no-xattrs            do not restore extended attributes and ACLs (tar --xattrs / --acls records)
  --no-devices           skip device nodes, each with a notice
  --encrypt-pass-file F  Freezer's --encrypt-pass-file (openssl's password: the first line of F)
  --json                 list: a JSON array; restore: a one-object summary
  -h, --help             this help

${STORAGE_HELP}`;

const OPTIONS = {
  ...STORAGE_OPTIONS,
  to: { type: "string" },
  date: { type: "string" },
  overwrite: { type: "boolean" },
  "no-xattrs": { type: "boolean" },
  "no-devices": { type: "boolean" },
  "encrypt-pass-file": { type: "string" },
} as const;

/** The freezer command. */
export const freezerCommand: Command = {
  summary: "list and restore OpenStack Freezer backups (read-only)",
  usage: USAGE,
  async run(ctx) {
    const [sub, ...args] = ctx.args;
    if (sub === undefined || sub === "--help" || sub === "-h" || sub === "help") {
      (sub === undefined ? ctx.stderr : ctx.stdout)(USAGE);
      return sub === undefined ? ExitCode.usage : ExitCode.ok;
    }
    if (sub !== "list" && sub !== "restore") {
      throw new UsageError(`Unknown freezer subcommand "${sub}" (expected list or restore)`);
    }
    const parsed = parseOrHelp({ ...ctx, args }, USAGE, OPTIONS, true);
    if (!parsed) return ExitCode.ok;
    const { values, positionals } = parsed;
    if (positionals.length > 0) throw new UsageError(`Unexpected argument "${positionals[0]}"`);
    return sub === "list" ? await list(ctx, values) : await restore(ctx, values);
  },
};

type Values = ReturnType<typeof parse<typeof OPTIONS>>["values"];

function freezerName(value: string, option: string): string {
  if (value === "" || value.includes("/") || value === "." || value === "..") {
    throw new UsageError(`Invalid ${option} "${value}"`);
  }
  return value;
}

const iso = (seconds: number) => new Date(seconds * 1000).toISOString().replace(".000Z", "Z");

async function list(ctx: CommandContext, values: Values): Promise<number> {
  for (const o of ["to", "date", "overwrite", "encrypt-pass-file"] as const) {
    if (values[o] !== undefined) throw new UsageError(`frost freezer list does not take --${o}`);
  }
  const host = values.hostname === undefined ? undefined : freezerName(values.hostname, "--hostname");
  const name = values.name === undefined ? undefined : freezerName(values.name, "--name");
  return await withStorages(values, { create: false, ctx }, async (storage) => {
    const backups = await listFreezerBackups(storage, {
      hbn: host !== undefined && name !== undefined ? `${host}_${name}` : undefined,
      filter: (hbn) =>
        (host === undefined || hbn.startsWith(`${host}_`)) &&
        (name === undefined || hbn.endsWith(`_${name}`)),
      signal: ctx.signal,
      onWarning: (m) => ctx.stderr(`frost: warning: ${m}`),
    });
    if (values.json) {
      ctx.stdout(JSON.stringify(backups.map((b) => ({
        backup: b.hbn,
        levelZero: b.levelZero,
        level: b.level,
        timestamp: b.timestamp,
        date: iso(b.timestamp),
        engine: b.engineName,
        compression: b.compression,
        encryption: b.encryption,
      }))));
    } else if (backups.length === 0) {
      ctx.stderr(`frost: no Freezer tar backups found in ${storage.url}`);
    } else {
      ctx.stdout(
        "BACKUP (host_name)          CHAIN (level 0)        LEVEL  DATE                   COMPRESSION  ENCRYPTED",
      );
      for (const b of backups) {
        ctx.stdout(
          `${b.hbn.padEnd(27)} ${iso(b.levelZero).padEnd(22)} ${String(b.level).padStart(5)}  ${
            iso(b.timestamp).padEnd(22)
          } ${b.compression.padEnd(12)} ${b.encryption ? "yes" : "no"}`,
        );
      }
    }
    return ExitCode.ok;
  });
}

async function restore(ctx: CommandContext, values: Values): Promise<number> {
  if (values.name === undefined) throw new UsageError("frost freezer restore needs --name NAME");
  if (values.to === undefined) throw new UsageError("frost freezer restore needs --to DIR");
  const host = freezerName(values.hostname ?? os.hostname(), "--hostname");
  const hbn = `${host}_${freezerName(values.name, "--name")}`;
  const target = absolute(values.to);
  const at = values.date === undefined ? undefined : parseDate(values.date).getTime();
  let password: Uint8Array | undefined;
  if (values["encrypt-pass-file"] !== undefined) {
    try {
      password = opensslPassword(fs.readFileSync(values["encrypt-pass-file"]));
    } catch (err) {
      throw new FrostError(
        `Cannot read --encrypt-pass-file "${values["encrypt-pass-file"]}": ${messageOf(err)}`,
      );
    }
    if (password.byteLength === 0) {
      throw new FrostError(`--encrypt-pass-file "${values["encrypt-pass-file"]}" has an empty first line`);
    }
  }

  return await withStorages(values, { create: false, ctx }, async (storage) => {
    const backups = await listFreezerBackups(storage, {
      hbn,
      signal: ctx.signal,
      onWarning: (m) => ctx.stderr(`frost: warning: ${m}`),
    });
    const { chain, notices } = freezerChain(backups, hbn, at);
    for (const n of notices) ctx.stderr(`frost: notice: ${n}`);

    // Every level's objects are found and its key checked before the target is touched.
    const plans: { backup: FreezerBackup; keys: string[]; key?: FreezerKey }[] = [];
    for (const backup of chain) {
      const keys = await dataObjects(storage, backup, ctx.signal);
      const head = await peek(concatObjects(storage, keys, { signal: ctx.signal }), 32);
      let key: FreezerKey | undefined;
      if (backup.encryption) {
        if (!password) {
          throw new FrostError(
            `Freezer backup "${backup.id}" is encrypted: give its pass file with --encrypt-pass-file`,
          );
        }
        key = findKey(backup, head, password);
      } else {
        checkPlainHead(backup, head);
      }
      plans.push({ backup, keys, key });
    }
    prepareTarget(target, values.overwrite ?? false);

    const progress = new ProgressLine(ctx);
    const started = performance.now();
    const total: RestoreStats = { files: 0, bytes: 0, deleted: 0 };
    let read = 0;
    let warnings = 0;
    // Each level hands the next what the chain held: only the chain's own deletions replay.
    const xattrsRefused = new Set<string>(); // each kind of xattr refused is reported once for the chain
    const memo = new Map<string, unknown>();
    for (const { backup, keys, key } of plans) {
      const run = tarRestore(target, {
        memo,
        xattrs: !values["no-xattrs"],
        xattrsRefused,
        devices: !values["no-devices"],
        signal: ctx.signal,
        onProgress: (p) =>
          progress.update(() =>
            `freezer restore ${hbn} level ${backup.level}: ${total.files + p.files} files, ${
              formatBytes(total.bytes + p.bytes)
            } written, ${formatBytes(read)} read`
          ),
        onWarning: (w) => {
          if (progress.warning(w)) warnings++;
        },
      });
      let stream = concatObjects(storage, keys, { signal: ctx.signal, onRead: (n) => read += n });
      if (key) stream = stream.pipeThrough(opensslDecrypt(key));
      const flow = decompress(stream, backup.compression).pipeTo(run.writable, { signal: ctx.signal });
      const [flowResult, doneResult] = await Promise.allSettled([flow, run.done]);
      if (flowResult.status === "rejected" || doneResult.status === "rejected") {
        if (ctx.signal.aborted) throw new AbortedError("Restore interrupted");
        const reason = doneResult.status === "rejected"
          ? doneResult.reason
          : (flowResult as PromiseRejectedResult).reason;
        throw new FrostError(
          `Cannot restore Freezer backup "${backup.id}" (level ${backup.level}): ${describe(reason)}`,
          { cause: reason },
        );
      }
      total.files += doneResult.value.files;
      total.bytes += doneResult.value.bytes;
      total.deleted += doneResult.value.deleted;
    }
    progress.clear();
    const newest = chain[chain.length - 1]!;
    const seconds = Math.round(performance.now() - started) / 1000;
    if (values.json) {
      ctx.stdout(JSON.stringify({
        backup: hbn,
        levelZero: newest.levelZero,
        level: newest.level,
        timestamp: newest.timestamp,
        chain: chain.map((b) => `${b.level}_${b.timestamp}`),
        target,
        files: total.files,
        bytes: total.bytes,
        deleted: total.deleted,
        seconds,
        warnings,
      }));
    } else {
      ctx.stdout(
        `Restored Freezer backup ${newest.id} (level ${newest.level}, ${
          iso(newest.timestamp)
        }; ${chain.length} ` +
          `backup${chain.length === 1 ? "" : "s"} applied) into ${target}: ${total.files} entries, ${
            formatBytes(total.bytes)
          }, ${total.deleted} deleted, in ${seconds.toFixed(1)} s`,
      );
    }
    return warnings > 0 ? ExitCode.warnings : ExitCode.ok;
  });
}

/** A failure's message; Bun's web-stream adapter throws zlib errors as an empty TypeError with a cause. */
function describe(err: unknown): string {
  for (let e = err, depth = 0; e !== undefined && e !== null && depth < 5; depth++) {
    const message = messageOf(e);
    if (message) return message;
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && !(e as { cause?: unknown }).cause) {
      return `${code} (corrupt or truncated stream)`;
    }
    e = (e as { cause?: unknown }).cause;
  }
  return "corrupt or truncated stream";
}
