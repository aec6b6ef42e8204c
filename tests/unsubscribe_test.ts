// One-click unsubscribe (RFC 8058) against a real stack and a scripted SMTP server: bulk mail
// carries a signed link per recipient, a POST to it (what a mail provider sends) suppresses that
// recipient and the next batch skips them; GET changes nothing; forged, altered, another
// recipient's or another key's tokens are refused; a rotated-in key still accepts the old one's.
import assert from "node:assert/strict";
import { errorCode, startTestStack } from "./harness.ts";
import { startScriptedSmtp } from "./scripted_smtp.ts";
import { signUnsubscribeToken, verifyUnsubscribeToken } from "../supabase/functions/_shared/consent/mod.ts";

const rcptTo = (line: string) => /^RCPT TO:<([^>]+)>/i.exec(line)?.[1];
const OLD_SECRET = "an-old-unsubscribe-secret-of-32-characters";
const NEW_SECRET = "the-new-unsubscribe-secret-of-32-characters";
const key = (secret: string) => new TextEncoder().encode(secret);

/** The List-Unsubscribe link of a received message (its header unfolded). */
function linkOf(data: string): string {
  const head = data.split("\r\n\r\n")[0].replace(/\r\n[ \t]+/g, "");
  const value = /^List-Unsubscribe: *<([^>]+)>/im.exec(head)?.[1];
  assert.ok(value, "the message has a List-Unsubscribe link");
  assert.match(head, /^List-Unsubscribe-Post: List-Unsubscribe=One-Click$/im);
  return value;
}

Deno.test("unsubscribe tokens: signed, bound to their user, address and topic; keys rotate", async () => {
  const claim = { userId: crypto.randomUUID(), address: "ann@example.com", topic: "news" };
  const token = await signUnsubscribeToken([key(NEW_SECRET)], claim);
  assert.deepEqual(await verifyUnsubscribeToken([key(NEW_SECRET)], token), claim);
  // Signed with the old key: accepted while the old key is still listed after the new one.
  const old = await signUnsubscribeToken([key(OLD_SECRET)], claim);
  assert.deepEqual(await verifyUnsubscribeToken([key(NEW_SECRET), key(OLD_SECRET)], old), claim);
  assert.equal(await verifyUnsubscribeToken([key(NEW_SECRET)], old), null, "an unlisted key's token");
  // Another recipient's address (or user, or topic) under the same signature.
  const [version, , signature] = token.split(".");
  for (const other of [[claim.userId, "bob@example.com", "news"], [crypto.randomUUID(), claim.address, "news"]]) {
    const payload = new TextEncoder().encode(JSON.stringify(other)).toBase64({
      alphabet: "base64url",
      omitPadding: true,
    });
    assert.equal(await verifyUnsubscribeToken([key(NEW_SECRET)], `${version}.${payload}.${signature}`), null);
  }
  const flipped = token.slice(0, -1) + (token.endsWith("A") ? "B" : "A");
  for (const bad of [flipped, token.slice(0, -4), "", "u1..", `${token}.x`, "x".repeat(5000)]) {
    assert.equal(await verifyUnsubscribeToken([key(NEW_SECRET)], bad), null, bad.slice(0, 40));
  }
});

