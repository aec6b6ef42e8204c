// Webhooks against a real stack and a real HTTPS receiver on loopback, which checks every
// delivery with the Standard Webhooks reference library (`standardwebhooks`): each outcome change
// arrives once with a valid signature, a receiver that was down gets it on the retry (the same
// webhook-id), a tampered delivery is one it refuses, a webhook that keeps failing is disabled
// with the reason shown, and only the owner's own session manages them.
import assert from "node:assert/strict";
import { Webhook as Verifier } from "standardwebhooks";
import { body, captureLogs, errorCode, startTestStack } from "./harness.ts";
import { generateCertificates } from "../local/certs.ts";
import { startSmtpCatcher } from "../local/smtp_catcher.ts";

interface Received {
  path: string;
  headers: Record<string, string>;
  body: string;
  answered: number;
}

Deno.test({
  name: "webhooks",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const certs = await generateCertificates();
    const received: Received[] = [];
    let answer = 204;
    const receiver: Deno.HttpServer<Deno.NetAddr> = Deno.serve({
      port: 0,
      hostname: "127.0.0.1",
      cert: certs.cert,
      key: certs.key,
      onListen: () => {},
    }, async (req) => {
      const text = await req.text();
      received.push({
        path: new URL(req.url).pathname,
        headers: Object.fromEntries(req.headers),
        body: text,
        answered: answer,
      });
      return new Response(null, { status: answer });
    });
    const port = receiver.addr.port;
    const stack = await startTestStack({
      MAILROOM_OAUTH_CA_CERTS: certs.caCert,
      MAILROOM_EGRESS_ALLOWLIST: `localhost,localhost:${port}`,
    });
    const smtp = await startSmtpCatcher({
      mode: "tls",
      tls: { key: stack.certs.key, cert: stack.certs.cert },
      users: { mailer: "pw" },
    });
    try {
      const owner = await stack.createUser();
      const other = await stack.createUser();
      await stack.createConfig(owner, { name: "main", port: smtp.port, password: "pw" });
      const agent = await stack.mint({ sub: owner.id, email: owner.email, clientId: "some-agent" });
      const call = (path: string, init: { method?: string; body?: unknown; token?: string } = {}) =>
        stack.invoke(path, { token: owner.token, ...init });
      const send = async (to: string) => {
        const res = await call("send-email", { body: { to, subject: "Hello", text: "Hi" } });
        const sent = await body<{ id: string }>(res);
        assert.equal(res.status, 200, JSON.stringify(sent));
        return sent.id;
      };
      const eventsFor = (id: string) =>
        received.filter((r) => r.answered < 300).map((r) => JSON.parse(r.body)).filter((e) => e.data?.id === id);
      let hook: { id: string; secret: string };

      await t.step("only the owner's own session adds one; its URL passes the egress policy", async () => {
        const url = `https://localhost:${port}/hooks/mailroom`;
        assert.equal(
          await errorCode(await call("webhooks", { body: { url }, token: agent }), 403),
          "first_party_session_required",
        );
        assert.equal(
          await errorCode(await call("webhooks", { body: { url: "http://localhost/x" } }), 400),
          "webhook_url_invalid",
        );
        assert.equal(
          await errorCode(await call("webhooks", { body: { url: "https://10.0.0.7/x" } }), 422),
          "webhook_url_forbidden",
        );
        assert.equal(
          await errorCode(await call("webhooks", { body: { url: "https://hooks.example.com:8443/x" } }), 422),
          "webhook_url_port_not_allowed",
        );
        const res = await call("webhooks", { body: { url, description: "tests" } });
        assert.equal(res.status, 201);
        hook = await res.json();
        assert.match(hook.secret, /^whsec_/);
        // Shown once: never again, nor in the table.
        const again = await (await call(`webhooks/${hook.id}`, { method: "GET" })).text();
        assert.ok(!again.includes(hook.secret));
        const [row] = await stack.sql`select to_jsonb(w)::text as t from public.webhooks w where id = ${hook.id}`;
        assert.ok(!row.t.includes(hook.secret.slice(6)));
        // An agent reads it; another user does not.
        assert.equal((await call(`webhooks/${hook.id}`, { method: "GET", token: agent })).status, 200);
        assert.equal(
          await errorCode(await call(`webhooks/${hook.id}`, { method: "GET", token: other.token }), 404),
          "webhook_not_found",
        );
      });

      await t.step("each outcome change arrives once, signed as Standard Webhooks says", async () => {
        const id = await send("ann@example.com");
        const report = await stack.drainOutbox();
        assert.equal(report.webhooks_delivered, 1);
        await stack.drainOutbox();
        const events = eventsFor(id);
        assert.deepEqual(events.map((e) => e.type), ["message.sent"], "once, and nothing for `sending`");
        assert.equal(events[0].data.status, "sent");
        assert.deepEqual(events[0].data.to, ["ann@example.com"]);
        const delivery = received.find((r) => JSON.parse(r.body).data?.id === id)!;
        assert.match(delivery.headers["webhook-id"], /^msg_/);
        assert.equal(delivery.headers["content-type"], "application/json");
        // The reference library accepts it...
        new Verifier(hook.secret).verify(delivery.body, delivery.headers);
        // ...and refuses it altered, or signed with another secret.
        assert.throws(() => new Verifier(hook.secret).verify(delivery.body.replace("ann@", "eve@"), delivery.headers));
        const otherSecret = `whsec_${btoa("another secret of 32 bytes......")}`;
        assert.throws(() => new Verifier(otherSecret).verify(delivery.body, delivery.headers));
      });

      await t.step("queued mail: queued, then sent", async () => {
        const res = await call("send-bulk", { body: { subject: "News", text: "x", recipients: ["bo@example.com"] } });
        assert.equal(res.status, 202);
        await stack.drainOutbox();
        await stack.drainOutbox();
        const [{ id }] = await stack.sql`select id from public.email_audit_log where to_addresses = '{bo@example.com}'`;
        assert.deepEqual(eventsFor(id).map((e) => e.type), ["message.queued", "message.sent"]);
      });

      await t.step("a receiver that was down gets the event on the retry, with the same webhook-id", async () => {
        answer = 503;
        const id = await send("cy@example.com");
        await stack.drainOutbox();
        const deliveries = await body<{ deliveries: Record<string, unknown>[] }>(
          await call(`webhooks/${hook.id}/deliveries`, { method: "GET" }),
        );
        const pending = deliveries.deliveries.find((d) => d.message_id === id)!;
        assert.deepEqual([pending.attempts, pending.last_status, pending.delivered_at], [1, 503, null]);
        assert.ok(pending.next_attempt_at, "a retry is planned");
        answer = 204;
        // Its backoff (5 s) has passed.
        await stack.sql`update public.webhook_deliveries set next_attempt_at = now() where id = ${pending
          .id as string}`;
        await stack.drainOutbox();
        const tries = received.filter((r) => JSON.parse(r.body).data?.id === id);
        assert.deepEqual(tries.map((r) => r.answered), [503, 204]);
        assert.equal(tries[0].headers["webhook-id"], tries[1].headers["webhook-id"], "receivers can drop repeats");
        assert.deepEqual(eventsFor(id).map((e) => e.type), ["message.sent"]);
        const settled = await body(await call(`webhooks/${hook.id}`, { method: "GET" }));
        assert.equal(settled.consecutive_failures, 0);
      });

      await t.step("a burst of failures (a receiver redeploying) does not disable a webhook", async () => {
        answer = 503;
        const ids = [await send("burst1@example.com"), await send("burst2@example.com")];
        await stack.sql`update public.webhooks set consecutive_failures = 30 where id = ${hook.id}`;
        await stack.drainOutbox();
        const still = await body(await call(`webhooks/${hook.id}`, { method: "GET" }));
        assert.equal(still.enabled, true, "failing for minutes, not days");
        assert.equal(still.consecutive_failures, 31, "one failure charged; the event behind it waits untried");
        answer = 204;
        await stack.sql`update public.webhook_deliveries set next_attempt_at = now() where delivered_at is null`;
        await stack.drainOutbox();
        for (const id of ids) assert.deepEqual(eventsFor(id).map((e) => e.type), ["message.sent"]);
        const healed = await body(await call(`webhooks/${hook.id}`, { method: "GET" }));
        assert.equal(healed.consecutive_failures, 0);
      });

      await t.step("a webhook that keeps failing is disabled, with the reason shown", async () => {
        answer = 500;
        // Failing for six days already (the schedule's retries took that long), 19 times in a row.
        await stack.sql`update public.webhooks set consecutive_failures = 19, failing_since = now() - interval '6 days'
                        where id = ${hook.id}`;
        const { logs } = await captureLogs(async () => {
          await send("dee@example.com");
          await stack.drainOutbox();
        });
        const disabled = await body(await call(`webhooks/${hook.id}`, { method: "GET" }));
        assert.equal(disabled.enabled, false);
        assert.match(
          String(disabled.disabled_reason),
          /failing for 5 days \(20 failed deliveries in a row\); the last: .*HTTP 500/,
        );
        assert.ok(!logs.includes(hook.secret));
        // Nothing is sent to it meanwhile; turned back on, it starts afresh and gets what waited.
        answer = 204;
        const before = received.length;
        await stack.drainOutbox();
        assert.equal(received.length, before);
        const back = await body(await call(`webhooks/${hook.id}`, { method: "PATCH", body: { enabled: true } }));
        assert.deepEqual([back.enabled, back.consecutive_failures, back.disabled_reason], [true, 0, null]);
      });

      await t.step("after a rotation, deliveries verify with the new secret and, for a day, the old one", async () => {
        const rotated = await body<{ secret: string; previous_valid_until: string }>(
          await call(`webhooks/${hook.id}/rotate-secret`, {}),
        );
        assert.notEqual(rotated.secret, hook.secret);
        assert.ok(Date.parse(rotated.previous_valid_until) > Date.now() + 23 * 3600_000);
        const id = await send("rot@example.com");
        await stack.drainOutbox();
        const delivery = received.find((r) => JSON.parse(r.body).data?.id === id)!;
        new Verifier(rotated.secret).verify(delivery.body, delivery.headers);
        new Verifier(hook.secret).verify(delivery.body, delivery.headers);
        // Once the day is over, only the new one.
        await stack.sql`update public.webhooks set previous_secret_expires_at = now() - interval '1 second'
                        where id = ${hook.id}`;
        const later = await send("rot2@example.com");
        await stack.drainOutbox();
        const next = received.find((r) => JSON.parse(r.body).data?.id === later)!;
        new Verifier(rotated.secret).verify(next.body, next.headers);
        assert.throws(() => new Verifier(hook.secret).verify(next.body, next.headers));
        hook = { ...hook, secret: rotated.secret };
      });

      await t.step("event_types filters; a test event; removal takes its secret out of Vault", async () => {
        const res = await call("webhooks", {
          body: { url: `https://localhost:${port}/bounces-only`, event_types: ["message.bounced"] },
        });
        const picky = await body<{ id: string }>(res);
        const id = await send("eli@example.com");
        await stack.drainOutbox();
        const test = await body<{ id: string }>(await call(`webhooks/${picky.id}/test`, {}));
        await stack.drainOutbox();
        const about = (path: string) =>
          received.filter((r) => r.path === path && JSON.parse(r.body).data?.id === id).length;
        assert.deepEqual(
          [about("/hooks/mailroom"), about("/bounces-only")],
          [1, 0],
          "message.sent: the catch-all only",
        );
        assert.ok(received.some((r) => r.headers["webhook-id"] === `msg_${test.id}`));
        const [{ secret_id }] = await stack.sql`select secret_id from public.webhooks where id = ${picky.id}`;
        assert.equal((await call(`webhooks/${picky.id}`, { method: "DELETE" })).status, 200);
        assert.equal((await stack.sql`select 1 from vault.secrets where id = ${secret_id}`).length, 0);
      });
    } finally {
      await smtp.close();
      await stack.close();
      await receiver.shutdown();
    }
  },
});
