/**
 * Deterministic benchmark data, and deterministic changes to it between backups.
 *
 * Two kinds of data set, both generated from a seed (the same parameters always give the same bytes):
 * - "home": many small files (0–64 KiB, skewed towards small: 64 KiB × u⁴, so the median is 4 KiB and the
 *   mean 12.8 KiB; half pseudo-English text, half random bytes) in a deep folder tree, plus a few large files
 *   (at least three; each alternates 1 MiB of text and 1 MiB of random bytes) that fill the set up to its size.
 * - "vm": one disk image `disk.img` made of regions of 64 KiB–16 MiB: zeros, text, random bytes (compressed
 *   or encrypted content), low-entropy binary (code, tables) and copies of earlier regions (duplicated files).
 * - "flat": one folder of N tiny files (0–99 bytes of pseudo-English text; issue 18's 200 000 files).
 * And "usr" (`sourceDataSet`): an existing tree, this machine's /usr, backed up in place and never written.
 *
 * A change round (`applyChanges`) modifies 1 % of a home set's files (a region of up to 4 KiB rewritten in
 * place, sometimes bytes appended; large files get 256 KiB–1 MiB rewritten), adds 0.5 % new files and deletes
 * 0.5 % of the small files; in a vm set it rewrites 1 % of the 4 KiB blocks with random bytes. Rounds are
 * seeded by (seed, round). What a round overwrites is journalled first in `bench/data/<id>.undo/<round>/`, so
 * `revertChanges` (and the next `ensureDataSet`, after a crash) puts the original bytes back.
 *
 * A set lives in `bench/data/<id>/` with its description in `bench/data/<id>.json` (outside the tree, so
 * that it is not backed up); the marker is written last, so a half-generated set is redone.
 * @module
 */
import { Buffer } from "node:buffer";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { formatBytes } from "../base/units.ts";

/** Bump when the generator's output changes, so that old data sets are regenerated. */
const GENERATOR_VERSION = 2;
const KiB = 1024;
const MiB = 1024 * KiB;
/** The kinds of data set: generated ("home", "vm", "flat") or an existing tree read in place ("usr"). */
export const SET_KINDS = ["home", "vm", "usr", "flat"] as const;
/** One kind of data set. */
export type SetKind = typeof SET_KINDS[number];

/** Large files of a home set are at most this big; more of them are made for bigger sets. */
const LARGE_FILE_MAX = 256 * MiB;
const MIN_LARGE_FILES = 3;
const SMALL_FILE_MAX = 64 * KiB;
const FILES_PER_DIR = 16;
const MAX_DEPTH = 14;
const LARGE_DIR = "large";
const VM_FILE = "disk.img";
const BLOCK = 4 * KiB;
const TEXT_EXT = [".txt", ".md", ".json", ".c", ".py", ".log"];
const BIN_EXT = [".bin", ".jpg", ".gz", ".dat"];

/** What a data set is made from. */
export interface DataParams {
  kind: SetKind;
  /** Target total size in bytes (home: small files first, large files fill the rest; vm: the image). */
  size: number;
  /** Number of small files (home, flat; 1 for vm). */
  files: number;
  seed: number;
  /** "usr": the existing tree that is backed up (read only). */
  source?: string;
}

/** Kinds whose tree the change rounds can modify (1 % change incremental, 5-level chain). */
export function hasChangeRounds(kind: SetKind): boolean {
  return kind === "home" || kind === "vm";
}

/** A generated data set and its current state. */
export interface DataSet {
  id: string;
  kind: SetKind;
  params: DataParams;
  /** The directory that is backed up. */
  root: string;
  /** Regular files in the tree now. */
  fileCount: number;
  dirCount: number;
  /** Sum of the regular files' sizes now. */
  bytes: number;
  largeFiles: number;
  /** Seconds spent generating it (0 when reused). */
  generatedSeconds: number;
  reused: boolean;
  /** Change rounds applied since generation (0 = as generated). */
  state: number;
  /** Paths (relative to root) that the last change round wrote; checked byte for byte after a restore. */
  touched: string[];
  /** When the tree was last written (ms since the epoch). */
  changedAt: number;
  /** The journal folder of the change rounds. */
  journal: string;
  /** The state-0 totals. */
  initial: { fileCount: number; bytes: number };
}

