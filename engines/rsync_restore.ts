/**
 * The rsync engine's restore half: applies one rsync data stream (docs/FORMAT.md (section "The rsync engine")) to a target directory.
 * Levels are applied oldest first on the same target; a changed file is rebuilt from the version the
 * previous level restored (its base, in the target) plus its delta, into a temporary file beside it, and
 * replaces the base only once the rebuilt file's hash matches the one recorded at backup time. A base that
 * is missing or differs (the restored tree was changed between levels, or the chain is wrong) is an error
 * naming the file, never a silently wrong file.
 *
 * Safety rules are the tar engine's: nothing is written outside the target; absolute paths, `..` and paths
 * through symlinks are refused; files are created with O_EXCL (never written through an existing link).
 * All file system calls are synchronous on purpose (see tar_restore.ts).
 * @module
 */
import fs from "./_fs_bytes.ts";
import path from "node:path";
import crypto from "node:crypto";
import type { RestoreOptions, RestoreRun, RestoreStats, Selection } from "./engine.ts";
import { FrostError } from "../base/errors.ts";
import { equalBytes } from "../base/bytes.ts";
import { sha256, zeroBlockDigest } from "./_rsync_delta.ts";
import { decodeName } from "./_names.ts";
import { DELETED_DIR, DELETED_OTHER, KIND, STREAM_MAGIC, STREAM_VERSIONS, TAG } from "./_rsync_format.ts";
import { code, fsTimeNs as fsTime, safeRel } from "./_fs_common.ts";
import {
  type DirFix,
  restoreError,
  restoreRun,
  RestoreTally,
  RestoreTarget,
  RestoreXattrs,
} from "./_restore_fs.ts";
import type { StoredXattrs, Xattr } from "./_xattrs.ts";
import { writeSkippingZeros } from "./_sparse.ts";

/**
 * Applies one rsync data stream, written into `writable` in chunks of any size, to the existing directory
 * `target`. `done` resolves once directory modes and times are applied (at the end of the stream) and
 * rejects with a {@linkcode FrostError} naming the entry on a corrupt or truncated stream, on an entry that
 * would leave the target, and on a delta whose base in the target is missing or not the expected version.
 * Owners are restored when `options.owners` (default: running as root), by name through this machine's
 * /etc/passwd and /etc/group, else by number.
 *
 * @example
 * ```ts ignore
 * const run = rsyncRestore("/restore/here");
 * await dataStream.pipeTo(run.writable);
 * const { files, bytes, deleted } = await run.done;
 * ```
 */
export function rsyncRestore(target: string, options: RestoreOptions = {}): RestoreRun {
  const applier = new Applier(path.resolve(target), options);
  return restoreRun(target, options, "rsyncRestore", {
    push(chunk) {
      applier.push(chunk);
      applier.tick();
    },
    finish: () => applier.finish(),
    abandon: () => applier.abandon(),
  });
}

/** Thrown by the field readers when the buffered bytes end inside a record. */
const INCOMPLETE = Symbol("incomplete");
/** Longest record header accepted (paths, link targets); beyond, the stream is corrupt. */
const MAX_HEADER = 16 << 20;

// Parser states.
const START = 0;
const RECORDS = 1;
const OPS = 2;
const LITERAL = 3;
const ENDED = 4;

const CREATE = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL;
const OPEN_BASE = fs.constants.O_RDONLY | (fs.constants.O_NOFOLLOW ?? 0);

/** An entry record's common fields. */
interface Header {
  kind: number;
  path: string;
  mode: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  mtime: bigint;
  /** Its extended attributes, from the `X` record before it. */
  xattrs?: StoredXattrs;
}

/** The file being rebuilt: output, base, staging buffer and running hash. */
interface FileJob {
  header: Header;
  rel: string;
  abs: string;
  /** Where the data goes: `abs` itself (no base), or a temporary file beside it. */
  out: string;
  fd: number;
  baseFd: number;
  baseBlock: number;
  baseSize: number;
  /** Block size of the file hash. */
  block: number;
  /** Bytes produced so far. */
  size: number;
  /** SHA-256 of the full blocks (over their SHA-256s). */
  list: crypto.Hash | undefined;
  /** Left out of a partial restore: its operations are read and dropped. */
  skip?: boolean;
}

