/**
 * Remote throughput: frost backup/restore against each real test server on loopback, next to a plain client
 * loop of the same library the storage adapter uses, writing the same bytes as 32 MiB raw objects.
 *
 *   ./node_modules/.bin/deno run -A bench/remote.ts [--size 1G] [--servers s3,swift,sftp,ftp] [--rounds 2]
 *
 * Needs `dist/frost` (`deno task build`) and the servers of `tests/servers/{swift,sshd,ftp}.sh start` (their
 * settings are read from `${FROST_SERVERS_DIR:-/tmp/frost-servers}/*.env`). The source is one file of SIZE
 * incompressible bytes (AES-256-CTR keystream of a fixed seed) in /tmp, kept for the next run.
 *
 * For each server, alternating frost and plain, best of `--rounds` (each round on a fresh prefix, removed
 * after; `sync` before each timed step, so that write-back of the step before is not in its time):
 * - frost up: `frost backup SRC --name b --storage URL --compression none --json`; frost down: `frost restore
 *   --name b --storage URL --to EMPTY` (wall time of the process, so start-up is included);
 * - plain up: the file read in 32 MiB pieces and each stored as one object, 2 at a time (frost's concurrency):
 *   S3 PutObject (@aws-sdk/client-s3), Swift `fetch` PUT, SFTP `writeFile` (ssh2, one connection), FTP
 *   `uploadFrom` (basic-ftp, one connection per worker); plain down: GetObject / GET / `createReadStream` /
 *   `downloadTo` of those objects, 2 at a time, each written at its offset into one local file (as restore
 *   writes the file). SFTP: TCP_NODELAY on (as frost's adapter sets it) and 255 KiB `createReadStream`
 *   reads (frost's request size); ssh2's `writeFile`/`createReadStream` keep one request in flight per file.
 * MB/s is 10^6 bytes per second.
 * @module
 */
import { execFileSync, spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import process from "node:process";
import { Buffer } from "node:buffer";
import { Readable, Writable } from "node:stream";
import {
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from "@aws-sdk/client-s3";
import { Client as SshClient, type SFTPWrapper } from "ssh2";
import { Client as FtpClient } from "basic-ftp";

const ROOT = path.resolve(import.meta.dirname!, "..");
const FROST = path.join(ROOT, "dist", "frost");
const WORK = "/tmp/frost-bench-remote";
const PIECE = 32 * 1024 * 1024;
const CONCURRENCY = 2;
const TARGET = 0.8;
const SERVERS_DIR = process.env.FROST_SERVERS_DIR || "/tmp/frost-servers";

type Env = Record<string, string>;

function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?$/i.exec(text.trim());
  if (!m) throw new Error(`bad --size ${text}`);
  const unit = { "": 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 }[m[2]!.toUpperCase() as "K"];
  return Math.round(Number(m[1]) * unit);
}

function parseArgs(argv: string[]): { size: number; servers: string[]; rounds: number } {
  let size = 2 ** 30;
  let rounds = 2;
  let servers = ["s3", "swift", "sftp", "ftp"];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const [flag, inline] = a.includes("=") ? [a.slice(0, a.indexOf("=")), a.slice(a.indexOf("=") + 1)] : [a];
    const value = () => inline ?? argv[++i] ?? "";
    if (flag === "--size") size = parseSize(value());
    else if (flag === "--servers") servers = value().split(",").map((s) => s.trim()).filter(Boolean);
    else if (flag === "--rounds") rounds = Math.max(1, Number.parseInt(value(), 10) || 0);
    else throw new Error(`unknown argument ${a}`);
  }
  for (const s of servers) {
    if (!["s3", "swift", "sftp", "ftp"].includes(s)) throw new Error(`unknown server ${s}`);
  }
  return { size, servers, rounds };
}

function readEnv(name: string): Env {
  const file = path.join(SERVERS_DIR, `${name}.env`);
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch {
    throw new Error(`no ${file}: start the server with tests/servers/${name}.sh start`);
  }
  const env: Env = {};
  for (const line of text.split("\n")) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m) env[m[1]!] = m[2]!;
  }
  return env;
}

