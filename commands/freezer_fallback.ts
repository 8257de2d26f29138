/**
 * A Freezer restore or info line (`frost --action restore|info …`) on a container that Freezer itself wrote:
 * when the storage holds no frost backup of the name but Freezer backups of it, the line runs as
 * `frost freezer restore|list` instead (with a notice), so an existing Freezer restore line works unchanged.
 * @module
 */
import { parseArgs } from "node:util";
import {
  type CommandContext,
  hostnameOption,
  STORAGE_OPTIONS,
  type StorageValues,
  withStorages,
} from "./cli.ts";
import { listSeries, manifestsPrefix, seriesName } from "../series/manifest.ts";
import type { Storage } from "../storage/storage.ts";

/** The options of a translated `restore`/`list` line that matter here (the others pass through). */
const OPTIONS = {
  ...STORAGE_OPTIONS,
  to: { type: "string" },
  date: { type: "string" },
  overwrite: { type: "boolean" },
  "dry-run": { type: "boolean" },
  "encrypt-pass-file": { type: "string" },
} as const;

/** Whether `prefix` holds at least one key. */
async function any(storage: Storage, prefix: string): Promise<boolean> {
  for await (const _ of storage.list(prefix)) return true;
  return false;
}

/**
 * `argv` (a native `restore` or `list` line translated from Freezer's), or the `freezer restore|list` line
 * that reads the Freezer backups on the same storage when it holds no frost backup that matches and
 * Freezer backups that do. Anything else (other commands, a storage that cannot be opened, a `--dry-run`
 * restore, which `frost freezer` does not have) is returned unchanged: the native command then says why.
 */
export async function freezerFallback(
  argv: string[],
  io: { stderr: (line: string) => void },
): Promise<string[]> {
  const [command, ...args] = argv;
  if (command !== "restore" && command !== "list") return argv;
  let values: StorageValues & { name?: string; hostname?: string; "dry-run"?: boolean };
  try {
    values = parseArgs({ args, options: OPTIONS, strict: false, allowPositionals: true })
      .values as typeof values;
  } catch {
    return argv;
  }
  if (values["dry-run"]) return argv;
  if (command === "restore" && values.name === undefined) return argv;
  const ctx: CommandContext = {
    args: [],
    signal: new AbortController().signal,
    stdout: () => {},
    ...io,
    interactive: false,
  };
  // A storage that cannot be opened, or any failure below: the native command runs and says why.
  return await withStorages(values, { create: false, ctx }, async (storage) => {
    let hbn: string | undefined;
    if (values.name !== undefined) {
      hbn = seriesName(hostnameOption(values.hostname), values.name);
      if (await any(storage, manifestsPrefix(hbn))) return argv;
    } else {
      const series = await listSeries(storage);
      const prefix = values.hostname === undefined ? "" : `${values.hostname}_`;
      if (series.some((s) => s.startsWith(prefix))) return argv;
    }
    if (!await any(storage, `metadata/tar/${hbn === undefined ? "" : `${hbn}/`}`)) return argv;
    io.stderr(
      `frost: note: no frost backup${hbn ? ` of "${hbn}"` : ""} in ${storage.url}, but Freezer backups: ` +
        `reading those (as "frost freezer ${command}")`,
    );
    return ["freezer", command, ...args];
  }).catch(() => argv);
}
