// Terminal tabs: one xterm.js Terminal each, attached to one of the
// workspace's terminals (a shell that outlives the page; docs/terminal.md).
//
// Protocol (ttyd, bridged by the backend at WS /terminal, plus sessions):
//   the URL asks for ?session=new, or ?session=ID&offset=N (N: bytes of
//     output this tab has shown) to come back to a terminal;
//   client -> server: first a JSON text {"AuthToken", "columns", "rows"}, then
//     binary frames "0"+input bytes, "1"+{"columns","rows"} (resize),
//     "S"+{"ping": n} (heartbeat, answered "S"+{"pong": n});
//   server -> client: first "S"+{"session", "number", "offset", "skipped"},
//     then what this tab missed, then binary frames "0"+output, "1"+title,
//     "2"+preferences.
// Close codes: 1000 shell exited 0, 4000 shell exited otherwise (offer a new
// shell); 4003 this terminal no longer exists (start a new one, saying so);
// 4005 too many terminals; 4001 unavailable, 4002 restarting, 1001 backend
// going away, 1013 try later and anything else (a dropped connection):
// reconnect to the same terminal with backoff.

import { Terminal, type ITheme } from "@xterm/xterm";
import { FitAddon } from "@xterm/addon-fit";
import { WebLinksAddon } from "@xterm/addon-web-links";
import { ticketed } from "./api";
import { copyText } from "./clipboard";
import { el } from "./dom";

const CMD_INPUT = 0x30; // "0"
const CMD_RESIZE = "1";
const CMD_SESSION = "S";
const OUT_OUTPUT = 0x30;
const OUT_TITLE = 0x31;
const OUT_SESSION = 0x53; // "S"

/** A page hears from its terminal at least this often (heartbeats), or it reconnects. */
const HEARTBEAT_MS = 10_000;
const SILENCE_MS = 25_000;
const ACTIVE_KEY = "workshop-terminal-active";

/** One of the workspace's terminals, as GET /api/v1/terminals lists it. */
export interface TerminalInfo {
  id: string;
  number: number;
  state: "attached" | "detached" | "ended";
}

export interface TerminalList {
  terminals: TerminalInfo[];
  limit: number;
}

/** What the tabs need of the backend's API. */
export interface TerminalBackend {
  list(): Promise<TerminalList>;
  end(id: string): Promise<void>;
}

/** The first message of a terminal that asked for sessions. */
interface Announcement {
  session: string;
  number: number;
  offset: number;
  skipped: number;
}

function kilobytes(bytes: number): string {
  return bytes < 1024 ? `${bytes} bytes` : `${Math.round(bytes / 1024).toLocaleString("en")} KB`;
}

