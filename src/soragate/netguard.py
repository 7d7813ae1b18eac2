"""Checks on URLs the server is asked to fetch or call back, and capped downloads.

By default only public addresses are allowed, so a caller cannot make soragate reach
into the network it runs in (SSRF). ``SORAGATE_ALLOW_PRIVATE_URLS=1`` lifts that for
tests and LAN deployments.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

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
        parsed.host  # noqa: B018 - decodes an "xn--" name as the client will when it connects
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


_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # well-known prefix: the last 32 bits are the IPv4 host
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # local-use prefix: the network's own translators


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """A globally reachable address, and so is any IPv4 address an IPv6 one carries (mapped,
    IPv4-compatible, 6to4, Teredo, NAT64): ``::127.0.0.1`` or ``64:ff9b::7f00:1`` reach
    loopback through a translator or a dual stack although ``ipaddress`` calls them global."""
    if not address.is_global:
        return False
    if isinstance(address, ipaddress.IPv4Address):
        return True
    if address in _IPV4_COMPATIBLE or address in _NAT64_LOCAL:
        return False
    embedded = [address.ipv4_mapped, address.sixtofour, *(address.teredo or ())]
    if address in _NAT64:
        embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return all(v4 is None or v4.is_global for v4 in embedded)


@dataclass(frozen=True)
class Pinned:
    """A URL bound to the address that was checked: requests go to that address, naming the
    host in ``Host`` and in TLS (SNI and certificate), so the name is never looked up again.
    Otherwise a name could answer a public address to the check and a private one to the
    connection (DNS rebinding)."""

    url: httpx.URL
    headers: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, Any] = field(default_factory=dict)


async def pin_url(url: str, *, allow_private: bool, param: str) -> Pinned:
    """Check ``url`` (``parse_url``, and a public address unless private ones are allowed) and
    bind it to the address checked."""
    parsed = parse_url(url, param=param)
    if allow_private:
        return Pinned(parsed)
    host = parsed.raw_host.decode("ascii")
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, parsed.port or 443)
    except (OSError, UnicodeError):
        raise InvalidRequest(f"The host in '{param}' cannot be resolved.", param=param, code="invalid_url") from None
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    if not addresses or not all(is_public(address) for address in addresses):
        raise InvalidRequest(
            f"'{param}' points to a private or loopback address, which this server does not fetch.",
            param=param,
            code="private_url_refused",
        )
    if parsed.host == str(addresses[0]):
        return Pinned(parsed)
    extensions: dict[str, Any] = {"sni_hostname": parsed.host} if parsed.scheme == "https" else {}
    return Pinned(parsed.copy_with(host=str(addresses[0])), {"Host": parsed.netloc.decode()}, extensions)


async def check_url(url: str, *, allow_private: bool, param: str) -> None:
    """Check ``url`` before storing it; whoever later calls it pins it again (``pin_url``)."""
    await pin_url(url, allow_private=allow_private, param=param)


async def fetch_capped(
    client: httpx.AsyncClient, url: str, *, limit: int, deadline: float, allow_private: bool, param: str
) -> bytes:
    """``url``'s body, at most ``limit`` bytes, fetched whole within ``deadline`` seconds (a
    server trickling its answer cannot hold the caller's request open)."""
    pinned = await pin_url(url, allow_private=allow_private, param=param)
    try:
        async with asyncio.timeout(deadline):
            return await _fetch(client, pinned, limit=limit, param=param)
    except TimeoutError:
        raise InvalidRequest(
            f"Fetching '{param}' took longer than {deadline:g} s.", param=param, code="fetch_failed"
        ) from None
    except httpx.HTTPError as exc:
        raise InvalidRequest(
            f"Fetching '{param}' failed: {type(exc).__name__}.", param=param, code="fetch_failed"
        ) from None


async def _fetch(client: httpx.AsyncClient, pinned: Pinned, *, limit: int, param: str) -> bytes:
    async with client.stream(
        "GET", pinned.url, headers=pinned.headers, extensions=pinned.extensions, follow_redirects=False
    ) as response:
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
    return b"".join(chunks)


class GuardedTransport(httpx.AsyncBaseTransport):
    """An upstream account's transport: requests to its own origin (its base URL, set by an
    admin) go through as they are; any other origin (a result link or a redirect the upstream
    named) is checked and pinned like a caller's URL, so an upstream cannot point soragate at
    the network it runs in. Shares ``inner`` (and its connections) with every account."""

    def __init__(self, inner: httpx.AsyncBaseTransport, *, base_url: str) -> None:
        self._inner = inner
        self._origin = _origin(httpx.URL(base_url))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if _origin(request.url) != self._origin:
            pinned = await pin_url(str(request.url), allow_private=False, param="result link")
            request.url = pinned.url
            request.headers.update(pinned.headers)
            request.extensions.update(pinned.extensions)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        """The shared transport is closed by whoever made it."""


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    port = url.port or {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host, port
