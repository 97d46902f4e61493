// The live session client: WebSocket, microphone capture, speech playback, frame drawing in sync with it.
import {
  AUDIO_RATE, MIC_RATE, nowMs, parseMedia, pcm16ToFloat,
  type AvatarState, type ServerMessage, type StartMessage,
} from "./protocol";

export interface TurnLatency {
  turn: number;
  stamps: Record<string, number>; // epoch ms: end_of_speech, asr_final, llm_first_token, ... first_frame_played
}

export interface TalkCallbacks {
  onState(state: AvatarState): void;
  onTranscript(role: "user" | "avatar", text: string, final: boolean, turn: number): void;
  onLatency(latency: TurnLatency): void;
  onError(message: string): void;
}

interface QueuedFrame { turn: number; pts: number; bitmap: ImageBitmap }

const base = (import.meta.env.BASE_URL || "/talk/").replace(/\/talk\/?$/, "");

export class TalkClient {
  private ws: WebSocket | null = null;
  private micCtx: AudioContext | null = null;
  private micNode: AudioWorkletNode | null = null;
  private micStream: MediaStream | null = null;
  private playCtx: AudioContext | null = null;
  private player: AudioWorkletNode | null = null;
  private frames: QueuedFrame[] = [];
  private turnPos = { turn: 0, seconds: 0, at: 0 };
  private latencies = new Map<number, TurnLatency>();
  private reportedFrame = new Set<number>();
  private raf = 0;
  muted = false;

  constructor(private canvas: HTMLCanvasElement, private cb: TalkCallbacks) {}

  async connect(start: Omit<StartMessage, "type" | "sample_rate">, rawMic: boolean): Promise<void> {
    this.cb.onState("connecting");
    await this.startPlayer();
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const token = new URLSearchParams(location.search).get("token");
    const url = `${proto}://${location.host}${base}/ws/talk${token ? `?token=${encodeURIComponent(token)}` : ""}`;
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => ws.send(JSON.stringify({ type: "start", sample_rate: MIC_RATE, ...start }));
    ws.onmessage = (e) => (typeof e.data === "string" ? this.onJson(JSON.parse(e.data)) : this.onBinary(e.data));
    ws.onclose = () => this.cb.onState("connecting");
    ws.onerror = () => this.cb.onError("connection to the server failed");
    this.raf = requestAnimationFrame(this.draw);
    await this.startMic(rawMic);
  }

  close(): void {
    cancelAnimationFrame(this.raf);
    this.ws?.close();
    this.micStream?.getTracks().forEach((t) => t.stop());
    void this.micCtx?.close();
    void this.playCtx?.close();
  }

  sendText(text: string): void {
    this.ws?.send(JSON.stringify({ type: "text", text }));
  }

  setMuted(muted: boolean): void {
    this.muted = muted;
    this.micNode?.port.postMessage({ type: "mute", muted });
    this.ws?.send(JSON.stringify({ type: "mute", muted }));
  }

  interrupt(): void {
    this.ws?.send(JSON.stringify({ type: "interrupt" }));
  }

  private async startPlayer(): Promise<void> {
    const ctx = new AudioContext({ sampleRate: AUDIO_RATE, latencyHint: "interactive" });
    await ctx.audioWorklet.addModule(`${import.meta.env.BASE_URL}worklets/player.js`);
    const node = new AudioWorkletNode(ctx, "jitter-player", { outputChannelCount: [1], processorOptions: { prebufferMs: 120 } });
    node.port.onmessage = (e) => {
      const m = e.data;
      if (m.type === "pos") this.turnPos = { turn: m.turn, seconds: m.seconds, at: performance.now() };
      else if (m.type === "started") this.markPlayed(m.turn, "first_audio_played");
    };
    node.connect(ctx.destination);
    await ctx.resume();
    this.playCtx = ctx;
    this.player = node;
  }

