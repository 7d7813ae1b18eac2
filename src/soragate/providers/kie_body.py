"""Kie's createTask bodies: a model profile's ``input``, or Kie's Sora 2 shape without one."""

from __future__ import annotations

import copy
from typing import Any

from soragate.core.account_options import KieOptions
from soragate.core.accounts import ProviderAccount
from soragate.core.task import Task, TaskKind
from soragate.profiles.images import image_fields
from soragate.profiles.model import Profile
from soragate.profiles.snap import SnapRefused, merge_fields, snap
from soragate.providers.base import TaskInputs, refused


def build_body(task: Task, inputs: TaskInputs, account: ProviderAccount) -> dict[str, Any]:
    """The createTask body for ``task``: ``{"model", "input", "callBackUrl"?}``.

    With a model profile (``inputs.profile``) the input is the prompt, the snapped fields
    (duration, shape, resolution and required extras, already in the model's names and types)
    and the reference-image links in the profile's field. Without one it is Kie's Sora 2
    shape, as named by the account's model mapping and options."""
    if task.kind.is_image:
        raise refused("The Kie provider generates videos only.")
    if task.kind in (TaskKind.REMIX, TaskKind.EDIT, TaskKind.EXTEND, TaskKind.CHARACTER):
        raise refused(f"Kie's jobs API has no {task.kind.value.replace('_', ' ')} for Sora-style tasks.")
    if inputs.reference_images and not inputs.reference_urls:
        raise refused(
            "Kie takes reference images only as URLs, and soragate has no public address to serve "
            "them from: set SORAGATE_PUBLIC_URL."
        )
    if inputs.profile is None:
        model, data = _sora_input(task, inputs, account)
    else:
        model, data = inputs.profile.model, _profile_input(task, inputs, inputs.profile)
    body: dict[str, Any] = {"model": model}
    callback = account.options_as(KieOptions).callback_url
    if callback:
        body["callBackUrl"] = callback
    body["input"] = data
    return body


def _profile_input(task: Task, inputs: TaskInputs, profile: Profile) -> dict[str, Any]:
    p = task.params
    if task.kind is TaskKind.STORYBOARD or p.shots:
        raise refused(f"The model profile {profile.id} has no storyboard (multi-shot) input.")
    if inputs.reference_urls and profile.images is None:
        raise refused(f"{profile.id} ({profile.model}) takes no reference image; route image tasks elsewhere.")
    snapped = inputs.snapped
    if snapped is None:
        # The worker snaps under the route's policy; a caller without a route gets "nearest".
        try:
            snapped = snap(
                profile,
                seconds=p.seconds,
                width=p.width,
                height=p.height,
                hd=p.hd,
                references=len(inputs.reference_urls),
            )
        except SnapRefused as exc:
            raise refused(str(exc)) from None
    data: dict[str, Any] = {"prompt": p.prompt}
    merge_fields(data, copy.deepcopy(snapped.fields))
    images = image_fields(
        profile.images, urls=inputs.reference_urls, data=inputs.reference_images, mimes=inputs.reference_mimes
    )
    merge_fields(data, images)
    return data


def _sora_input(task: Task, inputs: TaskInputs, account: ProviderAccount) -> tuple[str, dict[str, Any]]:
    p = task.params
    with_images = bool(inputs.reference_urls)
    model = sora_model(account, task, with_images=with_images)
    storyboard = task.kind is TaskKind.STORYBOARD or bool(p.shots)
    data: dict[str, Any] = {} if storyboard else {"prompt": p.prompt}
    if storyboard:
        data["shots"] = [{"Scene": s.prompt, "duration": s.seconds} for s in p.shots] or [
            {"Scene": p.prompt, "duration": p.seconds or 10}
        ]
    if with_images:
        data["image_urls"] = list(inputs.reference_urls)
    data["aspect_ratio"] = p.orientation
    if p.seconds:
        data["n_frames"] = str(sora_duration(account, p.seconds))
    data["remove_watermark"] = bool(p.extra.get("remove_watermark", True))
    if "pro" in model:
        data["size"] = "high" if p.hd else "standard"
    data.update(account.options_as(KieOptions).extra_input)
    return model, data


def sora_duration(account: ProviderAccount, seconds: float) -> int:
    """The length to ask for: as is, or snapped up to the account's ``durations`` option
    (Kie's Sora 2 takes 10/15/25 only). The worker bills what the file really lasts."""
    allowed = sorted(account.options_as(KieOptions).durations)
    if not allowed:
        return round(seconds)
    return next((d for d in allowed if d >= seconds), allowed[-1])


def sora_model(account: ProviderAccount, task: Task, *, with_images: bool) -> str:
    """The account's own mapping when it names one; otherwise Kie's Sora 2 names."""
    p = task.params
    models = account.models
    for name in (p.model, p.base_model, "*"):
        if models.get(name):
            return models[name]
    pro = "pro" in p.base_model or "pro" in p.model
    if task.kind is TaskKind.STORYBOARD or p.shots:
        return "sora-2-pro-storyboard"
    mode = "image-to-video" if with_images else "text-to-video"
    return f"sora-2-pro-{mode}" if pro else f"sora-2-{mode}"
