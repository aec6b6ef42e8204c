// Provider presets: the list, and a config created from one that needs only the credentials. The
// stack runs with the hosted platform's blocked ports (25 and 587), so what a hosted project
// cannot reach is refused at creation, with what to do instead.
import assert from "node:assert/strict";
import { body, errorCode, startTestStack } from "./harness.ts";
import { listPresets, PRESETS } from "../supabase/functions/_shared/presets/mod.ts";
import { loadEgressPolicy } from "../supabase/functions/_shared/smtp/egress.ts";

Deno.test("every preset's port is one a config may use, and only 587-only providers are out of a hosted project's reach", () => {
  const local = listPresets(loadEgressPolicy({}));
  assert.ok(local.every((p) => p.reachable_here.smtp), "the local stack reaches every provider");
  const hosted = listPresets(loadEgressPolicy({ SUPABASE_URL: "https://abcdefghijklmnopqrst.supabase.co" }));
  assert.deepEqual(
    hosted.filter((p) => !p.reachable_here.smtp).map((p) => p.id),
    ["microsoft365", "outlook_com", "icloud"],
  );
  for (const preset of PRESETS) {
    assert.match(preset.docs, /^https:\/\//, preset.id);
    if (preset.oauth?.provider === "microsoft") assert.deepEqual(preset.https_transports, ["graph"]);
  }
});

Deno.test({
  name: "presets through smtp-configs",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const stack = await startTestStack({ MAILROOM_PLATFORM_BLOCKED_PORTS: "25,587" });
    try {
      const user = await stack.createUser();
      const post = (payload: Record<string, unknown>) =>
        stack.invoke("smtp-configs", { token: user.token, method: "POST", body: payload });
      const credentials = { username: "me@example.com", password: "app-password", from_email: "me@example.com" };

      await t.step(
        "GET /smtp-configs/presets lists the providers, each with whether this deployment reaches it",
        async () => {
          const res = await stack.invoke("smtp-configs/presets", { token: user.token, method: "GET" });
          const { presets } = await body<
            { presets: { id: string; reachable_here: { smtp: boolean; reason?: string } }[] }
          >(
            res,
          );
          assert.equal(res.status, 200);
          for (
            const id of [
              "gmail",
              "microsoft365",
              "outlook_com",
              "icloud",
              "fastmail",
              "zoho",
              "yahoo",
              "amazon_ses",
              "mailgun",
              "sendgrid",
              "postmark",
              "brevo",
            ]
          ) {
            assert.ok(presets.some((p) => p.id === id), id);
          }
          const icloud = presets.find((p) => p.id === "icloud")!;
          assert.deepEqual(icloud.reachable_here.smtp, false);
          assert.match(icloud.reachable_here.reason ?? "", /587/);
          assert.equal(presets.find((p) => p.id === "gmail")!.reachable_here.smtp, true);
          const wrong = await stack.invoke("smtp-configs/presets", { token: user.token, method: "POST", body: {} });
          assert.equal(await errorCode(wrong, 405), "method_not_allowed");
        },
      );

      await t.step("a config from a preset needs only the credentials: server and limits come from it", async () => {
        const res = await post({ name: "gmail", preset: "gmail", ...credentials });
        const config = await body<Record<string, unknown>>(res);
        assert.equal(res.status, 201, JSON.stringify(config));
        assert.deepEqual(
          [config.host, config.port, config.security, (config.limits as { per_day: number }).per_day],
          ["smtp.gmail.com", 465, "tls", 500],
        );
        assert.equal(config.has_password, true);
      });

      await t.step("the request's own fields win over the preset's", async () => {
        const res = await post({
          name: "sendgrid",
          preset: "sendgrid",
          port: 2465,
          limits: { per_day: 40_000 },
          ...credentials,
          username: "apikey",
        });
        const config = await body<Record<string, unknown>>(res);
        assert.equal(res.status, 201, JSON.stringify(config));
        assert.deepEqual(
          [config.host, config.port, config.security, (config.limits as { per_day: number }).per_day],
          ["smtp.sendgrid.net", 2465, "tls", 40_000],
        );
      });

      await t.step(
        "a provider that takes no passwords, or one this deployment cannot reach, is refused now",
        async () => {
          const microsoft = await post({ name: "work", preset: "microsoft365", ...credentials });
          const refused = await body<{ error: { code: string; message: string } }>(microsoft);
          assert.equal(microsoft.status, 422);
          assert.equal(refused.error.code, "preset_needs_oauth");
          assert.match(refused.error.message, /Microsoft Graph/);
          const icloud = await post({ name: "icloud", preset: "icloud", ...credentials });
          const unreachable = await body<{ error: { code: string; message: string } }>(icloud);
          assert.equal(icloud.status, 422);
          assert.equal(unreachable.error.code, "preset_unreachable");
          assert.match(unreachable.error.message, /587.*blocked/);
          const listed = await stack.invoke("smtp-configs", { token: user.token, method: "GET" });
          const names = (await body<{ configs: { name: string }[] }>(listed)).configs.map((c) => c.name).sort();
          assert.deepEqual(names, ["gmail", "sendgrid"], "nothing was created for the refused ones");
        },
      );

      await t.step("an unknown preset names the known ones; a config cannot be named presets", async () => {
        const res = await post({ name: "x", preset: "gmial", ...credentials });
        const json = await body<{ error: { code: string; details: { presets: string[] } } }>(res);
        assert.equal(res.status, 400);
        assert.equal(json.error.code, "preset_unknown");
        assert.ok(json.error.details.presets.includes("gmail"));
        const reserved = await post({ name: "Presets", host: "localhost", port: 465, ...credentials });
        assert.equal(await errorCode(reserved, 400), "invalid_request");
      });
    } finally {
      await stack.close();
    }
  },
});
