// A LangChain.js agent that sends mail with mailroom's tools (no MCP needed): the tools come
// from the SDK, the user's identity from their Supabase session. With `approveSends`, every
// send waits for a human decision (LangChain's human-in-the-loop middleware).
import { createAgent, humanInTheLoopMiddleware } from "langchain";
import { MemorySaver } from "@langchain/langgraph";
import type { BaseChatModel } from "@langchain/core/language_models/chat_models";
import { createMailroomClient, type MailroomClientOptions } from "../clients/mailroom/src/index.ts";
import { createMailroomTools } from "../clients/mailroom/src/langchain.ts";

export function createMailAgent(model: BaseChatModel, connection: MailroomClientOptions, approveSends = false) {
  const mailroom = createMailroomClient(connection); // { supabase } or { url, accessToken }
  return createAgent({
    model,
    tools: createMailroomTools(mailroom),
    systemPrompt: "You send email for the user with the mailroom tools. Use templates when one fits.",
    ...(approveSends
      ? {
        middleware: [humanInTheLoopMiddleware({ interruptOn: { send_email: true, send_bulk_email: true } })],
        checkpointer: new MemorySaver(),
      }
      : {}),
  });
}
