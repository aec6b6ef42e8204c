// STAND-IN, not a real provider: a scripted OAuth 2.0 token endpoint, Microsoft Graph's
// `POST /v1.0/me/sendMail` (MIME body) and the Gmail API's `users.messages.send` (`raw`), on one
// loopback HTTP server (HTTPS when given a certificate: then it can also play a `custom`
// provider, whose token endpoint must be https). Google and Microsoft cannot run here; this answers as they document,
// so OAuth mailboxes can be used end to end locally and tested over real sockets:
//
// - tokens: the refresh-token grant only; short-lived access tokens; optional rotation (the old
//   refresh token is refused afterwards, as a strict provider does); `invalid_grant` for a
//   revoked or unknown grant; `invalid_client` for a wrong secret; `invalid_scope`;
// - sends: the bearer token and its scope are checked, the message is handed to `deliver`
//   with the recipients its To, Cc and Bcc headers name, Bcc removed from what is delivered;
// - on cue (`script`): any status with `Retry-After`, a delay, or the whole server down (503).

/** A grant the stand-in honours (what a user's consent would have produced). */
export interface StandinGrant {
  clientId: string;
  clientSecret?: string;
  refreshToken: string;
  scopes: string[];
  /** The mailbox the grant is for (the sender). */
  mailbox: string;
  /** Hand out a new refresh token on each refresh and refuse the old one from then on. */
  rotate?: boolean;
}

/** Which endpoint a scripted answer is for. */
export type StandinEndpoint = "token" | "graph" | "gmail";

/** A one-time answer, used by the next request to its endpoint. */
export interface ScriptedAnswer {
  endpoint: StandinEndpoint;
  status?: number;
  retryAfter?: string;
  /** More response headers (a redirect's `location`, say). */
  headers?: Record<string, string>;
  delayMs?: number;
  /** JSON, or a string sent as it is. */
  body?: unknown;
}

/** A message as a send API received it. */
export interface StandinDelivery {
  via: "graph" | "gmail";
  mailbox: string;
  /** Recipients from the To, Cc and Bcc headers. */
  rcptTo: string[];
  /** The MIME exactly as sent to the API. */
  sent: Uint8Array;
  /** What recipients receive: the same bytes without the Bcc header. */
  delivered: Uint8Array;
}

export interface OAuthStandin {
  url: string;
  tokenUrl: string;
  /** Base URL to use instead of `https://graph.microsoft.com`. */
  graphUrl: string;
  /** Base URL to use instead of `https://gmail.googleapis.com`. */
  gmailUrl: string;
  addGrant(grant: StandinGrant): void;
  /** Revoke a grant and the access tokens issued from it. */
  revoke(refreshToken: string): void;
  /** Answers for the next requests, in order, per endpoint. */
  script(...answers: ScriptedAnswer[]): void;
  /** Every request gets 503 while down. */
  setDown(down: boolean): void;
  /**
   * Whether `token` is a live access token with an SMTP scope (for a catcher's XOAUTH2): Gmail's
   * or Microsoft's, or one of `scopes` (a custom provider's).
   */
  acceptsSmtpToken(token: string, scopes?: string[]): boolean;
  /** Requests received per endpoint. */
  readonly counts: Record<StandinEndpoint, number>;
  /** Refresh tokens presented, in order (to see that a rotated one is not used again). */
  readonly presentedRefreshTokens: string[];
  readonly deliveries: StandinDelivery[];
  close(): Promise<void>;
}

export interface OAuthStandinOptions {
  /** Port on 127.0.0.1 (default 0: any free one). */
  port?: number;
  /** Serve HTTPS with this certificate (for localhost), so `url` is `https://localhost:<port>`. */
  tls?: { cert: string; key: string };
  /** Access token lifetime in seconds (default 3600). */
  tokenLifetimeSeconds?: number;
  /**
   * For the local stack: any refresh token starting with `local-` is a grant of this client id,
   * with every scope (`local-revoked...` is refused with invalid_grant), so a developer can
   * connect a mailbox without registering one.
   */
  openClientId?: string;
  deliver?: (delivery: StandinDelivery) => void | Promise<void>;
}