/** What one change round did. */
export interface ChangeSummary {
  round: number;
  modified: number;
  added: number;
  deleted: number;
  /** vm: 4 KiB blocks rewritten. */
  blocks: number;
  /** Bytes written (modified regions, appended, added files, rewritten blocks). */
  bytesWritten: number;
  seconds: number;
}

interface Marker {
  generator: number;
  params: DataParams;
  fileCount: number;
  dirCount: number;
  bytes: number;
  largeFiles: number;
}

/** xoshiro128** seeded through splitmix32: small, fast and the same everywhere. */
export class Rng {
  #s0: number;
  #s1: number;
  #s2: number;
  #s3: number;

  constructor(seed: number) {
    let x = seed >>> 0;
    const split = () => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.#s0 = split();
    this.#s1 = split();
    this.#s2 = split();
    this.#s3 = split() | 1;
  }

  /** A uniform 32-bit unsigned integer. */
  next(): number {
    const s0 = this.#s0, s1 = this.#s1, s2 = this.#s2, s3 = this.#s3;
    const r = Math.imul(rotl(Math.imul(s1, 5), 7), 9) >>> 0;
    const t = s1 << 9;
    const n2 = s2 ^ s0;
    const n3 = s3 ^ s1;
    this.#s1 = s1 ^ n2;
    this.#s0 = s0 ^ n3;
    this.#s2 = n2 ^ t;
    this.#s3 = rotl(n3, 11);
    return r;
  }

