// The deliverability check of a config's From domain: SPF (present, one record, naming the
// sending provider) and DMARC, in plain words. DNS answers come from a scripted resolver (no DNS
// here, a stand-in named as such); through the function, a domain under .invalid (which never
// resolves, RFC 2606) shows the words a user gets for a domain without either record.
import assert from "node:assert/strict";
import { checkDeliverability, type TxtResolver } from "../supabase/functions/_shared/deliverability/mod.ts";
import { startTestStack, userWithCatcher } from "./harness.ts";

/** A scripted resolver: TXT records by name; a name missing is NXDOMAIN (no records). */
function scripted(records: Record<string, string[]>): TxtResolver {
  return (name) => Promise.resolve(records[name] ?? []);
}

Deno.test("deliverability from SPF and DMARC", async (t) => {
  await t.step("SPF naming the provider and a DMARC policy: likely inbox", async () => {
    const report = await checkDeliverability(
      "me@acme.example",
      "smtp.sendgrid.net",
      scripted({
        "acme.example": ["v=spf1 include:sendgrid.net ~all", "google-site-verification=x"],
        "_dmarc.acme.example": ["v=DMARC1; p=quarantine; rua=mailto:d@acme.example"],
      }),
    );
    assert.equal(report.verdict, "likely_inbox");
    assert.deepEqual(report.spf, {
      found: true,
      record: "v=spf1 include:sendgrid.net ~all",
      covers_provider: true,
      provider: "SendGrid",
    });
    assert.equal(report.dmarc.policy, "quarantine");
    assert.deepEqual(report.hints, []);
  });

  await t.step("SPF without the provider: says which include to add", async () => {
    const report = await checkDeliverability(
      "me@acme.example",
      "graph.microsoft.com",
      scripted({
        "acme.example": ["v=spf1 include:_spf.google.com -all"],
        "_dmarc.acme.example": ["v=DMARC1; p=none"],
      }),
    );
    assert.equal(report.verdict, "may_land_in_spam");
    assert.equal(report.spf.covers_provider, false);
    assert.ok(report.hints.some((h) => h.includes("include:spf.protection.outlook.com")), report.hints.join("\n"));
  });

  await t.step("no SPF, no DMARC: both records spelled out", async () => {
    const report = await checkDeliverability("me@acme.example", "smtp.gmail.com", scripted({}));
    assert.equal(report.verdict, "may_land_in_spam");
    assert.ok(report.hints.some((h) => h.includes('"v=spf1 include:_spf.google.com ~all"')));
    assert.ok(report.hints.some((h) => h.includes("_dmarc.acme.example") && h.includes("v=DMARC1")));
  });

  await t.step("two SPF records are an error; +all lets anyone send", async () => {
    const two = await checkDeliverability(
      "a@b.example",
      "smtp.fastmail.com",
      scripted({ "b.example": ["v=spf1 -all", "v=spf1 include:spf.messagingengine.com -all"] }),
    );
    assert.ok(two.hints.some((h) => /2 SPF records/.test(h)));
    assert.equal(two.verdict, "may_land_in_spam");
    const open = await checkDeliverability(
      "a@b.example",
      "smtp.example.net",
      scripted({ "b.example": ["v=spf1 +all"], "_dmarc.b.example": ["v=DMARC1; p=reject"] }),
    );
    assert.equal(open.spf.covers_provider, null, "an unknown provider: cannot tell");
    assert.ok(open.hints.some((h) => /\+all/.test(h)));
  });

  await t.step("a mailbox provider's own domain is the provider's business", async () => {
    const report = await checkDeliverability(
      "me@gmail.com",
      "smtp.gmail.com",
      () => Promise.reject(new Error("unused")),
    );
    assert.equal(report.verdict, "likely_inbox");
  });

  await t.step("DNS that cannot be asked, or is slow, is unknown: never a failure", async () => {
    const down = await checkDeliverability(
      "me@acme.example",
      "smtp.gmail.com",
      () => Promise.reject(new Error("SERVFAIL")),
    );
    assert.deepEqual([down.checked, down.verdict], [false, "unknown"]);
    const slow = await checkDeliverability(
      "me@acme.example",
      "smtp.gmail.com",
      () => new Promise((resolve) => setTimeout(() => resolve([]), 1_000)),
      50,
    );
    assert.deepEqual([slow.checked, slow.verdict], [false, "unknown"]);
  });
});

Deno.test({
  name: "deliverability through smtp-configs: in verify's answer and on its own",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const stack = await startTestStack({});
    const { user, smtp } = await userWithCatcher(stack);
    try {
      await stack
        .sql`update public.user_smtp_configs set from_email = 'agent@mailroom.invalid' where user_id = ${user.id}`;
      const verified = await stack.invoke("smtp-configs/catcher/verify", { token: user.token, method: "POST" });
      const answer = await verified.json();
      assert.equal(verified.status, 200, JSON.stringify(answer));
      assert.equal(answer.deliverability.domain, "mailroom.invalid");
      const alone = await stack.invoke("smtp-configs/catcher/deliverability", { token: user.token, method: "GET" });
      const report = await alone.json();
      assert.equal(alone.status, 200);
      assert.equal(report.domain, "mailroom.invalid");
      assert.ok(["may_land_in_spam", "unknown"].includes(report.verdict), report.verdict);
      assert.ok(report.hints.length > 0);
      const other = await stack.createUser();
      const hidden = await stack.invoke("smtp-configs/catcher/deliverability", { token: other.token, method: "GET" });
      assert.equal(hidden.status, 404);
      await hidden.body?.cancel();
    } finally {
      await smtp.close();
      await stack.close();
    }
  },
});
