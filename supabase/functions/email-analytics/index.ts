// Edge Function entry point: see handler.ts.
import { createContext } from "../_shared/context.ts";
import { createEmailAnalyticsHandler } from "./handler.ts";

Deno.serve(createEmailAnalyticsHandler(createContext(Deno.env.toObject())));
