// Before the stack listens: which of its ports are taken, and by whom, so a clash is one clear
// line naming the port, the process that holds it and the variable that moves it.
import { PORT_SETTINGS, type PortName } from "./ports.ts";
import { commandLineOf } from "./processes.ts";

/** A port of ours that something else listens on. */
export interface BusyPort {
  name: PortName;
  port: number;
  /** The process listening there, when the system lets us see it (Linux, same user or root). */
  owner?: { pid: number; command: string };
}

/** The ports `supabase start` listens on by default (Kong, Postgres, Studio, Mailpit, ...). */
const SUPABASE_START_PORTS = new Set([54321, 54322, 54323, 54324, 54327, 54329]);

/** True when nothing listens on 127.0.0.1:`port` (we could listen there a moment ago). */
export function isPortFree(port: number): boolean {
  try {
    Deno.listen({ hostname: "127.0.0.1", port }).close();
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.AddrInUse) return false;
    throw error;
  }
}

/** The ports among `ports` that are taken, with their owners where known. */
export function busyPorts(ports: Partial<Record<PortName, number>>): BusyPort[] {
  const busy: BusyPort[] = [];
  for (const [name, port] of Object.entries(ports) as [PortName, number][]) {
    if (isPortFree(port)) continue;
    busy.push({ name, port, owner: listenerOf(port) });
  }
  return busy;
}

/**
 * One line for a taken port, e.g. `Port 54321 (functions gateway) is in use by pid 812 (docker-proxy).
 * Is \`supabase start\` running? ...`.
 */
export function describeBusyPort(busy: BusyPort): string {
  const setting = PORT_SETTINGS[busy.name];
  const who = busy.owner ? `pid ${busy.owner.pid} (${busy.owner.command})` : "another process";
  const hint = SUPABASE_START_PORTS.has(busy.port)
    ? " Is `supabase start` running? Its Kong listens on 54321, Postgres on 54322 and Mailpit on 54324."
    : "";
  return `Port ${busy.port} (${setting.what}) is in use by ${who}.${hint} ` +
    `Free it, or move ours: ${setting.env}=<port> npm run dev`;
}

/** The pid listening on TCP `port` (Linux: /proc/net/tcp{,6} inode, then the process holding it). */
export function listenerOf(port: number): { pid: number; command: string } | undefined {
  const inodes = new Set<string>();
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text: string;
    try {
      text = Deno.readTextFileSync(table);
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      // local_address is HEXIP:HEXPORT; state 0A is LISTEN; field 9 is the socket's inode.
      if (fields.length < 10 || fields[3] !== "0A") continue;
      if (parseInt(fields[1].split(":")[1], 16) === port) inodes.add(fields[9]);
    }
  }
  if (inodes.size === 0) return undefined;
  for (const entry of safeReadDir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    for (const fd of safeReadDir(`/proc/${entry}/fd`)) {
      let link: string;
      try {
        link = Deno.readLinkSync(`/proc/${entry}/fd/${fd}`);
      } catch {
        continue;
      }
      const inode = /^socket:\[(\d+)\]$/.exec(link)?.[1];
      if (inode && inodes.has(inode)) {
        const pid = Number(entry);
        return { pid, command: commandLineOf(pid) ?? "unknown" };
      }
    }
  }
  return undefined;
}

function safeReadDir(path: string): string[] {
  try {
    return [...Deno.readDirSync(path)].map((e) => e.name);
  } catch {
    return [];
  }
}
