/**
 * A real IMAP server for the local stack and the tests: Debian's Dovecot (dovecot-imapd), run
 * in the foreground from a folder of its own, with implicit TLS (a certificate the caller's CA
 * signed), plain-text passwords from a file, and Maildir mailboxes: INBOX, `Sent` (special-use
 * `\Sent`) and `Reports`. Mail "arrives" as a file written into a mailbox's `new/` folder, as a
 * local delivery agent would put it there; Dovecot sees it on the next command.
 *
 * @module
 */
import { join } from "node:path";
import { freePort } from "./postgres.ts";

/** A mailbox login. */
export interface DovecotUser {
  name: string;
  password: string;
}

/** A running Dovecot. */
export interface Dovecot {
  host: string;
  /** Implicit TLS (IMAPS). */
  port: number;
  /** Put a message into a user's mailbox (`INBOX` by default), as delivery would. */
  deliver(user: string, raw: string | Uint8Array, mailbox?: string): Promise<void>;
  /** The messages in a user's mailbox, oldest first, as stored (bytes), with their IMAP flags. */
  messages(user: string, mailbox?: string): Promise<{ raw: Uint8Array; flags: string }[]>;
  /** Add a login (Dovecot rereads the file on each login). */
  addUser(user: DovecotUser): Promise<void>;
  stop(): Promise<void>;
}

/** Where Debian installs Dovecot; null when it is not installed. */
export function dovecotBinary(): string | null {
  for (const path of ["/usr/sbin/dovecot", "/usr/local/sbin/dovecot"]) {
    try {
      Deno.statSync(path);
      return path;
    } catch {
      // not here
    }
  }
  return null;
}

/**
 * Start Dovecot in `dir` on a free port (or `port`), serving `users` over implicit TLS with
 * `tls` (PEM key and certificate for localhost).
 *
 * @throws Error when Dovecot is not installed or does not start listening.
 */
