import assert from "node:assert/strict";
import {
  cachedResolver,
  checkHostStatically,
  checkServerStatically,
  ipLiteral,
  loadEgressPolicy,
  parseHost,
  portWarnings,
  type Resolver,
  resolveTarget,
  systemResolver,
} from "../supabase/functions/_shared/smtp/egress.ts";
import { ApiError } from "../supabase/functions/_shared/http.ts";

const policy = loadEgressPolicy({});

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (error) {
    if (error instanceof ApiError) return error.code;
    throw error;
  }
  return undefined;
}

async function codeAsync(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof ApiError) return error.code;
    throw error;
  }
  return undefined;
}

/** Scripted stand-in for DNS (no real DNS here): fixed answers per name. */
function scriptedResolver(answers: Record<string, string[]>): Resolver {
  return (host) => {
    const found = answers[host];
    return found
      ? Promise.resolve(found)
      : Promise.reject(Object.assign(new Error("ENOTFOUND"), { code: "ENOTFOUND" }));
  };
}

// Every spelling of an address we must never connect to.
const HOSTILE_LITERALS: [string, string][] = [
  ["127.0.0.1", "loopback"],
  ["127.1", "loopback, short form"],
  ["127.0.1", "loopback, three-part form"],
  ["2130706433", "loopback, decimal"],
  ["0x7f000001", "loopback, hex"],
  ["0x7f.0.0.1", "loopback, hex first octet"],
  ["0x7f.1", "loopback, hex short form"],
  ["0177.0.0.1", "loopback, octal"],
  ["017700000001", "loopback, octal whole"],
  ["127.000.000.001", "loopback, zero padded"],
  ["0", "unspecified, single zero"],
  ["0.0.0.0", "unspecified"],
  ["10.0.0.1", "private 10/8"],
  ["172.16.5.4", "private 172.16/12"],
  ["192.168.1.1", "private 192.168/16"],
  ["0xc0a80101", "private, hex"],
  ["3232235777", "private, decimal"],
  ["169.254.169.254", "cloud metadata (link-local)"],
  ["0xa9fea9fe", "cloud metadata, hex"],
  ["2852039166", "cloud metadata, decimal"],
  ["100.64.0.1", "CGNAT"],
  ["100.100.100.200", "Alibaba metadata (CGNAT)"],
  ["224.0.0.1", "multicast"],
  ["255.255.255.255", "broadcast"],
  ["::1", "IPv6 loopback"],
  ["[::1]", "IPv6 loopback, bracketed"],
  ["0:0:0:0:0:0:0:1", "IPv6 loopback, long form"],
  ["::", "IPv6 unspecified"],
  ["::ffff:127.0.0.1", "IPv4-mapped loopback"],
  ["::ffff:7f00:1", "IPv4-mapped loopback, hex"],
  ["[::ffff:169.254.169.254]", "IPv4-mapped metadata, bracketed"],
  ["::ffff:10.0.0.1", "IPv4-mapped private"],
  ["fe80::1", "IPv6 link-local"],
  ["fc00::1", "IPv6 unique local"],
  ["fd00:ec2::254", "AWS IPv6 metadata"],
  ["ff02::1", "IPv6 multicast"],
  ["64:ff9b::7f00:1", "NAT64 of loopback"],
  ["2002:7f00:1::", "6to4 of loopback"],
  ["2001:db8::1", "IPv6 documentation range"],
  ["::7f00:1", "IPv4-compatible loopback"],
  ["::a9fe:a9fe", "IPv4-compatible metadata"],
  ["192.0.2.1", "IPv4 documentation range (TEST-NET-1)"],
];

const HOSTILE_NAMES: [string, string][] = [
  ["localhost", "single-label loopback name"],
  ["LOCALHOST.", "loopback name, upper case with trailing dot"],
  ["foo.localhost", "subdomain of localhost"],
  ["metadata.google.internal", "GCP metadata"],
  ["db.internal", ".internal"],
  ["printer.local", "mDNS"],
  ["router.home.arpa", "home.arpa"],
];

