// Edge Function entry point: see handler.ts.
import { createContext } from "../_shared/context.ts";
import { createOversightHandler } from "./handler.ts";

Deno.serve(createOversightHandler(createContext(Deno.env.toObject())));
