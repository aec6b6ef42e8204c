// Duplicate-send protection without a key (issue 31): the same email again within the config's
// window is refused with 409 duplicate_send on every send path, against the real database and
// a real SMTP server that records what it receives.
import assert from "node:assert/strict";
import { body, type ErrorBody, startTestStack, type TestStack } from "./harness.ts";
import { startScriptedSmtp } from "./scripted_smtp.ts";

type Sent = { id: string; status: string; message_id: string };
type Earlier = { id: string; status: string; message_id: string; created_at: string };

Deno.test({
  name: "the same email twice within the config's window goes once",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const stack: TestStack = await startTestStack({ MAILROOM_ALLOW_PLAINTEXT_SMTP: "true" });
    // later...@ is deferred (450) on its first RCPT only; gone@ is refused for good (550).
    const deferred = new Set<string>();
    const smtp = await startScriptedSmtp({
      extensions: ["PIPELINING"],
      rcpt: (address) => {
        // A policy refusal: permanent, and (unlike 5.1.1) no reason to suppress the address.
        if (address.startsWith("gone@")) return "550 5.7.1 Recipient refused by policy";
        if (address.startsWith("later") && !deferred.has(address)) {
          deferred.add(address);
          return "450 4.2.0 Try again later";
        }
        return "250 2.1.5 OK";
      },
    });
    const setup = async () => {
      const user = await stack.createUser();
      const config = await stack.createConfig(user, { port: smtp.port, security: "none", username: null });
      return { user, config };
    };
    const call = (token: string, path: string, payload?: unknown, method = "POST", headers?: Record<string, string>) =>
      stack.invoke(path, { token, method, ...(payload === undefined ? {} : { body: payload }), headers });
    const copies = (subject: string) => smtp.messages().filter((m) => m.data.includes(`Subject: ${subject}`)).length;
    const refusal = async (res: Response) => {
      const parsed = await body<ErrorBody>(res);
      assert.equal(res.status, 409, JSON.stringify(parsed));
      assert.equal(parsed.error.code, "duplicate_send");
      return parsed.error as ErrorBody["error"] & { details: { duplicate_of: Earlier; window_seconds: number } };
    };

    try {
      await t.step("a repeat is refused with 409 naming the first, and the server gets one copy", async () => {
        const { user } = await setup();
        const email = { to: ["a@example.com", "b@example.com"], subject: "repeat-1", text: "Hello" };
        const first = await call(user.token, "send-email", email);
        assert.equal(first.status, 200);
        const sent = await body<Sent>(first);
        // The same recipients in another order and spelling are the same email.
        const again = await refusal(
          await call(user.token, "send-email", { ...email, to: ["B@Example.com", "Ann <a@example.com>"] }),
        );
        assert.equal(again.details.duplicate_of.id, sent.id);
        assert.equal(again.details.duplicate_of.status, "sent");
        assert.equal(again.details.duplicate_of.message_id, sent.message_id);
        assert.equal(again.details.window_seconds, 600);
        assert.match(again.message, /already sent at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ/);
        assert.equal(copies("repeat-1"), 1);
        // Nothing of the refused send reached the log.
        const [{ n }] = await stack.sql<{ n: number }[]>`
          select count(*)::int as n from public.email_audit_log where user_id = ${user.id} and subject = 'repeat-1'`;
        assert.equal(n, 1);
      });

      await t.step("another subject, body, recipient or config is another email", async () => {
        const { user } = await setup();
        const email = { to: "c@example.com", subject: "other-1", text: "Hello" };
        assert.equal((await call(user.token, "send-email", email)).status, 200);
        assert.equal((await call(user.token, "send-email", { ...email, subject: "other-2" })).status, 200);
        assert.equal((await call(user.token, "send-email", { ...email, text: "Hello!" })).status, 200);
        assert.equal((await call(user.token, "send-email", { ...email, cc: "d@example.com" })).status, 200);
        await stack.createConfig(user, {
          name: "second",
          port: smtp.port,
          security: "none",
          username: null,
          is_default: false,
        });
        assert.equal((await call(user.token, "send-email", { ...email, config: "second" })).status, 200);
        // And another user's identical email is theirs.
        const { user: other } = await setup();
        assert.equal((await call(other.token, "send-email", email)).status, 200);
        assert.equal(copies("other-1"), 5);
      });

      await t.step("allow_duplicate sends it again and records what it repeats", async () => {
        const { user } = await setup();
        const email = { to: "e@example.com", subject: "allowed-1", text: "Hello" };
        const first = await body<Sent>(await call(user.token, "send-email", email));
        const second = await call(user.token, "send-email", { ...email, allow_duplicate: true });
        assert.equal(second.status, 200);
        const repeat = await body<Sent>(second);
        const [row] = await stack.sql<{ duplicate_of: string }[]>`
          select duplicate_of from public.email_audit_log where id = ${repeat.id}`;
        assert.equal(row.duplicate_of, first.id);
        // The message view says so too.
        const view = await body<{ duplicate_of: string | null }>(
          await call(user.token, `send-email/${repeat.id}`, undefined, "GET"),
        );
        assert.equal(view.duplicate_of, first.id);
        const original = await body<{ duplicate_of: string | null }>(
          await call(user.token, `send-email/${first.id}`, undefined, "GET"),
        );
        assert.equal(original.duplicate_of, null);
        assert.equal(copies("allowed-1"), 2);
        // The window now runs from the newest: a third without the flag names it.
        assert.equal((await refusal(await call(user.token, "send-email", email))).details.duplicate_of.id, repeat.id);
      });

      await t.step("after the window, or with the window at 0, the same email goes again", async () => {
        const { user, config } = await setup();
        const email = { to: "f@example.com", subject: "window-1", text: "Hello" };
        assert.equal((await call(user.token, "send-email", email)).status, 200);
        await refusal(await call(user.token, "send-email", email));
        // Ten minutes later, as far as the window is concerned.
        await stack.sql`update private.send_fingerprints set expires_at = now() - interval '1 second'
                         where user_id = ${user.id}`;
        assert.equal((await call(user.token, "send-email", email)).status, 200);
        const patched = await call(user.token, `smtp-configs/${config}`, { duplicate_window_seconds: 0 }, "PATCH");
        assert.equal(patched.status, 200);
        assert.equal((await body<{ duplicate_window_seconds: number }>(patched)).duplicate_window_seconds, 0);
        assert.equal((await call(user.token, "send-email", email)).status, 200);
        assert.equal(copies("window-1"), 3);
        for (const bad of [-1, 86_401, 1.5, "600"]) {
          const res = await call(user.token, `smtp-configs/${config}`, { duplicate_window_seconds: bad }, "PATCH");
          assert.equal(res.status, 400, `duplicate_window_seconds ${bad}`);
          assert.equal((await body<ErrorBody>(res)).error.code, "invalid_request");
        }
      });

      await t.step("20 identical sends at once: one mail, 19 answers of 409 naming it", async () => {
        const { user } = await setup();
        const email = { to: "g@example.com", subject: "burst-1", text: "Hello" };
        const answers = await Promise.all(
          Array.from({ length: 20 }, () => call(user.token, "send-email", email)),
        );
        const statuses = answers.map((res) => res.status);
        assert.equal(statuses.filter((s) => s === 200).length, 1, JSON.stringify(statuses));
        assert.equal(statuses.filter((s) => s === 409).length, 19, JSON.stringify(statuses));
        const winner = await body<Sent>(answers[statuses.indexOf(200)]);
        for (const res of answers.filter((r) => r.status === 409)) {
          assert.equal((await refusal(res)).details.duplicate_of.id, winner.id);
        }
        assert.equal(copies("burst-1"), 1);
      });

      await t.step("10 identical send-bulk requests, and send-email beside them, at once: one mail", async () => {
        const { user } = await setup();
        const batch = { messages: [{ to: "race@example.com", subject: "race-1", text: "Hello" }] };
        const answers = await Promise.all([
          ...Array.from({ length: 10 }, () => call(user.token, "send-bulk", batch)),
          ...Array.from({ length: 5 }, () => call(user.token, "send-email", batch.messages[0])),
        ]);
        const statuses = answers.map((res) => res.status);
        await Promise.all(answers.map((res) => res.body?.cancel()));
        assert.equal(statuses.filter((s) => s === 200 || s === 202).length, 1, JSON.stringify(statuses));
        assert.equal(statuses.filter((s) => s === 409).length, 14, JSON.stringify(statuses));
        await stack.drainOutbox();
        assert.equal(copies("race-1"), 1);
      });

      await t.step("a lowered window applies at once; at 0 a batch may repeat itself", async () => {
        const { user, config } = await setup();
        const email = { to: "low@example.com", subject: "lowered-1", text: "Hello" };
        assert.equal((await call(user.token, "send-email", email)).status, 200);
        await refusal(await call(user.token, "send-email", email));
        assert.equal(
          (await call(user.token, `smtp-configs/${config}`, { duplicate_window_seconds: 1 }, "PATCH")).status,
          200,
        );
        // Two seconds later, as far as the window is concerned (the fingerprint was held for 600).
        await stack.sql`update private.send_fingerprints set claimed_at = claimed_at - interval '2 seconds'
                         where user_id = ${user.id}`;
        assert.equal((await call(user.token, "send-email", email)).status, 200);
        assert.equal(
          (await call(user.token, `smtp-configs/${config}`, { duplicate_window_seconds: 0 }, "PATCH")).status,
          200,
        );
        const twice = await call(user.token, "send-bulk", { messages: [email, email] });
        assert.equal((await body<{ queued: number }>(twice)).queued, 2);
      });

      await t.step("a send that failed leaves the email free to be sent again", async () => {
        const { user } = await setup();
        const email = { to: "gone@example.com", subject: "failed-1", text: "Hello" };
        assert.equal((await call(user.token, "send-email", email)).status, 502);
        assert.equal((await call(user.token, "send-email", email)).status, 502);
        const statuses = await stack.sql<{ status: string }[]>`
          select status from public.email_audit_log where user_id = ${user.id} and subject = 'failed-1'`;
        assert.deepEqual(statuses.map((r) => r.status), ["failed", "failed"]);
        // Deferred by the server (4xx) for every recipient, it reached nobody: its caller retries it.
        const later = { to: "later@example.com", subject: "deferred-0", text: "Hello" };
        const deferred = await call(user.token, "send-email", later);
        assert.equal(deferred.status, 502);
        assert.equal((await body<ErrorBody>(deferred)).error.details?.retryable, true);
        assert.equal((await call(user.token, "send-email", later)).status, 200);
        assert.equal(copies("deferred-0"), 1);
      });

      await t.step("scheduled and held mail holds its email too; a dry run says it would be refused", async () => {
        const { user } = await setup();
        const email = { to: "h@example.com", subject: "scheduled-1", text: "Hello" };
        const at = new Date(Date.now() + 3_600_000).toISOString();
        const scheduled = await call(user.token, "send-email", { ...email, scheduled_at: at });
        assert.equal(scheduled.status, 202);
        const { id } = await body<Sent>(scheduled);
        const now = await refusal(await call(user.token, "send-email", email));
        assert.equal(now.details.duplicate_of.id, id);
        assert.equal(now.details.duplicate_of.status, "scheduled");
        assert.match(now.message, /already accepted at/);
        await refusal(await call(user.token, "send-email", { ...email, scheduled_at: at }));
        const dry = await body<{ outcome: string; refusal: { code: string; details: { duplicate_of: Earlier } } }>(
          await call(user.token, "send-email", { ...email, dry_run: true }),
        );
        assert.equal(dry.outcome, "would_be_refused");
        assert.equal(dry.refusal.code, "duplicate_send");
        assert.equal(dry.refusal.details.duplicate_of.id, id);
        const allowed = await body<{ outcome: string }>(
          await call(user.token, "send-email", { ...email, dry_run: true, allow_duplicate: true }),
        );
        assert.equal(allowed.outcome, "would_send");
        // Cancelled, it no longer holds the email.
        assert.equal((await call(user.token, `send-email/${id}/cancel`)).status, 200);
        assert.equal((await call(user.token, "send-email", email)).status, 200);
      });

      await t.step("an Idempotency-Key replays its answer; a new key for the same email is a duplicate", async () => {
        const { user } = await setup();
        const email = { to: "i@example.com", subject: "keyed-1", text: "Hello" };
        const first = await call(user.token, "send-email", email, "POST", { "idempotency-key": "k-1" });
        assert.equal(first.status, 200);
        const replay = await call(user.token, "send-email", email, "POST", { "idempotency-key": "k-1" });
        assert.equal(replay.status, 200);
        assert.equal((await body<Sent>(replay)).id, (await body<Sent>(first)).id);
        await refusal(await call(user.token, "send-email", email, "POST", { "idempotency-key": "k-2" }));
        assert.equal(copies("keyed-1"), 1);
      });

      await t.step("the outbox's retry of a deferred recipient is not a duplicate", async () => {
        const { user } = await setup();
        const res = await call(user.token, "send-email", {
          to: ["j@example.com", "later+j@example.com"],
          subject: "deferred-1",
          text: "Hello",
        });
        assert.equal(res.status, 200);
        const sent = await body<Sent & { deferred: string[] }>(res);
        assert.deepEqual(sent.deferred, ["later+j@example.com"]);
        await stack.sql`update public.email_audit_log set next_attempt_at = now() where id = ${sent.id}`;
        await stack.drainOutbox();
        const [row] = await stack.sql<{ status: string; accepted: string[] }[]>`
          select status, accepted from public.email_audit_log where id = ${sent.id}`;
        assert.equal(row.status, "sent");
        assert.deepEqual([...row.accepted].sort(), ["j@example.com", "later+j@example.com"]);
        // And the email is still held by that message: the same send again is a repeat of it.
        const again = await refusal(
          await call(user.token, "send-email", {
            to: ["j@example.com", "later+j@example.com"],
            subject: "deferred-1",
            text: "Hello",
          }),
        );
        assert.equal(again.details.duplicate_of.id, sent.id);
      });

      await t.step("send-bulk leaves out repeats, in the batch and of recent mail, and queues the rest", async () => {
        const { user } = await setup();
        const message = (to: string) => ({ to, subject: "bulk-1", text: "Hello" });
        const first = await call(user.token, "send-bulk", {
          messages: [message("k1@example.com"), message("k2@example.com"), message("k1@example.com")],
        });
        assert.equal(first.status, 202, await first.clone().text());
        const accepted = await body<{ queued: number; skipped: { index: number; code: string }[] }>(first);
        assert.equal(accepted.queued, 2);
        assert.deepEqual(accepted.skipped.map((s) => [s.index, s.code]), [[2, "duplicate_send"]]);
        await stack.drainOutbox();
        assert.equal(copies("bulk-1"), 2);
        // Again, with one new message: only that one goes; the others name what they repeat.
        const second = await call(user.token, "send-bulk", {
          messages: [message("k1@example.com"), message("k3@example.com"), message("k2@example.com")],
        });
        const again = await body<
          { queued: number; skipped: { index: number; code: string; duplicate_of: Earlier }[] }
        >(second);
        assert.equal(again.queued, 1);
        assert.deepEqual(again.skipped.map((s) => [s.index, s.code, s.duplicate_of.status]), [
          [0, "duplicate_send", "sent"],
          [2, "duplicate_send", "sent"],
        ]);
        // A send-email of one of them is a repeat too.
        await refusal(await call(user.token, "send-email", message("k3@example.com")));
        // Every entry a repeat: 409, nothing queued; a dry run says it would be refused.
        const none = await call(user.token, "send-bulk", { messages: [message("k1@example.com")] });
        assert.equal((await refusal(none)).details.duplicate_of, undefined);
        const dry = await call(user.token, "send-bulk", { messages: [message("k1@example.com")], dry_run: true });
        assert.equal(dry.status, 200);
        const report = await body<{ outcome: string; count: number; refusal: { code: string } }>(dry);
        assert.deepEqual([report.outcome, report.count, report.refusal.code], [
          "would_be_refused",
          0,
          "duplicate_send",
        ]);
        // allow_duplicate queues them all again.
        const forced = await call(user.token, "send-bulk", {
          messages: [message("k1@example.com"), message("k1@example.com")],
          allow_duplicate: true,
        });
        assert.equal((await body<{ queued: number }>(forced)).queued, 2);
        await stack.drainOutbox();
        assert.equal(copies("bulk-1"), 5);
        // Per-message allow_duplicate is the batch's to say.
        const perMessage = await call(user.token, "send-bulk", {
          messages: [{ ...message("k9@example.com"), allow_duplicate: true }],
        });
        assert.equal(perMessage.status, 422);
      });
    } finally {
      await smtp.close();
      await stack.close();
    }
  },
});