/** The source folder: one file of `size` bytes of AES-256-CTR keystream (seeded, incompressible). */
async function sourceDir(size: number): Promise<{ dir: string; file: string }> {
  const dir = path.join(WORK, `src-${size}`);
  const file = path.join(dir, "data.bin");
  if (fs.existsSync(file) && fs.statSync(file).size === size) return { dir, file };
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const key = crypto.createHash("sha256").update("frost-bench-remote seed 1").digest();
  const cipher = crypto.createCipheriv("aes-256-ctr", key, Buffer.alloc(16));
  const zeros = Buffer.alloc(8 * 1024 * 1024);
  const fh = await fsp.open(file + ".tmp", "w");
  try {
    for (let done = 0; done < size;) {
      const n = Math.min(zeros.length, size - done);
      await fh.write(cipher.update(zeros.subarray(0, n)));
      done += n;
    }
  } finally {
    await fh.close();
  }
  fs.renameSync(file + ".tmp", file);
  return { dir, file };
}

/** Runs frost; rejects unless it exits 0. Returns the wall time in seconds. */
function runFrost(args: string[], env: Env): Promise<number> {
  const start = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(FROST, args, {
      cwd: WORK,
      env: { ...process.env, NO_COLOR: "1", ...env },
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    child.stderr!.on("data", (d) => stderr += d);
    child.on("error", reject);
    child.on("close", (code) => {
      if (code === 0) resolve((performance.now() - start) / 1000);
      else reject(new Error(`frost ${args.join(" ")} exited ${code}: ${stderr}`));
    });
  });
}

/** A plain client of one server: stores and fetches raw objects under `prefix/`. */
interface Plain {
  put(key: string, data: Uint8Array): Promise<void>;
  /** Fetches `key`, handing each chunk with its offset in the object to `sink`. */
  get(key: string, sink: (chunk: Uint8Array, offset: number) => Promise<void>): Promise<void>;
  /** Removes everything under `prefix` (setup/cleanup, not timed). */
  remove(prefix: string): Promise<void>;
  close(): Promise<void>;
}

interface Server {
  name: string;
  /** frost's --storage URL, extra options and environment for a run under `prefix`. */
  frost(prefix: string): { storage: string; args: string[]; env: Env };
  /** Opens one plain client for `worker` (0..CONCURRENCY-1); the same object for all when they share one. */
  open(): Promise<(worker: number) => Plain>;
}

async function drain(stream: ReadableStream<Uint8Array>, sink: (c: Uint8Array, o: number) => Promise<void>) {
  let offset = 0;
  for await (const chunk of stream) {
    await sink(chunk, offset);
    offset += chunk.byteLength;
  }
}

function s3Server(env: Env): Server {
  const bucket = "frostbench-s3";
  const endpoint = env.FROST_TEST_S3_ENDPOINT!;
  const credentials = { accessKeyId: env.FROST_TEST_S3_KEY!, secretAccessKey: env.FROST_TEST_S3_SECRET! };
  return {
    name: "s3",
    frost: (prefix) => ({
      storage: `s3://${bucket}/${prefix}`,
      args: ["--s3-endpoint", endpoint, "--s3-path-style"],
      env: { AWS_ACCESS_KEY_ID: credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey },
    }),
    async open() {
      const client = new S3Client({ region: "us-east-1", endpoint, forcePathStyle: true, credentials });
      await client.send(new CreateBucketCommand({ Bucket: bucket })).catch((err) => {
        if (!/BucketAlreadyOwnedByYou|BucketAlreadyExists/.test(String(err?.name))) throw err;
      });
      const plain: Plain = {
        async put(key, data) {
          await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: data }));
        },
        async get(key, sink) {
          const r = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
          await drain(r.Body!.transformToWebStream(), sink);
        },
        async remove(prefix) {
          for (;;) {
            const r = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: `${prefix}/` }));
            const keys = (r.Contents ?? []).map((o) => o.Key!);
            if (keys.length === 0) return;
            // One by one: Swift's s3api wants a Content-MD5 on DeleteObjects.
            for (const key of keys) await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
          }
        },
        close: () => Promise.resolve(client.destroy()),
      };
      return () => plain;
    },
  };
}

