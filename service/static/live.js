// A recording uploaded while it is made: MediaRecorder's chunks go into a multipart upload one part at a
// time, and every chunk not yet in a part S3 holds is kept in IndexedDB, so a reload or a crash loses
// at most the last second. finishStored() completes such a recording on a later visit. Each part's
// SHA-256 is kept in its planned record, so a resumed upload completes with every part's checksum,
// those of parts S3 took before the reload included.

import { api, ApiError } from "./api.js";
import * as store from "./store.js";
import {
  abortMultipart, completeMultipart, createMultipart, listParts, multipart, partChecksum, putPartWithRetries,
} from "./transfer.js";

// Stop this many chunks short of the largest upload, so the chunk Stop delivers still fits.
const CHUNKS_OF_HEADROOM = 3;

export class UploadGone extends Error {}
export class NothingRecorded extends Error {}

const sum = (items, size = (x) => x.size) => items.reduce((total, x) => total + size(x), 0);

// The server no longer knows the multipart upload: it expired, was aborted, or is another user's.
async function partsInStorage(mp) {
  try {
    return new Map((await listParts(mp)).map((p) => [p.PartNumber, p]));
  } catch (error) {
    if (error instanceof ApiError && [403, 404, 409].includes(error.status)) {
      throw new UploadGone("Storage no longer holds this unfinished upload (it expired or was removed).");
    }
    throw error;
  }
}

// Complete the upload and confirm it. Once S3 has assembled it, nothing is kept here any more (the
// object exists even if confirming fails); a refusal (too large, not audio...) also ends it, so the
// error is marked final: there is nothing left to finish.
async function completeAndConfirm(record, mp, sent) {
  try {
    await completeMultipart(mp, sent);
  } catch (error) {
    if (error instanceof ApiError && [400, 413, 422].includes(error.status)) {
      await store.forget(record.uploadId).catch(() => {});
      error.final = true;
    }
    throw error;
  }
  await store.forget(record.uploadId).catch(() => {});
  try {
    return await api(`api/uploads/${record.key.split("/").at(-2)}/confirm`, { method: "POST" });
  } catch (error) {
    error.final = true;
    throw error;
  }
}

export class LiveUpload {
  // Start the multipart upload and its stored record; the recorder starts once this resolves.
  static async begin({ userId, filename, contentType, hooks }) {
    const created = await createMultipart(filename, contentType, null);
    const record = {
      uploadId: created.uploadId, key: created.key, userId, kind: "recording", filename, contentType,
      partSize: created.partSize, maxBytes: created.maxBytes, checksumAlgorithm: created.checksumAlgorithm,
      startedAt: Date.now(), durationMs: 0,
      bytes: 0, nextSeq: 0, parts: [],
    };
    const live = new LiveUpload(record, hooks);
    try {
      await store.saveUpload(record);
    } catch (error) {
      live.unprotected(error);
    }
    return live;
  }

  // hooks: onProgress({ recorded, stored, durationMs }), onLimit(), onWarning(text)
  constructor(record, hooks) {
    this.record = record;
    this.hooks = hooks;
    this.mp = multipart(record.uploadId, record.key, record.checksumAlgorithm);
    this.pending = [];           // chunks not yet cut into a part: { seq, data }
    this.blobs = new Map();      // part number -> its bytes, until S3 has them
    this.sending = new Map();    // part number -> promise of its upload
    this.inFlight = new Map();   // part number -> bytes sent so far
    this.queue = Promise.resolve();
    this.keeping = true;         // chunks are being stored in IndexedDB
    this.largestChunk = 0;
    this.limited = false;        // onLimit has been called
  }

  unprotected(error) {
    if (!this.keeping) return;
    this.keeping = false;
    this.hooks.onWarning(`${error.message} The recording still uploads as it goes, but a reload or crash now `
      + "would lose what has not reached storage yet.");
  }

  report() {
    const { parts, bytes, durationMs } = this.record;
    const stored = sum(parts.filter((p) => p.etag)) + sum([...this.inFlight.values()], (x) => x);
    this.hooks.onProgress({ recorded: bytes, stored: Math.min(stored, bytes), durationMs });
  }

  // MediaRecorder's dataavailable: keep the chunk, and cut a part once enough has gathered.
  append(data, durationMs) {
    this.queue = this.queue.then(() => this.take(data, durationMs));
    return this.queue;
  }

  async take(data, durationMs) {
    const record = this.record;
    const seq = record.nextSeq;
    record.nextSeq += 1;
    record.bytes += data.size;
    record.durationMs = durationMs;
    this.largestChunk = Math.max(this.largestChunk, data.size);
    this.pending.push({ seq, data });
    if (this.keeping) {
      try {
        await store.appendChunk(record.uploadId, seq, data,
          { nextSeq: record.nextSeq, bytes: record.bytes, durationMs });
      } catch (error) {
        this.unprotected(error);
      }
    }
    if (sum(this.pending, (c) => c.data.size) >= record.partSize) await this.cut();
    this.report();
    if (!this.limited && record.maxBytes
        && record.bytes + CHUNKS_OF_HEADROOM * this.largestChunk > record.maxBytes) {
      this.limited = true;
      this.hooks.onLimit(record.maxBytes);
    }
  }

