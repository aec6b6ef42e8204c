// OAuth 2.0 for mailboxes (Gmail / Google Workspace, Microsoft 365, or a custom provider): the
// providers' endpoints and scopes, the refresh-token grant, and the per-instance token cache.
export {
  GOOGLE_TOKEN_URL,
  microsoftTokenUrl,
  type OAuthProvider,
  type OAuthSettings,
  type OAuthTransport,
  refreshScopes,
  REQUIRED_SCOPES,
  tokenEndpoint,
} from "./providers.ts";
export {
  OAuthError,
  type OAuthFailureCode,
  redactSecrets,
  refreshAccessToken,
  type RefreshedToken,
  type RefreshOptions,
  type RefreshRequest,
  retryAfterSeconds,
  type TokenFetch,
} from "./refresh.ts";
export { egressCheckedFetch, type EgressFetchOptions, MAX_TOKEN_RESPONSE_BYTES } from "./egress_fetch.ts";
export { AccessTokenCache, type CachedToken, EXPIRY_MARGIN_MS } from "./access_tokens.ts";
