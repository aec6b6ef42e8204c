// Envelope = header = audit: for generated addresses (quoted, unusual, hostile), whatever
// is accepted is one canonical mailbox that the To/Cc header shows, the SMTP envelope
// carries and the audit row records; whatever cannot be represented safely is refused.
// Property-based (fast-check) over the parser and the MIME build, then end to end through
// send-email against a scripted SMTP server that records the RCPT lines as they arrived.
import assert from "node:assert/strict";
import fc from "fast-check";
import { canonicalAddress, parseAddress, type RecipientInput } from "../supabase/functions/_shared/mail/addresses.ts";
import { buildMessage } from "../supabase/functions/_shared/mail/message.ts";
import { DEFAULT_LIMITS } from "../supabase/functions/_shared/mail/compose.ts";
import { body, startTestStack } from "./harness.ts";
import { startScriptedSmtp } from "./scripted_smtp.ts";

const ATEXT = [..."abcXYZ019!#$%&'*+/=?^_`{|}~-"];
const SPECIALS = [...'"<>,;: @()[]\\.\t'];
const UNICODE = ["ö", "ü", "日", "\u202e", "\u00a0", "\u200b"];

const localChar = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...ATEXT) },
  { weight: 3, arbitrary: fc.constantFrom(...SPECIALS) },
  { weight: 1, arbitrary: fc.constantFrom(...UNICODE) },
);
const rawLocal = fc.array(localChar, { minLength: 1, maxLength: 16 }).map((chars) => chars.join(""));
const cleanLocal = fc.array(
  fc.array(fc.oneof({ weight: 9, arbitrary: fc.constantFrom(...ATEXT) }, fc.constantFrom("ö", "日")), {
    minLength: 1,
    maxLength: 6,
  }).map((chars) => chars.join("")),
  { minLength: 1, maxLength: 3 },
).map((atoms) => atoms.join("."));
const localPart = fc.oneof(
  { weight: 4, arbitrary: cleanLocal },
  { weight: 1, arbitrary: cleanLocal.map((s) => `"${s}"`) },
  rawLocal,
  rawLocal.map((s) => `"${s}"`),
  rawLocal.map((s) => `"${s.replace(/["\\]/g, "\\$&")}"`),
  fc.constantFrom('"<attacker@evil.example>"', '"a,b"', '"x> NOTIFY=NEVER <y"', '"john"', '"a\\"b"'),
);
const domain = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom("example.com", "Example.ORG", "bücher.de", "a-b.c0.io") },
  fc.constantFrom(
    "example.com",
    "Example.ORG",
    "bücher.de",
    "xn--bcher-kva.de",
    "[127.0.0.1]",
    "[IPv6:::1]",
    "localhost",
    "127.0.0.1",
    "evil.example>",
    "a-b.c0.io",
    "example.com (comment)",
  ),
);
const displayName = fc.option(
  fc.array(fc.constantFrom(..."Ab ,;<>\"'@:()\\é"), { maxLength: 12 }).map((chars) => chars.join("")),
  { nil: undefined },
);
const recipientInput: fc.Arbitrary<RecipientInput> = fc.tuple(localPart, domain, displayName, fc.nat(3)).map(
  ([local, host, name, form]) => {
    const spec = `${local}@${host}`;
    if (form === 0 || name === undefined) return spec;
    if (form === 1) return `${name} <${spec}>`;
    if (form === 2) return `"${name.replace(/["\\]/g, "\\$&")}" <${spec}>`;
    return { email: spec, name };
  },
);

/** The addresses of a header line (To, Cc) of a raw message, unfolded, in order. */
function headerAddresses(raw: string, header: string): string[] {
  const head = raw.split("\r\n\r\n")[0].replace(/\r\n[ \t]+/g, " ");
  const line = head.split("\r\n").find((l) => l.toLowerCase().startsWith(`${header.toLowerCase()}: `));
  if (!line) return [];
  // Each address is either alone or the last <...> of its entry; names may hold quoted commas.
  const out: string[] = [];
  let rest = line.slice(header.length + 2);
  while (rest.length > 0) {
    const quoted = /^\s*(?:"(?:[^"\\]|\\.)*"|=\?[^?]+\?[BQ]\?[^?]*\?=|[^",<])*\s*/.exec(rest)![0];
    rest = rest.slice(quoted.length);
    if (rest.startsWith("<")) {
      const close = rest.indexOf(">");
      out.push(rest.slice(1, close));
      rest = rest.slice(close + 1);
    } else {
      out.push(quoted.trim());
    }
    rest = rest.replace(/^\s*,\s*/, "");
  }
  return out;
}

