/**
 * `frost verify --name NAME [--date T | --all] [--read-data [--sample P%]]`: checks that a backup point (or
 * every backup of the series) is intact on the storage, without writing anything.
 *
 * Quick mode stats every object (manifests, data and state segments) and compares the size with the
 * manifest; nothing is downloaded. `--read-data` downloads every segment, checks its SHA-256, and decodes
 * the data and state streams to the end (decrypt, decompress, and for the tar engine parse the archive).
 * With several storages each one is checked on its own, so a bad copy is found even when another is good.
 * @module
 */
import {
  type Command,
  type CommandContext,
  hostnameOption,
  KEY_OPTIONS,
  keyOptions,
  nameOption,
  parse,
  parseOrHelp,
  STORAGE_HELP,
  STORAGE_OPTIONS,
  withStorages,
} from "./cli.ts";
import { ExitCode, FrostError, messageOf, UsageError } from "../base/errors.ts";
import {
  loadManifests,
  type Manifest,
  manifestKey,
  type SegmentRef,
  seriesName,
} from "../series/manifest.ts";
import { NoBackupError } from "../series/levels.ts";
import { formatBytes } from "../base/units.ts";
import { METRICS_OPTION, metricsHelp } from "./metrics.ts";
import { checkSelection, describe, selectChain, type Selection } from "../series/time.ts";
import { openStream, readSegments, streamSegments } from "../pipeline/mod.ts";
import { dataKeyOf, type KeyOptions, stateKeyOf } from "../series/keys.ts";
import { type DataKey } from "../codec/encryption.ts";
import { collectNow, relieveMemory } from "../base/memory.ts";
import { markTarState, tarReplayer, Tree } from "../engines/mod.ts";
import { NotFoundError, type Storage } from "../storage/storage.ts";
import { storagesOf } from "../storage/multi.ts";

const USAGE =
  `Usage: frost verify --name NAME [--date T | --id ID | --all] [--read-data [--sample P%]] [options]

Checks the backups of <hostname>_<name> without writing anything: by default the chain a restore of the
newest backup (or of --date) would apply, with --all every backup of the series.

Quick mode (the default) checks that every object (manifests, data and engine-state segments) exists with
the size its manifest records; nothing is downloaded. --read-data downloads every segment, checks its
SHA-256, and decodes the data and state streams to the end (decryption, decompression and, for the tar
engine, the archive structure) — the same reading a restore does, with no writes. A tar chain is replayed
in memory as restore applies it and compared with the tree its newest backup recorded (a level on the
wrong parent is reported); a parent cycle or a level without a parent, which restore refuses, too.

Exit code 0 only when everything checked is good; otherwise 1, with each bad object named on stderr.

Options:
  --name NAME            backup name (required)
  --date T               verify the chain of the newest backup at or before T (as "frost list" shows
                         times, a backup id, or ISO 8601 in local time)
  --id ID                verify the chain of exactly the backup ID
  --all                  verify every backup of the series (and that every parent exists)
  --read-data            download and check every segment, decode the archives to the end
  --sample P%            with --read-data: check only a random share of the segments (e.g. 10%); their
                         checksums are checked, the archives are not decoded
  --encrypt-pass-file F  with --read-data: the passphrase of encrypted backups (or set FROST_PASSPHRASE)
  --encrypt-identity-file F  with --read-data: the identity of backups encrypted to a recipient
  --json                 print the result as one JSON object on stdout
${metricsHelp(25)}
  -h, --help             this help

${STORAGE_HELP}`;

/** One bad object. */
export interface Problem {
  /** The storage key of the object (or of the manifest a problem belongs to). */
  key: string;
  problem: string;
  /** The storage it was found on, when several are checked. */
  storage?: string;
}

/** `frost verify`'s options. */
const VERIFY_OPTIONS = {
  ...STORAGE_OPTIONS,
  date: { type: "string" },
  id: { type: "string" },
  all: { type: "boolean" },
  ...METRICS_OPTION,
  "read-data": { type: "boolean" },
  sample: { type: "string" },
  ...KEY_OPTIONS,
} as const;

type VerifyValues = ReturnType<typeof parse<typeof VERIFY_OPTIONS>>["values"];

