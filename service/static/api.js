// The app's JSON API: one fetch wrapper, one error type, and the words people see for each error code.

export class ApiError extends Error {
  constructor(status, code, detail) {
    super(detail);
    this.status = status;
    this.code = code;
    this.detail = detail;
  }
}

// Paths are relative, so the page works when the service is mounted under a prefix.
export async function api(path, { method = "GET", json, signal } = {}) {
  const init = { method, credentials: "same-origin", signal, headers: { Accept: "application/json" } };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  }
  const response = await fetch(path, init);
  if (response.status === 204) return null;
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const error = body?.error ?? { code: "http_error", detail: `The server answered ${response.status}.` };
    throw new ApiError(response.status, error.code, error.detail);
  }
  return body;
}

const MESSAGES = {
  unsupported_type: "Refused: this is not an audio type Soundpost accepts.",
  extension_mismatch: "Refused: the file name's extension does not match its audio type.",
  file_too_large: "Refused: this file is too large.",
  body_too_large: "Refused: this file is too large.",
  not_audio: "Refused: the file's contents are not audio, so it was not kept.",
  not_signed_in: "Your session has ended. Sign in again, then retry.",
  validation_error: "Refused: the file's details are not valid.",
  cross_site_request: "Refused: the request did not come from this page.",
  upload_pending: "Still being checked: it can be played once that is done.",
  forbidden: "Refused: this upload does not exist any more, or is not yours.",
};

// A sentence for a person: ours for codes we know, the server's detail otherwise.
export function describe(error) {
  if (error instanceof ApiError) {
    const ours = MESSAGES[error.code];
    return ours ? `${ours} (${error.detail})` : error.detail;
  }
  return error.message || String(error);
}
