/**
 * node:fs with names as bytes: the engines `import fs` from here instead of node:fs. A path holding an escaped
 * byte (see _names.ts) goes to the kernel as a Buffer of its exact bytes; names read back (readdir,
 * readlink, mkdtemp) that are not valid UTF-8 come back escaped. Other paths pass through as strings, so
 * the usual case costs one regular-expression test per call. Bun's node:fs takes Buffer paths
 * everywhere; Deno's (2.9.6) decodes every path and name as UTF-8, lossily, so under Deno a name that
 * is not valid UTF-8 cannot be read or made, and such a path fails with EILSEQ instead of naming
 * another file.
 * @module
 */
import nodeFs from "node:fs";
import process from "node:process";
import { Buffer } from "node:buffer";
import { decodeName, encodeName, hasEscape } from "./_names.ts";

/** Whether this runtime's node:fs passes Buffer paths to the kernel byte for byte (Bun, Node; not Deno). */
export const BYTE_PATHS: boolean =
  (process.versions as Record<string, string | undefined>).deno === undefined;

/** `p` as node:fs should get it: a Buffer of its bytes when it holds an escaped byte, else `p` itself. */
export function fsPath<T>(p: T): T | Buffer {
  if (typeof p !== "string" || !hasEscape(p)) return p;
  if (!BYTE_PATHS) {
    throw Object.assign(
      new Error("this runtime cannot name files that are not valid UTF-8 (use the frost binary)"),
      { code: "EILSEQ" },
    );
  }
  return Buffer.from(encodeName(p));
}

type Fn = (...args: unknown[]) => unknown;

/** `f` with its first `n` arguments (paths) passed through {@linkcode fsPath}. */
function paths<F>(f: F, n = 1): F {
  const g = f as unknown as Fn;
  return (n === 1
    ? (a: unknown, ...rest: unknown[]) => g(fsPath(a), ...rest)
    : (a: unknown, b: unknown, ...rest: unknown[]) => g(fsPath(a), fsPath(b), ...rest)) as F;
}

const REPLACEMENT = "\uFFFD";

function readdir(dir: unknown, options?: unknown): unknown {
  const p = fsPath(dir);
  const names = nodeFs.readdirSync(
    p as string,
    options as { withFileTypes: true },
  ) as (string | nodeFs.Dirent)[];
  if (!BYTE_PATHS || (options as { encoding?: unknown } | undefined)?.encoding !== undefined) return names;
  let lossy = false;
  for (const n of names) if ((typeof n === "string" ? n : n.name).includes(REPLACEMENT)) lossy = true;
  if (!lossy) return names;
  // Some name is not valid UTF-8 (or holds U+FFFD): read the names again as bytes.
  const exact = nodeFs.readdirSync(p as string, { encoding: "buffer" }).map((b) => decodeName(b));
  if (!(options as { withFileTypes?: boolean } | undefined)?.withFileTypes) return exact;
  // Bun gives no names to Dirents read as buffers: build them from lstat.
  const base = typeof dir === "string" ? dir : String(dir);
  return exact.map((name) => {
    const st = nodeFs.lstatSync(fsPath(base + "/" + name));
    return Object.assign(Object.create(st), { name, parentPath: base, path: base });
  });
}

function readlink(link: unknown, options?: unknown): unknown {
  const p = fsPath(link);
  const target = nodeFs.readlinkSync(p as string, options as undefined);
  if (!BYTE_PATHS || typeof target !== "string" || !target.includes(REPLACEMENT)) return target;
  return decodeName(nodeFs.readlinkSync(p as string, { encoding: "buffer" }));
}

function mkdtemp(prefix: unknown, options?: unknown): unknown {
  const p = fsPath(prefix);
  if (p === prefix) return nodeFs.mkdtempSync(prefix as string, options as undefined);
  return decodeName(nodeFs.mkdtempSync(p as unknown as string, { encoding: "buffer" }));
}

/**
 * node:fs, with the synchronous calls that take or give names wrapped (see the module documentation); a
 * call not listed here passes an escaped name on as text, which names another file: add it. A plain object
 * rather than `export * from "node:fs"`, which `bun build` (1.4.5) bundles into a ReferenceError.
 */
const fs: typeof nodeFs = {
  ...nodeFs,
  accessSync: paths(nodeFs.accessSync),
  appendFileSync: paths(nodeFs.appendFileSync),
  chmodSync: paths(nodeFs.chmodSync),
  chownSync: paths(nodeFs.chownSync),
  copyFileSync: paths(nodeFs.copyFileSync, 2),
  existsSync: paths(nodeFs.existsSync),
  lchownSync: paths(nodeFs.lchownSync),
  linkSync: paths(nodeFs.linkSync, 2),
  lstatSync: paths(nodeFs.lstatSync),
  lutimesSync: paths(nodeFs.lutimesSync),
  mkdirSync: paths(nodeFs.mkdirSync),
  mkdtempSync: mkdtemp as typeof nodeFs.mkdtempSync,
  openSync: paths(nodeFs.openSync),
  readdirSync: readdir as typeof nodeFs.readdirSync,
  readFileSync: paths(nodeFs.readFileSync),
  readlinkSync: readlink as typeof nodeFs.readlinkSync,
  renameSync: paths(nodeFs.renameSync, 2),
  rmdirSync: paths(nodeFs.rmdirSync),
  rmSync: paths(nodeFs.rmSync),
  statSync: paths(nodeFs.statSync),
  symlinkSync: paths(nodeFs.symlinkSync, 2),
  truncateSync: paths(nodeFs.truncateSync),
  unlinkSync: paths(nodeFs.unlinkSync),
  utimesSync: paths(nodeFs.utimesSync),
  writeFileSync: paths(nodeFs.writeFileSync),
};
/** The node:fs types the engines name as `fs.X`. */
declare namespace fs {
  export type BigIntStats = nodeFs.BigIntStats;
  export type Dirent = nodeFs.Dirent;
  export type Stats = nodeFs.Stats;
}
export default fs;
