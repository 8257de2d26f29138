/**
 * OpenSSH `known_hosts` files (private to `storage/`): parse them, check a server's host key against them,
 * and format a new entry. Written by hand: ssh2 leaves host key checking to its caller.
 *
 * Supported: plain host patterns (comma lists, `*`/`?` wildcards, `!` negation, `[host]:port`), hashed
 * `|1|salt|hash` entries and `@revoked` lines; `@cert-authority` lines are skipped (no certificates).
 * @module
 */
import crypto from "node:crypto";
import { Buffer } from "node:buffer";

/** One key line of a known_hosts file. */
export interface KnownHost {
  /** 1-based line number, for messages. */
  line: number;
  marker?: "@revoked" | "@cert-authority";
  /** The host patterns field, as written. */
  hosts: string;
  /** Key type as written, e.g. `ssh-ed25519`. */
  type: string;
  /** The key blob (SSH wire format), decoded from base64. */
  key: Buffer;
}

/** What `checkHostKey()` found. */
export type HostKeyStatus =
  | { status: "known"; entry: KnownHost }
  | { status: "unknown" }
  | { status: "changed"; entry: KnownHost }
  | { status: "revoked"; entry: KnownHost };

/** The name OpenSSH looks up for a host and port: `host` for port 22, `[host]:port` otherwise. */
export function hostName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

/** Parses the key lines of a known_hosts file, skipping comments, blank and malformed lines. */
export function parseKnownHosts(text: string): KnownHost[] {
  const entries: KnownHost[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const fields = (lines[i] ?? "").trim().split(/\s+/);
    if (fields[0] === undefined || fields[0] === "" || fields[0].startsWith("#")) continue;
    let marker: KnownHost["marker"];
    if (fields[0] === "@revoked" || fields[0] === "@cert-authority") marker = fields.shift() as typeof marker;
    else if (fields[0].startsWith("@")) continue;
    const [hosts, type, base64] = fields;
    if (hosts === undefined || type === undefined || base64 === undefined) continue;
    const key = Buffer.from(base64, "base64");
    if (key.byteLength === 0) continue;
    entries.push({ line: i + 1, ...(marker === undefined ? {} : { marker }), hosts, type, key });
  }
  return entries;
}

/**
 * Checks the key blob a server sent for `name` (see `hostName()`):
 * - `revoked` when a `@revoked` line lists this key for the host;
 * - `known` when a line for the host has this key;
 * - `changed` when lines for the host exist but none has this key (of any type: a server that still has
 *   the known key type offers it first, see `hostKeyAlgorithms()`);
 * - `unknown` when no line is for the host.
 */
export function checkHostKey(entries: KnownHost[], name: string, key: Buffer): HostKeyStatus {
  const forHost = entries.filter((entry) =>
    entry.marker !== "@cert-authority" && matchesHost(entry.hosts, name)
  );
  // A revoked key is refused even when another line lists it as known.
  const revoked = forHost.find((entry) => entry.marker === "@revoked" && entry.key.equals(key));
  if (revoked !== undefined) return { status: "revoked", entry: revoked };
  const keys = forHost.filter((entry) => entry.marker === undefined);
  const known = keys.find((entry) => entry.key.equals(key));
  if (known !== undefined) return { status: "known", entry: known };
  const other = keys[0];
  return other === undefined ? { status: "unknown" } : { status: "changed", entry: other };
}

/**
 * The host key algorithms to offer: those of the keys known for `name` first (so that a server with
 * several host keys presents the one on file), then `defaults`.
 */
export function hostKeyAlgorithms(entries: KnownHost[], name: string, defaults: readonly string[]): string[] {
  const preferred: string[] = [];
  for (const entry of entries) {
    if (entry.marker !== undefined || !matchesHost(entry.hosts, name)) continue;
    const algorithms = entry.type === "ssh-rsa" ? ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"] : [entry.type];
    for (const algorithm of algorithms) {
      if (defaults.includes(algorithm) && !preferred.includes(algorithm)) preferred.push(algorithm);
    }
  }
  return [...preferred, ...defaults.filter((algorithm) => !preferred.includes(algorithm))];
}

/** True when the host patterns field `hosts` (plain, wildcards, negations or one hashed name) matches. */
export function matchesHost(hosts: string, name: string): boolean {
  if (hosts.startsWith("|1|")) {
    const [salt, hash] = hosts.slice(3).split("|");
    if (salt === undefined || hash === undefined) return false;
    const expected = crypto.createHmac("sha1", Buffer.from(salt, "base64")).update(name).digest();
    const given = Buffer.from(hash, "base64");
    return given.byteLength === expected.byteLength && crypto.timingSafeEqual(given, expected);
  }
  let matched = false;
  for (const pattern of hosts.split(",")) {
    const negated = pattern.startsWith("!");
    if (!wildcardMatch(negated ? pattern.slice(1) : pattern, name)) continue;
    if (negated) return false;
    matched = true;
  }
  return matched;
}

/** The key type named inside a key blob (its first SSH string), e.g. `ssh-ed25519`. */
export function keyType(key: Buffer): string {
  if (key.byteLength < 4) return "unknown";
  const length = key.readUInt32BE(0);
  return length > 0 && 4 + length <= key.byteLength ? key.toString("latin1", 4, 4 + length) : "unknown";
}

/** `SHA256:<base64>` fingerprint of a key blob, as `ssh-keygen -l` prints it. */
export function fingerprint(key: Buffer): string {
  return `SHA256:${crypto.createHash("sha256").update(key).digest("base64").replace(/=+$/, "")}`;
}

/** A known_hosts line for `name` and the key blob (plain, not hashed), with its newline. */
export function formatKnownHost(name: string, key: Buffer): string {
  return `${name} ${keyType(key)} ${key.toString("base64")}\n`;
}

/** OpenSSH's pattern match: `*` any run of characters, `?` one character, case-insensitive. */
function wildcardMatch(pattern: string, name: string): boolean {
  if (!pattern.includes("*") && !pattern.includes("?")) return pattern.toLowerCase() === name.toLowerCase();
  const source = pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".");
  return new RegExp(`^${source}$`, "i").test(name);
}
