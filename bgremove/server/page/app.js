// The page at /: photos in, cut-outs out, through the API this page is served beside.
//
// Everything the page shows that came from outside (file names, the API's messages) is set as
// textContent, never as markup; the Content-Security-Policy (server/webpage.py) forbids inline
// script as a second wall. The key lives in this tab's sessionStorage and travels only in the
// x-api-key header of same-origin requests.
"use strict";

(function () {
  const API = "/api/remove-background/";
  const KEY_STORE = "bgremove.apiKey";        // sessionStorage: this tab only
  const OPTIONS_STORE = "bgremove.options";   // localStorage: the choices are no secret
  // Requests in flight at once: enough to keep a server's few workers busy, few enough that one
  // user's batch does not take every slot of a shared server.
  const AT_ONCE = 3;
  const IMAGE_NAME = /\.(jpe?g|png|webp)$/i;
  // Friendlier words for the API's fields; a field the API adds later is shown by its own name
  // and description.
  const LABELS = {
    mode: "Mode",
    outputFormat: "Format",
    includeMask: "Transparent background",
    smoothEdges: "Smooth edges",
    preserveShadows: "Keep shadows",
  };
  const HELP = {
    mode: "fast, balanced or quality: each takes longer than the one before.",
    includeMask: "Off: the background is filled white.",
  };

  const $ = (id) => document.getElementById(id);
  const ui = {
    credits: $("credits"), creditsLeft: $("credits-left"),
    keyForm: $("key-form"), keyInput: $("key-input"), keySet: $("key-set"),
    keyForget: $("key-forget"), options: $("options"), drop: $("drop"),
    pickFiles: $("pick-files"), pickFolder: $("pick-folder"), files: $("files"),
    folder: $("folder"), status: $("status"), alert: $("alert"),
    downloadAll: $("download-all"), resend: $("resend"), stop: $("stop"), clear: $("clear"),
    results: $("results"), template: $("item-template"),
    backdropColour: $("backdrop-colour"),
  };

  const items = [];        // every photo shown, in the order added
  const queue = [];        // photos waiting to be sent, next first
  let inFlight = 0;
  let waveCredits = null;  // the lowest balance told since requests began to overlap
  let pausedUntil = 0;     // a 429 said: send nothing before this time (ms since epoch)
  let pauseTimer = null;
  let halted = null;       // why sending stopped ({kind, text}), until the user acts
  let fields = [];         // [{name, read()}] built from the API's description
  let nextId = 1;
  let tick = null;         // the rate-limit countdown's next update

  // ---- the key ---------------------------------------------------------------------------
  let memoryKey = "";      // where sessionStorage is unavailable (some private modes)
  function storedKey() {
    try { return sessionStorage.getItem(KEY_STORE) || ""; } catch (e) { return memoryKey; }
  }
  function setKey(key) {
    memoryKey = key;
    try { if (key) sessionStorage.setItem(KEY_STORE, key); else sessionStorage.removeItem(KEY_STORE); }
    catch (e) { /* kept in memory only */ }
    showKeyState();
  }
  function showKeyState() {
    const has = Boolean(storedKey());
    ui.keyForm.hidden = has;
    ui.keySet.hidden = !has;
  }
  ui.keyForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const key = ui.keyInput.value.trim();
    if (!key) return;
    ui.keyInput.value = "";
    setKey(key);
    // A new key is a reason to go on after a refusal, not after the user's own Stop.
    if (halted && halted.kind !== "stopped") resume();
    else pump();
    render();
  });
  ui.keyForget.addEventListener("click", () => {
    setKey("");
    ui.keyInput.focus();
  });

  // ---- the API's options, from its own description ---------------------------------------
  function savedOptions() {
    try { return JSON.parse(localStorage.getItem(OPTIONS_STORE) || "{}") || {}; } catch (e) { return {}; }
  }
  function saveOptions() {
    const values = {};
    for (const field of fields) values[field.name] = field.read();
    try { localStorage.setItem(OPTIONS_STORE, JSON.stringify(values)); } catch (e) { /* fine */ }
  }
  function words(name) {
    const spaced = name.replace(/([a-z])([A-Z])/g, "$1 $2").toLowerCase();
    return spaced.charAt(0).toUpperCase() + spaced.slice(1);
  }
  function buildOptions(schema) {
    const saved = savedOptions();
    ui.options.replaceChildren();
    fields = [];
    for (const [name, spec] of Object.entries(schema.properties || {})) {
      if (name === "file" || spec.format === "binary") continue;
      const id = "option-" + name;
      const box = document.createElement("div");
      box.className = "option";
      const label = document.createElement("label");
      label.htmlFor = id;
      label.textContent = LABELS[name] || words(name);
      const help = document.createElement("span");
      help.className = "help";
      help.id = id + "-help";
      help.textContent = HELP[name] || spec.description || "";
      let control;
      let read;
      if (Array.isArray(spec.enum)) {
        control = document.createElement("select");
        for (const value of spec.enum) {
          const option = document.createElement("option");
          option.value = String(value);
          option.textContent = String(value);
          control.append(option);
        }
        const initial = saved[name] !== undefined && spec.enum.map(String).includes(saved[name])
          ? saved[name] : spec.default;
        if (initial !== undefined) control.value = String(initial);
        read = () => control.value;
      } else if (spec.type === "boolean") {
        box.classList.add("check");
        control = document.createElement("input");
        control.type = "checkbox";
        control.checked = saved[name] !== undefined ? saved[name] === "true" : Boolean(spec.default);
        read = () => (control.checked ? "true" : "false");
      } else {
        control = document.createElement("input");
        control.type = spec.type === "integer" || spec.type === "number" ? "number" : "text";
        if (spec.minimum !== undefined) control.min = String(spec.minimum);
        if (spec.maximum !== undefined) control.max = String(spec.maximum);
        const initial = saved[name] !== undefined ? saved[name] : spec.default;
        if (initial !== undefined && initial !== null) control.value = String(initial);
        read = () => control.value.trim();
      }
      control.id = id;
      control.name = name;
      if (help.textContent) control.setAttribute("aria-describedby", help.id);
      control.addEventListener("change", saveOptions);
      if (box.classList.contains("check")) {
        const text = document.createElement("div");
        text.append(label, document.createElement("br"), help);
        box.append(control, text);
      } else {
        box.append(label, control, help);
      }
      ui.options.append(box);
      // Text fields left empty are not sent: the API's default applies.
      fields.push({ name, read, optional: control.type === "text" || control.type === "number" });
    }
  }
  async function loadOptions() {
    try {
      const response = await fetch("/openapi.json", { credentials: "omit" });
      if (!response.ok) throw new Error("the server answered " + response.status);
      const spec = await response.json();
      const body = spec.paths[API].post.requestBody.content["multipart/form-data"].schema;
      buildOptions(body);
    } catch (error) {
      const note = document.createElement("p");
      note.className = "notice error";
      note.textContent = "Could not read the API's options (" + error.message +
        "): photos are sent with the API's defaults.";
      ui.options.replaceChildren(note);
      fields = [];
    }
  }

  // ---- adding photos ---------------------------------------------------------------------
  function add(files) {
    let added = 0;
    for (const { file, path } of files) {
      const item = { id: nextId++, file, path: path || file.name, state: "waiting", text: "" };
      item.el = makeCard(item);
      items.push(item);
      queue.push(item);
      added++;
    }
    if (!added) return;
    if (!storedKey()) ui.keyInput.focus();
    pump();
    render();
  }
  function fromInput(input, inFolder) {
    const files = [];
    for (const file of input.files) {
      const path = file.webkitRelativePath || file.name;
      if (inFolder && !looksLikeImage(file, path)) continue;
      files.push({ file, path });
    }
    input.value = "";  // the same files may be chosen again
    add(files);
  }
  function looksLikeImage(file, path) {
    const name = path.split("/").pop();
    return !name.startsWith(".") && (IMAGE_NAME.test(name) || /^image\/(jpeg|png|webp)$/.test(file.type));
  }
  ui.pickFiles.addEventListener("click", () => ui.files.click());
  ui.pickFolder.addEventListener("click", () => ui.folder.click());
  ui.files.addEventListener("change", () => fromInput(ui.files, false));
  ui.folder.addEventListener("change", () => fromInput(ui.folder, true));
  if ("webkitdirectory" in ui.folder) {
    ui.folder.webkitdirectory = true;
    ui.pickFolder.hidden = false;
  }

  // Dropped folders are walked; in them only image files are taken (a folder may hold anything).
  function readEntries(reader) {
    return new Promise((resolve, reject) => reader.readEntries(resolve, reject));
  }
  async function walk(entry, out) {
    if (entry.isFile) {
      const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
      const path = entry.fullPath.replace(/^\//, "");
      if (looksLikeImage(file, path)) out.push({ file, path });
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await readEntries(reader);  // a directory is read a hundred at a time
        if (!batch.length) break;
        for (const child of batch) await walk(child, out);
      }
    }
  }
  async function dropped(transfer) {
    const files = [];
    const folders = [];
    // Entries are taken now: the transfer's items are gone once the event returns.
    for (const item of transfer.items ? Array.from(transfer.items) : []) {
      if (item.kind !== "file") continue;
      const entry = item.webkitGetAsEntry ? item.webkitGetAsEntry() : null;
      if (entry && entry.isDirectory) folders.push(entry);
      else {
        const file = item.getAsFile();
        if (file) files.push({ file, path: file.name });
      }
    }
    if (!transfer.items) for (const file of transfer.files) files.push({ file, path: file.name });
    for (const folder of folders) {
      try { await walk(folder, files); } catch (error) { showAlert("Could not read a dropped folder: " + error.message); }
    }
    add(files);
  }
  let dragDepth = 0;
  document.addEventListener("dragenter", (event) => {
    if (!hasFiles(event)) return;
    dragDepth++;
    ui.drop.classList.add("over");
  });
  document.addEventListener("dragleave", () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) ui.drop.classList.remove("over");
  });
  document.addEventListener("dragover", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();  // anywhere on the page takes the drop
    event.dataTransfer.dropEffect = "copy";
  });
  document.addEventListener("drop", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    dragDepth = 0;
    ui.drop.classList.remove("over");
    dropped(event.dataTransfer);
  });
  function hasFiles(event) {
    return event.dataTransfer && Array.from(event.dataTransfer.types || []).includes("Files");
  }

  // ---- sending ---------------------------------------------------------------------------
  function pump() {
    if (halted || !storedKey()) return;
    const now = Date.now();
    if (now < pausedUntil) {
      clearTimeout(pauseTimer);
      pauseTimer = setTimeout(() => { pauseTimer = null; pump(); render(); }, pausedUntil - now);
      return;
    }
    while (inFlight < AT_ONCE && queue.length && !halted) {
      const item = queue.shift();
      inFlight++;
      send(item).finally(() => {
        inFlight--;
        if (!inFlight) waveCredits = null;
        pump();
        render();
      });
    }
  }

  async function send(item) {
    setState(item, "sending", "Sending…");
    render();
    await optionsLoaded;  // the first photos may be dropped before the options are read
    const form = new FormData();
    for (const field of fields) {
      const value = field.read();
      if (field.optional && value === "") continue;
      form.append(field.name, value);
    }
    form.append("file", item.file, item.file.name);
    let response;
    try {
      response = await fetch(API, {
        method: "POST", body: form, headers: { "x-api-key": storedKey() },
        credentials: "omit", cache: "no-store",
      });
    } catch (error) {
      setState(item, "failed", "Not sent: the server could not be reached (" + error.message + ").");
      item.retry = true;
      return;
    }
    if (item.removed) return;
    const credits = Number(response.headers.get("x-user-credits") ?? NaN);
    // Answers to requests in flight together come back in any order, and each tells the balance
    // after its own credit was taken: the lowest is the latest. A new wave starts afresh (credits
    // may have been added meanwhile).
    if (Number.isFinite(credits) && (waveCredits === null || credits < waveCredits)) {
      waveCredits = credits;
      showCredits(String(credits));
    }
    if (response.ok) {
      const type = (response.headers.get("content-type") || "").split(";")[0].trim();
      try {
        item.blob = await response.blob();
      } catch (error) {  // the connection broke while the cut-out came in
        setState(item, "failed", "Failed: the answer was cut off (" + error.message + ").");
        item.retry = true;
        return;
      }
      if (item.removed) return;
      item.suffix = type === "image/webp" ? ".webp" : type === "image/jpeg" ? ".jpg" : ".png";
      showResult(item);
      return;
    }
    const message = await apiMessage(response);
    if (response.status === 429) {
      pausedUntil = Math.max(pausedUntil, Date.now() + retryAfterMs(response.headers.get("retry-after")));
      queue.unshift(item);  // it goes first once the wait is over
      setState(item, "waiting", "Waiting: the server's rate limit (" + message + ").");
    } else if (response.status === 401) {
      queue.unshift(item);
      setKey("");
      halt("key", "The server refused the key: " + message + ". Enter a valid key to go on.");
    } else if (response.status === 403) {
      queue.unshift(item);
      halt("credits", "The key has no credits left: " + message +
        ". Nothing was charged for the photos not sent; press \u201cSend again\u201d once the key has credits.");
    } else {
      setState(item, "failed", "Failed: " + message);
      item.retry = response.status >= 500;
    }
  }

  // The error's text: the API answers {"error": "..."}; anything else (a proxy's page) by status.
  async function apiMessage(response) {
    try {
      if ((response.headers.get("content-type") || "").includes("json")) {
        const body = await response.json();
        if (body && typeof body.error === "string" && body.error) return body.error;
      }
    } catch (error) { /* fall through */ }
    return "the server answered " + response.status + (response.statusText ? " " + response.statusText : "");
  }

  // Retry-After is seconds, or an HTTP date; a little extra so the freed slot is really free.
  function retryAfterMs(value) {
    const text = (value || "").trim();
    let ms = 1000;
    if (/^\d+(\.\d+)?$/.test(text)) ms = Number(text) * 1000;
    else if (text && !Number.isNaN(Date.parse(text))) ms = Date.parse(text) - Date.now();
    return Math.max(0, ms) + 100;
  }

  function halt(kind, text) {
    halted = { kind, text };
    for (const item of queue) setState(item, "unsent", "Not sent yet.");
    showAlert(text);
    if (kind === "key") ui.keyInput.focus();
  }
  function resume() {
    halted = null;
    showAlert("");
    for (const item of items) {
      if (item.state === "unsent") setState(item, "waiting", "");
    }
    pump();
    render();
  }

  ui.resend.addEventListener("click", () => {
    for (const item of items) {
      if (item.state === "failed" && item.retry && !queue.includes(item)) {
        item.retry = false;
        queue.push(item);
        setState(item, "waiting", "");
      }
    }
    resume();
  });
  ui.stop.addEventListener("click", () => {
    halt("stopped", "Stopped: the photos not sent yet stay here; press \u201cSend again\u201d to send them.");
    render();
  });
  ui.clear.addEventListener("click", () => {
    for (const item of items) {
      item.removed = true;
      if (item.url) URL.revokeObjectURL(item.url);
      if (item.originalUrl) URL.revokeObjectURL(item.originalUrl);
    }
    items.length = 0;
    queue.length = 0;
    ui.results.replaceChildren();
    if (halted && halted.kind !== "key") { halted = null; showAlert(""); }
    render();
  });

  // ---- showing ---------------------------------------------------------------------------
  function makeCard(item) {
    const el = ui.template.content.firstElementChild.cloneNode(true);
    el.querySelector(".name").textContent = item.path;
    const original = el.querySelector(".original");
    item.originalUrl = URL.createObjectURL(item.file);
    original.alt = "Photo: " + item.path;
    original.addEventListener("error", () => {  // not an image the browser can show
      original.hidden = true;
      el.querySelector(".no-preview").hidden = false;
    }, { once: true });
    original.src = item.originalUrl;
    ui.results.append(el);
    return el;
  }
  function setState(item, state, text) {
    item.state = state;
    item.el.classList.remove("waiting", "sending", "done", "failed", "unsent");
    item.el.classList.add(state);
    item.el.querySelector(".state").textContent = text;
    item.el.querySelector(".backdrop-frame .placeholder").textContent =
      state === "failed" ? "No cut-out" : state === "done" ? "" : state === "sending" ? "Working…" : "Waiting";
  }
  function showResult(item) {
    item.url = URL.createObjectURL(item.blob);
    item.outName = outputName(item.path.split("/").pop(), item.suffix);
    const cutout = item.el.querySelector(".cutout");
    cutout.alt = "Cut-out of " + item.path;
    cutout.src = item.url;
    cutout.hidden = false;
    item.el.querySelector(".backdrop-frame .placeholder").hidden = true;
    const link = item.el.querySelector(".download");
    link.href = item.url;
    link.download = item.outName;
    link.textContent = "Download";
    link.setAttribute("aria-label", "Download the cut-out of " + item.path);
    link.hidden = false;
    setState(item, "done", "Done: " + item.outName + " (" + sizeText(item.blob.size) + ")");
  }
  // As `bgremove` names outputs: the photo's name with the format's suffix (photo.jpg -> photo.png).
  function outputName(name, suffix) {
    const dot = name.lastIndexOf(".");
    return (dot > 0 ? name.slice(0, dot) : name) + suffix;
  }
  function sizeText(bytes) {
    return bytes < 1024 * 1024 ? Math.max(1, Math.round(bytes / 1024)) + " KB"
      : (bytes / 1024 / 1024).toFixed(1) + " MB";
  }
  function showCredits(value) {
    ui.creditsLeft.textContent = value;
    ui.credits.hidden = false;
  }
  function showAlert(text) {
    ui.alert.textContent = text;
    ui.alert.hidden = !text;
  }
  function render() {
    const count = (state) => items.filter((item) => item.state === state).length;
    const done = count("done");
    const failed = count("failed");
    const waiting = count("waiting") + count("unsent");
    const sending = count("sending");
    const parts = [];
    if (!items.length) parts.push("No photos yet.");
    else {
      parts.push(done + " of " + items.length + " done");
      if (failed) parts.push(failed + " failed");
      if (sending) parts.push(sending + " sending");
      if (waiting) parts.push(waiting + " waiting");
    }
    let line = parts.join(", ") + ".";
    if (waiting && !halted && !storedKey()) line += " Enter your API key above to start.";
    else if (waiting && !halted && Date.now() < pausedUntil) {
      line += " Rate limit reached: going on in " + Math.ceil((pausedUntil - Date.now()) / 1000) + " s.";
      if (!tick) tick = setTimeout(() => { tick = null; render(); }, 1000);  // the countdown
    }
    ui.status.textContent = line;
    ui.downloadAll.disabled = !done;
    ui.clear.disabled = !items.length;
    ui.stop.hidden = !(queue.length && !halted);
    ui.resend.hidden = !(halted && halted.kind !== "key" && waiting) &&
      !items.some((item) => item.state === "failed" && item.retry);
  }

  // All cut-outs in one zip, named as `bgremove` names them, in the dropped folders' structure;
  // two photos of one folder that would share a name keep their whole names (a.jpg.png, a.png.png).
  ui.downloadAll.addEventListener("click", async () => {
    const done = items.filter((item) => item.state === "done");
    if (!done.length) return;
    ui.downloadAll.disabled = true;
    try {
      const names = new Map();
      const wanted = new Map();
      for (const item of done) {
        const name = folderOf(item.path) + item.outName;
        wanted.set(name, (wanted.get(name) || 0) + 1);
      }
      const entries = [];
      for (const item of done) {
        let name = folderOf(item.path) + item.outName;
        if (wanted.get(name) > 1) name = item.path + item.suffix;
        let unique = name;
        for (let n = 2; names.has(unique); n++) unique = outputName(name, "") + " (" + n + ")" + item.suffix;
        names.set(unique, true);
        entries.push({ name: unique, bytes: new Uint8Array(await item.blob.arrayBuffer()) });
      }
      const zip = window.bgremoveZip.makeZip(entries);
      const url = URL.createObjectURL(zip);
      const link = document.createElement("a");
      link.href = url;
      link.download = "cutouts.zip";
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
    } finally {
      render();
    }
  });
  function folderOf(path) {
    const slash = path.lastIndexOf("/");
    return slash >= 0 ? path.slice(0, slash + 1) : "";
  }

  // The cut-outs' backdrop: a checkerboard shows the transparency, a colour shows the edges.
  function setBackdrop() {
    const choice = document.querySelector("input[name=backdrop]:checked").value;
    ui.results.classList.toggle("checker", choice === "checker");
    ui.results.classList.toggle("colour", choice === "colour");
    document.documentElement.style.setProperty("--backdrop", ui.backdropColour.value);
  }
  for (const radio of document.querySelectorAll("input[name=backdrop]")) {
    radio.addEventListener("change", setBackdrop);
  }
  ui.backdropColour.addEventListener("input", () => {
    document.querySelector("input[name=backdrop][value=colour]").checked = true;
    setBackdrop();
  });

  setBackdrop();
  showKeyState();
  render();
  const optionsLoaded = loadOptions();
})();
