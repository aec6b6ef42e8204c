// The MCP endpoint with real third-party clients over real HTTP: the official TypeScript
// client v2 on the current revision (2026-07-28) and on its 2025 handshake, the SDK 1.x
// client, and LangChain's MCP adapter. Mail goes to a real SMTP server (the local catcher).
import assert from "node:assert/strict";
import { Client as ClientV2, StreamableHTTPClientTransport as TransportV2 } from "@modelcontextprotocol/client";
import { Client as ClientV1 } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport as TransportV1 } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { MultiServerMCPClient } from "@langchain/mcp-adapters";
import { simpleParser } from "mailparser";
import { errorCode, startTestStack } from "./harness.ts";
import { ConfigError, loadConfig } from "../supabase/functions/_shared/config.ts";
import { startScriptedSmtp } from "./scripted_smtp.ts";
import { sendWithMcp } from "../examples/mcp_send.ts";

const TOOLS = [
  "send_email",
  "send_bulk_email",
  "get_batch_status",
  "cancel",
  "list_smtp_configs",
  "verify_smtp_config",
  "store_attachment",
  "list_attachments",
  "suppress_recipient",
  "list_email_templates",
  "get_email_analytics",
  "list_sent_messages",
];

type ToolResult = { isError?: boolean; content: { type: string; text?: string }[]; structuredContent?: unknown };

