import { useEffect, useRef, useState } from "react";
import type { AvatarState, Options } from "./protocol";
import { TalkClient, type TurnLatency } from "./talk";

interface Line { role: "user" | "avatar"; text: string; turn: number; final: boolean }

const STAGES: [string, string][] = [
  ["asr_final", "ASR"],
  ["llm_first_token", "LLM 1st token"],
  ["llm_first_sentence", "1st sentence"],
  ["tts_first_chunk", "TTS 1st chunk"],
  ["first_frame_sent", "frame sent"],
  ["first_audio_played", "audio played"],
  ["first_frame_played", "frame played"],
];

const LANGUAGE_LABELS: Record<string, string> = { auto: "auto", ru: "Русский", en: "English" };
const LANGUAGE_KEY = "avatargraph.talk.language"; // remembered for this browser session

function savedLanguage(): string | null {
  try { return sessionStorage.getItem(LANGUAGE_KEY); } catch { return null; }
}

const apiBase = (import.meta.env.BASE_URL || "/talk/").replace(/\/talk\/?$/, "");

function Select(props: { label: string; value: string; options: string[]; onChange: (v: string) => void; disabled: boolean }) {
  return (
    <label className="flex flex-col text-xs text-slate-400 gap-1 min-w-0">
      {props.label}
      <select
        className="bg-slate-800 text-slate-100 rounded px-2 py-1 text-sm disabled:opacity-50"
        value={props.value}
        disabled={props.disabled}
        onChange={(e) => props.onChange(e.target.value)}
        aria-label={props.label}
      >
        {props.options.map((o) => <option key={o} value={o}>{o}</option>)}
      </select>
    </label>
  );
}

