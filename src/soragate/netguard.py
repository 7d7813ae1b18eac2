"""Checks on URLs the server is asked to fetch or call back, and capped downloads.

By default only public addresses are allowed, so a caller cannot make soragate reach
into the network it runs in (SSRF). ``SORAGATE_ALLOW_PRIVATE_URLS=1`` lifts that for
tests and LAN deployments.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re

import httpx

from soragate.errors import InvalidRequest, PayloadTooLarge

# Longer than any real link (presigned ones included); more is someone testing the server.
MAX_URL_CHARS = 8192
_SPACE_OR_CONTROL = re.compile(r"[\x00-\x20\x7f]")


def _invalid(param: str, why: str = "must be an http(s) URL") -> InvalidRequest:
    return InvalidRequest(f"'{param}' {why}.", param=param, code="invalid_url")


def parse_url(url: str, *, param: str) -> httpx.URL:
    """``url`` as the HTTP client will read it, or a 400 before any connection is tried:
    http(s), a host (an IP address, or a name the resolver accepts: no empty label, none
    over 63 characters), a port in 1-65535, no spaces or control characters."""
    if len(url) > MAX_URL_CHARS:
        raise _invalid(param, f"is longer than {MAX_URL_CHARS} characters")
    if _SPACE_OR_CONTROL.search(url):
        raise _invalid(param, "contains spaces or control characters")
    try:
        parsed = httpx.URL(url)
        host = parsed.raw_host.decode("ascii")
    except (httpx.InvalidURL, ValueError):  # idna's errors are UnicodeErrors, so ValueErrors
        raise _invalid(param) from None
    if parsed.scheme not in ("http", "https") or not host:
        raise _invalid(param)
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise _invalid(param, f"has an invalid port ({parsed.port})")
    if not _is_ip(host):
        try:
            host.encode("idna")  # the check the resolver itself makes
        except UnicodeError:
            raise _invalid(param, "has an invalid host name") from None
        if len(host.rstrip(".")) > 253:
            raise _invalid(param, "has a host name longer than 253 characters")
    return parsed


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def check_url(url: str, *, allow_private: bool, param: str) -> None:
    parsed = parse_url(url, param=param)
    if allow_private:
        return
    host = parsed.raw_host.decode("ascii")
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, parsed.port or 443)
    except (OSError, UnicodeError):
        raise InvalidRequest(f"The host in '{param}' cannot be resolved.", param=param, code="invalid_url") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise InvalidRequest(
                f"'{param}' points to a private or loopback address, which this server does not fetch.",
                param=param,
                code="private_url_refused",
            )


async def fetch_capped(client: httpx.AsyncClient, url: str, *, limit: int, allow_private: bool, param: str) -> bytes:
    await check_url(url, allow_private=allow_private, param=param)
    try:
        async with client.stream("GET", url, follow_redirects=False) as response:
            if response.status_code != 200:
                raise InvalidRequest(
                    f"Fetching '{param}' failed with HTTP {response.status_code}.",
                    param=param,
                    code="fetch_failed",
                )
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"'{param}' is larger than {limit} bytes.", param=param)
                chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise InvalidRequest(
            f"Fetching '{param}' failed: {type(exc).__name__}.", param=param, code="fetch_failed"
        ) from None
    return b"".join(chunks)