/** Parses the stream and applies it under `root`. */
class Applier {
  #t: RestoreTarget<DirFix<bigint>>;
  #options: RestoreOptions;
  #n: RestoreTally;

  // Parser.
  #state = START;
  #carry: Uint8Array | undefined;
  #buf: Uint8Array = new Uint8Array(0);
  #dv: DataView = new DataView(this.#buf.buffer);
  #p = 0;
  #literal = 0;
  #offset = 0;
  /** The stream's version (from its magic). */
  #version = 0;
  /** Extended attributes read from an `X` record, for the entry record that follows it. */
  #pendingXattrs: Xattr[] | undefined;
  /** Stored xattrs and inherited default ACLs. */
  #x: RestoreXattrs;

  // Output.
  #job: FileJob | undefined;
  #stage = new Uint8Array(0);
  #stageOff = 0;
  #digests = new Uint8Array(0);

  constructor(root: string, options: RestoreOptions) {
    this.#t = new RestoreTarget(root, options);
    this.#options = options;
    this.#n = new RestoreTally(options);
    this.#x = new RestoreXattrs(this.#t.ids, options, (name, message) => this.#warn(name, message));
  }

  /** Applies the next bytes of the stream. */
  push(chunk: Uint8Array): void {
    let off = 0;
    if (this.#carry) {
      // A record was cut by the chunk boundary: join its start with as little of the chunk as parses.
      const carry = this.#carry;
      let take = Math.min(chunk.length, Math.max(4096, carry.length));
      for (;;) {
        const joined = new Uint8Array(carry.length + take);
        joined.set(carry);
        joined.set(chunk.subarray(0, take), carry.length);
        const used = this.#step(joined, 0);
        if (used >= 0) {
          this.#carry = undefined;
          off = used - carry.length;
          break;
        }
        if (take === chunk.length) {
          if (joined.length > MAX_HEADER) throw this.#corrupt("a record header is too long");
          this.#carry = joined;
          this.#offset += chunk.length;
          return;
        }
        take = Math.min(chunk.length, 2 * take);
      }
    }
    while (off < chunk.length) {
      const used = this.#step(chunk, off);
      if (used < 0) {
        this.#carry = chunk.slice(off);
        break;
      }
      off += used;
    }
    this.#offset += chunk.length;
  }

