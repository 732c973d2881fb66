"""The page's only style and script, inline, and the Content-Security-Policy that allows
exactly these two blocks (by their SHA-256) and nothing else: no other script, style, font,
frame or image source, so nothing can load from elsewhere even if a value slipped through."""

from __future__ import annotations

import base64
import hashlib

STYLE = """
:root{color-scheme:light dark;--bg:#fff;--fg:#1b1f24;--mute:#5b6470;--line:#d5dae0;--code:#f2f4f7;
--ok:#17803d;--warn:#9a6700;--bad:#c62828;--info:#2f5fb3}
@media (prefers-color-scheme:dark){:root{--bg:#111418;--fg:#e4e7eb;--mute:#9aa4b0;--line:#323a44;
--code:#1c2229;--ok:#4cc76f;--warn:#e0b040;--bad:#ff6b6b;--info:#7aa7ff}}
body{margin:0 auto;max-width:72rem;padding:0 1rem 2rem;background:var(--bg);color:var(--fg);
font:15px/1.45 system-ui,sans-serif}
h1{font-size:1.4rem;margin:.8rem 0 .2rem}h2{font-size:1.15rem;margin:1.6rem 0 .4rem;
border-bottom:1px solid var(--line)}h3{font-size:1rem;margin:.8rem 0 .3rem;display:inline}
nav a{margin-right:.8rem}a{color:var(--info)}p{margin:.4rem 0}
.scroll{overflow-x:auto}table{border-collapse:collapse;width:100%;margin:.3rem 0 .8rem}
th,td{text-align:left;vertical-align:top;padding:.25rem .5rem;border-bottom:1px solid var(--line)}
thead th{color:var(--mute);font-weight:600;font-size:.85rem}
code{background:var(--code);padding:0 .2rem;border-radius:3px;font-size:.85rem;
overflow-wrap:break-word}
pre.fix{margin:.2rem 0;padding:.3rem;white-space:pre-wrap;overflow-wrap:anywhere;user-select:all;
min-width:min(22rem,75vw);
background:var(--code);font-size:.85rem;
border-left:3px solid var(--info)}
.t{font-weight:700}.ok{color:var(--ok)}.warn{color:var(--warn)}.bad{color:var(--bad)}
.off,.none,.n,time{color:var(--mute)}
.h .p,.h .f{stroke-width:3}.h .p{stroke:var(--ok)}.h .f{stroke:var(--bad)}
details{margin:.3rem 0}summary{cursor:pointer}
@media (max-width:40rem){body{font-size:14px;padding:0 .5rem}th,td{padding:.2rem .3rem}}
"""

# Refresh without losing the reader's place: skipped while the tab is hidden or text is
# selected (someone copying a record), folds kept as the reader left them. A failed refresh
# says so (the note is empty in the served page, so text browsers never show it).
SCRIPT = """
function note(t){document.getElementById("stale").textContent=t}
setInterval(function(){if(document.hidden||String(getSelection()))return;
fetch(location.href).then(function(r){if(!r.ok)throw r.status;return r.text()}).then(function(t){
var d=new DOMParser().parseFromString(t,"text/html");document.querySelectorAll("details[id]")
.forEach(function(e){var n=d.getElementById(e.id);if(n)n.open=e.open});
document.querySelector("main").replaceWith(d.querySelector("main"));document.title=d.title;
note("")}).catch(function(){note("Refreshing failed: this page may be out of date.")})
},1000*(+document.body.dataset.refresh||30));
"""


def _sha256(text: str) -> str:
    digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
    return f"'sha256-{digest}'"


CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        f"style-src {_sha256(STYLE)}",
        f"script-src {_sha256(SCRIPT)}",
        "connect-src 'self'",  # the refresh fetches this page
        "img-src data:",  # the empty favicon: no request for /favicon.ico
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)

HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
