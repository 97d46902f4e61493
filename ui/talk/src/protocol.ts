// The Talk page <-> server protocol over one WebSocket (/ws/talk).
//
// client -> server  JSON: start | text | mute | interrupt | played ;  binary: PCM16 LE mono 16 kHz mic frames
// server -> client  JSON: ready | transcript | state | latency | flush | error ;
//                   binary: [kind u8][turn u32 LE][pts f64 LE] + payload
//                           kind 1 = video frame (JPEG), kind 2 = audio (PCM16 LE mono, AUDIO_RATE)

export const AUDIO_RATE = 24000;
export const MIC_RATE = 16000;

export type Role = "user" | "avatar";
export type AvatarState = "connecting" | "idle" | "listening" | "thinking" | "speaking";

export interface Options {
  personas: string[];
  photos: string[];
  voices: string[];
  workflows: string[];
  languages?: string[]; // the spoken languages the session can be set to (auto, ru, en)
  defaults: { persona: string; photo: string; voice: string; workflow: string; language?: string };
}

export type ServerMessage =
  | { type: "ready"; session_id: string }
  | { type: "transcript"; role: Role; text: string; final: boolean; turn: number }
  | { type: "state"; state: AvatarState }
  | { type: "latency"; turn: number; stamps: Record<string, number> }
  | { type: "flush"; turn: number }
  | { type: "error"; message: string };

export interface StartMessage {
  type: "start";
  persona: string;
  photo: string;
  voice: string;
  language: string; // "auto" | "ru" | "en": what the user speaks (the listen nodes' language)
  workflow: string;
  sample_rate: number;
}

export interface MediaPacket {
  kind: 1 | 2;
  turn: number;
  pts: number;
  payload: Uint8Array;
}

export function parseMedia(buf: ArrayBuffer): MediaPacket | null {
  if (buf.byteLength < 13) return null;
  const view = new DataView(buf);
  const kind = view.getUint8(0);
  if (kind !== 1 && kind !== 2) return null;
  return { kind, turn: view.getUint32(1, true), pts: view.getFloat64(5, true), payload: new Uint8Array(buf, 13) };
}

export function pcm16ToFloat(bytes: Uint8Array): Float32Array {
  const n = Math.floor(bytes.byteLength / 2);
  const view = new DataView(bytes.buffer, bytes.byteOffset, n * 2);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = view.getInt16(i * 2, true) / 32768;
  return out;
}

/** Wall-clock milliseconds (same clock as the server's time.time() * 1000, up to clock skew on one machine). */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}
