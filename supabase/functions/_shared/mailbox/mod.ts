// The sender's own mailbox over IMAP: its settings, bounces and complaints read back from the
// inbox, and copies of sent mail in the Sent folder.
export { deleteImapSettings, getImapSettings, type ImapSettings, putImapSettings } from "./settings.ts";
export { checkDueMailboxes, checkMailbox, type MailboxCheck, type MailboxRound } from "./reader.ts";
export { copyToSentLater, type SentCopies, sentCopies } from "./sent_copy.ts";
export { MailboxError } from "./imap.ts";
export { type DeliveryReport, readReports } from "./reports.ts";
