/**
 * The file-server test servers (`tests/servers/sshd.sh`, `tests/servers/ftp.sh`): their settings, and the
 * rule that a missing server skips its tests locally but fails them in CI.
 * @module
 */
import { it } from "node:test";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import process from "node:process";

/** The KEY=VALUE settings a server script writes to `${FROST_SERVERS_DIR:-/tmp/frost-servers}/<name>.env`. */
export type ServerEnv = Record<string, string>;

/** The env file of server `name` (`sshd`, `ftp`). */
export function serverEnvFile(name: string): string {
  return path.join(process.env.FROST_SERVERS_DIR || "/tmp/frost-servers", `${name}.env`);
}

/** Reads the settings of server `name`, or returns `undefined` when its env file is missing. */
export function serverEnv(name: string): ServerEnv | undefined {
  let text: string;
  try {
    text = fs.readFileSync(serverEnvFile(name), "utf8");
  } catch {
    return undefined;
  }
  const env: ServerEnv = {};
  for (const line of text.split("\n")) {
    const match = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (match?.[1] !== undefined && match[2] !== undefined) env[match[1]] = match[2];
  }
  return env;
}

/**
 * Calls `register(env)` to register the tests of server `name` (started by `tests/servers/<name>.sh`).
 * Without the server, registers one test instead: skipped with the reason locally, failing when `$CI` is
 * set, since a skipped remote suite must fail CI.
 */
export function withServer(name: string, register: (env: ServerEnv) => void): void {
  const env = serverEnv(name);
  if (env !== undefined) return register(env);
  const title = `the ${name} test server is running`;
  if (process.env.CI) {
    it(title, () => {
      throw new Error(
        `the ${name} server is not running: CI must start tests/servers/${name}.sh (no ${
          serverEnvFile(name)
        })`,
      );
    });
  } else {
    it(
      title,
      { skip: `the ${name} server is not running: start it with tests/servers/${name}.sh start` },
      () => {},
    );
  }
}

/** A loopback port nothing listens on (it was free a moment ago). */
export async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * A TCP proxy on loopback to `port`, whose `cut()` drops every connection it carries (a server or network
 * failure, as the client sees it).
 */
export async function cuttableProxy(
  port: number,
): Promise<{ port: number; cut: () => void; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((inbound) => {
    const outbound = net.connect(port, "127.0.0.1");
    for (const socket of [inbound, outbound]) {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
      socket.on("error", () => {});
    }
    inbound.pipe(outbound);
    outbound.pipe(inbound);
    inbound.on("close", () => outbound.destroy());
    outbound.on("close", () => inbound.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const cut = () => {
    for (const socket of sockets) socket.destroy();
  };
  return {
    port: (server.address() as net.AddressInfo).port,
    cut,
    close: async () => {
      cut();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
