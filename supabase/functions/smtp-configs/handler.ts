// /smtp-configs: create, list, read, update, delete, make default, (de)activate and
// verify the caller's SMTP configurations, and list a config's verifications (GET /:ref/verifications).
// GET /smtp-configs/presets lists well-known providers; `preset` in a create request uses one.
import { bearerToken, type UserClaims } from "../_shared/auth.ts";
import type { AppContext } from "../_shared/context.ts";
import { withUser } from "../_shared/db.ts";
import {
  checkServerStatically,
  type EgressPolicy,
  portWarnings,
  resolveTarget,
  resolveTokenUrl,
} from "../_shared/smtp/egress.ts";
import { ApiError, type Handler, json, methodNotAllowed, readJson, routeSegments, serveJson } from "../_shared/http.ts";
import {
  createConfigRequest,
  HTTPS_TRANSPORT_HOSTS,
  imapSettingsRequest,
  parseBody,
  updateConfigRequest,
} from "../_shared/schemas.ts";
import {
  checkMailbox,
  deleteImapSettings,
  getImapSettings,
  MailboxError,
  putImapSettings,
} from "../_shared/mailbox/mod.ts";
import { applyPreset, listPresets } from "../_shared/presets/mod.ts";
import {
  describeFailure,
  failureDetails,
  SessionFailure,
  type SmtpServer,
  type SmtpVerification,
  verifyServer,
} from "../_shared/smtp/smtp.ts";
import { finishVerification, listVerifications, startVerification } from "../_shared/store/verifications.ts";
import { assertCanAuthenticate } from "../_shared/store/credential_guard.ts";
import { oauthTokenSource } from "../_shared/store/oauth_tokens.ts";
import { OAuthError } from "../_shared/oauth/mod.ts";
import { isAgentRequest } from "../_shared/oversight/mod.ts";
import { checkDeliverability } from "../_shared/deliverability/mod.ts";
import {
  type ConfigWarning,
  createConfig,
  deleteConfig,
  findConfig,
  incomplete,
  listConfigs,
  loadCredentials,
  type SmtpConfig,
  updateConfig,
} from "../_shared/store/smtp_configs.ts";

const MAX_BODY_BYTES = 64 * 1024;

export { routeSegments } from "../_shared/http.ts";

/** Refuse what the policy refuses; warn about what will fail elsewhere or cannot be checked now. */
async function checkServer(
  policy: EgressPolicy,
  server: { host: string; port: number; security: string },
  timeoutMs: number,
): Promise<{ host: string; warnings: ConfigWarning[] }> {
  const { host } = checkServerStatically(policy, server, { sending: false });
  const warnings = portWarnings(policy, server.port);
  try {
    await resolveTarget(policy, host, server.port, { timeoutMs });
  } catch (error) {
    if (!(error instanceof ApiError) || error.code !== "smtp_host_not_found") throw error;
    warnings.push({ code: "host_not_resolved", message: `${host} does not resolve right now; check the spelling` });
  }
  return { host, warnings };
}

/**
 * A custom provider's token endpoint, checked as a server is: refused when it is, or resolves to,
 * an address the policy forbids; a warning when it does not resolve right now. (Every refresh
 * checks it again: the name may resolve elsewhere later, and the Data API can change the URL.)
 */
async function checkTokenEndpoint(policy: EgressPolicy, tokenUrl: string, timeoutMs: number): Promise<ConfigWarning[]> {
  try {
    await resolveTokenUrl(policy, tokenUrl, { timeoutMs });
  } catch (error) {
    if (!(error instanceof ApiError) || error.code !== "oauth_token_url_not_found") throw error;
    const { hostname } = new URL(tokenUrl);
    return [{ code: "token_url_not_resolved", message: `${hostname} does not resolve right now; check the spelling` }];
  }
  return [];
}

