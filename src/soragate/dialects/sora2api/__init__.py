"""Dialect package (being written)."""

from fastapi import APIRouter, Depends

from soragate.dialects.common import dialect

router = APIRouter(dependencies=[Depends(dialect("sora2api"))])

__all__ = ["router"]
