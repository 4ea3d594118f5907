// The page's client: submit a job to /api/jobs, follow its server-sent events (read with fetch so the
// API key header can be sent), show progress and the preview, then add the images to the gallery.
"use strict";

const $ = (id) => document.getElementById(id);
let currentJob = null;

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

function formBody() {
  const body = { prompt: $("prompt").value, negative_prompt: $("negative_prompt").value, scheduler: $("scheduler").value };
  for (const [name, parse] of [["steps", parseInt], ["guidance", parseFloat], ["seed", parseInt],
                               ["width", parseInt], ["height", parseInt], ["num_images", parseInt]]) {
    const raw = $(name).value.trim();
    if (raw !== "") body[name] = parse(raw, 10);
  }
  return body;
}

function showProgress(job, preview) {
  const total = job.total_steps || 1;
  $("progress").max = total;
  $("progress").value = job.step;
  if (job.status === "queued") {
    setStatus(`queued (position ${job.queue_position})`);
  } else if (job.status === "running") {
    setStatus(`step ${job.step} / ${job.total_steps}` + (job.batch_size > job.params.num_images ? ` (batched with others: ${job.batch_size} images)` : ""));
  }
  if (preview) {
    $("preview").src = preview;
    $("preview").hidden = false;
  }
}

async function addToGallery(job) {
  for (const image of job.images) {
    const blob = await (await api(image.url)).blob();
    const url = URL.createObjectURL(blob);
    const figure = document.createElement("figure");
    figure.className = "result";
    const img = document.createElement("img");
    img.src = url;
    img.alt = job.params.prompt;
    const caption = document.createElement("figcaption");
    caption.textContent = image.infotext;
    const link = document.createElement("a");
    link.href = url;
    link.download = `latentdiff-${image.seed}.png`;
    link.textContent = "Download PNG";
    figure.append(img, caption, link);
    $("gallery").prepend(figure);
  }
}

function finish(job) {
  currentJob = null;
  $("generate").disabled = false;
  $("cancel").disabled = true;
  if (job.status === "done") {
    $("progress").value = $("progress").max;
    setStatus(`done: ${job.images.length} image(s) in ${(job.finished_at - job.created_at).toFixed(1)} s`);
    $("preview").hidden = true;
    return addToGallery(job);
  }
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
      if (event === "progress") showProgress(job, job.preview);
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
    setStatus(err.message, true);
  }
}

async function cancel() {
  if (!currentJob) return;
  try {
    await api(`/api/jobs/${currentJob}/cancel`, { method: "POST" });
    setStatus("cancelling");
  } catch (err) {
    setStatus(err.message, true);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("api_key").value = sessionStorage.getItem("latentdiff-key") || "";
  $("form").addEventListener("submit", generate);
  $("cancel").addEventListener("click", cancel);
  $("api_key").addEventListener("change", loadInfo);
  loadInfo();
});
