// The SDK in a few lines: send with a template, fall back when data is missing, see a repeat
// refused, attach a stored file, queue a bulk send and follow it. `connection` is { supabase } (a signed-in supabase-js client) or
// { url, accessToken }.
// Usage: MAILROOM_URL=http://127.0.0.1:54321 TOKEN=<user access token> npm run deno -- run -A examples/sdk_send.ts \
//   jane@example.com ann@example.com bob@example.com
import { createMailroomClient, type MailroomClientOptions, MailroomError } from "../clients/mailroom/src/index.ts";

export async function welcomeAndAnnounce(connection: MailroomClientOptions, to: string, recipients: string[]) {
  const mailroom = createMailroomClient(connection);
  try {
    await mailroom.send({ to, template: "welcome", data: { name: "Jane" } }, { idempotencyKey: crypto.randomUUID() });
  } catch (error) {
    if (!(error instanceof MailroomError && error.code === "template_data_missing")) throw error;
    console.log("missing:", error.details.missing); // ["product", "login_url"]
    await mailroom.send({ to, subject: "Welcome!", text: "Hello Jane" });
    // The same email again (an agent's retry after a timeout) within the config's window goes nowhere.
    await mailroom.send({ to, subject: "Welcome!", text: "Hello Jane" }).catch((repeat) => {
      if (!(repeat instanceof MailroomError && repeat.code === "duplicate_send")) throw repeat;
      console.log("already sent:", repeat.details.duplicate_of); // {id, status: "sent", message_id, created_at}
    });
  }
  // A file stored once and attached by id: a batch of 10,000 carries one copy.
  const bytes = new TextEncoder().encode("The terms, 2027 edition");
  const terms = await mailroom.attachments.upload({ filename: "terms.txt", content: bytes }); // or .fromUrl(url)
  await mailroom.send({ to, subject: "New terms", text: "Attached.", attachments: [{ id: terms.id }] });
  // Someone who asked not to be mailed: no send from this account reaches them again.
  await mailroom.suppressions.add(["ann@example.com"], { reason: "unsubscribed" }); // skipped by every send
  console.log((await mailroom.suppressions.list()).suppressions); // [{address, reason, source, ...}]
  const { batch_id } = await mailroom.bulk.send({ recipients, subject: "News", text: "Hello" });
  const progress = [];
  for await (const status of mailroom.bulk.progress(batch_id, { intervalMs: 500 })) progress.push(status.counts);
  return progress;
}

if (import.meta.main) {
  const [to, ...recipients] = Deno.args;
  const connection = { url: Deno.env.get("MAILROOM_URL")!, accessToken: () => Deno.env.get("TOKEN")! };
  console.log(await welcomeAndAnnounce(connection, to, recipients.length ? recipients : [to]));
}
