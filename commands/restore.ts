/**
 * `frost restore --name NAME --to DIR [--date T]`: applies the chain of the newest backup at or before T.
 * @module
 */
import fs from "node:fs";
import path from "node:path";
import {
  absolute,
  chooseChain,
  type Command,
  type CommandContext,
  hostnameOption,
  intOption,
  KEY_OPTIONS,
  keyOptions,
  loadHistory,
  nameOption,
  parse,
  parseOrHelp,
  ProgressLine,
  STORAGE_HELP,
  STORAGE_OPTIONS,
  typeChar,
  withStorages,
} from "./cli.ts";
import { ExitCode, FrostError, InterruptedError, UsageError } from "../base/errors.ts";
import { type Manifest, manifestsPrefix, seriesName } from "../series/manifest.ts";
import { formatBytes } from "../base/units.ts";
import { checkSelection, chosenLine, formatTime, type Selection } from "../series/time.ts";
import { readState, readStateChunks, runRestore } from "../pipeline/mod.ts";
import { engineForBackup } from "../engines/registry.ts";
import { chainDataKeys, chainStateKeys, stateKeyOf } from "../series/keys.ts";
import {
  type IncludeSelector,
  includeSelector,
  keepingSelect,
  parseShownName,
  showName,
} from "../engines/mod.ts";
import { countTree, type Deletion, planRestore, pruneTarget, type RestorePlan } from "./_restore_plan.ts";
import { inside, localStoragePaths, realPath } from "./_local_storage.ts";
import type { KeyOptions } from "../series/keys.ts";
import type { Engine, RestoreStats, StateEntry } from "../engines/engine.ts";
import { STDIN_ENGINE, stdinEngine } from "../engines/stdin.ts";
import type { Storage } from "../storage/storage.ts";
import { type DataKey, openText, streamId } from "../codec/encryption.ts";

const USAGE = `Usage: frost restore --name NAME --to DIR [options]
       frost restore --name NAME --stdout [options]       (a backup made with frost backup --stdin)
       frost restore --name NAME --plan [--json] [options]

Restores the newest backup of <hostname>_<name> (or the newest at or before --date) into DIR,
applying its chain from level 0.

Options:
  --name NAME            backup name (required)
  --to DIR               target directory; created if missing, must be empty unless --overwrite
  --date T               the newest backup at or before T: a time as "frost list" shows it
                         (2026-12-07T06:08:08Z), a backup id, or ISO 8601 in local time (2026-11-20T10:00)
  --id ID                exactly the backup ID (as "frost list" shows it), e.g. 20261207T060808.622Z
  --overwrite            restore into a non-empty DIR, replacing what the backup holds
  --overwrite            restore into a non-empty DIR: what the backup holds is replaced, everything
                         else is kept (only the chain's own deletions replay: what an earlier level of
                         the chain held and the restored point lacks)
  --delete               with --overwrite: make DIR an exact mirror of the backup point (within the
                         --include patterns), deleting what the backup does not hold, like rsync --delete
  --include PATTERN      restore only matching paths and what is below them (repeatable): paths as
                         "frost ls" shows them (\\xHH for a byte that is not UTF-8), globs * ? [..] **
                         allowed, e.g. nginx 'ssl/**' for a backup of /etc
  --dry-run              list what would be created, replaced and deleted in DIR; write nothing
  --no-xattrs            do not restore extended attributes, POSIX ACLs, capabilities, SELinux labels
  --no-devices           skip device nodes (e.g. from an untrusted backup), each with a notice
  --plan                 show the objects and bytes the restore would read (no --to needed)
  --stdout               write a --stdin backup to standard output instead of a file in DIR
  --queue-size N         segments downloaded at once from a remote storage (default 2)
  --encrypt-pass-file F  the passphrase of encrypted backups (first line of F; or set FROST_PASSPHRASE)
  --encrypt-identity-file F  the identity of backups encrypted to a recipient (frost key generate)
  --json                 print a one-object summary on stdout
  -h, --help             this help

${STORAGE_HELP}`;

