/**
 * Shared pieces of the command line: option parsing, the storage and name options every command takes,
 * and the progress line.
 * @module
 */
import process from "node:process";
import { defaultHostname } from "../base/host.ts";
import path from "node:path";
import { parseArgs, type ParseArgsConfig } from "node:util";
import { ExitCode, FrostError, messageOf, UsageError } from "../base/errors.ts";
import {
  checkName,
  decodeManifest,
  loadManifests,
  type Manifest,
  manifestKey,
  manifestsPrefix,
} from "../series/manifest.ts";
import { getBytes } from "../storage/storage.ts";
import { NoBackupError, parseBackupId } from "../series/levels.ts";
import { type Storage, StorageError } from "../storage/storage.ts";
import { defaultStoragePath, openStorage } from "../storage/registry.ts";
import { DEFAULT_RETRY_FOR_MS, Retrier, RetryStorage, shortReason } from "../storage/retry.ts";
import { MultiStorage } from "../storage/multi.ts";
import { LazyStorage } from "../storage/lazy.ts";
import { asStorage } from "../storage/unwrap.ts";
import { LimitStorage, TokenBucket } from "../storage/limit.ts";
import { formatDuration, parseDuration, parseSize } from "../base/units.ts";
import { normalizeArgs } from "./cli_options.ts";
import { checkSelection, selectChain, type Selection } from "../series/time.ts";
import type { KeyOptions } from "../series/keys.ts";
import { readIdentityFile, readPassFile, readRecipientFile } from "../codec/encryption.ts";
import type { Warning } from "../engines/engine.ts";
import { type EntryType, showName } from "../engines/mod.ts";

/** What every command receives: its arguments and a place to print. */
export interface CommandContext {
  args: string[];
  signal: AbortSignal;
  stdout: (line: string) => void;
  stderr: (line: string) => void;
  /** True when stderr is a terminal (progress lines are shown then). */
  interactive: boolean;
  /** Standard input as bytes (`backup --stdin`); undefined when it is a terminal or not available. */
  stdin?: () => ReadableStream<Uint8Array> | undefined;
  /** Standard output as bytes (`restore --stdout`). */
  stdoutBytes?: () => WritableStream<Uint8Array>;
  /** Receives a run's figures for `--metrics-file` (see metrics.ts); absent when none is written. */
  metrics?: (figures: Record<string, number>) => void;
}

/**
 * Runs `command` with its stderr watched: every line that starts with "frost: warning:" is something to look
 * at, so a run that printed one (a storage left out, an outage ridden out, an unreadable manifest) and
 * returns 0 gives 3, completed with warnings.
 */
export async function runNoticingWarnings(command: Command, ctx: CommandContext): Promise<number> {
  let warned = false;
  const stderr = (line: string) => {
    if (line.startsWith("frost: warning:")) warned = true;
    ctx.stderr(line);
  };
  const code = await command.run({ ...ctx, stderr });
  return code === ExitCode.ok && warned ? ExitCode.warnings : code;
}

/** A subcommand: returns the exit code. */
export interface Command {
  summary: string;
  usage: string;
  run(ctx: CommandContext): Promise<number>;
}

type Options = NonNullable<ParseArgsConfig["options"]>;

