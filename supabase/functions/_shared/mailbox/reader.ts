// Reading bounces back: a config's inbox, from where the last check stopped, for delivery status
// notifications and complaint reports about the owner's messages. The inbox is opened read-only
// (nothing of the user's mail changes) unless the user asked for matched reports to be moved to
// a folder. Everything is done as the owner: the credentials are decrypted for them and the
// reports recorded in their RLS context (private.record_mailbox_reports).
import type { UserClaims } from "../auth.ts";
import type { AppContext } from "../context.ts";
import { withUser } from "../db.ts";
import { ApiError } from "../http.ts";
import { loadImapLogin, MailboxError, recordMailboxError, withMailbox } from "./imap.ts";
import { type DeliveryReport, readReports } from "./reports.ts";
import { deploymentKeys, MAILTO_SUBJECT, verifyUnsubscribeToken } from "../consent/mod.ts";

/** What one check did. */
export interface MailboxCheck {
  /** New messages looked at. */
  checked: number;
  /** Delivery and complaint reports among them. */
  reports: number;
  /** Reports about the owner's own messages (recorded). */
  matched: number;
  /** Unsubscribe requests by mail (the List-Unsubscribe mailto) honoured. */
  unsubscribed: number;
  /** Matched reports (and honoured requests) moved to the processed folder. */
  moved: number;
}

/** Most new messages one check looks at (the rest wait for the next). */
export const MAX_MESSAGES_PER_CHECK = 100;
/**
 * How much of a report is read: its start, where the notification and the delivery status come
 * (the returned message, often whole with its attachments, comes last). Bounds each report's
 * memory and parsing whatever its size, and the check's: at most this times MAX_REPORTS_PER_CHECK.
 */
const REPORT_HEAD_BYTES = 128 * 1024;
const MAX_REPORTS_PER_CHECK = 40;
/** A mailbox read afresh (the first time, or its UIDs were reset): mail from this long before. */
const LOOK_BACK_MS = 2 * 24 * 60 * 60 * 1000;

/**
 * Check one of `owner`'s mailboxes now. A failure is recorded on the settings (`last_error`)
 * and thrown as MailboxError.
 *
 * @throws ApiError 404 `imap_not_configured`; MailboxError with the reason.
 */
export async function checkMailbox(ctx: AppContext, owner: UserClaims, configId: string): Promise<MailboxCheck> {
  const login = await withUser(ctx.sql, owner, (tx) => loadImapLogin(tx, configId));
  if (!login) throw new ApiError(404, "imap_not_configured", "This config has no IMAP settings");
  try {
    return await withMailbox(ctx, login, async ({ client }) => {
      const moving = login.processed_folder !== null;
      const lock = await client.getMailboxLock("INBOX", { readOnly: !moving });
      try {
        const box = client.mailbox;
        const uidValidity = box ? String(box.uidValidity) : null;
        const since = login.uid_validity !== null && login.uid_validity === uidValidity && login.last_uid !== null
          ? BigInt(login.last_uid)
          : null;
        // Read afresh: from a little before the last check (or the settings), never the whole inbox.
        const from = new Date((login.checked_at ?? login.created_at).getTime() - LOOK_BACK_MS);
        const found = since === null
          ? await client.search({ since: from }, { uid: true })
          : await client.search({ uid: `${since + 1n}:*` }, { uid: true });
        let uids = (found || []).filter((uid) => since === null || BigInt(uid) > since).sort((a, b) => a - b)
          .slice(0, MAX_MESSAGES_PER_CHECK);
        // Reports by structure first (cheap), then only their first bytes; unsubscribe requests by subject.
        const candidates: number[] = [];
        const requests: { uid: number; token: string }[] = [];
        if (uids.length > 0) {
          const query = { uid: true, bodyStructure: true, envelope: true };
          for await (const message of client.fetch(uids, query, { uid: true })) {
            if (message.bodyStructure?.type?.toLowerCase() === "multipart/report") candidates.push(message.uid);
            const token = MAILTO_SUBJECT.exec(message.envelope?.subject?.slice(0, 2000) ?? "")?.[1];
            if (token) requests.push({ uid: message.uid, token });
          }
        }
        // Past the report cap, the rest (and all mail after it) waits for the next check.
        if (candidates.length > MAX_REPORTS_PER_CHECK) {
          const lastRead = candidates[MAX_REPORTS_PER_CHECK - 1];
          candidates.length = MAX_REPORTS_PER_CHECK;
          uids = uids.filter((uid) => uid <= lastRead);
        }
        const reports: { uid: number; report: DeliveryReport }[] = [];
        if (candidates.length > 0) {
          const head = { uid: true, source: { start: 0, maxLength: REPORT_HEAD_BYTES } };
          for await (const message of client.fetch(candidates, head, { uid: true })) {
            if (!message.source) continue;
            for (const report of await readReports(message.source)) reports.push({ uid: message.uid, report });
          }
        }
        const lastUid = uids.length > 0 ? String(uids[uids.length - 1]) : login.last_uid;
        const record = (list: DeliveryReport[]) =>
          withUser(ctx.sql, owner, async (tx) => {
            const [row] = await tx<{ matched: number[] }[]>`
              select private.record_mailbox_reports(${configId}::uuid, ${tx.json(list as never)},
                                                    ${uidValidity}::bigint, ${lastUid}::bigint) as matched`;
            return row.matched;
          });
        // Reports the database will not take never hold the mailbox back: the cursor moves on.
        const matched = await record(reports.map((r) => r.report)).catch(async (error) => {
          console.error(JSON.stringify({
            msg: "could not record mailbox reports",
            config_id: configId,
            error: String((error as Error)?.message ?? error).slice(0, 200),
          }));
          return await record([]);
        });
        const honoured = await honourUnsubscribes(ctx, owner, requests.filter((r) => uids.includes(r.uid)));
        const matchedUids = [...new Set([...matched.map((position) => reports[position - 1].uid), ...honoured])];
        if (moving && matchedUids.length > 0) {
          await client.messageMove(matchedUids, login.processed_folder!, { uid: true });
        }
        return {
          checked: uids.length,
          reports: reports.length,
          matched: matched.length,
          unsubscribed: honoured.length,
          moved: moving ? matchedUids.length : 0,
        };
      } finally {
        lock.release();
      }
    });
  } catch (error) {
    if (!(error instanceof MailboxError)) throw error;
    await recordMailboxError(ctx, owner, configId, error);
    throw error;
  }
}

