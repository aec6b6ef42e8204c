// The outbox worker: claim due rows (fairly, under a lease), send each as its owner, record
// the outcome in the owner's RLS context, and stop within a time budget. Any number of
// workers may run at once; rows are claimed with FOR UPDATE SKIP LOCKED (see the outbox
// migration). Workers have no user JWT: for each row they act with the same claims withUser
// sets for that row's user, so RLS and auth.uid() hold exactly as for the user's own request.
//
// Each config's rows go through a lane of their own: lanes run concurrently, and each sends
// its groups over up to the config's `max_connections` sessions to that server at once (its
// first message in a run alone, so wrong credentials cost one login, not one per session), so
// a slow, refusing or rate-limited server holds only its own mail. What the run holds is
// bounded by rows and by payload bytes (the claim's bound), so no user's payloads can exhaust
// the instance's memory; its CPU time is bounded too (the platform's 2 s per invocation).
import { checkDueMailboxes, sentCopies } from "../mailbox/mod.ts";
import { deliverWebhooks } from "../webhooks/mod.ts";
import process from "node:process";
import type { UserClaims } from "../auth.ts";
import type { AppContext } from "../context.ts";
import { type Tx, withUser } from "../db.ts";
import { ApiError } from "../http.ts";
import { parseBody, recipientList, sendEmailRequest } from "../schemas.ts";
import {
  type Outcome,
  outcomeOf,
  type PreparedSend,
  prepareSendGroup,
  refusalOutcome,
  settleLogin,
  transmitOnly,
} from "../send.ts";
import type { RecipientOutcome } from "../smtp/outcome.ts";
import { createSessionPool, type SessionPool } from "../smtp/pool.ts";
import { NotStarted } from "../smtp/smtp.ts";
import { DEFAULT_CPU_BUDGET_MS } from "./limits.ts";

/** Batch contents kept per drain (each up to 4 MiB). */
const BATCH_CACHE_ENTRIES = 4;

/** An outbox row as the worker needs it. */
interface OutboxRow {
  id: string;
  user_id: string;
  config_id: string | null;
  batch_id: string | null;
  message_id: string;
  created_at: Date;
  first_attempt_at: Date | null;
  payload: unknown;
  payload_bytes: number | null;
  /** Times a worker died holding this row: a suspect (more than 0) is claimed and sent alone. */
  lease_losses: number;
  recipients: RecipientOutcome[] | null;
  /** Whether it was held for approval (what was approved is checked again before it goes). */
  held: boolean;
  /** For a row that fails before it is built: the recipients and subject its payload names. */
  intended?: NonNullable<Outcome["sent"]>;
}

/** How one drain went. */
export interface DrainReport {
  claimed: number;
  sent: number;
  queued: number;
  failed: number;
  unknown: number;
  /** Rows that ended with nobody to send to: every recipient on the owner's suppression list. */
  suppressed: number;
  /** Owners' mailboxes read for bounce reports meanwhile. */
  mailboxes_checked: number;
  /** Webhook events delivered meanwhile (2xx from the receiver). */
  webhooks_delivered: number;
  postponed: number;
  swept: number;
  duration_ms: number;
  /**
   * The most memory the run was seen to hold, in MiB: V8's used heap plus external memory (the
   * two the Edge Runtime adds up against a worker's 256 MB), sampled after each claim, each
   * preparation and each send.
   */
  peak_memory_mib: number;
}

/** How a worker runs. */
export interface DrainOptions {
  /** A name for the leases it takes (unique per worker). */
  workerId: string;
  /** Stop claiming after this long (well inside the platform's limits). */
  budgetMs: number;
  /** Rows claimed per round trip. */
  batchSize?: number;
  /** How long a claimed row stays ours without renewal. */
  leaseSeconds?: number;
  /** Payload bytes claimed per round trip (the first row always; see private.claim_outbox). */
  maxClaimBytes?: number;
  /** Stop claiming and starting sends once the process has used this much CPU time in the run. */
  cpuBudgetMs?: number;
}

/** Sessions at once to one config's server, whatever the config says (its `max_connections` is at most this). */
export const MAX_SESSIONS_PER_CONFIG = 10;

/** How long a stopped config's messages wait before the worker looks again (lifting the stop makes them due at once). */
const STOPPED_RECHECK_SECONDS = 300;

/** Payload bytes per claim by default: two claims in hand stay far below a function's 256 MB. */
export const DEFAULT_CLAIM_BYTES = 8 * 1024 * 1024;

/**
 * Drain the outbox until it is empty or the time budget is spent.
 *
 * Three stages overlap: while chunks' messages go out (each config in its lane, over up to
 * its max_connections pooled SMTP sessions), the next chunk is claimed and prepared, and
 * earlier outcomes are recorded. Each message is marked `sending` (committed) by the session
 * that is about to send it, right before its first byte, so a worker killed mid-send leaves
 * `sending` (the sweep marks them unknown) only the messages that were on the wire, at most
 * one per session, and those it sent but had not recorded yet (see the recorder).
 *
 * @example
 * ```ts
 * const report = await drainOutbox(ctx, { workerId: crypto.randomUUID(), budgetMs: 50_000 });
 * ```
 */
