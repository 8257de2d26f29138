/**
 * Extended attributes (xattrs) for both engines: reading them from the tree, POSIX ACLs in the text form
 * GNU tar stores (`SCHILY.acl.access`), and restoring them with one warning per kind the kernel refuses.
 *
 * Every call goes through `@napi-rs/xattr`, whose functions use the `l*xattr` system calls: they never
 * follow a symlink (a symlink's own attributes are read and set, where the kernel allows). A file that is
 * open already is first asked whether it has any with libc's `flistxattr` (through the runtime adapter,
 * base/runtime.ts, where there is one): one system call on the descriptor, no path to look up. Where the addon
 * cannot load (Deno without --allow-ffi), a backup storing xattrs fails at once and a restore warns once.
 * @module
 */
import { createRequire } from "node:module";
import { FrostError } from "../base/errors.ts";
import type { IdMap, OwnerNames } from "./_fs_common.ts";
import { openNativeLibrary } from "../base/runtime.ts";

type Addon = typeof import("@napi-rs/xattr");

// Loaded on first use rather than imported: a native addon, which Deno loads only with --allow-ffi, and whose
// load cost every run of the binary ~2 ms at start (a no-change level of one file may read no xattrs at all).
// Without it frost still starts; a backup that would store xattrs refuses to run (`requireXattrs`, or the
// first read in the binary), a restore warns once.
let addon: Addon | null | undefined;

/** The addon, loaded now if it was not yet; undefined when it cannot be loaded. */
function loadAddon(): Addon | undefined {
  if (addon === undefined) {
    try {
      // `require` of a literal name (Bun, whose bundler packs the addon into the binary and runs it here, on
      // the first call); Deno's modules have no `require`: node:module's, which finds it in node_modules.
      addon = typeof require === "function"
        ? require("@napi-rs/xattr") as Addon
        : createRequire(import.meta.url)("@napi-rs/xattr") as Addon;
    } catch {
      addon = null; // its loader's message blames npm (optional dependencies), which misleads here
    }
  }
  return addon ?? undefined;
}

/** Where `require` exists (Bun), loading the addon cannot fail for want of a permission: `requireXattrs` leaves
 * the load to the first read, which then fails the same way. */
const LOAD_ON_READ = typeof require === "function";

/** Why xattrs cannot be read or set in this process, or undefined when they can. */
export function xattrsUnavailable(): string | undefined {
  return loadAddon()
    ? undefined
    : "extended attributes and ACLs cannot be read or set here: the native xattr addon did not load " +
      (LOAD_ON_READ
        // The binary writes the addon into $TMPDIR (else /tmp) and loads it from there.
        ? "(the frost binary unpacks it into $TMPDIR, else /tmp, and loads it from there: is that folder " +
          "missing, full or mounted noexec?)"
        : "(run frost's sources with --allow-ffi)");
}

/**
 * Throws when xattrs are to be stored (`wanted`) but cannot be read here: a backup that silently left
 * them out would lose them. `source` names the backup in the error.
 */
export function requireXattrs(source: string, wanted: boolean | undefined): void {
  const why = wanted === false || LOAD_ON_READ ? undefined : xattrsUnavailable();
  if (why) {
    throw new FrostError(`Cannot back up "${source}": ${why}; give --no-xattrs to back up without them`);
  }
}

function xattrs(): Addon {
  const loaded = loadAddon();
  if (!loaded) throw new FrostError(`Cannot use extended attributes: ${xattrsUnavailable()}`);
  return loaded;
}

/** One extended attribute: its full name (`user.x`) and raw value. */
export type Xattr = [name: string, value: Uint8Array];

/** The xattr holding a file's access ACL. */
export const ACL_ACCESS = "system.posix_acl_access";
/** The xattr holding a directory's default ACL. */
export const ACL_DEFAULT = "system.posix_acl_default";
/** The xattr holding file capabilities; the kernel drops it on chown and on writes, so it is set last. */
export const CAPABILITY = "security.capability";

/** What an archive entry carries: its xattrs (raw) and, from GNU tar's `--acls` records, its ACLs as text. */
export interface StoredXattrs {
  /** Raw xattrs, in the order stored (may include the ACL ones). */
  list: Xattr[];
  /** `SCHILY.acl.access`: the access ACL as text (`user::rw-\nuser:nobody:rw-\n…`). */
  aclAccess?: string;
  /** `SCHILY.acl.default`: the default ACL of a directory as text. */
  aclDefault?: string;
}

