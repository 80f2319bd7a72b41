// Live captions: microphone -> AudioWorklet (PCM16) -> WebSocket /v1/realtime -> partial (grey) and final (black) text;
// lag events (the server is behind real time) show how far behind it is until it has caught up.
import { $, apiKey, getJson, renderNav, setApiKey, show } from "/static/common.js";

const TARGET_RATE = 16000;  // the server's own rate: asking the AudioContext for it spares a resampling step

let session = null;  // { ws, context, stream, node }

function setStatus(text) { $("status").textContent = text; }

function showError(message) {
  $("error").textContent = message;
  show($("error"), Boolean(message));
}

function setRunning(running) {
  $("start").disabled = running;
  $("stop").disabled = !running;
  $("model").disabled = running;
  $("language").disabled = running;
  $("policy").disabled = running;
  if (!running) showLag(0, 0);
}

function showLag(backlog, level) {
  const behind = backlog > 0;
  $("lag").textContent = behind
    ? `Behind by ${backlog.toFixed(1)} s` + (level > 0 ? " — catching up with faster, less accurate decoding" : "")
    : "";
  show($("lag"), behind);
}

function addFinal(message) {
  const span = document.createElement("span");
  span.className = "final";
  span.textContent = message.text + " ";
  span.title = `${message.start.toFixed(2)} s – ${message.end.toFixed(2)} s`;
  span.dataset.start = message.start;
  span.dataset.end = message.end;
  $("finals").append(span);
  $("partial").textContent = "";
}

function onMessage(event) {
  const message = JSON.parse(event.data);
  if (message.type === "partial") {
    $("partial").textContent = message.text;
  } else if (message.type === "final") {
    addFinal(message);
  } else if (message.type === "lag") {
    showLag(message.backlog_s, message.level);
  } else if (message.type === "done") {
    setStatus("Done");
    finish();  // the stream is over: the start button comes back now, not when the socket's close arrives
  } else if (message.type === "error") {
    showError(message.message);
  }
}

function socketUrl(rate) {
  const params = new URLSearchParams({ sample_rate: String(rate) });
  if ($("model").value) params.set("model", $("model").value);
  if ($("language").value) params.set("language", $("language").value);
  if ($("policy").value) params.set("policy", $("policy").value);
  if (apiKey()) params.set("api_key", apiKey());  // browsers can't set headers on a WebSocket
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/v1/realtime?${params}`;
}

function openContext() {
  try {
    return new AudioContext({ sampleRate: TARGET_RATE });
  } catch (e) {
    return new AudioContext();  // this browser can't record at 16 kHz: send its own rate, the server resamples
  }
}

async function start() {
  showError("");
  setRunning(true);
  setStatus("Opening the microphone…");
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
  } catch (e) {
    showError(`The microphone could not be opened: ${e.message}`);
    setRunning(false);
    setStatus("Ready");
    return;
  }
  const context = openContext();
  await context.audioWorklet.addModule("/static/pcm-worklet.js");
  const source = context.createMediaStreamSource(stream);
  const node = new AudioWorkletNode(context, "pcm16-capture", { numberOfOutputs: 1 });
  const ws = new WebSocket(socketUrl(context.sampleRate));
  ws.binaryType = "arraybuffer";
  session = { ws, context, stream, node };
  ws.onmessage = onMessage;
  ws.onopen = () => {
    setStatus("Listening");
    node.port.onmessage = (e) => { if (ws.readyState === WebSocket.OPEN) ws.send(e.data); };
    source.connect(node);
    node.connect(context.destination);  // pulls the graph; the node's output is silence
  };
  ws.onclose = (e) => {
    if (session && session.ws !== ws) return;  // an earlier stream's socket closing after a new one started
    if (e.code !== 1000 && e.reason) showError(e.reason);
    if ($("status").textContent !== "Done") setStatus(e.code === 1000 ? "Done" : "Disconnected");
    finish();
  };
}

function finish() {
  stopAudio();
  setRunning(false);
  session = null;
}

function stopAudio() {
  if (!session) return;
  session.node.port.onmessage = null;
  session.stream.getTracks().forEach((t) => t.stop());
  session.node.disconnect();
  if (session.context.state !== "closed") session.context.close();
}

function stop() {
  if (!session) return;
  stopAudio();
  setStatus("Finishing…");
  $("stop").disabled = true;
  if (session.ws.readyState === WebSocket.OPEN) session.ws.send(JSON.stringify({ type: "end" }));
}

async function init() {
  renderNav();
  $("start").addEventListener("click", start);
  $("stop").addEventListener("click", stop);
  $("clear").addEventListener("click", () => { $("finals").replaceChildren(); $("partial").textContent = ""; });
  $("api-key").value = apiKey();
  $("api-key").addEventListener("change", () => { setApiKey($("api-key").value); load(); });
  await load();
}

async function load() {
  try {
    const [models, languages] = await Promise.all([getJson("/v1/models"), getJson("/v1/languages")]);
    $("model").replaceChildren(...models.data.filter((m) => m.id !== "whisper-1").map((m) => new Option(m.id, m.id)));
    $("language").replaceChildren(new Option("Automatic (English for .en models)", ""), ...languages.data.map((l) => new Option(l.name, l.code)));
    show($("key-row"), false);
    showError("");
  } catch (e) {
    show($("key-row"), true);  // most likely a server with API keys
    showError(e.message);
  }
}

init();
