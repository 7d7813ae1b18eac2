// The studio: create (studio-create.js), watch (studio-gallery.js, studio-card.js) and
// characters (studio-characters.js), for any API key. The key proves itself by listing
// the models, which the forms are then built from.

import { api, session, signIn } from "/static/api.js";
import { Catalogue } from "/static/studio-catalogue.js";
import { setupCharacters } from "/static/studio-characters.js";
import { setupCreate } from "/static/studio-create.js";
import { Gallery } from "/static/studio-gallery.js";

const $ = (id) => document.getElementById(id);
const GUIDE_SEEN = "soragate.guide.seen";

signIn({
  check: () => api("/v1/models"),
  describe: () => `Signed in with ${session.key.slice(0, 10)}…`,
  start: async (models) => {
    $("studio").hidden = false;
    const catalogue = new Catalogue(models.data);
    const gallery = new Gallery({
      list: $("cards"), empty: $("gallery-empty"), error: $("gallery-error"), more: $("load-more"), live: $("live"),
    });
    setupCreate({ catalogue, gallery });
    setupCharacters();
    await gallery.start();
    setupGuide({ firstRun: gallery.isEmpty && !localStorage.getItem(GUIDE_SEEN) });
  },
});

// Shown on the first visit of a key with no tasks; "What is this server?" brings it back.
function setupGuide({ firstRun }) {
  const guide = $("guide"), open = $("guide-open");
  const show = (visible) => {
    guide.hidden = !visible;
    open.setAttribute("aria-expanded", String(visible));
  };
  open.addEventListener("click", () => {
    show(guide.hidden);
    if (!guide.hidden) $("guide-title").focus();
  });
  $("guide-close").addEventListener("click", () => {
    localStorage.setItem(GUIDE_SEEN, "1");
    show(false);
    open.focus();
  });
  $("guide-title").tabIndex = -1;
  show(firstRun);
}
