// The transcription page: upload or record audio, stream the transcript from /v1/audio/*, seek by timestamp, download.
import { $, show, clock, authHeaders, errorMessage, initPage, loadModelsAndLanguages, recordButton } from "./common.js";
import { resetSpeakers, speakerChip, showSpeakerNames, renderDownloads } from "./speakers.js";

const els = {
  form: $("form"), drop: $("drop"), file: $("file"), fileName: $("file-name"),
  record: $("record"), recordTime: $("record-time"),
  model: $("model"), task: $("task"), language: $("language"), words: $("words"), speakers: $("speakers"), speakerNames: $("speaker-names"),
  keyRow: $("key-row"), apiKey: $("api-key"),
  submit: $("submit"), cancel: $("cancel"),
  progressRow: $("progress-row"), progress: $("progress"), status: $("status"), error: $("error"),
  result: $("result"), player: $("player"), meta: $("meta"), transcript: $("transcript"), downloads: $("downloads"),
};
const DOWNLOADS = ["txt", "srt", "vtt", "json"];

// The one piece of page state: the audio chosen, the request in flight, the object URLs to free.
const state = { audio: null, audioName: "", xhr: null, urls: [], segments: [] };

// ------------------------------------------------------------------ helpers

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

function freeUrls() {
  state.urls.forEach((url) => URL.revokeObjectURL(url));
  state.urls = [];
}

function objectUrl(blob) {
  const url = URL.createObjectURL(blob);
  state.urls.push(url);
  return url;
}

// ------------------------------------------------------------------ choosing audio

function useAudio(blob, name) {
  state.audio = blob;
  state.audioName = name;
  els.fileName.textContent = name + " (" + (blob.size / 1024).toFixed(0) + " KB)";
  els.submit.disabled = false;
  setError("");
}

els.file.addEventListener("change", () => {
  if (els.file.files.length) useAudio(els.file.files[0], els.file.files[0].name);
});

["dragenter", "dragover"].forEach((type) => els.drop.addEventListener(type, (event) => {
  event.preventDefault();
  els.drop.classList.add("over");
}));
["dragleave", "drop"].forEach((type) => els.drop.addEventListener(type, () => els.drop.classList.remove("over")));
els.drop.addEventListener("drop", (event) => {
  event.preventDefault();
  const file = event.dataTransfer.files[0];
  if (file) useAudio(file, file.name);
});

// Record from the microphone (see recordButton in common.js).
recordButton(els.record, els.recordTime, useAudio, setError);

// ------------------------------------------------------------------ the transcript

function seek(seconds) {
  els.player.currentTime = seconds;
  els.player.play().catch(() => {});
}

function addSegment(segment) {
  state.segments.push(segment);
  const item = document.createElement("li");
  item.dataset.start = segment.start;
  item.dataset.end = segment.end;
  const stamp = document.createElement("button");
  stamp.type = "button";
  stamp.className = "ts";
  stamp.textContent = clock(segment.start);
  stamp.title = "Play from " + clock(segment.start);
  stamp.addEventListener("click", () => seek(segment.start));
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = segment.text.trim();
  if (segment.speaker !== undefined) item.append(stamp, speakerChip(segment), text);
  else item.append(stamp, text);
  els.transcript.append(item);
}

// Highlight the segment being played.
els.player.addEventListener("timeupdate", () => {
  const t = els.player.currentTime;
  for (const item of els.transcript.children) {
    item.classList.toggle("playing", t >= Number(item.dataset.start) && t < Number(item.dataset.end));
  }
});

// the download links' object URLs, made again on every rename
function freeDownloads() {
  for (const link of els.downloads.querySelectorAll("a[href]")) {
    URL.revokeObjectURL(link.href);
    state.urls = state.urls.filter((url) => url !== link.href);
  }
}

function setDownloads(formats) {
  const base = state.audioName.replace(/\.[^.]+$/, "") || "transcript";
  for (const link of els.downloads.querySelectorAll("a")) {
    const fmt = link.dataset.format;
    if (formats && formats[fmt] !== undefined) {
      const type = fmt === "json" ? "application/json" : "text/plain";
      link.href = objectUrl(new Blob([formats[fmt]], { type: type + ";charset=utf-8" }));
      link.download = base + "." + fmt;
      link.classList.remove("disabled");
    } else {
      link.removeAttribute("href");
      link.classList.add("disabled");
    }
  }
}

// ------------------------------------------------------------------ the request

// Server-sent events arrive in xhr.responseText as it grows; parse whole events only.
function eventParser(onEvent) {
  let seen = 0;
  return (text, final) => {
    let end;
    while ((end = text.indexOf("\n\n", seen)) !== -1) {
      const block = text.slice(seen, end);
      seen = end + 2;
      const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
      if (data && data !== "[DONE]") onEvent(JSON.parse(data));
    }
    if (final && text.slice(seen).trim()) onEvent(JSON.parse(text.slice(seen).replace(/^data:/, "")));
  };
}

