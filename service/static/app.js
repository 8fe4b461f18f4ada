// The page: who you are, add audio (pick, drop, record), watch it upload, play it back, delete it,
// and finish what a reload or a crash interrupted.

import { api, ApiError, describe } from "./api.js";
import { discardStored, finishStored, LiveUpload, NothingRecorded, UploadGone } from "./live.js";
import { Recorder } from "./recorder.js";
import * as store from "./store.js";
import { listParts, multipart, upload, uploadIdOf } from "./transfer.js";

const $ = (id) => document.getElementById(id);
let me = null;  // the signed-in user; stored uploads are theirs only
const claimed = new Map();  // upload id -> release, for the uploads this tab is moving now

// Claim an upload for this tab (true), unless another tab is moving it (false).
async function claim(uploadId) {
  if (claimed.has(uploadId)) return true;
  const release = await store.hold(uploadId);
  if (release) claimed.set(uploadId, release);
  return Boolean(release);
}

async function unclaim(uploadId) {
  const release = claimed.get(uploadId);
  claimed.delete(uploadId);
  await release?.();
}
const announce = (text) => { $("announce").textContent = text; };
const fromTemplate = (id) => $(id).content.firstElementChild.cloneNode(true);

const GUESSED_TYPES = {
  wav: "audio/wav", mp3: "audio/mpeg", m4a: "audio/mp4", aac: "audio/aac", webm: "audio/webm",
  weba: "audio/webm", ogg: "audio/ogg", oga: "audio/ogg", opus: "audio/opus", flac: "audio/flac",
};

// Browsers leave File.type empty for extensions they do not know; the server has the final word.
function contentTypeOf(file) {
  const extension = file.name.split(".").pop().toLowerCase();
  return file.type || GUESSED_TYPES[extension] || "application/octet-stream";
}

export function humanSize(bytes) {
  const units = ["B", "KB", "MB", "GB"];
  let value = bytes, unit = 0;
  while (value >= 1000 && unit < units.length - 1) { value /= 1000; unit += 1; }
  return `${value.toFixed(unit && value < 10 ? 1 : 0)} ${units[unit]}`;
}

export function humanDuration(seconds) {
  const whole = Math.round(seconds);
  return `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, "0")}`;
}

// Bytes per second over the last two seconds of progress; a repeated report keeps the last rate.
function speedMeter() {
  const samples = [[performance.now(), 0]];
  let rate = 0;
  return (bytes) => {
    const now = performance.now();
    if (bytes === samples.at(-1)[1]) return rate;
    samples.push([now, bytes]);
    while (samples.length > 2 && now - samples[0][0] > 2000) samples.shift();
    const [t0, b0] = samples[0];
    rate = now > t0 ? ((bytes - b0) * 1000) / (now - t0) : rate;
    return rate;
  };
}

// ---- uploads in progress -------------------------------------------------------------------

// A row in "Uploading": its parts, and finish(state, text) to settle it.
function transferRow(name) {
  const row = fromTemplate("transfer-row");
  const parts = Object.fromEntries(["progress", ".percent", ".speed", ".cancel", ".message"]
    .map((s) => [s.replace(".", ""), row.querySelector(s)]));
  row.querySelector(".name").textContent = name;
  parts.progress.setAttribute("aria-label", `Upload progress for ${name}`);
  parts.cancel.setAttribute("aria-label", `Cancel uploading ${name}`);
  $("transfers-section").hidden = false;
  $("transfers").prepend(row);
  parts.row = row;
  parts.finish = (state, text) => {
    row.classList.add(state);
    row.dataset.state = state;
    parts.message.textContent = text;
    parts.message.hidden = false;
    parts.cancel.hidden = true;
    announce(`${name}: ${text}`);
  };
  return parts;
}

// Words for a failure that leaves the upload kept on this device, to be finished later.
function keptBecause(error) {
  return `${describe(error)} It is kept on this device: finish it from "Unfinished uploads" `
    + "once you are signed in and online again.";
}

