/**
 * Tests of the tar state's version 2 trailer: what `tarBackup` lists there, what `TarStoredReader` (the
 * tar engine's `storedWhole`) reads of it, and that every other reader of the state takes versions 1 and 2
 * alike (level N's merge, the listing, the counter).
 * @module
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, test } from "node:test";
import { tarEngine } from "../../engines/tar.ts";
import { tarBackup } from "../../engines/tar_backup.ts";
import { tarStateEntries } from "../../engines/_tar_state.ts";
import { TarStateCounter } from "../../engines/_tar_state_count.ts";
import { TarStoredReader } from "../../engines/_tar_state_stored.ts";
import type { BackupOptions, StateEntry } from "../../engines/engine.ts";
import { FrostError } from "../../base/errors.ts";

const MiB = 1 << 20;
const enc = new TextEncoder();
const dec = new TextDecoder();

async function backup(source: string, options: BackupOptions = {}) {
  const r = tarBackup(source, options);
  const [archive, state] = await Promise.all([
    new Response(r.stream).arrayBuffer(),
    new Response(r.state).arrayBuffer(),
  ]);
  return { archive: new Uint8Array(archive), state: new Uint8Array(state), stats: await r.done };
}

function streamOf(bytes: Uint8Array, size = 64 * 1024): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream({
    pull(c) {
      if (i >= bytes.length) return c.close();
      c.enqueue(bytes.slice(i, i + size));
      i += size;
    },
  });
}

/** `TarStoredReader` fed `bytes` in chunks of `size` bytes. */
function stored(bytes: Uint8Array, size: number): ReadonlySet<string> | undefined {
  const reader = new TarStoredReader();
  for (let i = 0; i < bytes.length; i += size) reader.push(bytes.slice(i, i + size));
  return reader.end();
}

/** The same state as version 1 wrote it: version 1 in its header, no trailer. */
function asVersion1(state: Uint8Array): Uint8Array {
  const lines = dec.decode(state).split("\n");
  assert.equal(lines.pop(), "");
  assert.match(lines.pop()!, /^\{"stored":/);
  lines[0] = lines[0]!.replace('"version":2', '"version":1');
  return enc.encode(lines.join("\n") + "\n");
}

async function entries(state: Uint8Array): Promise<StateEntry[]> {
  const out: StateEntry[] = [];
  for await (const e of tarStateEntries(streamOf(state, 100))) out.push(e);
  return out;
}

describe("tar state version 2", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "frost-tar-stored-"));
  const src = path.join(dir, "src");
  fs.mkdirSync(path.join(src, "sub"), { recursive: true });
  fs.writeFileSync(path.join(src, "big"), new Uint8Array(MiB).fill(1));
  fs.writeFileSync(path.join(src, "sub", 'caf\u00e9 "q".bin'), new Uint8Array(2 * MiB).fill(2));
  fs.writeFileSync(path.join(src, "under"), new Uint8Array(MiB - 1).fill(3));
  fs.writeFileSync(path.join(src, "linked"), new Uint8Array(2 * MiB).fill(4));
  fs.linkSync(path.join(src, "linked"), path.join(src, "linked2"));

  test("the trailer lists the single-link regular files of at least 1 MiB stored as data", async () => {
    // Files changed within a second before their parent backup are sent again: let them age first.
    await new Promise((r) => setTimeout(r, 2100));
    const l0 = await backup(src);
    const want = new Set(["big", 'sub/caf\u00e9 "q".bin']);
    for (const size of [1, 7, 4096, l0.state.length]) assert.deepEqual(stored(l0.state, size), want);
    assert.equal(tarEngine.storedWhole?.() instanceof TarStoredReader, true);
    // Level 1 stores nothing again: an empty list, which says so (unlike a version 1 state).
    const l1 = await backup(src, { previous: streamOf(l0.state) });
    assert.deepEqual(stored(l1.state, 13), new Set());
  });

  test("a version 1 state lists nothing (unknown), a later version is refused", async () => {
    const l0 = await backup(src);
    assert.equal(stored(asVersion1(l0.state), 5), undefined);
    assert.throws(
      () => stored(enc.encode('{"format":"frost-tar-state","version":3,"started":"1"}\n'), 3),
      /version 3 is not supported/,
    );
    assert.throws(() => stored(enc.encode("GNU tar-1.34-2\n"), 3), FrostError);
    assert.throws(
      () => stored(enc.encode('{"format":"frost-tar-state","version":2,"started":"1"}\n{"stored":3}\n'), 4),
      /not a state trailer/,
    );
  });

  test("listing, counting and level N's merge read versions 1 and 2 alike", async () => {
    const l0 = await backup(src);
    const v1 = asVersion1(l0.state);
    const listed = await entries(l0.state);
    assert.deepEqual(await entries(v1), listed);
    assert.equal(listed.length, 7);
    for (const state of [l0.state, v1]) {
      const counter = new TarStateCounter();
      for (let i = 0; i < state.length; i += 11) counter.push(state.slice(i, i + 11));
      assert.deepEqual(counter.end(), { count: 7, nonRoot: 6 });
    }
    await new Promise((r) => setTimeout(r, 1200));
    for (const state of [l0.state, v1]) {
      const l1 = await backup(src, { previous: streamOf(state, 29) });
      // Nothing changed: only the two directories are in the archive.
      assert.equal(l1.stats.files, 2);
      assert.deepEqual(await entries(l1.state), listed);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
