// The page behind `ltm serve`: chat (streamed), PVQ scenes and the scene memory of namespace "web".
// Plain browser JavaScript, no build step and nothing loaded from elsewhere: the server works offline.
// Model and user text is only ever put into the page with textContent, never parsed as HTML.
"use strict";

const NAMESPACE = "web";
// Whether the server keeps scene memory (`create_app` without a store has no /v1/memory routes and
// refuses requests that name a namespace); found out by loadMemory, assumed until then.
let memoryOn = true;
const KEY_STORAGE = "ltm.apiKey";
const $ = (id) => document.getElementById(id);

// --- talking to the API -----------------------------------------------------------------------

function headers(json) {
  const result = {};
  if (json) result["Content-Type"] = "application/json";
  const key = $("api-key").value.trim();
  if (key) result["Authorization"] = `Bearer ${key}`;
  return result;
}

// The server answers errors in three shapes: ours ({"error": {"message"}}), FastAPI's validation
// ({"detail": [{"loc", "msg"}]}) and HTTPException ({"detail": "..."}); show whichever came.
async function errorText(response) {
  const raw = await response.text();
  let message = raw.trim() || response.statusText;
  try {
    const body = JSON.parse(raw);
    if (body.error && body.error.message) message = body.error.message;
    else if (typeof body.detail === "string") message = body.detail;
    else if (Array.isArray(body.detail)) {
      message = body.detail.map((d) => `${(d.loc || []).filter((part) => part !== "body").join(".")}: ${d.msg}`).join("; ");
    }
  } catch (_) { /* not JSON: keep the raw text */ }
  if (response.status === 401) message += " — enter the server's key in the API key field above";
  return `${response.status}: ${message}`;
}

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: headers(body !== undefined),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) throw Object.assign(new Error(await errorText(response)), { status: response.status });
  return response.json();
}

function showError(id, error) {
  const box = $(id);
  box.textContent = error ? String(error.message || error) : "";
  box.hidden = !error;
}

// --- chat -------------------------------------------------------------------------------------

let history = [];  // the conversation sent with each request: [{role, content}]

function bubble(role, text) {
  const item = document.createElement("div");
  item.className = `msg ${role}`;
  item.dataset.role = role;
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = role === "user" ? "you" : "model";
  const body = document.createElement("div");
  body.className = "body";
  body.textContent = text;
  item.append(who, body);
  $("messages").append(item);
  item.scrollIntoView({ block: "end" });
  return item;
}

// Reads an OpenAI-style SSE stream, calling onToken for each content delta. It reads to the end of
// the body (not only to [DONE]) so whatever the server does after the last token, such as storing
// the exchange in memory, has finished when it returns.
async function readStream(response, onToken) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    buffer += decoder.decode(value || new Uint8Array(), { stream: !done });
    const events = buffer.split(/\r?\n\r?\n/);
    buffer = done ? "" : events.pop();
    for (const event of events) {
      for (const line of event.split(/\r?\n/)) {
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (!data || data === "[DONE]") continue;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message || JSON.stringify(chunk.error));
        const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
        if (delta && delta.content) onToken(delta.content);
      }
    }
    if (done) return;
  }
}

async function sendChat(event) {
  event.preventDefault();
  const input = $("chat-input");
  const text = input.value.trim();
  if (!text) return;
  showError("chat-error", null);
  input.value = "";
  $("chat-send").disabled = true;
  bubble("user", text);
  const messages = history.concat([{ role: "user", content: text }]);
  const answer = bubble("assistant", "");
  answer.dataset.state = "streaming";
  const body = answer.querySelector(".body");
  let reply = "";
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: headers(true),
      body: JSON.stringify({
        messages,
        stream: true,
        ...(memoryOn ? { namespace: NAMESPACE } : {}),  // the server recalls from and remembers in this namespace
        max_tokens: Number($("chat-max-tokens").value) || 128,
        temperature: Number($("chat-temperature").value),
      }),
    });
    if (!response.ok) throw new Error(await errorText(response));
    // The server drops the oldest messages when the conversation outgrows the model's context.
    const dropped = Number(response.headers.get("X-LTM-Dropped-Messages") || 0);
    showNote(dropped ? `${dropped} earlier message${dropped === 1 ? " was" : "s were"} left out of this answer's prompt: ` +
      "the conversation no longer fits the model's context." : null);
    await readStream(response, (token) => {
      reply += token;
      body.textContent = reply;
      answer.scrollIntoView({ block: "end" });
    });
    history = messages.concat([{ role: "assistant", content: reply }]);
    answer.dataset.state = "done";
    if (!reply) {
      answer.classList.add("empty");
      body.textContent = "(the model ended without text)";
    }
    if (memoryOn) loadMemory();
  } catch (error) {
    // The failed turn stays on screen but not in the history, so a retry does not send it twice.
    answer.dataset.state = "error";
    answer.classList.add("failed");
    body.textContent = reply || "(no answer)";
    showError("chat-error", error);
  } finally {
    $("chat-send").disabled = false;
    input.focus();
  }
}