// Keep a multipart file upload's File until it completes, so a reload can resume it part by part.
async function keepFile(file, contentType, created, warn) {
  try {
    await store.saveUpload({
      uploadId: created.uploadId, key: created.key, userId: me.userId, kind: "file", filename: file.name,
      contentType, size: file.size, partSize: created.partSize, startedAt: Date.now(), file,
    });
    return true;
  } catch (error) {
    warn(`${describe(error)} This upload continues, but a reload would start it over.`);
    return false;
  }
}

async function transfer(file, { resumeFrom = null } = {}) {
  const { progress, percent, speed, cancel, message, finish } = transferRow(file.name);
  const controller = new AbortController();
  cancel.addEventListener("click", () => controller.abort(new DOMException("Cancelled", "AbortError")));
  const meter = speedMeter();
  let announced = 0;
  const onProgress = (bytes) => {
    const pct = file.size ? Math.min(100, Math.floor((bytes / file.size) * 100)) : 100;
    progress.value = pct;
    percent.textContent = `${pct}%`;
    speed.textContent = `${humanSize(meter(bytes))}/s`;
    if (pct >= announced + 25) { announced = pct - (pct % 25); announce(`${file.name}: ${pct}% uploaded`); }
  };
  const warn = (text) => { message.textContent = text; message.hidden = false; };
  const contentType = resumeFrom?.contentType ?? contentTypeOf(file);
  let kept = resumeFrom?.uploadId ?? null;
  let saving = Promise.resolve(Boolean(resumeFrom));  // whether the File is kept in this browser
  const onCreated = async (created) => {
    kept = created.uploadId;
    await claim(kept);
    saving = keepFile(file, contentType, created, warn);  // parts need not wait for the copy
  };

  announce(resumeFrom ? `Resuming ${file.name}` : `Uploading ${file.name}`);
  try {
    const key = await upload(file, contentType, { signal: controller.signal, onProgress, resumeFrom, onCreated });
    onProgress(file.size);
    await saving;
    if (kept) await store.forget(kept).catch(() => {});
    const uploaded = await api(`api/uploads/${uploadIdOf(key)}/confirm`, { method: "POST" });
    finish("done", "Uploaded.");
    showUploads([uploaded], "newest");
  } catch (error) {
    if (kept && await saving && !error.aborted && error.name !== "AbortError") {
      await unclaim(kept);
      finish("failed", keptBecause(error));
      await showUnfinished();
      return;
    }
    if (kept) await store.forget(kept).catch(() => {});
    if (error.name === "AbortError") finish("cancelled", "Cancelled.");
    else finish("failed", describe(error));
  } finally {
    unclaim(kept);
  }
}

function addFiles(files) {
  for (const file of files) transfer(file);
}

// ---- the user's uploads --------------------------------------------------------------------

// The listing and a just-confirmed upload can race (the listing may already hold the upload),
// so rows are keyed by upload id and an upload already shown is never shown twice.
function showUploads(items, where) {
  const library = $("library");
  const shown = new Set([...library.children].map((row) => row.dataset.id));
  const rows = items.filter((item) => !shown.has(item.id)).map(libraryRow);
  if (where === "newest") library.prepend(...rows);
  else library.append(...rows);
  $("library-empty").hidden = library.children.length > 0;
}

function libraryRow(item) {
  const row = fromTemplate("library-row");
  row.dataset.id = item.id;
  row.querySelector(".name").textContent = item.filename;
  row.querySelector(".size").textContent = humanSize(item.size);
  const duration = row.querySelector(".duration");
  duration.textContent = item.durationSeconds == null ? "length unknown" : humanDuration(item.durationSeconds);
  const time = row.querySelector("time");
  time.dateTime = item.uploadedAt;
  time.textContent = new Date(item.uploadedAt).toLocaleString();

  const audio = row.querySelector("audio");
  if (item.status === "pending") {  // absent means verified: listings from before upload statuses
    row.dataset.status = "pending";
    audio.replaceWith(Object.assign(document.createElement("p"), {
      className: "small processing", textContent: "Processing: it can be played once it has been checked.",
    }));
    wireDelete(row, item);
    return row;
  }
  audio.setAttribute("aria-label", `Play ${item.filename}`);
  audio.addEventListener("loadedmetadata", () => {
    if (item.durationSeconds == null && Number.isFinite(audio.duration)) duration.textContent = humanDuration(audio.duration);
  });
  api(`api/uploads/${item.id}/url`).then(
    ({ url }) => { audio.src = url; },
    (error) => { duration.textContent = describe(error); },
  );

  wireDelete(row, item);
  return row;
}

