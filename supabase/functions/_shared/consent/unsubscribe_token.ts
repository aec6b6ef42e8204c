// One-click unsubscribe tokens (RFC 8058): who unsubscribes (an address), from whose mail (a
// user), and from what (a topic, or everything), signed with HMAC-SHA-256 so that nobody can make
// one for another address or another user. The token is not secret (it rides in a header every
// recipient's mail server sees) and names nothing but a user id, the address and the topic.
//
// Keys: MAILROOM_UNSUBSCRIBE_SECRETS (comma-separated; the first signs, every one verifies, so a
// key can be rotated in while mail signed with the old one is still in inboxes), else derived
// from the project's secret API keys (SUPABASE_SECRET_KEYS, which hosted functions get), so a
// deployment signs without any setup.

/** What a token says. */
export interface UnsubscribeClaim {
  /** The user whose mail the address opts out of. */
  userId: string;
  /** The recipient, lower case. */
  address: string;
  /** A list or topic; null: all of the user's mail. */
  topic: string | null;
}

const VERSION = "u1";
const SIGNATURE_BYTES = 16;
const encoder = new TextEncoder();

function base64url(bytes: Uint8Array): string {
  return bytes.toBase64({ alphabet: "base64url", omitPadding: true });
}

async function hmac(key: Uint8Array, text: string): Promise<Uint8Array> {
  const raw = new Uint8Array(key);
  const cryptoKey = await crypto.subtle.importKey("raw", raw, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return new Uint8Array(await crypto.subtle.sign("HMAC", cryptoKey, encoder.encode(text)));
}

/**
 * The signing keys, first one signing: MAILROOM_UNSUBSCRIBE_SECRETS's entries, else one derived
 * from each secret API key. Empty when the deployment has neither (then no mail offers one-click
 * unsubscribe, and the unsubscribe function refuses every token).
 */
export async function unsubscribeKeys(configured: string[], secretApiKeys: string[]): Promise<Uint8Array[]> {
  if (configured.length > 0) return configured.map((secret) => encoder.encode(secret));
  return await Promise.all(secretApiKeys.map((key) => hmac(encoder.encode(key), "mailroom one-click unsubscribe v1")));
}

/** A token for `claim`, signed with the first key. */
export async function signUnsubscribeToken(keys: Uint8Array[], claim: UnsubscribeClaim): Promise<string> {
  if (keys.length === 0) throw new Error("no unsubscribe signing key");
  const payload = base64url(encoder.encode(JSON.stringify([claim.userId, claim.address.toLowerCase(), claim.topic])));
  const signature = (await hmac(keys[0], `${VERSION}.${payload}`)).subarray(0, SIGNATURE_BYTES);
  return `${VERSION}.${payload}.${base64url(signature)}`;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let difference = 0;
  for (let i = 0; i < a.length; i++) difference |= a[i] ^ b[i];
  return difference === 0;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** What a token says when one of `keys` signed it, else null (forged, altered, cut or unknown). */
export async function verifyUnsubscribeToken(keys: Uint8Array[], token: string): Promise<UnsubscribeClaim | null> {
  if (token.length > 2048) return null;
  const [version, payload, signature, ...rest] = token.split(".");
  if (version !== VERSION || !payload || !signature || rest.length > 0) return null;
  let given: Uint8Array;
  try {
    given = Uint8Array.fromBase64(signature, { alphabet: "base64url" });
  } catch {
    return null;
  }
  // One spelling per signature: base64's last character carries unused bits, and a token whose
  // signature is spelled otherwise is not the one we issued.
  if (base64url(given) !== signature) return null;
  let signed = false;
  for (const key of keys) {
    if (sameBytes((await hmac(key, `${VERSION}.${payload}`)).subarray(0, SIGNATURE_BYTES), given)) signed = true;
  }
  if (!signed) return null;
  try {
    const [userId, address, topic] = JSON.parse(new TextDecoder().decode(Uint8Array.fromBase64(payload, {
      alphabet: "base64url",
    })));
    if (typeof userId !== "string" || !UUID.test(userId) || typeof address !== "string" || !address.includes("@")) {
      return null;
    }
    if (topic !== null && typeof topic !== "string") return null;
    return { userId, address, topic };
  } catch {
    return null;
  }
}