function showNote(text) {
  $("chat-note").textContent = text || "";
  $("chat-note").hidden = !text;
}

function newChat() {
  history = [];
  $("messages").replaceChildren();
  showError("chat-error", null);
  showNote(null);
}

// --- scenes -----------------------------------------------------------------------------------

// meta_scene fields may be plain strings or small objects ({poles, level}, {name, function});
// render either as readable text.
function plain(value) {
  if (value === null || value === undefined || value === "") return "—";
  if (Array.isArray(value)) return value.map(plain).join(" · ");
  if (typeof value === "object") {
    if (value.name) return value.function ? `${value.name} (${value.function})` : value.name;
    return Object.entries(value).filter(([, v]) => v !== null && v !== "" && !(Array.isArray(v) && !v.length))
      .map(([k, v]) => `${k}: ${plain(v)}`).join(", ") || "—";
  }
  return String(value);
}

function renderScene(answer) {
  const meta = answer.meta_scene || {};
  const roles = $("scene-roles");
  roles.replaceChildren(...(meta.roles || []).map((role) => {
    const chip = document.createElement("li");
    chip.textContent = plain(role);
    return chip;
  }));
  if (!roles.children.length) roles.append(Object.assign(document.createElement("li"), { textContent: "—" }));
  $("scene-out-tension").textContent = plain(meta.tension);
  $("scene-out-vector").textContent = plain(meta.vector);
  $("scene-out-lens").textContent = plain(meta.lens);
  $("scene-response").textContent = answer.response || "—";
  $("scene-conclusion").textContent = answer.conclusion || "—";
  $("scene-commentary").textContent = answer.commentary || "—";
  $("scene-critiques").replaceChildren(...(answer.critiques || []).map((round) => {
    const item = document.createElement("li");
    const critique = document.createElement("p");
    critique.textContent = round.critique || "(the critic wrote nothing)";
    const revised = document.createElement("p");
    revised.className = "muted";
    revised.textContent = round.revised ? "the response above is the revision after this critique" : "no revision";
    item.append(critique, revised);
    return item;
  }));
  $("scene-no-critiques").hidden = (answer.critiques || []).length > 0;
  $("scene-recalled").replaceChildren(...(answer.memory || []).map((hit) => {
    const item = document.createElement("li");
    const score = document.createElement("span");
    score.className = "muted";
    score.textContent = `${hit.score.toFixed(3)} `;
    const text = document.createElement("span");
    text.textContent = hit.text;
    item.append(score, text);
    return item;
  }));
  $("scene-no-recalled").hidden = (answer.memory || []).length > 0;
  $("scene-repaired").hidden = !answer.repaired;
  $("scene-result").hidden = false;
}

async function sendScene(event) {
  event.preventDefault();
  showError("scene-error", null);
  const request = {
    scene: $("scene-scene").value.trim(),
    tension: $("scene-tension").value.trim(),
    vector: $("scene-vector").value.trim(),
    question: $("scene-question").value.trim(),
    critic_rounds: Number($("scene-critic-rounds").value) || 0,
  };
  if (memoryOn) request.namespace = NAMESPACE;
  // lens and archetype are optional: leave them out rather than send empty strings.
  for (const field of ["lens", "archetype"]) {
    const value = $(`scene-${field}`).value.trim();
    if (value) request[field] = value;
  }
  $("scene-send").disabled = true;
  $("scene").classList.add("busy");
  try {
    renderScene(await api("POST", "/v1/scenes", request));
    if (memoryOn) loadMemory();
  } catch (error) {
    showError("scene-error", error);
  } finally {
    $("scene-send").disabled = false;
    $("scene").classList.remove("busy");
  }
}

