/**
 * Freezer's agent command line and INI config as aliases (commands/freezer_agent.ts): the translation into
 * native frost command lines, and end-to-end through main.ts on a real tree and a local storage.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import process from "node:process";
import {
  type FreezerTranslation,
  parseFreezerIni,
  runFreezerAgent,
  translateFreezerArgs,
  type TranslateOptions,
} from "../../commands/freezer_agent.ts";
import { UsageError } from "../../base/errors.ts";
import { cleanup, copyTree, frost, makeHostileTree, tempDir } from "../_cli.ts";
import { assertSameTree } from "../_tree.ts";

const LOCAL = ["--storage", "local", "--container", "/srv/b"];

function t(args: string[], options?: TranslateOptions): FreezerTranslation {
  return translateFreezerArgs(args, options);
}

/** The native argv of a Freezer-style command line. */
function argv(args: string[], options?: TranslateOptions): string[] {
  return t(args, options).argv;
}

/** Asserts that translating `args` is a UsageError whose message matches `pattern`. */
function usageError(args: string[], pattern: RegExp, options?: TranslateOptions): void {
  assert.throws(() => t(args, options), (err: unknown) => {
    assert.ok(err instanceof UsageError, `expected a UsageError, got ${err}`);
    assert.match(err.message, pattern);
    assert.ok(!err.message.includes("\n"), "one line");
    return true;
  });
}

/** An INI file given by --config, read from memory. */
function withIni(text: string): TranslateOptions {
  return {
    readFile: (file) => {
      assert.equal(file, "/etc/freezer/job.ini");
      return text;
    },
  };
}

describe("Freezer-style command lines: actions", () => {
  it("--action backup (the default) → frost backup PATH --name NAME", () => {
    const expected = ["backup", "/etc", "--name", "etc", "--storage", "/srv/b"];
    assert.deepEqual(
      argv(["--action", "backup", "--path-to-backup", "/etc", "--backup-name", "etc", ...LOCAL]),
      expected,
    );
    assert.deepEqual(argv(["-F", "/etc", "-N", "etc", "--storage", "local", "-C", "/srv/b"]), expected);
    assert.deepEqual(argv(["-F/etc", "-Netc", "--storage=local", "--container=/srv/b"]), expected);
    assert.deepEqual(argv(["--path_to_backup", "/etc", "--backup_name", "etc", ...LOCAL]), expected);
  });

  it("--action restore → frost restore --to DIR [--date] [--overwrite]", () => {
    assert.deepEqual(
      argv(["--action", "restore", "-N", "etc", "--restore-abs-path", "/srv/r", ...LOCAL]),
      ["restore", "--name", "etc", "--to", "/srv/r", "--storage", "/srv/b"],
    );
    assert.deepEqual(
      argv([
        "--action",
        "restore",
        "-N",
        "etc",
        "--restore-abs-path",
        "/srv/r",
        "--restore-from-date",
        "2026-03-22T14:29:01",
        "--overwrite",
        "--hostname",
        "web1",
        ...LOCAL,
      ]),
      [
        "restore",
        "--name",
        "etc",
        "--to",
        "/srv/r",
        "--storage",
        "/srv/b",
        "--hostname",
        "web1",
        // Freezer's whole second counts: a backup at 14:29:01.400 is included, as in Freezer.
        "--date",
        "2026-03-22T14:29:01.999",
        "--overwrite",
      ],
    );
  });

  it("--action info → frost list", () => {
    assert.deepEqual(argv(["--action", "info", ...LOCAL]), ["list", "--storage", "/srv/b"]);
    assert.deepEqual(
      argv(["--action", "info", "-N", "etc", "--hostname", "web1", ...LOCAL]),
      ["list", "--storage", "/srv/b", "--hostname", "web1", "--name", "etc"],
    );
  });

  it("--action admin → frost remove --older-than Nd | --before DATE", () => {
    assert.deepEqual(
      argv(["--action", "admin", "-N", "etc", "--remove-older-than", "30", ...LOCAL]),
      ["remove", "--name", "etc", "--storage", "/srv/b", "--older-than", "30d"],
    );
    assert.deepEqual(
      argv(["--action", "admin", "-N", "etc", "-R", "1.5", ...LOCAL]),
      ["remove", "--name", "etc", "--storage", "/srv/b", "--older-than", "1.5d"],
    );
    assert.deepEqual(
      argv(["--action", "admin", "-N", "etc", "--remove-from-date", "2026-01-31T23:00:00", ...LOCAL]),
      ["remove", "--name", "etc", "--storage", "/srv/b", "--before", "2026-01-31T23:00:00.999"],
    );
    // As in Freezer, --remove-from-date wins over --remove-older-than.
    assert.deepEqual(
      argv(["--action", "admin", "-N", "e", "-R", "3", "--remove-from-date", "2026-01-31T23:00:00", ...LOCAL])
        .slice(-2),
      ["--before", "2026-01-31T23:00:00.999"],
    );
    usageError(["--action", "admin", "-N", "etc", ...LOCAL], /--remove-older-than.*--remove-from-date/);
    usageError(
      ["--action", "admin", "-N", "etc", "-R", "soon", ...LOCAL],
      /-R "soon": expected a number of days/,
    );
    usageError(
      ["--action", "admin", "-N", "etc", "--remove-from-date", "yesterday", ...LOCAL],
      /--remove-from-date/,
    );
  });

  it("required options are named", () => {
    usageError(["-N", "etc", ...LOCAL], /--action backup needs --path-to-backup/);
    usageError(["-F", "/etc", ...LOCAL], /needs --backup-name\/-N NAME/);
    usageError(["--action", "restore", "-N", "etc", ...LOCAL], /needs --restore-abs-path/);
    usageError(["--action", "restore", "--restore-abs-path", "/r", ...LOCAL], /--backup-name/);
    usageError(["--action", "unpack", ...LOCAL], /Invalid --action "unpack"/);
  });
});

