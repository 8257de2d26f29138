/**
 * `frost freezer list|restore` on real Freezer-format containers, made with the exact commands Freezer's tar
 * engine runs (GNU tar --listed-incremental from the source directory with `.`, gzip/bzip2/xz, openssl enc
 * -aes-256-cfb with SHA-256 and MD5 keys), in Freezer's layout: `data` objects and Swift's segments form,
 * on local storage and on the test Swift, S3 (Swift s3api) and SFTP servers.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { execFileSync } from "node:child_process";
import { cleanup, copyTree, frost, tempDir } from "../_cli.ts";
import { assertSameTree } from "../_tree.ts";
import { type ServerEnv, withServer } from "../_file_servers.ts";
import { S3Storage } from "../../storage/s3.ts";
import { type FreezerBackup, freezerChain } from "../../freezer/freezer.ts";
import { DeleteBucketCommand, S3Client } from "@aws-sdk/client-s3";

const TAR_ARGS = [
  "--warning=none",
  "--no-check-device",
  "--one-file-system",
  "--preserve-permissions",
  "--same-owner",
  "--seek",
  "--ignore-failed-read",
];
const FLAG = { gzip: "-z", bzip2: "-j", xz: "-J" } as const;
type Compression = keyof typeof FLAG;
const Z_A = 1700000000;
const Z_B = Z_A + 3600;
const SECOND = 1_000_000_000n;

interface Level {
  z: number;
  level: number;
  ts: number;
  /** Per compression: the `tar -z|-j|-J` output. */
  streams: Record<Compression, Uint8Array>;
  /** A copy of the source as it was backed up. */
  snapshot: string;
}

/** Writes `rel` under `root`. */
function w(root: string, rel: string, text: string) {
  fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
  fs.writeFileSync(path.join(root, rel), text);
}

/** Runs one Freezer tar backup of `src` for each compression, from the parent's snar (`null`: level 0). */
function tarLevel(work: string, src: string, parentSnar: string | null, tag: string) {
  const streams = {} as Record<Compression, Uint8Array>;
  let snarOut = "";
  for (const c of Object.keys(FLAG) as Compression[]) {
    const snar = path.join(work, `snar-${tag}-${c}`);
    if (parentSnar) fs.copyFileSync(parentSnar, snar);
    streams[c] = execFileSync(
      "tar",
      ["--create", FLAG[c], ...TAR_ARGS, `--listed-incremental=${snar}`, "."],
      {
        cwd: src,
        maxBuffer: 1 << 28,
      },
    );
    if (c === "gzip") snarOut = snar;
  }
  return { streams, snar: snarOut };
}

