"""Dialect package (being written)."""

from fastapi import APIRouter, Depends

from soragate.dialects.common import dialect

router = APIRouter(dependencies=[Depends(dialect("chat"))])

__all__ = ["router"]