describe("Freezer-style command lines: backup options", () => {
  const backup = (...more: string[]) => argv(["-F", "/etc", "-N", "etc", ...LOCAL, ...more]).slice(6);

  it("maps the level options with Freezer's meaning", () => {
    assert.deepEqual(backup(), []);
    assert.deepEqual(backup("--incremental"), ["--incremental"]);
    assert.deepEqual(backup("--incremental", "--max-level", "3"), ["--max-level", "3"]);
    assert.deepEqual(backup("--max-level", "3"), ["--max-level", "3"]);
    assert.deepEqual(backup("--incremental", "--always-level", "2"), ["--always-level", "2"]);
    assert.deepEqual(
      backup("--incremental", "--always-level", "1", "--restart-always-level", "7.5"),
      ["--always-level", "1", "--restart-always-level", "7.5"],
    );
    // Freezer's 0 is "not set": --max-level 0 with --incremental climbs without limit.
    assert.deepEqual(backup("--incremental", "--max-level", "0"), ["--incremental"]);
    assert.deepEqual(backup("--always-level", "0", "--restart-always-level", "0"), []);
    // Both: the one Freezer's rules let act (max-level is checked first).
    assert.deepEqual(backup("--incremental", "--max-level", "2", "--always-level", "3"), [
      "--max-level",
      "2",
    ]);
    assert.deepEqual(backup("--incremental", "--max-level", "2", "--always-level", "2"), [
      "--max-level",
      "2",
    ]);
    assert.deepEqual(backup("--incremental", "--max-level", "5", "--always-level", "2"), [
      "--always-level",
      "2",
    ]);
    assert.deepEqual(backup("--incremental", "--noincremental"), []);
    usageError(["-F", "/e", "-N", "e", ...LOCAL, "--max-level", "-1"], /--max-level "-1"/);
    usageError(["-F", "/e", "-N", "e", ...LOCAL, "--always-level", "x"], /--always-level "x"/);
    usageError(
      ["-F", "/e", "-N", "e", ...LOCAL, "--restart-always-level", "1d"],
      /--restart-always-level "1d"/,
    );
    usageError(
      ["-F", "/e", "-N", "e", ...LOCAL, "--no-incremental", "true", "--max-level", "2"],
      /--no-incremental cannot be used with/,
    );
  });

  it("maps engine, compression, segment size, excludes, encryption, hostname and limits", () => {
    assert.deepEqual(backup("--engine", "rsync"), ["--engine", "rsync"]);
    assert.deepEqual(backup("-e", "tar"), ["--engine", "tar"]);
    assert.deepEqual(backup("--engine-name", "rsync"), ["--engine", "rsync"]);
    assert.deepEqual(backup("--compression", "gzip"), ["--compression", "gzip"]);
    const xz = t(["-F", "/etc", "-N", "etc", ...LOCAL, "--compression", "xz"]);
    assert.deepEqual(xz.argv.slice(6), []);
    assert.match(xz.notes.join("\n"), /--compression xz: frost writes zstd/);
    usageError(["-F", "/e", "-N", "e", ...LOCAL, "--compression", "lz4"], /--compression "lz4"/);
    assert.deepEqual(backup("--max-segment-size", "67108864"), ["--segment-size", "67108864"]);
    assert.deepEqual(backup("-M", "64M"), ["--segment-size", "67108864"]);
    usageError(["-F", "/e", "-N", "e", ...LOCAL, "-M", "big"], /--max-segment-size|-M/);
    assert.deepEqual(backup("--exclude", "*.log", "--exclude", "cache"), [
      "--exclude",
      "*.log",
      "--exclude",
      "cache",
    ]);
    assert.deepEqual(backup("--encrypt-pass-file", "/root/p"), ["--encrypt-pass-file", "/root/p"]);
    assert.deepEqual(argv(["-F", "/etc", "-N", "etc", ...LOCAL, "--hostname", "web1"]).slice(6), [
      "--hostname",
      "web1",
    ]);
    assert.deepEqual(backup("--upload-limit", "1048576", "--download-limit", "-1"), [
      "--upload-limit",
      "1048576",
    ]);
    assert.deepEqual(backup("--download-limit", "10M"), ["--download-limit", "10M"]);
    usageError(["-F", "/e", "-N", "e", ...LOCAL, "--upload-limit", "fast"], /--upload-limit/);
  });

  it("ignores process tuning, notes ignored logging, sets FROST_DEBUG for --debug", () => {
    const r = t([
      "-F",
      "/etc",
      "-N",
      "etc",
      ...LOCAL,
      "--quiet",
      "--nosync",
      "--timeout",
      "60",
      "--max-priority",
      "true",
      "--os-identity-api-version",
      "3",
      "--log-file",
      "/var/log/freezer.log",
      "-d",
    ]);
    assert.deepEqual(r.argv, ["backup", "/etc", "--name", "etc", "--storage", "/srv/b"]);
    assert.deepEqual(r.notes, ["--log-file is ignored: frost writes to stdout and stderr"]);
    assert.deepEqual(r.env, { FROST_DEBUG: "1" });
  });

  it("--proxy sets (or with '' clears) the proxy variables", () => {
    const set = t(["-F", "/etc", "-N", "etc", ...LOCAL, "--proxy", "http://proxy:3128"]).env;
    assert.equal(set.HTTPS_PROXY, "http://proxy:3128");
    assert.equal(set.HTTP_PROXY, "http://proxy:3128");
    const clear = t(["-F", "/etc", "-N", "etc", ...LOCAL, "--proxy", ""]).env;
    assert.ok("HTTPS_PROXY" in clear && clear.HTTPS_PROXY === undefined);
  });

  it("--dry-run maps onto the native command's --dry-run, else is a usage error", () => {
    const has = (supported: string[]): TranslateOptions => ({
      hasOption: (command, option) => option === "--dry-run" && supported.includes(command),
    });
    assert.deepEqual(
      argv(["--action", "admin", "-N", "e", "-R", "9", ...LOCAL, "--dry-run"], has(["remove"])).at(-1),
      "--dry-run",
    );
    assert.deepEqual(
      argv(
        ["--action", "restore", "-N", "e", "--restore-abs-path", "/r", ...LOCAL, "--dry-run"],
        has(["restore"]),
      )
        .at(-1),
      "--dry-run",
    );
    usageError(
      ["--action", "restore", "-N", "e", "--restore-abs-path", "/r", ...LOCAL, "--dry-run"],
      /--dry-run with --action restore is not supported: frost restore has no dry run/,
      has(["remove"]),
    );
    usageError(
      ["-F", "/e", "-N", "e", ...LOCAL, "--dry-run"],
      /frost backup has no dry run/,
      has(["remove"]),
    );
    // The real commands: remove has --dry-run.
    assert.equal(
      argv(["--action", "admin", "-N", "e", "-R", "9", ...LOCAL, "--dry-run"]).at(-1),
      "--dry-run",
    );
    // info only reads: --dry-run changes nothing.
    assert.deepEqual(argv(["--action", "info", ...LOCAL, "--dry-run"]), ["list", "--storage", "/srv/b"]);
  });
});

