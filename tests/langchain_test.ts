// A LangChain.js agent (createAgent) with mailroom's tools from the SDK, driven by a scripted
// tool-calling chat model: a test stand-in for the LLM (no model can run here), named as such.
// It asks for the welcome template to jane@example.com; the mail that arrives is rendered
// from that template. A tool error reaches the model as text starting with the code.
import assert from "node:assert/strict";
import { BaseChatModel } from "@langchain/core/language_models/chat_models";
import { AIMessage, type BaseMessage, ToolMessage } from "@langchain/core/messages";
import type { ChatResult } from "@langchain/core/outputs";
import { simpleParser } from "mailparser";
import { convertToOpenAITool } from "@langchain/core/utils/function_calling";
import { createMailAgent } from "../examples/langchain_agent.ts";
import { createMailroomClient } from "../clients/mailroom/src/index.ts";
import { createMailroomTools } from "../clients/mailroom/src/langchain.ts";
import { startTestStack } from "./harness.ts";
import { startScriptedSmtp } from "./scripted_smtp.ts";

/** Stand-in for an LLM: answers with the scripted tool calls in order, then with text. */
class ScriptedToolCallingModel extends BaseChatModel {
  seen: BaseMessage[][] = [];
  constructor(private readonly script: AIMessage[]) {
    super({});
  }
  _llmType() {
    return "scripted-tool-calling-stand-in";
  }
  override bindTools() {
    return this as never;
  }
  // deno-lint-ignore require-await
  async _generate(messages: BaseMessage[]): Promise<ChatResult> {
    this.seen.push(messages);
    const message = this.script.shift() ?? new AIMessage("Done.");
    return { generations: [{ message, text: typeof message.content === "string" ? message.content : "" }] };
  }
}

const call = (name: string, args: Record<string, unknown>, id: string) =>
  new AIMessage({ content: "", tool_calls: [{ name, args, id, type: "tool_call" }] });

