/**
 * OpenStack Freezer's command line (`freezer-agent --action … --path-to-backup … --container …`) and its
 * INI config file (`--config FILE`, `[default]` section), translated into a native frost command line, so
 * that an existing Freezer cron line keeps working with `frost` in place of `freezer-agent`.
 *
 * - `--action backup` (the default) → `frost backup PATH --name N …`; `restore` → `frost restore --to DIR`;
 *   `info` → `frost list`; `admin` → `frost remove --older-than Nd | --before DATE`.
 * - `--storage local|swift|s3|ssh|ftp|ftps` with `--container` and the companion options → one `--storage`
 *   URL (and `[storage:NAME]` sections of the INI file → several). Secrets (`--secret-key`, `--access-key`,
 *   `--ftp-password`) never go into the native argv: they come back as environment variables to set in
 *   this process (`AWS_SECRET_ACCESS_KEY`, `FROST_FTP_PASSWORD`, …), where the storages read them.
 * - Freezer's level quirks that are not bugs are kept (`--max-level 0` and `--always-level 0` mean "no
 *   limit"; with both options the one Freezer's rules let act wins); its bugs are not (frost's level and
 *   removal rules apply, see series/levels.ts and commands/remove.ts).
 * - Modes other than `fs` (mysql, mongo, sqlserver, nova, cinder, glance), snapshots (`--snapshot`,
 *   `--lvm-*`) and other engines than tar and rsync are usage errors naming the option.
 * @module
 */
import fs from "node:fs";
import path from "node:path";
import process from "node:process";
import { ExitCode, messageOf, UsageError } from "../base/errors.ts";
import { parseDate, parseSize } from "../base/units.ts";
import { backupCommand } from "./backup.ts";
import { restoreCommand } from "./restore.ts";
import { removeCommand } from "./remove.ts";
import { freezerFallback } from "./freezer_fallback.ts";
import { closest } from "./cli_options.ts";

/** A native frost command line, and what to set in this process's environment before running it. */
export interface FreezerTranslation {
  /** The native argv, e.g. `["backup", "/etc", "--name", "etc", "--storage", "/srv/b"]`. Never a secret. */
  argv: string[];
  /** Environment variables to set (a string) or unset (`undefined`) in this process: credentials, proxy. */
  env: Record<string, string | undefined>;
  /** One-line notes for stderr: Freezer options that frost accepts but does not act on. */
  notes: string[];
  /** `--help` was given: show {@linkcode FREEZER_HELP} instead of running anything. */
  help?: boolean;
}

/** Options of {@linkcode translateFreezerArgs}. */
export interface TranslateOptions {
  /** Reads the `--config` file (default: `fs.readFileSync(file, "utf8")`). */
  readFile?: (file: string) => string;
  /** Whether the native `command` takes `option` (default: read from the commands' help texts). */
  hasOption?: (command: string, option: string) => boolean;
}

type Kind = "string" | "boolean" | "list";

interface OptionSpec {
  kind: Kind;
  /** One-letter form (`-F`). */
  short?: string;
  /** Other (deprecated) names, in key form. */
  aliases?: string[];
  /** Accepted and not acted on: silently, or with this note. */
  ignored?: true | string;
  /** Refused when set (to anything but false/empty): why frost cannot do it. */
  unsupported?: string;
}

const SNAPSHOT = "LVM and VSS snapshots are not supported by frost: take the snapshot yourself and back " +
  "up its mount point";
const OPENSTACK = "OpenStack volume, instance and image backups are not supported by frost (only --mode fs)";
const DATABASE = "database modes are not supported by frost (only --mode fs: back up a dump or a snapshot)";

