// talkstream's demo page: D-ID's /talks/streams flow (or /clips/streams with a presenter), over HTTP or over
// D-ID's WebSocket API (text then goes word by word, as stream-text chunks), using only the public API any
// client uses; fluent streams and an interrupt button (stream/interrupt on the data channel, as D-ID's SDK).
// State for tests and the curious lives in window.demo.

const $ = (id) => document.getElementById(id);
const api = location.origin;
const demo = (window.demo = {
  pc: null, stream: null, sessionId: null, channel: null, api: "talks", signalling: "http", ws: null,
  videoId: null, answers: [],
  events: [], state: "–", framesDecoded: 0, connectStarted: 0, talkStarted: 0,
  timings: { connectToFirstFrame: null, talkToFirstFrame: null },
});

const hashKey = new URLSearchParams(location.hash.slice(1)).get("key");
if (hashKey) $("key").value = hashKey;

function log(text) {
  const at = (performance.now() / 1000).toFixed(3);
  demo.events.push({ at: performance.now(), text });
  const item = document.createElement("li");
  item.textContent = `${at}s  ${text}`;
  $("log").prepend(item);
}

function showError(error) {
  $("error").hidden = false;
  $("error").textContent = error;
  log(`error: ${error}`);
}

function setStream(state) {
  demo.state = state;
  $("st-stream").textContent = state;
  $("idle").textContent = state === "talking" ? "" : state;
  $("idle").hidden = state === "talking";
}