function transcribe() {
  if (!state.audio) return;
  setError("");
  freeUrls();
  state.segments = [];
  els.transcript.replaceChildren();
  els.meta.textContent = "";
  resetSpeakers(els.speakerNames);
  setDownloads(null);
  els.player.src = objectUrl(state.audio);
  show(els.result, true);

  const task = els.task.value;
  const data = new FormData();
  data.append("file", state.audio, state.audioName);
  data.append("model", els.model.value);
  if (els.language.value) data.append("language", els.language.value);
  // who said what: one diarized answer (not streamed), downloads rendered on the page with the names the user gives
  const diarize = els.speakers.checked && task === "transcribe";
  data.append("response_format", diarize ? "diarized_json" : "verbose_json");
  data.append("stream", diarize ? "false" : "true");
  if (els.words.checked) data.append("timestamp_granularities[]", "word");
  data.append("timestamp_granularities[]", "segment");
  DOWNLOADS.forEach((fmt) => data.append("include_formats[]", fmt));

  const xhr = new XMLHttpRequest();
  state.xhr = xhr;
  const started = performance.now();
  xhr.open("POST", task === "translate" ? "/v1/audio/translations" : "/v1/audio/transcriptions");
  for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);

  let failed = false;
  const parse = eventParser((event) => {
    if (event.error) {
      failed = true;
      setError(event.error.message);
      return;
    }
    if (event.segment) addSegment(event.segment);
    if (event.type === "transcript.text.delta" && event.progress !== undefined) {
      setStatus("Transcribing… " + Math.round(event.progress * 100) + "%", event.progress);
    }
    if (event.type === "transcript.text.done") {
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      setStatus("Done in " + seconds + " s", 1);
      els.meta.textContent = "Language: " + event.language + " · " + clock(event.duration) + " of audio";
      if (!state.segments.length) els.meta.textContent += " · no speech found";
      setDownloads(event.formats);
    }
  });

  xhr.upload.addEventListener("progress", (event) => {
    if (event.lengthComputable) setStatus("Uploading… " + Math.round((100 * event.loaded) / event.total) + "%", event.loaded / event.total);
  });
  xhr.upload.addEventListener("load", () => setStatus("Waiting for the model…", null));
  xhr.addEventListener("progress", () => { if (xhr.status === 200) parse(xhr.responseText, false); });
  xhr.addEventListener("load", () => {
    if (xhr.status === 200 && diarize) {
      const result = JSON.parse(xhr.responseText);
      result.segments.forEach(addSegment);
      setStatus("Done in " + ((performance.now() - started) / 1000).toFixed(1) + " s", 1);
      els.meta.textContent = clock(result.duration) + " of audio" + (result.segments.length ? "" : " · no speech found");
      const refresh = () => { freeDownloads(); setDownloads(renderDownloads(result)); };
      showSpeakerNames(els.speakerNames, els.transcript, refresh);
      refresh();
    } else if (xhr.status === 200) {
      parse(xhr.responseText, true);
    } else {
      failed = true;
      let message = xhr.statusText || "the request failed";
      try { message = errorMessage(JSON.parse(xhr.responseText), message); } catch (_) { /* not JSON */ }
      if (xhr.status === 401) show(els.keyRow, true);
      setError("Error " + xhr.status + ": " + message);
      setStatus("Failed", 0);
    }
    if (failed) show(els.progressRow, false);
  });
  xhr.addEventListener("error", () => { setError("The server could not be reached."); show(els.progressRow, false); });
  xhr.addEventListener("loadend", () => {
    state.xhr = null;
    els.submit.disabled = false;
    show(els.cancel, false);
  });

  els.submit.disabled = true;
  show(els.cancel, true);
  setStatus("Uploading…", 0);
  xhr.send(data);
}

els.form.addEventListener("submit", (event) => {
  event.preventDefault();
  transcribe();
});
els.cancel.addEventListener("click", () => {
  if (state.xhr) state.xhr.abort();
  setStatus("Cancelled", 0);
});

// ------------------------------------------------------------------ options from the server

// English-only models (*.en) can neither translate nor take another language.
function fitOptionsToModel() {
  const englishOnly = els.model.value.endsWith(".en");
  els.task.querySelector('option[value="translate"]').disabled = englishOnly;
  if (englishOnly) els.task.value = "transcribe";
  els.language.disabled = englishOnly;
  if (englishOnly) els.language.value = "";
}
els.model.addEventListener("change", fitOptionsToModel);

async function loadOptions() {
  try {
    await loadModelsAndLanguages(els);
    fitOptionsToModel();
    setError("");
  } catch (err) {
    setError("Could not load the server's options: " + err.message);
  }
}

initPage(els, setError, loadOptions);
