// The inbox list's script, served as /inbox.js (same origin, so the page's CSP needs no
// 'unsafe-inline'): fills the table from /api/messages one page at a time, searches as you
// type, deletes, and polls /api/version to show new mail without a reload. Every value from a
// message goes in through textContent, never as HTML.
"use strict";

const PAGE_SIZE = 50;
const POLL_MS = 1000;

const table = document.getElementById("messages");
const rows = table.querySelector("tbody");
const status = document.getElementById("status");
const search = document.getElementById("search");
const older = document.getElementById("older");
const newer = document.getElementById("newer");
const deleteAll = document.getElementById("delete-all");

const state = {
  q: "",
  /** Cursors of the pages before this one (the first page has none). */
  previous: [],
  cursor: undefined,
  next: null,
  version: undefined,
  /** Only the newest load may draw: an older answer arriving late is dropped. */
  loads: 0,
};

async function load() {
  const ticket = ++state.loads;
  const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (state.q) params.set("q", state.q);
  if (state.cursor) params.set("cursor", state.cursor);
  const response = await fetch(`/api/messages?${params}`);
  if (!response.ok) {
    status.textContent = `The inbox answered ${response.status}`;
    return;
  }
  const page = await response.json();
  if (ticket !== state.loads) return;
  state.version = page.version;
  if (page.messages.length === 0 && state.previous.length > 0) {
    // Everything on this page was deleted: show the one before it.
    state.cursor = state.previous.pop();
    return load();
  }
  state.next = page.next_cursor;
  draw(page);
}

function draw(page) {
  rows.replaceChildren(...page.messages.map(row));
  table.hidden = page.messages.length === 0;
  const first = state.previous.length * PAGE_SIZE + 1;
  const shown = page.messages.length;
  if (shown === 0) {
    status.textContent = state.q ? `No messages match “${state.q}”.` : "No messages yet.";
  } else {
    status.textContent = `${first}–${first + shown - 1} of ${page.total}`;
  }
  older.disabled = !state.next;
  newer.disabled = state.previous.length === 0;
}

function row(message) {
  const tr = document.createElement("tr");
  tr.dataset.id = message.id;
  const when = cell(new Date(message.receivedAt).toLocaleString());
  when.className = "when";
  const link = document.createElement("a");
  link.href = `/messages/${encodeURIComponent(message.id)}`;
  link.textContent = (message.subject || "(no subject)") + (message.attachments > 0 ? " 📎" : "");
  const subject = document.createElement("td");
  subject.append(link);
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "delete";
  remove.textContent = "Delete";
  remove.setAttribute("aria-label", `Delete ${message.subject || "(no subject)"}`);
  remove.addEventListener("click", () => removeMessage(message.id));
  const actions = document.createElement("td");
  actions.append(remove);
  tr.append(
    when,
    cell(message.from || message.envelope.mailFrom),
    cell(message.to || message.envelope.rcptTo.join(", ")),
    subject,
    actions,
  );
  return tr;
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

async function removeMessage(id) {
  await fetch(`/api/messages/${encodeURIComponent(id)}`, { method: "DELETE" });
  await load();
}

function restart() {
  state.previous = [];
  state.cursor = undefined;
  return load();
}

let typing;
search.addEventListener("input", () => {
  clearTimeout(typing);
  typing = setTimeout(() => {
    state.q = search.value.trim();
    restart();
  }, 200);
});

older.addEventListener("click", () => {
  if (!state.next) return;
  state.previous.push(state.cursor);
  state.cursor = state.next;
  load();
});

newer.addEventListener("click", () => {
  if (state.previous.length === 0) return;
  state.cursor = state.previous.pop();
  load();
});

deleteAll.addEventListener("click", async () => {
  if (!confirm("Delete every message in the inbox?")) return;
  await fetch("/api/messages", { method: "DELETE" });
  await restart();
});

async function poll() {
  try {
    const response = await fetch("/api/version");
    const { version } = await response.json();
    if (version !== state.version) await load();
  } catch {
    // The dev stack is restarting; the next poll tries again.
  }
  setTimeout(poll, POLL_MS);
}

load().then(() => setTimeout(poll, POLL_MS));