function swiftServer(env: Env): Server {
  const container = "frostbench-swift";
  const auth = {
    ST_AUTH: env.FROST_TEST_SWIFT_AUTH!,
    ST_USER: env.FROST_TEST_SWIFT_USER!,
    ST_KEY: env.FROST_TEST_SWIFT_KEY!,
  };
  return {
    name: "swift",
    frost: (prefix) => ({ storage: `swift://${container}/${prefix}`, args: [], env: auth }),
    async open() {
      const a = await fetch(auth.ST_AUTH, {
        headers: { "X-Auth-User": auth.ST_USER, "X-Auth-Key": auth.ST_KEY },
      });
      await a.body?.cancel();
      if (!a.ok) throw new Error(`swift auth: ${a.status}`);
      const base = `${a.headers.get("x-storage-url")}/${container}`;
      const headers = { "X-Auth-Token": a.headers.get("x-auth-token")! };
      const check = async (r: Response, what: string) => {
        if (!r.ok) {
          await r.body?.cancel();
          throw new Error(`swift ${what}: ${r.status}`);
        }
      };
      const c = await fetch(base, { method: "PUT", headers });
      await c.body?.cancel();
      await check(c, "create container");
      const url = (key: string) => `${base}/${key.split("/").map(encodeURIComponent).join("/")}`;
      const plain: Plain = {
        async put(key, data) {
          const r = await fetch(url(key), { method: "PUT", headers, body: data as Uint8Array<ArrayBuffer> });
          await check(r, `PUT ${key}`);
          await r.body?.cancel();
        },
        async get(key, sink) {
          const r = await fetch(url(key), { headers });
          await check(r, `GET ${key}`);
          await drain(r.body!, sink);
        },
        async remove(prefix) {
          for (;;) {
            const r = await fetch(`${base}?format=json&prefix=${encodeURIComponent(prefix + "/")}`, {
              headers,
            });
            await check(r, "list");
            const names = (await r.json() as { name: string }[]).map((o) => o.name);
            if (names.length === 0) return;
            for (const name of names) {
              const d = await fetch(url(name), { method: "DELETE", headers });
              await d.body?.cancel();
            }
          }
        },
        close: () => Promise.resolve(),
      };
      return () => plain;
    },
  };
}

/** Calls an ssh2 callback-style function as a promise. */
function call<T = void>(fn: (cb: (err: Error | null | undefined, value?: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((err, value) => err ? reject(err) : resolve(value as T)));
}

function sftpServer(env: Env): Server {
  const url = new URL(env.FROST_TEST_SFTP_URL!);
  const root = decodeURIComponent(url.pathname); // the server is local: cleanup removes the folder directly
  return {
    name: "sftp",
    frost: (prefix) => ({
      storage: `${env.FROST_TEST_SFTP_URL}/${prefix}`,
      args: ["--sftp-key", env.FROST_TEST_SFTP_KEY!, "--sftp-known-hosts", env.FROST_TEST_SFTP_KNOWN_HOSTS!],
      env: {},
    }),
    async open() {
      const client = new SshClient();
      await new Promise<void>((resolve, reject) => {
        client.once("ready", resolve).once("error", reject).connect({
          host: url.hostname,
          port: Number(url.port || 22),
          username: decodeURIComponent(url.username),
          privateKey: fs.readFileSync(env.FROST_TEST_SFTP_KEY!),
          // Loopback test server; frost itself checks the key against known_hosts.
          hostVerifier: () => true,
        });
      });
      client.setNoDelay(true); // as frost's adapter does: without it each request waits ~40 ms (delayed ACK)
      const sftp = await call<SFTPWrapper>((cb) => client.sftp(cb));
      const made = new Set<string>();
      const mkdirs = async (dir: string) => {
        if (made.has(dir)) return;
        await call((cb) => sftp.mkdir(dir, cb)).catch(async (err) => {
          if ((err as { code?: number }).code === 2) { // no such file: the parent is missing
            await mkdirs(path.posix.dirname(dir));
            await call((cb) => sftp.mkdir(dir, cb)).catch(() => {});
          }
        });
        made.add(dir);
      };
      const plain: Plain = {
        async put(key, data) {
          const file = path.posix.join(root, key);
          await mkdirs(path.posix.dirname(file));
          await call((cb) =>
            sftp.writeFile(file, Buffer.from(data.buffer, data.byteOffset, data.byteLength), cb)
          );
        },
        async get(key, sink) {
          const stream = sftp.createReadStream(path.posix.join(root, key), { highWaterMark: 255 * 1024 });
          await drain(Readable.toWeb(stream) as ReadableStream<Uint8Array>, sink);
        },
        async remove(prefix) {
          made.clear();
          await fsp.rm(path.join(root, prefix), { recursive: true, force: true });
        },
        close: () => Promise.resolve(client.end() && undefined),
      };
      return () => plain;
    },
  };
}

function ftpServer(env: Env): Server {
  const url = new URL(env.FROST_TEST_FTP_URL!);
  // pure-ftpd chroots the user at ftp/home (tests/servers/ftp.sh): cleanup removes the folder directly.
  const local = path.join(SERVERS_DIR, "ftp", "home", decodeURIComponent(url.pathname));
  const remoteRoot = decodeURIComponent(url.pathname);
  return {
    name: "ftp",
    frost: (prefix) => ({
      storage: `${env.FROST_TEST_FTP_URL}/${prefix}`,
      args: [],
      env: { FROST_FTP_PASSWORD: env.FROST_TEST_FTP_PASSWORD! },
    }),
    async open() {
      const plains: Plain[] = [];
      // Shared by the workers: the first to need a folder makes it, the other waits for it.
      const dirs = new Map<string, Promise<void>>();
      for (let w = 0; w < CONCURRENCY; w++) {
        const client = new FtpClient(0);
        await client.access({
          host: url.hostname,
          port: Number(url.port || 21),
          user: decodeURIComponent(url.username),
          password: env.FROST_TEST_FTP_PASSWORD!,
        });
        plains.push({
          async put(key, data) {
            const file = path.posix.join(remoteRoot, key);
            const dir = path.posix.dirname(file);
            if (!dirs.has(dir)) dirs.set(dir, client.ensureDir(dir));
            await dirs.get(dir);
            await client.uploadFrom(
              Readable.from([Buffer.from(data.buffer, data.byteOffset, data.byteLength)]),
              file,
            );
          },
          async get(key, sink) {
            let offset = 0;
            let pending = Promise.resolve();
            const out = new Writable({
              write(chunk: Buffer, _enc, done) {
                pending = sink(chunk, offset);
                offset += chunk.byteLength;
                pending.then(() => done(), done);
              },
            });
            await client.downloadTo(out, path.posix.join(remoteRoot, key));
            await pending;
          },
          async remove(prefix) {
            dirs.clear();
            await fsp.rm(path.join(local, prefix), { recursive: true, force: true });
          },
          close: () => Promise.resolve(client.close()),
        });
      }
      return (worker) => plains[worker]!;
    },
  };
}

/** Runs `job(i)` for i in 0..count-1, CONCURRENCY at a time, worker `w` taking the next index. */
async function pool(count: number, job: (i: number, worker: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async (_, worker) => {
      while (next < count) await job(next++, worker);
    }),
  );
}

