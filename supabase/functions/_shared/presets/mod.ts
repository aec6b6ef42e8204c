// Provider presets: the list `GET /smtp-configs/presets` shows (with whether this deployment can
// reach each provider's SMTP server), and a config created from one (`preset` in the create
// request) that needs only the credentials. A preset this deployment cannot use is refused at
// creation with what to do instead, never discovered later as a timeout.
import { ApiError } from "../http.ts";
import type { EgressPolicy } from "../smtp/egress.ts";
import { PRESET_IDS, PRESETS, type ProviderPreset } from "./providers.ts";

export { PRESET_IDS, PRESETS, type ProviderPreset } from "./providers.ts";

/** A preset as listed: with whether this deployment reaches its SMTP server. */
export interface ListedPreset extends ProviderPreset {
  reachable_here: { smtp: boolean; reason?: string };
}

/** Whether this deployment may connect to the preset's SMTP server, and why not. */
function reachable(policy: EgressPolicy, preset: ProviderPreset): { smtp: boolean; reason?: string } {
  const { port } = preset.smtp;
  if (policy.platformBlockedPorts.has(port)) {
    return { smtp: false, reason: `port ${port} is blocked by the hosting platform (Supabase blocks 25 and 587)` };
  }
  if (!policy.allowedPorts.has(port)) {
    return { smtp: false, reason: `port ${port} is not allowed by this deployment (MAILROOM_SMTP_ALLOWED_PORTS)` };
  }
  return { smtp: true };
}

/**
 * Every preset with its reachability from this deployment.
 *
 * @example
 * ```ts
 * listPresets(ctx.config.egress).find((p) => p.id === "gmail")?.reachable_here; // { smtp: true }
 * ```
 */
export function listPresets(policy: EgressPolicy): ListedPreset[] {
  return PRESETS.map((preset) => ({ ...preset, reachable_here: reachable(policy, preset) }));
}

/**
 * A create request with its preset's server (and sending limits, when the request sets none)
 * filled in under what the request gives itself. The request's own fields always win.
 *
 * @throws ApiError 400 `preset_unknown`; 422 `preset_needs_oauth` (the provider takes no
 *   passwords), 422 `preset_unreachable` (this deployment cannot reach the provider's SMTP
 *   server, and the request does not name another one).
 */
export function applyPreset(raw: unknown, policy: EgressPolicy): unknown {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw) || !("preset" in raw)) return raw;
  const request = raw as Record<string, unknown>;
  const preset = PRESETS.find((p) => p.id === request.preset);
  if (!preset) {
    throw new ApiError(
      400,
      "preset_unknown",
      `No preset ${JSON.stringify(request.preset)}; see GET /smtp-configs/presets`,
      {
        presets: PRESET_IDS,
      },
    );
  }
  const oauth = request.oauth as Record<string, unknown> | undefined;
  if (request.auth_type === "oauth2" || oauth !== undefined) {
    if (!preset.oauth) {
      throw new ApiError(422, "preset_has_no_oauth", `${preset.name} has no OAuth; log in with ${preset.credentials}`, {
        preset: preset.id,
      });
    }
    // An OAuth mailbox sends over the provider's HTTPS API where it has one (it works wherever
    // SMTP ports are blocked): the host is the API's, not the preset's SMTP server.
    const transport = request.transport ?? preset.https_transports[0] ?? "smtp";
    const limits = request.limits ?? presetLimits(preset);
    const oauthRequest = {
      ...request,
      auth_type: "oauth2",
      transport,
      oauth: { provider: preset.oauth.provider, ...(oauth ?? {}) },
      ...(limits ? { limits } : {}),
    };
    // XOAUTH2 over the preset's SMTP server, when that is what was asked for.
    return transport === "smtp" ? { ...oauthRequest, ...presetServer(request, preset, policy) } : oauthRequest;
  }
  if (!preset.auth.some((a) => a !== "oauth2")) {
    throw new ApiError(
      422,
      "preset_needs_oauth",
      `${preset.name} takes no passwords for SMTP (${preset.credentials}): connect it with OAuth, giving ` +
        '"oauth": {"client_id", "refresh_token"} (its transport is then ' +
        `${preset.https_transports[0] ?? "smtp"})` + (preset.note ? `. ${preset.note}` : ""),
      { preset: preset.id },
    );
  }
  const limits = request.limits ?? presetLimits(preset);
  return { ...request, ...presetServer(request, preset, policy), ...(limits ? { limits } : {}) };
}

/** The preset's SMTP server under the request's own fields, or 422 when this deployment cannot reach it. */
function presetServer(
  request: Record<string, unknown>,
  preset: ProviderPreset,
  policy: EgressPolicy,
): Record<string, unknown> {
  const server = {
    host: request.host ?? preset.smtp.host,
    port: request.port ?? (request.host === undefined ? preset.smtp.port : undefined),
    security: request.security ?? (request.host === undefined ? preset.smtp.security : undefined),
  };
  const ownServer = request.host !== undefined || request.port !== undefined;
  const reach = reachable(policy, preset);
  if (!ownServer && !reach.smtp) {
    throw new ApiError(
      422,
      "preset_unreachable",
      `${preset.name}'s SMTP server (${preset.smtp.host}:${preset.smtp.port}) cannot be reached from here: ` +
        `${reach.reason}` + (preset.note ? `. ${preset.note}` : ""),
      { preset: preset.id, port: preset.smtp.port },
    );
  }
  return Object.fromEntries(Object.entries(server).filter(([, v]) => v !== undefined));
}

function presetLimits(preset: ProviderPreset): { per_day?: number; per_minute?: number } | undefined {
  const { per_day, per_minute } = preset.limits;
  if (per_day === undefined && per_minute === undefined) return undefined;
  return { ...(per_day ? { per_day } : {}), ...(per_minute ? { per_minute } : {}) };
}
