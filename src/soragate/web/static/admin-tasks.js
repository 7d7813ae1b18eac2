// All tasks, every key: filters (status, key, provider, model, dialect), paging, detail.

import { api, el, toast } from "/static/api.js";
import { $, badge, fmtNumber, fmtTime, listen, run, table } from "/static/admin-ui.js";

let keyNames = new Map();
let providerNames = new Set(["sandbox"]);
let lastId = null;
let shown = [];

function fillSelect(select, values, anyLabel) {
  const current = select.value;
  select.replaceChildren(
    el("option", { value: "" }, anyLabel),
    ...values.map(([value, label]) => el("option", { value }, label)),
  );
  select.value = values.some(([value]) => value === current) ? current : "";
}

function query(after) {
  const params = new URLSearchParams();
  for (const [name, value] of new FormData($("task-filters"))) if (value) params.set(name, value);
  params.set("limit", "50");
  if (after) params.set("after", after);
  return `/v1/admin/tasks?${params}`;
}

const keyLabel = (id) => keyNames.get(id) || id;

function row(task) {
  const open = el(
    "button",
    { type: "button", class: "link mono", "aria-label": `Open task ${task.id}`, onclick: () => openTask(task.id) },
    task.id.length > 22 ? `${task.id.slice(0, 20)}…` : task.id,
  );
  return el(
    "tr",
    { dataset: { task: task.id, status: task.status } },
    el("td", {}, open),
    el("td", {}, fmtTime(task.created_at)),
    el("td", { class: "key" }, keyLabel(task.key_id)),
    el("td", {}, task.dialect),
    el("td", {}, task.model),
    el(
      "td",
      {},
      badge(task.status),
      task.status === "in_progress" ? el("span", { class: "muted" }, ` ${task.progress}%`) : null,
    ),
    el("td", {}, task.provider || "—"),
    el("td", { class: "num" }, task.seconds === null ? "—" : `${fmtNumber(task.seconds, 1)} s`),
    el(
      "td",
      { class: "num", title: task.refunded ? `${fmtNumber(task.cost, 4)} credits given back` : null },
      fmtNumber(task.charged ?? task.cost, 4),
      task.refunded ? el("span", { class: "muted small" }, " refunded") : null,
    ),
    el("td", { class: "prompt" }, task.error ? task.error.message : task.prompt),
  );
}

function render() {
  const headers = ["Task", "Created", "Key", "Dialect", "Model", "Status", "Provider", "Length", "Credits", "Prompt / error"];
  $("task-list").replaceChildren(
    table(headers, shown.map(row), { caption: "Tasks", empty: "No tasks match these filters." }),
  );
  $("tasks-count").textContent = `${shown.length} task${shown.length === 1 ? "" : "s"} shown.`;
}

let loading = 0;

export async function load(more = false) {
  const ticket = ++loading; // filters can change faster than answers come back: keep the latest
  const data = await run(more ? $("tasks-more") : null, $("tasks-error"), () => api(query(more ? lastId : null)));
  if (!data || ticket !== loading) return;
  shown = more ? shown.concat(data.data) : data.data;
  lastId = data.last_id;
  $("tasks-more").hidden = !data.has_more;
  render();
}

function fact(term, value) {
  if (value === null || value === undefined || value === "") return null;
  return el("div", {}, el("dt", {}, term), el("dd", {}, value));
}

async function cancel(button, task) {
  const updated = await run(button, $("task-dialog-error"), () =>
    api(`/v1/admin/tasks/${task.id}/cancel`, { method: "POST" }),
  );
  if (!updated) {
    // It ended meanwhile (or went): show it as it is now, keeping the error in view.
    const message = $("task-dialog-error").textContent;
    await openTask(task.id);
    if (!$("task-dialog-error").textContent) $("task-dialog-error").textContent = message;
    load();
    return;
  }
  toast(`Cancelled ${task.id}.`);
  showDetail(updated, []);
  load();
}

