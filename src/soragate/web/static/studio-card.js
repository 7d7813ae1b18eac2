// One task in the gallery. Progress events only move the bar; the card is rebuilt when
// anything else changes, and a finished video's player is never rebuilt (it may be playing).

import { el, toast } from "/static/api.js";
import { EXTENSION_SECONDS, failureReason, local, retryPlan } from "/static/studio-actions.js";

const STATES = { queued: "Queued", in_progress: "Rendering", completed: "Ready", failed: "Failed", cancelled: "Cancelled" };
const KINDS = {
  text_to_video: "Text → video", image_to_video: "Image → video", remix: "Remix", storyboard: "Storyboard",
  extend: "Extension", edit: "Edit", character: "Character video", text_to_image: "Image", image_to_image: "Image edit",
};
// What a task made from another video says of its source.
const FROM = { remix: "Remix of", extend: "Extension of", edit: "Edit of" };
const ACTIVE = new Set(["queued", "in_progress"]);
// Failures that the same request would meet again: the prompt or image has to change.
const NEEDS_NEW_WORDING = new Set(["prompt_review_failed", "image_review_failed"]);
// What the Create form can take back: tasks made from a prompt (and an image), not from
// another video (the Create form cannot say which).
const EDITABLE_KINDS = new Set(["text_to_video", "image_to_video", "storyboard", "text_to_image", "image_to_image"]);

export class TaskCard {
  // actions: { retry(task), remix(task, prompt), extend(task, prompt, seconds), remove(task),
  // cancel(task) } — each resolves or throws ApiError; edit(task) puts the task's prompt and
  // settings back in the Create form.
  constructor(task, actions) {
    this.actions = actions;
    this.element = el("li", { class: "task-card" });
    this.media = el("div", { class: "card-media" });
    this.body = el("div", { class: "card-body" });
    this.element.append(this.media, this.body);
    this.shape = null;
    this.mediaKey = null;
    this.update(task);
  }

  get id() { return this.task.task_id; }

  update(task) {
    this.task = { ...this.task, ...task };
    const t = this.task;
    this.element.dataset.taskId = t.task_id;
    this.element.dataset.state = t.state;
    const mediaKey = t.state === "completed" ? `done:${t.video_url ? "video" : "image"}` : `wait:${t.state}`;
    if (mediaKey !== this.mediaKey) {
      this.mediaKey = mediaKey;
      this.media.replaceChildren(mediaFor(t));
      shapeMedia(this.media, t);
      if (t.state === "completed" && t.video_url && t.spritesheet_url) scrubOnHover(this.media, local(t.spritesheet_url));
    }
    const { progress, result_urls, video_url, thumbnail_url, image_urls, status, ...rest } = t;
    const shape = JSON.stringify(rest);
    if (shape !== this.shape) {
      this.shape = shape;
      this.renderBody();
    }
    this.showProgress();
  }

  showProgress() {
    const t = this.task;
    const value = Math.round(t.progress || 0);
    for (const bar of this.element.querySelectorAll("progress")) {
      if (t.state === "in_progress") bar.value = value; else bar.removeAttribute("value");
    }
    const label = this.element.querySelector(".pct");
    if (label) label.textContent = t.state === "in_progress" ? `${value}%` : "waiting for a worker";
    const big = this.element.querySelector(".placeholder-pct");
    if (big) big.textContent = t.state === "in_progress" ? `${value}%` : t.state === "queued" ? STATES.queued : "";
  }

