// The templates function and the verification history: everything a user manages, reachable
// without the Data API, with the table's RLS and the checks the sending paths apply.
import assert from "node:assert/strict";
import { errorCode, startTestStack } from "./harness.ts";
import { startScriptedSmtp } from "./scripted_smtp.ts";

Deno.test({
  name: "templates function and verification history",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const stack = await startTestStack({ MAILROOM_ALLOW_PLAINTEXT_SMTP: "true" });
    const smtp = await startScriptedSmtp();
    const alice = await stack.createUser();
    const bob = await stack.createUser();
    const call = (user: { token: string }, path: string, method = "GET", body?: unknown) =>
      stack.invoke(`templates${path}`, { token: user.token, method, body });
    try {
      await t.step("create, read by id and by name, list with the starter templates", async () => {
        const res = await call(alice, "", "POST", {
          name: "order shipped",
          subject: "Order {{order.id}} shipped",
          html: '<p>Hi {{name}}, <a href="{{tracking_url}}">track it</a></p>',
          text: "Hi {{name}}, track it: {{tracking_url}}",
          variables: { required: ["name", "order.id"], properties: { name: { type: "string" } } },
        });
        assert.equal(res.status, 201);
        const created = await res.json();
        assert.equal(created.starter, false);
        assert.deepEqual(created.required_variables, ["name", "order.id"]);

        const byName = await (await call(alice, "/order%20shipped")).json();
        assert.equal(byName.id, created.id);
        assert.match(byName.html, /track it/);
        const byId = await (await call(alice, `/${created.id}`)).json();
        assert.equal(byId.name, "order shipped");

        const list = await (await call(alice, "")).json();
        const names = list.templates.map((x: { name: string; starter: boolean }) => `${x.name}:${x.starter}`);
        assert.ok(names.includes("order shipped:false"));
        assert.ok(names.includes("welcome:true"), "starter templates are listed, marked");
        assert.equal(list.templates[0].html, undefined, "the list leaves the bodies out");
      });

      await t.step("what a send would refuse is refused at once, with a code", async () => {
        assert.equal(
          await errorCode(await call(alice, "", "POST", { name: "raw", html: "<p>{{{raw}}}</p>" }), 422),
          "template_invalid",
        );
        assert.equal(
          await errorCode(await call(alice, "", "POST", { name: "empty", subject: "x" }), 400),
          "invalid_request",
        );
        assert.equal(
          await errorCode(await call(alice, "", "POST", { name: "order shipped", text: "again" }), 409),
          "template_name_taken",
        );
        assert.equal(
          await errorCode(await call(alice, "", "POST", { name: "big", text: "x".repeat(300 * 1024) }), 422),
          "template_invalid",
        );
        assert.equal(
          await errorCode(await call(alice, "", "POST", { name: "x", text: "y", owner: "bob" }), 400),
          "invalid_request",
        );
      });

      await t.step("a variable where data could style, script or redirect is refused at save", async () => {
        const cases: [string, string][] = [
          ['<p style="color: {{color}}">x</p>', "style_attribute"],
          ['<a ONCLICK="{{js}}">x</a>', "event_handler_attribute"],
          ["<style>p { color: {{color}} }</style>", "style_element"],
          ['<meta http-equiv="Refresh" content="0; url={{link}}">', "meta_refresh"],
        ];
        for (const [html, context] of cases) {
          const res = await call(alice, "", "POST", { name: `ctx ${context}`, html });
          const error = (await res.json()).error;
          assert.equal(res.status, 422, html);
          assert.equal(error.code, "template_invalid");
          assert.deepEqual(error.details, { part: "html", position: html.indexOf("{{"), context });
        }
        const patched = await call(alice, "/order%20shipped", "PATCH", { html: '<a onmouseover="{{js}}">x</a>' });
        assert.equal(await errorCode(patched, 422), "template_invalid");
        const kept = await (await call(alice, "/order%20shipped")).json();
        assert.match(kept.html, /track it/, "the template is unchanged");
      });

      await t.step("preview refuses data that reaches such a place, naming variable and context", async () => {
        const res = await call(alice, "", "POST", { name: "attr", html: '<a {{attr}}="alert(1)">x</a>' });
        assert.equal(res.status, 201);
        // The template has no subject: a send (and so a preview) gives one.
        const ok = await call(alice, "/attr/preview", "POST", { data: { attr: "title" }, subject: "s" });
        assert.equal((await ok.json()).html, '<a title="alert(1)">x</a>');
        const refused = await call(alice, "/attr/preview", "POST", { data: { attr: "OnClick" } });
        assert.equal(refused.status, 422);
        const error = (await refused.json()).error;
        assert.equal(error.code, "template_data_unsafe_context");
        assert.deepEqual(error.details, {
          part: "html",
          variable: "attr",
          context: "event_handler_attribute",
          attribute: "onclick",
        });
        assert.equal(smtp.messages().length, 0);
      });

      await t.step("preview renders exactly as a send would, and sends nothing", async () => {
        const res = await call(alice, "/order%20shipped/preview", "POST", {
          data: { name: "<Ann>", order: { id: 42 }, tracking_url: "https://t.example/42" },
        });
        assert.equal(res.status, 200);
        const preview = await res.json();
        assert.equal(preview.subject, "Order 42 shipped");
        assert.equal(preview.html, '<p>Hi &lt;Ann&gt;, <a href="https:&#x2F;&#x2F;t.example&#x2F;42">track it</a></p>');
        assert.equal(preview.text, "Hi <Ann>, track it: https://t.example/42");
        assert.equal(smtp.messages().length, 0);

        const missing = await call(alice, "/order%20shipped/preview", "POST", { data: { name: "Ann" } });
        assert.equal(missing.status, 422);
        const error = (await missing.json()).error;
        assert.equal(error.code, "template_data_missing");
        assert.deepEqual(error.details.missing, ["order.id"]);
        const unsafe = await call(alice, "/order%20shipped/preview", "POST", {
          data: { name: "A", order: { id: 1 }, tracking_url: "javascript:alert(1)" },
        });
        assert.equal(await errorCode(unsafe, 422), "template_data_unsafe_url");
        const starter = await call(alice, "/welcome/preview", "POST", {
          data: { name: "Ann", product: "Acme", login_url: "https://acme.example" },
        });
        assert.equal(starter.status, 200, "starter templates preview too");
      });

      await t.step("preview refuses a template without a subject as a send would, unless given one", async () => {
        const created = await call(alice, "", "POST", { name: "signature", text: "Regards, {{name}}" });
        assert.equal(created.status, 201);
        await created.body?.cancel();
        const refused = await call(alice, "/signature/preview", "POST", { data: { name: "Ann" } });
        assert.equal(refused.status, 422);
        const error = (await refused.json()).error;
        assert.equal(error.code, "subject_missing");
        assert.deepEqual(error.details, { template: "signature", reason: "template_has_no_subject" });
        const given = await call(alice, "/signature/preview", "POST", { data: { name: "Ann" }, subject: "Hello" });
        assert.equal(given.status, 200);
        const preview = await given.json();
        assert.equal(preview.subject, "Hello");
        assert.equal(preview.text, "Regards, Ann");
        assert.equal(smtp.messages().length, 0);
      });

      await t.step("update own, never a starter; delete own", async () => {
        const res = await call(alice, "/order%20shipped", "PATCH", { subject: "Shipped: {{order.id}}" });
        assert.equal(res.status, 200);
        assert.equal((await res.json()).subject, "Shipped: {{order.id}}");
        assert.equal(
          await errorCode(await call(alice, "/order%20shipped", "PATCH", { html: null, text: null }), 400),
          "invalid_request",
        );
        assert.equal(
          await errorCode(await call(alice, "/order%20shipped", "PATCH", { text: "{{#open}}" }), 422),
          "template_invalid",
        );
        assert.equal(
          await errorCode(await call(alice, "/welcome", "PATCH", { subject: "mine" }), 403),
          "template_read_only",
        );
        assert.equal(await errorCode(await call(alice, "/welcome", "DELETE"), 403), "template_read_only");
        assert.equal(await errorCode(await call(alice, "/order%20shipped", "PATCH", {}), 400), "invalid_request");

        await call(alice, "", "POST", { name: "temp", text: "x" }).then((r) => r.body?.cancel());
        const deleted = await call(alice, "/temp", "DELETE");
        assert.equal(deleted.status, 200);
        assert.equal(await errorCode(await call(alice, "/temp"), 404), "template_not_found");
      });

      await t.step("another user's template does not exist for you", async () => {
        const [mine] = await stack.sql<{ id: string }[]>`
          select id from public.email_templates where name = 'order shipped'`;
        for (const path of ["/order%20shipped", `/${mine.id}`]) {
          assert.equal(await errorCode(await call(bob, path), 404), "template_not_found");
          assert.equal(await errorCode(await call(bob, path, "PATCH", { subject: "x" }), 404), "template_not_found");
          assert.equal(await errorCode(await call(bob, path, "DELETE"), 404), "template_not_found");
          assert.equal(
            await errorCode(await call(bob, `${path}/preview`, "POST", { data: {} }), 404),
            "template_not_found",
          );
        }
        const list = await (await call(bob, "")).json();
        assert.ok(!list.templates.some((x: { name: string }) => x.name === "order shipped"));
        // Bob may use the same name for his own.
        assert.equal((await call(bob, "", "POST", { name: "order shipped", text: "bob's" })).status, 201);
      });

      await t.step("a config's verification history, newest first, own only", async () => {
        const configId = await stack.createConfig(alice, {
          name: "relay",
          port: smtp.port,
          security: "none",
          username: null,
        });
        for (let i = 0; i < 2; i++) {
          const res = await stack.invoke("smtp-configs/relay/verify", { token: alice.token, method: "POST" });
          assert.equal(res.status, 200, await res.text());
        }
        const res = await stack.invoke("smtp-configs/relay/verifications", { token: alice.token, method: "GET" });
        assert.equal(res.status, 200);
        const history = await res.json();
        assert.equal(history.config_id, configId);
        assert.equal(history.verifications.length, 2);
        assert.ok(
          history.verifications.every((v: { ok: boolean; error_class: null }) => v.ok && v.error_class === null),
        );
        assert.ok(history.verifications[0].created_at >= history.verifications[1].created_at);
        assert.equal(
          await errorCode(
            await stack.invoke(`smtp-configs/${configId}/verifications`, { token: bob.token, method: "GET" }),
            404,
          ),
          "config_not_found",
        );
        assert.equal(
          await errorCode(
            await stack.invoke("smtp-configs/relay/verifications", { token: alice.token, method: "POST" }),
            405,
          ),
          "method_not_allowed",
        );
      });
    } finally {
      await smtp.close();
      await stack.close();
    }
  },
});