const GRAPH_SCOPE = "https://graph.microsoft.com/Mail.Send";
const GMAIL_SCOPES = ["https://www.googleapis.com/auth/gmail.send", "https://mail.google.com/"];

/** Start the stand-in on a random loopback port. */
export function startOAuthStandin(options: OAuthStandinOptions = {}): Promise<OAuthStandin> {
  const lifetime = options.tokenLifetimeSeconds ?? 3600;
  const grants = new Map<string, StandinGrant>();
  const accessTokens = new Map<string, { grant: StandinGrant; expiresAt: number }>();
  const scripted: ScriptedAnswer[] = [];
  const counts: Record<StandinEndpoint, number> = { token: 0, graph: 0, gmail: 0 };
  const presentedRefreshTokens: string[] = [];
  const deliveries: StandinDelivery[] = [];
  let down = false;

  const next = (endpoint: StandinEndpoint) => {
    const i = scripted.findIndex((a) => a.endpoint === endpoint);
    return i < 0 ? undefined : scripted.splice(i, 1)[0];
  };

  const oauthError = (status: number, error: string, description: string) =>
    Response.json({ error, error_description: description }, { status, headers: { "cache-control": "no-store" } });

  async function token(req: Request): Promise<Response> {
    const form = new URLSearchParams(await req.text());
    if (form.get("grant_type") !== "refresh_token") {
      return oauthError(400, "unsupported_grant_type", "only refresh_token");
    }
    const presented = form.get("refresh_token") ?? "";
    presentedRefreshTokens.push(presented);
    if (options.openClientId && presented.startsWith("local-") && !presented.startsWith("local-revoked")) {
      grants.set(presented, {
        clientId: options.openClientId,
        clientSecret: form.get("client_secret") ?? undefined,
        refreshToken: presented,
        scopes: [GRAPH_SCOPE, ...GMAIL_SCOPES, "https://outlook.office.com/SMTP.Send", "offline_access"],
        mailbox: "local",
      });
    }
    const grant = grants.get(presented);
    if (!grant) return oauthError(400, "invalid_grant", "Token has been expired or revoked.");
    if (form.get("client_id") !== grant.clientId || (grant.clientSecret ?? null) !== (form.get("client_secret"))) {
      return oauthError(401, "invalid_client", "The OAuth client was not found.");
    }
    const asked = (form.get("scope") ?? "").split(" ").filter(Boolean);
    if (asked.some((s) => !grant.scopes.includes(s))) {
      return oauthError(400, "invalid_scope", "The requested scope is not part of the grant.");
    }
    const accessToken = `standin-at-${crypto.randomUUID()}`;
    accessTokens.set(accessToken, { grant, expiresAt: Date.now() + lifetime * 1000 });
    let refreshToken: string | undefined;
    if (grant.rotate) {
      grants.delete(presented);
      refreshToken = `standin-rt-${crypto.randomUUID()}`;
      grants.set(refreshToken, { ...grant, refreshToken });
    }
    return Response.json({
      access_token: accessToken,
      token_type: "Bearer",
      expires_in: lifetime,
      scope: grant.scopes.join(" "),
      ...(refreshToken ? { refresh_token: refreshToken } : {}),
    }, { headers: { "cache-control": "no-store" } });
  }

  /** The grant behind a bearer token with one of `scopes`, or the provider's refusal. */
  function bearer(req: Request, scopes: string[], refuse: (status: number, code: string) => Response) {
    const token = /^Bearer (\S+)$/.exec(req.headers.get("authorization") ?? "")?.[1];
    const held = token ? accessTokens.get(token) : undefined;
    if (!held || held.expiresAt <= Date.now()) return refuse(401, "InvalidAuthenticationToken");
    if (!held.grant.scopes.some((s) => scopes.includes(s))) return refuse(403, "ErrorAccessDenied");
    return held.grant;
  }

  async function deliver(via: "graph" | "gmail", mailbox: string, sent: Uint8Array) {
    const { rcptTo, withoutBcc } = recipientsOf(sent);
    const delivery: StandinDelivery = { via, mailbox, rcptTo, sent, delivered: withoutBcc };
    deliveries.push(delivery);
    await options.deliver?.(delivery);
  }

  async function graph(req: Request): Promise<Response> {
    const refuse = (status: number, code: string) =>
      Response.json(
        { error: { code, message: code === "ErrorAccessDenied" ? "Access is denied." : "Invalid token" } },
        {
          status,
        },
      );
    const grant = bearer(req, [GRAPH_SCOPE], refuse);
    if (grant instanceof Response) return grant;
    if (!(req.headers.get("content-type") ?? "").startsWith("text/plain")) {
      return Response.json({ error: { code: "ErrorMimeContentInvalid", message: "MIME as base64 text/plain" } }, {
        status: 400,
      });
    }
    const mime = base64Bytes(await req.text());
    if (!mime) return Response.json({ error: { code: "ErrorMimeContentInvalidBase64String" } }, { status: 400 });
    await deliver("graph", grant.mailbox, mime);
    return new Response(null, { status: 202 });
  }

  async function gmail(req: Request): Promise<Response> {
    const refuse = (status: number, code: string) =>
      Response.json({
        error: { code: status, status: status === 401 ? "UNAUTHENTICATED" : "PERMISSION_DENIED", message: code },
      }, { status });
    const grant = bearer(req, GMAIL_SCOPES, refuse);
    if (grant instanceof Response) return grant;
    const body = await req.json().catch(() => null) as { raw?: unknown } | null;
    const mime = typeof body?.raw === "string" ? base64Bytes(body.raw, true) : null;
    if (!mime) return Response.json({ error: { code: 400, status: "INVALID_ARGUMENT" } }, { status: 400 });
    await deliver("gmail", grant.mailbox, mime);
    return Response.json({ id: crypto.randomUUID().replaceAll("-", "").slice(0, 16), labelIds: ["SENT"] });
  }

  async function gmailUpload(req: Request): Promise<Response> {
    const grant = bearer(
      req,
      GMAIL_SCOPES,
      (status, code) => Response.json({ error: { code: status, message: code } }, { status }),
    );
    if (grant instanceof Response) return grant;
    if (
      new URL(req.url).searchParams.get("uploadType") !== "media" ||
      !(req.headers.get("content-type") ?? "").startsWith("message/rfc822")
    ) {
      return Response.json({ error: { code: 400, status: "INVALID_ARGUMENT" } }, { status: 400 });
    }
    await deliver("gmail", grant.mailbox, new Uint8Array(await req.arrayBuffer()));
    return Response.json({ id: crypto.randomUUID().replaceAll("-", "").slice(0, 16), labelIds: ["SENT"] });
  }

  const routes: Record<string, [StandinEndpoint, (req: Request) => Promise<Response>]> = {
    "/token": ["token", token],
    "/graph/v1.0/me/sendMail": ["graph", graph],
    "/gmail/gmail/v1/users/me/messages/send": ["gmail", gmail],
    "/gmail/upload/gmail/v1/users/me/messages/send": ["gmail", gmailUpload],
  };

  const serve = async (req: Request): Promise<Response> => {
    const route = routes[new URL(req.url).pathname];
    if (!route || req.method !== "POST") return new Response("not found", { status: 404 });
    const [endpoint, handle] = route;
    counts[endpoint]++;
    if (down) return new Response("down", { status: 503 });
    const answer = next(endpoint);
    if (answer?.delayMs) await new Promise((resolve) => setTimeout(resolve, answer.delayMs));
    if (answer?.status) {
      await req.body?.cancel();
      const headers = { ...(answer.retryAfter ? { "retry-after": answer.retryAfter } : {}), ...answer.headers };
      return typeof answer.body === "string"
        ? new Response(answer.body, { status: answer.status, headers })
        : Response.json(answer.body ?? { error: "scripted" }, { status: answer.status, headers });
    }
    return await handle(req);
  };
  const listen = { hostname: "127.0.0.1", port: options.port ?? 0, onListen: () => {} };
  const server = options.tls ? Deno.serve({ ...listen, ...options.tls }, serve) : Deno.serve(listen, serve);
  const url = options.tls ? `https://localhost:${server.addr.port}` : `http://127.0.0.1:${server.addr.port}`;
  return Promise.resolve({
    url,
    tokenUrl: `${url}/token`,
    graphUrl: `${url}/graph`,
    gmailUrl: `${url}/gmail`,
    addGrant: (grant) => void grants.set(grant.refreshToken, grant),
    // As Google's revocation does: the grant and every access token issued from it.
    revoke: (refreshToken) => {
      grants.delete(refreshToken);
      for (const [token, held] of accessTokens) {
        if (held.grant.refreshToken === refreshToken) accessTokens.delete(token);
      }
    },
    script: (...answers) => void scripted.push(...answers),
    setDown: (value) => void (down = value),
    acceptsSmtpToken: (token, scopes = []) => {
      const held = accessTokens.get(token);
      const smtpScopes = ["https://mail.google.com/", "https://outlook.office.com/SMTP.Send", ...scopes];
      return !!held && held.expiresAt > Date.now() && held.grant.scopes.some((s) => smtpScopes.includes(s));
    },
    counts,
    presentedRefreshTokens,
    deliveries,
    close: () => server.shutdown(),
  });
}