/** `frost restore`'s options. */
const RESTORE_OPTIONS = {
  ...STORAGE_OPTIONS,
  to: { type: "string" },
  date: { type: "string" },
  id: { type: "string" },
  overwrite: { type: "boolean" },
  delete: { type: "boolean" },
  include: { type: "string", multiple: true },
  "dry-run": { type: "boolean" },
  "no-xattrs": { type: "boolean" },
  "no-devices": { type: "boolean" },
  plan: { type: "boolean" },
  stdout: { type: "boolean" },
  "queue-size": { type: "string", default: "2" },
  ...KEY_OPTIONS,
} as const;

type RestoreValues = ReturnType<typeof parse<typeof RESTORE_OPTIONS>>["values"];

/** The restore command. */
export const restoreCommand: Command = {
  summary: "restore a backup into a directory",
  usage: USAGE,
  async run(ctx) {
    const parsed = parseOrHelp(ctx, USAGE, RESTORE_OPTIONS, true);
    if (!parsed) return ExitCode.ok;
    const { values, positionals } = parsed;
    if (positionals.length > 0) throw new UsageError(`Unexpected argument "${positionals[0]}"`);
    const o = restoreOptions(values);
    return await withStorages(values, { create: false, ctx }, async (storage) => {
      const { series, target, toStdout, plan, dryRun } = o;
      const history = await loadHistory(storage, series, ctx);
      if (history.length === 0) throw new FrostError(`No backup of "${series}" in ${storage.url}`);
      const chain = await chooseChain(storage, series, history, o.selection);
      const newest = chain[chain.length - 1]!;
      // Which backup was chosen, always: on stderr when stdout carries data.
      const dataOnStdout = toStdout || plan || dryRun || (values.json ?? false);
      (dataOnStdout ? ctx.stderr : ctx.stdout)(
        chosenLine(plan || dryRun ? "planning the restore of" : "restoring", series, newest),
      );
      if (plan) return await printPlan(ctx, storage, series, chain, values.json ?? false);
      if (toStdout && newest.engine !== STDIN_ENGINE) {
        throw new UsageError(
          `--stdout restores backups made with "frost backup --stdin"; ${series} ${newest.id} is a ${newest.engine}-engine backup (use --to DIR)`,
        );
      }
      // Every key is opened before the target is touched: a wrong passphrase writes nothing.
      const keyOpts = await keyOptions(values);
      const keys = await chainDataKeys(chain, keyOpts);
      const point = await planPoint(storage, chain, keys, keyOpts, o, ctx);
      if (dryRun) {
        const { entries, selector, restorePlan } = point;
        return printDryRun(
          ctx,
          series,
          chain,
          target!,
          entries!,
          selector,
          restorePlan!,
          values.json ?? false,
        );
      }
      // The states tell which files a later level stores whole: those are written once (see runRestore).
      const stateKeys = await chainStateKeys(chain, keyOpts);
      const { stats, warnings, seconds } = await applyChain(storage, chain, keys, point, o, {
        xattrs: !values["no-xattrs"],
        devices: !values["no-devices"],
        stateKeys,
      }, ctx);
      report(ctx, o, chain, point.restorePlan, stats, seconds, warnings, values.json ?? false);
      return warnings > 0 ? ExitCode.warnings : ExitCode.ok;
    });
  },
};

/** What `frost restore`'s options say, checked before any storage is opened. */
interface RestoreSetup {
  series: string;
  includes: string[];
  plan: boolean;
  dryRun: boolean;
  toStdout: boolean;
  /** `--delete`. */
  mirror: boolean;
  overwrite: boolean;
  /** `--to`, absolute. */
  target: string | undefined;
  /** Local storage folders inside the target (relative to it): left as they are. */
  kept: string[];
  selection: Selection;
  queueSize: number;
}

