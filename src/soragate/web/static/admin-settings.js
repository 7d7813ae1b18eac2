// Settings, read-only: what the server runs with (GET /v1/admin/settings).

import { api, el } from "/static/api.js";
import { $, fmtNumber, run } from "/static/admin-ui.js";

const LABELS = {
  public_url: "Public URL",
  database: "Database",
  data_dir: "Data directory",
  sandbox_delay: "Sandbox delay",
  sandbox_fps: "Sandbox frames per second",
  sandbox_review_rules: "Sandbox content-review rules",
  allow_private_urls: "Allow private and loopback URLs",
  max_upload_bytes: "Largest upload",
  max_prompt_chars: "Longest prompt",
  worker_enabled: "Worker running",
  worker_concurrency: "Worker concurrency",
  lease_seconds: "Task lease",
  task_deadline_seconds: "Task deadline",
  retention_hours: "Keep results for",
  providers_file: "Providers file",
  key_rate_limit: "Requests per minute, keys without their own limit",
  key_max_in_flight: "Tasks in flight, keys without their own limit",
  auth_failure_limit: "Failed sign-ins per address before 429",
  auth_failure_window: "Failed sign-ins counted over",
  secrets_encrypted: "Provider and webhook secrets encrypted at rest",
};

function show(name, value) {
  if (name === "key_rate_limit" || name === "key_max_in_flight") return value ? fmtNumber(value, 0) : "unlimited";
  if (value === null || value === undefined || value === "") return "—";
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (Array.isArray(value)) return value.length ? el("ul", {}, value.map((v) => el("li", {}, el("code", {}, v)))) : "none";
  if (name === "max_upload_bytes") return `${fmtNumber(value / 1048576, 1)} MiB`;
  if (name === "max_prompt_chars") return `${fmtNumber(value, 0)} characters`;
  if (name === "retention_hours") return value ? `${fmtNumber(value, 1)} hours` : "forever";
  if (name === "auth_failure_limit") return value ? fmtNumber(value, 0) : "no limit";
  if (name === "auth_failure_window") return `${fmtNumber(value, 0)} s`;
  if (name.endsWith("_seconds") || name === "sandbox_delay") return `${fmtNumber(value, 1)} s`;
  return String(value);
}

export async function load() {
  const settings = await run(null, $("settings-error"), () => api("/v1/admin/settings"));
  if (!settings) return;
  const rows = Object.entries(settings)
    .filter(([name]) => name !== "object")
    .map(([name, value]) => el("div", { dataset: { setting: name } }, el("dt", {}, LABELS[name] || name), el("dd", {}, show(name, value))));
  $("settings-list").replaceChildren(...rows);
}
