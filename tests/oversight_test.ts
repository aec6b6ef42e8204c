// Human oversight, part one (issue 29): guardrails and the stop button, through every send
// path, against the real database and a real SMTP server that records what it receives.
import assert from "node:assert/strict";
import type postgres from "postgres";
import { startTestStack, type TestStack, userWithCatcher } from "./harness.ts";
import { startScriptedSmtp } from "./scripted_smtp.ts";

type ErrorBody = { error: { code: string; message: string; details?: Record<string, unknown> } };

async function body<T = Record<string, unknown>>(res: Response): Promise<T> {
  return await res.json() as T;
}

Deno.test({
  name: "guardrails and the stop button hold on every send path",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const stack: TestStack = await startTestStack({ MAILROOM_ALLOW_PLAINTEXT_SMTP: "true" });
    const smtp = await startScriptedSmtp({ extensions: ["PIPELINING"] });
    const setup = async () => {
      const user = await stack.createUser();
      const config = await stack.createConfig(user, { port: smtp.port, security: "none", username: null });
      // The same user as an OAuth client (an agent) holds the token: Supabase stamps client_id.
      const agent = await stack.mint({
        sub: user.id,
        email: user.email,
        expiresIn: "1h",
        extra: { client_id: "agent-app", session_id: crypto.randomUUID() },
      });
      return { user, config, agent };
    };
    const call = (token: string, path: string, payload?: unknown, method = "POST", headers?: Record<string, string>) =>
      stack.invoke(path, { token, method, ...(payload === undefined ? {} : { body: payload }), headers });
    const receivedBy = (address: string) => smtp.messages().filter((m) => m.rcptTo.includes(address)).length;
    const statusOf = async (id: string) =>
      (await stack.sql<{ status: string; error_class: string | null }[]>`
        select status, error_class from public.email_audit_log where id = ${id}`)[0];

    try {
      await t.step("a denied recipient reaches nothing, on send-email, scheduled sends and send-bulk", async () => {
        const { user } = await setup();
        const set = await call(user.token, "oversight/guardrails", {
          deny_recipients: ["boss@corp.example", "*.rival.example"],
        }, "PUT");
        assert.equal(set.status, 200, await set.clone().text());
        assert.deepEqual((await body<{ deny_recipients: string[] }>(set)).deny_recipients, [
          "*.rival.example",
          "boss@corp.example",
        ]);

        const direct = await call(user.token, "send-email", { to: "Boss@Corp.example", text: "hi" });
        assert.equal(direct.status, 422);
        const refused = await body<ErrorBody>(direct);
        assert.equal(refused.error.code, "recipient_denied");
        // Named as the message would carry it (matched without regard to case).
        assert.deepEqual(refused.error.details?.recipients, ["Boss@corp.example"]);
        assert.match(refused.error.message, /Boss@corp\.example/);

        const cc = await call(user.token, "send-email", {
          to: "ok@corp.example",
          cc: "x@mail.rival.example",
          text: "hi",
        });
        assert.equal((await body<ErrorBody>(cc)).error.code, "recipient_denied", "cc is checked too (subdomain)");

        // A send that would wait for approval is refused as well, not held.
        const always = { deny_recipients: ["boss@corp.example", "*.rival.example"], approval: "always" };
        assert.equal((await call(user.token, "oversight/guardrails", always, "PUT")).status, 200);
        const held = await call(user.token, "send-email", { to: "boss@corp.example", text: "hi" });
        assert.equal(held.status, 422);
        assert.equal((await body<ErrorBody>(held)).error.code, "recipient_denied");
        assert.equal(
          (await call(user.token, "oversight/guardrails", { ...always, approval: "off" }, "PUT")).status,
          200,
        );

        const later = await call(user.token, "send-email", {
          to: "boss@corp.example",
          text: "hi",
          scheduled_at: new Date(Date.now() + 3_600_000).toISOString(),
        });
        assert.equal(later.status, 422);

        const bulk = await call(user.token, "send-bulk", {
          recipients: ["a@corp.example", "b@sales.rival.example"],
          subject: "s",
          text: "t",
        });
        assert.equal(bulk.status, 422);
        assert.deepEqual((await body<ErrorBody>(bulk)).error.details?.recipients, ["b@sales.rival.example"]);

        // The domain itself is not one of its subdomains; others go.
        const fine = await call(user.token, "send-email", { to: "ceo@rival.example", text: "hi" });
        assert.equal(fine.status, 200, await fine.clone().text());
        assert.equal(receivedBy("boss@corp.example") + receivedBy("b@sales.rival.example"), 0);
        assert.equal(receivedBy("ceo@rival.example"), 1);
      });

      await t.step("an allow list and a recipient cap", async () => {
        const { user } = await setup();
        await call(user.token, "oversight/guardrails", {
          allow_recipients: ["corp.example"],
          max_recipients_per_request: 2,
        }, "PUT");
        const outside = await call(user.token, "send-email", { to: "x@elsewhere.example", text: "hi" });
        assert.equal((await body<ErrorBody>(outside)).error.code, "recipient_denied");
        const many = await call(user.token, "send-email", {
          to: ["a@corp.example", "b@corp.example"],
          cc: "c@corp.example",
          text: "hi",
        });
        assert.equal(many.status, 422);
        assert.equal((await body<ErrorBody>(many)).error.code, "recipient_cap_exceeded");
        const ok = await call(user.token, "send-email", { to: ["a@corp.example", "b@corp.example"], text: "hi" });
        assert.equal(ok.status, 200);
      });

      await t.step("queued mail already in the outbox is checked again when it is sent", async () => {
        const { user, config } = await setup();
        const [row] = await stack.asDataApi(user, (tx) =>
          tx<{ id: string }[]>`
            insert into public.email_audit_log (config_id, from_email, to_addresses, status, payload)
            values (${config}::uuid, 'x@example.com', array['decoy@example.com'], 'queued',
                    jsonb_build_object('kind', 'request', 'request',
                      jsonb_build_object('to', 'victim@blocked.example', 'text', 'hi')))
            returning id`);
        await call(user.token, "oversight/guardrails", { deny_recipients: ["blocked.example"] }, "PUT");
        await stack.drainOutbox();
        assert.deepEqual(await statusOf(row.id), { status: "failed", error_class: "recipient_denied" });
        assert.equal(receivedBy("victim@blocked.example"), 0);
      });

      await t.step("the stop button: sends answer 409, queued mail waits, lifting it sends each once", async () => {
        const { user, config, agent } = await setup();
        const queued = await call(user.token, "send-bulk", {
          recipients: Array.from({ length: 5 }, (_, i) => `held${i}@example.com`),
          subject: "s",
          text: "t",
          scheduled_at: new Date(Date.now() + 1_000).toISOString(),
        });
        assert.equal(queued.status, 202);
        // An agent may press it.
        const stop = await call(agent, "oversight/stop", { reason: "checking what the agent does" });
        assert.equal(stop.status, 200, await stop.clone().text());
        assert.ok((await body<{ stopped_at: string }>(stop)).stopped_at);

        const send = await call(user.token, "send-email", { to: "x@example.com", text: "hi" });
        assert.equal(send.status, 409);
        const stopped = await body<ErrorBody>(send);
        assert.equal(stopped.error.code, "sending_stopped");
        assert.match(stopped.error.message, /checking what the agent does/);
        assert.equal((await call(user.token, "send-bulk", { recipients: ["y@example.com"], text: "t" })).status, 409);

        await new Promise((resolve) => setTimeout(resolve, 1_100));
        await stack.drainOutbox();
        const held = await stack.sql<{ status: string; error_class: string | null }[]>`
          select status, error_class from public.email_audit_log where config_id = ${config}`;
        assert.equal(held.length, 5);
        assert.ok(
          held.every((r) => r.status === "queued" && r.error_class === "sending_stopped"),
          JSON.stringify(held),
        );
        assert.equal(smtp.messages().filter((m) => m.rcptTo.some((r) => r.startsWith("held"))).length, 0);

        // An agent cannot lift it; the owner's own session can.
        const agentLift = await call(agent, "oversight/resume", {});
        assert.equal(agentLift.status, 403);
        assert.equal((await body<ErrorBody>(agentLift)).error.code, "first_party_session_required");
        const lift = await call(user.token, "oversight/resume", {});
        assert.equal(lift.status, 200, await lift.clone().text());
        assert.equal((await call(user.token, "oversight/resume", {})).status, 409, "not stopped any more");
        await stack.drainOutbox();
        for (let i = 0; i < 5; i++) assert.equal(receivedBy(`held${i}@example.com`), 1);
      });

      await t.step("a stop pressed mid-drain holds the rest of the batch; lifted, each goes once", async () => {
        // A slow server: each message's final reply takes 700 ms, so the stop lands mid-batch.
        const slow = await startScriptedSmtp({ extensions: ["PIPELINING"], dataReplyDelayMs: 700 });
        try {
          const user = await stack.createUser();
          await stack.createConfig(user, { port: slow.port, security: "none", username: null });
          const to = Array.from({ length: 6 }, (_, i) => `mid${i}@example.com`);
          const bulk = await call(user.token, "send-bulk", { recipients: to, subject: "s", text: "t" });
          assert.equal(bulk.status, 202);
          const draining = stack.drainOutbox();
          while (slow.messages().length === 0) await new Promise((resolve) => setTimeout(resolve, 20));
          assert.equal((await call(user.token, "oversight/stop", { reason: "mid-drain" })).status, 200);
          await draining;
          const during = slow.messages().length;
          // The message on the wire, and at most the one marked in flight while it was, go; the rest wait.
          assert.ok(during >= 1 && during <= 2, `${during} went after the stop`);
          await stack.drainOutbox();
          assert.equal(slow.messages().length, during, "nothing more while stopped");
          assert.equal((await call(user.token, "oversight/resume", {})).status, 200);
          await stack.drainOutbox();
          await stack.drainOutbox();
          for (const address of to) {
            assert.equal(slow.messages().filter((m) => m.rcptTo.includes(address)).length, 1, address);
          }
        } finally {
          await slow.close();
        }
      });

      await t.step("a stop on one config holds only that config", async () => {
        const { user } = await setup();
        const other = await stack.createConfig(user, {
          name: "other",
          port: smtp.port,
          security: "none",
          username: null,
          is_default: false,
        });
        assert.equal((await call(user.token, "oversight/stop", { config: "other" })).status, 200);
        const viaOther = await call(user.token, "send-email", { to: "a@example.com", text: "hi", config: other });
        assert.equal((await body<ErrorBody>(viaOther)).error.code, "sending_stopped");
        const viaDefault = await call(user.token, "send-email", { to: "b@example.com", text: "hi" });
        assert.equal(viaDefault.status, 200);
      });

      await t.step("an agent may tighten guardrails, never loosen them; every change is recorded", async () => {
        const { user, agent } = await setup();
        const put = (token: string, payload: unknown) => call(token, "oversight/guardrails", payload, "PUT");
        assert.equal(
          (await put(agent, { deny_recipients: ["a.example"], max_recipients_per_request: 10 })).status,
          200,
        );
        assert.equal(
          (await put(agent, { deny_recipients: ["a.example", "b.example"], max_recipients_per_request: 5 })).status,
          200,
        );
        for (
          const loosen of [
            { deny_recipients: ["b.example"], max_recipients_per_request: 5 },
            { deny_recipients: ["a.example", "b.example"], max_recipients_per_request: 50 },
            { deny_recipients: ["a.example", "b.example"] },
          ]
        ) {
          const res = await put(agent, loosen);
          assert.equal(res.status, 403, JSON.stringify(loosen));
          assert.equal((await body<ErrorBody>(res)).error.code, "first_party_session_required");
        }
        // A config of its own cannot widen what the account allows.
        await put(user.token, { allow_recipients: ["corp.example"] });
        const widen = await put(agent, { config: "default", allow_recipients: ["corp.example", "gmail.com"] });
        assert.equal(widen.status, 200, "a config's own list only adds a condition");
        const outside = await call(agent, "send-email", { to: "x@gmail.com", text: "hi" });
        assert.equal((await body<ErrorBody>(outside)).error.code, "recipient_denied", "the account's list still holds");
        assert.equal((await put(user.token, { deny_recipients: [] })).status, 200, "the owner may");

        const events = await body<{ events: { action: string; actor: { client_id?: string } }[] }>(
          await call(user.token, "oversight/events", undefined, "GET"),
        );
        assert.deepEqual(events.events.map((e) => [e.action, e.actor.client_id ?? null]), [
          ["guardrails_changed", null],
          ["guardrails_changed", "agent-app"],
          ["guardrails_changed", null],
          ["guardrails_changed", "agent-app"],
          ["guardrails_changed", "agent-app"],
        ]);
      });

      await t.step("patterns match as addresses are sent: IDN in either spelling, +tags, case", async () => {
        const { user } = await setup();
        const set = await call(user.token, "oversight/guardrails", {
          deny_recipients: ["Bücher.example", "boss@corp.example"],
        }, "PUT");
        assert.deepEqual((await body<{ deny_recipients: string[] }>(set)).deny_recipients, [
          "boss@corp.example",
          "xn--bcher-kva.example",
        ]);
        for (
          const to of ["a@bücher.example", "ü@bücher.example", "a@XN--BCHER-KVA.example", "boss+agent@corp.example"]
        ) {
          const res = await call(user.token, "send-email", { to, text: "hi" });
          assert.equal(res.status, 422, to);
          assert.equal((await body<ErrorBody>(res)).error.code, "recipient_denied", to);
        }
        const long = await call(user.token, "oversight/guardrails", {
          deny_recipients: ["İ".repeat(300) + "@x.example"],
        }, "PUT");
        assert.equal(long.status, 400, "a pattern that grows past 320 characters when written canonically");
        const control = await call(
          user.token,
          "oversight/guardrails",
          { deny_recipients: ["corp\u0085.example"] },
          "PUT",
        );
        assert.equal(control.status, 400, "a pattern that could never match");
        // A zero-width space is no part of a domain (UTS #46 drops it): the pattern is the domain.
        const invisible = await call(user.token, "oversight/guardrails", {
          deny_recipients: ["boss@corp.example", "corp\u200b.example"],
        }, "PUT");
        assert.deepEqual((await body<{ deny_recipients: string[] }>(invisible)).deny_recipients, [
          "boss@corp.example",
          "corp.example",
        ]);
      });

      await t.step(
        "a config's guardrails add to the account's: an agent's copy cannot outlive a tightening",
        async () => {
          const { user, agent } = await setup();
          const put = (token: string, payload: unknown) => call(token, "oversight/guardrails", payload, "PUT");
          assert.equal((await put(user.token, { allow_recipients: ["a.example", "b.example"] })).status, 200);
          assert.equal(
            (await put(agent, { config: "default", allow_recipients: ["a.example", "b.example"] })).status,
            200,
          );
          assert.equal((await put(user.token, { allow_recipients: ["a.example"] })).status, 200);
          const res = await call(agent, "send-email", { to: ["x@b.example", "y@a.example"], text: "hi" });
          assert.equal(res.status, 422);
          assert.deepEqual((await body<ErrorBody>(res)).error.details?.recipients, ["x@b.example"]);
        },
      );

      await t.step("deleting a config with guardrails or a stop: never by an agent, and recorded", async () => {
        const { user, config, agent } = await setup();
        await call(user.token, "oversight/stop", { config: "default", reason: "hold" });
        const byAgent = await call(agent, `smtp-configs/${config}`, undefined, "DELETE");
        assert.equal(byAgent.status, 403);
        assert.equal((await body<ErrorBody>(byAgent)).error.code, "first_party_session_required");
        assert.equal((await call(user.token, `smtp-configs/${config}`, undefined, "DELETE")).status, 200);
        const events = (await body<{ events: { action: string; config_id: string | null }[] }>(
          await call(user.token, "oversight/events", undefined, "GET"),
        )).events;
        assert.deepEqual(events.map((e) => [e.action, e.config_id]), [
          ["guardrails_removed", config],
          ["sending_stopped", config],
        ], "the record keeps the config's id");
      });

      await t.step("a dry run checks, renders and tells what would happen, and writes nothing", async () => {
        const { user, agent } = await setup();
        const rows = async () =>
          (await stack.sql<{ n: number }[]>`
            select count(*)::integer as n from public.email_audit_log where user_id = ${user.id}`)[0].n;
        const dry = await call(user.token, "send-email", {
          to: "dry@example.com",
          cc: "Cc Person <cc@example.com>",
          subject: "Dry",
          text: "run",
          html: "<p>run</p>",
          dry_run: true,
        });
        assert.equal(dry.status, 200, await dry.clone().text());
        const result = await dry.json();
        assert.equal(result.outcome, "would_send");
        assert.deepEqual([result.message.to, result.message.cc, result.message.subject, result.message.html], [
          ["dry@example.com"],
          ["cc@example.com"],
          "Dry",
          "<p>run</p>",
        ]);
        assert.match(result.message.headers, /^Subject: Dry$/m);
        assert.ok(result.message.size_bytes > 100);

        await call(user.token, "oversight/guardrails", { deny_recipients: ["no.example"], approval: "agents" }, "PUT");
        const refused = await (await call(user.token, "send-email", { to: "x@no.example", text: "x", dry_run: true }))
          .json();
        assert.deepEqual([refused.outcome, refused.refusal.code], ["would_be_refused", "recipient_denied"]);
        const waits = await (await call(agent, "send-email", { to: "x@example.com", text: "x", dry_run: true })).json();
        assert.deepEqual([waits.outcome, waits.approval.reason], ["would_wait_for_approval", "agents"]);
        const bulk = await call(agent, "send-bulk", {
          recipients: [
            "a@example.com",
            { email: "b@example.com", data: { name: "B" } },
            "c@example.com",
            "d@example.com",
          ],
          subject: "Hello {{name}}",
          text: "Hi {{name}}",
          data: { name: "there" },
          template: undefined,
          dry_run: true,
        });
        assert.equal(bulk.status, 400, "data without a template is refused, dry run or not");
        await bulk.body?.cancel();
        const bulkDry = await (await call(agent, "send-bulk", {
          recipients: ["a@example.com", "b@example.com", "c@example.com", "d@example.com"],
          subject: "Hello",
          text: "Hi",
          dry_run: true,
        })).json();
        assert.deepEqual([bulkDry.outcome, bulkDry.count, bulkDry.samples.length], ["would_wait_for_approval", 4, 3]);
        await call(user.token, "oversight/stop", {});
        const stopped = await (await call(user.token, "send-email", { to: "x@example.com", text: "x", dry_run: true }))
          .json();
        assert.deepEqual([stopped.outcome, stopped.refusal.code], ["would_be_refused", "sending_stopped"]);
        await call(user.token, "oversight/resume", {});

        const perMessage = await call(user.token, "send-bulk", {
          messages: [{ to: "a@example.com", text: "x", dry_run: true }],
        });
        assert.equal(perMessage.status, 422, "dry_run is the batch's, not a message's");
        await perMessage.body?.cancel();
        assert.equal(await rows(), 0, "no audit row, no batch row: nothing reaches the analytics");
        assert.equal(receivedBy("dry@example.com"), 0);
      });

      await t.step("agents' daily cap: counted over 24 hours across paths, the owner's own sends apart", async () => {
        const { user, agent } = await setup();
        await call(user.token, "oversight/guardrails", { max_agent_messages_per_day: 3 }, "PUT");
        assert.equal((await call(agent, "send-email", { to: "a1@example.com", text: "x" })).status, 200);
        const later = new Date(Date.now() + 3_600_000).toISOString();
        assert.equal(
          (await call(agent, "send-email", { to: "a2@example.com", text: "x", scheduled_at: later })).status,
          202,
        );
        const bulk = await call(agent, "send-bulk", { recipients: ["a3@example.com", "a4@example.com"], text: "x" });
        assert.equal(bulk.status, 429, "two more would make four");
        const refused = await body<ErrorBody>(bulk);
        assert.equal(refused.error.code, "agent_daily_cap_reached");
        assert.deepEqual([refused.error.details?.limit, refused.error.details?.used], [3, 2]);
        assert.equal((await call(agent, "send-email", { to: "a3@example.com", text: "x" })).status, 200, "one fits");
        assert.equal((await call(agent, "send-email", { to: "a4@example.com", text: "x" })).status, 429);
        assert.equal(
          (await call(user.token, "send-email", { to: "own@example.com", text: "x" })).status,
          200,
          "the owner's own",
        );
        const viaTool = await call(user.token, "send-email", { to: "t@example.com", text: "x" }, "POST", {
          "x-mailroom-via": "langchain",
        });
        assert.equal(viaTool.status, 429, "a send through an agent tool counts as an agent's");
        await viaTool.body?.cancel();
        const raise = await call(agent, "oversight/guardrails", { max_agent_messages_per_day: 10 }, "PUT");
        assert.equal(raise.status, 403, "an agent cannot raise its own allowance");
        await raise.body?.cancel();
        const dry = await (await call(agent, "send-email", { to: "d@example.com", text: "x", dry_run: true })).json();
        assert.deepEqual([dry.outcome, dry.refusal.code], ["would_be_refused", "agent_daily_cap_reached"]);
      });

      await t.step("bad input gets a clear 4xx, and another user's config is not found", async () => {
        const { user } = await setup();
        const stranger = await setup();
        const bad = await call(user.token, "oversight/guardrails", { deny_recipients: ["not an address"] }, "PUT");
        assert.equal(bad.status, 400);
        const theirs = await call(user.token, "oversight/stop", { config: stranger.config });
        assert.equal(theirs.status, 404);
        assert.equal((await call(user.token, "oversight/nothing", undefined, "GET")).status, 404);
        assert.equal((await call(user.token, "oversight/stop", undefined, "GET")).status, 405);
        const events = await call(user.token, "oversight/events?limit=0", undefined, "GET");
        assert.equal(events.status, 400);
      });
    } finally {
      await smtp.close();
      await stack.close();
    }
  },
});