Deno.test({
  name: "one-click unsubscribe end to end",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const stack = await startTestStack({
      MAILROOM_ALLOW_PLAINTEXT_SMTP: "true",
      MAILROOM_UNSUBSCRIBE_SECRETS: `${NEW_SECRET},${OLD_SECRET}`,
    });
    const smtp = await startScriptedSmtp({});
    const attempted = () => smtp.transcript().map(rcptTo).filter((a): a is string => a !== undefined);
    try {
      const owner = await stack.createUser();
      await stack.createConfig(owner, { name: "main", port: smtp.port, security: "none", username: null });
      const bulk = async (recipients: string[], extra: Record<string, unknown> = {}) => {
        const res = await stack.invoke("send-bulk", {
          token: owner.token,
          body: { subject: "News", text: "Hello", recipients, ...extra },
        });
        assert.equal(res.status, 202, await res.clone().text());
        await stack.drainOutbox();
      };
      const post = (url: string) =>
        fetch(url, {
          method: "POST",
          headers: { "content-type": "application/x-www-form-urlencoded" },
          body: "List-Unsubscribe=One-Click",
        });

      let annLink = "";
      await t.step("bulk mail carries a signed link per recipient", async () => {
        await bulk(["ann@example.com", "ben@example.com"]);
        const byRecipient = new Map(smtp.messages().map((m) => [m.rcptTo[0], linkOf(m.data)]));
        annLink = byRecipient.get("ann@example.com")!;
        assert.ok(annLink.startsWith(`${stack.url}/functions/v1/unsubscribe?token=u1.`), annLink);
        assert.notEqual(annLink, byRecipient.get("ben@example.com"));
      });

      await t.step("GET only explains; POST unsubscribes, and the next batch skips the address", async () => {
        const look = await fetch(annLink);
        assert.equal(look.status, 200);
        assert.match(await look.text(), /unsubscribes ann@example\.com/);
        const listed = async () =>
          (await stack.sql<{ address: string; reason: string }[]>`
            select address, reason from public.suppressions where user_id = ${owner.id}`).map((r) =>
            `${r.address} ${r.reason}`
          );
        assert.deepEqual(await listed(), [], "opening the link changes nothing");
        const done = await post(annLink);
        assert.equal(done.status, 200, await done.clone().text());
        assert.match(await done.text(), /ann@example\.com is unsubscribed/);
        assert.deepEqual(await listed(), ["ann@example.com unsubscribed"]);
        assert.equal((await post(annLink)).status, 200, "twice is fine");
        const before = attempted().length;
        await bulk(["ann@example.com", "ben@example.com"], { subject: "More news" });
        assert.deepEqual(attempted().slice(before), ["ben@example.com"]);
      });

      await t.step("altered, another recipient's and another key's links are refused; nothing changes", async () => {
        const url = new URL(annLink);
        const token = url.searchParams.get("token")!;
        const [version, , signature] = token.split(".");
        const benPayload = new TextEncoder().encode(JSON.stringify([owner.id, "ben@example.com", null]))
          .toBase64({ alphabet: "base64url", omitPadding: true });
        const foreign = await signUnsubscribeToken([key("a-key-this-deployment-has-never-heard-of-at-all")], {
          userId: owner.id,
          address: "ben@example.com",
          topic: null,
        });
        for (const bad of [`${version}.${benPayload}.${signature}`, token.slice(0, -2), foreign, ""]) {
          const res = await post(`${stack.url}/functions/v1/unsubscribe?token=${encodeURIComponent(bad)}`);
          assert.equal(await errorCode(res, 400), "invalid_unsubscribe_token", bad.slice(0, 30));
        }
        const [{ n }] = await stack.sql<{ n: number }[]>`
          select count(*)::integer as n from public.suppressions where address = 'ben@example.com'`;
        assert.equal(n, 0);
      });

      await t.step("a link signed with the old key still works after the new one was rotated in", async () => {
        const old = await signUnsubscribeToken([key(OLD_SECRET)], {
          userId: owner.id,
          address: "cal@example.com",
          topic: null,
        });
        assert.equal((await post(`${stack.url}/functions/v1/unsubscribe?token=${old}`)).status, 200);
      });

      await t.step("send-email offers it on request, for one recipient and a topic", async () => {
        const refused = await stack.invoke("send-email", {
          token: owner.token,
          body: { to: ["dee@example.com", "eve@example.com"], subject: "x", text: "y", unsubscribe: true },
        });
        assert.equal(await errorCode(refused, 400), "invalid_request");
        const sent = await stack.invoke("send-email", {
          token: owner.token,
          body: { to: "dee@example.com", subject: "x", text: "y", unsubscribe: { topic: "weekly digest" } },
        });
        assert.equal(sent.status, 200, await sent.clone().text());
        const link = linkOf(smtp.messages().at(-1)!.data);
        assert.equal((await post(link)).status, 200);
        const [row] = await stack.sql<{ source: string }[]>`
          select source from public.suppressions where address = 'dee@example.com'`;
        assert.equal(row.source, "one-click unsubscribe (weekly digest)");
        // Bulk mail without it, when asked.
        await bulk(["fay@example.com"], { unsubscribe: false });
        assert.ok(!/List-Unsubscribe/i.test(smtp.messages().at(-1)!.data.split("\r\n\r\n")[0]));
      });
    } finally {
      await smtp.close();
      await stack.close();
    }
  },
});