/** The verify command. */
export const verifyCommand: Command = {
  summary: "check that backups are intact (sizes, or --read-data: checksums and archives)",
  usage: USAGE,
  async run(ctx) {
    const parsed = parseOrHelp(ctx, USAGE, VERIFY_OPTIONS, true);
    if (!parsed) return ExitCode.ok;
    const { values, positionals } = parsed;
    if (positionals.length > 0) throw new UsageError(`Unexpected argument "${positionals[0]}"`);
    const o = verifyOptions(values);
    return await withStorages(values, { create: false, ctx }, async (storage) => {
      const { series, all, readData, sample } = o;
      const problems: Problem[] = [];
      const history = await loadManifests(storage, series, (key, err) => {
        problems.push({ key, problem: `unreadable manifest: ${messageOf(err)}` });
      });
      if (history.length === 0 && problems.length === 0) {
        throw new FrostError(`No backup of "${series}" in ${storage.url}`);
      }
      // With every manifest unreadable there is nothing more to check: the problems say why.
      const selected = all || history.length === 0
        ? [...history].sort((a, b) => a.id.localeCompare(b.id))
        : chainOf(history, o.selection, series, problems);
      if (all) ancestryProblems(selected, series, problems);
      // Every key is opened before anything is read: a wrong passphrase is one clear error.
      const keys = readData && sample === undefined
        ? await openKeys(selected, await keyOptions(values))
        : new Map<string, BackupKeyPair>();
      const counts = await verifyEverywhere(storage, series, selected, {
        readData,
        sample,
        keys,
        signal: ctx.signal,
        // A chain is replayed as restore applies it, and the result compared with what its newest
        // backup holds (a level on the wrong parent restores a different tree).
        replay: !all && problems.length === 0,
      }, problems);
      return report(o, selected, counts, problems, values.json === true, ctx);
    });
  },
};

/** What `frost verify`'s options say. */
interface VerifySetup {
  series: string;
  all: boolean;
  selection: Selection;
  readData: boolean;
  sample: number | undefined;
}

/** Checks `frost verify`'s options (usage errors). */
function verifyOptions(values: VerifyValues): VerifySetup {
  const name = nameOption(values.name, "verify");
  const hostname = hostnameOption(values.hostname);
  if (values.all && (values.date !== undefined || values.id !== undefined)) {
    throw new UsageError(`--all and --${values.id !== undefined ? "id" : "date"} cannot be used together`);
  }
  const selection = { id: values.id, date: values.date };
  checkSelection(selection);
  const readData = values["read-data"] ?? false;
  if (values.sample !== undefined && !readData) throw new UsageError("--sample needs --read-data");
  const sample = values.sample === undefined ? undefined : parseShare(values.sample);
  return { series: seriesName(hostname, name), all: values.all ?? false, selection, readData, sample };
}

/** The data and state keys of one backup (null: not encrypted, or a state this host cannot read). */
type BackupKeyPair = { data: DataKey | null; state: DataKey | null };

/** Opens the keys of every encrypted backup of `selected`, by backup id. */
async function openKeys(
  selected: readonly Manifest[],
  keyOpts: KeyOptions,
): Promise<Map<string, BackupKeyPair>> {
  const keys = new Map<string, BackupKeyPair>();
  for (const m of selected) {
    if (!m.encryption) continue;
    if (keyOpts.passphrase === undefined && keyOpts.identity === undefined) {
      throw new UsageError(
        `Backup "${m.id}" is encrypted: --read-data needs --encrypt-pass-file or --encrypt-identity-file`,
      );
    }
    const state = await stateKeyOf(m.id, m.encryption, keyOpts);
    keys.set(m.id, {
      data: await dataKeyOf(m.id, m.encryption, keyOpts),
      state: state === "unavailable" ? null : state,
    });
  }
  return keys;
}

/** Checks `selected` on each storage on its own (`verifyOn`), naming the storage in problems when several. */
async function verifyEverywhere(
  storage: Storage,
  series: string,
  selected: Manifest[],
  options: VerifyOptions,
  problems: Problem[],
): Promise<{ objects: number; bytes: number }> {
  const sources = storagesOf(storage);
  let objects = 0;
  let bytes = 0;
  for (const source of sources) {
    const where = sources.length > 1 ? source.url : undefined;
    const found: Problem[] = [];
    const counts = await verifyOn(source, series, selected, options, found);
    objects += counts.objects;
    bytes += counts.bytes;
    for (const p of found) problems.push(where ? { ...p, storage: where } : p);
  }
  return { objects, bytes };
}