describe("Freezer-style command lines: storages", () => {
  const storage = (...args: string[]) => t(["--action", "info", ...args]);

  it("local: the folder (absolute), default swift://freezer_backups", () => {
    assert.deepEqual(storage("--storage", "local", "--container", "/srv/b").argv, [
      "list",
      "--storage",
      "/srv/b",
    ]);
    assert.deepEqual(storage("--storage", "local", "--container", "rel/b").argv, [
      "list",
      "--storage",
      path.resolve("rel/b"),
    ]);
    assert.deepEqual(storage().argv, ["list", "--storage", "swift://freezer_backups"]);
    assert.deepEqual(storage("--container", "c1/prefix/x").argv, [
      "list",
      "--storage",
      "swift://c1/prefix/x",
    ]);
    assert.deepEqual(storage("--storage", "swift", "-C", "c1").argv, ["list", "--storage", "swift://c1"]);
  });

  it("s3: s3://bucket/prefix, --endpoint → --s3-endpoint, keys only in the environment", () => {
    const r = storage(
      "--storage",
      "s3",
      "--container",
      "bucket/pre/fix",
      "--endpoint",
      "http://minio:9000",
      "--access-key",
      "AKIAEXAMPLE",
      "--secret-key",
      "s3cr3t-value",
    );
    assert.deepEqual(r.argv, [
      "list",
      "--storage",
      "s3://bucket/pre/fix",
      "--s3-endpoint",
      "http://minio:9000",
      "--s3-path-style",
    ]);
    assert.deepEqual(r.env, { AWS_ACCESS_KEY_ID: "AKIAEXAMPLE", AWS_SECRET_ACCESS_KEY: "s3cr3t-value" });
    assert.ok(!JSON.stringify(r.argv).includes("s3cr3t") && !JSON.stringify(r.argv).includes("AKIA"));
    assert.deepEqual(storage("--storage", "s3", "-C", "bucket").argv, ["list", "--storage", "s3://bucket"]);
  });

  it("s3: Freezer's $ACCESS_KEY, $SECRET_KEY and $ENDPOINT fallbacks", () => {
    const saved = { ...process.env };
    try {
      process.env.ACCESS_KEY = "ak-env";
      process.env.SECRET_KEY = "sk-env";
      process.env.ENDPOINT = "http://env:9000";
      const r = storage("--storage", "s3", "-C", "b");
      assert.deepEqual(r.argv, [
        "list",
        "--storage",
        "s3://b",
        "--s3-endpoint",
        "http://env:9000",
        "--s3-path-style",
      ]);
      assert.deepEqual(r.env, { AWS_ACCESS_KEY_ID: "ak-env", AWS_SECRET_ACCESS_KEY: "sk-env" });
    } finally {
      for (const k of ["ACCESS_KEY", "SECRET_KEY", "ENDPOINT"]) {
        if (saved[k] === undefined) delete process.env[k];
        else process.env[k] = saved[k];
      }
    }
  });

  it("ssh: sftp://user@host:port/path, relative containers under the home folder, --ssh-key → --sftp-key", () => {
    assert.deepEqual(
      storage(
        "--storage",
        "ssh",
        "--ssh-host",
        "backup.example",
        "--ssh-username",
        "freezer",
        "--ssh-port",
        "2222",
        "--ssh-key",
        "/root/.ssh/id_rsa",
        "--container",
        "/srv/freezer",
      ).argv,
      [
        "list",
        "--storage",
        "sftp://freezer@backup.example:2222/srv/freezer",
        "--sftp-key",
        "/root/.ssh/id_rsa",
      ],
    );
    assert.deepEqual(
      storage("--storage", "ssh", "--ssh-host", "h", "--container", "my backups").argv,
      ["list", "--storage", "sftp://h/~/my%20backups"],
    );
    assert.deepEqual(storage("--storage", "ssh", "--ssh-host", "fd00::5", "-C", "/b").argv, [
      "list",
      "--storage",
      "sftp://[fd00::5]/b",
    ]);
    usageError(["--action", "info", "--storage", "ssh", "-C", "/b"], /--storage ssh needs --ssh-host/);
    usageError(
      ["--action", "info", "--storage", "ssh", "--ssh-host", "h", "--ssh-port", "99999"],
      /--ssh-port/,
    );
    usageError(
      ["--action", "info", "--storage", "ssh", "--ssh-host", "h", "--ssh-password", "pw"],
      /^--ssh-password: SFTP password authentication is not supported by frost/,
    );
  });

  it("ftp/ftps: ftp[s]://user@host:port/path, the password only in the environment", () => {
    const r = storage(
      "--storage",
      "ftps",
      "--ftp-host",
      "ftp.example",
      "--ftp-username",
      "bk",
      "--ftp-password",
      "pa55word",
      "--ftp-port",
      "2121",
      "--container",
      "freezer",
    );
    assert.deepEqual(r.argv, ["list", "--storage", "ftps://bk@ftp.example:2121/~/freezer"]);
    assert.deepEqual(r.env, { FROST_FTP_PASSWORD: "pa55word" });
    assert.deepEqual(storage("--storage", "ftp", "--ftp-host", "h", "-C", "/pub/b").argv, [
      "list",
      "--storage",
      "ftp://h/pub/b",
    ]);
    usageError(["--action", "info", "--storage", "ftp", "-C", "/b"], /--storage ftp needs --ftp-host/);
    usageError(
      ["--action", "info", "--storage", "ftps", "--ftp-host", "h", "--ftp-certfile", "/c.pem"],
      /--ftp-certfile: FTPS client certificates are not supported by frost/,
    );
  });

  it("an unknown storage kind names Freezer's", () => {
    usageError(
      ["--action", "info", "--storage", "/var/backups"],
      /Invalid --storage "\/var\/backups": Freezer's storages/,
    );
  });
});

