// serveJson's rendering of failures: a caller's mistake is an ApiError with its code and is not
// logged; anything else is 500 `internal_error` with a request id, and one log line that lets
// the operator find the bug (class, message, stack, the same request id), without the request.
import assert from "node:assert/strict";
import { ApiError, json, readJson, serveJson } from "../supabase/functions/_shared/http.ts";

/** Run `fn` with console.error captured; the lines it printed. */
async function capturingErrors(fn: () => Promise<void>): Promise<string[]> {
  const lines: string[] = [];
  const original = console.error;
  console.error = (...args: unknown[]) => lines.push(args.map(String).join(" "));
  try {
    await fn();
  } finally {
    console.error = original;
  }
  return lines;
}

function buggyStep(body: unknown): never {
  // A bug a test can point at: reading through something that is not there.
  const missing = (body as { config?: { limits: { per_minute: number } } }).config;
  throw new TypeError(`Cannot read per_minute of ${typeof missing}`);
}

Deno.test("an unexpected error is a 500 with a request id, logged with its stack but never the request", async () => {
  const handler = serveJson(async (req) => buggyStep(await readJson(req, 64 * 1024)));
  const secret = "hunter2-smtp-password";
  let res: Response | undefined;
  const lines = await capturingErrors(async () => {
    res = await handler(
      new Request("http://localhost/functions/v1/send-email", {
        method: "POST",
        headers: { authorization: `Bearer token-${secret}`, "content-type": "application/json" },
        body: JSON.stringify({ to: "a@example.com", password: secret }),
      }),
    );
  });
  assert.equal(res!.status, 500);
  const requestId = res!.headers.get("x-request-id");
  assert.ok(requestId);
  const body = await res!.json();
  assert.deepEqual(body, {
    error: { code: "internal_error", message: "Internal error", details: { request_id: requestId } },
  });
  assert.doesNotMatch(JSON.stringify(body), /TypeError|buggyStep/, "the caller gets no internals");

  assert.equal(lines.length, 1, lines.join("\n"));
  const log = JSON.parse(lines[0]);
  assert.equal(log.level, "error");
  assert.equal(log.request_id, requestId);
  assert.equal(log.error, "TypeError");
  assert.equal(log.message, "Cannot read per_minute of undefined");
  assert.match(log.stack, /buggyStep/, "the stack names the function that threw");
  assert.ok(!lines[0].includes(secret), "neither the body nor the headers are logged");
});

Deno.test("a caller's mistake (an ApiError) is answered with its code and not logged as an error", async () => {
  const handler = serveJson(() => {
    throw new ApiError(422, "subject_missing", "give a subject");
  });
  let res: Response | undefined;
  const lines = await capturingErrors(async () => {
    res = await handler(new Request("http://localhost/x", { method: "POST" }));
  });
  assert.equal(res!.status, 422);
  assert.equal((await res!.json()).error.code, "subject_missing");
  assert.deepEqual(lines, []);
});

Deno.test("a thrown non-Error value is still logged with what it was", async () => {
  const handler = serveJson(() => {
    throw "a string, thrown";
  });
  let res: Response | undefined;
  const lines = await capturingErrors(async () => {
    res = await handler(new Request("http://localhost/x"));
  });
  assert.equal(res!.status, 500);
  const log = JSON.parse(lines[0]);
  assert.equal(log.request_id, res!.headers.get("x-request-id"));
  assert.equal(log.error, "string");
  assert.equal(log.message, "a string, thrown");
});

Deno.test("a GET's JSON carries an ETag: asked again with If-None-Match, unchanged, it is a 304 without a body", async () => {
  let state = { done: 1, total: 3 };
  const handler = serveJson((req) => Promise.resolve(req.method === "GET" ? json(state) : json({ posted: true })));
  const first = await handler(new Request("http://x/send-bulk/b"));
  const etag = first.headers.get("etag");
  assert.match(etag ?? "", /^W\/"[0-9a-f]{32}"$/);
  assert.equal(first.headers.get("cache-control"), "private, no-cache");
  assert.deepEqual(await first.json(), state);
  const again = await handler(new Request("http://x/send-bulk/b", { headers: { "if-none-match": etag! } }));
  assert.equal(again.status, 304);
  assert.equal(await again.text(), "");
  assert.equal(again.headers.get("etag"), etag);
  assert.ok(again.headers.get("x-request-id"));
  state = { done: 2, total: 3 };
  const changed = await handler(new Request("http://x/send-bulk/b", { headers: { "if-none-match": etag! } }));
  assert.equal(changed.status, 200);
  assert.notEqual(changed.headers.get("etag"), etag);
  assert.deepEqual(await changed.json(), state);
  const post = await handler(new Request("http://x/send-bulk", { method: "POST", headers: { "if-none-match": "*" } }));
  assert.deepEqual([post.status, post.headers.get("etag")], [200, null], "only GETs");
});
