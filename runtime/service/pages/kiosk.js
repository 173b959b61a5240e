// The kiosk: camera frames over the /v1/sessions WebSocket, one at a time, until the server's
// final decision. Server events: ready, frame, challenge (a liveness prompt with deadline_s),
// final, error (see runtime/service/routers/sessions.py).
"use strict";
const $ = (id) => document.getElementById(id);
let stream = null;
let countdown = null;
let last = null;

function show(id, text, cls) {
  const el = $(id);
  el.textContent = text;
  if (cls !== undefined) el.className = cls;
}

function stopCamera() {
  if (stream) stream.getTracks().forEach((t) => t.stop());
  stream = null;
}

function prompt(challenge, deadline) {
  clearInterval(countdown);
  let left = deadline;
  const draw = () => show("prompt", `${challenge} (${Math.max(0, left).toFixed(0)} s)`);
  draw();
  countdown = setInterval(() => { left -= 1; draw(); if (left <= 0) clearInterval(countdown); },
                          1000);
}

async function frame(video, canvas) {
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

async function start() {
  show("decision", "", "");
  show("prompt", "");
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
  socket.onopen = () => socket.send(JSON.stringify({ type: "start", person, key }));
  socket.onmessage = async (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "ready" || (message.type === "frame" && !message.verified)) {
      if (message.type === "frame") {
        const score = message.score === null ? "no face" : message.score.toFixed(3);
        show("status", `frame ${message.frame}: ${score}, votes ${message.votes}`);
      }
      if (socket.readyState === WebSocket.OPEN) socket.send(await frame(video, canvas));
    } else if (message.type === "challenge") {
      prompt(message.challenge, message.deadline_s);
    } else if (message.type === "final") {
      clearInterval(countdown);
      show("prompt", "");
      show("decision", message.verified ? `VERIFIED: ${message.person}`
                                        : `NOT VERIFIED (${message.reason})`,
           message.verified ? "verified" : "rejected");
      show("status", `${message.frames} frames; ${$("status").textContent}`);
      freeze();
      stopCamera();
    } else if (message.type === "error") {
      show("decision", `error ${message.status}: ${message.error}`, "rejected");
      stopCamera();
    }
  };
  socket.onclose = () => stopCamera();
}

$("start").addEventListener("click", start);