/** Checks `frost restore`'s options (usage errors). */
function restoreOptions(values: RestoreValues): RestoreSetup {
  const name = nameOption(values.name, "restore");
  const hostname = hostnameOption(values.hostname);
  const includes = values.include ?? [];
  for (const p of includes) {
    if (p.trim() === "") throw new UsageError("--include needs a path or pattern");
    if (p.split("/").includes("..")) throw new UsageError(`Invalid --include "${p}": ".." is not allowed`);
  }
  const plan = values.plan ?? false;
  const dryRun = values["dry-run"] ?? false;
  const toStdout = values.stdout ?? false;
  if (plan && (dryRun || toStdout)) {
    throw new UsageError("--plan cannot be combined with --dry-run or --stdout");
  }
  if (toStdout && values.to !== undefined) throw new UsageError("Choose one of --to DIR and --stdout");
  if (toStdout && dryRun) throw new UsageError("--dry-run lists what would be written into --to DIR");
  if (!plan && !toStdout && values.to === undefined) throw new UsageError("frost restore needs --to DIR");
  const mirror = values.delete ?? false;
  if (mirror && !(values.overwrite ?? false)) {
    throw new UsageError(
      "--delete deletes what the backup does not hold in --to DIR: it needs --overwrite",
    );
  }
  if (mirror && (toStdout || plan)) throw new UsageError("--delete applies to a restore into --to DIR");
  const target = values.to === undefined ? undefined : absolute(values.to);
  // A restore never writes into a local storage folder, nor removes one that lies inside its target.
  const kept: string[] = [];
  if (target !== undefined) {
    const real = realPath(target);
    for (const store of localStoragePaths(values.storage)) {
      if (inside(real, store) !== undefined) {
        throw new UsageError(
          `Cannot restore into "${target}": it is ${
            real === store ? "the storage folder" : `inside the storage folder "${store}"`
          } (restore into another folder)`,
        );
      }
      const rel = inside(store, real);
      if (rel !== undefined) kept.push(rel);
    }
  }
  const selection = { id: values.id, date: values.date };
  checkSelection(selection);
  const queueSize = intOption(values["queue-size"], "--queue-size", 1)!;
  const overwrite = values.overwrite ?? false;
  const series = seriesName(hostname, name);
  return { series, includes, plan, dryRun, toStdout, mirror, overwrite, target, kept, selection, queueSize };
}

/** What the restore of a point does: its selection, the entries it writes and its effect on the target. */
interface PointPlan {
  selector: IncludeSelector | undefined;
  /** The point's entries (selected ones); undefined when only counted (`lean`) or not read (stdout). */
  entries: StateEntry[] | undefined;
  restorePlan: RestorePlan | undefined;
  /** The target before the restore (undefined with --stdout). */
  before: TargetState | undefined;
  select: ReturnType<typeof keepingSelect>;
  engines: (engine: string) => Engine;
}

/**
 * Reads the newest backup's state (the tree this restore produces: what --dry-run shows, what each
 * --include must match, and the file a stdin backup restores to) and plans what the restore does to the
 * target.
 */
async function planPoint(
  storage: Storage,
  chain: readonly Manifest[],
  keys: Awaited<ReturnType<typeof chainDataKeys>>,
  keyOpts: KeyOptions,
  o: RestoreSetup,
  ctx: CommandContext,
): Promise<PointPlan> {
  const { series, includes, dryRun, mirror, kept, target, toStdout } = o;
  const newest = chain[chain.length - 1]!;
  const source = await sourceOf(newest, keys.get(newest.id));
  const patterns = includes.map((shown) => {
    const p = parseShownName(shown, { glob: true }); // "caf\xe9": a name that is not UTF-8
    return source && source !== "/" && p.startsWith(source + "/") ? p.slice(source.length + 1) : p;
  });
  const selector = patterns.length > 0 ? includeSelector(patterns) : undefined;
  let entries: StateEntry[] | undefined;
  // Into a new or empty target (or standard output) the plan is "create everything": the state is
  // streamed and counted, not held (100 000 entries would cost tens of MiB).
  const before = target === undefined ? undefined : targetState(target);
  const lean = !dryRun && !mirror && kept.length === 0 && before !== "busy";
  let summary: EntrySummary | undefined;
  if (!toStdout || selector || newest.engine === STDIN_ENGINE) {
    const stateKey = await stateKeyOf(newest.id, newest.encryption, keyOpts);
    if (stateKey === "unavailable") {
      throw new FrostError(`Cannot read the state of ${series} ${newest.id}: no key for it was given`);
    }
    if (lean) {
      summary = await summarizeEntries(storage, newest, stateKey, selector, patterns, ctx.signal);
    } else entries = await listEntries(storage, newest, stateKey, selector, ctx.signal);
    for (const [i, p] of patterns.entries()) {
      if (summary ? !summary.covered[i] : !entries!.some((e) => selector!.covers(p, e.path))) {
        throw new FrostError(
          `--include "${includes[i]}" matches nothing in ${series} ${newest.id}; nothing was restored ` +
            `(patterns are paths inside the backup${source ? ` of ${source}` : ""}, as frost ls shows them)`,
        );
      }
    }
  }
  const engines = (engine: string) =>
    engine === STDIN_ENGINE
      ? stdinEngine({
        file: summary ? summary.firstFile : entries?.find((e) => e.type === "file")?.path,
        output: toStdout ? stdoutOf(ctx) : undefined,
      })
      : engineForBackup(engine);

  // What the restore does to a target that holds something already (nothing, for a new or empty one).
  let restorePlan: RestorePlan | undefined;
  const select = keepingSelect(selector ? (p, isDir) => selector.select(p, isDir) : undefined, kept);
  if (target !== undefined) {
    checkTarget(target, o.overwrite);
    for (const k of kept) {
      ctx.stderr(
        `frost: notice: the storage folder "${
          path.join(target, k)
        }" lies inside the target: it is left as it is`,
      );
    }
    if (summary) {
      // What planRestore gives for a new target (every entry) or an empty one (all but the root).
      restorePlan = {
        created: before === "empty" ? summary.nonRoot : summary.count,
        replaced: new Set(),
        deleted: [],
      };
    } else {
      const point = kept.length > 0
        ? entries!.filter((e) => select!(e.path, e.type === "dir") !== "out")
        : entries!;
      const earlier = before === "busy" && !mirror
        ? await earlierPaths(storage, chain, keyOpts, selector, ctx.signal)
        : [];
      restorePlan = planRestore({ target, entries: point, earlier, mirror, select });
      entries = point;
    }
  }
  return { selector, entries, restorePlan, before, select, engines };
}

