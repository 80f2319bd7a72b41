// Speakers on the transcription page: a colour per voice, names the user can change, and the downloads rendered
// here from the diarized segments so that they carry those names.
import { clock } from "./common.js";

const COLOURS = ["#1d4ed8", "#b91c1c", "#047857", "#7c3aed", "#c2410c", "#0e7490", "#a21caf", "#4d7c0f"];

// label from the server (A, B, ... or a known name) -> { name, colour }
const speakers = new Map();
let segments = [];

export function resetSpeakers(panel) {
  speakers.clear();
  segments = [];
  panel.replaceChildren();
}

function speakerOf(label) {
  if (!speakers.has(label)) speakers.set(label, { name: label, colour: COLOURS[speakers.size % COLOURS.length] });
  return speakers.get(label);
}

// The coloured name in front of a transcript line; it follows renames.
export function speakerChip(segment) {
  segments.push(segment);
  const who = speakerOf(segment.speaker);
  const chip = document.createElement("span");
  chip.className = "speaker";
  chip.dataset.speaker = segment.speaker;
  chip.textContent = who.name;
  chip.style.cssText = `color:${who.colour};font-weight:600;flex:none;min-width:5rem`;
  return chip;
}

// One text field per speaker: renaming updates every chip and the downloads.
export function showSpeakerNames(panel, transcript, onRename) {
  panel.replaceChildren();
  const title = document.createElement("span");
  title.textContent = "Speakers:";
  panel.append(title);
  for (const [label, who] of speakers) {
    const input = document.createElement("input");
    input.type = "text";
    input.value = who.name;
    input.setAttribute("aria-label", "Name of speaker " + label);
    input.dataset.speaker = label;
    input.style.cssText = `border:2px solid ${who.colour};border-radius:6px;padding:.2rem .4rem;width:8rem;font:inherit`;
    input.addEventListener("input", () => {
      who.name = input.value.trim() || label;
      for (const chip of transcript.querySelectorAll(`.speaker[data-speaker="${CSS.escape(label)}"]`)) chip.textContent = who.name;
      onRename();
    });
    panel.append(input);
  }
}

function stamp(seconds, marker) {
  const ms = Math.round(seconds * 1000);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${pad(Math.floor(ms / 3600000))}:${pad(Math.floor(ms / 60000) % 60)}:${pad(Math.floor(ms / 1000) % 60)}${marker}${pad(ms % 1000, 3)}`;
}

// txt, srt, vtt and json of the diarized transcript, with the current names (the CLI's shapes).
export function renderDownloads(result) {
  const name = (s) => speakerOf(s.speaker).name;
  const txt = segments.map((s) => `${name(s)}: ${s.text.trim()}\n`).join("");
  const srt = segments.map((s, i) => `${i + 1}\n${stamp(s.start, ",")} --> ${stamp(s.end, ",")}\n[${name(s)}] ${s.text.trim()}\n\n`).join("");
  const vtt = "WEBVTT\n\n" + segments.map((s) => `${stamp(s.start, ".")} --> ${stamp(s.end, ".")}\n<v ${name(s)}>${s.text.trim()}\n\n`).join("");
  const json = JSON.stringify({ ...result, segments: segments.map((s) => ({ ...s, speaker: name(s) })) }, null, 1);
  return { txt, srt, vtt, json };
}

export { clock };
