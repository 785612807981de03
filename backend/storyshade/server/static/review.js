// The review page's script (server/review_page.py): served as a file, never inline, so
// the page's Content-Security-Policy can refuse every inline script.
const params = new URLSearchParams(location.search);
const only = params.getAll("shot");
const fps = Math.max(1, Math.min(60, Number(params.get("fps")) || 12));
let token = sessionStorage.getItem("storyshade-token") || "";

async function api(path) {
  const headers = token ? {Authorization: "Bearer " + token} : {};
  const resp = await fetch(path, {headers});
  if (resp.status === 401) { throw new Error("token"); }
  if (!resp.ok) { throw new Error(path + ": " + resp.status); }
  return resp;
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

function caption(job) {
  // The take strip's name (the add-on sends it as the job's tag), else the job's id.
  const when = new Date(job.created * 1000).toLocaleString();
  const name = job.tag || `job ${job.id.slice(0, 6)}`;
  return [name, job.preset || "default", job.engine, when].join(" · ");
}

async function frames(job) {
  const urls = [];
  for (const n of job.frame_numbers) {
    const blob = await (await api(`/v1/jobs/${job.id}/frames/${n}`)).blob();
    urls.push(URL.createObjectURL(blob));
  }
  return urls;
}

async function show() {
  const status = document.getElementById("status");
  const jobs = (await (await api("/v1/jobs?state=done")).json()).jobs;
  const byShot = new Map();
  for (const job of jobs) {
    if (only.length && !only.includes(job.shot)) continue;
    if (!byShot.has(job.shot)) byShot.set(job.shot, []);
    byShot.get(job.shot).push(job);
  }
  const root = document.getElementById("shots");
  root.textContent = "";
  const players = [];
  for (const [shot, takes] of [...byShot].sort()) {
    const row = document.createElement("section");
    row.className = "shot";
    row.innerHTML = "<h2></h2><div class=takes></div>";
    row.querySelector("h2").textContent = `${shot} (${plural(takes.length, "take")})`;
    for (const job of takes) {
      const fig = document.createElement("figure");
      const img = document.createElement("img");
      const cap = document.createElement("figcaption");
      cap.textContent = caption(job);
      fig.append(img, cap);
      row.querySelector(".takes").append(fig);
      players.push({img, urls: await frames(job)});
    }
    root.append(row);
  }
  let tick = 0;
  const step = () => {
    for (const p of players) p.img.src = p.urls[tick % p.urls.length];
    tick += 1;
  };
  step();
  setInterval(step, 1000 / fps);
  status.textContent =
    `${plural(byShot.size, "shot")}, ${plural(players.length, "take")}, ${fps} fps`;
  document.title = `StoryShade review: ${plural(players.length, "take")}`;
}

function start() {
  show().catch(err => {
    const status = document.getElementById("status");
    if (err.message === "token") {
      document.getElementById("auth").style.display = "block";
      status.textContent = "this server needs a token";
    } else {
      status.textContent = String(err);
      status.className = "err";
    }
  });
}

document.getElementById("auth").addEventListener("submit", ev => {
  ev.preventDefault();
  token = document.getElementById("token").value;
  sessionStorage.setItem("storyshade-token", token);
  document.getElementById("auth").style.display = "none";
  start();
});
start();
