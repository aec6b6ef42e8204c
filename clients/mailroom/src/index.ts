// @mailroom/client: a small typed client for mailroom's functions, over plain fetch with a
// user's access token or over supabase-js (`supabase.functions.invoke`, which sends the
// signed-in user's session). Every failure is one MailroomError carrying the server's stable
// `code`, the HTTP status and the details.
import type { FunctionCall } from "./generated/calls.ts";
import type * as T from "./types.ts";

export type * from "./types.ts";
export { functionCall } from "./generated/calls.ts";
export type { CallSpec, FunctionCall } from "./generated/calls.ts";
export { type ToolDefinition, TOOLS } from "./generated/tools.ts";

/** The API version this client is written against (the server's `/functions/v1`). */
export const API_VERSION = "v1";

/** What the server answered with instead of a result. */
export class MailroomError extends Error {
  override name = "MailroomError";
  constructor(
    /** The HTTP status (0 when the request never got an answer). */
    readonly status: number,
    /** The stable error code, e.g. `template_data_missing`, `rate_limited`, `smtp_recipients_rejected`. */
    readonly code: string,
    message: string,
    /** Whatever the server added: `retryable`, `retry_after_seconds`, `recipients`, `issues`, ... */
    readonly details: Record<string, unknown> = {},
    /** The server's request id, for its logs. */
    readonly requestId?: string,
  ) {
    super(message);
  }
}

/** The minimal part of a supabase-js client this one uses (`supabase.functions.invoke`). */
export interface SupabaseLike {
  functions: {
    // deno-lint-ignore no-explicit-any
    invoke(name: string, options?: any): Promise<{ data: unknown; error: unknown }>;
  };
}

/** How to reach mailroom: a project URL and a token, or a signed-in supabase-js client. */
export type MailroomClientOptions =
  | {
    /** The project URL (`https://<ref>.supabase.co`, or `http://127.0.0.1:54321` locally). */
    url: string;
    /** The user's access token, or a function returning the current one. */
    accessToken: string | (() => string | Promise<string>);
    /** A fetch to use instead of the global one. */
    fetch?: typeof fetch;
  }
  | { supabase: SupabaseLike };

type Method = "GET" | "POST" | "PUT" | "PATCH" | "DELETE";

interface Call {
  fn: string;
  method: Method;
  path?: string;
  query?: Record<string, string | number | string[] | undefined>;
  body?: unknown;
  idempotencyKey?: string;
}

/** One path segment (an id or a name); empty, "." and ".." would address another route. */
function segment(value: string): string {
  if (value === "" || value === "." || value === "..") {
    throw new MailroomError(0, "invalid_request", `${JSON.stringify(value)} is not an id or a name`);
  }
  return `/${encodeURIComponent(value)}`;
}

