// API keys: create (the key is shown once), revoke, credit limits and balances, brakes
// (requests per minute, tasks in flight), usage.

import { api, el, session, toast } from "/static/api.js";
import { $, announce, confirmButton, fmtNumber, fmtTime, listen, rerender, run, showOnce, table } from "/static/admin-ui.js";

let keys = [];
let usageByKey = new Map();
let usageDays = 14;
let defaults = { rate: null, inFlight: null }; // the server's, for keys without their own

export const isMine = (key) => Boolean(session.key && session.key.startsWith(key.prefix));

function limitForm(key) {
  const input = el("input", {
    type: "number",
    min: "0",
    step: "any",
    value: key.credit_limit ?? "",
    placeholder: "none",
    "aria-label": `Credit limit for ${key.name}`,
    dataset: { focus: `limit:${key.id}` },
  });
  const error = el("span", { class: "error", role: "alert" });
  const button = el("button", { type: "submit", class: "secondary", dataset: { focus: `save:${key.id}` } }, "Set");
  const form = el("form", { class: "limit-form" }, input, button, error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const credit_limit = input.value.trim() === "" ? null : input.valueAsNumber;
    const saved = await run(button, error, () =>
      api(`/v1/admin/keys/${key.id}`, { method: "PATCH", json: { credit_limit } }),
    );
    if (saved) {
      toast(`Credit limit for ${key.name}: ${credit_limit === null ? "unlimited" : fmtNumber(credit_limit, 4)}.`);
      await load();
    }
  });
  return form;
}

const describe = (value, unit) => (value === null ? `server default ${unit}` : `${fmtNumber(value, 0)} ${unit}`);

// Requests per minute (creates and changes) and tasks in flight; empty = the server's default.
function brakesForm(key) {
  const field = (name, value, fallback, label, focus) =>
    el("input", {
      type: "number",
      min: "1",
      step: "1",
      name,
      value: value ?? "",
      placeholder: fallback ? `default ${fallback}` : "none",
      "aria-label": `${label} for ${key.name}`,
      dataset: { focus: `${focus}:${key.id}` },
    });
  const rate = field("rate_limit", key.rate_limit, defaults.rate, "Requests per minute", "rate");
  const inFlight = field("max_in_flight", key.max_in_flight, defaults.inFlight, "Tasks in flight", "inflight");
  const error = el("span", { class: "error", role: "alert" });
  const button = el("button", { type: "submit", class: "secondary", dataset: { focus: `brakes:${key.id}` } }, "Set limits");
  const form = el(
    "form",
    { class: "limit-form brakes-form" },
    el("label", {}, rate, el("span", { class: "muted small" }, "/min")),
    el("label", {}, inFlight, el("span", { class: "muted small" }, "in flight")),
    button,
    error,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = (input) => (input.value.trim() === "" ? null : input.valueAsNumber);
    const body = { rate_limit: value(rate), max_in_flight: value(inFlight) };
    const saved = await run(button, error, () => api(`/v1/admin/keys/${key.id}`, { method: "PATCH", json: body }));
    if (saved) {
      const perMinute = saved.rate_limit === 1 ? "request per minute" : "requests per minute";
      toast(`Limits for ${key.name}: ${describe(saved.rate_limit, perMinute)}, ${describe(saved.max_in_flight, "in flight")}.`);
      await load();
    }
  });
  return form;
}

async function revoke(button, key) {
  const done = await run(button, $("keys-error"), () => api(`/v1/admin/keys/${key.id}/revoke`, { method: "POST" }));
  if (!done) return;
  toast(`Revoked ${key.name}.`);
  if (isMine(key)) {
    session.key = null;
    location.reload();
    return;
  }
  await load();
}

function row(key) {
  const used = usageByKey.get(key.id);
  const revoked = Boolean(key.revoked_at);
  return el(
    "tr",
    { class: revoked ? "revoked" : null, dataset: { key: key.id } },
    el("th", { scope: "row" }, key.name, isMine(key) ? el("span", { class: "muted" }, " (you)") : null),
    el("td", {}, key.role),
    el("td", {}, el("code", {}, `${key.prefix}…`)),
    el("td", {}, el("time", { title: fmtTime(key.created_at) }, fmtTime(key.created_at).slice(0, 10))),
    el(
      "td",
      {},
      revoked
        ? [el("span", { class: "badge disabled" }, "revoked"), el("div", { class: "muted small" }, fmtTime(key.revoked_at))]
        : el("span", { class: "badge ok" }, "active"),
    ),
    el("td", { class: "num" }, fmtNumber(key.credits_used, 4)),
    el("td", {}, revoked ? fmtNumber(key.credit_limit, 4) : limitForm(key)),
    el("td", { class: "num" }, key.credits_remaining === null ? "unlimited" : fmtNumber(key.credits_remaining, 4)),
    el("td", { class: "brakes" }, revoked ? "—" : brakesForm(key)),
    el("td", { class: "num" }, used ? `${used.tasks} task${used.tasks === 1 ? "" : "s"}, ${fmtNumber(used.seconds, 1)} s` : "none"),
    el(
      "td",
      {},
      revoked
        ? null
        : confirmButton({
            label: "Revoke",
            question: isMine(key) ? "Revoke the key you are signed in with?" : `Revoke ${key.name}?`,
            confirmLabel: "Revoke",
            focusKey: `revoke:${key.id}`,
            onConfirm: (button) => revoke(button, key),
          }),
    ),
  );
}

function render() {
  const headers = ["Name", "Role", "Key", "Created", "Status", "Credits used", "Credit limit", "Remaining", "Limits", `Usage, ${usageDays} d`, ""];
  rerender($("key-list"), table(headers, keys.map(row), { caption: "API keys" }));
}

export async function load() {
  const [data, settings] = await run(null, $("keys-error"), () => Promise.all([api("/v1/admin/keys"), api("/v1/admin/settings")])) || [];
  if (!data) return;
  keys = data.data;
  defaults = { rate: settings.key_rate_limit, inFlight: settings.key_max_in_flight };
  render();
  announce("keys", keys);
}

async function create(event) {
  event.preventDefault();
  const f = event.target.elements;
  const body = {
    name: f.name.value.trim(),
    admin: f.admin.checked,
    credit_limit: f.credit_limit.value.trim() === "" ? null : f.credit_limit.valueAsNumber,
  };
  const created = await run(event.submitter, $("key-form-error"), () => api("/v1/admin/keys", { method: "POST", json: body }));
  if (!created) return;
  event.target.reset();
  $("new-key-name").textContent = created.name;
  showOnce({
    box: $("new-key"),
    value: created.key,
    valueNode: $("new-key-value"),
    copyButton: $("new-key-copy"),
    doneButton: $("new-key-done"),
    label: "Key",
  });
  await load();
}

export function init() {
  $("key-form").addEventListener("submit", create);
  $("keys-refresh").addEventListener("click", (event) => run(event.currentTarget, null, load));
  listen("usage", (usage) => {
    usageDays = usage.days.length;
    usageByKey = new Map(usage.keys.map((k) => [k.key_id, k]));
    render();
  });
}
