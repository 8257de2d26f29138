/**
 * Benchmark of sparse files (issue 17's bar), run by hand, never in CI:
 *
 *   deno run -A bench/sparse.ts [--frost dist/frost] [--size 5G] [--runs 3] [--dir /tmp] [--keep]
 *
 * One file of `--size` bytes holding 8 KiB of data (4 KiB at its start, 4 KiB in its middle), the rest
 * holes, backed up to local storage and restored by the frost command given (default: dist/frost, run
 * under `env -i` as a server would); the same with GNU tar `--sparse` piped into `zstd -1` (the reference,
 * run in the same invocation). Reported: best backup and restore wall times of `--runs`, the data bytes
 * stored (frost's data segments; tar's compressed archive), and the bytes the restored file takes (`du`). Bar: backup ≤ 1 s, restore ≤ 1 MiB allocated.
 * @module
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";
import { parseSize } from "../base/units.ts";
import { exec, freshDir, measure, syncDisks } from "./measure.ts";

const { values } = parseArgs({
  options: {
    frost: { type: "string", default: "dist/frost" },
    size: { type: "string", default: "5G" },
    runs: { type: "string", default: "3" },
    dir: { type: "string", default: os.tmpdir() },
    keep: { type: "boolean", default: false },
  },
});

const SIZE = parseSize(values.size!);
const RUNS = Number(values.runs);
const frostBin = path.resolve(values.frost!);
const root = fs.mkdtempSync(path.join(values.dir!, "frost-bench-sparse-"));
const src = path.join(root, "src");
const file = path.join(src, "vm.img");
const opts = { timeout: 600, scratch: root };

/** `du -k` of one path, in bytes: what it takes on disk. */
function allocated(p: string): number {
  return Number(exec(["du", "-sk", p]).split(/\s/)[0]) * 1024;
}

/** Bytes of the data segments under a frost storage folder (manifests, states and folders left out). */
function dataBytes(store: string): number {
  let sum = 0;
  for (const rel of fs.readdirSync(store, { recursive: true }) as string[]) {
    const p = path.join(store, rel);
    if (rel.split(path.sep).at(-2) === "data" && fs.statSync(p).isFile()) sum += fs.statSync(p).size;
  }
  return sum;
}

function kib(n: number): string {
  return `${(n / 1024).toFixed(1)} KiB`;
}

try {
  fs.mkdirSync(src);
  const fd = fs.openSync(file, "w");
  fs.writeSync(fd, new Uint8Array(4096).fill(0x41), 0, 4096, 0);
  fs.writeSync(fd, new Uint8Array(4096).fill(0x42), 0, 4096, Math.floor(SIZE / 2 / 4096) * 4096);
  fs.ftruncateSync(fd, SIZE);
  fs.closeSync(fd);
  console.log(`file: ${SIZE} bytes, ${kib(allocated(file))} allocated; frost: ${frostBin}; best of ${RUNS}`);

  const best = { frostBackup: Infinity, frostRestore: Infinity, tarBackup: Infinity, tarRestore: Infinity };
  let frostStored = 0;
  let frostRestored = 0;
  let tarStored = 0;
  let tarRestored = 0;
  for (let run = 0; run < RUNS; run++) {
    // frost, as a server runs it: the standalone binary with an empty environment.
    const store = path.join(root, "store");
    const to = path.join(root, "restored");
    freshDir(store);
    fs.rmSync(to, { recursive: true, force: true });
    syncDisks();
    const b = measure(["env", "-i", frostBin, "backup", src, "--name", "sparse", "--storage", store], opts);
    best.frostBackup = Math.min(best.frostBackup, b.wall);
    frostStored = dataBytes(store);
    syncDisks();
    const r = measure(
      ["env", "-i", frostBin, "restore", "--name", "sparse", "--storage", store, "--to", to],
      opts,
    );
    best.frostRestore = Math.min(best.frostRestore, r.wall);
    frostRestored = allocated(path.join(to, "vm.img"));
    exec(["cmp", file, path.join(to, "vm.img")]);

    // GNU tar --sparse | zstd -1, and back.
    const archive = path.join(root, "tar.zst");
    const tarTo = path.join(root, "tar-restored");
    freshDir(tarTo);
    syncDisks();
    const tb = measure(
      ["sh", "-c", `tar -C '${src}' --sparse -cf - . | zstd -1 -q -o '${archive}' -f`],
      opts,
    );
    best.tarBackup = Math.min(best.tarBackup, tb.wall);
    tarStored = fs.statSync(archive).size;
    syncDisks();
    const tr = measure(["sh", "-c", `zstd -dc '${archive}' | tar -C '${tarTo}' -xf -`], opts);
    best.tarRestore = Math.min(best.tarRestore, tr.wall);
    tarRestored = allocated(path.join(tarTo, "vm.img"));
  }
  const row = (name: string, backup: number, restore: number, stored: number, restored: number) =>
    console.log(
      `${name.padEnd(22)} backup ${backup.toFixed(2)} s  restore ${restore.toFixed(2)} s  stored ${
        kib(stored)
      }  restored file takes ${kib(restored)}`,
    );
  row("frost", best.frostBackup, best.frostRestore, frostStored, frostRestored);
  row("tar --sparse | zstd -1", best.tarBackup, best.tarRestore, tarStored, tarRestored);
  const pass = best.frostBackup <= 1 && frostRestored <= 1 << 20;
  console.log(
    `bar (backup ≤ 1 s, restore ≤ 1 MiB allocated): ${pass ? "met" : "NOT met"}; frost/tar backup time ${
      (best.frostBackup / best.tarBackup).toFixed(2)
    }×`,
  );
  if (!pass) process.exitCode = 1;
} finally {
  if (!values.keep) fs.rmSync(root, { recursive: true, force: true });
}