async function create(ctx: AppContext, claims: UserClaims, req: Request): Promise<Response> {
  // A preset fills in the provider's server (and refuses one this deployment cannot use).
  const body = parseBody(createConfigRequest, applyPreset(await readJson(req, MAX_BODY_BYTES), ctx.config.egress));
  // An HTTPS transport's host is the provider's API (set by the schema): no SMTP server to check.
  const { host, warnings } = body.transport === "smtp"
    ? await checkServer(ctx.config.egress, body, ctx.config.smtp.connectTimeoutMs)
    : { host: body.host, warnings: [] };
  if (body.oauth?.provider === "custom") {
    warnings.push(...await checkTokenEndpoint(ctx.config.egress, body.oauth.token_url!, ctx.config.oauth.timeoutMs));
  }
  const config = await withUser(ctx.sql, claims, (tx) => createConfig(tx, { ...body, host }));
  return json({ ...config, warnings }, 201);
}

async function update(ctx: AppContext, claims: UserClaims, ref: string, req: Request): Promise<Response> {
  const body = parseBody(updateConfigRequest, await readJson(req, MAX_BODY_BYTES));
  const current = await withUser(ctx.sql, claims, (tx) => findConfig(tx, ref));
  if (current.transport !== "smtp" && (body.host ?? body.port ?? body.security) !== undefined) {
    throw new ApiError(
      400,
      "invalid_request",
      `host, port and security do not apply to transport ${current.transport}: it sends over the provider's HTTPS API`,
    );
  }
  let host: string | undefined;
  let warnings: ConfigWarning[] = [];
  if (body.host !== undefined || body.port !== undefined || body.security !== undefined) {
    ({ host, warnings } = await checkServer(ctx.config.egress, {
      host: body.host ?? current.host,
      port: body.port ?? current.port,
      security: body.security ?? current.security,
    }, ctx.config.smtp.connectTimeoutMs));
  }
  const { before, after } = await withUser(
    ctx.sql,
    claims,
    (tx) => updateConfig(tx, current.id, { ...body, host: body.host === undefined ? undefined : host }),
  );
  if (before.has_password && !after.has_password) {
    warnings.push({
      code: "password_cleared",
      message: "The stored password was deleted because the server or username changed; set a new password",
    });
  }
  return json({ ...after, warnings });
}

/** The host mail really leaves through: the API's for an HTTPS transport (its host column is not used). */
function sendingHost(config: SmtpConfig): string {
  return config.transport === "smtp" ? config.host : HTTPS_TRANSPORT_HOSTS[config.transport];
}

/**
 * Verify an OAuth config: get an access token from its grant (the step that fails when consent
 * was revoked, the client is wrong or a scope is missing). An HTTPS transport has nothing more to
 * check without sending; the token is shared with the next sends.
 */
async function verifyOAuth(ctx: AppContext, claims: UserClaims, config: SmtpConfig): Promise<Response> {
  const verification = await withUser(ctx.sql, claims, async (tx) => {
    if (!config.oauth?.has_refresh_token) throw incomplete(config);
    return {
      id: await startVerification(tx, config.id, ctx.config.verifyPerMinute),
      login: { configId: config.id, attemptId: null },
    };
  });
  const started = performance.now();
  const deliverability = checkDeliverability(config.from_email, sendingHost(config));
  const tokens = oauthTokenSource(ctx.sql, claims, config, { ...ctx.config.oauth, egress: ctx.config.egress });
  try {
    let token = await tokens.get();
    let banner: string | null = null;
    if (config.transport === "smtp") {
      // XOAUTH2 over SMTP: the server must take the token, as for a password.
      checkServerStatically(ctx.config.egress, config);
      const server = {
        ...config,
        username: config.username ?? config.from_email,
        xoauth2: {
          current: token,
          fresh: async () => {
            await tokens.invalidate(token);
            return token = await tokens.get();
          },
        },
      };
      banner = (await verifySession(ctx, claims, verification, server, started)).server_banner;
    }
    const result = {
      ok: true as const,
      tls: true,
      auth: true,
      latency_ms: Math.round(performance.now() - started),
      server_banner: banner,
      deliverability: await deliverability,
    };
    await finishVerification(ctx.sql, claims, verification, {
      ok: true,
      latencyMs: result.latency_ms,
      serverBanner: banner,
    });
    return json(result);
  } catch (error) {
    if (!(error instanceof OAuthError)) throw error;
    const latencyMs = Math.round(performance.now() - started);
    await finishVerification(ctx.sql, claims, verification, {
      ok: false,
      errorClass: error.code,
      latencyMs,
      serverBanner: null,
    });
    throw new ApiError(error.status, error.code, error.message, {
      retryable: error.retryable,
      ...(error.retryAfterSeconds !== undefined ? { retry_after_seconds: error.retryAfterSeconds } : {}),
      latency_ms: latencyMs,
    });
  }
}

