import { api, signIn } from "/static/api.js";

signIn({
  check: () => api("/v1/models"),
  start: () => { document.getElementById("studio").hidden = false; },
});
