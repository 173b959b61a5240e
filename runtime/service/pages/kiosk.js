// The kiosk: camera frames over the /v1/sessions WebSocket, one new camera frame per server
// answer, until the final decision. Server events (runtime/service/routers/sessions.py):
// ready, challenge (a liveness prompt: the person's own left or right, deadline_s), frame,
// final (verified, reason, liveness), error. Frames go out as the camera delivers them
// (unmirrored); only the preview is mirrored, so the arrows point the way the person sees
// themselves move.
"use strict";
const $ = (id) => document.getElementById(id);
// the preview is a mirror: a turn to the person's left shows on the screen's left
const ARROWS = { turn_left: "\u2190", turn_right: "\u2192", nod: "\u2195" };
let stream = null;
let countdown = null;
let last = null;

function show(id, text, cls) {
  const el = $(id);
  el.textContent = text;
  if (cls !== undefined) el.className = cls;
}

function cue(arrow, seconds) {
  show("arrow", arrow);
  show("countdown", seconds === null ? "" : `${seconds}`);
}

function stopCamera() {
  if (stream) stream.getTracks().forEach((t) => t.stop());
  stream = null;
}

function challenge(message) {
  clearInterval(countdown);
  let left = Math.round(message.deadline_s);
  const step = message.of > 1 ? `${message.step}/${message.of}: ` : "";
  show("prompt", `${step}${message.prompt}`);
  cue(ARROWS[message.challenge] || "", left);
  countdown = setInterval(() => {
    left -= 1;
    cue(ARROWS[message.challenge] || "", Math.max(0, left));
    if (left <= 0) clearInterval(countdown);
  }, 1000);
}

function nextVideoFrame(video) {
  // a frame the camera has not delivered before (never the same picture twice)
  return new Promise((done) => {
    if (video.requestVideoFrameCallback) video.requestVideoFrameCallback(() => done());
    else setTimeout(done, 66);
  });
}

async function frame(video, canvas) {
  await nextVideoFrame(video);
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  last = await new Promise((done) => canvas.toBlob(done, "image/jpeg", 0.9));
  return last.arrayBuffer();
}

function freeze() {
  // the last frame sent stays on screen beside the decision
  if (last) $("frame").src = URL.createObjectURL(last);
  $("camera").hidden = true;
  $("frame").hidden = false;
}

function finish(text, cls) {
  clearInterval(countdown);
  cue("", null);
  show("decision", text, cls);
  freeze();
  stopCamera();
}

async function start(event) {
  event.preventDefault();
  show("decision", "", "");
  show("prompt", "");
  cue("", null);
  show("status", "starting the camera");
  $("camera").hidden = false;
  $("frame").hidden = true;
  const key = $("key").value;
  const person = $("person").value;
  const video = $("camera");
  const canvas = document.createElement("canvas");
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  } catch (err) {
    show("status", `camera: ${err.name}`);
    return;
  }
  video.srcObject = stream;
  await new Promise((done) => { if (video.videoWidth) done(); else video.onloadeddata = done; });
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/v1/sessions`);
  let prompted = false;
  const send = async () => {
    const data = await frame(video, canvas);
    if (socket.readyState === WebSocket.OPEN) socket.send(data);
  };
  socket.onopen = () => socket.send(JSON.stringify({ type: "start", person, key }));
  socket.onmessage = async (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "ready") {
      show("prompt", "look straight at the camera");
      show("status", `liveness ${message.liveness}`);
      await send();
    } else if (message.type === "challenge") {
      prompted = true;
      challenge(message);
    } else if (message.type === "frame") {
      const score = message.score === null || message.score === undefined
        ? "no face" : message.score.toFixed(3);
      show("status", `frame ${message.frame}: ${score}, votes ${message.votes}`);
      if (!prompted && message.prompt) show("prompt", message.prompt);
      if (message.liveness === "passed") { clearInterval(countdown); cue("", null); }
      if (!message.verified) await send();
    } else if (message.type === "final") {
      show("prompt", "");
      if (message.verified) finish(`VERIFIED: ${message.person}`, "verified");
      else finish(`NOT VERIFIED: ${message.reason}`, "rejected");
      show("status", `${message.frames} frames; ${$("status").textContent}`);
    } else if (message.type === "error") {
      finish(`error ${message.status}: ${message.error}`, "rejected");
    }
  };
  socket.onclose = () => stopCamera();
}

$("operator").addEventListener("submit", start);
