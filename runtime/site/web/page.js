"use strict";
// The web view: live views (MJPEG), top-k and recent decisions per camera, the run's stats, and
// the vocabulary. Every request carries the page's token (?token= in the page's address).
const token = new URLSearchParams(location.search).get("token");
const headers = token ? { Authorization: "Bearer " + token } : {};
const cameras = [];
let lastSeq = 0;
let labelsVersions = "";
let vocabularySize = 0;
let waitingFor = null; // {name, submitted}: an added action not yet seen in a decision

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

async function api(path, body) {
  const opts = { headers: { ...headers }, cache: "no-store" };
  if (body !== undefined) {
    opts.method = "POST";
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  const data = await r.json().catch(() => ({ error: r.statusText }));
  if (!r.ok) throw new Error(data.error || r.statusText);
  return data;
}

function withToken(path) {
  return token ? path + "?token=" + encodeURIComponent(token) : path;
}

function pct(x) { return (100 * x).toFixed(1) + "%"; }

function camera(stream) {
  const card = el("article", "camera");
  card.dataset.stream = stream.index;
  card.append(el("h3", "", stream.camera));
  const view = el("div", "view");
  const img = el("img");
  img.alt = "live view of " + stream.camera;
  img.src = withToken(stream.mjpeg);
  const side = el("div", "side");
  const label = el("div", "label", "waiting for a decision…");
  const uses = el("div", "uses muted");
  const topk = el("ol", "topk");
  const recent = el("ul", "recent");
  const events = el("ul", "events");
  side.append(label, uses, topk, events, recent);
  view.append(img, side);
  card.append(view);
  document.getElementById("cameras").append(card);
  return { card, label, uses, topk, recent, events, name: stream.camera };
}

async function loadStreams() {
  const r = await api("/api/streams");
  for (const s of r.streams) {
    if (!cameras[s.index]) cameras[s.index] = camera(s);
    const c = cameras[s.index];
    if (!s.up) { // a camera that is down reads as down, not as its last label
      c.card.dataset.down = "1";
      c.label.textContent = "down: " + (s.down_reason || "no frames");
    } else if (c.card.dataset.down) {
      delete c.card.dataset.down;
      c.label.textContent = "back: waiting for a decision…";
    }
  }
}

async function pollStreams() {
  try { await loadStreams(); } catch (e) { setStatus("streams: " + e.message); }
  setTimeout(pollStreams, 2000);
}

function showDecision(d) {
  const c = cameras[d.stream];
  if (!c) { loadStreams(); return; } // a camera added while the run goes on
  c.label.textContent = d.label + "  " + pct(d.score);
  c.label.dataset.labelsVersion = d.labels_version;
  c.topk.replaceChildren(...d.top.map((t) => {
    const li = el("li");
    li.dataset.label = t.label;
    const bar = el("div", "bar");
    bar.style.width = pct(t.score);
    li.append(bar, el("span", "", t.label + "  " + pct(t.score)));
    return li;
  }));
  const line = el("li", "", `${d.media_time.toFixed(1)} s  ${d.label}  ${pct(d.score)}`);
  c.recent.prepend(line);
  while (c.recent.children.length > 20) c.recent.lastChild.remove();
}

function showUses(stream, names) {
  // a camera may use a subset of the actions (the site file's `labels:`), or a table of its own
  const c = cameras[stream];
  if (!c || !names.length) return;
  c.uses.dataset.classes = names.length;
  c.uses.title = names.join(", ");
  c.uses.textContent = names.length === vocabularySize ? `all ${names.length} actions`
    : `${names.length} actions: ` + names.slice(0, 6).join(", ") + (names.length > 6 ? ", …" : "");
}

async function pollDecisions() {
  try {
    const r = await api("/api/decisions?since=" + lastSeq);
    for (const d of r.decisions) {
      showDecision(d);
      lastSeq = Math.max(lastSeq, d.seq);
    }
    if (r.labels_versions.join() !== labelsVersions) {
      labelsVersions = r.labels_versions.join();
      r.classes.forEach((names, i) => showUses(i, names));
      if (waitingFor && r.classes.some((names) => names.includes(waitingFor.name))) {
        const s = ((performance.now() - waitingFor.submitted) / 1000).toFixed(2);
        setStatus(`"${waitingFor.name}" is in use: first decision ${s} s after submitting`);
        waitingFor = null;
      }
      loadVocabulary();
    }
  } catch (e) {
    setStatus("decisions: " + e.message);
  }
  setTimeout(pollDecisions, 500);
}

async function pollStats() {
  try {
    const r = await api("/api/stats");
    const run = r.run;
    document.getElementById("stats").textContent =
      `${run.decisions} decisions, ${run.decisions_per_s.toFixed(2)}/s, backend ${run.backend || "?"}, ` +
      `${r.web.clients} live view(s)`;
  } catch (e) {
    document.getElementById("stats").textContent = "stats: " + e.message;
  }
  setTimeout(pollStats, 2000);
}

async function pollEvents() {
  try {
    const r = await api("/api/events");
    if (r.events === null) return; // this run records no events: the recent decisions stand in
    for (const c of cameras) {
      const kept = (r.events[c.name] || []).slice().reverse();
      const seen = JSON.stringify(kept.map((e) => [e.id, e.phase, e.snapshot_url]));
      if (seen === c.eventsSeen) continue; // unchanged: no re-render, no snapshot fetched again
      c.eventsSeen = seen;
      c.events.replaceChildren(...kept.map((e) => {
        const li = el("li");
        li.dataset.id = e.id;
        li.dataset.phase = e.phase;
        if (e.snapshot_url) { // served once the clip writer has written it
          const img = el("img");
          img.alt = "peak of " + e.label;
          img.src = withToken(e.snapshot_url);
          li.append(img);
        }
        const span = e.end_time ? `${(e.end_time - e.start_time).toFixed(1)} s` : "now";
        li.append(el("span", "", `${new Date(e.start_time * 1000).toLocaleTimeString()}  ${e.label}  ` +
          `peak ${pct(e.peak_score)}  ${span}${e.interrupted ? " (interrupted)" : ""}`));
        return li;
      }));
      c.recent.hidden = true;
    }
  } catch (e) {
    setStatus("events: " + e.message);
  }
  setTimeout(pollEvents, 2000);
}

function setStatus(text) { document.getElementById("vocab-status").textContent = text; }
function setError(text) { document.getElementById("vocab-error").textContent = text; }

async function loadVocabulary() {
  const r = await api("/api/vocabulary");
  document.getElementById("vocab-count").textContent = `(${r.actions.length})`;
  vocabularySize = r.actions.length;
  r.in_use.forEach((names, i) => showUses(i, names));
  document.getElementById("vocab-input").maxLength = r.max_action_chars;
  document.getElementById("vocab-list").replaceChildren(...r.actions.map((a) => {
    const li = el("li");
    li.dataset.name = a.name;
    li.title = a.text;
    const remove = el("button", "", "×");
    remove.type = "button";
    remove.title = "remove " + a.name;
    remove.addEventListener("click", () => change({ remove: a.name }, null));
    li.append(el("span", "", a.text), remove);
    return li;
  }));
}

async function change(body, name) {
  const button = document.getElementById("vocab-add");
  button.disabled = true;
  setError("");
  setStatus(body.add !== undefined ? "encoding the prompts…" : "removing…");
  const submitted = performance.now();
  try {
    await api("/api/vocabulary", body);
    if (name) {
      waitingFor = { name, submitted };
      setStatus(`"${name}" written; waiting for the next decision…`);
    } else {
      setStatus("removed " + body.remove);
    }
    document.getElementById("vocab-input").value = "";
    await loadVocabulary();
  } catch (e) {
    setError(e.message);
    setStatus("");
  } finally {
    button.disabled = false;
  }
}

document.getElementById("vocab-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = document.getElementById("vocab-input").value;
  const colon = text.indexOf(":");
  const name = (colon > 0 && text.slice(colon + 1).trim() ? text.slice(0, colon) : text).trim().replace(/\s+/g, " ");
  change({ add: text }, name);
});

