// The Create card: four tabs (text → video, image → video, storyboard, image), each a form
// whose choices come from the model catalogue; what the chosen model cannot do is disabled
// and the hint says why. Every request goes through a public endpoint, as any client's would.

import { api } from "/static/api.js";
import { credits, fillModels, fillSelect, fillStyles, secondsLabel, sizeInfo, sizeLabel, takesStyle } from "/static/studio-catalogue.js";
import { ImageInput } from "/static/studio-image-input.js";
import { Storyboard } from "/static/studio-storyboard.js";

const $ = (id) => document.getElementById(id);

export function setupCreate({ catalogue, gallery }) {
  let mode = "text";
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  const video = videoForm(catalogue, gallery, () => mode);
  const board = storyboardForm(catalogue, gallery);
  const picture = pictureForm(catalogue, gallery);

  function select(tab, focus = false) {
    mode = tab.dataset.mode;
    for (const other of tabs) {
      const on = other === tab;
      other.setAttribute("aria-selected", String(on));
      other.tabIndex = on ? 0 : -1;
    }
    $("panel-video").hidden = !["text", "image"].includes(mode);
    $("panel-video").setAttribute("aria-labelledby", tab.id);
    $("panel-storyboard").hidden = mode !== "storyboard";
    $("panel-picture").hidden = mode !== "picture";
    video.setMode(mode);
    if (mode === "storyboard") board.refresh();
    if (focus) tab.focus();
  }
  for (const tab of tabs) {
    tab.addEventListener("click", () => select(tab));
    tab.addEventListener("keydown", (event) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (!step) return;
      event.preventDefault();
      select(tabs[(tabs.indexOf(tab) + step + tabs.length) % tabs.length], true);
    });
  }
  select(tabs[0]);
  submitOnEnter();
  // A card's "Edit" (or "Edit and retry"): its prompt and settings into the matching form.
  document.addEventListener("studio:edit", (event) => {
    const task = event.detail;
    if (task.kind === "text_to_image" || task.kind === "image_to_image") {
      select(tabs.find((tab) => tab.dataset.mode === "picture"));
      picture.edit(task);
      return;
    }
    if (task.kind === "storyboard") {
      select(tabs.find((tab) => tab.dataset.mode === "storyboard"));
      board.edit(task);
      return;
    }
    select(tabs.find((tab) => tab.dataset.mode === (task.kind === "image_to_video" ? "image" : "text")));
    video.edit(task);
  });
}

// Enter in a prompt sends its form; Shift+Enter starts a new line.
function submitOnEnter() {
  document.addEventListener("keydown", (event) => {
    const target = event.target;
    if (event.key !== "Enter" || event.shiftKey || event.isComposing || !target.matches("textarea[data-prompt]")) return;
    const form = target.closest("form");
    if (!form) return;
    event.preventDefault();
    form.requestSubmit();
  });
}

// Run a submit handler with the button busy and the API's error shown in words beside it.
async function busy(button, errorBox, label, work) {
  if (button.disabled) return; // already sending: Enter in a prompt submits a form whatever its button says
  const idle = button.textContent;
  button.disabled = true;
  button.textContent = label;
  errorBox.textContent = "";
  try {
    await work();
  } catch (error) {
    errorBox.textContent = error.message;
  } finally {
    button.disabled = false;
    button.textContent = idle;
  }
}

