// Overview: usage over time (GET /v1/admin/usage) as charts, and each provider's health.

import { api, el } from "/static/api.js";
import { dayBars, rateBars } from "/static/admin-charts.js";
import { $, announce, badge, fmtNumber, fmtPercent, listen, rerender, run, table } from "/static/admin-ui.js";

let usage = null;

const CHARTS = [
  { id: "chart-tasks", title: "Tasks per day", field: "tasks", integer: true, format: (v) => fmtNumber(v, 0) },
  { id: "chart-seconds", title: "Seconds generated per day", field: "seconds", format: (v) => `${fmtNumber(v, 1)} s` },
  { id: "chart-credits", title: "Credits per day", field: "credits", format: (v) => fmtNumber(v, 2) },
];

function draw() {
  if (!usage) return;
  for (const chart of CHARTS) {
    const box = $(chart.id).querySelector(".chart-box");
    const points = usage.days.map((d) => ({ date: d.date, value: d[chart.field] }));
    box.replaceChildren(...dayBars({ ...chart, points, width: box.clientWidth || 320 }));
  }
  const box = $("chart-failures").querySelector(".chart-box");
  // Only providers with finished tasks have a failure rate worth drawing.
  const rows = usage.providers
    .map((p) => ({ name: p.provider, rate: p.failure_rate, failed: p.failed, ended: p.completed + p.failed }))
    .filter((row) => row.ended > 0);
  box.replaceChildren(...rateBars({ title: "Failure rate by provider", rows, width: box.clientWidth || 320 }));
}

function summarize() {
  const sum = (field) => usage.days.reduce((total, d) => total + d[field], 0);
  const ended = sum("completed") + sum("failed");
  const rate = ended ? sum("failed") / ended : 0;
  $("usage-summary").textContent =
    `Last ${usage.days.length} days: ${fmtNumber(sum("tasks"), 0)} tasks, ` +
    `${fmtNumber(sum("seconds"), 1)} s generated, ${fmtNumber(sum("credits"), 2)} credits, ` +
    `${fmtPercent(rate)} of finished tasks failed.`;
}

export async function loadUsage(button) {
  const days = $("usage-days").value;
  const data = await run(button, $("usage-error"), () => api(`/v1/admin/usage?days=${days}`));
  if (!data) return;
  usage = data;
  summarize();
  draw();
  announce("usage", usage);
}

function healthRow(p) {
  return el(
    "tr",
    {},
    el("th", { scope: "row" }, p.name),
    el("td", {}, p.kind),
    el("td", {}, badge(p.health), p.health !== "ok" && p.disabled_reason ? el("div", { class: "muted" }, p.disabled_reason) : null),
    el("td", { class: "num" }, `${p.in_flight} / ${p.max_concurrency}`),
    el("td", { class: "num" }, String(p.success_count)),
    el("td", { class: "num" }, String(p.failure_count)),
    el("td", {}, p.last_error || "—"),
  );
}

function renderHealth(providers) {
  rerender(
    $("overview-providers"),
    table(["Account", "Kind", "Health", "In flight", "Succeeded", "Failed", "Last error"], providers.map(healthRow), {
      caption: "Provider health",
      empty: "No provider accounts: the built-in sandbox serves every model.",
    }),
  );
}

function workerRow(w) {
  const age = Math.max(0, Date.now() / 1000 - w.heartbeat_at);
  return el(
    "tr",
    {},
    el("th", { scope: "row" }, w.id),
    el("td", {}, w.role),
    el("td", {}, `${w.host} (pid ${w.pid})`),
    el("td", { class: "num" }, String(w.held)),
    el("td", { class: "num" }, `${fmtNumber(age, 0)} s ago`),
  );
}

function renderWorkers(workers) {
  rerender(
    $("overview-workers"),
    table(["Worker", "Role", "Host", "Tasks held", "Heartbeat"], workers.map(workerRow), {
      caption: "Live workers",
      empty: "No live worker: tasks wait until a `soragate serve` or `soragate worker` process runs.",
    }),
  );
}

export async function load() {
  await Promise.all([
    loadUsage(null),
    run(null, $("usage-error"), () => api("/v1/admin/providers")).then((list) => list && renderHealth(list.data)),
    run(null, $("usage-error"), () => api("/v1/admin/workers")).then((list) => list && renderWorkers(list.data)),
  ]);
}

export function init() {
  $("usage-form").addEventListener("submit", (event) => {
    event.preventDefault();
    loadUsage(event.submitter);
  });
  $("usage-days").addEventListener("change", () => loadUsage(null));
  listen("providers", renderHealth);
  // Charts are drawn at the container's pixel width: redraw when it changes.
  let frame = 0;
  let lastWidth = 0;
  new ResizeObserver((entries) => {
    const width = Math.round(entries[0].contentRect.width);
    if (width === lastWidth || width === 0) return;
    lastWidth = width;
    cancelAnimationFrame(frame);
    frame = requestAnimationFrame(draw);
  }).observe($("chart-tasks"));
}
