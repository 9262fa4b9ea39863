import { test } from "node:test";
import assert from "node:assert/strict";
import { Counter, Gauge, Histogram } from "./metrics.ts";

test("counters render in Prometheus text format with escaped labels", () => {
  const c = new Counter("x_total", "Things.");
  c.inc({ result: "ok" });
  c.inc({ result: "ok" });
  c.inc({ result: 'say "hi"' }, 3);
  assert.equal(c.get({ result: "ok" }), 2);
  assert.equal(c.render(), ['# HELP x_total Things.', "# TYPE x_total counter", 'x_total{result="ok"} 2', 'x_total{result="say \\"hi\\""} 3'].join("\n"));
});

test("gauge replace drops series that disappeared", () => {
  const g = new Gauge("g", "G.");
  g.replace([{ labels: { mode: "a" }, value: 1 }, { labels: { mode: "b" }, value: 2 }]);
  g.replace([{ labels: { mode: "b" }, value: 5 }]);
  assert.equal(g.get({ mode: "a" }), undefined);
  assert.equal(g.get({ mode: "b" }), 5);
});

test("histogram buckets are cumulative", () => {
  const h = new Histogram("h", "H.", [1, 2]);
  h.observe(0.5);
  h.observe(1.5);
  h.observe(3);
  const text = h.render();
  assert.match(text, /h_bucket\{le="1"\} 1/);
  assert.match(text, /h_bucket\{le="2"\} 2/);
  assert.match(text, /h_bucket\{le="\+Inf"\} 3/);
  assert.match(text, /h_sum 5/);
});
