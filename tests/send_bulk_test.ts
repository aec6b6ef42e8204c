// send-bulk end to end: batches validated and queued over HTTP, checked in the database
// (rows, payloads, statuses), their progress, listing and cancelling; what cannot render is
// refused at accept, as every other path that takes a template refuses it. Delivery is the
// outbox worker's business and is tested there; nothing here talks SMTP.
import assert from "node:assert/strict";
import { body, type ErrorBody, errorCode, startTestStack, type TestStack, type TestUser } from "./harness.ts";
import { parseBody, sendEmailRequest } from "../supabase/functions/_shared/schemas.ts";
import { MAX_BODY_BYTES } from "../supabase/functions/send-bulk/handler.ts";
import { MAX_HTML_DEPTH } from "../supabase/functions/_shared/mail/html.ts";
import { MAX_RENDER_STEPS } from "../supabase/functions/_shared/mail/templates.ts";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";

interface Accepted {
  batch_id: string;
  queued: number;
  scheduled_at?: string;
  skipped?: { index: number; reason: string }[];
}

interface Status {
  batch_id: string;
  created_at: string;
  scheduled_at: string | null;
  total: number;
  counts: Record<string, number>;
  first_sent_at: string | null;
  last_sent_at: string | null;
  rate_per_minute: number | null;
  top_errors: { error_class: string; count: number }[];
}

interface EntryErrors {
  errors: { index: number; reason: string }[];
  invalid_count: number;
}

const ZERO_COUNTS = {
  queued: 0,
  scheduled: 0,
  sending: 0,
  sent: 0,
  deferred: 0,
  failed: 0,
  unknown: 0,
  cancelled: 0,
  pending_approval: 0,
  rejected: 0,
  expired: 0,
  suppressed: 0,
};