/** Freezer's options, by key (the option name without dashes, `-` → `_`, as in its INI file). */
const OPTIONS: Record<string, OptionSpec> = {
  action: { kind: "string" },
  path_to_backup: { kind: "string", short: "F" },
  backup_name: { kind: "string", short: "N" },
  container: { kind: "string", short: "C" },
  storage: { kind: "string" },
  hostname: { kind: "string", aliases: ["restore_from_host"] },
  mode: { kind: "string", short: "m" },
  engine: { kind: "string", short: "e", aliases: ["engine_name"] },
  backup_media: { kind: "string" },
  incremental: { kind: "boolean" },
  no_incremental: { kind: "boolean" },
  max_level: { kind: "string" },
  always_level: { kind: "string" },
  restart_always_level: { kind: "string" },
  remove_older_than: { kind: "string", short: "R", aliases: ["remove_older_then"] },
  remove_from_date: { kind: "string" },
  restore_abs_path: { kind: "string" },
  restore_from_date: { kind: "string" },
  overwrite: { kind: "boolean" },
  dry_run: { kind: "boolean" },
  compression: { kind: "string" },
  encrypt_pass_file: { kind: "string" },
  exclude: { kind: "list" },
  max_segment_size: { kind: "string", short: "M" },
  upload_limit: { kind: "string" },
  download_limit: { kind: "string" },
  ssh_host: { kind: "string" },
  ssh_username: { kind: "string" },
  ssh_key: { kind: "string" },
  ssh_port: { kind: "string" },
  ssh_password: {
    kind: "string",
    unsupported: "SFTP password authentication is not supported by frost: use --ssh-key",
  },
  ftp_host: { kind: "string" },
  ftp_username: { kind: "string" },
  ftp_password: { kind: "string" },
  ftp_port: { kind: "string" },
  ftp_keyfile: {
    kind: "string",
    unsupported: "FTPS client certificates are not supported by frost (--ftp-ca-file checks the server)",
  },
  ftp_certfile: {
    kind: "string",
    unsupported: "FTPS client certificates are not supported by frost (--ftp-ca-file checks the server)",
  },
  access_key: { kind: "string" },
  secret_key: { kind: "string" },
  endpoint: { kind: "string" },
  proxy: { kind: "string" },
  config: { kind: "string" },
  debug: { kind: "boolean", short: "d" },
  consistency_check: {
    kind: "boolean",
    ignored: "--consistency-check is ignored: frost checks every segment's SHA-256 on restore " +
      "(and frost verify --read-data checks a whole chain)",
  },
  log_file: { kind: "string", ignored: "--log-file is ignored: frost writes to stdout and stderr" },
  log_dir: { kind: "string", ignored: "--log-dir is ignored: frost writes to stdout and stderr" },
  log_config_append: {
    kind: "string",
    ignored: "--log-config-append is ignored: frost writes to stdout and stderr",
  },
  // Process tuning and logging that changes nothing in what is backed up or restored.
  quiet: { kind: "boolean", short: "q", ignored: true },
  verbose: { kind: "boolean", short: "v", ignored: true },
  use_syslog: { kind: "boolean", ignored: true },
  log_level: { kind: "string", ignored: true },
  sync: { kind: "boolean", ignored: true },
  timeout: { kind: "string", ignored: true },
  max_priority: { kind: "string", ignored: true },
  os_identity_api_version: { kind: "string", aliases: ["os_auth_ver"], ignored: true },
  rsync_block_size: { kind: "string", ignored: true },
  temp_resource_prefix: { kind: "string", ignored: true },
  // Refused: what frost does not do.
  snapshot: { kind: "boolean", short: "s", unsupported: SNAPSHOT },
  lvm_auto_snap: { kind: "string", unsupported: SNAPSHOT },
  lvm_srcvol: { kind: "string", unsupported: SNAPSHOT },
  lvm_snapname: { kind: "string", unsupported: SNAPSHOT },
  lvm_snap_perm: { kind: "string", aliases: ["lvm_snapperm"], unsupported: SNAPSHOT },
  lvm_snapsize: { kind: "string", unsupported: SNAPSHOT },
  lvm_dirmount: { kind: "string", unsupported: SNAPSHOT },
  lvm_volgroup: { kind: "string", unsupported: SNAPSHOT },
  vssadmin: { kind: "boolean", unsupported: SNAPSHOT },
  mysql_conf: { kind: "string", unsupported: DATABASE },
  sql_server_conf: { kind: "string", unsupported: DATABASE },
  cinder_vol_id: { kind: "string", unsupported: OPENSTACK },
  cinder_vol_name: { kind: "string", unsupported: OPENSTACK },
  cinderbrick_vol_id: { kind: "string", unsupported: OPENSTACK },
  cindernative_vol_id: { kind: "string", unsupported: OPENSTACK },
  cindernative_backup_id: { kind: "string", unsupported: OPENSTACK },
  fullbackup_rotation: { kind: "string", unsupported: OPENSTACK },
  nova_inst_id: { kind: "string", unsupported: OPENSTACK },
  nova_inst_name: { kind: "string", unsupported: OPENSTACK },
  nova_restore_network: { kind: "string", unsupported: OPENSTACK },
  glance_image_id: { kind: "string", unsupported: OPENSTACK },
  glance_image_name: { kind: "string", unsupported: OPENSTACK },
  glance_image_name_filter: { kind: "string", unsupported: OPENSTACK },
  project_id: { kind: "string", unsupported: OPENSTACK },
  command: {
    kind: "string",
    unsupported: "--action exec is not supported by frost (run the command from cron directly)",
  },
  metadata_out: {
    kind: "string",
    unsupported: "not supported by frost: use the native commands' --json summary",
  },
  consistency_checksum: {
    kind: "string",
    unsupported: "not supported by frost: frost checks every segment's SHA-256 " +
      "on restore",
  },
  dereference_symlink: {
    kind: "string",
    unsupported: "not supported by frost: symlinks are stored as links",
  },
  insecure: {
    kind: "boolean",
    unsupported: "not supported by frost: TLS certificates are always checked",
  },
};

/** Key forms of every name and alias → canonical key; one-letter forms → key. */
const BY_NAME = new Map<string, string>();
const BY_SHORT = new Map<string, string>();
for (const [key, spec] of Object.entries(OPTIONS)) {
  BY_NAME.set(key, key);
  for (const alias of spec.aliases ?? []) BY_NAME.set(alias, key);
  if (spec.short) BY_SHORT.set(spec.short, key);
}

