/**
 * `frost remove --name NAME --older-than 30d`: removes whole chains all of whose backups are older than the
 * cut-off, then orphans (data of runs that died; series/orphans.ts). With `--keep-last/-daily/-weekly/-monthly`,
 * chain-aware retention instead (series/retention.ts): what a rule keeps, and every ancestor it needs, stays.
 * @module
 */
import {
  type Command,
  type CommandContext,
  hostnameOption,
  intOption,
  loadHistory,
  nameOption,
  parse,
  parseOrHelp,
  STORAGE_HELP,
  STORAGE_OPTIONS,
  withStorages,
} from "./cli.ts";
import { ExitCode, UsageError } from "../base/errors.ts";
import { deleteBackupObjects, type Manifest, manifestKey, seriesName } from "../series/manifest.ts";
import { formatBytes, parseDate, parseDuration } from "../base/units.ts";
import { deleteOrphans, findOrphans } from "../series/orphans.ts";
import { METRICS_OPTION, metricsHelp } from "./metrics.ts";
import {
  describeDecision,
  hasRules,
  planRetention,
  type RetentionPlan,
  type RetentionPolicy,
} from "../series/retention.ts";
import { acquireLock, type Lock } from "../series/lock.ts";

const USAGE = `Usage: frost remove --name NAME (--older-than AGE | --before DATE | --keep-… N) [options]

With --older-than/--before alone: removes every chain of <hostname>_<name> whose backups are ALL older than
the cut-off, so a backup newer than the cut-off always stays restorable.

With keep rules (restic's policy, UTC): --keep-last N keeps the N newest backups; --keep-daily N the newest
backup of each of the N newest days with backups; --keep-weekly (ISO weeks) and --keep-monthly likewise.
Rules combine; with --older-than/--before too, backups newer than the cut-off are also kept. A kept backup
keeps every ancestor it needs (its parent, the parent's parent, … down to level 0); all else is removed,
newest first. Removing every backup of a series (by keep rules or by a cut-off) is refused unless --all.

Then, in both modes, removes the orphaned data of runs that died (backups without a manifest; under the
lock, whatever their age). --dry-run counts those younger than a day only when no run holds the lock.

Options:
  --name NAME            backup name (required)
  --older-than AGE       cut-off = now - AGE: 30d, 12h, 2w, 6mo, 1y (a bare number is days;
                         a month is 30 days, a year 365; minutes are min: m alone is refused)
  --before DATE          cut-off = DATE (ISO 8601, local time unless a zone is given)
  --keep-last N          keep the N newest backups
  --keep-daily N         keep the newest backup of each of the last N days that have backups
  --keep-weekly N        … of each of the last N weeks (ISO weeks, Monday to Sunday, UTC)
  --keep-monthly N       … of each of the last N months
  --all                  allow removing every backup of the series (refused otherwise)
  --dry-run              show what would be removed (and, with keep rules, why each backup stays), remove
                         nothing
  --json                 print what was (or would be) removed as JSON
${metricsHelp(25)}
  -h, --help             this help

${STORAGE_HELP}`;

/** The remove command. */
/** `frost remove`'s options. */
const REMOVE_OPTIONS = {
  ...STORAGE_OPTIONS,
  "older-than": { type: "string" },
  before: { type: "string" },
  "dry-run": { type: "boolean" },
  "keep-last": { type: "string" },
  "keep-daily": { type: "string" },
  "keep-weekly": { type: "string" },
  "keep-monthly": { type: "string" },
  all: { type: "boolean" },
  ...METRICS_OPTION,
} as const;

type RemoveValues = ReturnType<typeof parse<typeof REMOVE_OPTIONS>>["values"];

export const removeCommand: Command = {
  summary: "remove old backup chains",
  usage: USAGE,
  async run(ctx) {
    const parsed = parseOrHelp(ctx, USAGE, REMOVE_OPTIONS, true);
    if (!parsed) return ExitCode.ok;
    const { values, positionals } = parsed;
    if (positionals.length > 0) throw new UsageError(`Unexpected argument "${positionals[0]}"`);
    const o = removeOptions(values);
    return await withStorages(values, { create: false, ctx }, async (storage) => {
      let lock: Lock | undefined;
      try {
        const { series, dryRun } = o;
        // A dry run only reads; a real one must not interleave with a backup of the series.
        if (!dryRun) lock = await acquireLock(storage, { hostname: o.hostname, name: o.name }, "remove", ctx);
        const history = await loadHistory(storage, series, ctx);
        const { doomed, plan } = chooseDoomed(history, o);
        if (history.length > 0 && doomed.length === history.length && !values.all) {
          throw new UsageError(
            `${plan ? "These keep rules" : "This cut-off"} would remove every backup of "${series}" ` +
              `(${history.length}); add --all to do that`,
          );
        }
        // Under the lock (not --dry-run) every backup without a manifest is an orphan, whatever its age.
        const orphans = await findOrphans(storage, series, { locked: lock !== undefined, now: o.now });
        const doomedBytes = doomed.reduce((n, m) => n + m.totals.bytesStored + m.totals.stateBytes, 0);
        let freed = doomedBytes + orphans.reduce((n, o) => n + o.bytes, 0);
        if (!dryRun) {
          for (const m of doomed) {
            await storage.delete(manifestKey(series, m.id));
            await deleteBackupObjects(storage, series, m.id);
          }
          // With what unfinished writes left, which only the removal itself can count.
          freed = doomedBytes + await deleteOrphans(storage, series, orphans);
        }
        ctx.metrics?.({
          removed_backups: dryRun ? 0 : doomed.length,
          kept_backups: history.length - (dryRun ? 0 : doomed.length),
        });
        report({ history, doomed, plan, orphans, freed }, o, values.json === true, ctx);
        return ExitCode.ok;
      } finally {
        await lock?.release();
      }
    });
  },
};

