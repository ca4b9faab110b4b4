"""The admin web UI: static HTML, CSS and JavaScript served at /ui by tollgate.api.ui (no build step)."""
