// Well-known mail providers: how to reach each one, how it lets you log in, what it limits, and
// whether an Edge Function on hosted Supabase can reach its SMTP server at all (ports 25 and 587
// are blocked there). Taken from each provider's own setup and limits pages (`docs`), as they
// read in December 2026; a provider may change them, and the config's fields always win.

/** How a mailbox lets mailroom log in. */
export type PresetAuth = "password" | "app_password" | "api_key" | "oauth2";

/** One provider. */
export interface ProviderPreset {
  id: string;
  name: string;
  /** The SMTP server we recommend: implicit TLS where the provider offers it (reachable from hosted Supabase). */
  smtp: { host: string; port: number; security: "tls" | "starttls" };
  /** What the password field takes, in the provider's words. */
  auth: PresetAuth[];
  /** What to put in username and password, and where to get them. */
  credentials: string;
  /** OAuth 2.0, where the provider offers it (issue: OAuth configs come with their own API). */
  oauth?: {
    provider: "google" | "microsoft";
    /** Scopes per transport (`smtp` uses SASL XOAUTH2). */
    scopes: Partial<Record<"smtp" | "graph" | "gmail_api", string[]>>;
  };
  /** HTTPS send APIs that carry the same MIME message where SMTP cannot go. */
  https_transports: ("graph" | "gmail_api")[];
  /** The provider's own sending limits (applied to a config made from the preset where they are numbers). */
  limits: { per_day?: number; per_minute?: number; recipients_per_message?: number; note: string };
  /** Provider-specific advice shown with the preset. */
  note?: string;
  docs: string;
  /**
   * Domains of the hosts that send for this provider (its SMTP servers and send APIs), and the
   * SPF include that authorises them: what the deliverability check looks for.
   */
  sending: { domains: string[]; spf_includes: string[] };
}

const GMAIL_SMTP_SCOPE = "https://mail.google.com/";
const GMAIL_SEND_SCOPE = "https://www.googleapis.com/auth/gmail.send";
const OUTLOOK_SMTP_SCOPE = "https://outlook.office.com/SMTP.Send";
const GRAPH_SEND_SCOPE = "https://graph.microsoft.com/Mail.Send";