/** The errno of a failed `@napi-rs/xattr` call (its errors carry only "… (os error N)"). */
function errnoOf(err: unknown): number {
  const m = /\(os error (\d+)\)/.exec(err instanceof Error ? err.message : String(err));
  return m ? Number(m[1]) : 0;
}

const ENOENT = 2;
const EPERM = 1;
const EACCES = 13;
const ENODATA = 61;
const EOPNOTSUPP = 95;

function errnoWords(errno: number, err: unknown): string {
  switch (errno) {
    case EPERM:
    case EACCES:
      return "permission denied";
    case EOPNOTSUPP:
      return "not supported by the file system";
    default:
      return err instanceof Error ? err.message.replace(/ \(os error \d+\)$/, "").toLowerCase() : String(err);
  }
}

/** Room for any list of xattr names (the kernel's XATTR_LIST_MAX). */
const NAMES_ROOM = 65536;
let flistxattr: ((fd: number) => number) | null | undefined;

/**
 * The byte length of the xattr name list of open file or folder `fd` (0: it has none), by libc's
 * `flistxattr`; -1 when the call failed, or undefined where libc cannot be called.
 */
export function xattrNamesLength(fd: number): number | undefined {
  if (flistxattr === undefined) {
    flistxattr = null;
    try {
      const libc = openNativeLibrary(["libc.so.6", "libc.so"], {
        flistxattr: { args: ["i32", "pointer", "i64"], returns: "i64" },
      });
      if (libc) {
        const buffer = new Uint8Array(NAMES_ROOM);
        const room = BigInt(NAMES_ROOM);
        const call = libc.flistxattr;
        flistxattr = (fd) => call(fd, buffer, room);
      }
    } catch {
      flistxattr = null;
    }
  }
  return flistxattr?.(fd);
}

/**
 * The xattrs of `abs` (never through a symlink), sorted by name; undefined when it has none or the file
 * system has no xattrs. An attribute that cannot be read is left out with a warning (`warn`). `fd`, when
 * given, is `abs` open: a file without xattrs is then known in one call on it.
 */
export function readXattrs(abs: string, warn: (message: string) => void, fd?: number): Xattr[] | undefined {
  // Files with names, and failures (errno is not at hand here), take the path below.
  if (fd !== undefined && fd >= 0 && xattrNamesLength(fd) === 0) return undefined;
  // Outside the try: an addon that cannot load fails the backup (see requireXattrs).
  const lib = loadAddon();
  if (!lib) {
    throw new FrostError(
      `Cannot read the extended attributes of "${abs}": ${xattrsUnavailable()}; give --no-xattrs to back up ` +
        "without them",
    );
  }
  let names: string[];
  try {
    names = lib.listAttributesSync(abs);
  } catch (err) {
    const errno = errnoOf(err);
    if (errno !== EOPNOTSUPP && errno !== ENOENT) {
      warn(`cannot list extended attributes: ${errnoWords(errno, err)}; stored without them`);
    }
    return undefined;
  }
  if (names.length === 0) return undefined;
  const out: Xattr[] = [];
  for (const name of names.sort()) {
    try {
      const value = lib.getAttributeSync(abs, name);
      if (value) out.push([name, new Uint8Array(value.buffer, value.byteOffset, value.byteLength)]);
    } catch (err) {
      const errno = errnoOf(err);
      if (errno !== ENODATA && errno !== ENOENT) {
        warn(`cannot read extended attribute "${name}": ${errnoWords(errno, err)}; stored without it`);
      }
    }
  }
  return out.length > 0 ? out : undefined;
}

// POSIX ACLs as the kernel stores them in system.posix_acl_*: a u32 version (2), then entries of u16 tag,
// u16 permissions, u32 id (0xffffffff for the unnamed ones), little-endian, sorted by tag then id.
const ACL_VERSION = 2;
const TAG_USER_OBJ = 0x01;
const TAG_USER = 0x02;
const TAG_GROUP_OBJ = 0x04;
const TAG_GROUP = 0x08;
const TAG_MASK = 0x10;
const TAG_OTHER = 0x20;
const NO_ID = 0xffffffff;

