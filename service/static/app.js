// The page: who you are, add audio (pick, drop, record), watch it upload, play it back, delete it,
// and finish what a reload or a crash interrupted.

import { api, ApiError } from "./api.js";
import { discardStored, finishStored, LiveUpload, NothingRecorded, UploadGone } from "./live.js";
import { explain, humanSize, knowLimits, plain as describe, typeNames } from "./messages.js";
import { Recorder } from "./recorder.js";
import * as store from "./store.js";
import { listParts, multipart, upload, uploadIdOf } from "./transfer.js";
import { drawWaveform } from "./waveform.js";

export { humanSize };

const $ = (id) => document.getElementById(id);
let me = null;  // the signed-in user; stored uploads are theirs only
const claimed = new Map();  // upload id -> release, for the uploads this tab is moving now
const knownSeconds = new Map();  // upload id -> length the recorder measured, until the server states one

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

// A row in "Uploading": its parts; finish, fail and uploaded settle it and move it to "Finished".
function transferRow(name) {
  const row = fromTemplate("transfer-row");
  const parts = Object.fromEntries(["progress", ".percent", ".speed", ".cancel", ".message", ".code", ".retry"]
    .map((s) => [s.replace(".", ""), row.querySelector(s)]));
  row.querySelector(".name").textContent = name;
  row.dataset.state = "uploading";
  parts.progress.setAttribute("aria-label", `Upload progress for ${name}`);
  parts.cancel.setAttribute("aria-label", `Cancel uploading ${name}`);
  $("transfers-section").hidden = false;
  $("transfers").prepend(row);
  parts.row = row;
  // Settle the row and move it out of "Uploading"; focus that was in it goes to its Retry, else the heading.
  parts.finish = (state, text, { code = null, retry = null } = {}) => {
    const hadFocus = row.contains(document.activeElement);
    row.classList.add(state);
    row.dataset.state = state;
    parts.render?.();
    parts.message.textContent = text;
    parts.message.hidden = false;
    parts.cancel.hidden = true;
    parts.code.textContent = code ? `Code for support: ${code}` : "";
    parts.code.hidden = !code;
    parts.retry.parentElement.hidden = !retry;
    if (retry) {
      parts.retry.setAttribute("aria-label", `Retry ${name}`);
      parts.retry.onclick = () => { leaveFinished(row, $("add-title")); retry(); };
    }
    $("finished").prepend(row);
    $("finished-section").hidden = false;
    $("transfers-section").hidden = $("transfers").children.length === 0;
    if (hadFocus) (retry ? parts.retry : $("finished-title")).focus();
    announce(`${name}: ${text}`);
  };
  // A failure in words, refused (the file itself: no retry) or failed (retry when one is offered).
  parts.fail = (error, retry = null) => {
    const { text, code, refused } = explain(error);
    parts.finish(refused ? "refused" : "failed", text, { code, retry: refused ? null : retry });
  };
  parts.verifying = () => {
    parts.message.textContent = "In storage: checking that it is audio…";
    parts.message.hidden = false;
  };
  parts.uploaded = (item) => {
    parts.finish("done", item.status === "pending"
      ? "In storage: it is still being checked, then it can be played under Your uploads."
      : "Uploaded and checked: it is under Your uploads.");
  };
  return parts;
}

// Take a row out of "Finished", and hide the section once it is empty.
function leaveFinished(row, focusTarget) {
  row.remove();
  $("finished-section").hidden = $("finished").children.length === 0;
  focusTarget?.focus();
}

function wireFinished() {
  $("clear-finished").addEventListener("click", () => {
    $("finished").replaceChildren();
    $("finished-section").hidden = true;
    $("add-title").focus();
    announce("Cleared the finished rows.");
  });
}

// Words for a failure that leaves the upload kept on this device, to be finished later.
function keptBecause(error) {
  return `${describe(error).replace(/[.:]?$/, ".")} It is kept on this device: finish it from "Unfinished uploads" `
    + "once you are signed in and online again.";
}