/** The presets, in the order they are listed. */
export const PRESETS: readonly ProviderPreset[] = [
  {
    id: "gmail",
    name: "Gmail / Google Workspace",
    smtp: { host: "smtp.gmail.com", port: 465, security: "tls" },
    auth: ["app_password", "oauth2"],
    credentials: "username: your full address; password: an app password (Google Account → Security → " +
      "2-Step Verification → App passwords; needs 2-Step Verification, and a Workspace admin may turn app passwords off)",
    oauth: { provider: "google", scopes: { smtp: [GMAIL_SMTP_SCOPE], gmail_api: [GMAIL_SEND_SCOPE] } },
    https_transports: ["gmail_api"],
    limits: {
      per_day: 500,
      recipients_per_message: 100,
      note: "Gmail allows about 500 recipients a day; Google Workspace accounts 2,000 messages a day (raise " +
        "limits.per_day on the config). Exceeding them suspends sending for up to 24 hours.",
    },
    docs: "https://support.google.com/a/answer/176600",
    sending: { domains: ["gmail.com", "googleapis.com", "google.com"], spf_includes: ["_spf.google.com"] },
  },
  {
    id: "microsoft365",
    name: "Microsoft 365 / Exchange Online",
    smtp: { host: "smtp.office365.com", port: 587, security: "starttls" },
    auth: ["oauth2"],
    credentials: "OAuth only: Microsoft turns password (Basic) authentication for SMTP off by default for every " +
      "tenant at the end of December 2026, and new tenants never had it",
    oauth: {
      provider: "microsoft",
      scopes: { smtp: [OUTLOOK_SMTP_SCOPE, "offline_access"], graph: [GRAPH_SEND_SCOPE, "offline_access"] },
    },
    https_transports: ["graph"],
    limits: {
      per_day: 10_000,
      per_minute: 30,
      recipients_per_message: 500,
      note: "Exchange Online: 10,000 recipients a day, 30 messages a minute, 500 recipients a message, and " +
        "3 concurrent connections per mailbox.",
    },
    note: "Submission is on port 587 only, which hosted Supabase blocks: from a hosted project the mailbox is " +
      "reached through Microsoft Graph (sendMail) with OAuth.",
    docs:
      "https://learn.microsoft.com/en-us/office365/servicedescriptions/exchange-online-service-description/exchange-online-limits",
    sending: { domains: ["office365.com", "microsoft.com"], spf_includes: ["spf.protection.outlook.com"] },
  },
  {
    id: "outlook_com",
    name: "Outlook.com / Hotmail",
    smtp: { host: "smtp-mail.outlook.com", port: 587, security: "starttls" },
    auth: ["oauth2"],
    credentials: "OAuth only: Outlook.com no longer accepts passwords or app passwords from other apps",
    oauth: {
      provider: "microsoft",
      scopes: { smtp: [OUTLOOK_SMTP_SCOPE, "offline_access"], graph: [GRAPH_SEND_SCOPE, "offline_access"] },
    },
    https_transports: ["graph"],
    limits: {
      per_day: 300,
      recipients_per_message: 100,
      note: "Outlook.com allows 300 recipients a day and 100 per message.",
    },
    note: "Port 587 only, which hosted Supabase blocks: from a hosted project use Microsoft Graph with OAuth.",
    docs:
      "https://support.microsoft.com/en-us/office/pop-imap-and-smtp-settings-for-outlook-com-d088b986-291d-42b8-9564-9c414e2aa040",
    sending: { domains: ["outlook.com"], spf_includes: ["spf.protection.outlook.com"] },
  },
  {
    id: "icloud",
    name: "iCloud Mail",
    smtp: { host: "smtp.mail.me.com", port: 587, security: "starttls" },
    auth: ["app_password"],
    credentials: "username: your iCloud address; password: an app-specific password (appleid.apple.com → " +
      "Sign-In and Security → App-Specific Passwords; needs two-factor authentication)",
    https_transports: [],
    limits: {
      per_day: 1_000,
      recipients_per_message: 500,
      note: "iCloud Mail allows 1,000 messages a day and 500 recipients a message.",
    },
    note: "Apple documents port 587 only, which hosted Supabase blocks: iCloud Mail cannot be used from a hosted " +
      "project (it works from the local stack or a self-hosted Supabase).",
    docs: "https://support.apple.com/en-us/102525",
    sending: { domains: ["me.com", "icloud.com"], spf_includes: ["icloud.com"] },
  },
  {
    id: "fastmail",
    name: "Fastmail",
    smtp: { host: "smtp.fastmail.com", port: 465, security: "tls" },
    auth: ["app_password"],
    credentials: "username: your Fastmail address; password: an app password with SMTP access (Settings → " +
      "Privacy & Security → App passwords)",
    https_transports: [],
    limits: { note: "Fastmail's limits depend on the plan; see its sending limits page." },
    docs: "https://www.fastmail.help/hc/en-us/articles/1500000278342-Server-names-and-ports",
    sending: { domains: ["fastmail.com"], spf_includes: ["spf.messagingengine.com"] },
  },
  {
    id: "zoho",
    name: "Zoho Mail",
    smtp: { host: "smtp.zoho.com", port: 465, security: "tls" },
    auth: ["password", "app_password"],
    credentials: "username: your Zoho address; password: your password, or an app-specific password with " +
      "two-factor authentication. Organisation (custom domain) accounts use smtppro.zoho.com; other data centres " +
      "smtp.zoho.eu, smtp.zoho.in, ...",
    https_transports: [],
    limits: { note: "Zoho Mail's limits depend on the plan." },
    docs: "https://www.zoho.com/mail/help/zoho-smtp.html",
    sending: {
      domains: ["zoho.com", "zoho.eu", "zoho.in"],
      spf_includes: ["zoho.com", "zoho.eu", "zoho.in", "zohomail.com"],
    },
  },
  {
    id: "yahoo",
    name: "Yahoo Mail",
    smtp: { host: "smtp.mail.yahoo.com", port: 465, security: "tls" },
    auth: ["app_password"],
    credentials: "username: your Yahoo address; password: an app password (Account Security → Generate app password)",
    https_transports: [],
    limits: { note: "Yahoo does not publish exact limits; sending many messages quickly gets an account paused." },
    docs: "https://help.yahoo.com/kb/SLN4724.html",
    sending: { domains: ["yahoo.com"], spf_includes: ["_spf.mail.yahoo.com"] },
  },
  {
    id: "amazon_ses",
    name: "Amazon SES",
    smtp: { host: "email-smtp.us-east-1.amazonaws.com", port: 465, security: "tls" },
    auth: ["api_key"],
    credentials: "username and password: SES SMTP credentials (SES console → SMTP settings → Create SMTP " +
      "credentials), not your AWS access keys; set host to your region's endpoint (email-smtp.<region>.amazonaws.com)",
    https_transports: [],
    limits: {
      note: "Your account's sending quota and rate (a sandboxed account: 200 messages a day, 1 a second, to " +
        "verified addresses only).",
    },
    note: "Ports 465, 2465 and 2587 are reachable from hosted Supabase.",
    docs: "https://docs.aws.amazon.com/ses/latest/dg/smtp-connect.html",
    sending: { domains: ["amazonaws.com"], spf_includes: ["amazonses.com"] },
  },
  {
    id: "mailgun",
    name: "Mailgun",
    smtp: { host: "smtp.mailgun.org", port: 465, security: "tls" },
    auth: ["api_key"],
    credentials: "username and password: the domain's SMTP credentials (Sending → Domain settings → SMTP " +
      "credentials); EU domains use smtp.eu.mailgun.org",
    https_transports: [],
    limits: { note: "Your plan's sending limits." },
    docs: "https://documentation.mailgun.com/docs/mailgun/user-manual/sending-messages/send-smtp",
    sending: { domains: ["mailgun.org"], spf_includes: ["mailgun.org"] },
  },
  {
    id: "sendgrid",
    name: "SendGrid",
    smtp: { host: "smtp.sendgrid.net", port: 465, security: "tls" },
    auth: ["api_key"],
    credentials: 'username: the word "apikey"; password: an API key with Mail Send permission',
    https_transports: [],
    limits: { note: "Your plan's sending limits." },
    docs: "https://www.twilio.com/docs/sendgrid/for-developers/sending-email/integrating-with-the-smtp-api",
    sending: { domains: ["sendgrid.net"], spf_includes: ["sendgrid.net"] },
  },
  {
    id: "postmark",
    name: "Postmark",
    smtp: { host: "smtp.postmarkapp.com", port: 2525, security: "starttls" },
    auth: ["api_key"],
    credentials: "username and password: the server's API token (Server → API Tokens), both fields the same",
    https_transports: [],
    limits: { recipients_per_message: 50, note: "At most 50 recipients a message." },
    note: "Postmark offers STARTTLS on 25, 587 and 2525; 2525 is the one hosted Supabase can reach.",
    docs: "https://postmarkapp.com/developer/user-guide/send-email-with-smtp",
    sending: { domains: ["postmarkapp.com"], spf_includes: ["spf.mtasv.net"] },
  },
  {
    id: "brevo",
    name: "Brevo",
    smtp: { host: "smtp-relay.brevo.com", port: 465, security: "tls" },
    auth: ["api_key"],
    credentials: "username: your SMTP login (SMTP & API → SMTP); password: an SMTP key",
    https_transports: [],
    limits: { note: "Your plan's daily sending limit." },
    docs: "https://help.brevo.com/hc/en-us/articles/7924908994450",
    sending: { domains: ["brevo.com", "sendinblue.com"], spf_includes: ["spf.brevo.com", "spf.sendinblue.com"] },
  },
];

/** The preset ids (the create request's `preset`). */
export const PRESET_IDS = PRESETS.map((p) => p.id) as [string, ...string[]];
