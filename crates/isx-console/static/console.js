// isx console: the little the pages need beyond HTML. Every page works
// without it; with it, "verify now" shows its progress, and a bundle or
// alert file chosen in a form is read into the form's text area.
"use strict";

function csrf() {
  const t = document.querySelector('input[name="_token"]');
  return t ? t.value : "";
}

function pollVerify(form) {
  const status = form.dataset.status;
  const box = document.getElementById("verify-progress");
  const bar = document.getElementById("verify-bar");
  const what = document.getElementById("verify-what");
  const count = document.getElementById("verify-count");
  let tries = 0;
  const tick = () => {
    tries += 1;
    fetch(status, { credentials: "same-origin" })
      .then((r) => r.json())
      .then((s) => {
        box.hidden = false;
        bar.max = Math.max(s.total, 1);
        bar.value = s.done;
        what.textContent = s.what;
        count.textContent = s.done + "/" + s.total;
        if (s.running && tries < 36000) {
          setTimeout(tick, 250);
        } else {
          window.location.reload();
        }
      })
      .catch(() => { if (tries < 40) setTimeout(tick, 1000); });
  };
  tick();
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("verify-form");
  if (form) {
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      fetch(form.action, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/x-www-form-urlencoded" },
        body: "_token=" + encodeURIComponent(csrf()),
      }).then(() => pollVerify(form));
    });
    const box = document.getElementById("verify-progress");
    if (box && !box.hidden) pollVerify(form);
  }
  // A file chosen in a form is read into its text area.
  document.querySelectorAll('input[type="file"][data-target]').forEach((input) => {
    input.addEventListener("change", () => {
      const file = input.files && input.files[0];
      if (!file) return;
      file.text().then((text) => {
        document.getElementById(input.dataset.target).value = text;
        if (input.dataset.name) document.getElementById(input.dataset.name).value = file.name;
      });
    });
  });
});