  /** Uniform in [0, 1). */
  float(): number {
    return this.next() / 4294967296;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.float() * n);
  }

  /** Fills `buf` with random bytes. */
  fill(buf: Uint8Array): void {
    if (buf.byteOffset % 4 !== 0) {
      for (let i = 0; i < buf.byteLength; i++) buf[i] = this.next() & 0xff;
      return;
    }
    const view = new Uint32Array(buf.buffer, buf.byteOffset, buf.byteLength >>> 2);
    for (let i = 0; i < view.length; i++) view[i] = this.next();
    for (let i = view.length * 4; i < buf.byteLength; i++) buf[i] = this.next() & 0xff;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/**
 * Pseudo-English text: words from a fixed random vocabulary, picked with a strong bias towards the common
 * ones, with numbers and punctuation. zstd -1 shrinks it to roughly a third.
 */
export class TextSource {
  readonly #rng: Rng;
  readonly #bytes: Uint8Array;
  readonly #start: Uint32Array;
  readonly #length: Uint8Array;
  readonly words: string[] = [];

  constructor(rng: Rng, vocabulary = 4096) {
    this.#rng = rng;
    const consonants = "bcdfghjklmnprstvwz";
    const vowels = "aeiouy";
    const all: number[] = [];
    this.#start = new Uint32Array(vocabulary);
    this.#length = new Uint8Array(vocabulary);
    for (let w = 0; w < vocabulary; w++) {
      const len = 1 + rng.int(4) + rng.int(6);
      let word = "";
      for (let i = 0; i < len; i++) {
        const set = i % 2 === 0 ? consonants : vowels;
        word += set[rng.int(set.length)];
      }
      this.words.push(word);
      this.#start[w] = all.length;
      this.#length[w] = len;
      for (let i = 0; i < len; i++) all.push(word.charCodeAt(i));
    }
    this.#bytes = Uint8Array.from(all);
  }

  /** A common word, for names. */
  word(): string {
    return this.words[this.#rng.int(512)]!;
  }

  /** Fills `buf` with text. */
  fill(buf: Uint8Array): void {
    const rng = this.#rng, bytes = this.#bytes, start = this.#start, length = this.#length;
    const vocabulary = start.length;
    const n = buf.byteLength;
    let i = 0;
    let lineWords = 0;
    while (i < n) {
      const r = rng.next();
      if ((r & 31) === 0) {
        // a number
        let digits = 1 + ((r >>> 5) & 7);
        let v = r >>> 8;
        while (digits-- > 0 && i < n) {
          buf[i++] = 48 + (v % 10);
          v = Math.floor(v / 10);
        }
      } else {
        const u = rng.float();
        const w = Math.floor(u * u * u * vocabulary);
        const s = start[w]!;
        const len = length[w]!;
        for (let k = 0; k < len && i < n; k++) buf[i++] = bytes[s + k]!;
      }
      if (i >= n) break;
      lineWords++;
      if (lineWords > 6 && ((r >>> 27) & 7) === 0) {
        buf[i++] = (r & 64) ? 46 : 44; // "." or ","
        if (i < n) buf[i++] = 10;
        lineWords = 0;
      } else {
        buf[i++] = 32;
      }
    }
  }
}

/**
 * Low-entropy binary, like executables and tables: 32-bit words drawn (skewed) from a small table, with
 * runs of zeros. zstd -1 shrinks it to roughly half.
 */
class BinarySource {
  readonly #rng: Rng;
  readonly #table = new Uint32Array(4096);

  constructor(rng: Rng) {
    this.#rng = rng;
    for (let i = 0; i < this.#table.length; i++) {
      this.#table[i] = rng.next() & (i < 1024 ? 0xffff : 0xffffffff);
    }
  }

  fill(buf: Uint8Array): void {
    const view = new Uint32Array(buf.buffer, buf.byteOffset, buf.byteLength >>> 2);
    const rng = this.#rng, table = this.#table;
    for (let i = 0; i < view.length; i++) {
      const r = rng.next();
      if ((r & 15) === 0) {
        const run = Math.min(view.length - i, (r >>> 4) & 63);
        view.fill(0, i, i + run);
        i += run;
        if (i >= view.length) break;
      }
      const u = (r >>> 10) / 4194304;
      view[i] = table[Math.floor(u * u * table.length)]!;
    }
  }
}

/**
 * The data set's id: the folder name under bench/data/. The size drops its point and space, so 1.6 GiB
 * reads `16GiB` (kept: the ids name data sets already made).
 */
export function dataSetId(p: DataParams): string {
  const size = formatBytes(p.size).replace(/[ .]/g, "");
  if (p.kind === "usr") return `usr${(p.source ?? "/usr").replace(/[^A-Za-z0-9]+/g, "_")}`;
  if (p.kind === "flat") return `flat-${p.files}f-s${p.seed}`;
  return p.kind === "vm" ? `vm-${size}-s${p.seed}` : `home-${size}-${p.files}f-s${p.seed}`;
}

/**
 * The "usr" set: an existing tree (this machine's /usr by default), backed up where it is and never written
 * (no change rounds). Its files and bytes are counted now.
 */
export function sourceDataSet(params: DataParams, log: (line: string) => void): DataSet {
  const root = path.resolve(params.source ?? "/usr");
  if (!fs.existsSync(root) || !fs.statSync(root).isDirectory()) {
    throw new Error(`data set "usr": ${root} is not a folder`);
  }
  const started = performance.now();
  let dirs = 0;
  const walk = (dir: string) => {
    dirs++;
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      if (e.isDirectory()) walk(path.join(dir, e.name));
    }
  };
  walk(root);
  const { files, bytes } = countTree(root);
  log(
    `data: ${root}: ${files} files in ${dirs} folders, ${formatBytes(bytes)} (counted in ${
      ((performance.now() - started) / 1000).toFixed(1)
    } s; read only)`,
  );
  return {
    id: dataSetId(params),
    kind: params.kind,
    params: { ...params, size: bytes, files },
    root,
    fileCount: files,
    dirCount: dirs,
    bytes,
    largeFiles: 0,
    generatedSeconds: 0,
    reused: true,
    state: 0,
    touched: [],
    changedAt: 0,
    journal: "",
    initial: { fileCount: files, bytes },
  };
}

/** Returns the data set for `params`, generating it under `dataDir` unless an identical one is there. */
export function ensureDataSet(dataDir: string, params: DataParams, log: (line: string) => void): DataSet {
  const id = dataSetId(params);
  const root = path.join(dataDir, id);
  const markerPath = path.join(dataDir, `${id}.json`);
  const journal = path.join(dataDir, `${id}.undo`);
  const marker = readMarker(markerPath);
  const make = (m: Marker, generatedSeconds: number, reused: boolean): DataSet => ({
    id,
    kind: params.kind,
    params,
    root,
    fileCount: m.fileCount,
    dirCount: m.dirCount,
    bytes: m.bytes,
    largeFiles: m.largeFiles,
    generatedSeconds,
    reused,
    state: 0,
    touched: [],
    changedAt: fs.statSync(markerPath).mtimeMs,
    journal,
    initial: { fileCount: m.fileCount, bytes: m.bytes },
  });
  if (
    marker && marker.generator === GENERATOR_VERSION && marker.params.kind === params.kind &&
    marker.params.size === params.size && marker.params.files === params.files &&
    marker.params.seed === params.seed && fs.existsSync(root)
  ) {
    const set = make(marker, 0, true);
    if (fs.existsSync(journal)) {
      log(`data: ${id} was left changed by an earlier run; putting the original bytes back`);
      try {
        revertChanges(set);
      } catch (err) {
        log(`data: could not revert (${(err as Error).message}); generating it again`);
        return regenerate();
      }
    }
    log(`data: reusing ${root} (${marker.fileCount} files, ${formatBytes(marker.bytes)})`);
    return set;
  }
  return regenerate();

  function regenerate(): DataSet {
    log(
      `data: generating ${root} (${
        params.kind === "vm"
          ? `one disk image of ${formatBytes(params.size)}`
          : params.kind === "flat"
          ? `${params.files} tiny files in one folder`
          : `${params.files} small files, ${formatBytes(params.size)} in all`
      })…`,
    );
    const started = performance.now();
    fs.rmSync(markerPath, { force: true });
    fs.rmSync(journal, { recursive: true, force: true });
    fs.rmSync(root, { recursive: true, force: true });
    const totals = params.kind === "vm"
      ? generateVm(root, params)
      : params.kind === "flat"
      ? generateFlat(root, params)
      : generateHome(root, params);
    const written: Marker = { generator: GENERATOR_VERSION, params, ...totals };
    fs.writeFileSync(markerPath, JSON.stringify(written, null, 2) + "\n");
    const seconds = (performance.now() - started) / 1000;
    log(
      `data: ${totals.fileCount} files in ${totals.dirCount} folders, ${formatBytes(totals.bytes)}, ${
        seconds.toFixed(1)
      } s`,
    );
    return make(written, seconds, false);
  }
}

function readMarker(file: string): Marker | null {
  try {
    return JSON.parse(fs.readFileSync(file, "utf8")) as Marker;
  } catch {
    return null;
  }
}

/** A small file's size: 64 KiB × u⁴ (median 4 KiB, mean 12.8 KiB). */
function smallSize(rng: Rng): number {
  const u = rng.float();
  return Math.floor(u * u * u * u * (SMALL_FILE_MAX + 1));
}

function generateHome(root: string, params: DataParams) {
  const rng = new Rng(params.seed);
  const text = new TextSource(rng);

  // Folders: most hang below one of the last few made (so chains grow deep), some go back near the top.
  const dirCount = Math.max(1, Math.ceil(params.files / FILES_PER_DIR));
  const dirs: { path: string; depth: number }[] = [{ path: root, depth: 0 }];
  const shallow = [dirs[0]!];
  fs.mkdirSync(root, { recursive: true });
  for (let d = 1; d < dirCount; d++) {
    let parent = dirs[Math.max(0, dirs.length - 1 - rng.int(4))]!;
    if (rng.float() < 0.3 || parent.depth >= MAX_DEPTH) parent = shallow[rng.int(shallow.length)]!;
    const dir = { path: path.join(parent.path, `${text.word()}_${d.toString(36)}`), depth: parent.depth + 1 };
    fs.mkdirSync(dir.path);
    dirs.push(dir);
    if (dir.depth < 3) shallow.push(dir);
  }

  // Small files: half text, half random bytes.
  const buf = new Uint8Array(SMALL_FILE_MAX);
  let bytes = 0;
  for (let f = 0; f < params.files; f++) {
    const dir = dirs[rng.int(dirs.length)]!;
    const size = smallSize(rng);
    const isText = rng.float() < 0.5;
    const body = buf.subarray(0, size);
    if (isText) text.fill(body);
    else rng.fill(body);
    const ext = isText ? TEXT_EXT[rng.int(TEXT_EXT.length)]! : BIN_EXT[rng.int(BIN_EXT.length)]!;
    fs.writeFileSync(path.join(dir.path, `${text.word()}-${f.toString(36)}${ext}`), body);
    bytes += size;
  }

  // Large files fill the rest: 1 MiB text, 1 MiB random, …
  const rest = params.size - bytes;
  const largeFiles = rest >= MIN_LARGE_FILES * MiB
    ? Math.max(MIN_LARGE_FILES, Math.ceil(rest / LARGE_FILE_MAX))
    : 0;
  if (largeFiles > 0) {
    const largeDir = path.join(root, LARGE_DIR);
    fs.mkdirSync(largeDir);
    const chunk = new Uint8Array(MiB);
    const names = ["photos.tar", "mail.mbox", "video.mkv", "disk.vdi", "backup.zip", "music.flac"];
    for (let l = 0; l < largeFiles; l++) {
      const size = Math.floor(rest / largeFiles);
      const fd = fs.openSync(path.join(largeDir, `${l}-${names[l % names.length]}`), "w");
      try {
        let written = 0;
        for (let c = 0; written < size; c++) {
          const piece = chunk.subarray(0, Math.min(MiB, size - written));
          if (c % 2 === 0) text.fill(piece);
          else rng.fill(piece);
          written += fs.writeSync(fd, piece);
        }
      } finally {
        fs.closeSync(fd);
      }
      bytes += size;
    }
  }
  return {
    fileCount: params.files + largeFiles,
    dirCount: dirs.length + (largeFiles > 0 ? 1 : 0),
    bytes,
    largeFiles,
  };
}

/** Largest file of a "flat" set, bytes (sizes are uniform in 0 … this − 1). */
const FLAT_FILE_MAX = 100;

/** One folder of `params.files` tiny files (0–99 bytes of pseudo-English text). */
function generateFlat(root: string, params: DataParams) {
  const rng = new Rng(params.seed ^ 0x0f1a7);
  const text = new TextSource(rng);
  fs.mkdirSync(root, { recursive: true });
  const buf = new Uint8Array(FLAT_FILE_MAX);
  let bytes = 0;
  const width = String(params.files).length;
  for (let f = 0; f < params.files; f++) {
    const body = buf.subarray(0, rng.int(FLAT_FILE_MAX));
    text.fill(body);
    fs.writeFileSync(path.join(root, `f${String(f).padStart(width, "0")}.txt`), body);
    bytes += body.length;
  }
  return { fileCount: params.files, dirCount: 1, bytes, largeFiles: 0 };
}

function generateVm(root: string, params: DataParams) {
  const rng = new Rng(params.seed ^ 0x5a5a5a5a);
  const text = new TextSource(rng);
  const binary = new BinarySource(rng);
  const size = Math.max(BLOCK, Math.floor(params.size / BLOCK) * BLOCK);
  fs.mkdirSync(root, { recursive: true });
  const fd = fs.openSync(path.join(root, VM_FILE), "w+");
  const chunk = new Uint8Array(MiB);
  try {
    let written = 0;
    while (written < size) {
      const len = Math.min(size - written, BLOCK * (16 + rng.int(4096 - 16)));
      const p = rng.float();
      const kind = p < 0.25 ? "zero" : p < 0.45 ? "text" : p < 0.75 ? "random" : p < 0.9 ? "binary" : "copy";
      const from = kind === "copy" && written >= len ? BLOCK * rng.int((written - len) / BLOCK + 1) : -1;
      for (let done = 0; done < len;) {
        const piece = chunk.subarray(0, Math.min(MiB, len - done));
        if (kind === "zero") piece.fill(0);
        else if (kind === "text") text.fill(piece);
        else if (kind === "binary") binary.fill(piece);
        else if (from >= 0) fs.readSync(fd, piece, 0, piece.length, from + done);
        else rng.fill(piece);
        fs.writeSync(fd, piece, 0, piece.length, written + done);
        done += piece.length;
      }
      written += len;
    }
  } finally {
    fs.closeSync(fd);
  }
  return { fileCount: 1, dirCount: 1, bytes: size, largeFiles: 1 };
}

/** The regular files below `root`, as sorted relative paths with their sizes. */
function listFiles(root: string): { rel: string; size: number }[] {
  const out: { rel: string; size: number }[] = [];
  const walk = (dir: string, rel: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(p, r);
      else if (e.isFile()) out.push({ rel: r, size: fs.statSync(p).size });
    }
  };
  walk(root, "");
  out.sort((a, b) => a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0);
  return out;
}

