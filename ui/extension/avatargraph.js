// AvatarGraph's extension for ComfyUI's frontend (served at /extensions/avatargraph/ and listed by
// GET /api/extensions). It adds:
//   - the shipped workflows (and packs' example workflows) as templates: a picker in the AvatarGraph bar
//     and commands in the top menu;
//   - socket and link colours per AvatarGraph type (IMAGE, AUDIO, FACE, ..., the streaming types);
//   - preview widgets for audio and video outputs (ComfyUI's frontend previews images itself);
//   - a button that opens the Talk page (/talk) for live conversation with the avatar.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const EXTENSION = "AvatarGraph.Editor";
const VIDEO_EXTENSIONS = [".mp4", ".webm", ".mov", ".mkv"];
const AUDIO_EXTENSIONS = [".wav", ".mp3", ".ogg", ".flac", ".m4a", ".opus"];

async function fetchInfo() {
  try {
    const response = await api.fetchApi("/avatargraph/info", { cache: "no-store" });
    if (response.ok) return await response.json();
  } catch (error) {
    console.warn("AvatarGraph: /api/avatargraph/info is not available", error);
  }
  return { socket_colours: {}, templates: [], talk_url: "/talk" };
}

const info = await fetchInfo();

// Templates ----------------------------------------------------------------------------------------------
export async function loadTemplate(template) {
  const response = await fetch(template.url, { cache: "no-store" });
  if (!response.ok) throw new Error(`template ${template.file}: HTTP ${response.status}`);
  const data = await response.json();
  if (Array.isArray(data?.nodes)) {
    await app.loadGraphData(data, true, true, template.name);
  } else {
    await app.loadApiJson(data, template.name);
  }
  window.dispatchEvent(new CustomEvent("avatargraph:template-loaded", { detail: template }));
}

function preferredTemplate() {
  const order = ["render_avatar", "render_avatar.api", "say_text", "avatar_chat"];
  for (const name of order) {
    const found = info.templates.find((t) => t.name === name && t.source === "avatargraph");
    if (found) return found;
  }
  return info.templates[0];
}

// Colours ------------------------------------------------------------------------------------------------
function applySocketColours() {
  const colours = info.socket_colours || {};
  const canvas = app.canvas;
  const canvasClass = window.LGraphCanvas || canvas?.constructor;
  if (canvasClass?.link_type_colors) Object.assign(canvasClass.link_type_colors, colours);
  if (canvas?.default_connection_color_byType) Object.assign(canvas.default_connection_color_byType, colours);
  if (canvas?.link_type_colors) Object.assign(canvas.link_type_colors, colours);
  canvas?.setDirty?.(true, true);
}

// Media previews -----------------------------------------------------------------------------------------
function viewUrl(entry) {
  const params = new URLSearchParams({
    filename: entry.filename,
    subfolder: entry.subfolder || "",
    type: entry.type || "output",
  });
  return api.apiURL(`/view?${params}`);
}

function endsWithAny(name, extensions) {
  const lower = String(name || "").toLowerCase();
  return extensions.some((ext) => lower.endsWith(ext));
}

// Audio and video outputs to preview. ComfyUI's frontend previews the `images` list itself (an MP4 listed
// there with `animated`, as ComfyUI's own video saver does, plays in its own player), so a video is added here
// only when it comes under `gifs` or `video` alone; audio always is (the frontend previews it only for its own
// audio nodes). Each file once.
export function mediaEntries(output) {
  const media = [];
  const seen = new Set();
  const key = (e) => `${e.type || "output"}/${e.subfolder || ""}/${e.filename}`;
  for (const entry of Array.isArray(output?.images) ? output.images : []) {
    if (entry?.filename) seen.add(key(entry));
  }
  for (const [name, entries] of Object.entries(output || {})) {
    if (!Array.isArray(entries) || name === "images") continue;
    for (const entry of entries) {
      if (!entry || typeof entry !== "object" || !entry.filename || seen.has(key(entry))) continue;
      const format = String(entry.format || "");
      if (name === "audio" || format.startsWith("audio/") || endsWithAny(entry.filename, AUDIO_EXTENSIONS)) {
        media.push({ kind: "audio", url: viewUrl(entry), entry });
      } else if (name === "video" || name === "gifs" || format.startsWith("video/")
                 || endsWithAny(entry.filename, VIDEO_EXTENSIONS)) {
        media.push({ kind: "video", url: viewUrl(entry), entry });
      } else {
        continue;
      }
      seen.add(key(entry));
    }
  }
  return media;
}