export async function drainOutbox(ctx: AppContext, options: DrainOptions): Promise<DrainReport> {
  const started = performance.now();
  const lease = options.leaseSeconds ?? 90;
  const run: Run = {
    ctx,
    workerId: options.workerId,
    deadline: Date.now() + options.budgetMs,
    cpu: cpuClock(options.cpuBudgetMs ?? DEFAULT_CPU_BUDGET_MS),
    chunkSize: options.batchSize ?? DEFAULT_CHUNK,
    maxClaimBytes: options.maxClaimBytes ?? DEFAULT_CLAIM_BYTES,
    lease,
    // A message in flight keeps its lease for longer than its SMTP session can last.
    inFlightLease: Math.max(lease, Math.ceil((ctx.config.smtp.sessionTimeoutMs ?? 0) / 1000) + 30),
    report: {
      claimed: 0,
      sent: 0,
      queued: 0,
      failed: 0,
      unknown: 0,
      suppressed: 0,
      mailboxes_checked: 0,
      webhooks_delivered: 0,
      postponed: 0,
      swept: 0,
      duration_ms: 0,
      peak_memory_mib: 0,
    },
    batches: new Map(),
    paused: new Set(),
    backedOff: new Map(),
    warm: new Set(),
    warming: new Map(),
    sampledAt: 0,
    attempted: 0,
    // The instance's sessions, kept across runs (a run's first messages skip the TCP and TLS
    // handshakes and the login when the instance ran recently); where reuse is off, the run's own.
    pool: ctx.smtpPool ?? createSessionPool({ maxPerKey: MAX_SESSIONS_PER_CONFIG }),
    recorder: undefined!,
    marker: undefined!,
  };
  run.recorder = createRecorder(run);
  run.marker = createMarker(run);
  // Sends nobody approved in time end as expired, unsent, in the same round trip.
  const [{ swept }] = await ctx.sql<{ swept: number }[]>`
    select private.sweep_outbox() as swept, private.expire_pending_approvals() as expired`;
  // Fingerprints past their duplicate window, and stored attachments past their retention, are
  // forgotten meanwhile (never in the sends' way: a failure here is logged, and the run goes on).
  const forgetting = ctx.sql`select private.forget_expired_send_fingerprints(), private.forget_expired_attachments(),
                                    private.forget_old_message_contents(), private.forget_old_webhook_deliveries()`
    .catch((error) => logError("could not forget expired fingerprints and attachments", error));
  run.report.swept = swept;
  try {
    await runLanes(run);
  } finally {
    await forgetting;
    await run.recorder.settled();
    if (run.pool !== ctx.smtpPool) run.pool.close();
    // What is still claimed and not started goes back now, not when its lease runs out (a
    // lease that runs out counts as a worker's death against its rows).
    await ctx.sql`select private.release_outbox_leases(${run.workerId})`.catch((error) =>
      logError("could not release outbox leases", error)
    );
  }
  // Then, with what is left of the run (never before the sends are recorded and their leases
  // given back), bounce reports in the owners' mailboxes: each due mailbox every few minutes.
  // And the owners' webhook events.
  if (!run.cpu.spent(0.5) && Date.now() < run.deadline) {
    run.report.mailboxes_checked = (await checkDueMailboxes(ctx, { deadline: run.deadline })).mailboxes;
    run.report.webhooks_delivered = (await deliverWebhooks(ctx, {
      deadline: run.deadline,
      stop: () => run.cpu.spent(0.75),
    })).delivered;
  }
  run.report.duration_ms = Math.round(performance.now() - started);
  return run.report;
}

/**
 * The groups of one config (or of one owner's default). Up to `width` of them are sent at once,
 * their messages sharing the lane's `width` session slots (a claim deals each config only a
 * few rows when many users wait, so one group alone would rarely fill the sessions).
 */
interface Lane {
  /** Groups not started yet. */
  groups: Group[];
  rows: number;
  bytes: number;
  /** Sessions its config may hold at once (its max_connections, at most MAX_SESSIONS_PER_CONFIG). */
  width: number;
  slots: Slots;
  /** Fired when a group is added (a driver with room starts it at once). */
  added: { wait: Promise<void>; fire: () => void };
  running: Promise<void> | null;
}

