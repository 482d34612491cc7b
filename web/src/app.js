// vmtel dashboard. Renders the JSON API (docs/api.md) into the page.
//
// Every string that comes from a hypervisor (VM names, device names, paths, errors) is put
// into the page with textContent via el(), never parsed as HTML.
"use strict";

const STATES = { 0: "no state", 1: "running", 2: "blocked", 3: "paused", 4: "shutting down",
  5: "shut off", 6: "crashed", 7: "suspended" };
const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be185d", "#4d7c0f"];
const RANGES = ["15m", "1h", "6h", "24h", "7d"];

// el("td", {class: "num"}, "text", childNode, ...): children are text or nodes.
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }

function fmtNum(v, digits = 1) {
  if (v === null || v === undefined || !isFinite(v)) return "–";
  return Number(v).toLocaleString(undefined, { maximumFractionDigits: digits });
}
function fmtPct(v) { return v === null || v === undefined ? "–" : fmtNum(v, 1) + " %"; }
function fmtUnit(v, unit, base) {
  if (v === null || v === undefined || !isFinite(v)) return "–";
  const prefixes = base === 1024 ? ["", "Ki", "Mi", "Gi", "Ti"] : ["", "k", "M", "G", "T"];
  let i = 0;
  let x = Math.abs(v);
  while (x >= base && i < prefixes.length - 1) { x /= base; i++; }
  return (v < 0 ? "-" : "") + fmtNum(x, x < 10 ? 2 : 1) + " " + prefixes[i] + unit;
}
function fmtBps(v) { return fmtUnit(v, "B/s", 1024); }
function fmtBytes(v) { return fmtUnit(v, "B", 1024); }
function fmtAgo(ms, now) {
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 90) return s + " s ago";
  if (s < 5400) return Math.round(s / 60) + " min ago";
  if (s < 172800) return Math.round(s / 3600) + " h ago";
  return Math.round(s / 86400) + " days ago";
}
function fmtTime(ms) { return new Date(ms).toLocaleString(); }
function formatterFor(unit) {
  if (unit === "%") return fmtPct;
  if (unit === "B/s") return fmtBps;
  if (unit === "B") return fmtBytes;
  if (unit === "ms") return (v) => (v === null || v === undefined ? "–" : fmtNum(v, 2) + " ms");
  return (v) => (v === null || v === undefined ? "–" : fmtNum(v, 2) + " " + unit);
}
function stateName(vm) {
  if (!vm.current) return "gone";
  return STATES[vm.state] ?? (vm.state === null || vm.state === undefined ? "unknown" : "state " + vm.state);
}
function stateClass(name) {
  return name === "running" ? "state-running" : name === "paused" ? "state-paused" : "state-other";
}
function vmHref(host, uuid) { return "/vm/" + encodeURIComponent(host) + "/" + encodeURIComponent(uuid); }

