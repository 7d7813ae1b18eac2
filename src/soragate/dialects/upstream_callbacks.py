"""Callbacks from upstreams (``/callbacks/kie/{account}``, ``/callbacks/relay/{task}``).

An upstream's callback is only a cue to ask it now instead of at the next poll: the
result is always read back from the upstream itself, so a forged callback can at most
cause one extra status request. Kie signs its callbacks when the account has a webhook
HMAC key (the ``callback_signing_key`` option); unsigned or badly signed ones are refused, and
so is every callback to an account without that key. Relays sign nothing: the link a relay
is given (``notify_hook``) names the task and carries soragate's signature of it, and what
the relay posts there is not read.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from soragate.core.account_options import KieFamilyOptions
from soragate.dialects.bodies import read_body
from soragate.dialects.common import GatewayDep
from soragate.errors import SoragateError
from soragate.providers import kie
from soragate.providers.kie_records import callback_task_id

log = logging.getLogger("soragate.callbacks")
router = APIRouter(tags=["upstream callbacks"])


# A Kie callback is a task record of a few KB.
CALLBACK_BODY_LIMIT = 256 * 1024


@router.post("/callbacks/kie/{account}", include_in_schema=False)
async def kie_callback(account: str, request: Request) -> JSONResponse:
    # Nobody signs in here: an unknown account, one that cannot check signatures, a bad
    # signature and a body that names no task (so cannot be signed) all get the same answer,
    # which says nothing of what accounts there are. So the body is read, capped, before the
    # account is looked up (an oversize one is a 413 whatever the name), and it is checked
    # against some key even where there is none to check it with.
    refused = JSONResponse({"code": 401, "msg": "bad signature"}, status_code=401)
    try:
        body = await read_body(request, limit=CALLBACK_BODY_LIMIT)
    except SoragateError as exc:
        return JSONResponse({"code": exc.status_code, "msg": exc.message}, status_code=exc.status_code)
    router_: Any = request.state.router
    await router_.refresh()
    runtime = router_.runtime(account) or next((r for r in router_.all() if r.account.id == account), None)
    # Veo and Runway on Kie call back with the same envelope and signature.
    known = runtime is not None and runtime.account.kind in ("kie", "kie_veo", "kie_runway")
    key = runtime.account.options_as(KieFamilyOptions).callback_signing_key if runtime and known else None
    checked = kie.verify_callback(body, request.headers, key.get_secret_value() if key else secrets.token_hex(32))
    if runtime is None or not known:
        return refused
    if key is None:
        log.warning("a callback to account %s was refused: it has no callback_signing_key", runtime.account.name)
        return refused
    if not checked:
        return refused
    # Signed: only the id is needed (the record itself is read back from Kie).
    try:
        upstream_id = callback_task_id(body)
    except ValueError as exc:  # cannot happen once verified: the signature signs the id
        return JSONResponse({"code": 422, "msg": str(exc)}, status_code=422)
    await request.state.gateway.upstream_changed(account=runtime.account.name, upstream_id=upstream_id)
    return JSONResponse({"code": 200, "msg": "success"})


@router.post("/callbacks/relay/{task_id}", include_in_schema=False)
async def relay_notify(task_id: str, gateway: GatewayDep, sig: str = "") -> JSONResponse:
    if not gateway.signer.verify_notify(task_id, sig):
        return JSONResponse({"code": 401, "msg": "bad signature"}, status_code=401)
    await gateway.task_changed(task_id=task_id)
    return JSONResponse({"code": 200, "msg": "success"})
