// AvatarGraph's extension for ComfyUI's frontend (served at /extensions/avatargraph/ and listed by
// GET /api/extensions). It adds:
//   - the shipped workflows (and packs' example workflows) as templates: a picker in the AvatarGraph bar
//     and commands in the top menu;
//   - socket and link colours per AvatarGraph type (IMAGE, AUDIO, FACE, ..., the streaming types);
//   - preview widgets for audio and video outputs (ComfyUI's frontend previews images itself);
//   - a button that opens the Talk page (/talk) for live conversation with the avatar;
//   - our first screen: where ComfyUI's frontend would open its default (Stable Diffusion) graph, whose nodes
//     this server does not have, it opens the avatar_chat workflow instead; templates open fitted to the view;
//   - node warnings (a node's UI output "warnings": [{text}]) shown as toasts and on the node;
//   - AvatarGraph's name and version on the About page.
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
const FIRST_SCREEN = "avatar_chat"; // opened where ComfyUI would open its default graph
let firstLoad = true; // the page's first graph: the restored workflow, or else ComfyUI's default graph

async function fetchTemplateData(template) {
  const response = await fetch(template.url, { cache: "no-store" });
  if (!response.ok) throw new Error(`template ${template.file}: HTTP ${response.status}`);
  return await response.json();
}

const firstScreen = info.templates.find((t) => t.name === FIRST_SCREEN && t.source === "avatargraph"
                                            && t.format === "ui");
let firstScreenData = null;
if (firstScreen) {
  try {
    firstScreenData = await fetchTemplateData(firstScreen);
  } catch (error) {
    console.warn("AvatarGraph: cannot read the first-screen workflow", error);
  }
}

// ComfyUI's built-in default graph is an image-generation workflow (a KSampler and its loaders) with nodes this
// server does not have: on the page's first load, such a graph is that default (a restored workflow of ours
// is not).
function isComfyDefaultGraph(graphData) {
  const nodes = Array.isArray(graphData?.nodes) ? graphData.nodes : [];
  const known = window.LiteGraph?.registered_node_types || {};
  return nodes.some((n) => n?.type === "KSampler") && nodes.some((n) => !(n?.type in known));
}

function fitView() {
  try {
    app.extensionManager?.command?.execute?.("Comfy.Canvas.FitView");
  } catch (error) {
    console.warn("AvatarGraph: cannot fit the view", error);
  }
}

// Templates ----------------------------------------------------------------------------------------------
export async function loadTemplate(template) {
  const data = await fetchTemplateData(template);
  if (Array.isArray(data?.nodes)) {
    delete data.extra?.ds; // a template opens fitted to the view, not where it was last panned to
    await app.loadGraphData(data, true, true, template.name);
  } else {
    await app.loadApiJson(data, template.name);
  }
  setTimeout(fitView, 50); // after the nodes have their sizes (widgets, previews)
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
// ComfyUI's own audio nodes: the frontend draws their player itself (ours would be a second one).
const FRONTEND_AUDIO_NODES = new Set(["PreviewAudio", "SaveAudio", "SaveAudioMP3", "SaveAudioOpus"]);

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

// Node warnings --------------------------------------------------------------------------------------------
// A node reports what the user should know about its result (a photo upscaled and soft, a slow backend on CPU)
// as UI output "warnings": [{text}]: a toast, and the text in the node's title tooltip until the next run.
function showWarnings(node, output) {
  const warnings = (Array.isArray(output?.warnings) ? output.warnings : [])
    .map((w) => (typeof w === "string" ? w : w?.text)).filter(Boolean);
  if (!warnings.length) return;
  const title = node.title || node.type;
  node.avatargraphWarnings = warnings;
  node.color = "#7a5c00";
  node.setDirtyCanvas?.(true, true);
  const toast = app.extensionManager?.toast;
  for (const text of warnings) {
    if (toast?.add) toast.add({ severity: "warn", summary: title, detail: text, life: 8000 });
    else console.warn(`${title}: ${text}`);
  }
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
  aboutPageBadges: [
    { label: `AvatarGraph ${info.version || ""}`.trim(), url: "/api/avatargraph/info", icon: "pi pi-user" },
  ],
  async beforeConfigureGraph(graphData, missingNodeTypes) {
    // ComfyUI's default graph (a fresh browser, "Load Default"): our first screen instead, in place, before the
    // frontend looks for missing nodes (so neither the red nodes nor the "install the Manager" prompt appear).
    const first = firstLoad;
    firstLoad = false;
    if (!first || !firstScreenData || !isComfyDefaultGraph(graphData)) return;
    const ours = structuredClone(firstScreenData);
    delete ours.extra?.ds;
    for (const key of Object.keys(graphData)) delete graphData[key];
    Object.assign(graphData, ours);
    if (Array.isArray(missingNodeTypes)) missingNodeTypes.length = 0;
    setTimeout(fitView, 300);
  },
  commands: [
    { id: "AvatarGraph.OpenTalk", label: "Open the Talk page", icon: "pi pi-comments", function: openTalk },
    ...templateCommands,
  ],
  menuCommands: [
    { path: ["AvatarGraph"], commands: ["AvatarGraph.OpenTalk", ...templateCommands.map((c) => c.id)] },
  ],
  async setup() {
    // ComfyUI's frontend lists a cancelled job as "Failed" (its jobStateFromTask maps Cancelled to failed); say
    // plainly that the run was cancelled, and by whom.
    api.addEventListener("execution_interrupted", () => {
      app.extensionManager?.toast?.add?.({ severity: "info", summary: "Cancelled",
        detail: "The run was cancelled; nothing after the interrupted node was run.", life: 6000 });
    });
    applySocketColours();
    setTimeout(applySocketColours, 1500); // after the colour palette is applied
    buildBar();
    window.avatargraph = { info, loadTemplate, mediaEntries, openTalk };
  },
  async beforeRegisterNodeDef(nodeType, nodeData) {
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (output) {
      const result = onExecuted?.apply(this, arguments);
      try {
        showWarnings(this, output);
        if (nodeData.output_node && !FRONTEND_AUDIO_NODES.has(nodeData.name)) showMediaPreviews(this, output);
      } catch (error) {
        console.warn("AvatarGraph: cannot show the node's output", error);
      }
      return result;
    };
  },
});
