// Small pieces every admin panel uses: formatting, running an API call from a button,
// re-rendering a list without losing keyboard focus, and inline confirmations
// (window.confirm is avoided: it blocks the page and automated browsers dismiss it).

import { el, toast } from "/static/api.js";

export const $ = (id) => document.getElementById(id);

// The browser's own checks stopping a form's submit (a required field, a number below its
// minimum) show their own message: an earlier answer's error in that form no longer applies.
document.addEventListener("invalid", (event) => {
  for (const box of event.target.form?.querySelectorAll('.error[role="alert"]') || []) box.textContent = "";
}, true);

// Panels announce changes to each other (a key created, a provider added) with DOM events.
export function announce(name, detail) {
  document.dispatchEvent(new CustomEvent(`admin:${name}`, { detail }));
}
export function listen(name, handler) {
  document.addEventListener(`admin:${name}`, (event) => handler(event.detail));
}

const pad = (n) => String(n).padStart(2, "0");

export function fmtTime(seconds) {
  if (!seconds) return "—";
  const d = new Date(seconds * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function fmtNumber(value, digits = 2) {
  if (value === null || value === undefined) return "—";
  return Number(value).toLocaleString("en-US", { maximumFractionDigits: digits });
}

export const fmtPercent = (rate) => `${Math.round(rate * 1000) / 10}%`;

export function badge(value) {
  return el("span", { class: `badge ${value}` }, String(value).replace(/_/g, " "));
}

// Runs an API action started by `button`: the button is disabled meanwhile and any error
// is written in words into `box` (next to where it happened). Returns undefined on error.
// Focus stays on the button (or on its replacement after a redraw, found by data-focus).
export async function run(button, box, action) {
  if (box) box.textContent = "";
  const hadFocus = Boolean(button) && document.activeElement === button;
  if (button) button.disabled = true;
  try {
    return await action();
  } catch (error) {
    if (box) box.textContent = error.message;
    else toast(error.message, "error");
    return undefined;
  } finally {
    if (button) button.disabled = false;
    if (hadFocus) refocus(button);
  }
}

function refocus(button) {
  if (button.isConnected) return button.focus();
  const key = button.dataset.focus;
  const again = key && document.querySelector(`[data-focus="${CSS.escape(key)}"]`);
  if (again) again.focus();
}

// Replaces the content of `container`, then puts focus back on the control carrying the
// same data-focus key, so keyboard users keep their place when a list is redrawn.
export function rerender(container, nodes) {
  const active = document.activeElement;
  const key = active && container.contains(active) ? active.dataset.focus : null;
  // What someone is typing survives a redraw (other data arriving meanwhile, say).
  const typed = [...container.querySelectorAll("input[data-focus]")].filter((input) => input.value !== input.defaultValue);
  container.replaceChildren(...[nodes].flat());
  for (const input of typed) {
    const again = container.querySelector(`input[data-focus="${CSS.escape(input.dataset.focus)}"]`);
    if (again) again.value = input.value;
  }
  if (key) {
    const again = container.querySelector(`[data-focus="${CSS.escape(key)}"]`);
    if (again && !again.disabled) again.focus();
  }
}

// A button that asks inline before doing something destructive.
export function confirmButton({ label, question, confirmLabel, focusKey, onConfirm }) {
  const wrap = el("span", { class: "confirm" });
  const start = el("button", { type: "button", class: "secondary", dataset: { focus: focusKey } }, label);
  start.addEventListener("click", () => {
    const yes = el("button", { type: "button", class: "danger", dataset: { focus: `${focusKey}:yes` } }, confirmLabel);
    const no = el("button", { type: "button", class: "secondary" }, "Keep");
    yes.addEventListener("click", () => onConfirm(yes));
    no.addEventListener("click", () => {
      wrap.replaceChildren(start);
      start.focus();
    });
    wrap.replaceChildren(el("span", { class: "question" }, question), yes, no);
    no.focus();
  });
  wrap.append(start);
  return wrap;
}

// A table that never spills out of its card: it scrolls inside a box when wider, and on a
// phone each row becomes a stack of "column: value" lines (every cell knows its column).
export function table(headers, rows, { caption, empty = "Nothing yet." } = {}) {
  if (!rows.length) return el("p", { class: "muted" }, empty);
  for (const row of rows) {
    [...row.children].forEach((cell, i) => {
      if (headers[i] && !cell.dataset.label) cell.dataset.label = headers[i];
    });
  }
  return el(
    "div",
    { class: "table-wrap" },
    el(
      "table",
      { class: "stacking" },
      caption ? el("caption", { class: "sr-only" }, caption) : null,
      el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, rows),
    ),
  );
}

// Shows a value that is displayed only once (a new key or webhook secret) with a copy button.
export function showOnce({ box, value, valueNode, copyButton, doneButton, label }) {
  valueNode.textContent = value;
  box.hidden = false;
  box.focus();
  copyButton.onclick = async () => {
    try {
      await navigator.clipboard.writeText(value);
      toast(`${label} copied.`);
    } catch {
      // No clipboard permission: select the text so Ctrl+C works.
      const range = document.createRange();
      range.selectNodeContents(valueNode);
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      toast("Press Ctrl+C (⌘C) to copy the selected text.");
    }
  };
  doneButton.onclick = () => {
    valueNode.textContent = "";
    box.hidden = true;
  };
}