/** Options that every command accepting a storage shares. */
export const STORAGE_OPTIONS = {
  storage: { type: "string", multiple: true },
  "upload-limit": { type: "string" },
  "download-limit": { type: "string" },
  "retry-for": { type: "string" },
  "io-timeout": { type: "string" },
  "s3-endpoint": { type: "string" },
  "s3-region": { type: "string" },
  "s3-path-style": { type: "boolean" },
  "sftp-key": { type: "string" },
  "sftp-known-hosts": { type: "string" },
  "sftp-accept-new-host-key": { type: "boolean" },
  "ftp-password-file": { type: "string" },
  "ftp-ca-file": { type: "string" },
  hostname: { type: "string" },
  name: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const satisfies Options;

/** Parses a command's arguments; unknown options and missing values are usage errors in frost's words. */
export function parse<T extends Options>(args: string[], options: T, positionals = false) {
  if (optionProbe) optionProbe(options); // `frost completion` reading the table (see optionTable)
  const checked = normalizeArgs(args, options, positionals);
  try {
    return parseArgs({ args: checked, options, strict: true, allowPositionals: positionals });
  } catch (err) {
    // node's messages name the option; keep them on one line.
    const message = err instanceof Error ? err.message.split("\n")[0]! : String(err);
    throw new UsageError(message.replace(/\. To specify a positional argument.*$/, ""));
  }
}

/**
 * The start of every command's `run`: parses its arguments (as `parse`) and, with `--help`, prints `usage`
 * and returns undefined (the command then exits 0).
 */
export function parseOrHelp<T extends Options>(
  ctx: CommandContext,
  usage: string,
  options: T,
  positionals = false,
): ReturnType<typeof parse<T>> | undefined {
  const parsed = parse(ctx.args, options, positionals);
  if ((parsed.values as { help?: boolean }).help) {
    ctx.stdout(usage);
    return undefined;
  }
  return parsed;
}

/**
 * Opens the storages named by the options (`openStorages`), runs `body` with them, and closes them whatever
 * `body` did: the storage part of every command's prologue and epilogue.
 */
export async function withStorages<T>(
  values: StorageValues,
  options: { create: boolean; ctx: CommandContext },
  body: (storage: Storage) => Promise<T>,
): Promise<T> {
  const storage = await openStorages(values, options);
  try {
    return await body(storage);
  } finally {
    await storage.close();
  }
}

let optionProbe: ((options: Options) => never) | undefined;

/** Thrown by `parse` while `optionTable` reads a command's options. */
class OptionTable {
  constructor(readonly options: Options) {}
}

/**
 * The options table `command` passes to `parse`, read by starting the command with `args` and stopping it
 * at its `parse` call (commands parse before doing anything): the one table that its parsing, help and
 * `frost completion` share. Undefined when the command returns without parsing.
 */
export async function optionTable(command: Command, args: string[] = []): Promise<Options | undefined> {
  const ctx: CommandContext = {
    args,
    signal: new AbortController().signal,
    stdout: () => {},
    stderr: () => {},
    interactive: false,
  };
  optionProbe = (options) => {
    throw new OptionTable(options);
  };
  try {
    await command.run(ctx);
    return undefined;
  } catch (err) {
    if (err instanceof OptionTable) return err.options;
    throw err;
  } finally {
    optionProbe = undefined;
  }
}

/** The storage specs from `--storage` (repeatable), else `$FROST_STORAGE`, else the default folder. */
export function storageSpecs(values: string[] | undefined): string[] {
  return values && values.length > 0 ? values : [defaultStoragePath()];
}

/** The parsed storage options every command shares. */
export interface StorageValues {
  storage?: string[];
  "upload-limit"?: string;
  "download-limit"?: string;
  "retry-for"?: string;
  "io-timeout"?: string;
  "s3-endpoint"?: string;
  "s3-region"?: string;
  "s3-path-style"?: boolean;
  "sftp-key"?: string;
  "sftp-known-hosts"?: string;
  "sftp-accept-new-host-key"?: boolean;
  "ftp-password-file"?: string;
  "ftp-ca-file"?: string;
}

/** Help text for the storage options every command shares. */
export const STORAGE_HELP = `Storage options (every command):
  --storage PATH|URL          where backups live; repeat it to keep every backup on several storages.
                              A folder path or file:///path, s3://bucket/prefix, swift://container/prefix,
                              sftp://user@host[:port]/path, ftp://user@host/path, ftps://user@host/path.
                              Default: $FROST_STORAGE, else /var/backups/frost as root, else
                              ~/.local/share/frost
  --s3-endpoint URL           S3-compatible server (MinIO, Ceph RGW, Swift s3api); credentials come from
                              AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE
  --s3-region REGION          (default $AWS_REGION or us-east-1)
  --s3-path-style             bucket in the path, as most S3-compatible servers need
                              (Swift: ST_AUTH/ST_USER/ST_KEY or OS_AUTH_URL/OS_USERNAME/OS_PASSWORD/... )
  --sftp-key FILE             private key (default ~/.ssh/id_ed25519, id_ecdsa, id_rsa)
  --sftp-known-hosts FILE     host keys to check against (default ~/.ssh/known_hosts)
  --sftp-accept-new-host-key  accept and remember the key of a host not yet in known_hosts
  --ftp-password-file FILE    FTP password on the file's first line (or set FROST_FTP_PASSWORD)
  --ftp-ca-file FILE          CA certificates for an ftps:// server with a private CA
  --upload-limit SIZE         at most SIZE bytes per second up (e.g. 10M)
  --download-limit SIZE       at most SIZE bytes per second down
  --retry-for DURATION        how long one storage operation keeps retrying a server that does not answer
                              (refused, reset, timed out, HTTP 5xx/408/429), e.g. 30s, 5m; 0: no retry
                              (default $FROST_RETRY_FOR, else 15m). A bare number is seconds
  --io-timeout DURATION       a request that moves no byte either way for this long fails (and is retried)
                              (default $FROST_IO_TIMEOUT, else 2m)
  --hostname HOST             the host part of backup names (default: this machine's)`;

/** The idle timeout of storage requests when neither `--io-timeout` nor `$FROST_IO_TIMEOUT` is given. */
export const DEFAULT_IO_TIMEOUT_MS = 120_000;

/** A duration option (`--retry-for`, `--io-timeout`): a bare number is seconds, else as `parseDuration`. */
export function durationOption(value: string | undefined, option: string): number | undefined {
  if (value === undefined || value.trim() === "") return undefined;
  const text = value.trim();
  try {
    return /^\d+(\.\d+)?$/.test(text) ? Math.round(Number(text) * 1000) : parseDuration(text);
  } catch {
    throw new UsageError(`Invalid ${option} "${value}": expected a duration such as 30s, 5m or 1h`);
  }
}

/**
 * Opens the storages named by `--storage` and composes the decorators, once, here: retry with backoff for
 * each storage (its opening included), then the bandwidth limits (buckets shared by all), then several
 * storages as one.
 *
 * With several storages and `create: false` (restore, list, ls, verify), a storage that cannot be opened is
 * left out with a warning (so the run exits 3) as long as another one opens, and a storage that
 * stops answering later makes reads go to the others at once instead of waiting out its retry budget.
 */
export async function openStorages(
  values: StorageValues,
  options: { create: boolean; ctx: CommandContext },
): Promise<Storage> {
  const { ctx } = options;
  const upload = values["upload-limit"] === undefined
    ? undefined
    : parseSize(values["upload-limit"], "--upload-limit");
  const download = values["download-limit"] === undefined
    ? undefined
    : parseSize(values["download-limit"], "--download-limit");
  const retryForMs = durationOption(values["retry-for"], "--retry-for") ??
    durationOption(process.env.FROST_RETRY_FOR, "FROST_RETRY_FOR") ?? DEFAULT_RETRY_FOR_MS;
  const ioTimeoutMs = durationOption(values["io-timeout"], "--io-timeout") ??
    durationOption(process.env.FROST_IO_TIMEOUT, "FROST_IO_TIMEOUT") ?? DEFAULT_IO_TIMEOUT_MS;
  if (ioTimeoutMs < 1) throw new UsageError(`Invalid --io-timeout: it must be more than 0`);
  // One bucket per direction, shared by every storage: the limit is on the bytes this machine moves. Each
  // storage gets its own decorator, below the MultiStorage, so that a restore still sees the storages apart
  // (and reads a segment that is corrupt on one from the next).
  const limits = upload || download
    ? {
      upload: upload ? new TokenBucket(upload) : undefined,
      download: download ? new TokenBucket(download) : undefined,
    }
    : undefined;
  const specs = storageSpecs(values.storage);
  const partial = !options.create && specs.length > 1;
  const names = [...specs];
  /** False for a storage left out because it did not open (several storages, reading). */
  const usable = specs.map(() => true);
  const waitLine = new WaitLine(ctx);
  const retriers: Retrier[] = specs.map((_, i) => {
    const othersUp = () => retriers.some((r, j) => j !== i && !r.down && usable[j]);
    return new Retrier({
      retryForMs,
      onOutage: (what, err) => {
        const where = `frost: warning: ${names[i]} not reachable (${shortReason(err)}) ${what}`;
        if (partial && othersUp()) {
          ctx.stderr(`${where}; reading from the other storages`);
        } else {
          ctx.stderr(`${where}; retrying for up to ${formatDuration(retryForMs)}`);
          waitLine.start(i, names[i]!);
        }
      },
      onRecovered: (downMs) => {
        waitLine.stop(i);
        ctx.stderr(`frost: ${names[i]} answers again after ${formatDuration(downMs)}`);
      },
      onGaveUp: () => waitLine.stop(i),
      othersUp: partial ? othersUp : undefined,
    });
  });
  const open = (spec: string) =>
    openStorage(spec, {
      create: options.create,
      ioTimeoutMs,
      s3: {
        endpoint: values["s3-endpoint"],
        region: values["s3-region"],
        pathStyle: values["s3-path-style"],
      },
      sftp: {
        key: values["sftp-key"],
        knownHosts: values["sftp-known-hosts"],
        acceptNewHostKey: values["sftp-accept-new-host-key"],
      },
      ftp: { passwordFile: values["ftp-password-file"], caFile: values["ftp-ca-file"] },
    });
  const opened: (Storage | undefined)[] = specs.map(() => undefined);
  try {
    if (partial) {
      // Every storage tried once, at the same time; those that fail are left out while another one opened.
      const first = await Promise.allSettled(specs.map((spec) => open(spec)));
      first.forEach((r, i) => {
        if (r.status === "fulfilled") opened[i] = r.value;
      });
      if (opened.some((s) => s !== undefined)) {
        first.forEach((r, i) => {
          if (r.status === "fulfilled") return;
          if (r.reason instanceof UsageError) throw r.reason;
          const down = r.reason instanceof StorageError && r.reason.retriable;
          ctx.stderr(
            `frost: warning: leaving out ${specs[i]}: ${
              messageOf(r.reason)
            }; reading from the other storages`,
          );
          if (!down) {
            usable[i] = false;
            return;
          }
          // Down, not refused: kept on standby, opened by the first read that no other storage can serve.
          retriers[i]!.markDown(r.reason);
          opened[i] = new LazyStorage(specs[i]!, () => open(specs[i]!));
        });
      }
    }
    for (const [i, spec] of specs.entries()) {
      if (opened[i] !== undefined || !usable[i]) continue;
      try {
        opened[i] = await retriers[i]!.run("when opening it", ctx.signal, () => open(spec));
      } catch (err) {
        if (!options.create || specs.length === 1 || !(err instanceof StorageError)) throw err;
        throw new StorageError(
          `${err.message}; to back up to the other storages meanwhile, run without --storage ${spec}`,
          { cause: err },
        );
      }
    }
  } catch (err) {
    await Promise.allSettled(opened.map((s) => s?.close()));
    throw err;
  }
  const composed: Storage[] = [];
  const standby: Storage[] = [];
  for (const [i, storage] of opened.entries()) {
    if (storage === undefined) continue;
    names[i] = storage.url;
    const retrying = new RetryStorage(storage, retriers[i]!);
    (storage instanceof LazyStorage ? standby : composed).push(
      limits ? new LimitStorage(retrying, limits) : retrying,
    );
  }
  return composed.length === 1 && standby.length === 0
    ? composed[0]!
    : new MultiStorage(composed, { standby });
}

/**
 * On a terminal, the line that shows how long frost has been waiting for storages that do not answer,
 * rewritten every second (between the outage's warning and its notice). Silent otherwise.
 */
class WaitLine {
  readonly #ctx: CommandContext;
  readonly #waiting = new Map<number, { name: string; since: number }>();
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(ctx: CommandContext) {
    this.#ctx = ctx;
  }

  start(id: number, name: string): void {
    if (!this.#ctx.interactive) return;
    this.#waiting.set(id, { name, since: performance.now() });
    if (this.#timer !== undefined) return;
    this.#timer = setInterval(() => {
      const now = performance.now();
      const parts = [...this.#waiting.values()].map((w) => `${w.name} (${formatDuration(now - w.since)})`);
      process.stderr.write(`\r\x1b[Kwaiting for ${parts.join(", ")} to answer`);
    }, 1000);
    // Never what keeps the process alive.
    (this.#timer as { unref?: () => void }).unref?.();
  }

  stop(id: number): void {
    if (!this.#waiting.delete(id) || this.#waiting.size > 0 || this.#timer === undefined) return;
    clearInterval(this.#timer);
    this.#timer = undefined;
    process.stderr.write("\r\x1b[K");
  }
}

/** `--hostname` or this machine's, checked. */
export function hostnameOption(value: string | undefined): string {
  return value === undefined ? defaultHostname() : checkName(value, "--hostname");
}

/** `--name`, required and checked. */
export function nameOption(value: string | undefined, command: string): string {
  if (value === undefined) throw new UsageError(`frost ${command} needs --name NAME`);
  return checkName(value, "--name");
}

/** Parses a non-negative integer option. */
export function intOption(value: string | undefined, option: string, min = 0): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || Number(value) < min) {
    throw new UsageError(`Invalid ${option} "${value}": expected a whole number ≥ ${min}`);
  }
  return Number(value);
}

/** Parses a non-negative decimal option (days). */
export function numberOption(value: string | undefined, option: string): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+(\.\d+)?$/.test(value)) {
    throw new UsageError(`Invalid ${option} "${value}": expected a number ≥ 0`);
  }
  return Number(value);
}

/** Resolves a user path against the current directory. */
export function absolute(p: string): string {
  return path.resolve(p);
}

/** A throttled single-line progress display on a terminal; silent otherwise. */
export class ProgressLine {
  #last = 0;
  #shown = false;
  constructor(private readonly ctx: CommandContext) {}
  update(render: () => string): void {
    if (!this.ctx.interactive) return;
    const now = performance.now();
    if (now - this.#last < 200) return;
    this.#last = now;
    this.#shown = true;
    process.stderr.write(`\r\x1b[K${render()}`);
  }
  clear(): void {
    if (this.#shown) process.stderr.write("\r\x1b[K");
    this.#shown = false;
  }
  /** Prints an engine's warning or notice about a path (the progress line cleared first); true for a warning. */
  warning(w: Warning): boolean {
    this.clear();
    this.ctx.stderr(`frost: ${w.notice ? "notice" : "warning"}: ${showName(w.path)}: ${w.message}`);
    return !w.notice;
  }
}

const TYPE_CHARS: Record<EntryType, string> = {
  file: "-",
  dir: "d",
  symlink: "l",
  hardlink: "-",
  char: "c",
  block: "b",
  fifo: "p",
};

/** The letter `ls -l` shows for an entry's type (a hard link shows as the file it is). */
export function typeChar(type: EntryType): string {
  return TYPE_CHARS[type];
}

/** Options that select or open encryption keys. Secrets come from files or the environment, never argv. */
export const KEY_OPTIONS = {
  "encrypt-pass-file": { type: "string" },
  "encrypt-recipient-file": { type: "string" },
  "encrypt-identity-file": { type: "string" },
} as const satisfies Options;

/** Reads the key files named by the options (and `$FROST_PASSPHRASE`). */
export async function keyOptions(
  values: {
    "encrypt-pass-file"?: string;
    "encrypt-recipient-file"?: string;
    "encrypt-identity-file"?: string;
  },
): Promise<KeyOptions> {
  const out: KeyOptions = {};
  if (values["encrypt-pass-file"] !== undefined) {
    out.passphrase = await readPassFile(values["encrypt-pass-file"]);
  } else if (process.env.FROST_PASSPHRASE) out.passphrase = process.env.FROST_PASSPHRASE;
  if (values["encrypt-recipient-file"] !== undefined) {
    out.recipient = await readRecipientFile(values["encrypt-recipient-file"]);
  }
  if (values["encrypt-identity-file"] !== undefined) {
    out.identity = await readIdentityFile(values["encrypt-identity-file"]);
  }
  return out;
}

/**
 * With several storages, the backups of `history` that every storage holds, with their whole chain: the
 * only ones a new level may build on, or the storages that lack one would get a level without its base.
 * With one storage, `history` itself.
 */
export async function onEveryStorage(
  storage: Storage,
  series: string,
  history: Manifest[],
): Promise<Manifest[]> {
  const multi = asStorage(storage, MultiStorage);
  if (!multi) return history;
  const counts = new Map<string, number>();
  for (const member of multi.storages) {
    for await (const info of member.list(manifestsPrefix(series))) {
      counts.set(info.key, (counts.get(info.key) ?? 0) + 1);
    }
  }
  const n = multi.storages.length;
  const byId = new Map(history.map((m) => [m.id, m]));
  const everywhere = (m: Manifest | undefined): boolean => {
    for (let cur = m, steps = 0; cur; cur = cur.parent ? byId.get(cur.parent) : undefined, steps++) {
      if (counts.get(manifestKey(series, cur.id)) !== n || steps > history.length) return false;
      if (cur.parent === null) return true;
    }
    return false;
  };
  return history.filter((m) => everywhere(m));
}

/** Every committed manifest of a series; unreadable ones are skipped with a warning line. */
export function loadHistory(storage: Storage, series: string, ctx: CommandContext): Promise<Manifest[]> {
  return loadManifests(storage, series, (key, err) => {
    ctx.stderr(`frost: warning: ignoring unreadable manifest "${key}": ${messageOf(err)}`);
  });
}

/**
 * The chain a restore of `selection` (`--id`, `--date`, or the newest backup) applies, oldest first, as
 * `selectChain`; and an error naming a manifest that cannot be read when that backup could be the one asked
 * for (the `--id` itself; or created after the chosen one and not after the date, or at a time its name does
 * not tell): choosing an older point instead would be a silent fallback.
 */
export async function chooseChain(
  storage: Storage,
  series: string,
  history: readonly Manifest[],
  selection: Selection,
): Promise<Manifest[]> {
  const at = checkSelection(selection);
  const readable = new Set(history.map((m) => m.id));
  const unreadable: { key: string; id: string }[] = [];
  for await (const info of storage.list(manifestsPrefix(series))) {
    const id = /^[^/]+\/manifests\/([^/]+)\.json$/.exec(info.key)?.[1];
    if (id !== undefined && !readable.has(id)) unreadable.push({ key: info.key, id });
  }
  if (selection.id !== undefined) {
    const wanted = selection.id.trim().toUpperCase();
    const bad = unreadable.find((u) => u.id === wanted);
    if (bad) throw new FrostError(`${await whyUnreadable(storage, bad.key)}; it is the backup asked for`);
    return selectChain(history, selection, series);
  }
  let chain: Manifest[] | undefined;
  let failure: unknown;
  try {
    chain = selectChain(history, selection, series);
  } catch (err) {
    if (!(err instanceof NoBackupError) || unreadable.length === 0) throw err;
    failure = err;
  }
  const chosen = chain?.[chain.length - 1];
  for (const { key, id } of unreadable) {
    let created: number;
    try {
      created = parseBackupId(id).getTime();
    } catch {
      created = NaN; // no time in its name: it may be any point
    }
    const candidate = Number.isNaN(created) ||
      ((at === undefined || created <= at.getTime()) && (chosen === undefined || id > chosen.id));
    if (!candidate) continue;
    const why = await whyUnreadable(storage, key);
    throw new FrostError(
      `${why}; it may be the backup ${at === undefined ? "asked for" : `at or before ${at.toISOString()}`} ` +
        `of "${series}", so no older one is used instead`,
    );
  }
  if (failure !== undefined) throw failure;
  return chain!;
}

/** What is wrong with the manifest at `key` (read again, to name the reason). */
async function whyUnreadable(storage: Storage, key: string): Promise<string> {
  try {
    decodeManifest(await getBytes(storage, key), key);
  } catch (err) {
    return messageOf(err);
  }
  return `Cannot read manifest "${key}"`;
}