function wireDelete(row, item) {
  const remove = row.querySelector(".delete");
  remove.setAttribute("aria-label", `Delete ${item.filename}`);
  remove.addEventListener("click", async () => {
    if (remove.dataset.armed !== "yes") {  // a second click confirms; no modal dialogs
      remove.dataset.armed = "yes";
      remove.textContent = "Really delete?";
      remove.setAttribute("aria-label", `Really delete ${item.filename}?`);
      return;
    }
    remove.disabled = true;
    try {
      await api(`api/uploads/${item.id}`, { method: "DELETE" });
      const next = row.nextElementSibling ?? row.previousElementSibling;
      row.remove();
      (next?.querySelector(".delete") ?? $("library-title")).focus();
      $("library-empty").hidden = $("library").children.length > 0;
      announce(`Deleted ${item.filename}.`);
    } catch (error) {
      remove.disabled = false;
      announce(describe(error));
    }
  });
}

async function loadLibrary(cursor = null) {
  const more = $("more");
  more.hidden = true;
  $("library").setAttribute("aria-busy", "true");  // screen readers wait for the whole page of rows
  try {
    const query = cursor ? `&cursor=${encodeURIComponent(cursor)}` : "";
    const page = await api(`api/uploads?limit=20${query}`);
    showUploads(page.uploads, "older");
    if (page.nextCursor) {
      more.hidden = false;
      more.onclick = () => loadLibrary(page.nextCursor);
    }
  } catch (error) {
    $("library-error").textContent = `Your uploads could not be listed: ${describe(error)}`;
    $("library-error").hidden = false;
  } finally {
    $("library").setAttribute("aria-busy", "false");
  }
}

// ---- adding audio --------------------------------------------------------------------------

function wireDropZone() {
  const zone = $("drop");
  // A file dropped beside the zone must not navigate away from the page.
  for (const type of ["dragover", "drop"]) window.addEventListener(type, (e) => e.preventDefault());
  zone.addEventListener("dragover", () => zone.classList.add("over"));
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    zone.classList.remove("over");
    addFiles(e.dataTransfer.files);
  });
  $("file").addEventListener("change", (e) => {
    addFiles(e.target.files);
    e.target.value = "";
  });
}

// "1:05 recorded · 1.2 MB of 1.3 MB in storage" on a recording's row.
function recordingProgress(parts) {
  return ({ recorded, stored, durationMs }) => {
    parts.progress.max = Math.max(recorded, 1);
    parts.progress.value = stored;
    const length = durationMs == null ? "" : `${humanDuration(durationMs / 1000)} recorded · `;
    parts.percent.textContent = `${length}${humanSize(stored)} of ${humanSize(recorded)} in storage`;
  };
}