/** Builds the source history: chain A (levels 0..3) and chain B (0, 1, then always-level 2 twice). */
function makeHistory(work: string): { a: Level[]; b: Level[] } {
  const src = path.join(work, "src");
  fs.mkdirSync(src);
  const snap = (name: string) => {
    const to = path.join(work, `snap-${name}`);
    copyTree(src, to);
    return to;
  };
  const levels: Level[] = [];
  const mutations: (() => void)[] = [
    () => {
      w(src, "a.txt", "alpha\n");
      w(src, "b.txt", "bravo\n");
      w(src, "dir/c.txt", "charlie\n");
      w(src, "dir/sub/d.txt", "delta\n".repeat(5000));
      fs.writeFileSync(path.join(src, "big.bin"), crypto.getRandomValues(new Uint8Array(60000)));
      fs.symlinkSync("a.txt", path.join(src, "link"));
      fs.mkdirSync(path.join(src, "empty"));
      fs.chmodSync(path.join(src, "b.txt"), 0o600);
      w(src, "e.txt", "echo, a file until level 3\n");
      w(src, "old/z.txt", "zulu, moved by a rename at level 3\n");
    },
    () => {
      w(src, "f.txt", "foxtrot\n");
      w(src, "a.txt", "alpha, modified\n");
      fs.rmSync(path.join(src, "b.txt"));
    },
    () => {
      fs.rmSync(path.join(src, "dir/sub"), { recursive: true });
      w(src, "dir/g.txt", "golf\n");
      fs.renameSync(path.join(src, "dir/c.txt"), path.join(src, "dir/c2.txt"));
    },
    () => {
      w(src, "f.txt", "foxtrot, modified at level 3\n");
      w(src, "h/i.txt", "india\n");
      fs.rmSync(path.join(src, "link"));
      fs.rmSync(path.join(src, "empty"), { recursive: true });
      // A folder renamed onto a file's name: GNU tar records R/T, as when a new folder takes a deleted one's inode.
      fs.rmSync(path.join(src, "e.txt"));
      fs.renameSync(path.join(src, "old"), path.join(src, "e.txt"));
    },
  ];
  let snar: string | null = null;
  for (let k = 0; k < 4; k++) {
    mutations[k]!();
    const r = tarLevel(work, src, snar, `a${k}`);
    snar = r.snar;
    levels.push({ z: Z_A, level: k, ts: Z_A + 60 * k, streams: r.streams, snapshot: snap(`a${k}`) });
  }
  // Chain B: a new level 0, a level 1, then two level-2 differentials against level 1 (always-level 2).
  const b: Level[] = [];
  w(src, "chain-b.txt", "second chain\n");
  let r = tarLevel(work, src, null, "b0");
  b.push({ z: Z_B, level: 0, ts: Z_B, streams: r.streams, snapshot: snap("b0") });
  w(src, "a.txt", "alpha in chain B\n");
  r = tarLevel(work, src, r.snar, "b1");
  const level1Snar = r.snar;
  b.push({ z: Z_B, level: 1, ts: Z_B + 60, streams: r.streams, snapshot: snap("b1") });
  w(src, "x.txt", "x at 2a\n");
  fs.rmSync(path.join(src, "f.txt"));
  r = tarLevel(work, src, level1Snar, "b2a");
  b.push({ z: Z_B, level: 2, ts: Z_B + 120, streams: r.streams, snapshot: snap("b2a") });
  w(src, "y.txt", "y at 2b\n");
  fs.rmSync(path.join(src, "x.txt"));
  r = tarLevel(work, src, level1Snar, "b2b");
  b.push({ z: Z_B, level: 2, ts: Z_B + 180, streams: r.streams, snapshot: snap("b2b") });
  return { a: levels, b };
}

interface Layout {
  compression: Compression;
  /** openssl's -md, or none. */
  encrypt?: "sha256" | "md5";
  /** Swift's form: `segments/%08d` of this size and a zero-byte `data`. */
  segmentSize?: number;
}

/** One object of a Freezer container. */
interface FreezerObject {
  key: string;
  data: Uint8Array;
  /** Swift: a zero-byte DLO manifest over `segments/`. */
  manifest?: boolean;
}

/** The objects of Freezer's container layout for `levels`. */
function freezerObjects(hbn: string, levels: Level[], layout: Layout, passFile: string): FreezerObject[] {
  const out: FreezerObject[] = [];
  for (const l of levels) {
    const dir = `${hbn}/${l.z}/${l.level}_${l.ts}`;
    let data = l.streams[layout.compression];
    if (layout.encrypt) {
      data = execFileSync("openssl", [
        "enc",
        "-aes-256-cfb",
        "-md",
        layout.encrypt,
        "-pass",
        `file:${passFile}`,
      ], { input: data, maxBuffer: 1 << 28, stdio: ["pipe", "pipe", "ignore"] });
    }
    const text = (t: string) => new TextEncoder().encode(t);
    out.push({
      key: `metadata/tar/${dir}/metadata`,
      data: text(
        JSON.stringify({
          engine_name: "tar",
          compression: layout.compression,
          encryption: Boolean(layout.encrypt),
        }),
      ),
    });
    out.push({ key: `data/tar/${dir}/engine_metadata`, data: text("snar") });
    if (layout.segmentSize) {
      for (let i = 0, off = 0; off < data.byteLength; i++, off += layout.segmentSize) {
        out.push({
          key: `data/tar/${dir}/segments/${String(i).padStart(8, "0")}`,
          data: data.subarray(off, off + layout.segmentSize),
        });
      }
      out.push({ key: `data/tar/${dir}/data`, data: new Uint8Array(0), manifest: true });
    } else {
      out.push({ key: `data/tar/${dir}/data`, data });
    }
  }
  return out;
}

/** Writes Freezer's container layout for `levels` under the local folder `root`. */
function writeFreezer(root: string, hbn: string, levels: Level[], layout: Layout, passFile: string) {
  for (const o of freezerObjects(hbn, levels, layout, passFile)) {
    fs.mkdirSync(path.dirname(path.join(root, o.key)), { recursive: true });
    fs.writeFileSync(path.join(root, o.key), o.data);
  }
}