function dimLine(text: string): string {
  return `\r\n\x1b[2m──── ${text} ────\x1b[0m\r\n`;
}


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
  /** The workspace terminal this tab shows (null: ask for a new one). */
  sessionId: string | null;
  /** Bytes of its output this tab has shown (null: none yet, show all the backend holds). */
  private offset: number | null;
  private readonly fit = new FitAddon();
  private ws: WebSocket | null = null;
  private opening = false;
  private attempt = 0;
  private retryTimer: number | undefined;
  private heartbeat: number | undefined;
  private lastHeard = 0;
  private pingSentAt: number | null = null;
  private pings = 0;
  private pending: Uint8Array[] = [];
  private overlay: HTMLElement | null = null;
  private note: HTMLElement | null = null;
  private everOpened = false;
  private lastSize = "";
  /** What the shell calls itself (ttyd's title frame: user@host: dir). */
  private shellTitle = "";

  constructor(
    readonly manager: TerminalManager,
    serial: number,
    public number: number,
    sessionId: string | null = null,
  ) {
    this.sessionId = sessionId;
    this.offset = sessionId === null ? 0 : null;
    const id = `term-${serial}`; // unique in the page (numbers may change hands)
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

  /** The backend numbers the workspace's terminals: take its number (the same after a reload). */
  private renumber(number: number): void {
    if (number === this.number || !Number.isInteger(number) || number < 1) return;
    this.number = number;
    const name = this.label.querySelector(".term-tab-name");
    if (name?.lastChild) name.lastChild.textContent = String(number);
    this.term.textarea?.setAttribute("aria-label", `${this.name}: type commands here`);
    this.renderTooltip();
    this.manager.onRenumbered();
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

  /** The terminal's WebSocket address: the one place it is built. The
   *  session parameters (session, offset) are ours; nothing else uses them. */
  private url(): string {
    const url = new URL("/terminal", window.location.href);
    url.protocol = window.location.protocol === "https:" ? "wss:" : "ws:";
    url.search = "";
    url.hash = "";
    if (this.sessionId === null) url.searchParams.set("session", "new");
    else {
      url.searchParams.set("session", this.sessionId);
      if (this.offset !== null) url.searchParams.set("offset", String(this.offset));
    }
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
      // ttyd's greeting; for a terminal that runs already the backend makes it a resize.
      ws.send(JSON.stringify({ AuthToken: "", columns: this.term.cols, rows: this.term.rows }));
      this.heard();
    };
    ws.onmessage = (ev: MessageEvent) => {
      if (this.ws !== ws) return;
      this.heard();
      const data = typeof ev.data === "string" ? encoder.encode(ev.data) : new Uint8Array(ev.data as ArrayBuffer);
      if (data.length === 0) return;
      if (data[0] === OUT_OUTPUT) {
        this.term.write(data.subarray(1));
        if (this.offset !== null) this.offset += data.length - 1;
      } else if (data[0] === OUT_SESSION) this.onSessionMessage(data.subarray(1));
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

  /** "S" + JSON from the backend: the announcement (we are attached), or a heartbeat's answer. */
  private onSessionMessage(payload: Uint8Array): void {
    let body: Partial<Announcement> & { pong?: unknown };
    try {
      body = JSON.parse(new TextDecoder().decode(payload)) as Partial<Announcement> & { pong?: unknown };
    } catch {
      return;
    }
    if (typeof body.session !== "string" || typeof body.offset !== "number") return;
    const asked = this.offset;
    this.sessionId = body.session;
    this.offset = body.offset;
    this.tab.dataset.session = body.session;
    if (typeof body.number === "number") this.renumber(body.number);
    if (body.skipped && body.skipped > 0) {
      // A line at the gap, and a note that stays in view (a long tail scrolls the line away).
      const what =
        asked === null ? `earlier output not kept (${kilobytes(body.skipped)})` : `${kilobytes(body.skipped)} of output skipped`;
      this.term.write(dimLine(what));
      this.tab.dataset.skipped = String(body.skipped);
      this.showNote(
        asked === null
          ? `Output skipped: only the last part of this terminal's output was kept (${kilobytes(body.skipped)} before it are not shown).`
          : `Output skipped: ${kilobytes(body.skipped)} of output came while you were away and is not shown; the rest follows.`,
      );
    }
    this.attached();
  }

  /** The backend has attached this tab to its terminal: open for typing. */
  private attached(): void {
    const ws = this.ws;
    if (!ws) return;
    this.everOpened = true;
    this.attempt = 0;
    this.setState("open");
    this.hideOverlay();
    this.manager.onAttached(this);
    const queued = this.pending;
    this.pending = [];
    for (const data of queued) ws.send(data);
    this.startHeartbeat();
  }

  private heard(): void {
    this.lastHeard = Date.now();
  }

  /** Pings the backend now and then; a connection whose ping stays unanswered (a laptop that
   *  slept, a network that went away without a word) is given up and the tab reconnects. */
  private startHeartbeat(): void {
    window.clearInterval(this.heartbeat);
    this.pingSentAt = null;
    this.heartbeat = window.setInterval(() => this.tick(), HEARTBEAT_MS);
  }

  private tick(): void {
    const ws = this.ws;
    if (!ws || this.state !== "open") return;
    if (this.pingSentAt !== null && this.lastHeard < this.pingSentAt) {
      // Still waiting for the last answer (timers of hidden tabs may run late: judge by the ping's age).
      if (Date.now() - this.pingSentAt > SILENCE_MS) this.giveUp(ws);
      return;
    }
    this.ping(ws);
  }

  private ping(ws: WebSocket): void {
    this.pingSentAt = Date.now();
    if (ws.readyState === WebSocket.OPEN) ws.send(encoder.encode(CMD_SESSION + JSON.stringify({ ping: ++this.pings })));
  }

  /** Ping now; if nothing comes back within ``wait`` ms, give the connection up. */
  probe(wait: number): void {
    const ws = this.ws;
    if (!ws || this.state !== "open") return;
    this.ping(ws);
    const sent = this.pingSentAt ?? Date.now();
    window.setTimeout(() => {
      if (this.ws === ws && this.lastHeard < sent) this.giveUp(ws);
    }, wait);
  }

  private giveUp(ws: WebSocket): void {
    ws.onclose = null;
    ws.onmessage = null;
    ws.close();
    if (this.ws === ws) this.ws = null;
    this.onClosed(1006, "no answer from the terminal");
  }

  private onClosed(code: number, reason: string): void {
    window.clearInterval(this.heartbeat);
    if (this.state === "closed") return;
    this.tab.dataset.closeCode = String(code); // for support and tests
    if (code === 1000 || code === 4000) {
      this.setState("exited");
      this.pending = [];
      this.showOverlay(
        code === 1000 ? "This terminal ended (exit 0)" : "This terminal ended with an error",
        code === 1000 ? "You typed exit, or the shell finished." : "The shell exited with a status other than 0.",
        { label: "Start a new shell", action: () => this.newShell() },
        false,
      );
      return;
    }
    if (code === 4003) {
      // The terminal is gone (expired, closed elsewhere, lost with a restart): a new one, saying so.
      this.term.write(dimLine(`${reason || "this terminal no longer exists"}: a new shell starts here`));
      this.sessionId = null;
      this.offset = 0;
      this.attempt = 0;
      this.connect();
      return;
    }
    if (code === 4005) {
      this.setState(this.everOpened ? "reconnecting" : "connecting");
      this.showOverlay(
        "Too many terminals are open",
        `${reason || "The workspace has all the terminals it may have."} Close one, then try again.`,
        { label: "Try again", action: () => this.connect() },
        false,
      );
      return;
    }
    if (code === 1013) this.attempt = Math.max(this.attempt, 2); // asked to slow down: not before 2 s
    const why =
      code === 4001
        ? "The terminal is not available yet."
        : code === 4002
          ? "The terminal is restarting."
          : code === 1001
            ? "The workshop environment is restarting."
            : "Your shell keeps running meanwhile.";
    this.scheduleReconnect(why);
    this.manager.onDropped();
  }

  /** Start a new shell in this tab (the old one ended): the ended terminal is let go. */
  private newShell(): void {
    const old = this.sessionId;
    this.sessionId = null;
    this.offset = 0;
    // Ended first, so that the new terminal may take its number.
    if (old !== null) void this.manager.endTerminal(old).then(() => this.connect());
    else this.connect();
  }

  private scheduleReconnect(why: string): void {
    this.setState(this.everOpened ? "reconnecting" : "connecting");
    const delay = Math.min(500 * 2 ** this.attempt, 8000) * (0.8 + Math.random() * 0.4);
    this.attempt++;
    if (this.everOpened) {
      this.showOverlay("Connection lost - reconnecting…", `${why} Trying again by itself — no need to do anything.`, null, true);
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
      this.hideOverlay();
      this.newShell();
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

  private showNote(text: string): void {
    this.note?.remove();
    const close = el("button", { type: "button", class: "btn-icon", "aria-label": "Hide this note" }, "×");
    const note = el("div", { class: "term-note", role: "status" }, el("p", {}, text), close);
    close.addEventListener("click", () => {
      note.remove();
      if (this.note === note) this.note = null;
      this.manager.focusActive();
    });
    this.note = note;
    this.panel.append(note);
  }

  private hideOverlay(): void {
    this.overlay?.remove();
    this.overlay = null;
  }

  /** Remove the tab; ``endShell``: the student closed it, so its shell ends too. */
  dispose(endShell: boolean): void {
    this.state = "closed";
    window.clearTimeout(this.retryTimer);
    window.clearInterval(this.heartbeat);
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close(1000, "tab closed");
    if (endShell && this.sessionId !== null) void this.manager.endTerminal(this.sessionId);
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
  private serial = 0;
  private fitFrame = 0;
  private readonly tip: HTMLElement | null;

  constructor(
    private readonly tabBar: HTMLElement,
    private readonly stack: HTMLElement,
    private readonly onDroppedCallback: () => void,
    private readonly backend: TerminalBackend,
    private maxTabs = 6,
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
    // Back from sleep, or the network is back: find out now whether the connections survived.
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") this.checkAlive();
    });
    window.addEventListener("online", () => this.checkAlive());
  }

  /** Open the workspace's terminals (a reload, another tab or device), in order, the
   *  active one active; a first visit gets one new terminal. */
  async restore(): Promise<void> {
    let list: TerminalList | null = null;
    try {
      list = await this.backend.list();
    } catch {
      list = null; // not there yet: a new terminal, which waits for the backend by itself
    }
    if (this.tabs.length > 0) return; // the student opened one meanwhile
    if (list) this.maxTabs = list.limit;
    const known = list?.terminals ?? [];
    if (known.length === 0) {
      this.add();
      return;
    }
    let wanted: string | null = null;
    try {
      wanted = window.sessionStorage.getItem(ACTIVE_KEY);
    } catch {
      wanted = null;
    }
    for (const info of known) this.add(info);
    this.activate(this.tabs.find((t) => t.sessionId === wanted) ?? this.tabs[0]);
  }

  add(existing?: TerminalInfo): TerminalTab | null {
    if (this.tabs.length >= this.maxTabs && !existing) return null;
    // The lowest free number, as the backend numbers terminals (it has the last word).
    const taken = new Set(this.tabs.map((t) => t.number));
    let number = existing ? existing.number : 1;
    while (!existing && taken.has(number)) number++;
    const tab = new TerminalTab(this, ++this.serial, number, existing ? existing.id : null);
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
    tab.dispose(true);
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
    this.rememberActive();
  }

  /** Tabs go away without ending their shells (the page is being replaced). */
  disposeAll(): void {
    for (const tab of [...this.tabs]) tab.dispose(false);
    this.tabs.length = 0;
  }

  endTerminal(id: string): Promise<void> {
    return this.backend.end(id).catch(() => undefined); // gone already, or the backend is: nothing to end
  }

  /** A tab took the backend's number for its terminal: close buttons say the new name. */
  onRenumbered(): void {
    for (const t of this.tabs) t.tab.querySelector(".term-tab-close")?.remove();
    this.renderTabs();
  }

  onAttached(tab: TerminalTab): void {
    if (tab === this.active) this.rememberActive();
  }

  private rememberActive(): void {
    const id = this.active?.sessionId;
    if (!id) return;
    try {
      window.sessionStorage.setItem(ACTIVE_KEY, id);
    } catch {
      // Storage refused (private mode): the first tab is active after a reload.
    }
  }

  private checkAlive(): void {
    for (const t of this.tabs) t.probe(4000);
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
          "aria-label": `Close ${t.name}`,
          title: `Close ${t.name}`,
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
