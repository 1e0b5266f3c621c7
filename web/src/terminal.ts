// Terminal tabs: one xterm.js Terminal and one WebSocket (= one shell) each.
//
// Protocol (ttyd, bridged unchanged by the backend at WS /terminal):
//   client -> server: first a JSON text {"AuthToken", "columns", "rows"}, then
//     binary frames "0"+input bytes, "1"+{"columns","rows"} (resize).
//   server -> client: binary frames "0"+output, "1"+title, "2"+preferences.
// Close codes: 1000 shell exited 0, 4000 shell exited otherwise (offer a new
// shell); 4001 terminal unavailable, 4002 restarting, 1001 backend going away
// and anything else (a dropped connection): reconnect with backoff.

import { Terminal, type ITheme } from "@xterm/xterm";
import { FitAddon } from "@xterm/addon-fit";
import { WebLinksAddon } from "@xterm/addon-web-links";
import { ticketed } from "./api";
import { copyText } from "./clipboard";
import { el } from "./dom";

const CMD_INPUT = 0x30; // "0"
const CMD_RESIZE = "1";
const OUT_OUTPUT = 0x30;
const OUT_TITLE = 0x31;

const LIGHT: ITheme = {
  background: "#ffffff",
  foreground: "#1f2328",
  cursor: "#0969da",
  cursorAccent: "#ffffff",
  selectionBackground: "#b6d7ff",
  black: "#24292f",
  red: "#cf222e",
  green: "#116329",
  yellow: "#8a5a00",
  blue: "#0969da",
  magenta: "#8250df",
  cyan: "#1b7c83",
  white: "#6e7781",
  brightBlack: "#57606a",
  brightRed: "#a40e26",
  brightGreen: "#1a7f37",
  brightYellow: "#7d4e00",
  brightBlue: "#218bff",
  brightMagenta: "#a475f9",
  brightCyan: "#3192aa",
  brightWhite: "#8c959f",
};

const DARK: ITheme = {
  background: "#0d1117",
  foreground: "#e6edf3",
  cursor: "#4493f8",
  cursorAccent: "#0d1117",
  selectionBackground: "#264f78",
  black: "#484f58",
  red: "#ff7b72",
  green: "#3fb950",
  yellow: "#d29922",
  blue: "#58a6ff",
  magenta: "#bc8cff",
  cyan: "#39c5cf",
  white: "#b1bac4",
  brightBlack: "#6e7681",
  brightRed: "#ffa198",
  brightGreen: "#56d364",
  brightYellow: "#e3b341",
  brightBlue: "#79c0ff",
  brightMagenta: "#d2a8ff",
  brightCyan: "#56d4dd",
  brightWhite: "#ffffff",
};

const darkQuery = window.matchMedia("(prefers-color-scheme: dark)");
const theme = (): ITheme => (darkQuery.matches ? DARK : LIGHT);

export type TabState = "connecting" | "open" | "reconnecting" | "exited" | "closed";

/** How each state reads in the tab's tooltip (the dot's colour says it to those who see colours). */
const STATE_WORDS: Record<TabState, string> = {
  connecting: "starting",
  open: "connected",
  reconnecting: "reconnecting",
  exited: "shell ended",
  closed: "closed",
};

const SCREEN_READER_KEY = "workshop.screenReader";

const encoder = new TextEncoder();

function frame(command: number, payload: string): Uint8Array {
  const body = encoder.encode(payload);
  const out = new Uint8Array(body.length + 1);
  out[0] = command;
  out.set(body, 1);
  return out;
}

export class TerminalTab {
  readonly term: Terminal;
  readonly panel: HTMLElement;
  readonly tab: HTMLElement;
  readonly label: HTMLButtonElement;
  state: TabState = "connecting";
  private readonly fit = new FitAddon();
  private ws: WebSocket | null = null;
  private opening = false;
  private attempt = 0;
  private retryTimer: number | undefined;
  private pending: Uint8Array[] = [];
  private overlay: HTMLElement | null = null;
  private everOpened = false;
  private lastSize = "";
  /** What the shell calls itself (ttyd's title frame: user@host: dir). */
  private shellTitle = "";

