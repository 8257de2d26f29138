/**
 * Ad-hoc measurements of encryption (not a test, never fails a build). Two modes:
 *
 * **Transform** (default): MB/s (10^6 B/s) of the AES-256-GCM stream transforms alone: encrypt, decrypt, and
 * encrypt → decrypt in one pipeline (both stages running), best and median of `runs`, plus the time of one
 * default scrypt derivation. The source hands out fresh 1 MiB chunks (like compressor output); the last line
 * repeats the pipeline with reused source buffers, so that it leaves out the source's own allocation. On
 * Linux each pipeline line also says where the CPU time went: on the main thread (JavaScript, streams, the
 * copies into and out of WebCrypto) or on other threads (the AES-GCM work itself: Deno's and Bun's WebCrypto
 * run it on their thread pools).
 *
 * ```
 * ./node_modules/.bin/deno run -A bench/encryption.ts [MiB=512] [runs=5]
 * ./node_modules/.bin/bun run bench/encryption.ts [MiB] [runs]
 * ./node_modules/bun/bin/bun.exe build --compile --minify bench/encryption.ts --outfile /tmp/encbench && /tmp/encbench
 * ```
 *
 * **Backup** (`--backup BIN --data DIR`): full backups of DIR with the frost binary BIN, unencrypted and
 * encrypted, alternating within each round (ABBA order), each into a fresh store after an untimed `sync`;
 * wall time around the process, CPU (user + sys) from GNU time when installed. Prints best and median per
 * mode and the encrypted/plain ratios (the issue's bar: an encrypted full backup within 10 % of the plain one).
 *
 * ```
 * ./node_modules/.bin/deno run -A bench/encryption.ts --backup dist/frost --data DIR [--rounds 5] \
 *     [--modes plain,passphrase,recipient] [--store DIR]      # DIR: e.g. a data set of bench/run.ts
 * ```
 * The passphrase mode includes the scrypt derivation (N = 2^17, r = 10: 0.3–0.6 s of one core) that a
 * passphrase backup runs alongside its data, in a child process at nice 19; the recipient mode has no KDF.
 * @module
 */
import { Buffer } from "node:buffer";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import {
  createDecryptor,
  createEncryptor,
  DEFAULT_SCRYPT,
  generateDataKey,
  generateIdentity,
  newScryptParams,
  nodeScrypt,
} from "../codec/encryption.ts";
import { freshDir, haveGnuTime, measure, syncDisks } from "./measure.ts";

const MiB = 1 << 20;

const { values, positionals } = parseArgs({
  args: process.argv.slice(2),
  allowPositionals: true,
  options: {
    backup: { type: "string" },
    data: { type: "string" },
    rounds: { type: "string", default: "5" },
    modes: { type: "string", default: "plain,passphrase,recipient" },
    store: { type: "string" },
  },
});

const runtime = "Bun" in globalThis ? "bun" : "Deno" in globalThis ? "deno" : "node";

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function load(): string {
  return os.loadavg().map((l) => l.toFixed(2)).join(" ");
}

// ---------------------------------------------------------------------------------------------------------
// Transform mode

/** CPU milliseconds (user + sys) of this process's main thread and of all its other threads; null off Linux. */
function threadCpu(): { main: number; other: number } | null {
  try {
    let main = 0;
    let other = 0;
    for (const tid of fs.readdirSync("/proc/self/task")) {
      let stat: string;
      try {
        stat = fs.readFileSync(`/proc/self/task/${tid}/stat`, "utf8");
      } catch {
        continue; // the thread ended
      }
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const ms = (Number(fields[11]) + Number(fields[12])) * 10; // clock ticks of 10 ms
      if (Number(tid) === process.pid) main += ms;
      else other += ms;
    }
    return { main, other };
  } catch {
    return null;
  }
}