describe("Freezer-style command lines: bad input", () => {
  it("an unknown option is a usage error naming it", () => {
    usageError(["-F", "/etc", "-N", "etc", "--frobnicate", "1"], /Unknown option "--frobnicate"/);
    usageError(["--name", "etc"], /Unknown option "--name"/);
    usageError(["-F", "/etc", "-N", "etc", "-Z"], /Unknown option "-Z"/);
    usageError(["-F", "/etc", "-N", "etc", "--bogus=3"], /Unknown option "--bogus"/);
    usageError(["-F", "/etc", "stray"], /Unexpected argument "stray"/);
    usageError(["-F"], /Option "-F" needs a value/);
    usageError(["--overwrite=maybe"], /Invalid --overwrite "maybe"/);
  });

  it("unsupported modes, snapshots and engines say 'not supported by frost' and name the option", () => {
    const base = ["-F", "/var/lib/mysql", "-N", "db", ...LOCAL];
    usageError(
      [...base, "--mode", "mysql", "--mysql-conf", "/etc/my.ini"],
      /^--mode mysql: database modes are not supported by frost/,
    );
    usageError([...base, "-m", "mongo"], /^-m mongo: .*not supported by frost/);
    usageError([...base, "--mode", "nova"], /^--mode nova: OpenStack .* not supported by frost/);
    usageError([...base, "--mode", "cinder"], /^--mode cinder: .*not supported by frost/);
    usageError([...base, "--mode", "glance"], /^--mode glance: .*not supported by frost/);
    usageError([...base, "--mysql-conf", "/etc/my.ini"], /^--mysql-conf: .*not supported by frost/);
    usageError([...base, "--nova-inst-id", "abc"], /^--nova-inst-id: .*not supported by frost/);
    usageError([...base, "--cinder-vol-id", "abc"], /^--cinder-vol-id: .*not supported by frost/);
    usageError([...base, "--snapshot"], /^--snapshot: LVM and VSS snapshots are not supported by frost/);
    usageError([...base, "-s"], /^-s: .*not supported by frost/);
    usageError([...base, "--lvm-srcvol", "/dev/vg/lv"], /^--lvm-srcvol: .*not supported by frost/);
    usageError([...base, "--lvm-snapsize", "2G"], /^--lvm-snapsize: .*not supported by frost/);
    usageError([...base, "--engine", "rsyncv2"], /^--engine rsyncv2: not supported by frost/);
    usageError([...base, "-e", "nova"], /^-e nova: not supported by frost/);
    usageError([...base, "--engine-name", "osbrick"], /^--engine-name osbrick: not supported by frost/);
    usageError([...base, "--action", "exec", "--command", "ls"], /^--action exec: not supported by frost/);
    usageError([...base, "--metadata-out", "-"], /^--metadata-out: not supported by frost/);
    usageError([...base, "--dereference-symlink", "soft"], /^--dereference-symlink: not supported by frost/);
    usageError([...base, "--insecure"], /^--insecure: not supported by frost/);
    // Off is fine.
    assert.equal(
      argv([...base, "--mode", "fs", "--snapshot", "false", "--dereference-symlink", "none"])[0],
      "backup",
    );
  });
});

