// GET /send-bulk's list (listBatches): bounded pages, resumable with `before` without losing a
// batch, each entry the same document as the batch's own progress. Against a real Postgres,
// as the user (RLS on), with rows written straight into the tables.
import assert from "node:assert/strict";
import { bootstrapPlatform, freePort, pushMigrations, startCluster } from "../local/postgres.ts";
import { createSql, withUser } from "../supabase/functions/_shared/db.ts";
import {
  type BatchStatus,
  batchStatus,
  choosePage,
  listBatches,
  type ListCandidate,
  MAX_BATCHES_PER_PAGE,
  MAX_MESSAGES_PER_PAGE,
} from "../supabase/functions/_shared/outbox/batches.ts";

const at = (minute: number) => `2026-12-06T10:${String(minute).padStart(2, "0")}:00.000000Z`;
const candidate = (id: string, minute: number, total = 10): ListCandidate => ({ id, created_at: at(minute), total });

Deno.test("choosePage", async (t) => {
  await t.step("takes up to the limit, and says more remain when one is left over", () => {
    const all = [candidate("a", 5), candidate("b", 4), candidate("c", 3)];
    assert.deepEqual(choosePage(all, 2, MAX_MESSAGES_PER_PAGE), { page: all.slice(0, 2), more: true });
    assert.deepEqual(choosePage(all.slice(0, 2), 2, MAX_MESSAGES_PER_PAGE), { page: all.slice(0, 2), more: false });
  });

  await t.step("stops before the batch that would take the page past its message budget", () => {
    const all = [candidate("a", 5, 40_000), candidate("b", 4, 40_000), candidate("c", 3, 40_000)];
    assert.deepEqual(choosePage(all, 50, 100_000), { page: all.slice(0, 2), more: true });
  });

  await t.step("always shows one batch, however large", () => {
    const all = [candidate("a", 5, 100_000), candidate("b", 4, 1)];
    assert.deepEqual(choosePage(all, 50, 10), { page: all.slice(0, 1), more: true });
  });

  await t.step("never ends between two batches created at the same instant", () => {
    const all = [candidate("a", 5), candidate("b", 4), candidate("c", 4)];
    assert.deepEqual(choosePage(all, 2, MAX_MESSAGES_PER_PAGE), { page: all.slice(0, 1), more: true });
  });

  await t.step("unless those batches fill the page", () => {
    const all = [candidate("a", 4), candidate("b", 4), candidate("c", 4)];
    assert.deepEqual(choosePage(all, 2, MAX_MESSAGES_PER_PAGE), { page: all.slice(0, 2), more: true });
  });

  await t.step("an empty list is one empty, last page", () => {
    assert.deepEqual(choosePage([], 50, MAX_MESSAGES_PER_PAGE), { page: [], more: false });
  });
});

