// Every node is made with createElement and every text is a text node: what the server
// sends (a run's output, a prompt, a path) never reaches innerHTML, so it cannot become
// markup or script.

/** Make an element: props set attributes ("class", "text", "dataset", "on<event>"). */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = String(value);
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

/** Append children: nodes as they are, anything else as text. */
export function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** A JSON value pretty-printed in a <pre>, as text. */
export function jsonBlock(value, className = "json") {
  let text;
  try {
    text = typeof value === "string" ? value : JSON.stringify(value, null, 2);
  } catch {
    text = String(value);
  }
  return el("pre", { class: className, text });
}

/** A link to one of the console's views (the id is encoded, never markup). */
export function viewLink(view, id, children, props = {}) {
  return el("a", { href: `#/${view}/${encodeURIComponent(id)}`, ...props }, children);
}

export function shortId(id) {
  return typeof id === "string" ? id.slice(0, 8) : "—";
}

export function when(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString();
}

export function seconds(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
  const s = ms / 1000;
  return s < 60 ? `${s.toFixed(1)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

export function usd(value) {
  return typeof value === "number" ? `$${value.toFixed(4)}` : "—";
}

export function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

/** Resolve once the page is visible (at once if it is) or ``signal`` aborts. */
export function visible(signal) {
  return new Promise((resolve) => {
    if (document.visibilityState !== "hidden" || signal?.aborted) {
      resolve();
      return;
    }
    const done = () => {
      if (document.visibilityState === "hidden" && !signal?.aborted) return;
      document.removeEventListener("visibilitychange", done);
      resolve();
    };
    document.addEventListener("visibilitychange", done);
    signal?.addEventListener("abort", done, { once: true });
  });
}