/** The problems on stderr, the summary line (or JSON) and metrics; returns the exit code. */
function report(
  o: VerifySetup,
  selected: readonly Manifest[],
  counts: { objects: number; bytes: number },
  problems: readonly Problem[],
  json: boolean,
  ctx: CommandContext,
): number {
  const { series, all, readData, sample } = o;
  const { objects, bytes } = counts;
  const chosen = all ? undefined : selected[selected.length - 1];
  // The chosen backup is named in the summary line (stdout stays one line, stderr empty when OK).
  const what = all ? `all ${selected.length}` : `chain of ${selected.length}`;
  const mode = !readData
    ? "sizes"
    : sample !== undefined
    ? `SHA-256 of a ${Math.round(sample * 1000) / 10}% sample`
    : "SHA-256 and archives decoded";
  for (const p of problems) {
    ctx.stderr(`frost: BAD ${p.key}${p.storage ? ` on ${p.storage}` : ""}: ${p.problem}`);
  }
  const summary = `${problems.length === 0 ? "OK" : "FAILED"}: ${series}, ${what} backup${
    selected.length === 1 ? "" : "s"
  }${chosen ? ` up to ${describe(chosen)}` : ""}, ${objects} objects (${
    formatBytes(bytes)
  }) checked (${mode})${
    problems.length === 0 ? "" : `; ${problems.length} bad object${problems.length === 1 ? "" : "s"}`
  }`;
  ctx.metrics?.({ objects, bytes, problems: problems.length });
  if (json) {
    ctx.stdout(JSON.stringify({
      ok: problems.length === 0,
      series,
      backups: selected.map((m) => m.id),
      ...chosen && { id: chosen.id, created: chosen.created, level: chosen.level },
      mode: readData ? (sample !== undefined ? "sample" : "read-data") : "quick",
      objects,
      bytes,
      problems,
    }));
  } else if (problems.length === 0) {
    ctx.stdout(summary);
  }
  if (problems.length > 0) {
    ctx.stderr(`frost: verify ${summary}`);
    return ExitCode.failure;
  }
  return ExitCode.ok;
}

/** `10%`, `10` or `0.1`… as a share in (0, 1]. */
function parseShare(text: string): number {
  const m = /^(\d+(?:\.\d+)?)%?$/.exec(text.trim());
  const share = m ? Number(m[1]) / 100 : NaN;
  if (!(share > 0 && share <= 1)) {
    throw new UsageError(
      `Invalid --sample "${text}": expected a percentage above 0 and at most 100, e.g. 10%`,
    );
  }
  return share;
}

/**
 * The chain a restore at `at` applies (oldest first). When a parent manifest is missing, the problem is
 * recorded and the part of the chain that exists is returned.
 */
function chainOf(history: Manifest[], selection: Selection, series: string, problems: Problem[]): Manifest[] {
  const byId = new Map(history.map((m) => [m.id, m]));
  let refusal: FrostError;
  try {
    return selectChain(history, selection, series);
  } catch (err) {
    if (err instanceof NoBackupError || !(err instanceof FrostError)) throw err;
    refusal = err;
  }
  const before = problems.length;
  // A broken chain: walk from the backup a restore would pick as far as the parents go.
  const limit = checkSelection(selection)?.getTime() ?? Infinity;
  const candidates = history.filter((m) =>
    selection.id !== undefined ? m.id === selection.id.trim().toUpperCase() : Date.parse(m.created) <= limit
  ).sort((a, b) => Date.parse(a.created) - Date.parse(b.created) || a.id.localeCompare(b.id));
  const out: Manifest[] = [];
  const seen = new Set<string>();
  let current = candidates[candidates.length - 1];
  while (current && !seen.has(current.id)) {
    seen.add(current.id);
    out.push(current);
    if (current.parent === null) break;
    const parent = byId.get(current.parent);
    if (!parent) {
      problems.push({
        key: manifestKey(series, current.parent),
        problem: `missing: backup ${current.id} needs its parent ${current.parent}`,
      });
    }
    current = parent;
  }
  // A cycle, or a level above 0 without a parent: what restore refuses with, verify reports.
  if (problems.length === before && out.length > 0) {
    problems.push({
      key: manifestKey(series, out[0]!.id),
      problem: `restore refuses it: ${refusal.message}`,
    });
  }
  return out.reverse();
}