Deno.test({
  name: "the approval queue: held sends wait, only the owner's own session decides, each goes once",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const stack: TestStack = await startTestStack({ MAILROOM_ALLOW_PLAINTEXT_SMTP: "true" });
    const smtp = await startScriptedSmtp({ extensions: ["PIPELINING"] });
    const setup = async (approval: "agents" | "always", extra: Record<string, unknown> = {}) => {
      const user = await stack.createUser();
      const config = await stack.createConfig(user, { port: smtp.port, security: "none", username: null });
      const agent = await stack.mint({
        sub: user.id,
        email: user.email,
        expiresIn: "1h",
        extra: { client_id: "agent-app" },
      });
      const set = await call(user.token, "oversight/guardrails", { approval, ...extra }, "PUT");
      assert.equal(set.status, 200, await set.clone().text());
      return { user, config, agent };
    };
    const call = (token: string, path: string, payload?: unknown, method = "POST", headers?: Record<string, string>) =>
      stack.invoke(path, { token, method, ...(payload === undefined ? {} : { body: payload }), headers });
    const receivedBy = (address: string) => smtp.messages().filter((m) => m.rcptTo.includes(address)).length;
    const statusOf = async (id: string) =>
      (await stack.sql<{ status: string }[]>`select status from public.email_audit_log where id = ${id}`)[0].status;

    try {
      await t.step("an agent's send waits; the owner's own send goes; an agent cannot approve", async () => {
        const { user, agent } = await setup("agents");
        const held = await call(agent, "send-email", {
          to: "held1@example.com",
          subject: "Hi",
          text: "from the agent",
        });
        assert.equal(held.status, 202, await held.clone().text());
        const body = await held.json();
        assert.equal(body.status, "pending_approval");
        assert.equal(body.approval.reason, "agents");
        assert.match(body.approval.message, /not sent.*approval/);
        assert.ok(Date.parse(body.approval.expires_at) > Date.now() + 71 * 3_600_000, "72 hours by default");

        const own = await call(user.token, "send-email", { to: "own@example.com", text: "mine" });
        assert.equal(own.status, 200, "the owner's own session is not an agent");

        await stack.drainOutbox();
        assert.equal(receivedBy("held1@example.com"), 0, "nothing leaves while it waits");

        const list = await (await call(user.token, "oversight/approvals", undefined, "GET")).json();
        assert.deepEqual(list.approvals.map((a: { id: string }) => a.id), [body.id]);
        assert.equal(list.approvals[0].client_id, "agent-app");
        const detail = await (await call(user.token, `oversight/approvals/${body.id}`, undefined, "GET")).json();
        assert.deepEqual([detail.content.to, detail.content.subject, detail.content.text], [
          ["held1@example.com"],
          "Hi",
          "from the agent",
        ]);

        const byAgent = await call(agent, `oversight/approvals/${body.id}/approve`, {});
        assert.equal(byAgent.status, 403);
        assert.equal((await byAgent.json()).error.code, "first_party_session_required");
        const loosen = await call(agent, "oversight/guardrails", { approval: "off" }, "PUT");
        assert.equal(loosen.status, 403, "nor turn approval off");

        const approved = await call(user.token, `oversight/approvals/${body.id}/approve`, {});
        assert.equal(approved.status, 200, await approved.clone().text());
        assert.deepEqual((await approved.json()).decided, [body.id]);
        const again = await call(user.token, `oversight/approvals/${body.id}/approve`, {});
        assert.equal(again.status, 409);
        assert.equal((await again.json()).error.code, "not_pending");
        await stack.drainOutbox();
        await stack.drainOutbox();
        assert.equal(receivedBy("held1@example.com"), 1, "approved: delivered exactly once");
        const [row] = await stack.sql<{ status: string; message_id: string }[]>`
          select status, message_id from public.email_audit_log where id = ${body.id}`;
        assert.deepEqual(row, { status: "sent", message_id: body.message_id }, "with the Message-ID given at accept");
      });

      await t.step("reject and expiry deliver nothing; the record says who and why", async () => {
        const { user, agent } = await setup("agents");
        const a = await (await call(agent, "send-email", { to: "rejected@example.com", text: "x" })).json();
        const b = await (await call(agent, "send-email", { to: "expired@example.com", text: "x" })).json();
        const rejected = await call(user.token, `oversight/approvals/${a.id}/reject`, { reason: "not this one" });
        assert.equal(rejected.status, 200);
        await stack.sql`update public.email_audit_log set approval_expires_at = now() - interval '1 second'
                         where id = ${b.id}`;
        await stack.drainOutbox();
        assert.equal(await statusOf(a.id), "rejected");
        assert.equal(await statusOf(b.id), "expired");
        assert.equal(receivedBy("rejected@example.com") + receivedBy("expired@example.com"), 0);
        const late = await call(user.token, `oversight/approvals/${b.id}/approve`, {});
        assert.equal(late.status, 409, "an expired send cannot be approved");
        const events = (await (await call(user.token, "oversight/events", undefined, "GET")).json()).events;
        assert.deepEqual(events.slice(0, 2).map((e: { action: string }) => e.action), ["expired", "rejected"]);
        assert.equal(events[1].details.reason, "not this one");
      });

      await t.step("a batch waits as a whole and is approved at once; a scheduled send keeps its time", async () => {
        const { user, agent } = await setup("agents");
        const bulk = await call(agent, "send-bulk", {
          recipients: ["b1@example.com", "b2@example.com", "b3@example.com"],
          subject: "s",
          text: "t",
        });
        assert.equal(bulk.status, 202);
        const accepted = await bulk.json();
        assert.deepEqual([accepted.queued, accepted.pending_approval], [0, 3]);
        const progress = await (await call(user.token, `send-bulk/${accepted.batch_id}`, undefined, "GET")).json();
        assert.equal(progress.counts.pending_approval, 3);
        const approved = await call(user.token, `oversight/approvals/batch/${accepted.batch_id}/approve`, {});
        assert.equal((await approved.json()).decided.length, 3);
        await stack.drainOutbox();
        for (const r of ["b1@example.com", "b2@example.com", "b3@example.com"]) assert.equal(receivedBy(r), 1);

        const when = new Date(Date.now() + 3_600_000).toISOString();
        const later =
          await (await call(agent, "send-email", { to: "later@example.com", text: "x", scheduled_at: when }))
            .json();
        assert.equal(later.status, "pending_approval");
        await call(user.token, `oversight/approvals/${later.id}/approve`, {});
        assert.equal(await statusOf(later.id), "scheduled", "approved, it waits for its time");
      });

      await t.step("approve and reject at once: one wins, the other gets 409", async () => {
        const { user, agent } = await setup("agents");
        const held = await (await call(agent, "send-email", { to: "race@example.com", text: "x" })).json();
        const [approve, reject] = await Promise.all([
          call(user.token, `oversight/approvals/${held.id}/approve`, {}),
          call(user.token, `oversight/approvals/${held.id}/reject`, {}),
        ]);
        assert.deepEqual([approve.status, reject.status].sort(), [200, 409]);
        await approve.body?.cancel();
        await reject.body?.cancel();
      });

      await t.step("approval always, the agent tools' header, the Data API, and MFA to decide", async () => {
        const { user, agent } = await setup("always", { approval_requires_aal2: true });
        const own = await call(user.token, "send-email", { to: "always@example.com", text: "x" });
        assert.equal(own.status, 202, "always: the owner's own send waits too");
        const id = (await own.json()).id;
        const aal1 = await call(user.token, `oversight/approvals/${id}/approve`, {});
        assert.equal(aal1.status, 403);
        assert.equal((await aal1.json()).error.code, "mfa_required");
        const aal2 = await stack.mint({ sub: user.id, email: user.email, expiresIn: "1h", extra: { aal: "aal2" } });
        assert.equal((await call(aal2, `oversight/approvals/${id}/approve`, {})).status, 200);

        const { user: viaUser } = await setup("agents");
        const viaTool = await call(viaUser.token, "send-email", { to: "tool@example.com", text: "x" }, "POST", {
          "x-mailroom-via": "langchain",
        });
        assert.equal(viaTool.status, 202, "a send through an agent tool waits under approval: agents");
        await viaTool.body?.cancel();

        // Straight through the Data API with the agent's claims: held as well, and no way to send now.
        const { user: dataUser, config } = await setup("agents");
        const claims = { sub: dataUser.id, role: "authenticated", client_id: "agent-app" };
        const rows = await stack.sql.begin(async (tx) => {
          await tx`select set_config('request.jwt.claims', ${JSON.stringify(claims)}, true),
                          set_config('role', 'authenticated', true)`;
          return await tx<{ status: string }[]>`
            insert into public.email_audit_log (config_id, from_email, to_addresses, status, payload)
            values (${config}::uuid, 'x@example.com', array['data@example.com'], 'queued',
                    jsonb_build_object('kind', 'request', 'request', jsonb_build_object('to', 'data@example.com', 'text', 'x')))
            returning status`;
        });
        assert.equal(rows[0].status, "pending_approval");
        await assert.rejects(
          stack.sql.begin(async (tx) => {
            await tx`select set_config('request.jwt.claims', ${JSON.stringify(claims)}, true),
                            set_config('role', 'authenticated', true)`;
            await tx`insert into public.email_audit_log (config_id, from_email, to_addresses, status)
                     values (${config}::uuid, 'x@example.com', array['data@example.com'], 'sending')`;
          }),
          /approval_required/,
        );
        await stack.drainOutbox();
        assert.equal(receivedBy("data@example.com"), 0);
        void agent;
      });
      await t.step(
        "analytics count held, rejected and expired sends, and a day holding them is summarized",
        async () => {
          const { user, agent } = await setup("agents");
          const a = await (await call(agent, "send-email", { to: "r@example.com", text: "x" })).json();
          const b = await (await call(agent, "send-email", { to: "p@example.com", text: "x" })).json();
          await call(user.token, `oversight/approvals/${a.id}/reject`, {}).then((r) => r.body?.cancel());
          // The rejected one, three days ago: its day is final and gets summarized.
          await stack.sql`update public.email_audit_log set created_at = now() - interval '3 days' where id = ${a.id}`;
          const summary = await (await call(user.token, "email-analytics?tz=UTC", undefined, "GET")).json();
          assert.equal(summary.totals.rejected, 1, JSON.stringify(summary.totals));
          assert.equal(summary.totals.pending_approval, 1);
          assert.equal(summary.total, 2);
          const [{ n }] = await stack.sql<{ n: number }[]>`
          select count(*)::integer as n from private.email_stats_days
           where user_id = ${user.id} and day = date_trunc('day', now() - interval '3 days', 'UTC')`;
          assert.equal(n, 1, "the day with a rejected send was summarized");
          void b;
        },
      );

      await t.step("an approved send through a config that logs in goes with its password", async () => {
        const { user, smtp: catcher } = await userWithCatcher(stack, "login");
        try {
          assert.equal((await call(user.token, "oversight/guardrails", { approval: "always" }, "PUT")).status, 200);
          const held = await (await call(user.token, "send-email", { to: "login@example.com", text: "x" })).json();
          assert.equal(held.status, "pending_approval", JSON.stringify(held));
          const approved = await call(user.token, `oversight/approvals/${held.id}/approve`, {});
          assert.equal(approved.status, 200, await approved.clone().text());
          await approved.body?.cancel();
          await stack.drainOutbox();
          const [row] = await stack.sql<{ status: string; error_class: string | null }[]>`
            select status, error_class from public.email_audit_log where id = ${held.id}`;
          assert.deepEqual(row, { status: "sent", error_class: null });
          assert.equal(catcher.messages().length, 1, "delivered once, after logging in");
          const [config] = await stack.sql<{ needs_attention: string | null }[]>`
            select needs_attention from public.user_smtp_configs where user_id = ${user.id}`;
          assert.equal(config.needs_attention, null, "the config was not paused for a login it never tried");
        } finally {
          await catcher.close();
        }
      });

      await t.step("a stricter approval holds mail a worker claimed but had not started", async () => {
        const { user, smtp: catcher } = await userWithCatcher(stack, "claimed");
        try {
          const later = new Date(Date.now() + 1_000).toISOString();
          const queued =
            await (await call(user.token, "send-email", { to: "c@example.com", text: "x", scheduled_at: later }))
              .json();
          assert.equal(queued.status, "scheduled", JSON.stringify(queued));
          // As a worker's claim leaves it: still scheduled, leased.
          await stack
            .sql`update public.email_audit_log set leased_by = 'w1', lease_until = now() + interval '90 seconds'
                           where id = ${queued.id}`;
          assert.equal((await call(user.token, "oversight/guardrails", { approval: "always" }, "PUT")).status, 200);
          // The worker's run ends: what it claimed and did not start goes back (here: nothing).
          await stack.sql`select private.release_outbox_leases('w1')`;
          const [held] = await stack.sql<{ status: string; leased_by: string | null }[]>`
            select status, leased_by from public.email_audit_log where id = ${queued.id}`;
          assert.deepEqual(held, { status: "pending_approval", leased_by: null });
          await new Promise((resolve) => setTimeout(resolve, 1_200));
          await stack.drainOutbox();
          assert.equal(catcher.messages().length, 0, "nothing goes before the owner approves");
        } finally {
          await catcher.close();
        }
      });

      await t.step(
        "approval is decided once per send: loosened meanwhile, a held send still logs in nowhere",
        async () => {
          const { user, smtp: catcher } = await userWithCatcher(stack, "race");
          const conn = await stack.sql.reserve();
          try {
            const agents = { approval: "agents", max_agent_messages_per_day: 100 };
            assert.equal((await call(user.token, "oversight/guardrails", agents, "PUT")).status, 200);
            const agent = await stack.mint({
              sub: user.id,
              email: user.email,
              expiresIn: "1h",
              extra: { client_id: "agent-app" },
            });
            // The owner's agent-budget lock, held here: the send's stop and approval statement
            // (its snapshot taken: approval `agents`) waits for it while the owner loosens approval.
            await conn`begin`;
            await conn`select pg_advisory_xact_lock(hashtextextended(${"mailroom:agent-budget:" + user.id}, 0))`;
            const sending = call(agent, "send-email", { to: "race@example.com", text: "x" });
            for (let i = 0; i < 200; i++) {
              const [{ waiting }] = await stack.sql<{ waiting: number }[]>`
              select count(*)::int as waiting from pg_stat_activity
               where wait_event_type = 'Lock' and wait_event = 'advisory'`;
              if (waiting > 0) break;
              await new Promise((resolve) => setTimeout(resolve, 25));
            }
            assert.equal(
              (await call(user.token, "oversight/guardrails", { ...agents, approval: "off" }, "PUT")).status,
              200,
            );
            await conn`commit`;
            const res = await sending;
            const answer = await res.json();
            assert.equal(res.status, 202, JSON.stringify(answer));
            assert.equal(answer.status, "pending_approval");
            const [{ n }] = await stack.sql<{ n: number }[]>`
            select count(*)::int as n from private.credential_events where user_id = ${user.id} and kind = 'auth_attempt'`;
            assert.equal(n, 0, "a held send begins no login (and reads no password)");
            assert.equal(catcher.messages().length, 0);
          } finally {
            conn.release();
            await catcher.close();
          }
        },
      );

      await t.step("review: MFA cannot be switched off, nor a stop lifted, by a one-factor session", async () => {
        const { user } = await setup("always", { approval_requires_aal2: true });
        const off = await call(user.token, "oversight/guardrails", { approval: "always" }, "PUT");
        assert.equal(off.status, 403);
        assert.equal((await off.json()).error.code, "mfa_required");
        const aal2 = await stack.mint({ sub: user.id, email: user.email, expiresIn: "1h", extra: { aal: "aal2" } });
        await call(aal2, "oversight/stop", {}).then((r) => r.body?.cancel());
        const lift = await call(user.token, "oversight/resume", {});
        assert.equal(lift.status, 403, "lifting the stop needs the second factor too");
        await lift.body?.cancel();
        assert.equal((await call(aal2, "oversight/resume", {})).status, 200);
      });

      await t.step("review: what was approved is what goes: a changed template or sender sends nothing", async () => {
        const { user, agent } = await setup("agents");
        const created = await call(agent, "templates", {
          name: "note",
          subject: "Quarterly note",
          text: "All is well.",
        });
        assert.equal(created.status, 201, await created.clone().text());
        const held = await (await call(agent, "send-email", { to: "tmpl@example.com", template: "note" })).json();
        const sender = await (await call(agent, "send-email", { to: "sender@example.com", text: "x" })).json();
        await call(user.token, `oversight/approvals/${held.id}/approve`, {}).then((r) => r.body?.cancel());
        await call(user.token, `oversight/approvals/${sender.id}/approve`, {}).then((r) => r.body?.cancel());
        await call(agent, "templates/note", { text: "Wire the money." }, "PATCH").then((r) => r.body?.cancel());
        await call(agent, "smtp-configs/default", { from_name: "The CEO" }, "PATCH").then((r) => r.body?.cancel());
        await stack.drainOutbox();
        assert.equal(receivedBy("tmpl@example.com") + receivedBy("sender@example.com"), 0);
        const rows = await stack.sql<{ status: string; error_class: string }[]>`
          select status, error_class from public.email_audit_log where id = any (${[held.id, sender.id]}::uuid[])`;
        assert.deepEqual(rows.map((r) => [r.status, r.error_class]), [
          ["failed", "held_content_changed"],
          ["failed", "held_content_changed"],
        ]);
      });

      await t.step(
        "review: a batch is sealed; the Data API's agent rows count; stricter approval holds what waits",
        async () => {
          const { user, config, agent } = await setup("agents");
          const accepted = await (await call(agent, "send-bulk", { recipients: ["s1@example.com"], text: "t" })).json();
          const claims = { sub: user.id, role: "authenticated", client_id: "agent-app" };
          const asAgent = (fn: (tx: postgres.TransactionSql) => Promise<unknown>) =>
            stack.sql.begin(async (tx) => {
              await tx`select set_config('request.jwt.claims', ${JSON.stringify(claims)}, true),
                            set_config('role', 'authenticated', true)`;
              return await fn(tx);
            });
          await assert.rejects(
            asAgent((tx) =>
              tx`insert into public.email_audit_log (config_id, batch_id, from_email, to_addresses, status, payload)
               values (${config}::uuid, ${accepted.batch_id}::uuid, 'x@example.com', array['n3@example.com'], 'queued',
                       jsonb_build_object('kind', 'recipient', 'to', 'victim@evil.example'))`
            ),
            /row-level security/,
            "no rows join a batch after the transaction that made it",
          );
          await call(user.token, "oversight/guardrails", { approval: "off", max_agent_messages_per_day: 2 }, "PUT")
            .then((r) => r.body?.cancel());
          const insert = () =>
            asAgent((tx) =>
              tx`insert into public.email_audit_log (config_id, from_email, to_addresses, status, payload)
               values (${config}::uuid, 'x@example.com', array['d@example.com'], 'queued',
                       jsonb_build_object('kind', 'request', 'request', jsonb_build_object('to', 'd@example.com', 'text', 'x')))`
            );
          await insert(); // the batch's held row was the first
          await assert.rejects(insert(), /agent_daily_cap_reached/, "an agent's Data API rows count too");

          const { user: owner2, agent: agent2 } = await setup("agents");
          await call(owner2.token, "oversight/guardrails", { approval: "off" }, "PUT").then((r) => r.body?.cancel());
          const later = await (await call(agent2, "send-email", {
            to: "waiting@example.com",
            text: "x",
            scheduled_at: new Date(Date.now() + 1_000).toISOString(),
          })).json();
          assert.equal(later.status, "scheduled");
          await call(owner2.token, "oversight/guardrails", { approval: "agents" }, "PUT").then((r) => r.body?.cancel());
          assert.equal(await statusOf(later.id), "pending_approval", "stricter approval holds what already waits");
          const ttl = await call(
            agent2,
            "oversight/guardrails",
            { approval: "agents", approval_ttl_hours: 720 },
            "PUT",
          );
          assert.equal(ttl.status, 403, "how long a send may wait is the owner's to say");
          await ttl.body?.cancel();
          // A config that logs in: a held send through it reads no credentials and starts no attempt.
          await stack.createConfig(owner2, {
            name: "login",
            port: smtp.port,
            security: "none",
            password: "pw",
            is_default: false,
          });
          const heldLogin = await call(agent2, "send-email", { to: "l@example.com", text: "x", config: "login" });
          assert.equal((await heldLogin.json()).status, "pending_approval");
          const events = await stack.sql<{ n: number }[]>`
            select count(*)::integer as n from private.credential_events
             where user_id = ${owner2.id} and kind = 'auth_attempt'`;
          assert.equal(events[0].n, 0, "a held send logs in nowhere");
        },
      );
    } finally {
      await smtp.close();
      await stack.close();
    }
  },
});
