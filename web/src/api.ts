// One way to call the backend: JSON in, JSON out, errors as ApiError.
//
// A 401 anywhere means this browser has no session: the app shows the
// access-token page. A network failure (the backend is gone) is a
// NetworkError: the app goes into its reconnecting state.

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
  constructor(private readonly listener: Listener) {}

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
      headers: { Accept: "application/json" },
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
