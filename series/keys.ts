/**
 * The keys of encrypted backups: what a backup run wraps into its manifest, and what later runs unwrap.
 *
 * Each encrypted backup has two random data keys: one for its data (and the sealed source path), one for its
 * engine state. Both are wrapped to the passphrase, or to the recipient's public key. In recipient
 * (write-only) mode the state key is also wrapped to a host key kept in frost's cache folder, so the host
 * that made a backup can compute the next level without being able to read any backed-up data.
 * @module
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  checkEncryptionInfo,
  type DataKey,
  type EncryptionInfo,
  generateDataKey,
  generateIdentity,
  recipientOf,
  type ScryptParams,
  sharedKeyRing,
  unwrapDataKey,
  wrapDataKey,
} from "../codec/encryption.ts";
import { FrostError, messageOf } from "../base/errors.ts";

/** The manifest's `encryption` field. */
export interface ManifestEncryption {
  /** Wraps the key of the data segments and of `sealedSource`. */
  data: EncryptionInfo;
  /** Wraps the key of the engine-state segments. */
  state: EncryptionInfo;
  /** Recipient mode: the state key wrapped to the backing-up host's own key (see the module comment). */
  hostState?: EncryptionInfo;
}

/** The secrets and public keys a run was given. */
export interface KeyOptions {
  /** From `--encrypt-pass-file` or `$FROST_PASSPHRASE`. */
  passphrase?: string;
  /** From `--encrypt-recipient-file`: backups are encrypted to it (write-only). */
  recipient?: string;
  /** From `--encrypt-identity-file`: opens recipient-mode backups. */
  identity?: string;
}

/** The keys of one new backup. */
export interface BackupKeys {
  dataKey: DataKey;
  stateKey: DataKey;
  /**
   * The wrapped keys for the manifest, which is written last. Wrapping to a passphrase runs scrypt (a third
   * of a second or more of one CPU): it starts with the backup, in a child process at idle priority, so
   * that it takes the CPU the backup leaves unused. Calling this hurries it (see `KeyRing`).
   */
  wrapped(): Promise<ManifestEncryption>;
}

/** Where frost keeps its host key: `$FROST_CACHE_DIR`, else /var/cache/frost as root, else ~/.cache/frost. */
export function cacheDir(): string {
  if (process.env.FROST_CACHE_DIR) return process.env.FROST_CACHE_DIR;
  if (process.getuid?.() === 0) return "/var/cache/frost";
  const xdg = process.env.XDG_CACHE_HOME;
  return path.join(xdg && path.isAbsolute(xdg) ? xdg : path.join(os.homedir(), ".cache"), "frost");
}

/** This host's own identity for state keys; created (mode 0600) on first use when `create`. */
async function hostIdentity(create: boolean): Promise<{ identity: string; recipient: string } | null> {
  const file = path.join(cacheDir(), "host-state.key");
  try {
    const identity = fs.readFileSync(file, "utf8").trim();
    return { identity, recipient: await recipientOf(identity) };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT" || !create) return null;
  }
  const pair = await generateIdentity();
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    fs.writeFileSync(file, pair.identity + "\n", { mode: 0o600, flag: "wx" });
  } catch (err) {
    throw new FrostError(`Cannot keep the host state key in "${file}": ${messageOf(err)}`, { cause: err });
  }
  return pair;
}

/**
 * Makes the keys of a new backup, or null when no encryption was asked for. `previousKdf` (a passphrase
 * backup's scrypt parameters from the same series) lets one key derivation serve the whole run.
 */
