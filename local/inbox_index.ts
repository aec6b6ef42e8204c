/**
 * What the inbox's list shows: one page of message summaries, newest first, optionally
 * narrowed by a search, with a cursor to the next (older) page. Each message is parsed at most
 * once and only what a list needs is kept (a few fields and the lower-cased text a search
 * reads), so a store of thousands of messages costs one page of work per request, or one pass
 * over the kept text for a search.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { type AddressObject, type ParsedMail, simpleParser } from "mailparser";
import { type CaughtMessage, type MessageStore, rawBytes } from "./smtp_catcher.ts";

/** Messages per page unless the caller asks for another size. */
export const DEFAULT_PAGE_SIZE = 50;
/** The largest page the API hands out. */
export const MAX_PAGE_SIZE = 200;

/** What the list API returns per message. */
export interface MessageSummary {
  /** The message id, as in `/messages/:id`. */
  id: string;
  /** When the catcher accepted it, ISO 8601. */
  receivedAt: string;
  /** The SMTP envelope. */
  envelope: CaughtMessage["envelope"];
  /** Who logged in to send it, if anyone. */
  authUser?: string;
  /** Whether it arrived over TLS. */
  secure: boolean;
  /** Size in bytes. */
  size: number;
  /** The decoded Subject header. */
  subject: string;
  /** The From header as text. */
  from: string;
  /** The To header(s) as text. */
  to: string;
  /** How many attachments it carries. */
  attachments: number;
}

/** One page of the list. */
export interface MessagePage {
  /** Up to `limit` summaries, newest first. */
  messages: MessageSummary[];
  /** How many messages match (the whole store without a search). */
  total: number;
  /** Pass as `cursor` for the next, older page; null on the last page. */
  next_cursor: string | null;
}

/** A request for one page; `cursor` is a `next_cursor` from an earlier page. */
export interface PageQuery {
  q?: string;
  limit?: number;
  cursor?: string;
}

/** A cursor that is not one this inbox handed out. */
export class InvalidCursor extends Error {
  override name = "InvalidCursor";
}

interface Indexed {
  summary: MessageSummary;
  /** Subject, header and envelope addresses and the text body, lower-cased, for search. */
  haystack: string;
}

/**
 * The list over `store`, with its per-message cache.
 *
 * @example
 * ```ts
 * const index = new MessageIndex(store);
 * const first = await index.page({ limit: 50 });
 * const second = await index.page({ limit: 50, cursor: first.next_cursor ?? undefined });
 * ```
 */
export class MessageIndex {
  readonly #store: MessageStore;
  // Keyed by the message object: a removed message's entry goes with it.
  readonly #cache = new WeakMap<CaughtMessage, Promise<Indexed>>();

  constructor(store: MessageStore) {
    this.#store = store;
  }

  /** One page, newest first. @throws InvalidCursor */
  async page(query: PageQuery): Promise<MessagePage> {
    const limit = query.limit ?? DEFAULT_PAGE_SIZE;
    const after = query.cursor === undefined ? undefined : decodeCursor(query.cursor);
    let candidates = this.#store.list().sort(newestFirst);
    const terms = searchTerms(query.q ?? "");
    if (terms.length > 0) {
      const entries = await Promise.all(candidates.map((m) => this.#entry(m)));
      candidates = candidates.filter((_, i) => terms.every((term) => entries[i].haystack.includes(term)));
    }
    const total = candidates.length;
    const start = after ? candidates.findIndex((m) => newestFirst(m, after) > 0) : 0;
    const slice = start < 0 ? [] : candidates.slice(start, start + limit);
    const more = start >= 0 && start + limit < total;
    const messages = await Promise.all(slice.map(async (m) => (await this.#entry(m)).summary));
    return { messages, total, next_cursor: more ? encodeCursor(slice[slice.length - 1]) : null };
  }

  #entry(message: CaughtMessage): Promise<Indexed> {
    let entry = this.#cache.get(message);
    if (!entry) {
      entry = parseMessage(message).then((mail) => index(message, mail));
      this.#cache.set(message, entry);
    }
    return entry;
  }
}

/**
 * Parses a caught message (for the message page and attachments; the list keeps only its index).
 *
 * @example
 * ```ts
 * const mail = await parseMessage(store.get(id)!);
 * ```
 */
export function parseMessage(message: CaughtMessage): Promise<ParsedMail> {
  return simpleParser(Buffer.from(rawBytes(message)));
}

/** Header addresses as one line of text. */
export function addressText(value: AddressObject | AddressObject[] | undefined): string {
  if (!value) return "";
  return (Array.isArray(value) ? value : [value]).map((a) => a.text).join(", ");
}

function index(message: CaughtMessage, mail: ParsedMail): Indexed {
  const summary: MessageSummary = {
    id: message.id,
    receivedAt: message.receivedAt,
    envelope: message.envelope,
    authUser: message.authUser,
    secure: message.secure,
    size: message.size,
    subject: mail.subject ?? "",
    from: addressText(mail.from),
    to: addressText(mail.to),
    attachments: mail.attachments.length,
  };
  const haystack = [
    summary.subject,
    summary.from,
    summary.to,
    addressText(mail.cc),
    message.envelope.mailFrom,
    ...message.envelope.rcptTo,
    mail.text ?? "",
  ].join("\n").toLowerCase();
  return { summary, haystack };
}

function searchTerms(q: string): string[] {
  return q.toLowerCase().split(/\s+/).filter(Boolean);
}

/** Newest first: later `receivedAt` first, then the larger id, so the order is total. */
function newestFirst(a: Pick<CaughtMessage, "receivedAt" | "id">, b: Pick<CaughtMessage, "receivedAt" | "id">) {
  if (a.receivedAt !== b.receivedAt) return a.receivedAt < b.receivedAt ? 1 : -1;
  return a.id < b.id ? 1 : a.id > b.id ? -1 : 0;
}

// A cursor names the last message of a page by its sort key, so paging stays right while
// new mail arrives at the top or messages are deleted.
function encodeCursor(message: CaughtMessage): string {
  return btoa(`${message.receivedAt}|${message.id}`).replaceAll("=", "");
}

function decodeCursor(cursor: string): Pick<CaughtMessage, "receivedAt" | "id"> {
  let text: string;
  try {
    text = atob(cursor);
  } catch {
    throw new InvalidCursor("cursor is not one this inbox handed out");
  }
  const [receivedAt, id, ...rest] = text.split("|");
  if (rest.length > 0 || !id || !/^[A-Za-z0-9-]+$/.test(id) || Number.isNaN(Date.parse(receivedAt))) {
    throw new InvalidCursor("cursor is not one this inbox handed out");
  }
  return { receivedAt, id };
}