describe("Freezer INI config (--config)", () => {
  it("parses sections, comments, both separators, continuation lines, case and interpolation", () => {
    const ini = parseFreezerIni(
      [
        "# a comment",
        "; another",
        "[DEFAULT]",
        "base = /srv",
        "[default]",
        "Path-To-Backup = %(base)s/data",
        "backup_name: data",
        "exclude = *.tmp # not a comment",
        "percent = 100%%",
        "long = first",
        "  second",
        "",
        "[storage:a]",
        "storage = local",
        "container = %(base)s/a",
      ].join("\n"),
      "job.ini",
    );
    assert.deepEqual(ini.defaults, {
      base: "/srv",
      path_to_backup: "/srv/data",
      backup_name: "data",
      exclude: "*.tmp # not a comment",
      percent: "100%",
      long: "first\nsecond",
    });
    assert.deepEqual(ini.storages, [{
      name: "storage:a",
      values: { base: "/srv", storage: "local", container: "/srv/a" },
    }]);
    assert.throws(
      () => parseFreezerIni("key = value\n", "x.ini"),
      /x\.ini line 1: "key" comes before any \[section\]/,
    );
    assert.throws(
      () => parseFreezerIni("[default]\njust words\n", "x.ini"),
      /x\.ini line 2: expected "key = value"/,
    );
    assert.throws(
      () => parseFreezerIni("[default]\na = %(b)s\n", "x.ini"),
      /refers to "%\(b\)s", which is not set/,
    );
  });

  const INI = [
    "# Freezer job",
    "[default]",
    "action = backup",
    "path_to_backup = /etc",
    "backup-name = etc",
    "storage = local",
    "container = /srv/b",
    "; booleans: True/true/yes/1 and False/false/None/no/0",
    "incremental = True",
    "max_level = 2",
    "overwrite = false",
    "exclude = False",
    "hostname = None",
    "",
  ].join("\n");

  it("[default] keys are option names with _ or -; False/None mean not set", () => {
    assert.deepEqual(argv(["--config", "/etc/freezer/job.ini"], withIni(INI)), [
      "backup",
      "/etc",
      "--name",
      "etc",
      "--storage",
      "/srv/b",
      "--max-level",
      "2",
    ]);
  });

  it("the command line wins over the file", () => {
    assert.deepEqual(
      argv(
        ["--config", "/etc/freezer/job.ini", "--max-level", "5", "-N", "other", "--hostname", "h9"],
        withIni(INI),
      ),
      ["backup", "/etc", "--name", "other", "--storage", "/srv/b", "--hostname", "h9", "--max-level", "5"],
    );
    // A boolean switched off on the command line (oslo.config's --noX form).
    assert.deepEqual(
      argv(["--config", "/etc/freezer/job.ini", "--noincremental", "--max-level", "0"], withIni(INI)),
      ["backup", "/etc", "--name", "etc", "--storage", "/srv/b"],
    );
    assert.deepEqual(
      argv(
        ["--config", "/etc/freezer/job.ini", "--action", "restore", "--restore-abs-path", "/r"],
        withIni(INI),
      ),
      ["restore", "--name", "etc", "--to", "/r", "--storage", "/srv/b"],
    );
    // --overwrite on the command line beats "overwrite = false" in the file.
    assert.equal(
      argv([
        "--config",
        "/etc/freezer/job.ini",
        "--action",
        "restore",
        "--restore-abs-path",
        "/r",
        "--overwrite",
      ], withIni(INI))
        .at(-1),
      "--overwrite",
    );
  });

  it("booleans: true/yes/1/on and false/no/0/off/none; anything else is an error naming the key", () => {
    for (const word of ["True", "true", "yes", "1", "on"]) {
      assert.ok(
        argv(["--config", "/etc/freezer/job.ini"], withIni(`${INI}\nincremental = ${word}\nmax_level = 0\n`))
          .includes("--incremental"),
      );
    }
    for (const word of ["False", "false", "no", "0", "off", "None"]) {
      assert.ok(
        !argv(["--config", "/etc/freezer/job.ini"], withIni(`${INI}\nincremental = ${word}\nmax_level = 0\n`))
          .includes("--incremental"),
      );
    }
    usageError(
      ["--config", "/etc/freezer/job.ini"],
      /Invalid incremental in \/etc\/freezer\/job\.ini "sometimes"/,
      withIni(`${INI}\nincremental = sometimes\n`),
    );
  });

  it("secrets in the file go to the environment, never to argv", () => {
    const r = t(
      ["--config", "/etc/freezer/job.ini", "--action", "info"],
      withIni("[default]\nstorage = s3\ncontainer = bk\naccess_key = AK1\nsecret_key = SK-very-secret\n"),
    );
    assert.deepEqual(r.argv, ["list", "--storage", "s3://bk"]);
    assert.deepEqual(r.env, { AWS_ACCESS_KEY_ID: "AK1", AWS_SECRET_ACCESS_KEY: "SK-very-secret" });
  });

  it("[storage:NAME] sections become several --storage", () => {
    const r = t(
      ["--config", "/etc/freezer/job.ini", "--action", "info"],
      withIni(
        "[default]\nbackup_name = etc\n[storage:one]\nstorage = local\ncontainer = /mnt/a\n" +
          "[storage:two]\nstorage = ssh\nssh_host = b.example\nssh_key = /k\ncontainer = /srv/b\n",
      ),
    );
    assert.deepEqual(r.argv, [
      "list",
      "--storage",
      "/mnt/a",
      "--storage",
      "sftp://b.example/srv/b",
      "--sftp-key",
      "/k",
      "--name",
      "etc",
    ]);
  });

  it("unknown keys, unsupported modes and unreadable files are usage errors naming them", () => {
    usageError(
      ["--config", "/etc/freezer/job.ini"],
      /Unknown option "colour" in \/etc\/freezer\/job\.ini/,
      withIni(`${INI}colour = blue\n`),
    );
    usageError(
      ["--config", "/etc/freezer/job.ini"],
      /^mode = mysql in \/etc\/freezer\/job\.ini: database modes are not supported by frost/,
      withIni(`${INI}mode = mysql\n`),
    );
    usageError(
      ["--config", "/etc/freezer/job.ini"],
      /^lvm_srcvol in .*not supported by frost/,
      withIni(`${INI}lvm_srcvol = /dev/vg/lv\n`),
    );
    // Off in the file is fine.
    assert.equal(
      argv(["--config", "/etc/freezer/job.ini"], withIni(`${INI}snapshot = False\nlvm_volgroup = None\n`))[0],
      "backup",
    );
    usageError(
      ["--config", "/etc/freezer/job.ini"],
      /Unknown option "nope" in \[storage:x\]/,
      withIni(`${INI}[storage:x]\nnope = 1\n`),
    );
    usageError(
      ["--config", "/nonexistent/freezer.ini"],
      /Cannot read --config "\/nonexistent\/freezer\.ini": no such file/,
    );
  });
});

