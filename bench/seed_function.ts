// The seed-style send-email the performance issue measures against, as an Edge Function of its
// own (started as a process by bench/send_email.ts, called over HTTP like ours): verify the
// JWT (jose, no cache), select the user's default config as the user, read the decrypted
// password, send over a new SMTP connection (nodemailer, no pool), insert the audit row
// afterwards. No limits, no idempotency, no in-flight row: what send-email did before it had
// a design. Not part of the product.
import nodemailer from "nodemailer";
import postgres from "postgres";
import { loadConfig } from "../supabase/functions/_shared/config.ts";
import { bearerToken, createTokenVerifier } from "../supabase/functions/_shared/auth.ts";

const env = Deno.env.toObject();
const config = loadConfig(env);
const verify = createTokenVerifier(config.jwt);
const sql = postgres(config.dbUrl, { max: 5, onnotice: () => {} });

Deno.serve(async (req) => {
  try {
    const claims = await verify(bearerToken(req));
    const input = await req.json() as { to: string; subject: string; text: string };
    const [smtp] = await sql.begin(async (tx) => {
      await tx`select set_config('request.jwt.claims', ${JSON.stringify(claims)}, true),
                      set_config('role', 'authenticated', true)`;
      return await tx<{ id: string; host: string; port: number; from_email: string; password_secret_id: string }[]>`
        select id, host, port, from_email, password_secret_id from public.user_smtp_configs where is_default`;
    });
    await sql`select decrypted_secret from vault.decrypted_secrets where id = ${smtp.password_secret_id}`;
    const transport = nodemailer.createTransport({
      host: smtp.host === "localhost" ? "127.0.0.1" : smtp.host,
      port: smtp.port,
      secure: false,
      ignoreTLS: true,
      connectionTimeout: 10_000,
      greetingTimeout: 10_000,
      socketTimeout: 10_000,
    });
    const info = await transport.sendMail({
      from: smtp.from_email,
      to: input.to,
      subject: input.subject,
      text: input.text,
    });
    transport.close();
    const [row] = await sql`
      insert into public.email_audit_log (user_id, config_id, from_email, to_addresses, subject, status, message_id)
      values (${claims.sub}, ${smtp.id}, ${smtp.from_email}, ${[input.to]}, ${input.subject}, 'sent', ${info.messageId})
      returning id`;
    return Response.json({ id: row.id, message_id: info.messageId });
  } catch (error) {
    return Response.json({ error: String(error) }, { status: 500 });
  }
});