async function search(text) {
  // the run's archive searched with the typed action: ranges, best first, thumbnail and clip link
  const list = document.getElementById("search-results");
  const status = document.getElementById("search-status");
  document.getElementById("search-error").textContent = "";
  status.textContent = "searching…";
  try {
    const r = await api("/api/search?q=" + encodeURIComponent(text));
    const ranges = r.queries[0].ranges;
    status.textContent = `${ranges.length} range(s) in ${r.archive_rows} decisions`;
    list.replaceChildren(...ranges.map((h) => {
      const li = el("li");
      li.dataset.camera = h.camera;
      li.dataset.start = h.start;
      li.dataset.end = h.end;
      li.dataset.score = h.score;
      if (h.thumb_url) {
        const img = el("img");
        img.alt = "thumbnail of " + h.camera;
        img.src = withToken(h.thumb_url);
        li.append(img);
      }
      const when = new Date(h.start * 1000).toLocaleString();
      li.append(el("span", "", `${h.camera}  ${when}  (${h.start_media.toFixed(1)}–${h.end_media.toFixed(1)} s)  ` +
        `score ${h.score.toFixed(3)}`));
      if (h.clip_url) {
        const a = el("a", "", "clip");
        a.href = withToken(h.clip_url);
        a.target = "_blank";
        li.append(a);
      }
      return li;
    }));
  } catch (e) {
    status.textContent = "";
    document.getElementById("search-error").textContent = e.message;
  }
}

document.getElementById("search-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  search(document.getElementById("search-input").value);
});

async function start() {
  try {
    await loadStreams();
    await loadVocabulary();
  } catch (e) {
    setError(e.message);
    return;
  }
  pollDecisions();
  pollStats();
  pollEvents();
  setTimeout(pollStreams, 2000);
}

start();