  private async startMic(raw: boolean): Promise<void> {
    try {
      const stream = await navigator.mediaDevices.getUserMedia({
        audio: raw ? { echoCancellation: false, noiseSuppression: false, autoGainControl: false }
          : { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      });
      const ctx = new AudioContext({ sampleRate: MIC_RATE });
      await ctx.audioWorklet.addModule(`${import.meta.env.BASE_URL}worklets/mic.js`);
      const node = new AudioWorkletNode(ctx, "mic-capture");
      node.port.onmessage = (e) => { if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(e.data); };
      ctx.createMediaStreamSource(stream).connect(node);
      await ctx.resume();
      this.micCtx = ctx; this.micNode = node; this.micStream = stream;
    } catch (err) {
      this.cb.onError(`microphone unavailable (${(err as Error).message}); you can still type`);
    }
  }

  private onJson(msg: ServerMessage): void {
    switch (msg.type) {
      case "ready": this.cb.onState("listening"); break;
      case "state": this.cb.onState(msg.state); break;
      case "transcript": this.cb.onTranscript(msg.role, msg.text, msg.final, msg.turn); break;
      case "error": this.cb.onError(msg.message); break;
      case "flush":
        this.player?.port.postMessage({ type: "flush" });
        this.frames = this.frames.filter((f) => f.turn === 0);
        break;
      case "latency": {
        const entry = this.latency(msg.turn);
        Object.assign(entry.stamps, msg.stamps);
        this.cb.onLatency({ ...entry, stamps: { ...entry.stamps } });
        break;
      }
    }
  }

  private async onBinary(buf: ArrayBuffer): Promise<void> {
    const packet = parseMedia(buf);
    if (!packet) return;
    if (packet.kind === 2) {
      const samples = pcm16ToFloat(packet.payload);
      this.player?.port.postMessage({ type: "pcm", turn: packet.turn, samples }, [samples.buffer]);
      return;
    }
    const bitmap = await createImageBitmap(new Blob([packet.payload.slice()], { type: "image/jpeg" }));
    this.frames.push({ turn: packet.turn, pts: packet.pts, bitmap });
    if (this.frames.length > 200) this.frames.splice(0, this.frames.length - 200)[0]?.bitmap.close();
  }

  /** Draw the newest frame that is due: idle frames (turn 0) at once, speech frames at the audio clock. */
  private draw = (): void => {
    this.raf = requestAnimationFrame(this.draw);
    const audioNow = this.turnPos.seconds + (performance.now() - this.turnPos.at) / 1000;
    let due = -1;
    for (let i = 0; i < this.frames.length; i++) {
      const f = this.frames[i];
      if (f.turn === 0 || (f.turn === this.turnPos.turn && f.pts <= audioNow) || f.turn < this.turnPos.turn) due = i;
      else break;
    }
    if (due < 0) return;
    const frame = this.frames[due];
    for (const old of this.frames.splice(0, due + 1)) if (old !== frame) old.bitmap.close();
    const ctx = this.canvas.getContext("2d");
    if (ctx) ctx.drawImage(frame.bitmap, 0, 0, this.canvas.width, this.canvas.height);
    frame.bitmap.close();
    if (frame.turn > 0 && !this.reportedFrame.has(frame.turn)) {
      this.reportedFrame.add(frame.turn);
      this.markPlayed(frame.turn, "first_frame_played");
    }
  };

  private latency(turn: number): TurnLatency {
    let entry = this.latencies.get(turn);
    if (!entry) { entry = { turn, stamps: {} }; this.latencies.set(turn, entry); }
    return entry;
  }

  private markPlayed(turn: number, key: string): void {
    if (turn <= 0) return;
    const entry = this.latency(turn);
    if (entry.stamps[key]) return;
    entry.stamps[key] = nowMs();
    this.ws?.send(JSON.stringify({ type: "played", turn, [key]: entry.stamps[key] }));
    this.cb.onLatency({ ...entry, stamps: { ...entry.stamps } });
  }
}
