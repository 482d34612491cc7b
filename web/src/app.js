// vmtel dashboard. Renders the JSON API (docs/api.md) into the page.
//
// Every string that comes from a hypervisor or the data source (VM and host names, device
// names, paths, errors) is put into the page with textContent via el(), never parsed as HTML.
//
// Sections: helpers and formatting; the API, the source indicator and polling; one section per
// page (hosts, fleet, problems, top; charts and the VM page; agent); the router at the end.
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

// A <select> with `options` as [value, label] pairs.
function select(id, label, options, value) {
  const s = el("select", { id, "aria-label": label }, options.map(([v, l]) => el("option", { value: v }, l)));
  s.value = value;
  return s;
}

// A table head row: `cols` as {label, num, key, title}.
function headRow(cols) {
  return el("tr", {}, cols.map((c) => el("th", { scope: "col", class: c.num ? "num" : "", title: c.title }, c.label)));
}

// ---------------------------------------------------------------------------------------------
// Formatting
// ---------------------------------------------------------------------------------------------

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
// A span of time: "30 s", "10 min", "6 h", "7 days".
function fmtDuration(ms) {
  const s = Math.round(ms / 1000);
  if (s < 120) return s + " s";
  if (s < 3600) return Math.round(s / 60) + " min";
  if (s < 172800) return Math.round(s / 3600) + " h";
  return Math.round(s / 86400) + " days";
}
function fmtTime(ms) { return new Date(ms).toLocaleString(); }
// The clock time if `ms` is today, else date and time.
function fmtWhen(ms) {
  const d = new Date(ms);
  return d.toDateString() === new Date().toDateString() ? d.toLocaleTimeString() : d.toLocaleString();
}
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
function fleetHref(host) { return "/fleet?" + new URLSearchParams({ host }).toString(); }

// ---------------------------------------------------------------------------------------------
// The API, the source indicator and polling
// ---------------------------------------------------------------------------------------------

// "embedded history /var/lib/vmtel/history.db" or "InfluxDB 3 http://db:8181 database vmtel".
function describeSource(src) {
  if (!src) return "the data source";
  if (src.kind === "influxdb3") return "InfluxDB 3 " + src.location;
  if (src.kind === "embedded") return "embedded history " + src.location;
  return src.kind + " " + src.location;
}

let lastSource = null;

// Shows the source in the header (#source), marked healthy (data-health="ok") or not ("bad").
function markSource(src, ok, why) {
  if (src) lastSource = src;
  const box = document.getElementById("source");
  if (!box) return;
  box.dataset.health = ok ? "ok" : "bad";
  box.className = ok ? "healthy" : "unhealthy";
  box.title = (ok ? "Reading " : "Cannot read ") + describeSource(lastSource) + (why ? ": " + why : "");
  clear(box).append(el("span", { class: "dot", "aria-hidden": "true" }),
    el("span", { class: "where" }, lastSource ? describeSource(lastSource) : "data source"),
    el("span", { class: "health" }, ok ? "ok" : "unavailable"));
}

