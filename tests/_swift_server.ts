/**
 * The Swift all-in-one test server (S3 through s3api, and Swift) that `tests/servers/swift.sh start` runs:
 * its settings, and the rule that a missing server skips the remote tests locally but fails them in CI.
 * @module
 */
import { it } from "node:test";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import process from "node:process";
import crypto from "node:crypto";

/** The settings `swift.sh` writes: FROST_TEST_SWIFT_AUTH/_USER/_KEY, FROST_TEST_S3_ENDPOINT/_KEY/_SECRET. */
export type SwiftServerEnv = Record<string, string>;

/** `${FROST_SERVERS_DIR:-/tmp/frost-servers}/swift.env`. */
export const SWIFT_ENV_FILE = path.join(process.env.FROST_SERVERS_DIR || "/tmp/frost-servers", "swift.env");

/** Reads the KEY=VALUE lines of the env file, or returns `undefined` when the file is missing. */
export function swiftServerEnv(): SwiftServerEnv | undefined {
  let text: string;
  try {
    text = fs.readFileSync(SWIFT_ENV_FILE, "utf8");
  } catch {
    return undefined;
  }
  const env: SwiftServerEnv = {};
  for (const line of text.split("\n")) {
    const match = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (match?.[1] !== undefined && match[2] !== undefined) env[match[1]] = match[2];
  }
  return env;
}

/**
 * Calls `register(env)` to register tests against the server. Without the server, registers one test under
 * `name` instead: skipped with the reason locally, failing when `$CI` is set (a skipped remote suite must
 * fail CI).
 */
export function withSwiftServer(name: string, register: (env: SwiftServerEnv) => void): void {
  const env = swiftServerEnv();
  if (env !== undefined) return register(env);
  if (process.env.CI) {
    it(name, () => {
      throw new Error(
        `the swift server is not running: CI must start tests/servers/swift.sh (${SWIFT_ENV_FILE})`,
      );
    });
  } else {
    // Deno's runner does not print skip reasons: the name carries it.
    const reason = "the swift server is not running: start it with tests/servers/swift.sh start";
    it(`${name} (skipped: ${reason})`, { skip: reason }, () => {});
  }
}

/** A name no other run uses, valid as an S3 bucket and a Swift container: `frost-test-<time>-<random>`. */
export function uniqueName(): string {
  return `frost-test-${Date.now().toString(36)}-${crypto.randomBytes(4).toString("hex")}`;
}

export { closedPort } from "./_file_servers.ts";

/** A loopback server that accepts connections and never answers, for timeout tests. */
export async function silentServer(): Promise<{ url: string; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