export async function startDovecot(options: {
  dir: string;
  tls: { cert: string; key: string };
  users: DovecotUser[];
  port?: number;
}): Promise<Dovecot> {
  const binary = dovecotBinary();
  if (!binary) throw new Error("Dovecot is not installed (Debian: apt-get install dovecot-imapd)");
  const dir = options.dir;
  const port = options.port ?? freePort();
  await Deno.mkdir(join(dir, "mail"), { recursive: true });
  // Dovecot's auth process runs as its own user (as root) and must reach the users file.
  await Deno.chmod(dir, 0o755);
  await Deno.writeTextFile(join(dir, "cert.pem"), options.tls.cert);
  await Deno.writeTextFile(join(dir, "key.pem"), options.tls.key, { mode: 0o600 });
  const users = [...options.users];
  const writeUsers = () =>
    Deno.writeTextFile(join(dir, "users"), users.map((u) => `${u.name}:{PLAIN}${u.password}::::::\n`).join(""));
  await writeUsers();
  // Dovecot never opens mail as root: as root, the mailboxes belong to `nobody`.
  const root = (Deno.uid() ?? 0) === 0;
  const uid = root ? 65534 : Deno.uid()!;
  const gid = root ? 65534 : Deno.gid()!;
  const own = async (path: string) => {
    if (root) await Deno.chown(path, uid, gid);
  };
  // As root, Dovecot's own unprivileged users (made by the Debian package) run its login and
  // internal processes; as anyone else, that user runs everything.
  await own(join(dir, "mail"));
  const who = root ? "" : `default_internal_user = ${Deno.env.get("USER") ?? "nobody"}\n` +
    `default_login_user = ${Deno.env.get("USER") ?? "nobody"}\n`;
  await Deno.writeTextFile(
    join(dir, "dovecot.conf"),
    `# Written by local/dovecot.ts
base_dir = ${dir}/run
state_dir = ${dir}/state
log_path = ${dir}/dovecot.log
protocols = imap
listen = 127.0.0.1
${who}ssl = required
ssl_cert = <${dir}/cert.pem
ssl_key = <${dir}/key.pem
ssl_min_protocol = TLSv1.2
auth_mechanisms = plain login
# Refused logins answer at once: the default waits 2 s, and each later failure from the same
# address longer (the auth penalty, off below), beyond the tests' socket timeouts.
auth_failure_delay = 0
disable_plaintext_auth = yes
first_valid_uid = 0
mail_location = maildir:${dir}/mail/%u
mail_uid = ${uid}
mail_gid = ${gid}
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u ${dir}/users
}
userdb {
  driver = static
  args = uid=${uid} gid=${gid} home=${dir}/mail/%u
}
namespace inbox {
  inbox = yes
  separator = /
  mailbox Sent {
    special_use = \\Sent
    auto = subscribe
  }
  mailbox Reports {
    auto = subscribe
  }
}
service imap-login {
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    port = ${port}
    ssl = yes
  }
}
service anvil {
  chroot =
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
service imap-login {
  chroot =
}
`,
  );
  const child = new Deno.Command(binary, {
    args: ["-F", "-c", join(dir, "dovecot.conf")],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const started = Date.now();
  while (true) {
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      conn.close();
      break;
    } catch {
      if (Date.now() - started > 10_000) {
        try {
          child.kill("SIGKILL");
        } catch {
          // already gone
        }
        const log = await Deno.readTextFile(join(dir, "dovecot.log")).catch(() => "");
        throw new Error(`Dovecot did not start on ${port}: ${(await stderr).slice(0, 2000)} ${log.slice(-2000)}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  const folder = (user: string, mailbox = "INBOX") =>
    mailbox === "INBOX" ? join(dir, "mail", user) : join(dir, "mail", user, `.${mailbox}`);
  let delivered = 0;
  return {
    host: "localhost",
    port,
    async deliver(user, raw, mailbox) {
      const base = folder(user, mailbox);
      for (const path of [join(dir, "mail", user), base, ...["tmp", "new", "cur"].map((sub) => join(base, sub))]) {
        await Deno.mkdir(path, { recursive: true });
        await own(path);
      }
      const name = `${Date.now()}.M${++delivered}P${Deno.pid}.mailroom`;
      const bytes = typeof raw === "string" ? new TextEncoder().encode(raw) : raw;
      // tmp, then a rename into new: Maildir's way of never showing a half-written message.
      await Deno.writeFile(join(base, "tmp", name), bytes);
      await own(join(base, "tmp", name));
      await Deno.rename(join(base, "tmp", name), join(base, "new", name));
    },
    async messages(user, mailbox) {
      const base = folder(user, mailbox);
      const found: { name: string; raw: Uint8Array; flags: string }[] = [];
      for (const sub of ["new", "cur"]) {
        let entries: Deno.DirEntry[] = [];
        try {
          entries = [...Deno.readDirSync(join(base, sub))];
        } catch {
          continue;
        }
        for (const entry of entries) {
          const flags = entry.name.includes(":2,") ? entry.name.split(":2,")[1] : "";
          found.push({ name: entry.name, raw: await Deno.readFile(join(base, sub, entry.name)), flags });
        }
      }
      // Maildir names start with the delivery time: oldest first.
      return found.sort((a, b) => a.name.localeCompare(b.name)).map(({ raw, flags }) => ({ raw, flags }));
    },
    async addUser(user) {
      users.push(user);
      await writeUsers();
    },
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch {
        // already gone
      }
      await child.status;
      await stderr.catch(() => "");
    },
  };
}

/**
 * Stop a Dovecot that a killed run left in `dir` (its master's pid file), as `npm run stop` does
 * after `kill -9`; true when there was one.
 */
export async function stopLeftoverDovecot(dir: string): Promise<boolean> {
  let pid: number;
  try {
    pid = Number(Deno.readTextFileSync(join(dir, "run", "master.pid")).trim());
    if (!Deno.readTextFileSync(`/proc/${pid}/cmdline`).includes("dovecot")) return false;
    Deno.kill(pid, "SIGTERM");
  } catch {
    return false;
  }
  for (let i = 0; i < 100; i++) {
    try {
      Deno.readTextFileSync(`/proc/${pid}/cmdline`);
    } catch {
      return true;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return true;
}
