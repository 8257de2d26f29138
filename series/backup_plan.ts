/**
 * What a new backup builds on: its parent, level, keys and id, from the series' history, the level policy
 * and the key options (the level rules themselves are in levels.ts).
 * @module
 */
import type { DataKey } from "../codec/encryption.ts";
import { type Manifest, toRecord } from "./manifest.ts";
import { chooseParent, type LevelPolicy, newBackupId } from "./levels.ts";
import { type BackupKeys, cacheDir, kdfOf, type KeyOptions, newBackupKeys, stateKeyOf } from "./keys.ts";

/** What `planBackup` decides from. */
export interface BackupPlanOptions {
  /** `<hostname>_<name>`, as notices name it. */
  series: string;
  /** Every committed backup of the series. */
  history: readonly Manifest[];
  /** The backups a new level may build on (with several storages, those every one holds). Default: `history`. */
  usable?: readonly Manifest[];
  policy: LevelPolicy;
  /** This run's engine: a parent made with another engine starts a new chain. */
  engine: string;
  /** A `--stdin` backup is always a full one (level 0). Default: false. */
  fromStdin?: boolean;
  keys: KeyOptions;
  now: Date;
  /** Each notice for the user (a `frost: …` line), as soon as it is decided. */
  onNotice?: (line: string) => void;
}

/** The new backup: its parent (null for level 0), the key to read the parent's state, level, keys and id. */
export interface BackupPlan {
  parent: Manifest | null;
  parentStateKey: DataKey | null;
  level: number;
  keys: BackupKeys | null;
  id: string;
}

/**
 * Plans a backup: chooses its parent and level by the level rules, opens the parent's state key first (a
 * wrong passphrase stops the run before anything is written) and makes the new backup's keys and id. A
 * parent this run cannot build on (another engine, or a state this host cannot read) starts a new chain at
 * level 0, with a notice.
 */
export async function planBackup(options: BackupPlanOptions): Promise<BackupPlan> {
  const { series, history, policy, now } = options;
  const usable = options.usable ?? history;
  const notice = options.onNotice ?? (() => {});
  const byId = new Map(history.map((m) => [m.id, m]));
  if (usable.length < history.length) {
    notice(
      `frost: ${history.length - usable.length} backup${
        history.length - usable.length === 1 ? " is" : "s are"
      } ` +
        `not on every storage (or lack part of their chain there): the new backup builds only on those that are`,
    );
  }
  const choice = chooseParent(usable.map(toRecord), policy, now);
  let parent: Manifest | null = choice.parent ? byId.get(choice.parent.id)! : null;
  if (options.fromStdin) {
    parent = null;
  } else if (parent && parent.engine !== options.engine) {
    notice(
      `frost: ${series} ${parent.id} was made with the ${parent.engine} engine, this backup uses ${options.engine}: ` +
        `starting a new chain at level 0`,
    );
    parent = null;
  }
  // Open the parent's state first: a wrong passphrase stops the run before anything is written.
  let parentStateKey = parent ? await stateKeyOf(parent.id, parent.encryption, options.keys) : null;
  if (parentStateKey === "unavailable") {
    notice(
      `frost: warning: this host cannot read the state of ${series} ${parent!.id} (no host key in ` +
        `${cacheDir()}, or another host made it): starting a new chain at level 0`,
    );
    parent = null;
    parentStateKey = null;
  }
  const level = parent ? choice.level : 0;
  const latestKdf = kdfOf(
    parent?.encryption ?? [...history].sort((a, b) => b.id.localeCompare(a.id))[0]?.encryption ?? null,
  );
  const keys = await newBackupKeys(options.keys, latestKdf);
  const id = newBackupId(now, byId.keys());
  return { parent, parentStateKey, level, keys, id };
}
