// Edge Function entry point: see handler.ts.
import { createContext } from "../_shared/context.ts";
import { createSuppressionsHandler } from "./handler.ts";

Deno.serve(createSuppressionsHandler(createContext(Deno.env.toObject())));
