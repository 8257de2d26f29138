/**
 * A TCP proxy on 127.0.0.1 in front of a real test server, driven by the test to make real network faults:
 * - `pass`: bytes flow both ways;
 * - `refuse`: the port is closed (connections are refused) and open connections are reset;
 * - `reset`: connections are accepted and reset at once, and open connections are reset;
 * - `stall`: connections are accepted, open or new, but no byte moves either way (the peer's writes fill
 *   the socket buffers and block), until the mode changes.
 * @module
 */
import net from "node:net";

/** What the proxy does with connections (see the module). */
export type FaultMode = "pass" | "refuse" | "reset" | "stall";

interface Pair {
  client: net.Socket;
  server: net.Socket;
}

/** A fault proxy to `127.0.0.1:targetPort`. Start it with `FaultProxy.start()`. */
export class FaultProxy {
  readonly targetPort: number;
  port = 0;
  #mode: FaultMode = "pass";
  #server: net.Server | undefined;
  readonly #pairs = new Set<Pair>();
  /** Connections accepted so far (to wait for a client to be in the middle of its work). */
  connections = 0;
  /** Bytes passed from clients to the server so far. */
  bytesUp = 0;
  /** Bytes passed from the server to clients so far. */
  bytesDown = 0;

  private constructor(targetPort: number) {
    this.targetPort = targetPort;
  }

  /** Listens on a free port of 127.0.0.1 in `pass` mode. */
  static async start(targetPort: number): Promise<FaultProxy> {
    const proxy = new FaultProxy(targetPort);
    await proxy.#listen();
    return proxy;
  }

  get mode(): FaultMode {
    return this.#mode;
  }

  /**
   * Stalls (as `set("stall")`) as soon as `bytesUp` reaches `bytes`: in the middle of a request body, so
   * that the client's writes block on a full socket.
   */
  stallAt(bytes: number): void {
    this.#stallAt = bytes;
  }
  #stallAt: number | undefined;

  /** Switches the mode; open connections follow it (reset, stalled or flowing again). */
  async set(mode: FaultMode): Promise<void> {
    const before = this.#mode;
    this.#mode = mode;
    this.#stallAt = undefined;
    if (mode === "refuse" || mode === "reset") {
      for (const pair of this.#pairs) this.#drop(pair);
    }
    if (mode === "refuse" && this.#server) {
      const server = this.#server;
      this.#server = undefined;
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    if (mode !== "refuse" && before === "refuse") await this.#listen();
    if (mode === "pass") {
      for (const pair of this.#pairs) {
        pair.client.resume();
        pair.server.resume();
      }
    }
  }

  /** Stops listening and drops every connection. */
  async close(): Promise<void> {
    for (const pair of this.#pairs) this.#drop(pair);
    const server = this.#server;
    this.#server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  async #listen(): Promise<void> {
    const server = net.createServer((client) => this.#accept(client));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host: "127.0.0.1", port: this.port }, () => resolve());
    });
    this.port = (server.address() as net.AddressInfo).port;
    this.#server = server;
  }

  #accept(client: net.Socket): void {
    this.connections++;
    if (this.#mode === "reset" || this.#mode === "refuse") {
      client.on("error", () => {});
      client.resetAndDestroy();
      return;
    }
    const server = net.connect({ host: "127.0.0.1", port: this.targetPort });
    const pair = { client, server };
    this.#pairs.add(pair);
    const forward = (from: net.Socket, to: net.Socket, up: boolean) => {
      from.on("data", (chunk: Uint8Array) => {
        // Stalled: the chunk already read is held and the source is paused, so no more bytes move.
        if (up) this.bytesUp += chunk.byteLength;
        else this.bytesDown += chunk.byteLength;
        if (this.#stallAt !== undefined && this.bytesUp >= this.#stallAt) {
          this.#stallAt = undefined;
          this.#mode = "stall";
        }
        if (!to.write(chunk) || this.#mode === "stall") from.pause();
      });
      to.on("drain", () => {
        if (this.#mode === "pass") from.resume();
      });
    };
    if (this.#mode === "stall") {
      client.pause();
      server.pause();
    }
    forward(client, server, true);
    forward(server, client, false);
    const end = () => {
      this.#pairs.delete(pair);
      client.destroy();
      server.destroy();
    };
    client.on("error", end).on("close", end);
    server.on("error", end).on("close", end);
  }

  #drop(pair: Pair): void {
    this.#pairs.delete(pair);
    pair.client.on("error", () => {});
    pair.server.on("error", () => {});
    pair.client.resetAndDestroy();
    pair.server.destroy();
  }
}