/** With --all: what restore would refuse in the parents of each backup (a cycle, a level without a parent). */
function ancestryProblems(selected: readonly Manifest[], series: string, problems: Problem[]): void {
  const byId = new Map(selected.map((m) => [m.id, m]));
  for (const m of selected) {
    const seen = new Set([m.id]);
    let current = m;
    let problem: string | undefined;
    while (current.parent !== null) {
      const parent = byId.get(current.parent);
      if (!parent) break; // a missing parent is reported on its own
      if (seen.has(parent.id)) {
        problem =
          `restore refuses it: the parents of backup "${m.id}" form a cycle ("${parent.id}" is its own ancestor)`;
        break;
      }
      seen.add(parent.id);
      current = parent;
    }
    if (!problem && current.parent === null && current.level !== 0) {
      problem = `restore refuses it: backup "${current.id}" is at level ${current.level} but has no parent`;
    }
    if (problem) problems.push({ key: manifestKey(series, m.id), problem });
  }
}

interface VerifyOptions {
  readData: boolean;
  sample: number | undefined;
  keys: Map<string, BackupKeyPair>;
  signal: AbortSignal;
  /** `selected` is one chain, oldest first: replay it and compare with its newest backup's state. */
  replay?: boolean;
}

/** Checks `selected` on one storage; appends what is wrong to `problems`. */
async function verifyOn(
  storage: Storage,
  series: string,
  selected: Manifest[],
  options: VerifyOptions,
  problems: Problem[],
): Promise<{ objects: number; bytes: number }> {
  let objects = 0;
  let bytes = 0;
  const ids = new Set(selected.map((m) => m.id));
  // Manifests: present on this storage (they may have been read from another), and parents present.
  for (const m of selected) {
    const key = manifestKey(series, m.id);
    objects++;
    try {
      bytes += (await storage.stat(key, { signal: options.signal })).size;
    } catch (err) {
      problems.push({ key, problem: statProblem(err) });
    }
    if (m.parent !== null && !ids.has(m.parent)) {
      // --all: the parent must be one of the series' backups (chain mode reports it while walking).
      const parentKey = manifestKey(series, m.parent);
      if (!problems.some((p) => p.key === parentKey)) {
        try {
          await storage.stat(parentKey, { signal: options.signal });
        } catch {
          problems.push({ key: parentKey, problem: `missing: backup ${m.id} needs its parent ${m.parent}` });
        }
      }
    }
  }

  if (!options.readData) {
    for (const m of selected) {
      for (const ref of [...m.segments, ...m.state]) {
        objects++;
        try {
          const info = await storage.stat(ref.key, { signal: options.signal });
          bytes += info.size;
          if (info.size !== ref.size) {
            problems.push({
              key: ref.key,
              problem: `holds ${info.size} bytes, the manifest says ${ref.size}`,
            });
          }
        } catch (err) {
          problems.push({ key: ref.key, problem: statProblem(err) });
        }
      }
    }
    return { objects, bytes };
  }

  if (options.sample !== undefined) {
    const all = selected.flatMap((m) => [...m.segments, ...m.state]);
    for (const ref of pickSample(all, options.sample)) {
      objects++;
      const got = await fetchVerified(storage, ref, options.signal, problems);
      for (const chunk of got ?? []) bytes += chunk.byteLength;
    }
    return { objects, bytes };
  }

  // Only tar-engine chains whose every stream can be decoded are replayed.
  const tree =
    options.replay && selected.every((m) => m.engine === "tar" && (!m.encryption || options.keys.has(m.id)))
      ? new Tree()
      : undefined;
  const before = problems.length;
  for (const m of selected) {
    const keys = options.keys.get(m.id);
    for (const kind of ["data", "state"] as const) {
      const refs = kind === "data" ? m.segments : m.state;
      const key = kind === "data" ? keys?.data ?? null : keys?.state ?? null;
      // A write-only host without the identity cannot open the state: its checksums are still checked.
      const decodeIt = !m.encryption || key !== null;
      const counts = await readStream(
        storage,
        series,
        m,
        kind,
        refs,
        decodeIt ? key : undefined,
        options,
        problems,
        kind === "data" ? tree : undefined,
      );
      objects += counts.objects;
      bytes += counts.bytes;
    }
  }
  if (tree && problems.length === before && selected.length > 0) {
    // What the replay left is garbage: freed before the comparison makes more.
    collectNow();
    await compareReplay(storage, series, selected[selected.length - 1]!, tree, options, problems);
  }
  return { objects, bytes };
}

