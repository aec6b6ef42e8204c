// withUser: the pipelined transaction every request runs in. Real Postgres: runs as the
// user, commits only what fully succeeded, and hands the connection back clean.
import assert from "node:assert/strict";
import { startTestStack } from "./harness.ts";
import { createSql, withUser, withUserEndingWith } from "../supabase/functions/_shared/db.ts";

Deno.test({
  name: "withUser",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const stack = await startTestStack();
    const sql = createSql({ dbUrl: stack.dbUrl, dbPooled: false }, 2);
    try {
      const [ada, bob] = [await stack.createUser(), await stack.createUser()];
      const as = (user: { id: string }) => ({ sub: user.id, role: "authenticated" as const });
      const templateCount = async (user: { id: string }) =>
        (await stack.sql<
          { n: number }[]
        >`select count(*)::int as n from public.email_templates where user_id = ${user.id}`)[0].n;

      await t.step("runs as the user: auth.uid() and the authenticated role, in one transaction", async () => {
        const [row, xids] = await withUser(sql, as(ada), async (tx) => {
          const [row] = await tx<{ uid: string; role: string; xid: string }[]>`
            select auth.uid()::text as uid, current_user as role, txid_current()::text as xid`;
          const [again] = await tx<{ xid: string }[]>`select txid_current()::text as xid`;
          return [row, [row.xid, again.xid]] as const;
        });
        assert.equal(row.uid, ada.id);
        assert.equal(row.role, "authenticated");
        assert.equal(xids[0], xids[1]);
      });

      await t.step("concurrent requests on a small pool each see only their own user", async () => {
        const users = [ada, bob];
        const seen = await Promise.all(
          Array.from({ length: 40 }, (_, i) =>
            withUser(sql, as(users[i % 2]), async (tx) => {
              const [first] = await tx<{ uid: string }[]>`select auth.uid()::text as uid`;
              const [second] = await tx<{ uid: string }[]>`select auth.uid()::text as uid`;
              return [users[i % 2].id, first.uid, second.uid];
            })),
        );
        for (const [expected, first, second] of seen) assert.deepEqual([first, second], [expected, expected]);
      });

      await t.step("commits what fn wrote when it returns", async () => {
        await withUser(sql, as(ada), (tx) => tx`insert into public.email_templates (name, text) values ('kept', 'x')`);
        assert.equal(await templateCount(ada), 1);
      });

      await t.step("rolls back when fn throws", async () => {
        await assert.rejects(
          withUser(sql, as(ada), async (tx) => {
            await tx`insert into public.email_templates (name, text) values ('thrown', 'x')`;
            throw new Error("boom");
          }),
          /boom/,
        );
        assert.equal(await templateCount(ada), 1);
      });

      await t.step("a statement that failed inside fn and was caught there still fails the whole request", async () => {
        await assert.rejects(
          withUser(sql, as(ada), async (tx) => {
            await tx`insert into public.email_templates (name, text) values ('caught', 'x')`;
            await tx`select 1/0`.catch(() => {});
            return "fn thinks it succeeded";
          }),
          /transaction ended with ROLLBACK/,
        );
        assert.equal(await templateCount(ada), 1);
      });

      await t.step(
        "withUserEndingWith: the last statement runs in the transaction, as the user, before commit",
        async () => {
          const { value, last } = await withUserEndingWith(
            sql,
            as(ada),
            async (tx) => (await tx<{ xid: string }[]>`select txid_current()::text as xid`)[0].xid,
            (tx) =>
              tx<{ uid: string; xid: string }[]>`
              insert into public.email_templates (name, text) values ('last', 'x')
              returning auth.uid()::text as uid, txid_current()::text as xid`,
          );
          assert.deepEqual([...last], [{ uid: ada.id, xid: value }]);
          assert.equal(await templateCount(ada), 2);
        },
      );

      await t.step("withUserEndingWith: a failing last statement undoes fn's writes and is the error", async () => {
        await assert.rejects(
          withUserEndingWith(
            sql,
            as(ada),
            (tx) => tx`insert into public.email_templates (name, text) values ('undone', 'x')`,
            (tx) => tx`select 1/0`,
          ),
          /division by zero/,
        );
        assert.equal(await templateCount(ada), 2);
      });

      await t.step("a query fn left running after the transaction ended throws; it never runs outside it", async () => {
        let late: unknown;
        await assert.rejects(
          withUser(sql, as(ada), (tx) =>
            Promise.all([
              tx`select 1/0`,
              (async () => {
                await new Promise((r) => setTimeout(r, 30));
                try {
                  await tx`insert into public.email_templates (name, text) values ('late', 'x')`;
                } catch (error) {
                  late = error;
                }
              })(),
            ])),
          /division by zero/,
        );
        await new Promise((r) => setTimeout(r, 60));
        assert.match(String(late), /after its transaction ended/);
        assert.equal(await templateCount(ada), 2);
      });

      await t.step("a last statement that throws before it is sent: rolled back, nothing left open", async () => {
        await assert.rejects(
          withUserEndingWith(
            sql,
            as(ada),
            (tx) => tx`insert into public.email_templates (name, text) values ('never', 'x')`,
            () => {
              throw new Error("thrown before any statement");
            },
          ),
          /thrown before any statement/,
        );
        assert.equal(await templateCount(ada), 2);
        const rows = await Promise.all([1, 2].map(() =>
          sql<{ role: string; claims: string | null }[]>`
            select current_user as role, nullif(current_setting('request.jwt.claims', true), '') as claims`
        ));
        for (const [row] of rows) assert.deepEqual([row.role === "authenticated", row.claims], [false, null]);
      });

      await t.step("RLS holds: bob cannot see or change ada's rows", async () => {
        const rows = await withUser(
          sql,
          as(bob),
          (tx) => tx`select id from public.email_templates where user_id = ${ada.id}`,
        );
        assert.equal(rows.length, 0);
        const updated = await withUser(
          sql,
          as(bob),
          (tx) => tx`update public.email_templates set name = 'x' returning id`,
        );
        assert.equal(updated.length, 0);
      });

      await t.step("the connection goes back to the pool without the user's claims or role", async () => {
        await withUser(sql, as(ada), (tx) => tx`select 1`);
        await assert.rejects(withUser(sql, as(ada), (tx) => tx`select 1/0`), /division by zero/);
        const rows = await Promise.all([1, 2, 3, 4].map(() =>
          sql<{ role: string; claims: string | null }[]>`
            select current_user as role, nullif(current_setting('request.jwt.claims', true), '') as claims`
        ));
        for (const [row] of rows) {
          assert.notEqual(row.role, "authenticated");
          assert.equal(row.claims, null);
        }
      });
    } finally {
      await sql.end({ timeout: 2 });
      await stack.close();
    }
  },
});
