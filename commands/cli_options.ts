/**
 * frost's own reading of a command line before `node:util` parseArgs sees it: every mistake becomes one
 * `UsageError` line in frost's words ("did you mean" included), and an option value that starts with `-`
 * (`--older-than -5d`, `--max-level -1`) is taken as the value so that the option's own check names what is
 * wrong with it, instead of parseArgs' "argument is ambiguous".
 * @module
 */
import type { ParseArgsConfig } from "node:util";
import { UsageError } from "../base/errors.ts";

type Options = NonNullable<ParseArgsConfig["options"]>;

/**
 * Edit distance between `a` and `b` where a swap of two neighbours counts as one edit (optimal string
 * alignment; hand-written: a dozen lines, no library needed).
 */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i]);
  for (let j = 0; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        v = Math.min(v, d[i - 2]![j - 2]! + 1);
      }
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/** The candidate closest to `word` when it is close enough to be a likely typo (or a prefix of it). */
export function closest(word: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = c.startsWith(word) && word.length >= 3 ? 0.5 : editDistance(word, c);
    if (d < bestDistance) [best, bestDistance] = [c, d];
  }
  const limit = Math.max(1, Math.min(3, Math.floor(word.length / 3)));
  return bestDistance <= limit ? best : undefined;
}

/** ` (did you mean --name?)`, or "" when nothing is close. */
function suggestion(name: string, options: Options): string {
  const match = closest(name, Object.keys(options));
  return match === undefined ? "" : ` (did you mean --${match}?)`;
}

/**
 * Checks `args` against `options` and returns them with every string option's value attached with `=`
 * (`--x -5` → `--x=-5`, `-o v` → `--out=v`). Throws `UsageError` for an unknown option (with a suggestion),
 * a missing value, a value given to a flag, and a positional argument where none is allowed.
 */
export function normalizeArgs(args: readonly string[], options: Options, positionals: boolean): string[] {
  const byShort = new Map(
    Object.entries(options).flatMap(([name, o]) => o.short === undefined ? [] : [[o.short, name] as const]),
  );
  const isOption = (a: string) =>
    a.startsWith("--") ? Object.hasOwn(options, a.slice(2).split("=")[0]!) : byShort.has(a[1]!);
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--") {
      out.push(...args.slice(i));
      if (!positionals && i + 1 < args.length) throw new UsageError(`Unexpected argument "${args[i + 1]}"`);
      break;
    }
    // The value of a string option: the next argument, unless it is one of the command's options.
    const valueOf = (display: string): string => {
      const next = args[i + 1];
      if (next === undefined) throw new UsageError(`Option ${display} needs a value`);
      if (next.startsWith("-") && next.length > 1 && isOption(next)) {
        throw new UsageError(`Option ${display} needs a value (found the option "${next}" instead)`);
      }
      i++;
      return next;
    };
    if (a.startsWith("--")) {
      const eq = a.indexOf("=");
      const name = eq < 0 ? a.slice(2) : a.slice(2, eq);
      const option = Object.hasOwn(options, name) ? options[name] : undefined;
      if (option === undefined) {
        throw new UsageError(`Unknown option "--${name}"${suggestion(name, options)}`);
      }
      if (option.type === "boolean") {
        if (eq >= 0) throw new UsageError(`Option --${name} takes no value (found "${a}")`);
        out.push(a);
      } else {
        out.push(eq >= 0 ? a : `--${name}=${valueOf(`--${name}`)}`);
      }
    } else if (a.startsWith("-") && a.length > 1) {
      // One or more short flags (-hv), the last of which may take a value (-ofile, -o file).
      for (let k = 1; k < a.length; k++) {
        const name = byShort.get(a[k]!);
        if (name === undefined) {
          throw new UsageError(`Unknown option "-${a[k]}"${a.length > 2 ? ` in "${a}"` : ""}`);
        }
        if (options[name]!.type === "boolean") {
          out.push(`--${name}`);
          continue;
        }
        const rest = a.slice(k + 1);
        out.push(`--${name}=${rest !== "" ? rest : valueOf(`-${a[k]}`)}`);
        break;
      }
    } else {
      if (!positionals) throw new UsageError(`Unexpected argument "${a}"`);
      out.push(a);
    }
  }
  return out;
}
