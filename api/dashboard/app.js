// clusterd dashboard: credentials, the API client, routing and polling. No build step, no
// third-party code. Server data only ever reaches the page through textContent / attributes.
import { renderClusters, renderCluster, renderRun } from "./views.js";

const KEY = "clusterd.dashboard.key";
const NS = "clusterd.dashboard.namespace";
const $ = (id) => document.getElementById(id);

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function stored(name) {
  return sessionStorage.getItem(name) || localStorage.getItem(name) || "";
}

const creds = { key: stored(KEY), ns: stored(NS) };

function saveCreds(key, ns, remember) {
  clearCreds();
  const store = remember ? localStorage : sessionStorage;
  store.setItem(KEY, key);
  store.setItem(NS, ns);
  creds.key = key;
  creds.ns = ns;
}

function clearCreds() {
  for (const s of [sessionStorage, localStorage]) {
    s.removeItem(KEY);
    s.removeItem(NS);
  }
  creds.key = "";
  creds.ns = "";
}

/** fetch a public API route with the stored key and namespace; throws ApiError. */
async function api(path, { method = "GET", body, blob = false, key = creds.key, ns = creds.ns } = {}) {
  const headers = { Authorization: `Bearer ${key}`, "X-Namespace": ns };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let r;
  try {
    r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError(0, "unreachable", `Cannot reach the clusterd server at ${location.origin}: is it running?`);
  }
  if (!r.ok) {
    let message = `${r.status} ${r.statusText}`;
    let code = "";
    try {
      const e = (await r.json()).error || {};
      message = e.message || message;
      code = e.code || e.type || "";
    } catch {
      /* not JSON: keep the status line */
    }
    throw new ApiError(r.status, code, message);
  }
  return blob ? r.blob() : r.json();
}

export function describe(err) {
  if (!(err instanceof ApiError)) return String(err && err.message ? err.message : err);
  if (err.status === 401) return `The API key was refused (401): ${err.message}`;
  if (err.status === 403) return `This key may not use namespace '${creds.ns}' (403): ${err.message}`;
  if (err.status === 0) return err.message;
  return `${err.status}${err.code ? " " + err.code : ""}: ${err.message}`;
}

function showError(err) {
  const box = $("error");
  if (!err) {
    box.hidden = true;
    box.textContent = "";
    return;
  }
  box.textContent = typeof err === "string" ? err : describe(err);
  box.hidden = false;
}

// one poll timer for the current view; a route change cancels it
let timer = null;
let generation = 0;

function stopPolling() {
  if (timer) clearTimeout(timer);
  timer = null;
  generation += 1;
}

function makeCtx() {
  const mine = generation;
  return {
    api,
    creds,
    showError,
    describe,
    crumbs,
    live: () => mine === generation,
    /** call fn again after ms, unless the user has moved on */
    poll(fn, ms = 2000) {
      if (mine !== generation) return;
      if (timer) clearTimeout(timer);
      timer = setTimeout(async () => {
        if (mine !== generation) return;
        try {
          await fn();
          showError(null);
        } catch (err) {
          if (mine !== generation) return;
          if (err instanceof ApiError && err.status === 401) return refused(err);
          showError(err); // e.g. the server went away: say so, and keep trying
          this.poll(fn, ms);
        }
      }, ms);
    },
  };
}

function crumbs(...items) {
  const nav = $("crumbs");
  nav.replaceChildren();
  for (const [text, href] of items) {
    nav.append(" / ");
    if (href) {
      const a = document.createElement("a");
      a.href = href;
      a.textContent = text;
      nav.append(a);
    } else {
      nav.append(text);
    }
  }
}

async function route() {
  stopPolling();
  showError(null);
  const view = $("view");
  if (!creds.key) {
    view.replaceChildren();
    $("login").hidden = false;
    $("logout").hidden = true;
    $("who").textContent = "";
    return;
  }
  $("login").hidden = true;
  $("logout").hidden = false;
  $("who").textContent = `namespace: ${creds.ns}`;
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const ctx = makeCtx();
  try {
    if (parts[0] === "clusters" && parts[1] && parts[2] === "runs" && parts[3]) {
      await renderRun(ctx, view, parts[1], parts[3]);
    } else if (parts[0] === "clusters" && parts[1]) {
      await renderCluster(ctx, view, parts[1]);
    } else {
      await renderClusters(ctx, view);
    }
  } catch (err) {
    if (!ctx.live()) return;
    if (err instanceof ApiError && err.status === 401) refused(err);
    else showError(err);
  }
}

/** a revoked or mistyped key: forget it and show the form, keeping the message */
function refused(err) {
  stopPolling();
  clearCreds();
  $("login").hidden = false;
  $("logout").hidden = true;
  $("who").textContent = "";
  $("view").replaceChildren();
  showError(err);
}

async function connect(ev) {
  ev.preventDefault();
  const key = $("key").value.trim();
  const ns = $("namespace").value.trim();
  const button = $("connect");
  button.disabled = true;
  showError(null);
  try {
    await api("/v1/clusters/list?page_size=1", { method: "POST", body: {}, key, ns });
    saveCreds(key, ns, $("remember").checked);
    $("key").value = "";
    await route();
  } catch (err) {
    const saved = creds.ns;
    creds.ns = ns; // name the namespace the user typed in the message
    showError(err);
    creds.ns = saved;
  } finally {
    button.disabled = false;
  }
}

function start() {
  $("login-form").addEventListener("submit", connect);
  $("logout").addEventListener("click", () => {
    clearCreds();
    location.hash = "#/";
    route();
  });
  if (creds.ns) $("namespace").value = creds.ns;
  window.addEventListener("hashchange", route);
  route();
}

start();
