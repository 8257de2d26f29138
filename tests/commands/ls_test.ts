/**
 * `frost ls`: the listing of every backup point equals the source tree as it was backed up (deletions,
 * replaced types and new links across levels included).
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { cleanup, frost, tempDir } from "../_cli.ts";

interface Listed {
  path: string;
  type: string;
  size: number;
  linkname?: string;
}

/** path → "type size [target]" of a real tree, as ls shows it. */
function walk(root: string): Map<string, string> {
  const out = new Map<string, string>();
  const visit = (rel: string) => {
    const abs = rel === "." ? root : path.join(root, rel);
    const st = fs.lstatSync(abs);
    if (st.isDirectory()) {
      out.set(rel, "dir 0");
      for (const name of fs.readdirSync(abs)) visit(rel === "." ? name : `${rel}/${name}`);
    } else if (st.isSymbolicLink()) {
      out.set(rel, `symlink 0 ${fs.readlinkSync(abs)}`);
    } else if (st.isFIFO()) {
      out.set(rel, "fifo 0");
    } else {
      out.set(rel, `file ${st.size}`);
    }
  };
  visit(".");
  return out;
}

function fromListing(rows: Listed[]): Map<string, string> {
  return new Map(rows.map((r) => {
    if (r.type === "symlink") return [r.path, `symlink 0 ${r.linkname}`];
    // A hard link restores as one more name of a regular file.
    return [r.path, `${r.type === "hardlink" ? "file" : r.type} ${r.size}`];
  }));
}