const ACTIONS = ["backup", "restore", "info", "admin", "exec"];
const STORAGES = ["local", "swift", "s3", "ssh", "ftp", "ftps"];
const TRUE_WORDS = new Set(["true", "yes", "1", "on"]);
const FALSE_WORDS = new Set(["false", "no", "0", "off", "none"]);

/** One option's value and where it came from, for messages. */
interface Setting {
  value: string | boolean | string[];
  /** How to name it in a message: `--max-level` or `max_level in /etc/freezer.ini`. */
  shown: string;
  /** For a value from the INI file: its key as written there, and the file (and section). */
  ini?: { name: string; where: string };
}

type Settings = Map<string, Setting>;

/** The `[default]` options and `[storage:NAME]` sections of a Freezer INI file, keys in key form. */
export interface FreezerIni {
  defaults: Record<string, string>;
  storages: { name: string; values: Record<string, string> }[];
}

/**
 * Parses a Freezer INI file as Python's configparser does: `[section]` headers, `key = value` or
 * `key: value`, whole-line comments (`#`, `;`), indented continuation lines, keys case-insensitive, `%%` and
 * `%(key)s` interpolation. Keys are returned in key form (lowercase, `-` → `_`). Every section except
 * `[storage:NAME]` ones adds to the defaults, in file order (as Freezer merges them); `[DEFAULT]` keys are
 * the lowest-precedence defaults. Throws `UsageError` naming the file and line.
 */
export function parseFreezerIni(text: string, file: string): FreezerIni {
  const sections: { name: string; values: Record<string, string> }[] = [];
  const fileDefaults: Record<string, string> = {};
  let current: Record<string, string> | undefined;
  let lastKey: string | undefined;
  const lines = text.replace(/^\uFEFF/, "").split(/\r?\n/);
  lines.forEach((raw, i) => {
    const where = `${file} line ${i + 1}`;
    const line = raw.trimEnd();
    const trimmed = line.trim();
    if (trimmed === "") {
      lastKey = undefined;
      return;
    }
    if (trimmed.startsWith("#") || trimmed.startsWith(";")) return;
    if (/^\s/.test(line) && current && lastKey !== undefined) {
      current[lastKey] = `${current[lastKey]}\n${trimmed}`;
      return;
    }
    const header = /^\[([^\]]+)\]$/.exec(trimmed);
    if (header) {
      const name = header[1]!.trim();
      if (name === "DEFAULT") {
        current = fileDefaults;
      } else {
        const existing = sections.find((s) => s.name === name);
        current = existing?.values ?? {};
        if (!existing) sections.push({ name, values: current });
      }
      lastKey = undefined;
      return;
    }
    const m = /^([^=:]+?)\s*[=:]\s*(.*)$/.exec(trimmed);
    if (!m) throw new UsageError(`Cannot read ${where}: expected "key = value" or a [section] header`);
    if (!current) throw new UsageError(`Cannot read ${where}: "${m[1]}" comes before any [section] header`);
    lastKey = keyForm(m[1]!);
    current[lastKey] = m[2]!;
  });
  const interpolate = (values: Record<string, string>, key: string, depth = 0): string => {
    const value = values[key] ?? fileDefaults[key]!;
    if (depth > 10) throw new UsageError(`Cannot read ${file}: "${key}" refers to itself`);
    return value.replace(/%(%|\(([^)]*)\)s)/g, (_all, what: string, ref?: string) => {
      if (what === "%") return "%";
      const name = keyForm(ref!);
      if (values[name] === undefined && fileDefaults[name] === undefined) {
        throw new UsageError(`Cannot read ${file}: "${key}" refers to "%(${ref})s", which is not set`);
      }
      return interpolate(values, name, depth + 1);
    });
  };
  const resolve = (values: Record<string, string>) =>
    Object.fromEntries(Object.keys({ ...fileDefaults, ...values }).map((k) => [k, interpolate(values, k)]));
  const ini: FreezerIni = { defaults: resolve({}), storages: [] };
  for (const s of sections) {
    if (s.name.startsWith("storage:")) ini.storages.push({ name: s.name, values: resolve(s.values) });
    else Object.assign(ini.defaults, resolve(s.values));
  }
  return ini;
}

/** `Path-To-Backup` → `path_to_backup`. */
function keyForm(name: string): string {
  return name.trim().toLowerCase().replaceAll("-", "_");
}

/** `path_to_backup` → `--path-to-backup`. */
function optionForm(key: string): string {
  return `--${key.replaceAll("_", "-")}`;
}

