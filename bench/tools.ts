/**
 * The tools the bench runs. Each has two operations, driven by bench/run.ts in the same order for every tool:
 * `backup(k)` makes backup number k (0 = a full backup into an empty storage, k ≥ 1 = an incremental level on
 * backup k − 1), `restore(k)` restores the newest backup (number k) into an empty folder and checks it
 * against the data set. Untimed preparation (init, tar's snapshot file, clean-up) and a `sync` happen before
 * each timed command.
 * @module
 */
import fs from "node:fs";
import path from "node:path";
import { type DataSet, type SetKind, verifyRestore } from "./data.ts";
import { CommandError, duBytes, exec, freshDir, measure, type Sample, syncDisks } from "./measure.ts";

/** The measured scenarios, in the table's order ("ls" and "verify": frost only; "freezer": its own run). */
export const SCENARIOS = [
  "full",
  "nochange",
  "change",
  "restore",
  "chain",
  "ls",
  "verify",
  "freezer",
] as const;
/** One of the measured scenarios. */
export type Scenario = typeof SCENARIOS[number];

/** Table titles of the scenarios. */
export const SCENARIO_TITLES: Record<Scenario, string> = {
  full: "full backup",
  nochange: "no-change incremental",
  change: "1 % change incremental",
  restore: "full restore (newest)",
  chain: "restore 5-level chain",
  ls: "ls (newest backup)",
  verify: "verify --read-data",
  freezer: "Freezer bzip2 restore",
};

/** Change rounds after the full backup: the chain is level 0 + this many levels. */
export const CHANGE_ROUNDS = 4;

/** What one step measured. */
export interface StepResult {
  sample: Sample;
  /** Backups: bytes the step added to the storage. Restores: bytes of the storage read. Null if unknown. */
  stored: number | null;
  /** Something to report about this step (a failed check). */
  note?: string;
}

/** Where a tool runs. */
export interface ToolContext {
  data: DataSet;
  /** The tool's own scratch folder (storage, restore target). */
  work: string;
  /** Seconds before a command is killed. */
  timeout: number;
  /** The frost command (binary, or deno run main.ts). */
  frost: string[];
}

/** The ids of the tools. */
export const TOOL_IDS = ["frost", "frost-rsync", "tar", "restic", "borg", "borg-none", "duplicity"] as const;
/** One tool id. */
export type ToolId = typeof TOOL_IDS[number];

/** A tool under test. */
export interface Tool {
  id: ToolId;
  /** Name in the table. */
  label: string;
  /** The timed commands, for the report (DATA = the tree, paths shortened). */
  commands: Partial<Record<Scenario, string>>;
  /** Makes backup number k (0: full, into an empty storage; k ≥ 1: incremental on backup k − 1). */
  backup(k: number): StepResult;
  /** Restores the newest backup, number k, into an empty folder and checks it. */
  restore(k: number): StepResult;
  /** Lists the files of the newest backup (frost only; output discarded). */
  ls?(): StepResult;
  /** Reads back and checks every byte of the newest backup's chain (frost only). */
  verify?(): StepResult;
  /** Removes what the tool wrote. */
  cleanup(): void;
}

/** How to make a tool, what it needs installed, and where it runs. */
export interface ToolKind {
  make: (ctx: ToolContext) => Tool;
  /** Commands that must be on PATH. */
  needs: string[];
  /** The data sets it runs on (all when absent). */
  sets?: SetKind[];
  /** Run only when asked for with --tools. */
  optIn?: boolean;
}

const BASH = ["bash", "-c"];

function timed(ctx: ToolContext, cmd: string[], opts: { cwd?: string; env?: Record<string, string> } = {}) {
  syncDisks();
  return measure(cmd, { ...opts, timeout: ctx.timeout, scratch: path.dirname(ctx.work) });
}

/** A backup step against a storage folder: stored = what it added. */
function backupStep(
  ctx: ToolContext,
  storage: string,
  cmd: string[],
  opts: { cwd?: string; env?: Record<string, string> } = {},
): StepResult {
  const before = duBytes(storage);
  const sample = timed(ctx, cmd, opts);
  return { sample, stored: duBytes(storage) - before };
}

/** A restore step: a fresh `target`, the timed command, the check of `restored`, clean-up. */
function restoreStep(
  ctx: ToolContext,
  target: string,
  cmd: string[],
  opts: { cwd?: string; env?: Record<string, string>; restored?: string; create?: boolean; stored: number },
): StepResult {
  fs.rmSync(target, { recursive: true, force: true });
  if (opts.create) fs.mkdirSync(target, { recursive: true });
  const sample = timed(ctx, cmd, { cwd: opts.cwd, env: opts.env });
  const note = verifyRestore(opts.restored ?? target, ctx.data);
  setAside(ctx, target);
  return { sample, stored: opts.stored, note };
}

