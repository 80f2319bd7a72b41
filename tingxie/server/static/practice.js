// Pronunciation practice: the sentence meant + a recording -> POST /v1/practice -> each word coloured by verdict, playable.
import { $, show, authHeaders, errorMessage, initPage, loadModelsAndLanguages, recordButton } from "./common.js";

const els = {
  form: $("form"), text: $("text"), drop: $("drop"), file: $("file"), fileName: $("file-name"),
  record: $("record"), recordTime: $("record-time"), model: $("model"), language: $("language"),
  keyRow: $("key-row"), apiKey: $("api-key"), check: $("check"),
  progressRow: $("progress-row"), progress: $("progress"), status: $("status"), error: $("error"),
  result: $("result"), score: $("score"), meta: $("meta"), player: $("player"), sentence: $("sentence"),
  repeat: $("repeat"), heard: $("heard"),
};

// The audio chosen, its object URL, the word playing (and where it stops), language names.
const state = { audio: null, audioName: "", url: null, playing: null, stopAt: null, languages: {} };

function setError(message) {
  els.error.textContent = message || "";
  show(els.error, Boolean(message));
}

function setStatus(text, fraction) {
  show(els.progressRow, true);
  els.status.textContent = text;
  if (fraction === null || fraction === undefined) els.progress.removeAttribute("value");
  else els.progress.value = Math.max(0, Math.min(1, fraction));
}

function canCheck() { els.check.disabled = !(state.audio && els.text.value.trim()); }

// ------------------------------------------------------------------ the recording

function useAudio(blob, name) {
  state.audio = blob;
  state.audioName = name;
  els.fileName.textContent = name + " (" + (blob.size / 1024).toFixed(0) + " KB)";
  setError("");
  canCheck();
}

els.text.addEventListener("input", canCheck);
els.file.addEventListener("change", () => { if (els.file.files.length) useAudio(els.file.files[0], els.file.files[0].name); });
["dragenter", "dragover"].forEach((type) => els.drop.addEventListener(type, (event) => {
  event.preventDefault();
  els.drop.classList.add("over");
}));
["dragleave", "drop"].forEach((type) => els.drop.addEventListener(type, () => els.drop.classList.remove("over")));
els.drop.addEventListener("drop", (event) => {
  event.preventDefault();
  if (event.dataTransfer.files[0]) useAudio(event.dataTransfer.files[0], event.dataTransfer.files[0].name);
});

// Record from the microphone (see recordButton in common.js).
recordButton(els.record, els.recordTime, useAudio, setError);

// ------------------------------------------------------------------ the result

// Play one word, from its start to its end (at least 0.15 s), outlined meanwhile.
function playWord(el, word) {
  if (state.playing) state.playing.classList.remove("playing");
  state.playing = el;
  el.classList.add("playing");
  els.player.currentTime = word.start;
  state.stopAt = Math.max(word.end, word.start + 0.15);
  els.player.play().catch(() => {});
}

els.player.addEventListener("timeupdate", () => {
  if (state.stopAt === null || els.player.currentTime < state.stopAt) return;
  els.player.pause();
  state.stopAt = null;
  if (state.playing) state.playing.classList.remove("playing");
});

function wordElement(word) {
  const el = document.createElement("span");
  el.className = "w " + word.verdict;
  el.tabIndex = 0;
  el.setAttribute("role", "button");
  Object.assign(el.dataset, { word: word.word, verdict: word.verdict, start: word.start, end: word.end });
  el.title = word.label + " · p=" + word.probability.toFixed(2) + " · " + word.start.toFixed(2) + "–" + word.end.toFixed(2) + " s";
  el.append(word.word);
  if (word.verdict === "replaced" && word.heard) {
    const heard = document.createElement("span");
    heard.className = "heard";
    heard.textContent = "heard “" + word.heard + "”";
    el.append(heard);
  }
  el.addEventListener("click", () => playWord(el, word));
  el.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); playWord(el, word); }
  });
  return el;
}

function showResult(body) {
  els.score.textContent = String(body.score);
  els.score.className = "score " + (body.score >= 85 ? "good" : body.score >= 60 ? "fair" : "poor");
  const language = state.languages[body.language] || body.language;
  els.meta.textContent = "Language: " + language + " · " + body.duration.toFixed(1) + " s of audio · model " + body.model;
  // words of Chinese, Japanese, Thai … are characters, written without spaces between them
  const spaced = !["zh", "yue", "ja", "th", "lo", "my"].includes(body.language);
  els.sentence.replaceChildren(...body.words.flatMap((word, i) => (spaced && i ? [" ", wordElement(word)] : [wordElement(word)])));
  els.repeat.textContent = body.to_repeat.length ? body.to_repeat.join(", ") : "nothing: well said";
  els.heard.textContent = body.heard;
  show(els.result, true);
}

// ------------------------------------------------------------------ the request

function check() {
  if (!state.audio || !els.text.value.trim()) return;
  setError("");
  show(els.result, false);
  if (state.url) URL.revokeObjectURL(state.url);
  state.url = URL.createObjectURL(state.audio);
  els.player.src = state.url;

  const data = new FormData();
  data.append("file", state.audio, state.audioName);
  data.append("text", els.text.value.trim());
  data.append("model", els.model.value);
  if (els.language.value && !els.language.disabled) data.append("language", els.language.value);

  const xhr = new XMLHttpRequest();
  const started = performance.now();
  xhr.open("POST", "/v1/practice");
  for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
  xhr.upload.addEventListener("progress", (event) => {
    if (event.lengthComputable) setStatus("Uploading… " + Math.round((100 * event.loaded) / event.total) + "%", event.loaded / event.total);
  });
  xhr.upload.addEventListener("load", () => setStatus("Listening…", null));
  xhr.addEventListener("load", () => {
    let body = null;
    try { body = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
    if (xhr.status === 200 && body) {
      setStatus("Done in " + ((performance.now() - started) / 1000).toFixed(1) + " s", 1);
      showResult(body);
      return;
    }
    if (xhr.status === 401) show(els.keyRow, true);
    setError("Error " + xhr.status + ": " + errorMessage(body, xhr.statusText || "the request failed"));
    show(els.progressRow, false);
  });
  xhr.addEventListener("error", () => { setError("The server could not be reached."); show(els.progressRow, false); });
  xhr.addEventListener("loadend", () => { els.check.disabled = false; });
  els.check.disabled = true;
  setStatus("Uploading…", 0);
  xhr.send(data);
}

els.form.addEventListener("submit", (event) => {
  event.preventDefault();
  check();
});

// ------------------------------------------------------------------ options from the server

// An English-only model (*.en) practises English only.
function fitLanguageToModel() {
  const englishOnly = els.model.value.endsWith(".en");
  els.language.disabled = englishOnly;
  if (englishOnly) els.language.value = "";
}
els.model.addEventListener("change", fitLanguageToModel);

async function loadOptions() {
  try {
    state.languages = await loadModelsAndLanguages(els);
    fitLanguageToModel();
    setError("");
  } catch (err) {
    setError("Could not load the server's options: " + err.message);
  }
}

initPage(els, setError, loadOptions);