/**
 * Applies the chain, oldest first, into the target (or standard output) with a progress line; an
 * interrupted run says what it left. Then, with --delete, prunes what the point does not hold.
 */
async function applyChain(
  storage: Storage,
  chain: readonly Manifest[],
  keys: Awaited<ReturnType<typeof chainDataKeys>>,
  point: PointPlan,
  o: RestoreSetup,
  flags: { xattrs: boolean; devices: boolean; stateKeys: ReadonlyMap<string, DataKey> },
  ctx: CommandContext,
): Promise<{ stats: RestoreStats; warnings: number; seconds: number }> {
  const { series, target } = o;
  const { engines, select } = point;
  // Into an empty target, what an interrupted run leaves is counted exactly (see interruptedRestore).
  const startedEmpty = point.before !== "busy";
  if (target !== undefined) prepareTarget(target, o.overwrite);

  const progress = new ProgressLine(ctx);
  const total = chain.reduce((n, m) => n + m.totals.bytesStored, 0);
  const started = performance.now();
  let warnings = 0;
  let written = 0;
  const stats = await runRestore({
    storage,
    engines,
    chain,
    keys,
    target: target ?? process.cwd(),
    queueSize: o.queueSize,
    select,
    emptyTarget: target !== undefined && startedEmpty,
    ...flags,
    signal: ctx.signal,
    onProgress: (p) => {
      written = p.files;
      progress.update(() => {
        const seconds = (performance.now() - started) / 1000;
        const rate = p.read / Math.max(seconds, 0.001);
        const eta = rate > 0 ? Math.max(0, (total - p.read) / rate) : 0;
        return `restore ${series} level ${p.level}: ${p.files} files, ${formatBytes(p.bytes)} written, ` +
          `${formatBytes(rate)}/s, ETA ${Math.ceil(eta)} s`;
      });
    },
    onWarning: (w) => {
      if (progress.warning(w)) warnings++;
    },
  }).catch((err) => {
    progress.clear();
    throw ctx.signal.aborted ? interruptedRestore(target, startedEmpty ? undefined : written, err) : err;
  });
  progress.clear();
  if (o.mirror) pruneTarget(target!, point.entries!, select);
  const seconds = Math.round(performance.now() - started) / 1000;
  return { stats, warnings, seconds };
}