/** Uploads `objects` the way Freezer's Swift storage does: segments, then a zero-byte DLO manifest `data`. */
async function swiftUpload(env: ServerEnv, container: string, prefix: string, objects: FreezerObject[]) {
  const auth = await fetch(env.FROST_TEST_SWIFT_AUTH!, {
    headers: { "X-Auth-User": env.FROST_TEST_SWIFT_USER!, "X-Auth-Key": env.FROST_TEST_SWIFT_KEY! },
  });
  await auth.body?.cancel();
  assert.equal(auth.status < 300, true, `Swift auth: ${auth.status}`);
  const base = auth.headers.get("x-storage-url")!;
  const token = auth.headers.get("x-auth-token")!;
  const put = async (url: string, body: Uint8Array, headers: Record<string, string> = {}) => {
    const r = await fetch(url, {
      method: "PUT",
      body: body as Uint8Array<ArrayBuffer>,
      headers: { "X-Auth-Token": token, ...headers },
    });
    await r.body?.cancel();
    assert.equal(r.status < 300, true, `PUT ${url}: ${r.status}`);
  };
  await put(`${base}/${container}`, new Uint8Array(0));
  const remove = async () => {
    for (
      const url of [...objects.map((o) => `${base}/${container}/${prefix}/${o.key}`), `${base}/${container}`]
    ) {
      const r = await fetch(url, { method: "DELETE", headers: { "X-Auth-Token": token } });
      await r.body?.cancel();
    }
  };
  for (const o of objects) {
    const key = `${prefix}/${o.key}`;
    const headers: Record<string, string> = o.manifest
      ? { "X-Object-Manifest": `${container}/${path.posix.dirname(key)}/segments` }
      : {};
    await put(`${base}/${container}/${key}`, o.data, headers);
  }
  return remove;
}

const iso = (ts: number) => new Date(ts * 1000).toISOString();

