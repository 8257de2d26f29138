/**
 * The engines frost knows, by the name recorded in manifests.
 * @module
 */
import type { Engine } from "./engine.ts";
import { tarEngine } from "./tar.ts";
import { rsyncEngine } from "./rsync.ts";
import { STDIN_ENGINE, stdinEngine } from "./stdin.ts";
import { FrostError, UsageError } from "../base/errors.ts";

const ENGINES: Record<string, Engine> = { tar: tarEngine, rsync: rsyncEngine };

/** Names accepted by `--engine`. */
export const ENGINE_NAMES = Object.keys(ENGINES);

/** The engine for `--engine NAME` (a usage error when unknown). */
export function engineForOption(name: string): Engine {
  const engine = ENGINES[name];
  if (!engine) throw new UsageError(`Unknown engine "${name}": choose one of ${ENGINE_NAMES.join(", ")}`);
  return engine;
}

/** The engine a manifest names (a failure when this frost lacks it). */
export function engineForBackup(name: string): Engine {
  // stdin backups (`frost backup --stdin`) are made by their own option, not by --engine.
  const engine = name === STDIN_ENGINE ? stdinEngine() : ENGINES[name];
  if (!engine) {
    throw new FrostError(`Cannot restore: the backup was made with engine "${name}", unknown to this frost`);
  }
  return engine;
}
