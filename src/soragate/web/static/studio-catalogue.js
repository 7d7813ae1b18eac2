// The model catalogue (GET /v1/models) as the studio offers it: which models each form
// lists, how sizes read to a person, and which endpoint a model's request goes through.

import { el } from "/static/api.js";

export const STYLES = ["festive", "kakalaka", "news", "selfie", "handheld", "golden", "anime", "retro", "nostalgic", "comic"];

// Sora2API names carry orientation and length (sora2-landscape-10s …); only its endpoints
// take a style. Chat-completions aliases and Kie job names duplicate other models, so the
// studio leaves them out.
const SORA2API = /^sora2(pro)?-/;
const DUPLICATES = /^sora_video2|-(text-to-video|image-to-video|storyboard)$/;

export function takesStyle(model) {
  return SORA2API.test(model.id);
}

export function sizeInfo(size) {
  const [width, height] = size.split("x").map(Number);
  const orientation = height > width ? "Portrait" : width > height ? "Landscape" : "Square";
  return { width, height, orientation, hd: Math.max(width, height) > 1280 };
}

export function sizeLabel(size) {
  const info = sizeInfo(size);
  return `${info.orientation}${info.hd ? " HD" : ""} · ${info.width}×${info.height}`;
}

export function secondsLabel(seconds) {
  return `${seconds} s`;
}

export function credits(value) {
  return `${Number(value.toFixed(3))} credit${value === 1 ? "" : "s"}`;
}

export class Catalogue {
  constructor(models) {
    this.models = models;
    this.byId = new Map(models.map((m) => [m.id, m]));
  }

  get(id) {
    return this.byId.get(id) || null;
  }

  videoGroups() {
    const videos = this.models.filter((m) => m.type === "video" && !DUPLICATES.test(m.id));
    return [
      { label: "Any length and size", models: videos.filter((m) => !takesStyle(m)) },
      { label: "Sora2API (fixed length, styles)", models: videos.filter(takesStyle) },
    ].filter((group) => group.models.length);
  }

  storyboardModels() {
    return this.models.filter((m) => m.type === "video" && takesStyle(m));
  }

  imageModels() {
    return this.models.filter((m) => m.type === "image");
  }
}

// Fill a <select>, keeping the current value when it is still on offer.
export function fillSelect(select, items, { value = (x) => x, label = (x) => x, disabled = () => false, keep = true } = {}) {
  const previous = select.value;
  select.replaceChildren(...items.map((item) => el("option", { value: value(item), disabled: disabled(item) }, label(item))));
  const values = items.filter((item) => !disabled(item)).map(value);
  if (keep && values.includes(previous)) select.value = previous;
  else if (values.length) select.value = values[0];
}

// A model no upstream account serves is listed but cannot be chosen: its request would be refused.
export const unserved = (m) => Array.isArray(m.routes) && m.routes.length === 0;

export function fillModels(select, groups, { disabled = () => false, preferred } = {}) {
  const previous = select.value;
  const off = (m) => unserved(m) || disabled(m);
  select.replaceChildren(
    ...groups.map((group) =>
      el("optgroup", { label: group.label }, group.models.map((m) =>
        el("option", { value: m.id, disabled: off(m), title: m.description }, unserved(m) ? `${m.id} (no account serves it)` : m.id))),
    ),
  );
  const usable = groups.flatMap((g) => g.models).filter((m) => !off(m)).map((m) => m.id);
  const pick = [previous, preferred].find((id) => usable.includes(id)) || usable[0];
  if (pick) select.value = pick;
}

export function fillStyles(select) {
  fillSelect(select, ["", ...STYLES], { label: (s) => (s ? s[0].toUpperCase() + s.slice(1) : "None") });
}
