// Provider accounts: list with health, add/edit form, test, enable/disable, remove.
// Secrets are write-only: the API returns them masked and the form never shows one.

import { api, el, toast } from "/static/api.js";
import { $, announce, badge, confirmButton, fmtNumber, rerender, run } from "/static/admin-ui.js";

let providers = [];
let editing = null; // the account being edited, or null when the form adds one
const testResults = new Map(); // account id → {ok, text}

// What a failed connectivity test means, in words (the API's failure classes).
const TEST_RESULTS = {
  retryable: "no usable answer",
  auth: "the key was refused",
  credits: "the account is out of credits",
  uncertain: "no answer",
  moderation: "refused by content review",
  error: "unexpected error",
  not_found: "nothing there",
};

const list = (text) => text.split(",").map((s) => s.trim()).filter(Boolean);

function parseModels(text) {
  const models = {};
  for (const line of text.split("\n").map((s) => s.trim()).filter(Boolean)) {
    // At the first "=" only: an upstream name may hold "=" or ":" (vendor/sora-2:latest).
    const at = line.indexOf("=");
    const [name, upstream] = at < 0 ? [line, ""] : [line.slice(0, at).trim(), line.slice(at + 1).trim()];
    models[name] = upstream;
  }
  return models;
}

// The form as provider JSON. Throws an Error with a readable message on bad input.
function formValues(form) {
  const f = form.elements;
  const number = (name) => {
    const value = f[name].valueAsNumber;
    if (Number.isNaN(value)) throw new Error(`${f[name].labels[0].textContent} must be a number.`);
    return value;
  };
  const limits = {};
  if (f.seconds.value.trim()) {
    limits.seconds = list(f.seconds.value).map(Number);
    if (limits.seconds.some((s) => !Number.isInteger(s))) throw new Error("Durations are whole seconds, like 4, 8, 12.");
  }
  if (f.sizes.value.trim()) limits.sizes = list(f.sizes.value);
  if (f.features.value.trim()) limits.features = list(f.features.value);
  let options;
  try {
    options = JSON.parse(f.options.value.trim() || "{}");
  } catch {
    throw new Error("Options must be JSON, like {} or {\"timeout\": 60}.");
  }
  const values = {
    name: f.name.value.trim(),
    kind: f.kind.value,
    base_url: f.base_url.value.trim(),
    models: parseModels(f.models.value),
    limits,
    options,
    priority: number("priority"),
    weight: number("weight"),
    max_concurrency: number("max_concurrency"),
    poll_rate: number("poll_rate"),
    price_per_second: number("price_per_second"),
  };
  if (!values.name) throw new Error("Give the account a name.");
  if (!Object.keys(values.models).length) throw new Error("List at least one model (or * for all).");
  if (f.secret.value) values.secret = f.secret.value;
  return values;
}

// The help under the Kind menu: what the kind talks to and the options it takes (from the server).
function showKindHelp() {
  const select = $("pf-kind");
  $("pf-kind-help").textContent = select.selectedOptions[0]?.dataset.help || "";
}

function fillForm(p) {
  const f = $("provider-form").elements;
  f.name.value = p.name;
  f.kind.value = p.kind;
  showKindHelp();
  f.base_url.value = p.base_url;
  f.secret.value = "";
  f.secret.placeholder = p.secret ? `unchanged (${p.secret})` : "";
  f.models.value = Object.entries(p.models).map(([k, v]) => (v ? `${k} = ${v}` : k)).join("\n");
  for (const name of ["priority", "weight", "max_concurrency", "poll_rate", "price_per_second"]) f[name].value = p[name];
  f.seconds.value = (p.limits.seconds || []).join(", ");
  f.sizes.value = (p.limits.sizes || []).join(", ");
  f.features.value = (p.limits.features || []).join(", ");
  f.options.value = JSON.stringify(p.options);
}

function stopEditing() {
  editing = null;
  const form = $("provider-form");
  form.reset();
  form.elements.secret.placeholder = "";
  showKindHelp();
  $("provider-form-title").textContent = "Add a provider account";
  $("provider-submit").textContent = "Add account";
  $("provider-cancel").hidden = true;
  $("provider-form-error").textContent = "";
}

function startEditing(p) {
  editing = p;
  fillForm(p);
  $("provider-form-title").textContent = `Edit ${p.name}`;
  $("provider-submit").textContent = "Save changes";
  $("provider-cancel").hidden = false;
  $("provider-form").scrollIntoView({ block: "start" });
  $("pf-name").focus();
}

async function act(button, p, path, message) {
  const box = document.querySelector(`[data-error="${p.id}"]`);
  const updated = await run(button, box, () => api(`/v1/admin/providers/${p.id}/${path}`, { method: "POST" }));
  if (updated) {
    toast(message);
    await load();
  }
}