// GETs `path` and returns its JSON. Throws an Error with the server's text; `status` and
// `source` are set when the server answered (an unreachable vmtel has status 0). A 502/503 or
// no answer marks the source unhealthy; a good answer marks it healthy.
async function api(path) {
  let res;
  try {
    res = await fetch(path, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  } catch (e) {
    const err = new Error("cannot reach vmtel (" + e.message + "): is it still running?");
    err.status = 0;
    markSource(null, false, err.message);
    throw err;
  }
  if (res.status === 401) {
    location.href = "/login";
    throw new Error("this dashboard needs a token: sign in");
  }
  let body = null;
  try { body = await res.json(); } catch (e) { /* not JSON */ }
  if (!res.ok) {
    const err = new Error((body && body.error) || "vmtel answered " + res.status);
    err.status = res.status;
    err.source = (body && body.source) || null;
    if (res.status >= 500) markSource(err.source, false, err.message);
    throw err;
  }
  if (body && body.source) markSource(body.source, true);
  return body;
}

function setStatus(text, bad) {
  const s = document.getElementById("status");
  s.textContent = text;
  s.classList.toggle("bad", !!bad);
}

// The page's error box (#error, at the top of <main>): the message, then which source it came
// from, the HTTP status and since when the figures below are stale.
function showError(e, note) {
  const msg = typeof e === "string" ? e : e.message;
  let box = document.getElementById("error");
  if (!box) {
    box = el("div", { id: "error", class: "error", role: "alert" });
    document.getElementById("main").prepend(box);
  }
  const details = [];
  if (e && e.source) details.push("Source: " + describeSource(e.source));
  else if (e && e.status >= 500 && lastSource) details.push("Source: " + describeSource(lastSource));
  if (e && e.status) details.push("HTTP " + e.status);
  if (note) details.push(note);
  clear(box).append(el("p", { class: "msg" }, msg));
  if (details.length) box.append(el("p", { class: "details" }, details.join(" · ")));
}
function clearError() {
  const box = document.getElementById("error");
  if (box) box.remove();
}

// Runs `fn(current)` now and every `ms`; `current()` is false once a newer run started (drop
// the answer). A failure goes to the status line and the error box, then `onFail(e)`; the page
// keeps polling. Returns {now()}: run at once (after a filter change).
function poll(ms, fn, onFail) {
  let timer = null;
  let seq = 0;
  let lastOk = null;
  const run = async () => {
    clearTimeout(timer);
    const mine = ++seq;
    const current = () => mine === seq;
    try {
      await fn(current);
      if (!current()) return;
      lastOk = new Date();
      setStatus("updated " + lastOk.toLocaleTimeString());
    } catch (e) {
      if (!current()) return;
      setStatus("update failed", true);
      showError(e, "retrying every " + fmtDuration(ms) +
        (lastOk ? "; the figures below are from " + lastOk.toLocaleTimeString() : ""));
      if (onFail) onFail(e, lastOk);
    }
    if (current()) timer = setTimeout(run, ms);
  };
  run();
  return { now: run };
}

// What a page shows in place of its table when its first load failed.
function failedText(what, e) {
  if (e && e.status > 0 && e.status < 500) return "No " + what + " to show (see the message above).";
  const who = e && e.status === 0 ? "vmtel" : describeSource((e && e.source) || lastSource);
  return "No " + what + " to show: " + who + " did not answer (see the message above). This page retries on its own.";
}

// ---------------------------------------------------------------------------------------------
// Hosts page (/)
// ---------------------------------------------------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";
const TREND_MS = 3600000;

function svgEl(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

// A small line of `values` (CPU %, null where unknown) at times `t` over the hour before `now`,
// 0 to 100 % (or the highest value). data-points says how many values it drew.
function sparkline(t, values, now) {
  const W = 140, H = 28, PAD = 3;
  const known = values.filter((v) => v !== null && v !== undefined && isFinite(v));
  if (known.length === 0) {
    return el("span", { class: "spark spark-empty", "data-points": "0",
      title: "The trend has 2-minute points; the first needs two of them" }, "collecting");
  }
  const top = Math.max(100, ...known);
  const x = (ms) => PAD + Math.min(1, Math.max(0, (ms - (now - TREND_MS)) / TREND_MS)) * (W - 2 * PAD);
  const y = (v) => H - PAD - (v / top) * (H - 2 * PAD);
  const svg = svgEl("svg", { class: "spark", width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img",
    "data-points": String(known.length) });
  const label = "CPU over the last hour: " + fmtPct(Math.min(...known)) + " to " + fmtPct(Math.max(...known)) +
    ", latest " + fmtPct(known[known.length - 1]);
  svg.setAttribute("aria-label", label);
  const title = svgEl("title", {});
  title.textContent = label;
  svg.append(title, svgEl("rect", { class: "area", x: 0, y: 0, width: W, height: H, rx: 3 }),
    svgEl("line", { class: "base", x1: PAD, x2: W - PAD, y1: H - PAD, y2: H - PAD }));
  // One polyline per run of known values; a lone value is a dot.
  let run = [];
  const flush = () => {
    if (run.length === 1) svg.append(svgEl("circle", { cx: run[0][0], cy: run[0][1], r: 2.5 }));
    else if (run.length > 1) svg.append(svgEl("polyline", { points: run.map((p) => p.join(",")).join(" ") }));
    run = [];
  };
  t.forEach((ms, i) => {
    const v = values[i];
    if (v === null || v === undefined || !isFinite(v)) flush();
    else run.push([x(ms).toFixed(1), y(v).toFixed(1)]);
  });
  flush();
  return svg;
}

const HOST_COLS = [
  { label: "Host" },
  { label: "Running", num: true, title: "VMs running in the host's latest cycle" },
  { label: "Paused", num: true },
  { label: "Other", num: true, title: "VMs in other states (shut off, crashed, …)" },
  { label: "vCPUs / CPUs", num: true, title: "vCPUs of its VMs / the host's logical CPUs (its vm_host line)" },
  { label: "Memory / host", num: true, title: "Memory of its VMs (balloon size) / the host's physical memory" },
  { label: "VM CPU", num: true, title: "CPU its VMs use, % of their vCPUs" },
  { label: "Net", num: true, title: "Network bytes per second, rx + tx" },
  { label: "Disk", num: true, title: "Disk bytes per second, read + write" },
  { label: "Host CPU", num: true, title: "The host's CPUs busy over its last interval, % of all of them (its vm_host line)" },
  { label: "Last seen" },
  { label: "CPU, last hour", title: "Mean CPU % of its VMs over the last hour" },
];

// "allocated / capacity" with the share as a title; over capacity is marked (overcommit).
function allocCell(what, used, cap, fmt, title) {
  const td = el("td", { class: "num alloc alloc-" + what, title });
  if (cap) {
    const share = (used || 0) / cap * 100;
    td.append(fmt(used || 0), el("span", { class: "cap" }, " / " + fmt(cap)));
    td.dataset.share = share.toFixed(1);
    if (share > 100) td.classList.add("over");
  } else {
    td.append(fmt(used));
  }
  return td;
}

function hostsPage() {
  const main = clear(document.getElementById("main"));
  const summary = el("p", { class: "meta", id: "hosts-summary" }, "Loading…");
  const empty = el("div", { id: "hosts-empty" });
  const tbody = el("tbody");
  const tbl = el("table", { id: "hosts-table", hidden: true }, el("thead", {}, headRow(HOST_COLS)), tbody);
  main.append(el("h1", {}, "Hosts"), summary, empty, tbl);
  let shown = false;

  function render(d) {
    clear(tbody);
    for (const h of d.hosts) {
      const seen = fmtAgo(h.last_seen_ms, d.now_ms);
      tbody.append(el("tr", { class: "host-row" + (h.silent ? " silent" : ""), "data-host": h.host },
        el("td", { class: "name host-name" }, el("a", { href: fleetHref(h.host) }, h.host)),
        el("td", { class: "num" }, fmtNum(h.running, 0)),
        el("td", { class: "num" + (h.paused ? " state-paused" : "") }, fmtNum(h.paused, 0)),
        el("td", { class: "num" + (h.other ? " state-other" : "") }, fmtNum(h.other, 0)),
        allocCell("vcpus", h.vcpus, h.host_cpus, (v) => fmtNum(v, 0),
          h.host_cpus ? fmtNum(h.vcpus, 0) + " vCPUs on " + fmtNum(h.host_cpus, 0) + " CPUs" : "Host CPUs unknown (no vm_host line)"),
        allocCell("mem", h.mem_bytes, h.host_mem_bytes, fmtBytes,
          h.host_mem_bytes ? fmtBytes(h.mem_bytes) + " allocated of " + fmtBytes(h.host_mem_bytes) +
            (h.host_mem_free_bytes != null ? ", " + fmtBytes(h.host_mem_free_bytes) + " free on the host" : "")
            : "Host memory unknown (no vm_host line)"),
        el("td", { class: "num" }, fmtPct(h.cpu_pct)),
        el("td", { class: "num" }, fmtBps(h.net_bps)),
        el("td", { class: "num" }, fmtBps(h.disk_bps)),
        el("td", { class: "num host-cpu" }, fmtPct(h.host_cpu_pct)),
        el("td", { class: "last-seen" + (h.silent ? " state-other" : "") }, h.silent ? "silent, last cycle " + seen : seen),
        el("td", { class: "trend" }, sparkline(h.trend.t, h.trend.cpu_pct, d.now_ms))));
    }
    const sum = (k) => d.hosts.reduce((n, h) => n + (h[k] || 0), 0);
    const silent = d.hosts.filter((h) => h.silent).length;
    summary.textContent = fmtNum(d.hosts.length, 0) + " host(s), " + fmtNum(sum("running"), 0) + " VM(s) running, " +
      fmtNum(sum("paused"), 0) + " paused, " + fmtNum(sum("other"), 0) + " in other states; " +
      (silent ? silent + " silent host(s) (no cycle for " + d.silent_intervals + " intervals)" : "no silent host") +
      ". Rates are per second over the last interval.";
    tbl.hidden = d.hosts.length === 0;
    clear(empty);
    if (d.hosts.length === 0) {
      empty.append(el("p", { class: "empty" }, d.source && d.source.kind === "influxdb3"
        ? "No host has written to " + describeSource(d.source) + " within the last hour. Check that the agents' " +
          "[[outputs.influxdb]] point at this database (vmtel check-output)."
        : "No hosts yet. vmtel lists a host after its first collection cycle (every " +
          fmtDuration(d.interval_ms || 10000) + "). If this stays empty, look at the Agent page for source errors."));
    }
    shown = true;
  }

  poll(5000, async (current) => {
    const d = await api("/api/hosts");
    if (!current()) return;
    clearError();
    render(d);
  }, (e) => {
    if (shown) return;
    summary.textContent = "";
    clear(empty).append(el("p", { class: "empty" }, failedText("hosts", e)));
  });
}

// ---------------------------------------------------------------------------------------------
// Fleet page (/fleet): filtered, sorted and paged by the server, 100 VMs a page
// ---------------------------------------------------------------------------------------------

// `key` is also the server's sort key.
const FLEET_COLS = [
  { key: "name", label: "Name", cls: "name" },
  { key: "host", label: "Host" },
  { key: "state", label: "State" },
  { key: "vcpus", label: "vCPUs", num: true, fmt: (v) => fmtNum(v, 0) },
  { key: "cpu_pct", label: "CPU", num: true, fmt: fmtPct },
  { key: "mem_used_pct", label: "Mem used", num: true, fmt: fmtPct },
  { key: "net_rx_bps", label: "Net rx", num: true, fmt: fmtBps },
  { key: "net_tx_bps", label: "Net tx", num: true, fmt: fmtBps },
  { key: "disk_rd_bps", label: "Disk read", num: true, fmt: fmtBps },
  { key: "disk_wr_bps", label: "Disk write", num: true, fmt: fmtBps },
];
const FLEET_STATES = ["running", "paused", "other", "gone"];
const PAGE_SIZE = 100;

function fleetPage() {
  const main = clear(document.getElementById("main"));
  const params = new URLSearchParams(location.search);
  const int = (v, lo, hi, dflt) => { const n = parseInt(v, 10); return isFinite(n) && n >= lo && n <= hi ? n : dflt; };
  const view = {
    sort: FLEET_COLS.some((c) => c.key === params.get("sort")) ? params.get("sort") : "name",
    dir: params.get("dir") === "desc" ? "desc" : "asc",
    offset: int(params.get("offset"), 0, 1e9, 0),
    // ?limit= changes the page size (the default is 100).
    limit: int(params.get("limit"), 1, 1000, PAGE_SIZE),
  };
  const search = el("input", { type: "search", id: "filter-name", placeholder: "Filter by name, host or UUID",
    "aria-label": "Filter by name, host or UUID", value: params.get("q") || "" });
  const host = select("filter-host", "Filter by host", [["", "All hosts"]], "");
  const wantHost = params.get("host") || "";
  if (wantHost) { host.append(el("option", { value: wantHost }, wantHost)); host.value = wantHost; }
  const state = select("filter-state", "Filter by state", [["", "All states"]].concat(FLEET_STATES.map((s) => [s, s])),
    FLEET_STATES.includes(params.get("state")) ? params.get("state") : "");
  const summary = el("p", { class: "meta", id: "fleet-summary" }, "Loading…");
  const head = el("tr");
  const tbody = el("tbody");
  const tbl = el("table", { id: "fleet-table" }, el("thead", {}, head), tbody);
  const empty = el("div", { id: "fleet-empty" });
  const prev = el("button", { type: "button", id: "fleet-prev", disabled: true }, "← Previous");
  const next = el("button", { type: "button", id: "fleet-next", disabled: true }, "Next →");
  const range = el("span", { id: "fleet-range", "aria-live": "polite" });
  main.append(el("h1", {}, "Fleet"), summary,
    el("div", { class: "controls" }, search, host, state, el("span", { class: "pager" }, prev, range, next)),
    empty, tbl);

  for (const c of FLEET_COLS) {
    head.append(el("th", { class: (c.num ? "num " : "") + "sortable", "data-key": c.key, scope: "col",
      title: "Sort by " + c.label,
      onclick: () => {
        // Numbers start highest first, text A to Z; a second click turns it round.
        view.dir = view.sort === c.key ? (view.dir === "asc" ? "desc" : "asc") : (c.num ? "desc" : "asc");
        view.sort = c.key;
        changed();
      } }, c.label));
  }

  // The query of the current view, for the API (with paging) and the address bar (without
  // the defaults).
  function query(forApi) {
    const q = new URLSearchParams();
    if (host.value) q.set("host", host.value);
    if (state.value) q.set("state", state.value);
    if (search.value.trim()) q.set("q", search.value.trim());
    if (forApi || view.sort !== "name") q.set("sort", view.sort);
    if (forApi || view.dir !== "asc") q.set("dir", view.dir);
    if (forApi || view.offset) q.set("offset", String(view.offset));
    if (forApi || view.limit !== PAGE_SIZE) q.set("limit", String(view.limit));
    return q.toString();
  }
  function changed(keepOffset) {
    if (!keepOffset) view.offset = 0;
    const q = query(false);
    history.replaceState(null, "", "/fleet" + (q ? "?" + q : ""));
    poller.now();
  }
  let typing = null;
  search.addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(() => changed(), 300); });
  host.addEventListener("change", () => changed());
  state.addEventListener("change", () => changed());
  prev.addEventListener("click", () => { view.offset = Math.max(0, view.offset - view.limit); changed(true); });
  next.addEventListener("click", () => { view.offset += view.limit; changed(true); });

  function render(d) {
    for (const th of head.children) {
      th.classList.toggle("sorted-asc", th.dataset.key === view.sort && view.dir === "asc");
      th.classList.toggle("sorted-desc", th.dataset.key === view.sort && view.dir === "desc");
    }
    // Host options follow the data; keep the selection (even of a host not seen this hour).
    const hosts = d.hosts.map((h) => h.host);
    if (host.value && !hosts.includes(host.value)) hosts.push(host.value);
    const have = Array.from(host.options).slice(1).map((o) => o.value);
    if (hosts.join("\n") !== have.join("\n")) {
      const keep = host.value;
      while (host.options.length > 1) host.remove(1);
      for (const h of hosts) host.append(el("option", { value: h }, h));
      host.value = keep;
    }
    clear(tbody);
    for (const vm of d.vms) {
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
    const all = d.hosts.reduce((n, h) => n + (h.vms || 0), 0);
    const first = d.vms.length ? view.offset + 1 : 0;
    range.textContent = "showing " + fmtNum(first, 0) + "–" + fmtNum(view.offset + d.vms.length, 0) + " of " + fmtNum(d.total, 0);
    prev.disabled = view.offset === 0;
    next.disabled = view.offset + d.vms.length >= d.total;
    summary.textContent = fmtNum(d.hosts.length, 0) + " host(s), " + fmtNum(all, 0) + " VM(s) seen within the hour; " +
      fmtNum(d.total, 0) + " match. Rates are per second over the last interval (" + fmtDuration(d.interval_ms || 10000) + ").";
    tbl.hidden = d.vms.length === 0;
    clear(empty);
    if (all === 0) {
      empty.append(el("p", { class: "empty" },
        "No VMs yet. vmtel shows a VM after its first collection cycle (every " + fmtDuration(d.interval_ms || 10000) +
        "); CPU and rates need two. If this stays empty, look at the Agent page for source errors."));
    } else if (d.total === 0) {
      empty.append(el("p", { class: "empty" }, "No VM matches these filters."));
    }
    if (d.store && d.store.last_error) showError("History store problem: " + d.store.last_error);
  }

  const poller = poll(3000, async (current) => {
    const d = await api("/api/fleet?" + query(true));
    if (!current()) return;
    // The page ran off the end (VMs went away): show the last page instead.
    if (d.vms.length === 0 && d.total > 0 && view.offset > 0) {
      view.offset = Math.floor((d.total - 1) / view.limit) * view.limit;
      changed(true);
      return;
    }
    clearError();
    render(d);
  }, (e) => {
    if (tbody.firstChild) return;
    summary.textContent = "";
    tbl.hidden = true;
    clear(empty).append(el("p", { class: "empty" }, failedText("VMs", e)));
  });
}

// ---------------------------------------------------------------------------------------------
// Problems page (/problems)
// ---------------------------------------------------------------------------------------------

// The rules in the server's order (most urgent first), in words; `level` colours the row.
const RULES = {
  host_silent: { label: "Host silent", level: "bad" },
  crashed: { label: "Crashed", level: "bad" },
  paused: { label: "Paused", level: "warn" },
  steal: { label: "CPU steal", level: "warn" },
  mem_full: { label: "Memory full", level: "warn" },
  swapping: { label: "Swapping", level: "warn" },
  disk_errors: { label: "Disk errors", level: "info" },
  nic_errors: { label: "NIC errors", level: "info" },
  nic_drops: { label: "NIC drops", level: "info" },
  vm_silent: { label: "VM silent", level: "info" },
};
const ruleLabel = (r) => (RULES[r] ? RULES[r].label : r);
// Rows drawn at most; the filters narrow the rest down.
const MAX_PROBLEM_ROWS = 500;

function problemsPage() {
  const main = clear(document.getElementById("main"));
  const thresholds = el("p", { class: "meta", id: "problems-thresholds" });
  const summary = el("p", { class: "meta", id: "problems-summary" }, "Loading…");
  const rule = select("problems-rule", "Filter by rule", [["", "All rules"]], "");
  const host = select("problems-host", "Filter by host", [["", "All hosts"]], "");
  const empty = el("div", { id: "problems-empty" });
  const tbody = el("tbody");
  const tbl = el("table", { id: "problems-table", hidden: true },
    el("thead", {}, headRow([{ label: "Problem" }, { label: "Host" }, { label: "VM" }, { label: "Why" }, { label: "Since" }])), tbody);
  main.append(el("h1", {}, "Problems"), thresholds, summary, el("div", { class: "controls" }, rule, host), empty, tbl);
  let data = null;

  // Keeps `sel`'s options (after the first) equal to `values` as [value, label], and its selection.
  function options(sel, values) {
    const want = values.map((v) => v.join("\t")).join("\n");
    const have = Array.from(sel.options).slice(1).map((o) => o.value + "\t" + o.textContent).join("\n");
    if (want === have) return;
    const keep = sel.value;
    while (sel.options.length > 1) sel.remove(1);
    for (const [v, l] of values) sel.append(el("option", { value: v }, l));
    sel.value = values.some(([v]) => v === keep) ? keep : "";
  }

  function render() {
    const d = data;
    const t = d.thresholds;
    thresholds.textContent = "Flagged: vCPU steal above " + fmtPct(t.steal_pct) + " or guest memory in use at or above " +
      fmtPct(t.mem_used_pct) + " for " + t.cycles + " cycles in a row; swap, disk error, NIC error and drop counters " +
      "rising within the last " + fmtDuration(t.window_ms) + "; paused and crashed VMs; VMs missing from their host's " +
      "latest cycle; hosts without a cycle for " + t.silent_intervals + " intervals (" +
      fmtDuration(t.silent_intervals * (d.interval_ms || 10000)) + ").";
    const counts = new Map();
    for (const p of d.problems) counts.set(p.rule, (counts.get(p.rule) || 0) + 1);
    options(rule, Array.from(counts, ([r, n]) => [r, ruleLabel(r) + " (" + n + ")"]));
    options(host, Array.from(new Set(d.problems.map((p) => p.host))).sort().map((h) => [h, h]));
    const rows = d.problems.filter((p) => (!rule.value || p.rule === rule.value) && (!host.value || p.host === host.value));
    clear(tbody);
    for (const p of rows.slice(0, MAX_PROBLEM_ROWS)) {
      const level = RULES[p.rule] ? RULES[p.rule].level : "info";
      tbody.append(el("tr", { class: "problem-row level-" + level, "data-rule": p.rule },
        el("td", { class: "rule" }, ruleLabel(p.rule)),
        el("td", { class: "name" }, el("a", { href: fleetHref(p.host) }, p.host)),
        el("td", { class: "name problem-vm" }, p.uuid
          ? el("a", { href: vmHref(p.host, p.uuid) }, p.name ?? p.uuid)
          : el("span", { class: "muted" }, p.name ?? "the host")),
        el("td", { class: "why" }, p.why),
        el("td", { title: fmtTime(p.since_ms) }, fmtAgo(p.since_ms, d.now_ms) + " (" + fmtWhen(p.since_ms) + ")")));
    }
    const parts = Array.from(counts, ([r, n]) => n + " " + ruleLabel(r).replace(/^[A-Z](?=[a-z])/, (c) => c.toLowerCase()));
    summary.textContent = d.problems.length === 0 ? "" :
      fmtNum(d.problems.length, 0) + " problem(s): " + parts.join(", ") + "." +
      (rows.length > MAX_PROBLEM_ROWS ? " Showing the " + MAX_PROBLEM_ROWS + " most urgent of " + fmtNum(rows.length, 0) +
        " that match; choose a rule or host to see the others." : "");
    tbl.hidden = rows.length === 0;
    clear(empty);
    if (d.problems.length === 0) {
      empty.append(el("p", { class: "empty ok", id: "no-problems" }, "No problems: every host sent its latest cycle and no VM " +
        "breaks a rule (" + describeSource(d.source) + ", " + fmtWhen(d.now_ms) + ")."));
    } else if (rows.length === 0) {
      empty.append(el("p", { class: "empty" }, "No problem matches these filters."));
    }
  }
  rule.addEventListener("change", () => data && render());
  host.addEventListener("change", () => data && render());

  poll(5000, async (current) => {
    const d = await api("/api/problems");
    if (!current()) return;
    clearError();
    data = d;
    render();
  }, (e) => {
    if (data) return;
    summary.textContent = "";
    clear(empty).append(el("p", { class: "empty" }, failedText("problems", e)));
  });
}

// ---------------------------------------------------------------------------------------------
// Top page (/top)
// ---------------------------------------------------------------------------------------------

const TOP_BY = [
  ["cpu_pct", "CPU", "mean CPU"],
  ["cpu_steal_pct", "CPU steal", "mean vCPU steal"],
  ["net", "Network", "mean network traffic (rx + tx)"],
  ["disk", "Disk", "mean disk traffic (read + write)"],
  ["mem", "Memory used", "mean guest memory in use"],
];

function topEmptyText(by, range) {
  if (by === "mem") return "No VM reported guest memory in use over the last " + range + ": it needs the guest's balloon driver " +
    "with a statistics period (see balloon_period); libvirt's test driver reports none.";
  if (by === "cpu_steal_pct") return "No VM reported vCPU steal (libvirt's vcpu delay) over the last " + range + ".";
  return "No VM has values over the last " + range + " yet: rates and CPU need two collection cycles.";
}

function topPage() {
  const main = clear(document.getElementById("main"));
  const params = new URLSearchParams(location.search);
  const by = select("top-by", "Rank by", TOP_BY.map(([v, l]) => [v, l]),
    TOP_BY.some(([v]) => v === params.get("by")) ? params.get("by") : "cpu_pct");
  const range = select("top-range", "Over the last", RANGES.map((r) => [r, "last " + r]),
    RANGES.includes(params.get("range")) ? params.get("range") : "1h");
  const host = select("top-host", "Host", [["", "All hosts"]], "");
  const wantHost = params.get("host") || "";
  if (wantHost) { host.append(el("option", { value: wantHost }, wantHost)); host.value = wantHost; }
  const title = el("p", { class: "meta", id: "top-title" }, "Loading…");
  const empty = el("div", { id: "top-empty" });
  const valueHead = el("th", { scope: "col", class: "num" }, "Value");
  const tbody = el("tbody");
  const tbl = el("table", { id: "top-table", hidden: true },
    el("thead", {}, el("tr", {}, el("th", { scope: "col", class: "num" }, "#"), el("th", { scope: "col" }, "VM"),
      el("th", { scope: "col" }, "Host"), valueHead, el("th", { scope: "col", class: "bar-col" }, ""))), tbody);
  main.append(el("h1", {}, "Top VMs"), el("div", { class: "controls" }, by, range, host), title, empty, tbl);
  let hostsLoaded = false;
  let shown = false;

  function changed() {
    const q = new URLSearchParams();
    if (by.value !== "cpu_pct") q.set("by", by.value);
    if (range.value !== "1h") q.set("range", range.value);
    if (host.value) q.set("host", host.value);
    history.replaceState(null, "", "/top" + (q.toString() ? "?" + q : ""));
    poller.now();
  }
  for (const s of [by, range, host]) s.addEventListener("change", changed);

  // The host choices, from the fleet's host list (without its VMs).
  async function loadHosts() {
    const f = await api("/api/fleet?limit=0");
    const keep = host.value;
    const hosts = f.hosts.map((h) => h.host);
    if (keep && !hosts.includes(keep)) hosts.push(keep);
    while (host.options.length > 1) host.remove(1);
    for (const h of hosts) host.append(el("option", { value: h }, h));
    host.value = keep;
    hostsLoaded = true;
  }

  function render(d) {
    const what = TOP_BY.find(([v]) => v === d.by) || TOP_BY[0];
    const fmt = formatterFor(d.unit);
    title.textContent = "The " + (d.vms.length || 10) + " VMs with the highest " + what[2] + " over the last " +
      fmtDuration(d.range_ms) + ", " + (d.host ? "on " + d.host : "of all hosts") + ".";
    valueHead.textContent = what[1] + (d.unit ? " (" + d.unit + ")" : "");
    const max = Math.max(0, ...d.vms.map((v) => v.value || 0));
    clear(tbody);
    d.vms.forEach((v, i) => {
      const bar = el("div", { class: "bar" });
      bar.style.width = (max > 0 ? Math.max(1, (v.value / max) * 100) : 0).toFixed(1) + "%";
      tbody.append(el("tr", { class: "top-row", "data-value": String(v.value) },
        el("td", { class: "num rank" }, String(i + 1)),
        el("td", { class: "name top-vm" }, el("a", { href: vmHref(v.host, v.uuid) + "?range=" + encodeURIComponent(range.value) }, v.name)),
        el("td", { class: "name" }, el("a", { href: fleetHref(v.host) }, v.host)),
        el("td", { class: "num" }, fmt(v.value)),
        el("td", { class: "bar-col" }, bar)));
    });
    tbl.hidden = d.vms.length === 0;
    clear(empty);
    if (d.vms.length === 0) empty.append(el("p", { class: "empty" }, topEmptyText(d.by, range.value)));
    shown = true;
  }

  const poller = poll(10000, async (current) => {
    const q = new URLSearchParams({ by: by.value, range: range.value });
    if (host.value) q.set("host", host.value);
    const d = await api("/api/top?" + q.toString());
    if (!current()) return;
    clearError();
    render(d);
    if (!hostsLoaded) await loadHosts().catch(() => { /* the next refresh tries again */ });
  }, (e) => {
    if (shown) return;
    title.textContent = "";
    clear(empty).append(el("p", { class: "empty" }, failedText("ranking", e)));
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
  main.append(el("p", {}, el("a", { href: "/fleet" }, "← Fleet")), title, meta, cards,
    el("div", { class: "controls" }, el("span", {}, "Range:"), rangeBar),
    charts, el("h2", {}, "Devices"), devEmpty, devices);
  for (const r of RANGES) {
    rangeBar.append(el("button", { type: "button", "data-range": r, class: r === range ? "active" : "",
      onclick: () => {
        range = r;
        for (const b of rangeBar.children) b.classList.toggle("active", b.dataset.range === r);
        const u = new URL(location.href); u.searchParams.set("range", r); history.replaceState(null, "", u);
        poller.now();
      } }, r));
  }

  function render(d) {
    clearError();
    title.textContent = d.name;
    document.title = "vmtel: " + d.name;
    clear(meta).append(el("span", {}, "Host: ", el("a", { href: fleetHref(d.host) }, d.host)), el("span", {}, "UUID: ", d.uuid),
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
  const poller = poll(5000, async (current) => {
    const d = await api("/api/vm?" + new URLSearchParams({ host, uuid, range }).toString());
    if (current()) render(d);
  }, (e) => {
    if (charts.firstChild) return;
    clear(cards).append(el("p", { class: "empty" }, failedText("history of this VM", e)));
  });
}

// ---------------------------------------------------------------------------------------------
// Agent page (/agent)
// ---------------------------------------------------------------------------------------------

function table(id, heads, rows) {
  return el("table", { id },
    el("thead", {}, el("tr", {}, heads.map((h) => el("th", { scope: "col", class: h.num ? "num" : "" }, h.label)))),
    el("tbody", {}, rows.map((r) => el("tr", {}, r.map((c, i) => el("td", { class: heads[i].num ? "num" : "name" }, c))))));
}

// The link to the troubleshooting guide's entry for `text` (an error the Agent page shows), when
// the server found one (`help` of /api/agent: error text → link); else null.
function helpLink(text, help) {
  const href = help && text && Object.prototype.hasOwnProperty.call(help, text) ? help[text] : null;
  if (typeof href !== "string" || !href.startsWith("/help/troubleshooting#")) return null;
  return el("a", { href, class: "help-link" }, "What to do");
}

// `text` followed by its help link, if any.
function withHelp(text, help) {
  const a = helpLink(text, help);
  return a ? el("span", {}, text, " ", a) : text;
}

function agentPage() {
  const main = clear(document.getElementById("main"));
  const box = el("div");
  main.append(el("h1", {}, "Agent"), box);
  poll(5000, async (current) => {
    const d = await api("/api/agent");
    if (!current()) return;
    clearError();
    clear(box);
    // `vmtel serve`: no sources and no outputs of its own.
    const serveOnly = d.sources.length === 0 && d.sinks.length === 0;
    if (serveOnly) {
      box.append(el("p", { class: "meta", id: "agent-mode" }, "vmtel " + d.version + ": this process collects nothing; it serves the data of ",
        el("strong", {}, describeSource(d.source)), ". The agents that write there have Agent pages of their own; their cycle times are below."));
    } else {
      const problems = d.sources.filter((s) => !s.connected || s.last_error).length;
      box.append(el("p", { class: "meta", id: "agent-mode" },
        "vmtel " + d.version + ", collecting every " + fmtDuration(d.interval_ms) + ". ",
        problems === 0 ? el("span", { class: "ok" }, "All sources are collecting.") :
          el("span", { class: "state-other" }, problems + " source(s) have problems: see below.")));

      box.append(el("h2", {}, "Sources"));
      if (d.sources.length === 0) box.append(el("p", { class: "empty" }, "No sources are configured."));
      else box.append(table("agent-sources", [
        { label: "Source" }, { label: "Connected" }, { label: "Cycles", num: true }, { label: "Failed", num: true },
        { label: "Skipped ticks", num: true }, { label: "Last cycle", num: true }, { label: "VMs", num: true }, { label: "Last error" }],
        d.sources.map((s) => [s.source, s.connected ? "yes" : "no", fmtNum(s.cycles, 0), fmtNum(s.errors, 0),
          fmtNum(s.skipped_ticks, 0), fmtNum(s.last_cycle_ms, 1) + " ms", fmtNum(s.domains, 0), s.last_error ? withHelp(s.last_error, d.help) : "none"])));

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
        if (st.last_error) box.append(el("p", { class: "error", id: "store-error" }, withHelp(st.last_error, d.help)));
      }
    }
    box.append(el("h2", {}, serveOnly ? "The agents' last hour" : "Last hour"));
    if (!d.history) {
      // The live part answered; the source did not.
      const why = d.history_error || "no history";
      markSource(d.source, false, why);
      showError(Object.assign(new Error(why), { source: d.source }), serveOnly ? "retrying every 5 s" : "the live figures below are current; retrying every 5 s");
      box.append(el("p", { class: "empty", id: "agent-history-empty" }, "No history to chart: " + describeSource(d.source) +
        " did not answer (see the message above). ", helpLink(d.history_error, d.help)));
    } else {
      const charts = el("div", { class: "charts" });
      box.append(charts);
      drawChart(charts, d.history.cycle_time, "No cycles recorded yet.");
      drawChart(charts, d.history.problems, "No cycles recorded yet.");
    }
  }, (e) => {
    if (box.firstChild) return;
    box.append(el("p", { class: "empty" }, failedText("agent status", e)));
  });
}

// ---------------------------------------------------------------------------------------------
// Router: every page is the same shell; the path picks what to draw
// ---------------------------------------------------------------------------------------------

function route() {
  const p = location.pathname.replace(/\/+$/, "") || "/";
  const m = p.match(/^\/vm\/([^/]+)\/([^/]+)$/);
  const pages = { "/": ["nav-hosts", hostsPage], "/fleet": ["nav-fleet", fleetPage], "/problems": ["nav-problems", problemsPage],
    "/top": ["nav-top", topPage], "/agent": ["nav-agent", agentPage] };
  const [nav, page] = m ? ["nav-fleet", () => vmPage(decodeURIComponent(m[1]), decodeURIComponent(m[2]))] : pages[p] || pages["/"];
  for (const a of document.querySelectorAll("header nav a")) {
    a.classList.toggle("active", a.id === nav);
    if (a.id === nav) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  page();
}

// A simulated fleet (`vmtel demo`) is labelled as such in the header of every page.
async function markSimulated() {
  try {
    const s = await api("/api/status");
    if (!s.simulated || document.getElementById("simulated")) return;
    const badge = el("span", { id: "simulated", class: "simulated",
      title: "vmtel demo: these hosts and VMs are simulated (sim:///demo/N sources); no hypervisor is read" },
      "Simulated demo fleet");
    document.getElementById("source").before(badge);
  } catch (e) {
    /* the pages show errors themselves */
  }
}

route();
markSimulated();
