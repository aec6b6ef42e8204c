// The TypeScript SDK (clients/mailroom) against the local stack, every method, over plain
// fetch with a token and over supabase-js; failures are MailroomErrors with the server's code.
import { startDovecot } from "../local/dovecot.ts";
import assert from "node:assert/strict";
import { createClient } from "@supabase/supabase-js";
import { createMailroomClient, MailroomError } from "../clients/mailroom/src/index.ts";
import { startTestStack } from "./harness.ts";
import { startScriptedSmtp } from "./scripted_smtp.ts";
import { welcomeAndAnnounce } from "../examples/sdk_send.ts";
import { openApiDocument } from "../supabase/functions/_shared/openapi.ts";
import { type ResponseName, RESPONSES } from "../supabase/functions/_shared/responses.ts";

/**
 * A fetch that checks every successful answer against the response schema the OpenAPI
 * document names for its route and status (strict: undocumented fields fail).
 */
function contractFetch(projectUrl: string, checked: Set<string>): typeof fetch {
  const doc = openApiDocument(projectUrl) as {
    paths: Record<
      string,
      Record<string, { responses: Record<string, { content?: Record<string, { schema: { $ref?: string } }> }> }>
    >;
  };
  const routes = Object.entries(doc.paths).map(([path, methods]) => ({
    pattern: new RegExp(`^${path.replace(/\{[^}]+\}/g, "[^/]+")}$`),
    methods,
  }));
  return async (input, init) => {
    const res = await fetch(input, init);
    if (!res.ok) return res;
    const url = new URL(String(input));
    const path = url.pathname.replace(/^\/functions\/v1/, "");
    const method = (init?.method ?? "GET").toLowerCase();
    const route = routes.find((r) => r.pattern.test(path) && r.methods[method]);
    const schema = route?.methods[method].responses[String(res.status)]?.content?.["application/json"]?.schema as
      | { $ref?: string; oneOf?: { $ref: string }[] }
      | undefined;
    const refs = schema?.oneOf?.map((s) => s.$ref) ?? (schema?.$ref ? [schema.$ref] : []);
    assert.ok(refs.length > 0, `${method.toUpperCase()} ${path} ${res.status} has a documented response`);
    const body = await res.clone().json();
    // The answer must match one of the schemas the document names (strictly).
    const names = refs.map((r) => r.split("/").at(-1) as ResponseName);
    const name = names.find((n) => RESPONSES[n].safeParse(body).success);
    assert.ok(
      name,
      `${method.toUpperCase()} ${path}: none of ${names}: ${
        JSON.stringify(RESPONSES[names[0]].safeParse(body).error?.issues)
      }`,
    );
    checked.add(name);
    return res;
  };
}

async function rejectsWith(promise: Promise<unknown>, status: number, code: string): Promise<MailroomError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof MailroomError, String(error));
    assert.deepEqual([error.status, error.code], [status, code], error.message);
    return error;
  }
  assert.fail(`expected ${status} ${code}`);
}

