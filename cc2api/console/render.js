// What the CLI printed, for a person: the assistant's text, each tool call with its input,
// each tool result, the result line, errors. A line of a shape not known here is shown
// as its JSON, never dropped.

import { el, jsonBlock, seconds, shortId, usd } from "./dom.js";

function textOf(content) {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return content === undefined ? "" : JSON.stringify(content);
  return content
    .map((block) => (block && block.type === "text" ? block.text : JSON.stringify(block)))
    .join("\n");
}

function block(item, role) {
  if (!item || typeof item !== "object") return el("div", { class: `${role}-text`, text: String(item) });
  switch (item.type) {
    case "text":
      return el("div", { class: `${role}-text`, text: item.text ?? "" });
    case "tool_use":
      return el("div", { class: "tool-call", dataset: { toolUseId: item.id ?? "" } },
        el("div", { class: "label" }, "Tool call: ", el("strong", { text: item.name ?? "?" })),
        jsonBlock(item.input ?? {}));
    case "tool_result":
      return el("div", {
        class: item.is_error ? "tool-result failed" : "tool-result",
        dataset: { toolUseId: item.tool_use_id ?? "" },
      },
      el("div", { class: "label", text: item.is_error ? "Tool error" : "Tool result" }),
      el("pre", { class: "output", text: textOf(item.content) || "(no output)" }));
    case "thinking":
      return el("details", { class: "thinking" }, el("summary", { text: "Thinking" }),
        el("pre", { text: item.thinking ?? "" }));
    default:
      return jsonBlock(item);
  }
}

function message(line, role) {
  const content = line.message?.content;
  if (typeof content === "string") return [el("div", { class: `${role}-text`, text: content })];
  if (Array.isArray(content)) return content.map((item) => block(item, role));
  return [jsonBlock(line, "json line")];
}

/** Nodes for one line the CLI printed (parsed JSON, or the raw text if it was not). */
export function renderLine(line) {
  if (line === null || typeof line !== "object") {
    return [el("pre", { class: "raw", text: String(line) })];
  }
  switch (line.type) {
    case "assistant":
      return message(line, "assistant");
    case "user":
      return message(line, "user");
    case "stream_event":
      return []; // partial text: the whole message follows as an assistant line
    case "system":
      if (line.subtype === "init") {
        return [el("div", { class: "meta" },
          `Session ${shortId(line.session_id)}`,
          line.model ? ` · ${line.model}` : "",
          line.cwd ? ` · ${line.cwd}` : "")];
      }
      if (line.subtype === "api_retry") {
        return [el("div", { class: "meta warn", text: `The model's API failed; retrying (${line.attempt ?? "?"})` })];
      }
      return [el("div", { class: "meta", text: `system: ${line.subtype ?? ""}` })];
    case "result":
      return [el("div", { class: line.is_error ? "result-line failed" : "result-line" },
        el("div", { class: "label" },
          `Result: ${line.subtype ?? ""}`,
          typeof line.total_cost_usd === "number" ? ` · ${usd(line.total_cost_usd)}` : "",
          line.num_turns ? ` · ${line.num_turns} turns` : "",
          line.duration_ms ? ` · ${seconds(line.duration_ms)}` : ""),
        typeof line.result === "string" ? el("div", { class: "result-text", text: line.result }) : null)];
    default:
      return [jsonBlock(line, "json line")];
  }
}

function parsed(data) {
  try {
    return JSON.parse(data);
  } catch {
    return data;
  }
}

/** A node for one event of a run's stream, or null for one shown elsewhere only. */
export function renderEvent(event) {
  const data = parsed(event.data);
  let body;
  switch (event.event) {
    case "process":
      body = [el("div", { class: "meta", text: `Run ${shortId(data.process_id)} accepted` })];
      break;
    case "queued":
      body = [el("div", { class: "meta", text: `Queued: position ${data.position}` })];
      break;
    case "message":
      body = renderLine(data);
      break;
    case "approval":
      body = [el("div", { class: "meta" }, "Approval asked for ", el("strong", { text: data.tool_name }),
        data.refused ? ` (refused by the gateway: ${data.refused})` : "")];
      break;
    case "approval_answered":
      body = [el("div", { class: "meta", text: `Approval ${shortId(data.approval_id)}: ${data.answer}` })];
      break;
    case "error":
      body = [el("div", { class: "error" },
        el("div", { class: "label" }, "Error: ", el("code", { text: data.code ?? "" })),
        el("div", { text: data.message ?? "" }),
        data.stderr_tail ? el("pre", { class: "output", text: data.stderr_tail }) : null)];
      break;
    case "done":
      body = [el("div", { class: `done status-${data.status}` },
        `Ended: ${data.status}`,
        data.exit_code !== null && data.exit_code !== undefined ? ` (exit ${data.exit_code})` : "",
        ` in ${seconds(data.duration_ms)}`)];
      break;
    case "dropped":
      body = [el("div", { class: "meta warn", text: `${data.dropped} early events are no longer kept` })];
      break;
    default:
      body = [jsonBlock(data)];
  }
  if (!body.length) body = [];
  return el("div", {
    class: `event event-${event.event}`,
    dataset: { event: event.event, eventId: event.id === null ? "" : String(event.id) },
  }, body);
}
