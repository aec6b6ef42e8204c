// The latency case on its own (a quicker loop than the whole bench while working on it):
// deno run -A bench/latency_only.ts [--sends N]
import { startTestStack } from "../tests/harness.ts";
import { benchLatency, RTTS } from "./latency.ts";

const args = Deno.args;
const sends = args.includes("--sends") ? Number(args[args.indexOf("--sends") + 1]) : 50;
const stack = await startTestStack({}, { isolation: "process" });
try {
  await benchLatency(stack, stack.processes.find((p) => p.name === "send-email")!, { sends, rtts: RTTS });
} finally {
  await stack.close();
}