function showDetail(task, deliveries) {
  $("task-dialog-title").textContent = `Task ${task.id}`;
  const active = task.status === "queued" || task.status === "in_progress";
  const parts = [
    el(
      "dl",
      { class: "facts" },
      fact("Status", [badge(task.status), active ? ` ${task.progress}%` : ""]),
      fact("Key", `${keyLabel(task.key_id)} (${task.key_id})`),
      fact("Dialect", task.dialect),
      fact("Kind", task.kind.replace(/_/g, " ")),
      fact("Model", task.model === task.base_model ? task.model : `${task.model} (${task.base_model})`),
      fact("Size", task.size),
      fact("Length", task.seconds === null ? null : `${fmtNumber(task.seconds, 1)} s`),
      fact("HD", task.hd ? "yes" : null),
      fact("Style", task.style),
      fact({ extend: "Extension of", edit: "Edit of" }[task.kind] || "Remix of", task.source_task_id),
      fact("Provider", task.provider),
      fact("Upstream id", task.upstream_id),
      fact("Submit attempts", String(task.submit_attempts)),
      fact("Credits", task.refunded
        ? `${fmtNumber(task.charged ?? 0, 4)} (${fmtNumber(task.cost, 4)} refunded)`
        : fmtNumber(task.charged ?? task.cost, 4)),
      fact("Created", fmtTime(task.created_at)),
      fact("Started", task.started_at ? fmtTime(task.started_at) : null),
      fact("Finished", task.completed_at ? fmtTime(task.completed_at) : null),
      fact("Error", task.error ? `${task.error.message} (${task.error.code})` : null),
    ),
    el("h3", {}, "Prompt"),
    el("p", { class: "prompt-full" }, task.prompt || "—"),
    task.shots.length
      ? el("ol", { class: "shots" }, task.shots.map((s) => el("li", {}, `${s.seconds} s — ${s.prompt}`)))
      : null,
    el("h3", {}, "Files"),
    task.assets.length
      ? el("ul", {}, task.assets.map((a) => el("li", {}, `${a.variant}: ${a.mime}, ${fmtNumber(a.bytes / 1024, 1)} KiB`)))
      : el("p", { class: "muted" }, "None stored."),
    el("h3", {}, "Webhook deliveries"),
    deliveries.length
      ? el("ul", {}, deliveries.map((d) => el("li", {}, `${d.event} → ${d.url}: ${d.status} after ${d.attempts} attempt(s)${d.last_status_code ? ` (HTTP ${d.last_status_code})` : ""}`)))
      : el("p", { class: "muted" }, "None."),
    active
      ? el("div", { class: "actions" }, el("button", { type: "button", class: "danger", onclick: (e) => cancel(e.currentTarget, task) }, "Cancel task"))
      : null,
  ];
  $("task-detail").replaceChildren(...parts.filter(Boolean));
}

async function openTask(id) {
  const dialog = $("task-dialog");
  $("task-dialog-error").textContent = "";
  $("task-dialog-title").textContent = `Task ${id}`;
  $("task-detail").replaceChildren(el("p", { class: "muted" }, "Loading…"));
  if (!dialog.open) dialog.showModal();
  const [task, deliveries] = await Promise.all([
    run(null, $("task-dialog-error"), () => api(`/v1/admin/tasks/${encodeURIComponent(id)}`)),
    api(`/v1/admin/deliveries?task_id=${encodeURIComponent(id)}`).catch(() => ({ data: [] })),
  ]);
  if (task) showDetail(task, deliveries.data);
  else $("task-detail").replaceChildren();
}

async function loadModels() {
  const models = await run(null, $("tasks-error"), () => api("/v1/models"));
  if (models) fillSelect($("tf-model"), models.data.map((m) => [m.id, m.id]), "Any model");
}

function fillProviders() {
  fillSelect($("tf-provider"), [...providerNames].sort().map((n) => [n, n]), "Any provider");
}

export function init() {
  const filters = $("task-filters");
  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    load();
  });
  filters.addEventListener("change", () => load());
  // The reset clears the fields after this event; reload once it has.
  filters.addEventListener("reset", () => setTimeout(load));
  $("tasks-more").addEventListener("click", () => load(true));
  $("task-dialog-close").addEventListener("click", () => $("task-dialog").close());
  listen("keys", (keys) => {
    keyNames = new Map(keys.map((k) => [k.id, k.name]));
    fillSelect($("tf-key"), keys.map((k) => [k.id, `${k.name} (${k.prefix}…)`]), "Any key");
    if (shown.length) render();
  });
  listen("providers", (providers) => {
    for (const p of providers) providerNames.add(p.name);
    fillProviders();
  });
  listen("usage", (usage) => {
    for (const p of usage.providers) if (p.provider !== "unassigned") providerNames.add(p.provider);
    fillProviders();
  });
  fillProviders();
  loadModels();
}
