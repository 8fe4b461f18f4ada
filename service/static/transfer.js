// Moving bytes to S3: a presigned POST (or PUT, on stores without POST uploads) for small files, a multipart upload (several parts in
// flight, resumed after a network drop or a reload) for large ones. The app only signs; bytes go straight to S3.

import { api } from "./api.js";

const MiB = 1024 * 1024;
export const MULTIPART_THRESHOLD = 10 * MiB;
export const PART_SIZE = 5 * MiB; // S3's smallest part (except the last), if the server does not say
export const PARTS_IN_FLIGHT = 3;
const ATTEMPTS = 6;

export class NetworkError extends Error {}

// One XHR (fetch has no upload progress). Rejects with NetworkError or an AbortError DOMException.
function send(method, url, body, { signal, onProgress, headers = {} }) {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const xhr = new XMLHttpRequest();
    const abort = () => xhr.abort();
    signal.addEventListener("abort", abort, { once: true });
    const done = (fn, value) => { signal.removeEventListener("abort", abort); fn(value); };
    xhr.open(method, url);
    // Content-Length is the browser's to set (from the body); every other signed header is ours.
    for (const [name, value] of Object.entries(headers)) {
      if (name.toLowerCase() !== "content-length") xhr.setRequestHeader(name, value);
    }
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.onload = () => done(resolve, xhr);
    xhr.onerror = () => done(reject, new NetworkError("The connection to storage dropped."));
    xhr.onabort = () => done(reject, signal.reason ?? new DOMException("Cancelled", "AbortError"));
    xhr.send(body);
  });
}

function storageRefused(xhr) {
  const code = xhr.responseXML?.querySelector("Code")?.textContent;
  return new Error(`Storage refused the upload (${xhr.status}${code ? ` ${code}` : ""}).`);
}

const sleep = (ms, signal) => new Promise((resolve, reject) => {
  const timer = setTimeout(resolve, ms);
  signal.addEventListener("abort", () => { clearTimeout(timer); reject(signal.reason); }, { once: true });
});

// Wait until the browser says it is online again, then back off a little more each attempt.
async function waitToRetry(attempt, signal) {
  if (!navigator.onLine) {
    await new Promise((resolve) => window.addEventListener("online", resolve, { once: true }));
  }
  await sleep(Math.min(250 * 2 ** attempt, 8000), signal);
}

export async function withRetries(step, signal) {
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await step(attempt);
    } catch (error) {
      if (!(error instanceof NetworkError) || attempt + 1 >= ATTEMPTS) throw error;
      await waitToRetry(attempt, signal);
    }
  }
}

// Base64 of the SHA-256 of a blob (small files only: it is read whole), or null where WebCrypto is
// unavailable (a page served over plain http from another host than localhost).
export async function sha256Base64(blob) {
  if (!globalThis.crypto?.subtle) return null;
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", await blob.arrayBuffer()));
  return btoa(String.fromCharCode(...digest));
}

async function uploadByPost(file, contentType, { signal, onProgress }) {
  const checksumSha256 = await sha256Base64(file);
  const presigned = await api("api/upload/presigned-url", {
    method: "POST", signal,
    json: { filename: file.name, contentType, size: file.size, ...(checksumSha256 && { checksumSha256 }) },
  });
  let body = file;
  if (presigned.method !== "PUT") {
    body = new FormData();
    for (const [name, value] of Object.entries(presigned.fields)) body.append(name, value);
    body.append("file", file); // S3 ignores every field after the file
  }
  const options = { signal, headers: presigned.headers, onProgress: (f) => onProgress(f * file.size) };
  const xhr = await withRetries(() => send(presigned.method ?? "POST", presigned.url, body, options), signal);
  if (xhr.status !== (presigned.method === "PUT" ? 200 : 201)) throw storageRefused(xhr);
  onProgress(file.size);
  return presigned.key;
}

// ---- multipart primitives, shared with live recordings (live.js) ----------------------------

// Where one multipart upload's routes are; every route needs the key the server gave. `checksumAlgorithm`
// is what the upload was created with: "SHA256" means every part is sent and completed with its SHA-256.
export function multipart(uploadId, key, checksumAlgorithm = null) {
  return {
    base: `s3/multipart/${encodeURIComponent(uploadId)}`, query: `key=${encodeURIComponent(key)}`,
    checksums: checksumAlgorithm === "SHA256",
  };
}

// Start a multipart upload, asking for SHA-256 part checksums where WebCrypto can compute them. The
// answer says the part size, the largest upload the server allows, and whether it took the checksums.
export async function createMultipart(filename, contentType, size, signal) {
  const metadata = size == null ? {} : { size: String(size) };
  if (globalThis.crypto?.subtle) metadata.checksumAlgorithm = "SHA256";
  const created = await api("s3/multipart", { method: "POST", signal, json: { filename, type: contentType, metadata } });
  return {
    ...created, partSize: created.partSize ?? PART_SIZE, maxBytes: created.maxBytes ?? null,
    checksumAlgorithm: created.checksumAlgorithm ?? null,
  };
}

// A part's SHA-256 (base64) when its upload checks them, else null. Parts are ~5 MiB: read whole.
export function partChecksum(mp, blob) {
  return mp.checksums ? sha256Base64(blob) : Promise.resolve(null);
}

