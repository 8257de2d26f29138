/**
 * The child process of the idle-priority key derivation (private to encryption.ts). It lowers its own CPU
 * priority to nice 19, reads one JSON request `{ passphrase, salt, N, r, p }` (passphrase and salt in base64)
 * from standard input, and writes `{ key, priority }` (the 32-byte scrypt output in hex, and the priority it
 * ran at, null if the system refused to lower it) or `{ error }` to standard output.
 *
 * A process, not a worker thread: a process exits only once each of its threads has run to its end, so a
 * thread at nice 19 still deriving on a busy machine held up frost's exit by seconds; a child is killed and
 * left behind. It also keeps scrypt's memory (160 MiB by default) out of frost's own.
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
}

/** Serves one request on standard input / output; returns the exit code. */
export async function runKdfChild(): Promise<number> {
  let priority: number | null = null;
  try {
    os.setPriority(19);
    priority = os.getPriority();
  } catch {
    // derive at the priority we have
  }
  let reply: { key: string; priority: number | null } | { error: string };
  try {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    const { passphrase, salt, N, r, p } = JSON.parse(Buffer.concat(chunks).toString("utf8")) as Request;
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