async function test(button, p) {
  const box = document.querySelector(`[data-error="${p.id}"]`);
  const result = await run(button, box, () => api(`/v1/admin/providers/${p.id}/test`, { method: "POST" }));
  if (!result) return;
  const text = result.ok
    ? `Test passed: ${result.message}`
    : `Test failed (${TEST_RESULTS[result.result] || result.result}): ${result.message}`;
  testResults.set(p.id, { ok: result.ok, text });
  render();
}

async function remove(button, p) {
  const box = document.querySelector(`[data-error="${p.id}"]`);
  if (await run(button, box, () => api(`/v1/admin/providers/${p.id}`, { method: "DELETE" }))) {
    toast(`Removed ${p.name}.`);
    if (editing && editing.id === p.id) stopEditing();
    await load();
  }
}

function fact(term, ...value) {
  return el("div", {}, el("dt", {}, term), el("dd", {}, ...value));
}

function card(p) {
  const models = Object.entries(p.models).map(([k, v]) => (v ? `${k} → ${v}` : k)).join(", ");
  const limits = ["seconds", "sizes", "features"]
    .filter((k) => p.limits[k])
    .map((k) => `${k}: ${p.limits[k].join(", ")}`)
    .join("; ");
  const tested = testResults.get(p.id);
  const focus = (action) => ({ focus: `${action}:${p.id}` });
  return el(
    "article",
    { class: "card provider", "aria-labelledby": `provider-${p.id}`, dataset: { provider: p.name } },
    el(
      "header",
      { class: "provider-head" },
      el("h3", { id: `provider-${p.id}` }, p.name),
      el("span", { class: "badge" }, p.kind),
      badge(p.health),
    ),
    p.health === "disabled" ? el("p", { class: "reason" }, `Disabled: ${p.disabled_reason || "no reason given"}`) : null,
    p.health === "cooling_down"
      ? el("p", { class: "reason" }, `Cooling down${p.disabled_reason ? `: ${p.disabled_reason}` : ""}`)
      : null,
    el(
      "dl",
      { class: "facts" },
      fact("Base URL", p.base_url || "— (runs in process)"),
      fact("Secret", p.secret || "—"),
      fact("Models", models),
      fact("Limits", limits || "none"),
      fact("Priority / weight", `${p.priority} / ${p.weight}`),
      fact("In flight", `${p.in_flight} of ${p.max_concurrency}`),
      fact("Succeeded / failed", `${p.success_count} / ${p.failure_count}`),
      fact("Price per second", fmtNumber(p.price_per_second, 4)),
      p.last_error ? fact("Last error", p.last_error) : null,
    ),
    tested ? el("p", { class: tested.ok ? "test-ok" : "test-bad", role: "status" }, tested.text) : null,
    el("p", { class: "error", role: "alert", dataset: { error: p.id } }),
    el(
      "div",
      { class: "actions" },
      el("button", { type: "button", class: "secondary", dataset: focus("edit"), onclick: () => startEditing(p) }, "Edit"),
      el("button", { type: "button", class: "secondary", dataset: focus("test"), onclick: (e) => test(e.currentTarget, p) }, "Test"),
      p.enabled
        ? el("button", { type: "button", class: "secondary", dataset: focus("toggle"), onclick: (e) => act(e.currentTarget, p, "disable", `Disabled ${p.name}.`) }, "Disable")
        : el("button", { type: "button", class: "secondary", dataset: focus("toggle"), onclick: (e) => act(e.currentTarget, p, "enable", `Enabled ${p.name}.`) }, "Enable"),
      confirmButton({
        label: "Remove",
        question: `Remove ${p.name}?`,
        confirmLabel: "Remove",
        focusKey: `remove:${p.id}`,
        onConfirm: (button) => remove(button, p),
      }),
    ),
  );
}

function render() {
  rerender(
    $("provider-list"),
    providers.length
      ? providers.map(card)
      : el("p", { class: "muted card" }, "No provider accounts yet: the built-in sandbox serves every model. Add one below."),
  );
}

export async function load() {
  const data = await run(null, $("providers-error"), () => api("/v1/admin/providers"));
  if (!data) return;
  providers = data.data;
  render();
  announce("providers", providers);
}

async function submit(event) {
  event.preventDefault();
  const box = $("provider-form-error");
  let values;
  try {
    values = formValues(event.target);
  } catch (error) {
    box.textContent = error.message;
    return;
  }
  const saved = await run($("provider-submit"), box, () =>
    editing
      ? api(`/v1/admin/providers/${editing.id}`, { method: "PATCH", json: values })
      : api("/v1/admin/providers", { method: "POST", json: values }),
  );
  if (!saved) return;
  toast(editing ? `Saved ${saved.name}.` : `Added ${saved.name}.`);
  stopEditing();
  await load();
  const added = document.querySelector(`[data-focus="edit:${saved.id}"]`);
  if (added) added.focus();
}

export function init() {
  $("provider-form").addEventListener("submit", submit);
  $("pf-kind").addEventListener("change", showKindHelp);
  $("provider-cancel").addEventListener("click", stopEditing);
  $("providers-refresh").addEventListener("click", (event) => run(event.currentTarget, null, load));
}
