// The serial console: xterm.js on a websocket kumo relays to the guest's ttyS0.
// The relay sends the end of the console log first, then the live output.
import { Terminal } from "./vendor/xterm-6.0.0/lib/xterm.mjs";

export function openSerial(element, wsUrl, status) {
    const say = (text) => { if (status) status.textContent = text; };
    const term = new Terminal({ convertEol: false, scrollback: 5000, cursorBlink: true,
                                fontFamily: "monospace", fontSize: 14 });
    term.open(element);
    const socket = new WebSocket(wsUrl);
    socket.binaryType = "arraybuffer";
    const encoder = new TextEncoder();
    say("connecting…");
    socket.onopen = () => { say("connected: type here, keys go to the guest"); term.focus(); };
    socket.onmessage = (event) => term.write(new Uint8Array(event.data));
    socket.onclose = (event) => say(event.code === 1000 || event.code === 1005
        ? "disconnected"
        : `disconnected (${event.reason || "refused or closed"}): open the console again`);
    term.onData((data) => {
        if (socket.readyState === WebSocket.OPEN) socket.send(encoder.encode(data));
    });
    return { term, socket };
}