  constructor(
    readonly manager: TerminalManager,
    readonly number: number,
  ) {
    const id = `term-${number}`;
    this.panel = el("div", {
      class: "term-panel",
      id: `${id}-panel`,
      role: "tabpanel",
      "aria-labelledby": `${id}-tab`,
    });
    this.label = el("button", {
      type: "button",
      class: "term-tab-label",
      id: `${id}-tab`,
      role: "tab",
      "aria-controls": `${id}-panel`,
    }) as HTMLButtonElement;
    this.label.append(
      el("span", { class: "term-status-dot", "aria-hidden": "true" }),
      // Crowded, the strip shows only the number: "Terminal" stays for screen readers.
      el("span", { class: "term-tab-name" }, el("span", { class: "term-tab-word" }, "Terminal "), String(number)),
    );
    this.tab = el("div", { class: "term-tab", "data-state": this.state });
    this.tab.append(this.label);
    this.renderTooltip();
    this.term = new Terminal({
      allowProposedApi: false,
      cursorBlink: true,
      fontFamily: 'ui-monospace, "SFMono-Regular", "SF Mono", Menlo, Consolas, "DejaVu Sans Mono", "Liberation Mono", monospace',
      fontSize: 14,
      lineHeight: 1.15,
      scrollback: 5000,
      theme: theme(),
      screenReaderMode: manager.screenReader,
    });
    this.term.loadAddon(this.fit);
    this.term.loadAddon(new WebLinksAddon((_event, uri) => window.open(uri, "_blank", "noopener,noreferrer")));
    this.term.attachCustomKeyEventHandler((ev) => this.onKey(ev));
    this.term.onData((data) => this.send(frame(CMD_INPUT, data)));
    this.term.onBinary((data) => {
      const bytes = new Uint8Array(data.length + 1);
      bytes[0] = CMD_INPUT;
      for (let i = 0; i < data.length; i++) bytes[i + 1] = data.charCodeAt(i) & 0xff;
      this.send(bytes);
    });
    this.term.onResize(({ cols, rows }) => this.sendResize(cols, rows));
    darkQuery.addEventListener("change", () => {
      this.term.options.theme = theme();
    });
  }

  get name(): string {
    return `Terminal ${this.number}`;
  }

  /** The full name, state and shell title: shown when the tab is too narrow for its name. */
  private renderTooltip(): void {
    this.label.title = `${this.name} (${STATE_WORDS[this.state]})${this.shellTitle ? `: ${this.shellTitle}` : ""}`;
  }

  /** Attach xterm to its panel (once the panel is in the document) and connect. */
  start(): void {
    this.term.open(this.panel);
    this.term.textarea?.setAttribute("aria-label", `${this.name}: type commands here`);
    this.fitNow();
    this.connect();
  }

  /** Copy/paste that work the way beginners expect. */
  private onKey(ev: KeyboardEvent): boolean {
    if (ev.type !== "keydown") return true;
    const key = ev.key.toLowerCase();
    const mod = ev.ctrlKey || ev.metaKey;
    if (mod && key === "c" && (ev.shiftKey || this.term.hasSelection())) {
      // Ctrl+Shift+C, or Ctrl+C with text selected: copy, don't interrupt.
      if (this.term.hasSelection()) {
        void copyText(this.term.getSelection());
        this.term.clearSelection();
      }
      ev.preventDefault();
      return false;
    }
    if (ev.key === "Tab" && ev.shiftKey && !mod && !ev.altKey) {
      // Tab belongs to the shell (completion); Shift+Tab leaves the terminal.
      return false;
    }
    if (mod && key === "v") {
      // Let the browser paste into xterm's textarea (xterm handles the paste event).
      return false;
    }
    return true;
  }

  fitNow(): void {
    if (this.panel.offsetWidth === 0 || this.panel.offsetHeight === 0) return;
    try {
      this.fit.fit();
    } catch {
      // Not yet laid out: the next resize fits it.
    }
  }

  private url(): string {
    const url = new URL("/terminal", window.location.href);
    url.protocol = window.location.protocol === "https:" ? "wss:" : "ws:";
    url.search = "";
    url.hash = "";
    return url.toString();
  }

