// What every tingxie page shares: the links between pages, the API key, JSON requests, small DOM helpers.
// Each page is an ES module that imports from here (no build step).

// The pages the navigation bar links to. A new page adds one line here (and its route serves its HTML).
export const PAGES = [
  { href: "/", label: "Transcribe" },
  { href: "/live", label: "Live captions" },
  { href: "/practice", label: "Practice" },
];

const KEY_STORAGE = "tingxie.apiKey";

export const $ = (id) => document.getElementById(id);

export function show(el, visible) { el.classList.toggle("hidden", !visible); }

// 75.5 -> "01:15.50"; an hour or more -> "1:02:03.00".
export function clock(seconds) {
  const whole = Math.max(0, seconds);
  const m = Math.floor(whole / 60);
  const s = whole - m * 60;
  const h = Math.floor(m / 60);
  const mm = String(m % 60).padStart(2, "0");
  const ss = s.toFixed(2).padStart(5, "0");
  return (h ? h + ":" : "") + mm + ":" + ss;
}

// The API key the user typed once (only servers started with --api-key need one), kept in this browser.
export function apiKey() { return localStorage.getItem(KEY_STORAGE) || ""; }
export function setApiKey(key) { localStorage.setItem(KEY_STORAGE, key.trim()); }
export function authHeaders() {
  const key = apiKey();
  return key ? { Authorization: "Bearer " + key } : {};
}

// The server's message from an OpenAI-shaped error body, or a fallback.
export function errorMessage(body, fallback) {
  return (body && body.error && body.error.message) || fallback;
}

export async function getJson(path) {
  const response = await fetch(path, { headers: authHeaders() });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(errorMessage(body, response.statusText));
  return body;
}

// /health answers 503 while the model loads, with the same body: read it either way.
export async function health() {
  const response = await fetch("/health");
  return response.json();
}

// Fill <nav id="nav"> with links to every page, marking the one shown.
export function renderNav() {
  const nav = $("nav");
  if (!nav) return;
  nav.replaceChildren(...PAGES.map((page) => {
    const link = document.createElement("a");
    link.href = page.href;
    link.textContent = page.label;
    if (page.href === location.pathname) link.setAttribute("aria-current", "page");
    return link;
  }));
}

// A record button: MediaRecorder (webm/opus or ogg, which ffmpeg decodes), the elapsed time shown in `timeEl`,
// `onAudio(blob, name)` when stopped, `onError(message)` when the microphone can't be used.
export function recordButton(button, timeEl, onAudio, onError) {
  let recorder = null;
  button.addEventListener("click", async () => {
    if (recorder) {
      recorder.stop();
      return;
    }
    if (!navigator.mediaDevices || !window.MediaRecorder) {
      onError("This browser cannot record audio here (recording needs https or localhost).");
      return;
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (err) {
      onError("The microphone is not available: " + err.message);
      return;
    }
    const current = new MediaRecorder(stream);
    const chunks = [];
    const started = Date.now();
    const timer = setInterval(() => { timeEl.textContent = clock((Date.now() - started) / 1000); }, 200);
    current.addEventListener("dataavailable", (event) => chunks.push(event.data));
    current.addEventListener("stop", () => {
      clearInterval(timer);
      stream.getTracks().forEach((track) => track.stop());
      recorder = null;
      button.textContent = "● Record";
      button.setAttribute("aria-pressed", "false");
      const type = current.mimeType || "audio/webm";
      const ext = type.includes("ogg") ? "ogg" : type.includes("mp4") ? "m4a" : "webm";
      onAudio(new Blob(chunks, { type }), "recording." + ext);
    });
    current.start();
    recorder = current;
    button.textContent = "■ Stop";
    button.setAttribute("aria-pressed", "true");
  });
}

// Start a page: the nav, the API-key row, the server's default model, then `loadOptions()` (models, languages).
export async function initPage(els, setError, loadOptions) {
  renderNav();
  els.apiKey.value = apiKey();
  els.apiKey.addEventListener("input", () => setApiKey(els.apiKey.value));
  els.apiKey.addEventListener("change", loadOptions);
  try {
    const status = await health();
    show(els.keyRow, status.auth_required);
    els.model.replaceChildren(new Option(status.model, status.model));
    if (status.auth_required && !apiKey()) {
      setError("This server needs an API key: enter it below.");
      return;
    }
  } catch (err) {
    setError("The server could not be reached.");
    return;
  }
  await loadOptions();
}

// Fill the model select (keeping the choice) and the language select from the server; returns {code: "Name"}.
export async function loadModelsAndLanguages(els) {
  const models = await getJson("/v1/models");
  const current = els.model.value;
  // whisper-1 is only an alias of the default, for OpenAI clients; no need to offer it twice
  els.model.replaceChildren(...models.data.filter((m) => m.id !== "whisper-1").map((m) => new Option(m.id, m.id)));
  if (current) els.model.value = current;
  const languages = await getJson("/v1/languages");
  const names = {};
  languages.data.forEach((l) => { names[l.code] = l.name.charAt(0).toUpperCase() + l.name.slice(1); });
  els.language.replaceChildren(new Option("Detect automatically", ""),
    ...languages.data.map((l) => new Option(names[l.code] + " (" + l.code + ")", l.code)));
  return names;
}