/**
 * Compares the tree a chain restores to (replayed in `tree`) with the tree its newest backup `m` recorded in
 * its engine state; a difference (a level applied on the wrong parent) is a problem.
 */
async function compareReplay(
  storage: Storage,
  series: string,
  m: Manifest,
  tree: Tree,
  options: VerifyOptions,
  problems: Problem[],
): Promise<void> {
  const key = options.keys.get(m.id)?.state ?? null;
  // Its segments were checked above: read again as they arrive (checked at their ends), with no hashing thread
  // started for them (readState's segments are hashed on one when large).
  const state = openStream(
    streamSegments(storage, m.state, { signal: options.signal }).stream,
    m,
    "state",
    key,
    { readerGivesBack: true },
  );
  // The state's entries are looked up in the tree and marked there: no Set of every path beside it.
  const marks = await markTarState(tree, givingBackOnNext(state.stream, state.giveBack));
  const { missing: missingCount, firstMissing, entries: held } = marks;
  let extraCount = 0;
  let firstExtra = "";
  for (const path of tree.unmarked()) {
    if (extraCount++ === 0) firstExtra = path;
    if (extraCount % 1024 === 0) relieveMemory();
  }
  if (missingCount === 0 && extraCount === 0) return;
  const parts = [
    missingCount > 0 && `${missingCount} of its ${held} entries missing (first "${firstMissing}")`,
    extraCount > 0 && `${extraCount} entries it does not hold (first "${firstExtra}")`,
  ].filter(Boolean);
  problems.push({
    key: manifestKey(series, m.id),
    problem: `restoring its chain gives another tree than backup ${m.id} holds: ${parts.join(", ")}; ` +
      `a level may have the wrong parent`,
  });
}

/**
 * `stream`'s chunks, each given back to `giveBack` when the next one is asked for: for a reader that is done
 * with a chunk once it asks for the next (the state reader decodes each chunk to text at once). The zstd
 * decompressor then fills the same few buffers again instead of making a new one per frame.
 */
function givingBackOnNext(
  stream: ReadableStream<Uint8Array>,
  giveBack: ((chunk: Uint8Array) => void) | undefined,
): ReadableStream<Uint8Array> {
  if (!giveBack) return stream;
  const reader = stream.getReader();
  let last: Uint8Array | undefined;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (last) giveBack(last);
      last = undefined;
      const { done, value } = await reader.read();
      if (done) controller.close();
      else controller.enqueue(last = value);
    },
    cancel: (reason) => reader.cancel(reason),
  }, { highWaterMark: 0 });
}

function statProblem(err: unknown): string {
  return err instanceof NotFoundError ? "missing" : `cannot be checked: ${messageOf(err)}`;
}

