// Sending webhook events, the outbox worker's share: due deliveries are claimed (leased, so no two
// workers send one), POSTed to their endpoint through the egress policy (public addresses only,
// the address checked is the address connected to, no redirects), signed per Standard Webhooks,
// and recorded: a 2xx ends a delivery; anything else is retried on Standard Webhooks' schedule,
// and a webhook that keeps failing is disabled with the reason (private.record_webhook_deliveries).
import type { AppContext } from "../context.ts";
import { destination, pinnedRequest } from "../egress/pinned_https.ts";
import { resolveHttpsUrl, WEBHOOK_URL } from "../smtp/egress.ts";
import { signatureHeaders } from "./signing.ts";

/**
 * Deliveries one claim takes, how many webhooks are served at once (each one's events in order),
 * and how many claims one run makes at most. A claim's worst case (a webhook's first event times
 * out, its others wait for the next run) stays well inside its 120 s lease, and a claim starts
 * only with CLAIM_TIME_MS of the run left.
 */
const PER_CLAIM = 32;
const CONCURRENCY = 8;
const MAX_CLAIMS = 10;
const CLAIM_TIME_MS = 25_000;
/** How long a receiver has to answer, and its name to resolve. */
const TIMEOUT_MS = 10_000;
const DNS_TIMEOUT_MS = 5_000;
/** What of an answer is read (receivers answer briefly; a larger one is not a delivery). */
const MAX_ANSWER_BYTES = 1024 * 1024;

interface Due {
  id: string;
  webhook_id: string;
  url: string;
  secret: string | null;
  previous_secret: string | null;
  event_type: string;
  payload: Record<string, unknown>;
  attempts: number;
}

interface Result {
  id: string;
  ok: boolean;
  status?: number;
  error?: string;
  /** Not tried (the run ran out of time): it goes back as it was, no attempt counted. */
  skipped?: boolean;
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
  for (
    let claim = 0;
    claim < MAX_CLAIMS && options.deadline - Date.now() > CLAIM_TIME_MS && !options.stop?.();
    claim++
  ) {
    if (await deliverClaim(ctx, options.deadline, round) < PER_CLAIM) break;
  }
  return round;
}

/** One claim's deliveries, sent and recorded; how many it held. */
async function deliverClaim(ctx: AppContext, deadline: number, round: DeliveryRound): Promise<number> {
  let due: Due[];
  try {
    due = await ctx.sql<Due[]>`
      select id, webhook_id, url, secret, previous_secret, event_type, payload, attempts
        from private.claim_webhook_deliveries(${PER_CLAIM}) order by created_at, id`;
  } catch (error) {
    console.error(JSON.stringify({ msg: "could not claim webhook deliveries", error: String(error) }));
    return 0;
  }
  const held = due.length;
  if (held === 0) return 0;
  const results: Result[] = [];
  // Each webhook's events one after another, oldest first (a receiver sees them in order, but
  // for retries); different webhooks at once.
  const queues = new Map<string, Due[]>();
  for (const item of due) queues.set(item.webhook_id, [...(queues.get(item.webhook_id) ?? []), item]);
  const waiting = [...queues.values()];
  const sender = async () => {
    for (let queue = waiting.shift(); queue; queue = waiting.shift()) {
      // After a failure, the rest of this webhook's events wait (untried, uncharged): its receiver
      // is not answering now, and the next run tries again in order.
      let failing = false;
      for (const item of queue) {
        const result = Date.now() < deadline && !failing
          ? await deliver(ctx, item)
          : { id: item.id, ok: false, skipped: true };
        if (!result.ok && !result.skipped) failing = true;
        results.push(result);
        if (result.ok) round.delivered++;
        else if (!result.skipped) round.failed++;
      }
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
    const endpoint = await resolveHttpsUrl(ctx.config.egress, WEBHOOK_URL, item.url, { timeoutMs: DNS_TIMEOUT_MS });
    const body = JSON.stringify(item.payload);
    const id = `msg_${item.id}`;
    const secrets = item.previous_secret ? [item.secret, item.previous_secret] : [item.secret];
    const headers = await signatureHeaders(secrets, id, Math.floor(Date.now() / 1000), body);
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
