// The gateway's API on the console's own origin: Hosting rewrites /api/<function> to each function. The only
// credential any request carries is the signed-in user's Firebase ID token.

export class ApiError extends Error {
  constructor(status, error) {
    super(error?.message || `HTTP ${status}`);
    this.status = status;
    this.code = error?.code || "http_error";
    this.param = error?.param || null;
    this.requestId = error?.request_id || null;
  }
}

export function makeApi(auth) {
  return async function api(path, { method = "GET", body, query, headers = {} } = {}) {
    const user = auth.currentUser;
    if (!user) throw new ApiError(401, { code: "signed_out", message: "Sign in first." });
    const url = new URL(`/api/${path}`, location.origin);
    for (const [name, value] of Object.entries(query || {})) {
      if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
    }
    const request = { method, headers: { Authorization: `Bearer ${await user.getIdToken()}`, ...headers } };
    if (body !== undefined) {
      request.headers["Content-Type"] = "application/json";
      request.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(url, request);
    } catch {
      throw new ApiError(0, { code: "network_error", message: "The gateway could not be reached. Try again." });
    }
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    if (!response.ok) throw new ApiError(response.status, data?.error);
    return data;
  };
}

/** What to tell a person about a failed call: the gateway's own message, and its request id for support. */
export function describeError(error) {
  if (!(error instanceof ApiError)) return String(error?.message || error);
  return error.requestId ? `${error.message} (request ${error.requestId})` : error.message;
}
