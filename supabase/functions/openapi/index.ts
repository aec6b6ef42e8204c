// Edge Function entry point: see handler.ts.
import { createContext } from "../_shared/context.ts";
import { createOpenApiHandler } from "./handler.ts";

Deno.serve(createOpenApiHandler(createContext(Deno.env.toObject())));
