// callflowd's callflow editor: one ES module, no build step, no third-party code.
// Talks only to the callflowd that served it (the crossbar API under /v2), keeps the token in
// memory, and edits a callflow as a draft until it is published.

"use strict";

// ---------------------------------------------------------------------------------------------
// MD5 (RFC 1321), for Kazoo's `credentials` = md5("user:password").

function md5(text) {
  const bytes = new TextEncoder().encode(text);
  const words = new Uint32Array(((bytes.length + 8) >> 6) * 16 + 16);
  bytes.forEach((b, i) => { words[i >> 2] |= b << ((i % 4) * 8); });
  words[bytes.length >> 2] |= 0x80 << ((bytes.length % 4) * 8);
  words[words.length - 2] = bytes.length * 8;
  const s = [7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21];
  const k = Array.from({ length: 64 }, (_, i) => Math.floor(Math.abs(Math.sin(i + 1)) * 2 ** 32) >>> 0);
  let [a0, b0, c0, d0] = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476];
  for (let chunk = 0; chunk < words.length; chunk += 16) {
    let [a, b, c, d] = [a0, b0, c0, d0];
    for (let i = 0; i < 64; i++) {
      let f, g;
      if (i < 16) { f = (b & c) | (~b & d); g = i; }
      else if (i < 32) { f = (d & b) | (~d & c); g = (5 * i + 1) % 16; }
      else if (i < 48) { f = b ^ c ^ d; g = (3 * i + 5) % 16; }
      else { f = c ^ (b | ~d); g = (7 * i) % 16; }
      const shift = s[(i >> 4) * 4 + (i % 4)];
      const sum = (a + f + k[i] + words[chunk + g]) >>> 0;
      [a, d, c] = [d, c, b];
      b = (b + ((sum << shift) | (sum >>> (32 - shift)))) >>> 0;
    }
    a0 = (a0 + a) >>> 0; b0 = (b0 + b) >>> 0; c0 = (c0 + c) >>> 0; d0 = (d0 + d) >>> 0;
  }
  return [a0, b0, c0, d0].map((w) => Array.from({ length: 4 }, (_, i) => ((w >>> (i * 8)) & 0xff).toString(16).padStart(2, "0")).join("")).join("");
}

// ---------------------------------------------------------------------------------------------
// DOM helpers.

const $ = (id) => document.getElementById(id);

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const clone = (v) => JSON.parse(JSON.stringify(v));

