/**
 * Ad-hoc throughput check of the encryption transforms alone (not a test). Prints MB/s (10^6 B/s) of
 * encrypt, decrypt, and encrypt → decrypt in one pipeline (both stages running), best of `runs`, plus the
 * time of one default scrypt derivation.
 *
 * ```
 * ./node_modules/.bin/deno run -A _encryption_bench.ts [MiB=512] [runs=5]
 * ./node_modules/.bin/bun run _encryption_bench.ts
 * ./node_modules/.bin/bun build --compile _encryption_bench.ts --outfile /tmp/encbench && /tmp/encbench
 * ```
 * @module
 */
import { Buffer } from "node:buffer";
import os from "node:os";
import {
  createDecryptor,
  createEncryptor,
  DEFAULT_SCRYPT,
  generateDataKey,
  newScryptParams,
  nodeScrypt,
} from "../encryption.ts";

const MiB = 1 << 20;
const total = Number(process.argv[2] ?? 512) * MiB;
const runs = Number(process.argv[3] ?? 5);
const key = await generateDataKey();
const block = crypto.getRandomValues(new Uint8Array(65536));
const input = new Uint8Array(MiB);
for (let o = 0; o < MiB; o += block.byteLength) input.set(block, o);

/** `bytes` of input in fresh 1 MiB chunks (like compressor output). */
function source(): ReadableStream<Uint8Array> {
  let sent = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent >= total) return controller.close();
      controller.enqueue(input.slice());
      sent += MiB;
    },
  }, new CountQueuingStrategy({ highWaterMark: 2 }));
}

/** The stream's chunks gathered into 32 MiB segments (as restore reads them). */
async function segments(stream: ReadableStream<Uint8Array>): Promise<Uint8Array[]> {
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
}

async function drain(stream: ReadableStream<Uint8Array>): Promise<number> {
  let n = 0;
  for await (const part of stream) n += part.byteLength;
  return n;
}

function streamOf(parts: Uint8Array[]): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      const part = parts[i++];
      if (part) controller.enqueue(part);
      else controller.close();
    },
  });
}

async function best(what: string, fn: () => Promise<number>, expected = total): Promise<void> {
  const rates: number[] = [];
  for (let i = 0; i < runs; i++) {
    const started = performance.now();
    const bytes = await fn();
    if (bytes !== expected) throw new Error(`${what}: ${bytes} bytes out, expected ${expected}`);
    rates.push(total / (performance.now() - started) / 1e3);
  }
  const shown = rates.map((r) => r.toFixed(0)).join(" ");
  console.log(`${what.padEnd(28)} best ${Math.max(...rates).toFixed(0).padStart(5)} MB/s   (runs: ${shown})`);
}

const runtime = "Bun" in globalThis ? "bun" : "Deno" in globalThis ? "deno" : "node";
console.log(`${runtime}, ${total / MiB} MiB, load average ${os.loadavg()[0]!.toFixed(2)}`);
const sealed = await segments(source().pipeThrough(createEncryptor(key, "bench/data")));
const sealedSize = sealed.reduce((n, s) => n + s.byteLength, 0);
await best("encrypt", () => drain(source().pipeThrough(createEncryptor(key, "bench/data"))), sealedSize);
await best(
  "decrypt (32 MiB segments)",
  () => drain(streamOf(sealed).pipeThrough(createDecryptor(key, "bench/data"))),
);
await best(
  "encrypt → decrypt pipeline",
  () =>
    drain(
      source().pipeThrough(createEncryptor(key, "bench/data")).pipeThrough(
        createDecryptor(key, "bench/data"),
      ),
    ),
);
const times: number[] = [];
for (let i = 0; i < 3; i++) {
  const kdf = newScryptParams();
  const started = performance.now();
  await nodeScrypt(new TextEncoder().encode("bench"), Buffer.from(kdf.salt, "base64"), kdf);
  times.push(performance.now() - started);
}
console.log(
  `scrypt N=2^${Math.log2(DEFAULT_SCRYPT.N)} r=${DEFAULT_SCRYPT.r} p=${DEFAULT_SCRYPT.p}: ` +
    times.map((t) => t.toFixed(0)).join(" ") + " ms",
);
