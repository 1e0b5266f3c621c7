// Enhance the server's rendered markdown (already sanitized server side):
//   <div class="codeblock" data-action="exec|copy" data-lang="LANG">
//     <pre class="highlight"><code>...pygments spans...</code></pre></div>
//   <code class="inline-action" data-action="exec|copy">text</code>
// exec blocks get Run (types the code into the active terminal + Enter) and
// Copy; every block gets Copy. Inline actions become real buttons.
//
// Commands are shown whole: each source line of a block becomes its own
// box that wraps at the pane's edge with a hanging indent and a faint ↪ on
// its continuation rows (app.css), instead of hiding its end behind a
// sideways scroll (step 5's `&` was cut off). The code element's
// textContent stays exactly the author's text: Run and Copy send that,
// never the wrapped rendering.

import { copyText } from "./clipboard";
import { announce, el, flashButton, icon, stackedLabel } from "./dom";

export interface ContentActions {
  /** Type the text into the active terminal, then Enter. */
  run(text: string): void;
  /** Something was copied to the clipboard (the next key is likely a paste into the terminal). */
  copied(): void;
}

/** Inline code up to this many characters never breaks across lines (`-rw-r--r--` broke after its first -). */
const NO_BREAK_CHARS = 24;

function codeElement(block: Element): Element {
  return block.querySelector("code") ?? block.querySelector("pre") ?? block;
}

function codeText(block: Element): string {
  return (codeElement(block).textContent ?? "").replace(/\n+$/, "");
}

/**
 * Put each source line of a code element in its own `span.line` (the box
 * that wraps), keeping Pygments' token spans and every character: the
 * newlines stay as text between the lines (collapsed by CSS), so
 * textContent is unchanged.
 */
function splitLines(code: Element): void {
  const pieces = Array.from(code.childNodes);
  code.replaceChildren();
  let line = el("span", { class: "line" });
  for (const node of pieces) {
    const parts = (node.textContent ?? "").split("\n");
    parts.forEach((part, i) => {
      if (i > 0) {
        code.append(line, "\n");
        line = el("span", { class: "line" });
      }
      if (!part) return;
      if (node instanceof Element) {
        const token = node.cloneNode(false) as Element; // Pygments' spans hold text only
        token.textContent = part;
        line.append(token);
      } else line.append(part);
    });
  }
  if (line.hasChildNodes()) code.append(line);
}

/**
 * A table too wide for the pane scrolls sideways in its wrapper; while it
 * does, the wrapper is a focusable, named region, so the keyboard can
 * scroll it too (and only then: a table that fits is no extra Tab stop).
 */
const tableScroll = new ResizeObserver((entries) => {
  for (const entry of entries) {
    const wrap = entry.target as HTMLElement;
    if (wrap.scrollWidth > wrap.clientWidth) {
      wrap.tabIndex = 0;
      wrap.setAttribute("role", "region");
      wrap.setAttribute("aria-label", "Table, scrolls sideways");
    } else {
      wrap.removeAttribute("tabindex");
      wrap.removeAttribute("role");
      wrap.removeAttribute("aria-label");
    }
  }
});

export function renderMarkdown(target: HTMLElement, html: string, actions: ContentActions): void {
  for (const wrap of Array.from(target.querySelectorAll(".table-scroll"))) tableScroll.unobserve(wrap);
  target.innerHTML = html;
  enhance(target, actions);
}

export function enhance(root: HTMLElement, actions: ContentActions): void {
  // Bare <pre> blocks (no wrapper) still get a Copy button.
  for (const pre of Array.from(root.querySelectorAll("pre"))) {
    if (!pre.closest(".codeblock")) {
      const wrap = el("div", { class: "codeblock", "data-action": "copy" });
      pre.replaceWith(wrap);
      wrap.append(pre);
    }
  }
  for (const block of Array.from(root.querySelectorAll<HTMLElement>(".codeblock"))) {
    if (block.querySelector(".codeblock-bar")) continue;
    const exec = block.dataset.action === "exec";
    const lang = block.dataset.lang ?? "";
    block.classList.toggle("exec", exec);
    splitLines(codeElement(block));
    const bar = el("div", { class: "codeblock-bar" }, el("span", { class: "codeblock-lang" }, lang || (exec ? "command" : "")));
    if (exec) {
      const run = el(
        "button",
        { type: "button", class: "btn btn-small btn-run", "aria-label": "Run this in the terminal" },
        stackedLabel("▶ Run", { sent: "✓ Sent" }),
      );
      run.addEventListener("click", () => {
        actions.run(codeText(block));
        flashButton(run, "sent", "Sent to the terminal");
      });
      bar.append(run);
    }
    const copy = el(
      "button",
      { type: "button", class: "btn btn-small btn-copy", "aria-label": "Copy to the clipboard" },
      stackedLabel("Copy", { copied: "✓ Copied", failed: "✗ Failed" }),
    );
    copy.addEventListener("click", () => {
      void copyText(codeText(block)).then((ok) => {
        flashButton(copy, ok ? "copied" : "failed", ok ? "Copied to the clipboard" : "Copying failed");
        if (ok) actions.copied();
      });
    });
    bar.append(copy);
    block.prepend(bar);
  }
  for (const code of Array.from(root.querySelectorAll<HTMLElement>("code"))) {
    if (!code.closest("pre") && (code.textContent ?? "").length <= NO_BREAK_CHARS) code.classList.add("nobreak");
  }
  for (const code of Array.from(root.querySelectorAll<HTMLElement>("code.inline-action"))) {
    if (code.parentElement?.classList.contains("inline-action")) continue;
    const exec = code.dataset.action === "exec";
    const text = code.textContent ?? "";
    const button = el("button", {
      type: "button",
      class: "inline-action",
      "data-action": exec ? "exec" : "copy",
      title: exec ? "Click to run this in the terminal" : "Click to copy",
      "aria-label": `${exec ? "Run in the terminal" : "Copy"}: ${text}`,
    }) as HTMLButtonElement;
    code.replaceWith(button);
    // The icon says what a click does (▶ runs, the two sheets copy); a ✓
    // and a small bubble take its place for a moment once done.
    button.append(
      code,
      el("span", { class: "ia-icons" }, icon(exec ? "play" : "copy", "icon ia-icon"), icon("check", "icon ia-done")),
      el("span", { class: "ia-bubble", "aria-hidden": "true" }, exec ? "Sent" : "Copied"),
    );
    button.addEventListener("click", () => {
      if (exec) {
        actions.run(text);
        flash(button, "Sent to the terminal");
      } else {
        void copyText(text).then((ok) => {
          if (!ok) {
            announce("Copying failed");
            return;
          }
          flash(button, "Copied to the clipboard");
          actions.copied();
        });
      }
    });
  }
  for (const table of Array.from(root.querySelectorAll("table"))) {
    if (table.parentElement?.classList.contains("table-scroll")) continue;
    const wrap = el("div", { class: "table-scroll" });
    table.replaceWith(wrap);
    wrap.append(table);
    tableScroll.observe(wrap);
  }
  for (const link of Array.from(root.querySelectorAll<HTMLAnchorElement>("a[href]"))) {
    if (link.origin !== window.location.origin) {
      link.target = "_blank";
      link.rel = "noopener noreferrer";
    }
  }
}

function flash(button: HTMLElement, spoken: string): void {
  button.classList.add("done");
  announce(spoken);
  window.clearTimeout(Number(button.dataset.timer ?? 0));
  button.dataset.timer = String(window.setTimeout(() => button.classList.remove("done"), 1600));
}