/** The restore's summary: one line (or JSON), on stderr with --stdout (stdout carries the data). */
function report(
  ctx: CommandContext,
  o: RestoreSetup,
  chain: readonly Manifest[],
  restorePlan: RestorePlan | undefined,
  stats: RestoreStats,
  seconds: number,
  warnings: number,
  json: boolean,
): void {
  const { series, target, toStdout } = o;
  const newest = chain[chain.length - 1]!;
  const created = restorePlan?.created ?? stats.files;
  const replaced = restorePlan?.replaced.size ?? 0;
  const deleted = restorePlan?.deleted.length ?? 0;
  const where = target ?? "standard output";
  // With --stdout the summary goes to stderr: stdout carries the restored bytes.
  const say = toStdout ? ctx.stderr : ctx.stdout;
  if (json) {
    say(JSON.stringify({
      id: newest.id,
      created: newest.created,
      level: newest.level,
      chain: chain.map((m) => m.id),
      target: where,
      files: stats.files,
      bytes: stats.bytes,
      bytesSkipped: stats.skipped ?? 0,
      entriesCreated: created,
      entriesReplaced: replaced,
      entriesDeleted: deleted,
      deleted,
      seconds,
      warnings,
    }));
  } else {
    // File data of earlier levels that a later one stores whole again was not written (see runRestore).
    const skipped = stats.skipped ? ` (${formatBytes(stats.skipped)} of older copies skipped)` : "";
    say(
      `Restored ${series} ${newest.id} (${
        formatTime(newest.created)
      }, level ${newest.level}, ${chain.length} backup${
        chain.length === 1 ? "" : "s"
      } applied) into ${where}: ${created} created, ${replaced} replaced, ${deleted} deleted, ${
        formatBytes(stats.bytes)
      } written${skipped} in ${seconds.toFixed(1)} s`,
    );
  }
}

/** The backed-up path of a backup (unsealed with its data key when encrypted), if known. */
async function sourceOf(m: Manifest, key: DataKey | undefined): Promise<string | null> {
  if (m.source !== null) return m.source;
  if (!m.sealedSource || !key) return null;
  return await openText(
    key,
    streamId(m.id, "manifest"),
    m.sealedSource,
    `the source path of backup "${m.id}"`,
  );
}

function stdoutOf(ctx: CommandContext): WritableStream<Uint8Array> {
  if (!ctx.stdoutBytes) throw new FrostError("Standard output is not available here");
  return ctx.stdoutBytes();
}

/** What a restore into a new or empty target needs of a backup point's entries (see `summarizeEntries`). */
interface EntrySummary {
  /** Entries (those the selector restores), the root included. */
  count: number;
  /** Entries but the root (""). */
  nonRoot: number;
  /** The first regular file's path (the file a stdin backup restores to). */
  firstFile: string | undefined;
  /** For each --include pattern, whether some entry is covered by it. */
  covered: boolean[];
}

/** The counts of `listEntries`' entries, streamed through once: nothing per entry is kept. */
async function summarizeEntries(
  storage: Storage,
  manifest: Manifest,
  key: DataKey | null,
  selector: IncludeSelector | undefined,
  patterns: readonly string[],
  signal: AbortSignal,
): Promise<EntrySummary> {
  const summary: EntrySummary = {
    count: 0,
    nonRoot: 0,
    firstFile: undefined,
    covered: patterns.map(() => false),
  };
  const counter = selector ? undefined : engineForBackup(manifest.engine).countEntries?.();
  if (counter) {
    // Only the count is needed: the state's bytes are counted in reused buffers, no object per entry.
    await readStateChunks(storage, manifest, key, (chunk) => counter.push(chunk), signal);
    return { ...summary, ...counter.end() };
  }
  await forSelectedEntries(storage, manifest, key, selector, signal, (e) => {
    summary.count++;
    if (e.path !== "") summary.nonRoot++;
    if (summary.firstFile === undefined && e.type === "file") summary.firstFile = e.path;
    for (const [i, p] of patterns.entries()) {
      if (!summary.covered[i] && selector!.covers(p, e.path)) summary.covered[i] = true;
    }
  });
  return summary;
}

/** The entries of a backup point's tree (from its engine state), those a selector restores only. */
async function listEntries(
  storage: Storage,
  manifest: Manifest,
  key: DataKey | null,
  selector: IncludeSelector | undefined,
  signal: AbortSignal,
): Promise<StateEntry[]> {
  const out: StateEntry[] = [];
  await forSelectedEntries(storage, manifest, key, selector, signal, (e) => out.push(e));
  return out;
}