const TAG_WORDS = new Map<number, string>([
  [TAG_USER_OBJ, "user"],
  [TAG_USER, "user"],
  [TAG_GROUP_OBJ, "group"],
  [TAG_GROUP, "group"],
  [TAG_MASK, "mask"],
  [TAG_OTHER, "other"],
]);

function permText(perm: number): string {
  return (perm & 4 ? "r" : "-") + (perm & 2 ? "w" : "-") + (perm & 1 ? "x" : "-");
}

/**
 * An ACL xattr value as the text `acl_to_text` gives and GNU tar stores: one entry per line, each ended by
 * a newline, named users and groups by their name on this machine (their number when it has none).
 * Undefined when the value is not an ACL.
 */
export function aclToText(value: Uint8Array, names: OwnerNames): string | undefined {
  if (value.length < 4 || (value.length - 4) % 8 !== 0) return undefined;
  const dv = new DataView(value.buffer, value.byteOffset, value.byteLength);
  if (dv.getUint32(0, true) !== ACL_VERSION) return undefined;
  let text = "";
  for (let o = 4; o < value.length; o += 8) {
    const tag = dv.getUint16(o, true);
    const perm = dv.getUint16(o + 2, true);
    const id = dv.getUint32(o + 4, true);
    const word = TAG_WORDS.get(tag);
    if (word === undefined) return undefined;
    let qualifier = "";
    if (tag === TAG_USER) qualifier = names.user(id) || String(id);
    else if (tag === TAG_GROUP) qualifier = names.group(id) || String(id);
    text += `${word}:${qualifier}:${permText(perm)}\n`;
  }
  return text;
}

/**
 * The ACL xattr value of an ACL in text form (`acl_from_text`'s long and short forms: entries separated
 * by newlines or commas, `u`/`g`/`m`/`o` for the tags, `#` comments, extra fields after the permissions
 * ignored). Names are looked up on this machine (`ids`), numbers taken as they are. Undefined when the
 * text is malformed or names a user or group this machine does not know.
 */
export function aclFromText(text: string, ids: IdMap): Uint8Array | undefined {
  const entries: [number, number, number][] = [];
  for (const raw of text.split(/[\n,]/)) {
    const line = raw.replace(/#.*$/, "").trim();
    if (line === "") continue;
    const fields = line.split(":").map((f) => f.trim());
    if (fields[0] === "default" || fields[0] === "d") fields.shift();
    if (fields.length < 3) return undefined;
    const [tagWord, qualifier, permWord] = fields as [string, string, string];
    let perm = 0;
    for (const c of permWord) {
      if (c === "r") perm |= 4;
      else if (c === "w") perm |= 2;
      else if (c === "x") perm |= 1;
      else if (c !== "-") return undefined;
    }
    const named = qualifier !== "";
    let tag: number;
    let id = NO_ID;
    if (tagWord === "user" || tagWord === "u") {
      tag = named ? TAG_USER : TAG_USER_OBJ;
      if (named) id = /^\d+$/.test(qualifier) ? Number(qualifier) : ids.uid(qualifier, -1);
    } else if (tagWord === "group" || tagWord === "g") {
      tag = named ? TAG_GROUP : TAG_GROUP_OBJ;
      if (named) id = /^\d+$/.test(qualifier) ? Number(qualifier) : ids.gid(qualifier, -1);
    } else if ((tagWord === "mask" || tagWord === "m") && !named) tag = TAG_MASK;
    else if ((tagWord === "other" || tagWord === "o") && !named) tag = TAG_OTHER;
    else return undefined;
    if (id < 0 || id > NO_ID) return undefined;
    entries.push([tag, perm, id]);
  }
  if (entries.length === 0) return undefined;
  entries.sort((a, b) => a[0] - b[0] || a[2] - b[2]);
  const out = new Uint8Array(4 + 8 * entries.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, ACL_VERSION, true);
  entries.forEach(([tag, perm, id], i) => {
    dv.setUint16(4 + 8 * i, tag, true);
    dv.setUint16(6 + 8 * i, perm, true);
    dv.setUint32(8 + 8 * i, id, true);
  });
  return out;
}

/** The three-entry ACL of a mode: setting it gives the file exactly that mode and drops any other entries. */
function modeAcl(mode: number): Uint8Array {
  const out = new Uint8Array(4 + 24);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, ACL_VERSION, true);
  const put = (i: number, tag: number, perm: number) => {
    dv.setUint16(4 + 8 * i, tag, true);
    dv.setUint16(6 + 8 * i, perm, true);
    dv.setUint32(8 + 8 * i, NO_ID, true);
  };
  put(0, TAG_USER_OBJ, (mode >> 6) & 7);
  put(1, TAG_GROUP_OBJ, (mode >> 3) & 7);
  put(2, TAG_OTHER, mode & 7);
  return out;
}