describe("runFreezerAgent", () => {
  it("sets the secrets in this process's environment and runs the native argv", async () => {
    const saved = process.env.FROST_FTP_PASSWORD;
    const lines: string[] = [];
    let ran: string[] = [];
    try {
      const code = await runFreezerAgent(
        [
          "--action",
          "info",
          "--storage",
          "ftp",
          "--ftp-host",
          "h",
          "--ftp-password",
          "pw-123",
          "-C",
          "/b",
          "--log-file",
          "/l",
        ],
        (native) => {
          ran = native;
          assert.equal(process.env.FROST_FTP_PASSWORD, "pw-123");
          return Promise.resolve(7);
        },
        { stdout: (l) => lines.push(l), stderr: (l) => lines.push(l) },
      );
      assert.equal(code, 7);
      assert.deepEqual(ran, ["list", "--storage", "ftp://h/b"]);
      assert.deepEqual(lines, ["frost: note: --log-file is ignored: frost writes to stdout and stderr"]);
    } finally {
      if (saved === undefined) delete process.env.FROST_FTP_PASSWORD;
      else process.env.FROST_FTP_PASSWORD = saved;
    }
  });

  it("a usage error is one line and exit code 2; --help shows the Freezer options", async () => {
    const lines: string[] = [];
    const io = {
      stdout: (l: string) => lines.push(`out:${l}`),
      stderr: (l: string) => lines.push(`err:${l}`),
    };
    const never = () => Promise.reject(new Error("must not run"));
    assert.equal(await runFreezerAgent(["--mode", "nova"], never, io), 2);
    assert.equal(lines.length, 1);
    assert.match(lines[0]!, /^err:frost: --mode nova: .*not supported by frost/);
    lines.length = 0;
    assert.equal(await runFreezerAgent(["--action", "backup", "--help"], never, io), 0);
    assert.match(lines.join("\n"), /out:Usage: frost --action backup\|restore\|info\|admin/);
  });
});

