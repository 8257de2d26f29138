/**
 * Deterministic benchmark data: a "home-lite" tree of many small files (half pseudo-English text, half
 * random bytes) in a deep-ish directory tree, plus a few large files that alternate 1 MiB of text and 1 MiB
 * of random bytes (so about half compressible). The same parameters always give the same bytes.
 *
 * A generated set lives in `bench/data/<id>/` with its description in `bench/data/<id>.json` (outside the
 * tree, so that it is not backed up); the marker is written last, so a half-generated set is redone.
 * @module
 */
import fs from "node:fs";
import path from "node:path";

/** Bump when the generator's output changes, so that old data sets are regenerated. */
const GENERATOR_VERSION = 1;
const KiB = 1024;
const MiB = 1024 * KiB;
/** Large files are at most this big; more of them are made for bigger sets. */
const LARGE_FILE_MAX = 512 * MiB;
const SMALL_FILE_MAX = 64 * KiB;
const FILES_PER_DIR = 16;
const MAX_DEPTH = 10;

/** What a data set is made from. */
export interface DataParams {
  /** Target total size in bytes (small files first, large files fill the rest). */
  size: number;
  /** Number of small files. */
  files: number;
  seed: number;
}

/** A generated data set. */
export interface DataSet {
  id: string;
  params: DataParams;
  /** The directory that is backed up. */
  root: string;
  /** Regular files in the tree (small + large). */
  fileCount: number;
  dirCount: number;
  /** Sum of the regular files' sizes. */
  bytes: number;
  largeFiles: number;
  /** Seconds spent generating it (0 when reused). */
  generatedSeconds: number;
  reused: boolean;
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

/** Parses "50M", "1G", "1.5GiB", "4096" (binary units) into bytes. */
export function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$/i.exec(text.trim());
  if (!m) throw new Error(`Invalid size "${text}" (examples: 50M, 1G, 4GiB)`);
  const unit = ({ "": 1, k: KiB, m: MiB, g: 1024 * MiB, t: 1024 * 1024 * MiB } as Record<string, number>)[
    m[2]!.toLowerCase()
  ]!;
  return Math.round(Number(m[1]) * unit);
}

/** "1 GiB", "50 MiB", "1.5 GiB". */
export function formatSize(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${Number.isInteger(v) ? v : v.toFixed(1)} ${units[u]}`;
}

/** The data set's id: the folder name under bench/data/. */
export function dataSetId(p: DataParams): string {
  return `home-lite-${formatSize(p.size).replace(/[ .]/g, "")}-${p.files}f-s${p.seed}`;
}

/** Returns the data set for `params`, generating it under `dataDir` unless an identical one is there. */
export function ensureDataSet(dataDir: string, params: DataParams, log: (line: string) => void): DataSet {
  const id = dataSetId(params);
  const root = path.join(dataDir, id);
  const markerPath = path.join(dataDir, `${id}.json`);
  const marker = readMarker(markerPath);
  if (
    marker && marker.generator === GENERATOR_VERSION && marker.params.size === params.size &&
    marker.params.files === params.files && marker.params.seed === params.seed && fs.existsSync(root)
  ) {
    log(`data: reusing ${root} (${marker.fileCount} files, ${formatSize(marker.bytes)})`);
    return { id, params, root, ...markerTotals(marker), generatedSeconds: 0, reused: true };
  }
  log(`data: generating ${root} (${params.files} small files, ${formatSize(params.size)} in all)…`);
  const started = performance.now();
  fs.rmSync(markerPath, { force: true });
  fs.rmSync(root, { recursive: true, force: true });
  const totals = generate(root, params);
  const written: Marker = { generator: GENERATOR_VERSION, params, ...totals };
  fs.writeFileSync(markerPath, JSON.stringify(written, null, 2) + "\n");
  const seconds = (performance.now() - started) / 1000;
  log(
    `data: ${totals.fileCount} files in ${totals.dirCount} folders, ${formatSize(totals.bytes)}, ${
      seconds.toFixed(1)
    } s`,
  );
  return { id, params, root, ...totals, generatedSeconds: seconds, reused: false };
}

function readMarker(file: string): Marker | null {
  try {
    return JSON.parse(fs.readFileSync(file, "utf8")) as Marker;
  } catch {
    return null;
  }
}

function markerTotals(m: Marker) {
  return { fileCount: m.fileCount, dirCount: m.dirCount, bytes: m.bytes, largeFiles: m.largeFiles };
}

function generate(root: string, params: DataParams) {
  const rng = new Rng(params.seed);
  const text = new TextSource(rng);

  // Folders: most hang below one of the last few made (so chains grow deep), some go back near the top.
  const dirCount = Math.max(1, Math.ceil(params.files / FILES_PER_DIR));
  const dirs: { path: string; depth: number }[] = [{ path: root, depth: 0 }];
  fs.mkdirSync(root, { recursive: true });
  for (let d = 1; d < dirCount; d++) {
    let parent = dirs[Math.max(0, dirs.length - 1 - rng.int(5))]!;
    if (rng.float() < 0.4 || parent.depth >= MAX_DEPTH) {
      const shallow = dirs.filter((x) => x.depth < 3);
      parent = shallow[rng.int(shallow.length)]!;
    }
    const dir = { path: path.join(parent.path, `${text.word()}_${d.toString(36)}`), depth: parent.depth + 1 };
    fs.mkdirSync(dir.path);
    dirs.push(dir);
  }

  // Small files: 0–64 KiB, uniform; half text, half random bytes.
  const buf = new Uint8Array(SMALL_FILE_MAX);
  const textExt = [".txt", ".md", ".json", ".c", ".py", ".log"];
  const binExt = [".bin", ".jpg", ".gz", ".dat"];
  let bytes = 0;
  for (let f = 0; f < params.files; f++) {
    const dir = dirs[rng.int(dirs.length)]!;
    const size = rng.int(SMALL_FILE_MAX + 1);
    const isText = rng.float() < 0.5;
    const body = buf.subarray(0, size);
    if (isText) text.fill(body);
    else rng.fill(body);
    const ext = isText ? textExt[rng.int(textExt.length)]! : binExt[rng.int(binExt.length)]!;
    fs.writeFileSync(path.join(dir.path, `${text.word()}-${f.toString(36)}${ext}`), body);
    bytes += size;
  }

  // Large files fill the rest: 1 MiB text, 1 MiB random, …
  const rest = params.size - bytes;
  const largeFiles = rest >= 2 * MiB ? Math.max(2, Math.ceil(rest / LARGE_FILE_MAX)) : 0;
  if (largeFiles > 0) {
    const largeDir = path.join(root, "large");
    fs.mkdirSync(largeDir);
    const chunk = new Uint8Array(MiB);
    for (let l = 0; l < largeFiles; l++) {
      const size = Math.floor(rest / largeFiles);
      const fd = fs.openSync(path.join(largeDir, `disk-${l}.img`), "w");
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

/**
 * Waits until the data set is at least `seconds` old. Incremental engines (frost, like git) treat a file whose
 * ctime is within about a second of the parent backup's start as possibly changed, so a set generated just
 * before the first full backup would make the no-change backup re-read it.
 */
export function settle(dataDir: string, set: DataSet, seconds = 2.5): void {
  const age = (Date.now() - fs.statSync(path.join(dataDir, `${set.id}.json`)).mtimeMs) / 1000;
  if (age < seconds) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, (seconds - age) * 1000);
}

/** Counts the regular files under `root` and their bytes (to check a restore). */
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
