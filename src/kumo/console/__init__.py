"""Consoles: single-use tokens for a server's VNC and serial consoles, and the
websocket relay from a browser (or any websocket client) to QEMU's unix sockets."""