/** The key of `XattrRestorer`'s refusals when the addon is missing: every kind at once. */
const UNAVAILABLE = "all extended attributes";

/** The kind of an xattr, as a restore's warning names it (one warning per kind refused). */
function kindOf(name: string): string {
  if (name === ACL_ACCESS || name === ACL_DEFAULT) return "POSIX ACLs";
  if (name === CAPABILITY) return "file capabilities (security.capability)";
  if (name === "security.selinux") return "SELinux labels (security.selinux)";
  const dot = name.indexOf(".");
  return `${dot > 0 ? name.slice(0, dot) : name}.* extended attributes`;
}

/** How an entry's xattrs are applied (see `XattrRestorer.apply()`). */
export interface ApplyOptions {
  /** The entry is a directory (its default ACL is set or, when `clear`, removed). */
  dir: boolean;
  /**
   * The entry is a symlink: the kernel gives symlinks no ACLs and no `user.*` attributes, so an archive's
   * are skipped (rather than refused, which would stop that kind for the whole restore).
   */
  symlink?: boolean;
  /** The entry's permission bits, for the ACL that replaces an inherited one. */
  mode: number;
  /**
   * The entry may carry attributes it should not: it was made in a directory with a default ACL (which it
   * inherited), or it is a directory that existed before (from an earlier level). Attributes the archive
   * does not list are then removed, and an inherited access ACL replaced by the stored mode.
   */
  clear: boolean;
}

/**
 * Sets the stored xattrs of restored entries. A kind of attribute the kernel refuses (as non-root:
 * `trusted.*`, capabilities, `security.*`; on a file system without them: all) is reported once, through
 * `warn`, for the first entry refused, and not again for the rest of the restore (`refused` is shared by the
 * levels of one restore).
 */
export class XattrRestorer {
  #ids: IdMap;
  #warn: (name: string, message: string) => void;
  #refused: Set<string>;

  constructor(ids: IdMap, warn: (name: string, message: string) => void, refused = new Set<string>()) {
    this.#ids = ids;
    this.#warn = warn;
    this.#refused = refused;
  }

  /** The ACL value (access or default) of stored xattrs: from the text when it has one, else the raw xattr. */
  #acl(stored: StoredXattrs, which: string, name: string): Uint8Array | undefined {
    const text = which === ACL_ACCESS ? stored.aclAccess : stored.aclDefault;
    const raw = stored.list.find((x) => x[0] === which)?.[1];
    if (text !== undefined && text.trim() !== "") {
      const value = aclFromText(text, this.#ids);
      if (value) return value;
      if (raw) return raw;
      this.#refuse(which, name, "its text names a user or group unknown here, or is malformed", false);
      return undefined;
    }
    return raw;
  }

