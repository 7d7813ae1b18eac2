"""/api/v1/jobs: createTask and recordInfo, as Kie.ai clients call them (seed 004)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from soragate.dialects.bodies import Link, documented, read_json
from soragate.dialects.common import GatewayDep, KeyDep
from soragate.dialects.kie import translate
from soragate.dialects.kie.schemas import CREATE_BODY, echo_param, parse_create
from soragate.errors import InvalidRequest

router = APIRouter(prefix="/api/v1/jobs", tags=["kie jobs"])

# Room for one image inline as a data URI (a third bigger than the bytes) beside the fields.
_JSON_OVERHEAD = 64 * 1024


NEXT = {"record": Link("/api/v1/jobs/recordInfo", "get", "taskId", "/data/taskId")}


@router.post("/createTask", openapi_extra=documented(CREATE_BODY, links=NEXT))
async def create_task(request: Request, gateway: GatewayDep, key: KeyDep) -> JSONResponse:
    settings = gateway.settings
    body = await read_json(request, limit=settings.max_upload_bytes * 4 // 3 + _JSON_OVERHEAD)
    families = [spec.name for spec in gateway.catalogue.family_models()]
    job = parse_create(body, max_prompt_chars=settings.max_prompt_chars, families=families)
    resolved = translate.resolve(gateway.catalogue, job)
    size = f"{resolved.width}x{resolved.height}"
    gateway.check_credits(key, gateway.catalogue.price(resolved.spec, seconds=resolved.seconds, size=size))
    if job.callback_url:
        await gateway.check_callback_url(job.callback_url, param="callBackUrl")
    references = []
    for index, value in enumerate(job.image_urls):
        upload = await gateway.image_from_reference(owner=key, value=value, param=f"image_urls[{index}]")
        references.append(upload.id)
    kind, params = translate.task_params(job, resolved, references=references, param=echo_param(body))
    task = await gateway.create_task(
        owner=key,
        dialect="kie",
        kind=kind,
        params=params,
        callback_url=job.callback_url,
        callback_param="callBackUrl",
    )
    return translate.present(task)


@router.get("/recordInfo")
async def record_info(gateway: GatewayDep, key: KeyDep, taskId: str | None = None) -> JSONResponse:  # noqa: N803 - Kie's name
    if not taskId:
        raise InvalidRequest("'taskId' is required.", param="taskId")
    task = await gateway.get_task(owner=key, task_id=taskId)
    return translate.success(translate.record(task, link=gateway.signer.url))
