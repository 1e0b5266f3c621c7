// One way to call the backend: JSON in, JSON out, errors as ApiError.
//
// Credentials (docs/security.md): the login link's redirect carries the
// browser key in the fragment (#key=...); adoptLoginKey() moves it into
// localStorage (which only this origin, port included, can read) and out of
// the address bar. Every call sends it as `Authorization: Bearer`; cookies
// open nothing but the page itself, since browsers send them to every port
// of the host. The event stream and the terminal cannot send headers: they
// get a single-use ticket from POST /api/v1/tickets (ticketed()).
//
// A 401 anywhere means this browser has no session: the app shows the
// access-token page. A network failure (the backend is gone) is a
// NetworkError: the app goes into its reconnecting state.

const KEY_STORE = "workshop-backend.key";
let memoryKey: string | null = null; // where storage is refused (some private modes)

/** Take the browser key from the login redirect's fragment into storage, and out of the address bar. */
export function adoptLoginKey(): void {
  const match = /^#key=([A-Za-z0-9_-]{16,128})$/.exec(window.location.hash);
  if (!match) return;
  memoryKey = match[1];
  try {
    localStorage.setItem(KEY_STORE, match[1]);
  } catch {
    // Kept in memory for this page only.
  }
  history.replaceState(history.state, "", window.location.pathname + window.location.search);
}

function browserKey(): string | null {
  try {
    return localStorage.getItem(KEY_STORE) ?? memoryKey;
  } catch {
    return memoryKey;
  }
}

/** The headers that authenticate a call (none under --auth none or before a login). */
export function authHeaders(): Record<string, string> {
  const key = browserKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly body: Record<string, unknown>,
  ) {
    super(message);
  }
}

export class NetworkError extends Error {}

export type Listener = { onUnauthorized(): void; onNetworkError(): void };

export class Api {
  /** The page's Api: what ticketed() asks (the terminal has no Api of its own). */
  static current: Api | null = null;

  constructor(private readonly listener: Listener) {
    Api.current = this;
  }

  /** `url` with a fresh single-use ticket for the event stream or the terminal. */
  async ticketed(url: string): Promise<string> {
    const { ticket } = await this.post<{ ticket: string }>("/api/v1/tickets");
    const withTicket = new URL(url, window.location.href);
    withTicket.searchParams.set("ticket", ticket);
    return withTicket.toString();
  }

  get<T>(path: string): Promise<T> {
    return this.request<T>("GET", path);
  }

  post<T>(path: string, body?: unknown): Promise<T> {
    return this.request<T>("POST", path, body);
  }

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const init: RequestInit = {
      method,
      credentials: "same-origin",
      cache: "no-store",
      headers: { Accept: "application/json", ...authHeaders() },
    };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      (init.headers as Record<string, string>)["Content-Type"] = "application/json";
    }
    let response: Response;
    try {
      response = await fetch(path, init);
    } catch {
      this.listener.onNetworkError();
      throw new NetworkError(`${method} ${path}: the backend did not answer`);
    }
    let data: Record<string, unknown> = {};
    const text = await response.text().catch(() => "");
    if (text) {
      try {
        data = JSON.parse(text) as Record<string, unknown>;
      } catch {
        data = {};
      }
    }
    if (response.status === 401) this.listener.onUnauthorized();
    if (response.status === 502 || response.status === 503 || response.status === 504) {
      // A proxy in front answering for a backend that is not there (yet).
      this.listener.onNetworkError();
      throw new NetworkError(`${method} ${path}: ${response.status}`);
    }
    if (!response.ok) {
      const code = typeof data.error === "string" ? data.error : `http_${response.status}`;
      const message = typeof data.message === "string" ? data.message : `The backend answered ${response.status}.`;
      throw new ApiError(response.status, code, message, data);
    }
    return data as T;
  }
}

/** `url` with a fresh ticket, asked through the page's Api (so a 401 shows the token page). */
export function ticketed(url: string): Promise<string> {
  const api = Api.current ?? new Api({ onUnauthorized: () => undefined, onNetworkError: () => undefined });
  return api.ticketed(url);
}
