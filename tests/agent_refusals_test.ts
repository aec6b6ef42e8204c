// The words a model reads when the owner's guardrails refuse a send (the MCP endpoint and the
// LangChain tools both use them: see tests/mcp_test.ts and tests/langchain_test.ts end to end).
import assert from "node:assert/strict";
import { refusalAdvice, withRefusalAdvice } from "../supabase/functions/_shared/agent/refusals.ts";

Deno.test("refusalAdvice: guardrail refusals say what to do, other codes are left to their message", async (t) => {
  await t.step("recipient_denied names at most 20 refused recipients and counts the rest", () => {
    const recipients = Array.from({ length: 100 }, (_, i) => `r${i}@corp.example`);
    const advice = refusalAdvice("recipient_denied", { recipients, count: 130 })!;
    assert.match(
      advice,
      /^Refused recipients: r0@corp\.example, r1@corp\.example, .*r19@corp\.example and 110 more\. /,
    );
    assert.doesNotMatch(advice, /r20@/);
    assert.match(advice, /Do not retry them/);
  });

  await t.step("details missing or of the wrong type still give whole sentences", () => {
    assert.match(refusalAdvice("recipient_denied")!, /^The account owner's guardrails refuse mail to them\. /);
    assert.match(
      refusalAdvice("recipient_cap_exceeded", { limit: "5" })!,
      /\(to, cc and bcc together; for send_bulk_email, of the whole call\)\. .*Send to fewer recipients/,
    );
    const stopped = refusalAdvice("sending_stopped", { reason: 42 })!;
    assert.match(stopped, /^The account owner stopped all sending from this account\. Nothing was sent or queued\. /);
    assert.doesNotMatch(stopped, /and why/);
  });

  await t.step("a config's stop says not to switch configs to get around it; its reason is quoted", () => {
    const advice = refusalAdvice("sending_stopped", { scope: "config", reason: 'Say "no" to\nnewsletters' })!;
    assert.match(advice, /^The account owner stopped sending through this SMTP config, giving the reason /);
    assert.ok(advice.includes('"Say \\"no\\" to\\nnewsletters"'), advice);
    assert.match(advice, /do not switch to another config to get around the stop unless the user tells you to/);
  });

  await t.step("duplicate_send says it already went, when, and not to send it again unless the user asks", () => {
    const advice = refusalAdvice("duplicate_send", {
      duplicate_of: { id: "6f1c0b2e-3c1a-4a53-9b0e-8a3f6d2e1c44", status: "sent", created_at: "2026-12-07T09:12:03Z" },
      window_seconds: 600,
    })!;
    assert.match(
      advice,
      /^This exact email was already sent at 2026-12-07T09:12:03Z \(message 6f1c0b2e-3c1a-4a53-9b0e-8a3f6d2e1c44, status sent\)/,
    );
    assert.match(advice, /Do not send it again, reworded or otherwise, unless the user asks/);
    assert.match(advice, /allow_duplicate: true/);
    assert.match(
      refusalAdvice("duplicate_send", { duplicate_of: { status: "scheduled" } })!,
      /^This exact email was already accepted;/,
    );
    assert.match(refusalAdvice("duplicate_send")!, /^This exact email was already sent; it was not sent again\./);
  });

  await t.step("other codes, none and inherited property names get nothing", () => {
    for (const code of ["template_data_missing", "rate_limited", undefined, "constructor", "__proto__", "toString"]) {
      assert.equal(refusalAdvice(code, {}), undefined, String(code));
    }
  });
});

Deno.test("withRefusalAdvice: the server's message, then the advice, as one paragraph", () => {
  assert.equal(
    withRefusalAdvice(
      "The guardrails do not allow mail to a@corp.example; nothing was sent or queued",
      "recipient_denied",
      {
        recipients: ["a@corp.example"],
        count: 1,
      },
    ),
    "The guardrails do not allow mail to a@corp.example; nothing was sent or queued. Refused recipients: " +
      "a@corp.example. " + refusalAdvice("recipient_denied")!,
  );
  assert.match(withRefusalAdvice("Stopped.", "sending_stopped", {}), /^Stopped\. The account owner stopped/);
  assert.match(withRefusalAdvice("", "sending_stopped", {}), /^The account owner stopped/);
  assert.equal(
    withRefusalAdvice("Template data is missing name", "template_data_missing", {}),
    "Template data is missing name",
  );
});
