/**
 * The tar engine: GNU-tar-compatible incremental archives (see docs/FORMAT.md).
 * @module
 */
import type { Engine } from "./engine.ts";
import { tarStateEntries } from "./_tar_state.ts";
import { TarStateCounter } from "./_tar_state_count.ts";
import { TarStoredReader } from "./_tar_state_stored.ts";
import { tarBackup } from "./tar_backup.ts";
import { tarRestore } from "./tar_restore.ts";

/** Backs up with GNU incremental tar archives; restores them with deletions replayed. */
export const tarEngine: Engine = {
  name: "tar",
  backup: tarBackup,
  restore: tarRestore,
  entries: tarStateEntries,
  countEntries: () => new TarStateCounter(),
  storedWhole: () => new TarStoredReader(),
};