async function plainUpload(plain: (w: number) => Plain, file: string, size: number, prefix: string) {
  const count = Math.ceil(size / PIECE);
  const fh = await fsp.open(file, "r");
  const start = performance.now();
  try {
    await pool(count, async (i, w) => {
      const length = Math.min(PIECE, size - i * PIECE);
      const buf = Buffer.allocUnsafe(length);
      const { bytesRead } = await fh.read(buf, 0, length, i * PIECE);
      if (bytesRead !== length) throw new Error("short read of the source");
      await plain(w).put(`${prefix}/${String(i).padStart(6, "0")}`, buf);
    });
  } finally {
    await fh.close();
  }
  return (performance.now() - start) / 1000;
}

async function plainDownload(plain: (w: number) => Plain, to: string, size: number, prefix: string) {
  const count = Math.ceil(size / PIECE);
  const fh = await fsp.open(to, "w");
  let total = 0;
  const start = performance.now();
  try {
    await pool(count, async (i, w) => {
      await plain(w).get(`${prefix}/${String(i).padStart(6, "0")}`, async (chunk, offset) => {
        await fh.write(chunk, 0, chunk.byteLength, i * PIECE + offset);
        total += chunk.byteLength;
      });
    });
  } finally {
    await fh.close();
  }
  if (total !== size) throw new Error(`plain download got ${total} bytes, not ${size}`);
  return (performance.now() - start) / 1000;
}

/**
 * Writes dirty pages out (`sync`) before a timed step, so that the write-back of the step before (the
 * server's files, a restored file) does not land in its time.
 */
function settle(): void {
  execFileSync("sync");
}

interface Result {
  frostUp: number;
  plainUp: number;
  frostDown: number;
  plainDown: number;
}

