"""The DKIM work that needs big libraries, as a worker process: ``python -m agent.dkim.worker``.

Three jobs. ``import`` (bring-your-own keys from a mounted folder, agent/dkim/byo.py) and
``generate`` (new keys made here, for the ``file`` executor and Rspamd) need ``cryptography``;
both write private keys straight into DMS's config folder, so a private key never crosses the
pipe, argv or a log; the reply lists what was written, every valid key and each refused
file's located error.
``published`` asks DNS which public keys it serves (agent/dkim/publication.py, dnspython).
These libraries live only in this process, for the moment the job takes.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from pathlib import Path

from agent.errors import LocatedError
from agent.mailstate.model import DkimSpec
from agent.worker import Json, serve

MODULE = "agent.dkim.worker"


def spec_json(spec: DkimSpec) -> Json:
    return {"selector": spec.selector, "keyType": spec.key_type, "keySize": spec.key_size}


def import_request(
    config_dir: Path, backend: str, folder: Path, specs: dict[str, DkimSpec], allow: bool
) -> Json:
    return {
        "job": "import",
        "configDir": str(config_dir),
        "backend": backend,
        "folder": str(folder),
        "allowUndeclared": allow,
        "specs": {d: spec_json(s) for d, s in specs.items()},
    }


def generate_request(config_dir: Path, backend: str, wanted: dict[str, DkimSpec]) -> Json:
    return {
        "job": "generate",
        "configDir": str(config_dir),
        "backend": backend,
        "specs": {d: spec_json(s) for d, s in wanted.items()},
    }


def published_request(
    nameservers: list[str], timeout: float, keys: list[tuple[str, str, str]]
) -> Json:
    """``keys``: (domain, selector, p=) of each public key to look for. The nameservers go
    split into (host, port): the worker then needs no settings model (pydantic) to read them."""
    from agent.dns.config import split_host_port  # the agent has it loaded with its settings

    servers = [split_host_port(text) for text in nameservers]
    return {"job": "published", "nameservers": servers, "timeout": timeout, "keys": keys}


def refused_errors(reply: Json) -> list[LocatedError]:
    return [LocatedError(**e) for e in reply["refused"]]


def handle(req: Json) -> Json:
    if req["job"] == "published":
        return {"published": asyncio.run(_published(req))}
    from agent.dkim.byo import generate_key, install_byo_key, load_byo_keys

    config_dir, backend = Path(req["configDir"]), req["backend"]
    specs = {
        d: DkimSpec(s["selector"], s["keyType"], s["keySize"]) for d, s in req["specs"].items()
    }
    if req["job"] == "import":
        keys, errors = load_byo_keys(Path(req["folder"]), specs, req["allowUndeclared"])
        written = [k for k in keys if install_byo_key(config_dir, backend, k)]
        refused = [asdict(e) for e in errors]
        valid = [[k.domain, k.selector] for k in keys]
    else:  # generate: all keys first (the slow part), then written one right after the other
        written = [generate_key(d, s) for d, s in sorted(specs.items())]
        for key in written:
            install_byo_key(config_dir, backend, key)  # never over a key already there
        refused, valid = [], []
    written_json = [[k.domain, k.selector] for k in written]
    return {"written": written_json, "refused": refused, "valid": valid}


async def _published(req: Json) -> list[bool | None]:
    from agent.dkim.publication import is_published, make_resolver

    resolver = make_resolver([(h, p) for h, p in req["nameservers"]], req["timeout"])
    lookups = (is_published(resolver, d, sel, p) for d, sel, p in req["keys"])
    return list(await asyncio.gather(*lookups))


if __name__ == "__main__":
    serve(handle)
