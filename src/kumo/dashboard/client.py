"""The dashboard's way into kumo: its public HTTP APIs, as any client uses them.

Requests go through the same ASGI app `kumo up` serves (routing, token checks,
error shapes) without a network hop; `transport` can be any httpx transport, so
the dashboard could equally run apart from the API it drives.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx

COMPUTE_VERSION = "compute 2.96"


class ApiError(Exception):
    """An API answered with an error; `message` is the API's own words."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_message(response: httpx.Response) -> str:
    """The message out of Keystone's, Glance's, Nova's or Neutron's error body."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason_phrase
    if isinstance(body, dict):
        for value in body.values():
            if isinstance(value, dict) and isinstance(value.get("message"), str):
                return str(value["message"])
        if isinstance(body.get("message"), str):
            return str(body["message"])
    return response.reason_phrase


class Cloud:
    """One caller's view of kumo's APIs (their Keystone token, if any)."""

    def __init__(self, transport: httpx.AsyncBaseTransport, token: str | None = None) -> None:
        self.transport = transport
        self.token = token

    def _client(self, timeout: float | None = 60) -> httpx.AsyncClient:
        headers = {"X-Auth-Token": self.token} if self.token else {}
        headers["OpenStack-API-Version"] = COMPUTE_VERSION
        return httpx.AsyncClient(transport=self.transport, base_url="http://kumo.internal",
                                 headers=headers, timeout=timeout)

    async def request(self, method: str, path: str, *, json: Any = None,
                      headers: dict[str, str] | None = None,
                      content: AsyncIterator[bytes] | bytes | None = None,
                      timeout: float | None = 60) -> httpx.Response:
        async with self._client(timeout) as client:
            response = await client.request(method, path, json=json, headers=headers,
                                            content=content)
        if response.status_code >= 400:
            raise ApiError(response.status_code, error_message(response))
        return response

    async def get(self, path: str, **params: str) -> Any:
        async with self._client() as client:
            response = await client.get(path, params=params or None)
        if response.status_code >= 400:
            raise ApiError(response.status_code, error_message(response))
        return response.json()

    async def post(self, path: str, body: Any) -> Any:
        response = await self.request("POST", path, json=body)
        return response.json() if response.content else None

    async def delete(self, path: str) -> None:
        await self.request("DELETE", path)

    async def download(self, path: str) -> AsyncIterator[bytes]:
        """Stream a response body (image data) without holding it in memory."""
        async with self._client(timeout=None) as client, client.stream("GET", path) as response:
            if response.status_code >= 400:
                await response.aread()
                raise ApiError(response.status_code, error_message(response))
            async for chunk in response.aiter_bytes():
                yield chunk
