// The student page: instructions (step content, hints, Check results, step
// navigation) beside live terminals, kept in sync with the backend through
// /api/v1/events and brought back by itself when the backend goes away.
// See docs/ui.md.

import { adoptLoginKey, Api, ApiError, authHeaders, NetworkError } from "./api";
import { renderMarkdown } from "./content";
import { byId, el, icon } from "./dom";
import { FocusRules, revealWithin } from "./focus";
import { ForegroundTyper, SetupNotice } from "./setup";
import { setupSplit } from "./split";
import { TerminalManager, type TerminalList } from "./terminal";
import type { Hint, ProgressEntry, Status, StepDetail, ValidationResult, Workshop } from "./types";

const $ = {
  app: byId("app"),
  authPage: byId("auth-page"),
  title: byId("workshop-title"),
  progressText: byId("progress-text"),
  progressBar: byId("progress-bar"),
  stepsToggle: byId<HTMLButtonElement>("steps-toggle"),
  stepPanel: byId("step-panel"),
  stepList: byId("step-list"),
  banner: byId("banner"),
  bannerText: byId("banner-text"),
  diskBanner: byId("disk-banner"),
  layout: byId("layout"),
  scroll: byId("instructions-scroll"),
  kicker: byId("step-kicker"),
  stepTitle: byId("step-title"),
  transitionNote: byId("transition-note"),
  content: byId("step-content"),
  completion: byId("completion"),
  hints: byId("hints"),
  hintList: byId("hint-list"),
  hintButton: byId<HTMLButtonElement>("hint-button"),
  results: byId("results"),
  prev: byId<HTMLButtonElement>("prev"),
  check: byId<HTMLButtonElement>("check"),
  next: byId<HTMLButtonElement>("next"),
  divider: byId("divider"),
  termTabs: byId("term-tabs"),
  termNew: byId<HTMLButtonElement>("term-new"),
  termReader: byId<HTMLButtonElement>("term-reader"),
  termStack: byId("term-stack"),
  terminalPane: byId("terminal-pane"),
};

/** Narrow screens stack the instructions above the terminal (app.css). */
const narrow = window.matchMedia("(max-width: 820px)");

/** After Next into another image, the page asks for the new container this often ... */
const SWAP_POLL_MS = 250;
/** ... for this long (then the usual backoff). */
const SWAP_FAST_FOR_MS = 120_000;

class App {
  private readonly api = new Api({
    onUnauthorized: () => this.showAuthPage(),
    onNetworkError: () => this.lostBackend(),
  });
  private readonly terms = new TerminalManager($.termTabs, $.termStack, () => this.checkBackend(), {
    list: () => this.api.get<TerminalList>("/api/v1/terminals"),
    end: async (id) => {
      await this.api.request<unknown>("DELETE", `/api/v1/terminals/${encodeURIComponent(id)}`);
    },
  });
  private readonly focus = new FocusRules({
    terminalPane: $.terminalPane,
    focusTerminal: () => this.terms.focusActive(),
    stepTitle: $.stepTitle,
  });
  private readonly contentActions = { run: (text: string) => this.run(text), copied: () => this.focus.afterCopy() };
  private readonly setupNotice = new SetupNotice($.transitionNote, (step) => this.retrySetup(step));
  private readonly foreground = new ForegroundTyper(
    this.api,
    () => this.terms.active?.state === "open",
    (text) => this.terms.type(text),
  );
  private workshop: Workshop | null = null;
  private status: Status | null = null;
  private step: StepDetail | null = null;
  private loading: { id: string; done: Promise<void> } | null = null;
  private hintsShown = 0;
  private resultsShown = false;
  private busy = false;
  private offline = false;
  private authFailed = false;
  private events: EventSource | null = null;
  private probeAttempt = 0;
  private probeTimer: number | undefined;
  private bannerTimer: number | undefined;
  private reloadSeq = 0;
  /** The student's Previous/Next/jump is in flight: the step it brings is theirs (the focus follows). */
  private studentNavigating = false;
  private eventsAttempt = 0;
  /** The step a container swap is bringing (phase transitioning seen, not yet ready). */
  private movingTo: string | null = null;
  /** When that swap was first seen (Date.now()): the page polls fast for a while after it. */
  private movingSince = 0;
  private eventsTimer: number | undefined;
  /** Status events received so far: an answer older than the last of them is not applied. */
  private eventStatuses = 0;
  private eventsSeq = 0;
  /** A save refused for a full disk (507), made again by itself once there is room. */
  private afterDiskFull: (() => void) | null = null;
  private diskTimer: number | undefined;

