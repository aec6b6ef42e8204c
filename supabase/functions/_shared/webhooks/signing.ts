// Standard Webhooks signatures (https://www.standardwebhooks.com): a secret `whsec_<base64>`,
// and for each delivery the headers webhook-id, webhook-timestamp (Unix seconds) and
// webhook-signature `v1,<base64 HMAC-SHA256(secret, "<id>.<timestamp>.<body>")>`. Receivers check
// it with any Standard Webhooks library (the tests use the reference one, `standardwebhooks`).
import { Buffer } from "node:buffer";

const encoder = new TextEncoder();

/** A new signing secret: `whsec_` and 32 random bytes in base64. */
export function newWebhookSecret(): string {
  return `whsec_${Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64")}`;
}

/**
 * The headers that sign `body` for delivery `id` at `timestamp` (seconds) with each of `secrets`
 * (the current one, and for a day after a rotation the previous one: the signatures go
 * space-separated, and a receiver accepts the one it can check).
 */
export async function signatureHeaders(
  secrets: string[],
  id: string,
  timestamp: number,
  body: string,
): Promise<Record<string, string>> {
  const signed = encoder.encode(`${id}.${timestamp}.${body}`);
  const signatures = await Promise.all(secrets.map(async (secret) => {
    const key = await crypto.subtle.importKey(
      "raw",
      Buffer.from(secret.replace(/^whsec_/, ""), "base64"),
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["sign"],
    );
    return `v1,${Buffer.from(await crypto.subtle.sign("HMAC", key, signed)).toString("base64")}`;
  }));
  return {
    "webhook-id": id,
    "webhook-timestamp": String(timestamp),
    "webhook-signature": signatures.join(" "),
  };
}
