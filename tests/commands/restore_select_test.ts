/**
 * `frost restore --include`, `--dry-run` and `--plan`, through the real frost on real files: a partial
 * restore of every point of a level chain equals the full restore of that point cut down to the selected
 * paths (content, modes, mtimes, links; deletions replayed inside the selection only), for both engines.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { execFileSync } from "node:child_process";
import { cleanup, frost, pseudoRandom, tempDir } from "../_cli.ts";
import { assertSameTree } from "../_tree.ts";
import { includeSelector } from "../../engines/_fs_common.ts";

function write(root: string, rel: string, content: string | Uint8Array): void {
  fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
  fs.writeFileSync(path.join(root, rel), content);
}

/** Relative paths of a tree (dirs included), parents before children. */
function paths(root: string): string[] {
  const out: string[] = [];
  const visit = (rel: string) => {
    for (const name of fs.readdirSync(path.join(root, rel)).sort()) {
      const r = rel === "" ? name : `${rel}/${name}`;
      out.push(r);
      if (fs.lstatSync(path.join(root, r)).isDirectory()) visit(r);
    }
  };
  visit("");
  return out;
}

/**
 * A copy of `full` cut down to what a partial restore with `patterns` holds: selected entries, and the
 * directories leading to them, with their times kept.
 */
function prune(full: string, into: string, patterns: string[]): void {
  execFileSync("cp", ["-a", full, into]);
  const sel = includeSelector(patterns);
  const all = paths(into);
  for (const rel of [...all].reverse()) {
    const abs = path.join(into, rel);
    const st = fs.lstatSync(abs, { throwIfNoEntry: false });
    if (!st) continue;
    const s = sel.select(rel, st.isDirectory());
    if (s === "in") continue;
    if (s === "out") {
      fs.rmSync(abs, { recursive: true });
    } else if (fs.readdirSync(abs).length === 0) {
      fs.rmdirSync(abs);
    }
  }
  // Removing entries changed directory times: take them back from the full restore.
  for (const rel of paths(into).reverse()) {
    const abs = path.join(into, rel);
    if (fs.lstatSync(abs).isDirectory()) execFileSync("touch", ["-m", "-h", "-r", path.join(full, rel), abs]);
  }
}

const PATTERN_SETS: string[][] = [
  ["etc"],
  ["etc/ssl/**"],
  ["top.txt"],
  ["**/*.conf"],
  ["var/lib/db", "etc/hosts"],
  ["var/*/db/big.bin", "links/**"],
];

