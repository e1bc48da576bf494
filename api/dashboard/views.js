// The three views: clusters, one cluster's run history, one run. Each fetches what it shows
// and re-renders itself on a 2 s poll while a run it shows is pending or processing.
import { colourMap, legend, scatterSvg, NOISE_COLOUR } from "./scatter.js";

const ACTIVE = new Set(["pending", "processing"]);
const MAX_POINTS = 5000;

/** h("td", {className: "num"}, "text", child): an element; strings become text nodes. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null) continue;
    if (k === "className") el.className = v;
    else if (k === "onclick") el.addEventListener("click", v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const enc = encodeURIComponent;
const clusterHref = (id) => `#/clusters/${enc(id)}`;
const runHref = (id, run) => `#/clusters/${enc(id)}/runs/${enc(run)}`;

function when(iso) {
  return iso ? String(iso).replace("T", " ").replace(/\.\d+Z?$|Z$/, "") : "";
}

function num(v, digits = 3) {
  if (v === undefined || v === null || Number.isNaN(v)) return "";
  return Number.isInteger(v) ? String(v) : Number(v).toFixed(digits);
}

function duration(run) {
  let ms = run.execution_time_ms;
  if (ms == null && run.started_at) {
    const end = run.completed_at ? Date.parse(run.completed_at) : Date.now();
    ms = end - Date.parse(run.started_at);
  }
  if (ms == null || Number.isNaN(ms)) return "";
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

function statusBadge(status) {
  const s = String(status || "none").toLowerCase();
  return h("span", { className: `status status-${s}`, dataset: { status: s } }, s);
}

function progressText(run) {
  const p = run.progress || {};
  if (!ACTIVE.has(String(run.status).toLowerCase())) return "";
  const pct = p.fraction == null ? "" : ` ${Math.round(p.fraction * 100)}%`;
  return `${p.stage || run.status}${pct}`;
}

function table(headers, rows) {
  return h(
    "table",
    {},
    h("thead", {}, h("tr", {}, headers.map(([t, cls]) => h("th", { className: cls }, t)))),
    h("tbody", {}, rows),
  );
}

// ---- clusters ----

export async function renderClusters(ctx, view) {
  ctx.crumbs(["clusters"]);
  const body = await ctx.api("/v1/clusters/list?page_size=100", { method: "POST", body: {} });
  if (!ctx.live()) return;
  const rows = (body.results || []).map((c) =>
    h(
      "tr",
      { dataset: { clusterId: c.cluster_id } },
      h("td", {}, h("a", { href: clusterHref(c.cluster_id) }, c.cluster_name || c.cluster_id)),
      h("td", {}, c.algorithm || c.cluster_type || ""),
      h("td", {}, statusBadge(c.status)),
      h("td", { className: "num" }, num(c.num_clusters)),
      h("td", { className: "num" }, num(c.num_documents_clustered)),
      h("td", {}, c.last_run_id ? h("a", { href: runHref(c.cluster_id, c.last_run_id) }, when(c.last_executed_at)) : "never"),
    ),
  );
  view.replaceChildren(
    h("h1", {}, "Clusters"),
    rows.length
      ? table(
          [["name"], ["algorithm"], ["status"], ["clusters", "num"], ["documents", "num"], ["last run"]],
          rows,
        )
      : h("p", { className: "notice" }, `No clusters in namespace '${ctx.creds.ns}' yet: see docs/quickstart.md.`),
  );
  if (body.total_count > rows.length) view.append(h("p", { className: "muted" }, `${rows.length} of ${body.total_count} shown`));
  if ((body.results || []).some((c) => ACTIVE.has(String(c.status).toLowerCase()))) {
    ctx.poll(() => renderClusters(ctx, view));
  }
}

// ---- one cluster: its run history ----

export async function renderCluster(ctx, view, clusterId) {
  const path = `/v1/clusters/${enc(clusterId)}`;
  const [cluster, runs] = await Promise.all([
    ctx.api(path),
    ctx.api(`${path}/executions/list?page_size=50`, { method: "POST", body: {} }),
  ]);
  if (!ctx.live()) return;
  ctx.crumbs(["clusters", "#/"], [cluster.cluster_name || clusterId]);
  const results = runs.results || [];
  const rows = results.map((r) => {
    const m = r.metrics || {};
    return h(
      "tr",
      { className: "run", dataset: { runId: r.run_id, status: String(r.status).toLowerCase() } },
      h("td", {}, h("a", { href: runHref(clusterId, r.run_id) }, r.run_name || r.run_id)),
      h("td", {}, statusBadge(r.status), " ", h("span", { className: "progress" }, progressText(r))),
      h("td", {}, when(r.created_at)),
      h("td", { className: "num" }, duration(r)),
      h("td", { className: "num" }, num(r.num_clusters)),
      h("td", { className: "num" }, num(r.num_points)),
      h("td", { className: "num", dataset: { metric: "silhouette" } }, num(m.silhouette_score)),
      h("td", { className: "num" }, num(m.davies_bouldin_index)),
      h("td", { className: "num" }, num(m.calinski_harabasz_score, 1)),
    );
  });
  const runButton = h("button", { id: "execute", type: "button" }, "Run now");
  runButton.addEventListener("click", async () => {
    runButton.disabled = true;
    try {
      await ctx.api(`${path}/execute`, { method: "POST", body: {} });
      await renderCluster(ctx, view, clusterId);
    } catch (err) {
      ctx.showError(err);
      runButton.disabled = false;
    }
  });
  const algo = cluster.algorithm || cluster.cluster_type || "";
  view.replaceChildren(
    h("h1", {}, cluster.cluster_name || clusterId),
    h("p", { className: "muted" }, `${cluster.cluster_id} · ${algo} · over ${(cluster.input_collections || []).join(", ")}`),
    h("div", { className: "toolbar" }, runButton, h("span", { className: "muted" }, `${runs.total_count ?? results.length} runs`)),
    rows.length
      ? table(
          [["run"], ["status"], ["created"], ["duration", "num"], ["clusters", "num"], ["points", "num"],
            ["silhouette", "num"], ["Davies-Bouldin", "num"], ["Calinski-Harabasz", "num"]],
          rows,
        )
      : h("p", { className: "notice" }, "This cluster has not run yet: press Run now."),
  );
  if (results.some((r) => ACTIVE.has(String(r.status).toLowerCase()))) {
    ctx.poll(() => renderCluster(ctx, view, clusterId));
  }
}

// ---- one run ----

async function exportCsv(ctx, clusterId, runId, button) {
  button.disabled = true;
  try {
    const blob = await ctx.api(
      `/v1/clusters/${enc(clusterId)}/executions/${enc(runId)}/export?format=csv`,
      { blob: true },
    );
    const url = URL.createObjectURL(blob);
    const a = h("a", { href: url, download: `${runId}.csv` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (err) {
    ctx.showError(err);
  } finally {
    button.disabled = false;
  }
}

function metricsBox(run) {
  const m = run.metrics || {};
  const item = (name, v) => h("div", {}, h("span", {}, name), v);
  return h(
    "div",
    { className: "metrics" },
    item("status", statusBadge(run.status)),
    item("clusters", num(run.num_clusters)),
    item("points", num(run.num_points)),
    item("noise", num(run.noise_points)),
    item("duration", duration(run)),
    item("silhouette", num(m.silhouette_score)),
    item("Davies-Bouldin", num(m.davies_bouldin_index)),
    item("Calinski-Harabasz", num(m.calinski_harabasz_score, 1)),
  );
}

function groupsTable(groups, colours) {
  const biggest = Math.max(1, ...groups.map((g) => g.member_count || 0));
  const rows = groups.map((g) => {
    const sw = h("i", { className: "swatch" });
    sw.style.background = colours.get(g.cluster_id) || NOISE_COLOUR;
    const bar = h("div", { className: "bar" });
    bar.style.width = `${(100 * (g.member_count || 0)) / biggest}%`;
    bar.style.background = colours.get(g.cluster_id) || NOISE_COLOUR;
    return h(
      "tr",
      { className: "group", dataset: { clusterId: g.cluster_id } },
      h("td", {}, sw, " ", h("span", { className: "label" }, g.label || g.cluster_id)),
      h("td", { className: "num size" }, num(g.member_count)),
      h("td", { className: "barcell" }, bar),
      h("td", { className: "keywords" }, (g.keywords || []).join(", ")),
      h("td", { className: "summary" }, g.summary || ""),
    );
  });
  return table([["cluster"], ["size", "num"], [""], ["keywords"], ["summary"]], rows);
}

async function scatterBox(ctx, clusterId, runId, colours, groups) {
  const box = h("div", { className: "scatter", id: "scatter" });
  try {
    const vis = await ctx.api(
      `/v1/clusters/${enc(clusterId)}/visualization?run_id=${enc(runId)}&compact=true&max_points=${MAX_POINTS}`,
    );
    const pts = vis.points || { x: [], y: [], cluster_ids: [] };
    const hasNoise = (pts.cluster_ids || []).some((c) => c == null);
    const labels = new Map(groups.map((g) => [g.cluster_id, g.label || g.cluster_id]));
    const svg = scatterSvg(pts, vis.centroids || [], colours);
    const hover = h("p", { className: "muted hover", id: "hover" }, "hover a point for its document");
    svg.addEventListener("mouseover", (ev) => {
      const d = ev.target.dataset || {};
      if (!d.cluster) return;
      hover.textContent = `${d.doc} · ${d.cluster === "noise" ? "noise" : labels.get(d.cluster) || d.cluster}`;
    });
    box.append(
      svg,
      hover,
      legend(groups, colours, hasNoise),
      h(
        "p",
        { className: "muted" },
        vis.sampled
          ? `${vis.returned_points} of ${vis.total_points} points shown (a sample stratified by cluster)`
          : `${vis.returned_points} points`,
        vis.n_components > 2 ? " · 3-D layout: first two axes shown" : "",
      ),
    );
  } catch (err) {
    const why = err.code === "no_visualization" ? "No scatter for this run: " : "The scatter could not load: ";
    box.append(h("p", { className: "notice", id: "no-visualization" }, why + err.message));
  }
  return box;
}

export async function renderRun(ctx, view, clusterId, runId) {
  const base = `/v1/clusters/${enc(clusterId)}`;
  const run = await ctx.api(`${base}/executions/${enc(runId)}`);
  if (!ctx.live()) return;
  ctx.crumbs(["clusters", "#/"], [clusterId, clusterHref(clusterId)], [runId]);
  const status = String(run.status).toLowerCase();
  const parts = [h("h1", {}, `Run ${run.run_name || runId}`), metricsBox(run)];
  if (ACTIVE.has(status)) {
    parts.push(h("p", { className: "notice", id: "run-progress" }, `Running: ${progressText(run)}`));
    view.replaceChildren(...parts);
    ctx.poll(() => renderRun(ctx, view, clusterId, runId));
    return;
  }
  if (status === "failed" || status === "canceled") {
    const text = status === "failed" ? `This run failed${run.failure_category ? ` (${run.failure_category})` : ""}: ` : "This run was canceled. ";
    parts.push(h("p", { className: "failure", id: "run-failure" }, text, run.error_message || ""));
    view.replaceChildren(...parts);
    return;
  }
  let groups;
  try {
    groups = (await ctx.api(`${base}/groups?run_id=${enc(runId)}&members_limit=0`)).groups || [];
  } catch {
    groups = (run.centroids || []).map((c) => ({
      cluster_id: c.cluster_id, label: c.label, keywords: c.keywords, summary: c.summary, member_count: c.num_members,
    }));
  }
  const colours = colourMap(groups.map((g) => g.cluster_id));
  const exportButton = h("button", { id: "export", type: "button" }, "Export CSV");
  exportButton.addEventListener("click", () => exportCsv(ctx, clusterId, runId, exportButton));
  const scatter = await scatterBox(ctx, clusterId, runId, colours, groups);
  if (!ctx.live()) return;
  parts.push(
    h("div", { className: "toolbar" }, exportButton),
    h("div", { className: "layout" }, scatter, h("div", {}, h("h2", {}, "Clusters"), groupsTable(groups, colours))),
  );
  view.replaceChildren(...parts);
}
