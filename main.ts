/**
 * frost — back up a tree as a chain of levels to a storage, and restore it.
 *
 * The entry point: the only module that reads argv, prints, handles signals and exits.
 * @module
 */
import {
  AbortedError,
  ExitCode,
  FrostError,
  InterruptedError,
  messageOf,
  UsageError,
} from "./base/errors.ts";
import { type Command, type CommandContext, runNoticingWarnings } from "./commands/cli.ts";
import { backupCommand } from "./commands/backup.ts";
import { restoreCommand } from "./commands/restore.ts";
import { listCommand } from "./commands/list.ts";
import { removeCommand } from "./commands/remove.ts";
import { keyCommand } from "./commands/key.ts";
import { verifyCommand } from "./commands/verify.ts";
import { lsCommand } from "./commands/ls.ts";
import { freezerCommand } from "./commands/freezer.ts";
import { runFreezerAgent } from "./commands/freezer_agent.ts";
import { unlockCommand } from "./commands/unlock.ts";
import { StorageError } from "./storage/storage.ts";
import { VERSION } from "./base/version.ts";
import { Readable } from "node:stream";
import { KDF_CHILD_ARG, runKdfChild } from "./codec/kdf_child.ts";
import {
  EXIT_BROKEN_PIPE,
  exitAfterOutput,
  markStdoutBroken,
  stdoutBroken,
  watchStdio,
  writeErr,
  writeOut,
} from "./commands/stdio.ts";
import { showBytes } from "./engines/mod.ts";
import { closest } from "./commands/cli_options.ts";
import { withMetrics } from "./commands/metrics.ts";
import { completionCommand } from "./commands/completion.ts";
import { watchMemory } from "./base/memory.ts";

const COMMANDS: Record<string, Command> = {
  backup: withMetrics("backup", backupCommand),
  restore: restoreCommand,
  list: listCommand,
  remove: withMetrics("remove", removeCommand),
  verify: withMetrics("verify", verifyCommand),
  ls: lsCommand,
  unlock: unlockCommand,
  key: keyCommand,
  freezer: freezerCommand,
  completion: completionCommand(() => COMMANDS),
};

const HELP = `frost ${VERSION} — backups as chains of levels (full, then changes), restored in one step

Usage: frost COMMAND [options]

Commands:
${Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`).join("\n")}

Examples:
  frost backup /etc --name etc --storage /var/backups/frost --max-level 3
  frost list --storage /var/backups/frost --name etc
  frost restore --name etc --storage /var/backups/frost --to /srv/restore/etc [--date 2026-11-20T10:00]
  frost remove --name etc --storage /var/backups/frost --older-than 30d [--dry-run]
  frost remove --name etc --keep-last 3 --keep-daily 7 --keep-weekly 4 --keep-monthly 12 [--dry-run]
  frost verify --name etc --storage /var/backups/frost [--read-data [--sample 10%]] [--all]
  frost ls --name etc --storage /var/backups/frost [--date 2026-11-20T10:00] [nginx]
  frost backup /srv --name srv --encrypt-pass-file /root/frost.pass
  frost key generate --out /root/frost.key

