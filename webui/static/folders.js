// Uploads on a folder's page: drag and drop or the file picker, each file sent with tus
// (the API's /folders/_/tus/upload) in chunks, with progress. A ticket is kept per file (in
// sessionStorage) so that after a dropped connection, or a reload and the same file picked
// again, the upload resumes from the offset the server reports (HEAD) instead of restarting.
"use strict";
(() => {
  const zone = document.getElementById("dropzone");
  if (!zone) return;
  const CHUNK = 4 * 1024 * 1024;
  const csrf = JSON.parse(document.body.getAttribute("hx-headers"))["X-CSRF-Token"];
  const list = document.getElementById("uploads");

  async function ticket(path, file) {
    const key = `tus:${zone.dataset.tickets}:${path}:${file.size}:${file.lastModified}`;
    const kept = sessionStorage.getItem(key);
    if (kept) return { key, url: kept };
    const body = new URLSearchParams({ path, size: String(file.size) });
    const answer = await fetch(zone.dataset.tickets, {
      method: "POST", body, headers: { "X-CSRF-Token": csrf },
    });
    if (!answer.ok) throw new Error(await problem(answer));
    const { url } = await answer.json();
    sessionStorage.setItem(key, url);
    return { key, url };
  }

  async function problem(answer) {
    const text = await answer.text();
    const found = new DOMParser().parseFromString(text, "text/html").querySelector("[role=alert] p, main p");
    return found ? found.textContent : `${answer.status} ${answer.statusText}`;
  }

  function patch(url, offset, blob, onProgress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("PATCH", url);
      xhr.setRequestHeader("Tus-Resumable", "1.0.0");
      xhr.setRequestHeader("Upload-Offset", String(offset));
      xhr.setRequestHeader("Content-Type", "application/offset+octet-stream");
      xhr.upload.onprogress = (e) => onProgress(offset + e.loaded);
      xhr.onload = () => (xhr.status === 204 || xhr.status === 409)
        ? resolve(Number(xhr.getResponseHeader("Upload-Offset")))
        : reject(new Error(xhr.responseText || `${xhr.status}`));
      xhr.onerror = () => reject(new Error("the connection dropped"));
      xhr.send(blob);
    });
  }

  async function offsetOf(url) {
    const answer = await fetch(url, { method: "HEAD", headers: { "Tus-Resumable": "1.0.0" } });
    if (!answer.ok) throw new Error(`the upload is gone (${answer.status})`);
    return Number(answer.headers.get("Upload-Offset"));
  }

  async function upload(file) {
    const item = document.createElement("li");
    const bar = document.createElement("progress");
    bar.max = Math.max(file.size, 1);
    bar.value = 0;
    bar.setAttribute("aria-label", `Upload of ${file.name}`);
    const note = document.createElement("span");
    item.append(`${file.name} `, bar, " ", note);
    list.append(item);
    const base = zone.dataset.base;
    const path = base ? `${base}/${file.name}` : file.name;
    try {
      const { key, url } = await ticket(path, file);
      let offset = file.size ? await offsetOf(url) : 0;
      let retries = 5;
      while (offset < file.size) {
        try {
          offset = await patch(url, offset, file.slice(offset, offset + CHUNK), (n) => { bar.value = n; });
        } catch (err) {
          if (--retries < 0) throw err;
          note.textContent = "reconnecting…";
          offset = await offsetOf(url);  // resume where the server got to
        }
        bar.value = offset;
      }
      sessionStorage.removeItem(key);
      bar.value = bar.max;
      note.textContent = "done";
      item.dataset.done = "true";
    } catch (err) {
      note.textContent = `failed: ${err.message}`;
      item.setAttribute("role", "alert");
    }
  }

  async function uploadAll(files) {
    await Promise.all(Array.from(files).map(upload));
    if (list.querySelector("[data-done]") && !list.querySelector("[role=alert]")) {
      window.location.reload();  // the listing shows the new files
    }
  }

  document.getElementById("upload-files").addEventListener("change", (e) => uploadAll(e.target.files));
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    uploadAll(e.dataTransfer.files);
  });
})();