async function transformBench(total: number, runs: number): Promise<void> {
  const key = await generateDataKey();
  const block = crypto.getRandomValues(new Uint8Array(65536));
  const input = new Uint8Array(MiB);
  for (let o = 0; o < MiB; o += block.byteLength) input.set(block, o);
  const reused = Array.from({ length: 16 }, () => input.slice());

  /** `total` bytes of input in 1 MiB chunks: fresh copies (like compressor output), or 16 buffers in turn. */
  const source = (fresh = true): ReadableStream<Uint8Array> => {
    let sent = 0;
    return new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent >= total) return controller.close();
        controller.enqueue(fresh ? input.slice() : reused[(sent / MiB) % reused.length]!);
        sent += MiB;
      },
    }, new CountQueuingStrategy({ highWaterMark: 2 }));
  };

  /** The stream's chunks gathered into 32 MiB segments (as restore reads them). */
  const segments = async (stream: ReadableStream<Uint8Array>): Promise<Uint8Array[]> => {
    const out: Uint8Array[] = [];
    let parts: Uint8Array[] = [];
    let size = 0;
    for await (const part of stream) {
      parts.push(part);
      size += part.byteLength;
      if (size >= 32 * MiB) {
        out.push(Buffer.concat(parts));
        parts = [];
        size = 0;
      }
    }
    if (parts.length > 0) out.push(Buffer.concat(parts));
    return out;
  };

  const drain = async (stream: ReadableStream<Uint8Array>): Promise<number> => {
    let n = 0;
    for await (const part of stream) n += part.byteLength;
    return n;
  };

  const streamOf = (parts: Uint8Array[]): ReadableStream<Uint8Array> => {
    let i = 0;
    return new ReadableStream<Uint8Array>({
      pull(controller) {
        const part = parts[i++];
        if (part) controller.enqueue(part);
        else controller.close();
      },
    });
  };

  const bench = async (what: string, fn: () => Promise<number>, expected = total, threads = false) => {
    const rates: number[] = [];
    let mainMs = 0;
    let otherMs = 0;
    for (let i = 0; i < runs; i++) {
      const before = threads ? threadCpu() : null;
      const started = performance.now();
      const bytes = await fn();
      if (bytes !== expected) throw new Error(`${what}: ${bytes} bytes out, expected ${expected}`);
      rates.push(total / (performance.now() - started) / 1e3);
      const after = before && threadCpu();
      if (before && after) {
        mainMs += after.main - before.main;
        otherMs += after.other - before.other;
      }
    }
    const shown = rates.map((r) => r.toFixed(0)).join(" ");
    const gib = (total * runs) / (1 << 30);
    const cpu = threads && (mainMs || otherMs)
      ? `   CPU per GiB: main thread ${(mainMs / gib).toFixed(0)} ms, other threads ${
        (otherMs / gib).toFixed(0)
      } ms`
      : "";
    console.log(
      `${what.padEnd(42)} best ${Math.max(...rates).toFixed(0).padStart(5)}  median ${
        median(rates).toFixed(0).padStart(5)
      } MB/s   (runs: ${shown})${cpu}`,
    );
  };

  console.log(`${runtime}, ${total / MiB} MiB, ${runs} runs, load average ${load()}`);
  const sealed = await segments(source().pipeThrough(createEncryptor(key, "bench/data")));
  const sealedSize = sealed.reduce((n, s) => n + s.byteLength, 0);
  await bench("encrypt", () => drain(source().pipeThrough(createEncryptor(key, "bench/data"))), sealedSize);
  await bench(
    "decrypt (32 MiB segments)",
    () => drain(streamOf(sealed).pipeThrough(createDecryptor(key, "bench/data"))),
  );
  const pipeline = (fresh: boolean) => () =>
    drain(
      source(fresh).pipeThrough(createEncryptor(key, "bench/data")).pipeThrough(
        createDecryptor(key, "bench/data"),
      ),
    );
  await bench("encrypt → decrypt pipeline", pipeline(true), total, true);
  await bench("encrypt → decrypt, source buffers reused", pipeline(false), total, true);
  const times: number[] = [];
  for (let i = 0; i < 3; i++) {
    const kdf = newScryptParams();
    const started = performance.now();
    await nodeScrypt(new TextEncoder().encode("bench"), Buffer.from(kdf.salt, "base64"), kdf);
    times.push(performance.now() - started);
  }
  console.log(
    `scrypt N=2^${Math.log2(DEFAULT_SCRYPT.N)} r=${DEFAULT_SCRYPT.r} p=${DEFAULT_SCRYPT.p}: ` +
      times.map((t) => t.toFixed(0)).join(" ") + ` ms; load average at the end ${load()}`,
  );
}