  connect(): void {
    window.clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    if (this.ws || this.opening) return;
    this.setState(this.everOpened ? "reconnecting" : "connecting");
    // The handshake carries a single-use ticket (a WebSocket cannot send headers).
    this.opening = true;
    ticketed(this.url()).then(
      (url) => {
        this.opening = false;
        if (this.state !== "closed" && !this.ws) this.open(url);
      },
      () => {
        this.opening = false;
        if (this.state !== "closed") this.scheduleReconnect("The terminal could not be reached.");
      },
    );
  }

  private open(url: string): void {
    let ws: WebSocket;
    try {
      ws = new WebSocket(url, ["tty"]);
    } catch {
      this.scheduleReconnect("The terminal could not be reached.");
      return;
    }
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      this.fitNow();
      this.lastSize = `${this.term.cols}x${this.term.rows}`;
      ws.send(JSON.stringify({ AuthToken: "", columns: this.term.cols, rows: this.term.rows }));
      if (this.everOpened) {
        this.term.write("\r\n\x1b[2m──── connection restored: a fresh shell starts here ────\x1b[0m\r\n");
      }
      this.everOpened = true;
      this.attempt = 0;
      this.setState("open");
      this.hideOverlay();
      const queued = this.pending;
      this.pending = [];
      for (const data of queued) ws.send(data);
    };
    ws.onmessage = (ev: MessageEvent) => {
      if (this.ws !== ws) return;
      const data = typeof ev.data === "string" ? encoder.encode(ev.data) : new Uint8Array(ev.data as ArrayBuffer);
      if (data.length === 0) return;
      if (data[0] === OUT_OUTPUT) this.term.write(data.subarray(1));
      else if (data[0] === OUT_TITLE) {
        this.shellTitle = new TextDecoder().decode(data.subarray(1));
        this.renderTooltip();
      }
      // "2" (preferences) is ignored: the UI sets its own.
    };
    ws.onclose = (ev: CloseEvent) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.onClosed(ev.code, ev.reason);
    };
  }

  private onClosed(code: number, reason: string): void {
    if (this.state === "closed") return;
    this.tab.dataset.closeCode = String(code); // for support and tests
    if (code === 1000 || code === 4000) {
      this.setState("exited");
      this.pending = [];
      this.showOverlay(
        code === 1000 ? "This shell has ended." : "This shell stopped with an error.",
        code === 1000 ? "You typed exit, or the shell finished." : reason || "The shell exited with a non-zero status.",
        { label: "Start a new shell", action: () => this.connect() },
        false,
      );
      return;
    }
    const why =
      code === 4001
        ? "The terminal is not available yet."
        : code === 4002
          ? "The terminal is restarting."
          : code === 1001
            ? "The workshop environment is restarting."
            : "The connection to the terminal was lost.";
    this.scheduleReconnect(why);
    this.manager.onDropped();
  }

  private scheduleReconnect(why: string): void {
    this.setState(this.everOpened ? "reconnecting" : "connecting");
    const delay = Math.min(500 * 2 ** this.attempt, 8000) * (0.8 + Math.random() * 0.4);
    this.attempt++;
    if (this.everOpened) {
      this.showOverlay("Reconnecting…", `${why} Trying again by itself — no need to do anything.`, null, true);
    } else this.showOverlay("Starting the terminal…", "This takes a moment the first time.", null, true);
    this.retryTimer = window.setTimeout(() => this.connect(), delay);
  }

  /** The backend is known to be back: retry now instead of waiting. */
  reconnectNow(): void {
    if (this.state === "reconnecting" || this.state === "connecting") {
      if (!this.ws) {
        this.attempt = 0;
        this.connect();
      }
    }
  }

  private send(data: Uint8Array): void {
    if (this.ws && this.ws.readyState === WebSocket.OPEN && this.state === "open") this.ws.send(data);
  }

  private sendResize(cols: number, rows: number): void {
    const size = `${cols}x${rows}`;
    if (size === this.lastSize) return;
    this.lastSize = size;
    if (this.ws && this.ws.readyState === WebSocket.OPEN && this.state === "open") {
      this.ws.send(encoder.encode(CMD_RESIZE + JSON.stringify({ columns: cols, rows })));
    }
  }

  /** Type text into the shell as if the student had typed it, then Enter. */
  type(text: string): void {
    const lines = text.replace(/\r\n?/g, "\n").replace(/\n+$/, "");
    const data = frame(CMD_INPUT, lines.replace(/\n/g, "\r") + "\r");
    if (this.state === "open") this.send(data);
    else if (this.state === "exited") {
      this.pending.push(data);
      this.connect();
    } else this.pending.push(data);
    this.panel.classList.remove("flash");
    void this.panel.offsetWidth;
    this.panel.classList.add("flash");
  }

  private setState(state: TabState): void {
    this.state = state;
    this.tab.dataset.state = state;
    this.renderTooltip();
    this.manager.onStateChange();
  }

  private showOverlay(title: string, text: string, button: { label: string; action: () => void } | null, busy: boolean): void {
    this.hideOverlay();
    const card = el("div", { class: "term-overlay-card", role: "status" });
    const head = el("p", { class: "term-overlay-title" });
    if (busy) head.append(el("span", { class: "spinner", "aria-hidden": "true" }));
    head.append(title);
    card.append(head, el("p", { class: "muted" }, text));
    if (button) {
      const b = el("button", { type: "button", class: "btn btn-primary" }, button.label);
      b.addEventListener("click", () => {
        this.hideOverlay();
        button.action();
        this.manager.onTabAction();
      });
      card.append(b);
    }
    this.overlay = el("div", { class: "term-overlay" });
    this.overlay.append(card);
    this.panel.append(this.overlay);
  }

  private hideOverlay(): void {
    this.overlay?.remove();
    this.overlay = null;
  }

  dispose(): void {
    this.state = "closed";
    window.clearTimeout(this.retryTimer);
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close(1000, "tab closed");
    this.term.dispose();
    this.panel.remove();
    this.tab.remove();
  }
}

