// Approval outside the model's channel (issue 29): when an agent's send must wait for the
// owner, the MCP endpoint sends the person to the approval page through URL-mode elicitation
// (2026-07-28 revision: an input_required result with an embedded elicitation/create), and
// the retried call reports what the owner decided without sending again. Clients that cannot
// open a page get the held result as text. Real clients (the official TypeScript client v2 and
// SDK 1.x), a real SMTP server; the "person" is the test acting through the owner's session.
import assert from "node:assert/strict";
import { Client as ClientV2, StreamableHTTPClientTransport as TransportV2 } from "@modelcontextprotocol/client";
import { Client as ClientV1 } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport as TransportV1 } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { startTestStack } from "./harness.ts";
import { startScriptedSmtp } from "./scripted_smtp.ts";
import { ConfigError, loadConfig } from "../supabase/functions/_shared/config.ts";

type ToolResult = { isError?: boolean; content: { type: string; text?: string }[]; structuredContent?: unknown };

const APPROVALS = "https://app.example/approvals";

Deno.test({
  name: "mcp: a held send sends the person to approve it, and the retried call says what they decided",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const stack = await startTestStack({ MAILROOM_ALLOW_PLAINTEXT_SMTP: "true", MAILROOM_APPROVAL_URL: APPROVALS });
    const smtp = await startScriptedSmtp({});
    const endpoint = new URL(`${stack.url}/functions/v1/mcp`);
    const owner = await stack.createUser();
    await stack.createConfig(owner, { port: smtp.port, security: "none", username: null });
    const set = await stack.invoke("oversight/guardrails", {
      token: owner.token,
      method: "PUT",
      body: { approval: "agents" },
    });
    assert.equal(set.status, 200, await set.text());
    const agent = await stack.mint({ sub: owner.id, email: owner.email, clientId: "mcp-approval-client" });
    const auth = { requestInit: { headers: { Authorization: `Bearer ${agent}` } } };
    const text = (r: ToolResult) => r.content.map((c) => c.text ?? "").join("\n");
    const received = (to: string) => smtp.messages().filter((m) => m.rcptTo.includes(to)).length;

    /** A v2 client on the current revision that opens approval pages: the person decides there. */
    const clientThatDecides = async (decision: "approve" | "reject") => {
      const seen: { url: string; message: string }[] = [];
      const client = new ClientV2({ name: "approving-client", version: "1.0.0" }, {
        capabilities: { elicitation: { url: {} } },
        versionNegotiation: { mode: "auto" },
      });
      client.setRequestHandler("elicitation/create", async (request) => {
        const params = request.params as { mode?: string; url?: string; message?: string };
        assert.equal(params.mode, "url");
        seen.push({ url: params.url!, message: params.message! });
        const path = params.url!.slice(APPROVALS.length + 1);
        const res = await stack.invoke(`oversight/approvals/${path}/${decision}`, { token: owner.token, body: {} });
        assert.equal(res.status, 200, await res.text());
        return { action: "accept" as const };
      });
      await client.connect(new TransportV2(endpoint, auth));
      return { client, seen };
    };

    try {
      await t.step("approved on the page: delivered once, and the model is told", async () => {
        const { client, seen } = await clientThatDecides("approve");
        const result = await client.callTool({
          name: "send_email",
          arguments: { to: "approved@example.com", subject: "Hi", text: "from the agent" },
        }) as ToolResult;
        assert.equal(seen.length, 1, "the person was sent to one page");
        assert.match(seen[0].url, new RegExp(`^${APPROVALS}/[0-9a-f-]{36}$`));
        assert.match(seen[0].message, /waits for your approval/);
        assert.match(text(result), /approved this email/);
        await stack.drainOutbox();
        await stack.drainOutbox();
        assert.equal(received("approved@example.com"), 1, "sent once: the retried call did not send again");
        await client.close();
      });

      await t.step("rejected on the page: nothing sent, and the model is told not to resend", async () => {
        const { client } = await clientThatDecides("reject");
        const result = await client.callTool({
          name: "send_email",
          arguments: { to: "rejected@example.com", text: "no" },
        }) as ToolResult;
        assert.match(text(result), /rejected this email/);
        await stack.drainOutbox();
        assert.equal(received("rejected@example.com"), 0);
        await client.close();
      });

      await t.step("a batch goes to its own page", async () => {
        const { client, seen } = await clientThatDecides("approve");
        const result = await client.callTool({
          name: "send_bulk_email",
          arguments: { recipients: ["b1@example.com", "b2@example.com"], subject: "s", text: "t" },
        }) as ToolResult;
        assert.match(seen[0].url, new RegExp(`^${APPROVALS}/batch/[0-9a-f-]{36}$`));
        assert.match(text(result), /decided/);
        await stack.drainOutbox();
        assert.equal(received("b1@example.com") + received("b2@example.com"), 2);
        await client.close();
      });

      await t.step("a notice to the owner's own address links to the page; approving is done there", async () => {
        const byAgent = await stack.invoke("oversight/guardrails", {
          token: agent,
          method: "PUT",
          body: { approval: "agents", approval_notify_config: "default" },
        });
        assert.equal(byAgent.status, 403, "where the owner's notices go is the owner's to say");
        await byAgent.body?.cancel();
        const set = await stack.invoke("oversight/guardrails", {
          token: owner.token,
          method: "PUT",
          body: { approval: "agents", approval_notify_config: "default" },
        });
        assert.equal(set.status, 200, await set.text());
        const held = await (await stack.invoke("send-email", {
          token: agent,
          body: { to: "noticed@example.com", subject: "Numbers", text: "x" },
        })).json();
        assert.equal(held.status, "pending_approval");
        await stack.drainOutbox();
        const notices = smtp.messages().filter((m) => m.rcptTo.includes(owner.email));
        assert.equal(notices.length, 1, "one notice, to the owner's own address");
        assert.match(notices[0].data.replace(/=\r\n/g, ""), new RegExp(`${APPROVALS}/${held.id}`));
        assert.equal(received("noticed@example.com"), 0, "the held email itself waits");
        const [notice] = await stack.sql<{ client_id: string | null; status: string }[]>`
          select client_id, status from public.email_audit_log where approval_notice`;
        assert.deepEqual(notice, { client_id: null, status: "sent" }, "not an agent's message, never held");
        await stack.invoke("oversight/guardrails", { token: owner.token, method: "PUT", body: { approval: "agents" } })
          .then((r) => r.body?.cancel());
      });

      await t.step("clients that cannot open a page get the held result as text, and nothing goes", async () => {
        const plain = new ClientV2({ name: "plain", version: "1.0.0" }, { versionNegotiation: { mode: "auto" } });
        await plain.connect(new TransportV2(endpoint, auth));
        const v2 = await plain.callTool({
          name: "send_email",
          arguments: { to: "plain@example.com", text: "x" },
        }) as ToolResult;
        assert.match(text(v2), /Held for approval .* do not send it again/);
        assert.match(text(v2), new RegExp(`waiting for their approval at ${APPROVALS}/[0-9a-f-]{36}`), "with the page");
        assert.match(text(v2), new RegExp(`waiting for their approval at ${APPROVALS}/[0-9a-f-]{36}`), "with the page");
        await plain.close();
        const legacy = new ClientV1({ name: "legacy", version: "1.0.0" }, {
          capabilities: { elicitation: { url: {} } },
        });
        await legacy.connect(new TransportV1(endpoint, auth));
        const v1 = await legacy.callTool({
          name: "send_email",
          arguments: { to: "legacy@example.com", text: "x" },
        }) as ToolResult;
        assert.match(text(v1), /Held for approval .* do not send it again/);
        await legacy.close();
        await stack.drainOutbox();
        assert.equal(received("plain@example.com") + received("legacy@example.com"), 0);
      });
    } finally {
      await smtp.close();
      await stack.close();
    }
  },
});

Deno.test("MAILROOM_APPROVAL_URL must be https (http only on loopback)", () => {
  const base = { SUPABASE_URL: "https://abc.supabase.co", SUPABASE_DB_URL: "postgres://x@db/postgres" };
  assert.equal(loadConfig({ ...base, MAILROOM_APPROVAL_URL: "https://app.example/approvals/" }).approvalUrl, APPROVALS);
  assert.equal(
    loadConfig({ ...base, MAILROOM_APPROVAL_URL: "http://127.0.0.1:3000/a" }).approvalUrl,
    "http://127.0.0.1:3000/a",
  );
  assert.equal(loadConfig(base).approvalUrl, undefined);
  for (const bad of ["http://app.example/approvals", "not a url", "javascript:alert(1)"]) {
    assert.throws(() => loadConfig({ ...base, MAILROOM_APPROVAL_URL: bad }), ConfigError, bad);
  }
});
