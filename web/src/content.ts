// Enhance the server's rendered markdown (already sanitized server side):
//   <div class="codeblock" data-action="exec|copy" data-lang="LANG">
//     <pre class="highlight"><code>...pygments spans...</code></pre></div>
//   <code class="inline-action" data-action="exec|copy">text</code>
// exec blocks get Run (types the code into the active terminal + Enter) and
// Copy; every block gets Copy. Inline actions become real buttons.

import { copyText } from "./clipboard";
import { el, flashButton, icon } from "./dom";

export interface ContentActions {
  run(text: string): void;
}

function codeText(block: Element): string {
  const code = block.querySelector("code") ?? block.querySelector("pre") ?? block;
  return (code.textContent ?? "").replace(/\n+$/, "");
}

export function renderMarkdown(target: HTMLElement, html: string, actions: ContentActions): void {
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
    const bar = el("div", { class: "codeblock-bar" }, el("span", { class: "codeblock-lang" }, lang || (exec ? "command" : "")));
    if (exec) {
      const run = el("button", { type: "button", class: "btn btn-small btn-run", "aria-label": "Run this in the terminal" }, "▶ Run");
      run.addEventListener("click", () => {
        actions.run(codeText(block));
        flashButton(run, "✓ Sent");
      });
      bar.append(run);
    }
    const copy = el("button", { type: "button", class: "btn btn-small btn-copy", "aria-label": "Copy to the clipboard" }, "Copy");
    copy.addEventListener("click", () => {
      void copyText(codeText(block)).then((ok) => flashButton(copy, ok ? "✓ Copied" : "Copy failed"));
    });
    bar.append(copy);
    block.prepend(bar);
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
    button.append(code, icon(exec ? "play" : "copy", "icon ia-icon"));
    button.addEventListener("click", () => {
      if (exec) {
        actions.run(text);
        flash(button);
      } else void copyText(text).then(() => flash(button));
    });
  }
  for (const link of Array.from(root.querySelectorAll<HTMLAnchorElement>("a[href]"))) {
    if (link.origin !== window.location.origin) {
      link.target = "_blank";
      link.rel = "noopener noreferrer";
    }
  }
}

function flash(button: HTMLElement): void {
  button.classList.add("done");
  window.setTimeout(() => button.classList.remove("done"), 1200);
}