async function restoreAt(
  storage: string,
  to: string,
  date: number | undefined,
  extra: string[] = [],
  env: Record<string, string> = {},
) {
  const args = [
    "freezer",
    "restore",
    "--storage",
    storage,
    "--hostname",
    "web1",
    "--name",
    "etc",
    "--to",
    to,
  ];
  if (date !== undefined) args.push("--date", iso(date));
  const r = await frost([...args, ...extra], { env });
  assert.equal(r.code, 0, `frost ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r;
}

describe("frost freezer", () => {
  let work: string;
  let history: { a: Level[]; b: Level[] };
  let passFile: string;
  let wrongPass: string;
  before(() => {
    work = tempDir("freezer");
    history = makeHistory(work);
    passFile = path.join(work, "freezer.pass");
    fs.writeFileSync(passFile, "correct horse battery\n");
    wrongPass = path.join(work, "wrong.pass");
    fs.writeFileSync(wrongPass, "incorrect horse\n");
  });
  after(() => cleanup(work));

  const variants: Layout[] = [
    { compression: "gzip" },
    { compression: "bzip2" },
    { compression: "xz" },
    { compression: "gzip", encrypt: "sha256" },
    { compression: "bzip2", encrypt: "md5" },
    { compression: "xz", encrypt: "sha256", segmentSize: 1000 },
    { compression: "gzip", encrypt: "md5", segmentSize: 4099 },
  ];
  for (const layout of variants) {
    const label = `${layout.compression}${layout.encrypt ? `, openssl -md ${layout.encrypt}` : ""}${
      layout.segmentSize ? `, segments of ${layout.segmentSize} B` : ", one data object"
    }`;
    it(`restores every level of a chain (${label})`, async () => {
      const root = path.join(work, `store-${label.replace(/[^a-z0-9]+/g, "-")}`);
      writeFreezer(root, "web1_etc", history.a, layout, passFile);
      const extra = layout.encrypt ? ["--encrypt-pass-file", passFile] : [];
      for (const l of history.a) {
        const to = path.join(root + "-restore", `level${l.level}`);
        const r = await restoreAt(root, to, l.ts + 30, extra);
        assert.match(r.stdout, new RegExp(`level ${l.level}`));
        assertSameTree(l.snapshot, to, { mtimePrecisionNs: SECOND });
      }
      // No date: the newest.
      const latest = path.join(root + "-restore", "latest");
      await restoreAt(root, latest, undefined, extra);
      assertSameTree(history.a[3]!.snapshot, latest, { mtimePrecisionNs: SECOND });
    });
  }

  it("picks the newest chain at or before the date, and the newest always-level differential", async () => {
    const root = path.join(work, "store-chains");
    writeFreezer(root, "web1_etc", [...history.a, ...history.b], { compression: "gzip" }, passFile);
    writeFreezer(root, "web2_etc", history.a.slice(0, 1), { compression: "xz" }, passFile);
    const out = path.join(work, "restore-chains");
    // Between chain A's level 3 and chain B's level 0: chain A whole.
    await restoreAt(root, path.join(out, "a"), Z_B - 1);
    assertSameTree(history.a[3]!.snapshot, path.join(out, "a"), { mtimePrecisionNs: SECOND });
    // Exactly at a timestamp counts (Freezer's <=).
    await restoreAt(root, path.join(out, "b0"), Z_B);
    assertSameTree(history.b[0]!.snapshot, path.join(out, "b0"), { mtimePrecisionNs: SECOND });
    await restoreAt(root, path.join(out, "b1"), Z_B + 61);
    assertSameTree(history.b[1]!.snapshot, path.join(out, "b1"), { mtimePrecisionNs: SECOND });
    // Only 2a is at or before this date: no ambiguity.
    const r2a = await restoreAt(root, path.join(out, "b2a"), Z_B + 150);
    assertSameTree(history.b[2]!.snapshot, path.join(out, "b2a"), { mtimePrecisionNs: SECOND });
    assert.doesNotMatch(r2a.stderr, /notice/);
    // Both level-2 entries: 0, 1 and the newest level 2 (Freezer would pick either).
    const latest = await restoreAt(root, path.join(out, "b2b"), undefined);
    assertSameTree(history.b[3]!.snapshot, path.join(out, "b2b"), { mtimePrecisionNs: SECOND });
    assert.match(latest.stderr, /notice: .*2 level-2 backups.*always-level.*newest, 2_1700003780/);
    // Before any chain.
    const none = await frost([
      "freezer",
      "restore",
      "--storage",
      root,
      "--hostname",
      "web1",
      "--name",
      "etc",
      "--to",
      path.join(out, "none"),
      "--date",
      iso(Z_A - 1),
    ]);
    assert.equal(none.code, 1, none.stderr);
    assert.match(none.stderr, /No Freezer backup of "web1_etc" at or before/);
    assert.equal(fs.existsSync(path.join(out, "none")), false);

    // list
    const list = await frost(["freezer", "list", "--storage", root, "--json"]);
    assert.equal(list.code, 0, list.stderr);
    const rows = JSON.parse(list.stdout) as { backup: string; level: number; compression: string }[];
    assert.equal(rows.length, 9);
    assert.deepEqual(rows.filter((r) => r.backup === "web2_etc").map((r) => r.compression), ["xz"]);
    const one = await frost(["freezer", "list", "--storage", root, "--hostname", "web2"]);
    assert.equal(one.code, 0, one.stderr);
    assert.match(one.stdout, /web2_etc .* xz +no/);
    assert.doesNotMatch(one.stdout, /web1_etc/);
  });

  it("fails clearly: bad pass file, non-empty target, truncated stream, missing segment", async () => {
    const root = path.join(work, "store-wrong");
    writeFreezer(root, "web1_etc", history.a, { compression: "bzip2", encrypt: "sha256" }, passFile);
    const to = path.join(work, "restore-wrong");
    const base = ["freezer", "restore", "--storage", root, "--hostname", "web1", "--name", "etc", "--to", to];
    const wrong = await frost([...base, "--encrypt-pass-file", wrongPass]);
    assert.equal(wrong.code, 1, wrong.stderr);
    assert.match(wrong.stderr, /Wrong passphrase for Freezer backup "web1_etc\/1700000000\/0_1700000000"/);
    assert.equal(fs.existsSync(to), false);
    const missing = await frost(base);
    assert.equal(missing.code, 1, missing.stderr);
    assert.match(missing.stderr, /is encrypted: give its pass file with --encrypt-pass-file/);
    assert.equal(fs.existsSync(to), false);
    // A non-empty target needs --overwrite.
    fs.mkdirSync(to);
    fs.writeFileSync(path.join(to, "keep"), "x");
    const full = await frost([...base, "--encrypt-pass-file", passFile]);
    assert.equal(full.code, 1, full.stderr);
    assert.match(full.stderr, /not empty/);
    const usage = await frost(["freezer", "restore", "--storage", root, "--name", "etc"]);
    assert.equal(usage.code, 2, usage.stderr);

    // Truncated streams fail with the backup named (gzip, bzip2, xz).
    for (const compression of ["gzip", "bzip2", "xz"] as const) {
      const cut = path.join(work, `store-cut-${compression}`);
      writeFreezer(cut, "web1_etc", history.a.slice(0, 1), { compression }, passFile);
      const data = path.join(cut, `data/tar/web1_etc/${Z_A}/0_${Z_A}/data`);
      fs.writeFileSync(data, fs.readFileSync(data).subarray(0, 2000));
      const r = await frost([
        "freezer",
        "restore",
        "--storage",
        cut,
        "--hostname",
        "web1",
        "--name",
        "etc",
        "--to",
        to + "-cut",
      ]);
      assert.equal(r.code, 1, r.stderr);
      assert.match(
        r.stderr,
        /Cannot restore Freezer backup "web1_etc\/1700000000\/0_1700000000" \(level 0\): \S/,
      );
      cleanup(to + "-cut");
    }
    // Swift segments without the manifest object, and a missing segment.
    const segs = path.join(work, "store-segments");
    writeFreezer(
      segs,
      "web1_etc",
      history.a.slice(0, 2),
      { compression: "gzip", segmentSize: 2000 },
      passFile,
    );
    fs.rmSync(path.join(segs, `data/tar/web1_etc/${Z_A}/1_${Z_A + 60}/data`));
    const segArgs = ["freezer", "restore", "--storage", segs, "--hostname", "web1", "--name", "etc"];
    const seg = await frost([...segArgs, "--to", to + "-segs"]);
    assert.equal(seg.code, 0, seg.stderr);
    assertSameTree(history.a[1]!.snapshot, to + "-segs", { mtimePrecisionNs: SECOND });
    fs.rmSync(path.join(segs, `data/tar/web1_etc/${Z_A}/0_${Z_A}/segments/00000001`));
    const gap = await frost([...segArgs, "--to", to + "-gap"]);
    assert.equal(gap.code, 1, gap.stderr);
    assert.match(gap.stderr, /misses segment 00000001/);
    assert.equal(fs.existsSync(to + "-gap"), false);
  });

  withServer("swift", (env) => {
    const unique = () => `freezer-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
    const swiftEnv = {
      ST_AUTH: env.FROST_TEST_SWIFT_AUTH!,
      ST_USER: env.FROST_TEST_SWIFT_USER!,
      ST_KEY: env.FROST_TEST_SWIFT_KEY!,
    };
    it("restores Freezer's Swift form (segments + DLO manifest) from a real Swift server", async () => {
      const container = unique();
      const layout: Layout = { compression: "bzip2", encrypt: "sha256", segmentSize: 3000 };
      const objects = freezerObjects("web1_etc", history.a, layout, passFile);
      const remove = await swiftUpload(env, container, "freezer", objects);
      try {
        const storage = `swift://${container}/freezer`;
        const list = await frost(["freezer", "list", "--storage", storage, "--json"], { env: swiftEnv });
        assert.equal(list.code, 0, list.stderr);
        assert.equal((JSON.parse(list.stdout) as unknown[]).length, 4);
        for (const l of [history.a[1]!, history.a[3]!]) {
          const to = path.join(work, `${container}-level${l.level}`);
          await restoreAt(storage, to, l.ts, ["--encrypt-pass-file", passFile], swiftEnv);
          assertSameTree(l.snapshot, to, { mtimePrecisionNs: SECOND });
        }
      } finally {
        await remove();
      }
    });

    it("restores a Freezer container on S3 (Swift s3api: one data object per backup)", async () => {
      const bucket = unique();
      const credentials = { accessKeyId: env.FROST_TEST_S3_KEY!, secretAccessKey: env.FROST_TEST_S3_SECRET! };
      const endpoint = env.FROST_TEST_S3_ENDPOINT!;
      const settings = { endpoint, pathStyle: true, region: "us-east-1", credentials, env: {} };
      const objects = freezerObjects("web1_etc", history.a, { compression: "xz", encrypt: "md5" }, passFile);
      const s3 = await S3Storage.open(`s3://${bucket}/freezer`, { ...settings, create: true });
      try {
        for (const o of objects) await s3.put(o.key, o.data);
        const s3Env = {
          AWS_ACCESS_KEY_ID: credentials.accessKeyId,
          AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
        };
        const s3Args = ["--s3-endpoint", endpoint, "--s3-path-style", "--encrypt-pass-file", passFile];
        for (const l of [history.a[0]!, history.a[2]!, history.a[3]!]) {
          const to = path.join(work, `${bucket}-level${l.level}`);
          await restoreAt(`s3://${bucket}/freezer`, to, l.ts, s3Args, s3Env);
          assertSameTree(l.snapshot, to, { mtimePrecisionNs: SECOND });
        }
      } finally {
        for (const o of objects) await s3.delete(o.key);
        await s3.close();
        const client = new S3Client({ endpoint, region: "us-east-1", forcePathStyle: true, credentials });
        try {
          await client.send(new DeleteBucketCommand({ Bucket: bucket }));
        } finally {
          client.destroy();
        }
      }
    });
  });
  withServer("sshd", (env) => {
    it("restores a Freezer SSH-storage container over SFTP", async () => {
      // The SFTP URL's path is a folder of this machine (the test server's home): Freezer's SSH storage
      // writes plain files, so the layout is written there directly.
      const url = new URL(env.FROST_TEST_SFTP_URL!);
      const name = `freezer-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
      const root = path.join(decodeURIComponent(url.pathname), name);
      try {
        writeFreezer(root, "web1_etc", history.a, { compression: "gzip", encrypt: "sha256" }, passFile);
        const args = [
          "--sftp-key",
          env.FROST_TEST_SFTP_KEY!,
          "--sftp-known-hosts",
          env.FROST_TEST_SFTP_KNOWN_HOSTS!,
          "--encrypt-pass-file",
          passFile,
        ];
        for (const l of [history.a[2]!, history.a[3]!]) {
          const to = path.join(work, `${name}-level${l.level}`);
          await restoreAt(`${env.FROST_TEST_SFTP_URL}/${name}`, to, l.ts, args);
          assertSameTree(l.snapshot, to, { mtimePrecisionNs: SECOND });
        }
      } finally {
        cleanup(root);
      }
    });
  });
});

describe("freezerChain", () => {
  const b = (z: number, level: number, ts: number): FreezerBackup => ({
    hbn: "h_n",
    levelZero: z,
    level,
    timestamp: ts,
    id: `h_n/${z}/${level}_${ts}`,
    engineName: "tar",
    compression: "gzip",
    encryption: false,
  });
  const ids = (chain: FreezerBackup[]) => chain.map((x) => `${x.level}_${x.timestamp}`);
  const all = [
    b(100, 0, 100),
    b(100, 1, 110),
    b(100, 2, 120),
    b(100, 2, 130),
    b(100, 3, 140),
    b(200, 0, 200),
  ];

  it("takes the newest chain at or before the date and drops later increments", () => {
    assert.deepEqual(ids(freezerChain(all, "h_n").chain), ["0_200"]);
    assert.deepEqual(ids(freezerChain(all, "h_n", 199_999).chain), ["0_100", "1_110", "2_130", "3_140"]);
    assert.deepEqual(ids(freezerChain(all, "h_n", 115_000).chain), ["0_100", "1_110"]);
    assert.throws(() => freezerChain(all, "h_n", 99_000), /No Freezer backup of "h_n" at or before/);
    assert.throws(() => freezerChain(all, "x_y"), /No Freezer backup named "x_y"/);
  });

  it("applies only the newest same-level differential, and the newest parent at or before its child", () => {
    const latest2 = freezerChain(all, "h_n", 135_000);
    assert.deepEqual(ids(latest2.chain), ["0_100", "1_110", "2_130"]);
    assert.match(latest2.notices.join("\n"), /2 level-2 backups .*always-level.*only the newest, 2_130/);
    assert.deepEqual(ids(freezerChain(all, "h_n", 125_000).chain), ["0_100", "1_110", "2_120"]);
    const three = freezerChain(all, "h_n", 150_000);
    assert.match(three.notices.join("\n"), /using 2_130, the newest at or before 3_140, as its parent/);
  });

  it("refuses a chain with a missing level", () => {
    assert.throws(
      () => freezerChain([b(100, 0, 100), b(100, 2, 120)], "h_n"),
      /has no level-1 backup at or before 2_120 \(levels 0\.\.2 are needed\)/,
    );
  });
});
