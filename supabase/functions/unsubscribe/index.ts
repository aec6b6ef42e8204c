// Edge Function entry point: see handler.ts.
import { createContext } from "../_shared/context.ts";
import { createUnsubscribeHandler } from "./handler.ts";

Deno.serve(createUnsubscribeHandler(createContext(Deno.env.toObject())));
