// Every task of the key, newest first. The first page comes from GET /v1/tasks; after that
// the server pushes each change over GET /v1/tasks/events (Server-Sent Events): the page
// never polls. On a reconnection it reads the first page again to catch up.

import { ApiError, api, streamEvents, toast } from "/static/api.js";
import * as actions from "/static/studio-actions.js";
import { TaskCard } from "/static/studio-card.js";

const PAGE = 24;

export class Gallery {
  constructor({ list, empty, error, more, live }) {
    Object.assign(this, { list, empty, error, more, live });
    this.cards = new Map();
    this.deleted = new Set();
    this.after = null;
    this.connected = false;
    this.cardActions = {
      retry: async (task) => {
        const id = await actions.retry(task);
        if (id) {
          this.announce(id, {
            ...task, task_id: id, state: "queued", progress: 0, created: Date.now() / 1000,
            error_code: null, error_message: null, completed_at: null,
          });
        }
        toast("Sent again as a new task.");
      },
      remix: async (task, prompt) => {
        const done = await this.unlessGone(task, () => actions.remix(task, prompt));
        if (!done) return;
        this.announce(done.id, { prompt, model: task.model, kind: "remix", size: task.size, seconds: task.seconds, remixed_from: task.task_id, dialect: task.dialect });
        toast("Remix started.");
      },
      extend: async (task, prompt, seconds) => {
        const done = await this.unlessGone(task, () => actions.extend(task, prompt, seconds));
        if (!done) return;
        this.announce(done.id, { prompt, model: task.model, kind: "extend", size: task.size, seconds: (task.seconds || 0) + seconds, extension_seconds: seconds, remixed_from: task.task_id, dialect: "openai" });
        toast("Extension started.");
      },
      remove: async (task) => {
        if (!(await this.unlessGone(task, () => actions.remove(task)))) return;
        this.drop(task.task_id);
        toast("Deleted.");
      },
      cancel: async (task) => {
        if (!(await this.unlessGone(task, () => actions.cancel(task)))) return;
        toast("Cancelled; nothing is charged.");
      },
      edit: (task) => actions.edit(task),
    };
    more.addEventListener("click", () => this.loadPage(this.after));
  }

  get isEmpty() { return this.cards.size === 0; }

  async start() {
    await this.loadPage(null);
    this.listen();
  }

  async loadPage(after) {
    this.error.textContent = "";
    try {
      const query = new URLSearchParams({ limit: String(PAGE) });
      if (after) query.set("after", after);
      const page = await api(`/v1/tasks?${query}`);
      for (const task of page.data) this.upsert(task, { append: Boolean(after) });
      if (after || !this.after) {
        this.after = page.last_id;
        this.more.hidden = !page.has_more;
      }
    } catch (error) {
      this.error.textContent = `Could not load your generations: ${error.message}`;
    }
    this.showEmpty();
  }

  listen() {
    const stop = new AbortController();
    const onOpen = () => {
      this.live.textContent = "Live";
      this.live.classList.add("on");
      if (this.connected) this.loadPage(null); // catch up on what happened while disconnected
      this.connected = true;
    };
    const onEvent = (name, task) => {
      if (name === "task" && task && task.task_id) this.upsert(task);
      if (name === "deleted" && task && task.task_id) this.drop(task.task_id, { moveFocus: false }); // by another tab or client
    };
    const onDrop = () => {
      // Cards freeze until the stream is back (then they catch up): say so.
      this.live.textContent = "Reconnecting…";
      this.live.classList.remove("on");
    };
    streamEvents("/v1/tasks/events", onEvent, stop.signal, onOpen, onDrop).catch((error) => {
      this.live.textContent = "Stopped";
      this.live.classList.remove("on");
      this.error.textContent = error instanceof ApiError && error.status === 401
        ? "Your key stopped working (revoked?): sign in again to see live updates."
        : `Live updates stopped: ${error.message}`;
    });
    window.addEventListener("pagehide", () => stop.abort());
  }

  // A task this page just created: show it at once; the event stream fills in the rest.
  announce(id, guess) {
    if (!id || this.cards.has(id)) return;
    this.upsert({ state: "queued", progress: 0, created: Date.now() / 1000, shots: [], ...guess, task_id: id });
  }

  upsert(task, { append = false } = {}) {
    if (this.deleted.has(task.task_id)) return;
    const known = this.cards.get(task.task_id);
    if (known) {
      known.update(task);
      return;
    }
    const card = new TaskCard(task, this.cardActions);
    this.cards.set(task.task_id, card);
    if (append) this.list.append(card.element);
    else this.list.insertBefore(card.element, this.firstOlderThan(task.created));
    this.showEmpty();
  }

  firstOlderThan(created) {
    for (const node of this.list.children) {
      const other = this.cards.get(node.dataset.taskId);
      if (other && other.task.created <= created) return node;
    }
    return null;
  }

  // The card's own task answering 404 was deleted elsewhere (another tab, another client):
  // its card goes too, instead of showing an error nothing on it can get past.
  async unlessGone(task, work) {
    try {
      return { id: await work() };
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 404)) throw error;
      this.drop(task.task_id);
      toast("That task was deleted elsewhere.");
      return null;
    }
  }

  // moveFocus: to the next card's first control (after this page's own Delete), else only
  // if the focus was in the card that goes.
  drop(id, { moveFocus = true } = {}) {
    const card = this.cards.get(id);
    if (!card) return;
    const next = card.element.nextElementSibling || card.element.previousElementSibling;
    const hadFocus = card.element.contains(document.activeElement);
    card.element.remove();
    this.cards.delete(id);
    this.deleted.add(id);
    if (moveFocus || hadFocus) next?.querySelector("button, a")?.focus(); // a keyboard user keeps a place
    this.showEmpty();
  }

  showEmpty() {
    this.empty.hidden = this.cards.size > 0;
  }
}
