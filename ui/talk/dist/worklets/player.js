// Avatar speech playback with a jitter buffer. Chunks arrive as {type:"pcm", turn, samples: Float32Array};
// playback of a turn starts once `prebuffer` samples are queued; underruns play silence. Reports the
// position of the playing turn (for video sync) and the moment the first sample of each turn played.
class JitterPlayer extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const rate = sampleRate;
    this.prebuffer = Math.round(((options.processorOptions && options.processorOptions.prebufferMs) || 120) * rate / 1000);
    this.queue = [];
    this.queued = 0;
    this.offset = 0;
    this.turn = 0;
    this.playing = false;
    this.played = 0;
    this.blocks = 0;
    this.port.onmessage = (e) => {
      const m = e.data;
      if (m.type === "pcm") {
        if (m.turn !== this.turn) { this.turn = m.turn; this.played = 0; this.playing = false; this.started = false; }
        this.queue.push(m.samples);
        this.queued += m.samples.length;
      } else if (m.type === "flush") {
        this.queue = []; this.queued = 0; this.offset = 0; this.playing = false; this.played = 0;
      }
    };
  }
  process(_inputs, outputs) {
    const out = outputs[0][0];
    if (!this.playing && this.queued >= this.prebuffer) this.playing = true;
    let i = 0;
    if (this.playing) {
      while (i < out.length && this.queue.length) {
        const head = this.queue[0];
        const n = Math.min(out.length - i, head.length - this.offset);
        out.set(head.subarray(this.offset, this.offset + n), i);
        i += n; this.offset += n; this.queued -= n; this.played += n;
        if (this.offset >= head.length) { this.queue.shift(); this.offset = 0; }
      }
      if (!this.started && this.played > 0) {
        this.started = true;
        this.port.postMessage({ type: "started", turn: this.turn, at: currentTime });
      }
      if (this.queued === 0) this.playing = false;
    }
    out.fill(0, i);
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    if (++this.blocks % 4 === 0) {
      this.port.postMessage({ type: "pos", turn: this.turn, seconds: this.played / sampleRate, queued: this.queued / sampleRate });
    }
    return true;
  }
}
registerProcessor("jitter-player", JitterPlayer);