// --- memory -----------------------------------------------------------------------------------

let lastQuery = "";  // what the list shows: "" for everything, else a search

function renderMemory(records, searched) {
  const list = $("memory-list");
  list.replaceChildren(...records.map((record) => {
    const item = document.createElement("li");
    item.dataset.id = record.id;
    const text = document.createElement("p");
    text.className = "text";
    text.textContent = record.text;
    const info = document.createElement("div");
    info.className = "info";
    const parts = [];
    if (searched && typeof record.score === "number") parts.push(`score ${record.score.toFixed(3)}`);
    if (record.meta && record.meta.kind) parts.push(record.meta.kind);
    if (record.created) parts.push(when(record.created));
    const label = document.createElement("span");
    label.className = "muted";
    label.textContent = parts.join(" · ");
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "delete secondary";
    remove.textContent = "Delete";
    remove.addEventListener("click", () => deleteMemory(record.id));
    info.append(label, remove);
    item.append(text, info);
    return item;
  }));
  $("memory-empty").textContent = searched ? "No stored scene matches." : "Nothing stored yet.";
  $("memory-empty").hidden = records.length > 0;
}

// GET /v1/memory answers {"records": [...]} (newest first), the search {"results": [...]} (best first).
async function loadMemory() {
  showError("memory-error", null);
  const q = lastQuery;
  try {
    const body = q
      ? await api("GET", `/v1/memory/search?namespace=${NAMESPACE}&q=${encodeURIComponent(q)}&k=5`)
      : await api("GET", `/v1/memory?namespace=${NAMESPACE}`);
    if (q !== lastQuery) return;  // a newer request replaced this one
    setMemoryOn(true);
    renderMemory(q ? body.results : body.records, Boolean(q));
  } catch (error) {
    if (error.status === 404 && !q) setMemoryOn(false);
    else showError("memory-error", error);
  }
}

function setMemoryOn(on) {
  memoryOn = on;
  for (const control of $("memory-form").elements) control.disabled = !on;
  $("memory-off").hidden = on;
  if (!on) {
    $("memory-list").replaceChildren();
    $("memory-empty").hidden = true;
  }
}

// created is a Unix time in seconds or an ISO string, depending on the store.
function when(created) {
  const date = new Date(typeof created === "number" ? created * 1000 : created);
  return isNaN(date) ? String(created) : date.toLocaleString();
}

async function deleteMemory(id) {
  showError("memory-error", null);
  try {
    await api("DELETE", `/v1/memory/${NAMESPACE}/${encodeURIComponent(id)}`);
    await loadMemory();
  } catch (error) {
    showError("memory-error", error);
  }
}

// --- start ------------------------------------------------------------------------------------

async function loadModel() {
  try {
    const models = await api("GET", "/v1/models");
    $("model-name").textContent = models.data.map((m) => m.id).join(", ");
    showError("chat-error", null);  // clears a 401 from before the key was entered
  } catch (error) {
    $("model-name").textContent = "";
    showError("chat-error", error);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const key = $("api-key");
  key.value = localStorage.getItem(KEY_STORAGE) || "";
  key.addEventListener("change", () => {
    localStorage.setItem(KEY_STORAGE, key.value.trim());
    loadModel();
    loadMemory();
  });
  $("chat-form").addEventListener("submit", sendChat);
  $("chat-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("chat-form").requestSubmit();
    }
  });
  $("chat-clear").addEventListener("click", newChat);
  $("scene-form").addEventListener("submit", sendScene);
  $("memory-form").addEventListener("submit", (event) => {
    event.preventDefault();
    lastQuery = $("memory-q").value.trim();
    loadMemory();
  });
  $("memory-refresh").addEventListener("click", () => {
    $("memory-q").value = "";
    lastQuery = "";
    loadMemory();
  });
  loadModel();
  loadMemory();
});
