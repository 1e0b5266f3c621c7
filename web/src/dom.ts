// Tiny DOM helpers (no framework: the page is small).

export function el(tag: string, attrs: Record<string, string> = {}, ...children: (Node | string)[]): HTMLElement {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const node = document.getElementById(id);
  if (!node) throw new Error(`#${id} is missing from index.html`);
  return node as T;
}

/**
 * A button label with alternates that take the same room: the idle label
 * and its confirmations are stacked in one grid cell and only one is
 * visible, so "✓ Copied" does not widen the button and push its neighbours.
 */
export function stackedLabel(idle: string, alternates: Record<string, string>): HTMLElement {
  const stack = el("span", { class: "label-stack" }, el("span", { class: "label-idle" }, idle));
  for (const [state, text] of Object.entries(alternates)) {
    stack.append(el("span", { class: "label-alt", "data-state": state, "aria-hidden": "true" }, text));
  }
  return stack;
}

/** Show one of a stacked label's alternates for a moment (and say it to screen readers). */
export function flashButton(button: HTMLElement, state: string, spoken: string, ms = 1600): void {
  button.dataset.flash = state;
  button.classList.add("done");
  announce(spoken);
  window.clearTimeout(Number(button.dataset.timer ?? 0));
  button.dataset.timer = String(
    window.setTimeout(() => {
      delete button.dataset.flash;
      button.classList.remove("done");
    }, ms),
  );
}

/** Say something to screen readers without moving the focus (the page's polite live region). */
export function announce(text: string): void {
  const region = document.getElementById("announcer");
  if (!region) return;
  // A change of text is what a live region announces: clear, then set.
  region.textContent = "";
  window.setTimeout(() => {
    region.textContent = text;
  }, 50);
}

const ICONS: Record<string, string> = {
  // Feather-style 24x24 stroke icons (no emoji: not every system has the font).
  lock: "M5 11h14v10H5z M8 11V7a4 4 0 0 1 8 0v4",
  copy: "M9 9h11v11H9z M5 15H4V4h11v1",
  bulb: "M9 18h6 M10 21h4 M12 3a6 6 0 0 0-4 10.5c.7.7 1 1.5 1 2.5h6c0-1 .3-1.8 1-2.5A6 6 0 0 0 12 3z",
  check: "M20 6 9 17l-5-5",
  play: "M7 4v16l13-8z",
  // A speech bubble with sound lines: "read aloud" (the terminal's screen reader mode).
  reader: "M4 5h16v11H9l-5 4z M8 9h8 M8 12h5",
};

/** A small inline SVG icon (decorative: aria-hidden). */
export function icon(name: keyof typeof ICONS & string, cls = "icon"): SVGSVGElement {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("class", cls);
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", ICONS[name]);
  svg.append(path);
  return svg;
}
