// What makes two sends "the same email" (supabase/functions/_shared/duplicates): the pure part.
import assert from "node:assert/strict";
import { contentDigest, contentFingerprint, hex } from "../supabase/functions/_shared/duplicates/mod.ts";

const configId = "6f1c0b2e-3c1a-4a53-9b0e-8a3f6d2e1c44";
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
        print({ attachments: [{ filename: "a.pdf", content: "AAAA" }] }),
      ]
    ) assert.notEqual(other, base);
    assert.notEqual(
      print({ attachments: [{ filename: "a.pdf", content: "AAAA" }] }),
      print({ attachments: [{ filename: "b.pdf", content: "AAAA" }] }),
    );
    // Attachments in another order, or base64 wrapped at another width, are the same files.
    assert.equal(
      print({ attachments: [{ filename: "a", content: "AAAA" }, { filename: "b", content: "BBBB" }] }),
      print({ attachments: [{ filename: "b", content: "BB\r\nBB" }, { filename: "a", content: "AAAA" }] }),
    );
  });
});