Deno.test({
  name: "sdk",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const stack = await startTestStack({ MAILROOM_ALLOW_PLAINTEXT_SMTP: "true" });
    const smtp = await startScriptedSmtp();
    const user = await stack.createUser();
    const checked = new Set<string>();
    const mailroom = createMailroomClient({
      url: stack.url,
      accessToken: () => user.token,
      fetch: contractFetch(stack.url, checked),
    });
    try {
      await t.step(
        "configs: create, get, list, update, verify, verifications, default, (de)activate, delete",
        async () => {
          const created = await mailroom.configs.create({
            name: "relay",
            host: "localhost",
            port: smtp.port,
            security: "none",
            from_email: user.email,
          });
          assert.equal(created.name, "relay");
          assert.equal((await mailroom.configs.get("relay")).id, created.id);
          assert.deepEqual((await mailroom.configs.list()).map((c) => c.name), ["relay"]);
          assert.equal((await mailroom.configs.update("relay", { from_name: "Agent" })).from_name, "Agent");
          assert.equal((await mailroom.configs.verify("relay")).ok, true);
          assert.equal((await mailroom.configs.verifications("relay")).length, 1);
          assert.equal((await mailroom.configs.deliverability("relay")).domain, user.email.split("@")[1]);
          const gmail = (await mailroom.configs.presets()).find((p) => p.id === "gmail");
          assert.deepEqual([gmail?.smtp.host, gmail?.reachable_here.smtp], ["smtp.gmail.com", true]);
          assert.equal((await mailroom.configs.setDefault("relay")).is_default, true);
          assert.equal((await mailroom.configs.deactivate("relay")).is_active, false);
          await rejectsWith(mailroom.send({ to: "x@example.com", text: "x" }), 409, "config_inactive");
          assert.equal((await mailroom.configs.activate("relay")).is_active, true);
          const spare = await mailroom.configs.create({
            name: "spare",
            host: "localhost",
            port: smtp.port,
            security: "none",
            from_email: user.email,
          });
          assert.deepEqual(await mailroom.configs.delete("spare"), { id: spare.id, deleted: true });
          await rejectsWith(mailroom.configs.get("spare"), 404, "config_not_found");
        },
      );

      await t.step("send, idempotent retry, schedule and cancel", async () => {
        const key = crypto.randomUUID();
        const sent = await mailroom.send({ to: "jane@example.com", subject: "SDK", text: "hi" }, {
          idempotencyKey: key,
        });
        assert.equal(sent.status, "sent");
        const again = await mailroom.send({ to: "jane@example.com", subject: "SDK", text: "hi" }, {
          idempotencyKey: key,
        });
        assert.equal(again.id, sent.id);
        assert.equal(smtp.messages().length, 1);
        const later = await mailroom.send({
          to: "jane@example.com",
          text: "later",
          scheduled_at: new Date(Date.now() + 3_600_000).toISOString(),
        });
        assert.equal(later.status, "scheduled");
        assert.deepEqual(await mailroom.cancel(later.id), { id: later.id, status: "cancelled" });
        // Idempotent, as the cancel tool's annotations promise: a second cancel answers the same.
        assert.deepEqual(await mailroom.cancel(later.id), { id: later.id, status: "cancelled" });
        const error = await rejectsWith(mailroom.cancel(sent.id), 409, "not_cancellable");
        assert.equal(error.details.status, "sent");
        // A message the outbox set aside (its workers died holding it) is sent again on request.
        const aside = await mailroom.send({
          to: "jane@example.com",
          text: "aside",
          scheduled_at: new Date(Date.now() + 3_600_000).toISOString(),
        });
        await stack.sql`update public.email_audit_log set error_class = 'worker_crashed', next_attempt_at = 'infinity'
                         where id = ${aside.id}`;
        assert.deepEqual(await mailroom.retry(aside.id), { id: aside.id, status: "queued" });
        await rejectsWith(mailroom.retry(aside.id), 409, "not_retryable");
        await mailroom.cancel(aside.id);
        await rejectsWith(mailroom.send({ to: "not an address", text: "x" }), 400, "invalid_request");
      });

      await t.step("templates: create, get, list, update, preview, delete", async () => {
        const template = await mailroom.templates.create({
          name: "hello",
          subject: "Hi {{name}}",
          text: "Hello {{name}}",
        });
        assert.equal((await mailroom.templates.get("hello")).id, template.id);
        assert.ok((await mailroom.templates.list()).some((x) => x.name === "hello"));
        assert.equal(
          (await mailroom.templates.update("hello", { variables: ["name"] })).required_variables?.[0],
          "name",
        );
        assert.equal((await mailroom.templates.preview("hello", { name: "Ann" })).text, "Hello Ann");
        const missing = await rejectsWith(mailroom.templates.preview("hello"), 422, "template_data_missing");
        assert.deepEqual(missing.details.missing, ["name"]);
        await mailroom.templates.delete("hello");
        await rejectsWith(mailroom.templates.get("hello"), 404, "template_not_found");
      });

      await t.step("bulk: send, progress until done, list, status, cancel", async () => {
        const accepted = await mailroom.bulk.send({ recipients: ["a@example.com", "b@example.com"], text: "news" });
        assert.equal(accepted.queued, 2);
        const seen: number[] = [];
        let drained = false;
        for await (const status of mailroom.bulk.progress(accepted.batch_id, { intervalMs: 50 })) {
          seen.push(status.counts.sent);
          if (!drained) {
            drained = true;
            await stack.drainOutbox();
          }
        }
        assert.equal(seen.at(-1), 2, "the iterator ends once everything is sent");
        assert.equal((await mailroom.bulk.status(accepted.batch_id)).counts.sent, 2);
        assert.equal((await mailroom.bulk.list()).batches[0].batch_id, accepted.batch_id);
        const later = await mailroom.bulk.send({
          recipients: ["c@example.com"],
          text: "later",
          scheduled_at: new Date(Date.now() + 3_600_000).toISOString(),
        });
        assert.deepEqual(await mailroom.bulk.cancel(later.batch_id), { batch_id: later.batch_id, cancelled: 1 });
        await rejectsWith(mailroom.bulk.status(crypto.randomUUID()), 404, "batch_not_found");
      });

      await t.step("analytics: summary, messages, message, content", async () => {
        const summary = await mailroom.analytics.summary({ status: ["sent"], group_by: ["config"] });
        assert.equal(summary.totals.sent, 3);
        assert.equal(summary.breakdowns.config[0].name, "relay");
        const page = await mailroom.analytics.messages({ limit: 2 });
        assert.equal(page.messages.length, 2);
        assert.ok(page.next_cursor);
        const next = await mailroom.analytics.messages({ limit: 2, cursor: page.next_cursor! });
        assert.notEqual(next.messages[0].id, page.messages[0].id);
        assert.equal((await mailroom.analytics.message(page.messages[0].id)).id, page.messages[0].id);
        const [sent] = (await mailroom.analytics.messages({ status: ["sent"], limit: 1 })).messages;
        const content = await mailroom.analytics.content(sent.id);
        assert.deepEqual([content.id, content.to], [sent.id, sent.to]);
        await rejectsWith(mailroom.analytics.content(crypto.randomUUID()), 404, "message_not_found");
        await rejectsWith(mailroom.analytics.summary({ tz: "Mars/Olympus" }), 400, "invalid_timezone");
      });

      await t.step("oversight: guardrails, the stop button and its record", async () => {
        const set = await mailroom.oversight.setGuardrails({ deny_recipients: ["Blocked.example"] });
        assert.deepEqual(set.deny_recipients, ["blocked.example"]);
        assert.deepEqual((await mailroom.oversight.guardrails()).account.deny_recipients, ["blocked.example"]);
        await rejectsWith(mailroom.send({ to: "a@blocked.example", text: "no" }), 422, "recipient_denied");
        assert.ok((await mailroom.oversight.stop({ reason: "sdk" })).stopped_at);
        await rejectsWith(mailroom.send({ to: "a@example.com", text: "no" }), 409, "sending_stopped");
        assert.equal((await mailroom.oversight.resume()).stopped_at, null);
        const { events } = await mailroom.oversight.events({ limit: 10 });
        assert.deepEqual(events.map((e) => e.action), ["sending_resumed", "sending_stopped", "guardrails_changed"]);
        // Dry runs: what would happen, nothing sent.
        const dry = await mailroom.dryRun({ to: "a@blocked.example", subject: "Dry", text: "run" });
        assert.deepEqual([dry.outcome, dry.refusal?.code, dry.message.subject], [
          "would_be_refused",
          "recipient_denied",
          "Dry",
        ]);
        const bulkDry = await mailroom.bulk.dryRun({ recipients: ["a@example.com", "b@example.com"], text: "t" });
        assert.deepEqual([bulkDry.outcome, bulkDry.count, bulkDry.samples.length], ["would_send", 2, 2]);
        // Approval: held, listed, shown, decided.
        await mailroom.oversight.setGuardrails({ approval: "always" });
        const held = await mailroom.send({ to: "held@example.com", subject: "Wait", text: "for me" });
        assert.equal(held.status, "pending_approval");
        const { approvals } = await mailroom.oversight.approvals();
        assert.deepEqual(approvals.map((a) => a.id), [held.id]);
        assert.equal((await mailroom.oversight.approval(held.id)).content?.subject, "Wait");
        assert.deepEqual((await mailroom.oversight.reject(held.id, "no")).decided, [held.id]);
        const batch = await mailroom.bulk.send({ recipients: ["x@example.com"], text: "t" });
        assert.equal(batch.pending_approval, 1);
        assert.equal((await mailroom.oversight.decideBatch(batch.batch_id, false)).status, "rejected");
        await rejectsWith(mailroom.oversight.approve(held.id), 409, "not_pending");
        await mailroom.oversight.setGuardrails({});
      });

      await t.step("attachments: upload, found again, list, get, delete", async () => {
        const content = new TextEncoder().encode("Terms and conditions, 2027 edition");
        const stored = await mailroom.attachments.upload({ filename: "terms.txt", content });
        assert.equal(stored.content_type, "text/plain");
        assert.equal(stored.size_bytes, content.byteLength);
        assert.equal((await mailroom.attachments.upload({ filename: "terms.txt", content })).id, stored.id);
        assert.deepEqual((await mailroom.attachments.list()).attachments.map((a) => a.id), [stored.id]);
        assert.equal((await mailroom.attachments.get(stored.id)).sha256.length, 64);
        await mailroom.attachments.delete(stored.id);
        await rejectsWith(mailroom.attachments.get(stored.id), 404, "attachment_not_found");
        await rejectsWith(mailroom.attachments.fromUrl("http://example.com/x.pdf"), 400, "attachment_url_invalid");
      });

      await t.step("suppressions: add, list, get, remove", async () => {
        const added = await mailroom.suppressions.add(["Zed@Example.com", "yan@example.com"], { source: "sdk test" });
        assert.deepEqual([added.added, added.suppressions.map((s) => s.address)], [2, [
          "yan@example.com",
          "zed@example.com",
        ]]);
        assert.ok((await mailroom.suppressions.list({ reason: "manual" })).suppressions.length >= 2);
        assert.equal((await mailroom.suppressions.get("zed@example.com")).source, "sdk test");
        assert.deepEqual(await mailroom.suppressions.remove("ZED@example.com"), {
          address: "zed@example.com",
          deleted: true,
        });
        await rejectsWith(mailroom.suppressions.get("zed@example.com"), 404, "suppression_not_found");
      });

      await t.step("configs.imap: set, get, check (a real Dovecot), remove", async () => {
        const dir = await Deno.makeTempDir({ prefix: "mailroom-test-dovecot-" });
        const dovecot = await startDovecot({
          dir,
          tls: { cert: stack.certs.cert, key: stack.certs.key },
          users: [{ name: "sdk", password: "imap-pw" }],
        });
        try {
          const settings = await mailroom.configs.imap.set("relay", {
            host: "localhost",
            port: dovecot.port,
            username: "sdk",
            password: "imap-pw",
            copy_to_sent: false,
          });
          assert.deepEqual([settings.has_password, settings.copy_to_sent], [true, false]);
          assert.equal((await mailroom.configs.imap.get("relay")).username, "sdk");
          assert.deepEqual(
            [(await mailroom.configs.imap.check("relay")).checked, (await mailroom.configs.get("relay")).imap?.host],
            [0, "localhost"],
          );
          assert.equal((await mailroom.configs.imap.remove("relay")).deleted, true);
          await rejectsWith(mailroom.configs.imap.get("relay"), 404, "imap_not_configured");
        } finally {
          await dovecot.stop();
          await Deno.remove(dir, { recursive: true }).catch(() => {});
        }
      });

      await t.step("webhooks: create (secret once), list, get, update, test, deliveries, rotate, delete", async () => {
        const created = await mailroom.webhooks.create({
          url: "https://hooks.example.com/mailroom",
          event_types: ["message.sent", "message.bounced"],
        });
        assert.match(created.secret, /^whsec_/);
        assert.deepEqual((await mailroom.webhooks.list()).map((w) => w.id), [created.id]);
        assert.equal((await mailroom.webhooks.get(created.id)).url, "https://hooks.example.com/mailroom");
        assert.equal((await mailroom.webhooks.update(created.id, { description: "CRM" })).description, "CRM");
        const queued = await mailroom.webhooks.test(created.id);
        const { deliveries } = await mailroom.webhooks.deliveries(created.id, { limit: 5 });
        assert.deepEqual(deliveries.map((d) => [d.id, d.event_type]), [[queued.id, "webhook.test"]]);
        assert.notEqual((await mailroom.webhooks.rotateSecret(created.id)).secret, created.secret);
        assert.equal((await mailroom.webhooks.delete(created.id)).deleted, true);
        await rejectsWith(mailroom.webhooks.get(created.id), 404, "webhook_not_found");
      });

      await t.step("every answer matched the response schema the OpenAPI document names", () => {
        assert.deepEqual(
          [...checked].sort(),
          Object.keys(RESPONSES).sort(),
          "each documented response schema was checked against a real answer",
        );
      });

      await t.step("over supabase-js: the same methods, the same typed errors", async () => {
        const supabase = createClient(stack.url, stack.anonKey, {
          auth: { persistSession: false, autoRefreshToken: false },
          global: { headers: { Authorization: `Bearer ${user.token}` } },
        });
        const viaSupabase = createMailroomClient({ supabase });
        assert.deepEqual((await viaSupabase.configs.list()).map((c) => c.name), ["relay"]);
        const sent = await viaSupabase.send({ to: "js@example.com", text: "via supabase-js" });
        assert.equal(sent.status, "sent");
        assert.equal((await viaSupabase.analytics.summary({ status: ["sent"] })).total, 4);
        await rejectsWith(viaSupabase.templates.get("nope"), 404, "template_not_found");
        await rejectsWith(viaSupabase.analytics.messages({ cursor: "bad" }), 400, "invalid_cursor");
      });

      await t.step("the example docs/agents.md quotes (examples/sdk_send.ts) runs", async () => {
        const before = smtp.messages().length;
        const draining = (async () => {
          for (let i = 0; i < 20 && smtp.messages().length < before + 4; i++) {
            await stack.drainOutbox();
            await new Promise((r) => setTimeout(r, 100));
          }
        })();
        const progress = await welcomeAndAnnounce(
          { url: stack.url, accessToken: user.token },
          "jane@example.com",
          ["x@example.com", "y@example.com"],
        );
        await draining;
        assert.equal(progress.at(-1)!.sent, 2);
        const terms = smtp.messages().slice(before).find((m) => m.data.includes("Subject: New terms"))!;
        assert.match(terms.data, /filename=terms\.txt/);
        // Jane: the welcome (without its template data), then the terms with the stored file.
        assert.deepEqual(smtp.messages().slice(before).map((m) => m.rcptTo[0]).sort(), [
          "jane@example.com",
          "jane@example.com",
          "x@example.com",
          "y@example.com",
        ]);
      });

      await t.step("empty and dot refs are refused before any request; progress stops on abort", async () => {
        for (const ref of ["", ".", ".."]) {
          await rejectsWith(mailroom.configs.get(ref), 0, "invalid_request");
          await rejectsWith(mailroom.bulk.status(ref), 0, "invalid_request");
        }
        const later = await mailroom.bulk.send({
          recipients: ["later@example.com"],
          text: "x",
          scheduled_at: new Date(Date.now() + 3_600_000).toISOString(),
        });
        const controller = new AbortController();
        const started = performance.now();
        let polls = 0;
        setTimeout(() => controller.abort(), 100);
        for await (
          const _ of mailroom.bulk.progress(later.batch_id, { intervalMs: 120_000, signal: controller.signal })
        ) {
          polls++;
        }
        assert.equal(polls, 1, "one poll, then the abort ends the wait");
        // The interval is two minutes: ending far sooner shows the abort cut the wait short (the
        // margin is wide so that a loaded machine's slow first poll cannot fail it).
        assert.ok(performance.now() - started < 60_000, "without waiting out the interval");
        await mailroom.bulk.cancel(later.batch_id);
      });

      await t.step("a bad token is a MailroomError too", async () => {
        const anonymous = createMailroomClient({ url: stack.url, accessToken: "not-a-token" });
        await rejectsWith(anonymous.configs.list(), 401, "invalid_token");
        const unreachable = createMailroomClient({ url: "http://127.0.0.1:9", accessToken: "x" });
        const failure = await rejectsWith(unreachable.configs.list(), 0, "network_error");
        assert.ok((failure as { cause?: unknown }).cause, "the underlying error is kept as cause");
        const noToken = createMailroomClient({
          url: stack.url,
          accessToken: () => {
            throw new Error("signed out");
          },
        });
        await rejectsWith(noToken.configs.list(), 0, "token_unavailable");
      });
    } finally {
      await smtp.close();
      await stack.close();
    }
  },
});
