// `npm run token`'s command line, and the two kinds of token it mints: the user's own session
// and an OAuth client's (an agent's), shaped as Supabase Auth's OAuth 2.1 server issues them.
// Against the running dev stack: tests/dev_stack_test.ts.
import assert from "node:assert/strict";
import * as jose from "jose";
import { createTokenVerifier } from "../supabase/functions/_shared/auth.ts";
import { generateSigningKey, jwks, mintToken } from "../local/jwt.ts";
import { DEFAULT_AGENT_CLIENT_ID, parseTokenArgs } from "../local/token.ts";

Deno.test("npm run token's arguments: --quiet, --agent [client_id], one email", () => {
  const demo = "demo@mailroom.local";
  assert.deepEqual(parseTokenArgs([]), { email: demo, quiet: false });
  assert.deepEqual(parseTokenArgs(["-q", "me@example.com"]), { email: "me@example.com", quiet: true });
  // --agent takes the next argument as its client id unless it is an address or an option.
  assert.deepEqual(parseTokenArgs(["--agent"]), { email: demo, quiet: false, clientId: DEFAULT_AGENT_CLIENT_ID });
  assert.deepEqual(parseTokenArgs(["--agent", "me@example.com"]), {
    email: "me@example.com",
    quiet: false,
    clientId: "local-agent",
  });
  assert.deepEqual(parseTokenArgs(["--agent", "--quiet"]), { email: demo, quiet: true, clientId: "local-agent" });
  assert.deepEqual(parseTokenArgs(["--agent", "claude-ai", "me@example.com", "--quiet"]), {
    email: "me@example.com",
    quiet: true,
    clientId: "claude-ai",
  });
  assert.deepEqual(parseTokenArgs(["me@example.com", "--agent=9a8b7c6d-5e4f-3a2b-1c0d-9e8f7a6b5c4d"]), {
    email: "me@example.com",
    quiet: false,
    clientId: "9a8b7c6d-5e4f-3a2b-1c0d-9e8f7a6b5c4d",
  });
  assert.match((parseTokenArgs(["--agent="]) as { error: string }).error, /Not an OAuth client id/);
  assert.match((parseTokenArgs(["--agent=a b"]) as { error: string }).error, /Not an OAuth client id/);
  assert.match((parseTokenArgs(["--client", "x"]) as { error: string }).error, /Unknown option "--client"/);
  assert.match((parseTokenArgs(["a@example.com", "b@example.com"]) as { error: string }).error, /One email/);
  assert.match((parseTokenArgs(["not-an-address"]) as { error: string }).error, /Not an email address/);
});

Deno.test("an OAuth client's token carries what Supabase Auth's OAuth 2.1 server stamps, and verifies", async () => {
  const key = await generateSigningKey();
  const issuer = "http://127.0.0.1:54321/auth/v1";
  const sub = "6f1c2b9e-3a4d-4e5f-8a7b-1c2d3e4f5a6b";
  const verify = createTokenVerifier({ jwks: jwks(key), jwksUrl: "unused", issuer });
  const agent = await verify(await mintToken(key, { issuer, sub, email: "a@example.com", clientId: "local-agent" }));
  assert.equal(agent.client_id, "local-agent");
  assert.equal(agent.scope, "email");
  assert.match(String(agent.session_id), /^[0-9a-f-]{36}$/);
  assert.deepEqual(agent.amr, [{ method: "oauth_provider/authorization_code", timestamp: agent.iat }]);
  // The rest is a user's access token as ever: same subject, audience, role and assurance level.
  assert.deepEqual(
    [agent.sub, agent.aud, agent.role, agent.aal, agent.email, agent.iss],
    [sub, "authenticated", "authenticated", "aal1", "a@example.com", issuer],
  );
  const own = jose.decodeJwt(await mintToken(key, { issuer, sub, email: "a@example.com" }));
  assert.equal(own.client_id, undefined, "a first-party session's token has no client_id");
});
