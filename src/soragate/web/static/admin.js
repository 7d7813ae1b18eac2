// The admin console: sign in with an admin key (a user key is told it is not one), then
// six tabs. Each tab is its own module that loads its data through the public admin API.

import { api, signIn } from "/static/api.js";
import { $ } from "/static/admin-ui.js";
import * as keys from "/static/admin-keys.js";
import * as overview from "/static/admin-overview.js";
import * as providers from "/static/admin-providers.js";
import * as settings from "/static/admin-settings.js";
import * as tasks from "/static/admin-tasks.js";
import * as webhooks from "/static/admin-webhooks.js";

const LOADERS = {
  overview: overview.load,
  providers: providers.load,
  keys: keys.load,
  tasks: () => tasks.load(),
  webhooks: webhooks.load,
  settings: settings.load,
};

const tabs = () => [...document.querySelectorAll('[role="tab"]')];
const nameOf = (tab) => tab.id.replace(/^tab-/, "");

// WAI-ARIA tabs: one tab in the Tab order, arrow keys / Home / End move between tabs, the
// URL fragment remembers the open tab. Opening a tab reloads its data.
function select(tab, { focus = false, load = true } = {}) {
  for (const other of tabs()) {
    const selected = other === tab;
    other.setAttribute("aria-selected", String(selected));
    other.tabIndex = selected ? 0 : -1;
    $(other.getAttribute("aria-controls")).hidden = !selected;
  }
  if (focus) tab.focus();
  history.replaceState(null, "", `#${nameOf(tab)}`);
  if (load) LOADERS[nameOf(tab)]();
}

function initTabs() {
  const list = document.querySelector('[role="tablist"]');
  list.addEventListener("click", (event) => {
    const tab = event.target.closest('[role="tab"]');
    if (tab) select(tab);
  });
  list.addEventListener("keydown", (event) => {
    const all = tabs();
    const at = all.indexOf(document.activeElement);
    const moves = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: all.length - 1 };
    if (at < 0 || !(event.key in moves)) return;
    event.preventDefault();
    select(all[(moves[event.key] + all.length) % all.length], { focus: true });
  });
}

async function start() {
  $("console").hidden = false;
  for (const module of [overview, providers, keys, tasks, webhooks]) module.init();
  initTabs();
  const wanted = tabs().find((tab) => `#${nameOf(tab)}` === location.hash) || tabs()[0];
  select(wanted, { load: false });
  // Load everything once so the panels share names (keys, providers) from the start.
  await Promise.all([keys.load(), providers.load(), overview.load(), tasks.load(), webhooks.load(), settings.load()]);
}

signIn({
  check: () => api("/v1/admin/keys"),
  describe: (found) => {
    const mine = found.data.find(keys.isMine);
    return mine ? `Signed in as ${mine.name} (admin)` : "Signed in (admin)";
  },
  start,
});