/** Parses Freezer's command line into settings; throws `UsageError` for an unknown option. */
function parseCommandLine(args: string[]): { settings: Settings; help: boolean; version: boolean } {
  const settings: Settings = new Map();
  let help = false;
  let version = false;
  const set = (key: string, value: string | boolean, shown: string) => {
    const spec = OPTIONS[key]!;
    if (spec.kind === "list") {
      const previous = settings.get(key)?.value;
      settings.set(key, { value: [...Array.isArray(previous) ? previous : [], String(value)], shown });
    } else {
      settings.set(key, { value, shown });
    }
  };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "-h" || arg === "--help") {
      help = true;
      continue;
    }
    if (arg === "--version") {
      version = true;
      continue;
    }
    let key: string | undefined;
    let inline: string | undefined;
    let shown: string;
    let negated = false;
    if (arg.startsWith("--") && arg.length > 2) {
      const eq = arg.indexOf("=");
      const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
      if (eq !== -1) inline = arg.slice(eq + 1);
      shown = `--${name}`;
      const form = keyForm(name);
      key = BY_NAME.get(form);
      if (key === undefined && form.startsWith("no")) {
        // oslo.config's negative form of a boolean: --nooverwrite, --nosync.
        const positive = BY_NAME.get(form.slice(2).replace(/^_/, ""));
        if (positive !== undefined && OPTIONS[positive]!.kind === "boolean") {
          key = positive;
          negated = true;
        }
      }
    } else if (/^-[A-Za-z]/.test(arg)) {
      key = BY_SHORT.get(arg[1]!);
      shown = arg.slice(0, 2);
      if (arg.length > 2) inline = arg.slice(2);
    } else {
      throw new UsageError(
        `Unexpected argument "${arg}" (Freezer-style command lines take options only, e.g. --path-to-backup ${arg})`,
      );
    }
    if (key === undefined) {
      const typed = shown.replace(/=.*$/, "");
      const near = typed.startsWith("--")
        ? closest(typed.slice(2).replace(/-/g, "_"), BY_NAME.keys())?.replace(/_/g, "-")
        : undefined;
      if (near !== undefined) throw new UsageError(`Unknown option "${typed}" (did you mean --${near}?)`);
      throw new UsageError(
        `Unknown option "${shown.replace(/=.*$/, "")}": not a Freezer option (frost's own options follow a ` +
          `command: frost backup|restore|list|remove|… --name …)`,
      );
    }
    const spec = OPTIONS[key]!;
    if (spec.kind === "boolean") {
      let value = !negated;
      const word = inline ?? (TRUE_WORDS.has(args[i + 1]?.toLowerCase() ?? "") ||
          FALSE_WORDS.has(args[i + 1]?.toLowerCase() ?? "")
        ? args[++i]
        : undefined);
      if (word !== undefined) value = booleanValue(word, shown) !== negated;
      set(key, value, shown);
      continue;
    }
    let value = inline;
    if (value === undefined) {
      if (i + 1 >= args.length) throw new UsageError(`Option "${shown}" needs a value`);
      value = args[++i]!;
    }
    set(key, value, shown);
  }
  return { settings, help, version };
}

/** Freezer's INI values that mean "not set": empty, False, None. */
function isUnset(value: string): boolean {
  return ["", "false", "none"].includes(value.trim().toLowerCase());
}

function booleanValue(word: string, shown: string): boolean {
  const w = word.trim().toLowerCase();
  if (TRUE_WORDS.has(w)) return true;
  if (FALSE_WORDS.has(w)) return false;
  throw new UsageError(`Invalid ${shown} "${word}": expected true or false`);
}

/** Adds the INI file's values to `settings` for the keys the command line did not set. */
function addIniValues(settings: Settings, values: Record<string, string>, where: string): void {
  for (const [name, raw] of Object.entries(values)) {
    const key = BY_NAME.get(name);
    const shown = `${name} in ${where}`;
    const ini = { name, where };
    if (key === undefined) {
      throw new UsageError(`Unknown option "${name}" in ${where}: not a Freezer option frost knows`);
    }
    if (settings.has(key)) continue; // the command line wins
    const spec = OPTIONS[key]!;
    if (spec.kind === "boolean") {
      settings.set(key, { value: booleanValue(raw === "" ? "false" : raw, shown), shown, ini });
      continue;
    }
    if (isUnset(raw)) continue; // Freezer turns "False" and "None" into "not set"
    settings.set(key, { value: spec.kind === "list" ? [raw] : raw, shown, ini });
  }
}