  renderBody() {
    const t = this.task;
    const parts = [
      el("div", { class: "card-status" },
        el("span", { class: `badge ${t.state}` }, STATES[t.state] || t.state),
        el("span", { class: "kind" }, KINDS[t.kind] || t.kind),
        el("time", { datetime: new Date(t.created * 1000).toISOString(), class: "muted" }, when(t.created))),
    ];
    if (ACTIVE.has(t.state)) {
      parts.push(el("div", { class: "progress-line" },
        el("progress", { max: "100", "aria-label": `Progress of “${short(t.prompt)}”` }),
        el("span", { class: "pct muted" })));
    }
    parts.push((t.shots || []).length
      ? el("ol", { class: "prompt", title: t.prompt }, t.shots.map((s) => el("li", {}, `${s.prompt} (${s.seconds} s)`)))
      : el("p", { class: "prompt", title: t.prompt }, t.prompt));
    if (t.state === "failed" || t.state === "cancelled") {
      const [headline, advice] = failureReason(t);
      parts.push(el("div", { class: "failure" },
        el("strong", {}, headline), " ", el("span", {}, advice),
        t.error_code ? el("span", { class: "code" }, ` (${t.error_code})`) : null));
    }
    parts.push(this.buttons(), params(t));
    // Keyboard users keep their place: focus goes to the rebuilt card's button of the same
    // name, else its first one (a cancelled task's Retry).
    // (A button busy with its request is disabled, which drops focus: it is remembered.)
    const active = document.activeElement;
    const focused = this.body.contains(active) ? active.dataset.idle || active.textContent : this.busyFocus;
    // Parameters someone opened stay open when the task moves on (queued → rendering → ready).
    const paramsOpen = this.body.querySelector("details.params")?.open;
    this.body.replaceChildren(...parts);
    if (paramsOpen) this.body.querySelector("details.params").open = true;
    if (focused) {
      const buttons = [...this.body.querySelectorAll(".actions button:not([disabled])")];
      (buttons.find((b) => (b.dataset.idle || b.textContent) === focused) || buttons[0])?.focus();
    }
  }

  buttons() {
    const t = this.task;
    const bar = el("div", { class: "actions" });
    const file = t.state === "completed" ? (t.video_url || (t.image_urls || [])[0]) : null;
    if (file) {
      const name = `${t.task_id}.${t.video_url ? "mp4" : "png"}`;
      bar.append(
        el("a", { class: "button", href: local(file), download: name }, "Download"),
        el("button", { type: "button", class: "secondary", onclick: () => copyLink(local(file), bar) }, "Copy link"));
    }
    if (t.state === "completed" && t.video_url) {
      bar.append(
        el("button", { type: "button", class: "secondary", "aria-expanded": "false", onclick: (e) => this.toggleFollowUp(e.currentTarget, REMIX) }, "Remix"),
        el("button", { type: "button", class: "secondary", "aria-expanded": "false", onclick: (e) => this.toggleFollowUp(e.currentTarget, EXTEND) }, "Extend"));
    }
    const editable = !ACTIVE.has(t.state) && EDITABLE_KINDS.has(t.kind);
    if (t.state === "failed" || t.state === "cancelled") {
      if (NEEDS_NEW_WORDING.has(t.error_code)) {
        // Sending the same words again would be refused again: back to the form to change them.
        if (editable) bar.append(el("button", { type: "button", title: "Puts the prompt back in the Create form to change it", onclick: () => this.actions.edit(t) }, "Edit and retry"));
        else bar.append(el("p", { class: "hint" }, "Send it again from the source video's card, in other words."));
      } else {
        const plan = retryPlan(t);
        bar.append(el("button", { type: "button", disabled: !plan.path, title: plan.reason, onclick: (e) => this.run(e.currentTarget, "Retrying…", () => this.actions.retry(t)) }, "Retry"));
        if (!plan.path) bar.append(el("p", { class: "hint" }, plan.reason));
      }
    }
    if (editable && !NEEDS_NEW_WORDING.has(t.error_code)) {
      bar.append(el("button", { type: "button", class: "secondary", title: "Puts this prompt and its settings in the Create form", onclick: () => this.actions.edit(t) }, "Edit"));
    }
    if (ACTIVE.has(t.state)) {
      bar.append(this.confirmButton("Cancel", "Cancelling…", "Stops the generation; nothing is charged", () => this.actions.cancel(this.task)));
    } else {
      bar.append(this.confirmButton("Delete", "Deleting…", "Deletes the task and its files", () => this.actions.remove(this.task)));
    }
    bar.append(el("p", { class: "error card-error", role: "alert" }));
    return bar;
  }