Deno.test({
  name: "mcp endpoint",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    // The browser app the operator allows (MAILROOM_ALLOWED_ORIGINS); any other page is refused.
    const APP = "https://app.example";
    const stack = await startTestStack({ MAILROOM_ALLOW_PLAINTEXT_SMTP: "true", MAILROOM_ALLOWED_ORIGINS: APP });
    const smtp = await startScriptedSmtp({
      rcpt: (address) => address.startsWith("gone@") ? "550 5.1.1 no such user" : "250 2.1.5 ok",
    });
    const endpoint = new URL(`${stack.url}/functions/v1/mcp`);
    const alice = await stack.createUser();
    const bob = await stack.createUser();
    await stack.createConfig(alice, { name: "work", port: smtp.port, security: "none", username: null });
    await stack.createConfig(bob, { name: "bobs", port: smtp.port, security: "none", username: null });
    const auth = (token: string) => ({ requestInit: { headers: { Authorization: `Bearer ${token}` } } });
    const text = (r: ToolResult) => r.content.map((c) => c.text ?? "").join("\n");
    try {
      await t.step(
        "the official client v2 on the current revision lists the tools with schemas and hints",
        async () => {
          const client = new ClientV2({ name: "test-v2", version: "1.0.0" }, { versionNegotiation: { mode: "auto" } });
          await client.connect(new TransportV2(endpoint, auth(alice.token)));
          assert.equal(client.getNegotiatedProtocolVersion(), "2026-07-28");
          const { tools } = await client.listTools();
          assert.deepEqual(tools.map((x) => x.name), TOOLS);
          const send = tools.find((x) => x.name === "send_email")!;
          assert.equal(send.annotations?.destructiveHint, true);
          assert.equal(send.annotations?.idempotentHint, false);
          assert.equal(tools.find((x) => x.name === "list_sent_messages")!.annotations?.readOnlyHint, true);
          const schema = send.inputSchema as { properties: Record<string, unknown> };
          for (const field of ["to", "subject", "text", "template", "data", "scheduled_at", "idempotency_key"]) {
            assert.ok(field in schema.properties, `send_email takes ${field}`);
          }
          assert.match(send.description ?? "", /unknown/);
          await client.close();
        },
      );

      await t.step("send_email from a 2025-era SDK 1.x client delivers, audited with the agent context", async () => {
        const client = new ClientV1({ name: "test-v1", version: "1.0.0" });
        await client.connect(new TransportV1(endpoint, auth(alice.token)));
        const result = await client.callTool({
          name: "send_email",
          arguments: {
            to: "jane@example.com",
            subject: "From an agent",
            text: "Hello Jane",
            agent_context: { run: "r-1" },
            idempotency_key: "mcp-test-1",
          },
        }) as ToolResult;
        assert.equal(result.isError, undefined, text(result));
        assert.match(text(result), /^Sent \(id /);
        const { id, message_id } = result.structuredContent as { id: string; message_id: string };
        const delivered = smtp.messages().at(-1)!;
        const parsed = await simpleParser(delivered.data);
        assert.equal(parsed.subject, "From an agent");
        assert.equal(parsed.messageId, message_id);
        const [row] = await stack.sql<{ user_id: string; agent_context: Record<string, unknown> }[]>`
          select user_id, agent_context from public.email_audit_log where id = ${id}`;
        assert.equal(row.user_id, alice.id);
        assert.deepEqual(row.agent_context, {
          run: "r-1",
          via: "mcp",
          tool: "send_email",
          client: row.agent_context.client,
        });
        assert.ok(String(row.agent_context.client).length > 0);

        // The same idempotency key replays: no second mail.
        const count = smtp.messages().length;
        const again = await client.callTool({
          name: "send_email",
          arguments: {
            to: "jane@example.com",
            subject: "From an agent",
            text: "Hello Jane",
            agent_context: { run: "r-1" },
            idempotency_key: "mcp-test-1",
          },
        }) as ToolResult;
        assert.equal((again.structuredContent as { id: string }).id, id);
        assert.equal(smtp.messages().length, count);
        await client.close();
      });

      await t.step("errors come back as tool errors carrying the code", async () => {
        const client = new ClientV2({ name: "test-v2", version: "1.0.0" });
        await client.connect(new TransportV2(endpoint, auth(alice.token)));
        const missing = await client.callTool({
          name: "send_email",
          arguments: { to: "jane@example.com", template: "welcome", data: { name: "Jane" } },
        }) as ToolResult;
        assert.equal(missing.isError, true);
        assert.match(text(missing), /^template_data_missing \(HTTP 422\)/);
        const refused = await client.callTool({
          name: "send_email",
          arguments: { to: "gone@example.com", subject: "x", text: "x" },
        }) as ToolResult;
        assert.equal(refused.isError, true);
        assert.match(text(refused), /^smtp_recipients_rejected \(HTTP 502\)/);
        const neither = await client.callTool({ name: "cancel", arguments: {} }) as ToolResult;
        assert.match(text(neither), /^invalid_request/);
        // Arguments of the wrong type or unknown ones: our code and the field, not the SDK's generic text.
        const wrongType = await client.callTool({
          name: "send_email",
          arguments: { to: "wrong-type@example.com", subject: 7, text: "x" },
        }) as ToolResult;
        assert.equal(wrongType.isError, true);
        assert.match(text(wrongType), /^invalid_request \(HTTP 400\): subject: /);
        const wrongTypeBody = wrongType.structuredContent as {
          error: { code: string; details: { issues: unknown[] } };
        };
        assert.equal(wrongTypeBody.error.code, "invalid_request");
        assert.deepEqual(wrongTypeBody.error.details.issues.map((i) => (i as { path: string }).path), ["subject"]);
        const unknownArgument = await client.callTool({
          name: "get_batch_status",
          arguments: { batch_id: "6a4f2c7e-8d5b-4c3a-9e1f-0b2d4c6e8a10", verbose: true },
        }) as ToolResult;
        assert.match(text(unknownArgument), /^invalid_request \(HTTP 400\): .*verbose/);
        let deep: unknown = "leaf";
        for (let i = 0; i < 5_000; i++) deep = [deep];
        const tooDeep = await client.callTool({
          name: "send_email",
          arguments: { to: "wrong-type@example.com", template: "welcome", data: { deep } },
        }) as ToolResult;
        assert.match(text(tooDeep), /^json_too_deep \(HTTP 400\)/, "bounded as every function bounds its body");
        const notAnId = await client.callTool({ name: "get_batch_status", arguments: { batch_id: 42 } }) as ToolResult;
        assert.match(text(notAnId), /^invalid_request \(HTTP 400\): batch_id: /);
        assert.equal(
          smtp.messages().filter((m) => m.rcptTo.includes("wrong-type@example.com")).length,
          0,
          "nothing sent",
        );
        await client.close();
      });

      await t.step(
        "an agent refused by the owner's guardrails is told to stop and tell the user; no tool can loosen them",
        async () => {
          // The owner sets the guardrails through the API with their own session; the agent holds the
          // token Supabase Auth issues to its OAuth client.
          const owner = await stack.createUser();
          await stack.createConfig(owner, { name: "work", port: smtp.port, security: "none", username: null });
          const agent = await stack.mint({ sub: owner.id, email: owner.email, clientId: "mcp-test-client" });
          const guard = await stack.invoke("oversight/guardrails", {
            token: owner.token,
            method: "PUT",
            body: { deny_recipients: ["boss@corp.example"], max_recipients_per_request: 2 },
          });
          assert.equal(guard.status, 200, await guard.text());
          const client = new ClientV2({ name: "test-v2", version: "1.0.0" }, { versionNegotiation: { mode: "auto" } });
          await client.connect(new TransportV2(endpoint, auth(agent)));
          const refusal = async (name: string, args: Record<string, unknown>) => {
            const result = await client.callTool({ name, arguments: args }) as ToolResult;
            assert.equal(result.isError, true, text(result));
            return text(result);
          };
          const before = smtp.messages().length;
          // docs/agents.md quotes two of these answers word for word.
          const documented = (await Deno.readTextFile(new URL("../docs/agents.md", import.meta.url))).replace(
            /\s+/g,
            " ",
          );

          const denied = await refusal("send_email", {
            to: "Boss <Boss@corp.example>",
            cc: "ok@example.com",
            subject: "Raise",
            text: "x",
          });
          assert.match(
            denied,
            /^recipient_denied \(HTTP 422\): The guardrails do not allow mail to Boss@corp\.example/,
          );
          assert.match(denied, /Refused recipients: Boss@corp\.example\. /);
          assert.match(denied, /Do not retry them, in this message or any other/);
          assert.match(denied, /Tell the user that their account's guardrails refuse these recipients/);
          assert.match(denied, /only the account owner can change that, in their own session/);
          assert.match(denied, /send it again without the refused recipients/);
          assert.ok(documented.includes(denied), `docs/agents.md quotes: ${denied}`);

          const capped = await refusal("send_email", {
            to: ["a@example.com", "b@example.com"],
            cc: "c@example.com",
            subject: "Three",
            text: "x",
          });
          assert.match(capped, /^recipient_cap_exceeded \(HTTP 422\): /);
          assert.match(capped, /at 2 \(this call had 3\)\. Do not repeat this call\. /);
          assert.match(capped, /Send to at most 2 recipients per message, or ask the user how to proceed/);

          const stop = await stack.invoke("oversight/stop", {
            token: owner.token,
            body: { reason: "Quarterly freeze" },
          });
          assert.equal(stop.status, 200, await stop.text());
          for (
            const [name, args] of [
              ["send_email", { to: "ok@example.com", subject: "Hi", text: "x" }],
              ["send_bulk_email", { recipients: ["ok@example.com"], subject: "Hi", text: "x" }],
            ] as const
          ) {
            const stopped = await refusal(name, args);
            assert.match(stopped, /^sending_stopped \(HTTP 409\): /, name);
            assert.match(
              stopped,
              /The account owner stopped all sending from this account, giving the reason "Quarterly freeze"/,
            );
            assert.match(
              stopped,
              /Do not retry this send or any other\. Tell the user that sending is stopped and why/,
            );
            assert.match(stopped, /only the account owner can lift the stop, in their own session/);
            if (name === "send_email") assert.ok(documented.includes(stopped), `docs/agents.md quotes: ${stopped}`);
          }
          assert.equal(smtp.messages().length, before, "nothing reached the SMTP server");

          // The agent's tools send and read; none changes guardrails, stops or lifts a stop.
          const { tools } = await client.listTools();
          assert.deepEqual(tools.filter((x) => /guardrail|stop|resume|oversight|approv/.test(x.name)), []);
          await client.close();
        },
      );

      await t.step("an agent's repeat of an email is refused with words that end the loop", async () => {
        const owner = await stack.createUser();
        await stack.createConfig(owner, { name: "work", port: smtp.port, security: "none", username: null });
        const client = new ClientV2({ name: "test-v2", version: "1.0.0" }, { versionNegotiation: { mode: "auto" } });
        await client.connect(new TransportV2(endpoint, auth(owner.token)));
        const email = { to: "loop@example.com", subject: "Your invoice", text: "Attached." };
        const first = await client.callTool({ name: "send_email", arguments: email }) as ToolResult;
        assert.equal(first.isError, undefined, text(first));
        const { id } = first.structuredContent as { id: string };
        const again = await client.callTool({ name: "send_email", arguments: email }) as ToolResult;
        assert.equal(again.isError, true, text(again));
        assert.match(text(again), /^duplicate_send \(HTTP 409\): This exact email/);
        assert.ok(text(again).includes(`(message ${id}, status sent)`), text(again));
        assert.match(text(again), /Do not send it again, reworded or otherwise, unless the user asks/);
        const bulk = await client.callTool({
          name: "send_bulk_email",
          arguments: {
            recipients: ["loop@example.com", "new@example.com"],
            subject: "Your invoice",
            text: "Attached.",
          },
        }) as ToolResult;
        assert.equal(bulk.isError, undefined, text(bulk));
        assert.match(text(bulk), /^Queued 1 message\(s\) as batch .*; left out 1 entries that repeat an email already/);
        assert.equal(smtp.messages().filter((m) => m.rcptTo.includes("loop@example.com")).length, 1);
        await client.close();
      });

      await t.step(
        "bulk, batch status, cancel, configs, templates, analytics and messages through the tools",
        async () => {
          const client = new ClientV2({ name: "test-v2", version: "1.0.0" }, { versionNegotiation: { mode: "auto" } });
          await client.connect(new TransportV2(endpoint, auth(alice.token)));
          const call = async (name: string, args: Record<string, unknown> = {}) => {
            const result = await client.callTool({ name, arguments: args }) as ToolResult;
            assert.equal(result.isError, undefined, `${name}: ${text(result)}`);
            return result;
          };
          const tomorrow = new Date(Date.now() + 86_400_000).toISOString();
          const bulk = await call("send_bulk_email", {
            recipients: ["a@example.com", { email: "b@example.com", name: "B" }],
            subject: "News",
            text: "Hello",
            scheduled_at: tomorrow,
          });
          const { batch_id } = bulk.structuredContent as { batch_id: string };
          const status = await call("get_batch_status", { batch_id });
          assert.equal((status.structuredContent as { counts: { scheduled: number } }).counts.scheduled, 2);
          const cancelled = await call("cancel", { batch_id });
          assert.match(text(cancelled), /Cancelled 2 message/);
          const configs = await call("list_smtp_configs");
          assert.match(text(configs), /^work </);
          assert.doesNotMatch(JSON.stringify(configs.structuredContent), /password"\s*:\s*"/);
          const templates = await call("list_email_templates");
          assert.match(text(templates), /welcome \(starter\)/);
          // A file stored once, then attached by id.
          const stored = await call("store_attachment", { filename: "notes.txt", content: btoa("meeting notes") });
          const { id: fileId } = stored.structuredContent as { id: string };
          assert.match(text(stored), new RegExp(`as attachment ${fileId}: attach it with`));
          assert.match(
            text(await call("list_attachments")),
            new RegExp(`${fileId} notes\\.txt \\(text/plain, 13 bytes`),
          );
          const attached = await call("send_email", {
            to: "jane@example.com",
            subject: "Notes attached",
            text: "See the notes",
            attachments: [{ id: fileId }],
          });
          assert.match(text(attached), /^Sent/, text(attached));
          const verified = await call("verify_smtp_config", { config: "work" });
          assert.match(text(verified), /The server answered/);
          const analytics = await call("get_email_analytics", { group_by: ["agent_context.tool"] });
          const summary = analytics.structuredContent as {
            breakdowns: Record<string, { key: string; total: number }[]>;
          };
          assert.ok(summary.breakdowns["agent_context.tool"].some((e) => e.key === "send_email"));
          const messages = await call("list_sent_messages", { status: ["sent"], limit: 5 });
          assert.match(text(messages), /sent to jane@example\.com: From an agent/);
          await client.close();
        },
      );

      await t.step("another user's ids are invisible through every tool", async () => {
        const [alicesRow] = await stack.sql<{ id: string }[]>`
          select id from public.email_audit_log where user_id = ${alice.id} limit 1`;
        const client = new ClientV2({ name: "bob", version: "1.0.0" });
        await client.connect(new TransportV2(endpoint, auth(bob.token)));
        const attempt = async (name: string, args: Record<string, unknown>) =>
          text(await client.callTool({ name, arguments: args }) as ToolResult);
        assert.match(await attempt("verify_smtp_config", { config: "work" }), /^config_not_found/);
        assert.match(
          await attempt("send_email", { to: "x@example.com", text: "x", config: "work" }),
          /^config_not_found/,
        );
        assert.match(await attempt("cancel", { id: alicesRow.id }), /^message_not_found/);
        const [batch] = await stack.sql<
          { id: string }[]
        >`select id from public.email_batches where user_id = ${alice.id}`;
        assert.match(await attempt("get_batch_status", { batch_id: batch.id }), /^batch_not_found/);
        assert.match(await attempt("list_sent_messages", {}), /^No messages\.$/);
        assert.match(await attempt("list_smtp_configs", {}), /^bobs </);
        await client.close();
      });

      await t.step("without a token: 401 pointing at protected-resource metadata that parses", async () => {
        const res = await fetch(endpoint, {
          method: "POST",
          headers: { "content-type": "application/json", accept: "application/json, text/event-stream" },
          body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" }),
        });
        assert.equal(res.status, 401);
        await res.body?.cancel();
        const header = res.headers.get("www-authenticate") ?? "";
        const url = /resource_metadata="([^"]+)"/.exec(header)?.[1];
        assert.ok(url, header);
        const metadata = await (await fetch(url)).json();
        assert.equal(metadata.resource, endpoint.href);
        assert.deepEqual(metadata.authorization_servers, [`${stack.url}/auth/v1`]);
        const bad = await fetch(endpoint, {
          method: "POST",
          headers: { authorization: "Bearer not-a-token", "content-type": "application/json" },
          body: "{}",
        });
        assert.equal(bad.status, 401);
        assert.match(bad.headers.get("www-authenticate") ?? "", /error="invalid_token"/);
        await bad.body?.cancel();
        // The official client surfaces it as an authorization failure, not a hang.
        const client = new ClientV2({ name: "anon", version: "1.0.0" });
        await assert.rejects(client.connect(new TransportV2(endpoint)));
      });

      await t.step(
        "browser origins: none or a configured one passes, any other gets 403 before the token",
        async () => {
          const initialize = JSON.stringify({
            jsonrpc: "2.0",
            id: 1,
            method: "initialize",
            params: { protocolVersion: "2025-11-25", capabilities: {}, clientInfo: { name: "raw", version: "1.0.0" } },
          });
          const call = (origin: string | undefined, init: { method?: string; token?: string | null } = {}) => {
            const headers: Record<string, string> = {
              "content-type": "application/json",
              accept: "application/json, text/event-stream",
            };
            if (init.token !== null) headers.authorization = `Bearer ${init.token ?? alice.token}`;
            if (origin !== undefined) headers.origin = origin;
            const method = init.method ?? "POST";
            return fetch(endpoint, { method, headers, body: method === "POST" ? initialize : undefined });
          };

          const serverSide = await call(undefined);
          await serverSide.body?.cancel();
          assert.equal(serverSide.status, 200, "a client that sends no Origin (not a browser) is not refused");
          assert.equal(serverSide.headers.get("access-control-allow-origin"), null);

          const app = await call(APP);
          await app.body?.cancel();
          assert.equal(app.status, 200);
          assert.equal(app.headers.get("access-control-allow-origin"), APP, "the allowed origin is echoed, not *");
          assert.match(app.headers.get("vary") ?? "", /origin/i);

          const refused = [
            "http://evil.example", // the rebinding page
            "null", // sandboxed frames, file:// pages
            "http://app.example", // the allowed host over another scheme
            "https://app.example:8443", // or another port
            "https://app.example.evil.example",
            stack.url, // the server's own origin is not implied
            "http://localhost:6274", // nor is localhost (the MCP Inspector's origin, when listed, passes)
            `${APP}, https://other.example`, // two Origin headers, joined
          ];
          for (const origin of refused) {
            const res = await call(origin);
            assert.equal(await errorCode(res, 403), "origin_not_allowed", origin);
            assert.equal(res.headers.get("access-control-allow-origin"), null, origin);
            assert.equal(res.headers.get("www-authenticate"), null, `${origin}: decided before the token`);
          }
          const body = await (await call("http://evil.example")).json();
          assert.deepEqual(body.error.details, { origin: "http://evil.example" });
          assert.match(body.error.message, /MAILROOM_ALLOWED_ORIGINS/);
          for (const method of ["GET", "DELETE"]) {
            assert.equal(
              await errorCode(await call("http://evil.example", { method }), 403),
              "origin_not_allowed",
              method,
            );
          }
          assert.equal(
            await errorCode(await call("http://evil.example", { token: null }), 403),
            "origin_not_allowed",
            "without a token too: the page learns nothing about authorization",
          );

          const preflight = (origin: string) =>
            fetch(endpoint, {
              method: "OPTIONS",
              headers: {
                origin,
                "access-control-request-method": "POST",
                "access-control-request-headers": "authorization, content-type, mcp-protocol-version",
              },
            });
          const evilPreflight = await preflight("http://evil.example");
          assert.equal(await errorCode(evilPreflight, 403), "origin_not_allowed");
          assert.equal(
            evilPreflight.headers.get("access-control-allow-origin"),
            null,
            "a refused origin is never echoed",
          );
          const appPreflight = await preflight(APP);
          await appPreflight.body?.cancel();
          assert.equal(appPreflight.status, 204);
          assert.equal(appPreflight.headers.get("access-control-allow-origin"), APP);
          assert.match(
            appPreflight.headers.get("access-control-allow-headers") ?? "",
            /authorization.*mcp-protocol-version/,
          );
          assert.match(appPreflight.headers.get("vary") ?? "", /origin/i);

          // The protected-resource metadata is public: any page may read it to find Supabase Auth.
          const metadataUrl = `${endpoint.href}/.well-known/oauth-protected-resource`;
          const metadata = await fetch(metadataUrl, { headers: { origin: "http://evil.example" } });
          assert.equal(metadata.status, 200);
          assert.equal((await metadata.json()).resource, endpoint.href);
          assert.equal(metadata.headers.get("access-control-allow-origin"), "*");
          const metadataPreflight = await fetch(metadataUrl, {
            method: "OPTIONS",
            headers: { origin: "http://evil.example", "access-control-request-headers": "mcp-protocol-version" },
          });
          await metadataPreflight.body?.cancel();
          assert.equal(metadataPreflight.status, 204);
          assert.equal(metadataPreflight.headers.get("access-control-allow-origin"), "*");

          // The official client, as a browser app on the allowed origin would run it, and on another.
          const withOrigin = (origin: string) =>
            new TransportV2(endpoint, {
              requestInit: { headers: { Authorization: `Bearer ${alice.token}`, Origin: origin } },
            });
          const client = new ClientV2({ name: "browser-app", version: "1.0.0" }, {
            versionNegotiation: { mode: "auto" },
          });
          await client.connect(withOrigin(APP));
          assert.deepEqual((await client.listTools()).tools.map((x) => x.name), TOOLS);
          await client.close();
          const evil = new ClientV2({ name: "evil", version: "1.0.0" }, { versionNegotiation: { mode: "auto" } });
          await assert.rejects(evil.connect(withOrigin("http://evil.example")));
        },
      );

      await t.step("the script example of docs/agents.md (examples/mcp_send.ts) delivers", async () => {
        const before = smtp.messages().length;
        assert.match(
          await sendWithMcp(stack.url, alice.token, "script@example.com"),
          /^Sent \(id .+Accepted: script@example\.com\.$/,
        );
        assert.deepEqual(smtp.messages().slice(before).map((m) => m.rcptTo), [["script@example.com"]]);
      });

      await t.step("tags cannot be spoofed, retries survive a client upgrade, browsers can connect", async () => {
        const callAs = async (userAgent: string, name: string, args: Record<string, unknown>) => {
          const client = new ClientV2({ name: "ua", version: "1.0.0" });
          await client.connect(
            new TransportV2(endpoint, {
              requestInit: { headers: { Authorization: `Bearer ${alice.token}`, "User-Agent": userAgent } },
            }),
          );
          try {
            return await client.callTool({ name, arguments: args }) as ToolResult;
          } finally {
            await client.close();
          }
        };
        // Each bulk message's own agent_context gets the tags too.
        const bulk = await callAs("agent/1.0", "send_bulk_email", {
          messages: [{ to: "m1@example.com", subject: "m", text: "x", agent_context: { via: "http", tool: "fake" } }],
          scheduled_at: new Date(Date.now() + 3_600_000).toISOString(),
        });
        const { batch_id } = bulk.structuredContent as { batch_id: string };
        const [row] = await stack.sql<{ agent_context: Record<string, unknown> }[]>`
          select agent_context from public.email_audit_log where batch_id = ${batch_id}`;
        assert.deepEqual(row.agent_context, { via: "mcp", tool: "send_bulk_email", client: "agent" });
        // The same key from an upgraded client replays the first result.
        const args = { to: "ua@example.com", subject: "ua", text: "x", idempotency_key: "mcp-ua-1" };
        const first = await callAs("agent/1.0", "send_email", args);
        const second = await callAs("agent/2.0", "send_email", args);
        assert.equal(second.isError, undefined, text(second));
        assert.equal((second.structuredContent as { id: string }).id, (first.structuredContent as { id: string }).id);
        // Dots are not path steps.
        assert.match(text(await callAs("agent/1.0", "verify_smtp_config", { config: ".." })), /^invalid_request/);

        const preflight = await fetch(endpoint, {
          method: "OPTIONS",
          headers: { origin: "https://app.example", "access-control-request-headers": "mcp-method, mcp-name" },
        });
        await preflight.body?.cancel();
        assert.match(preflight.headers.get("access-control-allow-headers") ?? "", /mcp-method, mcp-name/);
        const unauthorized = await fetch(endpoint, { method: "POST", headers: { origin: "https://app.example" } });
        await unauthorized.body?.cancel();
        assert.match(unauthorized.headers.get("access-control-expose-headers") ?? "", /www-authenticate/);
      });

      await t.step("LangChain's MCP adapter loads the tools and a call delivers", async () => {
        const mcp = new MultiServerMCPClient({
          mcpServers: {
            mailroom: { transport: "http", url: endpoint.href, headers: { Authorization: `Bearer ${alice.token}` } },
          },
        });
        try {
          const tools = await mcp.getTools();
          assert.deepEqual(tools.map((x) => x.name).sort(), [...TOOLS].sort());
          const send = tools.find((x) => x.name === "send_email")!;
          const before = smtp.messages().length;
          const output = await send.invoke({ to: "lc@example.com", subject: "Via LangChain", text: "hi" });
          assert.match(JSON.stringify(output), /Sent \(id /);
          assert.equal(smtp.messages().length, before + 1);
          assert.deepEqual(smtp.messages().at(-1)!.rcptTo, ["lc@example.com"]);
        } finally {
          await mcp.close();
        }
      });
    } finally {
      await smtp.close();
      await stack.close();
    }
  },
});

Deno.test("MAILROOM_ALLOWED_ORIGINS: exact origins, normalised; wildcards and null refused at startup", () => {
  const load = (value: string) =>
    loadConfig({
      SUPABASE_URL: "http://127.0.0.1:54321",
      SUPABASE_DB_URL: "postgres://x",
      MAILROOM_ALLOWED_ORIGINS: value,
    })
      .allowedOrigins;
  assert.deepEqual(load(""), [], "by default no browser origin is allowed");
  assert.deepEqual(
    load(" https://App.Example.com:443/ , http://127.0.0.1:6274,https://app.example.com,http://[::1]:3000"),
    ["https://app.example.com", "http://127.0.0.1:6274", "http://[::1]:3000"],
  );
  for (
    const bad of [
      "*",
      "https://*.example.com",
      "null",
      "app.example.com",
      "https://app.example.com/mcp",
      "ftp://a.example",
    ]
  ) {
    assert.throws(
      () => load(bad),
      (e: unknown) => e instanceof ConfigError && /MAILROOM_ALLOWED_ORIGINS/.test(String(e)),
      bad,
    );
  }
  assert.throws(() => load("*"), /wildcard/);
  assert.throws(() => load("null"), /opaque origin/);
});
