// The page's client: submit a job to /api/jobs, follow its server-sent events (read with fetch so the
// API key header can be sent), show progress, time left and a preview per image, then add the images to
// the gallery. The gallery starts from /api/history (the server keeps recent results), so a reload loses
// nothing; each image can give its settings back to the form or its parameters to the clipboard.
"use strict";

const $ = (id) => document.getElementById(id);
let currentJob = null;
const shownJobs = new Set();  // job ids already in the gallery (history and live results meet)

function headers(extra = {}) {
  const key = $("api_key").value || sessionStorage.getItem("latentdiff-key") || "";
  return key ? { ...extra, "x-api-key": key } : extra;
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: headers(options.headers || {}) });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      message = body.detail || (body.error && body.error.message) || message;
    } catch (_) { /* not JSON */ }
    if (response.status === 401) $("key-box").open = true;
    const retry = response.headers.get("Retry-After");
    throw new Error(retry ? `${message} (retry after ${retry} s)` : message);
  }
  return response;
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

async function loadInfo() {
  try {
    const info = await (await api("/api/info")).json();
    $("model-name").textContent = `model: ${info.model.name}${info.model.hash ? " [" + info.model.hash + "]" : ""}`;
    const select = $("scheduler");
    select.replaceChildren(...info.schedulers.map((s) => new Option(`${s.a1111_name} (${s.name})`, s.name)));
    select.value = info.defaults.scheduler;
    $("steps").value = info.defaults.steps;
    $("steps").max = info.limits.max_steps;
    $("guidance").value = info.defaults.guidance;
    $("guidance").max = info.limits.max_guidance;
    for (const side of ["width", "height"]) {
      $(side).value = info.defaults[side];
      $(side).min = info.limits.min_image_side;
      $(side).max = info.limits.max_image_side;
      $(side).step = info.limits.image_side_multiple;
    }
    $("num_images").max = info.limits.max_images_per_request;
    $("seed").max = info.limits.max_seed;
  } catch (err) {
    setStatus(`Could not read the server's settings: ${err.message}`, true);
  }
}

// The model picker: AUTOMATIC1111's model list and switch (/sdapi/v1/sd-models, /sdapi/v1/options), shown
// only when the server has more than one model to choose from.
async function loadModels() {
  try {
    const models = await (await api("/sdapi/v1/sd-models")).json();
    if (models.length < 2) { $("model-box").hidden = true; return; }
    const options = await (await api("/sdapi/v1/options")).json();
    $("model").replaceChildren(...models.map((m) => new Option(m.model_name, m.title)));
    $("model").value = options.sd_model_checkpoint;
    $("model-box").hidden = false;
  } catch (_) {
    $("model-box").hidden = true;  // a server without these endpoints has one model
  }
}

async function switchModel() {
  const title = $("model").value;
  $("model").disabled = $("generate").disabled = true;
  setStatus(`loading model ${$("model").selectedOptions[0].text}`);
  try {
    await api("/sdapi/v1/options", {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ sd_model_checkpoint: title }),
    });
    await loadInfo();
    setStatus(`model ${$("model").selectedOptions[0].text} loaded`);
  } catch (err) {
    setStatus(`Could not switch the model: ${err.message}`, true);
    await loadModels();
  } finally {
    $("model").disabled = false;
    $("generate").disabled = currentJob !== null;
  }
}

function formBody() {
  const body = { prompt: $("prompt").value, negative_prompt: $("negative_prompt").value, scheduler: $("scheduler").value };
  for (const [name, parse] of [["steps", parseInt], ["guidance", parseFloat], ["seed", parseInt],
                               ["width", parseInt], ["height", parseInt], ["num_images", parseInt]]) {
    const raw = $(name).value.trim();
    if (raw !== "") body[name] = parse(raw, 10);
  }
  return body;
}

