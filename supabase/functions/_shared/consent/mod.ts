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
  const keys = await deploymentKeys(config);
  if (keys.length === 0) return null;
  const token = await signUnsubscribeToken(keys, claim);
  return `${config.supabaseUrl}/functions/v1/unsubscribe?token=${token}`;
}

/** The two headers one-click unsubscribe needs, or none (no key). */
export async function unsubscribeHeaders(config: Config, claim: UnsubscribeClaim): Promise<Record<string, string>> {
  const url = await unsubscribeUrl(config, claim);
  return url ? { "List-Unsubscribe": `<${url}>`, "List-Unsubscribe-Post": "List-Unsubscribe=One-Click" } : {};
}