/** Reads settings. */
class Reader {
  constructor(readonly settings: Settings) {}
  str(key: string): string | undefined {
    const v = this.settings.get(key)?.value;
    if (v === undefined || typeof v === "boolean") return undefined;
    return Array.isArray(v) ? v.at(-1) : v;
  }
  list(key: string): string[] {
    const v = this.settings.get(key)?.value;
    return Array.isArray(v) ? v : typeof v === "string" ? [v] : [];
  }
  bool(key: string): boolean {
    return this.settings.get(key)?.value === true;
  }
  shown(key: string): string {
    return this.settings.get(key)?.shown ?? optionForm(key);
  }
  /** The option with its value, as given: `--mode mysql` or `mode = mysql in /etc/freezer.ini`. */
  given(key: string): string {
    const s = this.settings.get(key);
    const v = this.str(key);
    return s?.ini ? `${s.ini.name} = ${v} in ${s.ini.where}` : `${this.shown(key)} ${v}`;
  }
  /** A whole number option; Freezer's 0 ("falsy") is returned as undefined when `zeroUnset`. */
  int(key: string, zeroUnset: boolean): number | undefined {
    const v = this.str(key);
    if (v === undefined) return undefined;
    if (!/^\s*\d+\s*$/.test(v)) {
      throw new UsageError(`Invalid ${this.shown(key)} "${v}": expected a whole number of 0 or more`);
    }
    const n = Number(v);
    return zeroUnset && n === 0 ? undefined : n;
  }
  /** A number of days (Freezer's FloatOpt). */
  days(key: string): string | undefined {
    const v = this.str(key)?.trim();
    if (v === undefined) return undefined;
    if (!/^(\d+(\.\d*)?|\.\d+)$/.test(v)) {
      throw new UsageError(`Invalid ${this.shown(key)} "${v}": expected a number of days`);
    }
    return v;
  }
}

/** Refuses options frost does not support, naming each. */
function checkSupported(r: Reader): void {
  const mode = r.str("mode");
  if (mode !== undefined && mode !== "fs") {
    const why = ["mysql", "mongo", "sqlserver"].includes(mode)
      ? DATABASE
      : ["nova", "cinder", "cindernative", "cinderbrick", "glance"].includes(mode)
      ? OPENSTACK
      : "not supported by frost (only --mode fs)";
    throw new UsageError(`${r.given("mode")}: ${why}`);
  }
  const media = r.str("backup_media");
  if (media !== undefined && media !== "fs") {
    throw new UsageError(`${r.given("backup_media")}: ${OPENSTACK}`);
  }
  const engine = r.str("engine");
  if (engine !== undefined && engine !== "tar" && engine !== "rsync") {
    throw new UsageError(
      `${r.given("engine")}: not supported by frost (engines: tar, rsync)`,
    );
  }
  const action = r.str("action");
  if (action === "exec") {
    throw new UsageError(
      `${r.given("action")}: not supported by frost (run the command from cron directly)`,
    );
  }
  if (action !== undefined && !ACTIONS.includes(action)) {
    throw new UsageError(`Invalid ${r.shown("action")} "${action}": expected backup, restore, info or admin`);
  }
  for (const [key, setting] of r.settings) {
    const spec = OPTIONS[key]!;
    if (spec.unsupported === undefined) continue;
    const v = setting.value;
    const set = v === true || (typeof v === "string" && !isUnset(v)) || (Array.isArray(v) && v.length > 0);
    if (set) throw new UsageError(`${setting.shown}: ${spec.unsupported}`);
  }
}

/** What a storage contributes: its `--storage` spec, other native options, environment variables. */
interface StoragePart {
  spec: string;
  flags: string[];
  env: Record<string, string | undefined>;
}

/**
 * Freezer's `--storage` and `--container` (and companions) as a frost storage spec: local → the folder,
 * swift → `swift://container[/prefix]`, s3 → `s3://bucket[/prefix]`, ssh → `sftp://user@host:port/path`,
 * ftp/ftps → `ftp[s]://user@host:port/path` (a relative container is relative to the login folder).
 */
function storagePart(r: Reader, env: Record<string, string | undefined>): StoragePart {
  const kind = (r.str("storage") ?? "swift").toLowerCase();
  if (!STORAGES.includes(kind)) {
    throw new UsageError(
      `Invalid ${r.shown("storage")} "${r.str("storage")}": Freezer's storages are ${STORAGES.join(", ")} ` +
        `(the place goes in --container; frost's own commands take frost COMMAND --storage PATH|URL)`,
    );
  }
  const container = r.str("container") ?? "freezer_backups";
  if (container.trim() === "") throw new UsageError(`${r.shown("container")} is empty`);
  const part: StoragePart = { spec: "", flags: [], env: {} };
  switch (kind) {
    case "local":
      part.spec = path.resolve(container);
      break;
    case "swift":
      part.spec = `swift://${container.replace(/^\/+/, "")}`;
      break;
    case "s3": {
      part.spec = `s3://${container.replace(/^\/+/, "")}`;
      // Freezer falls back to $ACCESS_KEY, $SECRET_KEY and $ENDPOINT.
      const endpoint = r.str("endpoint") || env.ENDPOINT || undefined;
      if (endpoint !== undefined) part.flags.push("--s3-endpoint", endpoint, "--s3-path-style");
      const access = r.str("access_key") || env.ACCESS_KEY || undefined;
      const secret = r.str("secret_key") || env.SECRET_KEY || undefined;
      if (access !== undefined) part.env.AWS_ACCESS_KEY_ID = access;
      if (secret !== undefined) part.env.AWS_SECRET_ACCESS_KEY = secret;
      break;
    }
    case "ssh": {
      const host = r.str("ssh_host");
      if (!host) throw new UsageError(`--storage ssh needs --ssh-host HOST`);
      part.spec = remoteUrl("sftp", r.str("ssh_username"), host, port(r, "ssh_port"), container);
      const key = r.str("ssh_key");
      if (key) part.flags.push("--sftp-key", key);
      break;
    }
    case "ftp":
    case "ftps": {
      const host = r.str("ftp_host");
      if (!host) throw new UsageError(`--storage ${kind} needs --ftp-host HOST`);
      part.spec = remoteUrl(kind, r.str("ftp_username"), host, port(r, "ftp_port"), container);
      const password = r.str("ftp_password");
      if (password !== undefined) part.env.FROST_FTP_PASSWORD = password;
      break;
    }
  }
  return part;
}

