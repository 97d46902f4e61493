// Microphone capture: Float32 blocks from a 16 kHz AudioContext -> PCM16 LE frames of 20 ms.
class MicCapture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.frame = new Int16Array(320);
    this.filled = 0;
    this.muted = false;
    this.port.onmessage = (e) => { if (e.data && e.data.type === "mute") this.muted = !!e.data.muted; };
  }
  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0) return true;
    const ch = input[0];
    for (let i = 0; i < ch.length; i++) {
      const s = this.muted ? 0 : Math.max(-1, Math.min(1, ch[i]));
      this.frame[this.filled++] = s < 0 ? s * 0x8000 : s * 0x7fff;
      if (this.filled === this.frame.length) {
        const out = this.frame.buffer.slice(0);
        this.port.postMessage(out, [out]);
        this.filled = 0;
      }
    }
    return true;
  }
}
registerProcessor("mic-capture", MicCapture);
