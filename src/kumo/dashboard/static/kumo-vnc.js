// The VGA console: noVNC's RFB client on a websocket kumo relays to QEMU's VNC socket.
import RFB from "./vendor/novnc-1.7.0/core/rfb.js";
import keysyms from "./vendor/novnc-1.7.0/core/input/keysymdef.js";

const RETURN = 0xff0d;
const TAB = 0xff09;

export function openVnc(screen, wsUrl, status) {
    const say = (text) => { if (status) status.textContent = text; };
    const rfb = new RFB(screen, wsUrl);
    rfb.scaleViewport = true;
    rfb.background = "#000";
    say("connecting…");
    rfb.addEventListener("connect", () => say("connected: click the screen to type"));
    rfb.addEventListener("disconnect", (event) => say(event.detail.clean
        ? "disconnected"
        : "disconnected: a console URL works once, open the console again"));
    rfb.addEventListener("securityfailure", (event) => say(`refused: ${event.detail.reason}`));
    return rfb;
}

// QEMU's VNC server has no clipboard: send text as key presses (one key per character).
export function typeText(rfb, text) {
    for (const ch of text) {
        let sym;
        if (ch === "\n" || ch === "\r") sym = RETURN;
        else if (ch === "\t") sym = TAB;
        else sym = keysyms.lookup(ch.codePointAt(0));
        if (sym) rfb.sendKey(sym, null);
    }
}

export function wsUrlFor(consoleUrl) {
    // kumo's noVNC URL: /console/novnc/<server>?token=T -> its websocket, same host.
    const url = new URL(consoleUrl, location.href);
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}${url.pathname}/websockify${url.search}`;
}