  /** Sets only the default ACL of a directory (before its children are made, so that they inherit it). */
  applyDefault(abs: string, name: string, stored: StoredXattrs | undefined, clear: boolean): boolean {
    const value = stored ? this.#acl(stored, ACL_DEFAULT, name) : undefined;
    if (value) return this.#set(abs, name, ACL_DEFAULT, value);
    if (clear && this.#list(abs).includes(ACL_DEFAULT)) this.#remove(abs, name, ACL_DEFAULT);
    return false;
  }

  /**
   * Applies an entry's stored xattrs to `abs` (not through a symlink): the others first, then its ACLs,
   * capabilities last. Call it after chown and chmod, and after the file's data is written: both drop
   * `security.capability`.
   */
  apply(abs: string, name: string, stored: StoredXattrs | undefined, how: ApplyOptions): void {
    const list = stored?.list ?? [];
    const have = how.clear ? this.#list(abs) : [];
    for (const n of have) {
      if (n === ACL_ACCESS || n === ACL_DEFAULT || n === "security.selinux") continue;
      if (!list.some((x) => x[0] === n)) this.#remove(abs, name, n);
    }
    let capability: Uint8Array | undefined;
    for (const [n, value] of list) {
      if (n === ACL_ACCESS || n === ACL_DEFAULT || (how.symlink && n.startsWith("user."))) continue;
      if (n === CAPABILITY) capability = value;
      else this.#set(abs, name, n, value);
    }
    if (how.symlink) {
      if (capability) this.#set(abs, name, CAPABILITY, capability);
      return;
    }
    const access = stored ? this.#acl(stored, ACL_ACCESS, name) : undefined;
    if (access) this.#set(abs, name, ACL_ACCESS, access);
    else if (have.includes(ACL_ACCESS)) this.#set(abs, name, ACL_ACCESS, modeAcl(how.mode));
    if (how.dir) {
      const value = stored ? this.#acl(stored, ACL_DEFAULT, name) : undefined;
      if (value) this.#set(abs, name, ACL_DEFAULT, value);
      else if (have.includes(ACL_DEFAULT)) this.#remove(abs, name, ACL_DEFAULT);
    }
    if (capability) this.#set(abs, name, CAPABILITY, capability);
  }

  /** The names of the xattrs `abs` has ([] when they cannot be listed). */
  #list(abs: string): string[] {
    const lib = loadAddon();
    if (!lib) return [];
    try {
      return lib.listAttributesSync(abs);
    } catch {
      return [];
    }
  }

  #set(abs: string, name: string, attr: string, value: Uint8Array): boolean {
    if (this.#refused.has(kindOf(attr)) || this.#unavailable(name)) return false;
    try {
      xattrs().setAttributeSync(abs, attr, value);
      return true;
    } catch (err) {
      const errno = errnoOf(err);
      this.#refuse(
        attr,
        name,
        errnoWords(errno, err),
        errno === EPERM || errno === EACCES || errno === EOPNOTSUPP,
      );
      return false;
    }
  }

  #remove(abs: string, name: string, attr: string): void {
    if (this.#refused.has(kindOf(attr)) || this.#unavailable(name)) return;
    try {
      xattrs().removeAttributeSync(abs, attr);
    } catch (err) {
      const errno = errnoOf(err);
      if (errno === ENODATA || errno === ENOENT) return;
      this.#refuse(
        attr,
        name,
        errnoWords(errno, err),
        errno === EPERM || errno === EACCES || errno === EOPNOTSUPP,
      );
    }
  }

  /** True when xattrs cannot be set here at all; said once per restore, for the first entry that has some. */
  #unavailable(name: string): boolean {
    const why = xattrsUnavailable();
    if (why === undefined) return false;
    if (!this.#refused.has(UNAVAILABLE)) {
      this.#refused.add(UNAVAILABLE);
      this.#warn(name, `${why}; not restored (reported once; no entry of this restore gets them)`);
    }
    return true;
  }

  /**
   * Reports a refused attribute once per kind. When the refusal applies to the kind as a whole
   * (`wholeKind`: permission, no support), the kind is not tried again in this restore; other failures
   * (an invalid value, say) are reported once per kind and reason, and the other entries are still tried.
   */
  #refuse(attr: string, name: string, why: string, wholeKind: boolean): void {
    const kind = kindOf(attr);
    const key = wholeKind ? kind : `${kind}: ${why}`;
    if (this.#refused.has(key)) return;
    this.#refused.add(key);
    this.#warn(
      name,
      wholeKind
        ? `${kind} not restored: ${why} (reported once; no entry of this restore gets them)`
        : `${kind} not restored: ${why} (reported once, for the first entry concerned)`,
    );
  }
}

/**
 * Encodes an xattr name for a `SCHILY.xattr.` pax keyword as GNU tar does: `%` and `=` (which would end
 * the keyword) become `%25` and `%3D`.
 */
export function encodeXattrKeyword(name: string): string {
  return name.replace(/%/g, "%25").replace(/=/g, "%3D");
}

/** Decodes a `SCHILY.xattr.` keyword's name (see {@linkcode encodeXattrKeyword}). */
export function decodeXattrKeyword(keyword: string): string {
  return keyword.replace(/%(25|3D)/g, (m) => (m === "%25" ? "%" : "="));
}