function port(r: Reader, key: string): number | undefined {
  const n = r.int(key, false);
  if (n !== undefined && (n < 1 || n > 65535)) {
    throw new UsageError(`Invalid ${r.shown(key)} "${n}": expected a port number from 1 to 65535`);
  }
  return n;
}

function remoteUrl(
  scheme: string,
  user: string | undefined,
  host: string,
  port: number | undefined,
  dir: string,
) {
  const shownHost = host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
  // A relative container is relative to the login folder: frost's "/~/rel".
  const absolute = dir.startsWith("/");
  const clean = path.posix.normalize(dir).replace(/\/+$/, "");
  const parts = absolute ? clean.split("/").slice(1) : clean === "." ? ["~"] : ["~", ...clean.split("/")];
  const encoded = parts.map((p) => p === "~" ? p : encodeURIComponent(p)).join("/");
  return `${scheme}://${user ? `${encodeURIComponent(user)}@` : ""}${shownHost}${
    port === undefined ? "" : `:${port}`
  }/${encoded}`;
}

/** Adds `part`'s variables to `env`; the same variable with two values (two storages) is refused. */
function mergeEnv(env: Record<string, string | undefined>, part: Record<string, string | undefined>) {
  for (const [k, v] of Object.entries(part)) {
    if (k in env && env[k] !== v) {
      throw new UsageError(`Several storages with different credentials (${k}) are not supported by frost`);
    }
    env[k] = v;
  }
}

function defaultHasOption(command: string, option: string): boolean {
  const usage: Record<string, string> = {
    backup: backupCommand.usage,
    restore: restoreCommand.usage,
    remove: removeCommand.usage,
  };
  return new RegExp(`(^|\\s)${option}(\\s|$)`, "m").test(usage[command] ?? "");
}

/** The Freezer `--restore-from-date`/`--remove-from-date` value, checked; a whole second includes all of it. */
function freezerDate(r: Reader, key: string): string | undefined {
  const v = r.str(key)?.trim();
  if (v === undefined) return undefined;
  try {
    parseDate(v);
  } catch (err) {
    throw new UsageError(`Invalid ${r.shown(key)}: ${messageOf(err)}`);
  }
  // Freezer's timestamps are whole seconds and a backup at exactly that second counts; frost's have
  // milliseconds, so the whole second is taken.
  return /^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}$/.test(v) ? `${v}.999` : v;
}

/**
 * Translates a Freezer-style command line (and the INI file its `--config` names; command-line values win)
 * into a native frost argv, the environment variables to set, and notes. Throws `UsageError` for an unknown
 * option, a bad value, a missing required option, or what frost does not support (naming the option).
 *
 * @example
 * ```ts
 * import { translateFreezerArgs } from "./freezer_agent.ts";
 * const t = translateFreezerArgs(["--action", "backup", "-F", "/etc", "-N", "etc", "--storage", "local",
 *   "--container", "/srv/backups", "--incremental", "--max-level", "3"]);
 * console.log(t.argv.join(" ")); // backup /etc --name etc --storage /srv/backups --max-level 3
 * ```
 */
