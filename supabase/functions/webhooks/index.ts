// Edge Function entry point: see handler.ts.
import { createContext } from "../_shared/context.ts";
import { createWebhooksHandler } from "./handler.ts";

Deno.serve(createWebhooksHandler(createContext(Deno.env.toObject())));
