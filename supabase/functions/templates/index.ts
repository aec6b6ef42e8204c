// Edge Function entry point: see handler.ts.
import { createContext } from "../_shared/context.ts";
import { createTemplatesHandler } from "./handler.ts";

Deno.serve(createTemplatesHandler(createContext(Deno.env.toObject())));