// `replaceChildren` without the null, false and undefined that optional parts leave (the DOM
// would show them as text).
function fill(el, ...children) {
  el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

// ---------------------------------------------------------------------------------------------
// The API.

const state = {
  token: null,
  account: null,
  accounts: [],
  callflows: [],
  full: new Map(), // callflow id -> full document (for module and reference search)
  names: new Map(), // document id -> name
  docs: {}, // type -> [{id, name}]
  current: null, // {id, doc, live, draftRev, undo: [], redo: []}
  selected: "flow",
  errors: new Map(), // node path -> messages
  findings: new Map(), // node path -> lint findings
  visited: new Map(), // node path -> step numbers
  clipboard: null,
  panel: "palette",
};

async function api(method, path, data, extra = {}) {
  const headers = { "content-type": "application/json", accept: "application/json" };
  if (state.token) headers["x-auth-token"] = state.token;
  Object.assign(headers, extra.headers || {});
  const body = data === undefined ? undefined : JSON.stringify({ data, ...(extra.envelope || {}) });
  const response = await fetch(path, { method, headers, body });
  const text = await response.text();
  let json = {};
  try { json = text ? JSON.parse(text) : {}; } catch { json = { raw: text }; }
  return { status: response.status, body: json, headers: response.headers };
}

const acct = (suffix = "") => `/v2/accounts/${state.account}${suffix}`;

function say(message, isError = false) {
  const el = $("status");
  el.textContent = message;
  el.classList.toggle("error", isError);
}

// ---------------------------------------------------------------------------------------------
// Modules: icons, groups, which document type a node's `data.id` names.

const GROUPS = [
  ["Ring", ["user", "device", "ring_group", "group", "page_group", "route_to_cid", "hotdesk"]],
  ["Menus and media", ["menu", "play", "tts", "audio_macro", "record_call", "record_caller", "collect_dtmf", "send_dtmf", "flush_dtmf", "sleep", "answer", "response", "hangup", "wait_for_hangup", "dead_air"]],
  ["Voicemail, fax, conference", ["voicemail", "faxbox", "receive_fax", "fax_detect", "conference", "conference_feature"]],
  ["Routing logic", ["temporal_route", "callflow", "check_cid", "cidlistmatch", "branch_bnumber", "branch_variable", "privacy", "nomorobo", "pivot", "function", "webhook"]],
  ["Caller id and settings", ["set_cid", "prepend_cid", "dynamic_cid", "lookupcidname", "set_variable", "set_variables", "set", "set_alert_info", "language", "manual_presence", "after_bridge", "edr", "missed_call_alert", "notification", "noop", "skel"]],
  ["Carriers", ["resources", "offnet"]],
  ["Features", ["call_forward", "call_waiting", "do_not_disturb", "ring_group_toggle", "park", "move", "eavesdrop", "eavesdrop_feature", "intercept", "intercept_feature", "group_pickup", "group_pickup_feature", "camping_feature", "directory", "disa", "intercom", "transfer"]],
  ["Queues", ["acdc_member", "acdc_agent", "acdc_queue", "acdc_wait_time"]],
];

const ICONS = { user: "☺", device: "☎", ring_group: "☏", group: "☷", page_group: "☷", menu: "☰", voicemail: "✉", temporal_route: "◷", callflow: "↪", play: "▶", tts: "▶", resources: "⇄", offnet: "⇄", conference: "☊", faxbox: "℻", receive_fax: "℻", hangup: "✖", response: "⊘", language: "¶", set_cid: "✎", prepend_cid: "✎", check_cid: "?", park: "Ⓟ" };

const REF_TYPES = { user: "users", device: "devices", menu: "menus", voicemail: "vmboxes", callflow: "callflows", play: "media", group: "groups", faxbox: "faxboxes", receive_fax: "faxboxes", cidlistmatch: "lists", directory: "directories" };

function nodeRef(node) {
  const data = node.data || {};
  if (node.module === "temporal_route" && Array.isArray(data.rules)) {
    return data.rules.map((r) => state.names.get(r) || r).join(", ");
  }
  if (node.module === "ring_group" && Array.isArray(data.endpoints)) {
    return `${data.name || "ring group"}: ${data.endpoints.length} member(s), ${data.strategy || "simultaneous"}`;
  }
  if (data.id) return state.names.get(data.id) || data.id;
  if (data.name) return data.name;
  return "";
}

function edgeLabel(parent, key) {
  if (key === "_") return "next";
  if (parent.module === "temporal_route") return state.names.get(key) || key;
  if (parent.module === "menu") return /^\d+$/.test(key) ? `press ${key}` : key;
  return key;
}

// ---------------------------------------------------------------------------------------------
// Login and accounts.

async function login(event) {
  event.preventDefault();
  const user = $("login-user").value.trim();
  const password = $("login-password").value;
  const account = $("login-account").value.trim();
  const r = await api("PUT", "/v2/user_auth", {
    credentials: md5(`${user.toLowerCase()}:${password}`),
    account_name: account,
  });
  if (r.status !== 201 && r.status !== 200) {
    $("login-error").textContent = r.status === 429 ? "Too many attempts: wait a moment." : "Wrong user name, password or account.";
    return;
  }
  state.token = r.body.auth_token;
  state.account = r.body.data.account_id;
  state.accounts = [{ id: state.account, name: r.body.data.account_name || account }];
  $("login-password").value = "";
  await loadDescendants();
  renderAccounts();
  await openAccount();
  // Shown once the account is loaded, so nothing can be clicked into a half-loaded page.
  $("login").hidden = true;
  $("workspace").hidden = false;
  $("account-bar").hidden = false;
}

async function loadDescendants() {
  const r = await api("GET", `/v2/accounts/${state.account}/descendants`);
  if (r.status === 200 && Array.isArray(r.body.data)) {
    for (const a of r.body.data) if (!state.accounts.some((x) => x.id === a.id)) state.accounts.push({ id: a.id, name: a.name });
  }
}

// Another account the token reaches (a sub-account), by id: added to the account list.
async function addAccount() {
  const id = $("account-id").value.trim();
  if (!/^[0-9a-f]{32}$/.test(id)) { say("An account id is 32 hexadecimal characters.", true); return; }
  const r = await api("GET", `/v2/accounts/${id}`);
  if (r.status !== 200) { say(`That account is out of reach (${r.status}).`, true); return; }
  if (!state.accounts.some((a) => a.id === id)) state.accounts.push({ id, name: r.body.data.name || id });
  state.account = id;
  $("account-id").value = "";
  renderAccounts();
  await openAccount();
}

function renderAccounts() {
  const select = $("account-select");
  fill(select, ...state.accounts.map((a) => h("option", { value: a.id, selected: a.id === state.account }, a.name)));
}

async function openAccount() {
  state.current = null;
  state.full.clear();
  $("editor").hidden = true;
  await Promise.all([loadDocuments(), loadCallflows()]);
  renderPalette();
}

async function loadDocuments() {
  state.names.clear();
  state.docs = {};
  const types = ["users", "devices", "menus", "vmboxes", "temporal_rules", "media", "groups", "faxboxes", "lists"];
  await Promise.all(types.map(async (t) => {
    const r = await api("GET", acct(`/${t}?paginate=false`));
    const rows = r.status === 200 && Array.isArray(r.body.data) ? r.body.data : [];
    state.docs[t] = rows.map((d) => {
      const name = d.name || [d.first_name, d.last_name].filter(Boolean).join(" ") || d.username || d.id;
      state.names.set(d.id, name);
      return { id: d.id, name };
    });
  }));
}

// The account's callflows. Their whole documents (for searching by the documents they name)
// are read once and kept; `changed` is the id of one that was just written, read again.
async function loadCallflows(changed) {
  if (changed) state.full.delete(changed);
  const r = await api("GET", acct("/callflows?paginate=false"));
  state.callflows = r.status === 200 && Array.isArray(r.body.data) ? r.body.data : [];
  state.docs.callflows = state.callflows.map((c) => ({ id: c.id, name: c.name || (c.numbers || []).join(", ") || c.id }));
  for (const c of state.docs.callflows) state.names.set(c.id, c.name);
  const listed = new Set(state.callflows.map((c) => c.id));
  for (const id of [...state.full.keys()]) if (!listed.has(id)) state.full.delete(id);
  await Promise.all(state.callflows.slice(0, 200).filter((c) => !state.full.has(c.id)).map(async (c) => {
    const f = await api("GET", acct(`/callflows/${c.id}`));
    if (f.status === 200) state.full.set(c.id, f.body.data);
  }));
  renderList();
}

// ---------------------------------------------------------------------------------------------
// The callflow list and the search box (with "who answers this number").

function matches(cf, term) {
  if (!term) return true;
  const t = term.toLowerCase();
  const hay = [cf.name, ...(cf.numbers || []), ...(cf.patterns || []), ...(cf.modules || [])].filter(Boolean).map((s) => String(s).toLowerCase());
  if (hay.some((s) => s.includes(t))) return true;
  const full = state.full.get(cf.id);
  if (!full) return false;
  const text = JSON.stringify(full.flow || {});
  for (const [id, name] of state.names) {
    if (String(name).toLowerCase().includes(t) && text.includes(`"${id}"`)) return true;
  }
  return false;
}

function renderList() {
  const term = $("search").value.trim();
  const list = $("callflow-list");
  fill(list, ...state.callflows.filter((c) => matches(c, term)).map((c) => h("li", {},
    h("button", { type: "button", "aria-current": state.current && state.current.id === c.id ? "true" : "false", onclick: () => openCallflow(c.id) },
      c.name || "(no name)",
      h("small", {}, [...(c.numbers || []), ...(c.patterns || [])].join(", ") || "no numbers")))));
}

async function lookup() {
  const term = $("search").value.trim();
  const out = $("lookup-result");
  if (!/^\+?[0-9*#]+$/.test(term)) { out.textContent = ""; return; }
  const r = await api("GET", acct(`/lookup?number=${encodeURIComponent(term)}`));
  if (r.status !== 200) { out.textContent = `${term}: no callflow answers it.`; return; }
  const d = r.body.data;
  const name = (d.callflow && d.callflow.name) || d.callflow_id;
  const how = d.match ? `${d.match.type} ${d.match.value}` : "";
  fill(out, `${term} → `, h("button", { type: "button", onclick: () => openCallflow(d.callflow_id) }, name), ` (${how}${d.explain && d.explain.reason ? `: ${d.explain.reason}` : ""})`);
}

// ---------------------------------------------------------------------------------------------
// Opening, editing, undo and redo.

// Whether callflow `id` has a draft, from the drafts listing (never asking for a missing one).
async function hasDraft(id) {
  const drafts = await api("GET", acct("/callflows/drafts"));
  return drafts.status === 200 && Array.isArray(drafts.body.data) && drafts.body.data.some((d) => d.id === id);
}

async function openCallflow(id) {
  const live = await api("GET", acct(`/callflows/${id}`));
  if (live.status !== 200) { say(`Cannot open ${id}: ${live.body.message || live.status}`, true); return; }
  const draft = (await hasDraft(id)) ? await api("GET", acct(`/callflows/${id}/draft`)) : { status: 404 };
  const doc = draft.status === 200 ? draft.body.data : live.body.data;
  startEditing({ id, live: live.body.data, liveRev: live.body.revision, draftRev: draft.status === 200 ? draft.body.revision : null, doc });
  say(draft.status === 200 ? "Editing the saved draft." : "Editing the live callflow (saving makes a draft).");
}

// Deleting takes two clicks: the first asks, the second (within 5 s) deletes.
let deleteArmed = null;

async function deleteCallflow() {
  const cur = state.current;
  if (!cur || !cur.id) return;
  const button = $("delete-callflow");
  if (deleteArmed !== cur.id) {
    deleteArmed = cur.id;
    button.textContent = "Really delete?";
    setTimeout(() => { deleteArmed = null; button.textContent = "Delete callflow"; }, 5000);
    return;
  }
  deleteArmed = null;
  button.textContent = "Delete callflow";
  const r = await api("DELETE", acct(`/callflows/${cur.id}`));
  if (r.status !== 200) { say(`Not deleted: ${r.body.message || r.status}`, true); return; }
  state.current = null;
  $("editor").hidden = true;
  await loadCallflows(cur.id);
  await showDeleted();
  say("Deleted. It can be restored from the deleted list.");
}

// The account's soft-deleted callflows, each with a Restore button (a rollback to its last
// revision before the delete).
async function showDeleted() {
  const r = await api("GET", acct("/callflows?deleted=true&paginate=false"));
  const rows = r.status === 200 && Array.isArray(r.body.data) ? r.body.data : [];
  fill($("panel"), h("h2", {}, "Deleted callflows"),
    rows.length ? h("ul", { class: "revisions", id: "deleted-list" }, rows.map((c) => h("li", {},
      h("strong", {}, c.name || c.id), ` ${(c.numbers || []).join(", ")}`,
      h("div", {}, h("button", { type: "button", "data-restore": c.id, onclick: () => restore(c.id) }, "Restore"))))) : h("p", {}, "Nothing deleted."));
}

async function restore(id) {
  const revisions = await api("GET", acct(`/callflows/${id}/revisions`));
  const rows = revisions.status === 200 && Array.isArray(revisions.body.data) ? revisions.body.data : [];
  const last = rows.find((row) => row.kind !== "delete");
  if (!last) { say("No revision to restore.", true); return; }
  const r = await api("PUT", acct(`/callflows/${id}/rollback`), { revision: last.revision }, { envelope: { commit_message: "restored in the editor" } });
  if (r.status !== 200) { say(`Not restored: ${r.body.message || r.status}`, true); return; }
  await loadCallflows(id);
  await openCallflow(id);
  say(`Restored revision ${last.revision}.`);
}

function newCallflow() {
  startEditing({ id: null, live: null, draftRev: null, doc: { name: "", numbers: [], patterns: [], flow: {} } });
  say("A new callflow: add its first node from the palette.");
}

function startEditing(current) {
  const doc = current.doc;
  for (const key of Object.keys(doc)) if (key.startsWith("_read_only") || key === "id") delete doc[key];
  state.current = { ...current, undo: [], redo: [] };
  state.selected = "flow";
  state.errors.clear();
  state.visited.clear();
  $("editor").hidden = false;
  $("cf-name").value = doc.name || "";
  $("cf-numbers").value = (doc.numbers || []).join(", ");
  $("cf-patterns").value = (doc.patterns || []).join("\n");
  renderList();
  render();
  showPanel("palette");
  checkMeta();
}

function change(mutate, keepSelection = false) {
  const cur = state.current;
  cur.undo.push(clone(cur.doc));
  cur.redo = [];
  mutate(cur.doc);
  state.visited.clear();
  state.currentStep = null;
  if (!keepSelection && !nodeAt(cur.doc, state.selected)) state.selected = "flow";
  render();
}

function undo() {
  const cur = state.current;
  if (!cur || !cur.undo.length) return;
  cur.redo.push(clone(cur.doc));
  cur.doc = cur.undo.pop();
  if (!nodeAt(cur.doc, state.selected)) state.selected = "flow";
  render();
  say("Undone.");
}

function redo() {
  const cur = state.current;
  if (!cur || !cur.redo.length) return;
  cur.undo.push(clone(cur.doc));
  cur.doc = cur.redo.pop();
  render();
  say("Redone.");
}

// Paths are "flow", "flow.children.1", "flow.children.1.children._", as the engine reports them.
function nodeAt(doc, path) {
  const parts = path.split(".");
  let node = doc[parts[0]];
  for (let i = 1; i < parts.length; i += 2) {
    if (!node || !node.children) return null;
    node = node.children[parts[i + 1]];
  }
  return node && node.module ? node : null;
}

function parentOf(path) {
  const parts = path.split(".");
  if (parts.length < 3) return null;
  return { parent: parts.slice(0, -2).join("."), key: parts[parts.length - 1] };
}

function addNode(module) {
  const cur = state.current;
  if (!cur) return;
  const fresh = { module, data: {}, children: {} };
  const root = nodeAt(cur.doc, "flow");
  if (!root) {
    change((doc) => { doc.flow = fresh; });
    state.selected = "flow";
    render();
    showPanel("node");
    return;
  }
  const parent = nodeAt(cur.doc, state.selected) || root;
  const key = ($("branch-key") && $("branch-key").value.trim()) || "_";
  if (parent.children && parent.children[key]) {
    say(`${parent.module} already has a "${key}" branch: choose another key.`, true);
    return;
  }
  change((doc) => {
    const p = nodeAt(doc, state.selected) || doc.flow;
    p.children = p.children || {};
    p.children[key] = fresh;
  });
  state.selected = `${state.selected}.children.${key}`;
  render();
  showPanel("node");
}

function deleteSelected() {
  const cur = state.current;
  if (!cur || !nodeAt(cur.doc, state.selected)) return;
  const where = parentOf(state.selected);
  change((doc) => {
    if (!where) doc.flow = {};
    else delete nodeAt(doc, where.parent).children[where.key];
  });
  state.selected = where ? where.parent : "flow";
  render();
  say("Deleted the subtree.");
}

function cutSelected() {
  const cur = state.current;
  const node = cur && nodeAt(cur.doc, state.selected);
  if (!node) return;
  state.clipboard = clone(node);
  deleteSelected();
  say(`Cut ${node.module}: select a node and paste to move it there.`);
}

function paste() {
  const cur = state.current;
  if (!cur || !state.clipboard) return;
  const moved = clone(state.clipboard);
  if (!nodeAt(cur.doc, "flow")) { change((doc) => { doc.flow = moved; }); return; }
  const key = ($("branch-key") && $("branch-key").value.trim()) || "_";
  const parent = nodeAt(cur.doc, state.selected);
  if (!parent || (parent.children && parent.children[key])) { say(`Choose a free branch key under the selected node (now "${key}").`, true); return; }
  change((doc) => {
    const p = nodeAt(doc, state.selected);
    p.children = p.children || {};
    p.children[key] = moved;
  });
  say(`Pasted under "${key}".`);
}

// ---------------------------------------------------------------------------------------------
// Drawing the tree.

function renderTree(doc, options = {}) {
  const root = doc.flow && doc.flow.module ? doc.flow : null;
  if (!root) return h("p", { class: "empty-flow" }, "The flow is empty: pick a module in the palette to start it.");
  const draw = (node, path) => {
    const classes = ["node"];
    if (!options.readOnly && path === state.selected) classes.push("selected");
    const steps = options.readOnly ? null : state.visited.get(path);
    if (steps) classes.push("visited");
    if (!options.readOnly && state.currentStep === path) classes.push("current-step");
    const errors = options.readOnly ? null : state.errors.get(path);
    if (errors) classes.push("has-error");
    const findings = options.readOnly ? null : state.findings.get(path);
    if (findings) classes.push("has-finding");
    if (options.changed && options.changed.has(path)) classes.push("changed");
    const label = nodeRef(node);
    const box = h(options.readOnly ? "div" : "button", {
      type: options.readOnly ? undefined : "button",
      class: classes.join(" "),
      "data-path": path,
      "data-module": node.module,
      "aria-pressed": options.readOnly ? undefined : String(path === state.selected),
      onclick: options.readOnly ? undefined : () => { state.selected = path; render(); showPanel("node"); },
    },
    h("span", { class: "icon", "aria-hidden": "true" }, ICONS[node.module] || "◆"),
    h("span", { class: "module" }, node.module),
    label ? h("span", { class: "ref" }, label) : null,
    steps ? h("span", { class: "step" }, `step ${steps.join(", ")}`) : null,
    errors ? h("span", { class: "node-error", role: "alert" }, errors.join("; ")) : null,
    findings ? h("span", { class: "node-finding", title: findings.map((f) => f.message).join("\n") }, findings.map((f) => `${f.severity}: ${f.rule}`).join(", ")) : null);
    const kids = Object.entries(node.children || {}).filter(([, c]) => c && c.module);
    if (!kids.length) return box;
    return h("div", { class: "tree" }, box, h("div", { class: "children" }, kids.map(([key, child]) =>
      h("div", { class: "branch" }, h("span", { class: "edge" }, h("span", { class: "edge-label" }, edgeLabel(node, key))), draw(child, `${path}.children.${key}`)))));
  };
  return draw(root, "flow");
}

function render() {
  const cur = state.current;
  if (!cur) return;
  $("canvas").replaceChildren(renderTree(cur.doc));
  $("undo").disabled = !cur.undo.length;
  $("redo").disabled = !cur.redo.length;
  $("paste").disabled = !state.clipboard;
  if (state.panel === "node") renderNodePanel();
}

// ---------------------------------------------------------------------------------------------
// The side panel: palette, node form, simulation, history, publish.

function showPanel(name) {
  state.panel = name;
  if (name === "palette") renderPalette();
  if (name === "node") renderNodePanel();
  if (name === "sim") renderSimPanel();
  if (name === "history") renderHistoryPanel();
}

let moduleList = [];

async function loadModules() {
  const r = await api("GET", "/v2/schemas");
  const names = r.status === 200 && Array.isArray(r.body.data) ? r.body.data : [];
  moduleList = names.filter((n) => typeof n === "string" && n.startsWith("callflows.")).map((n) => n.slice("callflows.".length));
}

function renderPalette() {
  const panel = $("panel");
  if (!state.current) { fill(panel, h("p", {}, "Open or create a callflow to edit it.")); return; }
  const filter = h("input", { id: "palette-search", type: "search", "aria-label": "Search modules", placeholder: "search modules" });
  const groups = h("div", {});
  const known = new Set(GROUPS.flatMap(([, ms]) => ms));
  const all = [...GROUPS, ["Other", moduleList.filter((m) => !known.has(m))]];
  const draw = () => {
    const t = filter.value.trim().toLowerCase();
    fill(groups, ...all.map(([title, modules]) => {
      const shown = modules.filter((m) => (!moduleList.length || moduleList.includes(m)) && m.includes(t));
      if (!shown.length) return null;
      return h("div", { class: "palette-group", role: "group", "aria-label": title }, h("h3", {}, title),
        shown.map((m) => h("button", { type: "button", "data-module": m, onclick: () => addNode(m) }, `${ICONS[m] || "◆"} ${m}`)));
    }).filter(Boolean));
  };
  filter.addEventListener("input", draw);
  draw();
  const hasRoot = nodeAt(state.current.doc, "flow");
  fill(panel, h("h2", {}, "Palette"),
    hasRoot ? h("p", {}, `New nodes go under the selected node (${nodeAt(state.current.doc, state.selected) ? state.selected : "flow"}) on this branch:`) : h("p", {}, "The first module starts the flow."),
    hasRoot ? h("div", {}, h("label", { for: "branch-key" }, "Branch key (menu digit, rule id, failure cause, or _)"), h("input", { id: "branch-key", value: "_" })) : null,
    filter, groups);
}

const schemaCache = new Map();

async function moduleSchema(module) {
  if (!schemaCache.has(module)) {
    const r = await api("GET", `/v2/schemas/callflows.${module}`);
    schemaCache.set(module, r.status === 200 ? r.body.data : null);
  }
  return schemaCache.get(module);
}

async function renderNodePanel() {
  const panel = $("panel");
  const cur = state.current;
  const node = cur && nodeAt(cur.doc, state.selected);
  if (!node) { renderPalette(); return; }
  const path = state.selected;
  const schema = await moduleSchema(node.module);
  if (state.selected !== path || state.panel !== "node") return;
  const props = (schema && schema.properties) || {};
  const fields = Object.entries(props).map(([key, prop]) => field(node, key, prop, (schema.required || []).includes(key)));
  const errors = state.errors.get(path);
  const findings = state.findings.get(path);
  fill(panel,
    h("h2", {}, `${ICONS[node.module] || "◆"} ${node.module}`),
    h("p", {}, h("code", {}, path)),
    errors ? h("p", { class: "error", role: "alert" }, errors.join("; ")) : null,
    findings ? h("ul", { class: "findings" }, findings.map((f) => h("li", {}, `${f.severity} ${f.rule}: ${f.message}${f.fix ? ` (${f.fix})` : ""}`))) : null,
    h("form", { id: "node-form", onsubmit: (e) => e.preventDefault() }, fields),
    h("h3", {}, "Add under this node"),
    h("button", { type: "button", onclick: () => showPanel("palette") }, "Open the palette"),
  );
}

function field(node, key, prop, required) {
  const id = `f-${key}`;
  const value = (node.data || {})[key];
  const set = (v) => change((doc) => {
    const n = nodeAt(doc, state.selected);
    n.data = n.data || {};
    if (v === undefined || v === "") delete n.data[key]; else n.data[key] = v;
  }, true);
  const label = h("label", { for: id }, `${key}${required ? " (required)" : ""}`);
  const help = prop.description ? h("small", { id: `${id}-help` }, prop.description) : null;
  const type = Array.isArray(prop.type) ? prop.type[0] : prop.type;
  const refType = key === "id" ? REF_TYPES[node.module] : key === "rules" && node.module === "temporal_route" ? "temporal_rules" : null;
  let input;
  if (refType && key === "id") {
    const options = (state.docs[refType] || []);
    input = h("select", { id, "aria-describedby": help ? `${id}-help` : undefined, onchange: (e) => set(e.target.value || undefined) },
      h("option", { value: "" }, "(choose)"),
      options.map((o) => h("option", { value: o.id, selected: o.id === value }, o.name)));
  } else if (refType === "temporal_rules") {
    const chosen = new Set(Array.isArray(value) ? value : []);
    input = h("select", { id, multiple: true, onchange: (e) => set(Array.from(e.target.selectedOptions).map((o) => o.value)) },
      (state.docs.temporal_rules || []).map((o) => h("option", { value: o.id, selected: chosen.has(o.id) }, o.name)));
  } else if (Array.isArray(prop.enum)) {
    input = h("select", { id, onchange: (e) => set(e.target.value || undefined) }, h("option", { value: "" }, "(default)"),
      prop.enum.map((v) => h("option", { value: v, selected: v === value }, String(v))));
  } else if (type === "boolean") {
    input = h("input", { id, type: "checkbox", checked: value === true, onchange: (e) => set(e.target.checked) });
  } else if (type === "integer" || type === "number") {
    input = h("input", { id, type: "number", value: value ?? "", placeholder: prop.default !== undefined ? String(prop.default) : "", onchange: (e) => set(e.target.value === "" ? undefined : Number(e.target.value)) });
  } else if (type === "string") {
    input = h("input", { id, value: value ?? "", placeholder: prop.default !== undefined ? String(prop.default) : "", onchange: (e) => set(e.target.value) });
  } else {
    input = h("textarea", { id, rows: 3, onchange: (e) => { try { set(e.target.value.trim() ? JSON.parse(e.target.value) : undefined); } catch { say(`${key}: not valid JSON`, true); } } }, value === undefined ? "" : JSON.stringify(value));
  }
  return h("div", { class: "field" }, label, input, help);
}

// ---------------------------------------------------------------------------------------------
// Numbers and patterns: live checks against the account's routing.

let metaTimer = null;

function readMeta() {
  const cur = state.current;
  cur.doc.name = $("cf-name").value.trim() || undefined;
  cur.doc.numbers = $("cf-numbers").value.split(",").map((s) => s.trim()).filter(Boolean);
  cur.doc.patterns = $("cf-patterns").value.split("\n").map((s) => s.trim()).filter(Boolean);
  if (!cur.doc.name) delete cur.doc.name;
}

function onMetaInput() {
  if (!state.current) return;
  readMeta();
  clearTimeout(metaTimer);
  metaTimer = setTimeout(checkMeta, 300);
}

async function checkMeta() {
  const cur = state.current;
  if (!cur) return;
  const notes = [];
  for (const number of cur.doc.numbers || []) {
    const r = await api("GET", acct(`/lookup?number=${encodeURIComponent(number)}`));
    if (r.status === 200 && r.body.data.callflow_id !== cur.id && r.body.data.match && r.body.data.match.type === "number") {
      notes.push(h("span", { class: "warn" }, `${number} already belongs to ${state.names.get(r.body.data.callflow_id) || r.body.data.callflow_id}. `));
    } else if (r.status === 200 && r.body.data.callflow_id !== cur.id) {
      notes.push(`${number} now reaches ${state.names.get(r.body.data.callflow_id) || r.body.data.callflow_id} (${r.body.data.match.type}); this callflow's number will win. `);
    }
  }
  const patterns = cur.doc.patterns || [];
  if (patterns.length) {
    // The lint of the working copy (nothing is saved): a pattern that does not compile in
    // Kazoo's dialect, never routes, or is shadowed by another callflow's.
    const lintRun = await lintWorkingCopy();
    const findings = lintRun.status === 200 ? ((lintRun.body.data && lintRun.body.data.findings) || []) : [];
    const flagged = new Set();
    if (lintRun.status === 400 && lintRun.body.data) {
      // Refused before the lint: a pattern Kazoo's regex dialect does not compile, a bad number.
      for (const [path, rules] of Object.entries(lintRun.body.data)) {
        if (!/^(patterns|numbers)\./.test(path)) continue;
        flagged.add(path);
        const text = Object.values(rules || {}).map((r) => (r && r.message) || "").join("; ");
        notes.push(h("span", { class: "warn" }, `${path}: ${text}. `));
      }
    }
    for (const f of findings) {
      if (!f.path || !/^(patterns|numbers)\./.test(f.path)) continue;
      flagged.add(f.path);
      notes.push(h("span", { class: "warn" }, `${f.path}: ${f.message}. `));
    }
    // For patterns already saved, the routing analysis's witness: a number each one wins for.
    if (cur.id) {
      const analysis = await api("GET", acct("/routing/analysis"));
      const rows = analysis.status === 200 && Array.isArray(analysis.body.data) ? analysis.body.data : [];
      patterns.forEach((pattern, i) => {
        if (flagged.has(`patterns.${i}`)) return;
        const row = rows.find((r) => r.callflow_id === cur.id && r.pattern === pattern);
        if (row && row.witness !== undefined) notes.push(`${pattern} wins for e.g. ${row.witness}. `);
        else if (row && row.never_wins) notes.push(h("span", { class: "warn" }, `${pattern} never wins: ${row.never_wins.message}. `));
      });
    }
  }
  $("meta-checks").replaceChildren(...(notes.length ? notes : [(cur.doc.numbers || []).length ? "Numbers are free." : ""]));
}

// ---------------------------------------------------------------------------------------------
// Saving the draft, validation errors on their nodes, publishing with a diff.

// The node a field path (`flow.children.1.data.id`) belongs to: the deepest node of the
// working copy on it; `null` for fields outside the flow (numbers, patterns, name).
function nodePathOf(field) {
  const parts = field.split(".");
  if (parts[0] !== "flow") return null;
  let path = "flow";
  for (let i = 1; i + 1 < parts.length && parts[i] === "children"; i += 2) {
    if (!nodeAt(state.current.doc, `${path}.children.${parts[i + 1]}`)) break;
    path = `${path}.children.${parts[i + 1]}`;
  }
  return path;
}

// The lint of the working copy as it is (`PUT .../lint`: nothing is saved).
function lintWorkingCopy() {
  const doc = clone(state.current.doc);
  if (state.current.id) doc.id = state.current.id;
  return api("PUT", acct("/lint"), doc);
}

function pinErrors(body) {
  state.errors.clear();
  const data = body && body.data;
  const messages = [];
  if (data && typeof data === "object") {
    for (const [rawField, rules] of Object.entries(data)) {
      const field = rawField.startsWith("callflow.") ? rawField.slice("callflow.".length) : rawField;
      const text = Object.entries(rules || {}).map(([rule, detail]) => `${rule}: ${(detail && detail.message) || ""}`).join("; ");
      const path = nodePathOf(field);
      if (path) state.errors.set(path, [...(state.errors.get(path) || []), `${field}: ${text}`]);
      messages.push(`${field}: ${text}`);
    }
  }
  render();
  return messages;
}

async function saveDraft() {
  const cur = state.current;
  if (!cur) return false;
  readMeta();
  const doc = clone(cur.doc);
  let r;
  if (cur.id) {
    r = await api("POST", acct(`/callflows/${cur.id}/draft`), doc);
  } else {
    r = await api("PUT", acct("/callflows/drafts"), doc);
  }
  if (r.status === 200 || r.status === 201) {
    if (!cur.id) cur.id = r.body.data.id;
    cur.draftRev = r.body.revision;
    state.errors.clear();
    const count = await lint();
    render();
    say(count ? `Draft saved; the lint has ${count} finding(s), shown on their nodes.` : "Draft saved.");
    return true;
  }
  const messages = pinErrors(r.body);
  say(`Not saved: ${messages.join(" | ") || r.body.message || r.status}`, true);
  return false;
}

// The lint over the working copy: flow findings pinned on their nodes, number and pattern
// findings (a pattern another one shadows, a number a pattern also matches) beside the fields.
async function lint() {
  const cur = state.current;
  state.findings.clear();
  const r = await lintWorkingCopy();
  if (r.status !== 200) return 0;
  const findings = (r.body.data && r.body.data.findings) || [];
  const meta = [];
  for (const f of findings) {
    if (f.callflow_id && f.callflow_id !== cur.id && f.callflow_id !== "draft") continue;
    const path = nodePathOf(f.path || "");
    if (path) {
      state.findings.set(path, [...(state.findings.get(path) || []), f]);
    } else {
      meta.push(h("span", { class: f.severity === "error" ? "warn" : "" }, `${f.path}: ${f.message}. `));
    }
  }
  if (meta.length) $("meta-checks").replaceChildren(...meta);
  return findings.length;
}

// A line diff (longest common subsequence) of two JSON documents, for the publish dialog.
function lineDiff(a, b) {
  const x = a.split("\n"), y = b.split("\n");
  const m = x.length, n = y.length;
  const table = Array.from({ length: m + 1 }, () => new Uint32Array(n + 1));
  for (let i = m - 1; i >= 0; i--) for (let j = n - 1; j >= 0; j--) table[i][j] = x[i] === y[j] ? table[i + 1][j + 1] + 1 : Math.max(table[i + 1][j], table[i][j + 1]);
  const out = [];
  let i = 0, j = 0;
  while (i < m || j < n) {
    if (i < m && j < n && x[i] === y[j]) { out.push([" ", x[i]]); i++; j++; }
    else if (j < n && (i === m || table[i][j + 1] >= table[i + 1][j])) { out.push(["+", y[j]]); j++; }
    else { out.push(["-", x[i]]); i++; }
  }
  return out;
}

const publicView = (doc) => {
  const out = {};
  for (const key of ["name", "numbers", "patterns", "flow"]) if (doc && doc[key] !== undefined) out[key] = doc[key];
  return out;
};

async function publish() {
  const cur = state.current;
  if (!cur) return;
  if (!(await saveDraft())) return;
  const before = JSON.stringify(publicView(cur.live || {}), null, 2);
  const after = JSON.stringify(publicView(cur.doc), null, 2);
  const rows = lineDiff(before, after);
  const panel = $("panel");
  state.panel = "publish";
  fill(panel,
    h("h2", {}, "Publish"),
    h("p", {}, cur.live ? "What changes against the live revision:" : "A new callflow: everything is added."),
    h("div", { class: "diff", id: "publish-diff", tabindex: "0", "aria-label": "Diff against the live revision" },
      rows.map(([mark, text]) => h("div", { class: mark === "+" ? "add" : mark === "-" ? "del" : "" }, `${mark} ${text}`))),
    h("button", { type: "button", class: "primary", id: "confirm-publish", onclick: confirmPublish }, "Publish now"),
    h("button", { type: "button", onclick: () => showPanel("palette") }, "Cancel"),
  );
}

async function confirmPublish() {
  const cur = state.current;
  const r = await api("PUT", acct(`/callflows/${cur.id}/draft/publish`), {});
  if (r.status === 200 || r.status === 201) {
    await loadCallflows(cur.id);
    await openCallflow(cur.id);
    say(`Published: revision ${r.body.revision || ""}.`);
    return;
  }
  const messages = pinErrors(r.body);
  say(`Not published: ${messages.join(" | ") || r.body.message || r.status}`, true);
}

// ---------------------------------------------------------------------------------------------
// Simulation: number, caller, time and an event script; the path drawn on the tree.

const sim = { events: [] };

function renderSimPanel() {
  const cur = state.current;
  const panel = $("panel");
  const number = h("input", { id: "sim-number", value: (cur && (cur.doc.numbers || [])[0]) || "" });
  const caller = h("input", { id: "sim-caller", placeholder: "caller id number" });
  const when = h("input", { id: "sim-time", type: "datetime-local" });
  const list = h("ol", { class: "events", id: "sim-events" });
  const drawEvents = () => fill(list, ...sim.events.map((e) => h("li", {}, JSON.stringify(e))));
  const push = (e) => { sim.events.push(e); drawEvents(); };
  drawEvents();
  fill(panel,
    h("h2", {}, "Simulate a call"),
    h("label", { for: "sim-number" }, "Number dialled"), number,
    h("label", { for: "sim-caller" }, "Caller"), caller,
    h("label", { for: "sim-time" }, "Time (empty: now)"), when,
    h("h3", {}, "What happens"),
    h("div", { class: "keypad", role: "group", "aria-label": "Keypad" }, ["1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "0", "#"].map((d) =>
      h("button", { type: "button", "aria-label": `press ${d}`, "data-digit": d, onclick: () => push({ dtmf: d }) }, d))),
    h("div", { class: "toolbar" },
      h("button", { type: "button", id: "ev-answer", onclick: () => push({ bridge: "answered" }) }, "Answer"),
      h("button", { type: "button", id: "ev-busy", onclick: () => push({ bridge: "failed", cause: "USER_BUSY", code: "sip:486" }) }, "Busy"),
      h("button", { type: "button", id: "ev-noanswer", onclick: () => push({ bridge: "failed", cause: "NO_ANSWER", code: "sip:480" }) }, "No answer"),
      h("button", { type: "button", id: "ev-nothing", onclick: () => push({ no_input: true }) }, "Silence"),
      h("button", { type: "button", id: "ev-clear", onclick: () => { sim.events = []; drawEvents(); } }, "Clear")),
    list,
    h("button", { type: "button", class: "primary", id: "run-sim", onclick: runSimulation }, "Run"),
    h("div", { id: "sim-result", "aria-live": "polite" }),
  );
}

let lastSimulation = null;

async function runSimulation() {
  const cur = state.current;
  if (!cur) return;
  readMeta();
  const data = {
    number: $("sim-number").value.trim(),
    events: sim.events,
    callflow: clone(cur.doc),
  };
  if ($("sim-caller").value.trim()) data.caller = { id_number: $("sim-caller").value.trim() };
  if ($("sim-time").value) data.now = new Date($("sim-time").value).toISOString();
  const r = await api("PUT", acct("/simulations"), data);
  const out = $("sim-result");
  if (r.status !== 200) {
    pinErrors(r.body);
    fill(out, h("p", { class: "error" }, `The simulation was refused: ${r.body.message || r.status}`));
    return;
  }
  const t = r.body.data;
  lastSimulation = { data, trace: t, shown: t.steps.length };
  showSteps(t.steps.length);
  const stepper = h("div", { class: "toolbar", role: "group", "aria-label": "Play the call step by step" },
    h("button", { type: "button", id: "step-first", onclick: () => showSteps(1) }, "First step"),
    h("button", { type: "button", id: "step-back", onclick: () => showSteps(lastSimulation.shown - 1) }, "Back"),
    h("button", { type: "button", id: "step-next", onclick: () => showSteps(lastSimulation.shown + 1) }, "Next"),
    h("button", { type: "button", id: "step-all", onclick: () => showSteps(t.steps.length) }, "Whole path"));
  fill(out,
    h("p", { class: "outcome", id: "sim-outcome" }, `${t.outcome.kind}: ${t.outcome.detail}`),
    stepper,
    h("p", { id: "step-shown", "aria-live": "polite" }),
    h("ol", { class: "steps", id: "sim-steps" }, t.steps.map((s, i) => h("li", { "data-step": i + 1 }, `${s.module}: ${s.summary}${s.branch ? ` → ${s.branch}` : ""}`))),
    t.warnings.length ? h("details", {}, h("summary", {}, `${t.warnings.length} note(s)`), h("ul", {}, t.warnings.map((w) => h("li", {}, w.message)))) : null,
    cur.id ? h("button", { type: "button", id: "save-test", onclick: saveAsTest }, "Save as a call test") : h("p", {}, "Save the draft to keep this as a call test."),
  );
}

// Draws the first `count` steps of the last simulation on the tree (the last one marked as
// the current step) and in the list.
function showSteps(count) {
  const cur = state.current;
  const t = lastSimulation && lastSimulation.trace;
  if (!cur || !t) return;
  const n = Math.max(1, Math.min(count, t.steps.length));
  lastSimulation.shown = n;
  state.visited.clear();
  state.currentStep = null;
  t.steps.slice(0, n).forEach((step, i) => {
    const path = step.path.startsWith("callflow.") ? step.path.slice("callflow.".length) : step.path;
    if (step.callflow_id === "draft" || step.callflow_id === cur.id) {
      state.visited.set(path, [...(state.visited.get(path) || []), i + 1]);
      if (i === n - 1) state.currentStep = path;
    }
  });
  render();
  const shown = $("step-shown");
  if (shown) shown.textContent = n === t.steps.length ? `The whole path: ${n} step(s).` : `Step ${n} of ${t.steps.length}: ${t.steps[n - 1].summary}`;
  document.querySelectorAll("#sim-steps li").forEach((li) => li.classList.toggle("later", Number(li.dataset.step) > n));
}

async function saveAsTest() {
  const cur = state.current;
  if (!lastSimulation || !cur.id) return;
  const t = lastSimulation.trace;
  const test = {
    name: `${cur.doc.name || cur.id}: ${lastSimulation.data.number} ${lastSimulation.data.events.map((e) => e.dtmf || e.bridge || "").join(" ")}`.trim(),
    simulation: { number: lastSimulation.data.number, events: lastSimulation.data.events },
    expect: { callflow_id: cur.id, outcome: t.outcome.kind, visits: t.steps.map((s) => s.module) },
  };
  const r = await api("PUT", acct("/callflow_tests"), test);
  say(r.status === 201 ? `Saved the call test "${test.name}".` : `Not saved: ${r.body.message || r.status}`, r.status !== 201);
}

// ---------------------------------------------------------------------------------------------
// History: revisions, a diff of two drawn side by side on the tree, rollback.

async function renderHistoryPanel() {
  const cur = state.current;
  const panel = $("panel");
  if (!cur || !cur.id) { fill(panel, h("p", {}, "A callflow has history once it is saved.")); return; }
  const r = await api("GET", acct(`/callflows/${cur.id}/revisions`));
  const rows = r.status === 200 && Array.isArray(r.body.data) ? r.body.data : [];
  const pick = (id, label, chosen) => h("div", {}, h("label", { for: id }, label),
    h("select", { id }, h("option", { value: "live" }, "the live callflow"),
      rows.map((row) => h("option", { value: row.revision, selected: row.revision === chosen }, `revision ${row.revision} (${row.kind})`))));
  fill(panel,
    h("h2", {}, "History"),
    rows.length > 1 ? h("form", { id: "compare-form", onsubmit: (e) => { e.preventDefault(); compare($("compare-a").value, $("compare-b").value); } },
      pick("compare-a", "Compare", rows[rows.length - 1].revision), pick("compare-b", "with", "live"),
      h("button", { type: "submit" }, "Compare on the tree")) : null,
    rows.length ? h("ul", { class: "revisions", id: "revisions" }, rows.map((row) => h("li", {},
      h("strong", {}, `Revision ${row.revision}`), ` ${row.kind} ${row.time || ""}`,
      row.message ? h("div", {}, row.message) : null,
      h("div", {},
        h("button", { type: "button", "data-compare": row.revision, onclick: () => compare(row.revision, "live") }, "Compare with live"),
        h("button", { type: "button", "data-rollback": row.revision, onclick: () => rollback(row.revision) }, row.kind === "delete" ? "Restore" : "Roll back to this"))))) : h("p", {}, "No revisions yet: publish first."),
  );
}

// Draws revision `from` and `to` ("live" for the live callflow) side by side, the nodes that
// differ highlighted.
async function compare(from, to) {
  const cur = state.current;
  const load = (rev) => api("GET", acct(rev === "live" ? `/callflows/${cur.id}` : `/callflows/${cur.id}/revisions/${rev}`));
  const [old, live] = await Promise.all([load(String(from)), load(String(to))]);
  if (old.status !== 200 || live.status !== 200) { say("Cannot load that revision.", true); return; }
  const a = old.body.data, b = live.body.data;
  const name = (rev) => (rev === "live" ? "the live callflow" : `revision ${rev}`);
  const changed = new Set();
  const walk = (x, y, path) => {
    const same = x && y && x.module === y.module && JSON.stringify(x.data || {}) === JSON.stringify(y.data || {});
    if (!same) changed.add(path);
    const keys = new Set([...Object.keys((x && x.children) || {}), ...Object.keys((y && y.children) || {})]);
    for (const k of keys) walk(x && x.children && x.children[k], y && y.children && y.children[k], `${path}.children.${k}`);
  };
  walk(a.flow, b.flow, "flow");
  const meta = ["name", "numbers", "patterns"].filter((k) => JSON.stringify(a[k] ?? null) !== JSON.stringify(b[k] ?? null))
    .map((k) => h("li", {}, `${k}: ${JSON.stringify(a[k] ?? null)} → ${JSON.stringify(b[k] ?? null)}`));
  const title = `${name(String(from))} (left) and ${name(String(to))} (right)`;
  const dialog = h("dialog", { id: "compare-dialog", "aria-label": title },
    h("h2", {}, title.charAt(0).toUpperCase() + title.slice(1)),
    h("p", {}, `${changed.size} node(s) differ; they are highlighted.`),
    meta.length ? h("ul", { id: "compare-meta" }, meta) : null,
    h("div", { class: "side-by-side" }, h("div", {}, renderTree(a, { readOnly: true, changed })), h("div", {}, renderTree(b, { readOnly: true, changed }))),
    h("button", { type: "button", onclick: () => { dialog.close(); dialog.remove(); } }, "Close"));
  document.body.append(dialog);
  dialog.showModal();
}

async function rollback(revision) {
  const cur = state.current;
  const r = await api("PUT", acct(`/callflows/${cur.id}/rollback`), { revision }, { envelope: { commit_message: `rolled back to revision ${revision} in the editor` } });
  if (r.status !== 200) { say(`Not rolled back: ${r.body.message || r.status}`, true); return; }
  if (await hasDraft(cur.id)) await api("DELETE", acct(`/callflows/${cur.id}/draft`));
  await loadCallflows(cur.id);
  await openCallflow(cur.id);
  showPanel("history");
  say(`Rolled back to revision ${revision}: now revision ${r.body.revision}.`);
}

// ---------------------------------------------------------------------------------------------
// Wiring.

function onKey(e) {
  if (!state.current || $("workspace").hidden) return;
  const inField = ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement && document.activeElement.tagName);
  if ((e.ctrlKey || e.metaKey) && e.key === "z" && !e.shiftKey && !inField) { e.preventDefault(); undo(); }
  else if ((e.ctrlKey || e.metaKey) && (e.key === "y" || (e.key === "Z" && e.shiftKey)) && !inField) { e.preventDefault(); redo(); }
  else if ((e.ctrlKey || e.metaKey) && e.key === "x" && !inField) { e.preventDefault(); cutSelected(); }
  else if ((e.ctrlKey || e.metaKey) && e.key === "v" && !inField) { e.preventDefault(); paste(); }
  else if (e.key === "Delete" && !inField) { e.preventDefault(); deleteSelected(); }
}

function init() {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", () => { state.token = null; location.reload(); });
  $("account-select").addEventListener("change", async (e) => { state.account = e.target.value; await openAccount(); });
  $("account-form").addEventListener("submit", (e) => { e.preventDefault(); addAccount(); });
  $("search").addEventListener("input", () => { renderList(); lookup(); });
  $("search-form").addEventListener("submit", (e) => { e.preventDefault(); lookup(); });
  $("new-callflow").addEventListener("click", newCallflow);
  $("show-deleted").addEventListener("click", showDeleted);
  $("delete-callflow").addEventListener("click", deleteCallflow);
  for (const id of ["cf-name", "cf-numbers", "cf-patterns"]) $(id).addEventListener("input", onMetaInput);
  $("undo").addEventListener("click", undo);
  $("redo").addEventListener("click", redo);
  $("cut").addEventListener("click", cutSelected);
  $("paste").addEventListener("click", paste);
  $("delete-node").addEventListener("click", deleteSelected);
  $("save-draft").addEventListener("click", saveDraft);
  $("publish").addEventListener("click", publish);
  $("show-sim").addEventListener("click", () => showPanel("sim"));
  $("show-history").addEventListener("click", () => showPanel("history"));
  document.addEventListener("keydown", onKey);
  loadModules();
}

init();