async function call(method, path, body) {
  const response = await fetch(`${api}${path}`, {
    method,
    headers: { Authorization: `Basic ${$("key").value.trim()}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!response.ok) {
    const kind = data && data.kind ? data.kind : `HTTP ${response.status}`;
    const description = data && data.description ? data.description : text;
    const details = data && data.details ? ` (${JSON.stringify(data.details)})` : "";
    throw new Error(`${kind}: ${description}${details} [${response.status}]`);
  }
  return data;
}

// -- D-ID's WebSocket API: every message gets one answer, in order ------------------------------------------

const waiting = [];

function openSocket() {
  return new Promise((resolve, reject) => {
    const url = `${api.replace(/^http/, "ws")}/ws?authorization=${encodeURIComponent(`Basic ${$("key").value.trim()}`)}`;
    const ws = new WebSocket(url);
    ws.onopen = () => { log("websocket open"); resolve(ws); };
    ws.onerror = () => reject(new Error("the WebSocket would not open (a wrong key is refused before it does)"));
    ws.onclose = (event) => {
      log(`websocket closed: ${event.code} ${event.reason}`);
      while (waiting.length) waiting.shift().reject(new Error(`the socket closed (${event.code} ${event.reason})`));
    };
    ws.onmessage = (event) => {
      const answer = JSON.parse(event.data);
      demo.answers.push(answer);
      if (answer.messageType === "error" && answer.video_id && answer.status === undefined) {
        log(`while speaking: ${answer.kind}: ${answer.description}`);
        return;
      }
      const next = waiting.shift();
      if (next) next.resolve(answer);
    };
  });
}

function request(type, payload) {
  return new Promise((resolve, reject) => {
    waiting.push({ resolve, reject });
    demo.ws.send(JSON.stringify({ type, payload }));
  }).then((answer) => {
    if (answer.messageType === "error") {
      const details = answer.details ? ` (${JSON.stringify(answer.details)})` : "";
      throw new Error(`${answer.kind}: ${answer.description}${details} [${answer.status}]`);
    }
    return answer;
  });
}

// -- the steps, over either API ---------------------------------------------------------------------------

const steps = {
  async create(body) {
    if (demo.signalling !== "websocket") return call("POST", `/${demo.api}/streams`, body);
    demo.ws = await openSocket();
    return request("init-stream", { ...body, presenter_type: demo.api === "clips" ? "clip" : "talk" });
  },
  sdp(answer) {
    const body = { answer, session_id: demo.sessionId };
    if (demo.signalling !== "websocket") return call("POST", `/${demo.api}/streams/${demo.stream}/sdp`, body);
    return request("sdp", body);
  },
  ice(body) {
    const all = { ...body, session_id: demo.sessionId };
    if (demo.signalling !== "websocket") return call("POST", `/${demo.api}/streams/${demo.stream}/ice`, all);
    return request("ice", { ...all, stream_id: demo.stream });
  },
  async say(script) {
    if (demo.signalling !== "websocket" || script.type !== "text") {
      return call("POST", `/${demo.api}/streams/${demo.stream}`, { script, session_id: demo.sessionId });
    }
    // Word by word, as a language model writes, then the blank chunk that ends the text.
    const words = script.input.split(/(?<=\s)/).filter((w) => w.trim());
    let started = null;
    for (const [index, word] of [...words, " "].entries()) {
      const answer = await request("stream-text", {
        script: { ...script, input: word }, index, stream_id: demo.stream, session_id: demo.sessionId,
      });
      if (answer.status === "started") started = answer;
    }
    return started || { video_id: null, duration: 0 };
  },
  async remove() {
    const body = { session_id: demo.sessionId };
    if (demo.signalling !== "websocket") return call("DELETE", `/${demo.api}/streams/${demo.stream}`, body);
    const answer = await request("delete-stream", { ...body, stream_id: demo.stream });
    demo.ws.close(1000, "done");
    demo.ws = null;
    return answer;
  },
};

function watchFrames() {
  const video = $("video");
  const tick = () => {
    if (!demo.pc) return;
    const quality = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : null;
    const frames = quality ? quality.totalVideoFrames : 0;
    if (frames > demo.framesDecoded) {
      const now = performance.now();
      if (demo.timings.connectToFirstFrame === null && demo.connectStarted) {
        demo.timings.connectToFirstFrame = now - demo.connectStarted;
        $("t-connect").textContent = `${demo.timings.connectToFirstFrame.toFixed(0)} ms`;
      }
      if (demo.talkStarted && demo.timings.talkToFirstFrame === null) {
        demo.timings.talkToFirstFrame = now - demo.talkStarted;
        $("t-talk").textContent = `${demo.timings.talkToFirstFrame.toFixed(0)} ms`;
      }
      demo.framesDecoded = frames;
      $("frames").textContent = String(frames);
    }
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
}

function onMessage(event) {
  const [subject, ...rest] = String(event.data).split(":");
  const payload = rest.join(":");
  log(`data channel: ${event.data}`);
  let details = null;
  try { details = payload ? JSON.parse(payload) : null; } catch { details = null; }
  const videoId = details && details.metadata ? details.metadata.videoId : null;
  if (subject === "stream/started") { setStream("talking"); demo.videoId = videoId; $("interrupt").disabled = false; }
  else if (subject === "stream/done") { setStream("connected"); demo.videoId = null; $("interrupt").disabled = true; }
  else if (subject === "stream/ready") log("stream ready");
  else if (subject === "stream/error") { setStream("connected"); showError(`talk failed: ${payload}`); }
}

async function connect() {
  $("error").hidden = true;
  $("connect").disabled = true;
  demo.connectStarted = performance.now();
  demo.timings.connectToFirstFrame = null;
  const source = $("source").value === "url" ? $("source-url").value.trim() : $("source").value;
  // "clips:ID" asks /clips/streams for a presenter; anything else is a talks stream of a photo.
  demo.api = source.startsWith("clips:") ? "clips" : "talks";
  demo.signalling = $("signalling").value;
  const body = demo.api === "clips" ? { presenter_id: source.slice(6) } : { source_url: source };
  if ($("fluent").checked) body.fluent = true;
  try {
    const created = await steps.create(body);
    demo.stream = created.id;
    demo.sessionId = created.session_id;
    setStream("created");
    log(`created ${created.id}`);
    const pc = (demo.pc = new RTCPeerConnection({ iceServers: created.ice_servers || [] }));
    const update = () => {
      $("st-connection").textContent = pc.connectionState;
      $("st-ice").textContent = pc.iceConnectionState;
      $("st-gathering").textContent = pc.iceGatheringState;
      $("st-signaling").textContent = pc.signalingState;
    };
    ["connectionstatechange", "iceconnectionstatechange", "icegatheringstatechange", "signalingstatechange"]
      .forEach((name) => pc.addEventListener(name, () => { update(); log(`${name.replace("statechange", "")}: ${
        { connection: pc.connectionState, iceconnection: pc.iceConnectionState,
          icegathering: pc.iceGatheringState, signaling: pc.signalingState }[name.replace("statechange", "")]}`); }));
    pc.addEventListener("iceconnectionstatechange", () => {
      if (["connected", "completed"].includes(pc.iceConnectionState)) {
        setStream("connected");
        $("talk").disabled = false;
      } else if (["failed", "closed"].includes(pc.iceConnectionState)) {
        setStream("closed");
        $("talk").disabled = true;
      }
    });
    pc.addEventListener("track", (event) => {
      if (event.track.kind === "video") $("video").srcObject = event.streams[0] || new MediaStream([event.track]);
      else if (!$("video").srcObject) $("video").srcObject = new MediaStream([event.track]);
      else $("video").srcObject.addTrack(event.track);
    });
    pc.addEventListener("icecandidate", (event) => {
      const c = event.candidate;
      const body = c ? { candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex } : {};
      steps.ice(body).catch((error) => log(`ice: ${error.message}`));
    });
    demo.channel = pc.createDataChannel("JanusDataChannel");
    demo.channel.onmessage = onMessage;
    await pc.setRemoteDescription(created.offer);
    setStream("negotiating");
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    await steps.sdp(answer);
    // ICE may have connected while the answer was on its way: never step back from connected.
    if (!["connected", "completed"].includes(pc.iceConnectionState)) setStream("ice");
    update();
    watchFrames();
    $("destroy").disabled = false;
  } catch (error) {
    showError(error.message);
    $("connect").disabled = false;
  }
}

async function talk() {
  $("error").hidden = true;
  const audio = $("audio-url").value.trim();
  const voice = $("voice").value;
  const script = audio
    ? { type: "audio", audio_url: audio }
    : { type: "text", input: $("text").value, ...(voice ? { provider: { type: "microsoft", voice_id: voice } } : {}) };
  demo.talkStarted = performance.now();
  demo.timings.talkToFirstFrame = null;
  try {
    const started = await steps.say(script);
    log(`talk ${started.video_id}: ${Number(started.duration).toFixed(2)} s`);
  } catch (error) {
    showError(error.message);
  }
}

function interrupt() {
  // D-ID's client SDK message, on the data channel: the talk playing stops, the queued ones are dropped.
  if (!demo.channel || demo.channel.readyState !== "open" || !demo.videoId) return;
  demo.channel.send(JSON.stringify({ type: "stream/interrupt", videoId: demo.videoId, timestamp: Date.now() }));
  log(`interrupt sent for ${demo.videoId}`);
  $("interrupt").disabled = true;
}

async function destroy() {
  try {
    if (demo.stream) await steps.remove();
  } catch (error) {
    showError(error.message);
  }
  if (demo.pc) demo.pc.close();
  demo.pc = null;
  demo.stream = null;
  setStream("closed");
  $("talk").disabled = true;
  $("interrupt").disabled = true;
  $("destroy").disabled = true;
  $("connect").disabled = false;
  log("destroyed");
}

$("source").addEventListener("change", () => { $("source-url").hidden = $("source").value !== "url"; });
$("connect").addEventListener("click", connect);
$("talk").addEventListener("click", talk);
$("interrupt").addEventListener("click", interrupt);
$("destroy").addEventListener("click", destroy);
