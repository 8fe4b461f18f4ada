// What must survive a reload or a crash: unfinished multipart uploads and the bytes S3 does not have yet.
//
// Two object stores. "uploads" holds one record per unfinished upload (recording or file), keyed by its
// multipart upload id and indexed by the signed-in user's id, so another user on this browser never
// sees it. "chunks" holds a recording's MediaRecorder chunks, keyed [upload id, sequence], until the
// part they belong to is in S3.

const DB_NAME = "soundpost";
const VERSION = 1;

export class StorageRefused extends Error {}

let opened = null;

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

function database() {
  return (opened ??= new Promise((resolve, reject) => {
    const open = indexedDB.open(DB_NAME, VERSION);
    open.onupgradeneeded = () => {
      const db = open.result;
      db.createObjectStore("uploads", { keyPath: "uploadId" }).createIndex("byUser", "userId");
      db.createObjectStore("chunks", { keyPath: ["uploadId", "seq"] });
    };
    open.onsuccess = () => resolve(open.result);
    open.onerror = () => { opened = null; reject(open.error); };
    open.onblocked = () => { opened = null; reject(new Error("Close Soundpost's other tabs, then reload.")); };
  }));
}

// Run fn(stores) in one transaction; resolves once it has committed. A full disk is a StorageRefused.
async function transaction(names, mode, fn) {
  const db = await database();
  return new Promise((resolve, reject) => {
    const tx = db.transaction(names, mode);
    const stores = Object.fromEntries(names.map((n) => [n, tx.objectStore(n)]));
    let result;
    Promise.resolve(fn(stores)).then((value) => { result = value; }, (error) => { tx.abort(); reject(error); });
    tx.oncomplete = () => resolve(result);
    const fail = () => {
      const error = tx.error;
      reject(error?.name === "QuotaExceededError"
        ? new StorageRefused("The browser refused to store more (its storage for this site is full).")
        : error ?? new Error("The browser's storage refused the change."));
    };
    tx.onerror = fail;
    tx.onabort = fail;
  });
}

const chunkRange = (uploadId, from = 0, to = Infinity) => IDBKeyRange.bound([uploadId, from], [uploadId, to]);

export function saveUpload(record) {
  return transaction(["uploads"], "readwrite", ({ uploads }) => { uploads.put(record); });
}

export function updateUpload(uploadId, change) {
  return transaction(["uploads"], "readwrite", async ({ uploads }) => {
    const record = await request(uploads.get(uploadId));
    if (record) uploads.put({ ...record, ...change(record) });
  });
}

export function getUpload(uploadId) {
  return transaction(["uploads"], "readonly", ({ uploads }) => request(uploads.get(uploadId)));
}

// The signed-in user's unfinished uploads, oldest first.
export async function uploadsOf(userId) {
  const found = await transaction(["uploads"], "readonly",
    ({ uploads }) => request(uploads.index("byUser").getAll(userId)));
  return found.sort((a, b) => a.startedAt - b.startedAt);
}

// Store one chunk and the record's new totals together, so a crash never leaves them disagreeing.
export function appendChunk(uploadId, seq, data, totals) {
  return transaction(["uploads", "chunks"], "readwrite", async ({ uploads, chunks }) => {
    chunks.put({ uploadId, seq, data });
    const record = await request(uploads.get(uploadId));
    if (record) uploads.put({ ...record, ...totals });
  });
}

// Chunks from..to (inclusive) in order, as stored.
export function chunksOf(uploadId, from = 0, to = Infinity) {
  return transaction(["chunks"], "readonly", ({ chunks }) => request(chunks.getAll(chunkRange(uploadId, from, to))));
}

export function dropChunks(uploadId, from, to) {
  return transaction(["chunks"], "readwrite", ({ chunks }) => { chunks.delete(chunkRange(uploadId, from, to)); });
}

// Forget an upload and every chunk of it: it completed or was discarded.
export function forget(uploadId) {
  return transaction(["uploads", "chunks"], "readwrite", ({ uploads, chunks }) => {
    uploads.delete(uploadId);
    chunks.delete(chunkRange(uploadId));
  });
}

// For tests and for the page's own checks: how many records and chunks this browser holds in all.
export function counts() {
  return transaction(["uploads", "chunks"], "readonly", async ({ uploads, chunks }) => ({
    uploads: await request(uploads.count()), chunks: await request(chunks.count()),
  }));
}

// An upload some tab is moving holds a Web Lock until it settles or the tab dies, so no other tab
// offers it as unfinished or finishes it too. Resolves to a release function, or null if it is held.
const lockName = (uploadId) => `soundpost-upload-${uploadId}`;

export function hold(uploadId) {
  if (!navigator.locks) return Promise.resolve(async () => {});
  let release, done;
  const released = new Promise((resolve) => { release = resolve; });
  return new Promise((resolve) => {
    // The release function resolves once the lock is free again, so a listing right after it is right.
    done = navigator.locks.request(lockName(uploadId), { ifAvailable: true }, (lock) => {
      resolve(lock ? () => { release(); return done; } : null);
      return lock ? released : undefined;
    });
  });
}

// Upload ids some tab of this browser holds now.
export async function busy() {
  if (!navigator.locks) return new Set();
  const { held } = await navigator.locks.query();
  return new Set(held.map((lock) => lock.name).filter((n) => n.startsWith("soundpost-upload-"))
    .map((n) => n.slice("soundpost-upload-".length)));
}
