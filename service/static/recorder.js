// Record from the microphone with MediaRecorder; the result is a File ready to upload.

const CONTAINERS = [
  ["audio/webm;codecs=opus", ".webm"],
  ["audio/ogg;codecs=opus", ".ogg"],
  ["audio/mp4", ".m4a"],
];

export class Recorder {
  async start() {
    const supported = CONTAINERS.find(([type]) => MediaRecorder.isTypeSupported(type));
    if (!supported) throw new Error("This browser cannot record audio in a format Soundpost accepts.");
    [this.type, this.extension] = supported;
    this.stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    this.chunks = [];
    this.media = new MediaRecorder(this.stream, { mimeType: this.type });
    this.media.addEventListener("dataavailable", (e) => e.data.size && this.chunks.push(e.data));
    this.media.start(1000);
    this.startedAt = Date.now();
  }

  get seconds() {
    return this.startedAt ? Math.floor((Date.now() - this.startedAt) / 1000) : 0;
  }

  stop() {
    return new Promise((resolve) => {
      this.media.addEventListener("stop", () => {
        this.stream.getTracks().forEach((track) => track.stop());
        const stamp = new Date().toISOString().slice(0, 19).replaceAll(":", "-");
        const type = this.type.split(";")[0];
        resolve(new File(this.chunks, `recording-${stamp}${this.extension}`, { type }));
      }, { once: true });
      this.media.stop();
    });
  }
}
