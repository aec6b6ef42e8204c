// Send an email through mailroom's MCP endpoint with the official MCP TypeScript client.
// Usage: MAILROOM_URL=http://127.0.0.1:54321 TOKEN=<user access token> npm run deno -- run -A examples/mcp_send.ts jane@example.com
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";

export async function sendWithMcp(baseUrl: string, token: string, to: string): Promise<string> {
  const client = new Client({ name: "my-script", version: "1.0.0" }, { versionNegotiation: { mode: "auto" } });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(`${baseUrl}/functions/v1/mcp`), {
      requestInit: { headers: { Authorization: `Bearer ${token}` } },
    }),
  );
  try {
    const result = await client.callTool({
      name: "send_email",
      arguments: {
        to,
        subject: "Hello from my agent",
        text: "Sent through MCP.",
        idempotency_key: crypto.randomUUID(),
      },
    });
    const text = (result.content as { type: string; text?: string }[]).map((c) => c.text ?? "").join("\n");
    if (result.isError) throw new Error(text); // e.g. "config_not_found (HTTP 404): ..."
    return text; // "Sent (id ..., Message-ID <...>). Accepted: jane@example.com."
  } finally {
    await client.close();
  }
}

if (import.meta.main) {
  console.log(await sendWithMcp(Deno.env.get("MAILROOM_URL")!, Deno.env.get("TOKEN")!, Deno.args[0]));
}
