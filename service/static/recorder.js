// Record from the microphone with MediaRecorder, handing each chunk on as it arrives.

const CONTAINERS = [
  ["audio/webm;codecs=opus", ".webm"],
  ["audio/ogg;codecs=opus", ".ogg"],
  ["audio/mp4", ".m4a"],
];
// A chunk a second: what a crash can lose, and how often the page stores and counts.
const TIMESLICE_MS = 1000;

// "2026-12-07_14-05-09": the wall-clock time the list shows beside it (local, not UTC); no colons, which
// some file systems refuse.
export function localStamp(date) {
  const two = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${two(date.getMonth() + 1)}-${two(date.getDate())}_`
    + `${two(date.getHours())}-${two(date.getMinutes())}-${two(date.getSeconds())}`;
}

export class Recorder {
  // onChunk(blob, elapsedMs) is called for every chunk, the last one before stop() resolves.
  constructor(onChunk) {
    this.onChunk = onChunk;
    const supported = CONTAINERS.find(([type]) => MediaRecorder.isTypeSupported(type));
    if (!supported) throw new Error("This browser cannot record audio in a format Soundpost accepts.");
    [this.mimeType, this.extension] = supported;
    this.contentType = this.mimeType.split(";")[0];
    this.filename = `recording-${localStamp(new Date())}${this.extension}`;
  }

  async start() {
    this.stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    this.media = new MediaRecorder(this.stream, { mimeType: this.mimeType });
    this.media.addEventListener("dataavailable", (e) => e.data.size && this.onChunk(e.data, this.elapsedMs));
    this.media.start(TIMESLICE_MS);
    this.startedAt = Date.now();
  }

  get elapsedMs() {
    return this.startedAt ? Date.now() - this.startedAt : 0;
  }

  get seconds() {
    return Math.floor(this.elapsedMs / 1000);
  }

  stop() {
    return new Promise((resolve) => {
      this.media.addEventListener("stop", () => {
        this.stream.getTracks().forEach((track) => track.stop());
        resolve();
      }, { once: true });
      this.media.stop();
    });
  }
}