export function translateFreezerArgs(args: string[], options: TranslateOptions = {}): FreezerTranslation {
  const { settings, help, version } = parseCommandLine(args);
  if (help) return { argv: [], env: {}, notes: [], help: true };
  if (version) return { argv: ["--version"], env: {}, notes: [] };
  const r = new Reader(settings);
  const processEnv = process.env;
  let storageSections: FreezerIni["storages"] = [];
  const configFile = r.str("config");
  if (configFile !== undefined) {
    let text: string;
    try {
      text = (options.readFile ?? ((f: string) => fs.readFileSync(f, "utf8")))(configFile);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const why = code === "ENOENT"
        ? "no such file"
        : code === "EACCES"
        ? "permission denied"
        : messageOf(err);
      throw new UsageError(`Cannot read ${r.shown("config")} "${configFile}": ${why}`);
    }
    const ini = parseFreezerIni(text, configFile);
    addIniValues(settings, ini.defaults, configFile);
    storageSections = ini.storages;
  }
  checkSupported(r);

  const notes: string[] = [];
  for (const [key, setting] of settings) {
    const ignored = OPTIONS[key]!.ignored;
    if (typeof ignored === "string" && setting.value !== false) {
      notes.push(ignored.replace(/^--[a-z-]+/, setting.shown));
    }
  }
  const env: Record<string, string | undefined> = {};
  if (r.bool("debug")) env.FROST_DEBUG = "1";
  const proxy = r.str("proxy");
  if (proxy !== undefined) {
    // Freezer sets (or with '' clears) HTTP_PROXY and HTTPS_PROXY for its own process.
    for (const name of ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"]) {
      env[name] = proxy === "" ? undefined : proxy;
    }
  }

  // Storages: [storage:NAME] sections replace the single --storage/--container (as in Freezer).
  const storageArgs: string[] = [];
  const parts = storageSections.length === 0 ? [storagePart(r, processEnv)] : storageSections.map((s) => {
    const own: Settings = new Map();
    addIniValues(own, s.values, `[${s.name}] of ${configFile}`);
    checkSupported(new Reader(own));
    return storagePart(new Reader(own), processEnv);
  });
  const flags = new Map<string, string | true>();
  for (const part of parts) {
    storageArgs.push("--storage", part.spec);
    mergeEnv(env, part.env);
    for (let i = 0; i < part.flags.length; i++) {
      const flag = part.flags[i]!;
      const value = part.flags[i + 1]?.startsWith("--") === false ? part.flags[++i]! : true;
      const previous = flags.get(flag);
      if (previous !== undefined && previous !== value) {
        throw new UsageError(`Several storages with different ${flag} values are not supported by frost`);
      }
      flags.set(flag, value);
    }
  }
  for (const [flag, value] of flags) storageArgs.push(...value === true ? [flag] : [flag, value]);
  const action = r.str("action") ?? "backup";
  const hostname = r.str("hostname");
  const common = [...storageArgs, ...hostname === undefined ? [] : ["--hostname", hostname]];
  const limits = (keys: string[]) =>
    keys.flatMap((key) => {
      const v = r.str(key)?.trim();
      if (v === undefined || v === "-1") return [];
      parseSize(v, r.shown(key));
      return [optionForm(key), v];
    });
  const name = () => {
    const n = r.str("backup_name");
    if (n === undefined || n === "") {
      throw new UsageError(`--action ${action} needs --backup-name/-N NAME (frost has no default name)`);
    }
    return n;
  };
  const hasOption = options.hasOption ?? defaultHasOption;
  const dryRun = (command: string): string[] => {
    if (!r.bool("dry_run")) return [];
    if (hasOption(command, "--dry-run")) return ["--dry-run"];
    throw new UsageError(
      `${r.shown("dry_run")} with --action ${action} is not supported: frost ${command} has no dry run`,
    );
  };
  const encryption = () => {
    const f = r.str("encrypt_pass_file");
    return f === undefined ? [] : ["--encrypt-pass-file", f];
  };

  let argv: string[];
  switch (action) {
    case "backup": {
      const source = r.str("path_to_backup");
      if (source === undefined || source === "") {
        throw new UsageError("--action backup needs --path-to-backup/-F PATH");
      }
      argv = ["backup", source, "--name", name(), ...common, ...levelArgs(r)];
      const engine = r.str("engine");
      if (engine !== undefined) argv.push("--engine", engine);
      const compression = r.str("compression");
      if (compression === "gzip") argv.push("--compression", "gzip");
      else if (compression !== undefined) {
        if (compression !== "bzip2" && compression !== "xz") {
          throw new UsageError(
            `Invalid ${r.shown("compression")} "${compression}": expected gzip, bzip2 or xz`,
          );
        }
        notes.push(
          `${r.given("compression")}: frost writes zstd instead (it reads Freezer's own)`,
        );
      }
      const segment = r.str("max_segment_size")?.trim();
      if (segment !== undefined) {
        argv.push("--segment-size", String(parseSize(segment, r.shown("max_segment_size"))));
      }
      for (const pattern of r.list("exclude")) argv.push("--exclude", pattern);
      argv.push(...encryption(), ...limits(["upload_limit", "download_limit"]), ...dryRun("backup"));
      break;
    }
    case "restore": {
      const target = r.str("restore_abs_path");
      if (target === undefined || target === "") {
        throw new UsageError("--action restore needs --restore-abs-path DIR");
      }
      argv = ["restore", "--name", name(), "--to", target, ...common];
      const date = freezerDate(r, "restore_from_date");
      if (date !== undefined) argv.push("--date", date);
      if (r.bool("overwrite")) argv.push("--overwrite");
      argv.push(...encryption(), ...limits(["upload_limit", "download_limit"]), ...dryRun("restore"));
      break;
    }
    case "info": {
      const n = r.str("backup_name");
      argv = ["list", ...common, ...n ? ["--name", n] : [], ...limits(["download_limit"])];
      break;
    }
    case "admin": {
      argv = ["remove", "--name", name(), ...common];
      // As in Freezer, --remove-from-date wins over --remove-older-than.
      const date = freezerDate(r, "remove_from_date");
      const days = r.days("remove_older_than");
      if (date !== undefined) argv.push("--before", date);
      else if (days !== undefined) argv.push("--older-than", `${days}d`);
      else {
        throw new UsageError("--action admin needs --remove-older-than DAYS or --remove-from-date DATE");
      }
      argv.push(...limits(["download_limit"]), ...dryRun("remove"));
      break;
    }
    default:
      throw new UsageError(`Invalid --action "${action}"`);
  }
  return { argv, env, notes };
}

