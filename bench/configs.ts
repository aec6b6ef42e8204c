// `deno task bench` (configs case): GET /smtp-configs against the same RLS transaction
// issued straight to Postgres as the Data API would (begin; the claims and role; the list
// query; commit), measured in the same run.
import type { TestStack, TestUser } from "../tests/harness.ts";
import type { FunctionProcess } from "../local/function_processes.ts";
import { listConfigs } from "../supabase/functions/_shared/store/smtp_configs.ts";
import { run } from "./send_email.ts";

/** Requests per second of `count` calls of `one`, `concurrency` at a time. */
async function rate(count: number, concurrency: number, one: () => Promise<unknown>): Promise<number> {
  return (await run(count, concurrency, async () => void await one())).rate;
}

export interface ConfigsBench {
  function_rps: number;
  through_local_gateway_rps: number;
  direct_rps: number;
  ratio: number;
}

/** Run the case and print its table. */
export async function benchConfigs(
  stack: TestStack,
  process: FunctionProcess,
  user: TestUser,
  requests: number,
): Promise<ConfigsBench> {
  const concurrency = 8;
  const count = Math.max(requests, 2 * concurrency);
  const get = async (url: string) => {
    const res = await fetch(url, { headers: { authorization: `Bearer ${user.token}` } });
    await res.body?.cancel();
    if (res.status !== 200) throw new Error(`GET /smtp-configs answered ${res.status}`);
  };
  // Warm both paths (connections, prepared statements, the token cache) before measuring.
  await rate(2 * concurrency, concurrency, () => get(`${process.url}/smtp-configs`));
  await rate(2 * concurrency, concurrency, () => stack.asDataApi(user, (tx) => listConfigs(tx as never)));
  const direct = await rate(count, concurrency, () => stack.asDataApi(user, (tx) => listConfigs(tx as never)));
  const viaFunction = await rate(count, concurrency, () => get(`${process.url}/smtp-configs`));
  const viaGateway = await rate(count, concurrency, () => get(`${stack.url}/functions/v1/smtp-configs`));
  console.log(`\n### GET /smtp-configs against its RLS transaction straight to Postgres (${count}, 8 concurrent)\n`);
  console.log("| path | req/s | ratio |");
  console.log("| --- | ---: | ---: |");
  console.log(`| direct: begin, claims, the list query, commit, from this process | ${Math.round(direct)} | 1.00 |`);
  console.log(
    `| GET /smtp-configs, straight to the function's process | ${Math.round(viaFunction)} | ${
      (viaFunction / direct).toFixed(2)
    } |`,
  );
  console.log(
    `| GET /smtp-configs through the local gateway (which runs in this process) | ${Math.round(viaGateway)} | ${
      (viaGateway / direct).toFixed(2)
    } |`,
  );
  return {
    function_rps: viaFunction,
    through_local_gateway_rps: viaGateway,
    direct_rps: direct,
    ratio: viaFunction / direct,
  };
}
