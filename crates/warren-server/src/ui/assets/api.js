// The dashboard talks to Warren through its public API only, with the
// session cookie: what the pages can do, a script can do with a key.

/** An API error: the HTTP status and Warren's machine-readable code. */
export class ApiError extends Error {
  constructor(status, code, detail) {
    super(detail || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

/** Calls the API; answers the JSON body, or throws an ApiError. */
export async function api(path, { method = "GET", body, signal } = {}) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json" }, signal };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 401 && !path.startsWith("/api/login")) {
    // The session ended: sign in again and come back here.
    const here = window.location.pathname + window.location.search;
    window.location.assign(`/login?next=${encodeURIComponent(here)}`);
    throw new ApiError(401, "not_authenticated", "signed out");
  }
  if (response.status === 204) return null;
  const answer = await response.json().catch(() => null);
  if (!response.ok) {
    throw new ApiError(response.status, answer?.code ?? "error", answer?.detail ?? response.statusText);
  }
  return answer;
}

/** Runs a query of PostHog's query schema in a project. */
export function query(projectId, query, signal) {
  return api(`/api/projects/${projectId}/query/`, { method: "POST", body: { query }, signal });
}