/**
 * Unsubscribe requests that arrived by mail (List-Unsubscribe's mailto: its Subject carries the
 * same signed token as the one-click link): each one signed for this owner puts its address on
 * their suppression list. A forged, altered or another user's token does nothing. Their UIDs.
 */
async function honourUnsubscribes(
  ctx: AppContext,
  owner: UserClaims,
  requests: { uid: number; token: string }[],
): Promise<number[]> {
  if (requests.length === 0) return [];
  const keys = await deploymentKeys(ctx.config);
  const valid: { uid: number; address: string; topic: string | null }[] = [];
  for (const request of requests) {
    const claim = await verifyUnsubscribeToken(keys, request.token);
    if (claim && claim.userId === owner.sub) valid.push({ uid: request.uid, ...claim });
  }
  if (valid.length === 0) return [];
  await withUser(ctx.sql, owner, (tx) =>
    tx`insert into public.suppressions (address, reason, source)
       select lower(v ->> 'address'), 'unsubscribed',
              left(concat('mailto unsubscribe', ' (' || (v ->> 'topic') || ')'), 500)
         from jsonb_array_elements(${tx.json(valid as never)}) v
       on conflict (user_id, address) do nothing`);
  return valid.map((v) => v.uid);
}

/** What the worker's round of mailbox checks did. */
export interface MailboxRound {
  mailboxes: number;
  matched: number;
  failed: number;
}

/**
 * The worker's share: the mailboxes due for a check (each taken until its next check,
 * MAILROOM_MAILBOX_CHECK_SECONDS, so no two workers read one), checked two at a time while there
 * is time. Never throws.
 */
export async function checkDueMailboxes(
  ctx: AppContext,
  options: { deadline: number; limit?: number },
): Promise<MailboxRound> {
  const round: MailboxRound = { mailboxes: 0, matched: 0, failed: 0 };
  let due: { config_id: string; user_id: string }[];
  try {
    due = await ctx.sql<{ config_id: string; user_id: string }[]>`
      select config_id, user_id
        from private.claim_mailbox_checks(${
      options.limit ?? 4
    }, make_interval(secs => ${ctx.config.mailboxCheckSeconds}))`;
  } catch (error) {
    console.error(JSON.stringify({ msg: "could not claim mailbox checks", error: String(error) }));
    return round;
  }
  const next = () => due.shift();
  const worker = async () => {
    for (let item = next(); item && Date.now() < options.deadline; item = next()) {
      round.mailboxes++;
      try {
        const check = await checkMailbox(ctx, { sub: item.user_id, role: "authenticated" }, item.config_id);
        round.matched += check.matched;
      } catch (error) {
        round.failed++;
        // The reason is on the settings; the log says which config (never the credentials).
        console.error(JSON.stringify({
          msg: "mailbox check failed",
          config_id: item.config_id,
          code: error instanceof MailboxError ? error.code : "internal_error",
        }));
      }
    }
  };
  await Promise.all([worker(), worker()]);
  return round;
}
