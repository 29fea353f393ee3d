// orch dashboard: the task, workflow and usage pages (dashview). Vanilla, no build step.
// Everything a task wrote is put into the page with textContent or .value, never as HTML.
"use strict";
(function () {
  var STATUS = /^[a-z_]{1,40}$/;

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // ---- task page: live timeline and status, logs followed while a run is active ----
  function taskPage(page) {
    var id = page.getAttribute("data-task");
    var list = document.getElementById("timeline-list");
    var badge = document.getElementById("task-status");
    var reloadPending = false;
    if (window.EventSource) {
      var events = new EventSource("/live?task=" + encodeURIComponent(id));
      events.addEventListener("transition", function (message) {
        var e;
        try { e = JSON.parse(message.data); } catch (err) { return; }
        if (String(e.task) !== id) return;
        var li = el("li");
        li.appendChild(el("time", "", e.at || ""));
        li.appendChild(document.createTextNode(" "));
        li.appendChild(el("span", "kind", e.kind || ""));
        if (e.from && STATUS.test(e.from)) {
          li.appendChild(document.createTextNode(" "));
          li.appendChild(el("span", "status status-" + e.from, e.from));
          li.appendChild(document.createTextNode(" →"));
        }
        if (e.to && STATUS.test(e.to)) {
          li.appendChild(document.createTextNode(" "));
          li.appendChild(el("span", "status status-" + e.to, e.to));
          if (badge) {
            badge.textContent = e.to;
            badge.className = "status status-" + e.to;
            page.setAttribute("data-status", e.to);
          }
        }
        li.appendChild(el("span", "actor", " by " + (e.actor || "")));
        if (e.reason) li.appendChild(el("span", "reason", " " + e.reason));
        if (list) list.appendChild(li);
        // A new run or an end brings new logs, transcripts and a diff: reload, unless a
        // comment is being written.
        if (!reloadPending && (e.to === "running" || e.to === "done" || e.to === "failed" ||
            e.to === "needs_review" || e.to === "cancelled")) {
          reloadPending = true;
          if (draftsInProgress()) {
            showReloadNote();
          } else {
            setTimeout(function () { window.location.reload(); }, 600);
          }
        }
      });
    }
    var followed = document.querySelectorAll("pre.logs[data-follow]");
    for (var i = 0; i < followed.length; i++) followLogs(followed[i]);
    diffComments();
  }

  function followLogs(pre) {
    if (!window.EventSource) return;
    var source = new EventSource(pre.getAttribute("data-follow"));
    var lastFile = null;
    var started = false;
    source.addEventListener("log", function (message) {
      var chunk;
      try { chunk = JSON.parse(message.data); } catch (err) { return; }
      if (!started) { pre.textContent = ""; started = true; }
      if (chunk.file !== lastFile) {
        pre.appendChild(document.createTextNode("==> " + chunk.file + " <==\n"));
        lastFile = chunk.file;
      }
      pre.appendChild(document.createTextNode(chunk.text));
      pre.scrollTop = pre.scrollHeight;
    });
    source.addEventListener("end", function () { source.close(); pre.setAttribute("data-ended", "1"); });
  }

  function draftsInProgress() {
    var boxes = document.querySelectorAll("#diff-body textarea");
    for (var i = 0; i < boxes.length; i++) if (boxes[i].value.trim() !== "") return true;
    return false;
  }

  function showReloadNote() {
    if (document.getElementById("reload-note")) return;
    var note = el("div", "flash ok", "The task changed: reload the page to see its new state (your comments are not sent yet).");
    note.id = "reload-note";
    var main = document.getElementById("main");
    if (main) main.insertBefore(note, main.firstChild);
  }

  // ---- comments on diff lines ----
  function diffComments() {
    var form = document.getElementById("comment-form");
    if (!form || form.getAttribute("data-can-comment") !== "1") return;
    var body = document.getElementById("diff-body");
    body.classList.add("commentable");
    body.addEventListener("click", function (event) {
      var cell = event.target.closest ? event.target.closest("td.ln") : null;
      if (!cell) return;
      var row = cell.parentNode;
      if (!row.hasAttribute("data-line")) return;
      openComment(row);
    });
    updateCount();
  }

  function openComment(row) {
    var next = row.nextElementSibling;
    if (next && next.classList.contains("comment-row")) {
      next.querySelector("textarea").focus();
      return;
    }
    var section = row.closest("section.diff-file");
    var path = section ? section.getAttribute("data-path") : "";
    var line = row.getAttribute("data-line");
    var side = row.getAttribute("data-side") === "old" ? "old" : "new";
    var tr = el("tr", "comment-row");
    tr.setAttribute("data-for", row.id);
    var td = el("td");
    td.colSpan = 3;
    var label = el("label", "comment-label", (side === "old" ? "Comment on removed line " : "Comment on ") + path + ":" + line);
    td.appendChild(label);
    [["path", path], ["line", line], ["side", side]].forEach(function (pair) {
      var input = document.createElement("input");
      input.type = "hidden";
      input.name = pair[0];
      input.value = pair[1];
      td.appendChild(input);
    });
    var text = document.createElement("textarea");
    text.name = "comment";
    text.rows = 3;
    text.setAttribute("aria-label", "Comment on " + path + ":" + line);
    text.addEventListener("input", updateCount);
    td.appendChild(text);
    var remove = el("button", "remove", "Remove");
    remove.type = "button";
    remove.addEventListener("click", function () { tr.parentNode.removeChild(tr); updateCount(); });
    td.appendChild(remove);
    tr.appendChild(td);
    row.parentNode.insertBefore(tr, row.nextSibling);
    row.classList.add("commented");
    text.focus();
    updateCount();
  }

  function updateCount() {
    var count = document.getElementById("pending-count");
    if (!count) return;
    var n = 0;
    var boxes = document.querySelectorAll("#diff-body textarea");
    for (var i = 0; i < boxes.length; i++) if (boxes[i].value.trim() !== "") n++;
    count.textContent = n === 0 ? "No comment yet: click a line number in the diff." : n + " comment(s) ready to send.";
  }

  // ---- workflow page: recolour nodes as their tasks move ----
  function workflowPage(box) {
    var id = box.getAttribute("data-workflow");
    if (!window.EventSource) return;
    var events = new EventSource("/live?workflow=" + encodeURIComponent(id));
    events.addEventListener("transition", function (message) {
      var e;
      try { e = JSON.parse(message.data); } catch (err) { return; }
      if (!e.to || !STATUS.test(e.to)) return;
      var node = box.querySelector('[data-task="' + Number(e.task) + '"]');
      if (!node) { window.location.reload(); return; }
      node.setAttribute("class", "dag-node status-" + e.to);
      node.setAttribute("data-status", e.to);
      var label = node.querySelector(".dag-id");
      if (label) label.textContent = "#" + Number(e.task) + " · " + e.to;
      var cell = document.querySelector('#workflow-tasks [data-task="' + Number(e.task) + '"] .status');
      if (cell) { cell.textContent = e.to; cell.className = "status status-" + e.to; }
      recount(box);
    });
  }

  // The counts per status above the graph, from the nodes' current statuses.
  function recount(box) {
    var counts = document.getElementById("workflow-counts");
    if (!counts) return;
    var order = [];
    var by = {};
    var nodes = box.querySelectorAll("a.dag-node");
    for (var i = 0; i < nodes.length; i++) {
      var status = nodes[i].getAttribute("data-status");
      if (!STATUS.test(status)) continue;
      if (!(status in by)) { by[status] = 0; order.push(status); }
      by[status]++;
    }
    counts.textContent = "";
    order.forEach(function (status) {
      counts.appendChild(el("span", "status status-" + status, status + " " + by[status]));
      counts.appendChild(document.createTextNode(" "));
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var page = document.getElementById("task-page");
    if (page) taskPage(page);
    var workflow = document.getElementById("workflow-graph");
    if (workflow) workflowPage(workflow);
  });
})();