/**
 * Freezer's level options as frost's. Kept from Freezer: 0 means "not set" for `--max-level`,
 * `--always-level` and `--restart-always-level`, and with both `--max-level` and `--always-level` the one
 * that acts under Freezer's rules is passed (max-level when it is not above always-level). The level options
 * need no `--incremental` (older Freezer versions did not ask for it either).
 */
function levelArgs(r: Reader): string[] {
  let max = r.int("max_level", true);
  let always = r.int("always_level", true);
  const restart = r.days("restart_always_level");
  const incremental = r.bool("incremental");
  if (r.bool("no_incremental") && (incremental || max !== undefined || always !== undefined)) {
    throw new UsageError(
      `${r.shown("no_incremental")} cannot be used with --incremental, --max-level or --always-level`,
    );
  }
  if (max !== undefined && always !== undefined) {
    if (max <= always) always = undefined;
    else max = undefined;
  }
  const out: string[] = [];
  if (max !== undefined) out.push("--max-level", String(max));
  if (always !== undefined) out.push("--always-level", String(always));
  if (incremental && max === undefined && always === undefined) out.push("--incremental");
  if (restart !== undefined && Number(restart) > 0) out.push("--restart-always-level", restart);
  return out;
}

/** The help shown for `--help` in a Freezer-style command line. */
export const FREEZER_HELP = `Usage: frost --action backup|restore|info|admin [Freezer options] [--config FILE]

OpenStack Freezer's agent command line, translated to frost's commands (a freezer-agent cron line keeps
working with "frost" in its place). Backups are frost backups: "frost list" shows them.

  --action backup (default)   frost backup PATH --name NAME
    -F, --path-to-backup PATH  -N, --backup-name NAME   --hostname HOST   --exclude GLOB
    --incremental  --max-level N  --always-level N  --restart-always-level DAYS   (0 = no limit, as in Freezer)
    -e, --engine tar|rsync   --compression gzip   -M, --max-segment-size BYTES   --encrypt-pass-file FILE
  --action restore            frost restore --to DIR [--date T]
    --restore-abs-path DIR   --restore-from-date YYYY-MM-DDThh:mm:ss   --overwrite   [--dry-run]
  --action info               frost list [--name NAME]
  --action admin              frost remove (chains all of whose backups are older than the cut-off)
    -R, --remove-older-than DAYS   --remove-from-date YYYY-MM-DDThh:mm:ss   [--dry-run]

Storage (-C, --container is the place; default swift, freezer_backups):
  --storage local   --container DIR
  --storage swift   --container CONTAINER[/PREFIX]        (credentials: OS_* or ST_* variables)
  --storage s3      --container BUCKET[/PREFIX] [--endpoint URL --access-key K --secret-key S]
  --storage ssh     --container DIR --ssh-host H [--ssh-username U --ssh-port P --ssh-key FILE]
  --storage ftp|ftps --container DIR --ftp-host H [--ftp-username U --ftp-port P --ftp-password W]
  --upload-limit / --download-limit BYTES_PER_SECOND

--config FILE reads Freezer's INI file: [default] keys are these option names (path_to_backup or
path-to-backup), [storage:NAME] sections add storages; command-line options win over the file.
Not supported (usage error): --mode other than fs, --snapshot and --lvm-*, engines other than tar and rsync,
--action exec, --metadata-out, --dereference-symlink, --insecure.`;

/**
 * Runs a Freezer-style command line: translates it, prints notes, sets the environment variables (secrets
 * stay out of every argv) and calls `run` with the native argv. A translation error is one line on stderr
 * and exit code 2.
 */
export async function runFreezerAgent(
  args: string[],
  run: (argv: string[]) => Promise<number>,
  io: { stdout: (line: string) => void; stderr: (line: string) => void } = {
    stdout: (line) => process.stdout.write(line + "\n"),
    stderr: (line) => process.stderr.write(line + "\n"),
  },
): Promise<number> {
  let t: FreezerTranslation;
  try {
    t = translateFreezerArgs(args);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    io.stderr(`frost: ${err.message}; see frost --action backup --help`);
    return ExitCode.usage;
  }
  if (t.help) {
    io.stdout(FREEZER_HELP);
    return ExitCode.ok;
  }
  for (const note of t.notes) io.stderr(`frost: note: ${note}`);
  for (const [name, value] of Object.entries(t.env)) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
  // A restore or info line on a container Freezer wrote reads Freezer's backups (freezer_fallback.ts).
  return await run(await freezerFallback(t.argv, io));
}
