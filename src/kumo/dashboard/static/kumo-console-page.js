// kumo's standalone noVNC page (the URL `openstack console url show --novnc` prints).
import { openVnc, typeText, wsUrlFor } from "./kumo-vnc.js";

const wsUrl = wsUrlFor(location.href);
history.replaceState(null, "", location.pathname);  // the spent token leaves the address bar
const rfb = openVnc(document.getElementById("screen"), wsUrl, document.getElementById("status"));
document.getElementById("cad").addEventListener("click", () => rfb.sendCtrlAltDel());
document.getElementById("type").addEventListener("click", () => {
    const text = document.getElementById("text");
    typeText(rfb, text.value);
    text.value = "";
    rfb.focus();
});
window.kumoRfb = rfb;
