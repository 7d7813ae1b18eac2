// Characters: upload a short clip (POST /v1/videos/characters), list them
// (GET /v1/videos/characters) and insert "@username" into the prompt being written.

import { api, el, toast } from "/static/api.js";

const $ = (id) => document.getElementById(id);

export function setupCharacters() {
  const list = $("character-list"), empty = $("character-empty"), error = $("character-error");
  const name = $("character-name"), clip = $("character-clip"), submit = $("character-submit");
  const prompts = promptTracker();

  async function load() {
    try {
      const answer = await api("/v1/videos/characters");
      show(answer.data);
    } catch (err) {
      error.textContent = `Could not load your characters: ${err.message}`;
    }
  }

  function show(characters) {
    empty.hidden = characters.length > 0;
    list.replaceChildren(...characters.map((c) => {
      const mention = `@${c.username}`;
      return el("li", { class: "character" },
        el("span", { class: "character-name" }, el("strong", {}, c.name), " ", el("code", {}, mention)),
        el("button", {
          type: "button", class: "secondary small", "aria-label": `Insert ${mention} into the prompt`,
          onclick: () => prompts.insert(mention),
        }, "Insert"));
    }));
  }

  $("character-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    if (!name.value.trim()) { error.textContent = "Give the character a name."; name.focus(); return; }
    const file = clip.files && clip.files[0];
    if (!file) { error.textContent = "Choose a short video clip of the character."; clip.focus(); return; }
    if (file.type && !file.type.startsWith("video/")) {
      // The picker offers video files, but "All files" lets anything through.
      error.textContent = `“${file.name}” is not a video file: choose a short clip (MP4, MOV, WebM).`;
      clip.focus();
      return;
    }
    const form = new FormData();
    form.append("name", name.value.trim());
    form.append("video", file, file.name || "clip.mp4");
    submit.disabled = true;
    submit.textContent = "Uploading…";
    try {
      const character = await api("/v1/videos/characters", { method: "POST", form });
      toast(`Character @${character.username} is ready: insert it into a prompt.`);
      name.value = "";
      clip.value = "";
      await load();
    } catch (err) {
      error.textContent = err.message;
    } finally {
      submit.disabled = false;
      submit.textContent = "Upload character";
    }
  });

  load();
}

// The prompt a mention goes into: the one last written in, if it is still on screen,
// else the first prompt that is.
function promptTracker() {
  let last = null;
  document.addEventListener("focusin", (event) => {
    if (event.target.matches("textarea[data-prompt]")) last = event.target;
  });
  const visible = (node) => node && node.isConnected && node.offsetParent !== null;
  return {
    insert(text) {
      const target = visible(last) ? last : [...document.querySelectorAll("textarea[data-prompt]")].find(visible);
      if (!target) {
        toast("Open a form with a prompt first.", "error");
        return;
      }
      const start = target.selectionStart ?? target.value.length;
      const end = target.selectionEnd ?? start;
      const before = target.value.slice(0, start);
      const after = target.value.slice(end);
      const lead = before && !/\s$/.test(before) ? " " : "";
      const trail = /^\s/.test(after) ? "" : " ";
      const head = before + lead + text + trail;
      target.value = head + after;
      target.focus();
      target.setSelectionRange(head.length, head.length);
      target.dispatchEvent(new Event("input", { bubbles: true })); // storyboard shots keep their text in sync
      toast(`Inserted ${text}.`);
    },
  };
}