  /**
   * Parses and applies one item (record header, op, or literal bytes) at `buf[off]`; returns the bytes
   * used, or -1 when the item is incomplete (nothing was applied then).
   */
  #step(buf: Uint8Array, off: number): number {
    if (this.#state === LITERAL) {
      const n = Math.min(this.#literal, buf.length - off);
      this.#put(buf, off, off + n);
      this.#literal -= n;
      if (this.#literal === 0) this.#state = OPS;
      return n;
    }
    if (buf !== this.#buf) {
      this.#buf = buf;
      this.#dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    }
    this.#p = off;
    try {
      switch (this.#state) {
        case START:
          this.#magic();
          break;
        case RECORDS:
          this.#record();
          break;
        case OPS:
          this.#op();
          break;
        default:
          throw this.#corrupt("data follows the end record");
      }
    } catch (err) {
      if (err === INCOMPLETE) return -1;
      throw err;
    }
    return this.#p - off;
  }

  // Field readers: throw INCOMPLETE when the bytes run out (the caller retries with more).
  #need(n: number): void {
    if (this.#p + n > this.#buf.length) throw INCOMPLETE;
  }
  #u8(): number {
    this.#need(1);
    return this.#buf[this.#p++]!;
  }
  #u32(): number {
    this.#need(4);
    const v = this.#dv.getUint32(this.#p, true);
    this.#p += 4;
    return v;
  }
  #u64(): number {
    this.#need(8);
    const v = this.#dv.getUint32(this.#p, true) + this.#dv.getUint32(this.#p + 4, true) * 0x1_0000_0000;
    this.#p += 8;
    if (v > Number.MAX_SAFE_INTEGER) throw this.#corrupt("a size is out of range");
    return v;
  }
  #i64(): bigint {
    this.#need(8);
    const v = this.#dv.getBigInt64(this.#p, true);
    this.#p += 8;
    return v;
  }
  #str(n: number): string {
    if (n > MAX_HEADER) throw this.#corrupt("a name is too long");
    this.#need(n);
    const bytes = this.#buf.subarray(this.#p, this.#p + n);
    this.#p += n;
    return decodeName(bytes);
  }

  #corrupt(why: string): FrostError {
    return new FrostError(`Cannot restore: the rsync stream is corrupt near byte ${this.#offset}: ${why}`);
  }

  #magic(): void {
    this.#need(STREAM_MAGIC.length);
    const sameFormat = STREAM_MAGIC.subarray(0, 7).every((b, i) => this.#buf[this.#p + i] === b);
    const version = this.#buf[this.#p + 7]!;
    if (!sameFormat || !STREAM_VERSIONS.includes(version)) {
      throw new FrostError(
        sameFormat
          ? `Cannot restore: rsync stream version ${version} is not supported (this frost reads ${
            STREAM_VERSIONS.slice(0, -1).join(", ")
          } and ${STREAM_VERSIONS.at(-1)})`
          : "Cannot restore: the data is not an rsync engine stream",
      );
    }
    this.#version = version;
    this.#p += STREAM_MAGIC.length;
    this.#state = RECORDS;
  }

  #record(): void {
    const tag = this.#u8();
    if (tag === TAG.end) {
      this.#state = ENDED;
      return;
    }
    if (tag === TAG.delete) {
      const cls = this.#u8();
      const path = this.#str(this.#u32());
      if (cls !== DELETED_DIR && cls !== DELETED_OTHER) throw this.#corrupt(`unknown deletion class ${cls}`);
      this.#delete(path, cls === DELETED_DIR);
      return;
    }
    if (tag === TAG.xattrs && this.#version >= 2 && this.#pendingXattrs === undefined) {
      const count = this.#u32();
      const list: Xattr[] = [];
      for (let i = 0; i < count; i++) {
        const name = this.#str(this.#u8());
        const size = this.#u32();
        if (size > MAX_HEADER) throw this.#corrupt(`extended attribute "${name}" is too large`);
        this.#need(size);
        list.push([name, this.#buf.slice(this.#p, this.#p + size)]);
        this.#p += size;
      }
      this.#pendingXattrs = list;
      return;
    }
    if (tag !== TAG.entry) throw this.#corrupt(`unknown record tag ${tag}`);
    const xattrs = this.#pendingXattrs;
    this.#pendingXattrs = undefined;
    const kind = this.#u8();
    const h: Header = {
      kind,
      path: this.#str(this.#u32()),
      mode: this.#u32() & 0o7777,
      uid: this.#u32(),
      gid: this.#u32(),
      uname: this.#str(this.#u8()),
      gname: this.#str(this.#u8()),
      mtime: this.#i64(),
    };
    if (xattrs) h.xattrs = { list: xattrs };
    switch (kind) {
      case KIND.file: {
        const block = this.#u32();
        const hasBase = this.#u8();
        let baseBlock = 0;
        let baseSize = 0;
        if (hasBase === 1) {
          baseBlock = this.#u32();
          baseSize = this.#u64();
        } else if (hasBase !== 0) {
          throw this.#corrupt(`"${h.path}" has an unknown base flag`);
        }
        if (block === 0 || (hasBase === 1 && baseBlock === 0)) {
          throw this.#corrupt(`"${h.path}" has no block size`);
        }
        if (this.#selection(h.path, false) === "out") {
          this.#skipFile(h, block);
        } else {
          this.#wrap(h.path, () => this.#openFile(h, block, hasBase === 1, baseBlock, baseSize));
        }
        this.#state = OPS;
        return;
      }
      case KIND.dir: {
        const s = this.#selection(h.path, true);
        if (s === "out") return;
        this.#wrap(h.path, () => s === "parent" ? this.#fixup(h, safeRel(h.path, h.path)) : this.#dir(h));
        if (s === "parent") return;
        break;
      }
      case KIND.symlink: {
        const target = this.#str(this.#u32());
        if (this.#selection(h.path, false) === "out") return;
        this.#wrap(h.path, () => this.#symlink(h, target));
        break;
      }
      case KIND.hardlink: {
        const target = this.#str(this.#u32());
        if (this.#selection(h.path, false) === "out") return;
        const why = this.#t.linkLeftOut(target, h.path);
        if (why !== undefined) {
          this.#warn(h.path, why);
          return;
        }
        this.#wrap(h.path, () => this.#hardlink(h, target));
        break;
      }
      case KIND.fifo:
        if (this.#selection(h.path, false) === "out") return;
        if (!this.#wrap(h.path, () => this.#special(h, 0, 0))) return;
        break;
      case KIND.char:
      case KIND.block: {
        const major = this.#u32();
        const minor = this.#u32();
        if (this.#selection(h.path, false) === "out") return;
        if (!this.#wrap(h.path, () => this.#special(h, major, minor))) return;
        break;
      }
      default:
        throw this.#corrupt(`"${h.path}" has an unknown kind ${kind}`);
    }
    this.#n.files++;
  }

  #op(): void {
    const tag = this.#u8();
    const job = this.#job!;
    switch (tag) {
      case TAG.literal:
        this.#literal = this.#u32();
        if (this.#literal > 0) this.#state = LITERAL;
        return;
      case TAG.copy: {
        const first = this.#u32();
        const count = this.#u32();
        this.#wrap(job.header.path, () => this.#copy(job, first, count));
        return;
      }
      case TAG.hole: {
        if (this.#version < 3) throw this.#corrupt(`unknown operation ${tag} in "${job.header.path}"`);
        const n = this.#u64();
        this.#wrap(job.header.path, () => this.#hole(job, n));
        return;
      }
      case TAG.fileEnd: {
        const size = this.#u64();
        this.#need(32);
        const hash = this.#buf.subarray(this.#p, this.#p + 32);
        this.#p += 32;
        this.#wrap(job.header.path, () => this.#closeFile(job, size, hash));
        this.#state = RECORDS;
        return;
      }
      default:
        throw this.#corrupt(`unknown operation ${tag} in "${job.header.path}"`);
    }
  }

  #wrap<T>(name: string, fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      throw restoreError(err, name);
    }
  }

  tick(): void {
    this.#n.tick();
  }

  /** Checks that the stream ended properly, applies directory attributes (deepest first), returns totals. */
  finish(): RestoreStats {
    if (this.#state !== ENDED) {
      throw new FrostError(
        this.#state === START && !this.#carry
          ? "Cannot restore: the rsync stream is empty"
          : `Cannot restore: the rsync stream is truncated${
            this.#job ? ` (inside "${this.#job.header.path}")` : ""
          }`,
      );
    }
    this.#x.fixDirs(this.#t, fsTime);
    return this.#n.totals();
  }

  /** Releases the open files after a failure and removes a half-written file. */
  abandon(): void {
    const job = this.#job;
    if (!job || job.skip) return;
    this.#job = undefined;
    for (const fd of [job.fd, job.baseFd]) {
      if (fd < 0) continue;
      try {
        fs.closeSync(fd);
      } catch {
        // Already failing: the first error is the one to report.
      }
    }
    try {
      fs.unlinkSync(job.out);
    } catch {
      // Never created, or gone.
    }
  }

  #uid(h: Header): number {
    return this.#t.ids.uid(h.uname, h.uid);
  }

  #gid(h: Header): number {
    return this.#t.ids.gid(h.gname, h.gid);
  }

  // ---- regular files

  #openFile(h: Header, block: number, hasBase: boolean, baseBlock: number, baseSize: number): void {
    const rel = safeRel(h.path, h.path);
    if (rel === "") throw new FrostError(`Cannot restore "${h.path}": the target root is not a file`);
    this.#t.parents(rel, h.path);
    const abs = this.#t.abs(rel);
    const job: FileJob = {
      header: h,
      rel,
      abs,
      out: abs,
      fd: -1,
      baseFd: -1,
      baseBlock,
      baseSize,
      block,
      size: 0,
      list: undefined,
    };
    if (hasBase) {
      const st = fs.lstatSync(abs, { throwIfNoEntry: false });
      const changed = "was the restored tree changed between levels, or a level skipped?";
      if (!st) {
        throw new FrostError(
          `Cannot restore "${h.path}": it is stored as changes to its previous version, which is missing from the target (${changed})`,
        );
      }
      if (!st.isFile()) {
        throw new FrostError(
          `Cannot restore "${h.path}": it is stored as changes to its previous version, but the target holds a ${
            describe(st)
          } there (${changed})`,
        );
      }
      if (st.size !== baseSize) {
        throw new FrostError(
          `Cannot restore "${h.path}": its previous version in the target has ${st.size} bytes, the backup's changes apply to ${baseSize} bytes (${changed})`,
        );
      }
      try {
        job.baseFd = fs.openSync(abs, OPEN_BASE);
      } catch (err) {
        // A file restored without read permission (mode 0200, say) by a non-root user: it is ours and
        // about to be replaced, so let us read it.
        if (code(err) !== "EACCES") throw err;
        fs.chmodSync(abs, (st.mode & 0o7777) | 0o400);
        job.baseFd = fs.openSync(abs, OPEN_BASE);
      }
      const dir = rel.includes("/") ? abs.slice(0, abs.lastIndexOf("/")) : this.#t.root;
      for (let attempt = 0;; attempt++) {
        job.out = `${dir}/.frost-rsync-${crypto.randomBytes(6).toString("hex")}`;
        try {
          job.fd = fs.openSync(job.out, CREATE, 0o600);
          break;
        } catch (err) {
          if (code(err) !== "EEXIST" || attempt > 10) throw err;
        }
      }
    } else {
      job.fd = this.#t.createFile(rel, abs, h.mode & 0o777);
    }
    this.#job = job;
    const stageSize = Math.max(1 << 20, block);
    if (this.#stage.length < stageSize + 12) {
      this.#stage = new Uint8Array(stageSize + 12);
      this.#digests = new Uint8Array((stageSize / MIN_STAGE_BLOCK) * 32);
    }
    this.#stageOff = 0;
  }

  /** A file a partial restore leaves out: its operations are parsed and dropped. */
  #skipFile(h: Header, block: number): void {
    this.#job = {
      header: h,
      rel: "",
      abs: "",
      out: "",
      fd: -1,
      baseFd: -1,
      baseBlock: 0,
      baseSize: 0,
      block,
      size: 0,
      list: undefined,
      skip: true,
    };
  }

  /** Usable staging bytes for the current file: a whole number of its blocks. */
  #stageLimit(job: FileJob): number {
    const usable = this.#stage.length - 12;
    return usable - (usable % job.block);
  }

  /** Appends output bytes `src[start, end)`. */
  #put(src: Uint8Array, start: number, end: number): void {
    const job = this.#job!;
    if (job.skip) return;
    const limit = this.#stageLimit(job);
    while (start < end) {
      const n = Math.min(end - start, limit - this.#stageOff);
      this.#stage.set(src.subarray(start, start + n), this.#stageOff);
      this.#stageOff += n;
      start += n;
      if (this.#stageOff === limit) this.#wrap(job.header.path, () => this.#flushStage(job));
    }
  }

  /** Appends `count` blocks of the base from block `first`. */
  #copy(job: FileJob, first: number, count: number): void {
    if (job.skip) return;
    if (job.baseFd < 0) {
      throw this.#corrupt(`"${job.header.path}" refers to a previous version it has none of`);
    }
    let pos = first * job.baseBlock;
    const end = Math.min((first + count) * job.baseBlock, job.baseSize);
    if (count === 0 || pos >= job.baseSize) {
      throw this.#corrupt(`"${job.header.path}" refers to blocks beyond its previous version`);
    }
    const limit = this.#stageLimit(job);
    while (pos < end) {
      const want = Math.min(end - pos, limit - this.#stageOff);
      const n = fs.readSync(job.baseFd, this.#stage, this.#stageOff, want, pos);
      if (n === 0) {
        throw new FrostError(
          `Cannot restore "${job.header.path}": its previous version in the target shrank while it was read`,
        );
      }
      this.#stageOff += n;
      pos += n;
      if (this.#stageOff === limit) this.#flushStage(job);
    }
  }

  /**
   * `n` zero bytes that were a hole of the file (whole blocks, from a block boundary): what is staged is
   * written, the hole is left unwritten (the final size makes it part of the file), its blocks hashed as
   * zero blocks.
   */
  #hole(job: FileJob, n: number): void {
    if (job.skip) return;
    const bs = job.block;
    if (n % bs !== 0 || this.#stageOff % bs !== 0) {
      throw this.#corrupt(`"${job.header.path}" has a hole that is not whole blocks`);
    }
    this.#flushStage(job);
    const blocks = n / bs;
    if (blocks === 0) return;
    job.list ??= crypto.createHash("sha256");
    const digest = zeroBlockDigest(bs);
    const batch = Math.min(blocks, 1024);
    if (this.#digests.length < batch * 32) this.#digests = new Uint8Array(batch * 32);
    for (let k = 0; k < batch; k++) this.#digests.set(digest, k * 32);
    for (let left = blocks; left > 0; left -= batch) {
      job.list.update(this.#digests.subarray(0, Math.min(left, batch) * 32));
    }
    // A hole is not written: the summary's bytes written leave it out, as the tar engine's do.
    job.size += n;
  }

  /** Hashes the staged blocks (the stage is full: a whole number of blocks) and writes them. */
  #flushStage(job: FileJob): void {
    this.#hashBlocks(job, this.#stageOff);
    writeSkippingZeros(job.fd, this.#stage, this.#stageOff, job.size);
    job.size += this.#stageOff;
    this.#n.bytes += this.#stageOff;
    this.#stageOff = 0;
  }

  /** Adds the SHA-256 of each full block in `stage[0, n)` to the file's hash list; returns their count. */
  #hashBlocks(job: FileJob, n: number): number {
    const bs = job.block;
    const full = Math.floor(n / bs);
    if (full === 0) return 0;
    job.list ??= crypto.createHash("sha256");
    if (this.#digests.length < full * 32) this.#digests = new Uint8Array(full * 32);
    const digests = this.#digests;
    for (let k = 0; k < full; k++) digests.set(sha256(this.#stage.subarray(k * bs, (k + 1) * bs)), k * 32);
    job.list.update(digests.subarray(0, full * 32));
    return full;
  }

  #closeFile(job: FileJob, size: number, hash: Uint8Array): void {
    if (job.skip) {
      this.#job = undefined;
      return;
    }
    // The tail (bytes after the last full block) and the trailer are hashed straight from the stage.
    const bs = job.block;
    const tailStart = this.#hashBlocks(job, this.#stageOff) * bs;
    const total = job.size + this.#stageOff;
    const dv = new DataView(this.#stage.buffer, this.#stage.byteOffset + this.#stageOff, 12);
    dv.setUint32(0, total >>> 0, true);
    dv.setUint32(4, Math.floor(total / 0x1_0000_0000), true);
    dv.setUint32(8, bs, true);
    const tail = this.#stage.subarray(tailStart, this.#stageOff + 12);
    const got = job.list ? job.list.update(tail).digest() : sha256(tail);
    writeSkippingZeros(job.fd, this.#stage, this.#stageOff, job.size);
    // Zero blocks were left out as holes (even at the end): the size makes them part of the file.
    fs.ftruncateSync(job.fd, total);
    this.#n.bytes += this.#stageOff;
    this.#stageOff = 0;
    if (total !== size || !equalBytes(got, hash)) {
      throw new FrostError(
        job.baseFd >= 0
          ? `Cannot restore "${job.header.path}": rebuilt from its previous version in the target, it does not match the backup (${
            total !== size ? `${total} bytes instead of ${size}` : "hash mismatch"
          }): that version is not the one this level was made against (was the restored tree changed between levels?)`
          : `Cannot restore "${job.header.path}": its data does not match its recorded hash (corrupt stream)`,
      );
    }
    const h = job.header;
    const fd = job.fd;
    // chown before chmod: chown clears setuid/setgid.
    if (this.#t.owners) fs.fchownSync(fd, this.#uid(h), this.#gid(h));
    if (job.baseFd >= 0 || (h.mode & 0o7000) !== 0 || (h.mode & this.#t.umask & 0o777) !== 0) {
      fs.fchmodSync(fd, h.mode);
    }
    // After the data, chown and chmod: each of them drops security.capability.
    this.#x.entry(job.out, job.rel, h.path, h.xattrs, h.mode);
    // Deno's futimes fails (EINVAL) on negative times with a fraction; its path-based utimes does not.
    const negative = h.mtime < 0n;
    if (!negative) fs.futimesSync(fd, fsTime(undefined), fsTime(h.mtime));
    job.fd = -1;
    fs.closeSync(fd);
    if (job.baseFd >= 0) {
      fs.closeSync(job.baseFd);
      job.baseFd = -1;
      fs.renameSync(job.out, job.abs);
    }
    if (negative) fs.utimesSync(job.abs, fsTime(undefined), fsTime(h.mtime));
    this.#job = undefined;
    this.#n.files++;
  }

  // ---- other entries

  /** Where an entry stands in a partial restore (its path checked as the restore would). */
  #selection(path: string, isDir: boolean): Selection {
    return this.#t.select ? this.#wrap(path, () => this.#t.selection(safeRel(path, path), isDir)) : "in";
  }

  #dir(h: Header): void {
    const rel = safeRel(h.path, h.path);
    const existed = this.#t.dir(rel, h.path);
    this.#fixup(h, rel, this.#x.dir(this.#t, rel, h.path, h.xattrs, existed));
  }

  /** Directory attributes, applied at the end (in a partial restore, only if the directory was made). */
  #fixup(h: Header, rel: string, xattrsClear = false): void {
    this.#t.fixups.set(rel, {
      xattrs: h.xattrs,
      xattrsClear,
      name: h.path,
      depth: RestoreTarget.depth(rel),
      mode: h.mode,
      uid: this.#t.owners ? this.#uid(h) : h.uid,
      gid: this.#t.owners ? this.#gid(h) : h.gid,
      mtime: h.mtime,
    });
  }

  #symlink(h: Header, target: string): void {
    const abs = this.#t.symlink(safeRel(h.path, h.path), h.path, target);
    if (this.#t.owners) fs.lchownSync(abs, this.#uid(h), this.#gid(h));
    this.#x.symlink(abs, h.path, h.xattrs, h.mode);
    try {
      fs.lutimesSync(abs, fsTime(undefined), fsTime(h.mtime));
    } catch (err) {
      // Deno's lutimes fails (EINVAL) on negative times with a fraction: keep the whole second there.
      if (h.mtime >= 0n) throw err;
      const whole = -((-h.mtime + 999_999_999n) / 1_000_000_000n) * 1_000_000_000n;
      fs.lutimesSync(abs, fsTime(undefined), fsTime(whole));
    }
  }

  #hardlink(h: Header, linkname: string): void {
    this.#t.hardlink(safeRel(h.path, h.path), h.path, linkname);
  }

  /** Fifos and devices. */
  #special(h: Header, major: number, minor: number): boolean {
    const rel = safeRel(h.path, h.path);
    const type = h.kind === KIND.fifo ? "fifo" : h.kind === KIND.char ? "char" : "block";
    const warn = (name: string, message: string) => this.#warn(name, message);
    const abs = this.#t.special(rel, h.path, type, h.mode, major, minor, warn);
    if (abs === undefined) return false;
    if (this.#t.owners) fs.lchownSync(abs, this.#uid(h), this.#gid(h));
    if (h.mode & 0o7000) fs.chmodSync(abs, h.mode);
    this.#x.entry(abs, rel, h.path, h.xattrs, h.mode);
    fs.utimesSync(abs, fsTime(undefined), fsTime(h.mtime));
    return true;
  }

  /** A deletion: removes the entry when it is still of the deleted class (a directory, or not). */
  #delete(path: string, isDir: boolean): void {
    const rel = safeRel(path, path);
    if (rel === "" || !this.#t.parentsSafe(rel)) return; // never the target itself; nothing through symlinks
    const abs = this.#t.abs(rel);
    const st = fs.lstatSync(abs, { throwIfNoEntry: false });
    if (!st || st.isDirectory() !== isDir) return;
    this.#wrap(
      path,
      () => this.#n.deleted += this.#t.select ? this.#t.removeSelected(rel, abs) : this.#t.remove(rel, abs),
    );
  }

  #warn(name: string, message: string): void {
    this.#options.onWarning?.({ path: name, message });
  }
}

/** Smallest block size a file hash uses (sizes the digest scratch). */
const MIN_STAGE_BLOCK = 8 << 10;

function describe(st: fs.Stats): string {
  if (st.isDirectory()) return "directory";
  if (st.isSymbolicLink()) return "symlink";
  if (st.isFIFO()) return "fifo";
  return "special file";
}