/**
 * How long ext4 without a journal (this machine's /dev/vda) keeps a freed inode from being reused: creating a
 * file skips every inode freed in about the last 30 s and pays a buffer lookup for each one skipped
 * (`recently_deleted` in ext4's inode allocator). A restore timed right after deleting 100 000 files took
 * 2–3× longer, for every tool, and a flat restore spent 62–65 % of its CPU there.
 */
const RECENTLY_DELETED_S = 35;

/** Where restored trees wait in the bench's work folder (`work`, the tools' folders' parent), renamed (one
 * cheap call), until `clearRestored` deletes them at a set's end. */
function restoredGrave(work: string): string {
  return path.join(work, "restored");
}

let setAsideCount = 0;

/** Moves a checked restored tree out of the way instead of deleting it between timed steps (see above). */
function setAside(ctx: ToolContext, target: string): void {
  if (!fs.existsSync(target)) return;
  const grave = restoredGrave(path.dirname(ctx.work));
  fs.mkdirSync(grave, { recursive: true });
  fs.renameSync(target, path.join(grave, String(++setAsideCount)));
}

/**
 * Deletes the restored trees set aside under `work` (the bench's work folder) and, when there were any, waits
 * until the file system would reuse their inodes without the penalty above: called after a data set's rounds,
 * so no restore is timed within `RECENTLY_DELETED_S` of deleting a big tree.
 */
export function clearRestored(work: string): void {
  const grave = restoredGrave(work);
  if (!fs.existsSync(grave)) return;
  fs.rmSync(grave, { recursive: true, force: true });
  syncDisks();
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, RECENTLY_DELETED_S * 1000);
}

function frostLike(ctx: ToolContext, id: "frost" | "frost-rsync", engine: string[]): Tool {
  const store = path.join(ctx.work, "store");
  const target = path.join(ctx.work, "restore");
  const common = ["--name", "bench", "--hostname", "bench", "--storage", store];
  const backup = [...ctx.frost, "backup", ctx.data.root, ...common, "--max-level", "5", ...engine, "--json"];
  const check = (s: Sample, level: number): string | undefined => {
    const line = s.stdout.trim().split("\n").at(-1) ?? "";
    try {
      const summary = JSON.parse(line) as { level?: number };
      if (summary.level !== level) return `frost made level ${summary.level}, expected ${level}`;
      return undefined;
    } catch {
      return `frost --json printed no summary: ${line.slice(0, 200)}`;
    }
  };
  const e = engine.length ? ` ${engine.join(" ")}` : "";
  const cmd = `frost backup DATA --name bench --storage STORE --max-level 5${e} --json`;
  return {
    id,
    label: id === "frost" ? "frost" : "frost --engine rsync",
    commands: {
      full: `${cmd}   (empty STORE: level 0)`,
      nochange: `${cmd}   (nothing changed: level 5 after the change levels; level 1 where there are none)`,
      change: `${cmd}   (after 1 % changed: level 1; levels 2–4 likewise, untimed)`,
      restore: "frost restore --name bench --storage STORE --to OUT   (newest = level 0)",
      chain: "frost restore --name bench --storage STORE --to OUT   (newest = level 4: applies levels 0–4)",
      ...(id === "frost"
        ? {
          ls: "frost ls --name bench --storage STORE > /dev/null   (after the no-change level)",
          verify: "frost verify --name bench --storage STORE --read-data   (after the no-change level)",
        }
        : {}),
    },
    backup(k) {
      if (k === 0) freshDir(ctx.work);
      const r = backupStep(ctx, store, backup);
      return { ...r, note: check(r.sample, k) };
    },
    restore: () =>
      restoreStep(ctx, target, [...ctx.frost, "restore", ...common, "--to", target], {
        stored: duBytes(store),
      }),
    // ls and verify: the default (tar) engine only; `frost ls` reads tar-engine backups only.
    ...(id === "frost"
      ? {
        ls: (): StepResult => ({
          sample: timed(ctx, [...BASH, 'exec "$@" > /dev/null', "bash", ...ctx.frost, "ls", ...common]),
          stored: null,
        }),
        verify: (): StepResult => ({
          sample: timed(ctx, [...ctx.frost, "verify", ...common, "--read-data"]),
          stored: duBytes(store),
        }),
      }
      : {}),
    cleanup: () => fs.rmSync(ctx.work, { recursive: true, force: true }),
  };
}

/** frost with its default (tar) engine; `--max-level 5`, so backups 0–5 are levels 0–5 of one chain. */
export function frostTool(ctx: ToolContext): Tool {
  return frostLike(ctx, "frost", []);
}

/** frost's rsync engine (block deltas within large files), on its own storage. */
export function frostRsyncTool(ctx: ToolContext): Tool {
  return frostLike(ctx, "frost-rsync", ["--engine", "rsync"]);
}

