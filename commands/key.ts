/**
 * `frost key generate --out FILE`: a new identity (secret, written to FILE with mode 0600) and its public
 * recipient (printed, and written to FILE.pub), for write-only encrypted backups.
 * @module
 */
import fs from "node:fs";
import { type Command, parseOrHelp } from "./cli.ts";
import { ExitCode, FrostError, messageOf, UsageError } from "../base/errors.ts";
import { generateIdentity } from "../codec/encryption.ts";

const USAGE = `Usage: frost key generate --out FILE

Writes a new identity (the secret key that opens backups) to FILE with mode 0600 and its public recipient to
FILE.pub, and prints the recipient. Back up with --encrypt-recipient-file FILE.pub on hosts that must not be
able to read their own backups; restore with --encrypt-identity-file FILE. Keep FILE safe and away from
those hosts: without it, such backups cannot be restored.

Options:
  --out FILE       where to write the identity (must not exist)
  --force          overwrite an existing FILE
  -h, --help       this help`;

/** The key command. */
export const keyCommand: Command = {
  summary: "generate an identity and recipient for write-only encryption",
  usage: USAGE,
  async run(ctx) {
    const parsed = parseOrHelp(ctx, USAGE, {
      out: { type: "string" },
      force: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    }, true);
    if (!parsed) return ExitCode.ok;
    const { values, positionals } = parsed;
    if (positionals[0] !== "generate" || positionals.length > 1) {
      throw new UsageError(`frost key needs the subcommand "generate"`);
    }
    if (values.out === undefined) throw new UsageError("frost key generate needs --out FILE");
    const { identity, recipient } = await generateIdentity();
    const flag = values.force ? "w" : "wx";
    try {
      fs.writeFileSync(
        values.out,
        `# frost identity: keep secret; restores backups made for ${recipient}\n${identity}\n`,
        {
          mode: 0o600,
          flag,
        },
      );
      fs.chmodSync(values.out, 0o600);
      fs.writeFileSync(`${values.out}.pub`, recipient + "\n", {
        mode: 0o644,
        flag: values.force ? "w" : "wx",
      });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "EEXIST") {
        throw new FrostError(`Cannot write "${values.out}": it exists (use --force to replace it)`);
      }
      throw new FrostError(`Cannot write "${values.out}": ${messageOf(err)}`, { cause: err });
    }
    ctx.stdout(recipient);
    return ExitCode.ok;
  },
};