async function verify(ctx: AppContext, claims: UserClaims, ref: string): Promise<Response> {
  const found = await withUser(ctx.sql, claims, (tx) => findConfig(tx, ref));
  if (found.auth_type === "oauth2") return await verifyOAuth(ctx, claims, found);
  const { config, credentials, verification } = await withUser(ctx.sql, claims, async (tx) => {
    const config = await findConfig(tx, ref, "share");
    // Before loading the credentials: it pins them until commit, and may refuse unproven ones (429).
    const login = await assertCanAuthenticate(tx, config.id);
    const credentials = await loadCredentials(tx, config.id);
    if (config.username && !credentials.password) {
      throw new ApiError(422, "config_incomplete", `SMTP config ${JSON.stringify(config.name)} has no password`);
    }
    checkServerStatically(ctx.config.egress, config);
    const id = await startVerification(tx, config.id, ctx.config.verifyPerMinute);
    return { config, credentials, verification: { id, login } };
  });

  const server = { ...config, ...credentials };
  const started = performance.now();
  // Asked while the session runs: DNS and SMTP in parallel, so the check adds no wait.
  const deliverability = checkDeliverability(config.from_email, config.host);
  deliverability.catch(() => {});
  const result = await verifySession(ctx, claims, verification, server, started);
  await finishVerification(ctx.sql, claims, verification, {
    ok: true,
    latencyMs: result.latency_ms,
    serverBanner: result.server_banner,
  });
  return json({ ...result, deliverability: await deliverability });
}

/**
 * Connect, negotiate TLS, log in (password or XOAUTH2) and quit. A failure is recorded as the
 * verification's outcome and thrown as the API's error, with the server's greeting when one
 * arrived (it says which server answered even when the rest failed).
 */
async function verifySession(
  ctx: AppContext,
  claims: UserClaims,
  verification: Parameters<typeof finishVerification>[2],
  server: SmtpServer,
  started: number,
): Promise<SmtpVerification> {
  try {
    const target = await resolveTarget(ctx.config.egress, server.host, server.port, {
      timeoutMs: ctx.config.smtp.connectTimeoutMs,
    });
    return await verifyServer(server, target, ctx.config.smtp);
  } catch (error) {
    const latencyMs = Math.round(performance.now() - started);
    // With the server, so that a reply echoing the password is redacted.
    const { httpStatus, failure, details } = describeFailure(error, server);
    const banner = error instanceof SessionFailure ? error.banner : null;
    await finishVerification(ctx.sql, claims, verification, {
      ok: false,
      errorClass: failure.code,
      latencyMs,
      serverBanner: banner,
    });
    throw new ApiError(httpStatus, failure.code, failure.message, {
      ...details,
      ...(httpStatus === 502 ? failureDetails(failure) : {}),
      latency_ms: latencyMs,
      server_banner: banner,
    });
  }
}

async function setFlag(
  ctx: AppContext,
  claims: UserClaims,
  ref: string,
  change: { is_default?: true; is_active?: boolean },
): Promise<SmtpConfig> {
  const { after } = await withUser(ctx.sql, claims, (tx) => updateConfig(tx, ref, change));
  return after;
}

/**
 * `/smtp-configs/:ref/imap`: GET, PATCH (create or change), DELETE the config's IMAP settings;
 * `POST /smtp-configs/:ref/imap/check` reads the inbox for bounce reports now.
 */
