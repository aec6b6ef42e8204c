/// <reference lib="dom" />
// The dashboard: a static app on the functions' own API (the SDK over fetch or supabase-js),
// nothing the API cannot do. Hash routes (#/messages, #/approvals/<id>) so any static host
// serves it from one index.html.
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import {
  type DashboardConfig,
  localSignIn,
  type Session,
  storedToken,
  supabaseClient,
  supabaseSession,
  tokenSession,
} from "./session.ts";
import { ApprovalsPage, ApprovalView, MessagePageView, MessagesPage } from "./pages.ts";
import { BatchesPage, BatchView } from "./batches.ts";
import { OverviewPage } from "./overview.ts";
import { MailboxesPage, MailboxView } from "./mailboxes.ts";
import { TemplatesPage, TemplateView } from "./templates.ts";
import { WebhooksPage, WebhookView } from "./webhooks.ts";
import { ErrorBox, html } from "./view.ts";

function useRoute(): string[] {
  const read = () => location.hash.replace(/^#\/?/, "").split("?")[0].split("/").filter(Boolean);
  const [route, setRoute] = useState(read);
  useEffect(() => {
    const on = () => setRoute(read());
    addEventListener("hashchange", on);
    return () => removeEventListener("hashchange", on);
  }, []);
  return route;
}

function SignIn({ config, onSession }: { config: DashboardConfig; onSession: (s: Session) => void }) {
  const [error, setError] = useState<unknown>(null);
  const [token, setToken] = useState("");
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [sent, setSent] = useState(false);
  const signedOut = () => location.reload();
  const demo = async () => {
    try {
      onSession(tokenSession(config, await localSignIn(config), signedOut));
    } catch (e) {
      setError(e);
    }
  };
  const withPassword = async (e: Event) => {
    e.preventDefault();
    const { error } = await supabaseClient(config).auth.signInWithPassword({ email, password });
    if (error) return setError(error);
    const session = await supabaseSession(config, signedOut);
    if (session) onSession(session);
  };
  const magicLink = async () => {
    const { error } = await supabaseClient(config).auth.signInWithOtp({
      email,
      options: { emailRedirectTo: location.href.split("#")[0] },
    });
    if (error) setError(error);
    else setSent(true);
  };
  return html`
    <main class="signin">
      <h1>mailroom</h1>
      <p>See what your agents send, approve what waits for you.</p>
      <${ErrorBox} error=${error} />
      ${config.local_sign_in_url ? html`<button onClick=${demo}>Sign in as the demo user</button>` : null}
      ${config.anon_key && !config.local_sign_in_url
        ? html`<form onSubmit=${withPassword} aria-label="Sign in with email">
          <label>Email <input type="email" autocomplete="email" required value=${email}
            onInput=${(e: Event) => setEmail((e.target as HTMLInputElement).value)} /></label>
          <label>Password <input type="password" autocomplete="current-password" value=${password}
            onInput=${(e: Event) => setPassword((e.target as HTMLInputElement).value)} /></label>
          <button type="submit">Sign in</button>
          <button type="button" class="secondary" onClick=${magicLink}>Email me a sign-in link</button>
          ${sent ? html`<p role="status">Check your inbox for the link.</p>` : null}
        </form>`
        : null}
      <form aria-label="Sign in with a token" onSubmit=${(e: Event) => {
        e.preventDefault();
        if (token.trim()) onSession(tokenSession(config, token.trim(), signedOut));
      }}>
        <label>Or paste an access token (<code>npm run token</code> locally)
          <input value=${token} autocomplete="off" onInput=${(e: Event) =>
            setToken((e.target as HTMLInputElement).value)} />
        </label>
        <button type="submit" class="secondary">Use this token</button>
      </form>
    </main>
  `;
}

function query(name: string): string | undefined {
  return new URLSearchParams(location.hash.split("?")[1] ?? "").get(name) ?? undefined;
}

function Layout({ session, route }: { session: Session; route: string[] }) {
  const [page = "overview", id] = route;
  const here = (name: string) => page === name ? "page" : undefined;
  const api = session.api;
  // After each navigation: the window's title says where, and focus moves to the new page.
  useEffect(() => {
    document.title = `${page[0].toUpperCase()}${page.slice(1)} · mailroom`;
    document.querySelector<HTMLElement>("main")?.focus();
  }, [location.hash]);
  const body = page === "approvals"
    ? id ? html`<${ApprovalView} api=${api} id=${id} />` : html`<${ApprovalsPage} api=${api} />`
    : page === "batches"
    ? id ? html`<${BatchView} api=${api} id=${id} />` : html`<${BatchesPage} api=${api} />`
    : page === "mailboxes"
    ? id ? html`<${MailboxView} api=${api} id=${id} />` : html`<${MailboxesPage} api=${api} />`
    : page === "templates"
    ? id ? html`<${TemplateView} api=${api} id=${id} />` : html`<${TemplatesPage} api=${api} />`
    : page === "webhooks"
    ? id ? html`<${WebhookView} api=${api} id=${id} />` : html`<${WebhooksPage} api=${api} />`
    : page === "messages"
    ? id
      ? html`<${MessagePageView} api=${api} id=${id} />`
      : html`<${MessagesPage} api=${api} batch=${query("batch_id")} />`
    : html`<${OverviewPage} api=${api} />`;
  return html`
    <header>
      <h1>mailroom</h1>
      <nav aria-label="Pages">
        <a href="#/overview" aria-current=${here("overview")}>Overview</a>
        <a href="#/messages" aria-current=${here("messages")}>Messages</a>
        <a href="#/batches" aria-current=${here("batches")}>Batches</a>
        <a href="#/approvals" aria-current=${here("approvals")}>Approvals</a>
        <a href="#/mailboxes" aria-current=${here("mailboxes")}>Mailboxes</a>
        <a href="#/templates" aria-current=${here("templates")}>Templates</a>
        <a href="#/webhooks" aria-current=${here("webhooks")}>Webhooks</a>
      </nav>
      <span class="account">Signed in as <strong data-testid="account">${session.email}</strong></span>
      <button class="secondary" onClick=${() => session.signOut()}>Sign out</button>
    </header>
    <main key=${location.hash} tabindex="-1">${body}</main>
  `;
}

function App({ config }: { config: DashboardConfig }) {
  const [session, setSession] = useState<Session | null | undefined>(undefined);
  const route = useRoute();
  useEffect(() => {
    const token = storedToken();
    if (token) return setSession(tokenSession(config, token, () => location.reload()));
    supabaseSession(config, () => location.reload()).then(setSession, () => setSession(null));
  }, []);
  if (session === undefined) return html`<p class="loading">Loading…</p>`;
  if (!session) return html`<${SignIn} config=${config} onSession=${setSession} />`;
  return html`<${Layout} session=${session} route=${route} />`;
}

async function start() {
  const root = document.getElementById("app")!;
  // Never inside another site's frame: its page could lay itself over "Approve and send".
  if (globalThis.top !== globalThis.self) {
    root.textContent = "The mailroom dashboard cannot be shown inside another page.";
    return;
  }
  try {
    const res = await fetch("./config.json", { cache: "no-store" });
    if (!res.ok) throw new Error(`config.json: HTTP ${res.status}`);
    const config = await res.json() as DashboardConfig;
    render(html`<${App} config=${config} />`, root);
  } catch (error) {
    render(
      html`
        <main>
          <${ErrorBox} error=${error} />
          <p>Put a config.json next to index.html:
                <code>{"supabase_url": "https://&lt;ref&gt;.supabase.co", "anon_key": "&lt;publishable key&gt;"}</code></p>
        </main>
      `,
      root,
    );
  }
}

start();