// Keep a multipart file upload's File until it completes, so a reload can resume it part by part.
async function keepFile(file, contentType, created, warn) {
  try {
    await store.saveUpload({
      uploadId: created.uploadId, key: created.key, userId: me.userId, kind: "file", filename: file.name,
      contentType, size: file.size, partSize: created.partSize, checksumAlgorithm: created.checksumAlgorithm,
      startedAt: Date.now(), file,
    });
    return true;
  } catch (error) {
    warn(`${describe(error)} This upload continues, but a reload would start it over.`);
    return false;
  }
}

async function transfer(file, { resumeFrom = null } = {}) {
  const { progress, percent, speed, cancel, message, finish, fail, verifying, uploaded: uploadedRow } = transferRow(file.name);
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
    verifying();
    await saving;
    if (kept) await store.forget(kept).catch(() => {});
    const uploaded = await api(`api/uploads/${uploadIdOf(key)}/confirm`, { method: "POST" });
    uploadedRow(uploaded);
    showUploads([uploaded], "newest");
  } catch (error) {
    if (kept && await saving && !error.aborted && error.name !== "AbortError") {
      await unclaim(kept);
      finish("failed", keptBecause(error), { code: explain(error).code });
      await showUnfinished();
      return;
    }
    if (kept) await store.forget(kept).catch(() => {});
    const again = () => transfer(file);
    if (error.name === "AbortError") finish("cancelled", "Cancelled: nothing was kept.", { retry: again });
    else fail(error, again);
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
  if (where === "newest") {
    library.prepend(...rows);
    showLimits();  // the quota line counts the new upload
  }
  else library.append(...rows);
  $("library-empty").hidden = library.children.length > 0;
}

// "Opus · 48 kHz · mono" from the audio facts the server found, when it has them.
function audioFacts(audio) {
  if (!audio) return "";
  const channels = { 1: "mono", 2: "stereo" }[audio.channels] ?? (audio.channels ? `${audio.channels} channels` : "");
  const rate = audio.sampleRate ? `${audio.sampleRate / 1000} kHz` : "";
  return [audio.codec, rate, channels].filter(Boolean).map((fact) => ` · ${fact}`).join("");
}

// Chrome's MediaRecorder WebM states no length, so the player shows 0:00 and cannot seek: asking for a
// position past the end makes Chrome find the length, and the player then seeks.
function seekable(audio) {
  audio.addEventListener("loadedmetadata", () => {
    if (audio.duration !== Infinity) return;
    audio.addEventListener("durationchange", () => { audio.currentTime = 0; }, { once: true });
    audio.currentTime = 1e101;
  });
}

async function showWaveform(row, item, audio) {
  if (!item.peaksUrl) return;
  try {
    const peaks = await api(item.peaksUrl);
    const canvas = row.querySelector(".waveform");
    canvas.hidden = false;
    drawWaveform(canvas, peaks, audio);
    row.dataset.waveform = "drawn";
  } catch {
    row.dataset.waveform = "unavailable";  // the player still works; the shape is a nicety
  }
}

function libraryRow(item) {
  const row = fromTemplate("library-row");
  row.dataset.id = item.id;
  row.querySelector(".name").textContent = item.filename;
  row.querySelector(".size").textContent = humanSize(item.size);
  row.querySelector(".facts").textContent = audioFacts(item.audio);
  const duration = row.querySelector(".duration");
  const seconds = item.durationSeconds ?? knownSeconds.get(item.id);
  duration.textContent = seconds == null ? "length not known yet" : humanDuration(seconds);
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
  seekable(audio);
  audio.addEventListener("durationchange", () => {
    if (seconds == null && Number.isFinite(audio.duration)) duration.textContent = humanDuration(audio.duration);
  });
  showWaveform(row, item, audio);
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
      showLimits();
    } catch (error) {
      remove.disabled = false;
      remove.focus();
      announce(`${item.filename} was not deleted: ${describe(error)}`);
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
    $("library-error").textContent = `Your uploads could not be listed. ${describe(error)}`;
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
  // A click anywhere in the zone opens the picker, except on its own controls and messages.
  zone.addEventListener("click", (e) => {
    if (e.target.closest("button, label, input, a, .refused, .record-time")) return;
    $("file").click();
  });
  $("file").addEventListener("change", (e) => {
    addFiles(e.target.files);
    e.target.value = "";
  });
}

