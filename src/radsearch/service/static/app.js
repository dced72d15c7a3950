// radsearch web page: send a query to POST /search (images) or POST /search/text (report text, when
// the index's run has a report encoder), show the candidates, compare side by side.
// Plain JavaScript, no dependencies. Images are fetched with the bearer token (when one is set)
// and shown through blob: URLs, so the page also works behind authentication.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { files: [], result: null, fullQuery: [], queryText: "" };

function token() { return $("token").value.trim(); }
function headers() { return token() ? { Authorization: "Bearer " + token() } : {}; }

async function fetchJSON(url, options = {}) {
  const answer = await fetch(url, { ...options, headers: { ...headers(), ...(options.headers || {}) } });
  const body = await answer.json().catch(() => ({ error: "answer is not JSON (" + answer.status + ")" }));
  if (!answer.ok) throw new Error(body.error || ("HTTP " + answer.status));
  return body;
}

async function imageURL(url) {
  const answer = await fetch(url, { headers: headers() });
  if (!answer.ok) throw new Error("image " + url + ": HTTP " + answer.status);
  return URL.createObjectURL(await answer.blob());
}

function text(tag, content, cls) {
  const el = document.createElement(tag);
  el.textContent = content;
  if (cls) el.className = cls;
  return el;
}

async function loadInfo() {
  try {
    const info = await fetchJSON("/index");
    const cal = info.calibration ? "calibrated (log10 LR and open-set decision)" : "not calibrated";
    const byText = Boolean(info.fingerprint && info.fingerprint.text_encoder);
    $("text-query").hidden = !byText;
    $("index-info").textContent = `${info.count} images of ${info.subjects} subjects · ${cal}` +
      (byText ? " · search by text" : "");
  } catch (err) {
    $("index-info").textContent = "index: " + err.message;
  }
}

function choose(files) {
  state.files = Array.from(files).slice(0, 8);
  $("chosen").textContent = state.files.length
    ? state.files.length + " image(s) chosen" : "no image chosen";
  $("go").disabled = state.files.length === 0;
  if (state.files.length) search();
}

function filters() {
  const out = [];
  if ($("side").value) out.push("side=" + $("side").value);
  if ($("view").value.trim()) out.push("view=" + $("view").value.trim());
  if ($("time-min").value !== "") out.push("time>=" + $("time-min").value);
  if ($("time-max").value !== "") out.push("time<=" + $("time-max").value);
  if ($("label").value.trim()) out.push("labels~" + $("label").value.trim());
  return out;
}

async function search() {
  if (!state.files.length) return;
  const form = new FormData();
  state.files.forEach((f, i) => form.append("images", f, "image" + i));  // names are not sent
  form.append("k", $("k").value || "10");
  form.append("by", $("by").value);
  form.append("rerank", $("rerank").value);
  form.append("side", $("query-side").value);
  filters().forEach((f) => form.append("filter", f));
  if ($("exclude").value.trim()) form.append("exclude_subject", $("exclude").value.trim());
  $("status").textContent = "searching…";
  $("go").disabled = true;
  try {
    state.result = await fetchJSON("/search", { method: "POST", body: form });
    state.queryText = "";
    $("status").textContent = "";
    await show(state.result);
  } catch (err) {
    $("status").textContent = err.message;
  } finally {
    $("go").disabled = state.files.length === 0;
  }
}

