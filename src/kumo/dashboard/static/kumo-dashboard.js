// The dashboard's few behaviours: upload with progress, consoles, confirmations.
import { openVnc, typeText } from "./kumo-vnc.js";
import { openSerial } from "./kumo-serial.js";

const csrf = document.body.dataset.csrf;

function wsUrl(path) {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}${path}`;
}

async function post(url, body) {
    const response = await fetch(url, { method: "POST", body, credentials: "same-origin",
                                        headers: { "X-CSRF-Token": csrf } });
    if (!response.ok) throw new Error(await response.text());
    return response.json();
}

// -- confirmations and the project switcher --------------------------------------------
document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (event) => {
        if (!confirm(form.dataset.confirm)) event.preventDefault();
    });
});
const switcher = document.getElementById("project-switcher");
if (switcher) switcher.addEventListener("change", () => switcher.form.submit());
document.querySelectorAll("form[data-reload-after]").forEach((form) => {
    form.addEventListener("submit", () => {
        setTimeout(() => location.reload(), Number(form.dataset.reloadAfter));
    });
});

// -- image upload: register, then stream the file with a progress bar ----------------
const uploadForm = document.getElementById("upload-form");
if (uploadForm) {
    uploadForm.addEventListener("submit", async (event) => {
        event.preventDefault();
        const file = document.getElementById("image-file").files[0];
        const fields = new FormData(uploadForm);
        fields.delete("file");
        const bar = document.getElementById("upload-bar");
        const text = document.getElementById("upload-text");
        const result = document.getElementById("upload-result");
        document.getElementById("upload-progress").hidden = false;
        result.textContent = "";
        let image;
        try {
            image = await post("/images", fields);
        } catch (error) {
            text.textContent = `refused: ${error.message}`;
            return;
        }
        const xhr = new XMLHttpRequest();
        xhr.open("PUT", `/images/${image.id}/file`);
        xhr.setRequestHeader("X-CSRF-Token", csrf);
        xhr.setRequestHeader("Content-Type", "application/octet-stream");
        xhr.upload.onprogress = (e) => {
            if (!e.lengthComputable) return;
            bar.value = Math.round((100 * e.loaded) / e.total);
            text.textContent = `${(e.loaded / 1048576).toFixed(1)} of ${(e.total / 1048576).toFixed(1)} MiB`;
        };
        xhr.onload = () => {
            if (xhr.status >= 400) {
                text.textContent = `upload failed: ${xhr.responseText}`;
                return;
            }
            bar.value = 100;
            const answer = JSON.parse(xhr.responseText);
            text.textContent = "uploaded: the image is active";
            const link = document.createElement("a");
            link.href = `/images/${answer.id}`;
            link.id = "uploaded-image";
            link.textContent = `${answer.findings.length} lint finding(s): see the image`;
            result.append(link);
        };
        xhr.onerror = () => { text.textContent = "upload failed: the connection broke"; };
        xhr.send(file);
    });
}

// -- consoles on the server page -------------------------------------------------------
const tabs = document.querySelector(".console-tabs");
if (tabs) {
    const serverId = tabs.dataset.server;
    const status = document.getElementById("console-status");
    let rfb = null;
    let serial = null;
    const close = () => {
        if (rfb) { rfb.disconnect(); rfb = null; }
        if (serial) { serial.socket.close(); serial.term.dispose(); serial = null; }
        document.getElementById("vnc-panel").hidden = true;
        document.getElementById("serial-panel").hidden = true;
    };
    tabs.querySelectorAll("button[data-console]").forEach((button) => {
        button.addEventListener("click", async () => {
            close();
            const kind = button.dataset.console;
            let grant;
            try {
                grant = await post(`/servers/${serverId}/console/${kind}`, new FormData());
            } catch (error) {
                status.textContent = error.message;
                return;
            }
            if (kind === "novnc") {
                document.getElementById("vnc-panel").hidden = false;
                rfb = openVnc(document.getElementById("vnc-screen"), wsUrl(grant.path), status);
                window.kumoRfb = rfb;
            } else {
                document.getElementById("serial-panel").hidden = false;
                serial = openSerial(document.getElementById("serial-term"), wsUrl(grant.path), status);
                window.kumoSerial = serial;
            }
        });
    });
    document.getElementById("vnc-cad").addEventListener("click", () => rfb && rfb.sendCtrlAltDel());
    document.getElementById("vnc-type").addEventListener("click", () => {
        const text = document.getElementById("vnc-text");
        if (rfb) { typeText(rfb, text.value); rfb.focus(); }
        text.value = "";
    });
}