async function imap(ctx: AppContext, claims: UserClaims, ref: string, rest: string[], req: Request) {
  const method = req.method;
  if (rest.length === 1 && rest[0] === "check") {
    if (method !== "POST") methodNotAllowed("POST");
    const config = await withUser(ctx.sql, claims, (tx) => findConfig(tx, ref));
    try {
      return json({ config_id: config.id, ...await checkMailbox(ctx, claims, config.id) });
    } catch (error) {
      if (!(error instanceof MailboxError)) throw error;
      throw new ApiError(502, error.code, error.message, { config_id: config.id });
    }
  }
  if (rest.length > 0) throw new ApiError(404, "route_not_found", "No such route; use /imap or /imap/check");
  if (method === "GET") return json(await withUser(ctx.sql, claims, (tx) => getImapSettings(tx, ref)));
  // Refused at once here; the database refuses it too, whichever way it comes (Data API included).
  if (["PATCH", "PUT", "DELETE"].includes(method) && isAgentRequest(req, claims)) {
    throw new ApiError(
      403,
      "first_party_session_required",
      "Only you, signed in yourself, can change where your mailbox is read and sent mail is copied",
    );
  }
  if (method === "PATCH" || method === "PUT") {
    const body = parseBody(imapSettingsRequest, await readJson(req, MAX_BODY_BYTES));
    return json(await withUser(ctx.sql, claims, (tx) => putImapSettings(tx, ref, body, ctx.config.egress)));
  }
  if (method === "DELETE") return json(await withUser(ctx.sql, claims, (tx) => deleteImapSettings(tx, ref)));
  methodNotAllowed("GET, PATCH, DELETE");
}

/** Build the smtp-configs handler over a shared context. */
export function createSmtpConfigsHandler(ctx: AppContext): Handler {
  return serveJson(async (req) => {
    const claims = await ctx.verifyToken(bearerToken(req));
    const [ref, action, ...rest] = routeSegments(req, "smtp-configs");
    const method = req.method;

    if (action === "imap" && ref !== undefined) return await imap(ctx, claims, ref, rest, req);
    if (rest.length > 0) throw new ApiError(404, "route_not_found", "No such route");
    if (ref === "presets" && action === undefined) {
      if (method !== "GET") methodNotAllowed("GET");
      return json({ presets: listPresets(ctx.config.egress) });
    }
    if (ref === undefined) {
      if (method === "GET") return json({ configs: await withUser(ctx.sql, claims, listConfigs) });
      if (method === "POST") return await create(ctx, claims, req);
      methodNotAllowed("GET, POST");
    }
    if (action === undefined) {
      if (method === "GET") return json(await withUser(ctx.sql, claims, (tx) => findConfig(tx, ref)));
      if (method === "PATCH") return await update(ctx, claims, ref, req);
      if (method === "DELETE") return json(await withUser(ctx.sql, claims, (tx) => deleteConfig(tx, ref)));
      methodNotAllowed("GET, PATCH, DELETE");
    }
    if (action === "deliverability") {
      if (method !== "GET") methodNotAllowed("GET");
      const config = await withUser(ctx.sql, claims, (tx) => findConfig(tx, ref));
      return json(await checkDeliverability(config.from_email, sendingHost(config)));
    }
    if (action === "verifications") {
      if (method !== "GET") methodNotAllowed("GET");
      return json(
        await withUser(ctx.sql, claims, async (tx) => {
          const config = await findConfig(tx, ref);
          return { config_id: config.id, verifications: await listVerifications(tx, config.id) };
        }),
      );
    }
    if (method !== "POST") methodNotAllowed("POST");
    switch (action) {
      case "verify":
        return await verify(ctx, claims, ref);
      case "default":
        return json(await setFlag(ctx, claims, ref, { is_default: true }));
      case "activate":
        return json(await setFlag(ctx, claims, ref, { is_active: true }));
      case "deactivate":
        return json(await setFlag(ctx, claims, ref, { is_active: false }));
    }
    throw new ApiError(
      404,
      "route_not_found",
      `No action ${JSON.stringify(action)}; use verify, verifications, deliverability, default, activate or deactivate`,
    );
  });
}
