// The orch dashboard's one script: live updates and keyboard navigation.
//
// Live updates: every element with an `id` and a `data-fragment` URL is fetched again (at most
// every 300 ms) when the server's event stream (`/live`, the same events as `/v1/events`)
// reports a transition; the response's element with the same id replaces it. So the server
// stays the only place that renders anything, and no text from a task is ever put into the page
// as HTML by this script except through that server-rendered, escaped fragment. An element may
// narrow what wakes it with `data-task` or `data-workflow` (only events of that task or
// workflow).
//
// Keys: j / k move through the rows (`tr[data-task]`, `.item[data-task]`), Enter opens the
// selected one, / focuses the search field.
"use strict";

(function () {
  var selectedTask = null;
  var timers = {};
  var busy = {};
  var again = {};

  function liveElements() {
    return Array.prototype.slice.call(document.querySelectorAll("[data-fragment][id]"));
  }

  function wants(el, event) {
    if (!event) return true;
    var task = el.getAttribute("data-task");
    var workflow = el.getAttribute("data-workflow");
    if (task && String(event.task) !== task) return false;
    if (workflow && String(event.workflow) !== workflow) return false;
    return true;
  }

  function refresh(id) {
    var el = document.getElementById(id);
    if (!el) return;
    // Never under the user's hands: a field being typed in (a comment, a reply) would be lost.
    var active = document.activeElement;
    var typing = Array.prototype.some.call(
      el.querySelectorAll("input, textarea, select"),
      function (f) {
        return f === active || ((f.tagName === "TEXTAREA" || f.type === "text" || f.type === "password") && f.value);
      }
    );
    if (typing) {
      again[id] = false;
      window.setTimeout(function () { schedule(id); }, 1000);
      return;
    }
    if (busy[id]) {
      again[id] = true;
      return;
    }
    busy[id] = true;
    fetch(el.getAttribute("data-fragment"), {
      credentials: "same-origin",
      headers: { Accept: "text/html" },
      redirect: "manual"
    })
      .then(function (response) {
        if (response.type === "opaqueredirect" || response.status === 303) {
          // The session ended: the next page load goes to sign-in.
          window.location.reload();
          throw new Error("signed out");
        }
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById(id);
        var current = document.getElementById(id);
        if (fresh && current) {
          current.replaceWith(document.importNode(fresh, true));
          restoreSelection();
          document.dispatchEvent(new CustomEvent("orch:refreshed", { detail: { id: id } }));
        }
      })
      .catch(function () {})
      .then(function () {
        busy[id] = false;
        if (again[id]) {
          again[id] = false;
          schedule(id);
        }
      });
  }

  function schedule(id) {
    if (timers[id]) return;
    timers[id] = window.setTimeout(function () {
      timers[id] = null;
      refresh(id);
    }, 300);
  }

  function onEvent(message) {
    var event = null;
    try {
      event = JSON.parse(message.data);
    } catch (e) {
      event = null;
    }
    liveElements().forEach(function (el) {
      if (message.type === "lagged" || wants(el, event)) schedule(el.id);
    });
  }

  function connect() {
    if (!liveElements().length || !window.EventSource) return;
    var source = new EventSource("/live");
    source.addEventListener("transition", onEvent);
    source.addEventListener("lagged", onEvent);
    source.addEventListener("open", function () {
      // Anything missed while disconnected.
      liveElements().forEach(function (el) {
        schedule(el.id);
      });
    });
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED) {
        window.setTimeout(connect, 5000);
      }
    };
  }

  function rows() {
    return Array.prototype.slice.call(
      document.querySelectorAll("tr[data-task], .item[data-task]")
    );
  }

  function mark(row) {
    rows().forEach(function (r) {
      r.classList.remove("selected");
      r.removeAttribute("aria-selected");
    });
    if (!row) return;
    row.classList.add("selected");
    row.setAttribute("aria-selected", "true");
    selectedTask = row.getAttribute("data-task");
    row.scrollIntoView({ block: "nearest" });
  }

  function restoreSelection() {
    if (selectedTask === null) return;
    var row = document.querySelector(
      'tr[data-task="' + selectedTask + '"], .item[data-task="' + selectedTask + '"]'
    );
    if (row) {
      row.classList.add("selected");
      row.setAttribute("aria-selected", "true");
    }
  }

  function move(step) {
    var all = rows();
    if (!all.length) return;
    var at = all.findIndex(function (r) {
      return r.getAttribute("data-task") === selectedTask;
    });
    var next = at < 0 ? (step > 0 ? 0 : all.length - 1) : at + step;
    next = Math.max(0, Math.min(all.length - 1, next));
    mark(all[next]);
  }

  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    var target = e.target;
    if (target && target.closest && target.closest("input, textarea, select, [contenteditable]")) {
      if (e.key === "Escape" && target.blur) target.blur();
      return;
    }
    if (e.key === "j" || e.key === "ArrowDown") {
      move(1);
      e.preventDefault();
    } else if (e.key === "k" || e.key === "ArrowUp") {
      move(-1);
      e.preventDefault();
    } else if (e.key === "Enter" && selectedTask !== null) {
      var row = document.querySelector(
        'tr[data-task="' + selectedTask + '"], .item[data-task="' + selectedTask + '"]'
      );
      var link = row && row.querySelector("a.open");
      if (link) {
        window.location.assign(link.getAttribute("href"));
        e.preventDefault();
      }
    } else if (e.key === "/") {
      var search = document.getElementById("search");
      if (search) {
        search.focus();
        e.preventDefault();
      }
    }
  });

  document.addEventListener("click", function (e) {
    var row = e.target && e.target.closest && e.target.closest("tr[data-task], .item[data-task]");
    if (row) mark(row);
  });

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", connect);
  } else {
    connect();
  }
})();
