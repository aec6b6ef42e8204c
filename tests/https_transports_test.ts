// Microsoft Graph sendMail and the Gmail API's send, over real HTTP against the local stand-in
// of both (named as such in local/oauth_standin.ts): the MIME we build arrives byte for byte,
// Bcc recipients get it without anyone seeing them, a refused token is refreshed once, and
// every answer maps onto the SMTP outcome model (accepted, deferred with Retry-After, failed).
import assert from "node:assert/strict";
import { startOAuthStandin } from "../local/oauth_standin.ts";
import { buildMessage } from "../supabase/functions/_shared/mail/message.ts";
import { DEFAULT_LIMITS } from "../supabase/functions/_shared/mail/compose.ts";
import { AccessTokenCache, refreshAccessToken } from "../supabase/functions/_shared/oauth/mod.ts";
import {
  GRAPH_MAX_MESSAGE_BYTES,
  type HttpsMessage,
  sendOverHttps,
  type TokenSource,
  withBccHeader,
} from "../supabase/functions/_shared/transports/mod.ts";

const CLIENT = { clientId: "client-1", clientSecret: "client-secret-value" };

Deno.test("HTTPS send APIs: Graph sendMail and the Gmail API", async (t) => {
  const standin = await startOAuthStandin();
  const endpoints = { graphUrl: standin.graphUrl, gmailUrl: standin.gmailUrl };
  const grant = (refreshToken: string, scopes: string[]) =>
    standin.addGrant({ ...CLIENT, refreshToken, scopes, mailbox: "me@contoso.example" });
  grant("graph-rt", ["https://graph.microsoft.com/Mail.Send", "offline_access"]);
  grant("gmail-rt", ["https://www.googleapis.com/auth/gmail.send"]);
  const issued: string[] = [];
  const tokensFor = (refreshToken: string): TokenSource => {
    const cache = new AccessTokenCache();
    const key = refreshToken;
    return {
      get: () =>
        cache.get(key, async () => {
          const token = await refreshAccessToken({ tokenUrl: standin.tokenUrl, ...CLIENT, refreshToken }, {
            allowHttp: true,
          });
          issued.push(token.accessToken);
          return token;
        }),
      invalidate: (token) => cache.invalidate(key, token),
    };
  };
  const built = await buildMessage({
    from: { address: "me@contoso.example", name: "Me" },
    to: [{ address: "to@example.com" }],
    cc: [{ address: "cc@example.com" }],
    bcc: [{ address: "hidden@example.com" }],
    subject: "Quarterly numbers",
    text: "Attached.",
    attachments: [{ filename: "n.bin", content: new Uint8Array(2048).map((_, i) => i % 256) as never }],
  }, DEFAULT_LIMITS);
  const message: HttpsMessage = {
    raw: new Uint8Array(built.raw),
    messageId: built.messageId,
    envelope: built.envelope,
    bcc: built.recipients.bcc.map((a) => a.address),
  };
  const noSecrets = (value: unknown) => {
    const text = JSON.stringify(value);
    for (const secret of [...issued, "graph-rt", "gmail-rt", CLIENT.clientSecret]) {
      assert.ok(!text.includes(secret), `no secret in ${text.slice(0, 200)}`);
    }
  };

  try {
    for (const transport of ["graph", "gmail_api"] as const) {
      await t.step(`${transport}: the built MIME arrives byte for byte; Bcc recipients get it unseen`, async () => {
        const before = standin.deliveries.length;
        const report = await sendOverHttps(
          transport,
          message,
          tokensFor(transport === "graph" ? "graph-rt" : "gmail-rt"),
          { endpoints },
        );
        assert.equal(report.status, "sent", JSON.stringify(report));
        assert.deepEqual(report.recipients.map((r) => [r.address, r.status]), [
          ["to@example.com", "accepted"],
          ["cc@example.com", "accepted"],
          ["hidden@example.com", "accepted"],
        ]);
        const delivery = standin.deliveries[before];
        assert.equal(delivery.via, transport === "graph" ? "graph" : "gmail");
        assert.deepEqual(delivery.sent, withBccHeader(message.raw, ["hidden@example.com"]));
        assert.deepEqual(delivery.delivered, message.raw, "recipients get exactly what we built");
        assert.ok(!new TextDecoder().decode(delivery.delivered).includes("hidden@example.com"));
        assert.deepEqual(delivery.rcptTo.sort(), ["cc@example.com", "hidden@example.com", "to@example.com"]);
        noSecrets(report);
      });
    }

    await t.step("gmail_api: a message over 3 MiB goes by media upload, byte for byte", async () => {
      const big = new Uint8Array(4 * 1024 * 1024 + 17).map((_, i) => 65 + (i % 26));
      const raw = new TextEncoder().encode("From: me@contoso.example\r\nTo: to@example.com\r\nSubject: big\r\n\r\n");
      const whole = new Uint8Array(raw.byteLength + big.byteLength);
      whole.set(raw);
      whole.set(big, raw.byteLength);
      const report = await sendOverHttps("gmail_api", { ...message, raw: whole, bcc: [] }, tokensFor("gmail-rt"), {
        endpoints,
      });
      assert.equal(report.status, "sent");
      assert.deepEqual(standin.deliveries.at(-1)!.sent, whole);
    });

    await t.step("a token the API refuses is refreshed once; a second refusal pauses, it does not loop", async () => {
      const tokens = tokensFor("graph-rt");
      const refreshes = standin.counts.token;
      standin.script({ endpoint: "graph", status: 401, body: { error: { code: "InvalidAuthenticationToken" } } });
      const once = await sendOverHttps("graph", message, tokens, { endpoints });
      assert.equal(once.status, "sent");
      assert.equal(standin.counts.token - refreshes, 2, "the first token, then one fresh one");

      const graphCalls = standin.counts.graph;
      standin.script(
        { endpoint: "graph", status: 401 },
        { endpoint: "graph", status: 401 },
      );
      const twice = await sendOverHttps("graph", message, tokensFor("graph-rt"), { endpoints });
      assert.equal(standin.counts.graph - graphCalls, 2);
      assert.equal(twice.status, "failed");
      assert.equal(twice.failure?.code, "oauth_token_rejected");
      assert.equal(twice.failure?.retryable, false);
      noSecrets(twice);
    });

    await t.step("throttling and outages are deferred with the provider's Retry-After", async () => {
      standin.script({
        endpoint: "graph",
        status: 429,
        retryAfter: "17",
        body: { error: { code: "ApplicationThrottled" } },
      });
      const throttled = await sendOverHttps("graph", message, tokensFor("graph-rt"), { endpoints });
      assert.deepEqual(
        [throttled.status, throttled.failure?.code, throttled.failure?.retryable, throttled.failure?.retryAfterSeconds],
        ["deferred", "provider_throttled", true, 17],
      );
      assert.ok(throttled.recipients.every((r) => r.status === "deferred"));
      // Gmail says "rate limit" with a 403 and a reason, not always with 429.
      standin.script({
        endpoint: "gmail",
        status: 403,
        body: { error: { code: 403, errors: [{ reason: "userRateLimitExceeded" }], status: "PERMISSION_DENIED" } },
      });
      const gmailLimit = await sendOverHttps("gmail_api", message, tokensFor("gmail-rt"), { endpoints });
      assert.deepEqual([gmailLimit.status, gmailLimit.failure?.code], ["deferred", "provider_throttled"]);
      // A gateway error may come after the provider took the message: unknown, never resent.
      standin.script({ endpoint: "graph", status: 504 });
      const maybe = await sendOverHttps("graph", message, tokensFor("graph-rt"), { endpoints });
      assert.deepEqual([maybe.status, maybe.failure?.code, maybe.failure?.retryable], [
        "unknown",
        "provider_outcome_unknown",
        false,
      ]);
      assert.ok(maybe.recipients.every((r) => r.status === "unknown"));
      standin.script({ endpoint: "gmail", status: 503, retryAfter: "5" });
      const down = await sendOverHttps("gmail_api", message, tokensFor("gmail-rt"), { endpoints });
      assert.deepEqual([down.status, down.failure?.code, down.failure?.retryAfterSeconds], [
        "deferred",
        "provider_unavailable",
        5,
      ]);
    });

    await t.step("a missing permission and a refused message fail for good, each with its code", async () => {
      // A grant for the Gmail API used against Graph: Graph answers 403 ErrorAccessDenied.
      const wrongScope = await sendOverHttps("graph", message, tokensFor("gmail-rt"), { endpoints });
      assert.deepEqual([wrongScope.status, wrongScope.failure?.code], ["failed", "oauth_permission_missing"]);
      assert.match(wrongScope.failure!.message, /Mail\.Send/);
      // A 403 about this one message (its From) is the message's failure, not a mailbox without permission.
      standin.script({ endpoint: "graph", status: 403, body: { error: { code: "ErrorSendAsDenied" } } });
      const sendAs = await sendOverHttps("graph", message, tokensFor("graph-rt"), { endpoints });
      assert.deepEqual([sendAs.status, sendAs.failure?.code], ["failed", "provider_rejected_message"]);
      standin.script({ endpoint: "graph", status: 400, body: { error: { code: "ErrorMimeContentInvalid" } } });
      const rejected = await sendOverHttps("graph", message, tokensFor("graph-rt"), { endpoints });
      assert.deepEqual([rejected.status, rejected.failure?.code], ["failed", "provider_rejected_message"]);
      assert.match(rejected.failure!.message, /ErrorMimeContentInvalid/);
    });

    await t.step("Graph's size limit is applied before anything is sent", async () => {
      const calls = standin.counts.graph;
      const report = await sendOverHttps(
        "graph",
        { ...message, raw: new Uint8Array(GRAPH_MAX_MESSAGE_BYTES + 1) },
        tokensFor("graph-rt"),
        { endpoints },
      );
      assert.deepEqual([report.status, report.failure?.code], ["failed", "provider_message_too_large"]);
      assert.equal(standin.counts.graph, calls);
    });

    await t.step("an API that cannot be reached is deferred: nothing left", async () => {
      const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const port = (listener.addr as Deno.NetAddr).port;
      listener.close();
      const report = await sendOverHttps("graph", message, tokensFor("graph-rt"), {
        endpoints: { graphUrl: `http://127.0.0.1:${port}` },
      });
      assert.deepEqual([report.status, report.failure?.code, report.failure?.retryable], [
        "deferred",
        "provider_unreachable",
        true,
      ]);
    });
  } finally {
    await standin.close();
  }
});
