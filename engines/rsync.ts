/**
 * The rsync engine: block-level deltas for large files that change a little (formats in docs/FORMAT.md (section "The rsync engine")).
 * @module
 */
import type { Engine } from "./engine.ts";
import { rsyncStateEntries } from "./_rsync_format.ts";
import { rsyncBackup } from "./rsync_backup.ts";
import { rsyncRestore } from "./rsync_restore.ts";

/**
 * Backs up with block signatures and rolling-checksum deltas against the parent level; restores by
 * rebuilding each changed file from the previous level's restored version, hash-checked.
 */
export const rsyncEngine: Engine = {
  name: "rsync",
  backup: rsyncBackup,
  restore: rsyncRestore,
  entries: rsyncStateEntries,
};
