/**
 * The engines' public API for the layers above them (pipeline, commands, main.ts): the Engine contract, the
 * registry, and the helpers the command line shares with the engines (how names are shown and parsed,
 * include/exclude patterns, the restore target, and the tar listing that `ls` and `verify` replay). The
 * `_` files of this folder are private to it: import what they offer from here.
 * @module
 */
export type * from "./engine.ts";
export { ENGINE_NAMES, engineForBackup, engineForOption } from "./registry.ts";
export { STDIN_ENGINE, stdinEngine } from "./stdin.ts";
export { tarRestore } from "./tar_restore.ts";
export { parseShownName, showBytes, showName } from "./_names.ts";
export { globEscape, type IncludeSelector, includeSelector, keepingSelect } from "./_fs_common.ts";
export { default as fsBytes } from "./_fs_bytes.ts";
export { RestoreTarget } from "./_restore_fs.ts";
export type { EntryType, TarEntry } from "./_tar_read.ts";
export {
  markTarState,
  normalize,
  replayTar,
  type StateMarks,
  tarReplayer,
  Tree,
  type TreeNode,
} from "./tar_list.ts";
