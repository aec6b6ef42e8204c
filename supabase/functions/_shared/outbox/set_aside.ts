// Messages the outbox set aside: a worker died twice while holding one (out of memory, a
// crash), so it waits for its owner instead of being claimed for ever. The owner sees it in
// the message views (status `queued`, error_class `worker_crashed`, no next attempt) and
// retries it here, or cancels it like any queued send.
import type { UserClaims } from "../auth.ts";
import type { AppContext } from "../context.ts";
import { withUser } from "../db.ts";
import { ApiError } from "../http.ts";

/**
 * Send a set-aside message again. It is claimed alone, and set aside again should a worker
 * die holding it once more.
 *
 * @throws ApiError 404 `message_not_found`; 409 `not_retryable` when it was not set aside.
 * @example
 * ```ts
 * await retrySetAside(ctx, claims, id); // { id, status: "queued" }
 * ```
 */
export async function retrySetAside(
  ctx: AppContext,
  claims: UserClaims,
  id: string,
): Promise<{ id: string; status: "queued" }> {
  return await withUser(ctx.sql, claims, async (tx) => {
    const [row] = await tx<{ status: string; error_class: string | null }[]>`
      select status, error_class from public.email_audit_log where id = ${id}::uuid`;
    if (!row) throw new ApiError(404, "message_not_found", `No message ${JSON.stringify(id)}`);
    const retried = await tx`select private.retry_set_aside_messages(array[${id}::uuid])`;
    if (retried.length === 0) {
      throw new ApiError(
        409,
        "not_retryable",
        "Only a message the outbox set aside (error_class worker_crashed) can be retried this way",
        { status: row.status, error_class: row.error_class },
      );
    }
    return { id, status: "queued" };
  });
}
