// Edge Function entry point: see handler.ts.
import { createContext } from "../_shared/context.ts";
import { loadBulkLimits } from "../_shared/outbox/enqueue.ts";
import { createSendBulkHandler } from "./handler.ts";

const env = Deno.env.toObject();
Deno.serve(createSendBulkHandler(createContext(env), loadBulkLimits(env)));