/** Permits for a lane's messages in flight: at most `limit()` at once (a waiter is woken per release). */
class Slots {
  #inUse = 0;
  #waiting: (() => void)[] = [];
  constructor(private readonly limit: () => number) {}
  async acquire(): Promise<void> {
    while (this.#inUse >= this.limit()) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    this.#inUse++;
  }
  release(): void {
    this.#inUse--;
    this.#waiting.shift()?.();
  }
}

/**
 * Claim while there is time and room, hand each group to its config's lane, and wait for the
 * lanes. Room: at most two claims' worth of rows (or, when more sessions are open at once, four
 * rows per session, up to MAX_ROWS_IN_HAND) and one claim's worth of payload bytes in hand (a
 * large row is prepared only once the one before it has gone), and a config whose lane already
 * holds a full chunk (or four rows per session) is left out of the next claim (named busy). A claim holding a
 * suspect row (its last worker died holding it) is sent before anything else is claimed, so
 * should it kill this worker too, no other row is charged with it.
 */
async function runLanes(run: Run): Promise<void> {
  const lanes = new Map<string, Lane>();
  let changed = signal();
  const waitForChange = async () => {
    await changed.wait;
    changed = signal();
  };
  const send = async (lane: Lane, group: Group) => {
    try {
      const { later, retryAfterSeconds, reason } = await sendGroup(run, group, lane.slots);
      if (later.length > 0) await postpone(run, later, retryAfterSeconds, reason);
    } catch (error) {
      // Its rows stay claimed; release_outbox_leases gives them back when the run ends.
      logError("outbox group failed", error);
    }
    lane.rows -= group.rows.length;
    lane.bytes -= bytesOf(group.rows);
    changed.fire();
  };
  const drive = (key: string, lane: Lane) => {
    lane.running = (async () => {
      const active = new Set<Promise<void>>();
      while (lane.groups.length > 0 || active.size > 0) {
        while (lane.groups.length > 0 && active.size < lane.width) {
          const sending: Promise<void> = send(lane, lane.groups.shift()!).finally(() => active.delete(sending));
          active.add(sending);
        }
        await Promise.race([...active, lane.added.wait]);
        // A group added before this point is in lane.groups; one added after fires the new signal.
        lane.added = signal();
      }
      lanes.delete(key);
      changed.fire();
    })();
  };
  const lanesDone = () => Promise.all([...lanes.values()].map((lane) => lane.running));
  let lastLook = 0;
  // A suspect is taken only with empty hands, and one per run: it never shares this worker's
  // death with other rows, and never crowds them out of a claim.
  let suspectTaken = false;
  // Leases are renewed while this worker lives: only a death lets them run out.
  const renewal = setInterval(() => {
    run.ctx.sql`select private.renew_outbox_leases(${run.workerId}, ${run.lease})`.catch((error) =>
      logError("could not renew outbox leases", error)
    );
  }, Math.max(1, Math.floor(run.lease / 3)) * 1000);

  try {
    // The first claim is always made: a run that claims nothing says the outbox is empty.
    for (let first = true; first || !outOfTime(run, true); first = false) {
      let rows = 0, bytes = 0, width = 0;
      for (const lane of lanes.values()) {
        rows += lane.rows;
        bytes += lane.bytes;
        width += lane.width;
      }
      const inHand = Math.min(MAX_ROWS_IN_HAND, Math.max(2 * run.chunkSize, 4 * width));
      if (rows >= inHand || bytes >= run.maxClaimBytes) {
        await waitForChange();
        continue;
      }
      // The configs in hand get more in one larger claim once half of what is in hand has gone
      // (a claim deals each user a few rows, and each group costs a transaction to prepare);
      // meanwhile a small claim now and then takes only configs not in hand: someone else's
      // mail, queued meanwhile, waits for no lane.
      const topUp = lanes.size === 0 || rows <= inHand / 2;
      const sinceLook = performance.now() - lastLook;
      if (!topUp && sinceLook < LOOK_AGAIN_MS) {
        await Promise.race([waitForChange(), sleep(LOOK_AGAIN_MS - sinceLook)]);
        continue;
      }
      lastLook = performance.now();
      const busy = [...lanes.entries()]
        .filter(([key, lane]) =>
          !key.startsWith("owner:") && (!topUp || lane.rows >= Math.max(run.chunkSize, 4 * lane.width))
        )
        .map(([key]) => key);
      const limit = topUp ? Math.max(run.chunkSize, Math.min(MAX_CLAIM_ROWS, inHand - rows)) : run.chunkSize;
      const groups = await claimAndPrepare(run, limit, busy, lanes.size === 0 && !suspectTaken);
      if (groups === null) {
        if (lanes.size === 0) break;
        // Nothing to claim now: wait for a lane to move (it may free a busy config), or a
        // moment, then look again.
        if (topUp) await Promise.race([waitForChange(), sleep(LOOK_AGAIN_MS)]);
        continue;
      }
      for (const group of groups) {
        const key = group.configId ?? `owner:${group.owner.sub}`;
        let lane = lanes.get(key);
        if (!lane) {
          const created: Lane = {
            groups: [],
            rows: 0,
            bytes: 0,
            width: 1,
            slots: new Slots(() => created.width),
            added: signal(),
            running: null,
          };
          lanes.set(key, lane = created);
        }
        lane.width = Math.max(lane.width, widthOf(run, group));
        lane.groups.push(group);
        lane.rows += group.rows.length;
        lane.bytes += bytesOf(group.rows);
        if (!lane.running) drive(key, lane);
        else lane.added.fire();
      }
      if (groups.some((group) => group.rows.some((row) => row.lease_losses > 0))) {
        suspectTaken = true;
        await lanesDone();
      }
    }
    await lanesDone();
  } finally {
    clearInterval(renewal);
  }
}

/** How soon a run that found nothing to claim (its busy configs left out) looks again. */
const LOOK_AGAIN_MS = 200;

/** Rows in hand at most, whatever the sessions open (each row's prepared message is in memory). */
const MAX_ROWS_IN_HAND = 200;
/** Rows claimed at most in one round trip. */
const MAX_CLAIM_ROWS = 100;

/** Sessions a group's config may hold at once. */
function widthOf(run: Run, group: Group): number {
  const prepared = group.prepared.find((item) => !("error" in item)) as PreparedSend | undefined;
  const wanted = prepared?.config.limits.max_connections ?? 1;
  // The instance's pool may allow fewer per config (MAILROOM_SMTP_POOL_MAX_CONNECTIONS).
  const ceiling = run.pool === run.ctx.smtpPool ? run.ctx.config.smtpPool?.maxPerKey ?? 1 : MAX_SESSIONS_PER_CONFIG;
  return Math.max(1, Math.min(wanted, ceiling, MAX_SESSIONS_PER_CONFIG));
}

/**
 * The CPU time this process has used since the run began, against a budget. On the Edge
 * Runtime the platform counts each invocation's CPU; the process's count here includes
 * anything else the process does meanwhile, so the run stops early rather than late.
 */
function cpuClock(budgetMs: number): { spent: (share?: number) => boolean } {
  try {
    const start = process.cpuUsage();
    return {
      spent: (share = 1) => {
        const used = process.cpuUsage(start);
        return (used.user + used.system) / 1000 >= budgetMs * share;
      },
    };
  } catch {
    return { spent: () => false };
  }
}

/** Share of the CPU budget after which a run claims no more (what it holds is sent with the rest). */
const CLAIM_CPU_SHARE = 0.75;

/**
 * Whether the run should stop starting sends (out of wall clock or CPU time), or, with
 * `claiming`, stop claiming (a quarter of the CPU budget is kept for sending what is in hand).
 * The CPU budget never stops a run before one message went: each run makes progress, however
 * little room its budget leaves after the sweep, the claim and the preparation.
 */
function outOfTime(run: Run, claiming = false): boolean {
  return Date.now() >= run.deadline || (run.attempted > 0 && run.cpu.spent(claiming ? CLAIM_CPU_SHARE : 1));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A promise to wait on and the function that resolves it. */
function signal(): { wait: Promise<void>; fire: () => void } {
  let fire!: () => void;
  const wait = new Promise<void>((resolve) => fire = resolve);
  return { wait, fire };
}

function bytesOf(rows: OutboxRow[]): number {
  return rows.reduce((sum, row) => sum + (row.payload_bytes ?? 0), 0);
}

/** How often the memory is sampled after sends (a sample costs about 0.1 ms; sends are many). */
const SEND_SAMPLE_MS = 20;

/** Note the memory held now, as the Edge Runtime counts it (used heap + external), unless sampled within `everyMs`. */
function sampleMemory(run: Run, everyMs = 0): void {
  const now = performance.now();
  if (everyMs > 0 && now - run.sampledAt < everyMs) return;
  run.sampledAt = now;
  const usage = Deno.memoryUsage();
  const mib = Math.round((usage.heapUsed + usage.external) / 1048576);
  if (mib > run.report.peak_memory_mib) run.report.peak_memory_mib = mib;
}

function logError(msg: string, error: unknown): void {
  const e = error as { name?: string; code?: string };
  console.error(JSON.stringify({ level: "error", msg, error: e?.name, code: e?.code }));
}

/** Rows claimed per round trip. */
const DEFAULT_CHUNK = 25;
/** Groups of a claim prepared at once (the worker's pool has 5 connections; the sends need some). */
const PREPARE_PARALLEL = 3;

/** What one drain run carries from chunk to chunk. */
interface Run {
  ctx: AppContext;
  workerId: string;
  deadline: number;
  cpu: { spent: (share?: number) => boolean };
  chunkSize: number;
  maxClaimBytes: number;
  lease: number;
  inFlightLease: number;
  report: DrainReport;
  /** Batch contents by id (a few at a time). */
  batches: Map<string, Record<string, unknown>>;
  /** Configs whose queue is paused for attention. */
  paused: Set<string>;
  /** Configs whose server pushed back in this run, and for how many seconds. */
  backedOff: Map<string, number>;
  /** Configs a message of this run reached the server through: their next messages go over several sessions. */
  warm: Set<string>;
  /** Configs whose first message of the run is on its way (their other groups wait for it). */
  warming: Map<string, Promise<void>>;
  /** When the memory was last sampled (performance.now()). */
  sampledAt: number;
  /** Messages that reached a server (or failed trying) in this run. */
  attempted: number;
  pool: SessionPool;
  recorder: Recorder;
  marker: ReturnType<typeof createMarker>;
}

/** Claimed rows of one owner through one config, prepared together. */
interface Group {
  owner: UserClaims;
  configId: string | null;
  rows: OutboxRow[];
  /** Each row's prepared send or why it cannot be sent (empty when the group was not prepared). */
  prepared: (PreparedSend | { error: ApiError })[];
  /** Why none of the rows can be sent now (the config or the database), when so. */
  failure?: unknown;
}

/** What sending a group left to do (its outcomes went to the recorder). */
interface GroupResult {
  /** Rows to put back (not started, or started and kept for later). */
  later: string[];
  retryAfterSeconds: number;
  /** Why they wait, when the rows should say so (a spent budget). */
  reason?: { code: string; message: string };
}

/** Claim the next chunk and prepare it, one transaction per owner and config; null when nothing is due. */
async function claimAndPrepare(
  run: Run,
  limit: number,
  busyConfigs: string[],
  suspects: boolean,
): Promise<Group[] | null> {
  const { ctx } = run;
  const rows = await ctx.sql<OutboxRow[]>`
    select id, user_id, config_id, batch_id, message_id, created_at, first_attempt_at, payload, payload_bytes,
           lease_losses, recipients, held_sender is not null as held
      from private.claim_outbox(${run.workerId}, ${limit}, ${run.lease}, ${run.maxClaimBytes},
                                ${busyConfigs}::uuid[], ${suspects})`;
  if (rows.length === 0) return null;
  sampleMemory(run);
  run.report.claimed += rows.length;
  // Groups are prepared a few at a time (each is its owner's transaction), kept in the claim's fair order.
  const pending = groupsOf(rows).map((rowsOfGroup, index) => ({ rowsOfGroup, index }));
  const prepared: Group[][] = [];
  await Promise.all(Array.from({ length: Math.min(PREPARE_PARALLEL, pending.length) }, async () => {
    for (let item = pending.shift(); item; item = pending.shift()) {
      const { rowsOfGroup, index } = item;
      const owner: UserClaims = { sub: rowsOfGroup[0].user_id, role: "authenticated" };
      const configId = rowsOfGroup[0].config_id;
      // A paused config's rows are not prepared: sendGroup puts them back.
      prepared[index] = configId && run.paused.has(configId)
        ? [{ owner, configId, rows: rowsOfGroup, prepared: [] }]
        : await prepareGroup(run, { owner, configId, rows: rowsOfGroup, prepared: [] });
    }
  }));
  return prepared.flat();
}

/**
 * Prepare a group in one transaction as its owner. When the config's budget cannot take the
 * whole group, it becomes single-message groups, as many as the budget takes; the rest wait.
 */
async function prepareGroup(run: Run, group: Group): Promise<Group[]> {
  const { ctx } = run;
  // Mail queued with no config (its owner had no default then) never goes through whichever
  // config is the default now: that config's guardrails and approval were never asked.
  if (group.configId === null) {
    for (const row of group.rows) {
      row.intended = intendedOf(row, run.batches);
      row.payload = null;
    }
    return [{
      ...group,
      failure: new ApiError(404, "config_not_found", "This message was queued without an SMTP config; send it again"),
    }];
  }
  try {
    const { prepared: all, ended } = await withUser(ctx.sql, group.owner, async (tx) => {
      const held = group.rows.filter((row) => row.held).map((row) => row.id);
      const changed = held.length > 0 ? await changedSinceApproval(tx, held) : new Set<string>();
      const built = await prepareSendGroup(
        ctx,
        tx,
        group.configId ?? undefined,
        group.rows.map((row) => ({
          request: async (tx) => {
            if (changed.has(row.id)) throw heldContentChanged();
            return parseBody(sendEmailRequest, await requestOf(tx, row, run.batches));
          },
          messageId: row.message_id,
          // The Date of its first attempt (the claim stamps it once; retries keep it).
          date: row.first_attempt_at ?? new Date(),
        })),
        // Queued mail was approved, or needed no approval when it was accepted (a stricter
        // setting since holds what waits, when it is set): nothing here is held again.
        { approval: false, owner: group.owner.sub },
      );
      return { prepared: built, ended: await recordSuppressed(tx, run.workerId, group.rows, built) };
    });
    // The payloads were read into the prepared messages: let them go before anything is sent
    // (a row that cannot be built keeps only what its audit row should say it was for).
    for (const [i, row] of group.rows.entries()) {
      if ("error" in all[i]) row.intended = intendedOf(row, run.batches);
      row.payload = null;
    }
    sampleMemory(run);
    // Rows with nobody left to send to (every recipient suppressed) ended in that transaction.
    run.report.suppressed += ended.size;
    const kept = group.rows.flatMap((row, i) => ended.has(row.id) ? [] : [{ row, prepared: all[i] }]);
    return [{ ...group, rows: kept.map((k) => k.row), prepared: kept.map((k) => k.prepared) }];
  } catch (error) {
    if (!(error instanceof ApiError && error.code === "rate_limited" && group.rows.length > 1)) {
      for (const row of group.rows) {
        row.intended = intendedOf(row, run.batches);
        row.payload = null;
      }
      return [{ ...group, failure: error }];
    }
    const singles: Group[] = [];
    for (const [i, row] of group.rows.entries()) {
      const [single] = await prepareGroup(run, { ...group, rows: [row] });
      singles.push(single);
      if (single.failure !== undefined) {
        const rest = group.rows.slice(i + 1);
        if (rest.length > 0) singles.push({ ...group, rows: rest, failure: single.failure });
        break;
      }
    }
    return singles;
  }
}

/**
 * Record, in the preparing transaction, which recipients each row skipped as suppressed; a row
 * with nobody left to send to ends there (`suppressed`). The ids of the rows that ended.
 */
async function recordSuppressed(
  tx: Tx,
  workerId: string,
  rows: OutboxRow[],
  prepared: (PreparedSend | { error: ApiError })[],
): Promise<Set<string>> {
  const marks = rows.flatMap((row, i) => {
    const p = prepared[i];
    if ("error" in p || p.suppressed.length === 0) return [];
    return [{ id: row.id, suppressed: p.suppressed, done: pendingOf(row, p).length === 0 }];
  });
  if (marks.length === 0) return new Set();
  const ended = await tx<{ id: string }[]>`
    select private.record_suppressed(${tx.json(marks as never)}::jsonb, ${workerId}) as id`;
  return new Set(ended.map((row) => row.id));
}

/**
 * Held rows whose sender or template changed after they were held: what the owner approved is
 * what goes, or nothing does (an agent could otherwise edit the template or the config's From
 * between the approval and the send).
 */
async function changedSinceApproval(tx: Tx, ids: string[]): Promise<Set<string>> {
  const rows = await tx<{ id: string }[]>`
    select a.id from public.email_audit_log a
      left join public.user_smtp_configs c on c.id = a.config_id
      left join public.email_templates t on t.id = a.template_id
     where a.id = any (${ids}::uuid[]) and a.held_sender is not null
       and (a.held_sender is distinct from jsonb_build_object('from_email', c.from_email, 'from_name', c.from_name)
            or a.held_template_version is distinct from t.updated_at)`;
  return new Set(rows.map((row) => row.id));
}

function heldContentChanged(): ApiError {
  return new ApiError(
    409,
    "held_content_changed",
    "The config's sender or the template changed after this email was held for approval: it was not sent. Send it " +
      "again for the owner to approve what would now go out",
  );
}

/** Claimed rows by owner and config, in the (fair) order the claim returned them. */
function groupsOf(rows: OutboxRow[]): OutboxRow[][] {
  const groups = new Map<string, OutboxRow[]>();
  for (const row of rows) {
    const key = `${row.user_id}/${row.config_id}`;
    const group = groups.get(key);
    if (group) group.push(row);
    else groups.set(key, [row]);
  }
  return [...groups.values()];
}

/** Send a prepared group's messages over its config's sessions, sharing the lane's slots with the config's other groups. */
async function sendGroup(run: Run, group: Group, slots: Slots): Promise<GroupResult> {
  const result: GroupResult = { later: [], retryAfterSeconds: 0 };
  const { failure } = group;
  if (failure !== undefined) {
    if (failure instanceof ApiError && failure.code === "sending_stopped") {
      // The owner pressed the stop button: the messages wait, untried, until it is lifted.
      return {
        later: group.rows.map((row) => row.id),
        retryAfterSeconds: STOPPED_RECHECK_SECONDS,
        reason: { code: failure.code, message: failure.message },
      };
    }
    if (failure instanceof ApiError && (failure.status === 429 || failure.status >= 500)) {
      // Over a limit, or the database is unreachable: back to the queue, no attempt counted.
      return {
        later: group.rows.map((row) => row.id),
        retryAfterSeconds: retryAfter(failure),
        ...(failure.code === "rate_limited" ? { reason: { code: failure.code, message: failure.message } } : {}),
      };
    }
    // The config is gone or unusable (or a bug): every message of the group fails, once.
    const started = await startRows(run, group.rows.map((row) => row.id));
    for (const row of group.rows.filter((row) => started.has(row.id))) {
      run.recorder.add(group.owner, { id: row.id, outcome: failedOutcome(row, failure, "internal_error") });
    }
    return result;
  }
  const pausedAlready = group.configId !== null && run.paused.has(group.configId);
  const { prepared } = group;
  const config = (prepared.find((item) => !("error" in item)) as PreparedSend | undefined)?.config;
  // Its server pushed back earlier in this run: the rest waits out the backoff, untried.
  const backedOffFor = config ? run.backedOff.get(config.id) : undefined;
  if (backedOffFor !== undefined) return { later: group.rows.map((row) => row.id), retryAfterSeconds: backedOffFor };
  let backOff: { seconds: number; reason: string } | undefined;
  // Paused meanwhile (here or by another worker): the messages wait for the config to be fixed.
  let pausedFor = pausedAlready ? "paused" : config?.needs_attention ?? undefined;
  if (config?.needs_attention) run.paused.add(config.id);
  let pauseNow: string | undefined;
  // Sent messages are copied to the mailbox's Sent folder as they go (one IMAP session per group).
  const copies = config?.imap?.copy_to_sent
    ? sentCopies(run.ctx, group.owner, config.id, { deadline: run.deadline })
    : null;

  // Rows whose request or content is wrong fail now; the others go in order.
  const failed = group.rows.filter((_, i) => prepared[i] && "error" in prepared[i]);
  if (failed.length > 0) {
    const started = await startRows(run, failed.map((row) => row.id));
    for (const row of failed.filter((row) => started.has(row.id))) {
      const item = prepared[group.rows.indexOf(row)] as { error: ApiError };
      run.recorder.add(group.owner, { id: row.id, outcome: failedOutcome(row, item.error, "invalid_payload") });
    }
  }
  const sendable = group.rows.filter((_, i) => !prepared[i] || !("error" in prepared[i]));
  const failureCodes: (string | undefined)[] = [];
  let next = 0;
  // A send that threw (the database failed the mark): the group stops; what it holds goes back.
  let broken = false;
  // Stop taking messages: this group or another of the config's met a pause or a pushback.
  const halted = () =>
    broken || pausedFor !== undefined || backOff !== undefined || outOfTime(run) ||
    (config !== undefined && (run.paused.has(config.id) || run.backedOff.has(config.id)));
  // Each session takes the next message and sends it (marked `sending` right before its first
  // byte), holding one of the lane's slots meanwhile (the config's sessions are shared by its
  // groups), until `messages` reached the server or nothing is left. Never throws.
  const session = async (messages: number) => {
    let attempted = 0;
    while (attempted < messages && next < sendable.length) {
      await slots.acquire();
      try {
        if (halted() || next >= sendable.length) return;
        const row = sendable[next++];
        await run.recorder.room();
        const item = prepared[group.rows.indexOf(row)] as PreparedSend;
        const outcome = await sendPrepared(run, row, item);
        // Cancelled since the claim (or no longer ours): nothing of it went.
        if (!outcome) continue;
        attempted++;
        run.attempted++;
        failureCodes.push(outcome.status === "sent" ? undefined : outcome.error_class);
        if (outcome.error_class && PAUSES_CONFIG.has(outcome.error_class)) {
          // Every message through this config would fail the same way: pause its queue, keep the messages.
          pausedFor = pauseNow = outcome.error_class;
          // Its attempt is not charged: it goes back with the others, started or not.
          if (config) run.paused.add(config.id);
          result.later.push(row.id);
          continue;
        }
        run.recorder.add(group.owner, { id: row.id, outcome });
        // Copied once: on the attempt that first reached a recipient (a retry of deferred ones is not copied again).
        if (copies && outcome.status === "sent" && !row.recipients?.some((r) => r.status === "accepted")) {
          copies.add(row.id, item.message.raw);
        }
        if (config && pushedBack(outcome) && !backOff) {
          // The server refused the session or the sender for now (too many connections, a rate
          // limit): this message's attempt counts, the rest wait out the backoff untried and
          // uncharged, and the config is left alone meanwhile (by every worker).
          backOff = { seconds: backoffSeconds(outcome), reason: pushbackReason(outcome) };
          run.backedOff.set(config.id, backOff.seconds);
        }
      } catch (error) {
        // Its row stays claimed and unstarted (release_outbox_leases gives it back), or, when
        // the failure came after its mark, `sending` (the sweep marks it unknown).
        logError("outbox send failed", error);
        broken = true;
      } finally {
        slots.release();
      }
    }
  };
  // A config's first message in each run goes alone: wrong credentials (changed at the server
  // since the last run, too) or a server at its limit are met by one login, not by one per
  // session. Its other groups wait for it; it counts once a message reached the server.
  if (config && !run.warm.has(config.id)) {
    const warming = run.warming.get(config.id);
    if (warming) await warming;
    else {
      const first = session(1);
      run.warming.set(config.id, first);
      try {
        await first;
      } finally {
        run.warming.delete(config.id);
      }
      if (!halted()) run.warm.add(config.id);
    }
  }
  // Then up to max_connections at once.
  const width = widthOf(run, group);
  await Promise.all(Array.from({ length: Math.min(width, sendable.length - next) }, () => session(Infinity)));
  await copies?.finish();
  // What no session took (paused, pushed back, out of time) waits, a backoff's time.
  result.later.push(...sendable.slice(next).map((row) => row.id));
  if (config && run.backedOff.has(config.id)) result.retryAfterSeconds = run.backedOff.get(config.id)!;
  if (config && backOff) {
    const { seconds, reason } = backOff;
    await withUser(
      run.ctx.sql,
      group.owner,
      (tx) => tx`select private.back_off_config(${config.id}::uuid, ${seconds}, ${reason})`,
    );
  }
  if (config) {
    await settleLogin(run.ctx, group.owner, config.login, failureCodes);
    if (pauseNow) {
      await withUser(
        run.ctx.sql,
        group.owner,
        (tx) => tx`select private.pause_config_queue(${config.id}::uuid, ${pauseNow!})`,
      );
      run.paused.add(config.id);
    }
  }
  return result;
}

/** Takes outcomes as they come and records them as their owners, in the background. */
interface Recorder {
  add(owner: UserClaims, attempt: Attempt): void;
  /** Resolves when fewer than MAX_UNRECORDED sent messages wait for their audit write. */
  room(): Promise<void>;
  /** Resolves once everything added so far is recorded (or logged as not). */
  settled(): Promise<void>;
}

/** Outcomes gathered per recording, and how long one waits for company. */
const RECORD_BATCH = 20;
const RECORD_DELAY_MS = 50;
/** Most outcomes waiting or being recorded before the sends wait for the recorder. */
const MAX_UNRECORDED = 50;

/**
 * One recording in flight at a time, taking every outcome gathered meanwhile, all owners' in
 * one statement (each owner's rows written as that owner: private.record_outbox_attempts_as_owners),
 * started once RECORD_BATCH outcomes wait or the oldest has waited RECORD_DELAY_MS.
 * The sends never wait for the audit writes. The price: when a worker dies, the messages it
 * sent but had not recorded yet (fewer than MAX_UNRECORDED: the sends wait for the recorder
 * beyond that) are swept to `unknown`, like the one on the wire; they are never resent.
 */
function createRecorder(run: Run): Recorder {
  let pending = new Map<string, { owner: UserClaims; attempts: Attempt[] }>();
  let waiting = 0;
  let recording = 0;
  let closing = false;
  let flushing: Promise<void> | null = null;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const flush = async () => {
    do {
      const batch = pending;
      pending = new Map();
      recording = waiting;
      waiting = 0;
      await record(run, [...batch.values()]);
      recording = 0;
    } while (waiting >= RECORD_BATCH || (closing && waiting > 0));
  };
  // `flushing` is set before the flush can finish and cleared only after it did (in finally),
  // so nobody ever waits on a flush that will not clear it.
  const start = () => {
    clearTimeout(timer);
    timer = undefined;
    if (flushing || waiting === 0) return;
    flushing = flush().finally(() => {
      flushing = null;
      if (waiting > 0) timer = setTimeout(start, RECORD_DELAY_MS);
    });
  };
  return {
    add(owner, attempt) {
      const entry = pending.get(owner.sub);
      if (entry) entry.attempts.push(attempt);
      else pending.set(owner.sub, { owner, attempts: [attempt] });
      waiting++;
      if (waiting >= RECORD_BATCH) start();
      else timer ??= setTimeout(start, RECORD_DELAY_MS);
    },
    async room() {
      while (waiting + recording >= MAX_UNRECORDED) {
        start();
        if (!flushing) return;
        await flushing;
      }
    },
    async settled() {
      closing = true;
      start();
      while (flushing) {
        await flushing;
        start();
      }
      clearTimeout(timer);
    },
  };
}

/**
 * Mark a claimed row in flight (committed before it is sent); false when it was cancelled or
 * lost. Marks asked for while one is being written go together in the next statement (group
 * commit): each message's own mark is still committed before its first byte, and a worker
 * with many sessions writes one statement per round of them instead of one per message.
 */
function startRow(run: Run, id: string): Promise<boolean> {
  return run.marker.start(id);
}

/** Gathers marks (see {@linkcode startRow}): one statement in flight, the next takes all that waited. */
function createMarker(run: Run): { start(id: string): Promise<boolean> } {
  let waiting: { id: string; resolve: (started: boolean) => void; reject: (error: unknown) => void }[] = [];
  let writing = false;
  const write = async () => {
    writing = true;
    while (waiting.length > 0) {
      const batch = waiting;
      waiting = [];
      try {
        const started = await startRows(run, batch.map((mark) => mark.id));
        for (const mark of batch) mark.resolve(started.has(mark.id));
      } catch (error) {
        for (const mark of batch) mark.reject(error);
      }
    }
    writing = false;
  };
  return {
    start(id) {
      return new Promise((resolve, reject) => {
        waiting.push({ id, resolve, reject });
        if (!writing) write();
      });
    },
  };
}

/** Mark claimed rows in flight at once (rows that fail without being sent); the ids it marked. */
async function startRows(run: Run, ids: string[]): Promise<Set<string>> {
  const rows = await run.ctx.sql<{ id: string }[]>`
    select id from private.start_outbox_sends(${ids}::uuid[], ${run.workerId}, ${run.inFlightLease}) as id`;
  return new Set(rows.map((row) => row.id));
}

/** One attempt's outcome, for private.record_outbox_attempts. */
interface Attempt {
  id: string;
  outcome: Outcome;
}

/**
 * The recipients a prepared row still needs: all of its envelope on a first attempt; on a retry,
 * only those an earlier attempt left deferred (never one that was not tried then, such as a
 * recipient suppressed at the time and lifted since).
 */
function pendingOf(row: OutboxRow, prepared: PreparedSend): string[] {
  if (!row.recipients) return prepared.message.envelope.to;
  const deferred = new Set(row.recipients.filter((r) => r.status === "deferred").map((r) => r.address));
  return prepared.message.envelope.to.filter((address) => deferred.has(address));
}

/** Send a prepared row to the recipients that still need it; its outcome as the audit records it. */
/**
 * Send a prepared row to the recipients that still need it, marking it `sending` (committed)
 * right before its first byte: over SMTP once a session is in hand (a row waiting for a session
 * is not in flight), over an HTTPS API before the request. Its outcome as the audit records it;
 * null when it was cancelled since the claim (nothing went).
 *
 * An attempt that failed before any byte of the message (no session, a refused login) is
 * marked afterwards so that it counts as an attempt, as it always did; except when it pauses
 * the config (the row goes back uncharged).
 */
async function sendPrepared(
  run: Run,
  row: OutboxRow,
  prepared: PreparedSend,
): Promise<Outcome | null> {
  const pending = pendingOf(row, prepared);
  // Nobody to send to (every one suppressed, and the row not ended for it): nothing goes.
  if (pending.length === 0) return null;
  let started = false;
  const start = async () => started = await startRow(run, row.id);
  const overSmtp = prepared.config.transport === "smtp";
  if (!overSmtp && !(await start())) return null;
  let transmission;
  try {
    transmission = await transmitOnly(run.ctx, prepared, pending, run.pool, overSmtp ? start : undefined);
  } catch (error) {
    if (!(error instanceof NotStarted)) throw error;
    // The mark failed (the database): the row stays claimed, unstarted, and goes back at the end.
    if (error.cause !== undefined) throw error.cause;
    return null;
  }
  sampleMemory(run, SEND_SAMPLE_MS);
  const { to, cc, bcc } = prepared.message.recipients;
  const outcome: Outcome = {
    ...("refused" in transmission
      ? refusalOutcome(prepared.message, transmission.refused.failure)
      : outcomeOf(transmission.report)),
    sent: { to: to.map((a) => a.address), cc_count: cc.length, bcc_count: bcc.length, subject: prepared.subject },
  };
  if (!started && !PAUSES_CONFIG.has(outcome.error_class ?? "") && !(await start())) return null;
  return outcome;
}

function retryAfter(error: ApiError): number {
  return Number(error.details?.retry_after_seconds ?? error.headers?.["retry-after"] ?? 30);
}

// The server refused the config's credentials (or they cannot be used), or its TLS cannot be
// trusted or negotiated: nothing queued through it can succeed until the user fixes the
// config (or verifies it again), so its queue waits instead of failing message by message.
const PAUSES_CONFIG = new Set([
  "smtp_auth_failed",
  "smtp_basic_auth_disabled",
  // OAuth mailboxes: the grant is revoked or unusable, or the API refuses to send for it.
  "oauth_reauth_required",
  "oauth_client_rejected",
  "oauth_scope_missing",
  "oauth_token_rejected",
  "oauth_permission_missing",
  // A custom provider's token endpoint the egress policy refuses, or one that redirects.
  "oauth_token_url_invalid",
  "oauth_token_url_forbidden",
  "oauth_token_url_port_not_allowed",
  "oauth_token_url_redirected",
  "smtp_auth_required",
  "smtp_auth_unavailable",
  "smtp_tls_failed",
  "smtp_tls_untrusted",
  "smtp_tls_name_mismatch",
  "smtp_tls_certificate_expired",
]);

// The server pushed back on the session or the sender, or could not be reached: every message
// through the config would meet the same now, so the config backs off instead of each row
// spending an attempt. (421 may come at any command; 450/451 at MAIL FROM.)
const PUSHBACK = new Set([
  "smtp_service_unavailable",
  "smtp_sender_deferred",
  "smtp_connect_failed",
  "smtp_connect_timeout",
  // HTTPS send APIs and token endpoints that throttle or are down (with Retry-After).
  "provider_throttled",
  "provider_unavailable",
  "provider_unreachable",
  "oauth_token_refresh_failed",
]);

/** Backoff when the server gives no hint, and the bounds of one it gives. */
const DEFAULT_BACKOFF_SECONDS = 60;
const MIN_BACKOFF_SECONDS = 10;
const MAX_BACKOFF_SECONDS = 3600;

function pushedBack(outcome: Outcome): boolean {
  if (outcome.status === "sent" || outcome.status === "unknown") return false;
  return outcome.smtp_response_code === 421 || PUSHBACK.has(outcome.error_class ?? "");
}

function backoffSeconds(outcome: Outcome): number {
  const hint = outcome.retry_after_seconds;
  if (!hint) return DEFAULT_BACKOFF_SECONDS;
  return Math.min(Math.max(Math.ceil(hint), MIN_BACKOFF_SECONDS), MAX_BACKOFF_SECONDS);
}

function pushbackReason(outcome: Outcome): string {
  const reply = outcome.smtp_response ? `: ${outcome.smtp_response}` : "";
  return `${outcome.error_class ?? "smtp_deferred"}${reply}`.slice(0, 300);
}

/** The send-email request a row stands for: its own, or its batch's content for its recipient. */
export async function requestOf(
  tx: Tx,
  row: Pick<OutboxRow, "payload" | "batch_id" | "config_id">,
  batches: Map<string, Record<string, unknown>>,
): Promise<unknown> {
  const payload = (row.payload ?? {}) as { kind?: string; request?: unknown; to?: unknown; data?: unknown };
  if (payload.kind === "request") return { ...(payload.request as object), config: row.config_id ?? undefined };
  if (payload.kind !== "recipient" || !row.batch_id) throw new ApiError(422, "invalid_payload", "Unknown payload");
  let content = batches.get(row.batch_id);
  if (!content) {
    const [batch] = await tx<{ content: Record<string, unknown> }[]>`
      select content from public.email_batches where id = ${row.batch_id}`;
    content = batch?.content ?? {};
    // A few batches at a time: contents can be megabytes each, and a drain may meet many.
    if (batches.size >= BATCH_CACHE_ENTRIES) batches.delete(batches.keys().next().value!);
    batches.set(row.batch_id, content);
  }
  const shared = (content.data ?? {}) as Record<string, unknown>;
  const own = (payload.data ?? {}) as Record<string, unknown>;
  const merged = content.template !== undefined ? { data: { ...shared, ...own } } : {};
  return { ...content, ...merged, to: [payload.to], config: row.config_id ?? undefined };
}

function failedOutcome(row: OutboxRow, error: unknown, fallback: string): Outcome {
  const known = error instanceof ApiError;
  return {
    status: "failed",
    message_id: row.message_id,
    error_class: known ? error.code : fallback,
    error_message: known ? error.message : "The message could not be prepared",
    retryable: false,
    // Whatever the row was inserted with, it records what its payload named (nothing went out).
    sent: row.intended ?? { to: [], cc_count: 0, bcc_count: 0, subject: null },
  };
}

/**
 * The recipients (canonical addresses) and subject a payload names, as far as they can be read:
 * what the audit row of a message that failed before it was built should show, instead of the
 * columns it was inserted with (the Data API can insert anything there).
 */
function intendedOf(row: OutboxRow, batches: Map<string, Record<string, unknown>>): NonNullable<Outcome["sent"]> {
  const payload = (row.payload ?? {}) as { kind?: string; request?: Record<string, unknown>; to?: unknown };
  const request = payload.kind === "request" && typeof payload.request === "object" && payload.request !== null
    ? payload.request
    : payload.kind === "recipient"
    ? { ...(row.batch_id ? batches.get(row.batch_id) : undefined), to: payload.to }
    : {};
  const addresses = (value: unknown): string[] => {
    const parsed = recipientList.safeParse(value ?? []);
    return parsed.success ? parsed.data.map((a) => a.address) : [];
  };
  return {
    to: addresses(request.to),
    cc_count: addresses(request.cc).length,
    bcc_count: addresses(request.bcc).length,
    subject: typeof request.subject === "string" ? request.subject.slice(0, 998) : null,
  };
}

/**
 * Record several owners' attempts in one statement, each owner's rows as that owner (the
 * function wears each owner's claims in turn). A failure here is logged and the rows stay
 * `sending`: the sweep marks them unknown when the lease ends (they may have gone out).
 */
async function record(run: Run, owners: { owner: UserClaims; attempts: Attempt[] }[]): Promise<void> {
  try {
    const entries = owners.map(({ owner, attempts }) => ({ owner: owner.sub, attempts }));
    const rows = await run.ctx.sql<{ id: string; status: string }[]>`
      select id, status from private.record_outbox_attempts_as_owners(${run.ctx.sql.json(entries as never)})`;
    for (const { id, status } of rows) {
      if (status === "lost") console.error(JSON.stringify({ level: "error", msg: "outbox row lost its lease", id }));
      // Its owner's recording failed (the others' stand): the row stays `sending` for the sweep.
      if (status === "unrecorded") console.error(JSON.stringify({ level: "error", msg: "could not record", id }));
      const lost = status === "lost" || status === "unrecorded";
      run.report[lost ? "unknown" : status as "sent" | "queued" | "failed" | "unknown"]++;
    }
  } catch (error) {
    const e = error as { name?: string; code?: string };
    const ids = owners.flatMap(({ attempts }) => attempts.map((a) => a.id));
    console.error(JSON.stringify({
      level: "error",
      msg: "could not record outbox attempts",
      ids,
      error: e?.name,
      code: e?.code,
    }));
    run.report.unknown += ids.length;
  }
}

async function postpone(
  run: Run,
  ids: string[],
  seconds: number,
  reason?: { code: string; message: string },
): Promise<void> {
  const [{ postponed }] = await run.ctx.sql<{ postponed: number }[]>`
    select private.postpone_outbox_sends(${ids}::uuid[], ${run.workerId}, ${Math.max(0, Math.ceil(seconds))},
                                         ${reason?.code ?? null}, ${reason?.message ?? null}) as postponed`;
  run.report.postponed += postponed;
}