/** One journalled region: the original bytes of `path` at `offset`, and its size before the round. */
interface Saved {
  path: string;
  offset: number;
  length: number;
  /** The file's size before the round; -1 when the file did not exist. */
  size: number;
  blobOffset: number;
}

interface Plan {
  added: string[];
  saved: Saved[];
}

/** Journals what a round is about to overwrite, in `<journal>/<round>/`. */
class Journal {
  readonly dir: string;
  readonly #blob: number;
  #offset = 0;
  readonly plan: Plan = { added: [], saved: [] };

  constructor(journal: string, round: number) {
    this.dir = path.join(journal, String(round));
    fs.rmSync(this.dir, { recursive: true, force: true });
    fs.mkdirSync(this.dir, { recursive: true });
    this.#blob = fs.openSync(path.join(this.dir, "blob"), "w");
  }

  save(root: string, rel: string, offset: number, length: number): void {
    const file = path.join(root, rel);
    const size = fs.statSync(file).size;
    const end = Math.min(size, offset + length);
    const bytes = new Uint8Array(Math.max(0, end - offset));
    if (bytes.length > 0) {
      const fd = fs.openSync(file, "r");
      try {
        fs.readSync(fd, bytes, 0, bytes.length, offset);
      } finally {
        fs.closeSync(fd);
      }
      fs.writeSync(this.#blob, bytes);
    }
    this.plan.saved.push({ path: rel, offset, length: bytes.length, size, blobOffset: this.#offset });
    this.#offset += bytes.length;
  }

  /** Writes the plan: from here on the round may change the tree. */
  commit(): void {
    fs.closeSync(this.#blob);
    fs.writeFileSync(path.join(this.dir, "plan.json"), JSON.stringify(this.plan));
  }
}

/**
 * Applies change round `round` (1, 2, …) to the set: home: 1 % of the files modified, 0.5 % added, 0.5 %
 * deleted; vm: 1 % of the 4 KiB blocks rewritten. Deterministic for (seed, round, state before).
 */
export function applyChanges(set: DataSet, round: number): ChangeSummary {
  const started = performance.now();
  const rng = new Rng((set.params.seed * 7919 + round * 104729) >>> 0);
  const journal = new Journal(set.journal, round);
  const summary: ChangeSummary = {
    round,
    modified: 0,
    added: 0,
    deleted: 0,
    blocks: 0,
    bytesWritten: 0,
    seconds: 0,
  };
  if (set.kind === "vm") {
    const file = path.join(set.root, VM_FILE);
    const blocks = Math.floor(fs.statSync(file).size / BLOCK);
    const n = Math.max(1, Math.round(blocks * 0.01));
    const picked = new Set<number>();
    while (picked.size < Math.min(n, blocks)) picked.add(rng.int(blocks));
    const order = [...picked].sort((a, b) => a - b);
    for (const b of order) journal.save(set.root, VM_FILE, b * BLOCK, BLOCK);
    journal.commit();
    const fd = fs.openSync(file, "r+");
    const buf = new Uint8Array(BLOCK);
    try {
      for (const b of order) {
        rng.fill(buf);
        fs.writeSync(fd, buf, 0, BLOCK, b * BLOCK);
      }
    } finally {
      fs.closeSync(fd);
    }
    summary.blocks = order.length;
    summary.bytesWritten = order.length * BLOCK;
    set.touched = [VM_FILE];
  } else {
    const text = new TextSource(rng, 1024);
    const files = listFiles(set.root);
    const count = files.length;
    const nMod = Math.min(count, Math.max(1, Math.round(count * 0.01)));
    const small = files.map((f, i) => ({ ...f, i })).filter((f) => !f.rel.startsWith(`${LARGE_DIR}/`));
    const nDel = Math.min(small.length - 1, Math.max(1, Math.round(count * 0.005)));
    const nAdd = Math.max(1, Math.round(count * 0.005));
    const modify = new Set<number>();
    while (modify.size < nMod) modify.add(rng.int(count));
    const remove = new Set<number>();
    for (let guard = 0; remove.size < nDel && guard < 100 * nDel; guard++) {
      const f = small[rng.int(small.length)]!;
      if (!modify.has(f.i)) remove.add(f.i);
    }
    const dirs = [...new Set(files.map((f) => path.posix.dirname(f.rel)))].sort();

    // Plan every write first (so that the journal holds the original bytes), then do them.
    interface Edit {
      rel: string;
      offset: number;
      body: Uint8Array;
    }
    const edits: Edit[] = [];
    const fillFor = (rel: string, body: Uint8Array) => {
      if (TEXT_EXT.includes(path.extname(rel))) text.fill(body);
      else rng.fill(body);
      return body;
    };
    for (const i of [...modify].sort((a, b) => a - b)) {
      const f = files[i]!;
      if (f.size >= 4 * MiB) {
        const len = 256 * KiB + rng.int(768 * KiB);
        const offset = rng.int(f.size - len + 1);
        edits.push({ rel: f.rel, offset, body: fillFor(f.rel, new Uint8Array(len)) });
        continue;
      }
      const len = Math.min(f.size, 1 + rng.int(4 * KiB));
      const offset = rng.int(f.size - len + 1);
      if (len > 0) edits.push({ rel: f.rel, offset, body: fillFor(f.rel, new Uint8Array(len)) });
      if (f.size === 0 || rng.float() < 0.3) {
        edits.push({
          rel: f.rel,
          offset: f.size,
          body: fillFor(f.rel, new Uint8Array(1 + rng.int(4 * KiB))),
        });
      }
    }
    const added: { rel: string; body: Uint8Array }[] = [];
    for (let a = 0; a < nAdd; a++) {
      const dir = dirs[rng.int(dirs.length)]!;
      const isText = rng.float() < 0.5;
      const ext = isText ? TEXT_EXT[rng.int(TEXT_EXT.length)]! : BIN_EXT[rng.int(BIN_EXT.length)]!;
      const name = `${text.word()}-r${round}n${a.toString(36)}${ext}`;
      const rel = dir === "." ? name : `${dir}/${name}`;
      added.push({ rel, body: fillFor(rel, new Uint8Array(smallSize(rng))) });
    }
    const deleted = [...remove].sort((a, b) => a - b).map((i) => files[i]!);

    for (const e of edits) journal.save(set.root, e.rel, e.offset, e.body.length);
    for (const f of deleted) journal.save(set.root, f.rel, 0, f.size);
    journal.plan.added = added.map((a) => a.rel);
    journal.commit();

    let growth = 0;
    const sizes = new Map(files.map((f) => [f.rel, f.size]));
    for (const e of edits) {
      const fd = fs.openSync(path.join(set.root, e.rel), "r+");
      try {
        fs.writeSync(fd, e.body, 0, e.body.length, e.offset);
      } finally {
        fs.closeSync(fd);
      }
      const before = sizes.get(e.rel)!;
      const after = Math.max(before, e.offset + e.body.length);
      growth += after - before;
      sizes.set(e.rel, after);
      summary.bytesWritten += e.body.length;
    }
    for (const a of added) {
      fs.writeFileSync(path.join(set.root, a.rel), a.body);
      growth += a.body.length;
      summary.bytesWritten += a.body.length;
    }
    for (const f of deleted) {
      fs.rmSync(path.join(set.root, f.rel));
      growth -= sizes.get(f.rel)!;
    }
    summary.modified = modify.size;
    summary.added = added.length;
    summary.deleted = deleted.length;
    set.fileCount += added.length - deleted.length;
    set.bytes += growth;
    set.touched = [...new Set([...edits.map((e) => e.rel), ...added.map((a) => a.rel)])];
  }
  set.state = round;
  set.changedAt = Date.now();
  summary.seconds = (performance.now() - started) / 1000;
  return summary;
}

/** Undoes every journalled change round, newest first, and returns the set to its generated state. */
export function revertChanges(set: DataSet): void {
  if (fs.existsSync(set.journal)) {
    const rounds = fs.readdirSync(set.journal).filter((d) => /^\d+$/.test(d)).map(Number).sort((a, b) =>
      b - a
    );
    for (const round of rounds) {
      const dir = path.join(set.journal, String(round));
      let plan: Plan;
      try {
        plan = JSON.parse(fs.readFileSync(path.join(dir, "plan.json"), "utf8")) as Plan;
      } catch {
        // The round never got to change the tree.
        fs.rmSync(dir, { recursive: true, force: true });
        continue;
      }
      for (const rel of plan.added) fs.rmSync(path.join(set.root, rel), { force: true });
      const blob = fs.openSync(path.join(dir, "blob"), "r");
      try {
        for (const s of [...plan.saved].reverse()) {
          const file = path.join(set.root, s.path);
          const fd = fs.openSync(file, fs.existsSync(file) ? "r+" : "w");
          try {
            if (s.length > 0) {
              const bytes = new Uint8Array(s.length);
              fs.readSync(blob, bytes, 0, s.length, s.blobOffset);
              fs.writeSync(fd, bytes, 0, s.length, s.offset);
            }
            fs.ftruncateSync(fd, s.size);
          } finally {
            fs.closeSync(fd);
          }
        }
      } finally {
        fs.closeSync(blob);
      }
      fs.rmSync(dir, { recursive: true, force: true });
    }
    fs.rmSync(set.journal, { recursive: true, force: true });
  }
  set.fileCount = set.initial.fileCount;
  set.bytes = set.initial.bytes;
  set.state = 0;
  set.touched = [];
  set.changedAt = Date.now();
}

/**
 * Waits until the tree was last written at least `seconds` ago. Incremental engines (frost, like git) treat a
 * file whose ctime is within about a second of the parent backup's start as possibly changed, so a backup
 * started right after a change round would make the next backup re-read what that round wrote.
 */
export function settle(set: DataSet, seconds = 2.5): void {
  const age = (Date.now() - set.changedAt) / 1000;
  if (age < seconds) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, (seconds - age) * 1000);
}

/** Counts the regular files under `root` and their bytes. */
export function countTree(root: string): { files: number; bytes: number } {
  let files = 0;
  let bytes = 0;
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) {
        files++;
        bytes += fs.statSync(p).size;
      }
    }
  };
  walk(root);
  return { files, bytes };
}

