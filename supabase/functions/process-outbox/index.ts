// Edge Function entry point: see handler.ts.
import { createContext } from "../_shared/context.ts";
import { createProcessOutboxHandler } from "./handler.ts";

Deno.serve(createProcessOutboxHandler(createContext(Deno.env.toObject())));
