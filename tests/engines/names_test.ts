/**
 * End-to-end: file names that are not valid UTF-8 (latin-1 `caf\xe9`, `\xff\xfe.bin`, a folder with such a
 * name, a symlink pointing to such a name) are backed up at levels 0..2, listed and restored byte for byte
 * by both engines; GNU tar restores frost's archives, and frost restores GNU tar's.
 *
 * Deno's node:fs decodes every name as UTF-8, lossily, so frost run by Deno cannot name these files (the
 * last test checks that it says so). Without FROST_BIN the byte-exact tests therefore run main.ts under
 * Bun, the runtime the binary is built with; with FROST_BIN=dist/frost they run the binary. For the same
 * reason the trees are made and compared by bash and GNU find (raw bytes), not by node:fs in this test.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import path from "node:path";
import { execFileSync } from "node:child_process";
import { cleanup, frost, pseudoRandom, tempDir } from "../_cli.ts";
import { decodeName, encodeName, parseShownName, showName } from "../../engines/_names.ts";
import { compareNames } from "../../engines/_tar_state.ts";

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs frost where it can name any file: the binary ($FROST_BIN), else main.ts under Bun. */
function frostBytes(args: string[]): Promise<Run> {
  return frost(args, { bun: true });
}

async function ok(args: string[]): Promise<Run> {
  const r = await frostBytes(args);
  assert.equal(r.code, 0, `frost ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r;
}

/** Runs a bash script (ASCII; raw bytes written as $'\xff') with $1.. set to `args`. */
function bash(script: string, ...args: string[]): Buffer {
  return execFileSync("bash", ["-euc", script, "bash", ...args], { maxBuffer: 64 << 20 });
}

/**
 * A tree's exact description, from GNU find with raw names: every entry's type, mode, owner, mtime (whole
 * seconds), link count and size (not for directories), name bytes and link target bytes, then every
 * file's SHA-256. Returned as latin-1 text, one byte a character, so that a difference reads well.
 */
function describeTree(dir: string): string {
  return bash(
    `cd "$1"
     find . -type d -printf '%y %m %U:%G %Ts %p\\n' | LC_ALL=C sort
     find . ! -type d -printf '%y %m %n %U:%G %Ts %s %p -> %l\\n' | LC_ALL=C sort
     find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum`,
    dir,
  ).toString("latin1");
}

/** The hostile-name tree. */
const MAKE_TREE = `mkdir -p "$1" && cd "$1"
  printf 'plain\\n' > plain.txt
  printf 'ff\\n' > $'\\xff'
  printf 'latin-1\\n' > $'caf\\xe9'
  seq 1 3000 > $'\\xff\\xfe.bin'
  mkdir $'dir\\xe9' $'dir\\xe9/sub\\xfc'
  printf 'inner\\n' > $'dir\\xe9/inner'
  printf 'deep\\n' > $'dir\\xe9/sub\\xfc/\\xe0 la carte'
  ln -s $'tar\\xe9get' dangling
  ln -s $'dir\\xe9/inner' $'link\\xff'
  ln $'caf\\xe9' $'hard\\xe9'
  mkfifo $'fifo\\xf0'
  printf 'back\\n' > 'back\\slash'
  printf 'utf8\\n' > 'ünïcødé'
  printf 'valid U+FFFD\\n' > $'rep\\xef\\xbf\\xbd'
  long=$(printf 'x%.0s' {1..120})$'\\xe9\\xff'
  printf 'long\\n' > "$long" && ln -s "$long" $'long link\\xe9'
  printf 'order\\n' > $'m\\x80' && printf 'order\\n' > $'m\\xf0\\x9f\\x98\\x80' && printf 'order\\n' > $'n\\xc3x'
  printf 'order\\n' > $'n\\xc3\\xa9' && printf 'order\\n' > $'o\\xed\\xb3\\xbf'
  touch -d '2024-02-29 12:34:56' $'caf\\xe9' $'dir\\xe9/sub\\xfc'`;

/** Level 1: rename, delete, change and add names that are not UTF-8. */
const CHANGE_1 = `cd "$1"
  mv $'\\xff' $'\\xff renamed'
  rm $'\\xff\\xfe.bin'
  printf 'changed\\n' >> $'dir\\xe9/inner'
  printf 'new\\n' > $'new\\xe1'
  rm $'link\\xff' && ln -s $'new\\xe1' $'link\\xff'`;

/**
 * Level 2: a folder with such a name renamed, another deleted with its subtree, a file made a folder. The new
 * folder is made before the other is deleted: GNU tar tells folders by inode, and one made after the delete
 * may get the deleted folder's inode, which GNU tar then records as a rename of it onto the file.
 */
const CHANGE_2 = `cd "$1"
  rm $'new\\xe1' && mkdir $'new\\xe1' && printf 'in\\n' > $'new\\xe1/\\xe9'
  mv $'dir\\xe9/sub\\xfc' $'dir\\xe9/moved\\xfd'
  rm -r $'dir\\xe9/moved\\xfd'
  mv $'dir\\xe9' $'dir\\xea'`;

/** Backs up levels 0..2 of the tree through `engine`; returns each level's id and the tree it saw. */
async function backupLevels(
  work: string,
  engine: string,
): Promise<{ store: string; src: string; ids: string[]; trees: string[] }> {
  const src = path.join(work, `src-${engine}`);
  const store = path.join(work, `store-${engine}`);
  bash(MAKE_TREE, src);
  const ids: string[] = [];
  const trees: string[] = [];
  for (const change of ["", CHANGE_1, CHANGE_2]) {
    if (change) bash(change, src);
    trees.push(describeTree(src));
    const r = await ok([
      "backup",
      src,
      ...["--name", "names", "--hostname", "h1", "--storage", store, "--max-level", "3"],
      ...["--engine", engine, "--json"],
    ]);
    const summary = JSON.parse(r.stdout) as { id: string; level: number; warnings: number };
    assert.equal(summary.level, ids.length);
    assert.equal(summary.warnings, 0, r.stderr);
    ids.push(summary.id);
  }
  return { store, src, ids, trees };
}

/** Restores each level of a series by its creation time and compares it with the tree it backed up. */
async function restoreLevels(
  work: string,
  b: { store: string; ids: string[]; trees: string[] },
  tag: string,
) {
  const listed = JSON.parse(
    (await ok(["list", "--storage", b.store, "--name", "names", "--hostname", "h1", "--json"])).stdout,
  ) as { id: string; created: string }[];
  for (let i = 0; i < b.ids.length; i++) {
    const to = path.join(work, `restored-${tag}-${i}`);
    const created = listed.find((l) => l.id === b.ids[i])!.created;
    await ok([
      "restore",
      "--name",
      "names",
      "--hostname",
      "h1",
      "--storage",
      b.store,
      "--to",
      to,
      "--date",
      created,
    ]);
    assert.equal(describeTree(to), b.trees[i], `level ${i} restored by the ${tag} engine`);
  }
}

describe("names as bytes (engines/_names.ts)", () => {
  // Short byte strings, mostly above 0x7f: invalid sequences, valid ones, and mixtures.
  const samples: Uint8Array[] = [];
  const random = pseudoRandom(4096, 17);
  const pick = [
    0x41,
    0x5c,
    0x78,
    0x80,
    0xa9,
    0xbf,
    0xc0,
    0xc3,
    0xe0,
    0xed,
    0xef,
    0xf0,
    0xf4,
    0x9f,
    0xbd,
    0xff,
  ];
  for (let i = 0; i + 8 <= random.length; i += 8) {
    samples.push(random.subarray(i, i + (random[i]! % 8) + 1).map((b) => pick[b % pick.length]!));
  }
  const utf8 = new TextEncoder();
  samples.push(utf8.encode("café 😀 \uFFFD"), utf8.encode("\udcff"), new Uint8Array([0xed, 0xb3, 0xbf]));

  it("decodeName() and encodeName() give back every byte string, valid UTF-8 decoded as usual", () => {
    for (const bytes of samples) {
      const name = decodeName(bytes);
      assert.deepEqual(encodeName(name), bytes, name);
      assert.deepEqual(parseShownName(showName(name)), name);
    }
    assert.equal(decodeName(utf8.encode("café 😀")), "café 😀");
    assert.equal(decodeName(new Uint8Array([0x63, 0xe9, 0x5c])), "c\udce9\\");
    assert.equal(showName("c\udce9\\"), "c\\xe9\\\\");
  });

  it("compareNames() orders names by their bytes", () => {
    const byBytes = [...samples].sort((a, b) => {
      for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
      return a.length - b.length;
    });
    const byNames = samples.map((b) => decodeName(b)).sort(compareNames);
    assert.deepEqual(byNames.map((n) => encodeName(n)), byBytes);
  });
});

describe("file names that are not valid UTF-8", () => {
  let work: string;
  let tar: { store: string; src: string; ids: string[]; trees: string[] };

  before(async () => {
    work = tempDir("names");
    tar = await backupLevels(work, "tar");
  });
  after(() => cleanup(work));

  it("the tar engine backs them up at levels 0..2 and restores every level byte for byte", async () => {
    assert.match(tar.trees[0]!, /\.\/caf\xe9 -> /); // the fixture holds the raw byte
    await restoreLevels(work, tar, "tar");
  });

  it("GNU tar restores each level's data stream with the same names, deletions included", () => {
    const out = path.join(work, "gnu-tar");
    bash(`mkdir "$1"`, out);
    for (let i = 0; i < tar.ids.length; i++) {
      bash(
        `cat "$1"/h1_names/backups/"$3"/data/* | zstd -dc | tar -x --incremental -C "$2"`,
        tar.store,
        out,
        tar.ids[i]!,
      );
      assert.equal(describeTree(out), tar.trees[i], `GNU tar, level ${i}`);
    }
    // A directory's files come in the byte order of their names (as in its dumpdir), escaped bytes included.
    bash(
      `export LC_ALL=C
       cat "$1"/h1_names/backups/"$2"/data/* | zstd -dc | tar -t --quoting-style=literal |
         grep -av '/$' | grep -av '^\\./.*/' > "$3"
       grep -aq $'^./m\\x80$' "$3" && sort "$3" | cmp - "$3"`,
      tar.store,
      tar.ids[0]!,
      path.join(work, "members"),
    );
  });

  it("GNU tar's own incremental archives of them restore byte for byte (a Freezer container)", async () => {
    // Freezer's tar engine runs GNU tar --listed-incremental: raw names in headers and dumpdirs, and
    // rename records for the folder renamed at level 2. Level 0 is a pax archive instead, with the
    // hdrcharset=BINARY record that libarchive and star write for such names (GNU tar only reads past it).
    const src = path.join(work, "src-gnu");
    const root = path.join(work, "freezer");
    const z = 1_700_000_000;
    const trees: string[] = [];
    for (const [level, change] of ["", CHANGE_1, CHANGE_2].entries()) {
      if (change) bash(change, src);
      else bash(MAKE_TREE, src);
      trees.push(describeTree(src));
      const dir = `web1_etc/${z}/${level}_${z + 60 * level}`;
      bash(
        `mkdir -p "$2/metadata/tar/$3" "$2/data/tar/$3"
         printf '{"engine_name":"tar","compression":"gzip","encryption":false}' > "$2/metadata/tar/$3/metadata"
         printf snar > "$2/data/tar/$3/engine_metadata"
         cd "$1" && tar --create -z --listed-incremental="$2/snar" $4 . > "$2/data/tar/$3/data"`,
        src,
        root,
        dir,
        level === 0 ? "--format=posix --pax-option=hdrcharset=BINARY" : "",
      );
    }
    for (let level = 0; level < 3; level++) {
      const to = path.join(work, `restored-gnu-${level}`);
      const date = new Date((z + 60 * level) * 1000).toISOString();
      await ok([
        "freezer",
        "restore",
        "--storage",
        root,
        "--hostname",
        "web1",
        "--name",
        "etc",
        "--to",
        to,
        "--date",
        date,
      ]);
      assert.equal(describeTree(to), trees[level], `GNU tar level ${level}`);
    }
  });

  it("the rsync engine does the same", async () => {
    await restoreLevels(work, await backupLevels(work, "rsync"), "rsync");
  });

  it("frost ls shows them as \\xHH, --json as \\udcHH, and both round trip", async () => {
    const common = ["--name", "names", "--hostname", "h1", "--storage", tar.store];
    const text = (await ok(["ls", ...common])).stdout;
    assert.match(text, / caf\\xe9$/m);
    assert.match(text, / dir\\xea\/inner$/m);
    assert.match(text, / link\\xff -> new\\xe1$/m);
    assert.match(text, / back\\\\slash$/m);
    assert.match(text, / ünïcødé$/m);
    const json = (await ok(["ls", ...common, "--json"])).stdout;
    assert.ok(json.includes('"caf\\udce9"'), json);
    const rows = JSON.parse(json) as { path: string; linkname?: string }[];
    const paths = rows.map((r) => r.path);
    assert.ok(paths.includes("caf\udce9"));
    assert.ok(paths.includes("dir\udcea/inner"));
    assert.equal(rows.find((r) => r.path === "link\udcff")?.linkname, "new\udce1");
    // The shown form names the path again: ls PATH and restore --include select exactly it.
    const one = (await ok(["ls", ...common, "dir\\xea"])).stdout.trim().split("\n");
    assert.deepEqual(one.map((l) => l.split(" ").pop()), ["dir\\xea", "dir\\xea/inner"]);
    assert.match(text, / rep\uFFFD$/m);
    const dry = (await ok(["restore", ...common, "--to", path.join(work, "dry"), "--dry-run"])).stdout;
    assert.match(dry, / caf\\xe9$/m);
    const to = path.join(work, "included");
    await ok(["restore", ...common, "--to", to, "--include", "caf\\xe9", "--include", "new\\xe1/*"]);
    const got = bash(`cd "$1" && find . -print | LC_ALL=C sort`, to).toString("latin1");
    assert.equal(got, ".\n./caf\xe9\n./new\xe1\n./new\xe1/\xe9\n");
  });

  it("--exclude takes the \\xHH form too", async () => {
    const store = path.join(work, "store-exclude");
    const common = ["--name", "ex", "--hostname", "h1", "--storage", store];
    await ok(["backup", tar.src, ...common, "--exclude", "caf\\xe9", "--exclude", "dir\\xea/"]);
    const paths = (JSON.parse((await ok(["ls", ...common, "--json"])).stdout) as { path: string }[])
      .map((r) => r.path);
    assert.ok(paths.includes("hard\udce9"));
    assert.ok(!paths.includes("caf\udce9"));
    assert.ok(!paths.some((p) => p.startsWith("dir\udcea")), paths.join(" "));
  });

  it("a warning names such a file in the \\xHH form", async () => {
    const src = path.join(work, "src-socket");
    bash(`mkdir -p "$1"`, src);
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(path.join(src, "sock"), resolve));
    try {
      bash(`cd "$1" && mv sock $'sock\\xe9'`, src);
      const r = await frostBytes([
        "backup",
        src,
        ...["--name", "sock", "--hostname", "h1", "--storage", path.join(work, "store-socket")],
      ]);
      assert.equal(r.code, 3, r.stderr);
      assert.ok(r.stderr.includes(`${src}/sock\\xe9: socket ignored`), r.stderr);
    } finally {
      server.close();
    }
  });

  it(
    "frost under Deno leaves them out with a warning that says why",
    { skip: !!process.env.FROST_BIN },
    async () => {
      const src = path.join(work, "src-deno");
      bash(`mkdir -p "$1" && cd "$1" && printf x > $'caf\\xe9' && printf y > ok`, src);
      const store = path.join(work, "store-deno");
      const r = await frost(["backup", src, "--name", "deno", "--hostname", "h1", "--storage", store]);
      assert.equal(r.code, 3, r.stderr);
      assert.match(
        r.stderr,
        /name is not valid UTF-8 and this runtime cannot read it \(the frost binary can\)/,
      );
      const ls = await frost(["ls", "--name", "deno", "--hostname", "h1", "--storage", store]);
      assert.match(ls.stdout, / ok$/m);
    },
  );
});
