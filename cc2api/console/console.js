// The console's entry: sign-in, then one view at a time, chosen by the URL's fragment
// (#/runs, #/run/ID, #/sessions, #/session/ID, #/usage). Each view gets an AbortSignal
// that ends its requests and streams when another view replaces it.
//
// Plain modules and no framework: a few hundred lines, nothing to build, nothing fetched
// from elsewhere (the page's policy allows scripts from this server only).

import { Api, ApiError, forgetCredential, loadCredential } from "./api.js";
import { el } from "./dom.js";
import { runView } from "./live.js";
import { runsView, sessionView, sessionsView, signInView, usageView } from "./views.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
let api = null;
let current = null;

function route() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = hash.split("?");
  const [view, id = ""] = path.split("/");
  return { view: view || "runs", id: decoded(id), params: new URLSearchParams(query) };
}

function decoded(text) {
  // A hand-typed fragment may hold a bad escape: show what was typed, not a blank page.
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

function signOut(reason = "") {
  forgetCredential();
  api = null;
  current?.abort();
  nav.hidden = true;
  signInView(main, signedIn, reason);
}

function signedIn(signedInApi) {
  api = signedInApi;
  nav.hidden = false;
  who.textContent = api.credential.kind === "key" ? "signed in with a key" : `signed in as ${api.credential.user}`;
  show();
}

async function show() {
  if (!api) return;
  current?.abort();
  const controller = new AbortController();
  current = controller;
  const { view, id, params } = route();
  for (const link of nav.querySelectorAll("a")) {
    link.classList.toggle("current", link.dataset.view === view || link.dataset.view === `${view}s`);
  }
  try {
    if (view === "run" && id) await runView(api, main, id, controller.signal);
    else if (view === "sessions") await sessionsView(api, main, controller.signal);
    else if (view === "session" && id) await sessionView(api, main, id, controller.signal);
    else if (view === "usage") await usageView(api, main, controller.signal);
    else await runsView(api, main, controller.signal, params.get("status") ?? "");
  } catch (error) {
    if (controller.signal.aborted) return;
    if (error instanceof ApiError && error.status === 401) {
      signOut("Your sign-in was refused: sign in again.");
      return;
    }
    main.append(el("div", { class: "error", role: "alert", text: error instanceof ApiError ? `${error.detail} (${error.code})` : String(error) }));
  }
}

document.getElementById("sign-out").addEventListener("click", () => signOut());
window.addEventListener("hashchange", show);
const saved = loadCredential();
if (saved) signedIn(new Api(saved));
else signOut();