function showMediaPreviews(node, output) {
  const media = mediaEntries(output);
  if (!media.length) return;
  let widget = node.widgets?.find((w) => w.name === "avatargraph_preview");
  if (!widget) {
    const container = document.createElement("div");
    container.className = "avatargraph-preview";
    container.style.cssText = "display:flex;flex-direction:column;gap:4px;width:100%;";
    widget = node.addDOMWidget("avatargraph_preview", "avatargraph_preview", container, {
      serialize: false,
      hideOnZoom: false,
      getMinHeight: () => (container.childElementCount ? container.scrollHeight || 60 : 0),
    });
  }
  const container = widget.element;
  container.replaceChildren();
  for (const item of media) {
    const element = document.createElement(item.kind);
    element.controls = true;
    element.preload = "metadata";
    element.src = item.url;
    element.dataset.filename = item.entry.filename;
    element.className = `avatargraph-${item.kind}`;
    element.style.cssText = item.kind === "video" ? "width:100%;max-height:320px;" : "width:100%;height:40px;";
    if (item.kind === "video") element.playsInline = true;
    container.appendChild(element);
  }
  const size = node.computeSize();
  node.setSize([Math.max(node.size[0], size[0], 300), Math.max(node.size[1], size[1])]);
  node.setDirtyCanvas?.(true, true);
}

// The AvatarGraph bar ------------------------------------------------------------------------------------
function openTalk() {
  window.open(info.talk_url || "/talk", "_blank", "noopener");
}

function buildBar() {
  if (document.getElementById("avatargraph-bar")) return;
  const bar = document.createElement("div");
  bar.id = "avatargraph-bar";
  bar.style.cssText = [
    "position:fixed", "left:50%", "bottom:12px", "transform:translateX(-50%)", "z-index:1000",
    "display:flex", "gap:6px", "align-items:center", "padding:6px 10px", "border-radius:8px",
    "background:rgba(30,30,30,0.92)", "color:#eee", "font:13px sans-serif", "box-shadow:0 2px 8px #0008",
  ].join(";");
  const label = document.createElement("strong");
  label.textContent = "AvatarGraph";
  const select = document.createElement("select");
  select.id = "avatargraph-templates";
  select.title = "Shipped workflows";
  select.style.cssText = "background:#222;color:#eee;border:1px solid #555;border-radius:4px;padding:2px";
  for (const template of info.templates) {
    const option = document.createElement("option");
    option.value = template.url;
    option.textContent = template.title + (template.source !== "avatargraph" ? ` [${template.source}]` : "");
    select.appendChild(option);
  }
  const button = (id, text, title, onClick) => {
    const b = document.createElement("button");
    b.id = id;
    b.textContent = text;
    b.title = title;
    b.style.cssText = "background:#3a6;color:#fff;border:0;border-radius:4px;padding:3px 10px;cursor:pointer";
    b.addEventListener("click", onClick);
    return b;
  };
  const load = button("avatargraph-load-template", "Load template", "Open the selected workflow", async () => {
    const template = info.templates.find((t) => t.url === select.value);
    if (template) await loadTemplate(template);
  });
  load.disabled = !info.templates.length;
  const talk = button("avatargraph-open-talk", "Talk ↗", "Open the Talk page: speak with the avatar", openTalk);
  talk.style.background = "#36a";
  bar.append(label, select, load, talk);
  document.body.appendChild(bar);
}

// Registration -------------------------------------------------------------------------------------------
const templateCommands = info.templates.map((template, index) => ({
  id: `AvatarGraph.Template.${index}`,
  label: `Open template: ${template.title}`,
  function: () => loadTemplate(template),
}));

app.registerExtension({
  name: EXTENSION,
  commands: [
    { id: "AvatarGraph.OpenTalk", label: "Open the Talk page", icon: "pi pi-comments", function: openTalk },
    ...templateCommands,
  ],
  menuCommands: [
    { path: ["AvatarGraph"], commands: ["AvatarGraph.OpenTalk", ...templateCommands.map((c) => c.id)] },
  ],
  async setup() {
    applySocketColours();
    setTimeout(applySocketColours, 1500); // after the colour palette is applied
    buildBar();
    window.avatargraph = { info, loadTemplate, mediaEntries, openTalk };
  },
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!nodeData.output_node) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (output) {
      const result = onExecuted?.apply(this, arguments);
      try {
        showMediaPreviews(this, output);
      } catch (error) {
        console.warn("AvatarGraph: cannot show the media preview", error);
      }
      return result;
    };
  },
});
