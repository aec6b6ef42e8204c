// Where each OAuth provider issues tokens, and which scopes each way of sending needs. A config
// names its provider; only `custom` names its own token endpoint (HTTPS, checked like any
// user-supplied destination).

/** Who issues a config's tokens. */
export type OAuthProvider = "google" | "microsoft" | "custom";

/** How a message leaves: SMTP with XOAUTH2, Microsoft Graph `sendMail`, or the Gmail API. */
export type OAuthTransport = "smtp" | "graph" | "gmail_api";

/** Google's token endpoint (Google Workspace and gmail.com alike). */
export const GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token";

/**
 * Microsoft identity platform's v2.0 token endpoint for a tenant: `common` (work and personal
 * accounts), `organizations`, `consumers`, or a tenant id or domain.
 *
 * @example
 * ```ts
 * microsoftTokenUrl("contoso.onmicrosoft.com");
 * // "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
 * ```
 */
export function microsoftTokenUrl(tenant = "common"): string {
  if (!/^[A-Za-z0-9.-]{1,255}$/.test(tenant)) throw new TypeError("tenant must be a tenant id or domain");
  return `https://login.microsoftonline.com/${tenant}/oauth2/v2.0/token`;
}

/**
 * The scopes a refresh token must carry for each provider and transport. Microsoft issues an
 * access token for one resource at a time, so its refresh request names the resource's scope;
 * `offline_access` is what makes it hand out refresh tokens at all.
 */
export const REQUIRED_SCOPES: Record<Exclude<OAuthProvider, "custom">, Partial<Record<OAuthTransport, string[]>>> = {
  google: {
    smtp: ["https://mail.google.com/"],
    gmail_api: ["https://www.googleapis.com/auth/gmail.send"],
  },
  microsoft: {
    smtp: ["https://outlook.office.com/SMTP.Send", "offline_access"],
    graph: ["https://graph.microsoft.com/Mail.Send", "offline_access"],
  },
};

/** A config's OAuth settings (its secrets are not here: they stay in Vault until a send needs them). */
export interface OAuthSettings {
  provider: OAuthProvider;
  transport: OAuthTransport;
  clientId: string;
  /** Microsoft only; `common` when unset. */
  tenant?: string | null;
  /** `custom` only: the provider's token endpoint. */
  tokenUrl?: string | null;
  /** `custom` only (the others use {@linkcode REQUIRED_SCOPES}). */
  scopes?: string[] | null;
}

/** The token endpoint a config's refresh requests go to. */
export function tokenEndpoint(settings: Pick<OAuthSettings, "provider" | "tenant" | "tokenUrl">): string {
  switch (settings.provider) {
    case "google":
      return GOOGLE_TOKEN_URL;
    case "microsoft":
      return microsoftTokenUrl(settings.tenant ?? "common");
    case "custom":
      if (!settings.tokenUrl) throw new TypeError("a custom provider needs its token_url");
      return settings.tokenUrl;
  }
}

/** The scopes to ask for when refreshing (Microsoft needs them; the others may omit them). */
export function refreshScopes(settings: Pick<OAuthSettings, "provider" | "transport" | "scopes">): string[] {
  if (settings.provider === "custom") return settings.scopes ?? [];
  return REQUIRED_SCOPES[settings.provider][settings.transport] ?? [];
}
