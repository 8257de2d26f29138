/**
 * The fsyncs of a backup to a local storage, watched with strace on the real frost: whatever a listed backup
 * needs is durable before its manifest appears, each folder is fsynced after the changes it must keep, and
 * no more often; lock objects have their bytes flushed but not their folders.
 * @module
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { frostCommand, hasStrace } from "../_cli.ts";

/** One traced call: its name, the paths it names (fds resolved by `strace -y`), its result. */
interface Call {
  name: string;
  paths: string[];
  ok: boolean;
  /** Its place in the trace: where it began (entered) and where it returned. */
  began: number;
  ended: number;
}

/** The calls of an `strace -f -y` log, with "unfinished"/"resumed" halves joined. */
function parseTrace(text: string): Call[] {
  const calls: Call[] = [];
  const open = new Map<string, Call>(); // pid + name → its unfinished call
  text.split("\n").forEach((line, i) => {
    const m = /^(\d+) +(?:<\.\.\. (\w+) resumed>(.*)|(\w+)\((.*))$/.exec(line);
    if (!m) return;
    const [, pid, resumed, rest, name, args] = m;
    if (resumed !== undefined) {
      const call = open.get(`${pid} ${resumed}`);
      if (!call) return;
      open.delete(`${pid} ${resumed}`);
      call.ended = i;
      call.ok = / = 0$/.test(rest!);
      return;
    }
    const paths = [...args!.matchAll(/"([^"]*)"|<([^>]*)>/g)].map((p) => p[1] ?? p[2]!);
    const call: Call = { name: name!, paths, ok: / = 0$/.test(args!), began: i, ended: i };
    if (args!.endsWith("<unfinished ...>")) open.set(`${pid} ${name}`, call);
    calls.push(call);
  });
  return calls;
}

describe("a backup to a local storage", {
  skip: hasStrace() ? false : "strace is not installed or may not trace here",
}, () => {
  test("fsyncs what a listed backup needs before its manifest, each folder once per change, no lock folder", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "frost-durability-"));
    try {
      const src = path.join(dir, "src");
      fs.mkdirSync(path.join(src, "sub"), { recursive: true });
      fs.writeFileSync(path.join(src, "a"), "a");
      fs.writeFileSync(path.join(src, "sub", "b"), "b");
      const store = path.join(dir, "store");
      for (const level of [0, 1]) {
        const log = path.join(dir, `trace-${level}`);
        const [cmd, ...args] = frostCommand();
        execFileSync("strace", [
          "-f",
          "-y",
          "-qq",
          "-s",
          "4096",
          "-e",
          "trace=fsync,fdatasync,rename,renameat,renameat2,mkdir,mkdirat",
          "-o",
          log,
          cmd!,
          ...args,
          "backup",
          src,
          "--name",
          "d",
          "--hostname",
          "h",
          "--storage",
          store,
          "--max-level",
          "1",
        ], { stdio: ["ignore", "ignore", "pipe"] });
        const calls = parseTrace(fs.readFileSync(log, "utf8")).filter((c) => c.ok);
        const inStore = (p: string) => p.startsWith(store + "/");
        const syncs = calls.filter((c) => c.name === "fsync" || c.name === "fdatasync");
        /** Whether folder `f` is fsynced by a call that began after trace line `after`, ending before `before`. */
        const synced = (f: string, after: number, before = Infinity) =>
          syncs.some((s) => s.paths[0] === f && s.began > after && s.ended < before);
        const renames = calls.filter((c) => c.name.startsWith("rename") && inStore(c.paths.at(-1)!));
        const manifest = renames.find((c) => c.paths.at(-1)!.includes("/manifests/"));
        assert.ok(manifest, `level ${level}: the manifest is renamed into place`);
        const locksFolder = path.join(store, "h_d", "locks");
        let lockRenames = 0;
        for (const r of renames) {
          const target = r.paths.at(-1)!;
          const folder = path.dirname(target);
          const temp = r.paths.at(-2)!;
          // The bytes are flushed before the name appears (locks too).
          assert.ok(syncs.some((s) => s.paths[0] === temp && s.ended < r.began), `${target}: file fsync`);
          if (folder === locksFolder) {
            lockRenames++;
            continue;
          }
          // Data and state: their names are durable before the manifest is renamed; the manifest after.
          const before = r === manifest ? Infinity : manifest.began;
          assert.ok(synced(folder, r.ended, before), `${target}: folder fsync after its rename`);
        }
        assert.ok(lockRenames >= 1, "a lock was written");
        // Folders made for the backup are durable in their parents before the manifest is renamed.
        for (const m of calls.filter((c) => c.name.startsWith("mkdir") && inStore(c.paths.at(-1)!))) {
          const made = m.paths.at(-1)!;
          if (made === locksFolder) continue;
          if (made.includes("/backups/")) {
            assert.ok(synced(path.dirname(made), m.ended, manifest.began), `${made}: parent fsync`);
          }
        }
        // No lock folder fsync; no folder fsynced twice without a change (a rename or mkdir in it) between.
        assert.ok(!syncs.some((s) => s.paths[0] === locksFolder), "the locks folder is not fsynced");
        const changes = calls.filter((c) => c.name !== "fsync" && c.name !== "fdatasync");
        const temps = new Set(renames.map((r) => r.paths.at(-2)!));
        const folders = new Set(syncs.map((s) => s.paths[0]!).filter((p) => !temps.has(p)));
        for (const f of folders) {
          const times = syncs.filter((s) => s.paths[0] === f);
          for (let i = 1; i < times.length; i++) {
            const changed = changes.some((c) =>
              c.paths.some((p) => path.dirname(p) === f) && c.ended < times[i]!.began &&
              c.ended > times[i - 1]!.began
            );
            assert.ok(changed, `level ${level}: ${f} fsynced again with no change in between`);
          }
        }
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