// ---------------------------------------------------------------------------------------------------------
// End to end: main.ts (or $FROST_BIN) on a real tree and local storages.

interface Listed {
  id: string;
  name: string;
  hostname: string;
  level: number;
  parent: string | null;
  chain: string;
  files: number;
  bytesIn: number;
  engine: string;
  compression: string;
}

async function ok(args: string[]) {
  const r = await frost(args);
  assert.equal(r.code, 0, `frost ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r;
}

async function list(storage: string, name: string): Promise<Listed[]> {
  const r = await ok(["list", "--storage", storage, "--name", name, "--hostname", "h1", "--json"]);
  return JSON.parse(r.stdout) as Listed[];
}

/** Local time with whole seconds, as Freezer's dates: 2026-03-22T14:29:01. */
function freezerDate(d: Date): string {
  const p = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${
    p(d.getMinutes())
  }:${p(d.getSeconds())}`;
}

function sleepMs(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

describe("Freezer-style command lines end to end", () => {
  let work: string;
  let src: string;
  let native: string;
  let freezer: string;
  let afterRound0: string;
  let between0and1: string;
  const freezerBackup = () =>
    ok([
      "--action",
      "backup",
      "--path-to-backup",
      src,
      "--backup-name",
      "tree",
      "--hostname",
      "h1",
      "--storage",
      "local",
      "--container",
      freezer,
      "--incremental",
      "--max-level",
      "2",
      "--exclude",
      "*.skip",
    ]);
  const nativeBackup = () =>
    ok([
      "backup",
      src,
      "--name",
      "tree",
      "--hostname",
      "h1",
      "--storage",
      native,
      "--max-level",
      "2",
      "--exclude",
      "*.skip",
    ]);

  before(async () => {
    work = tempDir("freezer-args");
    src = path.join(work, "src");
    native = path.join(work, "native");
    freezer = path.join(work, "freezer");
    makeHostileTree(src);
    // Files changed within a second of a backup's start are read again by the next level: let them settle
    // so that the native and the Freezer-style runs see the same changes.
    await sleepMs(1200);
    afterRound0 = path.join(work, "expected0");
    copyTree(src, afterRound0);
    fs.writeFileSync(path.join(src, "cache.skip"), "excluded\n");
    await nativeBackup();
    await freezerBackup();
    between0and1 = freezerDate(new Date());
    fs.appendFileSync(path.join(src, "plain.txt"), "more\n");
    fs.writeFileSync(path.join(src, "added.txt"), "new\n");
    fs.rmSync(path.join(src, "private"));
    await sleepMs(1200);
    await nativeBackup();
    await freezerBackup();
    fs.writeFileSync(path.join(src, "ünïcødé/日本語.txt"), "changed\n");
    await sleepMs(1200);
    await nativeBackup();
    await freezerBackup();
  });

  after(() => cleanup(work));

  it("a Freezer-style backup is the same backup as the native one (name, host, levels, files)", async () => {
    const a = await list(native, "tree");
    const b = await list(freezer, "tree");
    const shape = (l: Listed[]) =>
      l.map((m) => ({
        name: m.name,
        hostname: m.hostname,
        level: m.level,
        files: m.files,
        bytesIn: m.bytesIn,
        engine: m.engine,
        compression: m.compression,
        hasParent: m.parent !== null,
      }));
    assert.deepEqual(shape(b), shape(a));
    assert.deepEqual(b.map((m) => m.level), [0, 1, 2]);
    assert.equal(b[1]!.parent, b[0]!.id);
    assert.equal(b[2]!.parent, b[1]!.id);
  });

  it("--action info lists the backups", async () => {
    const r = await ok([
      "--action",
      "info",
      "--storage",
      "local",
      "--container",
      freezer,
      "--hostname",
      "h1",
      "-N",
      "tree",
    ]);
    const rows = r.stdout.trim().split("\n").slice(1);
    assert.equal(rows.length, 3);
    for (const row of rows) assert.match(row, /^tree\s+h1\s+[012]\s/);
  });

  it("--action restore --restore-abs-path restores the newest backup; --restore-from-date an older one", async () => {
    const target = path.join(work, "restored");
    await ok([
      "--action",
      "restore",
      "--backup-name",
      "tree",
      "--hostname",
      "h1",
      "--storage",
      "local",
      "--container",
      freezer,
      "--restore-abs-path",
      target,
    ]);
    fs.rmSync(path.join(src, "cache.skip"));
    assertSameTree(src, target);
    const older = path.join(work, "restored-older");
    await ok([
      "--action",
      "restore",
      "-N",
      "tree",
      "--hostname",
      "h1",
      "--storage",
      "local",
      "-C",
      freezer,
      "--restore-abs-path",
      older,
      "--restore-from-date",
      between0and1,
    ]);
    assertSameTree(afterRound0, older);
    // Not empty: refused unless --overwrite, as in Freezer.
    const refused = await frost([
      "--action",
      "restore",
      "-N",
      "tree",
      "--hostname",
      "h1",
      "--storage",
      "local",
      "-C",
      freezer,
      "--restore-abs-path",
      older,
    ]);
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(refused.stderr, /not empty/);
    await ok([
      "--action",
      "restore",
      "-N",
      "tree",
      "--hostname",
      "h1",
      "--storage",
      "local",
      "-C",
      freezer,
      "--restore-abs-path",
      older,
      "--overwrite",
    ]);
    assertSameTree(src, older);
  });

  it("an INI file (--config) backs up and restores; the command line picks the action", async () => {
    const store = path.join(work, "ini-store");
    const ini = path.join(work, "freezer.ini");
    fs.writeFileSync(
      ini,
      [
        "# frost reads Freezer's agent config",
        "[default]",
        `path_to_backup = ${afterRound0}`,
        "backup-name = ini",
        "hostname = h1",
        "storage = local",
        `container = ${store}`,
        "; levels",
        "incremental = True",
        "max_level = 1",
        "exclude = False",
        "log_file = /var/log/freezer-agent/freezer-agent.log",
        "",
      ].join("\n"),
    );
    const first = await ok(["--config", ini]);
    assert.match(first.stderr, /note: log_file in .* is ignored/);
    await ok(["--config", ini]);
    assert.deepEqual((await list(store, "ini")).map((m) => m.level), [0, 1]);
    const target = path.join(work, "ini-restored");
    await ok(["--config", ini, "--action", "restore", "--restore-abs-path", target]);
    assertSameTree(afterRound0, target);
  });

  it("--action admin removes chains older than --remove-from-date (--dry-run first)", async () => {
    const store = path.join(work, "admin-store");
    const run = (...more: string[]) =>
      ok(["-F", afterRound0, "-N", "adm", "--hostname", "h1", "--storage", "local", "-C", store, ...more]);
    await run();
    await sleepMs(1100);
    const cut = freezerDate(new Date());
    await sleepMs(1100);
    await run();
    const admin = ["--action", "admin", "-N", "adm", "--hostname", "h1", "--storage", "local", "-C", store];
    const dry = await ok([...admin, "--remove-from-date", cut, "--dry-run"]);
    assert.match(dry.stdout, /Would remove 1 backup/);
    assert.equal((await list(store, "adm")).length, 2);
    await ok([...admin, "--remove-from-date", cut]);
    assert.equal((await list(store, "adm")).length, 1);
  });

  it("bad input: one line naming the option, exit code 2, no secret echoed", async () => {
    const unknown = await frost(["--action", "backup", "-F", src, "-N", "x", "--frobnicate"]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /^frost: Unknown option "--frobnicate"/);
    assert.equal(unknown.stderr.trim().split("\n").length, 1);
    const mode = await frost(["-F", src, "-N", "x", "--mode", "mysql", "--secret-key", "TOPSECRET"]);
    assert.equal(mode.code, 2);
    assert.match(mode.stderr, /^frost: --mode mysql: database modes are not supported by frost/);
    assert.ok(!mode.stderr.includes("TOPSECRET"));
    const help = await frost(["--action", "restore", "--help"]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--restore-abs-path/);
  });
});
