/**
 * The child process that derives passphrase keys (private to encryption.ts). It reads one JSON request
 * `{ passphrase, salt, N, r, p, nice }` (passphrase and salt in base64) from standard input, lowers its own CPU
 * priority to `nice` when that is above 0, and writes `{ key, priority }` (the 32-byte scrypt output in hex,
 * and the priority it ran at, null if the system refused to change it) or `{ error }` to standard output.
 *
 * Why a process: it keeps scrypt's memory (160 MiB by default) out of frost's own, and a backup's derivation
 * runs at nice 19 beside the data (a process exits only once each of its threads has run to its end, so a
 * nice-19 thread still deriving on a busy machine held up frost's exit by seconds; a child is killed and left
 * behind).
 *
 * The built binary runs it as `frost __kdf`; Deno and Bun run this file (it imports only built-ins).
 * @module
 */
import nodeCrypto from "node:crypto";
import os from "node:os";
import { Buffer } from "node:buffer";

/** The hidden first argument that makes the built binary run `runKdfChild` instead of a command. */
export const KDF_CHILD_ARG = "__kdf";

/** The `maxmem` that scrypt with these parameters needs (node:crypto refuses more than it is allowed). */
export function scryptMaxmem({ N, r, p }: { N: number; r: number; p: number }): number {
  return 128 * r * (N + p + 2) + (1 << 20);
}

interface Request {
  passphrase: string;
  salt: string;
  N: number;
  r: number;
  p: number;
  nice: number;
}

/** Serves one request on standard input / output; returns the exit code. */
export async function runKdfChild(): Promise<number> {
  let reply: { key: string; priority: number | null } | { error: string };
  try {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    const request = JSON.parse(Buffer.concat(chunks).toString("utf8")) as Request;
    const { passphrase, salt, N, r, p } = request;
    let priority: number | null = null;
    try {
      if (request.nice > 0) os.setPriority(request.nice);
      priority = os.getPriority();
    } catch {
      // derive at the priority we have
    }
    const key = nodeCrypto.scryptSync(Buffer.from(passphrase, "base64"), Buffer.from(salt, "base64"), 32, {
      N,
      r,
      p,
      maxmem: scryptMaxmem({ N, r, p }),
    });
    reply = { key: key.toString("hex"), priority };
  } catch (err) {
    reply = { error: String((err as Error)?.message ?? err) };
  }
  await new Promise<void>((resolve) => process.stdout.write(JSON.stringify(reply) + "\n", () => resolve()));
  return "error" in reply ? 1 : 0;
}

if (import.meta.main) process.exit(await runKdfChild());
