// The console's lists: sign-in, runs (live and history), sessions and a transcript, usage.

import { Api, ApiError, runPath, saveCredential } from "./api.js";
import { el, seconds, shortId, sleep, usd, viewLink, visible, when } from "./dom.js";
import { approvalCard } from "./live.js";
import { renderLine } from "./render.js";

const STATUSES = ["queued", "running", "cancelling", "completed", "failed", "cancelled",
  "timeout", "interrupted", "lost"];
const LIVE = new Set(["queued", "running", "cancelling"]);
const REFRESH_MS = 3000;

function problem(error) {
  return el("div", { class: "error", role: "alert" },
    error instanceof ApiError ? `${error.detail} (${error.code})` : String(error.message ?? error));
}

/** The sign-in form; ``onSignedIn`` gets an Api once the server took the credential. */
export function signInView(root, onSignedIn, reason = "") {
  const kind = el("select", { id: "kind", "aria-label": "Sign in with" },
    el("option", { value: "key" }, "API key"), el("option", { value: "admin" }, "Admin user"));
  const token = el("input", { id: "token", type: "password", autocomplete: "off", placeholder: "cc2_…", "aria-label": "API key" });
  const user = el("input", { id: "user", type: "text", autocomplete: "username", placeholder: "user", "aria-label": "User" });
  const password = el("input", { id: "password", type: "password", autocomplete: "current-password", placeholder: "password", "aria-label": "Password" });
  const keyFields = el("div", { class: "fields" }, token);
  const adminFields = el("div", { class: "fields", hidden: true }, user, password);
  const message = el("div", { class: "note", id: "sign-in-message", text: reason });
  kind.addEventListener("change", () => {
    keyFields.hidden = kind.value !== "key";
    adminFields.hidden = kind.value !== "admin";
  });
  const form = el("form", { class: "sign-in card" },
    el("h2", { text: "Sign in" }),
    el("p", { class: "meta", text: "Kept for this tab only, until it closes." }),
    kind, keyFields, adminFields,
    el("button", { type: "submit", id: "sign-in" }, "Sign in"), message);
  form.addEventListener("submit", async (submitted) => {
    submitted.preventDefault();
    const credential = kind.value === "key"
      ? { kind: "key", token: token.value.trim() }
      : { kind: "admin", user: user.value, password: password.value };
    const api = new Api(credential);
    message.textContent = "Signing in…";
    try {
      await api.get("/processes");
    } catch (error) {
      message.textContent = error instanceof ApiError && error.status === 401
        ? "Those credentials were refused." : `Could not sign in: ${error.message}`;
      return;
    }
    saveCredential(credential);
    onSignedIn(api);
  });
  root.replaceChildren(form);
}

function duration(run) {
  const start = Date.parse(run.started_at ?? "");
  if (Number.isNaN(start)) return "—";
  const end = run.ended_at ?? run.finished_at;
  const stop = end ? Date.parse(end) : Date.now();
  return seconds(stop - start);
}

function runRow(run) {
  return viewLink("run", run.process_id, [
    el("span", { class: "status", dataset: { status: run.status }, text: run.status }),
    el("code", { class: "id", text: shortId(run.process_id) }),
    el("span", { class: "cwd", text: run.cwd ?? "" }),
    el("span", { class: "when", text: when(run.created_at ?? run.started_at) }),
    el("span", { class: "duration", text: duration(run) }),
    el("span", { class: "cost", text: `cost ${usd(run.total_cost_usd)}` }),
    run.pending_approvals ? el("span", { class: "badge", text: `${run.pending_approvals} waiting` }) : null,
  ], { class: "row run-row", dataset: { processId: run.process_id, status: run.status } });
}

/** Live runs over the history, newest first, filtered by status; refreshed until aborted. */
export async function runsView(api, root, signal, filter = "") {
  const select = el("select", { id: "status-filter", "aria-label": "Status" },
    el("option", { value: "" }, "every status"),
    STATUSES.map((status) => el("option", { value: status, selected: status === filter }, status)));
  const list = el("div", { id: "runs", class: "list" });
  const waiting = el("div", { id: "pending-approvals" });
  const problems = el("div");
  root.replaceChildren(el("section", {},
    el("div", { class: "head" }, el("h2", { text: "Runs" }), select),
    waiting, problems, list));
  const cards = new Map();
  const noRuns = el("p", { class: "meta", text: "No runs." });
  let current = filter;
  let refreshes = 0;
  // Rows that did not change stay the nodes they were, and the list is edited in place
  // rather than emptied: a refresh keeps the page's scroll, a focused link and a hover.
  const showRows = (fresh) => {
    const old = new Map([...list.children].map((row) => [row.dataset.processId ?? "", row]));
    const rows = fresh.map((row) => {
      const same = old.get(row.dataset.processId ?? "");
      return same && same.isEqualNode(row) ? same : row;
    });
    rows.forEach((row, index) => {
      if (list.children[index] !== row) list.insertBefore(row, list.children[index] ?? null);
    });
    while (list.children.length > rows.length) list.lastElementChild.remove();
  };
  select.addEventListener("change", () => {
    current = select.value;
    location.hash = current ? `#/runs?status=${encodeURIComponent(current)}` : "#/runs";
  });

  const refresh = async () => {
    const [live, history] = await Promise.all([
      api.get("/processes", undefined, signal),
      api.get("/runs", { status: current, limit: 100 }, signal),
    ]);
    const runs = new Map(history.runs.map((run) => [run.process_id, run]));
    for (const process of live.processes) {
      runs.set(process.process_id, { ...runs.get(process.process_id), ...process });
    }
    const shown = [...runs.values()]
      .filter((run) => !current || run.status === current)
      .sort((a, b) => String(b.created_at ?? b.started_at).localeCompare(String(a.created_at ?? a.started_at)));
    showRows(shown.length ? shown.map(runRow) : [noRuns]);
    // Pending approvals of the live runs, each answerable here.
    const asking = live.processes.filter((run) => run.pending_approvals > 0 && LIVE.has(run.status));
    const seen = new Set();
    for (const run of asking) {
      const { approvals } = await api.get(runPath(run.process_id, "/approvals"), undefined, signal);
      for (const approval of approvals) {
        seen.add(approval.approval_id);
        if (cards.has(approval.approval_id)) continue;
        const card = approvalCard(api, run.process_id, approval);
        card.prepend(el("div", { class: "meta" }, "Run ", viewLink("run", run.process_id, shortId(run.process_id))));
        cards.set(approval.approval_id, card);
        waiting.append(card);
      }
    }
    for (const [id, card] of cards) {
      if (!seen.has(id)) {
        card.remove();
        cards.delete(id);
      }
    }
  };
  while (!signal.aborted) {
    try {
      await refresh();
      problems.replaceChildren();
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof ApiError && error.status === 401) throw error;
      problems.replaceChildren(problem(error));
    }
    list.dataset.refreshes = String(++refreshes);
    await sleep(REFRESH_MS, signal);
    // A hidden tab asks nothing of the server; it refreshes as soon as it is shown again.
    list.dataset.paused = String(document.visibilityState === "hidden");
    await visible(signal);
    list.dataset.paused = "false";
  }
}