function formatSeconds(seconds) {
  const s = Math.round(seconds);
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`;
}

// One preview per image of the job: `previews[i]` is image i's newest one, null until its chunk runs.
function showPreviews(previews) {
  const box = $("previews");
  while (box.children.length < previews.length) {
    const img = document.createElement("img");
    img.alt = `preview of image ${box.children.length + 1} forming`;
    img.hidden = true;
    box.append(img);
  }
  previews.forEach((src, i) => {
    if (src) { box.children[i].src = src; box.children[i].hidden = false; }
  });
  box.hidden = false;
}

function clearPreviews() {
  $("previews").replaceChildren();
  $("previews").hidden = true;
}

function showProgress(job) {
  const total = job.total_steps || 1;
  $("progress").max = total;
  $("progress").value = job.step;
  if (job.status === "queued") {
    setStatus(`queued (position ${job.queue_position})`);
  } else if (job.status === "running") {
    const left = job.seconds_left == null ? "" : `, ${formatSeconds(job.seconds_left)} left`;
    setStatus(`step ${job.step} / ${job.total_steps}${left}` + (job.batch_size > job.params.num_images ? ` (batched with others: ${job.batch_size} images)` : ""));
  }
  if (job.previews) showPreviews(job.previews);
  else if (job.preview) showPreviews([job.preview]);
}

// Put a job's settings back in the form; the seed is this image's own, so Generate makes it again.
function reuseSettings(params, seed) {
  for (const name of ["prompt", "negative_prompt", "steps", "guidance", "width", "height", "scheduler"]) {
    $(name).value = params[name];
  }
  $("seed").value = seed;
  $("num_images").value = 1;
  $("prompt").focus();
  $("form").scrollIntoView({ block: "nearest" });
  setStatus(`settings of seed ${seed} loaded: Generate makes this image again`);
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
  } catch (_) {  // no clipboard permission (or not a secure context): the selection route still works
    const area = Object.assign(document.createElement("textarea"), { value: text });
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  setStatus("parameters copied");
}

function button(text, title, onClick) {
  const b = Object.assign(document.createElement("button"), { type: "button", textContent: text, title });
  b.addEventListener("click", onClick);
  return b;
}

async function figureFor(job, image) {
  const blob = await (await api(image.url)).blob();
  const url = URL.createObjectURL(blob);
  const figure = document.createElement("figure");
  figure.className = "result";
  figure.dataset.seed = image.seed;
  const img = document.createElement("img");
  img.src = url;
  img.alt = job.params.prompt;
  const caption = document.createElement("figcaption");
  caption.textContent = image.infotext;
  const link = document.createElement("a");
  link.href = url;
  link.download = `latentdiff-${image.seed}.png`;
  link.textContent = "Download PNG";
  const actions = document.createElement("div");
  actions.className = "image-actions";
  actions.append(
    button("Reuse settings", "put this image's settings (and seed) in the form", () => reuseSettings(job.params, image.seed)),
    button("Copy parameters", "copy this image's parameters (infotext) to the clipboard", () => copyText(image.infotext)),
    link);
  figure.append(img, caption, actions);
  return figure;
}

// A job's images in seed order, as one group: newest jobs go first (`atTop`), history is read newest first.
async function addToGallery(job, atTop = true) {
  if (shownJobs.has(job.id)) return;
  shownJobs.add(job.id);
  const figures = await Promise.all(job.images.map((image) => figureFor(job, image)));
  if (atTop) $("gallery").prepend(...figures);
  else $("gallery").append(...figures);
}

async function loadHistory() {
  try {
    const history = await (await api("/api/history")).json();
    for (const job of history.jobs) await addToGallery(job, false);
  } catch (err) {
    setStatus(`Could not read the results kept by the server: ${err.message}`, true);
  }
}

function finish(job) {
  currentJob = null;
  $("generate").disabled = false;
  $("cancel").disabled = true;
  if (job.status === "done") {
    $("progress").value = $("progress").max;
    setStatus(`done: ${job.images.length} image(s) in ${(job.finished_at - job.created_at).toFixed(1)} s`);
    clearPreviews();
    return addToGallery(job);
  }
  clearPreviews();  // a cancelled or failed job leaves no half-formed image behind
  if (job.status === "cancelled") setStatus("cancelled");
  else setStatus(`failed: ${job.error}`, true);
}

async function follow(jobId) {
  const response = await api(`/api/jobs/${jobId}/events`);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      let data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) event = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      if (!data) continue;  // a keep-alive comment
      const job = JSON.parse(data);
      if (event === "progress") showProgress(job);
      else return finish(job);
    }
  }
  // the stream ended without a final event (server restart, network): ask once more
  const job = await (await api(`/api/jobs/${jobId}`)).json();
  if (["done", "failed", "cancelled"].includes(job.status)) return finish(job);
  throw new Error("lost the connection to the server");
}

async function generate(event) {
  event.preventDefault();
  if ($("api_key").value) sessionStorage.setItem("latentdiff-key", $("api_key").value);
  $("generate").disabled = true;
  $("progress").value = 0;
  clearPreviews();
  setStatus("submitting");
  try {
    const job = await (await api("/api/jobs", {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(formBody()),
    })).json();
    currentJob = job.id;
    $("cancel").disabled = false;
    showProgress(job);
    await follow(job.id);
  } catch (err) {
    currentJob = null;
    $("generate").disabled = false;
    $("cancel").disabled = true;
    clearPreviews();
    setStatus(err.message, true);
  }
}

async function cancel() {
  const jobId = currentJob;
  if (!jobId) return;
  // Said before the request: the job's final event can arrive before the request returns, and its "cancelled"
  // (or "done") must be what stays on the page, not a "cancelling" written after it.
  setStatus("cancelling");
  try {
    await api(`/api/jobs/${jobId}/cancel`, { method: "POST" });
  } catch (err) {
    if (currentJob === jobId) setStatus(err.message, true);  // a job that has ended keeps its own status
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("api_key").value = sessionStorage.getItem("latentdiff-key") || "";
  $("form").addEventListener("submit", generate);
  $("cancel").addEventListener("click", cancel);
  $("model").addEventListener("change", switchModel);
  $("api_key").addEventListener("change", () => { loadInfo(); loadModels(); loadHistory(); });
  // Ctrl+Enter (Cmd+Enter on a Mac) generates from anywhere on the page, as in A1111 and ComfyUI
  document.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && !$("generate").disabled) {
      event.preventDefault();
      $("form").requestSubmit();
    }
  });
  loadInfo();
  loadModels();
  loadHistory();
});
