// The registry client against a real local registry (CNCF distribution v3):
// push 10,000 tags, then list them all and check 1,000 specific tags, beside
// a naive client (one request per tag, no pagination, a new connection per
// request) measured in the same run.
import { Agent, request } from "undici";
import { RegistryClient } from "../src/registry/client.ts";
import { manifestAccept } from "../src/registry/manifest.ts";
import { mapLimit } from "../src/registry/pool.ts";
import { localClient, pushImage, startRegistry, type LocalRegistry } from "../test/harness/registry.ts";
import { seconds, type Benchmark } from "./benchmark.ts";

const TAGS = Number(process.env.GPUOP_BENCH_TAGS ?? 10_000);
const CHECKS = Math.min(1000, TAGS);
const repo = "nvidia/driver";
const tagName = (i: number) => `580-6.8.0-${i}-generic-ubuntu24.04`;

interface Result { seconds: number; requests: number; found: number }

/**
 * gpuop's client: paged listing; the checks with tagsPresent (which answers
 * many tags from the paged list), or one HEAD per tag over kept-alive connections.
 */
async function gpuopClient(reg: LocalRegistry, wanted: string[], perTag: boolean): Promise<Result & { listed: number }> {
  const client = new RegistryClient({ registry: reg.host, plainHttp: true });
  try {
    const start = performance.now();
    const listed = await client.listTags(repo, { pageSize: 1000 });
    const found = perTag
      ? (await mapLimit(wanted, 16, (t) => client.hasTag(repo, t))).filter(Boolean).length
      : (await client.tagsPresent(repo, wanted)).size;
    return { seconds: seconds(start), requests: client.requests, found, listed: listed.length };
  } finally {
    await client.close();
  }
}

/** The naive way: the whole tag list in one response, then one request per tag, each on a new connection. */
async function naiveClient(reg: LocalRegistry, wanted: string[]): Promise<Result & { listed: number }> {
  let requests = 0;
  const once = async (path: string, method: "GET" | "HEAD", headers: Record<string, string> = {}) => {
    const agent = new Agent({ pipelining: 0 });
    requests++;
    try {
      const res = await request(`${reg.url}${path}`, { method, headers: { ...headers, connection: "close" }, dispatcher: agent });
      const body = method === "GET" ? await res.body.text() : (await res.body.dump(), "");
      return { status: res.statusCode, body };
    } finally {
      await agent.close();
    }
  };
  const start = performance.now();
  const list = await once(`/v2/${repo}/tags/list`, "GET");
  const listed = (JSON.parse(list.body) as { tags: string[] }).tags.length;
  let found = 0;
  for (const t of wanted) {
    const res = await once(`/v2/${repo}/manifests/${t}`, "GET", { accept: manifestAccept });
    if (res.status === 200) found++;
  }
  return { seconds: seconds(start), requests, found, listed };
}

const ratio = (a: number, b: number) => (b === 0 ? "n/a" : `${(a / b).toFixed(1)}x`);

export const benchmark: Benchmark = {
  name: "registry",
  async run() {
    const reg = await startRegistry();
    try {
      const tags = Array.from({ length: TAGS }, (_, i) => tagName(i));
      const pusher = localClient(reg);
      const pushStart = performance.now();
      try {
        await pushImage(pusher, repo, tags, { concurrency: 32 });
      } finally {
        await pusher.close();
      }
      console.log(`push ${TAGS} tags (1 manifest, ${TAGS} tag PUTs, 32 at a time): ${seconds(pushStart)} s, ${pusher.requests} requests ${JSON.stringify(pusher.requestCounts())}`);

      // 1,000 specific tags: most exist, every tenth does not.
      const wanted = Array.from({ length: CHECKS }, (_, i) => (i % 10 === 9 ? tagName(TAGS + i) : tagName((i * 7919) % TAGS)));
      const gpuop = await gpuopClient(reg, wanted, false);
      const heads = await gpuopClient(reg, wanted, true);
      const naive = await naiveClient(reg, wanted);
      for (const r of [gpuop, heads]) {
        if (r.found !== naive.found || r.listed !== naive.listed) {
          throw new Error(`clients disagree: gpuop listed ${r.listed} found ${r.found}, naive listed ${naive.listed} found ${naive.found}`);
        }
      }
      console.log(`list ${gpuop.listed} tags + check ${CHECKS} tags (${gpuop.found} exist):`);
      console.log(`  gpuop client:           ${gpuop.seconds.toFixed(2)} s, ${gpuop.requests} requests (pages of 1000; tagsPresent answers the checks from the pages)`);
      console.log(`  gpuop, HEAD per tag:    ${heads.seconds.toFixed(2)} s, ${heads.requests} requests (pages of 1000; one HEAD per tag, 16 in flight, kept-alive)`);
      console.log(`  naive client:           ${naive.seconds.toFixed(2)} s, ${naive.requests} requests (one unpaged list; one GET per tag, new connection each)`);
      console.log(`  naive/gpuop:            ${ratio(naive.seconds, gpuop.seconds)} time, ${ratio(naive.requests, gpuop.requests)} requests`);
      console.log(`  naive/gpuop HEAD:       ${ratio(naive.seconds, heads.seconds)} time, ${ratio(naive.requests, heads.requests)} requests`);
    } finally {
      await reg.stop();
    }
  },
};