function sameBytes(a: string, b: string): boolean {
  const size = fs.statSync(a).size;
  if (!fs.existsSync(b) || fs.statSync(b).size !== size) return false;
  if (size > 16 * MiB) return spawnSync("cmp", ["-s", a, b]).status === 0;
  return Buffer.compare(fs.readFileSync(a), fs.readFileSync(b)) === 0;
}

/**
 * Checks a restored tree against the set's current state: the same number of files and bytes, and the same
 * bytes in every file the last change round wrote plus every 50th file. Returns a note when it differs.
 */
export function verifyRestore(restored: string, set: DataSet): string | undefined {
  if (!fs.existsSync(restored)) return `restore: ${restored} is missing`;
  const got = countTree(restored);
  if (got.files !== set.fileCount || got.bytes !== set.bytes) {
    return `restore: got ${got.files} files / ${got.bytes} bytes, expected ${set.fileCount} / ${set.bytes}`;
  }
  const check = new Set(set.touched);
  if (set.kind === "vm") check.add(VM_FILE);
  else listFiles(set.root).forEach((f, i) => i % 50 === 0 && check.add(f.rel));
  const wrong = [...check].filter((rel) => !sameBytes(path.join(set.root, rel), path.join(restored, rel)));
  if (wrong.length > 0) {
    return `restore: ${wrong.length} of ${check.size} checked files differ (first: ${wrong[0]})`;
  }
  return undefined;
}

