// The 2-D scatter of a run's members as inline SVG, one colour per cluster, with a legend.
const SVG = "http://www.w3.org/2000/svg";
const PALETTE = [
  "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
  "#e377c2", "#17becf", "#bcbd22", "#393b79", "#ad494a", "#637939",
];
export const NOISE_COLOUR = "#9aa0a6";

/** cluster id -> colour, in the run's cluster order (colours repeat after 12 clusters). */
export function colourMap(clusterIds) {
  const map = new Map();
  clusterIds.forEach((id, i) => map.set(id, PALETTE[i % PALETTE.length]));
  return map;
}

function node(tag, attrs) {
  const n = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
  return n;
}

/** An <svg> of points {x[], y[], cluster_ids[]} (the visualization route's compact form) and
 * centroids [{cluster_id, cluster_label, x, y}]. */
export function scatterSvg(points, centroids, colours, { width = 600, height = 450, pad = 16 } = {}) {
  const xs = points.x || [];
  const ys = points.y || [];
  const all = { x: xs.concat(centroids.map((c) => c.x)), y: ys.concat(centroids.map((c) => c.y)) };
  const lo = (a) => (a.length ? Math.min(...a) : 0);
  const hi = (a) => (a.length ? Math.max(...a) : 1);
  const [x0, x1, y0, y1] = [lo(all.x), hi(all.x), lo(all.y), hi(all.y)];
  const sx = (v) => pad + ((v - x0) / (x1 - x0 || 1)) * (width - 2 * pad);
  const sy = (v) => height - pad - ((v - y0) / (y1 - y0 || 1)) * (height - 2 * pad);
  const svg = node("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "scatter of members" });
  const dots = node("g", { class: "points" });
  for (let i = 0; i < xs.length; i++) {
    const cid = points.cluster_ids[i];
    const fill = cid == null ? NOISE_COLOUR : colours.get(cid) || NOISE_COLOUR;
    dots.append(
      node("circle", {
        class: "pt", cx: sx(xs[i]).toFixed(1), cy: sy(ys[i]).toFixed(1), r: 2.6, fill, "fill-opacity": 0.75,
        "data-cluster": cid == null ? "noise" : cid, "data-doc": (points.document_ids || [])[i] ?? "",
      }),
    );
  }
  svg.append(dots);
  const marks = node("g", { class: "centroids" });
  for (const c of centroids) {
    const mark = node("circle", {
      class: "centroid", cx: sx(c.x).toFixed(1), cy: sy(c.y).toFixed(1), r: 7,
      fill: colours.get(c.cluster_id) || NOISE_COLOUR, stroke: "#111", "stroke-width": 1.5,
    });
    const title = node("title", {});
    title.textContent = c.cluster_label || c.cluster_id;
    mark.append(title);
    marks.append(mark);
  }
  svg.append(marks);
  return svg;
}

/** A legend entry per cluster (and noise when there is any). */
export function legend(entries, colours, hasNoise) {
  const box = document.createElement("div");
  box.className = "legend";
  const add = (text, colour) => {
    const item = document.createElement("span");
    const sw = document.createElement("i");
    sw.className = "swatch";
    sw.style.background = colour;
    item.append(sw, text);
    box.append(item);
  };
  for (const e of entries) add(e.label || e.cluster_id, colours.get(e.cluster_id));
  if (hasNoise) add("noise", NOISE_COLOUR);
  return box;
}