function wireRecorder() {
  const button = $("record"), clock = $("record-time"), problem = $("record-error");
  let recorder = null, live = null, row = null, ticking = null, stopping = null, starting = false;
  const say = (text) => { problem.textContent = text; problem.hidden = false; };

  // The button stays enabled (and focused) while it starts or stops; a press then does nothing.
  async function start() {
    problem.hidden = true;
    starting = true;
    button.setAttribute("aria-busy", "true");
    // This recording's own upload and row: Stop clears the shared variables while these go on.
    let mine = null, shown = null;
    try {
      recorder = new Recorder((data, elapsedMs) => mine.append(data, elapsedMs));
      live = mine = await LiveUpload.begin({
        userId: me.userId, filename: recorder.filename, contentType: recorder.contentType,
        hooks: {
          onProgress: (state) => shown && recordingProgress(shown)(state),
          onWarning: (text) => { say(text); announce(text); },
          onLimit: (maxBytes) => {
            say(`Recording stopped: it reached the largest upload allowed (${humanSize(maxBytes)}). `
              + "What was recorded is uploading; start a new recording to go on.");
            stop();
          },
        },
      });
      await claim(live.record.uploadId);
      await recorder.start();
    } catch (error) {
      live?.discard();
      recorder = live = null;
      starting = false;
      button.setAttribute("aria-busy", "false");
      say(`Cannot record: ${describe(error)}`);
      return;
    }
    starting = false;
    button.setAttribute("aria-busy", "false");
    row = shown = transferRow(recorder.filename);
    row.cancel.hidden = true;  // Stop is this row's control
    row.row.dataset.state = "recording";
    row.progress.setAttribute("aria-label", `Upload progress for ${recorder.filename}, recorded so far`);
    recordingProgress(row)({ recorded: 0, stored: 0, durationMs: 0 });
    button.textContent = "Stop recording";
    button.setAttribute("aria-pressed", "true");
    clock.hidden = false;
    clock.textContent = "0:00";
    ticking = setInterval(() => { clock.textContent = humanDuration(recorder.seconds); }, 250);
    announce(`Recording. It uploads while you record.${mine.keeping ? "" : ` ${problem.textContent}`}`);
  }

  function stop() {
    if (!recorder) return stopping;
    return (stopping ??= (async () => {
      clearInterval(ticking);
      const seconds = recorder.seconds;
      button.setAttribute("aria-busy", "true");
      await recorder.stop();
      button.textContent = "Record";
      button.setAttribute("aria-pressed", "false");
      button.setAttribute("aria-busy", "false");
      clock.hidden = true;
      announce(`Recording stopped after ${humanDuration(seconds)}. Uploading the rest.`);
      const [upload, parts] = [live, row];
      recorder = live = row = stopping = null;
      parts.row.dataset.state = "uploading";
      try {
        const uploaded = await upload.finish();
        parts.progress.value = parts.progress.max;
        parts.finish("done", "Uploaded.");
        showUploads([uploaded], "newest");
      } catch (error) {
        await unclaim(upload.record.uploadId);
        if (upload.keeping && !error.final && !(error instanceof NothingRecorded)) {
          parts.finish("failed", keptBecause(error));
          await showUnfinished();
        } else {
          parts.finish("failed", describe(error));
        }
      } finally {
        unclaim(upload.record.uploadId);
      }
    })());
  }

  button.addEventListener("click", () => {
    if (starting || stopping) return;
    if (recorder) stop();
    else start();
  });
}

// ---- unfinished uploads (a reload, a closed tab or a crash interrupted them) -----------------

function unfinishedDetails(record) {
  const started = new Date(record.startedAt).toLocaleString();
  if (record.kind === "recording") {
    return `Recording of ${humanDuration(record.durationMs / 1000)}, started ${started}`;
  }
  return `File of ${humanSize(record.size)}, started ${started}`;
}

// Where focus goes when a row leaves: the next row's first button, else the heading of "Add audio".
function focusAfter(row) {
  const next = row.nextElementSibling ?? row.previousElementSibling;
  row.remove();
  $("unfinished-section").hidden = $("unfinished").children.length === 0;
  (next?.querySelector("button:not([hidden])") ?? $("add-title")).focus();
}