/** One line describing the set as generated, for the report. */
export function describeSet(set: DataSet): string {
  const p = set.params;
  const total = `${formatBytes(set.initial.bytes)} (${set.initial.bytes} bytes)`;
  if (set.kind === "usr") {
    return `"usr": this machine's ${set.root}, backed up in place (read only; nobody here wrote it): ${total} ` +
      `in ${set.initial.fileCount} regular files and ${set.dirCount} folders, plus its symlinks; no change rounds`;
  }
  if (set.kind === "flat") {
    return `"flat": one folder of ${set.initial.fileCount} files of 0–${FLAT_FILE_MAX - 1} bytes ` +
      `(pseudo-English text), ${total}; no change rounds; seed ${p.seed}`;
  }
  if (set.kind === "vm") {
    return `"vm": one ${total} disk image of 64 KiB–16 MiB regions (about 25 % zeros, 20 % pseudo-English ` +
      `text, 30 % random bytes, 15 % low-entropy binary, 10 % copies of earlier regions); a change round ` +
      `rewrites 1 % of its 4 KiB blocks with random bytes; seed ${p.seed}`;
  }
  return `"home": ${total} in ${set.initial.fileCount} files and ${set.dirCount} folders: ${p.files} small ` +
    `files of 0–64 KiB (64 KiB × u⁴: median 4 KiB, mean 12.8 KiB; half pseudo-English text, half random ` +
    `bytes) in a tree up to ${MAX_DEPTH} folders deep, plus ${set.largeFiles} large files alternating 1 MiB ` +
    `of text and 1 MiB of random bytes; a change round modifies 1 % of the files (up to 4 KiB rewritten in ` +
    `place, sometimes bytes appended), adds 0.5 % and deletes 0.5 %; seed ${p.seed}`;
}