  async run(button, label, work) {
    const error = this.element.querySelector(".card-error");
    const idle = button.textContent;
    const hadFocus = document.activeElement === button;
    if (hadFocus) this.busyFocus = button.dataset.idle || idle;
    button.disabled = true;
    button.textContent = label;
    error.textContent = "";
    try {
      await work();
      return true;
    } catch (err) {
      error.textContent = err.message;
      return false;
    } finally {
      this.busyFocus = null;
      if (button.isConnected) {
        button.disabled = false;
        button.textContent = idle;
        if (hadFocus) button.focus(); // disabling it dropped the focus
      }
    }
  }

  // A second press within a few seconds does it: no modal dialog needed. The first press is
  // kept on the card, not the button, so a rebuild in between (the task starts rendering)
  // still shows "press again" and the second press still counts.
  confirmButton(idle, label, title, work) {
    const armed = this.armed?.idle === idle && Date.now() < this.armed.until;
    const button = el("button", {
      type: "button", class: "secondary danger-text", title, dataset: { idle },
      onclick: () => {
        if (this.armed?.idle === idle && Date.now() < this.armed.until) {
          this.armed = null;
          delete button.dataset.armed;
          button.textContent = idle;
          this.run(button, label, work);
          return;
        }
        this.armed = { idle, until: Date.now() + CONFIRM_MS };
        this.showArmed(button, idle);
        setTimeout(() => {
          if (this.armed?.idle !== idle || Date.now() < this.armed.until) return;
          this.armed = null;
          for (const b of this.element.querySelectorAll("button[data-armed]")) {
            delete b.dataset.armed;
            b.textContent = b.dataset.idle;
          }
        }, CONFIRM_MS);
      },
    }, idle);
    if (armed) this.showArmed(button, idle);
    return button;
  }

  showArmed(button, idle) {
    button.dataset.armed = "1";
    button.textContent = `${idle}: press again`;
  }

  // One follow-up form under the buttons at a time: a remix (what changes) or an extension
  // (what happens next, and for how long).
  toggleFollowUp(button, kind) {
    const open = this.body.querySelector(".follow-up-form");
    const opener = this.body.querySelector(".actions [aria-expanded='true']");
    if (open) {
      open.remove();
      opener?.setAttribute("aria-expanded", "false");
      if (opener === button) return;
    }
    const close = () => { form.remove(); button.setAttribute("aria-expanded", "false"); button.focus(); };
    const id = `${kind.name}-${this.task.task_id}`;
    const prompt = el("textarea", { id, rows: 2, "data-prompt": true, required: true, placeholder: kind.placeholder });
    const fields = [el("label", { for: id }, kind.label), prompt];
    let length = null;
    if (kind === EXTEND) {
      length = el("select", { id: `${id}-seconds` }, ...EXTENSION_SECONDS.map((s) => el("option", { value: String(s) }, `${s} s`)));
      fields.push(el("label", { for: length.id }, "Seconds to add"), length);
    }
    const submit = el("button", { type: "submit" }, kind.send);
    const form = el("form", {
      class: "follow-up-form", novalidate: true,
      onsubmit: async (event) => {
        event.preventDefault();
        const text = prompt.value.trim();
        if (!text) { this.element.querySelector(".card-error").textContent = kind.empty; prompt.focus(); return; }
        const send = kind === EXTEND
          ? () => this.actions.extend(this.task, text, Number(length.value))
          : () => this.actions.remix(this.task, text);
        if (await this.run(submit, "Sending…", send)) close();
      },
    },
    ...fields,
    el("div", { class: "actions" }, submit, el("button", { type: "button", class: "secondary", onclick: close }, "Cancel")));
    button.closest(".actions").after(form);
    button.setAttribute("aria-expanded", "true");
    prompt.focus();
  }
}

const CONFIRM_MS = 4000;
const REMIX = { name: "remix", label: "What should change?", placeholder: "Same scene, but at night", send: "Send remix", empty: "Describe what to change first." };
const EXTEND = { name: "extend", label: "What happens next?", placeholder: "The fox runs into the forest", send: "Send extension", empty: "Describe what happens next first." };