// The parts S3 has: [{ PartNumber, ETag, Size }].
export function listParts(mp, signal) {
  return api(`${mp.base}?${mp.query}`, { signal });
}

// Sign and PUT one part with its SHA-256 when the upload checks them (`checksum`, if already known,
// else computed), sending the headers the signature names (the store may not take checksums); resolves
// to { etag, checksum }. Network drops are retried by the caller.
export async function putPart(mp, n, blob, { signal, onProgress = () => {}, checksum = null }) {
  const sha256 = checksum ?? await partChecksum(mp, blob);
  const pinned = sha256 ? `&checksumSha256=${encodeURIComponent(sha256)}` : "";
  const { url, headers = {} } = await api(`${mp.base}/${n}?${mp.query}${pinned}`, { signal });
  const xhr = await send("PUT", url, blob, { signal, headers, onProgress: (f) => onProgress(f * blob.size) });
  if (xhr.status !== 200) throw storageRefused(xhr);
  const etag = xhr.getResponseHeader("ETag");
  if (!etag) throw new Error("Storage hid the part's ETag: the bucket's CORS rule must expose ETag.");
  return { etag, checksum: sha256 };
}

// A part, tried again after each network drop (up to ATTEMPTS times).
export function putPartWithRetries(mp, n, blob, options) {
  return withRetries(() => putPart(mp, n, blob, options), options.signal);
}

// Assemble the parts (a map or list of [number, { etag, checksum }]) into the object, each with its
// SHA-256 where it has one.
export function completeMultipart(mp, sent, signal) {
  const parts = [...sent].sort(([a], [b]) => a - b).map(([PartNumber, { etag, checksum }]) => (
    checksum ? { PartNumber, ETag: etag, ChecksumSHA256: checksum } : { PartNumber, ETag: etag }));
  return withRetries(() => api(`${mp.base}/complete?${mp.query}`, { method: "POST", signal, json: { parts } })
    .catch((e) => { throw e instanceof TypeError ? new NetworkError(e.message) : e; }), signal);
}

// Abandoned parts cost storage until the upload is aborted.
export function abortMultipart(mp) {
  return api(`${mp.base}?${mp.query}`, { method: "DELETE" });
}

// Upload a file in parts. `resumeFrom` (a stored { key, uploadId, partSize }) continues an upload a
// reload interrupted; `onCreated` hears about a new one before its first part, so it can be stored.
async function uploadByParts(file, contentType, { signal, onProgress, resumeFrom, onCreated }) {
  const created = resumeFrom ?? await createMultipart(file.name, contentType, file.size, signal);
  const { key, uploadId, partSize } = created;
  if (!resumeFrom) await onCreated?.(created);
  const mp = multipart(uploadId, key, created.checksumAlgorithm);
  const count = Math.max(1, Math.ceil(file.size / partSize));
  const sizeOf = (n) => Math.min(partSize, file.size - (n - 1) * partSize);
  const sliceOf = (n) => file.slice((n - 1) * partSize, (n - 1) * partSize + sizeOf(n));
  const etags = new Map();   // part number -> { etag, checksum }, for parts S3 has
  const sent = new Map();    // part number -> bytes sent so far
  const report = () => onProgress([...sent.values()].reduce((a, b) => a + b, 0));

  // After a drop or a reload, ask S3 which parts it already has, so only the missing ones are sent.
  let resync = null;
  const resume = () => (resync ??= (async () => {
    for (const part of await listParts(mp, signal)) {
      if (part.Size === sizeOf(part.PartNumber) && !etags.has(part.PartNumber)) {
        // A part sent before a reload: its checksum is of the file's bytes, so promotion still checks it.
        const checksum = await partChecksum(mp, sliceOf(part.PartNumber));
        etags.set(part.PartNumber, { etag: part.ETag, checksum });
        sent.set(part.PartNumber, part.Size);
      }
    }
    report();
  })().finally(() => { resync = null; }));

  async function sendPart(n) {
    await withRetries(async (attempt) => {
      if (attempt > 0) await resume();
      if (etags.has(n)) return;
      const blob = sliceOf(n);
      const part = await putPart(mp, n, blob, { signal, onProgress: (bytes) => { sent.set(n, bytes); report(); } });
      etags.set(n, part);
      sent.set(n, blob.size);
      report();
    }, signal);
  }

  try {
    if (resumeFrom) await resume();
    const queue = Array.from({ length: count }, (_, i) => i + 1).filter((n) => !etags.has(n));
    const worker = async () => { while (queue.length) await sendPart(queue.shift()); };
    await Promise.all(Array.from({ length: Math.min(PARTS_IN_FLIGHT, queue.length) }, worker));
    await completeMultipart(mp, etags, signal);
  } catch (error) {
    // An ended session is not the upload's fault: keep it so it can resume after signing in again.
    if (error.code !== "not_signed_in") {
      abortMultipart(mp).catch(() => {});
      error.aborted = true;
    }
    throw error;
  }
  return key;
}

// Upload a file; resolves to its object key. onProgress(bytesSent) is called as bytes leave.
export function upload(file, contentType, options) {
  const via = options.resumeFrom || file.size > MULTIPART_THRESHOLD ? uploadByParts : uploadByPost;
  return via(file, contentType, options);
}

// The upload id is the middle segment of the key the server built: {prefix}{user}/{upload id}/{filename}.
export function uploadIdOf(key) {
  return key.split("/").at(-2);
}