Deno.test({
  name: "send-bulk",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const stack: TestStack = await startTestStack();
    // Nothing is sent: the config only has to exist, be active and pass the egress policy.
    const alice: TestUser = await stack.createUser("alice@example.com");
    const bob: TestUser = await stack.createUser("bob@example.com");
    const aliceConfig = await stack.createConfig(alice, { name: "work", port: 46500, password: "pw" });
    await stack.createConfig(bob, { name: "bob", port: 46500, password: "pw" });
    await stack.createConfig(alice, { name: "off", port: 46500, password: "pw", is_default: false, is_active: false });
    await stack.sql`
      insert into public.email_templates (user_id, name, subject, html, variables)
      values (${alice.id}, 'order-shipped', 'Order {{order.id}} shipped', '<p>Hi {{first_name}}</p>',
              '["first_name", "order.id"]'::jsonb)`;
    // No required variables: recipients' data is optional.
    await stack.sql`
      insert into public.email_templates (user_id, name, text)
      values (${alice.id}, 'plain', 'Hi {{first_name}}')`;

    const post = (payload: unknown, who = alice, headers: Record<string, string> = {}) =>
      stack.invoke("send-bulk", { token: who.token, body: payload, headers });
    const get = (path: string, who = alice) =>
      fetch(`${stack.url}/functions/v1/send-bulk${path}`, {
        headers: { apikey: stack.anonKey, authorization: `Bearer ${who.token}` },
      });
    const accepted = async (res: Response): Promise<Accepted> => {
      const parsed = await body<Accepted>(res);
      assert.equal(res.status, 202, JSON.stringify(parsed));
      return parsed;
    };
    const entryErrors = async (res: Response): Promise<EntryErrors> => {
      const parsed = await body<ErrorBody>(res);
      assert.equal(res.status, 422, JSON.stringify(parsed));
      assert.equal(parsed.error.code, "invalid_recipients");
      return parsed.error.details as unknown as EntryErrors;
    };
    const batchCount = async (user: TestUser) =>
      (await stack.sql`select count(*)::int as n from public.email_batches where user_id = ${user.id}`)[0].n;

    try {
      await t.step("queues 10,000 recipients in one request, one row each", async () => {
        // One small batch first, so that the time printed below is not the first request's compile time (the bench measures it).
        await accepted(await post({ recipients: ["warm@example.com"], subject: "warm", text: "up" }));
        const recipients = Array.from({ length: 10_000 }, (_, i) => ({
          email: `reader${i}@example.com`,
          name: `Reader ${i}`,
          data: { first_name: `Reader ${i}` },
        }));
        const started = performance.now();
        const res = await post({
          recipients,
          template: "order-shipped",
          data: { order: { id: 42 } },
          subject: "Your order",
          headers: { "x-campaign": "launch" },
          agent_context: { task: "launch" },
        });
        const ms = Math.round(performance.now() - started);
        const result = await accepted(res);
        console.log(`send-bulk accepted 10,000 recipients in ${ms} ms`);
        assert.equal(result.queued, 10_000);

        const [counts] = await stack.sql`
          select count(*)::int as rows, count(*) filter (where status = 'queued')::int as queued,
                 count(distinct message_id)::int as message_ids, count(distinct to_addresses)::int as recipients
            from public.email_audit_log where batch_id = ${result.batch_id}`;
        // About 1.5 MB of rows: inserted in slices, each recipient once.
        assert.deepEqual({ ...counts }, { rows: 10_000, queued: 10_000, message_ids: 10_000, recipients: 10_000 });
        const [row] = await stack.sql`
          select a.user_id, a.config_id, a.template_id, a.from_email, a.to_addresses, a.subject, a.status,
                 a.scheduled_at, a.agent_context, a.payload, t.name as template
            from public.email_audit_log a join public.email_templates t on t.id = a.template_id
           where a.batch_id = ${result.batch_id} and a.to_addresses = array['reader7@example.com']`;
        assert.deepEqual({ ...row }, {
          user_id: alice.id,
          config_id: aliceConfig,
          template_id: row.template_id,
          from_email: "alice@example.com",
          to_addresses: ["reader7@example.com"],
          subject: "Your order",
          status: "queued",
          scheduled_at: null,
          agent_context: { task: "launch" },
          payload: {
            kind: "recipient",
            to: { email: "reader7@example.com", name: "Reader 7" },
            data: { first_name: "Reader 7" },
          },
          template: "order-shipped",
        });
        const [batch] = await stack.sql`
          select user_id, config_id, template_id, content, agent_context, total, scheduled_at
            from public.email_batches where id = ${result.batch_id}`;
        assert.deepEqual({ ...batch }, {
          user_id: alice.id,
          config_id: aliceConfig,
          template_id: row.template_id,
          content: {
            subject: "Your order",
            template: "order-shipped",
            data: { order: { id: 42 } },
            headers: { "x-campaign": "launch" },
            unsubscribe: true,
          },
          agent_context: { task: "launch" },
          total: 10_000,
          scheduled_at: null,
        });
      });

      const mixed = [
        "ok@example.com",
        "not-an-address",
        { email: "data@example.com", data: "not an object" },
        42,
        { email: "extra@example.com", unknown_field: 1 },
        "Ada Lovelace <ada@example.com>",
        { email: "big@example.com", data: { blob: "x".repeat(17 * 1024) } },
      ];

      await t.step("refuses a batch with invalid entries, naming each by index, and queues nothing", async () => {
        const before = await batchCount(alice);
        const details = await entryErrors(await post({ recipients: mixed, subject: "s", template: "plain" }));
        assert.equal(details.invalid_count, 5);
        assert.deepEqual(details.errors.map((e) => e.index), [1, 2, 3, 4, 6]);
        assert.match(details.errors[0].reason, /"not-an-address" is not a valid email address/);
        assert.match(details.errors[1].reason, /^data: /);
        assert.match(details.errors[2].reason, /expected object/);
        assert.match(details.errors[3].reason, /unknown_field/);
        assert.match(details.errors[4].reason, /data exceeds 16384 bytes/);
        assert.equal(await batchCount(alice), before, "nothing was queued");
      });

      await t.step("with skip_invalid queues the valid entries and reports the skipped ones", async () => {
        const result = await accepted(
          await post({ recipients: mixed, subject: "s", template: "plain", skip_invalid: true }),
        );
        assert.equal(result.queued, 2);
        assert.deepEqual(result.skipped?.map((s) => s.index), [1, 2, 3, 4, 6]);
        const rows = await stack.sql`
          select to_addresses[1] as address, payload -> 'to' as to from public.email_audit_log
           where batch_id = ${result.batch_id} order by address`;
        assert.deepEqual(rows.map((r) => ({ ...r })), [
          { address: "ada@example.com", to: { email: "ada@example.com", name: "Ada Lovelace" } },
          { address: "ok@example.com", to: { email: "ok@example.com" } },
        ]);
      });

      await t.step("the same address twice (any spelling) is the same email: left out as duplicate_send", async () => {
        const result = await accepted(
          await post({
            recipients: ["a@example.com", "b@example.com", "A@EXAMPLE.COM", { email: "a@Example.com", name: "A" }],
            text: "the same address twice",
          }),
        );
        assert.equal(result.queued, 2);
        assert.deepEqual(result.skipped, [
          {
            index: 2,
            code: "duplicate_send",
            reason: "duplicate_send: the same email as entry 0",
            duplicate_of: { entry: 0 },
          },
          {
            index: 3,
            code: "duplicate_send",
            reason: "duplicate_send: the same email as entry 0",
            duplicate_of: { entry: 0 },
          },
        ]);
      });

      await t.step("the same address twice with other data is refused as a duplicate of its first entry", async () => {
        const details = await entryErrors(
          await post({
            recipients: [
              { email: "a@example.com", data: { first_name: "A" } },
              { email: "A@example.com", data: { first_name: "B" } },
            ],
            subject: "s",
            template: "plain",
          }),
        );
        assert.deepEqual(details.errors, [{ index: 1, reason: "duplicate of entry 0" }]);
      });

      await t.step(
        "a template's required variables must be in each recipient's data (over the shared data)",
        async () => {
          const recipients = [
            { email: "full@example.com", data: { first_name: "Full" } },
            { email: "none@example.com" },
            { email: "null@example.com", data: { first_name: null } },
            { email: "own-order@example.com", data: { first_name: "Own", order: { id: 1 } } },
          ];
          const details = await entryErrors(
            await post({ recipients, template: "order-shipped", data: { order: { id: 9 } } }),
          );
          assert.deepEqual(details.errors, [
            { index: 1, reason: "template data is missing first_name" },
            { index: 2, reason: "template data is missing first_name" },
          ]);
          const noShared = await entryErrors(await post({ recipients, template: "order-shipped" }));
          assert.deepEqual(noShared.errors.map((e) => [e.index, e.reason]), [
            [0, "template data is missing order.id"],
            [1, "template data is missing first_name, order.id"],
            [2, "template data is missing first_name, order.id"],
          ]);
          const res = await post({ recipients: ["x@example.com"], template: "no-such-template" });
          assert.equal(await errorCode(res, 404), "template_not_found");
        },
      );

      // Unbounded, this is 10^12 rendering steps for every recipient (see stall_test.ts).
      const bomb = "{{#a}}".repeat(4) + "{{/a}}".repeat(4);
      const thousand = Array.from({ length: 1_000 }, (_, i) => i);
      await stack.sql`
        insert into public.email_templates (user_id, name, subject, html, text)
        values (${alice.id}, 'bomb', 'Hi', '<p>Hi</p>', ${bomb}),
               (${alice.id}, 'card', 'For {{name}}', '<p><a href="{{link}}">{{name}}</a></p>',
                '{{#items}}{{#items}}{{#items}}{{.}}{{/items}}{{/items}}{{/items}}')`;
      const queuedRows = async () =>
        (await stack.sql`
        select count(*)::int as n from public.email_audit_log where user_id = ${alice.id}`)[0].n;

      await t.step("recipients' own data without a template is refused, naming each entry", async () => {
        const before = await queuedRows();
        const recipients = Array.from({ length: 1_000 }, (_, n) => ({ email: `n${n}@example.com`, data: { n } }));
        recipients[1] = { email: "plain@example.com" } as (typeof recipients)[number];
        const res = await post({ recipients, subject: "Bulk {{n}}", text: "Bulk {{n}}" });
        const error = (await body<ErrorBody>(res)).error;
        assert.equal(res.status, 400, JSON.stringify(error));
        assert.equal(error.code, "invalid_request");
        const paths = (error.details as { issues: { path: string }[] }).issues.map((i) => i.path);
        assert.deepEqual(paths.slice(0, 3), ["recipients.0.data", "recipients.2.data", "recipients.3.data"]);
        assert.match(error.message, /data is only used with a template/);
        // Even skip_invalid: the batch's text was meant as a template.
        const skipping = await post({ recipients, text: "Bulk {{n}}", skip_invalid: true });
        assert.equal(await errorCode(skipping, 400), "invalid_request");
        assert.equal(await queuedRows(), before, "nothing was queued");
      });

      await t.step("a template that cannot render with the shared data is refused once, with its code", async () => {
        const before = await queuedRows();
        const recipients = Array.from({ length: 2_000 }, (_, i) => `r${i}@example.com`);
        for (const skip_invalid of [false, true]) {
          const res = await post({ recipients, template: "bomb", data: { a: thousand }, skip_invalid });
          const error = (await body<ErrorBody>(res)).error;
          assert.equal(res.status, 422, JSON.stringify(error));
          assert.equal(error.code, "template_too_complex");
          assert.deepEqual(error.details, { limit_steps: MAX_RENDER_STEPS });
          assert.match(error.message, /^With the batch's shared data: /);
        }
        const unsafe = await post({ recipients, template: "card", data: { link: "javascript:alert(1)" } });
        const unsafeError = (await body<ErrorBody>(unsafe)).error;
        assert.equal(unsafe.status, 422);
        assert.equal(unsafeError.code, "template_data_unsafe_url");
        assert.deepEqual(unsafeError.details, { part: "html", variable: "link", attribute: "href" });
        // Saved before data was kept out of style attributes: refused for what it is.
        await stack.sql`
          insert into public.email_templates (user_id, name, html)
          values (${alice.id}, 'styled', '<p style="color: {{color}}">Hi</p>')`;
        const styled = await post({ recipients, template: "styled", data: { color: "red" } });
        const styledError = (await body<ErrorBody>(styled)).error;
        assert.equal(styled.status, 422);
        assert.equal(styledError.code, "template_invalid");
        assert.deepEqual(styledError.details, { part: "html", position: 17, context: "style_attribute" });
        // Without a template: HTML that no text part can be generated from.
        const deep = await post({ recipients, subject: "s", html: "<div>".repeat(MAX_HTML_DEPTH + 1) });
        assert.equal(await errorCode(deep, 422), "html_too_complex");
        assert.equal(await queuedRows(), before, "nothing was queued");
      });

      await t.step(
        "what one recipient's own data cannot render is named by index, with the render's code",
        async () => {
          const recipients = [
            { email: "fine@example.com", data: { name: "Fine", link: "https://example.com/a" } },
            { email: "script@example.com", data: { name: "Script", link: "java\tscript:alert(1)" } },
            { email: "header@example.com", data: { name: "Two\r\nBcc: x@example.com" } },
            { email: "lists@example.com", data: { name: "Lists", items: Array.from({ length: 150 }, (_, i) => i) } },
            { email: "none@example.com" },
          ];
          const details = await entryErrors(await post({ recipients, template: "card", data: { link: "/home" } }));
          assert.deepEqual(details.errors.map((e) => [e.index, e.reason.split(":")[0]]), [
            [1, "template_data_unsafe_url"],
            [2, "template_data_invalid"],
            [3, "template_too_complex"],
          ]);
          assert.equal(details.invalid_count, 3);
          const result = await accepted(
            await post({ recipients, template: "card", data: { link: "/home" }, skip_invalid: true }),
          );
          assert.equal(result.queued, 2);
          assert.deepEqual(result.skipped?.map((s) => s.index), [1, 2, 3]);
        },
      );

      await t.step("messages mode renders each message's template with its data, naming what fails", async () => {
        const messages = [
          { to: "ok@example.com", template: "card", data: { name: "Ok", link: "mailto:ok@example.com" } },
          { to: "bomb@example.com", template: "bomb", data: { a: thousand } },
          { to: "url@example.com", template: "card", data: { name: "U", link: "data:text/html,x" } },
          { to: "deep@example.com", subject: "s", html: "<div>".repeat(MAX_HTML_DEPTH + 1) },
          { to: "given-text@example.com", subject: "s", html: "<div>".repeat(MAX_HTML_DEPTH + 1), text: "plain" },
        ];
        const result = await accepted(await post({ messages, skip_invalid: true }));
        assert.equal(result.queued, 2);
        assert.deepEqual(result.skipped?.map((s) => [s.index, s.reason.split(":")[0]]), [
          [1, "template_too_complex"],
          [2, "template_data_unsafe_url"],
          [3, "html_too_complex"],
        ]);
      });

      await t.step("a template without a subject is refused at accept unless the batch gives one", async () => {
        const before = await queuedRows();
        await stack.sql`
          insert into public.email_templates (user_id, name, subject, text)
          values (${alice.id}, 'titled-by-data', '{{title}}', 'Hi')`;
        const recipients = ["a@example.com", "b@example.com"];
        const shared = await post({ recipients, template: "plain" });
        const error = (await body<ErrorBody>(shared)).error;
        assert.equal(shared.status, 422, JSON.stringify(error));
        assert.equal(error.code, "subject_missing");
        assert.deepEqual(error.details, { template: "plain", reason: "template_has_no_subject" });
        assert.match(error.message, /^Template "plain" has no subject/);

        // A subject the data gives: blank for one recipient, that recipient is named.
        const details = await entryErrors(
          await post({
            recipients: [{ email: "t1@example.com", data: { title: "Yours" } }, {
              email: "t2@example.com",
              data: { title: "" },
            }],
            template: "titled-by-data",
          }),
        );
        assert.deepEqual(details.errors.map((e) => [e.index, e.reason.split(":")[0]]), [[1, "subject_missing"]]);

        const messages = [
          { to: "m1@example.com", template: "plain", data: { first_name: "M" } },
          { to: "m2@example.com", template: "plain", data: { first_name: "N" }, subject: "Given" },
        ];
        const listed = await entryErrors(await post({ messages }));
        assert.deepEqual(listed.errors.map((e) => [e.index, e.reason.split(":")[0]]), [[0, "subject_missing"]]);
        assert.equal(await queuedRows(), before, "nothing was queued");

        const given = await accepted(await post({ recipients, template: "plain", subject: "Shared subject" }));
        assert.equal(given.queued, 2);
        const [row] = await stack.sql`
          select subject from public.email_audit_log where batch_id = ${given.batch_id} limit 1`;
        assert.equal(row.subject, "Shared subject");
        await post({ messages: messages.slice(1) }).then(accepted);
      });

      await t.step("rendering stops at the accept budget: a clean batch is queued, a failing one refused", async () => {
        // Data in an unquoted attribute: every render is read as HTML, about 700 steps for 11 KB.
        const row = '<tr><td class="c">Lorem ipsum dolor sit amet, consectetur adipiscing elit.</td></tr>\n';
        const html = `<table><tr><td class={{name}}>Hi</td></tr>${row.repeat(150)}</table>`;
        await stack.sql`
          insert into public.email_templates (user_id, name, subject, html, text)
          values (${alice.id}, 'long', 'Hi', ${html}, 'Hi {{name}}'),
                 (${alice.id}, 'cube', 'Hi', ${html}, '{{#a}}{{#a}}{{#a}}{{/a}}{{/a}}{{/a}}')`;
        const many = Array.from(
          { length: 10_000 },
          (_, i) => ({ email: `b${i}@example.com`, data: { name: `n${i}` } }),
        );
        const clean = await accepted(await post({ recipients: many, template: "long" }));
        assert.equal(clean.queued, 10_000);
        // Each of these costs the whole per-render limit: the budget is spent after a few.
        const heavy = many.map((r) => ({ ...r, data: { a: Array.from({ length: 101 }, (_, i) => i) } }));
        const res = await post({ recipients: heavy, template: "cube", skip_invalid: true });
        const error = (await body<ErrorBody>(res)).error;
        assert.equal(res.status, 422, JSON.stringify(error).slice(0, 300));
        assert.equal(error.code, "invalid_recipients");
        const failed = (error.details as unknown as EntryErrors).errors;
        assert.ok(failed.length >= 1 && failed.length < 10, `${failed.length} rendered before the budget ran out`);
        assert.ok(failed.every((e) => e.reason.startsWith("template_too_complex: ")));
        assert.match(error.message, /rendering every entry would take more than \d+ steps; it stopped at entry \d+/);
      });

      await t.step("every path that accepts a send refuses an unrenderable template the same way", async () => {
        const later = new Date(Date.now() + 3_600_000).toISOString();
        const scheduled = await stack.invoke("send-email", {
          token: alice.token,
          body: { to: "s@example.com", template: "bomb", data: { a: thousand }, scheduled_at: later },
        });
        assert.equal(await errorCode(scheduled, 422), "template_too_complex");
        const preview = await stack.invoke("templates/bomb/preview", {
          token: alice.token,
          body: { data: { a: thousand } },
        });
        assert.equal(await errorCode(preview, 422), "template_too_complex");
        const client = new Client({ name: "bulk-test", version: "1.0.0" }, { versionNegotiation: { mode: "auto" } });
        await client.connect(
          new StreamableHTTPClientTransport(new URL(`${stack.url}/functions/v1/mcp`), {
            requestInit: { headers: { Authorization: `Bearer ${alice.token}` } },
          }),
        );
        try {
          const result = await client.callTool({
            name: "send_bulk_email",
            arguments: { recipients: ["m1@example.com", "m2@example.com"], template: "bomb", data: { a: thousand } },
          }) as { isError?: boolean; content: { text?: string }[] };
          assert.equal(result.isError, true);
          assert.match(result.content.map((c) => c.text ?? "").join("\n"), /^template_too_complex\b/);
        } finally {
          await client.close();
        }
      });

      await t.step(
        "counts are checked before any entry: 10,000 messages of 50 recipients are refused at once",
        async () => {
          const before = await queuedRows();
          const to = (i: number) => Array.from({ length: 50 }, (_, j) => `r${i}x${j}@example.com`);
          const messages = Array.from({ length: 10_000 }, (_, i) => ({ to: to(i), text: "x" }));
          // The last message is invalid too: it is never reached.
          messages[9_999] = { to: ["not an address"], text: "x" };
          const res = await post({ messages });
          const error = (await body<ErrorBody>(res)).error;
          assert.equal(res.status, 422, JSON.stringify(error).slice(0, 300));
          assert.equal(error.code, "too_many_recipients");
          assert.deepEqual(error.details, { limit: 10_000, count: 499_951, bound: "message_recipients" });
          assert.match(error.message, /at most 10000 recipients per request; these messages have 499951/i);
          const split = await post({
            messages: [{ to: ["a@example.com", "b@example.com"], cc: "c@example.com", bcc: [], text: "x" }],
          });
          assert.equal((await accepted(split)).queued, 1);
          const tooManyMessages = await post({
            messages: Array.from({ length: 10_001 }, () => ({ to: "a@example.com" })),
          });
          const tooManyError = (await body<ErrorBody>(tooManyMessages)).error;
          assert.deepEqual(tooManyError.details, { limit: 10_000, count: 10_001, bound: "messages" });
          assert.equal(await queuedRows(), before + 1);
        },
      );

      await t.step("messages mode queues each send-email body as it will be sent", async () => {
        const messages = [
          { to: "one@example.com", cc: ["Carl <carl@example.com>", "one@example.com"], subject: "First", text: "1" },
          { to: ["Two <two@example.com>"], template: "order-shipped", data: { first_name: "Two", order: { id: 2 } } },
          { to: "bad address", text: "x" },
          { to: "later@example.com", text: "x", scheduled_at: new Date(Date.now() + 60_000).toISOString() },
          { to: "tpl@example.com", template: "order-shipped", data: { first_name: "T" } },
          { to: "cfg@example.com", text: "x", config: "work" },
          { to: "ctx@example.com", text: "x", agent_context: { step: 3 } },
        ];
        const result = await accepted(
          await post({ messages, skip_invalid: true, agent_context: { task: "batch" } }),
        );
        assert.equal(result.queued, 3);
        assert.deepEqual(result.skipped?.map((s) => s.index), [2, 3, 4, 5]);
        assert.match(result.skipped![0].reason, /^to\.0: "bad address"/);
        assert.match(result.skipped![1].reason, /scheduled_at applies to the whole batch/);
        assert.equal(result.skipped![2].reason, "template data is missing order.id");
        assert.match(result.skipped![3].reason, /config applies to the whole batch/);

        const rows = await stack.sql`
          select to_addresses, cc_count, subject, template_id is not null as templated, agent_context, payload
            from public.email_audit_log where batch_id = ${result.batch_id} order by to_addresses[1]`;
        assert.deepEqual(rows.map((r) => ({ ...r })), [
          {
            to_addresses: ["ctx@example.com"],
            cc_count: 0,
            subject: null,
            templated: false,
            agent_context: { step: 3 },
            payload: {
              kind: "request",
              // One recipient: one-click unsubscribe, bulk mail's default.
              request: { to: [{ email: "ctx@example.com" }], text: "x", agent_context: { step: 3 }, unsubscribe: true },
            },
          },
          {
            to_addresses: ["one@example.com"],
            cc_count: 1,
            subject: "First",
            templated: false,
            agent_context: { task: "batch" },
            payload: {
              kind: "request",
              request: {
                to: [{ email: "one@example.com" }],
                cc: [{ email: "carl@example.com", name: "Carl" }, { email: "one@example.com" }],
                subject: "First",
                text: "1",
              },
            },
          },
          {
            to_addresses: ["two@example.com"],
            cc_count: 0,
            subject: null,
            templated: true,
            agent_context: { task: "batch" },
            payload: {
              kind: "request",
              request: {
                to: [{ email: "two@example.com", name: "Two" }],
                template: "order-shipped",
                data: { first_name: "Two", order: { id: 2 } },
                unsubscribe: true,
              },
            },
          },
        ]);
        // What the worker will do with it: validate it again as a send-email body.
        for (const row of rows) parseBody(sendEmailRequest, (row.payload as { request: unknown }).request);
        const [batch] = await stack.sql`select content, total from public.email_batches where id = ${result.batch_id}`;
        assert.deepEqual({ ...batch }, { content: {}, total: 3 });
      });

      await t.step("a scheduled batch's messages wait as 'scheduled'", async () => {
        const when = new Date(Date.now() + 3_600_000).toISOString();
        const result = await accepted(
          await post({ recipients: ["s1@example.com", "s2@example.com"], text: "later", scheduled_at: when }),
        );
        assert.equal(result.scheduled_at, when);
        const rows = await stack.sql`
          select status, scheduled_at from public.email_audit_log where batch_id = ${result.batch_id}`;
        assert.deepEqual(rows.map((r) => [r.status, r.scheduled_at.toISOString()]), [
          ["scheduled", when],
          ["scheduled", when],
        ]);
        const status = await body<Status>(await get(`/${result.batch_id}`));
        assert.deepEqual(status.counts, { ...ZERO_COUNTS, scheduled: 2 });
        assert.equal(Date.parse(status.scheduled_at!), Date.parse(when));
      });

      let tracked = "";
      await t.step("the status counts a batch's messages by status, with send times, rate and top errors", async () => {
        const recipients = Array.from({ length: 10 }, (_, i) => `p${i}@example.com`);
        tracked = (await accepted(await post({ recipients, subject: "progress", text: "t" }))).batch_id;
        const set = (address: string, status: string, extra: { error_class?: string; secondsAgo?: number } = {}) =>
          stack.sql`
            update public.email_audit_log
               set status = ${status}, error_class = ${extra.error_class ?? null},
                   completed_at = case when ${extra.secondsAgo ?? null}::int is null then null
                                       else now() - make_interval(secs => ${extra.secondsAgo ?? 0}) end
             where batch_id = ${tracked} and to_addresses = array[${address}]`;
        await set("p0@example.com", "sent", { secondsAgo: 120 });
        await set("p1@example.com", "sent", { secondsAgo: 60 });
        await set("p2@example.com", "sent", { secondsAgo: 0 });
        await set("p3@example.com", "failed", { error_class: "smtp_recipient_rejected", secondsAgo: 30 });
        await set("p4@example.com", "failed", { error_class: "smtp_recipient_rejected", secondsAgo: 30 });
        await set("p5@example.com", "deferred", { error_class: "smtp_recipients_deferred" });
        await set("p6@example.com", "unknown", { error_class: "worker_lost", secondsAgo: 10 });
        await set("p7@example.com", "sending");

        const res = await get(`/${tracked}`);
        const status = await body<Status>(res);
        assert.equal(res.status, 200, JSON.stringify(status));
        assert.equal(status.batch_id, tracked);
        assert.equal(status.total, 10);
        assert.deepEqual(status.counts, {
          ...ZERO_COUNTS,
          queued: 2,
          sending: 1,
          sent: 3,
          deferred: 1,
          failed: 2,
          unknown: 1,
        });
        const span = Date.parse(status.last_sent_at!) - Date.parse(status.first_sent_at!);
        assert.ok(Math.abs(span - 120_000) < 1000, `sending span ${span} ms`);
        assert.equal(status.rate_per_minute, 1.5);
        assert.deepEqual(status.top_errors, [
          { error_class: "smtp_recipient_rejected", count: 2 },
          { error_class: "smtp_recipients_deferred", count: 1 },
          { error_class: "worker_lost", count: 1 },
        ]);
        assert.match(status.created_at, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/);
        assert.deepEqual(await body(await get(`?batch_id=${tracked}`)), status);
      });

      await t.step("the list shows the caller's batches newest first, with counts, in pages", async () => {
        const res = await get("");
        const list = await body<{ batches: Status[]; next_before: string | null }>(res);
        assert.equal(res.status, 200, JSON.stringify(list));
        const [latest] = await stack.sql`
          select id from public.email_batches where user_id = ${alice.id} order by created_at desc limit 1`;
        assert.equal(list.batches[0].batch_id, latest.id);
        assert.equal(list.batches[0].batch_id, tracked);
        assert.equal(list.batches[0].counts.sent, 3);
        const created = list.batches.map((b) => b.created_at);
        assert.deepEqual(created, [...created].sort().reverse());
        assert.equal(list.batches.length, await batchCount(alice));
        assert.equal(list.next_before, null);

        const first = await body<{ batches: Status[]; next_before: string }>(await get("?limit=2"));
        assert.equal(first.batches.length, 2);
        const second = await body<{ batches: Status[] }>(
          await get(`?limit=2&before=${encodeURIComponent(first.next_before)}`),
        );
        assert.deepEqual(second.batches.map((b) => b.batch_id), list.batches.slice(2, 4).map((b) => b.batch_id));
        // A `+` or none: a raw created_at in a query string still works.
        const raw = await get(`?limit=2&before=${first.next_before}`);
        assert.equal(raw.status, 200);
        assert.equal(await errorCode(await get("?before=yesterday"), 400), "invalid_request");
        assert.equal(await errorCode(await get("?limit=500"), 400), "invalid_request");
      });

      await t.step("cancel stops what has not started; a second cancel finds nothing", async () => {
        const res = await stack.invoke(`send-bulk/${tracked}/cancel`, { token: alice.token });
        assert.deepEqual(await body(res), { batch_id: tracked, cancelled: 2 });
        assert.equal(res.status, 200);
        const status = await body<Status>(await get(`/${tracked}`));
        assert.deepEqual(status.counts, {
          ...ZERO_COUNTS,
          sending: 1,
          sent: 3,
          deferred: 1,
          failed: 2,
          unknown: 1,
          cancelled: 2,
        });
        const again = await stack.invoke(`send-bulk/${tracked}/cancel`, { token: alice.token });
        assert.deepEqual(await body(again), { batch_id: tracked, cancelled: 0 });
      });

      await t.step("another user's batch is not found: status, query, cancel and list", async () => {
        const [remaining] = await stack.sql`
          insert into public.email_audit_log (user_id, config_id, batch_id, from_email, to_addresses, status, payload)
          values (${alice.id}, ${aliceConfig}, ${tracked}, 'alice@example.com', array['late@example.com'], 'queued',
                  '{"kind": "recipient", "to": {"email": "late@example.com"}}')
          returning id`;
        assert.equal(await errorCode(await get(`/${tracked}`, bob), 404), "batch_not_found");
        assert.equal(await errorCode(await get(`?batch_id=${tracked}`, bob), 404), "batch_not_found");
        const cancel = await stack.invoke(`send-bulk/${tracked}/cancel`, { token: bob.token });
        assert.equal(await errorCode(cancel, 404), "batch_not_found");
        const [row] = await stack.sql`select status from public.email_audit_log where id = ${remaining.id}`;
        assert.equal(row.status, "queued", "bob cancelled nothing");
        const list = await body<{ batches: Status[] }>(await get("", bob));
        assert.deepEqual(list.batches, []);
        assert.equal(await errorCode(await get("/not-a-batch-id"), 404), "batch_not_found");
        assert.equal(await errorCode(await get(`/${crypto.randomUUID()}`), 404), "batch_not_found");
      });

      await t.step("an Idempotency-Key replays the first 202 with the same batch", async () => {
        const payload = { recipients: ["i1@example.com", "i2@example.com"], text: "once" };
        const before = await batchCount(alice);
        const first = await accepted(await post(payload, alice, { "idempotency-key": "bulk-1" }));
        const replay = await post(payload, alice, { "idempotency-key": "bulk-1" });
        assert.equal(replay.headers.get("idempotent-replayed"), "true");
        assert.deepEqual(await accepted(replay), first);
        assert.equal(await batchCount(alice), before + 1);
        const other = await post({ ...payload, text: "changed" }, alice, { "idempotency-key": "bulk-1" });
        assert.equal(await errorCode(other, 422), "idempotency_key_reused");
        // A refused request gives its key back.
        const refused = await post({ recipients: ["bad"], text: "x" }, alice, { "idempotency-key": "bulk-2" });
        assert.equal(await errorCode(refused, 422), "invalid_recipients");
        await accepted(
          await post({ recipients: ["good@example.com"], text: "x" }, alice, { "idempotency-key": "bulk-2" }),
        );
      });

      await t.step("bad requests get stable codes, never a 500", async () => {
        const code = async (res: Response, status: number) => await errorCode(res, status);
        assert.equal(
          await code(await stack.invoke("send-bulk", { body: { recipients: ["a@example.com"] } }), 401),
          "missing_token",
        );
        const notJson = await fetch(`${stack.url}/functions/v1/send-bulk`, {
          method: "POST",
          headers: {
            apikey: stack.anonKey,
            authorization: `Bearer ${alice.token}`,
            "content-type": "application/json",
          },
          body: "{not json",
        });
        assert.equal(await code(notJson, 400), "invalid_json");
        const cases: [unknown, number, string][] = [
          [{ text: "no recipients" }, 400, "invalid_request"],
          [{ recipients: [], text: "x" }, 400, "invalid_request"],
          [{ recipients: "a@example.com", text: "x" }, 400, "invalid_request"],
          [{ recipients: ["a@example.com"], messages: [{ to: "a@example.com", text: "x" }] }, 400, "invalid_request"],
          [{ recipients: ["a@example.com"] }, 400, "invalid_request"],
          [{ recipients: ["a@example.com"], text: "x", data: { a: 1 } }, 400, "invalid_request"],
          [{ messages: [{ to: "a@example.com", text: "x" }], subject: "shared" }, 400, "invalid_request"],
          [{ recipients: ["a@example.com"], text: "x", bogus: 1 }, 400, "invalid_request"],
          [{ recipients: ["a@example.com"], text: "x", scheduled_at: "tomorrow" }, 400, "invalid_request"],
          [
            { recipients: ["a@example.com"], subject: "a\r\nBcc: x@example.com", text: "x" },
            400,
            "invalid_header_value",
          ],
          [{ recipients: ["a@example.com"], text: "x", headers: { From: "x@example.com" } }, 400, "header_not_allowed"],
          [{ recipients: ["a@example.com"], text: "x", config: "nope" }, 404, "config_not_found"],
          [{ recipients: ["a@example.com"], text: "x", config: "off" }, 409, "config_inactive"],
          [{ recipients: ["bad", "worse"], text: "x", skip_invalid: true }, 422, "invalid_recipients"],
          [{ messages: [{ to: "bad" }], skip_invalid: true }, 422, "invalid_recipients"],
          [
            { recipients: ["a@example.com"], text: "x", agent_context: { big: "x".repeat(9000) } },
            413,
            "agent_context_too_large",
          ],
        ];
        for (const [payload, status, expected] of cases) {
          assert.equal(await code(await post(payload), status), expected, JSON.stringify(payload).slice(0, 120));
        }
        const many = Array.from({ length: 10_001 }, (_, i) => `m${i}@example.com`);
        const tooMany = await post({ recipients: many, text: "x" });
        const tooManyBody = await body<ErrorBody>(tooMany);
        assert.equal(tooMany.status, 422);
        assert.equal(tooManyBody.error.code, "too_many_recipients");
        assert.deepEqual(tooManyBody.error.details, { limit: 10_000, count: 10_001, bound: "recipients" });
        // Answered before the body is read; a client of its own, so its unfinished upload holds up nothing else.
        const client = Deno.createHttpClient({});
        try {
          const huge = await fetch(`${stack.url}/functions/v1/send-bulk`, {
            method: "POST",
            headers: {
              apikey: stack.anonKey,
              authorization: `Bearer ${alice.token}`,
              "content-type": "application/json",
            },
            body: JSON.stringify({ recipients: ["a@example.com"], text: "x".repeat(MAX_BODY_BYTES) }),
            client,
          });
          assert.equal(await code(huge, 413), "payload_too_large");
        } finally {
          client.close();
        }

        const put = await stack.invoke("send-bulk", { token: alice.token, method: "PUT", body: {} });
        assert.equal(await code(put, 405), "method_not_allowed");
        assert.equal(put.headers.get("allow"), "GET, POST, OPTIONS");
        assert.equal(await code(await get(`/${tracked}/cancel`), 405), "method_not_allowed");
        const other = await stack.invoke(`send-bulk/${tracked}/retry`, { token: alice.token });
        assert.equal(await code(other, 404), "route_not_found");
      });
    } finally {
      await stack.close();
    }
  },
});
