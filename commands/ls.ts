/**
 * `frost ls --name NAME [--date T] [PATH]`: the files of a backup point as a restore would produce them.
 *
 * Reads the chain's archives (segments checked, decrypted, decompressed: pipeline `openStream`) and replays
 * them on a tree in memory with the tar engine's listing API (engines/tar_list.ts), the way the tar restore
 * replays them on disk. Nothing is written. File data is skipped, not kept.
 * @module
 */
import {
  chooseChain,
  type Command,
  hostnameOption,
  KEY_OPTIONS,
  keyOptions,
  loadHistory,
  nameOption,
  parseOrHelp,
  STORAGE_HELP,
  STORAGE_OPTIONS,
  withStorages,
} from "./cli.ts";
import { ExitCode, FrostError, UsageError } from "../base/errors.ts";
import { seriesName } from "../series/manifest.ts";
import { formatBytes } from "../base/units.ts";
import { relieveMemory } from "../base/memory.ts";
import { setImmediate } from "node:timers";
import { checkSelection, chosenLine } from "../series/time.ts";
import { readDataChunks } from "../pipeline/mod.ts";
import { chainDataKeys } from "../series/keys.ts";
import { type EntryType, normalize, parseShownName, showName, tarReplayer, Tree } from "../engines/mod.ts";

const USAGE = `Usage: frost ls --name NAME [--date T] [PATH] [options]

Lists the files of the newest backup of <hostname>_<name> (or of the newest at or before --date) as a
restore would produce them, after applying the whole chain: type and mode, size, modification time (UTC)
and path. With PATH, only that path and what is below it. Nothing is written. Tar-engine backups only.
A name byte that is not valid UTF-8 is shown as \\xHH and a backslash as \\\\ (PATH and restore's
--include take the same form); --json gives such a byte as the escape \\udcHH (U+DC80 + the byte - 0x80).

Options:
  --name NAME            backup name (required)
  --date T               the newest backup at or before T: a time as "frost list" shows it
                         (2026-12-07T06:08:08Z), a backup id, or ISO 8601 in local time (2026-11-20T10:00)
  --id ID                exactly the backup ID (as "frost list" shows it)
  --encrypt-pass-file F  the passphrase of encrypted backups (or set FROST_PASSPHRASE)
  --encrypt-identity-file F  the identity of backups encrypted to a recipient
  --json                 print a JSON array of {path, type, mode, size, mtime, linkname}
  -h, --help             this help

${STORAGE_HELP}`;

/** The ls command. */
export const lsCommand: Command = {
  summary: "list the files of a backup point as restore would produce them",
  usage: USAGE,
  async run(ctx) {
    const parsed = parseOrHelp(ctx, USAGE, {
      ...STORAGE_OPTIONS,
      date: { type: "string" },
      id: { type: "string" },
      ...KEY_OPTIONS,
    }, true);
    if (!parsed) return ExitCode.ok;
    const { values, positionals } = parsed;
    if (positionals.length > 1) throw new UsageError(`Unexpected argument "${positionals[1]}"`);
    const name = nameOption(values.name, "ls");
    const hostname = hostnameOption(values.hostname);
    const selection = { id: values.id, date: values.date };
    checkSelection(selection);
    const prefix = positionals[0] === undefined
      ? ""
      : normalize(parseShownName(positionals[0]), positionals[0]);

    return await withStorages(values, { create: false, ctx }, async (storage) => {
      const series = seriesName(hostname, name);
      const history = await loadHistory(storage, series, ctx);
      if (history.length === 0) throw new FrostError(`No backup of "${series}" in ${storage.url}`);
      const chain = await chooseChain(storage, series, history, selection);
      ctx.stderr(chosenLine("listing", series, chain[chain.length - 1]!));
      for (const m of chain) {
        if (m.engine !== "tar") {
          throw new FrostError(`frost ls reads tar-engine backups only; backup "${m.id}" uses "${m.engine}"`);
        }
      }
      const keyOpts = await keyOptions(values);
      const keys = await chainDataKeys(chain, keyOpts);

      const tree = new Tree();
      for (const m of chain) {
        const replay = tarReplayer(tree);
        await readDataChunks(storage, m, keys.get(m.id) ?? null, (chunk) => replay.push(chunk), ctx.signal);
        replay.finish();
      }

      if (prefix !== "" && !tree.has(prefix)) {
        throw new FrostError(
          `"${positionals[0]}" is not in backup ${chain[chain.length - 1]!.id} of "${series}"`,
        );
      }
      if (values.json) {
        ctx.stdout(JSON.stringify(
          tree.list(prefix).map(([path, n]) => ({
            path,
            type: n.type,
            mode: n.mode,
            size: n.size,
            mtime: Number.isNaN(n.mtime) ? null : new Date(n.mtime * 1000).toISOString(),
            ...n.linkname && { linkname: n.linkname },
          })),
          null,
          2,
        ));
        return ExitCode.ok;
      }
      // Streamed from the tree: no row array of every path beside it.
      let entries = 0;
      let files = 0;
      let bytes = 0;
      // Lines are printed 1024 at a time, and now and then the event loop gets a turn: stdout drains and the
      // memory watcher looks (Bun kept every printed line, 90 MiB for 200 000, in a loop that never awaits).
      let lines: string[] = [];
      for (const [path, n] of tree.walk(prefix)) {
        if (++entries % 1024 === 0) {
          ctx.stdout(lines.join("\n"));
          lines = [];
          if (entries % 4096 === 0) await new Promise((resolve) => setImmediate(resolve));
          relieveMemory();
        }
        if (n.type === "file") {
          files++;
          bytes += n.size;
        }
        const time = Number.isNaN(n.mtime)
          ? "-".padEnd(19)
          : new Date(n.mtime * 1000).toISOString().slice(0, 19).replace("T", " ");
        const link = n.type === "symlink"
          ? ` -> ${showName(n.linkname)}`
          : n.type === "hardlink"
          ? ` (hard link of ${showName(n.linkname)})`
          : "";
        lines.push(
          `${typeChar(n.type)}${modeString(n.mode)} ${String(n.size).padStart(12)} ${time} ${
            showName(path)
          }${link}`,
        );
      }
      if (lines.length > 0) ctx.stdout(lines.join("\n"));
      ctx.stderr(`${entries} entries, ${files} files, ${formatBytes(bytes)}`);
      return ExitCode.ok;
    });
  },
};

function typeChar(type: EntryType): string {
  return { file: "-", dir: "d", symlink: "l", hardlink: "-", char: "c", block: "b", fifo: "p" }[type];
}

function modeString(mode: number): string {
  const rwx = (bits: number, special: boolean, char: string) =>
    (bits & 4 ? "r" : "-") + (bits & 2 ? "w" : "-") +
    (special ? (bits & 1 ? char : char.toUpperCase()) : bits & 1 ? "x" : "-");
  return rwx(mode >> 6, (mode & 0o4000) !== 0, "s") + rwx(mode >> 3, (mode & 0o2000) !== 0, "s") +
    rwx(mode, (mode & 0o1000) !== 0, "t");
}
