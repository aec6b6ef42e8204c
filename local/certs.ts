/**
 * Certificates for the local SMTP catcher: a throwaway CA and a localhost leaf it
 * signs, so clients can verify TLS for real (given the CA) instead of turning
 * verification off.
 *
 * @module
 */

// @peculiar/x509 resolves its services through tsyringe, which refuses to load
// without the Reflect metadata API; this import must run before it.
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { join } from "node:path";

/** PEM strings for a CA and a server certificate it issued. */
export interface CertificateBundle {
  /** The CA certificate: what clients pass as `ca` to trust `cert`. */
  caCert: string;
  /** The server (leaf) certificate for localhost, 127.0.0.1 and ::1. */
  cert: string;
  /** The leaf's private key, PKCS#8 PEM. */
  key: string;
}

/** A certificate with its private key, both PEM. */
export interface KeyPair {
  /** The certificate, PEM. */
  cert: string;
  /** The private key, PKCS#8 PEM. */
  key: string;
}

const ALGORITHM: EcKeyGenParams = { name: "ECDSA", namedCurve: "P-256" };
const SIGNING: EcdsaParams = { name: "ECDSA", hash: "SHA-256" };
const DAY_MS = 24 * 60 * 60 * 1000;
const VALIDITY_DAYS = 3650;

/** Names every local server answers to, whichever the client dials. */
const LOCAL_NAMES: x509.JsonGeneralNames = [
  { type: "dns", value: "localhost" },
  { type: "ip", value: "127.0.0.1" },
  { type: "ip", value: "::1" },
];

/**
 * Generates a fresh CA (ECDSA P-256) and a leaf certificate it signs for
 * localhost, 127.0.0.1 and ::1, valid from a day ago (to absorb clock skew) for
 * about ten years. Tests may ask for other DNS names, or a leaf that has expired.
 *
 * @example
 * ```ts
 * const { caCert, cert, key } = await generateCertificates();
 * // server: { key, cert }; client: { ca: caCert, servername: "localhost" }
 * ```
 */
export async function generateCertificates(
  options: { names?: string[]; expired?: boolean } = {},
): Promise<CertificateBundle> {
  const { notBefore, notAfter } = validity();
  const leafValidity = options.expired ? expiredValidity() : { notBefore, notAfter };
  const names: x509.JsonGeneralNames = options.names
    ? options.names.map((value) => ({ type: "dns" as const, value }))
    : LOCAL_NAMES;
  const caKeys = await generateKeys();
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: "CN=mailroom local CA, O=mailroom (development only)",
    notBefore,
    notAfter,
    keys: caKeys,
    signingAlgorithm: SIGNING,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(
        caKeys.publicKey,
        false,
        crypto,
      ),
    ],
  }, crypto);

  const leafKeys = await generateKeys();
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: `CN=${options.names?.[0] ?? "localhost"}, O=mailroom (development only)`,
    issuer: ca.subject,
    notBefore: leafValidity.notBefore,
    notAfter: leafValidity.notAfter,
    publicKey: leafKeys.publicKey,
    signingKey: caKeys.privateKey,
    signingAlgorithm: SIGNING,
    extensions: [
      ...await leafExtensions(leafKeys.publicKey, names),
      await x509.AuthorityKeyIdentifierExtension.create(
        caKeys.publicKey,
        false,
        crypto,
      ),
    ],
  }, crypto);

  return {
    caCert: ca.toString("pem"),
    cert: leaf.toString("pem"),
    key: await exportPrivateKey(leafKeys.privateKey),
  };
}

/**
 * Generates a self-signed localhost certificate that no CA vouches for, the
 * shape of a misconfigured or intercepting server. Clients that verify
 * certificates must refuse it.
 *
 * @example
 * ```ts
 * const untrusted = await generateSelfSigned();
 * await startSmtpCatcher({ mode: "tls", tls: untrusted });
 * ```
 */
export async function generateSelfSigned(): Promise<KeyPair> {
  const { notBefore, notAfter } = validity();
  const keys = await generateKeys();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: "CN=localhost, O=untrusted self-signed",
    notBefore,
    notAfter,
    keys,
    signingAlgorithm: SIGNING,
    extensions: await leafExtensions(keys.publicKey),
  }, crypto);
  return {
    cert: cert.toString("pem"),
    key: await exportPrivateKey(keys.privateKey),
  };
}

/**
 * Reads `ca.pem`, `cert.pem` and `key.pem` from `dir`, or generates and stores a
 * new set when any is missing, so a restarted dev stack keeps the CA that
 * clients were told to trust. The CA's private key is never stored: nothing
 * can issue further certificates under it.
 *
 * @example
 * ```ts
 * const certs = await loadOrCreateCertificates(".local/certs");
 * ```
 */
export async function loadOrCreateCertificates(
  dir: string,
): Promise<CertificateBundle> {
  const paths = {
    caCert: join(dir, "ca.pem"),
    cert: join(dir, "cert.pem"),
    key: join(dir, "key.pem"),
  };
  const existing = await readAll(paths);
  if (existing) return existing;

  const bundle = await generateCertificates();
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(paths.caCert, bundle.caCert);
  await Deno.writeTextFile(paths.cert, bundle.cert);
  await Deno.writeTextFile(paths.key, bundle.key, { mode: 0o600 });
  return bundle;
}

async function readAll(
  paths: Record<keyof CertificateBundle, string>,
): Promise<CertificateBundle | undefined> {
  try {
    return {
      caCert: await Deno.readTextFile(paths.caCert),
      cert: await Deno.readTextFile(paths.cert),
      key: await Deno.readTextFile(paths.key),
    };
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

async function leafExtensions(
  publicKey: CryptoKey,
  names: x509.JsonGeneralNames = LOCAL_NAMES,
): Promise<x509.Extension[]> {
  return [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
    new x509.SubjectAlternativeNameExtension(names),
    await x509.SubjectKeyIdentifierExtension.create(publicKey, false, crypto),
  ];
}

function generateKeys(): Promise<CryptoKeyPair> {
  return crypto.subtle.generateKey(ALGORITHM, true, ["sign", "verify"]);
}

async function exportPrivateKey(key: CryptoKey): Promise<string> {
  const der = await crypto.subtle.exportKey("pkcs8", key);
  return x509.PemConverter.encode(der, "PRIVATE KEY");
}

/** A window that ended yesterday, for tests of expired certificates. */
function expiredValidity(): { notBefore: Date; notAfter: Date } {
  const day = 24 * 60 * 60 * 1000;
  return { notBefore: new Date(Date.now() - 30 * day), notAfter: new Date(Date.now() - day) };
}

function validity(): { notBefore: Date; notAfter: Date } {
  const now = Date.now();
  return {
    notBefore: new Date(now - DAY_MS),
    notAfter: new Date(now + VALIDITY_DAYS * DAY_MS),
  };
}

/** A positive 127-bit serial: random so reissued certificates never collide. */
function randomSerial(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[0] &= 0x7f;
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
