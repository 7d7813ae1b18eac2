// The storyboard editor: shots with a length each, added, moved and removed with real
// buttons; the total is checked against the chosen model's length before anything is sent.
// Sent as Sora2API's storyboard prompt: "[4.0s]first shot\n[3.0s]second shot".

import { el } from "/static/api.js";

export class Storyboard {
  constructor({ list, addButton, total, submit, onChange }) {
    Object.assign(this, { list, total, submit, onChange, addButton });
    this.shots = [];
    this.limit = 0;
    this.nextKey = 1;
    addButton.addEventListener("click", () => this.add());
  }

  setLimit(seconds) {
    this.limit = seconds;
    if (!this.shots.length) this.add({ focus: false });
    this.refresh();
  }

  add({ focus = true } = {}) {
    const left = this.limit - this.sum();
    const seconds = Math.max(1, Math.min(5, Math.floor(left * 2) / 2 || 1));
    this.shots.push({ key: this.nextKey++, seconds, prompt: "" });
    this.render();
    if (focus) this.field(this.shots.length - 1, "prompt")?.focus();
  }

  move(index, by) {
    const target = index + by;
    if (target < 0 || target >= this.shots.length) return;
    const [shot] = this.shots.splice(index, 1);
    this.shots.splice(target, 0, shot);
    this.render();
    // Keep focus on the moved shot's buttons so keyboard users can keep moving it; at the top
    // or bottom on the other one, never in its text, where the next Enter would send the form.
    const buttons = (by < 0 ? ["up", "down", "remove"] : ["down", "up", "remove"]).map((name) => this.field(target, name));
    buttons.find((button) => button && !button.disabled)?.focus();
  }

  remove(index) {
    this.shots.splice(index, 1);
    this.render();
    const next = Math.min(index, this.shots.length - 1);
    if (next >= 0) this.field(next, "prompt")?.focus();
    else this.addButton.focus();
  }

  field(index, name) {
    return this.list.children[index]?.querySelector(`[data-field="${name}"]`) || null;
  }

  sum() {
    return this.shots.reduce((total, shot) => total + (Number(shot.seconds) || 0), 0);
  }

  render() {
    const count = this.shots.length;
    this.list.replaceChildren(...this.shots.map((shot, index) => {
      const n = index + 1;
      const secondsId = `shot-${shot.key}-seconds`;
      const promptId = `shot-${shot.key}-prompt`;
      const prompt = el("textarea", {
        id: promptId, rows: 2, "data-field": "prompt", "data-prompt": true, placeholder: "What happens in this shot",
        oninput: (event) => { shot.prompt = event.target.value; this.onChange(); },
      });
      prompt.value = shot.prompt;
      const seconds = el("input", {
        id: secondsId, type: "number", min: "0.5", step: "0.5", inputmode: "decimal", "data-field": "seconds",
        value: String(shot.seconds),
        oninput: (event) => { shot.seconds = event.target.value === "" ? 0 : Number(event.target.value); this.refresh(); },
      });
      return el("li", { class: "shot", dataset: { key: shot.key } },
        el("div", { class: "shot-head" },
          el("strong", {}, `Shot ${n}`),
          el("div", { class: "shot-tools" },
            el("button", { type: "button", class: "secondary small", "data-field": "up", "aria-label": `Move shot ${n} up`,
              disabled: index === 0, onclick: () => this.move(index, -1) }, "↑ Up"),
            el("button", { type: "button", class: "secondary small", "data-field": "down", "aria-label": `Move shot ${n} down`,
              disabled: index === count - 1, onclick: () => this.move(index, 1) }, "↓ Down"),
            el("button", { type: "button", class: "secondary small", "data-field": "remove", "aria-label": `Remove shot ${n}`,
              onclick: () => this.remove(index) }, "Remove"))),
        el("div", { class: "shot-body" },
          el("div", { class: "shot-seconds" }, el("label", { for: secondsId }, `Shot ${n} seconds`), seconds),
          el("div", { class: "shot-prompt" }, el("label", { for: promptId }, `Shot ${n} description`), prompt)));
    }));
    this.refresh();
  }

  // The total line and whether the storyboard can be sent; returns the problem, if any.
  problem() {
    if (!this.shots.length) return "Add at least one shot.";
    const bad = this.shots.findIndex((s) => !(s.seconds > 0));
    if (bad >= 0) return `Shot ${bad + 1} needs a length above 0 s.`;
    if (this.sum() > this.limit + 1e-9) {
      return `The shots add up to ${fmt(this.sum())} s, longer than this model's ${fmt(this.limit)} s: shorten a shot or choose a longer model.`;
    }
    const empty = this.shots.findIndex((s) => !s.prompt.trim());
    if (empty >= 0) return `Describe shot ${empty + 1}.`;
    return "";
  }

  refresh() {
    const over = this.sum() > this.limit + 1e-9;
    this.total.textContent = `Total ${fmt(this.sum())} s of ${fmt(this.limit)} s · ${this.shots.length} shot${this.shots.length === 1 ? "" : "s"}`;
    this.total.classList.toggle("over", over);
    if (over) this.total.textContent += " — too long for this model";
    this.onChange();
  }

  prompt() {
    return this.shots.map((s) => `[${Number(s.seconds).toFixed(1)}s]${s.prompt.trim().replace(/\[(\d+(?:\.\d+)?)s\]/g, "($1 s)")}`).join("\n");
  }

  reset() {
    this.shots = [];
    this.add({ focus: false });
  }

  // A task's shots back in the editor, to change and send again.
  load(shots) {
    this.shots = shots.map((s) => ({ key: this.nextKey++, seconds: Number(s.seconds) || 0, prompt: s.prompt }));
    if (!this.shots.length) this.add({ focus: false });
    else this.render();
  }
}

function fmt(seconds) {
  return Number(seconds.toFixed(1)).toString();
}
