// A run's live view: its events as they come (reattaching after a drop), its pending
// approvals with Allow and Deny, and Cancel, Interrupt and a follow-up message.

import { ApiError, runPath } from "./api.js";
import { el, jsonBlock, shortId, when } from "./dom.js";
import { Follower } from "./events.js";
import { renderEvent } from "./render.js";

const FINAL = new Set(["completed", "failed", "cancelled", "timeout", "interrupted", "lost"]);

const MAX_SHOWN = 2000;

function describe(error) {
  return error instanceof ApiError ? `${error.detail} (${error.code})` : String(error.message ?? error);
}

/** A pending approval: the tool, its input, the CLI's reason, Allow and Deny. */
export function approvalCard(api, processId, approval, onAnswered) {
  const note = el("div", { class: "note" });
  const message = el("input", {
    type: "text", class: "deny-message", placeholder: "Why not (told to the model)",
    "aria-label": "Message for the model when denying",
  });
  const answer = async (behavior) => {
    const body = behavior === "deny" && message.value ? { behavior, message: message.value } : { behavior };
    for (const button of card.querySelectorAll("button")) button.disabled = true;
    try {
      const reply = await api.post(runPath(processId, `/approvals/${encodeURIComponent(approval.approval_id)}`), body);
      note.textContent = `Answered: ${reply.answer}`;
      onAnswered?.(approval.approval_id);
    } catch (error) {
      note.textContent = describe(error);
      for (const button of card.querySelectorAll("button")) button.disabled = false;
    }
  };
  const card = el("div", { class: "approval card", dataset: { approvalId: approval.approval_id } },
    el("div", { class: "label" }, "Approval: ", el("strong", { class: "tool-name", text: approval.tool_name })),
    approval.description ? el("div", { class: "description", text: approval.description }) : null,
    approval.decision_reason ? el("div", { class: "meta", text: approval.decision_reason }) : null,
    jsonBlock(approval.input ?? {}, "json approval-input"),
    el("div", { class: "actions" },
      el("button", { type: "button", class: "allow", onclick: () => answer("allow") }, "Allow"),
      message,
      el("button", { type: "button", class: "deny", onclick: () => answer("deny") }, "Deny")),
    note);
  return card;
}

/** Show run ``processId`` in ``root`` until ``signal`` aborts. */
export async function runView(api, root, processId, signal) {
  const status = el("span", { class: "status", id: "run-status", dataset: { status: "" }, text: "…" });
  const connection = el("span", { class: "connection", id: "connection", dataset: { reconnects: "0" }, text: "connecting" });
  const info = el("div", { class: "meta", id: "run-info" });
  const notice = el("div", { class: "note", id: "run-notice", role: "status" });
  const approvals = el("div", { id: "approvals" });
  const noApprovals = el("p", { class: "meta", id: "no-approvals", text: "None." });
  const log = el("div", { id: "events", class: "events" });
  // Only the newest MAX_SHOWN events stay on the page: a run that prints fast for hours
  // must not grow the page until the tab freezes. The API keeps them all.
  const elided = el("div", { id: "events-elided", class: "meta", hidden: true });
  let elidedCount = 0;
  const cancel = el("button", { type: "button", id: "cancel" }, "Cancel");
  const interrupt = el("button", { type: "button", id: "interrupt" }, "Interrupt");
  const prompt = el("textarea", { id: "follow-up", rows: "2", placeholder: "A follow-up message", "aria-label": "Follow-up message" });
  const send = el("button", { type: "submit", id: "send" }, "Send");
  const controls = [cancel, interrupt, prompt, send];

  const setStatus = (value) => {
    status.textContent = value;
    status.dataset.status = value;
    if (FINAL.has(value)) for (const control of controls) control.disabled = true;
  };
  const act = async (label, call) => {
    notice.textContent = `${label}…`;
    try {
      const reply = await call();
      notice.textContent = `${label}: ${reply?.status ?? "done"}`;
      if (reply?.status) setStatus(reply.status);
    } catch (error) {
      notice.textContent = `${label} failed: ${describe(error)}`;
    }
  };
  cancel.addEventListener("click", () => act("Cancel", () => api.delete(runPath(processId))));
  interrupt.addEventListener("click", () => act("Interrupt", () => api.post(runPath(processId, "/interrupt"))));
  const form = el("form", { class: "follow-up" }, prompt, send);
  form.addEventListener("submit", async (submitted) => {
    submitted.preventDefault();
    if (!prompt.value.trim()) return;
    try {
      const reply = await api.post(runPath(processId, "/messages"), { prompt: prompt.value });
      notice.textContent = reply.ahead ? `Sent; ${reply.ahead} ahead of it` : "Sent";
      prompt.value = "";
    } catch (error) {
      notice.textContent = `Not sent: ${describe(error)}`;
    }
  });

  root.replaceChildren(el("section", { class: "run" },
    el("h2", {}, "Run ", el("code", { text: shortId(processId), title: processId })),
    el("div", { class: "run-head" }, status, connection), info,
    el("div", { class: "actions" }, cancel, interrupt), form, notice,
    el("h3", { text: "Waiting for approval" }), noApprovals, approvals,
    el("h3", { text: "Events" }), elided, log));

  try {
    const record = await api.get(`/runs/${encodeURIComponent(processId)}`, undefined, signal);
    setStatus(record.status);
    info.replaceChildren(record.cwd ?? "", record.model ? ` · ${record.model}` : "",
      ` · accepted ${when(record.created_at)}`);
  } catch (error) {
    if (signal.aborted) return;
    info.textContent = describe(error);
  }

  const pending = new Map();
  const removeApproval = (id) => {
    pending.get(id)?.remove();
    pending.delete(id);
    noApprovals.hidden = pending.size > 0;
  };
  const follower = new Follower(api, processId, {
    onEvent(event) {
      const node = renderEvent(event);
      if (node) log.append(node);
      while (log.childElementCount > MAX_SHOWN) {
        log.firstElementChild.remove();
        elidedCount += 1;
        elided.hidden = false;
        elided.dataset.count = String(elidedCount);
        elided.textContent = `${elidedCount} earlier events are not shown here ` +
          `(GET /chat/${processId}/events, or cc2api logs, has them all)`;
      }
      let data = null;
      try {
        data = JSON.parse(event.data);
      } catch {
        data = null;
      }
      if (event.event === "approval" && data && !data.refused && !pending.has(data.approval_id)) {
        const card = approvalCard(api, processId, data, removeApproval);
        pending.set(data.approval_id, card);
        approvals.append(card);
        noApprovals.hidden = true;
      } else if (event.event === "approval_answered" && data) {
        removeApproval(data.approval_id);
      } else if (event.event === "done" && data) {
        setStatus(data.status);
      } else if (event.event === "process" || event.event === "queued") {
        if (!status.dataset.status) setStatus(event.event === "queued" ? "queued" : "running");
      }
    },
    onState(state, self, error) {
      connection.dataset.reconnects = String(self.reconnects);
      connection.dataset.state = state;
      connection.textContent = state === "reconnecting" ? `reconnecting (${self.reconnects})`
        : state === "failed" ? `stopped: ${describe(error)}` : state;
    },
  });
  await follower.run(signal);
}