/**
 * GNU tar piped into zstd -1 (zstd's default: one compression thread, so two processes in all). The full
 * backup is a plain `tar -c`; right after it, untimed, `tar -g l0.snar -cf /dev/null` records the level-0
 * snapshot of the same tree (GNU tar does not read file contents when writing to /dev/null). Level k copies
 * the snapshot of level k − 1 and runs `tar --listed-incremental`; the chain restore extracts the full
 * archive and levels 1–k in order with `--incremental` (which also deletes what a level's dumpdir lacks).
 */
export function tarTool(ctx: ToolContext): Tool {
  const out = ctx.work;
  const target = path.join(ctx.work, "restore");
  const archive = (k: number) => path.join(out, `l${k}.tar.zst`);
  const snar = (k: number) => path.join(out, `l${k}.snar`);
  const pipe = (tarArgs: string, file: string) => [
    ...BASH,
    `set -o pipefail; tar -C "$1" ${tarArgs} -cf - . | zstd -1 -q -o "$2"`,
    "bash",
    ctx.data.root,
    file,
  ];
  const sizes = (k: number) => {
    let n = fs.statSync(snar(k)).size;
    for (let i = 0; i <= k; i++) n += fs.statSync(archive(i)).size;
    return n;
  };
  return {
    id: "tar",
    label: "tar | zstd -1",
    commands: {
      full: "tar -C DATA -cf - . | zstd -1 -q -o l0.tar.zst   " +
        "(then, untimed: tar -C DATA --listed-incremental=l0.snar -cf /dev/null .)",
      nochange: "tar -C DATA --listed-incremental=l5.snar -cf - . | zstd -1 -q -o l5.tar.zst   " +
        "(l5.snar = copy of l4.snar; nothing changed; l1 from l0 where there are no change levels)",
      change: "tar -C DATA --listed-incremental=l1.snar -cf - . | zstd -1 -q -o l1.tar.zst   " +
        "(l1.snar = copy of l0.snar; levels 2–4 likewise, untimed)",
      restore: "zstd -dc l0.tar.zst | tar -x -C OUT",
      chain: "for k in 0 1 2 3 4; do zstd -dc l$k.tar.zst | tar -x --incremental -C OUT; done",
    },
    backup(k) {
      if (k === 0) {
        freshDir(out);
        const sample = timed(ctx, pipe("", archive(0)));
        exec(["tar", "-C", ctx.data.root, `--listed-incremental=${snar(0)}`, "-cf", "/dev/null", "."]);
        return { sample, stored: fs.statSync(archive(0)).size };
      }
      fs.copyFileSync(snar(k - 1), snar(k));
      const sample = timed(ctx, pipe(`--listed-incremental="${snar(k)}"`, archive(k)));
      return { sample, stored: fs.statSync(archive(k)).size + fs.statSync(snar(k)).size };
    },
    restore(k) {
      const files = Array.from({ length: k + 1 }, (_, i) => archive(i));
      const cmd = k === 0
        ? [...BASH, `set -o pipefail; zstd -dc "$1" | tar -x -C "$2"`, "bash", files[0]!, target]
        : [
          ...BASH,
          `set -o pipefail; out="$1"; shift; for f; do zstd -dc "$f" | tar -x --incremental -C "$out" || exit 1; done`,
          "bash",
          target,
          ...files,
        ];
      return restoreStep(ctx, target, cmd, { create: true, stored: sizes(k) });
    },
    cleanup: () => fs.rmSync(ctx.work, { recursive: true, force: true }),
  };
}

/** restic with its defaults (compression auto, all cores), its cache inside the work folder. */
export function resticTool(ctx: ToolContext): Tool {
  const repo = path.join(ctx.work, "repo");
  const target = path.join(ctx.work, "restore");
  const env = {
    RESTIC_PASSWORD: "x",
    RESTIC_REPOSITORY: repo,
    RESTIC_CACHE_DIR: path.join(ctx.work, "cache"),
  };
  const backup = ["restic", "backup", "--quiet", "--host", "bench", ctx.data.root];
  const cmd = "restic backup --host bench DATA";
  return {
    id: "restic",
    label: "restic",
    commands: {
      full: `restic init; ${cmd}   (RESTIC_PASSWORD=x; init untimed)`,
      nochange: `${cmd}   (6th snapshot, nothing changed)`,
      change: `${cmd}   (2nd snapshot, after 1 % changed)`,
      restore: "restic restore latest --target OUT   (1st snapshot)",
      chain: "restic restore latest --target OUT   (5th snapshot)",
    },
    backup(k) {
      if (k === 0) {
        freshDir(ctx.work);
        exec(["restic", "init", "--quiet"], { env });
      }
      return backupStep(ctx, repo, backup, { env });
    },
    restore: () =>
      restoreStep(ctx, target, ["restic", "restore", "latest", "--quiet", "--target", target], {
        env,
        // restic restores the absolute path below the target.
        restored: path.join(target, ctx.data.root),
        stored: duBytes(repo),
      }),
    cleanup: () => fs.rmSync(ctx.work, { recursive: true, force: true }),
  };
}