Deno.test({
  name: "listBatches",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "mailroom-batch-list-" });
    const cluster = await startCluster({ dir, port: freePort(), fast: true });
    const sql = createSql({ dbUrl: cluster.url, dbPooled: false }, 2);
    try {
      await bootstrapPlatform(cluster.adminUrl);
      await pushMigrations(cluster.url);

      // Users and batches straight into the tables, as `postgres` (BYPASSRLS); each batch gets a
      // few audit rows of every kind, `total` says how many messages it was created with.
      const user = async (email: string) =>
        (await sql<
          { id: string }[]
        >`insert into auth.users (id, email) values (gen_random_uuid(), ${email}) returning id`)[0].id;
      const batch = async (owner: string, createdAt: string, total = 6) => {
        const [{ id }] = await sql<{ id: string }[]>`
          insert into public.email_batches (user_id, content, total, created_at)
          values (${owner}, '{}', ${total}, ${createdAt}::timestamptz) returning id`;
        await sql`
          insert into public.email_audit_log (user_id, batch_id, from_email, status, error_class, created_at, completed_at)
          select ${owner}, ${id}, 'sender@example.com', s.status, s.error_class, ${createdAt}::timestamptz,
                 case when s.status in ('sent', 'failed', 'unknown') then ${createdAt}::timestamptz + s.n * interval '1 min' end
            from (values (1, 'sent', null), (2, 'sent', null), (3, 'failed', 'smtp_recipient_rejected'),
                         (4, 'unknown', 'smtp_outcome_unknown'), (5, 'cancelled', null), (6, 'failed', 'smtp_recipient_rejected'))
                 s (n, status, error_class)`;
        return id;
      };
      const claims = (sub: string) => ({ sub, role: "authenticated" as const });
      const list = (owner: string, options: { before?: string; limit?: number } = {}) =>
        withUser(sql, claims(owner), (tx) => listBatches(tx, options));
      // Every page from the newest, following next_before.
      const walk = async (owner: string, limit?: number) => {
        const pages: BatchStatus[][] = [];
        let before: string | undefined;
        for (let i = 0; i < 100; i++) {
          const page = await list(owner, { before, limit });
          pages.push(page.batches);
          if (page.next_before === null) return pages;
          before = page.next_before;
        }
        throw new Error("next_before never ended");
      };

      const ada = await user("ada@example.com");
      const bob = await user("bob@example.com");
      const adaBatches: string[] = []; // newest first
      for (let i = 0; i < 120; i++) {
        adaBatches.unshift(await batch(ada, new Date(Date.UTC(2026, 10, 1) + i * 60_000).toISOString()));
      }
      await batch(bob, "2026-11-02T00:00:00Z");

      await t.step("pages hold at most 50 batches and together list every batch once, newest first", async () => {
        const pages = await walk(ada);
        assert.ok(pages.every((p) => p.length <= MAX_BATCHES_PER_PAGE), pages.map((p) => p.length).join(","));
        assert.deepEqual(pages.map((p) => p.length), [50, 50, 20]);
        assert.deepEqual(pages.flat().map((b) => b.batch_id), adaBatches);
      });

      await t.step("each entry is the document GET /send-bulk/:id answers for that batch", async () => {
        const { batches } = await list(ada, { limit: 5 });
        for (const entry of batches) {
          const status = await withUser(sql, claims(ada), (tx) => batchStatus(tx, entry.batch_id));
          // The waiting reasons and recipient totals are one batch's progress only (the list stays cheap).
          const { waiting: _waiting, recipients: _recipients, ...shared } = status;
          assert.deepEqual(entry, shared);
        }
        assert.deepEqual(batches[0].counts, {
          queued: 0,
          scheduled: 0,
          sending: 0,
          sent: 2,
          deferred: 0,
          failed: 2,
          unknown: 1,
          cancelled: 1,
          pending_approval: 0,
          rejected: 0,
          expired: 0,
          suppressed: 0,
        });
        assert.deepEqual(batches[0].top_errors, [
          { error_class: "smtp_recipient_rejected", count: 2 },
          { error_class: "smtp_outcome_unknown", count: 1 },
        ]);
        assert.equal(batches[0].rate_per_minute, 2);
      });

      await t.step("another user's batches are not listed", async () => {
        const { batches } = await list(bob);
        assert.equal(batches.length, 1);
        assert.ok(!(await walk(ada)).flat().some((b) => b.batch_id === batches[0].batch_id));
      });

      await t.step("a page counts at most 100,000 messages: large batches make shorter pages", async () => {
        const cy = await user("cy@example.com");
        for (let i = 0; i < 5; i++) await batch(cy, `2026-11-0${i + 1}T00:00:00Z`, 40_000);
        const pages = await walk(cy);
        assert.deepEqual(pages.map((p) => p.length), [2, 2, 1]);
        for (const page of pages) {
          const messages = page.reduce((n, b) => n + b.total, 0);
          assert.ok(page.length === 1 || messages <= MAX_MESSAGES_PER_PAGE, `${messages} messages on one page`);
        }
      });

      await t.step("batches created at the same instant are never split by next_before", async () => {
        const dee = await user("dee@example.com");
        const newest = await batch(dee, "2026-11-03T00:00:00Z");
        const twins = [await batch(dee, "2026-11-02T00:00:00Z"), await batch(dee, "2026-11-02T00:00:00Z")];
        const oldest = await batch(dee, "2026-11-01T00:00:00Z");
        const pages = await walk(dee, 2);
        assert.deepEqual(pages.map((p) => p.length), [1, 2, 1]);
        assert.deepEqual(
          new Set(pages.flat().map((b) => b.batch_id)),
          new Set([newest, ...twins, oldest]),
        );
      });

      await t.step("the last page says so: next_before is null, also when it is exactly full", async () => {
        const eve = await user("eve@example.com");
        await batch(eve, "2026-11-02T00:00:00Z");
        await batch(eve, "2026-11-01T00:00:00Z");
        assert.equal((await list(eve, { limit: 2 })).next_before, null);
        assert.deepEqual(await list(await user("fay@example.com")), { batches: [], next_before: null });
      });
    } finally {
      await sql.end({ timeout: 2 });
      await cluster.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
