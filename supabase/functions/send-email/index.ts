// Edge Function entry point: see handler.ts.
import { createContext } from "../_shared/context.ts";
import { createSendEmailHandler } from "./handler.ts";

Deno.serve(createSendEmailHandler(createContext(Deno.env.toObject())));
