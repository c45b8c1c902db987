"""A local OAuth 2 provider for the tests: GitHub, GitLab and Bitbucket Cloud shapes on one small
HTTP server on 127.0.0.1 (the real hosts are out of reach here).

Each provider has an authorize endpoint (auto-consents for the account the test "logged in" as and
redirects back with `code` and `state`), a token endpoint that checks the client, the redirect
URI and the PKCE verifier against the challenge exactly like the real ones, and the user and
e-mail endpoints Comet reads, with the real field names:

    github     /github/login/oauth/authorize, /github/login/oauth/access_token (errors: 200 + "error"),
               /github/api/user, /github/api/user/emails [{email, verified, primary, visibility}]
    gitlab     /gitlab/oauth/authorize, /gitlab/oauth/token, /gitlab/api/v4/user {.., confirmed_at},
               /gitlab/api/v4/user/emails [{id, email, confirmed_at}] (secondary addresses only)
    bitbucket  /bitbucket/site/oauth2/authorize, /bitbucket/site/oauth2/access_token (HTTP Basic),
               /bitbucket/2.0/user {uuid, username, display_name, account_id},
               /bitbucket/2.0/user/emails {values: [{email, is_primary, is_confirmed}], ...}
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

CLIENT_ID = "comet-test-client"
CLIENT_SECRET = "comet-test-client-secret"  # noqa: S105 - a test fixture


@dataclass
class Account:
    id: int
    login: str
    name: str
    # (address, verified, primary)
    emails: list[tuple[str, bool, bool]] = field(default_factory=list)


@dataclass
class Grant:
    provider: str
    redirect_uri: str
    challenge: str
    account: Account


@dataclass
class Provider:
    """What the provider knows: who is logged in at each host, codes and tokens it issued."""

    base_url: str = ""
    signed_in: dict[str, Account] = field(default_factory=dict)
    codes: dict[str, Grant] = field(default_factory=dict)
    tokens: dict[str, Account] = field(default_factory=dict)
    token_requests: list[dict[str, str]] = field(default_factory=list)

    def settings(self) -> dict[str, Any]:
        """ApiSettings values pointing Comet at this provider."""
        b = self.base_url
        urls = {
            "github": (
                f"{b}/github/login/oauth/authorize",
                f"{b}/github/login/oauth/access_token",
                f"{b}/github/api",
            ),
            "gitlab": (f"{b}/gitlab/oauth/authorize", f"{b}/gitlab/oauth/token", f"{b}/gitlab/api/v4"),
            "bitbucket": (
                f"{b}/bitbucket/site/oauth2/authorize",
                f"{b}/bitbucket/site/oauth2/access_token",
                f"{b}/bitbucket/2.0",
            ),
        }
        values: dict[str, Any] = {}
        for name, (authorize, token, api) in urls.items():
            values |= {
                f"oauth_{name}_client_id": CLIENT_ID,
                f"oauth_{name}_client_secret": CLIENT_SECRET,
                f"oauth_{name}_authorize_url": authorize,
                f"oauth_{name}_token_url": token,
                f"oauth_{name}_api_url": api,
            }
        return values

    # -- endpoints ------------------------------------------------------------------------------
    def authorize(self, provider: str) -> Any:
        async def endpoint(request: Request) -> Response:
            q = request.query_params
            if q.get("client_id") != CLIENT_ID or q.get("code_challenge_method") != "S256":
                return JSONResponse({"error": "invalid_request"}, status_code=400)
            account = self.signed_in[provider]
            code = secrets.token_urlsafe(16)
            self.codes[code] = Grant(provider, q["redirect_uri"], q["code_challenge"], account)
            back = q["redirect_uri"] + "?" + urlencode({"code": code, "state": q["state"]})
            return RedirectResponse(back, status_code=302)

        return endpoint

    def token(self, provider: str) -> Any:
        async def endpoint(request: Request) -> Response:
            # Parsed by hand: Starlette's form parser needs python-multipart, which Comet does not use.
            form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
            self.token_requests.append({k: v for k, v in form.items() if k != "client_secret"})
            client_id, client_secret = form.get("client_id"), form.get("client_secret")
            if provider == "bitbucket":
                basic = request.headers.get("authorization", "").removeprefix("Basic ")
                client_id, _, client_secret = base64.b64decode(basic or "Og==").decode().partition(":")
            if (client_id, client_secret) != (CLIENT_ID, CLIENT_SECRET):
                return self._error(provider, "invalid_client")
            if provider != "github" and form.get("grant_type") != "authorization_code":
                return self._error(provider, "unsupported_grant_type")
            grant = self.codes.pop(form.get("code", ""), None)  # single use
            if grant is None or grant.provider != provider or grant.redirect_uri != form.get("redirect_uri"):
                return self._error(provider, "invalid_grant")
            verifier = form.get("code_verifier", "")
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
            if digest != grant.challenge:
                return self._error(provider, "invalid_grant")
            token = secrets.token_urlsafe(20)
            self.tokens[token] = grant.account
            return JSONResponse({"access_token": token, "token_type": "bearer", "scope": "read"})

        return endpoint

    @staticmethod
    def _error(provider: str, error: str) -> Response:
        # GitHub answers token errors with 200; GitLab and Bitbucket with 400/401.
        status = 200 if provider == "github" else (401 if error == "invalid_client" else 400)
        return JSONResponse(
            {"error": error, "error_description": error.replace("_", " ")}, status_code=status
        )

    def _account(self, request: Request) -> Account | None:
        return self.tokens.get(request.headers.get("authorization", "").removeprefix("Bearer "))

    def user(self, provider: str) -> Any:
        async def endpoint(request: Request) -> Response:
            a = self._account(request)
            if a is None:
                return JSONResponse({"message": "Bad credentials"}, status_code=401)
            primary = next((e for e in a.emails if e[2]), None)
            if provider == "github":
                return JSONResponse({"id": a.id, "login": a.login, "name": a.name, "email": None})
            if provider == "gitlab":
                return JSONResponse(
                    {
                        "id": a.id,
                        "username": a.login,
                        "name": a.name,
                        "email": primary[0] if primary else None,
                        "confirmed_at": "2024-01-01T00:00:00Z" if primary and primary[1] else None,
                    }
                )
            return JSONResponse(
                {
                    "uuid": f"{{{a.id:08d}-0000-4000-8000-000000000000}}",
                    "username": a.login,
                    "display_name": a.name,
                    "account_id": str(a.id),
                }
            )

        return endpoint

    def emails(self, provider: str) -> Any:
        async def endpoint(request: Request) -> Response:
            a = self._account(request)
            if a is None:
                return JSONResponse({"message": "Bad credentials"}, status_code=401)
            if provider == "github":
                rows = [{"email": e, "verified": v, "primary": p, "visibility": None} for e, v, p in a.emails]
                return JSONResponse(rows)
            if provider == "gitlab":
                secondary = [(e, v) for e, v, p in a.emails if not p]
                return JSONResponse(
                    [
                        {"id": i, "email": e, "confirmed_at": "2024-01-01T00:00:00Z" if v else None}
                        for i, (e, v) in enumerate(secondary)
                    ]
                )
            values = [
                {"email": e, "is_primary": p, "is_confirmed": v, "type": "email"} for e, v, p in a.emails
            ]
            return JSONResponse({"values": values, "pagelen": 10, "page": 1, "size": len(values)})

        return endpoint

    def app(self) -> Starlette:
        paths = {
            "github": (
                "/github/login/oauth/authorize",
                "/github/login/oauth/access_token",
                "/github/api/user",
            ),
            "gitlab": ("/gitlab/oauth/authorize", "/gitlab/oauth/token", "/gitlab/api/v4/user"),
            "bitbucket": (
                "/bitbucket/site/oauth2/authorize",
                "/bitbucket/site/oauth2/access_token",
                "/bitbucket/2.0/user",
            ),
        }
        routes = []
        for name, (authorize, token, user) in paths.items():
            routes += [
                Route(authorize, self.authorize(name), methods=["GET"]),
                Route(token, self.token(name), methods=["POST"]),
                Route(user, self.user(name), methods=["GET"]),
                Route(user + "/emails", self.emails(name), methods=["GET"]),
            ]
        return Starlette(routes=routes)


@contextlib.asynccontextmanager
async def running_provider() -> AsyncIterator[Provider]:
    """The provider served on 127.0.0.1 (a free port) for the duration of the block."""
    provider = Provider()
    config = uvicorn.Config(
        provider.app(), host="127.0.0.1", port=0, lifespan="off", ws="none", http="h11", log_level="warning"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.02)
        assert server.started, "the local OAuth provider did not start"
        port = server.servers[0].sockets[0].getsockname()[1]
        provider.base_url = f"http://127.0.0.1:{port}"
        yield provider
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
