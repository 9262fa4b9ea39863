// A CPU profile of a running Node process for a chosen window, through its inspector: SIGUSR1
// opens the inspector (on 127.0.0.1:9229), and the profiler runs only between start and stop,
// so a profile of a quiet minute is not drowned by the busy ones before it (--cpu-prof covers a
// process's whole life).

interface Pending { resolve: (v: unknown) => void; reject: (e: Error) => void }

export interface WindowProfile {
  /** Stops the profiler and returns the profile (Chrome's .cpuprofile format, as JSON text). */
  stop(): Promise<string>;
}

export async function startWindowProfile(pid: number, port = 9229): Promise<WindowProfile> {
  process.kill(pid, "SIGUSR1");
  let url: string | undefined;
  for (let i = 0; i < 50 && !url; i++) {
    await new Promise((r) => setTimeout(r, 200));
    try {
      const targets = (await (await fetch(`http://127.0.0.1:${port}/json/list`)).json()) as { webSocketDebuggerUrl: string }[];
      url = targets[0]?.webSocketDebuggerUrl;
    } catch {
      // not listening yet
    }
  }
  if (!url) throw new Error(`the inspector of process ${pid} did not open on port ${port}`);
  const ws = new WebSocket(url);
  await new Promise<void>((resolve, reject) => {
    ws.addEventListener("open", () => resolve(), { once: true });
    ws.addEventListener("error", () => reject(new Error(`cannot connect to ${url}`)), { once: true });
  });
  let next = 1;
  const pending = new Map<number, Pending>();
  // A closed connection answers nothing more: what waits for an answer fails rather than hangs.
  ws.addEventListener("close", () => {
    for (const p of pending.values()) p.reject(new Error("the inspector's connection closed"));
    pending.clear();
  });
  ws.addEventListener("message", (ev) => {
    const msg = JSON.parse(String(ev.data)) as { id?: number; result?: unknown; error?: { message: string } };
    const p = msg.id !== undefined ? pending.get(msg.id) : undefined;
    if (!p) return;
    pending.delete(msg.id!);
    if (msg.error) p.reject(new Error(msg.error.message));
    else p.resolve(msg.result);
  });
  const call = (method: string, params: object = {}) =>
    new Promise<unknown>((resolve, reject) => {
      const id = next++;
      pending.set(id, { resolve, reject });
      ws.send(JSON.stringify({ id, method, params }));
    });
  await call("Profiler.enable");
  await call("Profiler.setSamplingInterval", { interval: 1000 });
  await call("Profiler.start");
  return {
    async stop() {
      const { profile } = (await call("Profiler.stop")) as { profile: unknown };
      await call("Profiler.disable");
      ws.close();
      return JSON.stringify(profile);
    },
  };
}