async function api(path) {
  let res;
  try {
    res = await fetch(path, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  } catch (e) {
    throw new Error("cannot reach vmtel (" + e.message + "): is it still running?");
  }
  if (res.status === 401) {
    location.href = "/login";
    throw new Error("this dashboard needs a token: sign in");
  }
  let body = null;
  try { body = await res.json(); } catch (e) { /* not JSON */ }
  if (!res.ok) throw new Error((body && body.error) || "vmtel answered " + res.status);
  return body;
}

function setStatus(text, bad) {
  const s = document.getElementById("status");
  s.textContent = text;
  s.style.color = bad ? "#fca5a5" : "";
}

let timer = null;
function every(ms, fn) {
  const run = async () => {
    try {
      await fn();
      setStatus("updated " + new Date().toLocaleTimeString());
    } catch (e) {
      setStatus("update failed", true);
      showError(e.message);
    }
    timer = setTimeout(run, ms);
  };
  run();
}

function showError(msg) {
  let box = document.getElementById("error");
  if (!box) {
    box = el("p", { id: "error", class: "error", role: "alert" });
    document.getElementById("main").prepend(box);
  }
  box.textContent = msg;
}
function clearError() {
  const box = document.getElementById("error");
  if (box) box.remove();
}
function refreshMs(data) { return Math.max(2000, Math.min(15000, (data && data.interval_ms) || 5000)); }

// ---------------------------------------------------------------------------------------------
// Fleet page
// ---------------------------------------------------------------------------------------------

const FLEET_COLS = [
  { key: "name", label: "Name", cls: "name" },
  { key: "host", label: "Host" },
  { key: "state", label: "State", get: stateName },
  { key: "vcpus", label: "vCPUs", num: true, fmt: (v) => fmtNum(v, 0) },
  { key: "cpu_pct", label: "CPU", num: true, fmt: fmtPct },
  { key: "mem_used_pct", label: "Mem used", num: true, fmt: fmtPct },
  { key: "net_rx_bps", label: "Net rx", num: true, fmt: fmtBps },
  { key: "net_tx_bps", label: "Net tx", num: true, fmt: fmtBps },
  { key: "disk_rd_bps", label: "Disk read", num: true, fmt: fmtBps },
  { key: "disk_wr_bps", label: "Disk write", num: true, fmt: fmtBps },
];

function fleetPage() {
  const main = clear(document.getElementById("main"));
  const params = new URLSearchParams(location.search);
  const view = { sort: params.get("sort") || "name", dir: params.get("dir") === "desc" ? -1 : 1, data: null };
  const search = el("input", { type: "search", id: "filter-name", placeholder: "Filter by name", "aria-label": "Filter by name", value: params.get("q") || "" });
  const host = el("select", { id: "filter-host", "aria-label": "Filter by host" }, el("option", { value: "" }, "All hosts"));
  const state = el("select", { id: "filter-state", "aria-label": "Filter by state" }, el("option", { value: "" }, "All states"));
  const summary = el("p", { class: "meta", id: "fleet-summary" });
  const headRow = el("tr");
  const tbody = el("tbody");
  const table = el("table", { id: "fleet-table" }, el("thead", {}, headRow), tbody);
  const empty = el("div", { id: "fleet-empty" });
  main.append(el("h1", {}, "Fleet"), summary,
    el("div", { class: "controls" }, search, host, state), empty, table);

  for (const c of FLEET_COLS) {
    const th = el("th", { class: (c.num ? "num " : "") + "sortable", "data-key": c.key, scope: "col",
      onclick: () => {
        view.dir = view.sort === c.key ? -view.dir : (c.num ? -1 : 1);
        view.sort = c.key;
        render();
      } }, c.label);
    headRow.append(th);
  }
  for (const s of ["running", "paused", "gone"]) state.append(el("option", { value: s }, s));
  for (const c of [search, host, state]) c.addEventListener("input", () => render());

  function render() {
    const d = view.data;
    if (!d) return;
    for (const th of headRow.children) {
      th.classList.toggle("sorted-asc", th.dataset.key === view.sort && view.dir > 0);
      th.classList.toggle("sorted-desc", th.dataset.key === view.sort && view.dir < 0);
    }
    // Host options follow the data; keep the selection.
    const hosts = d.hosts.map((h) => h.host);
    const have = Array.from(host.options).slice(1).map((o) => o.value);
    if (hosts.join("\n") !== have.join("\n")) {
      const keep = host.value;
      while (host.options.length > 1) host.remove(1);
      for (const h of hosts) host.append(el("option", { value: h }, h));
      host.value = hosts.includes(keep) ? keep : "";
    }
    const q = search.value.trim().toLowerCase();
    const col = FLEET_COLS.find((c) => c.key === view.sort) || FLEET_COLS[0];
    const key = (vm) => (col.get ? col.get(vm) : vm[col.key]);
    const rows = d.vms
      .filter((vm) => !q || vm.name.toLowerCase().includes(q))
      .filter((vm) => !host.value || vm.host === host.value)
      .filter((vm) => !state.value || (state.value === "running" || state.value === "paused"
        ? vm.current && stateName(vm) === state.value
        : !vm.current))
      .sort((a, b) => {
        const x = key(a), y = key(b);
        if (x === y) return 0;
        if (x === null || x === undefined) return 1;
        if (y === null || y === undefined) return -1;
        return (x < y ? -1 : 1) * view.dir;
      });
    clear(tbody);
    for (const vm of rows) {
      const st = stateName(vm);
      const tr = el("tr", { class: "vm-row" + (vm.current ? "" : " gone") });
      for (const c of FLEET_COLS) {
        if (c.key === "name") {
          tr.append(el("td", { class: "name vm-name" }, el("a", { href: vmHref(vm.host, vm.uuid) }, vm.name)));
        } else if (c.key === "state") {
          tr.append(el("td", { class: stateClass(st) }, vm.current ? st : "gone (seen " + fmtAgo(vm.last_seen_ms, d.now_ms) + ")"));
        } else {
          tr.append(el("td", { class: c.num ? "num" : "" }, c.fmt ? c.fmt(vm[c.key]) : vm[c.key]));
        }
      }
      tbody.append(tr);
    }
    const running = d.vms.filter((v) => v.current && v.state === 1).length;
    summary.textContent = d.hosts.length + " host(s), " + d.vms.filter((v) => v.current).length +
      " VM(s) in the latest cycle, " + running + " running; showing " + rows.length +
      ". Rates are per second over the last interval (" + fmtNum(d.interval_ms / 1000, 1) + " s).";
    clear(empty);
    if (d.vms.length === 0) {
      empty.append(el("p", { class: "empty" },
        "No VMs yet. vmtel shows a VM after its first collection cycle (every " +
        fmtNum(d.interval_ms / 1000, 1) + " s); CPU and rates need two. If this stays empty, look at the Agent page for source errors."));
    } else if (rows.length === 0) {
      empty.append(el("p", { class: "empty" }, "No VM matches these filters."));
    }
    if (d.store && d.store.last_error) showError("History store problem: " + d.store.last_error);
  }

  every(3000, async () => {
    view.data = await api("/api/fleet");
    clearError();
    render();
  });
}

// ---------------------------------------------------------------------------------------------
// Charts
// ---------------------------------------------------------------------------------------------

const plots = new Map();

function chartBox(chart, emptyText) {
  const points = chart.lines.reduce((n, l) => n + l.values.filter((v) => v !== null).length, 0);
  const box = el("div", { class: "chart", "data-chart": chart.id, "data-points": String(points) },
    el("h3", {}, chart.title));
  if (points === 0) {
    box.append(el("p", { class: "empty" }, emptyText));
    return box;
  }
  return box;
}

function drawChart(container, chart, emptyText) {
  const old = plots.get(chart.id);
  if (old) { old.destroy(); plots.delete(chart.id); }
  const box = chartBox(chart, emptyText);
  container.append(box);
  if (box.dataset.points === "0" || typeof uPlot === "undefined") {
    if (typeof uPlot === "undefined") box.append(el("p", { class: "error" }, "The chart library did not load."));
    return;
  }
  const fmt = formatterFor(chart.unit);
  const lines = chart.lines.filter((l) => l.values.some((v) => v !== null));
  const width = Math.max(300, box.clientWidth - 24);
  const opts = {
    width, height: 220,
    scales: { x: { time: true } },
    series: [{}].concat(lines.map((l, i) => ({
      label: l.label, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: true,
      value: (u, v) => fmt(v),
    }))),
    axes: [{}, { size: 80, values: (u, vals) => vals.map((v) => fmt(v)) }],
    legend: { live: true },
  };
  const data = [chart.t.map((t) => t / 1000)].concat(lines.map((l) => l.values));
  plots.set(chart.id, new uPlot(opts, data, box));
}

window.addEventListener("resize", () => {
  for (const p of plots.values()) {
    const box = p.root.parentElement;
    if (box) p.setSize({ width: Math.max(300, box.clientWidth - 24), height: 220 });
  }
});

// ---------------------------------------------------------------------------------------------
// VM page
// ---------------------------------------------------------------------------------------------

function emptyTextFor(id) {
  if (id === "mem") return "No memory values in this range. The hypervisor reports guest memory only with a balloon driver and a statistics period (see balloon_period); libvirt's test driver reports none.";
  if (id === "memact") return "No swap or page-fault counters in this range: they come from the guest's balloon driver statistics, which this VM does not report.";
  if (id === "cpu") return "No CPU values in this range yet: CPU percentages need two collection cycles.";
  return "No values in this range yet: rates need two collection cycles, and the device must report counters.";
}

function vmPage(host, uuid) {
  const main = clear(document.getElementById("main"));
  const params = new URLSearchParams(location.search);
  let range = RANGES.includes(params.get("range")) ? params.get("range") : "1h";
  const title = el("h1", { id: "vm-name" }, "VM");
  const meta = el("p", { class: "meta", id: "vm-meta" });
  const cards = el("div", { class: "cards", id: "vm-cards" });
  const rangeBar = el("div", { class: "ranges", role: "group", "aria-label": "Range" });
  const charts = el("div", { class: "charts", id: "vm-charts" });
  const devBody = el("tbody");
  const devices = el("table", { id: "vm-devices" },
    el("thead", {}, el("tr", {}, ["Type", "Device", "MAC address", "Path", "Last seen"].map((h) => el("th", { scope: "col" }, h)))), devBody);
  const devEmpty = el("div");
  main.append(el("p", {}, el("a", { href: "/" }, "← Fleet")), title, meta, cards,
    el("div", { class: "controls" }, el("span", {}, "Range:"), rangeBar),
    charts, el("h2", {}, "Devices"), devEmpty, devices);
  for (const r of RANGES) {
    rangeBar.append(el("button", { type: "button", "data-range": r, class: r === range ? "active" : "",
      onclick: () => {
        range = r;
        for (const b of rangeBar.children) b.classList.toggle("active", b.dataset.range === r);
        const u = new URL(location.href); u.searchParams.set("range", r); history.replaceState(null, "", u);
        load();
      } }, r));
  }

  async function load() {
    const q = new URLSearchParams({ host, uuid, range });
    const d = await api("/api/vm?" + q.toString());
    clearError();
    title.textContent = d.name;
    document.title = "vmtel: " + d.name;
    clear(meta).append(el("span", {}, "Host: ", d.host), el("span", {}, "UUID: ", d.uuid),
      el("span", {}, "Resolution: ", d.resolution === "raw" ? "every cycle" : "1-minute averages",
        ", ", fmtNum(d.step_ms / 1000, 0), " s per point"));
    clear(cards);
    const l = d.latest;
    if (l) {
      const card = (k, v) => el("div", { class: "card" }, el("div", { class: "v" }, v), el("div", { class: "k" }, k));
      cards.append(card("State", stateName(l)), card("vCPUs", fmtNum(l.vcpus, 0)), card("CPU", fmtPct(l.cpu_pct)),
        card("Memory used", fmtPct(l.mem_used_pct)), card("Net rx / tx", fmtBps(l.net_rx_bps) + " / " + fmtBps(l.net_tx_bps)),
        card("Disk read / write", fmtBps(l.disk_rd_bps) + " / " + fmtBps(l.disk_wr_bps)));
    } else {
      cards.append(el("p", { class: "empty" }, "This VM was not seen in the last hour (shut off or removed); its history is below."));
    }
    clear(charts);
    for (const c of d.charts) drawChart(charts, c, emptyTextFor(c.id.split(":")[0]));
    clear(devBody);
    clear(devEmpty);
    if (d.devices.length === 0) devEmpty.append(el("p", { class: "empty" }, "No NICs or disks reported for this VM."));
    for (const dev of d.devices) {
      devBody.append(el("tr", { class: "device-row" },
        el("td", {}, dev.devtype === "nic" ? "NIC" : dev.devtype === "disk" ? "disk" : dev.devtype),
        el("td", { class: "name" }, dev.device),
        el("td", {}, dev.mac ?? (dev.devtype === "nic" ? "not known" : "")),
        el("td", { class: "name" }, dev.path ?? (dev.devtype === "disk" ? "not known" : "")),
        el("td", {}, fmtAgo(dev.last_seen_ms, d.to_ms))));
    }
  }
  every(5000, load);
}

// ---------------------------------------------------------------------------------------------
// Agent page
// ---------------------------------------------------------------------------------------------

function table(id, heads, rows) {
  return el("table", { id },
    el("thead", {}, el("tr", {}, heads.map((h) => el("th", { scope: "col", class: h.num ? "num" : "" }, h.label)))),
    el("tbody", {}, rows.map((r) => el("tr", {}, r.map((c, i) => el("td", { class: heads[i].num ? "num" : "name" }, c))))));
}

function agentPage() {
  const main = clear(document.getElementById("main"));
  const box = el("div");
  main.append(el("h1", {}, "Agent"), box);
  every(5000, async () => {
    const d = await api("/api/agent");
    clearError();
    clear(box);
    const problems = d.sources.filter((s) => !s.connected || s.last_error).length;
    box.append(el("p", { class: "meta" },
      "vmtel " + d.version + ", collecting every " + fmtNum(d.interval_ms / 1000, 1) + " s. ",
      problems === 0 ? el("span", { class: "ok" }, "All sources are collecting.") :
        el("span", { class: "state-other" }, problems + " source(s) have problems: see below.")));

    box.append(el("h2", {}, "Sources"));
    if (d.sources.length === 0) box.append(el("p", { class: "empty" }, "No sources are configured."));
    else box.append(table("agent-sources", [
      { label: "Source" }, { label: "Connected" }, { label: "Cycles", num: true }, { label: "Failed", num: true },
      { label: "Skipped ticks", num: true }, { label: "Last cycle", num: true }, { label: "VMs", num: true }, { label: "Last error" }],
      d.sources.map((s) => [s.source, s.connected ? "yes" : "no", fmtNum(s.cycles, 0), fmtNum(s.errors, 0),
        fmtNum(s.skipped_ticks, 0), fmtNum(s.last_cycle_ms, 1) + " ms", fmtNum(s.domains, 0), s.last_error ?? "none"])));

    box.append(el("h2", {}, "Outputs"));
    const hist = new Map(((d.history && d.history.sinks) || []).map((s) => [s.key, s.fields]));
    box.append(table("agent-sinks", [
      { label: "Output" }, { label: "Batches", num: true }, { label: "Lines", num: true }, { label: "Dropped", num: true },
      { label: "Errors", num: true }, { label: "Backlog", num: true }, { label: "Oldest queued", num: true }],
      d.sinks.map((s) => {
        const f = hist.get(s.sink) || {};
        const backlog = f.backlog_batches === undefined ? "none (writes directly)" :
          fmtNum(f.backlog_batches, 0) + " batches, " + fmtBytes(f.backlog_bytes);
        const oldest = f.oldest_age_ns === undefined ? "–" : fmtNum(f.oldest_age_ns / 1e9, 0) + " s";
        return [s.sink, fmtNum(s.batches, 0), fmtNum(s.lines, 0), fmtNum(s.dropped, 0), fmtNum(s.errors, 0), backlog, oldest];
      })));

    box.append(el("h2", {}, "History store"));
    const st = d.store;
    if (!st) box.append(el("p", { class: "empty" }, "History is disabled ([store] enabled = false): no charts, and /metrics exports only vmtel's own metrics."));
    else {
      box.append(el("div", { class: "cards" },
        el("div", { class: "card" }, el("div", { class: "v" }, fmtBytes(st.used_bytes)), el("div", { class: "k" }, "used")),
        el("div", { class: "card" }, el("div", { class: "v" }, fmtNum(st.points, 0)), el("div", { class: "k" }, "values stored")),
        el("div", { class: "card" }, el("div", { class: "v" }, st.oldest_raw_ms ? fmtAgo(st.oldest_raw_ms, d.now_ms) : "–"), el("div", { class: "k" }, "oldest raw point")),
        el("div", { class: "card" }, el("div", { class: "v" }, fmtNum(st.errors, 0)), el("div", { class: "k" }, "batches not kept"))));
      box.append(el("p", { class: "meta" }, "File: ", st.path ?? "–"));
      if (st.last_error) box.append(el("p", { class: "error", id: "store-error" }, st.last_error));
    }
    box.append(el("h2", {}, "Last hour"));
    if (!d.history) box.append(el("p", { class: "empty" }, d.history_error || "No history."));
    else {
      const charts = el("div", { class: "charts" });
      box.append(charts);
      drawChart(charts, d.history.cycle_time, "No cycles recorded yet.");
      drawChart(charts, d.history.problems, "No cycles recorded yet.");
    }
  });
}

// ---------------------------------------------------------------------------------------------

function route() {
  const p = location.pathname;
  const m = p.match(/^\/vm\/([^/]+)\/([^/]+)\/?$/);
  document.getElementById("nav-fleet").classList.toggle("active", p === "/" || !!m);
  document.getElementById("nav-agent").classList.toggle("active", p === "/agent");
  if (m) return vmPage(decodeURIComponent(m[1]), decodeURIComponent(m[2]));
  if (p === "/agent") return agentPage();
  return fleetPage();
}

route();