export async function newBackupKeys(
  options: KeyOptions,
  previousKdf?: ScryptParams,
): Promise<BackupKeys | null> {
  if (options.passphrase === undefined && options.recipient === undefined) return null;
  const [dataKey, stateKey] = await Promise.all([generateDataKey(), generateDataKey()]);
  let manifest: Promise<ManifestEncryption>;
  if (options.passphrase !== undefined) {
    const passphrase = options.passphrase;
    manifest = (async () => {
      const data = await wrapDataKey(dataKey, { passphrase, kdf: previousKdf, background: true });
      const kdf = data.scheme === "passphrase" ? data.kdf : undefined;
      return { data, state: await wrapDataKey(stateKey, { passphrase, kdf }) };
    })();
  } else {
    const recipient = options.recipient!;
    const host = await hostIdentity(true);
    manifest = Promise.all([
      wrapDataKey(dataKey, { recipient }),
      wrapDataKey(stateKey, { recipient }),
      wrapDataKey(stateKey, { recipient: host!.recipient }),
    ]).then(([data, state, hostState]) => ({ data, state, hostState }));
  }
  manifest.catch(() => {}); // awaited (and reported) when the manifest is written
  return {
    dataKey,
    stateKey,
    wrapped: () => {
      sharedKeyRing.hurry();
      return manifest;
    },
  };
}

/** The scrypt parameters of a passphrase backup (to reuse their salt), if any. */
export function kdfOf(encryption: ManifestEncryption | null): ScryptParams | undefined {
  return encryption?.data.scheme === "passphrase" ? encryption.data.kdf : undefined;
}

/** The data key of an encrypted backup (null when it is not encrypted). Wrong or missing keys throw. */
export async function dataKeyOf(
  id: string,
  encryption: ManifestEncryption | null,
  options: KeyOptions,
): Promise<DataKey | null> {
  if (!encryption) return null;
  return await unwrapDataKey(encryption.data, secretsOf(options), id);
}

/**
 * The data keys of a chain's encrypted backups, by id, all unwrapped up front (so that a wrong key fails
 * before anything is written). Unencrypted backups have none.
 */
export async function chainDataKeys(
  chain: readonly { id: string; encryption: ManifestEncryption | null }[],
  options: KeyOptions,
): Promise<Map<string, DataKey>> {
  const keys = new Map<string, DataKey>();
  for (const m of chain) {
    const key = await dataKeyOf(m.id, m.encryption, options);
    if (key) keys.set(m.id, key);
  }
  return keys;
}

/**
 * The state keys of a chain's encrypted backups, by id (`stateKeyOf`), for what the restore learns from the
 * states; those that cannot be opened with these options are left out (never an error: the restore needs
 * only the data keys).
 */
export async function chainStateKeys(
  chain: readonly { id: string; encryption: ManifestEncryption | null }[],
  options: KeyOptions,
): Promise<Map<string, DataKey>> {
  const keys = new Map<string, DataKey>();
  for (const m of chain) {
    const key = await stateKeyOf(m.id, m.encryption, options).catch(() => null);
    if (key && key !== "unavailable") keys.set(m.id, key);
  }
  return keys;
}

/**
 * The state key of a parent backup, for computing the next level: with the passphrase or identity, else
 * (recipient mode) with this host's key. Returns "unavailable" when this host cannot open it (a fresh host
 * with a write-only key): the caller then starts a new chain.
 */
export async function stateKeyOf(
  id: string,
  encryption: ManifestEncryption | null,
  options: KeyOptions,
): Promise<DataKey | null | "unavailable"> {
  if (!encryption) return null;
  if (encryption.state.scheme === "recipient" && options.identity === undefined) {
    const host = await hostIdentity(false);
    if (!host || !encryption.hostState || encryption.hostState.scheme !== "recipient") return "unavailable";
    if (encryption.hostState.recipient !== host.recipient) return "unavailable";
    return await unwrapDataKey(encryption.hostState, { identity: host.identity }, id);
  }
  return await unwrapDataKey(encryption.state, secretsOf(options), id);
}

function secretsOf(options: KeyOptions) {
  return { passphrase: options.passphrase, identity: options.identity };
}

/** Checks a manifest's `encryption` field: null, or the data/state pair. */
export function checkManifestEncryption(value: unknown, where: string): ManifestEncryption | null {
  if (value === null || value === undefined) return null;
  const v = value as Partial<ManifestEncryption>;
  if (typeof v !== "object" || !v.data || !v.state) {
    throw new FrostError(`Cannot read manifest "${where}": bad encryption field`);
  }
  const out: ManifestEncryption = {
    data: checkEncryptionInfo(v.data, where),
    state: checkEncryptionInfo(v.state, where),
  };
  if (v.hostState) out.hostState = checkEncryptionInfo(v.hostState, where);
  return out;
}
