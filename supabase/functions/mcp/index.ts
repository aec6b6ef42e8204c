// Edge Function entry point: see handler.ts.
import { createContext } from "../_shared/context.ts";
import { createMcpFunctionHandler } from "./handler.ts";

Deno.serve(createMcpFunctionHandler(createContext(Deno.env.toObject())));
