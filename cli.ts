/**
 * Shared pieces of the command line: option parsing, the storage and name options every command takes,
 * and the progress line.
 * @module
 */
import os from "node:os";
import path from "node:path";
import { parseArgs, type ParseArgsConfig } from "node:util";
import { UsageError } from "./errors.ts";
import { checkName } from "./manifest.ts";
import type { Storage } from "./storage/storage.ts";
import { defaultStoragePath, openStorage } from "./storage/registry.ts";

/** What every command receives: its arguments and a place to print. */
export interface CommandContext {
  args: string[];
  signal: AbortSignal;
  stdout: (line: string) => void;
  stderr: (line: string) => void;
  /** True when stderr is a terminal (progress lines are shown then). */
  interactive: boolean;
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
  storage: { type: "string" },
  hostname: { type: "string" },
  name: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const satisfies Options;

/** Parses a command's arguments; unknown options and missing values are usage errors. */
export function parse<T extends Options>(args: string[], options: T, positionals = false) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: positionals });
  } catch (err) {
    // node's messages name the option; keep them on one line.
    const message = err instanceof Error ? err.message.split("\n")[0]! : String(err);
    throw new UsageError(message.replace(/\. To specify a positional argument.*$/, ""));
  }
}

/** The storage spec from `--storage`, `$FROST_STORAGE`, or the documented default folder. */
export function storageSpec(value: string | undefined): string {
  return value ?? defaultStoragePath();
}

/** Opens the storage named by `--storage` (or the default). */
export function openStorageOption(value: string | undefined, create: boolean): Promise<Storage> {
  return openStorage(storageSpec(value), { create });
}

/** This machine's hostname made key-safe (dots and dashes stay; anything else becomes "-"). */
export function defaultHostname(): string {
  const host = os.hostname().replace(/[^A-Za-z0-9._+@-]/g, "-").replace(/^[^A-Za-z0-9]+/, "");
  return host || "localhost";
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
  if (!/^\d+(\.\d+)?$/.test(value)) throw new UsageError(`Invalid ${option} "${value}": expected a number ≥ 0`);
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
}