async function searchText() {
  const query = $("text").value.trim();
  if (!query) return;
  const exclude = $("exclude").value.trim();
  const body = { text: query, k: Number($("k").value || "10"),
                 filters: filters().concat(exclude ? ["subject!=" + exclude] : []) };
  $("status").textContent = "searching…";
  $("text-go").disabled = true;
  try {
    state.result = await fetchJSON("/search/text", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    state.queryText = query;
    $("status").textContent = "";
    await show(state.result);
  } catch (err) {
    $("status").textContent = err.message;
  } finally {
    $("text-go").disabled = !$("text").value.trim();
  }
}

function decisionBanner(result) {
  const box = $("decision");
  const d = result.decision;
  if (result.query.kind === "text") {
    box.className = "uncal";
    box.textContent = "Text query: images ranked by similarity to the text in the shared " +
      "image–report space (no open-set decision).";
  } else if (!d) {
    box.className = "uncal";
    box.textContent = "Scores are not calibrated: ranked by similarity only, no open-set decision.";
  } else if (d.match) {
    box.className = "match";
    box.textContent = d.message || "Candidate above the threshold.";
  } else {
    box.className = "nomatch";
    box.textContent = d.message || "No match above threshold.";
  }
}

async function show(result) {
  $("results").hidden = false;
  decisionBanner(result);
  const queries = $("query-images");
  queries.replaceChildren();
  state.fullQuery = result.query.previews;
  if (result.query.kind === "text") queries.append(text("p", "“" + state.queryText + "”", "query-text"));
  for (const src of result.query.previews) {
    const img = document.createElement("img");
    img.src = src;
    img.alt = "query image";
    queries.append(img);
  }
  const list = $("hits");
  list.replaceChildren();
  if (!result.hits.length) list.append(text("li", "No candidate passes the filters.", "meta"));
  const threshold = result.decision ? result.decision.threshold : null;
  for (const hit of result.hits) {
    const li = document.createElement("li");
    li.tabIndex = 0;
    li.dataset.id = hit.id;
    if (threshold !== null && hit.score < threshold) li.classList.add("below");
    const img = document.createElement("img");
    img.alt = "candidate " + hit.rank;
    li.append(img);
    const head = text("div", "", "head");
    head.append(text("span", "#" + hit.rank, "rank"));
    head.append(text("span", "score " + hit.score.toFixed(3), "score"));
    li.append(head);
    if (hit.log10_lr !== null && hit.log10_lr !== undefined) {
      const sign = hit.log10_lr >= 0 ? "+" : "";
      li.append(text("div", `log₁₀ LR ${sign}${hit.log10_lr.toFixed(2)}`,
                     hit.log10_lr >= 0 ? "lr" : "lr against"));
    }
    li.append(text("div", `subject ${hit.subject}`));
    const when = hit.time === null ? "time ?" : `time ${hit.time.toFixed(2)} y`;
    li.append(text("div", [when, hit.side && "side " + hit.side, hit.view && "view " + hit.view]
      .filter(Boolean).join(" · "), "meta"));
    if (hit.labels && hit.labels.length) li.append(text("div", hit.labels.join(", "), "labels"));
    li.addEventListener("click", () => compare(hit));
    li.addEventListener("keydown", (e) => { if (e.key === "Enter") compare(hit); });
    list.append(li);
    imageURL(hit.thumbnail).then((url) => { img.src = url; }).catch(() => { img.alt = "no thumbnail"; });
  }
}

// ---------------------------------------------------------------- side by side, window/level
const pixels = { left: null, right: null };

function drawTo(canvas, src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => {
      canvas.width = img.naturalWidth;
      canvas.height = img.naturalHeight;
      const ctx = canvas.getContext("2d");
      ctx.drawImage(img, 0, 0);
      resolve(ctx.getImageData(0, 0, canvas.width, canvas.height));
    };
    img.onerror = () => reject(new Error("cannot show image"));
    img.src = src;
  });
}

function applyWindow() {
  const level = Number($("level").value), width = Number($("window").value);
  const low = level - width / 2;
  for (const side of ["left", "right"]) {
    const original = pixels[side];
    if (!original) continue;
    const out = new ImageData(new Uint8ClampedArray(original.data), original.width, original.height);
    const d = out.data;
    for (let i = 0; i < d.length; i += 4) {
      const v = Math.max(0, Math.min(255, ((d[i] - low) / width) * 255));
      d[i] = d[i + 1] = d[i + 2] = v;
    }
    $(side).getContext("2d").putImageData(out, 0, 0);
  }
}

async function compare(hit) {
  $("compare").hidden = false;
  $("compare-title").textContent =
    `#${hit.rank} · subject ${hit.subject} · score ${hit.score.toFixed(3)}` +
    (hit.log10_lr === null || hit.log10_lr === undefined ? "" : ` · log₁₀LR ${hit.log10_lr.toFixed(2)}`);
  $("right-caption").textContent = `Candidate #${hit.rank} (subject ${hit.subject})`;
  const hasImage = state.fullQuery.length > 0;    // a text query has no image to show
  $("left").hidden = !hasImage;
  $("left-text").hidden = hasImage;
  $("left-text").textContent = hasImage ? "" : "“" + state.queryText + "”";
  try {
    pixels.left = hasImage ? await drawTo($("left"), state.fullQuery[0]) : null;
    const url = await imageURL(hit.full);
    pixels.right = await drawTo($("right"), url);
    URL.revokeObjectURL(url);
    applyWindow();
    $("compare").dataset.ready = "1";
  } catch (err) {
    $("compare-title").textContent = err.message;
  }
}

function closeCompare() {
  $("compare").hidden = true;
  delete $("compare").dataset.ready;
}

// ---------------------------------------------------------------- wiring
$("images").addEventListener("change", (e) => choose(e.target.files));
const drop = $("drop");
["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => {
  e.preventDefault(); drop.classList.add("over");
}));
["dragleave", "drop"].forEach((t) => drop.addEventListener(t, (e) => {
  e.preventDefault(); drop.classList.remove("over");
}));
drop.addEventListener("drop", (e) => choose(e.dataTransfer.files));
$("query-form").addEventListener("submit", (e) => { e.preventDefault(); search(); });
$("level").addEventListener("input", applyWindow);
$("window").addEventListener("input", applyWindow);
$("reset").addEventListener("click", () => { $("level").value = 128; $("window").value = 255; applyWindow(); });
$("close").addEventListener("click", closeCompare);
document.addEventListener("keydown", (e) => { if (e.key === "Escape") closeCompare(); });
$("text").addEventListener("input", () => { $("text-go").disabled = !$("text").value.trim(); });
$("text").addEventListener("keydown", (e) => {
  if (e.key === "Enter") { e.preventDefault(); searchText(); }   // not the image form's submit
});
$("text-go").addEventListener("click", searchText);
$("token").addEventListener("change", loadInfo);
loadInfo();