/** Bytes of standard or URL-safe base64, or null when it is not base64. */
function base64Bytes(text: string, urlSafe = false): Uint8Array | null {
  const cleaned = text.trim();
  if (!(urlSafe ? /^[A-Za-z0-9_-]*={0,2}$/ : /^[A-Za-z0-9+/\r\n]*={0,2}$/).test(cleaned)) return null;
  const standard = cleaned.replace(/[\r\n]/g, "").replaceAll("-", "+").replaceAll("_", "/");
  try {
    return Uint8Array.from(atob(standard.padEnd(Math.ceil(standard.length / 4) * 4, "=")), (c) => c.charCodeAt(0));
  } catch {
    return null;
  }
}

/** The addresses of the To, Cc and Bcc headers, and the message without its Bcc header. */
function recipientsOf(mime: Uint8Array): { rcptTo: string[]; withoutBcc: Uint8Array } {
  let end = mime.byteLength;
  for (let i = 0; i + 3 < mime.byteLength; i++) {
    if (mime[i] === 13 && mime[i + 1] === 10 && mime[i + 2] === 13 && mime[i + 3] === 10) {
      end = i;
      break;
    }
  }
  const head = new TextDecoder("latin1").decode(mime.subarray(0, end));
  const fields = head.split(/\r\n(?![ \t])/);
  const rcptTo: string[] = [];
  for (const field of fields) {
    const match = /^(to|cc|bcc):([\s\S]*)$/i.exec(field);
    if (!match) continue;
    for (const m of match[2].matchAll(/<([^<>\s]+@[^<>\s]+)>|([^\s,<>"]+@[^\s,<>"]+)/g)) rcptTo.push(m[1] ?? m[2]);
  }
  const kept = fields.filter((f) => !/^bcc:/i.test(f));
  if (kept.length === fields.length) return { rcptTo, withoutBcc: mime };
  const keptHead = Uint8Array.from(kept.join("\r\n"), (c) => c.charCodeAt(0));
  const withoutBcc = new Uint8Array(keptHead.byteLength + mime.byteLength - end);
  withoutBcc.set(keptHead);
  withoutBcc.set(mime.subarray(end), keptHead.byteLength);
  return { rcptTo, withoutBcc };
}
