// The public API, as every page uses it: the key lives in sessionStorage (this tab only,
// never in a URL), every call sends it as a Bearer token, errors come back as ApiError
// with the server's message.

const KEY = "soragate.key";

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || (body && (body.message || body.msg)) || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || null;
    this.param = error.param || null;
  }
}

export const session = {
  get key() { return sessionStorage.getItem(KEY); },
  set key(value) {
    if (value) sessionStorage.setItem(KEY, value); else sessionStorage.removeItem(KEY);
  },
};

export async function api(path, { method = "GET", json, form, headers = {}, signal } = {}) {
  const init = { method, headers: { ...headers }, signal };
  if (session.key) init.headers.Authorization = `Bearer ${session.key}`;
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (form !== undefined) {
    init.body = form; // FormData: the browser sets the multipart boundary
  }
  const response = await reach(path, init);
  const type = response.headers.get("content-type") || "";
  const body = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) {
    const error = new ApiError(response.status, typeof body === "string" ? null : body);
    if (response.status === 401 && session.key) {
      // Signed in with it a moment ago: the key was revoked since (the forms keep what was typed).
      error.message = "This key no longer works (was it revoked?): sign out, then sign in with a working key.";
    }
    throw error;
  }
  return body;
}

// fetch, with a network failure (the server down, the connection lost) said in words rather
// than the browser's "Failed to fetch"; an abort stays an abort.
async function reach(path, init) {
  try {
    return await fetch(path, init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, { error: { message: "Could not reach the server: check the connection, or whether soragate is running.", code: "unreachable" } });
  }
}

// Download a protected file (the key cannot ride in a URL) and return an object URL.
export async function blobUrl(path) {
  const response = await reach(path, { headers: { Authorization: `Bearer ${session.key}` } });
  if (!response.ok) throw new ApiError(response.status, null);
  return URL.createObjectURL(await response.blob());
}

// Server-Sent Events over fetch, so the key goes in a header (EventSource cannot send one).
// Calls onEvent(name, data) for each event; reconnects with backoff until signal aborts.
// onOpen (optional) runs on every (re)connection, so a page can catch up on what it missed;
// onDrop (optional) each time the connection is lost or cannot be made, while it retries.
export async function streamEvents(path, onEvent, signal, onOpen, onDrop) {
  let delay = 500;
  while (!signal.aborted) {
    try {
      const response = await fetch(path, { headers: { Authorization: `Bearer ${session.key}` }, signal });
      if (!response.ok) throw new ApiError(response.status, null);
      delay = 500;
      if (onOpen) onOpen();
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          let name = "message";
          const data = [];
          for (const line of block.split("\n")) {
            if (line.startsWith("event:")) name = line.slice(6).trim();
            else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
          }
          if (data.length) onEvent(name, JSON.parse(data.join("\n")));
        }
      }
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof ApiError && error.status === 401) throw error;
    }
    if (signal.aborted) return;
    if (onDrop) onDrop();
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 10000);
  }
}

export function toast(message, kind = "info") {
  const box = document.getElementById("toast");
  box.textContent = message;
  box.dataset.kind = kind;
  box.classList.add("show");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => box.classList.remove("show"), 4000);
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// Sign-in flow shared by both pages. `check` is the API call that proves the key works
// for this page (it throws ApiError on 401/403); `start` runs once signed in.
export function signIn({ check, start, describe }) {
  const panel = document.getElementById("sign-in");
  const form = document.getElementById("sign-in-form");
  const error = document.getElementById("sign-in-error");
  const sessionBox = document.getElementById("session");

  async function enter() {
    try {
      const who = await check();
      panel.hidden = true;
      sessionBox.hidden = false;
      document.getElementById("session-label").textContent = describe ? describe(who) : "Signed in";
      await start(who);
    } catch (err) {
      session.key = null;
      panel.hidden = false;
      sessionBox.hidden = true;
      if (err instanceof ApiError && err.status === 401) error.textContent = "That key is wrong or has been revoked.";
      else if (err instanceof ApiError && err.status === 403) error.textContent = "This key is not an admin key.";
      else error.textContent = `Could not sign in: ${err.message}`;
      document.getElementById("api-key").focus();
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    error.textContent = "";
    session.key = document.getElementById("api-key").value.trim();
    form.reset();
    enter();
  });
  document.getElementById("sign-out").addEventListener("click", () => {
    session.key = null;
    location.reload();
  });
  if (session.key) enter();
  else {
    panel.hidden = false;
    document.getElementById("api-key").focus();
  }
}
