// Webhook endpoints (the signing secret is shown once) and their delivery log.

import { api, el, toast } from "/static/api.js";
import { $, badge, confirmButton, fmtTime, rerender, run, showOnce, table } from "/static/admin-ui.js";

let endpoints = [];

const DELIVERY_STATUS = { delivered: "completed", failed: "failed", pending: "queued" };

function endpointRow(endpoint) {
  return el(
    "tr",
    { dataset: { endpoint: endpoint.id } },
    el("th", { scope: "row", class: "url" }, endpoint.url),
    el("td", {}, endpoint.events.join(", ")),
    el("td", {}, endpoint.enabled ? badge("ok") : badge("disabled")),
    el("td", {}, el("code", {}, endpoint.secret)),
    el("td", {}, fmtTime(endpoint.created_at)),
    el(
      "td",
      { class: "actions" },
      el(
        "button",
        {
          type: "button",
          class: "secondary",
          dataset: { focus: `log:${endpoint.id}` },
          onclick: () => {
            $("df-endpoint").value = endpoint.id;
            loadDeliveries().then(() => $("delivery-list").scrollIntoView({ block: "nearest" }));
          },
        },
        "Deliveries",
      ),
      confirmButton({
        label: "Delete",
        question: "Delete this endpoint?",
        confirmLabel: "Delete",
        focusKey: `delete:${endpoint.id}`,
        onConfirm: (button) => remove(button, endpoint),
      }),
    ),
  );
}

async function remove(button, endpoint) {
  const done = await run(button, $("webhooks-error"), () => api(`/v1/admin/webhooks/${endpoint.id}`, { method: "DELETE" }));
  if (!done) return;
  toast("Endpoint deleted.");
  await load();
}

function deliveryRow(d) {
  return el(
    "tr",
    {},
    el("td", {}, fmtTime(d.created_at)),
    el("td", {}, d.event),
    el("td", { class: "mono" }, d.task_id),
    el("td", { class: "url" }, d.url),
    el("td", {}, el("span", { class: `badge ${DELIVERY_STATUS[d.status] || ""}` }, d.status)),
    el("td", { class: "num" }, String(d.attempts)),
    el("td", {}, d.last_status_code ? `HTTP ${d.last_status_code}` : "—"),
    el("td", {}, d.last_error || "—"),
    el("td", {}, d.delivered_at ? fmtTime(d.delivered_at) : "—"),
  );
}

export async function loadDeliveries(button) {
  const endpoint = $("df-endpoint").value;
  const path = `/v1/admin/deliveries${endpoint ? `?endpoint_id=${encodeURIComponent(endpoint)}` : ""}`;
  const data = await run(button, $("deliveries-error"), () => api(path));
  if (!data) return;
  const headers = ["Time", "Event", "Task", "URL", "Status", "Attempts", "Last answer", "Last error", "Delivered"];
  rerender($("delivery-list"), table(headers, data.data.map(deliveryRow), { caption: "Webhook deliveries", empty: "No deliveries yet." }));
}

export async function load() {
  const data = await run(null, $("webhooks-error"), () => api("/v1/admin/webhooks"));
  if (!data) return;
  endpoints = data.data;
  rerender(
    $("webhook-list"),
    table(["URL", "Events", "State", "Secret", "Added", ""], endpoints.map(endpointRow), {
      caption: "Webhook endpoints",
      empty: "No endpoints. Clients can still pass a callback URL per task.",
    }),
  );
  const select = $("df-endpoint");
  const current = select.value;
  select.replaceChildren(el("option", { value: "" }, "All endpoints"), ...endpoints.map((e) => el("option", { value: e.id }, e.url)));
  select.value = endpoints.some((e) => e.id === current) ? current : "";
  await loadDeliveries();
}

async function add(event) {
  event.preventDefault();
  const form = event.target;
  const events = [...form.querySelectorAll("input[name=events]:checked")].map((box) => box.value);
  const url = form.elements.url.value.trim();
  if (!events.length) {
    $("webhook-form-error").textContent = "Pick at least one event.";
    return;
  }
  const created = await run(event.submitter, $("webhook-form-error"), () =>
    api("/v1/admin/webhooks", { method: "POST", json: { url, events } }),
  );
  if (!created) return;
  form.reset();
  $("new-webhook-url").textContent = created.url;
  showOnce({
    box: $("new-webhook"),
    value: created.secret,
    valueNode: $("new-webhook-secret"),
    copyButton: $("new-webhook-copy"),
    doneButton: $("new-webhook-done"),
    label: "Secret",
  });
  await load();
}

export function init() {
  $("webhook-form").addEventListener("submit", add);
  $("webhooks-refresh").addEventListener("click", (event) => run(event.currentTarget, null, load));
  $("delivery-filter").addEventListener("submit", (event) => {
    event.preventDefault();
    loadDeliveries(event.submitter);
  });
  $("df-endpoint").addEventListener("change", () => loadDeliveries());
}