function unfinishedRow(record) {
  const row = fromTemplate("unfinished-row");
  row.dataset.id = record.uploadId;
  row.dataset.kind = record.kind;
  const [finishButton, discardButton, message] = [".finish", ".discard", ".message"].map((s) => row.querySelector(s));
  row.querySelector(".name").textContent = record.filename;
  row.querySelector(".details").textContent = unfinishedDetails(record);
  finishButton.textContent = record.kind === "recording" ? "Finish recording upload" : "Resume upload";
  finishButton.setAttribute("aria-label", `${finishButton.textContent}: ${record.filename}`);
  discardButton.setAttribute("aria-label", `Discard ${record.filename}`);
  const tell = (text) => { message.textContent = text; message.hidden = false; announce(`${record.filename}: ${text}`); };

  finishButton.addEventListener("click", async () => {
    finishButton.disabled = discardButton.disabled = true;
    if (!await claim(record.uploadId)) {
      finishButton.disabled = discardButton.disabled = false;
      return tell("Another tab or window is moving this upload now.");
    }
    if (record.kind === "file") {
      try {
        await listParts(multipart(record.uploadId, record.key));
      } catch (error) {
        finishButton.disabled = discardButton.disabled = false;
        await unclaim(record.uploadId);
        if (!(error instanceof ApiError && [403, 404, 409].includes(error.status))) return tell(describe(error));
        await store.forget(record.uploadId).catch(() => {});
        focusAfter(row);
        announce(`${record.filename}: storage no longer holds its parts, so it is uploading again from the start.`);
        return transfer(record.file);
      }
      focusAfter(row);
      return transfer(record.file, { resumeFrom: record });
    }
    focusAfter(row);
    const parts = transferRow(record.filename);
    parts.cancel.hidden = true;
    parts.row.dataset.state = "uploading";
    announce(`Finishing ${record.filename}.`);
    try {
      const uploaded = await finishStored(record, { onProgress: recordingProgress(parts) });
      parts.finish("done", "Uploaded.");
      showUploads([uploaded], "newest");
    } catch (error) {
      if (error instanceof UploadGone) {
        parts.finish("failed", `${error.message} It cannot be finished; discard it to free this browser's storage.`);
      } else if (error.final) {
        parts.finish("failed", describe(error));
      } else {
        parts.finish("failed", keptBecause(error));
      }
      await unclaim(record.uploadId);
      await showUnfinished();
    } finally {
      unclaim(record.uploadId);
    }
  });

  discardButton.addEventListener("click", async () => {
    if (discardButton.dataset.armed !== "yes") {  // a second click confirms, as Delete does
      discardButton.dataset.armed = "yes";
      discardButton.textContent = "Really discard?";
      discardButton.setAttribute("aria-label", `Really discard ${record.filename}? It cannot be undone.`);
      return;
    }
    finishButton.disabled = discardButton.disabled = true;
    try {
      await discardStored(record);
      focusAfter(row);
      announce(`Discarded ${record.filename}.`);
    } catch (error) {
      finishButton.disabled = discardButton.disabled = false;
      discardButton.focus();
      tell(`It could not be discarded: ${describe(error)} Try again.`);
    }
  });
  return row;
}

// Offer the signed-in user's unfinished uploads (never another user's), each to finish or discard.
async function showUnfinished() {
  let records;
  try {
    records = await store.uploadsOf(me.userId);
  } catch (error) {
    $("record-error").textContent = `This browser's storage is not available (${describe(error)}): `
      + "a reload during an upload or a recording would lose it.";
    $("record-error").hidden = false;
    return;
  }
  const shown = new Set([...$("unfinished").children].map((row) => row.dataset.id));
  const moving = await store.busy();
  const fresh = records.filter((r) => !shown.has(r.uploadId) && !moving.has(r.uploadId));
  $("unfinished").append(...fresh.map(unfinishedRow));
  const count = $("unfinished").children.length;
  $("unfinished-section").hidden = count === 0;
  if (fresh.length) {
    announce(`${count} unfinished ${count === 1 ? "upload" : "uploads"}: finish or discard ${count === 1 ? "it" : "them"} under "Unfinished uploads".`);
  }
}

// ---- start ---------------------------------------------------------------------------------

async function showSignedOut() {
  const { providers } = await api("api/providers");
  $("providers").append(...providers.map((p) => {
    const item = document.createElement("li");
    const link = Object.assign(document.createElement("a"), { href: p.loginUrl, className: "button" });
    link.textContent = `Sign in with ${p.title}`;
    item.append(link);
    return item;
  }));
  $("signed-out").hidden = false;
}

async function main() {
  try {
    me = await api("api/me");
  } catch (error) {
    if (error.code !== "not_signed_in") throw error;
  }
  $("loading").hidden = true;
  if (!me) return showSignedOut();
  $("who").textContent = me.name || me.email || me.subject;
  $("account").hidden = false;
  $("signed-in").hidden = false;
  wireDropZone();
  wireRecorder();
  await Promise.all([showUnfinished(), loadLibrary()]);
}

main().catch((error) => {
  $("loading").textContent = `Soundpost could not start: ${describe(error)}`;
});
