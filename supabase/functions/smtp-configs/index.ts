// Edge Function entry point: see handler.ts.
import { createContext } from "../_shared/context.ts";
import { createSmtpConfigsHandler } from "./handler.ts";

Deno.serve(createSmtpConfigsHandler(createContext(Deno.env.toObject())));
