// An upload's waveform on a canvas, drawn from its peaks (audiowaveform's JSON: min/max pairs per pixel),
// with the part already played in the accent colour; a click on it seeks the player there.

const PLAYED = "#1d5fd1";
const AHEAD = "#6b7683";  // 4.5:1 on white: the shape is information, so it keeps the non-text contrast

// Each column's [min, max] in -1..1, the peaks resampled to `columns` columns.
export function columnsOf(peaks, columns) {
  const pairs = Math.floor(peaks.data.length / 2);
  const scale = 2 ** ((peaks.bits || 8) - 1);
  const out = [];
  for (let c = 0; c < columns; c += 1) {
    const from = Math.floor((c * pairs) / columns), to = Math.max(from + 1, Math.floor(((c + 1) * pairs) / columns));
    let low = 0, high = 0;
    for (let i = from; i < to && i < pairs; i += 1) {
      low = Math.min(low, peaks.data[2 * i] / scale);
      high = Math.max(high, peaks.data[2 * i + 1] / scale);
    }
    out.push([low, high]);
  }
  return out;
}

export function drawWaveform(canvas, peaks, audio) {
  const ratio = window.devicePixelRatio || 1;
  const draw = () => {
    const width = Math.max(1, Math.round(canvas.clientWidth * ratio));
    const height = Math.max(1, Math.round(canvas.clientHeight * ratio));
    if (canvas.width !== width) canvas.width = width;
    if (canvas.height !== height) canvas.height = height;
    const context = canvas.getContext("2d");
    context.clearRect(0, 0, width, height);
    const bar = Math.max(1, Math.round(2 * ratio));
    const columns = columnsOf(peaks, Math.max(1, Math.floor(width / bar)));
    const played = audio.duration > 0 && Number.isFinite(audio.duration) ? audio.currentTime / audio.duration : 0;
    const middle = height / 2;
    columns.forEach(([low, high], c) => {
      context.fillStyle = c / columns.length < played ? PLAYED : AHEAD;
      const top = middle - Math.max(high, 0.02) * middle, bottom = middle - Math.min(low, -0.02) * middle;
      context.fillRect(c * bar, top, Math.max(1, bar - ratio / 2), bottom - top);
    });
  };
  draw();
  audio.addEventListener("timeupdate", draw);
  audio.addEventListener("seeked", draw);
  new ResizeObserver(draw).observe(canvas);
  canvas.addEventListener("click", (event) => {
    const seconds = audio.duration;
    if (!(seconds > 0) || !Number.isFinite(seconds)) return;
    const box = canvas.getBoundingClientRect();
    audio.currentTime = ((event.clientX - box.left) / box.width) * seconds;
  });
}