export default function App() {
  const canvas = useRef<HTMLCanvasElement>(null);
  const client = useRef<TalkClient | null>(null);
  const transcriptEnd = useRef<HTMLDivElement>(null);
  const [options, setOptions] = useState<Options | null>(null);
  const [choice, setChoice] = useState({ persona: "", photo: "", voice: "", workflow: "", language: "auto" });
  const [state, setState] = useState<AvatarState | "off">("off");
  const [lines, setLines] = useState<Line[]>([]);
  const [latency, setLatency] = useState<TurnLatency[]>([]);
  const [error, setError] = useState("");
  const [text, setText] = useState("");
  const [muted, setMuted] = useState(false);

  useEffect(() => {
    fetch(`${apiBase}/api/talk/options${location.search}`)
      .then((r) => (r.ok ? r.json() : Promise.reject(new Error(`options: HTTP ${r.status}`))))
      .then((o: Options) => {
        setOptions(o);
        const languages = o.languages ?? ["auto", "ru", "en"];
        const saved = savedLanguage();
        const language = saved && languages.includes(saved) ? saved : o.defaults.language ?? "auto";
        setChoice({ ...o.defaults, language });
      })
      .catch((e: Error) => setError(e.message));
    return () => client.current?.close();
  }, []);

  useEffect(() => {
    // Braces matter: Chromium's scrollIntoView returns a Promise, and React would call it as a cleanup function.
    transcriptEnd.current?.scrollIntoView({ block: "end" });
  }, [lines]);

  const connect = async () => {
    if (!canvas.current) return;
    setError("");
    const raw = new URLSearchParams(location.search).get("raw") === "1";
    const c = new TalkClient(canvas.current, {
      onState: setState,
      onError: setError,
      onTranscript: (role, t, final, turn) =>
        setLines((prev) => {
          const i = prev.findIndex((l) => l.role === role && l.turn === turn && !l.final);
          const line = { role, text: t, final, turn };
          if (i >= 0) { const next = prev.slice(); next[i] = role === "avatar" && !final ? { ...line, text: prev[i].text + " " + t } : line; return next; }
          return [...prev, line];
        }),
      onLatency: (l) => setLatency((prev) => [l, ...prev.filter((p) => p.turn !== l.turn)].slice(0, 8)),
    });
    client.current = c;
    await c.connect(choice, raw);
  };

  const send = (e: React.FormEvent) => {
    e.preventDefault();
    if (!text.trim() || !client.current) return;
    client.current.sendText(text.trim());
    setText("");
  };

  const connected = state !== "off";
  return (
    <div className="min-h-screen flex flex-col">
      <header className="flex flex-wrap items-end gap-3 px-4 py-3 border-b border-slate-800">
        <h1 className="text-lg font-semibold mr-auto">AvatarGraph <span className="text-slate-400 font-normal">Talk</span></h1>
        {options && (["persona", "photo", "voice", "workflow"] as const).map((k) => (
          <Select key={k} label={k} value={choice[k]} disabled={connected}
            options={options[`${k}s` as "personas" | "photos" | "voices" | "workflows"]}
            onChange={(v) => setChoice({ ...choice, [k]: v })} />
        ))}
        {options && (
          <label className="flex flex-col text-xs text-slate-400 gap-1 min-w-0">
            I speak
            <select data-testid="language" aria-label="language"
              className="bg-slate-800 text-slate-100 rounded px-2 py-1 text-sm disabled:opacity-50"
              value={choice.language} disabled={connected}
              onChange={(e) => {
                const language = e.target.value;
                try { sessionStorage.setItem(LANGUAGE_KEY, language); } catch { /* storage off: not remembered */ }
                setChoice({ ...choice, language });
              }}>
              {(options.languages ?? ["auto", "ru", "en"]).map((l) => <option key={l} value={l}>{LANGUAGE_LABELS[l] ?? l}</option>)}
            </select>
          </label>
        )}
        <button data-testid="connect" onClick={connect} disabled={connected || !options}
          className="rounded bg-emerald-600 hover:bg-emerald-500 disabled:opacity-40 px-4 py-1.5 text-sm font-medium">
          {connected ? "Connected" : "Start"}
        </button>
        <a href={`${apiBase}/`} className="text-xs text-slate-400 underline">editor</a>
      </header>

      {error && <div role="alert" className="bg-rose-900/60 text-rose-100 text-sm px-4 py-2">{error}</div>}

      <main className="flex-1 grid gap-4 p-4 md:grid-cols-[minmax(0,1fr)_minmax(280px,380px)]">
        <section className="flex flex-col items-center gap-3">
          <div className="relative w-full max-w-[512px] aspect-square rounded-xl overflow-hidden bg-slate-900 shadow-lg">
            <canvas ref={canvas} width={512} height={512} data-testid="avatar"
              className={`w-full h-full ${state === "speaking" ? "" : "avatar-idle"}`} />
            <span data-testid="state" className="absolute left-2 top-2 rounded-full bg-black/60 px-2 py-0.5 text-xs">
              {state === "off" ? "press Start" : state}
            </span>
          </div>
          <div className="flex gap-2 w-full max-w-[512px]">
            <button data-testid="mute" disabled={!connected}
              onClick={() => { const m = !muted; setMuted(m); client.current?.setMuted(m); }}
              className={`rounded px-3 py-1.5 text-sm ${muted ? "bg-amber-600" : "bg-slate-700"} disabled:opacity-40`}>
              {muted ? "Unmute mic" : "Mute mic"}
            </button>
            <button disabled={!connected} onClick={() => client.current?.interrupt()}
              className="rounded px-3 py-1.5 text-sm bg-slate-700 disabled:opacity-40">Stop her</button>
          </div>
        </section>

        <aside className="flex flex-col gap-3 min-h-0">
          <div data-testid="transcript" className="flex-1 min-h-48 max-h-[50vh] md:max-h-none overflow-y-auto rounded-lg bg-slate-900 p-3 space-y-2 text-sm">
            {lines.length === 0 && <p className="text-slate-500">Say something, or type below.</p>}
            {lines.map((l, i) => (
              <p key={i} className={l.role === "user" ? "text-sky-300" : "text-emerald-200"}>
                <span className="text-slate-500 mr-1">{l.role === "user" ? "you" : "she"}:</span>{l.text}
              </p>
            ))}
            <div ref={transcriptEnd} />
          </div>
          <form onSubmit={send} className="flex gap-2">
            <input value={text} onChange={(e) => setText(e.target.value)} disabled={!connected}
              placeholder="Type instead of speaking" aria-label="message"
              className="flex-1 min-w-0 rounded bg-slate-800 px-3 py-1.5 text-sm disabled:opacity-40" />
            <button disabled={!connected} className="rounded bg-sky-700 px-3 py-1.5 text-sm disabled:opacity-40">Send</button>
          </form>
          <div data-testid="latency" className="rounded-lg bg-slate-900 p-3 text-xs">
            <h2 className="text-slate-400 mb-1">Latency from end of speech (ms)</h2>
            {latency.length === 0 ? <p className="text-slate-500">no turns yet</p> : (
              <table className="w-full tabular-nums">
                <thead><tr className="text-slate-500"><th className="text-left pr-2">turn</th>{STAGES.map(([, l]) => <th key={l} className="text-right font-normal pl-2">{l}</th>)}</tr></thead>
                <tbody>
                  {latency.map((t) => (
                    <tr key={t.turn}>
                      <td className="pr-2">{t.turn}</td>
                      {STAGES.map(([k]) => {
                        const v = t.stamps[k] && t.stamps.end_of_speech ? Math.round(t.stamps[k] - t.stamps.end_of_speech) : null;
                        return <td key={k} className="text-right pl-2">{v ?? "–"}</td>;
                      })}
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
          </div>
        </aside>
      </main>
    </div>
  );
}