/** What `frost remove`'s options say. */
interface RemoveSetup {
  name: string;
  hostname: string;
  series: string;
  /** The keep rules; undefined without any (then `cutoff` decides alone). */
  policy: RetentionPolicy | undefined;
  cutoff: Date | undefined;
  dryRun: boolean;
  now: number;
}

/** Checks `frost remove`'s options (usage errors). */
function removeOptions(values: RemoveValues): RemoveSetup {
  const name = nameOption(values.name, "remove");
  const hostname = hostnameOption(values.hostname);
  const policy: RetentionPolicy = {
    last: intOption(values["keep-last"], "--keep-last"),
    daily: intOption(values["keep-daily"], "--keep-daily"),
    weekly: intOption(values["keep-weekly"], "--keep-weekly"),
    monthly: intOption(values["keep-monthly"], "--keep-monthly"),
  };
  const keepRules = hasRules(policy);
  if (values["older-than"] !== undefined && values.before !== undefined) {
    throw new UsageError("--older-than and --before cannot be used together");
  }
  if (!keepRules && values["older-than"] === undefined && values.before === undefined) {
    throw new UsageError(
      "frost remove needs --older-than AGE, --before DATE or a keep rule (--keep-last, --keep-daily, …)",
    );
  }
  const now = Date.now();
  const cutoff = values.before !== undefined
    ? parseDate(values.before)
    : values["older-than"] !== undefined
    ? new Date(now - parseDuration(values["older-than"], "--older-than"))
    : undefined;
  if (keepRules && cutoff) policy.keepNewerThan = cutoff;
  const dryRun = values["dry-run"] ?? false;
  const series = seriesName(hostname, name);
  return { name, hostname, series, policy: keepRules ? policy : undefined, cutoff, dryRun, now };
}

/**
 * The backups to remove, newest first (if a removal stops halfway, no listed backup has lost its parent):
 * by the keep rules (with their plan), else every chain all of whose backups are older than the cut-off.
 */
function chooseDoomed(
  history: readonly Manifest[],
  o: RemoveSetup,
): { doomed: Manifest[]; plan: RetentionPlan | undefined } {
  const byId = new Map(history.map((m) => [m.id, m]));
  const doomed: Manifest[] = [];
  const plan = o.policy
    ? planRetention(
      history.map((m) => ({
        id: m.id,
        parent: m.parent,
        created: new Date(m.created),
        bytes: m.totals.bytesStored + m.totals.stateBytes,
      })),
      o.policy,
    )
    : undefined;
  if (plan) {
    doomed.push(...plan.remove.map((id) => byId.get(id)!));
  } else {
    const chains = new Map<string, Manifest[]>();
    for (const m of history) chains.set(m.chain, [...chains.get(m.chain) ?? [], m]);
    for (const members of chains.values()) {
      if (members.every((m) => new Date(m.created) < o.cutoff!)) doomed.push(...members);
    }
  }
  doomed.sort((a, b) => b.id.localeCompare(a.id));
  return { doomed, plan };
}

/** What was (or, with `--dry-run`, would be) removed, on stdout: lines, or one JSON object. */
function report(
  r: {
    history: readonly Manifest[];
    doomed: Manifest[];
    plan: RetentionPlan | undefined;
    orphans: readonly { id: string }[];
    freed: number;
  },
  o: RemoveSetup,
  json: boolean,
  ctx: CommandContext,
): void {
  const { history, doomed, plan, orphans, freed } = r;
  const { series, dryRun, cutoff } = o;
  const byId = new Map(history.map((m) => [m.id, m]));
  const verb = dryRun ? "Would remove" : "Removed";
  if (json) {
    ctx.stdout(JSON.stringify({
      dryRun,
      cutoff: cutoff?.toISOString() ?? null,
      ...plan && {
        decisions: plan.decisions.map((d) => ({
          id: d.id,
          level: byId.get(d.id)!.level,
          action: d.action,
          ...d.action === "keep" && { rules: d.rules },
          ..."neededBy" in d && { neededBy: d.neededBy },
        })),
      },
      removed: doomed.map((m) => ({ id: m.id, level: m.level, chain: m.chain, created: m.created })),
      orphans: orphans.map((o) => o.id),
      bytes: freed,
    }));
    return;
  }
  if (plan) {
    for (const d of plan.decisions) {
      const m = byId.get(d.id)!;
      const what = d.action === "remove" && !dryRun ? "removed" : describeDecision(d);
      ctx.stdout(`${series} ${m.id} level ${m.level}: ${what}`);
    }
  } else {
    for (const m of doomed) {
      ctx.stdout(`${verb} ${series} ${m.id} (level ${m.level}, chain ${m.chain})`);
    }
  }
  for (const o of orphans) ctx.stdout(`${verb} orphaned data of failed run ${series} ${o.id}`);
  const kept = history.length - doomed.length;
  ctx.stdout(
    `${verb} ${doomed.length} backup${doomed.length === 1 ? "" : "s"} and ${orphans.length} orphan${
      orphans.length === 1 ? "" : "s"
    } (${formatBytes(freed)} freed)${plan ? "" : ` older than ${cutoff!.toISOString()}`}; ${kept} backup${
      kept === 1 ? "" : "s"
    } kept`,
  );
}
