// A copy of each sent message in the sender's own Sent folder, so they see what an agent sent
// in their mail client: the exact bytes the SMTP server received, appended and flagged \Seen.
// One IMAP session per batch of copies, opened at the first one. A copy that fails is recorded
// on the message (`sent_copy: {status: "failed", error}`): the message stays `sent`, nothing is
// ever resent for it.
import type { UserClaims } from "../auth.ts";
import type { AppContext } from "../context.ts";
import { withUser } from "../db.ts";
import {
  type ImapLogin,
  loadImapLogin,
  mailboxFailure,
  type MailboxSession,
  openMailbox,
  recordMailboxError,
} from "./imap.ts";

/** Names a Sent folder goes by where the server marks none `\Sent`. */
const SENT_NAMES = [
  "sent",
  "sent items",
  "sent messages",
  "sent mail",
  "inbox.sent",
  "inbox/sent",
  "[gmail]/sent mail",
];

/**
 * Copies waiting or in flight at once (each holds a whole message). Sending never waits for the
 * mailbox: a copy beyond these is not made, and recorded as such.
 */
const MAX_PENDING = 4;

/** Copies of one config's sent messages, made in order over one session. */
export interface SentCopies {
  /** Queue the copy of a sent message (its audit row's id and its raw bytes); never waits. */
  add(auditId: string, raw: Uint8Array): void;
  /** Wait for every copy, log out and record how each went. Never throws. */
  finish(): Promise<void>;
}

/** The folder to append to: the configured one, else `\Sent`, else a usual name. */
async function sentFolder(session: MailboxSession, login: ImapLogin): Promise<string> {
  if (login.sent_folder) return login.sent_folder;
  const folders = await session.client.list();
  const flagged = folders.find((f) => f.specialUse === "\\Sent");
  if (flagged) return flagged.path;
  const named = folders.find((f) => SENT_NAMES.includes(f.path.toLowerCase()));
  if (named) return named.path;
  throw new Error("no Sent folder (none is marked \\Sent and none is named Sent); set sent_folder");
}

/**
 * Copies for `configId`'s sent messages, made as `owner`. The session opens at the first copy;
 * when it cannot (the server down, the login refused), every copy is recorded as failed with why.
 */
export function sentCopies(
  ctx: AppContext,
  owner: UserClaims,
  configId: string,
  options: { deadline?: number } = {},
): SentCopies {
  const results: { id: string; status: "copied" | "failed"; folder?: string; error?: string }[] = [];
  let opening: Promise<{ session: MailboxSession; folder: string } | { error: string }> | undefined;
  let chain: Promise<void> = Promise.resolve();
  let pending = 0;
  let login: ImapLogin | null = null;

  const open = () =>
    opening ??= (async () => {
      try {
        login = await withUser(ctx.sql, owner, (tx) => loadImapLogin(tx, configId));
        if (!login) return { error: "the config has no IMAP settings any more" };
        // Refused before: not tried again (each try counts against the account) until fixed.
        if (login.last_error_code === "imap_auth_failed") {
          return { error: "not copied: the IMAP server refused the login; fix the IMAP settings' password" };
        }
        const session = await openMailbox(ctx, login);
        try {
          return { session, folder: await sentFolder(session, login) };
        } catch (error) {
          await session.logout();
          throw error;
        }
      } catch (error) {
        if (!login) return { error: String((error as Error)?.message ?? error) };
        const failure = mailboxFailure(error, login);
        if (failure.code === "imap_auth_failed") await recordMailboxError(ctx, owner, configId, failure);
        return { error: failure.message };
      }
    })();

  const copy = async (id: string, raw: Uint8Array) => {
    if (options.deadline !== undefined && Date.now() > options.deadline) {
      results.push({ id, status: "failed", error: "not copied: the worker ran out of time" });
      return;
    }
    const opened = await open();
    if ("error" in opened) {
      results.push({ id, status: "failed", error: opened.error });
      return;
    }
    try {
      await opened.session.client.append(opened.folder, raw as never, ["\\Seen"]);
      results.push({ id, status: "copied", folder: opened.folder });
    } catch (error) {
      results.push({ id, status: "failed", error: mailboxFailure(error, login!).message });
    }
  };

  return {
    add(auditId, raw) {
      if (pending >= MAX_PENDING) {
        results.push({ id: auditId, status: "failed", error: "not copied: the IMAP server was slower than sending" });
        return;
      }
      pending++;
      chain = chain.then(() => copy(auditId, raw)).catch(() => {}).finally(() => pending--);
    },
    async finish() {
      await chain;
      const opened = opening ? await opening : undefined;
      if (opened && "session" in opened) await opened.session.logout();
      if (results.length === 0) return;
      await withUser(ctx.sql, owner, (tx) => tx`select private.record_sent_copies(${tx.json(results as never)})`)
        .catch((error) =>
          console.error(JSON.stringify({ msg: "could not record sent copies", error: String(error?.message ?? error) }))
        );
    },
  };
}

interface EdgeRuntimeGlobal {
  EdgeRuntime?: { waitUntil(promise: Promise<unknown>): void };
}

/**
 * Copy one message sent by send-email to Sent without keeping its caller waiting: after the
 * response, which Supabase's Edge Runtime allows through EdgeRuntime.waitUntil (elsewhere the
 * process simply goes on). Its outcome lands on the audit row's `sent_copy`.
 */
export function copyToSentLater(
  ctx: AppContext,
  owner: UserClaims,
  configId: string,
  auditId: string,
  raw: Uint8Array,
): void {
  const copies = sentCopies(ctx, owner, configId);
  copies.add(auditId, raw);
  const work = copies.finish().catch((error) =>
    console.error(JSON.stringify({ msg: "sent copy failed", error: String(error?.message ?? error) }))
  );
  (globalThis as EdgeRuntimeGlobal).EdgeRuntime?.waitUntil(work);
}