function videoForm(catalogue, gallery, getMode) {
  const model = $("video-model"), seconds = $("video-seconds"), size = $("video-size"), style = $("video-style");
  const hd = $("video-hd"), hint = $("video-hint"), error = $("video-error"), prompt = $("video-prompt");
  const image = new ImageInput({
    zone: $("drop-zone"), input: $("image-file"), preview: $("image-preview"), hint: $("drop-hint"), clear: $("image-clear"),
    onError: (message) => { error.textContent = message; },
    isActive: () => getMode() === "image",
  });
  fillStyles(style);

  function current() { return catalogue.get(model.value); }

  function refreshModels() {
    const imageMode = getMode() === "image";
    fillModels(model, catalogue.videoGroups(), { disabled: (m) => imageMode && !m.image_input, preferred: "sora-2" });
    refreshChoices();
  }

  // Duration, size, HD and style follow the model; choices it cannot take are disabled.
  function refreshChoices() {
    const m = current();
    if (!m) return;
    // Keep what the person picked when the new model offers it, else the model's default.
    fillSelect(seconds, m.seconds, { label: secondsLabel });
    seconds.value = String([Number(seconds.dataset.chosen), m.default_seconds].find((v) => m.seconds.includes(v)) ?? m.seconds[0]);
    seconds.disabled = m.seconds.length < 2;
    const hdSizes = m.sizes.filter((s) => sizeInfo(s).hd);
    const sdSizes = m.sizes.filter((s) => !sizeInfo(s).hd);
    hd.disabled = !m.hd || !hdSizes.length || !sdSizes.length;
    if (!m.hd || !hdSizes.length) hd.checked = false;
    else if (!sdSizes.length) hd.checked = true;
    const sizes = (hd.checked ? hdSizes : sdSizes).length ? (hd.checked ? hdSizes : sdSizes) : m.sizes;
    fillSelect(size, sizes, { label: sizeLabel });
    const chosen = size.dataset.chosen;
    const sameWay = chosen && sizes.find((s) => sizeInfo(s).orientation === sizeInfo(chosen).orientation);
    size.value = [chosen, sameWay, m.default_size].find((v) => v && sizes.includes(v)) || sizes[0];
    size.disabled = sizes.length < 2;
    style.disabled = !takesStyle(m);
    if (style.disabled) style.value = "";
    describe();
  }

  function describe() {
    const m = current();
    if (!m) return;
    const notes = [`${m.description}. Costs ${credits(m.price * Number(seconds.value || 0))}.`];
    if (!m.hd) notes.push("HD: this model has no HD sizes.");
    if (!takesStyle(m)) notes.push("Styles: choose a Sora2API model (sora2-…) to use one.");
    if (getMode() === "image" && !m.image_input) notes.push("This model does not take an input image.");
    hint.textContent = notes.join(" ");
  }

  model.addEventListener("change", refreshChoices);
  hd.addEventListener("change", refreshChoices);
  seconds.addEventListener("change", () => { seconds.dataset.chosen = seconds.value; describe(); });
  size.addEventListener("change", () => { size.dataset.chosen = size.value; });

  $("video-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const m = current();
    const text = prompt.value.trim();
    const imageMode = getMode() === "image";
    if (!text) { error.textContent = "Write a prompt first."; prompt.focus(); return; }
    if (imageMode && !image.file) { error.textContent = "Add an input image: drop it, paste it or choose a file."; $("image-file").focus(); return; }
    busy($("video-submit"), error, "Sending…", async () => {
      let created;
      const base = { prompt: text, model: m.id, kind: imageMode ? "image_to_video" : "text_to_video" };
      if (takesStyle(m)) {
        // Sora2API's endpoints: the model name fixes length and size; the style rides along.
        const body = { prompt: text, model: m.id, async_mode: true };
        if (style.value) body.style = style.value;
        if (imageMode) body.image = await image.dataUrl();
        created = await api(imageMode ? "/v1/videos/transform" : "/v1/videos/generate", { method: "POST", json: body });
        gallery.announce(created.task_id, { ...base, dialect: "sora2api", style: style.value || null, size: m.default_size, seconds: m.default_seconds });
      } else {
        const form = new FormData();
        form.append("prompt", text);
        form.append("model", m.id);
        form.append("seconds", seconds.value);
        form.append("size", size.value);
        if (imageMode) form.append("input_reference", image.file, image.file.name || "image.png");
        created = await api("/v1/videos", { method: "POST", form });
        gallery.announce(created.id, { ...base, dialect: "openai", size: size.value, seconds: Number(seconds.value) });
      }
      prompt.value = "";
      describe(); // the model's notes again, in place of an edit's hint
      if (imageMode) image.reset();
    });
  });

  refreshModels();
  return {
    setMode(mode) {
      $("image-field").hidden = mode !== "image";
      $("video-submit").textContent = mode === "image" ? "Animate image" : "Generate video";
      refreshModels();
    },
    // A task's prompt and settings, back in the form to change and send again.
    edit(task) {
      if (catalogue.get(task.model)) model.value = task.model;
      if (task.seconds) seconds.dataset.chosen = String(Math.round(task.seconds));
      if (task.size) size.dataset.chosen = task.size;
      if (task.style) style.value = task.style;
      refreshChoices();
      prompt.value = task.prompt;
      error.textContent = "";
      hint.textContent = `${task.kind === "image_to_video" ? "Add the input image again, change" : "Change"} what you like, then generate: this sends a new task.`;
      prompt.scrollIntoView({ block: "center" });
      prompt.focus();
      prompt.setSelectionRange(prompt.value.length, prompt.value.length);
    },
  };
}

