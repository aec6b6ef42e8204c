// Email addresses in nodemailer's vocabulary ({name, address}), parsed with an RFC 5322
// parser rather than a regular expression.
import addrs from "email-addresses";

/** A mailbox: what nodemailer calls an address object. */
export interface Address {
  name?: string;
  address: string;
}

/** How callers may spell a recipient: "a@b.c", "Name <a@b.c>" or {email, name}. */
export type RecipientInput = string | { email: string; name?: string };

// CR, LF and NUL would let a value break out of its header line.
const HEADER_BREAKERS = /[\r\n\0]/;
const MAX_LOCAL_PART = 64;
const MAX_DOMAIN = 255;

/** Parse one mailbox; returns an error message instead of throwing. */
export function parseAddress(input: RecipientInput): Address | { error: string } {
  const raw = typeof input === "string" ? input : input.email;
  const name = typeof input === "string" ? undefined : input.name;
  if (HEADER_BREAKERS.test(raw) || (name !== undefined && HEADER_BREAKERS.test(name))) {
    return { error: "must not contain CR, LF or NUL" };
  }
  const parsed = addrs.parseOneAddress({ input: raw.trim(), rfc6532: true });
  if (!parsed || parsed.type !== "mailbox") return { error: "is not a valid email address" };
  if (typeof input !== "string" && parsed.name) {
    return { error: "email must be a bare address when name is given separately" };
  }
  if (parsed.local.length > MAX_LOCAL_PART) return { error: `local part exceeds ${MAX_LOCAL_PART} characters` };
  if (parsed.domain.length > MAX_DOMAIN) return { error: `domain exceeds ${MAX_DOMAIN} characters` };
  if (!parsed.domain.includes(".")) return { error: "domain must be fully qualified" };
  const displayName = (name ?? parsed.name ?? "").trim();
  return displayName ? { name: displayName, address: parsed.address } : { address: parsed.address };
}
