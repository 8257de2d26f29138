/**
 * The Freezer bzip2 restore of issue 18: a level-0 backup made exactly as OpenStack Freezer's tar engine
 * makes it (GNU tar --listed-incremental from inside the tree, `-j`, in Freezer's container layout
 * `metadata/tar/<host>_<name>/<ts>/0_<ts>/metadata` + `data/tar/…/data`, as tests/freezer/freezer_test.ts
 * writes them), restored by `frost freezer restore` and, side by side, decompressed by `bzip2 -dc` (to
 * /dev/null: the bar's anchor) and by `bzip2 -dc | tar -x` (the same job as frost's).
 * Run by bench/run.ts (`--set freezer`); the container is built untimed in the work folder.
 * @module
 */
import fs from "node:fs";
import path from "node:path";
import { type DataSet, verifyRestore } from "./data.ts";
import { exec, freshDir, measure, type Sample, syncDisks } from "./measure.ts";
import type { StepResult } from "./tools.ts";

/** Freezer's own tar options (freezer/engine/tar/tar_builders.py). */
const TAR_ARGS = [
  "--warning=none",
  "--no-check-device",
  "--one-file-system",
  "--preserve-permissions",
  "--same-owner",
  "--seek",
  "--ignore-failed-read",
];
const HOST = "bench";
const NAME = "data";
const TS = 1700000000;

/** One tool of the Freezer run. */
export interface FreezerTool {
  id: "frost" | "bzip2" | "bzip2-tar";
  label: string;
  command: string;
  run(): StepResult;
}

/** The container and the tools that read it. */
export interface FreezerSetup {
  /** Bytes of the bzip2 stream (the `data` object). */
  compressed: number;
  /** The path of that `data` object. */
  object: string;
  /** Seconds spent making it (untimed). */
  seconds: number;
  tools: FreezerTool[];
  cleanup(): void;
}

/** Builds a Freezer bzip2 container of `data` under `work` and returns the measured tools. */
export function freezerSetup(
  data: DataSet,
  work: string,
  frost: string[],
  timeout: number,
): FreezerSetup {
  const started = performance.now();
  freshDir(work);
  const store = path.join(work, "store");
  const dir = `${HOST}_${NAME}/${TS}/0_${TS}`;
  const object = path.join(store, "data", "tar", dir, "data");
  const meta = path.join(store, "metadata", "tar", dir, "metadata");
  fs.mkdirSync(path.dirname(object), { recursive: true });
  fs.mkdirSync(path.dirname(meta), { recursive: true });
  exec([
    "bash",
    "-c",
    `set -o pipefail; cd "$1" && tar --create -j ${TAR_ARGS.join(" ")} --listed-incremental="$2" . > "$3"`,
    "bash",
    data.root,
    path.join(work, "l0.snar"),
    object,
  ]);
  fs.writeFileSync(path.join(path.dirname(object), "engine_metadata"), "snar");
  fs.writeFileSync(
    meta,
    JSON.stringify({ engine_name: "tar", compression: "bzip2", encryption: false }),
  );
  const target = path.join(work, "restore");
  const opts = { timeout, scratch: work };
  const timed = (cmd: string[]): Sample => {
    syncDisks();
    return measure(cmd, opts);
  };
  const restored = (sample: Sample): StepResult => {
    const note = verifyRestore(target, data);
    fs.rmSync(target, { recursive: true, force: true });
    return { sample, stored: compressed, note };
  };
  const compressed = fs.statSync(object).size;
  const tools: FreezerTool[] = [
    {
      id: "frost",
      label: "frost",
      command: `frost freezer restore --storage STORE --hostname ${HOST} --name ${NAME} --to OUT`,
      run() {
        fs.rmSync(target, { recursive: true, force: true });
        return restored(timed([
          ...frost,
          "freezer",
          "restore",
          "--storage",
          store,
          "--hostname",
          HOST,
          "--name",
          NAME,
          "--to",
          target,
        ]));
      },
    },
    {
      id: "bzip2",
      label: "bzip2 -dc > /dev/null",
      command: "bzip2 -dc STORE/data/tar/…/data > /dev/null",
      run: () => ({
        sample: timed(["bash", "-c", `bzip2 -dc "$1" > /dev/null`, "bash", object]),
        stored: compressed,
      }),
    },
    {
      id: "bzip2-tar",
      label: "bzip2 -dc | tar -x",
      command: "bzip2 -dc STORE/data/tar/…/data | tar -x --incremental -C OUT",
      run() {
        freshDir(target);
        return restored(timed([
          "bash",
          "-c",
          `set -o pipefail; bzip2 -dc "$1" | tar -x --incremental -C "$2"`,
          "bash",
          object,
          target,
        ]));
      },
    },
  ];
  return {
    compressed,
    object,
    seconds: (performance.now() - started) / 1000,
    tools,
    cleanup: () => fs.rmSync(work, { recursive: true, force: true }),
  };
}
