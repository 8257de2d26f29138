/**
 * The layer check of `deno task check` (docs/ARCHITECTURE.md): every relative import of a source file points
 * down the layers or within its own folder, a `_` file is imported only from its own folder, and no source
 * file but main.ts sits at the top level. tests/ and bench/ may import anything.
 *
 * Run: `deno run --allow-read tests/check_layers.ts` prints each violation and exits 1 when there is one.
 * @module
 */
import fs from "node:fs";
import path from "node:path";
import process from "node:process";

/** Each top-level folder's layer, lowest first; engines and storage share a layer and never import each other. */
export const LAYERS: Readonly<Record<string, number>> = {
  base: 0,
  codec: 1,
  engines: 2,
  storage: 2,
  series: 3,
  freezer: 4,
  pipeline: 5,
  commands: 6,
  "main.ts": 7,
  tests: 8,
  bench: 8,
};

/** Folders outside the layers: they may import any source file, private ones included. */
const FREE = new Set(["tests", "bench"]);

/** The top-level folder (or `main.ts`) of `file`, a path relative to the repository root with `/`. */
function topOf(file: string): string {
  return file.split("/")[0]!;
}

/**
 * Why importing `to` from `from` breaks the layering (both paths relative to the repository root, `/`
 * separated), or null when it is fine.
 */
export function importViolation(from: string, to: string): string | null {
  const a = topOf(from);
  const b = topOf(to);
  if (FREE.has(a)) return null;
  const ra = LAYERS[a];
  const rb = LAYERS[b];
  if (ra === undefined) return `${from} is in no layer (add its folder to tests/check_layers.ts)`;
  if (rb === undefined) return `${from} imports ${to}, which is in no layer`;
  if (rb > ra) return `${from} imports ${to}: "${b}" is a layer above "${a}"`;
  if (rb === ra && a !== b) return `${from} imports ${to}: "${a}" and "${b}" never import each other`;
  if (path.posix.basename(to).startsWith("_") && path.posix.dirname(to) !== path.posix.dirname(from)) {
    return `${from} imports ${to}, a file private to ${path.posix.dirname(to)}/`;
  }
  return null;
}

/** Relative specifiers of static and dynamic imports, re-exports and `new URL(…, import.meta.url)`. */
const SPECIFIER = /(?:\bfrom\s*|\bimport\s*\(?\s*|new URL\(\s*)(["'])(\.{1,2}\/[^"']+)\1/g;

/** The relative module specifiers `source` names. */
export function specifiersOf(source: string): string[] {
  return [...source.matchAll(SPECIFIER)].map((m) => m[2]!);
}

function sourceFiles(root: string, dir = ""): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(path.join(root, dir), { withFileTypes: true })) {
    if (e.name.startsWith(".") || e.name === "node_modules" || e.name === "dist") continue;
    const rel = dir ? `${dir}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...sourceFiles(root, rel));
    else if (e.name.endsWith(".ts")) out.push(rel);
  }
  return out;
}

/** Every layering violation in the repository at `root`, one line each. */
export function layerViolations(root: string): string[] {
  const problems: string[] = [];
  for (const file of sourceFiles(root)) {
    if (!file.includes("/") && file !== "main.ts") {
      problems.push(`${file} is a source file at the top level: give it a layer's folder`);
      continue;
    }
    const text = fs.readFileSync(path.join(root, file), "utf8");
    for (const spec of specifiersOf(text)) {
      const to = path.posix.normalize(path.posix.join(path.posix.dirname(file), spec));
      const problem = importViolation(file, to);
      if (problem) problems.push(problem);
    }
  }
  return problems;
}

if (import.meta.main) {
  const root = path.resolve(import.meta.dirname!, "..");
  const problems = layerViolations(root);
  for (const p of problems) console.error(`layers: ${p}`);
  process.exitCode = problems.length > 0 ? 1 : 0;
}
