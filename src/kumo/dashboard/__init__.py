"""The web dashboard at `/`: server-rendered pages (Starlette + Jinja2 + a little htmx)
over kumo's own HTTP APIs, as Horizon is over OpenStack's. It never reads the database."""
