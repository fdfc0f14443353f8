// The login page: posts the form to /api/login (which sets the session
// cookie), then goes where the visitor was headed.
import { api } from "./api.js";

function destination() {
  const next = new URLSearchParams(window.location.search).get("next") || "/";
  // Only this site: the browser resolves the path as it would a link, and
  // anything that lands elsewhere goes home instead.
  const url = new URL(next, window.location.origin);
  return url.origin === window.location.origin ? url.pathname + url.search + url.hash : "/";
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("login");
  const error = document.getElementById("login-error");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    const button = document.getElementById("sign-in");
    button.disabled = true;
    try {
      await api("/api/login/", {
        method: "POST",
        body: { email: form.email.value, password: form.password.value },
      });
      window.location.assign(destination());
    } catch (failure) {
      error.textContent = failure.message;
      error.hidden = false;
      button.disabled = false;
    }
  });
});
