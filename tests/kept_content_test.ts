// What a sent message keeps (email_audit_log's message_contents): cut by what it encodes to,
// never between the halves of a surrogate pair, always valid for jsonb.
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import {
  headerFields,
  keptContent,
  MAX_KEPT_JSON_BYTES,
  MAX_KEPT_PART_CHARS,
} from "../supabase/functions/_shared/mail/kept_content.ts";

const raw = Buffer.from("Subject: Hi\r\n there\r\nTo: a@example.com\r\n\r\nbody: not a header\r\n");
const message = (text?: string, html?: string) => ({ raw, text, html, recipients: { cc: [], bcc: [] } });
const bytes = (value: unknown) => new TextEncoder().encode(JSON.stringify(value)).length;
// What jsonb refuses: an escaped lone surrogate.
const loneSurrogate = (value: unknown) => /\\ud[89ab][0-9a-f]{2}(?!\\ud[c-f])/i.test(JSON.stringify(value));

Deno.test("headers are the block before the first empty line, unfolded", () => {
  assert.deepEqual(headerFields(raw), [{ name: "Subject", value: "Hi there" }, { name: "To", value: "a@example.com" }]);
});

Deno.test("text in a three-byte script is cut to what the table holds, and says so", () => {
  const cjk = "中".repeat(340_000);
  const kept = keptContent(message(cjk, `<p>${cjk}</p>`), []);
  assert.ok(bytes(kept) <= MAX_KEPT_JSON_BYTES, `${bytes(kept)} bytes`);
  assert.equal(kept.truncated, true);
  assert.ok((kept.text?.length ?? 0) > 50_000 && (kept.html?.length ?? 0) > 50_000, "both parts keep a share");
});

Deno.test("characters JSON escapes six-fold are cut to what the table holds", () => {
  const kept = keptContent(message("\u0001".repeat(190_000)), []);
  assert.ok(bytes(kept) <= MAX_KEPT_JSON_BYTES);
  assert.equal(kept.truncated, true);
});

Deno.test("a cut never splits an emoji, and a lone surrogate from the request becomes U+FFFD", () => {
  const kept = keptContent(message("a".repeat(MAX_KEPT_PART_CHARS - 1) + "😀tail", "x\ud83dy"), []);
  assert.equal(kept.text, "a".repeat(MAX_KEPT_PART_CHARS - 1));
  assert.equal(kept.html, "x\ufffdy");
  assert.equal(loneSurrogate(kept), false);
  assert.equal(kept.truncated, true);
});

Deno.test("a short message is kept whole", () => {
  const kept = keptContent(message("Hello", "<p>Hello</p>"), [{
    filename: "a.txt",
    content_type: null,
    size_bytes: 1,
  }]);
  assert.deepEqual([kept.text, kept.html, kept.truncated, kept.attachments.length], [
    "Hello",
    "<p>Hello</p>",
    false,
    1,
  ]);
});
