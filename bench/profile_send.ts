// Where one send-email's database time goes: sequential sends through the local gateway to a TLS
// peer on loopback, then pg_stat_statements per send (calls and mean execution time).
// MAILROOM_PG_OPTIONS="-c shared_preload_libraries=pg_stat_statements" deno run -A bench/profile_send.ts [--sends N]
import postgres from "postgres";
import { startTestStack } from "../tests/harness.ts";
import { startScriptedSmtp } from "../tests/scripted_smtp.ts";

const args = Deno.args;
const sends = args.includes("--sends") ? Number(args[args.indexOf("--sends") + 1]) : 200;
const stack = await startTestStack({}, { isolation: "process" });
const smtp = await startScriptedSmtp({
  tls: { key: stack.certs.key, cert: stack.certs.cert },
  extensions: ["PIPELINING", "AUTH PLAIN"],
  users: { mailer: "pw" },
});
const admin = postgres(stack.dbUrl.replace(/\/\/[^@]*@/, "//supabase_admin@"), { max: 1, onnotice: () => {} });
try {
  const user = await stack.createUser();
  await stack.createConfig(user, { host: "localhost", port: smtp.port, security: "tls", password: "pw" });
  await stack.sql`update public.user_smtp_configs set max_per_minute = 10000, max_per_day = 1000000`;
  const send = async () => {
    const res = await stack.invoke("send-email", {
      token: user.token,
      body: { to: "r@example.com", subject: `s ${crypto.randomUUID()}`, text: "x" },
    });
    if (res.status !== 200) throw new Error(`${res.status} ${await res.text()}`);
    await res.body?.cancel();
  };
  for (let i = 0; i < 20; i++) await send();
  await admin`create extension if not exists pg_stat_statements`;
  await admin`select pg_stat_statements_reset()`;
  const times: number[] = [];
  for (let i = 0; i < sends; i++) {
    const t = performance.now();
    await send();
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  console.log(`${sends} sends, p50 ${times[Math.floor(sends / 2)].toFixed(1)} ms`);
  const rows = await admin<{ calls: number; ms: number; query: string }[]>`
    select calls::int, total_exec_time::float as ms, left(regexp_replace(query, '\\s+', ' ', 'g'), 120) as query
      from pg_stat_statements where query not like '%pg_stat_statements%' and calls >= ${sends / 2}
     order by total_exec_time desc`;
  const calls = rows.reduce((sum, row) => sum + row.calls, 0);
  const total = rows.reduce((sum, row) => sum + row.ms, 0);
  console.log(`statements: ${(calls / sends).toFixed(1)} per send, ${(total / sends).toFixed(3)} ms per send`);
  for (const row of rows) {
    console.log(`${(row.calls / sends).toFixed(2)}/send  ${(row.ms / sends).toFixed(3)} ms/send  ${row.query}`);
  }
} finally {
  await admin.end();
  await smtp.close();
  await stack.close();
}