  // The pending chunks become the next part, planned in the record (with its SHA-256) before it is sent.
  async cut() {
    const chunks = this.pending.splice(0);
    const part = {
      number: this.record.parts.length + 1, from: chunks[0].seq, to: chunks.at(-1).seq,
      size: sum(chunks, (c) => c.data.size), etag: null, checksum: null,
    };
    this.record.parts.push(part);
    const blob = new Blob(chunks.map((c) => c.data), { type: this.record.contentType });
    this.blobs.set(part.number, blob);
    part.checksum = await partChecksum(this.mp, blob);
    await this.persist();
    this.send(part);
  }

  persist() {
    if (!this.keeping) return Promise.resolve();
    const { parts, nextSeq, bytes, durationMs } = this.record;
    return store.updateUpload(this.record.uploadId, () => ({ parts, nextSeq, bytes, durationMs }))
      .catch((error) => this.unprotected(error));
  }

  // Upload one part in the background; once S3 has it, its chunks are no longer kept.
  send(part) {
    const signal = new AbortController().signal;
    const sending = putPartWithRetries(this.mp, part.number, this.blobs.get(part.number), {
      signal, checksum: part.checksum, onProgress: (bytes) => { this.inFlight.set(part.number, bytes); this.report(); },
    }).then(async ({ etag }) => {
      part.etag = etag;
      this.blobs.delete(part.number);
      await this.persist();
      if (this.keeping) await store.dropChunks(this.record.uploadId, part.from, part.to).catch(() => {});
    }).finally(() => {
      this.inFlight.delete(part.number);
      this.report();
    });
    sending.catch(() => {});  // a failure is dealt with at Stop, where the part is sent again
    this.sending.set(part.number, sending);
  }

  // After the recorder stopped: the last part, any part that failed, then complete and confirm.
  async finish() {
    await this.queue;
    if (this.pending.length) await this.cut();
    if (!this.record.parts.length) {
      await this.discard();
      throw new NothingRecorded("Nothing was recorded, so nothing was uploaded.");
    }
    const settled = await Promise.allSettled(this.sending.values());
    const failed = this.record.parts.filter((p) => !p.etag);
    if (failed.length) {
      for (const part of failed) this.send(part);
      const again = await Promise.allSettled(failed.map((p) => this.sending.get(p.number)));
      const refusal = again.find((r) => r.status === "rejected") ?? settled.find((r) => r.status === "rejected");
      if (refusal) throw refusal.reason;
    }
    return completeAndConfirm(this.record, this.mp, this.record.parts.map((p) => [p.number, p]));
  }

  async discard() {
    await abortMultipart(this.mp).catch(() => {});
    await store.forget(this.record.uploadId).catch(() => {});
  }
}

// Chunks after the last planned part, up to the first one missing (storage refused it).
function trailing(chunks, from) {
  const run = [];
  for (const chunk of chunks) {
    if (chunk.seq !== from + run.length) break;
    run.push(chunk);
  }
  return run;
}

// Finish a recording a reload interrupted: send only the parts S3 lacks, add the rest, complete.
export async function finishStored(record, { onProgress }) {
  const mp = multipart(record.uploadId, record.key, record.checksumAlgorithm);
  const have = await partsInStorage(mp);
  const chunks = await store.chunksOf(record.uploadId);
  const sent = new Map();   // part number -> { etag, checksum }
  let stored = 0;
  const total = record.bytes;
  const progress = (extra = 0) => onProgress({ recorded: total, stored: Math.min(total, stored + extra) });
  progress();
  const sendBlob = async (number, blob, checksum = null) => {
    sent.set(number, await putPartWithRetries(mp, number, blob, {
      signal: new AbortController().signal, checksum, onProgress: (bytes) => progress(bytes),
    }));
    stored += blob.size;
    progress();
  };
  for (const part of record.parts) {
    const there = have.get(part.number);
    if (there && there.Size === part.size) {
      sent.set(part.number, { etag: there.ETag, checksum: part.checksum ?? null });  // its chunks are gone
      stored += part.size;
      continue;
    }
    const its = chunks.filter((c) => c.seq >= part.from && c.seq <= part.to);
    if (sum(its, (c) => c.data.size) !== part.size) {
      throw new Error(`Part ${part.number} of this recording is neither in storage nor on this device.`);
    }
    await sendBlob(part.number, new Blob(its.map((c) => c.data), { type: record.contentType }), part.checksum);
  }
  const next = record.parts.length ? record.parts.at(-1).to + 1 : 0;
  const rest = trailing(chunks.filter((c) => c.seq >= next), next);
  if (rest.length) {
    await sendBlob(record.parts.length + 1, new Blob(rest.map((c) => c.data), { type: record.contentType }));
  }
  if (!sent.size) throw new Error("Nothing of this recording was kept, so there is nothing to finish.");
  return completeAndConfirm(record, mp, sent);
}

// Drop an unfinished upload: abort it at S3 (already gone is fine), then forget it here.
export async function discardStored(record) {
  try {
    await abortMultipart(multipart(record.uploadId, record.key));
  } catch (error) {
    if (!(error instanceof ApiError && [403, 404, 409].includes(error.status))) throw error;
  }
  await store.forget(record.uploadId);
}
