// Edge Function entry point: see handler.ts.
import { createContext } from "../_shared/context.ts";
import { createAttachmentsHandler } from "./handler.ts";

Deno.serve(createAttachmentsHandler(createContext(Deno.env.toObject())));