function storyboardForm(catalogue, gallery) {
  const model = $("sb-model"), style = $("sb-style"), error = $("sb-error");
  const board = new Storyboard({
    list: $("shots"), addButton: $("shot-add"), total: $("sb-total"), submit: $("sb-submit"),
    onChange: () => { error.textContent = ""; },
  });
  fillStyles(style);
  fillModels(model, [{ label: "Sora2API", models: catalogue.storyboardModels() }], { preferred: "sora2-landscape-10s" });
  const limit = () => Math.max(...(catalogue.get(model.value)?.seconds || [0]));
  function refresh() {
    const m = catalogue.get(model.value);
    if (!m) return;
    $("sb-hint").textContent = `${m.description}: the shots may add up to ${limit()} s. Costs ${credits(m.price * limit())}.`;
    board.setLimit(limit());
  }
  model.addEventListener("change", refresh);
  refresh();

  $("storyboard-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const problem = board.problem();
    if (problem) { error.textContent = problem; return; }
    busy($("sb-submit"), error, "Sending…", async () => {
      const body = { prompt: board.prompt(), model: model.value, async_mode: true };
      if (style.value) body.style = style.value;
      const created = await api("/v1/videos/storyboard", { method: "POST", json: body });
      const m = catalogue.get(model.value);
      gallery.announce(created.task_id, {
        prompt: body.prompt, model: m.id, kind: "storyboard", dialect: "sora2api", style: style.value || null,
        size: m.default_size, seconds: m.default_seconds, shots: board.shots.map((s) => ({ seconds: s.seconds, prompt: s.prompt })),
      });
      board.reset();
    });
  });
  return {
    refresh: () => board.refresh(),
    edit(task) {
      if ([...model.options].some((o) => o.value === task.model && !o.disabled)) { model.value = task.model; refresh(); }
      style.value = task.style || "";
      if (style.selectedIndex < 0) style.value = "";
      // A storyboard sent through the API without marks is one shot of its whole prompt.
      board.load(task.shots?.length ? task.shots : [{ seconds: task.seconds || limit(), prompt: task.prompt }]);
      error.textContent = "";
      board.field(0, "prompt")?.scrollIntoView({ block: "center" });
      board.field(0, "prompt")?.focus();
    },
  };
}

function pictureForm(catalogue, gallery) {
  const model = $("pic-model"), size = $("pic-size"), error = $("pic-error"), prompt = $("pic-prompt"), hint = $("pic-hint");
  fillModels(model, [{ label: "Image models", models: catalogue.imageModels() }], { preferred: "gpt-image-1" });
  function refresh() {
    const m = catalogue.get(model.value);
    if (!m) return;
    fillSelect(size, m.sizes, { label: sizeLabel });
    size.disabled = m.sizes.length < 2;
    hint.textContent = `${m.description}. Costs ${credits(m.price)}.`;
  }
  model.addEventListener("change", refresh);
  refresh();

  $("picture-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = prompt.value.trim();
    if (!text) { error.textContent = "Write a prompt first."; prompt.focus(); return; }
    // The endpoint answers once the image exists; the gallery shows the task meanwhile.
    busy($("pic-submit"), error, "Generating…", async () => {
      await api("/v1/images/generations", {
        method: "POST", json: { prompt: text, model: model.value, size: size.value, response_format: "url" },
      });
      prompt.value = "";
    });
  });
  return {
    // A finished image's prompt, model and size back in the form.
    edit(task) {
      if ([...model.options].some((o) => o.value === task.model)) { model.value = task.model; refresh(); }
      if (task.size && [...size.options].some((o) => o.value === task.size)) size.value = task.size;
      prompt.value = task.prompt;
      error.textContent = "";
      prompt.focus();
    },
  };
}
