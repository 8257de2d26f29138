/**
 * `frost list [--name NAME]`: the committed backups on a storage.
 * @module
 */
import {
  type Command,
  hostnameOption,
  loadHistory,
  parseOrHelp,
  STORAGE_HELP,
  STORAGE_OPTIONS,
  withStorages,
} from "./cli.ts";
import { ExitCode, UsageError } from "../base/errors.ts";
import { checkName, listSeries, type Manifest, seriesName } from "../series/manifest.ts";
import { formatBytes } from "../base/units.ts";
import { formatTime, sharedSeconds } from "../series/time.ts";

const USAGE = `Usage: frost list [--name NAME] [options]

Lists committed backups: all series on the storage, or one with --name (and --hostname).

Options:
  --name NAME            only this backup name (of --hostname, default this machine)
  --hostname HOST        with --name: another machine's backups; alone: all names of that host
  --json                 print a JSON array (id, name, hostname, level, parent, chain, created, bytes, files)
  -h, --help             this help

${STORAGE_HELP}`;

/** The list command. */
export const listCommand: Command = {
  summary: "list backups",
  usage: USAGE,
  async run(ctx) {
    const parsed = parseOrHelp(ctx, USAGE, STORAGE_OPTIONS, true);
    if (!parsed) return ExitCode.ok;
    const { values, positionals } = parsed;
    if (positionals.length > 0) throw new UsageError(`Unexpected argument "${positionals[0]}"`);
    return await withStorages(values, { create: false, ctx }, async (storage) => {
      let series: string[];
      if (values.name !== undefined) {
        series = [seriesName(hostnameOption(values.hostname), checkName(values.name, "--name"))];
      } else {
        series = await listSeries(storage);
        if (values.hostname !== undefined) {
          const prefix = `${checkName(values.hostname, "--hostname")}_`;
          series = series.filter((s) => s.startsWith(prefix));
        }
      }
      const all: Manifest[] = [];
      for (const s of series) {
        all.push(
          ...await loadHistory(storage, s, ctx),
        );
      }
      all.sort((a, b) =>
        a.hostname.localeCompare(b.hostname) || a.name.localeCompare(b.name) || a.id.localeCompare(b.id)
      );
      if (values.json) {
        ctx.stdout(JSON.stringify(
          all.map((m) => ({
            id: m.id,
            name: m.name,
            hostname: m.hostname,
            level: m.level,
            parent: m.parent,
            chain: m.chain,
            created: m.created,
            bytes: m.totals.bytesStored,
            files: m.totals.files,
            bytesIn: m.totals.bytesIn,
            engine: m.engine,
            compression: m.compression,
            encrypted: m.encryption !== null,
          })),
          null,
          2,
        ));
        return ExitCode.ok;
      }
      if (all.length === 0) {
        ctx.stdout(`No backups${values.name ? ` of "${series[0]}"` : ""} in ${storage.url}`);
        return ExitCode.ok;
      }
      // Times in UTC with their zone: "frost restore --date" takes them as shown, in any TZ.
      const precise = sharedSeconds(all);
      const rows = [["NAME", "HOST", "LEVEL", "CREATED", "ID", "PARENT", "SIZE", "FILES"]];
      for (const m of all) {
        rows.push([
          m.name,
          m.hostname,
          String(m.level),
          formatTime(m.created, precise.has(m.id)),
          m.id,
          m.parent ?? "-",
          formatBytes(m.totals.bytesStored),
          String(m.totals.files),
        ]);
      }
      const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
      for (const r of rows) ctx.stdout(r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd());
      return ExitCode.ok;
    });
  },
};