const MALFORMED: [string, string][] = [
  ["smtp://mail.example.com", "a URL"],
  ["mail.example.com/path", "a path"],
  ["mail example.com", "a space"],
  ["user@mail.example.com", "userinfo"],
  ["", "empty"],
  ["fe80::1%eth0", "IPv6 zone"],
  ["[mail.example.com]", "brackets around a name"],
  ["-bad.example.com", "label starting with a hyphen"],
  ["1.2.3.4.5", "five numeric parts"],
  ["08.8.8.8", "invalid octal that is not a name either"],
  ["a".repeat(64) + ".example.com", "63+ character label"],
];

Deno.test("egress policy", async (t) => {
  await t.step(`refuses ${HOSTILE_LITERALS.length} hostile address spellings`, () => {
    for (const [host, why] of HOSTILE_LITERALS) {
      assert.equal(code(() => checkHostStatically(policy, host, 465)), "smtp_host_forbidden", `${host} (${why})`);
    }
  });

  await t.step("refuses loopback, internal and metadata names", () => {
    for (const [host, why] of HOSTILE_NAMES) {
      const result = code(() => checkHostStatically(policy, host, 465));
      assert.ok(result === "smtp_host_forbidden" || result === "smtp_host_invalid", `${host} (${why}): ${result}`);
    }
  });

  await t.step("rejects hosts that are not host names or IP addresses", () => {
    for (const [host, why] of MALFORMED) {
      assert.equal(code(() => parseHost(host)), "smtp_host_invalid", `${JSON.stringify(host)} (${why})`);
    }
  });

  await t.step("accepts public names and addresses, normalised", () => {
    assert.deepEqual(parseHost("SMTP.Example.COM."), { host: "smtp.example.com" });
    assert.equal(parseHost("smtp.bücher.de").host, "smtp.xn--bcher-kva.de");
    assert.equal(checkHostStatically(policy, "8.8.8.8", 465).ip?.toString(), "8.8.8.8");
    assert.equal(checkHostStatically(policy, "2001:4860:4860::8888", 465).host, "2001:4860:4860::8888");
    assert.equal(checkHostStatically(policy, "[2a00:1450:4001:82b::1a]", 2465).host, "2a00:1450:4001:82b::1a");
  });

  await t.step("allows only SMTP ports", () => {
    for (const port of [465, 587, 25, 2465, 2587, 2525]) {
      assert.equal(code(() => checkHostStatically(policy, "smtp.example.com", port)), undefined, `port ${port}`);
    }
    for (const port of [22, 80, 443, 5432, 6379, 11211, 54325]) {
      assert.equal(code(() => checkHostStatically(policy, "smtp.example.com", port)), "smtp_port_not_allowed");
    }
    const extra = loadEgressPolicy({ MAILROOM_SMTP_ALLOWED_PORTS: "8025" });
    assert.equal(code(() => checkHostStatically(extra, "smtp.example.com", 8025)), undefined);
  });

  await t.step("lets the deployment allowlist exempt its own catcher, and only that", () => {
    const local = loadEgressPolicy({ MAILROOM_EGRESS_ALLOWLIST: "localhost:54325, [::1]:2525" });
    assert.equal(code(() => checkHostStatically(local, "localhost", 54325)), undefined);
    assert.equal(code(() => checkHostStatically(local, "::1", 2525)), undefined);
    assert.equal(code(() => checkHostStatically(local, "localhost", 54326)), "smtp_host_invalid");
    assert.equal(code(() => checkHostStatically(local, "127.0.0.1", 54325)), "smtp_host_forbidden");
  });

  await t.step("ipLiteral tells addresses from host names, every IPv4 spelling included", () => {
    for (const name of ["smtp.gmail.com", "localhost", "mail.example.co.uk", "xn--bcher-kva.example", "cafe.be"]) {
      assert.equal(ipLiteral(name), null, name);
    }
    const spellings: [string, string][] = [
      ["127.0.0.1", "127.0.0.1"],
      ["127.1", "127.0.0.1"],
      ["0x7f.0.0.1", "127.0.0.1"],
      ["0177.0.0.1", "127.0.0.1"],
      ["2130706433", "127.0.0.1"],
      ["::1", "::1"],
      ["::ffff:10.0.0.1", "::ffff:a00:1"],
    ];
    for (const [spelled, address] of spellings) assert.equal(ipLiteral(spelled)?.toString(), address, spelled);
    // The same host parses the same each time; a bad one is refused each time.
    assert.equal(parseHost("Mail.Example.com.").host, "mail.example.com");
    assert.equal(parseHost("Mail.Example.com.").host, "mail.example.com");
    assert.equal(code(() => parseHost("bad host")), "smtp_host_invalid");
    assert.equal(code(() => parseHost("bad host")), "smtp_host_invalid");
  });

  await t.step(
    "the DNS cache keeps answers for its TTL, never failures, and every address is checked each time",
    async () => {
      // A stand-in DNS server scripted to change its answers on cue.
      let lookups = 0;
      let answers: string[] | Error = ["93.184.216.34"];
      const dns = cachedResolver((host) => {
        lookups++;
        return answers instanceof Error ? Promise.reject(answers) : Promise.resolve(host ? [...answers] : []);
      }, 200);
      assert.equal((await resolveTarget(policy, "cached.example.com", 465, { resolve: dns })).address, "93.184.216.34");
      await resolveTarget(policy, "cached.example.com", 465, { resolve: dns });
      assert.equal(lookups, 1, "a second send within the TTL does not look up again");
      // The name now points at a private address: once the TTL is over, the send is refused.
      answers = ["10.0.0.7"];
      await new Promise((r) => setTimeout(r, 250));
      assert.equal(
        await codeAsync(resolveTarget(policy, "cached.example.com", 465, { resolve: dns })),
        "smtp_host_forbidden",
      );
      assert.equal(lookups, 2);
      // ...and it stays refused while that answer is cached: the check runs on every send.
      assert.equal(
        await codeAsync(resolveTarget(policy, "cached.example.com", 465, { resolve: dns })),
        "smtp_host_forbidden",
      );
      assert.equal(lookups, 2);
      // A failed lookup is not kept: the next send asks again.
      answers = new Error("SERVFAIL");
      assert.equal(
        await codeAsync(resolveTarget(policy, "failing.example.com", 465, { resolve: dns })),
        "smtp_host_not_found",
      );
      answers = ["93.184.216.34"];
      assert.equal(
        (await resolveTarget(policy, "failing.example.com", 465, { resolve: dns })).address,
        "93.184.216.34",
      );
      assert.equal(lookups, 4);
    },
  );

  await t.step("refuses a public-looking name that resolves to a private address", async () => {
    const dns = scriptedResolver({
      "rebind.example.com": ["10.0.0.5"],
      "mixed.example.com": ["93.184.216.34", "127.0.0.1"],
      "docs.example.com": ["2001:db8::25"],
      "mapped.example.com": ["::ffff:169.254.169.254"],
      "good.example.com": ["2a00:1450:4001:82b::1a", "93.184.216.34"],
    });
    assert.equal(
      await codeAsync(resolveTarget(policy, "rebind.example.com", 465, { resolve: dns })),
      "smtp_host_forbidden",
    );
    assert.equal(
      await codeAsync(resolveTarget(policy, "mixed.example.com", 465, { resolve: dns })),
      "smtp_host_forbidden",
    );
    assert.equal(
      await codeAsync(resolveTarget(policy, "mapped.example.com", 465, { resolve: dns })),
      "smtp_host_forbidden",
    );
    assert.equal(
      await codeAsync(resolveTarget(policy, "docs.example.com", 465, { resolve: dns })),
      "smtp_host_forbidden",
    );
    assert.equal(
      await codeAsync(resolveTarget(policy, "nxdomain.example.com", 465, { resolve: dns })),
      "smtp_host_not_found",
    );
    const target = await resolveTarget(policy, "good.example.com", 465, { resolve: dns });
    assert.equal(target.servername, "good.example.com", "TLS is verified against the name, not the address");
    assert.equal(target.address, "2a00:1450:4001:82b::1a");
    const slow: Resolver = () => new Promise(() => {});
    assert.equal(
      await codeAsync(resolveTarget(policy, "slow.example.com", 465, { resolve: slow, timeoutMs: 50 })),
      "smtp_host_not_found",
      "a resolver that never answers times out",
    );
  });

  await t.step("resolves an allowlisted name with the system resolver and connects by address", async () => {
    const local = loadEgressPolicy({ MAILROOM_EGRESS_ALLOWLIST: "localhost" });
    const target = await resolveTarget(local, "localhost", 54325, { resolve: systemResolver });
    assert.equal(target.address, "127.0.0.1");
    assert.equal(target.servername, "localhost");
    assert.equal(
      await codeAsync(resolveTarget(policy, "localhost", 465, { resolve: systemResolver })),
      "smtp_host_invalid",
    );
  });

  await t.step("each refusal names the setting that would allow it (a local Mailpit on 1025, say)", () => {
    const refusal = (fn: () => unknown): ApiError => {
      try {
        fn();
      } catch (error) {
        if (error instanceof ApiError) return error;
        throw error;
      }
      throw new Error("not refused");
    };
    const unqualified = refusal(() => checkHostStatically(policy, "localhost", 1025));
    assert.equal(unqualified.code, "smtp_host_invalid");
    assert.match(unqualified.message, /MAILROOM_EGRESS_ALLOWLIST=localhost:1025/);
    assert.equal(unqualified.details?.setting, "MAILROOM_EGRESS_ALLOWLIST");

    const loopback = refusal(() => checkHostStatically(policy, "127.0.0.1", 1025));
    assert.equal(loopback.code, "smtp_host_forbidden");
    assert.match(loopback.message, /MAILROOM_EGRESS_ALLOWLIST=127\.0\.0\.1:1025/);
    assert.equal(loopback.details?.setting, "MAILROOM_EGRESS_ALLOWLIST");

    const port = refusal(() => checkHostStatically(policy, "smtp.example.com", 1025));
    assert.equal(port.code, "smtp_port_not_allowed");
    assert.match(port.message, /MAILROOM_SMTP_ALLOWED_PORTS=1025/);
    assert.match(port.message, /MAILROOM_EGRESS_ALLOWLIST=smtp\.example\.com:1025/);

    const plaintext = refusal(() => checkServerStatically(policy, { host: "localhost", port: 1025, security: "none" }));
    assert.equal(plaintext.code, "plaintext_not_allowed");
    assert.match(plaintext.message, /MAILROOM_ALLOW_PLAINTEXT_SMTP=true/);
    assert.equal(plaintext.details?.setting, "MAILROOM_ALLOW_PLAINTEXT_SMTP");

    // What the hint says works: with both settings, the same server passes.
    const allowing = loadEgressPolicy({
      MAILROOM_EGRESS_ALLOWLIST: "localhost:1025",
      MAILROOM_ALLOW_PLAINTEXT_SMTP: "true",
    });
    assert.equal(
      code(() => checkServerStatically(allowing, { host: "localhost", port: 1025, security: "none" })),
      undefined,
    );
  });

  await t.step("refuses plaintext unless the deployment allows it", () => {
    const server = { host: "smtp.example.com", port: 25, security: "none" };
    assert.equal(code(() => checkServerStatically(policy, server)), "plaintext_not_allowed");
    const allowing = loadEgressPolicy({ MAILROOM_ALLOW_PLAINTEXT_SMTP: "true" });
    assert.equal(code(() => checkServerStatically(allowing, server)), undefined);
  });

  await t.step("blocks 25 and 587 up front on hosted Supabase, and warns about them anywhere", () => {
    const hosted = loadEgressPolicy({ SUPABASE_URL: "https://abcd.supabase.co" });
    const server = { host: "smtp.example.com", port: 587, security: "starttls" };
    assert.equal(code(() => checkServerStatically(hosted, server)), "smtp_port_blocked_by_platform");
    assert.equal(code(() => checkServerStatically(hosted, { ...server, port: 465, security: "tls" })), undefined);
    assert.equal(code(() => checkServerStatically(policy, server)), undefined);
    const forced = loadEgressPolicy({ MAILROOM_PLATFORM_BLOCKED_PORTS: "2525" });
    assert.equal(code(() => checkServerStatically(forced, { ...server, port: 2525 })), "smtp_port_blocked_by_platform");
    assert.equal(code(() => checkServerStatically(hosted, server, { sending: false })), undefined);
    assert.equal(portWarnings(policy, 587)[0].code, "port_blocked_on_hosted_supabase");
    assert.equal(portWarnings(hosted, 587)[0].code, "port_blocked_by_platform");
    assert.equal(portWarnings(policy, 25).length, 1);
    assert.deepEqual(portWarnings(policy, 465), []);
  });
});