export class TerminalManager {
  readonly tabs: TerminalTab[] = [];
  active: TerminalTab | null = null;
  /** The student opened, switched, closed or restarted a terminal (the page's focus rules act on it). */
  onTabAction: () => void = () => undefined;
  /** xterm.js's screen reader support (an accessibility tree of the rows), remembered per browser. */
  screenReader = false;
  private counter = 0;
  private fitFrame = 0;
  private readonly tip: HTMLElement | null;

  constructor(
    private readonly tabBar: HTMLElement,
    private readonly stack: HTMLElement,
    private readonly onDroppedCallback: () => void,
    private readonly maxTabs = 6,
  ) {
    this.tip = tabBar.parentElement?.querySelector<HTMLElement>(".term-tip") ?? null;
    try {
      this.screenReader = localStorage.getItem(SCREEN_READER_KEY) === "on";
    } catch {
      // Storage refused (private mode): off.
    }
    new ResizeObserver(() => {
      this.scheduleFit();
      this.layoutBar();
    }).observe(stack);
    tabBar.addEventListener("keydown", (ev) => this.onTabKey(ev));
    // The strip scrolls sideways when the tabs do not fit: let the mouse
    // wheel do that (a scrollbar in a 40 px bar is more hindrance than help).
    tabBar.addEventListener(
      "wheel",
      (ev) => {
        if (tabBar.scrollWidth <= tabBar.clientWidth || Math.abs(ev.deltaX) >= Math.abs(ev.deltaY)) return;
        tabBar.scrollLeft += ev.deltaY;
        ev.preventDefault();
      },
      { passive: false },
    );
    tabBar.addEventListener("scroll", () => this.markEdges(), { passive: true });
  }

  add(): TerminalTab | null {
    if (this.tabs.length >= this.maxTabs) return null;
    const tab = new TerminalTab(this, ++this.counter);
    this.tabs.push(tab);
    tab.label.addEventListener("click", () => {
      this.activate(tab);
      this.onTabAction();
    });
    this.tabBar.append(tab.tab);
    this.stack.append(tab.panel);
    this.activate(tab);
    tab.start();
    this.renderTabs();
    return tab;
  }

  close(tab: TerminalTab): void {
    const index = this.tabs.indexOf(tab);
    if (index < 0 || this.tabs.length === 1) return;
    this.tabs.splice(index, 1);
    tab.dispose();
    if (this.active === tab) this.activate(this.tabs[Math.max(0, index - 1)]);
    this.renderTabs();
    this.onTabAction();
  }