const FORBIDDEN_IN_CANONICAL = /["<>,;:\s()[\]\\\p{Cc}\p{Cf}]/u;

Deno.test("address canonical form (property-based)", async (t) => {
  await t.step("an accepted address is one plain mailbox that parses back to itself", () => {
    fc.assert(
      fc.property(recipientInput, (input) => {
        const parsed = parseAddress(input);
        if ("error" in parsed) return;
        assert.equal(parsed.address.split("@").length, 2, `one @ in ${parsed.address}`);
        assert.doesNotMatch(parsed.address, FORBIDDEN_IN_CANONICAL, `no specials in ${parsed.address}`);
        assert.equal(canonicalAddress(parsed.address), parsed.address, "canonical form is a fixed point");
      }),
      { numRuns: 3000 },
    );
  });

  await t.step("the header shows exactly the envelope's mailboxes, in order", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(recipientInput, { minLength: 1, maxLength: 4 }),
        fc.array(recipientInput, { maxLength: 3 }),
        async (toInputs, ccInputs) => {
          const parse = (list: RecipientInput[]) =>
            list.map(parseAddress).filter((a): a is { address: string; name?: string } => !("error" in a));
          const to = parse(toInputs);
          const cc = parse(ccInputs);
          if (to.length === 0) return;
          const message = await buildMessage({ from: { address: "sender@example.com" }, to, cc, text: "x" }, {
            ...DEFAULT_LIMITS,
          });
          const raw = message.raw.toString("utf8");
          const shown = [...headerAddresses(raw, "To"), ...headerAddresses(raw, "Cc")];
          assert.deepEqual(shown, message.envelope.to, raw.split("\r\n\r\n")[0]);
        },
      ),
      { numRuns: 400 },
    );
  });

  await t.step("refuses what cannot be represented safely, with a reason", () => {
    const refused: Array<[RecipientInput, RegExp]> = [
      ['"<attacker@evil.example>"@example.com', /not a valid email address/],
      ['"a,b"@example.com', /quoted local part/],
      ['"x> NOTIFY=NEVER <y"@example.com', /not a valid email address/],
      ['"a b"@example.com', /quoted local part/],
      ["a@[127.0.0.1]", /domain literal/],
      ["a@127.0.0.1", /not a valid host name/],
      ["a@localhost", /fully qualified/],
      ["a@example.com (comment)", /not a valid host name/],
      ["Eve <a@example.com>, b@evil.example", /not a valid email address/],
      [{ email: "Eve <a@example.com>" }, /bare address/],
      ["\u202eevil\u202c <a@example.com>", /invisible/],
      ["(((((((((((((((((((((((((((((((((((((((((((a@example.com", /not a valid email address/],
    ];
    for (const [input, reason] of refused) {
      const parsed = parseAddress(input);
      assert.ok("error" in parsed, `${JSON.stringify(input)} should be refused`);
      assert.match(parsed.error, reason, JSON.stringify(input));
    }
  });

  await t.step("writes the canonical form: unneeded quotes dropped, domain in lower-case ASCII", () => {
    assert.deepEqual(parseAddress('"john.doe"@Example.COM'), { address: "john.doe@example.com" });
    assert.deepEqual(parseAddress("Jane <Jane@bücher.de>"), { name: "Jane", address: "Jane@xn--bcher-kva.de" });
    assert.deepEqual(parseAddress('"Doe, Jane" <jane@example.com>'), {
      name: "Doe, Jane",
      address: "jane@example.com",
    });
    assert.deepEqual(parseAddress("jörg@Bücher.de"), { address: "jörg@bücher.de" }, "UTF-8 on both sides");
  });
});

Deno.test({
  name: "send-email: envelope = header = audit = response (property-based, end to end)",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const stack = await startTestStack({ MAILROOM_ALLOW_PLAINTEXT_SMTP: "true" });
    const smtp = await startScriptedSmtp({ extensions: ["PIPELINING", "SMTPUTF8", "AUTH PLAIN"], users: { u: "p" } });
    try {
      const user = await stack.createUser();
      const configId = await stack.createConfig(user, {
        port: smtp.port,
        security: "none",
        username: "u",
        password: "p",
      });
      await stack.sql`update public.user_smtp_configs set max_per_minute = 10000, max_per_day = 1000000
                       where id = ${configId}`;

      await t.step(
        "for every accepted request, RCPT TO lines, To/Cc headers, audit row and response agree",
        async () => {
          let sent = 0;
          await fc.assert(
            fc.asyncProperty(
              fc.array(recipientInput, { minLength: 1, maxLength: 3 }),
              fc.array(recipientInput, { maxLength: 2 }),
              fc.array(recipientInput, { maxLength: 2 }),
              async (to, cc, bcc) => {
                const before = smtp.messages().length;
                const res = await stack.invoke("send-email", {
                  token: user.token,
                  body: { to, cc, bcc, subject: "p", text: "x" },
                });
                const json = await body<{ id: string; accepted: string[]; error?: { code: string } }>(res);
                if (res.status !== 200) {
                  assert.equal(res.status, 400, JSON.stringify(json));
                  assert.match(json.error!.code, /^(invalid_request|invalid_header_value)$/);
                  assert.equal(smtp.messages().length, before, "a refused request sends nothing");
                  return;
                }
                sent++;
                const received = smtp.messages().at(-1)!;
                const shown = [...headerAddresses(received.data, "To"), ...headerAddresses(received.data, "Cc")];
                const rcpt = received.rcptTo;
                assert.deepEqual(rcpt.slice(0, shown.length), shown, "the headers show the envelope's first mailboxes");
                assert.deepEqual(json.accepted, rcpt, "the response names the RCPT TO mailboxes");
                const [audit] = await stack.sql<{ to_addresses: string[]; cc_count: number; bcc_count: number }[]>`
                select to_addresses, cc_count, bcc_count from public.email_audit_log where id = ${json.id}`;
                assert.deepEqual(audit.to_addresses, headerAddresses(received.data, "To"), "audit = To header");
                assert.equal(audit.to_addresses.length + audit.cc_count + audit.bcc_count, rcpt.length);
              },
            ),
            { numRuns: 60 },
          );
          assert.ok(sent > 0, "some generated requests were accepted and sent");
        },
      );

      await t.step("the RCPT lines carry nothing but one bracketed mailbox", () => {
        const rcptLines = smtp.transcript().filter((line) => line.startsWith("RCPT TO:"));
        assert.ok(rcptLines.length > 0);
        for (const line of rcptLines) assert.match(line, /^RCPT TO:<[^<>\s",;]+@[^<>\s",;@]+>$/u, line);
      });
    } finally {
      await smtp.close();
      await stack.close();
    }
  },
});
