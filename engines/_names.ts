/**
 * File names as bytes. Linux names are byte strings, not always valid UTF-8 (latin-1 names on old
 * servers, `$'\xff\xfe.bin'`). Inside frost a name stays a JS string, decoded reversibly: valid UTF-8 as
 * usual, and each byte of an invalid sequence as the lone surrogate U+DC80..U+DCFF ("escape", Python's
 * surrogateescape). Such code points never come out of decoding valid UTF-8, so the mapping is one to one.
 * Names turn back into bytes only where they leave frost: file-system calls (_fs_bytes.ts), tar headers,
 * the rsync stream. Shown to people as `\xff` (a backslash as `\\`), a form `--include` accepts.
 * @module
 */

/** A lone surrogate U+DC80..U+DCFF: a name byte that is not part of valid UTF-8. */
const ESCAPE = /[\udc80-\udcff]/u;
const ESCAPES = /[\udc80-\udcff]/gu;

const utf8 = new TextDecoder("utf-8", { fatal: true });
const encoder = new TextEncoder();

/** Whether `s` holds an escaped byte (then it is not valid UTF-8 on disk). */
export function hasEscape(s: string): boolean {
  return s.length > 0 && ESCAPE.test(s);
}

/** Decodes name bytes: valid UTF-8 as usual, each byte of an invalid sequence as U+DC80 + (byte − 0x80). */
export function decodeName(bytes: Uint8Array): string {
  try {
    return utf8.decode(bytes);
  } catch {
    return decodeEscaped(bytes);
  }
}

/** The length of the valid UTF-8 sequence starting at `bytes[i]` (a byte ≥ 0x80), or 0 when invalid. */
function sequenceLength(bytes: Uint8Array, i: number): number {
  const b = bytes[i]!;
  const cont = (k: number) => i + k < bytes.length && (bytes[i + k]! & 0xc0) === 0x80;
  if (b >= 0xc2 && b <= 0xdf) return cont(1) ? 2 : 0;
  if (b >= 0xe0 && b <= 0xef) {
    if (!cont(1) || !cont(2)) return 0;
    const b1 = bytes[i + 1]!;
    if (b === 0xe0 && b1 < 0xa0) return 0; // overlong
    if (b === 0xed && b1 >= 0xa0) return 0; // a surrogate
    return 3;
  }
  if (b >= 0xf0 && b <= 0xf4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    const b1 = bytes[i + 1]!;
    if (b === 0xf0 && b1 < 0x90) return 0; // overlong
    if (b === 0xf4 && b1 >= 0x90) return 0; // above U+10FFFF
    return 4;
  }
  return 0;
}

function decodeEscaped(bytes: Uint8Array): string {
  let out = "";
  let start = 0; // start of the current run of valid UTF-8
  let i = 0;
  while (i < bytes.length) {
    if (bytes[i]! < 0x80) {
      i++;
      continue;
    }
    const n = sequenceLength(bytes, i);
    if (n > 0) {
      i += n;
      continue;
    }
    if (i > start) out += utf8.decode(bytes.subarray(start, i));
    out += String.fromCharCode(0xdc00 + bytes[i]!);
    start = ++i;
  }
  if (i > start) out += utf8.decode(bytes.subarray(start, i));
  return out;
}

/** The bytes of a name: UTF-8, each escape U+DC80..U+DCFF as its byte. */
export function encodeName(s: string): Uint8Array {
  if (!hasEscape(s)) return encoder.encode(s);
  const out = new Uint8Array(s.length * 3);
  let p = 0;
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c < 0xdc00) i++; // a pair (or a stray high surrogate) is left to the encoder
    else if (c >= 0xdc80 && c <= 0xdcff) {
      p += encoder.encodeInto(s.slice(start, i), out.subarray(p)).written;
      out[p++] = c - 0xdc00;
      start = i + 1;
    }
  }
  p += encoder.encodeInto(s.slice(start), out.subarray(p)).written;
  return out.slice(0, p);
}

/**
 * A name for people (listings, warnings), reversibly: each escaped byte as `\xHH` and each backslash as
 * `\\` (as `ls -b` shows them). Other names are unchanged.
 */
export function showName(s: string): string {
  if (!s.includes("\\") && !hasEscape(s)) return s;
  return s.replaceAll("\\", "\\\\").replace(
    ESCAPES,
    (c) => "\\x" + (c.charCodeAt(0) - 0xdc00).toString(16).padStart(2, "0"),
  );
}

/** Text for a terminal (error messages): each escaped byte as `\xHH`, the rest unchanged. */
export function showBytes(text: string): string {
  if (!hasEscape(text)) return text;
  return text.replace(ESCAPES, (c) => "\\x" + (c.charCodeAt(0) - 0xdc00).toString(16).padStart(2, "0"));
}

/**
 * Reads the `\xHH` form (HH from 80 to ff, either case) of {@linkcode showName} in a path or glob that a
 * user gives (`--include`, `frost ls PATH`): each becomes its byte. In a glob (`glob: true`) a `\\` is
 * left as it is (the glob's own escape of a literal backslash); in a plain path it becomes one backslash.
 */
export function parseShownName(s: string, options: { glob?: boolean } = {}): string {
  if (!s.includes("\\")) return s;
  return s.replace(/\\\\|\\x([89a-fA-F][0-9a-fA-F])/g, (m, hex: string | undefined) => {
    if (hex !== undefined) return String.fromCharCode(0xdc00 + parseInt(hex, 16));
    return options.glob ? m : "\\";
  });
}