  activate(tab: TerminalTab): void {
    this.active = tab;
    for (const t of this.tabs) {
      const on = t === tab;
      t.panel.hidden = !on;
      t.tab.dataset.active = String(on);
      t.label.setAttribute("aria-selected", String(on));
      t.label.tabIndex = on ? 0 : -1;
    }
    this.scheduleFit();
    this.layoutBar();
  }

  /** Focus the active terminal's input; false if there is none. */
  focusActive(): boolean {
    if (!this.active || this.active.state === "closed") return false;
    this.active.term.focus();
    return true;
  }

  /** Turn xterm.js's screen reader mode on or off in every terminal (and remember it). */
  setScreenReader(on: boolean): void {
    this.screenReader = on;
    for (const t of this.tabs) t.term.options.screenReaderMode = on;
    try {
      localStorage.setItem(SCREEN_READER_KEY, on ? "on" : "off");
    } catch {
      // Not remembered: it still applies to this page.
    }
  }

  /**
   * Fit the tab strip: the copy/paste tip gives way first, then the tabs
   * show only their numbers (the full name and state in their tooltips),
   * then the strip scrolls; the active tab is always scrolled into view.
   * ("Termina", cut off mid-word with the active tab out of sight, was what
   * four tabs looked like.)
   */
  private layoutBar(): void {
    const bar = this.tabBar;
    const crowded = (): boolean =>
      bar.scrollWidth > bar.clientWidth ||
      this.tabs.some((t) => {
        const name = t.label.querySelector<HTMLElement>(".term-tab-name");
        return name !== null && name.scrollWidth > name.clientWidth;
      });
    bar.classList.remove("compact");
    if (this.tip) this.tip.hidden = false;
    if (crowded() && this.tip) this.tip.hidden = true;
    if (crowded()) bar.classList.add("compact");
    const tab = this.active?.tab;
    if (tab && bar.scrollWidth > bar.clientWidth) {
      const left = tab.offsetLeft; // the strip is the tabs' offsetParent (position: relative)
      if (left < bar.scrollLeft) bar.scrollLeft = left;
      else if (left + tab.offsetWidth > bar.scrollLeft + bar.clientWidth) {
        bar.scrollLeft = left + tab.offsetWidth - bar.clientWidth;
      }
    }
    this.markEdges();
  }

  /** Fade the strip's edges where more tabs hide. */
  private markEdges(): void {
    const bar = this.tabBar;
    bar.classList.toggle("more-left", bar.scrollLeft > 1);
    bar.classList.toggle("more-right", bar.scrollLeft + bar.clientWidth < bar.scrollWidth - 1);
  }

  private renderTabs(): void {
    for (const t of this.tabs) {
      let close = t.tab.querySelector<HTMLButtonElement>(".term-tab-close");
      if (this.tabs.length > 1 && !close) {
        close = el("button", {
          type: "button",
          class: "btn-icon term-tab-close",
          "aria-label": `Close Terminal ${t.number}`,
          title: `Close Terminal ${t.number}`,
        }, "×") as HTMLButtonElement;
        close.addEventListener("click", () => this.close(t));
        t.tab.append(close);
      } else if (this.tabs.length === 1 && close) close.remove();
    }
    this.layoutBar();
  }

  private onTabKey(ev: KeyboardEvent): void {
    if (ev.key !== "ArrowLeft" && ev.key !== "ArrowRight") return;
    if (!(ev.target instanceof HTMLElement) || ev.target.getAttribute("role") !== "tab" || !this.active) return;
    const i = this.tabs.indexOf(this.active);
    const next = this.tabs[(i + (ev.key === "ArrowRight" ? 1 : this.tabs.length - 1)) % this.tabs.length];
    this.activate(next);
    next.label.focus();
    ev.preventDefault();
  }

  scheduleFit(): void {
    cancelAnimationFrame(this.fitFrame);
    this.fitFrame = requestAnimationFrame(() => this.active?.fitNow());
  }

  /** Type into the active terminal (Run buttons). */
  type(text: string): void {
    (this.active ?? this.add())?.type(text);
  }

  reconnectAll(): void {
    for (const t of this.tabs) t.reconnectNow();
  }

  onDropped(): void {
    this.onDroppedCallback();
  }

  onStateChange(): void {
    // Hook for the page (e.g. tests read data-state on the tab).
  }

  get canAdd(): boolean {
    return this.tabs.length < this.maxTabs;
  }
}

export { copyText };
