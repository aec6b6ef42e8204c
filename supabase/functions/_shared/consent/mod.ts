// Recipients' consent: one-click unsubscribe (RFC 8058, RFC 2369). Mail that asks for it (bulk
// mail by default) carries `List-Unsubscribe` with a signed HTTPS link to the public
// `unsubscribe` function and `List-Unsubscribe-Post: List-Unsubscribe=One-Click`; a POST there puts
// the recipient on the sender's suppression list (_shared/suppressions), which every send path
// honours.
import type { Config } from "../config.ts";
import {
  signUnsubscribeToken,
  type UnsubscribeClaim,
  unsubscribeKeys,
  verifyUnsubscribeToken,
} from "./unsubscribe_token.ts";

export { signUnsubscribeToken, type UnsubscribeClaim, unsubscribeKeys, verifyUnsubscribeToken };

const keysOf = new WeakMap<Config, Promise<Uint8Array[]>>();

/** This deployment's unsubscribe keys (computed once per configuration). */
export function deploymentKeys(config: Config): Promise<Uint8Array[]> {
  let keys = keysOf.get(config);
  if (!keys) {
    keys = unsubscribeKeys(config.unsubscribeSecrets, config.workerKeys);
    keysOf.set(config, keys);
  }
  return keys;
}

/** The public one-click link for `claim`, or null when the deployment has no key to sign with. */
export async function unsubscribeUrl(config: Config, claim: UnsubscribeClaim): Promise<string | null> {
  const token = await unsubscribeToken(config, claim);
  return token ? `${config.supabaseUrl}/functions/v1/unsubscribe?token=${token}` : null;
}

async function unsubscribeToken(config: Config, claim: UnsubscribeClaim): Promise<string | null> {
  const keys = await deploymentKeys(config);
  return keys.length === 0 ? null : await signUnsubscribeToken(keys, claim);
}

/** What a mailto unsubscribe's Subject says: `unsubscribe <token>`. */
export const MAILTO_SUBJECT = /\bunsubscribe\s+(u1\.[A-Za-z0-9_-]{1,1500}\.[A-Za-z0-9_-]{1,64})/i;

/**
 * The two headers one-click unsubscribe needs, or none (no key). With `mailbox` (the sender's
 * address, when its inbox is read over IMAP), List-Unsubscribe also offers a mailto (RFC 2369)
 * whose Subject carries the same signed token: the mailbox reader honours it.
 */
export async function unsubscribeHeaders(
  config: Config,
  claim: UnsubscribeClaim,
  mailbox?: string,
): Promise<Record<string, string>> {
  const token = await unsubscribeToken(config, claim);
  if (!token) return {};
  const url = `${config.supabaseUrl}/functions/v1/unsubscribe?token=${token}`;
  const mailto = mailbox ? `, <mailto:${mailbox}?subject=unsubscribe%20${token}>` : "";
  return { "List-Unsubscribe": `<${url}>${mailto}`, "List-Unsubscribe-Post": "List-Unsubscribe=One-Click" };
}
