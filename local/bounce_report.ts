/**
 * Delivery status notifications as Postfix writes them (RFC 3464; the layout of the real Postfix
 * bounces in tests/fixtures/dsn), for the local stack: the catcher accepts mail for `bounce-511@…`
 * as a submission server accepts any outside recipient, and then "bounces" it the way the
 * recipient's server would have, into the sender's local IMAP mailbox, so the bounce reader can be
 * seen at work without a real remote server.
 *
 * @module
 */

/** Local parts the catcher accepts and then bounces: `bounce-511@…` (no such user, 5.1.1). */
export const BOUNCING = /^bounce-511(?:[.+_-][^@]*)?@/i;

/**
 * A Postfix-style bounce of `original` (as received) for `recipient`, sent to `sender`.
 *
 * @example
 * ```ts
 * const dsn = bounceReport({ sender: "demo@mailroom.local", recipient: "bounce-511@example.com", original });
 * ```
 */
export function bounceReport(options: {
  sender: string;
  recipient: string;
  original: string;
  reportingMta?: string;
  date?: Date;
}): string {
  const mta = options.reportingMta ?? "catcher.mailroom.local";
  const date = (options.date ?? new Date()).toUTCString().replace("GMT", "+0000 (UTC)");
  const queueId = crypto.randomUUID().replaceAll("-", "").slice(0, 11).toUpperCase();
  const boundary = `${queueId}.${Math.floor(Date.now() / 1000)}/${mta}`;
  const end = options.original.search(/\r?\n\r?\n/);
  const headers = (end >= 0 ? options.original.slice(0, end) : options.original).replace(/\r?\n/g, "\r\n");
  const diagnostic = `550 5.1.1 <${options.recipient}>: Recipient address rejected: User unknown in virtual ` +
    "mailbox table";
  return [
    `Return-Path: <>`,
    `Date: ${date}`,
    `From: Mail Delivery System <MAILER-DAEMON@${mta}>`,
    `Subject: Undelivered Mail Returned to Sender`,
    `To: ${options.sender}`,
    `Auto-Submitted: auto-replied`,
    `MIME-Version: 1.0`,
    `Content-Type: multipart/report; report-type=delivery-status;`,
    `\tboundary="${boundary}"`,
    `Content-Transfer-Encoding: 8bit`,
    `Message-Id: <${queueId}@${mta}>`,
    ``,
    `This is a MIME-encapsulated message.`,
    ``,
    `--${boundary}`,
    `Content-Description: Notification`,
    `Content-Type: text/plain; charset=utf-8`,
    `Content-Transfer-Encoding: 8bit`,
    ``,
    `This is the mail system at host ${mta}.`,
    ``,
    `I'm sorry to have to inform you that your message could not`,
    `be delivered to one or more recipients. It's attached below.`,
    ``,
    `<${options.recipient}>: host mx.example.net[192.0.2.25] said: ${diagnostic} (in reply to RCPT TO command)`,
    ``,
    `--${boundary}`,
    `Content-Description: Delivery report`,
    `Content-Type: message/delivery-status`,
    ``,
    `Reporting-MTA: dns; ${mta}`,
    `X-Postfix-Queue-ID: ${queueId}`,
    `X-Postfix-Sender: rfc822; ${options.sender}`,
    `Arrival-Date: ${date}`,
    ``,
    `Final-Recipient: rfc822; ${options.recipient}`,
    `Original-Recipient: rfc822;${options.recipient}`,
    `Action: failed`,
    `Status: 5.1.1`,
    `Remote-MTA: dns; mx.example.net`,
    `Diagnostic-Code: smtp; ${diagnostic}`,
    ``,
    `--${boundary}`,
    `Content-Description: Undelivered Message Headers`,
    `Content-Type: text/rfc822-headers`,
    `Content-Transfer-Encoding: 8bit`,
    ``,
    headers,
    ``,
    `--${boundary}--`,
    ``,
  ].join("\r\n");
}