// "1:05 recorded · saved on this device · 1.2 MB of 1.3 MB in storage" on a recording's row: what is safe
// where. Storage takes whole parts (5 MiB by default), so while recording the device is what keeps it safe.
function recordingProgress(parts, upload) {
  const show = ({ recorded, stored, durationMs }) => {
    parts.render = () => show({ recorded, stored, durationMs });  // again once settled: the device drops out
    parts.progress.max = Math.max(recorded, 1);
    parts.progress.value = stored;
    const length = durationMs == null ? null : `${humanDuration(durationMs / 1000)} recorded`;
    const moving = ["recording", "uploading"].includes(parts.row.dataset.state);
    const device = !moving ? null : upload.keeping ? "saved on this device" : "not saved on this device";
    const storage = recorded > 0 && stored >= recorded
      ? "all in storage" : `${humanSize(stored)} of ${humanSize(recorded)} in storage`;
    parts.percent.textContent = [length, device, storage].filter(Boolean).join(" · ");
    if (parts.row.dataset.state === "uploading" && recorded > 0 && stored >= recorded) parts.verifying();
  };
  return show;
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
          onProgress: (state) => shown && recordingProgress(shown, mine)(state),
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
      say(`Cannot record. ${describe(error)}`);
      return;
    }
    starting = false;
    button.setAttribute("aria-busy", "false");
    row = shown = transferRow(recorder.filename);
    row.cancel.hidden = true;  // Stop is this row's control
    row.row.dataset.state = "recording";
    row.progress.setAttribute("aria-label", `Upload progress for ${recorder.filename}, recorded so far`);
    recordingProgress(row, mine)({ recorded: 0, stored: 0, durationMs: 0 });
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
      const seconds = recorder.seconds, lengthMs = recorder.elapsedMs;
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
        knownSeconds.set(uploaded.id, lengthMs / 1000);
        parts.uploaded(uploaded);
        showUploads([uploaded], "newest");
      } catch (error) {
        await unclaim(upload.record.uploadId);
        if (upload.keeping && !error.final && !(error instanceof NothingRecorded)) {
          parts.finish("failed", keptBecause(error), { code: explain(error).code });
          await showUnfinished();
        } else {
          parts.fail(error);
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
      const uploaded = await finishStored(record, { onProgress: recordingProgress(parts, { keeping: true }) });
      knownSeconds.set(uploaded.id, record.durationMs / 1000);
      parts.uploaded(uploaded);
      showUploads([uploaded], "newest");
    } catch (error) {
      if (error instanceof UploadGone) {
        parts.finish("failed", `${error.message} It cannot be finished; discard it to free this browser's storage.`);
      } else if (error.final) {
        parts.fail(error);
      } else {
        parts.finish("failed", keptBecause(error), { code: explain(error).code });
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
      tell(`It could not be discarded. ${describe(error)}`);
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

// ---- what an upload must be, said before any upload ------------------------------------------

async function showLimits() {
  const line = $("limits");
  try {
    const limits = await api("api/limits");
    knowLimits(limits);
    const quota = limits.quotaBytes == null ? ""
      : ` You have used ${humanSize(limits.usedBytes ?? 0)} of your ${humanSize(limits.quotaBytes)}.`;
    line.textContent = `${typeNames(limits.accepted)} files, up to ${humanSize(limits.maxUploadBytes)} each.${quota}`;
    $("file").accept = ["audio/*", ...limits.accepted.flatMap((a) => a.extensions)].join(",");
  } catch (error) {
    line.textContent = `Audio files. The size limit could not be loaded. ${describe(error)}`;
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
  wireFinished();
  await Promise.all([showLimits(), showUnfinished(), loadLibrary()]);
}

main().catch((error) => {
  $("loading").textContent = `Soundpost could not start: ${describe(error)}`;
});
