// A step's setup scripts on the page (contract 3.1; docs/authoring.md).
//
// The status carries the current step's setup: its background script
// (running, done, failed) and whether its foreground script still has to be
// typed. While the background script runs the page says "Setting up this
// step…" (checks wait for it on the backend); when it failed, the page says
// what happened, shows the end of its output and offers to run it again.
//
// The foreground script is typed by this page, once: when a terminal is open
// and the background script is not running (any more), it claims the script
// (POST .../setup/foreground); the backend gives it out only the first time,
// so a reload or a second tab never types it again. See ForegroundTyper.

import type { Api } from "./api";
import { el } from "./dom";
import type { SetupInfo, Status } from "./types";

export class SetupNotice {
  readonly node: HTMLElement;
  private shown = "";

  constructor(
    after: HTMLElement,
    private readonly retry: (step: string) => Promise<void>,
  ) {
    this.node = el("div", { id: "setup-note", class: "note", role: "status", "aria-live": "polite" });
    this.node.hidden = true;
    after.after(this.node);
  }

  render(setup: SetupInfo | null | undefined, phase: string | undefined): void {
    const state = phase === "ready" && setup ? setup.state : null;
    const key = state === "failed" ? `failed:${setup!.finished_at}` : String(state);
    if (key === this.shown) return;
    this.shown = key;
    this.node.dataset.state = state ?? "";
    if (state === "running") {
      this.node.className = "note note-info";
      this.node.replaceChildren(
        el("span", { class: "spinner", "aria-hidden": "true" }),
        el("span", {}, el("strong", {}, "Setting up this step…"), " Checks wait until it is ready; you can read on meanwhile."),
      );
      this.node.hidden = false;
    } else if (state === "failed" && setup) {
      this.node.className = "note note-error";
      const again = el("button", { type: "button", class: "btn btn-small" }, "Run the setup again") as HTMLButtonElement;
      again.addEventListener("click", () => {
        again.disabled = true;
        void this.retry(setup.step).finally(() => {
          again.disabled = false;
        });
      });
      const body = el(
        "div",
        { class: "setup-failed" },
        el("p", {}, el("strong", {}, "Setting up this step did not work. "), setup.message ?? ""),
      );
      if (setup.output) body.append(el("details", {}, el("summary", {}, "What it printed"), el("pre", {}, setup.output)));
      body.append(again);
      this.node.replaceChildren(body);
      this.node.hidden = false;
    } else {
      this.node.hidden = true;
      this.node.replaceChildren();
    }
  }
}

/** Types the current step's foreground script into the student's terminal, once. */
export class ForegroundTyper {
  private readonly claimed = new Set<string>();

  constructor(
    private readonly api: Api,
    private readonly terminalOpen: () => boolean,
    private readonly type: (text: string) => void,
  ) {}

  /** Call whenever the status or a terminal changes: types when everything is in place. */
  maybeType(status: Status | null, shownStep: string | undefined): void {
    const setup = status?.setup;
    if (!status || status.phase !== "ready" || !setup || setup.foreground !== "pending") return;
    // After the step is set up: what the foreground script uses is there by then.
    if (setup.state === "running") return;
    if (setup.step !== status.current_step || setup.step !== shownStep) return;
    if (!this.terminalOpen() || this.claimed.has(setup.step)) return;
    this.claimed.add(setup.step);
    const step = setup.step;
    this.api.post<{ step: string; script: string }>(`/api/v1/steps/${encodeURIComponent(step)}/setup/foreground`).then(
      (answer) => this.type(answer.script),
      () => undefined, // typed already (another tab, before a reload), or the step moved on: nothing to do
    );
  }
}