/** Calls `each` with the entries of a backup point's tree (from its engine state) that a selector restores. */
async function forSelectedEntries(
  storage: Storage,
  manifest: Manifest,
  key: DataKey | null,
  selector: IncludeSelector | undefined,
  signal: AbortSignal,
  each: (e: StateEntry) => void,
): Promise<void> {
  const engine = engineForBackup(manifest.engine);
  for await (const e of engine.entries(readState(storage, manifest, key, signal))) {
    if (!selector || selector.select(e.path, e.type === "dir") === "in") each(e);
  }
}

/**
 * `restore --dry-run`: what the restore would do, with sizes: each entry it writes (created, or replacing
 * what the target has there) and each existing entry it deletes.
 */
function printDryRun(
  ctx: CommandContext,
  series: string,
  chain: readonly Manifest[],
  target: string,
  entries: readonly StateEntry[],
  selector: IncludeSelector | undefined,
  plan: RestorePlan,
  json: boolean,
): number {
  const newest = chain[chain.length - 1]!;
  // The root entry is the target itself: shown only when the whole tree is restored.
  const shown = entries.filter((e) => e.path !== "" || !selector);
  const files = shown.filter((e) => e.type === "file");
  const bytes = files.reduce((n, e) => n + e.size, 0);
  const action = (e: StateEntry) => e.path === "" ? "keep" : plan.replaced.has(e.path) ? "replace" : "create";
  if (json) {
    ctx.stdout(JSON.stringify({
      id: newest.id,
      created: newest.created,
      level: newest.level,
      chain: chain.map((m) => m.id),
      target,
      entries: shown.map((e) => ({
        path: e.path === "" ? "." : e.path,
        type: e.type,
        size: e.size,
        action: action(e),
      })),
      deletions: plan.deleted,
      files: files.length,
      bytes,
      entriesCreated: plan.created,
      entriesReplaced: plan.replaced.size,
      entriesDeleted: plan.deleted.length,
    }));
    return ExitCode.ok;
  }
  for (const e of shown) {
    ctx.stdout(
      `${action(e).padEnd(7)} ${typeChar(e.type)} ${String(e.size).padStart(12)} ${
        e.path === "" ? "." : showName(e.path)
      }`,
    );
  }
  for (const d of plan.deleted) {
    ctx.stdout(`${"delete".padEnd(7)} ${DELETED_CHARS[d.type]} ${"".padStart(12)} ${showName(d.path)}`);
  }
  ctx.stdout(
    `Would restore ${series} ${newest.id} (level ${newest.level}, ${chain.length} backup${
      chain.length === 1 ? "" : "s"
    }) into ${target}: ${plan.created} created, ${plan.replaced.size} replaced, ${plan.deleted.length} deleted, ${
      formatBytes(bytes)
    } in ${files.length} files (dry run: nothing written)`,
  );
  return ExitCode.ok;
}

const DELETED_CHARS: Record<Deletion["type"], string> = { dir: "d", file: "-", symlink: "l", other: "?" };

/**
 * The paths that the earlier levels of the chain held (selected ones): the chain's own deletions replay for
 * these, and only these, when restoring into a target that holds something already.
 */
async function earlierPaths(
  storage: Storage,
  chain: readonly Manifest[],
  keyOpts: KeyOptions,
  selector: IncludeSelector | undefined,
  signal: AbortSignal,
): Promise<Set<string>> {
  const out = new Set<string>();
  for (const m of chain.slice(0, -1)) {
    const key = await stateKeyOf(m.id, m.encryption, keyOpts);
    if (key === "unavailable") {
      throw new FrostError(`Cannot read the state of ${m.id}: no key for it was given`);
    }
    for (const e of await listEntries(storage, m, key, selector, signal)) out.add(e.path);
  }
  return out;
}