describe("frost ls", () => {
  let work: string;
  let src: string;
  let store: string;
  let pass: string;
  const points: { id: string; tree: Map<string, string> }[] = [];
  const common = () => ["--name", "l", "--hostname", "h1", "--storage", store];

  before(async () => {
    work = tempDir("ls");
    src = path.join(work, "src");
    store = path.join(work, "store");
    pass = path.join(work, "pass");
    fs.writeFileSync(pass, "ls passphrase\n");
    const w = (rel: string, data: string) => {
      fs.mkdirSync(path.dirname(path.join(src, rel)), { recursive: true });
      fs.writeFileSync(path.join(src, rel), data);
    };
    const steps: (() => void)[] = [
      () => {
        w("a.txt", "a");
        w("dir/b.txt", "bb");
        w("dir/sub/c.txt", "ccc");
        w("gone/x", "x");
        w("turns-dir", "file first");
      },
      () => {
        fs.rmSync(path.join(src, "gone"), { recursive: true });
        fs.rmSync(path.join(src, "dir/b.txt"));
        fs.symlinkSync("a.txt", path.join(src, "link"));
        w("a.txt", "a changed and longer");
      },
      () => {
        fs.rmSync(path.join(src, "turns-dir"));
        w("turns-dir/inside", "now a dir");
        fs.linkSync(path.join(src, "dir/sub/c.txt"), path.join(src, "hard"));
        fs.renameSync(path.join(src, "dir/sub"), path.join(src, "dir/moved"));
      },
      () => {
        fs.rmSync(path.join(src, "dir"), { recursive: true });
        w("dir", "dir is a file now");
      },
    ];
    for (const step of steps) {
      step();
      const r = await frost([
        "backup",
        src,
        ...common(),
        "--incremental",
        "--encrypt-pass-file",
        pass,
        "--json",
      ]);
      assert.equal(r.code, 0, r.stderr);
      points.push({ id: (JSON.parse(r.stdout) as { id: string }).id, tree: walk(src) });
    }
  });

  after(() => cleanup(work));

  it("lists every backup point as it was backed up", async () => {
    for (const p of points) {
      const r = await frost([
        "ls",
        ...common(),
        "--date",
        isoOf(p.id),
        "--json",
        "--encrypt-pass-file",
        pass,
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(fromListing(JSON.parse(r.stdout) as Listed[]), p.tree, `point ${p.id}`);
    }
  });

  it("lists one path, in text form too", async () => {
    const p = points[2]!;
    const r = await frost(["ls", ...common(), "--date", isoOf(p.id), "dir", "--encrypt-pass-file", pass]);
    assert.equal(r.code, 0, r.stderr);
    const paths = r.stdout.trim().split("\n").map((l) =>
      /^\S+ +\d+ \S+ \S+ (.*?)( -> .*| \(hard link of .*\))?$/.exec(l)![1]
    );
    assert.deepEqual(paths, ["dir", "dir/moved", "dir/moved/c.txt"]);
    assert.match(
      r.stdout,
      /^-rw.* 3 \d{4}-\d\d-\d\d \d\d:\d\d:\d\d dir\/moved\/c\.txt( \(hard link of hard\))?$/m,
    );
    const missing = await frost(["ls", ...common(), "nothing-here", "--encrypt-pass-file", pass]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /"nothing-here" is not in backup/);
  });

  it("shows each entry's own mode and time (UTC, to the second) in text form", async () => {
    const timed = path.join(work, "timed");
    fs.mkdirSync(timed);
    // Neighbours in the same second, the next second, the epoch, and modes that differ.
    const files: [string, number, number, string][] = [
      ["a", 0o640, Date.UTC(2001, 1, 3, 4, 5, 6, 700) / 1000, "-rw-r----- 2001-02-03 04:05:06"],
      ["b", 0o755, Date.UTC(2001, 1, 3, 4, 5, 6, 200) / 1000, "-rwxr-xr-x 2001-02-03 04:05:06"],
      ["c", 0o600, Date.UTC(2001, 1, 3, 4, 5, 7, 0) / 1000, "-rw------- 2001-02-03 04:05:07"],
      ["d", 0o644, 0.5, "-rw-r--r-- 1970-01-01 00:00:00"],
      ["e", 0o640, Date.UTC(2001, 1, 3, 4, 5, 7, 999) / 1000, "-rw-r----- 2001-02-03 04:05:07"],
    ];
    for (const [name, mode, mtime] of files) {
      fs.writeFileSync(path.join(timed, name), "");
      fs.chmodSync(path.join(timed, name), mode);
      fs.utimesSync(path.join(timed, name), mtime, mtime);
    }
    const t = ["--name", "t", "--hostname", "h1", "--storage", store];
    const b = await frost(["backup", timed, ...t]);
    assert.equal(b.code, 0, b.stderr);
    const r = await frost(["ls", ...t]);
    assert.equal(r.code, 0, r.stderr);
    const rows = r.stdout.trim().split("\n").slice(1).map((l) => l.replace(/ +0 /, " "));
    assert.deepEqual(rows, files.map(([name, , , shown]) => `${shown} ${name}`));
  });

  it("needs the key of encrypted backups", async () => {
    const r = await frost(["ls", ...common()], { env: { FROST_PASSPHRASE: "" } });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /encrypt/);
  });

  it("names a corrupt or truncated data segment, even when its bytes reached the archive reader", async () => {
    // Segments are read as they arrive and checked at their ends: bytes that do not decode must still be
    // reported as the corrupt object they are.
    const plainSrc = path.join(work, "plain-src");
    fs.mkdirSync(plainSrc);
    // Random bytes do not compress: 320 KB make several 64 KiB segments.
    for (let i = 0; i < 8; i++) {
      fs.writeFileSync(path.join(plainSrc, `f${i}`), crypto.getRandomValues(new Uint8Array(40_000)));
    }
    const plain = ["--name", "p", "--hostname", "h1"];
    const r = await frost([
      "backup",
      plainSrc,
      ...plain,
      "--storage",
      store,
      "--segment-size",
      "64K",
      "--json",
    ]);
    assert.equal(r.code, 0, r.stderr);
    const id = (JSON.parse(r.stdout) as { id: string }).id;
    const manifest = JSON.parse(
      fs.readFileSync(path.join(store, "h1_p", "manifests", `${id}.json`), "utf8"),
    ) as {
      segments: { key: string; size: number }[];
    };
    assert.ok(manifest.segments.length >= 3, `${manifest.segments.length} segments`);
    const good = await frost(["ls", ...plain, "--storage", store]);
    assert.equal(good.code, 0, good.stderr);
    for (const at of [0, 1, manifest.segments.length - 1]) {
      const copy = path.join(work, `bad-${at}`);
      fs.cpSync(store, copy, { recursive: true });
      const ref = manifest.segments[at]!;
      const file = path.join(copy, ref.key);
      const bytes = fs.readFileSync(file);
      // The whole first half overwritten: what reaches the decompressor does not decode.
      bytes.fill(0x55, 0, bytes.length >> 1);
      fs.writeFileSync(file, bytes);
      const bad = await frost(["ls", ...plain, "--storage", copy]);
      assert.equal(bad.code, 1, bad.stderr);
      assert.match(bad.stderr, new RegExp(`segment "${ref.key}": checksum mismatch`), bad.stderr);
      assert.equal(bad.stdout, "");
      fs.truncateSync(file, ref.size - 100);
      const short = await frost(["ls", ...plain, "--storage", copy]);
      assert.equal(short.code, 1, short.stderr);
      assert.match(
        short.stderr,
        new RegExp(`segment "${ref.key}": it holds ${ref.size - 100} bytes`),
        short.stderr,
      );
    }
  });
});

function isoOf(id: string): string {
  return id.replace(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})/, "$1-$2-$3T$4:$5:$6");
}
