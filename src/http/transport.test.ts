import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { HttpAgent, request } from "./transport.ts";

describe("http transport", () => {
  let server: Server;
  let base = "";
  const sockets = new Set<number>();
  const routes: Record<string, (req: IncomingMessage, res: ServerResponse) => void> = {
    "/echo": (req, res) => {
      let body = "";
      req.on("data", (d: Buffer) => (body += d.toString()));
      req.on("end", () => res.end(JSON.stringify({ method: req.method, body, length: req.headers["content-length"], auth: req.headers.authorization })));
    },
    "/challenges": (_req, res) => {
      res.setHeader("www-authenticate", ['Bearer realm="https://auth.example/token",service="r"', 'Basic realm="r"']);
      res.end();
    },
    "/slow-headers": (_req, res) => void setTimeout(() => res.end("late"), 1000),
    "/slow-body": (_req, res) => {
      res.writeHead(200);
      res.write("first ");
      setTimeout(() => res.end("second"), 1000);
    },
    "/stream": (_req, res) => {
      res.writeHead(200);
      let n = 0;
      const t = setInterval(() => {
        res.write(`line ${++n}\n`);
        if (n === 3) {
          clearInterval(t);
          res.end();
        }
      }, 20);
    },
    "/big": (_req, res) => res.end("x".repeat(200_000)),
  };

  before(async () => {
    server = createServer((req, res) => {
      sockets.add(req.socket.remotePort!);
      const route = routes[req.url ?? ""];
      if (route) route(req, res);
      else res.writeHead(404).end();
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });

  it("sends the body with its length and reads the answer as text", async () => {
    const agent = new HttpAgent();
    const res = await request(`${base}/echo`, { method: "PATCH", agent, body: '{"a":"é"}', headers: { authorization: "Bearer t" } });
    assert.equal(res.statusCode, 200);
    assert.deepEqual(JSON.parse(await res.body.text()), { method: "PATCH", body: '{"a":"é"}', length: "10", auth: "Bearer t" });
    await agent.close();
  });

  it("keeps a repeated header's values apart", async () => {
    const agent = new HttpAgent();
    const res = await request(`${base}/challenges`, { method: "GET", agent });
    await res.body.dump();
    assert.deepEqual(res.headers["www-authenticate"], ['Bearer realm="https://auth.example/token",service="r"', 'Basic realm="r"']);
    assert.equal(typeof res.headers["content-length"], "string");
    await agent.close();
  });

  it("uses one kept-alive connection for requests one after another", async () => {
    const agent = new HttpAgent();
    sockets.clear();
    for (let i = 0; i < 4; i++) await (await request(`${base}/big`, { method: "GET", agent })).body.dump();
    for (let i = 0; i < 2; i++) assert.equal((await (await request(`${base}/big`, { method: "GET", agent })).body.bytes()).length, 200_000);
    assert.equal(sockets.size, 1);
    await agent.close();
  });

  it("streams the body chunk by chunk", async () => {
    const agent = new HttpAgent();
    const res = await request(`${base}/stream`, { method: "GET", agent });
    let text = "";
    for await (const chunk of res.body) text += chunk.toString();
    assert.equal(text, "line 1\nline 2\nline 3\n");
    await agent.close();
  });

  it("fails with a timeout when the headers or the body stall", async () => {
    const agent = new HttpAgent();
    await assert.rejects(request(`${base}/slow-headers`, { method: "GET", agent, headersTimeoutMs: 100 }), { name: "TimeoutError", code: "HEADERS_TIMEOUT" });
    const res = await request(`${base}/slow-body`, { method: "GET", agent, bodyTimeoutMs: 100 });
    await assert.rejects(res.body.text(), { name: "TimeoutError", code: "BODY_TIMEOUT" });
    // Without a body timeout the same body arrives whole.
    assert.equal(await (await request(`${base}/slow-body`, { method: "GET", agent })).body.text(), "first second");
    await agent.close();
  });

  it("aborts a request and a body being read when the signal aborts", async () => {
    const agent = new HttpAgent();
    await assert.rejects(request(`${base}/slow-headers`, { method: "GET", agent, signal: AbortSignal.timeout(50) }), { name: "AbortError" });
    const ac = new AbortController();
    const res = await request(`${base}/slow-body`, { method: "GET", agent, signal: ac.signal });
    setTimeout(() => ac.abort(), 50);
    await assert.rejects(res.body.text(), { name: "AbortError" });
    await agent.close();
  });

  it("close lets a request in flight finish and keeps no connection after it", async () => {
    const agent = new HttpAgent();
    await (await request(`${base}/big`, { method: "GET", agent })).body.dump();
    const res = await request(`${base}/stream`, { method: "GET", agent });
    await agent.close();
    let text = "";
    for await (const chunk of res.body) text += chunk.toString();
    assert.equal(text, "line 1\nline 2\nline 3\n");
    await new Promise((r) => setImmediate(r));
    const pooled = (agent.agentFor("http:") as unknown as { freeSockets: Record<string, unknown[]> }).freeSockets;
    assert.equal(Object.values(pooled).flat().length, 0);
  });

  it("reports a refused connection with its code", async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    await assert.rejects(request(`http://127.0.0.1:${port}/`, { method: "GET", agent: new HttpAgent() }), { code: "ECONNREFUSED" });
  });
});
