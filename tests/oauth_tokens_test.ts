// OAuth access tokens shared by every worker, against a real Postgres (Vault, the owner-checked
// functions) and the local stand-in of a provider's token endpoint over HTTP (named as such in
// local/oauth_standin.ts): eight instances refresh once; a rotated refresh token is stored and
// the old one never presented again; a refused token is forgotten for everyone; a revoked grant
// pauses the config's queue, nothing failed.
import assert from "node:assert/strict";
import { startTestStack } from "./harness.ts";
import { startOAuthStandin } from "../local/oauth_standin.ts";
import { AccessTokenCache, OAuthError } from "../supabase/functions/_shared/oauth/mod.ts";
import { createSql } from "../supabase/functions/_shared/db.ts";
import { oauthTokenSource } from "../supabase/functions/_shared/store/oauth_tokens.ts";
import { sendOverHttps } from "../supabase/functions/_shared/transports/mod.ts";

Deno.test({
  name: "OAuth tokens shared across workers",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const stack = await startTestStack();
    const standin = await startOAuthStandin({ tokenLifetimeSeconds: 3600 });
    const sql = createSql({ dbUrl: stack.dbUrl, dbPooled: false }, 10);
    try {
      const user = await stack.createUser();
      const owner = { sub: user.id, role: "authenticated" as const };
      const [config] = await stack.sql<{ id: string }[]>`
        insert into public.user_smtp_configs
          (user_id, name, host, port, from_email, auth_type, transport, oauth_provider, oauth_client_id)
        values (${user.id}, 'm365', 'graph.microsoft.com', 443, ${user.email}, 'oauth2', 'graph', 'microsoft',
                'client-1')
        returning id`;
      await stack.asDataApi(
        user,
        (tx) => tx`select private.set_smtp_config_oauth(${config.id}::uuid, 'refresh-secret-1', 'client-secret-1')`,
      );
      standin.addGrant({
        clientId: "client-1",
        clientSecret: "client-secret-1",
        refreshToken: "refresh-secret-1",
        scopes: ["https://graph.microsoft.com/Mail.Send", "offline_access"],
        mailbox: user.email,
        rotate: true,
      });
      const ref = async () => {
        const [row] = await stack.sql<{ id: string; credentials_changed_at: string }[]>`
          select id, credentials_changed_at::text from public.user_smtp_configs where id = ${config.id}`;
        return row;
      };
      // Each source with its own cache: eight function instances.
      const instance = async () =>
        oauthTokenSource(sql, owner, await ref(), {
          cache: new AccessTokenCache(),
          tokenUrl: standin.tokenUrl,
          allowHttp: true,
        });
      const storedRefreshToken = async () => {
        const [row] = await stack.asDataApi(user, (tx) =>
          tx<{ refresh_token: string }[]>`
            select refresh_token from private.smtp_config_oauth_credentials(${config.id}::uuid)`);
        return row.refresh_token;
      };

      let shared = "";
      await t.step("eight instances asking at once refresh once and share the token", async () => {
        const sources = await Promise.all(Array.from({ length: 8 }, instance));
        const tokens = await Promise.all(sources.map((s) => s.get()));
        assert.equal(new Set(tokens).size, 1);
        assert.equal(standin.counts.token, 1);
        shared = tokens[0];
      });

      await t.step("the rotated refresh token is stored; the old one is never presented again", async () => {
        const rotated = await storedRefreshToken();
        assert.match(rotated, /^standin-rt-/);
        await stack
          .sql`update public.user_smtp_configs set oauth_access_token_expires_at = now() where id = ${config.id}`;
        const fresh = await (await instance()).get();
        assert.notEqual(fresh, shared);
        assert.deepEqual(standin.presentedRefreshTokens, ["refresh-secret-1", rotated]);
        shared = fresh;
      });

      await t.step("a token the provider refused is forgotten by every instance", async () => {
        const first = await instance();
        first.invalidate(shared);
        // The forget runs in the background: wait until the stored token is gone.
        for (let i = 0; i < 50; i++) {
          const [row] = await stack.sql`select oauth_access_token_secret_id from public.user_smtp_configs
                                         where id = ${config.id}`;
          if (row.oauth_access_token_secret_id === null) break;
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        const before = standin.counts.token;
        const next = await (await instance()).get();
        assert.notEqual(next, shared);
        assert.equal(standin.counts.token, before + 1);
      });

      await t.step("a stored token the API refuses early is replaced before the retry, every time", async () => {
        // A Graph that refuses the tokens it is told to (revoked early by the provider).
        const refused = new Set<string>();
        const graph = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, (req) => {
          const token = (req.headers.get("authorization") ?? "").slice("Bearer ".length);
          return refused.has(token)
            ? Response.json({ error: { code: "InvalidAuthenticationToken" } }, { status: 401 })
            : new Response(null, { status: 202 });
        });
        try {
          const message = {
            raw: new TextEncoder().encode("Subject: x\r\n\r\nx"),
            messageId: "<m@example.com>",
            envelope: { from: user.email, to: ["a@example.com"] },
            bcc: [],
          };
          const outcomes: string[] = [];
          for (let i = 0; i < 20; i++) {
            refused.add(await (await instance()).get());
            const report = await sendOverHttps("graph", message, await instance(), {
              endpoints: { graphUrl: `http://127.0.0.1:${graph.addr.port}` },
            });
            outcomes.push(report.failure?.code ?? report.status);
          }
          assert.deepEqual(outcomes, Array(20).fill("sent"));
        } finally {
          await graph.shutdown();
        }
      });

      await t.step("a revoked grant pauses the config's queue: nothing fails, no secret in the error", async () => {
        const [queued] = await stack.asDataApi(user, (tx) =>
          tx<{ id: string }[]>`
            insert into public.email_audit_log (config_id, from_email, to_addresses, status, payload)
            values (${config.id}, ${user.email}, array['a@example.com'], 'queued',
                    '{"kind": "request", "request": {"to": [{"email": "a@example.com"}], "text": "x"}}')
            returning id`);
        standin.revoke(await storedRefreshToken());
        await stack
          .sql`update public.user_smtp_configs set oauth_access_token_expires_at = now() where id = ${config.id}`;
        const error = await (await instance()).get().then(() => null, (e) => e);
        assert.ok(error instanceof OAuthError, String(error));
        assert.equal(error.code, "oauth_reauth_required");
        for (const secret of ["refresh-secret-1", "client-secret-1", shared]) {
          assert.ok(!error.message.includes(secret));
        }
        const [row] = await stack.sql`
          select c.needs_attention, a.status, a.next_attempt_at = 'infinity' as waiting
            from public.user_smtp_configs c join public.email_audit_log a on a.config_id = c.id
           where c.id = ${config.id} and a.id = ${queued.id}`;
        assert.deepEqual({ ...row }, { needs_attention: "oauth_reauth_required", status: "queued", waiting: true });
      });

      await t.step("connecting the mailbox again is a new grant: a new key, not the old token", async () => {
        standin.addGrant({
          clientId: "client-1",
          clientSecret: "client-secret-1",
          refreshToken: "refresh-secret-2",
          scopes: ["https://graph.microsoft.com/Mail.Send", "offline_access"],
          mailbox: user.email,
        });
        await stack.asDataApi(
          user,
          (tx) => tx`select private.set_smtp_config_oauth(${config.id}::uuid, 'refresh-secret-2')`,
        );
        const token = await (await instance()).get();
        assert.match(token, /^standin-at-/);
        assert.equal(standin.presentedRefreshTokens.at(-1), "refresh-secret-2");
      });
      // Last: it spends the user's failed-login budget for the hour.
      await t.step("refused grants count as failed logins: after five, the provider is not asked again", async () => {
        const [other] = await stack.sql<{ id: string }[]>`
          insert into public.user_smtp_configs
            (user_id, name, host, port, from_email, auth_type, transport, oauth_provider, oauth_client_id)
          values (${user.id}, 'guessing', 'gmail.googleapis.com', 443, ${user.email}, 'oauth2', 'gmail_api', 'google',
                  'client-1')
          returning id`;
        const source = async () => {
          const [row] = await stack.sql<{ id: string; credentials_changed_at: string }[]>`
            select id, credentials_changed_at::text from public.user_smtp_configs where id = ${other.id}`;
          return oauthTokenSource(sql, owner, row, {
            cache: new AccessTokenCache(),
            tokenUrl: standin.tokenUrl,
            allowHttp: true,
          });
        };
        const codes: string[] = [];
        for (let i = 0; i < 6; i++) {
          // A new (wrong) grant each time: each is a new guess for the guard.
          await stack.asDataApi(
            user,
            (tx) => tx`select private.set_smtp_config_oauth(${other.id}::uuid, ${`guessed-grant-${i}`})`,
          );
          const before = standin.counts.token;
          const error = await (await source()).get().then(() => null, (e) => e);
          assert.ok(error instanceof OAuthError, String(error));
          codes.push(`${error.code}:${error.retryable}:${standin.counts.token - before}`);
        }
        assert.deepEqual(codes, [
          ...Array(5).fill("oauth_reauth_required:false:1"),
          "oauth_token_refresh_failed:true:0",
        ]);
      });
    } finally {
      await sql.end();
      await standin.close();
      await stack.close();
    }
  },
});