  start(): void {
    adoptLoginKey();
    this.focus.install();
    this.terms.onTabAction = () => this.focus.terminalChosen();
    setupSplit($.layout, $.divider, narrow, () => this.terms.scheduleFit());
    narrow.addEventListener("change", () => this.terms.scheduleFit());
    $.prev.addEventListener("click", () => void this.navigate({ action: "previous" }));
    $.next.addEventListener("click", () => void this.navigate({ action: this.step?.next ? "next" : "complete" }));
    $.check.addEventListener("click", () => void this.runCheck());
    document.querySelector(".skip-link")?.addEventListener("click", (ev) => {
      ev.preventDefault(); // not a jump to #terminal-pane: into the shell itself
      this.focus.terminalChosen();
    });
    $.hintButton.addEventListener("click", () => void this.revealHint());
    $.stepsToggle.addEventListener("click", () => this.toggleSteps());
    document.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape" && !$.stepPanel.hidden) {
        this.toggleSteps(false);
        $.stepsToggle.focus();
      }
    });
    document.addEventListener("click", (ev) => {
      if (!$.stepPanel.hidden && ev.target instanceof Node && !$.stepPanel.contains(ev.target) && !$.stepsToggle.contains(ev.target)) {
        this.toggleSteps(false);
      }
    });
    $.termNew.addEventListener("click", () => {
      this.terms.add();
      $.termNew.disabled = !this.terms.canAdd;
      this.focus.terminalChosen();
    });
    const renderReader = (): void => {
      $.termReader.setAttribute("aria-pressed", String(this.terms.screenReader));
      $.termReader.title = `Screen reader mode for the terminal: ${this.terms.screenReader ? "on" : "off"}`;
    };
    $.termReader.addEventListener("click", () => {
      this.terms.setScreenReader(!this.terms.screenReader);
      renderReader();
    });
    $.termReader.replaceChildren(icon("reader"));
    renderReader();
    if (/Mac|iPhone|iPad/.test(navigator.platform)) {
      document.querySelector(".term-tip")!.textContent = "Copy: select, then ⌘C · Paste: ⌘V";
    }
    // A terminal that opens may be the one the step's foreground script waits for.
    this.terms.onStateChange = () => this.foreground.maybeType(this.status, this.step?.id);
    void this.terms.restore().then(() => this.renderButtons());
    this.renderButtons();
    void this.reload().then(
      () => this.openEvents(),
      () => this.lostBackend(), // not there yet, or not ready: retry until it is
    );
  }

  // ---- Loading ---------------------------------------------------------

  /** Fetch the workshop and status (and the current step if it changed). */
  private async reload(): Promise<void> {
    const seq = ++this.reloadSeq;
    const asked = this.eventStatuses;
    const [workshop, status] = await Promise.all([
      this.api.get<Workshop>("/api/v1/workshop"),
      this.api.get<Status>("/api/v1/status"),
    ]);
    if (seq !== this.reloadSeq) return;
    this.workshop = workshop;
    await this.applyAnswered(status, asked, false);
  }

  /**
   * A status that came back as the answer to a request sent when
   * `eventStatuses` was `asked`. The event stream carries every change in
   * order; an answer can arrive after events that are newer than it (a step's
   * setup script that fails at once reports before the move's answer is
   * back). So an answer is applied only if no status event came in since the
   * request left: otherwise the events are at least as new, and the page
   * already shows them.
   */
  private async applyAnswered(status: Status, asked: number, refetchWorkshop: boolean): Promise<void> {
    if (this.eventStatuses !== asked) {
      // Newer news came by the stream: finish rendering that instead (a step it is loading).
      await this.loading?.done.catch(() => undefined);
      return;
    }
    await this.applyStatus(status, refetchWorkshop);
  }

  private async refreshWorkshop(): Promise<void> {
    try {
      this.workshop = await this.api.get<Workshop>("/api/v1/workshop");
      this.renderHeader();
    } catch {
      // Offline handling is in Api's listener.
    }
  }

  private async applyStatus(status: Status, refetchWorkshop: boolean): Promise<void> {
    const before = this.status;
    this.status = status;
    if (status.phase === "transitioning") {
      if (this.movingTo === null) this.movingSince = Date.now();
      this.movingTo = status.target_step ?? status.current_step;
    } else if (status.phase === "ready" || status.phase === "completed") this.movingTo = null;
    if (
      refetchWorkshop &&
      (!before ||
        before.current_step !== status.current_step ||
        before.phase !== status.phase ||
        before.completed_steps.join() !== status.completed_steps.join())
    ) {
      void this.refreshWorkshop();
    }
    this.renderHeader();
    this.renderDisk(status.problems?.includes("disk_full") ?? false);
    if (status.current_step && status.current_step !== this.step?.id) {
      // One load per step: a status that arrives while that step is loading
      // waits for it, so the phase (a transition note...) never shows above
      // the previous step's title.
      if (this.loading?.id !== status.current_step) {
        const id = status.current_step;
        const done = this.loadStep(id).finally(() => {
          if (this.loading?.done === done) this.loading = null;
        });
        this.loading = { id, done };
      }
      await this.loading!.done;
      if (this.status !== status) return; // a newer status rendered itself meanwhile
    }
    this.renderPhase();
    this.renderButtons();
  }

  private async loadStep(id: string): Promise<void> {
    const step = await this.api.get<StepDetail>(`/api/v1/steps/${encodeURIComponent(id)}`);
    if (this.status && this.status.current_step !== id) return;
    const changed = this.step !== null;
    this.step = step;
    this.renderStep();
    // Decided now, not when the load started: the event stream often
    // announces the student's own move before the POST answers.
    if (changed) this.focus.stepChanged(this.studentNavigating);
    void this.restoreHints(step);
  }

  // ---- Rendering -------------------------------------------------------

  private renderHeader(): void {
    const w = this.workshop;
    const s = this.status;
    if (!w) return;
    $.title.textContent = w.title;
    const count = w.steps.length;
    const index = s ? s.step_index : 0;
    const done = s ? s.completed_steps.length : w.steps.filter((x) => x.status === "completed").length;
    $.progressText.textContent =
      s?.phase === "completed" ? `All ${count} steps done` : `Step ${index + 1} of ${count} · ${done} done`;
    $.progressBar.setAttribute("aria-valuemax", String(count));
    $.progressBar.setAttribute("aria-valuenow", String(done));
    $.progressBar.setAttribute("aria-valuetext", `${done} of ${count} steps completed`);
    $.progressBar.replaceChildren(
      ...w.steps.map((x) => {
        const completed = s ? s.completed_steps.includes(x.id) : x.status === "completed";
        const seg = el("span", { class: "seg", title: x.title });
        seg.classList.toggle("done", completed);
        seg.classList.toggle("current", s ? x.id === s.current_step && s.phase !== "completed" : x.status === "current");
        return seg;
      }),
    );
    $.stepList.replaceChildren(
      ...w.steps.map((x, i) => {
        const current = s ? x.id === s.current_step : x.status === "current";
        const completed = s ? s.completed_steps.includes(x.id) : x.status === "completed";
        const locked = x.status === "locked" && !current && !completed;
        const button = el("button", { type: "button", class: `step-item ${x.status}`, "data-step": x.id }) as HTMLButtonElement;
        button.classList.toggle("completed", completed);
        button.classList.toggle("current", current);
        if (current) button.setAttribute("aria-current", "step");
        button.disabled = locked;
        const state = current ? "You are here" : completed ? "Done" : locked ? "Locked" : "";
        // The name is the visible text plus what the marks show to the eye
        // ("Step 2: Files and folders, Done"), so speech control users can
        // say what they see.
        button.append(
          el("span", { class: "step-mark", "aria-hidden": "true" }, completed ? "✓" : locked ? icon("lock") : String(i + 1)),
          el("span", { class: "sr-only" }, `Step ${i + 1}: `),
          el("span", { class: "step-name" }, x.title),
        );
        if (state) button.append(el("span", { class: "step-state" }, el("span", { class: "sr-only" }, ", "), state));
        button.addEventListener("click", () => {
          this.toggleSteps(false);
          if (!current) void this.navigate({ action: "jump", step: x.id });
        });
        return el("li", {}, button);
      }),
    );
    if (this.step) document.title = `${this.step.title} · ${w.title}`;
  }

  private renderStep(): void {
    const step = this.step;
    if (!step) return;
    const count = this.workshop?.steps.length ?? this.status?.step_count ?? 0;
    $.kicker.textContent = count ? `Step ${step.position + 1} of ${count}` : "";
    $.stepTitle.textContent = step.title;
    renderMarkdown($.content, step.html, this.contentActions);
    // Most steps start with their own title as a heading: don't say it twice.
    const first = $.content.firstElementChild;
    if (first && /^H[12]$/.test(first.tagName) && first.textContent?.trim() === step.title.trim()) first.remove();
    this.hintsShown = 0;
    $.hintList.replaceChildren();
    this.renderHints();
    this.clearResults();
    if (this.workshop) document.title = `${step.title} · ${this.workshop.title}`;
    // A new step is read from its title (the old position landed a phone at its bottom).
    $.scroll.scrollTop = 0;
  }

  /** The backend is not ready for work: a container swap, or still starting. */
  private preparing(): boolean {
    const phase = this.status?.phase;
    return phase === "transitioning" || phase === "starting";
  }

  private renderPhase(): void {
    const phase = this.status?.phase;
    if (phase === "transitioning" || (phase === "starting" && this.movingTo)) {
      this.showNote(
        "Getting the environment for this step ready. This can take a few seconds; the page and the terminal reconnect by themselves.",
      );
    } else if (phase === "starting") {
      this.showNote("The workshop is starting up. This page continues by itself in a moment.");
    } else $.transitionNote.hidden = true;
    $.content.classList.toggle("preparing", this.preparing());
    this.setupNotice.render(this.status?.setup, phase);
    this.foreground.maybeType(this.status, this.step?.id);
    const completed = phase === "completed";
    $.completion.hidden = !completed;
    $.content.hidden = completed;
    $.kicker.hidden = completed;
    $.stepTitle.hidden = completed;
    if (completed) {
      $.hints.hidden = true;
      $.results.hidden = true;
      if (!$.completion.firstChild) {
        const review = el("button", { type: "button", class: "btn" }, "Review the steps");
        review.addEventListener("click", (ev) => {
          ev.stopPropagation();
          this.toggleSteps(true);
        });
        $.completion.append(
          el("p", { class: "big", "aria-hidden": "true" }, icon("check", "icon big-check")),
          el("h2", {}, "You finished the workshop!"),
          el("p", {}, `Well done: you completed all ${this.workshop?.steps.length ?? ""} steps of “${this.workshop?.title ?? "this workshop"}”.`),
          el("p", { class: "muted" }, "The terminal is still yours to explore. You can close this page whenever you like."),
          review,
        );
      }
      document.title = `Finished · ${this.workshop?.title ?? "Workshop"}`;
    } else {
      $.completion.replaceChildren();
      this.renderHints();
    }
  }

  private showNote(text: string): void {
    $.transitionNote.replaceChildren(el("span", { class: "spinner", "aria-hidden": "true" }), el("span", {}, text));
    $.transitionNote.hidden = false;
  }

  private renderButtons(): void {
    const step = this.step;
    const phase = this.status?.phase;
    const blocked = this.busy || this.offline || this.preparing() || !step;
    $.prev.disabled = blocked || !step?.previous;
    $.next.disabled = blocked || phase === "completed";
    $.next.textContent = step && !step.next ? "Finish" : "Next";
    $.next.hidden = phase === "completed";
    $.check.hidden = !step || step.validation.rules <= 0 || phase === "completed";
    if ($.check.getAttribute("aria-busy") !== "true") $.check.disabled = blocked;
    $.termNew.disabled = !this.terms.canAdd;
  }

  // ---- Hints -----------------------------------------------------------

  private renderHints(): void {
    const total = this.step?.hints ?? 0;
    $.hints.hidden = total === 0 || this.status?.phase === "completed";
    $.hintButton.hidden = this.hintsShown >= total;
    $.hintButton.replaceChildren(
      icon("bulb"),
      this.hintsShown === 0 ? `Stuck? Show a hint (1 of ${total})` : `Show the next hint (${this.hintsShown + 1} of ${total})`,
    );
  }

  private addHint(hint: Hint, position: number): HTMLElement {
    const body = el("div", { class: "markdown" });
    renderMarkdown(body, hint.html, this.contentActions);
    const node = el("div", { class: "hint" }, el("p", { class: "hint-label" }, `Hint ${position}`), body);
    $.hintList.append(node);
    return node;
  }

  private async revealHint(): Promise<void> {
    const step = this.step;
    if (!step || this.hintsShown >= step.hints) return;
    $.hintButton.disabled = true;
    try {
      // A POST: revealing is recorded in progress (a GET only shows a hint revealed before).
      const hint = await this.api.post<Hint>(`/api/v1/steps/${encodeURIComponent(step.id)}/hints/${this.hintsShown}`);
      if (this.step !== step) return;
      this.hintsShown++;
      const node = this.addHint(hint, this.hintsShown);
      this.renderHints();
      this.focus.hintRevealed(node, $.hintButton.hidden ? null : $.hintButton);
    } catch (err) {
      if (err instanceof ApiError && err.code === "disk_full") this.diskFull(() => void this.revealHint());
      else if (err instanceof ApiError) this.toast(err.message);
    } finally {
      $.hintButton.disabled = false;
    }
  }

  /** Show again the hints revealed before a reload. */
  private async restoreHints(step: StepDetail): Promise<void> {
    if (step.hints === 0) return;
    try {
      const progress = await this.api.get<{ steps: ProgressEntry[] }>("/api/v1/progress");
      const entry = progress.steps.find((x) => x.step === step.id);
      const count = Math.min(entry?.hints_revealed ?? 0, step.hints);
      for (let i = this.hintsShown; i < count; i++) {
        const hint = await this.api.get<Hint>(`/api/v1/steps/${encodeURIComponent(step.id)}/hints/${i}`);
        if (this.step !== step || this.hintsShown !== i) return;
        this.hintsShown++;
        this.addHint(hint, this.hintsShown);
      }
      this.renderHints();
    } catch {
      // Hints are a nicety: the button still works.
    }
  }

  // ---- Check and results ----------------------------------------------

  private async runCheck(): Promise<void> {
    const step = this.step;
    if (!step) return;
    $.check.disabled = true;
    $.check.setAttribute("aria-busy", "true");
    $.check.textContent = "Checking…";
    try {
      const result = await this.api.post<ValidationResult>(`/api/v1/steps/${encodeURIComponent(step.id)}/validation`);
      if (this.step === step) this.showResults(result, null, true);
      void this.refreshStatus();
    } catch (err) {
      if (err instanceof ApiError && err.code === "disk_full") this.diskFull(() => void this.runCheck());
      else if (err instanceof ApiError) this.showProblem(err.message);
    } finally {
      $.check.removeAttribute("aria-busy");
      $.check.textContent = "Check";
      this.renderButtons();
    }
  }

  private clearResults(): void {
    this.resultsShown = false;
    $.results.hidden = true;
    $.results.replaceChildren();
    $.results.className = "results";
  }

  private showProblem(message: string): void {
    this.resultsShown = false;
    $.results.className = "results failed";
    const close = el("button", { type: "button", class: "btn-icon results-close", "aria-label": "Hide this message" }, "×");
    close.addEventListener("click", () => this.clearResults());
    $.results.replaceChildren(el("p", { class: "results-head" }, message, close));
    $.results.hidden = false;
    this.revealResults();
  }

  /** Bring the results into view, with the hint button after them when there is room (help is near). */
  private revealResults(): void {
    revealWithin($.results, $.hints.hidden || $.hintButton.hidden ? null : $.hintButton);
  }

  /**
   * Show a check's result in the flow of the step, just after its text
   * ("Your task") and above the hints, so it covers nothing. ``reveal``
   * scrolls it into view (the student asked: Check, a refused Next); a
   * watched check updating in the background does not move the page.
   */
  private showResults(result: ValidationResult, intro: string | null, reveal: boolean): void {
    this.resultsShown = true;
    const failing = result.results.filter((r) => !r.passed).length;
    const total = result.results.length;
    $.results.className = `results ${result.passed ? "passed" : "failed"}`;
    const head = el(
      "h2",
      { class: "results-head" },
      result.passed
        ? "✓ All checks passed"
        : total === 1
          ? "Not done yet"
          : `Not done yet: ${failing} of ${total} checks still need work`,
    );
    const parts: HTMLElement[] = [head];
    const sub = result.passed
      ? this.step?.next
        ? "Well done! Press Next to continue."
        : "Well done! Press Finish to complete the workshop."
      : (intro ?? "Fix what is marked ✗ below, then press Check again.");
    parts.push(el("p", { class: "results-sub" }, sub));
    const list = el("ul", { class: "rule-list" });
    for (const r of result.results) {
      const item = el("li", { class: `rule ${r.passed ? "pass" : "fail"}`, "data-rule": r.id });
      item.append(
        el("span", { class: "rule-mark", "aria-hidden": "true" }, r.passed ? "✓" : "✗"),
        el(
          "p",
          { class: "rule-msg" },
          el("span", { class: "sr-only" }, r.passed ? "Passed: " : "Not yet: "),
          r.message || (r.passed ? `Check “${r.id}” passed` : `Check “${r.id}” is not satisfied yet`),
        ),
      );
      if (r.detail) {
        const details = el("details", {}, el("summary", {}, "Details"), el("pre", {}, r.detail));
        item.append(details);
      }
      list.append(item);
    }
    parts.push(list);
    const close = el("button", { type: "button", class: "btn-icon results-close", "aria-label": "Hide the check results" }, "×");
    close.addEventListener("click", () => this.clearResults());
    head.append(close);
    $.results.replaceChildren(...parts);
    $.results.hidden = false;
    if (reveal) this.revealResults();
  }

  private async refreshStatus(): Promise<void> {
    try {
      const asked = this.eventStatuses;
      await this.applyAnswered(await this.api.get<Status>("/api/v1/status"), asked, true);
    } catch {
      // Offline handling is in Api's listener.
    }
  }

  /** "Run the setup again" on a failed setup. */
  private async retrySetup(step: string): Promise<void> {
    try {
      await this.api.post(`/api/v1/steps/${encodeURIComponent(step)}/setup`);
      await this.refreshStatus();
    } catch (err) {
      if (err instanceof ApiError) this.toast(err.message);
    }
  }

  // ---- Navigation ------------------------------------------------------

  private async navigate(body: { action: string; step?: string }): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    this.studentNavigating = true;
    this.renderButtons();
    const button = body.action === "previous" ? $.prev : body.action === "jump" ? null : $.next;
    button?.setAttribute("aria-busy", "true");
    try {
      const asked = this.eventStatuses;
      const status = await this.api.post<Status>("/api/v1/navigation", body);
      this.busy = false;
      await this.applyAnswered(status, asked, true);
    } catch (err) {
      if (err instanceof ApiError) {
        const validation = err.body.validation as ValidationResult | undefined;
        if (err.code === "disk_full") this.diskFull(() => void this.navigate(body));
        else if (err.code === "step_not_completed" && validation) {
          this.showResults(validation, "Finish these first, then press Next again.", true);
        } else this.toast(err.message);
      }
    } finally {
      this.busy = false;
      this.studentNavigating = false;
      button?.removeAttribute("aria-busy");
      this.renderButtons();
    }
  }

  private toggleSteps(open?: boolean): void {
    const show = open ?? $.stepPanel.hidden;
    $.stepPanel.hidden = !show;
    $.stepsToggle.setAttribute("aria-expanded", String(show));
    if (show) $.stepList.querySelector<HTMLButtonElement>("[aria-current] , button:not(:disabled)")?.focus();
  }

  // ---- Terminal actions ------------------------------------------------

  private run(text: string): void {
    if (this.preparing()) {
      this.toast("The environment for this step is still being prepared; try again in a moment.");
      return;
    }
    this.terms.type(text);
    this.focus.afterRun();
  }

  // ---- Live updates and reconnection ----------------------------------

  private openEvents(): void {
    window.clearTimeout(this.eventsTimer);
    this.events?.close();
    this.events = null;
    // EventSource cannot send headers: the stream opens with a single-use ticket.
    const seq = ++this.eventsSeq;
    this.api.ticketed("/api/v1/events").then(
      (url) => {
        if (seq === this.eventsSeq && !this.offline && !this.authFailed) this.listen(url);
      },
      () => {
        // 401 and a lost backend are the Api listener's; anything else: try again later.
        if (seq === this.eventsSeq && !this.offline && !this.authFailed) void this.afterEventsError();
      },
    );
  }

  private listen(url: string): void {
    const events = new EventSource(url);
    this.events = events;
    const parse = (ev: MessageEvent): unknown => {
      try {
        return JSON.parse(String(ev.data));
      } catch {
        return null;
      }
    };
    events.addEventListener("status", (ev) => {
      const status = parse(ev as MessageEvent) as Status | null;
      if (!status || typeof status.phase !== "string") return;
      this.eventStatuses++;
      void this.applyStatus(status, true).catch(() => undefined);
    });
    events.addEventListener("validation", (ev) => {
      const result = parse(ev as MessageEvent) as ValidationResult | null;
      if (!result || !this.step || result.step !== this.step.id) return;
      // Watched checks: update results the student is looking at, and say so
      // when the step completes by itself.
      if (this.resultsShown || result.passed) this.showResults(result, null, false);
      if (result.passed) void this.refreshStatus();
    });
    events.addEventListener("terminal", () => {
      this.terms.reconnectAll();
    });
    events.onopen = () => {
      this.eventsAttempt = 0;
    };
    events.onerror = () => {
      if (this.events !== events) return;
      events.close();
      this.events = null;
      void this.afterEventsError();
    };
  }

  /**
   * The event stream broke. If the backend still (or again) answers, catch
   * up on what the stream may have missed and reopen it after a backoff;
   * otherwise the backend is gone: reconnect.
   */
  private async afterEventsError(): Promise<void> {
    if (this.offline || this.authFailed) return;
    let answers = false;
    try {
      const response = await fetch("/api/v1/status", {
        credentials: "same-origin",
        cache: "no-store",
        headers: authHeaders(),
      });
      if (response.status === 401) {
        this.showAuthPage();
        return;
      }
      answers = response.ok;
    } catch {
      answers = false;
    }
    if (!answers) {
      this.lostBackend();
      return;
    }
    try {
      await this.reload();
    } catch {
      return; // lostBackend() already took over
    }
    this.terms.reconnectAll();
    const delay = Math.min(1000 * 2 ** this.eventsAttempt, 15000);
    this.eventsAttempt++;
    window.clearTimeout(this.eventsTimer);
    this.eventsTimer = window.setTimeout(() => {
      if (!this.offline && !this.authFailed && !this.events) this.openEvents();
    }, delay);
  }

  /**
   * How long to wait before asking again whether the backend is back. While a
   * container swap is expected (the first 2 minutes after the page saw
   * `transitioning`), every ~250 ms, so that the next step is usable as soon
   * as its container is ready; otherwise the usual backoff from `base`.
   */
  private probeDelay(base: number, cap: number): number {
    const jitter = 0.8 + Math.random() * 0.4;
    if (this.movingTo !== null && Date.now() - this.movingSince < SWAP_FAST_FOR_MS) return SWAP_POLL_MS * jitter;
    return Math.min(base * 2 ** this.probeAttempt++, cap) * jitter;
  }

  /** A terminal dropped: if the backend itself is gone, show it. */
  private checkBackend(): void {
    if (this.offline || this.authFailed) return;
    void this.probe(false);
  }

  private lostBackend(): void {
    if (this.offline || this.authFailed) return;
    this.offline = true;
    this.events?.close();
    this.events = null;
    this.probeAttempt = 0;
    this.renderButtons();
    // Say nothing for a blip that the first probe fixes.
    window.clearTimeout(this.bannerTimer);
    this.bannerTimer = window.setTimeout(() => this.showOfflineBanner(), 700);
    window.clearTimeout(this.probeTimer);
    this.probeTimer = window.setTimeout(() => void this.probe(true), 150);
  }

  private showOfflineBanner(): void {
    if (!this.offline) return;
    $.bannerText.textContent =
      this.movingTo || this.status?.phase === "transitioning"
        ? "Preparing the environment for the next step… the page continues by itself."
        : "Lost the connection to the workshop. Reconnecting… (no need to reload the page)";
    $.banner.hidden = false;
  }

  private async probe(retry: boolean): Promise<void> {
    let status: Status;
    try {
      const response = await fetch("/api/v1/status", {
        credentials: "same-origin",
        cache: "no-store",
        headers: authHeaders(),
      });
      if (response.status === 401) {
        this.showAuthPage();
        return;
      }
      if (!response.ok) throw new NetworkError(String(response.status));
      status = (await response.json()) as Status;
    } catch {
      if (!retry) {
        this.lostBackend();
        return;
      }
      const delay = this.probeDelay(400, 5000);
      window.clearTimeout(this.probeTimer);
      this.probeTimer = window.setTimeout(() => void this.probe(true), delay);
      return;
    }
    if (!retry) return; // The backend answers: the terminal reconnects on its own.
    if (status.phase === "starting") {
      // A backend answers but is not ready yet (working copy, ttyd): wait.
      this.probeAttempt = Math.min(this.probeAttempt, 3);
      const delay = this.probeDelay(400, 3200);
      window.clearTimeout(this.probeTimer);
      this.probeTimer = window.setTimeout(() => void this.probe(true), delay);
      return;
    }
    // A backend answers again (the same one, or the next step's container).
    this.offline = false;
    window.clearTimeout(this.bannerTimer);
    $.banner.hidden = true;
    this.status = status;
    try {
      await this.reload();
    } catch (err) {
      if (err instanceof NetworkError) return;
    }
    this.openEvents();
    this.terms.reconnectAll();
    this.renderButtons();
  }

  // ---- A full disk ----------------------------------------------------

  /** A save was refused for lack of disk space: say what to do, and make it again once there is room. */
  private diskFull(retry: () => void): void {
    this.afterDiskFull = retry;
    this.renderDisk(true);
  }

  /** The banner while the disk is full; the status says when it is not (checked every few seconds too). */
  private renderDisk(full: boolean): void {
    window.clearTimeout(this.diskTimer);
    if (full) {
      $.diskBanner.hidden = false;
      this.diskTimer = window.setTimeout(() => void this.refreshStatus(), 5000);
      return;
    }
    if ($.diskBanner.hidden) return;
    $.diskBanner.hidden = true;
    const retry = this.afterDiskFull;
    this.afterDiskFull = null;
    if (retry) retry();
  }

  private showAuthPage(): void {
    if (this.authFailed) return;
    this.authFailed = true;
    this.events?.close();
    this.events = null;
    window.clearTimeout(this.probeTimer);
    this.terms.disposeAll();
    $.app.hidden = true;
    $.authPage.hidden = false;
    document.title = "Access token needed";
  }

  private toast(message: string): void {
    const node = el("div", { class: "toast", role: "alert" }, message);
    document.body.append(node);
    window.setTimeout(() => node.remove(), 6000);
  }
}

new App().start();