/** A random `share` of `refs` (at least one when there are any), in their original order. */
function pickSample(refs: SegmentRef[], share: number): SegmentRef[] {
  const want = Math.min(refs.length, Math.max(1, Math.ceil(refs.length * share)));
  const order = refs.map((_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return order.slice(0, want).sort((a, b) => a - b).map((i) => refs[i]!);
}

/** Downloads one segment and checks size and SHA-256 (readSegments does); records a problem on failure. */
async function fetchVerified(
  storage: Storage,
  ref: SegmentRef,
  signal: AbortSignal,
  problems: Problem[],
): Promise<Uint8Array[] | null> {
  try {
    // As the storage delivered it (checked as a whole): not copied into one 32 MiB buffer.
    return await Array.fromAsync(readSegments(storage, [ref], { signal }));
  } catch (err) {
    if (signal.aborted) throw err;
    problems.push({ key: ref.key, problem: segmentProblem(ref, err) });
    return null;
  }
}

/** What a failed read of segment `ref` says, without the segment's name. */
function segmentProblem(ref: SegmentRef, err: unknown): string {
  return messageOf(err).replace(`Cannot read segment "${ref.key}": `, "").replace(
    /^it is missing from .*$/,
    "missing",
  );
}

/**
 * Reads one segment as the storage delivers it, handing each chunk to `use` (which must not throw), and
 * checks its size and SHA-256 at its end: its size, or null (and a problem recorded) when it is bad.
 */
async function streamVerified(
  storage: Storage,
  ref: SegmentRef,
  signal: AbortSignal,
  problems: Problem[],
  use: (chunk: Uint8Array) => Promise<void>,
): Promise<number | null> {
  let size = 0;
  try {
    for await (const chunk of streamSegments(storage, [ref], { signal }).stream) {
      size += chunk.byteLength;
      await use(chunk);
    }
    return size;
  } catch (err) {
    if (signal.aborted) throw err;
    problems.push({ key: ref.key, problem: segmentProblem(ref, err) });
    return null;
  }
}

/**
 * Reads one stream of a backup segment by segment, checking each one, and (when `key` is not undefined)
 * decodes it to the end as a restore would. Every bad segment is named; a stream whose segments are all good
 * but that does not decode is named by its backup and kind.
 */
async function readStream(
  storage: Storage,
  series: string,
  m: Manifest,
  kind: "data" | "state",
  refs: SegmentRef[],
  key: DataKey | null | undefined,
  options: VerifyOptions,
  problems: Problem[],
  tree?: Tree,
): Promise<{ objects: number; bytes: number }> {
  let objects = 0;
  let bytes = 0;
  let broken = false;
  const decoding = key === undefined ? null : startDecoder(m, kind, key, tree);
  const writer = decoding?.input.getWriter();
  let decodeError: unknown;
  for (const ref of refs) {
    objects++;
    // Streamed into the decoder as they arrive, checked at the segment's end (no segment held whole): the
    // bytes of a bad segment may reach the decoder, but then what it made of them is not reported.
    const decode = writer && !broken && decodeError === undefined ? writer : undefined;
    const read = await streamVerified(storage, ref, options.signal, problems, async (chunk) => {
      if (!decode || decodeError !== undefined) return;
      try {
        await decode.write(chunk);
      } catch (err) {
        decodeError = err;
      }
    });
    if (read === null) broken = true;
    else bytes += read;
  }
  if (writer && decoding) {
    if (broken || decodeError !== undefined) {
      writer.abort(new Error("not decoded")).catch(() => {});
      const result = await decoding.done.then(() => undefined, (err) => err);
      if (!broken) decodeError = result ?? decodeError;
    } else {
      try {
        await writer.close();
        await decoding.done;
      } catch (err) {
        // A decoder that failed after its last write resolved: its own error says why, not the close.
        decodeError = await decoding.done.then(() => err, (failure) => failure);
      }
    }
    if (!broken && decodeError !== undefined) {
      if (options.signal.aborted) throw decodeError;
      problems.push({
        key: manifestKey(series, m.id),
        problem: `the ${kind} stream of backup ${m.id} does not decode: ${messageOf(decodeError)}`,
      });
    }
  }
  return { objects, bytes };
}

/**
 * A writable for the stored bytes of a stream and a promise that settles once they are decrypted,
 * decompressed and (tar data) parsed to the end-of-archive block, its members replayed on `tree` when given.
 * Nothing is written.
 */
function startDecoder(m: Manifest, kind: "data" | "state", key: DataKey | null, tree?: Tree) {
  const entry = new TransformStream<Uint8Array, Uint8Array>();
  // Each decoded chunk is done with once parsed: its buffer goes back to the decompressor.
  const { stream, giveBack } = openStream(entry.readable, m, kind, key, { readerGivesBack: true });
  // Members replayed on `tree` as ls (and the restore) apply them; file data is skipped.
  const replay = kind === "data" && m.engine === "tar" ? tarReplayer(tree) : undefined;
  const done = (async () => {
    for await (const chunk of stream) {
      replay?.push(chunk);
      giveBack?.(chunk);
    }
    replay?.finish();
  })();
  done.catch(() => {});
  return { input: entry.writable, done };
}
