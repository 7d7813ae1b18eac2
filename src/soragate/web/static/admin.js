import { api, signIn } from "/static/api.js";

signIn({
  check: () => api("/v1/admin/keys"),
  start: () => { document.getElementById("console").hidden = false; },
});