Deno.test({
  name: "langchain agent with mailroom tools",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const stack = await startTestStack({ MAILROOM_ALLOW_PLAINTEXT_SMTP: "true" });
    const smtp = await startScriptedSmtp();
    const user = await stack.createUser();
    await stack.createConfig(user, { name: "work", port: smtp.port, security: "none", username: null });
    const connection = { url: stack.url, accessToken: user.token };
    try {
      await t.step("every tool converts to a model's tool format (what bindTools sends to a real model)", () => {
        const tools = createMailroomTools(createMailroomClient(connection));
        assert.equal(tools.length, 12);
        for (const tool of tools) {
          const converted = convertToOpenAITool(tool);
          assert.equal(converted.function.name, tool.name);
          assert.equal((converted.function.parameters as { type?: string }).type, "object", tool.name);
        }
        const send = convertToOpenAITool(tools.find((t) => t.name === "send_email")!);
        const properties = (send.function.parameters as { properties: Record<string, unknown> }).properties;
        assert.ok("to" in properties && "idempotency_key" in properties && "data" in properties);
      });

      await t.step("'send the welcome template to jane@example.com' lands a rendered mail", async () => {
        const model = new ScriptedToolCallingModel([
          call("list_email_templates", {}, "c1"),
          call("send_email", {
            to: "jane@example.com",
            template: "welcome",
            data: { name: "Jane", product: "Acme", login_url: "https://acme.example/login" },
            idempotency_key: "lc-welcome-1",
          }, "c2"),
          new AIMessage("I sent Jane the welcome email."),
        ]);
        const agent = createMailAgent(model, connection);
        const result = await agent.invoke({
          messages: [{ role: "user", content: "send the welcome template to jane@example.com" }],
        });
        assert.equal(result.messages.at(-1)!.content, "I sent Jane the welcome email.");
        const tools = result.messages.filter((m: BaseMessage) => m instanceof ToolMessage) as ToolMessage[];
        assert.match(String(tools[0].content), /"name":"welcome"/);
        assert.match(String(tools[1].content), /"status":"sent"/);
        const mail = await simpleParser(smtp.messages().at(-1)!.data);
        assert.equal(mail.subject, "Welcome to Acme, Jane!");
        assert.match(mail.text ?? "", /Welcome, Jane!/);
        // Mustache escapes "/" in HTML as &#x2F; (what a browser reads as "/").
        assert.match(String(mail.html), /href="https:(\/|&#x2F;){2}acme\.example(\/|&#x2F;)login"/);
        const [row] = await stack.sql<{ agent_context: Record<string, unknown> }[]>`
          select agent_context from public.email_audit_log where user_id = ${user.id} order by created_at desc limit 1`;
        assert.deepEqual(row.agent_context, { via: "langchain", tool: "send_email", client: "langchain" });
      });

      await t.step("a tool error comes back to the model as text with the code", async () => {
        const model = new ScriptedToolCallingModel([
          call("send_email", { to: "jane@example.com", template: "welcome", data: { name: "Jane" } }, "c1"),
          new AIMessage("The template needs more data."),
        ]);
        const before = smtp.messages().length;
        await createMailAgent(model, connection).invoke({
          messages: [{ role: "user", content: "send the welcome template to jane@example.com" }],
        });
        const last = model.seen.at(-1)!.at(-1)!;
        assert.ok(last instanceof ToolMessage);
        assert.match(
          String(last.content),
          /^template_data_missing \(HTTP 422\): .*"missing":\["product","login_url"\]/,
        );
        assert.equal(smtp.messages().length, before, "nothing was sent");
      });

      await t.step("a guardrail's refusal tells the model what to do instead of retrying", async () => {
        // The owner sets the guardrails with their own session; the agent runs on an OAuth client's token.
        const owner = await stack.createUser();
        await stack.createConfig(owner, { name: "work", port: smtp.port, security: "none", username: null });
        const agentToken = await stack.mint({ sub: owner.id, email: owner.email, clientId: "langchain-app" });
        const guard = await stack.invoke("oversight/guardrails", {
          token: owner.token,
          method: "PUT",
          body: { deny_recipients: ["corp.example"], max_recipients_per_request: 1 },
        });
        assert.equal(guard.status, 200, await guard.text());
        const model = new ScriptedToolCallingModel([
          call("send_email", { to: "boss@corp.example", subject: "Hi", text: "Hello" }, "c1"),
          call("send_bulk_email", { recipients: ["a@example.com", "b@example.com"], subject: "Hi", text: "x" }, "c2"),
          new AIMessage("Your guardrails refuse these; I stopped."),
        ]);
        const before = smtp.messages().length;
        await createMailAgent(model, { url: stack.url, accessToken: agentToken }).invoke({
          messages: [{ role: "user", content: "email my boss at boss@corp.example" }],
        });
        const [denied, capped] = model.seen.at(-1)!.filter((m) => m instanceof ToolMessage).map((m) =>
          String(m.content)
        );
        assert.match(denied, /^recipient_denied \(HTTP 422\): .*"recipients":\["boss@corp\.example"\]/);
        assert.match(denied, /Refused recipients: boss@corp\.example\. .*Do not retry them/);
        assert.match(denied, /only the account owner can change that, in their own session/);
        assert.match(
          capped,
          /^recipient_cap_exceeded \(HTTP 422\): .*at 1 \(this call had 2\)\. Do not repeat this call/,
        );

        const stop = await stack.invoke("oversight/stop", { token: owner.token, body: { reason: "On holiday" } });
        assert.equal(stop.status, 200, await stop.text());
        const [send] = createMailroomTools(createMailroomClient({ url: stack.url, accessToken: agentToken }), {
          only: ["send_email"],
        });
        const stopped = String(await send.invoke({ to: "ok@example.com", subject: "Hi", text: "x" }));
        assert.match(stopped, /^sending_stopped \(HTTP 409\): /);
        assert.match(stopped, /stopped all sending from this account, giving the reason "On holiday"\. /);
        assert.match(stopped, /Do not retry this send or any other\. Tell the user that sending is stopped and why/);
        assert.equal(smtp.messages().length, before, "nothing was sent");
      });

      await t.step("with approval required, a send waits for the human", async () => {
        const model = new ScriptedToolCallingModel([
          call("send_email", { to: "jane@example.com", subject: "Hi", text: "Hello" }, "c1"),
          new AIMessage("Waiting for approval."),
        ]);
        const before = smtp.messages().length;
        const agent = createMailAgent(model, connection, true);
        const result = await agent.invoke(
          { messages: [{ role: "user", content: "say hi to jane@example.com" }] },
          { configurable: { thread_id: "approval-1" } },
        );
        assert.ok(result.__interrupt__?.length, "the agent stopped for a decision");
        assert.equal(smtp.messages().length, before, "nothing was sent before approval");
      });
    } finally {
      await smtp.close();
      await stack.close();
    }
  },
});
