// /unsubscribe: one-click unsubscribe (RFC 8058), public (no JWT: mail providers call it).
//
//   POST /unsubscribe?token=...   unsubscribe at once (what a mail provider's Unsubscribe button
//                                 sends, with the body List-Unsubscribe=One-Click): 200
//   GET  /unsubscribe?token=...   changes nothing (link checkers and previews open links): sends
//                                 the person to MAILROOM_UNSUBSCRIBE_PAGE_URL (a static page with
//                                 a button, such as the dashboard's) or, without one, explains in
//                                 plain text (hosted functions serve no HTML without a custom domain)
//
// The token is signed (see _shared/consent): a forged, altered or cut one is 400
// `invalid_unsubscribe_token`, and nothing about the sender is told either way.
import type { AppContext } from "../_shared/context.ts";
import { ApiError, type Handler, readBytes, serveJson } from "../_shared/http.ts";
import { deploymentKeys, verifyUnsubscribeToken } from "../_shared/consent/mod.ts";

/** What a mail provider posts is `List-Unsubscribe=One-Click`; anything small is taken. */
const MAX_BODY_BYTES = 4 * 1024;

function text(body: string, status = 200): Response {
  return new Response(body, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" },
  });
}

function invalid(): ApiError {
  return new ApiError(
    400,
    "invalid_unsubscribe_token",
    "This unsubscribe link is not valid (it was changed or cut); use the link from the email as it came",
  );
}

/** Build the unsubscribe handler over a shared context. */
export function createUnsubscribeHandler(ctx: AppContext): Handler {
  return serveJson(async (req) => {
    const token = new URL(req.url).searchParams.get("token") ?? "";
    const claim = await verifyUnsubscribeToken(await deploymentKeys(ctx.config), token);
    if (req.method === "GET") {
      if (!claim) throw invalid();
      // A page with a button, where the deployment has one (hosted functions serve no HTML).
      const page = ctx.config.unsubscribePageUrl;
      if (page) {
        return new Response(null, {
          status: 303,
          headers: { location: `${page}?token=${encodeURIComponent(token)}`, "cache-control": "no-store" },
        });
      }
      return text(
        `This link unsubscribes ${claim.address} from this sender's email${
          claim.topic ? ` (${claim.topic})` : ""
        }.\n\n` +
          "Opening it changes nothing: your mail app's Unsubscribe button confirms it (it posts to this link).\n" +
          "To confirm by hand: curl -X POST -d List-Unsubscribe=One-Click '<this link>'\n",
      );
    }
    if (req.method !== "POST") {
      throw new ApiError(405, "method_not_allowed", "Use POST (or GET to read what the link does)", undefined, {
        allow: "GET, POST, OPTIONS",
      });
    }
    await readBytes(req, MAX_BODY_BYTES).catch(() => undefined);
    if (!claim) throw invalid();
    await ctx.sql`select private.unsubscribe_recipient(${claim.userId}::uuid, ${claim.address}, ${claim.topic})`;
    return text(`${claim.address} is unsubscribed: this sender's email will not reach it again.\n`);
  });
}
