// What a model should do about a refusal it cannot fix by changing its arguments: the owner's
// guardrails and stop button. A model that reads only "recipient_denied" tends to retry, reword
// or route around it; these words end the loop and send it back to the user. Dependency-free on
// purpose, like calls.ts: `deno task generate` copies it into the TypeScript SDK, so the MCP
// endpoint and the LangChain tools explain a refusal in the same words.

/** Recipients named in the text at most (the error's `details.recipients` has up to 100). */
const NAMED_RECIPIENTS = 20;

/** Only the owner changes guardrails: an agent must not try, whatever token it holds. */
const OWNER_ONLY = "only the account owner can change that, in their own session: do not try to change it yourself";

function recipientDenied(details: Record<string, unknown>): string {
  const recipients = Array.isArray(details.recipients) ? details.recipients.map(String) : [];
  const count = typeof details.count === "number" ? details.count : recipients.length;
  const named = recipients.slice(0, NAMED_RECIPIENTS);
  const more = count > named.length ? ` and ${count - named.length} more` : "";
  const refused = named.length > 0 ? `Refused recipients: ${named.join(", ")}${more}. ` : "";
  return `${refused}The account owner's guardrails refuse mail to them. Do not retry them, in this message or any ` +
    "other, and do not look for another way to reach them. Tell the user that their account's guardrails refuse " +
    `these recipients; ${OWNER_ONLY}. If the user still wants the message sent to the others, send it again ` +
    "without the refused recipients.";
}

function recipientCapExceeded(details: Record<string, unknown>): string {
  const limit = typeof details.limit === "number" ? details.limit : undefined;
  const count = typeof details.count === "number" ? ` (this call had ${details.count})` : "";
  const most = limit === undefined ? "fewer" : `at most ${limit}`;
  return `The account owner's guardrails cap the recipients of one message (to, cc and bcc together; for ` +
    `send_bulk_email, of the whole call)${limit === undefined ? "" : ` at ${limit}`}${count}. Do not repeat this ` +
    `call. Send to ${most} recipients per message, or ask the user how to proceed; ${OWNER_ONLY}.`;
}

function sendingStopped(details: Record<string, unknown>): string {
  const config = details.scope === "config";
  const reason = typeof details.reason === "string" && details.reason !== "" ? details.reason : undefined;
  return `The account owner stopped ${config ? "sending through this SMTP config" : "all sending from this account"}` +
    (reason ? `, giving the reason ${JSON.stringify(reason)}` : "") +
    ". Nothing was sent or queued. Do not retry this send or any other" +
    (config
      ? " through this config, and do not switch to another config to get around the stop unless the user tells you to"
      : "") +
    `. Tell the user that sending is stopped${reason ? " and why" : ""}; only the account owner can lift the stop, ` +
    "in their own session: do not try to lift it yourself.";
}

function agentDailyCapReached(details: Record<string, unknown>): string {
  const limit = typeof details.limit === "number" ? ` of ${details.limit} messages` : "";
  return `Agents have used up the account owner's daily allowance${limit} (counted over the last 24 hours). ` +
    "Nothing was sent or queued. Do not retry now, and do not split or reword the message to get it through. Tell " +
    `the user the daily limit for agents is reached; ${OWNER_ONLY}.`;
}

function duplicateSend(details: Record<string, unknown>): string {
  const earlier = (details.duplicate_of ?? {}) as Record<string, unknown>;
  const when = typeof earlier.created_at === "string" ? ` at ${earlier.created_at}` : "";
  const id = typeof earlier.id === "string" ? ` (message ${earlier.id}, status ${String(earlier.status)})` : "";
  const entries = Array.isArray(details.entries) ? " Every entry of this batch repeats an email sent recently." : "";
  return `This exact email was already ${
    ["scheduled", "queued", "pending_approval"].includes(String(earlier.status)) ? "accepted" : "sent"
  }${when}${id}; it was not sent again.${entries} Do not send it again, reworded or otherwise, unless the user asks ` +
    "for it to go twice. Tell the user it was already sent (list_sent_messages shows it). " +
    "Only if the user explicitly wants a second copy, send it once more with allow_duplicate: true.";
}

const ADVICE = new Map<string, (details: Record<string, unknown>) => string>([
  ["duplicate_send", duplicateSend],
  ["recipient_denied", recipientDenied],
  ["recipient_cap_exceeded", recipientCapExceeded],
  ["sending_stopped", sendingStopped],
  ["agent_daily_cap_reached", agentDailyCapReached],
]);

/**
 * What the model should do about a refusal with this code, or undefined when the code and the
 * server's message say enough (the model fixes its arguments, or retries when `retryable`).
 *
 * @example
 * ```ts
 * refusalAdvice("recipient_denied", { recipients: ["boss@corp.example"], count: 1 });
 * // "Refused recipients: boss@corp.example. The account owner's guardrails refuse mail to them. Do not retry ..."
 * ```
 */
export function refusalAdvice(code: string | undefined, details: Record<string, unknown> = {}): string | undefined {
  const advise = code === undefined ? undefined : ADVICE.get(code);
  return advise?.(details ?? {});
}

/**
 * The server's message followed by {@linkcode refusalAdvice} for its code, as one paragraph
 * (the message alone when there is no advice).
 *
 * @example
 * ```ts
 * withRefusalAdvice("Sending is stopped for this account", "sending_stopped", { scope: "account" });
 * // "Sending is stopped for this account. The account owner stopped all sending from this account. ..."
 * ```
 */
export function withRefusalAdvice(
  message: string,
  code: string | undefined,
  details: Record<string, unknown> = {},
): string {
  const advice = refusalAdvice(code, details);
  if (advice === undefined) return message;
  return `${message}${/[.!?]$/.test(message.trimEnd()) || message.trim() === "" ? "" : "."} ${advice}`.trimStart();
}
