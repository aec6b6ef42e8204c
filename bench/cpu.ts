// CPU time from /proc (Linux), for the bench's per-message and per-send figures.

/** CPU seconds (user + system) of a process, from /proc; 0 where there is none. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

/** CPU seconds of every `postgres` process (the postmaster, the backends, the background workers). */
export function postgresCpuSeconds(): number {
  let total = 0;
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      if (Deno.readTextFileSync(`/proc/${entry.name}/comm`).trim() === "postgres") {
        total += cpuSeconds(Number(entry.name));
      }
    } catch {
      // gone meanwhile
    }
  }
  return total;
}

/** CPU seconds of the live `postgres` processes by what each is (its title: the backend's user and database, autovacuum, WAL writer, ...). */
export function postgresCpuByRole(): Map<string, number> {
  const byRole = new Map<string, number>();
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      if (Deno.readTextFileSync(`/proc/${entry.name}/comm`).trim() !== "postgres") continue;
      const title = Deno.readTextFileSync(`/proc/${entry.name}/cmdline`).replace(/\0/g, " ").trim();
      // "postgres: user db 127.0.0.1(port) idle" -> "postgres: user db"; background workers keep their name.
      const role = title.replace(/ (\d+\.\d+\.\d+\.\d+|\[local\]).*$/, "").replace(/^postgres: /, "");
      byRole.set(role, (byRole.get(role) ?? 0) + cpuSeconds(Number(entry.name)));
    } catch {
      // gone meanwhile
    }
  }
  return byRole;
}
