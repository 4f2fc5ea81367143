// A run's events, followed to its end: fetch() streaming of GET /chat/{id}/events (an
// EventSource cannot send an Authorization header). After a drop it reattaches with
// Last-Event-ID, backing off, and hands on each event id once: the ids are the run's
// sequence numbers, so anything at or below the last one seen is a repeat.

import { ApiError } from "./api.js";
import { sleep } from "./dom.js";

const FIRST_DELAY_MS = 250;
const MAX_DELAY_MS = 5000;

/** Parse one SSE block; comments (": ping") give null. */
export function parseBlock(block) {
  let event = "message";
  const data = [];
  let id = null;
  let fields = 0;
  for (const line of block.split("\n")) {
    if (line === "" || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    fields += 1;
    if (name === "event") event = value;
    else if (name === "data") data.push(value);
    else if (name === "id" && /^\d+$/.test(value)) id = Number(value);
  }
  return fields ? { event, data: data.join("\n"), id } : null;
}

/** Yield the events of a response body as they come (the gateway ends lines with LF). */
export async function* sseEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = parseBlock(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
        if (event) yield event;
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

/** Follow one run until its done event, a refusal, or ``signal`` aborts. */
export class Follower {
  constructor(api, processId, { onEvent, onState }) {
    this.api = api;
    this.processId = processId;
    this.onEvent = onEvent;
    this.onState = onState;
    this.lastId = 0;
    this.reconnects = 0;
  }

  async run(signal) {
    let delay = FIRST_DELAY_MS;
    while (!signal.aborted) {
      try {
        const response = await this.api.events(this.processId, this.lastId, signal);
        this.onState("live", this);
        for await (const event of sseEvents(response.body)) {
          if (event.id !== null) {
            if (event.id <= this.lastId) continue;
            this.lastId = event.id;
          }
          delay = FIRST_DELAY_MS;
          this.onEvent(event);
          if (event.event === "done") {
            this.onState("ended", this);
            return;
          }
        }
      } catch (error) {
        if (signal.aborted) return;
        // A refusal will not change by asking again; a 5xx or a drop may.
        if (error instanceof ApiError && error.status < 500 && error.status !== 429) {
          this.onState("failed", this, error);
          return;
        }
      }
      if (signal.aborted) return;
      this.reconnects += 1;
      this.onState("reconnecting", this);
      await sleep(delay, signal);
      delay = Math.min(delay * 2, MAX_DELAY_MS);
    }
  }
}