Run "frost COMMAND --help" for a command's options. Freezer's agent options are accepted too
(frost --action backup|restore|info|admin …, --config FILE): see "frost --action backup --help".
Exit codes: 0 ok, 1 failure, 2 usage error, 3 completed with warnings, 130/143 interrupted,
141 standard output closed by its reader (frost … | head).`;

/** Runs frost with `args`; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const stdout = writeOut;
  const stderr = (line: string) => writeErr(showBytes(line));
  const [first, ...rest] = args;
  if (first === KDF_CHILD_ARG) return await runKdfChild(); // internal: see codec/kdf_child.ts
  if (first === undefined || first === "--help" || first === "-h" || first === "help") {
    (first === undefined ? stderr : stdout)(HELP);
    return first === undefined ? ExitCode.usage : ExitCode.ok;
  }
  if (first === "--version" || first === "-V" || first === "version") {
    stdout(`frost ${VERSION}`);
    return ExitCode.ok;
  }
  const command = COMMANDS[first];
  // A Freezer-style command line (--action backup -F /etc -N etc --container …, --config FILE).
  if (!command && first.startsWith("-")) return await runFreezerAgent(args, main);
  if (!command) {
    const near = closest(first, Object.keys(COMMANDS));
    stderr(
      `frost: unknown command "${first}"${near ? ` (did you mean "${near}"?)` : ""} (commands: ${
        Object.keys(COMMANDS).join(", ")
      }); see frost --help`,
    );
    return ExitCode.usage;
  }

  const controller = new AbortController();
  let signalCode = 0;
  const onSignal = (name: "SIGINT" | "SIGTERM") => () => {
    if (signalCode) process.exit(signalCode); // a second signal: leave now
    signalCode = name === "SIGINT" ? 130 : 143;
    // A restore writes as it goes: what it left is said once it has stopped.
    stderr(
      `frost: ${name} received, stopping${
        first === "restore" ? "" : " (nothing of this run will be committed)"
      }`,
    );
    controller.abort(new AbortedError(`Interrupted by ${name}`));
  };
  const handlers = { SIGINT: onSignal("SIGINT"), SIGTERM: onSignal("SIGTERM") };
  process.on("SIGINT", handlers.SIGINT);
  process.on("SIGTERM", handlers.SIGTERM);
  const ctx: CommandContext = {
    args: rest,
    signal: controller.signal,
    stdout,
    stderr,
    interactive: Boolean(process.stderr.isTTY),
    stdin: () =>
      process.stdin.isTTY ? undefined : Readable.toWeb(process.stdin) as ReadableStream<Uint8Array>,
    stdoutBytes: () => stdoutWritable(),
  };
  try {
    const code = await runNoticingWarnings(command, ctx);
    return signalCode || code;
  } catch (err) {
    if (stdoutBroken()) return EXIT_BROKEN_PIPE; // the reader went away (| head): nothing to say
    if (signalCode) {
      stderr(
        err instanceof InterruptedError
          ? `frost: ${err.message}`
          : `frost: ${first} interrupted; nothing of this run was committed`,
      );
      return signalCode;
    }
    if (err instanceof UsageError) {
      stderr(`frost: ${err.message} (see frost ${first} --help)`);
      return ExitCode.usage;
    }
    if (err instanceof FrostError || err instanceof StorageError || err instanceof AbortedError) {
      stderr(`frost: ${err.message}`);
      return ExitCode.failure;
    }
    // Unexpected: still one line for the user; the stack with FROST_DEBUG=1.
    stderr(`frost: ${first} failed: ${messageOf(err)}`);
    if (process.env.FROST_DEBUG) stderr(String((err as Error)?.stack ?? err));
    return ExitCode.failure;
  } finally {
    process.off("SIGINT", handlers.SIGINT);
    process.off("SIGTERM", handlers.SIGTERM);
  }
}

/** process.stdout as a WritableStream of bytes, with its backpressure; a closed pipe is an error. */
function stdoutWritable(): WritableStream<Uint8Array> {
  return new WritableStream<Uint8Array>({
    write(chunk) {
      return new Promise<void>((resolve, reject) => {
        if (stdoutBroken()) return reject(new FrostError("Cannot write to standard output: it was closed"));
        process.stdout.write(chunk, (err) => {
          if (!err) return resolve();
          markStdoutBroken();
          reject(new FrostError(`Cannot write to standard output: ${messageOf(err)}`));
        });
      });
    },
  });
}

if (import.meta.main) {
  watchStdio();
  watchMemory();
  // Exits once stdout and stderr are written out: a pipe may be slow (see commands/stdio.ts).
  await exitAfterOutput(await main(process.argv.slice(2)));
}
