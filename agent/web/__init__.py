"""The status page at ``/``: the status registry rendered as HTML for people.

Rendered on the server from ``StatusRegistry.snapshot()`` (what ``/status`` prints), with the
standard library only; no external assets, a strict Content-Security-Policy, and a few lines of
script that only refresh the page.
"""
