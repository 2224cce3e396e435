// The status page: polls /ui/state every second and redraws. Every value
// from the cluster goes in as text (textContent), never as markup; the
// one exception is the drill timeline, SVG the agent rendered with every
// text escaped.
"use strict";

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(k == null ? "" : String(k)));
  return e;
}

function cell(field, text, cls) {
  const td = el("td", { "data-field": field }, text);
  if (cls) td.className = cls;
  return td;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function time(t) {
  if (!t || t.startsWith("0001-")) return "–";
  const d = new Date(t);
  return d.toLocaleString();
}

function bytes(n) {
  if (!n) return "0";
  const g = n / (1 << 30);
  return g >= 1 ? g.toFixed(1) + " GiB" : (n / (1 << 20)).toFixed(0) + " MiB";
}

// dur shortens a Go duration ("463.027332ms", "1m2.5s") for people.
function dur(d) {
  if (!d) return "–";
  const m = /^([0-9.]+)(ns|µs|us|ms|s)$/.exec(d);
  if (!m) return d.replace(/(\.\d)\d+s$/, "$1s");
  const v = parseFloat(m[1]);
  switch (m[2]) {
    case "ns": case "µs": case "us": return "<1 ms";
    case "ms": return Math.round(v) + " ms";
    default: return (v < 10 ? v.toFixed(2) : v.toFixed(1)) + " s";
  }
}

// report is a member's health report: the agent's own answer nests it
// under "report", beside its workload.
function report(m) {
  const h = m.health || {};
  return h.report || h;
}

function render(s) {
  const st = s.status;
  $("vip").textContent = st.vip && st.vip.address ? st.vip.address : "none configured";
  $("holder").textContent = st.vip && st.vip.holder ? st.vip.holder : "nobody";
  $("holder").className = st.vip && st.vip.holder ? "" : "bad";
  const conflict = st.vip && st.vip.conflict;
  $("conflict").hidden = !conflict;
  $("conflict").textContent = conflict ? "VIP conflict: " + conflict : "";
  $("active").textContent = st.active && st.active.node ? st.active.node : "none";
  $("active-detail").textContent = st.active && st.active.node
    ? "epoch " + st.active.epoch + (st.active.reason ? " · " + st.active.reason : "") + (st.active.since ? " · since " + time(st.active.since) : "")
    : "";
  $("leader").textContent = st.leader || "none";
  $("leader").className = st.leader ? "" : "bad";
  $("answered-by").textContent = st.node || "–";
  const problems = s.problems || [];
  $("verdict").textContent = problems.length ? "degraded" : "healthy";
  $("verdict").className = problems.length ? "bad" : "ok";
  fill($("problems"), problems.map((p) => el("li", {}, p)));
  const mi = st.maintenance_info;
  $("maintenance").hidden = !st.maintenance;
  $("maintenance").textContent = st.maintenance
    ? "maintenance on" + (mi ? " since " + time(mi.since) + (mi.by ? " by " + mi.by : "") + (mi.reason ? ": " + mi.reason : "") : "")
    : "";

  const members = st.members || [];
  fill($("members").tBodies[0], members.map((m) => {
    const lease = m.lease || {};
    const leaseText = lease.left ? "holds, " + dur(lease.left) + " left" : (lease.quarantine ? "quarantine " + dur(lease.quarantine) : (lease.grant_to ? "grants " + lease.grant_to : "–"));
    const tr = el("tr", { "data-member": m.name },
      cell("name", m.name),
      cell("role", m.role),
      cell("raft", m.raft, m.raft === "unreachable" ? "bad" : ""),
      cell("voter", m.voter ? "yes" : "no"),
      cell("address", m.address),
      cell("health", m.role === "gpu" ? (m.healthy ? "healthy" : "unhealthy" + (m.health_reason ? ": " + m.health_reason : "")) : "–",
        m.role === "gpu" ? (m.healthy ? "ok" : "bad") : ""),
      cell("vip", m.holds_vip ? "holds" : "–"),
      cell("lease", leaseText),
      cell("raft-index", m.answered ? m.term + " / " + m.applied_index : "–"),
      cell("last-contact", dur(m.last_contact)),
      cell("version", m.version || "–"));
    if (m.holds_vip) tr.className = "holder-row";
    return tr;
  }));

  const checks = [], gpus = [];
  for (const m of members) {
    const h = report(m);
    for (const c of h.checks || []) {
      checks.push(el("tr", { "data-check": m.name + "/" + c.kind + ":" + c.name },
        cell("member", m.name), cell("check", c.kind + ":" + c.name),
        cell("state", c.ok ? "passing" : "failing" + (c.injected ? " (drill)" : ""), c.ok ? "ok" : "bad"),
        cell("streak", c.ok ? c.consecutive_ok : c.consecutive_fail),
        cell("output", c.output || "", "wrap")));
    }
    for (const g of h.gpu || []) {
      gpus.push(el("tr", { "data-gpu": m.name + "/" + g.index },
        cell("member", m.name), cell("index", g.index), cell("name", g.name),
        cell("util", g.utilization_gpu_pct + " %"),
        cell("memory", bytes(g.memory_used_bytes) + " / " + bytes(g.memory_total_bytes)),
        cell("temperature", g.temperature_c + " °C"),
        cell("power", (g.power_w || 0).toFixed(0) + " W"),
        cell("ecc", (g.ecc_corrected || 0) + " / " + (g.ecc_uncorrected || 0))));
    }
  }
  fill($("checks").tBodies[0], checks);
  fill($("gpus").tBodies[0], gpus);
  $("gpus-none").hidden = gpus.length > 0;

  fill($("history").tBodies[0], (s.history || []).map((h) =>
    el("tr", { "data-epoch": h.epoch }, cell("epoch", h.epoch), cell("time", time(h.time)),
      cell("from", h.from || "–"), cell("to", h.to), cell("reason", h.reason, "wrap"))));
  fill($("events").tBodies[0], (s.events || []).map((e) =>
    el("tr", {}, cell("time", time(e.time)), cell("kind", e.kind), cell("node", e.node), cell("detail", e.detail, "wrap"))));

  const drills = s.drills || [];
  $("drills-none").hidden = drills.length > 0;
  $("drills").replaceChildren(...drills.map((d) => {
    const f = d.figures || {};
    const box = el("div", { class: "drill", "data-drill": d.id },
      el("h3", {}, d.runbook + " · " + d.verdict + (d.abort_reason ? " (" + d.abort_reason + ")" : "")),
      el("p", { class: "muted" }, time(d.start) + (d.operator ? " · " + d.operator : "") + " · outage " + Math.round(f.outage_ms || 0) +
        " ms · " + (f.failed_requests || 0) + " of " + (f.requests || 0) + " requests failed" +
        (f.failover_ms != null ? " · failover " + Math.round(f.failover_ms) + " ms" : "")));
    const chart = el("div", { class: "chart" });
    chart.innerHTML = d.svg; // rendered and escaped by the agent (web/timeline.go)
    box.append(chart);
    return box;
  }));
  if (s.drills_error) $("drills-none").textContent = "Drill reports could not be read: " + s.drills_error;
}

let lastOK = 0;
async function tick() {
  try {
    const r = await fetch("/ui/state", { cache: "no-store" });
    if (!r.ok) throw new Error(r.status + " " + (await r.text()));
    const s = await r.json();
    render(s);
    lastOK = Date.now();
    $("freshness").textContent = "as of " + new Date(s.now).toLocaleTimeString() + ", from " + (s.status.node || "?");
    $("freshness").className = "muted";
    document.body.dataset.updated = String(lastOK);
  } catch (e) {
    $("freshness").textContent = "cannot reach the agent" + (lastOK ? " since " + new Date(lastOK).toLocaleTimeString() : "") + ": " + e.message;
    $("freshness").className = "bad";
  } finally {
    setTimeout(tick, 1000);
  }
}
tick();
