// Edge Function entry point: see handler.ts.
import { createContext } from "../_shared/context.ts";
import { createSendBulkHandler } from "./handler.ts";

Deno.serve(createSendBulkHandler(createContext(Deno.env.toObject())));
