// What makes two sends "the same email" (supabase/functions/_shared/duplicates): the pure part.
import assert from "node:assert/strict";
import { contentDigest, contentFingerprint, hex } from "../supabase/functions/_shared/duplicates/mod.ts";
import { attachmentDigests } from "../supabase/functions/_shared/attachments/mod.ts";

const configId = "6f1c0b2e-3c1a-4a53-9b0e-8a3f6d2e1c44";
const files = (list: { filename: string; content: string }[]) => attachmentDigests(list, new Map());
const print = (over: Partial<Parameters<typeof contentFingerprint>[0]> = {}) =>
  hex(contentFingerprint({ configId, recipients: ["a@example.com"], content: { subject: "Hi", text: "x" }, ...over }));

Deno.test("contentFingerprint: the same email whatever the spelling, another for any real difference", async (t) => {
  await t.step("recipients are a set: order, case and repeats do not matter", () => {
    assert.equal(
      print({ recipients: ["A@Example.com", "b@example.com"] }),
      print({ recipients: ["b@example.com", "a@example.com", "a@EXAMPLE.com"] }),
    );
  });

  await t.step("a digest of the content stands for the content (a batch computes it once)", () => {
    const content = { subject: "Hi", text: "x", template: { subject: "S", text: null, html: "<p>{{a}}</p>" } };
    assert.equal(print({ content, data: { a: 1 } }), print({ content: contentDigest(content), data: { a: 1 } }));
    assert.equal(
      print({ content: { subject: "Hi", text: "x" } }),
      print({ content: contentDigest({ subject: "Hi", text: "x" }) }),
    );
  });

  await t.step("data keys in any order are the same data; a templated send without data has empty data", () => {
    const content = { template: { subject: "S", text: "{{a}}{{b}}", html: null } };
    assert.equal(
      print({ content, data: { a: 1, b: { c: 2, d: 3 } } }),
      print({ content, data: { b: { d: 3, c: 2 }, a: 1 } }),
    );
    assert.equal(print({ content }), print({ content: contentDigest(content), data: {} }));
  });

  await t.step("a different subject, body, template, data, config, recipient or attachment is another email", () => {
    const base = print();
    const template = { subject: "S", text: "t", html: null };
    for (
      const other of [
        print({ content: { subject: "Hi!", text: "x" } }),
        print({ content: { subject: "Hi", text: "x", html: "<p>x</p>" } }),
        print({ content: { subject: "Hi", text: "x", template } }),
        print({ content: { subject: "Hi", text: "x", template }, data: { a: 1 } }),
        print({ configId: "00000000-0000-4000-8000-000000000000" }),
        print({ recipients: ["a@example.com", "c@example.com"] }),
        print({ attachments: files([{ filename: "a.pdf", content: "AAAA" }]) }),
      ]
    ) assert.notEqual(other, base);
    assert.notEqual(
      print({ attachments: files([{ filename: "a.pdf", content: "AAAA" }]) }),
      print({ attachments: files([{ filename: "b.pdf", content: "AAAA" }]) }),
    );
    // Attachments in another order, or base64 wrapped at another width, are the same files.
    assert.equal(
      print({ attachments: files([{ filename: "a", content: "AAAA" }, { filename: "b", content: "BBBB" }]) }),
      print({ attachments: files([{ filename: "b", content: "BB\r\nBB" }, { filename: "a", content: "AAAA" }]) }),
    );
  });

  await t.step("a stored file by id and the same bytes inline are the same attachment", () => {
    const stored = new Map([["f1", {
      filename: "a.pdf",
      content_type: "application/pdf",
      // SHA-256 of the three zero bytes "AAAA" decodes to.
      sha256: "709e80c88487a2411e1ee4dfb9f22a861492d20c4765150c0c794abd70f8147c",
    }]]);
    assert.deepEqual(
      attachmentDigests([{ id: "f1" }], stored),
      attachmentDigests([{ filename: "a.pdf", content: "AAAA" }], stored),
    );
    // Named anew, it is another attachment.
    assert.notDeepEqual(
      attachmentDigests([{ id: "f1", filename: "b.pdf" }], stored),
      attachmentDigests([{ filename: "a.pdf", content: "AAAA" }], stored),
    );
  });
});
