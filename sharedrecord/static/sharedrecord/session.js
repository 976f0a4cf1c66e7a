// Idle timeout: warn before the server-side session ends, then sign out.
// The server is the authority (SESSION_COOKIE_AGE, renewed by use at most once a minute
// and by "Stay signed in"); this only tells the person in time and leaves no record on screen.
(function () {
  "use strict";
  var body = document.body;
  var idle = parseInt(body.dataset.idleSeconds || "0", 10);
  var warnBefore = parseInt(body.dataset.warningSeconds || "0", 10);
  if (!idle) { return; }
  var warning = document.getElementById("idle-warning");
  var remaining = document.getElementById("idle-remaining");
  var stay = document.getElementById("idle-stay");
  var timeoutForm = document.getElementById("idle-timeout-form");
  var deadline = Date.now() + idle * 1000;
  var timer = null;

  function words(seconds) {
    if (seconds >= 120) { return Math.ceil(seconds / 60) + " minutes"; }
    if (seconds > 60) { return "1 minute " + (seconds - 60) + " seconds"; }
    return seconds + (seconds === 1 ? " second" : " seconds");
  }

  function tick() {
    var left = Math.round((deadline - Date.now()) / 1000);
    if (left <= 0) {
      timeoutForm.submit();  // a POST with the CSRF token: sign-out is never a plain link
      return;
    }
    if (left <= warnBefore) {
      if (warning.hidden) {
        warning.hidden = false;
        stay.focus();
      }
      remaining.textContent = words(left);
    }
    timer = window.setTimeout(tick, 1000);
  }

  stay.addEventListener("click", function () {
    fetch(body.dataset.sessionUrl, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("session ended"); }
        return response.json();
      })
      .then(function (data) {
        deadline = Date.now() + data.idle_seconds * 1000;
        warning.hidden = true;
      })
      .catch(function () { timeoutForm.submit(); });
  });

  tick();
})();
