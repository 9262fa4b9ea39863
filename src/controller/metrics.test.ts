import { test } from "node:test";
import assert from "node:assert/strict";
import { Counter, Gauge, Histogram, OperatorMetrics } from "./metrics.ts";

test("counters render in Prometheus text format with escaped labels", async () => {
  const c = new Counter("x_total", "Things.");
  c.inc({ result: "ok" });
  c.inc({ result: "ok" });
  c.inc({ result: 'say "hi"' }, 3);
  assert.equal(c.get({ result: "ok" }), 2);
  assert.equal((await c.render()).trim(), ['# HELP x_total Things.', "# TYPE x_total counter", 'x_total{result="ok"} 2', 'x_total{result="say \\"hi\\""} 3'].join("\n"));
  c.setTotal({ result: "ok" }, 7);
  assert.equal(c.get({ result: "ok" }), 7);
  assert.match(await c.render(), /^x_total\{result="ok"\} 7$/m);
});

test("gauge replace drops series that disappeared", async () => {
  const g = new Gauge("g", "G.");
  g.replace([{ labels: { mode: "a" }, value: 1 }, { labels: { mode: "b" }, value: 2 }]);
  g.replace([{ labels: { mode: "b" }, value: 5 }]);
  assert.equal(g.get({ mode: "a" }), undefined);
  assert.equal(g.get({ mode: "b" }), 5);
  const text = await g.render();
  assert.doesNotMatch(text, /mode="a"/);
  assert.match(text, /^g\{mode="b"\} 5$/m);
});

test("histogram buckets are cumulative", async () => {
  const h = new Histogram("h", "H.", [1, 2]);
  h.observe(0.5);
  h.observe(1.5);
  h.observe(3);
  const text = await h.render();
  assert.match(text, /h_bucket\{le="1"\} 1/);
  assert.match(text, /h_bucket\{le="2"\} 2/);
  assert.match(text, /h_bucket\{le="\+Inf"\} 3/);
  assert.match(text, /h_sum 5/);
});

test("the operator's registry has gpuop's series and the process and Node.js runtime metrics", async () => {
  const m = new OperatorMetrics();
  m.reconciles.inc({ result: "success" });
  m.apiRequests.setTotal({ verb: "list" }, 4);
  m.leader.set(1);
  m.operandNodes.replace([{ labels: { operand: "devicePlugin", state: "waiting" }, value: 3 }]);
  const text = await m.render();
  for (const series of [
    /^gpuop_reconcile_total\{result="success"\} 1$/m,
    /^gpuop_api_requests_total\{verb="list"\} 4$/m,
    /^gpuop_leader 1$/m,
    /^# TYPE gpuop_reconcile_duration_seconds histogram$/m,
    /^# TYPE gpuop_operand_reconcile_duration_seconds histogram$/m,
    /^# TYPE gpuop_gpu_nodes gauge$/m,
    /^gpuop_operand_nodes\{operand="devicePlugin",state="waiting"\} 3$/m,
    /^process_resident_memory_bytes \d+/m,
    /^process_cpu_seconds_total [\d.e+-]+/m,
    /^process_open_fds \d+/m,
    /^nodejs_eventloop_lag_seconds [\d.e+-]+/m,
    /^# TYPE nodejs_gc_duration_seconds histogram$/m,
  ]) {
    assert.match(text, series);
  }
  assert.match(m.contentType, /^text\/plain/);
});

test("a metric field added without the registry is exposed as well", async () => {
  class WithExtra extends OperatorMetrics {
    readonly extra = new Counter("gpuop_extra_total", "Added by another part of the operator.");
  }
  const m = new WithExtra();
  m.extra.inc({ kind: "x" }, 2);
  const text = await m.render();
  assert.match(text, /^gpuop_extra_total\{kind="x"\} 2$/m);
  assert.match(text, /^gpuop_leader 0$/m);
  assert.equal(text.match(/^# TYPE gpuop_extra_total counter$/gm)?.length, 1);
});
