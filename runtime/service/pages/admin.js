// The admin page: enrol from uploaded photos or camera snapshots, list, remove.
"use strict";
const $ = (id) => document.getElementById(id);
const snapshots = [];

function say(text) { $("message").textContent = text; }
function auth() { return { Authorization: `Bearer ${$("key").value}` }; }

async function call(method, path, body) {
  const response = await fetch(path, { method, headers: auth(), body });
  const data = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) throw new Error(`${response.status}: ${data.error}`);
  return data;
}

async function refresh() {
  try {
    const data = await call("GET", "/v1/people");
    const rows = $("people");
    rows.replaceChildren();
    for (const person of data.people) {
      const row = rows.insertRow();
      row.insertCell().textContent = person.name;
      row.insertCell().textContent = person.images;
      const remove = document.createElement("button");
      remove.textContent = "Remove";
      remove.addEventListener("click", async () => {
        try {
          await call("DELETE", `/v1/people/${encodeURIComponent(person.name)}`);
          say(`removed ${person.name}`);
          refresh();
        } catch (err) { say(err.message); }
      });
      row.insertCell().append(remove);
    }
  } catch (err) { say(err.message); }
}

async function enrol() {
  const name = $("name").value;
  const form = new FormData();
  for (const file of $("photos").files) form.append("images", file, file.name);
  snapshots.forEach((blob, i) => form.append("images", blob, `camera-${i + 1}.jpg`));
  try {
    const data = await call("POST", `/v1/people/${encodeURIComponent(name)}`, form);
    say(`enrolled ${data.name} from ${data.images} photos`);
    snapshots.length = 0;
    $("snaps").textContent = "0 camera photos";
    refresh();
  } catch (err) { say(err.message); }
}

async function cameraOn() {
  try {
    $("camera").srcObject = await navigator.mediaDevices.getUserMedia({ video: true });
  } catch (err) { say(`camera: ${err.name}`); }
}

function snap() {
  const video = $("camera");
  if (!video.videoWidth) { say("start the camera first"); return; }
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  canvas.toBlob((blob) => {
    snapshots.push(blob);
    $("snaps").textContent = `${snapshots.length} camera photos`;
  }, "image/jpeg", 0.92);
}

$("enrol").addEventListener("click", enrol);
$("refresh").addEventListener("click", refresh);
$("camera-on").addEventListener("click", cameraOn);
$("snap").addEventListener("click", snap);