/** Standard base64 of bytes, a slice at a time (no Buffer: the SDK runs in browsers too). */
function base64(bytes: Uint8Array): string {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

/** A typed client for every mailroom function. */
export class MailroomClient {
  constructor(private readonly options: MailroomClientOptions) {}

  /**
   * Make one function call (what the typed methods and the agent tools use). `via` names the
   * agent tool making it (`x-mailroom-via`): under the owner's `approval: agents`, its sends wait.
   */
  async call<R = unknown>(call: Call | FunctionCall, options: { via?: string } = {}): Promise<R> {
    const query = new URLSearchParams();
    for (const [name, value] of Object.entries(call.query ?? {})) {
      if (value === undefined || value === "") continue;
      query.set(name, Array.isArray(value) ? value.join(",") : String(value));
    }
    const target = `${call.fn}${call.path ?? ""}${query.size > 0 ? `?${query}` : ""}`;
    const headers: Record<string, string> = {};
    if (call.idempotencyKey) headers["idempotency-key"] = call.idempotencyKey;
    if (options.via) headers["x-mailroom-via"] = options.via;
    if ("supabase" in this.options) return await this.viaSupabase<R>(target, call, headers);

    let token: string;
    try {
      token = typeof this.options.accessToken === "function"
        ? await this.options.accessToken()
        : this.options.accessToken;
    } catch (error) {
      throw new MailroomError(0, "token_unavailable", `Could not get an access token: ${(error as Error).message}`);
    }
    if (call.body !== undefined) headers["content-type"] = "application/json";
    let res: Response;
    try {
      res = await (this.options.fetch ?? fetch)(`${this.options.url.replace(/\/+$/, "")}/functions/v1/${target}`, {
        method: call.method,
        headers: { ...headers, authorization: `Bearer ${token}` },
        body: call.body === undefined ? undefined : JSON.stringify(call.body),
      });
    } catch (error) {
      const failure = new MailroomError(0, "network_error", `Could not reach mailroom: ${(error as Error).message}`);
      (failure as { cause?: unknown }).cause = error;
      throw failure;
    }
    return await this.result<R>(res);
  }

  private async viaSupabase<R>(target: string, call: Call | FunctionCall, headers: Record<string, string>) {
    const { supabase } = this.options as { supabase: SupabaseLike };
    const { data, error } = await supabase.functions.invoke(target, {
      method: call.method,
      body: call.body,
      headers,
    });
    if (!error) return data as R;
    // A Response (whichever fetch made it) when the function answered; else a fetch failure.
    const context = (error as { context?: { status?: unknown; text?: unknown } }).context;
    if (typeof context?.status === "number" && typeof context.text === "function") {
      return await this.result<R>(context as unknown as Response);
    }
    const failure = new MailroomError(
      0,
      "network_error",
      (error as Error).message ?? "The function could not be called",
    );
    (failure as { cause?: unknown }).cause = context ?? error;
    throw failure;
  }

  private async result<R>(res: Response): Promise<R> {
    const text = await res.text();
    let body: unknown = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      // Not JSON: described below.
    }
    if (res.ok) return body as R;
    const error = (body as { error?: { code?: string; message?: string; details?: Record<string, unknown> } })?.error;
    throw new MailroomError(
      res.status,
      error?.code ?? "http_error",
      error?.message ?? `HTTP ${res.status}: ${text.slice(0, 200)}`,
      error?.details ?? {},
      res.headers.get("x-request-id") ?? undefined,
    );
  }

  /** Send now (200) or at `scheduled_at` (202 `scheduled`); `idempotencyKey` makes a retry safe. */
  send(request: T.SendEmailRequest, options: { idempotencyKey?: string } = {}): Promise<T.SendResult> {
    return this.call({ fn: "send-email", method: "POST", body: request, idempotencyKey: options.idempotencyKey });
  }

  /**
   * Check and render a send without sending it: the message as it would be built and what would
   * happen (`would_send`, `would_wait_for_approval`, `would_be_refused` with the code).
   */
  dryRun(request: Omit<T.SendEmailRequest, "dry_run">): Promise<T.DryRunResult> {
    return this.call({ fn: "send-email", method: "POST", body: { ...request, dry_run: true } });
  }

  /** Cancel a scheduled or queued send that has not started. */
  async cancel(id: string): Promise<{ id: string; status: "cancelled" }> {
    return await this.call({ fn: "send-email", method: "POST", path: `${segment(id)}/cancel` });
  }

  /** Send again a message the outbox set aside after a worker died holding it (`error_class: worker_crashed`). */
  async retry(id: string): Promise<{ id: string; status: "queued" }> {
    return await this.call({ fn: "send-email", method: "POST", path: `${segment(id)}/retry` });
  }

  /** SMTP configurations. */
  readonly configs = {
    list: () => this.call<{ configs: T.SmtpConfig[] }>({ fn: "smtp-configs", method: "GET" }).then((r) => r.configs),
    /** The config's From domain as DNS says: SPF (naming the provider?) and DMARC, a verdict and what to change. */
    deliverability: async (ref: string) =>
      await this.call<T.Deliverability>({ fn: "smtp-configs", method: "GET", path: `${segment(ref)}/deliverability` }),
    /** Well-known providers (Gmail, Microsoft 365, ...): create a config with `preset: id` and only credentials. */
    presets: () =>
      this.call<{ presets: T.ProviderPreset[] }>({ fn: "smtp-configs", method: "GET", path: segment("presets") })
        .then((r) => r.presets),
    get: async (ref: string) =>
      await this.call<T.SmtpConfig>({ fn: "smtp-configs", method: "GET", path: segment(ref) }),
    create: (config: T.CreateConfigRequest) =>
      this.call<T.SmtpConfigWithWarnings>({ fn: "smtp-configs", method: "POST", body: config }),
    update: async (ref: string, change: T.UpdateConfigRequest) =>
      await this.call<T.SmtpConfigWithWarnings>({
        fn: "smtp-configs",
        method: "PATCH",
        path: segment(ref),
        body: change,
      }),
    delete: async (ref: string) =>
      await this.call<{ id: string; deleted: true }>({ fn: "smtp-configs", method: "DELETE", path: segment(ref) }),
    verify: async (ref: string) =>
      await this.call<T.Verification>({ fn: "smtp-configs", method: "POST", path: `${segment(ref)}/verify` }),
    verifications: async (ref: string) =>
      await this.call<{ config_id: string; verifications: T.VerificationRecord[] }>({
        fn: "smtp-configs",
        method: "GET",
        path: `${segment(ref)}/verifications`,
      }).then((r) => r.verifications),
    setDefault: async (ref: string) =>
      await this.call<T.SmtpConfig>({ fn: "smtp-configs", method: "POST", path: `${segment(ref)}/default` }),
    activate: async (ref: string) =>
      await this.call<T.SmtpConfig>({ fn: "smtp-configs", method: "POST", path: `${segment(ref)}/activate` }),
    deactivate: async (ref: string) =>
      await this.call<T.SmtpConfig>({ fn: "smtp-configs", method: "POST", path: `${segment(ref)}/deactivate` }),
    /**
     * The config's mailbox over IMAP: bounce and complaint reports read back from its inbox (every
     * few minutes by the outbox worker, or now with `check`), and a copy of each sent message in Sent.
     * Changing or removing the settings takes your own session (403 `first_party_session_required` for an agent).
     */
    imap: {
      get: async (ref: string) =>
        await this.call<T.ImapSettings>({ fn: "smtp-configs", method: "GET", path: `${segment(ref)}/imap` }),
      set: async (ref: string, settings: T.ImapSettingsRequest) =>
        await this.call<T.ImapSettings>({
          fn: "smtp-configs",
          method: "PATCH",
          path: `${segment(ref)}/imap`,
          body: settings,
        }),
      remove: async (ref: string) =>
        await this.call<{ config_id: string; deleted: true }>({
          fn: "smtp-configs",
          method: "DELETE",
          path: `${segment(ref)}/imap`,
        }),
      check: async (ref: string) =>
        await this.call<T.MailboxCheck>({ fn: "smtp-configs", method: "POST", path: `${segment(ref)}/imap/check` }),
    },
  };

  /** Bulk sends through the outbox. */
  readonly bulk = {
    send: (request: T.SendBulkRequest, options: { idempotencyKey?: string } = {}) =>
      this.call<T.BulkAccepted>({
        fn: "send-bulk",
        method: "POST",
        body: request,
        idempotencyKey: options.idempotencyKey,
      }),
    /** Check and render a batch without queueing it: what would happen, and the first messages as built. */
    dryRun: (request: Omit<T.SendBulkRequest, "dry_run">) =>
      this.call<T.BulkDryRun>({ fn: "send-bulk", method: "POST", body: { ...request, dry_run: true } }),
    status: async (batchId: string) =>
      await this.call<T.BatchStatus>({ fn: "send-bulk", method: "GET", path: segment(batchId) }),
    list: (options: { before?: string; limit?: number } = {}) =>
      this.call<T.BatchList>({
        fn: "send-bulk",
        method: "GET",
        query: options,
      }),
    cancel: async (batchId: string) =>
      await this.call<{ batch_id: string; cancelled: number }>({
        fn: "send-bulk",
        method: "POST",
        path: `${segment(batchId)}/cancel`,
      }),
    /**
     * The batch's status every `intervalMs` (default 2 s) until nothing is left to send:
     * `for await (const status of client.bulk.progress(id)) console.log(status.counts)`.
     */
    progress: (batchId: string, options: { intervalMs?: number; signal?: AbortSignal } = {}) =>
      this.progress(batchId, options),
  };

  private async *progress(
    batchId: string,
    { intervalMs = 2000, signal }: { intervalMs?: number; signal?: AbortSignal },
  ): AsyncGenerator<T.BatchStatus> {
    while (!signal?.aborted) {
      const status = await this.bulk.status(batchId);
      yield status;
      const { queued, scheduled, sending } = status.counts;
      if (queued + scheduled + sending === 0) return;
      // Wait, but wake as soon as the caller aborts.
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, intervalMs);
        function done() {
          clearTimeout(timer);
          signal?.removeEventListener("abort", done);
          resolve();
        }
        signal?.addEventListener("abort", done, { once: true });
      });
    }
  }

  /** What was sent, computed by the server. */
  readonly analytics = {
    summary: (query: T.AnalyticsQuery = {}) =>
      this.call<T.AnalyticsSummary>({ fn: "email-analytics", method: "GET", query: { ...query } }),
    messages: (query: T.MessagesQuery = {}) =>
      this.call<T.MessagePage>({
        fn: "email-analytics",
        method: "GET",
        path: "/messages",
        query: { ...query },
      }),
    message: async (id: string) =>
      await this.call<T.Message>({ fn: "email-analytics", method: "GET", path: `/messages${segment(id)}` }),
    /** What a message said: headers, text and HTML parts (show HTML sandboxed), attachments listed. */
    content: async (id: string) =>
      await this.call<T.MessageContent>({
        fn: "email-analytics",
        method: "GET",
        path: `/messages${segment(id)}/content`,
      }),
  };

  /**
   * Files stored once and attached by id (`attachments: [{ id }]`) to any number of sends: a
   * batch carries one copy. Storing the same bytes, name and type again returns the same record.
   */
  readonly attachments = {
    /** Store bytes (sent as base64 JSON, which every transport carries). */
    upload: (file: { filename: string; content: Uint8Array; content_type?: string }) =>
      this.call<T.Attachment>({
        fn: "attachments",
        method: "POST",
        body: { ...file, content: base64(file.content) },
      }),
    /** Have the server fetch an https file once (public hosts only) and store it. */
    fromUrl: (url: string, options: { filename?: string; content_type?: string } = {}) =>
      this.call<T.Attachment>({ fn: "attachments", method: "POST", body: { url, ...options } }),
    list: (query: { limit?: number; cursor?: string } = {}) =>
      this.call<T.AttachmentList>({ fn: "attachments", method: "GET", query: { ...query } }),
    get: async (id: string) => await this.call<T.Attachment>({ fn: "attachments", method: "GET", path: segment(id) }),
    /** 409 `attachment_in_use` while a waiting message still attaches it. */
    delete: async (id: string) =>
      await this.call<{ id: string; deleted: true }>({ fn: "attachments", method: "DELETE", path: segment(id) }),
  };

  /**
   * Addresses your mail never goes to again (unsubscribed, hard bounce, complaint, manual): every
   * send skips them and reports them as `suppressed`. An agent's token may add, never remove.
   */
  readonly suppressions = {
    list: (query: { limit?: number; after?: string; reason?: T.Suppression["reason"] } = {}) =>
      this.call<T.SuppressionList>({ fn: "suppressions", method: "GET", query: { ...query } }),
    get: async (address: string) =>
      await this.call<T.Suppression>({ fn: "suppressions", method: "GET", path: segment(address) }),
    add: (addresses: string | string[], options: { reason?: T.Suppression["reason"]; source?: string } = {}) =>
      this.call<T.SuppressionsAdded>({
        fn: "suppressions",
        method: "POST",
        body: { ...(Array.isArray(addresses) ? { addresses } : { address: addresses }), ...options },
      }),
    /** Mail may go to it again: your own session only (403 `first_party_session_required` for an agent). */
    remove: async (address: string) =>
      await this.call<{ address: string; deleted: true }>({
        fn: "suppressions",
        method: "DELETE",
        path: segment(address),
      }),
  };

  /**
   * Your HTTPS endpoints that receive your message events (sent, bounced, failed, ...), signed per
   * Standard Webhooks: verify each delivery with the secret `create` returns (once). Adding,
   * changing and removing take your own session (403 `first_party_session_required` for an agent).
   */
  readonly webhooks = {
    list: () => this.call<{ webhooks: T.Webhook[] }>({ fn: "webhooks", method: "GET" }).then((r) => r.webhooks),
    get: async (id: string) => await this.call<T.Webhook>({ fn: "webhooks", method: "GET", path: segment(id) }),
    create: (webhook: T.CreateWebhookRequest) =>
      this.call<T.WebhookCreated>({ fn: "webhooks", method: "POST", body: webhook }),
    update: async (id: string, change: T.UpdateWebhookRequest) =>
      await this.call<T.Webhook>({ fn: "webhooks", method: "PATCH", path: segment(id), body: change }),
    delete: async (id: string) =>
      await this.call<{ id: string; deleted: true }>({ fn: "webhooks", method: "DELETE", path: segment(id) }),
    rotateSecret: async (id: string) =>
      await this.call<{ id: string; secret: string; previous_valid_until: string }>({
        fn: "webhooks",
        method: "POST",
        path: `${segment(id)}/rotate-secret`,
      }),
    test: async (id: string) =>
      await this.call<{ id: string; event_type: "webhook.test" }>({
        fn: "webhooks",
        method: "POST",
        path: `${segment(id)}/test`,
      }),
    deliveries: async (id: string, query: { limit?: number } = {}) =>
      await this.call<T.WebhookDeliveries>({
        fn: "webhooks",
        method: "GET",
        path: `${segment(id)}/deliveries`,
        query: { ...query },
      }),
  };

  /** Email templates. */
  readonly templates = {
    list: () => this.call<{ templates: T.Template[] }>({ fn: "templates", method: "GET" }).then((r) => r.templates),
    get: async (ref: string) => await this.call<T.Template>({ fn: "templates", method: "GET", path: segment(ref) }),
    create: (template: T.CreateTemplateRequest) =>
      this.call<T.Template>({ fn: "templates", method: "POST", body: template }),
    update: async (ref: string, change: T.UpdateTemplateRequest) =>
      await this.call<T.Template>({ fn: "templates", method: "PATCH", path: segment(ref), body: change }),
    delete: async (ref: string) =>
      await this.call<{ id: string; deleted: true }>({ fn: "templates", method: "DELETE", path: segment(ref) }),
    /** Render as a send would; `subject` is the send's own (needed for a template without one). */
    preview: async (ref: string, data: Record<string, unknown> = {}, options: { subject?: string } = {}) =>
      await this.call<T.TemplatePreview>({
        fn: "templates",
        method: "POST",
        path: `${segment(ref)}/preview`,
        body: { data, ...options },
      }),
  };

  /**
   * Guardrails and the stop button. An agent's token (one with `client_id`) may tighten them
   * and press stop; loosening and lifting the stop answer 403 `first_party_session_required`.
   */
  readonly oversight = {
    guardrails: () => this.call<T.GuardrailsList>({ fn: "oversight", method: "GET", path: "/guardrails" }),
    /** Replace the account's guardrails (`config` for one config's). */
    setGuardrails: (guardrails: T.GuardrailsRequest) =>
      this.call<T.Guardrails>({ fn: "oversight", method: "PUT", path: "/guardrails", body: guardrails }),
    stop: (scope: { config?: string; reason?: string } = {}) =>
      this.call<T.Guardrails>({ fn: "oversight", method: "POST", path: "/stop", body: scope }),
    resume: (scope: { config?: string } = {}) =>
      this.call<T.Guardrails>({ fn: "oversight", method: "POST", path: "/resume", body: scope }),
    events: (query: { before?: number; limit?: number } = {}) =>
      this.call<T.OversightEvents>({ fn: "oversight", method: "GET", path: "/events", query: { ...query } }),
    /** Sends waiting for approval, oldest first. */
    approvals: (query: { after?: string; limit?: number } = {}) =>
      this.call<T.ApprovalList>({ fn: "oversight", method: "GET", path: "/approvals", query: { ...query } }),
    /** One held send with what would be sent. */
    approval: async (id: string) =>
      await this.call<T.ApprovalDetail>({ fn: "oversight", method: "GET", path: `/approvals${segment(id)}` }),
    /** Approve (the owner's own session only: an agent's token gets 403). */
    approve: async (id: string) =>
      await this.call<T.ApprovalDecision>({
        fn: "oversight",
        method: "POST",
        path: `/approvals${segment(id)}/approve`,
        body: {},
      }),
    reject: async (id: string, reason?: string) =>
      await this.call<T.ApprovalDecision>({
        fn: "oversight",
        method: "POST",
        path: `/approvals${segment(id)}/reject`,
        body: reason === undefined ? {} : { reason },
      }),
    /** Approve or reject every pending message of a batch. */
    decideBatch: async (batchId: string, approve: boolean, reason?: string) =>
      await this.call<T.ApprovalDecision>({
        fn: "oversight",
        method: "POST",
        path: `/approvals/batch${segment(batchId)}/${approve ? "approve" : "reject"}`,
        body: reason === undefined ? {} : { reason },
      }),
  };
}

/**
 * A client for mailroom's functions.
 *
 * @example
 * ```ts
 * const mailroom = createMailroomClient({ supabase }); // a signed-in supabase-js client
 * await mailroom.send({ to: "jane@example.com", subject: "Hi", text: "Hello" }, { idempotencyKey: crypto.randomUUID() });
 * ```
 */
export function createMailroomClient(options: MailroomClientOptions): MailroomClient {
  return new MailroomClient(options);
}
