// The session page's terminal: xterm.js (vendored) attached to a new shell in the session over
// the control plane's terminal WebSocket, JSON text frames: to it {"type": "stdin", "chars":
// BASE64} and {"type": "resize", "rows", "cols"}; from it {"type": "out", "data": BASE64} and
// {"type": "exit", "code"}. Opened on demand (the button), since each opening starts a shell.
"use strict";
(() => {
  const box = document.getElementById("terminal");
  const open = document.getElementById("terminal-open");
  if (!box || !open) return;
  const encoder = new TextEncoder();
  const toBase64 = (bytes) => btoa(Array.from(bytes, (b) => String.fromCharCode(b)).join(""));
  const fromBase64 = (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));

  let term = null;
  open.addEventListener("click", () => {
    if (term) term.dispose();  // the last one ended: a new shell in a new terminal
    open.hidden = true;
    box.hidden = false;
    const shell = new Terminal({
      cursorBlink: true, fontSize: 14, scrollback: 2000, theme: { background: "#14181d" },
    });
    term = shell;
    const fit = new FitAddon.FitAddon();
    shell.loadAddon(fit);
    shell.open(box);
    fit.fit();
    const url = new URL(box.dataset.socket, window.location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.search = new URLSearchParams({ rows: shell.rows, cols: shell.cols }).toString();
    const socket = new WebSocket(url);
    const send = (message) => socket.readyState === WebSocket.OPEN && socket.send(JSON.stringify(message));
    socket.onopen = () => { box.dataset.state = "open"; shell.focus(); };
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "out") shell.write(fromBase64(message.data));
      else if (message.type === "exit") shell.write(`\r\n[the shell exited with ${message.code}]\r\n`);
    };
    socket.onclose = (event) => {
      box.dataset.state = "closed";
      shell.write(`\r\n[disconnected${event.reason ? ": " + event.reason : ""}]\r\n`);
      open.hidden = false;
      open.textContent = "Open a new terminal";
    };
    shell.onData((data) => send({ type: "stdin", chars: toBase64(encoder.encode(data)) }));
    shell.onResize(({ rows, cols }) => send({ type: "resize", rows, cols }));
    window.onresize = () => fit.fit();
  });
})();