for (const engine of ["tar", "rsync"]) {
  describe(`restore --include (${engine} engine)`, () => {
    let dir: string;
    let src: string;
    let storage: string;
    const points: string[] = [];
    const common = () => ["--name", "sel", "--storage", storage];

    before(async () => {
      dir = tempDir(`select-${engine}`);
      src = path.join(dir, "src");
      storage = path.join(dir, "storage");
      write(src, "top.txt", "top\n");
      write(src, "etc/hosts", "127.0.0.1 localhost\n");
      write(src, "etc/nginx/nginx.conf", "worker_processes 2;\n");
      write(src, "etc/nginx/sites/default.conf", "server {}\n");
      write(src, "etc/ssl/certs/a.pem", "A\n");
      write(src, "etc/ssl/private/key", "K\n");
      write(src, "var/lib/db/big.bin", pseudoRandom(3 << 20, 7));
      write(src, "var/lib/db/small", "s\n");
      write(src, "var/log/app.log", "log\n");
      fs.mkdirSync(path.join(src, "empty/dir"), { recursive: true });
      write(src, "links/target", "t\n");
      fs.symlinkSync("target", path.join(src, "links/sym"));
      fs.linkSync(path.join(src, "links/target"), path.join(src, "links/hard"));
      fs.chmodSync(path.join(src, "etc/ssl/private"), 0o700);
      const backup = async () => {
        // Files changed within a second of the parent's start are sent again (Deno's ms mtimes): wait.
        await new Promise((r) => setTimeout(r, 1200));
        const r = await frost(["backup", src, ...common(), "--engine", engine, "--max-level", "5", "--json"]);
        assert.equal(r.code, 0, r.stderr);
        points.push(JSON.parse(r.stdout).id);
      };
      await backup();
      // Level 1: deletions inside and outside selections, a changed big file, a new conf.
      fs.rmSync(path.join(src, "etc/ssl/private"), { recursive: true });
      fs.rmSync(path.join(src, "etc/hosts"));
      fs.rmSync(path.join(src, "var/log/app.log"));
      const big = fs.openSync(path.join(src, "var/lib/db/big.bin"), "r+");
      fs.writeSync(big, pseudoRandom(4096, 9), 0, 4096, 1 << 20);
      fs.closeSync(big);
      write(src, "etc/nginx/sites/new.conf", "server { listen 81; }\n");
      await backup();
      // Level 2: a selected directory comes back as a file; a conf file deep down.
      write(src, "etc/hosts", "10.0.0.1 db\n");
      fs.rmSync(path.join(src, "var/lib/db"), { recursive: true });
      write(src, "var/lib/db", "now a file\n");
      write(src, "deep/a/b/c/x.conf", "x\n");
      await backup();
    });
    after(() => cleanup(dir));

    it("restores every point cut down to the selection, deletions replayed inside it", async () => {
      let compared = 0;
      for (const [i, id] of points.entries()) {
        const full = path.join(dir, `full-${i}`);
        const at = ["--date", new Date(Date.parse(isoOf(id)) + 500).toISOString()];
        const r = await frost(["restore", ...common(), "--to", full, ...at]);
        assert.equal(r.code, 0, r.stderr);
        for (const [k, patterns] of PATTERN_SETS.entries()) {
          const sel = includeSelector(patterns);
          const fullPaths = paths(full);
          // Skip pattern sets that select nothing at this point (that is an error, tested below).
          if (!patterns.every((p) => fullPaths.some((f) => sel.covers(p, f)))) continue;
          const part = path.join(dir, `part-${i}-${k}`);
          const want = path.join(dir, `want-${i}-${k}`);
          const include = patterns.flatMap((p) => ["--include", p]);
          const pr = await frost(["restore", ...common(), "--to", part, ...at, ...include]);
          assert.ok(pr.code === 0 || pr.code === 3, `${patterns}: ${pr.stderr}`);
          prune(full, want, patterns);
          // A hard link whose other name is left out cannot be made: it is reported and skipped.
          if (pr.code === 3) {
            assert.match(pr.stderr, /hard link to .* leave out/);
            for (const line of pr.stderr.trim().split("\n")) {
              const m = line.match(/^frost: warning: (.*?): not restored/);
              if (m) fs.rmSync(path.join(want, m[1]!));
            }
            for (const rel of paths(want).reverse()) {
              const abs = path.join(want, rel);
              if (fs.lstatSync(abs).isDirectory()) {
                execFileSync("touch", ["-m", "-r", path.join(full, rel), abs]);
              }
            }
          }
          assertSameTree(want, part);
          compared++;
          cleanup(part, want);
        }
        cleanup(full);
      }
      // Most pattern sets select something at every point (etc/hosts is missing at point 1 only).
      assert.ok(compared >= 3 * PATTERN_SETS.length - 2, `only ${compared} partial restores compared`);
    });

    it("leaves what is not selected in an --overwrite target alone, deletions included", async () => {
      const target = path.join(dir, "overwrite");
      write(target, "etc/ssl/private/mine", "not from the backup\n");
      write(target, "etc/hosts", "the user's own hosts\n");
      write(target, "unrelated.txt", "keep\n");
      // Point 1 deletes etc/ssl/private (and etc/hosts, outside the selection).
      const date = new Date(Date.parse(isoOf(points[1]!)) + 500).toISOString();
      const r = await frost([
        "restore",
        ...common(),
        "--to",
        target,
        "--date",
        date,
        "--overwrite",
        "--include",
        "etc/ssl/certs",
        "--include",
        "etc/nginx/**",
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(
        fs.readFileSync(path.join(target, "etc/ssl/private/mine"), "utf8"),
        "not from the backup\n",
      );
      assert.equal(fs.readFileSync(path.join(target, "etc/hosts"), "utf8"), "the user's own hosts\n");
      assert.equal(fs.readFileSync(path.join(target, "unrelated.txt"), "utf8"), "keep\n");
      assert.equal(fs.readFileSync(path.join(target, "etc/ssl/certs/a.pem"), "utf8"), "A\n");
      assert.equal(
        fs.readFileSync(path.join(target, "etc/nginx/sites/new.conf"), "utf8"),
        "server { listen 81; }\n",
      );
      cleanup(target);
    });

    it("refuses an --include that matches nothing, writing nothing", async () => {
      const target = path.join(dir, "nothing");
      const r = await frost([
        "restore",
        ...common(),
        "--to",
        target,
        "--include",
        "etc",
        "--include",
        "etc/nope*",
      ]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /--include "etc\/nope\*" matches nothing in \S+_sel \S+; nothing was restored/);
      assert.equal(fs.existsSync(target), false);
      const bad = await frost(["restore", ...common(), "--to", target, "--include", "../etc"]);
      assert.equal(bad.code, 2);
      assert.equal(fs.existsSync(target), false);
    });

    it("--dry-run lists exactly what the restore writes, with sizes, and writes nothing", async () => {
      const target = path.join(dir, "dry");
      for (const patterns of [[], ["etc/**"], ["var/lib/db", "top.txt"]]) {
        const include = patterns.flatMap((p) => ["--include", p]);
        const dry = await frost(["restore", ...common(), "--to", target, "--dry-run", "--json", ...include]);
        assert.equal(dry.code, 0, dry.stderr);
        assert.equal(fs.existsSync(target), false);
        const listed = JSON.parse(dry.stdout) as {
          entries: { path: string; type: string; size: number }[];
          bytes: number;
        };
        const r = await frost(["restore", ...common(), "--to", target, ...include]);
        assert.equal(r.code, 0, r.stderr);
        const real = new Map<string, string>();
        if (patterns.length === 0) real.set(".", "dir 0");
        let bytes = 0;
        for (const rel of paths(target)) {
          const st = fs.lstatSync(path.join(target, rel));
          const type = st.isDirectory() ? "dir" : st.isSymbolicLink() ? "symlink" : "file";
          const size = type === "file" ? st.size : 0;
          bytes += size;
          real.set(rel, `${type} ${size}`);
        }
        const shown = new Map(listed.entries.map((e) => [e.path, `${e.type} ${e.size}`]));
        // Directories made only to hold selected entries are not listed as restored entries.
        const sel = patterns.length > 0 ? includeSelector(patterns) : undefined;
        for (const [rel, v] of real) {
          if (sel && v.startsWith("dir") && sel.select(rel, true) !== "in") real.delete(rel);
        }
        assert.deepEqual(Object.fromEntries([...shown].sort()), Object.fromEntries([...real].sort()));
        assert.equal(listed.bytes, bytes);
        cleanup(target);
      }
      // A non-empty target without --overwrite fails as the restore would.
      write(target, "x", "x");
      const busy = await frost(["restore", ...common(), "--to", target, "--dry-run"]);
      assert.equal(busy.code, 1);
      assert.match(busy.stderr, /it is not empty/);
      cleanup(target);
    });

    it("--plan names every object a restore reads, with the sizes on the storage", async () => {
      const r = await frost(["restore", ...common(), "--plan", "--json"]);
      assert.equal(r.code, 0, r.stderr);
      const plan = JSON.parse(r.stdout) as {
        chain: { id: string; level: number; objects: { key: string; size: number }[]; bytes: number }[];
        manifests: { objects: number; bytes: number };
        objects: number;
        bytes: number;
      };
      assert.deepEqual(plan.chain.map((m) => m.id), points);
      assert.deepEqual(plan.chain.map((m) => m.level), [0, 1, 2]);
      let total = 0;
      for (const m of plan.chain) {
        const onDisk = fs.readdirSync(path.join(storage, `${series()}/backups/${m.id}/data`)).sort();
        assert.deepEqual(m.objects.map((o) => path.basename(o.key)), onDisk);
        for (const o of m.objects) assert.equal(o.size, fs.statSync(path.join(storage, o.key)).size);
        total += m.bytes;
      }
      const manifests = fs.readdirSync(path.join(storage, `${series()}/manifests`));
      assert.equal(plan.manifests.objects, manifests.length);
      assert.equal(plan.bytes, total + plan.manifests.bytes);
      const text = await frost(["restore", ...common(), "--plan"]);
      assert.equal(text.code, 0, text.stderr);
      assert.match(text.stdout, /^Total: \d+ objects/m);
    });

    const series = () => fs.readdirSync(storage).find((n) => n.endsWith("_sel"))!;
  });
}

function isoOf(id: string): string {
  return id.replace(/^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)\.(\d{3})Z$/, "$1-$2-$3T$4:$5:$6.$7Z");
}
