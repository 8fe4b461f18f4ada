// The page: who you are, add audio (pick, drop, record), watch it upload, play it back, delete it.

import { api, describe } from "./api.js";
import { Recorder } from "./recorder.js";
import { upload, uploadIdOf } from "./transfer.js";

const $ = (id) => document.getElementById(id);
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

async function transfer(file) {
  const row = fromTemplate("transfer-row");
  const [progress, percent, speed, cancel, message] =
    ["progress", ".percent", ".speed", ".cancel", ".message"].map((s) => row.querySelector(s));
  row.querySelector(".name").textContent = file.name;
  progress.setAttribute("aria-label", `Upload progress for ${file.name}`);
  cancel.setAttribute("aria-label", `Cancel uploading ${file.name}`);
  $("transfers-section").hidden = false;
  $("transfers").prepend(row);

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
  const finish = (state, text) => {
    row.classList.add(state);
    row.dataset.state = state;
    message.textContent = text;
    message.hidden = false;
    cancel.hidden = true;
    announce(`${file.name}: ${text}`);
  };

  announce(`Uploading ${file.name}`);
  try {
    const key = await upload(file, contentTypeOf(file), { signal: controller.signal, onProgress });
    onProgress(file.size);
    const uploaded = await api(`api/uploads/${uploadIdOf(key)}/confirm`, { method: "POST" });
    finish("done", "Uploaded.");
    showUploads([uploaded], "newest");
  } catch (error) {
    if (error.name === "AbortError") finish("cancelled", "Cancelled.");
    else finish("failed", describe(error));
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
  audio.setAttribute("aria-label", `Play ${item.filename}`);
  audio.addEventListener("loadedmetadata", () => {
    if (item.durationSeconds == null && Number.isFinite(audio.duration)) duration.textContent = humanDuration(audio.duration);
  });
  api(`api/uploads/${item.id}/url`).then(
    ({ url }) => { audio.src = url; },
    (error) => { duration.textContent = describe(error); },
  );

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
  return row;
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

function wireRecorder() {
  const button = $("record"), clock = $("record-time"), problem = $("record-error");
  let recorder = null, ticking = null;
  button.addEventListener("click", async () => {
    problem.hidden = true;
    if (!recorder) {
      recorder = new Recorder();
      try {
        await recorder.start();
      } catch (error) {
        recorder = null;
        problem.textContent = `Cannot record: ${error.message}`;
        problem.hidden = false;
        return;
      }
      button.textContent = "Stop recording";
      button.setAttribute("aria-pressed", "true");
      clock.hidden = false;
      clock.textContent = "0:00";
      ticking = setInterval(() => { clock.textContent = humanDuration(recorder.seconds); }, 250);
      announce("Recording.");
      return;
    }
    clearInterval(ticking);
    const file = await recorder.stop();
    recorder = null;
    button.textContent = "Record";
    button.setAttribute("aria-pressed", "false");
    clock.hidden = true;
    transfer(file);
  });
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
  let me = null;
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
  await loadLibrary();
}

main().catch((error) => {
  $("loading").textContent = `Soundpost could not start: ${describe(error)}`;
});