function borgLike(ctx: ToolContext, id: "borg" | "borg-none", compression: string): Tool {
  const repo = path.join(ctx.work, "repo");
  const target = path.join(ctx.work, "restore");
  const env = {
    BORG_PASSPHRASE: "",
    BORG_BASE_DIR: path.join(ctx.work, "base"),
    BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: "yes",
    BORG_RELOCATED_REPO_ACCESS_IS_OK: "yes",
  };
  const create = `cd DATA && borg create --compression ${compression} REPO::a`;
  return {
    id,
    label: id === "borg" ? "borg" : "borg (no compression)",
    commands: {
      full: `borg init -e none REPO; ${create}0 .   (init untimed)`,
      nochange: `${create}5 .   (nothing changed)`,
      change: `${create}1 .   (after 1 % changed; a2–a4 likewise, untimed)`,
      restore: "cd OUT && borg extract REPO::a0",
      chain: "cd OUT && borg extract REPO::a4",
    },
    backup(k) {
      if (k === 0) {
        freshDir(ctx.work);
        exec(["borg", "init", "-e", "none", repo], { env });
      }
      return backupStep(ctx, repo, ["borg", "create", "--compression", compression, `${repo}::a${k}`, "."], {
        env,
        cwd: ctx.data.root,
      });
    },
    restore: (k) =>
      restoreStep(ctx, target, ["borg", "extract", `${repo}::a${k}`], {
        env,
        cwd: target,
        create: true,
        stored: duBytes(repo),
      }),
    cleanup: () => fs.rmSync(ctx.work, { recursive: true, force: true }),
  };
}

/** borg with an unencrypted repository and zstd level 1, run from inside the tree. */
export function borgTool(ctx: ToolContext): Tool {
  return borgLike(ctx, "borg", "zstd,1");
}

/** borg without compression (`--compression none`). */
export function borgNoneTool(ctx: ToolContext): Tool {
  return borgLike(ctx, "borg-none", "none");
}

/**
 * duplicity without encryption on a local file:// target: a full backup, then incrementals (librsync deltas
 * against the previous signatures); restore applies the full backup and every incremental. Its local
 * archive (signature cache) and temporary files stay inside the work folder.
 */
export function duplicityTool(ctx: ToolContext): Tool {
  const target = path.join(ctx.work, "target");
  const out = path.join(ctx.work, "restore");
  const url = `file://${target}`;
  const common = [
    "--no-encryption",
    "--archive-dir",
    path.join(ctx.work, "archive"),
    "--name",
    "bench",
    "--tempdir",
    path.join(ctx.work, "tmp"),
  ];
  const env = { HOME: ctx.work };
  const cmd = (kind: string) => `duplicity ${kind} --no-encryption --name bench DATA file://TARGET`;
  return {
    id: "duplicity",
    label: "duplicity",
    commands: {
      full: cmd("full"),
      nochange: `${cmd("incremental")}   (6th backup, nothing changed)`,
      change: `${cmd("incremental")}   (after 1 % changed; 3rd–5th likewise, untimed)`,
      restore: "duplicity restore --no-encryption --name bench file://TARGET OUT   (the full backup)",
      chain: "duplicity restore --no-encryption --name bench file://TARGET OUT   (full + 4 incrementals)",
    },
    backup(k) {
      if (k === 0) {
        freshDir(ctx.work);
        fs.mkdirSync(path.join(ctx.work, "tmp"));
      }
      const kind = k === 0 ? "full" : "incremental";
      return backupStep(ctx, target, ["duplicity", kind, ...common, ctx.data.root, url], { env });
    },
    restore: () =>
      restoreStep(ctx, out, ["duplicity", "restore", ...common, url, out], { env, stored: duBytes(target) }),
    cleanup: () => fs.rmSync(ctx.work, { recursive: true, force: true }),
  };
}

/** Every tool, by id. */
export const TOOLS: Record<ToolId, ToolKind> = {
  frost: { make: frostTool, needs: [] },
  "frost-rsync": { make: frostRsyncTool, needs: [], sets: ["vm"] },
  tar: { make: tarTool, needs: ["tar", "zstd"] },
  restic: { make: resticTool, needs: ["restic"] },
  borg: { make: borgTool, needs: ["borg"] },
  "borg-none": { make: borgNoneTool, needs: ["borg"], optIn: true },
  duplicity: { make: duplicityTool, needs: ["duplicity"] },
};

export { CommandError };
