// Lifeguard review console: keyboard shortcuts, live SLA timers, audited reveal, lease heartbeat.
// Plain JavaScript, no dependencies; every action also works without it (forms post normally).
(function () {
  "use strict";
  var body = document.body;
  var csrf = body.dataset.csrf || "";
  var skew = body.dataset.now ? Date.parse(body.dataset.now) - Date.now() : 0;  // server clock - ours

  var pending = 0;
  function announce(text, kind) {
    var region = document.getElementById("flash");
    if (!region) return;
    var p = document.createElement("p");
    p.className = "flash flash-" + (kind || "ok");
    p.textContent = text;
    region.textContent = "";
    window.clearTimeout(pending);  // the latest message wins
    pending = window.setTimeout(function () { region.textContent = ""; region.appendChild(p); }, 30);
  }
  var readOnly = body.dataset.readonly === "1";

  // A flash rendered with the page is not announced by screen readers: re-insert it once loaded.
  var initial = document.querySelector("#flash .flash");
  if (initial) {
    var text = initial.textContent, kind = initial.classList.contains("flash-error") ? "error" : "ok";
    announce(text, kind);
  }

  function isTyping(el) {
    if (!el || el.isContentEditable) return true;
    var tag = el.tagName;
    if (tag === "TEXTAREA" || tag === "SELECT") return true;
    if (tag !== "INPUT") return false;
    return ["radio", "checkbox", "button", "submit", "reset"].indexOf(el.type) < 0;
  }

  function click(selector) {
    var el = document.querySelector(selector);
    if (!el) return false;
    el.click();
    return true;
  }

  // ------------------------------------------------------------------ decision form
  var form = document.getElementById("decision");
  var reason = document.getElementById("reason_code");

  function fitCodes(radio) {
    if (!reason || !radio) return;
    var codes = radio.dataset.codes;
    reason.required = codes !== "any";
    var first = null;
    Array.prototype.forEach.call(reason.options, function (opt) {
      if (!opt.value) return;
      var ok = codes === "any" || opt.dataset.kind === (codes === "nv" ? "nv" : "violation");
      opt.disabled = !ok;
      if (ok && first === null && codes !== "any") first = opt;
    });
    var current = reason.selectedOptions[0];
    if (!current || !current.value || current.disabled) {
      reason.value = first ? first.value : "";
    }
  }

  if (form) {
    form.addEventListener("change", function (e) {
      if (e.target.name === "action") fitCodes(e.target);
    });
    form.addEventListener("submit", function () {
      var button = document.getElementById("submit-decision");
      if (button) button.disabled = true;  // one decision per press
    });
  }

  function chooseAction(key) {
    if (!form) return false;
    var radio = form.querySelector('input[name="action"][data-key="' + key + '"]');
    if (!radio) {
      announce("Action " + key + " is not available for this case or your role.", "error");
      return true;
    }
    radio.checked = true;
    radio.focus();
    fitCodes(radio);
    return true;
  }

  // ------------------------------------------------------------------ shortcuts
  var help = document.getElementById("help");
  function toggleHelp() {
    if (!help) return;
    if (help.open) help.close(); else help.showModal();
  }
  Array.prototype.forEach.call(document.querySelectorAll("[data-help-open]"), function (b) {
    b.addEventListener("click", toggleHelp);
  });

  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey || e.defaultPrevented) return;
    if (help && help.open) {
      if (e.key === "?") { e.preventDefault(); help.close(); }
      return;  // the dialog keeps focus; Esc closes it natively
    }
    var target = e.target;
    if (e.key === "Enter" && form && form.contains(target)) {
      if (target.tagName === "BUTTON" || (target.tagName === "TEXTAREA" && e.shiftKey)) return;
      e.preventDefault();
      form.requestSubmit();
      return;
    }
    if (isTyping(target)) return;
    var handled = true;
    switch (e.key) {
      case "?": toggleHelp(); break;
      case "c": {
        if (click("#claim")) break;
        var row = target.closest ? target.closest("tr[data-case]") : null;
        var own = row ? row.querySelector("button.claim") : null;
        if (own) own.click();
        else if (!click("button.claim")) {
          announce(readOnly ? "Read-only: your role cannot claim cases." : "Nothing here you can claim.", "error");
        }
        break;
      }
      case "n":
        if (!click("#claim-next") && !click("a[rel=next]")) {
          announce(readOnly ? "Read-only: your role cannot claim cases." : "No next case.", "error");
        }
        break;
      case "d": {
        if (!form) {
          announce(readOnly ? "Read-only: your role cannot decide cases." : "Claim the case first (c) to decide it.",
                   "error");
          break;
        }
        var radio = form.querySelector('input[name="action"]:checked') || form.querySelector('input[name="action"]');
        form.scrollIntoView({ block: "nearest" });
        if (radio) radio.focus();
        break;
      }
      case "1": case "2": case "3": case "4": case "5": case "6":
        handled = chooseAction(e.key);
        break;
      default:
        handled = false;
    }
    if (handled) e.preventDefault();
  });

  // ------------------------------------------------------------------ SLA timers
  function span(ms) {
    var s = Math.floor(Math.abs(ms) / 1000), d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600);
    var m = Math.floor(s % 3600 / 60), sec = s % 60;
    function two(n) { return (n < 10 ? "0" : "") + n; }
    if (d) return d + "d " + h + "h";
    if (h) return h + "h " + two(m) + "m";
    return m + "m " + two(sec) + "s";
  }
  var timers = Array.prototype.slice.call(document.querySelectorAll("[data-due]"));
  function tick() {
    var now = Date.now() + skew;
    timers.forEach(function (el) {
      var left = Date.parse(el.dataset.due) - now, text = el.querySelector(".sla-text");
      if (!text) return;
      if (left < 0) {
        text.textContent = "overdue " + span(left);
        if (!el.classList.contains("sla-overdue")) {
          el.classList.remove("sla-ok", "sla-soon");
          el.classList.add("sla-overdue");
          var row = el.closest("tr");
          if (row) row.classList.add("overdue");
        }
      } else {
        text.textContent = "due in " + span(left);
      }
    });
  }
  if (timers.length) window.setInterval(tick, 1000);

  // ------------------------------------------------------------------ audited reveal
  Array.prototype.forEach.call(document.querySelectorAll("form.reveal"), function (f) {
    f.addEventListener("submit", function (e) {
      e.preventDefault();
      var button = f.querySelector("button");
      if (button) button.disabled = true;
      fetch(f.action, {
        method: "POST", body: new FormData(f), credentials: "same-origin",
        headers: { "X-Console-Fetch": "1", "X-CSRF-Token": csrf }
      }).then(function (r) {
        if (!r.ok) throw new Error(r.status === 401 ? "Your session ended: sign in again." : "Could not reveal (" + r.status + ").");
        return r.text();
      }).then(function (html) {
        var target = document.getElementById(f.dataset.target);
        target.innerHTML = html;  // server-rendered, escaped by the template engine
        target.classList.add("revealed");
        var note = document.createElement("p");
        note.className = "hint revealed-note";
        note.textContent = "Revealed by you; recorded in the audit trail.";
        f.replaceWith(note);
        announce("Message revealed. Your reveal was recorded in the audit trail.");
      }).catch(function (err) {
        if (button) button.disabled = false;
        announce(err.message, "error");
      });
    });
  });

  // ------------------------------------------------------------------ lease heartbeat
  var beat = body.dataset.heartbeat, lease = Number(body.dataset.lease || 0);
  if (beat && lease > 0) {
    window.setInterval(function () {
      fetch(beat, { method: "POST", credentials: "same-origin",
                    headers: { "X-Console-Fetch": "1", "X-CSRF-Token": csrf } })
        .then(function (r) {
          if (!r.ok) announce("Your hold on this case lapsed or was taken over: reload before deciding.", "error");
        });
    }, Math.max(5, lease / 3) * 1000);
  }
})();
