/**
 * This machine's name as frost uses it by default in keys (`--hostname`).
 * @module
 */
import os from "node:os";

/** This machine's hostname made key-safe (dots and dashes stay; anything else becomes "-"). */
export function defaultHostname(): string {
  const host = os.hostname().replace(/[^A-Za-z0-9._+@-]/g, "-").replace(/^[^A-Za-z0-9]+/, "");
  return host || "localhost";
}