function mediaFor(t) {
  if (t.state === "completed" && t.video_url) {
    return el("video", {
      class: "player", controls: true, preload: "metadata", playsinline: true,
      poster: local(t.thumbnail_url), src: local(t.video_url), "aria-label": `Video: ${short(t.prompt)}`,
    });
  }
  if (t.state === "completed" && (t.image_urls || []).length) {
    return el("img", { class: "picture", src: local(t.image_urls[0]), alt: `Image: ${short(t.prompt)}` });
  }
  // A failed or cancelled task says so once, in its badge; its media area only shows that
  // nothing was made.
  const failed = t.state === "failed" || t.state === "cancelled";
  return el("div", { class: `placeholder ${t.state}`, "aria-hidden": "true" },
    el("span", { class: failed ? "placeholder-none" : "placeholder-pct" }, failed ? "no video" : ""));
}

// The media area takes the video's own shape: a portrait video gets a portrait tile.
function shapeMedia(media, t) {
  const [width, height] = String(t.size || "").split("x").map(Number);
  const done = t.state === "completed" || ACTIVE.has(t.state);
  media.classList.toggle("portrait", done && height > width);
  media.style.aspectRatio = done && width > 0 && height > 0 ? `${width} / ${height}` : "";
}

// Hovering a finished video (not playing) scrubs through its spritesheet: 5 × 2 frames taken
// evenly across the video; where the pointer is along the width picks the frame.
const SHEET = { columns: 5, rows: 2 };
function scrubOnHover(media, sheetUrl) {
  const frame = el("div", { class: "scrub", "aria-hidden": "true" });
  const player = media.querySelector("video");
  const show = (event) => {
    if (!player || !player.paused || player.currentTime > 0) { frame.remove(); return; }
    const box = media.getBoundingClientRect();
    const at = Math.min(0.999, Math.max(0, (event.clientX - box.left) / box.width));
    const index = Math.floor(at * SHEET.columns * SHEET.rows);
    const column = index % SHEET.columns, row = Math.floor(index / SHEET.columns);
    frame.style.backgroundImage = `url("${sheetUrl}")`;
    frame.style.backgroundPosition = `${(column / (SHEET.columns - 1)) * 100}% ${(row / (SHEET.rows - 1)) * 100}%`;
    frame.dataset.frame = String(index);
    if (!frame.isConnected) media.append(frame);
  };
  media.addEventListener("pointermove", show);
  media.addEventListener("pointerleave", () => frame.remove());
  player?.addEventListener("play", () => frame.remove());
}

function params(t) {
  const rows = [
    ["Task", t.task_id], ["Kind", KINDS[t.kind] || t.kind], ["Model", t.model],
    ["Length", t.seconds ? `${Number(t.seconds.toFixed ? t.seconds.toFixed(2) : t.seconds)} s` : null],
    ["Size", t.size], ["Style", t.style], [FROM[t.kind] || "Made from", t.remixed_from],
    ["Input image", (t.reference_images || []).join(", ") || null], ["API", t.dialect],
    ["Created", t.created ? new Date(t.created * 1000).toLocaleString() : null],
  ].filter(([, value]) => value);
  const dl = el("dl", {}, rows.flatMap(([name, value]) => [el("dt", {}, name), el("dd", {}, String(value))]));
  const shots = (t.shots || []).length
    ? el("ol", { class: "shot-list" }, t.shots.map((s) => el("li", {}, `${s.seconds} s — ${s.prompt}`)))
    : null;
  return el("details", { class: "params" }, el("summary", {}, "Parameters"), dl, shots);
}

async function copyLink(url, bar) {
  const absolute = new URL(url, location.href).href;
  try {
    await navigator.clipboard.writeText(absolute);
    toast("Link copied. It works without a key until it expires.");
  } catch {
    // No clipboard permission: show the link selected, ready for Ctrl+C.
    let field = bar.querySelector("input.link-field");
    if (!field) {
      field = el("input", { class: "link-field", readonly: true, "aria-label": "Link to the file" });
      bar.append(field);
    }
    field.value = absolute;
    field.focus();
    field.select();
    toast("Press Ctrl+C to copy the selected link.");
  }
}

function when(created) {
  const date = new Date(created * 1000);
  const today = date.toDateString() === new Date().toDateString();
  return today
    ? date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : date.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
}

function short(text) {
  return text.length > 60 ? `${text.slice(0, 57)}…` : text;
}