// ---------------------------------------------------------------------------------------------------------
// Backup mode

type Mode = "plain" | "passphrase" | "recipient";

async function backupBench(bin: string, data: string, rounds: number, modes: Mode[]): Promise<void> {
  const scratch = fs.mkdtempSync(path.join(values.store ?? os.tmpdir(), "frost-encbench-"));
  const passFile = path.join(scratch, "pass");
  fs.writeFileSync(passFile, "bench passphrase\n");
  const recipientFile = path.join(scratch, "recipient");
  fs.writeFileSync(recipientFile, (await generateIdentity()).recipient + "\n");
  const store = path.join(scratch, "store");
  const extra: Record<Mode, string[]> = {
    plain: [],
    passphrase: ["--encrypt-pass-file", passFile],
    recipient: ["--encrypt-recipient-file", recipientFile],
  };
  // A clean environment like a cron job's (the cache folder holds the recipient mode's host key).
  const env = { HOME: scratch, FROST_CACHE_DIR: path.join(scratch, "cache"), PATH: "/usr/bin:/bin" };
  const samples = new Map<Mode, { wall: number[]; cpu: number[] }>(
    modes.map((m) => [m, { wall: [], cpu: [] }]),
  );
  console.log(
    `${bin}: full backups of ${data}, ${rounds} rounds of ${
      modes.join(", ")
    } (ABBA order); store ${store}; ` +
      `load average ${load()}${haveGnuTime ? "" : "; no GNU time: wall only"}`,
  );
  try {
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? modes : [...modes].reverse();
      const line: string[] = [];
      for (const mode of order) {
        freshDir(store);
        syncDisks();
        const cmd = [bin, "backup", data, "--name", "bench", "--storage", store, "--json", ...extra[mode]];
        const sample = measure(["env", "-i", ...Object.entries(env).map(([k, v]) => `${k}=${v}`), ...cmd], {
          timeout: 600,
          scratch,
          cwd: scratch,
        });
        const summary = JSON.parse(sample.stdout) as { files: number; warnings: number };
        if (summary.warnings > 0) {
          throw new Error(`${mode}: ${summary.warnings} warnings (is ${data} changing?)`);
        }
        samples.get(mode)!.wall.push(sample.wall);
        if (sample.cpu !== null) samples.get(mode)!.cpu.push(sample.cpu);
        line.push(
          `${mode} ${sample.wall.toFixed(2)} s${
            sample.cpu === null ? "" : ` (cpu ${sample.cpu.toFixed(2)})`
          }`,
        );
      }
      freshDir(store);
      console.log(`round ${round + 1}: ${line.join(", ")}; load ${load()}`);
    }
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
  const plain = samples.get("plain");
  for (const [mode, s] of samples) {
    const cpu = s.cpu.length
      ? `; cpu best ${Math.min(...s.cpu).toFixed(2)}, median ${median(s.cpu).toFixed(2)} s`
      : "";
    const vs = plain && mode !== "plain"
      ? `; ÷ plain: best ${(Math.min(...s.wall) / Math.min(...plain.wall)).toFixed(3)}, median ${
        (median(s.wall) / median(plain.wall)).toFixed(3)
      }${
        s.cpu.length && plain.cpu.length
          ? `, cpu median ${(median(s.cpu) / median(plain.cpu)).toFixed(3)}`
          : ""
      }`
      : "";
    console.log(
      `${mode.padEnd(10)} wall best ${Math.min(...s.wall).toFixed(2)}, median ${
        median(s.wall).toFixed(2)
      } s${cpu}${vs}`,
    );
  }
  console.log(`load average at the end ${load()}`);
}

if (values.backup) {
  if (!values.data) throw new Error("--backup needs --data DIR (a data set, e.g. from bench/run.ts)");
  const modes = values.modes.split(",") as Mode[];
  for (const m of modes) {
    if (!["plain", "passphrase", "recipient"].includes(m)) throw new Error(`unknown mode ${m}`);
  }
  await backupBench(path.resolve(values.backup), path.resolve(values.data), Number(values.rounds), modes);
} else {
  await transformBench(Number(positionals[0] ?? 512) * MiB, Number(positionals[1] ?? 5));
}
