// Sending webhook events, the outbox worker's share: due deliveries are claimed (leased, so no two
// workers send one), POSTed to their endpoint through the egress policy (public addresses only,
// the address checked is the address connected to, no redirects), signed per Standard Webhooks,
// and recorded: a 2xx ends a delivery; anything else is retried on Standard Webhooks' schedule,
// and a webhook that keeps failing is disabled with the reason (private.record_webhook_deliveries).
import type { AppContext } from "../context.ts";
import { destination, pinnedRequest } from "../egress/pinned_https.ts";
import { resolveHttpsUrl, WEBHOOK_URL } from "../smtp/egress.ts";
import { signatureHeaders } from "./signing.ts";

/** Deliveries one claim takes, how many go at once, and how many claims one run makes at most. */
const PER_CLAIM = 100;
const CONCURRENCY = 8;
const MAX_CLAIMS = 5;
/** How long a receiver has to answer. */
const TIMEOUT_MS = 10_000;
/** What of an answer is read (receivers answer briefly; more is not needed to judge 2xx). */
const MAX_ANSWER_BYTES = 64 * 1024;

interface Due {
  id: string;
  webhook_id: string;
  url: string;
  secret: string | null;
  event_type: string;
  payload: Record<string, unknown>;
  attempts: number;
}

interface Result {
  id: string;
  ok: boolean;
  status?: number;
  error?: string;
}

/** What a run of deliveries did. */
export interface DeliveryRound {
  delivered: number;
  failed: number;
}

/**
 * Deliver what is due while there is time. Never throws (a failure is recorded on its delivery,
 * or, when the database is unreachable, the lease runs out and the delivery is sent again later).
 */
export async function deliverWebhooks(
  ctx: AppContext,
  options: { deadline: number; stop?: () => boolean },
): Promise<DeliveryRound> {
  const round: DeliveryRound = { delivered: 0, failed: 0 };
  for (let claim = 0; claim < MAX_CLAIMS && Date.now() < options.deadline && !options.stop?.(); claim++) {
    if (await deliverClaim(ctx, options.deadline, round) < PER_CLAIM) break;
  }
  return round;
}

/** One claim's deliveries, sent and recorded; how many it held. */
async function deliverClaim(ctx: AppContext, deadline: number, round: DeliveryRound): Promise<number> {
  let due: Due[];
  try {
    due = await ctx.sql<Due[]>`
      select id, webhook_id, url, secret, event_type, payload, attempts
        from private.claim_webhook_deliveries(${PER_CLAIM})`;
  } catch (error) {
    console.error(JSON.stringify({ msg: "could not claim webhook deliveries", error: String(error) }));
    return 0;
  }
  const held = due.length;
  if (held === 0) return 0;
  const results: Result[] = [];
  const next = () => due.shift();
  const sender = async () => {
    for (let item = next(); item; item = next()) {
      const result = Date.now() < deadline
        ? await deliver(ctx, item)
        : { id: item.id, ok: false, error: "not sent: the worker ran out of time" };
      results.push(result);
      if (result.ok) round.delivered++;
      else round.failed++;
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, sender));
  await ctx.sql`select private.record_webhook_deliveries(${ctx.sql.json(results as never)})`.catch((error) =>
    console.error(JSON.stringify({ msg: "could not record webhook deliveries", error: String(error) }))
  );
  return held;
}

/** One POST: the event as JSON, signed; its outcome (the error names where, never what came back). */
async function deliver(ctx: AppContext, item: Due): Promise<Result> {
  if (!item.secret) return { id: item.id, ok: false, error: "the webhook has no signing secret" };
  try {
    const endpoint = await resolveHttpsUrl(ctx.config.egress, WEBHOOK_URL, item.url, { timeoutMs: TIMEOUT_MS });
    const body = JSON.stringify(item.payload);
    const id = `msg_${item.id}`;
    const headers = await signatureHeaders(item.secret, id, Math.floor(Date.now() / 1000), body);
    try {
      const res = await pinnedRequest(endpoint, {
        method: "POST",
        headers: { ...headers, "content-type": "application/json", "user-agent": "mailroom-webhooks" },
        body,
      }, { maxResponseBytes: MAX_ANSWER_BYTES, timeoutMs: TIMEOUT_MS, caCerts: ctx.config.oauth.caCerts });
      await res.body?.cancel();
      const ok = res.status >= 200 && res.status < 300;
      return {
        id: item.id,
        ok,
        status: res.status,
        ...(ok ? {} : { error: `${destination(endpoint)} answered HTTP ${res.status}` }),
      };
    } catch (error) {
      return { id: item.id, ok: false, error: String((error as Error)?.message ?? error).slice(0, 300) };
    }
  } catch (error) {
    // The egress policy refused the URL (it resolves to a private address now, say).
    return { id: item.id, ok: false, error: String((error as Error)?.message ?? error).slice(0, 300) };
  }
}
