// The password reset page (service/web/pages.py): reads the token from the page's address,
// takes it out of the address bar and the history, and sends it with the new password to the
// confirm endpoint. Messages are set with textContent only: nothing is parsed as HTML.
"use strict";

(function () {
  const form = document.getElementById("reset-form");
  const message = document.getElementById("message");
  const button = document.getElementById("submit");
  const password = document.getElementById("new-password");
  const repeat = document.getElementById("repeat-password");
  const confirmUrl = form.dataset.confirmUrl;
  const rule = `${form.dataset.minLength} to ${form.dataset.maxLength} characters`;

  const TEXT = {
    missing: "This link has no reset token. Open the link from the reset e-mail again, or ask for a new reset e-mail.",
    done: "Your password has been changed. You can now log in with your new password.",
    invalid: "This reset link has expired or has already been used. Ask for a new reset e-mail.",
    length: `The password is not accepted: it must be ${rule} long.`,
    differ: "The two passwords differ. Type the same password twice.",
    busy: "Too many attempts. Wait a minute, then try again.",
    failed: "Your password could not be set right now. Try again in a moment.",
  };

  function show(kind, text) {
    message.textContent = text;
    message.className = `message ${kind}`;
    message.dataset.outcome = kind;
    message.hidden = false;
  }

  function finish(kind, text) {
    form.hidden = true;
    show(kind, text);
  }

  // The token may come as ?token= (the default link) or #token= (kept off the server).
  const query = new URLSearchParams(window.location.search);
  const fragment = new URLSearchParams(window.location.hash.slice(1));
  const token = query.get("token") || fragment.get("token");
  if (window.location.search || window.location.hash) {
    window.history.replaceState(null, "", window.location.pathname);
  }
  if (!token) {
    finish("error", TEXT.missing);
    return;
  }
  form.hidden = false;
  password.focus();

  function fieldOf(detail) {
    return Array.isArray(detail.loc) ? detail.loc[detail.loc.length - 1] : null;
  }

  async function outcome(response) {
    if (response.status === 204) return ["success", TEXT.done, true];
    if (response.status === 429) return ["error", TEXT.busy, false];
    let error = {};
    try {
      error = (await response.json()).error || {};
    } catch (ignored) {
      // not the API's JSON envelope (a proxy's page): a generic message below
    }
    if (error.code === "invalid_token") return ["error", TEXT.invalid, true];
    if (error.code === "validation_error") {
      const fields = (error.details || []).map(fieldOf);
      if (fields.includes("token")) return ["error", TEXT.invalid, true];
      if (fields.includes("new_password")) return ["error", TEXT.length, false];
    }
    return ["error", TEXT.failed, false];
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (password.value !== repeat.value) {
      show("error", TEXT.differ);
      return;
    }
    button.disabled = true;
    show("pending", "Setting your new password…");
    try {
      const response = await fetch(confirmUrl, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ token: token, new_password: password.value }),
        credentials: "omit",
        cache: "no-store",
        referrerPolicy: "no-referrer",
      });
      const [kind, text, final] = await outcome(response);
      if (final) {
        finish(kind, text);
      } else {
        show(kind, text);
      }
    } catch (ignored) {
      show("error", TEXT.failed);
    } finally {
      button.disabled = false;
    }
  });
})();