/** `restore --plan`: the objects a restore of this point reads, and their bytes. */
async function printPlan(
  ctx: CommandContext,
  storage: Storage,
  series: string,
  chain: readonly Manifest[],
  json: boolean,
): Promise<number> {
  // A restore lists and reads the series' manifests to find the chain, then the chain's data segments.
  let manifestCount = 0;
  let manifestBytes = 0;
  for await (const info of storage.list(manifestsPrefix(series))) {
    if (!info.key.endsWith(".json")) continue;
    manifestCount++;
    manifestBytes += info.size;
  }
  const members = chain.map((m) => ({
    id: m.id,
    level: m.level,
    created: m.created,
    engine: m.engine,
    compression: m.compression,
    encrypted: m.encryption !== null,
    objects: m.segments.map((s) => ({ key: s.key, size: s.size })),
    bytes: m.segments.reduce((n, s) => n + s.size, 0),
  }));
  const dataBytes = members.reduce((n, m) => n + m.bytes, 0);
  const dataObjects = members.reduce((n, m) => n + m.objects.length, 0);
  const newest = chain[chain.length - 1]!;
  if (json) {
    ctx.stdout(JSON.stringify(
      {
        id: newest.id,
        series,
        storage: storage.url,
        manifests: { objects: manifestCount, bytes: manifestBytes },
        chain: members,
        objects: manifestCount + dataObjects,
        bytes: manifestBytes + dataBytes,
      },
      null,
      2,
    ));
    return ExitCode.ok;
  }
  ctx.stdout(`Restore of ${series} ${newest.id} from ${storage.url} reads:`);
  ctx.stdout(`  ${manifestCount} manifests of ${series}, ${formatBytes(manifestBytes)} (to find the chain)`);
  for (const m of members) {
    ctx.stdout(
      `  level ${m.level} ${m.id}: ${m.objects.length} object${m.objects.length === 1 ? "" : "s"}, ${
        formatBytes(m.bytes)
      } (${m.engine}, ${m.compression}${m.encrypted ? ", encrypted" : ""})`,
    );
    for (const o of m.objects) ctx.stdout(`    ${o.key}  ${o.size}`);
  }
  ctx.stdout(
    `Total: ${manifestCount + dataObjects} objects, ${formatBytes(manifestBytes + dataBytes)} (${
      formatBytes(dataBytes)
    } of data in ${chain.length} backup${chain.length === 1 ? "" : "s"}, applied oldest first)`,
  );
  return ExitCode.ok;
}

/**
 * Checks, writing nothing, that a restore could go into `target`: a directory, empty unless `overwrite`.
 * Returns false when it does not exist yet.
 */
function checkTarget(target: string, overwrite: boolean): boolean {
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(target);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw new FrostError(`Cannot restore into "${target}": ${(err as Error).message}`, { cause: err });
  }
  if (!st.isDirectory()) throw new FrostError(`Cannot restore into "${target}": not a directory`);
  if (!overwrite && fs.readdirSync(target).length > 0) {
    throw new FrostError(
      `Cannot restore into "${target}": it is not empty (use --overwrite to restore into it)`,
    );
  }
  return true;
}

/** Creates the restore target, or checks that it is a directory and empty unless `overwrite`. */
export function prepareTarget(target: string, overwrite: boolean): void {
  if (checkTarget(target, overwrite)) return;
  try {
    fs.mkdirSync(target, { recursive: true });
  } catch (err) {
    throw new FrostError(`Cannot create restore target "${target}": ${(err as Error).message}`, {
      cause: err,
    });
  }
}

/**
 * What an interrupted restore left, said instead of "nothing was committed" (a restore writes as it goes):
 * the entries now in a target that was empty, else `written` as last reported by the engine.
 */
function interruptedRestore(target: string | undefined, written: number | undefined, cause: unknown) {
  if (target === undefined) {
    return new InterruptedError("restore interrupted: the stream on standard output is incomplete", {
      cause,
    });
  }
  let entries = written ?? 0;
  if (written === undefined) {
    entries = countTree(target);
  }
  return new InterruptedError(
    `restore interrupted: ${entries} entr${entries === 1 ? "y" : "ies"} written to ${target}; ` +
      `run it again with --overwrite to finish`,
    { cause },
  );
}

/** What a restore target holds before the restore: nothing yet ("new"), an empty folder, or anything else. */
type TargetState = "new" | "empty" | "busy";

function targetState(dir: string): TargetState {
  try {
    return fs.readdirSync(dir).length === 0 ? "empty" : "busy";
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "ENOENT" ? "new" : "busy"; // not a folder: checkTarget says
  }
}
