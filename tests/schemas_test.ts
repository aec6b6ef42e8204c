import assert from "node:assert/strict";
import { parseBody, sendBulkRequest, sendEmailRequest } from "../supabase/functions/_shared/schemas.ts";
import { ApiError } from "../supabase/functions/_shared/http.ts";

function issuesOf(
  value: unknown,
  code = "invalid_request",
  schema: typeof sendEmailRequest | typeof sendBulkRequest = sendEmailRequest,
): { path: string; message: string }[] {
  try {
    parseBody(schema, value);
  } catch (error) {
    assert.ok(error instanceof ApiError);
    assert.equal(error.status, 400);
    assert.equal(error.code, code);
    return (error.details as { issues: { path: string; message: string }[] }).issues;
  }
  throw new Error("expected the body to be rejected");
}

Deno.test("send-email request validation", async (t) => {
  await t.step("accepts every recipient spelling and normalises to address objects", () => {
    const body = parseBody(sendEmailRequest, {
      to: "Jane Doe <jane@example.com>",
      cc: ["bob@example.com", { email: "eve@example.org", name: "Eve" }],
      bcc: { email: "audit@example.net" },
      subject: "Hi",
      text: "hello",
    });
    assert.deepEqual(body.to, [{ name: "Jane Doe", address: "jane@example.com" }]);
    assert.deepEqual(body.cc, [{ address: "bob@example.com" }, { name: "Eve", address: "eve@example.org" }]);
    assert.deepEqual(body.bcc, [{ address: "audit@example.net" }]);
  });

  await t.step("accepts a template with data instead of a body, and data only with a template", () => {
    const body = parseBody(sendEmailRequest, { to: "a@example.com", template: "welcome", data: { name: "Jane" } });
    assert.equal(body.template, "welcome");
    assert.equal(issuesOf({ to: "a@example.com", text: "x", data: { name: "Jane" } })[0].path, "data");
  });

  await t.step("rejects NUL characters anywhere, which Postgres text cannot hold", () => {
    assert.equal(issuesOf({ to: "a@example.com", text: "a\0b" })[0].path, "text");
    assert.equal(
      issuesOf({ to: "a@example.com", text: "x", agent_context: { run: { id: "x\0" } } })[0].path,
      "agent_context.run.id",
    );
    assert.equal(
      issuesOf({ to: "a@example.com", template: "t", data: { list: ["ok", { ["k\0ey"]: 1 }] } })[0].path,
      "data.list.1.key",
    );
  });

  await t.step("requires text or html", () => {
    const issues = issuesOf({ to: "a@example.com", subject: "x" });
    assert.equal(issues[0].path, "text");
  });

  await t.step("names the field path of a bad recipient", () => {
    const issues = issuesOf({ to: ["ok@example.com", "not-an-address"], text: "x" });
    assert.equal(issues[0].path, "to.1");
    assert.match(issues[0].message, /not a valid email address/);
  });

  await t.step("rejects CR/LF/NUL in subject, names, addresses and from_name as invalid_header_value", () => {
    const breaking = "invalid_header_value";
    assert.equal(
      issuesOf({ to: "a@example.com", subject: "hi\r\nBcc: x@evil.com", text: "x" }, breaking)[0].path,
      "subject",
    );
    const nameIssue = issuesOf({ to: { email: "a@example.com", name: "A\nBcc: x@evil.com" }, text: "x" }, breaking)[0];
    assert.equal(nameIssue.path, "to.0");
    assert.equal(issuesOf({ to: "a@example.com\r\nBcc: x@evil.com", text: "x" }, breaking)[0].path, "to.0");
    assert.equal(
      issuesOf({ to: "a@example.com", reply_to: "Eve <e@example.com>\0", text: "x" }, breaking)[0].path,
      "reply_to.0",
    );
    assert.equal(
      issuesOf({ to: "a@example.com", from_name: "Boss\nX-Evil: 1", text: "x" }, breaking)[0].path,
      "from_name",
    );
  });

  await t.step("rejects a missing recipient, unknown fields and wrong types", () => {
    assert.equal(issuesOf({ text: "x" })[0].path, "to");
    assert.equal(issuesOf({ to: [], text: "x" })[0].path, "to");
    assert.ok(issuesOf({ to: "a@example.com", text: "x", sender: "boss@example.com" }).length > 0);
    assert.equal(issuesOf({ to: "a@example.com", text: 42 })[0].path, "text");
  });

  await t.step("rejects unqualified domains and over-long local parts", () => {
    assert.equal(issuesOf({ to: "root@localhost", text: "x" })[0].path, "to.0");
    assert.equal(issuesOf({ to: `${"a".repeat(65)}@example.com`, text: "x" })[0].path, "to.0");
  });
});

Deno.test("send-bulk request validation", async (t) => {
  const bulkIssues = (value: unknown) => issuesOf(value, "invalid_request", sendBulkRequest);

  await t.step("takes data, shared or a recipient's own, only with a template, naming each recipient", () => {
    parseBody(sendBulkRequest, {
      recipients: [{ email: "a@example.com", data: { n: 1 } }, "b@example.com"],
      template: "welcome",
      data: { shop: "Acme" },
    });
    const recipients = [{ email: "a@example.com", data: { n: 1 } }, "b@example.com", {
      email: "c@example.com",
      data: {},
    }];
    const issues = bulkIssues({ recipients, subject: "Bulk {{n}}", text: "Bulk {{n}}" });
    assert.deepEqual(issues, [
      { path: "recipients.0.data", message: "data is only used with a template" },
      { path: "recipients.2.data", message: "data is only used with a template" },
    ]);
    assert.equal(bulkIssues({ recipients: ["a@example.com"], text: "x", data: { n: 1 } })[0].path, "data");
  });

  await t.step("names at most twenty recipients however many there are", () => {
    const recipients = Array.from({ length: 5_000 }, (_, n) => ({ email: `r${n}@example.com`, data: { n } }));
    const issues = bulkIssues({ recipients, text: "Bulk {{n}}" });
    assert.equal(issues.length, 20);
    assert.equal(issues[19].path, "recipients.19.data");
  });
});
