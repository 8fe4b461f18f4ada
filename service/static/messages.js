// What went wrong, in one plain sentence that says what to do; the server's code is kept apart, for support.

import { ApiError } from "./api.js";

// What an upload must be (GET /api/limits), once known: the sentences name the real types and sizes.
let limits = null;
export function knowLimits(value) { limits = value; }

const NAMES = { "audio/mpeg": "MP3", "audio/mp4": "M4A", "audio/aac": "AAC", "audio/wav": "WAV",
  "audio/webm": "WebM", "audio/ogg": "Ogg", "audio/opus": "Opus", "audio/flac": "FLAC" };

export function typeNames(accepted) {
  const names = accepted.map((a) => NAMES[a.type] ?? a.type);
  return names.length > 1 ? `${names.slice(0, -1).join(", ")} or ${names.at(-1)}` : names.join("");
}

export function humanSize(bytes) {
  const units = ["B", "KB", "MB", "GB"];
  let value = bytes, unit = 0;
  while (value >= 1000 && unit < units.length - 1) { value /= 1000; unit += 1; }
  return `${value.toFixed(unit && value < 10 ? 1 : 0)} ${units[unit]}`;
}

const typesWanted = () => (limits ? `an ${typeNames(limits.accepted)} file` : "an audio file");
const sizeLimit = () => (limits ? `the ${humanSize(limits.maxUploadBytes)} limit` : "the size limit");

const SENTENCES = {
  unsupported_type: () => `Soundpost does not take this kind of file: choose ${typesWanted()}.`,
  unsupported_media_type: () => `Soundpost does not take this kind of file: choose ${typesWanted()}.`,
  extension_mismatch: () => "The file's name ends in the wrong extension for its type: rename it and try again.",
  file_too_large: () => `This file is over ${sizeLimit()}: choose a smaller one.`,
  body_too_large: () => `This file is over ${sizeLimit()}: choose a smaller one.`,
  quota_exceeded: () => "Your uploads fill all the space you have: delete some, then try again.",
  not_audio: () => `This file does not hold audio Soundpost can play, so it was not kept: choose ${typesWanted()}.`,
  not_signed_in: () => "Your session has ended: sign in again, then retry.",
  too_many_pending_uploads: () => "Several of your uploads are still being checked: wait a moment, then retry.",
  rate_limited: () => "Too many requests at once: wait a moment, then retry.",
  cross_site_request: () => "The request did not come from this page: reload it and try again.",
  forbidden: () => "This upload no longer exists, or is not yours: reload the page.",
  not_found: () => "This upload no longer exists: reload the page.",
  upload_pending: () => "This upload is still being checked: it can be played once that is done.",
  validation_error: () => "The file's details could not be used: rename it and try again.",
};

// The microphone's refusals (getUserMedia's DOMException names), in words.
const DEVICE = {
  NotAllowedError: "Soundpost may not use the microphone: allow it in the browser's site settings, then press Record again.",
  NotFoundError: "No microphone was found: connect one, then press Record again.",
  NotReadableError: "The microphone is busy or failed: close other apps using it, then press Record again.",
};

// Codes for what the file is, not for a passing trouble: trying the same file again cannot help.
const REFUSALS = new Set([
  "unsupported_type", "unsupported_media_type", "extension_mismatch", "file_too_large", "body_too_large",
  "not_audio", "validation_error", "quota_exceeded",
]);

// { text, code, refused }: the sentence a person reads, the code support asks for, and whether retrying is pointless.
export function explain(error) {
  if (error instanceof ApiError) {
    const sentence = SENTENCES[error.code];
    let text = sentence ? sentence() : error.detail;
    if (!sentence && error.status >= 500) text = "Soundpost or its storage is having trouble: try again in a moment.";
    return { text, code: error.code, refused: REFUSALS.has(error.code) || error.status === 422 };
  }
  const device = DEVICE[error?.name];
  if (device) return { text: device, code: error.name, refused: false };
  if (error instanceof TypeError) {
    return { text: "The connection dropped: check that you are online, then retry.", code: "network", refused: false };
  }
  return { text: error?.message || String(error), code: null, refused: false };
}

export const plain = (error) => explain(error).text;