async function benchServer(
  server: Server,
  src: { dir: string; file: string },
  size: number,
  rounds: number,
): Promise<Result> {
  const best = { frostUp: Infinity, plainUp: Infinity, frostDown: Infinity, plainDown: Infinity };
  const plain = await server.open();
  const runId = `bench-${Date.now().toString(36)}`;
  const restoreDir = path.join(WORK, "restore");
  const plainFile = path.join(WORK, "plain-download.bin");
  const log = (what: string, s: number) =>
    console.error(`  ${server.name} ${what}: ${s.toFixed(2)} s, ${(size / s / 1e6).toFixed(1)} MB/s`);
  try {
    for (let round = 0; round < rounds; round++) {
      // Alternate which goes first, so neither always meets a warmer (or fuller) server.
      const order = round % 2 === 0 ? ["frost", "plain"] : ["plain", "frost"];
      for (const who of order) {
        const prefix = `${runId}-${round}-${who}`;
        try {
          if (who === "frost") {
            const t = server.frost(prefix);
            const common = ["--name", "b", "--storage", t.storage, ...t.args];
            settle();
            const up = await runFrost(
              ["backup", src.dir, ...common, "--compression", "none", "--json"],
              t.env,
            );
            log("frost up", up);
            fs.rmSync(restoreDir, { recursive: true, force: true });
            fs.mkdirSync(restoreDir);
            settle();
            const down = await runFrost(["restore", ...common, "--to", restoreDir], t.env);
            log("frost down", down);
            const restored = fs.statSync(path.join(restoreDir, "data.bin")).size;
            if (restored !== size) throw new Error(`frost restored ${restored} bytes, not ${size}`);
            best.frostUp = Math.min(best.frostUp, up);
            best.frostDown = Math.min(best.frostDown, down);
          } else {
            settle();
            const up = await plainUpload(plain, src.file, size, prefix);
            log("plain up", up);
            settle();
            const down = await plainDownload(plain, plainFile, size, prefix);
            log("plain down", down);
            best.plainUp = Math.min(best.plainUp, up);
            best.plainDown = Math.min(best.plainDown, down);
          }
        } finally {
          await plain(0).remove(prefix);
          fs.rmSync(restoreDir, { recursive: true, force: true });
          fs.rmSync(plainFile, { force: true });
        }
      }
    }
  } finally {
    for (let w = 0; w < CONCURRENCY; w++) await plain(w).close();
  }
  return best;
}

function table(size: number, rows: [string, Result][]): string {
  const mbps = (s: number) => (size / s / 1e6).toFixed(1);
  const head = ["server", "frost up", "plain up", "ratio", "frost down", "plain down", "ratio", "verdict"];
  const lines = rows.map(([name, r]) => {
    const up = r.plainUp / r.frostUp; // ratio of throughputs = inverse ratio of times
    const down = r.plainDown / r.frostDown;
    const verdict = up >= TARGET && down >= TARGET ? "PASS" : "SHORT";
    return [
      name,
      mbps(r.frostUp),
      mbps(r.plainUp),
      up.toFixed(2),
      mbps(r.frostDown),
      mbps(r.plainDown),
      down.toFixed(2),
      verdict,
    ];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const fmt = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`;
  return [fmt(head), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...lines.map(fmt)].join("\n");
}

async function main() {
  const { size, servers, rounds } = parseArgs(process.argv.slice(2));
  if (!fs.existsSync(FROST)) {
    throw new Error(`no ${FROST}: build it with ./node_modules/.bin/deno task build`);
  }
  fs.mkdirSync(WORK, { recursive: true });
  console.error(`source: ${size} bytes in ${WORK}`);
  const src = await sourceDir(size);
  const make: Record<string, () => Server> = {
    s3: () => s3Server(readEnv("swift")),
    swift: () => swiftServer(readEnv("swift")),
    sftp: () => sftpServer(readEnv("sshd")),
    ftp: () => ftpServer(readEnv("ftp")),
  };
  const rows: [string, Result][] = [];
  for (const name of servers) {
    console.error(`${name}:`);
    rows.push([name, await benchServer(make[name]!(), src, size, rounds)]);
  }
  console.log(
    `Remote throughput, ${size} bytes (one incompressible file), MB/s = 10^6 B/s, best of ${rounds}, ` +
      `plain = ${PIECE / 2 ** 20} MiB objects, ${CONCURRENCY} at a time; PASS = both ratios >= ${TARGET}\n`,
  );
  console.log(table(size, rows));
}

await main();