function sessionRow(session) {
  return viewLink("session", session.session_id, [
    el("span", { class: "preview", text: session.preview ?? "(no prompt)" }),
    el("span", { class: "cwd", text: session.cwd ?? "" }),
    el("span", { class: "when", text: when(session.last_activity) }),
    el("span", { class: "count", text: `${session.message_count} messages` }),
    session.held_by ? el("span", { class: "badge", text: "in use" }) : null,
  ], { class: "row session-row", dataset: { sessionId: session.session_id } });
}

/** The sessions, newest activity first, a page at a time. */
export async function sessionsView(api, root, signal) {
  const list = el("div", { id: "sessions", class: "list" });
  const more = el("button", { type: "button", id: "more", hidden: true }, "More");
  root.replaceChildren(el("section", {}, el("h2", { text: "Sessions" }), list, more));
  let cursor = null;
  const page = async () => {
    const answer = await api.get("/sessions", { limit: 50, cursor }, signal);
    list.append(...answer.sessions.map(sessionRow));
    if (!list.children.length) list.append(el("p", { class: "meta", text: "No sessions." }));
    cursor = answer.next_cursor;
    more.hidden = !cursor;
  };
  more.addEventListener("click", () => page().catch((error) => list.append(problem(error))));
  await page();
}

/** One session's transcript: its user and assistant messages, as the CLI saved them. */
export async function sessionView(api, root, sessionId, signal) {
  const head = el("div", { class: "meta", id: "session-info" });
  const log = el("div", { id: "transcript", class: "events" });
  const more = el("button", { type: "button", id: "more", hidden: true }, "More");
  root.replaceChildren(el("section", {},
    el("h2", {}, "Session ", el("code", { text: shortId(sessionId), title: sessionId })),
    head, log, more));
  let cursor = null;
  const page = async () => {
    const answer = await api.get(`/sessions/${encodeURIComponent(sessionId)}`, { limit: 200, cursor }, signal);
    const { session } = answer;
    head.replaceChildren(session.cwd ?? "", ` · ${session.message_count} messages · last ${when(session.last_activity)}`,
      session.runs?.length ? el("span", {}, " · runs ",
        session.runs.map((id) => [viewLink("run", id, shortId(id)), " "])) : "");
    for (const line of answer.messages) {
      if (line && (line.type === "user" || line.type === "assistant")) {
        log.append(el("div", { class: `event transcript-${line.type}` }, renderLine(line)));
      }
    }
    cursor = answer.next_cursor;
    more.hidden = !cursor;
  };
  more.addEventListener("click", () => page().catch((error) => log.append(problem(error))));
  await page();
}

/** Usage per UTC day over the last 30 days. */
export async function usageView(api, root, signal) {
  const list = el("div", { id: "usage", class: "list" });
  root.replaceChildren(el("section", {}, el("h2", { text: "Usage per day" }), list));
  const answer = await api.get("/usage", { group_by: "day" }, signal);
  const fact = (name, value) => el("div", { class: "fact" }, el("dt", { text: name }), el("dd", { text: value }));
  list.replaceChildren(...(answer.groups.length ? answer.groups.map((group) => el("dl", {
    class: "row usage-row", dataset: { day: group.group },
  },
  fact("Day", group.group),
  fact("Runs", `${group.runs} (${group.completed} completed, ${group.failed} failed, ${group.cancelled} cancelled)`),
  fact("Cost", group.cost_unknown_runs ? `${usd(group.cost_usd)} + ${group.cost_unknown_runs} unknown` : usd(group.cost_usd)),
  fact("Tokens", `${group.input_tokens} in · ${group.output_tokens} out · ${group.cache_read_tokens} cache read`),
  fact("CLI time", seconds(group.wall_seconds * 1000)))) : [el("p", { class: "meta", text: "No runs ended in the last 30 days." })]));
}
