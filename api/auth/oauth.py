"""OAuth 2 login with GitHub, GitLab and Bitbucket Cloud: authorization code + PKCE (S256) + state.

The flow's secrets (state and PKCE verifier) stay with the server's key: they travel in a cookie
sealed with AES-GCM under `COMET_SECRET_KEY` (bound to the provider, valid 10 minutes, HttpOnly,
SameSite=Lax, scoped to the provider's OAuth path). The browser that started the flow is the
only one that can finish it (login CSRF is impossible) and nothing is left in the database to
clean up. The callback must present the same `state` as the sealed one; the verifier goes to
the provider's token endpoint, which refuses a code issued for another challenge.

Then the provider's user and its e-mail addresses are fetched, each marked verified or not as the
provider says (GitHub `/user/emails` `verified`, GitLab `confirmed_at`, Bitbucket
`is_confirmed`). Only verified addresses link to or create a Comet user.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlencode

import httpx
import orjson

from config.settings import ApiSettings
from db.crypto import DecryptionError, SecretBox

ProviderName = Literal["github", "gitlab", "bitbucket"]
PROVIDERS: tuple[ProviderName, ...] = ("github", "gitlab", "bitbucket")
LABELS: Mapping[ProviderName, str] = {"github": "GitHub", "gitlab": "GitLab", "bitbucket": "Bitbucket"}
FLOW_TTL_S = 600
HTTP_TIMEOUT_S = 10.0


class OAuthError(Exception):
    """The flow cannot complete; `status` is what the API answers, `detail` says why."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    name: ProviderName
    client_id: str
    client_secret: str
    authorize_url: str
    token_url: str
    api_url: str


def provider_config(settings: ApiSettings, name: str) -> ProviderConfig | None:
    """The provider's configuration, or None when it is unknown or has no client id and secret."""
    if name not in PROVIDERS:
        return None
    client_id = getattr(settings, f"oauth_{name}_client_id")
    client_secret = getattr(settings, f"oauth_{name}_client_secret")
    if not client_id or client_secret is None:
        return None
    return ProviderConfig(
        name=name,
        client_id=client_id,
        client_secret=client_secret.get_secret_value(),
        authorize_url=getattr(settings, f"oauth_{name}_authorize_url"),
        token_url=getattr(settings, f"oauth_{name}_token_url"),
        api_url=getattr(settings, f"oauth_{name}_api_url").rstrip("/"),
    )


def configured(settings: ApiSettings) -> list[ProviderConfig]:
    """The providers this Comet can log in with, in a fixed order."""
    return [c for c in (provider_config(settings, name) for name in PROVIDERS) if c is not None]


# -- PKCE and the sealed flow cookie --------------------------------------------------------------
def pkce_pair() -> tuple[str, str]:
    """A PKCE verifier (43 url-safe characters) and its S256 challenge (RFC 7636)."""
    verifier = secrets.token_urlsafe(32)
    return verifier, s256(verifier)


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


@dataclass(frozen=True, slots=True)
class Flow:
    provider: str
    state: str
    verifier: str
    expires_at: float
    # Who started it: None for API clients (the callback answers JSON), "ui" for the dashboard
    # (the callback redirects to it with a one-time code: `api/auth/handoff.py`).
    return_to: str | None = None


def cookie_name(provider: str) -> str:
    return f"comet_oauth_{provider}"


def new_flow(provider: str, *, now: float | None = None, return_to: str | None = None) -> Flow:
    verifier, _ = pkce_pair()
    return Flow(provider, secrets.token_urlsafe(24), verifier, (now or time.time()) + FLOW_TTL_S, return_to)


def seal(box: SecretBox, flow: Flow) -> str:
    plain = orjson.dumps(
        {"p": flow.provider, "s": flow.state, "v": flow.verifier, "e": flow.expires_at, "r": flow.return_to}
    )
    sealed = box.encrypt(plain, context=b"comet-oauth-flow:" + flow.provider.encode())
    return base64.urlsafe_b64encode(sealed).decode().rstrip("=")


def unseal(box: SecretBox, provider: str, cookie: str | None, *, now: float | None = None) -> Flow:
    """The flow in the cookie; OAuthError(400) when absent, forged, for another provider or stale."""
    if not cookie:
        raise OAuthError(400, "No OAuth flow is in progress in this browser; start again at /authorize.")
    try:
        raw = base64.urlsafe_b64decode(cookie + "=" * (-len(cookie) % 4))
        data = orjson.loads(box.decrypt(raw, context=b"comet-oauth-flow:" + provider.encode()))
        back = data.get("r")
        flow = Flow(
            str(data["p"]),
            str(data["s"]),
            str(data["v"]),
            float(data["e"]),
            None if back is None else str(back),
        )
    except (binascii.Error, ValueError, KeyError, TypeError, AttributeError, DecryptionError):
        raise OAuthError(400, "The OAuth flow cookie is not valid; start again at /authorize.") from None
    if flow.provider != provider or flow.expires_at < (now or time.time()):
        raise OAuthError(400, "The OAuth flow has expired; start again at /authorize.")
    return flow


def check_state(flow: Flow, state: str | None) -> None:
    if not state or not hmac.compare_digest(flow.state.encode(), state.encode()):
        raise OAuthError(
            400, "The OAuth state does not match this browser's flow; start again at /authorize."
        )


# -- the provider's side ------------------------------------------------------------------------
_SCOPES: Mapping[str, str] = {
    "github": "read:user user:email",
    "gitlab": "read_user",
    "bitbucket": "account email",
}


def authorize_url(config: ProviderConfig, flow: Flow, redirect_uri: str) -> str:
    params = {
        "client_id": config.client_id,
        "redirect_uri": redirect_uri,
        "response_type": "code",
        "scope": _SCOPES[config.name],
        "state": flow.state,
        "code_challenge": s256(flow.verifier),
        "code_challenge_method": "S256",
    }
    separator = "&" if "?" in config.authorize_url else "?"
    return config.authorize_url + separator + urlencode(params)


@dataclass(frozen=True, slots=True)
class Email:
    address: str
    verified: bool
    primary: bool = False


@dataclass(frozen=True, slots=True)
class Profile:
    """The provider's account as Comet needs it."""

    provider: str
    user_id: str
    login: str | None
    name: str | None
    emails: list[Email] = field(default_factory=list)

    @property
    def verified_emails(self) -> list[str]:
        """Verified addresses, the primary one first."""
        verified = [e for e in self.emails if e.verified]
        return [e.address for e in sorted(verified, key=lambda e: not e.primary)]


async def exchange_code(
    client: httpx.AsyncClient, config: ProviderConfig, code: str, verifier: str, redirect_uri: str
) -> str:
    """The provider's access token for `code`; OAuthError(401) when the provider refuses it (wrong
    code, wrong PKCE verifier, redirect mismatch)."""
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": verifier,
    }
    headers = {"Accept": "application/json"}
    if config.name == "bitbucket":
        # Bitbucket wants the client's credentials as HTTP Basic.
        pair = f"{config.client_id}:{config.client_secret}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    else:
        data |= {"client_id": config.client_id, "client_secret": config.client_secret}
    try:
        response = await client.post(config.token_url, data=data, headers=headers)
        body = response.json() if response.content else {}
    except (httpx.HTTPError, ValueError) as exc:
        raise OAuthError(
            502, f"{config.name} could not be reached to exchange the code ({type(exc).__name__})."
        ) from None
    # GitHub answers errors with 200 and an `error` field; the others with 400/401.
    token = body.get("access_token") if isinstance(body, dict) else None
    if response.status_code != 200 or not isinstance(token, str) or not token:
        error = body.get("error", f"HTTP {response.status_code}") if isinstance(body, dict) else "no token"
        raise OAuthError(401, f"{config.name} did not accept the authorization code ({error}).")
    return token


async def _get(client: httpx.AsyncClient, config: ProviderConfig, path: str, token: str) -> Any:
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    try:
        response = await client.get(config.api_url + path, headers=headers)
        response.raise_for_status()
        return response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise OAuthError(502, f"{config.name} did not return the account ({type(exc).__name__}).") from None


async def _github(client: httpx.AsyncClient, config: ProviderConfig, token: str) -> Profile:
    user = await _get(client, config, "/user", token)
    rows = await _get(client, config, "/user/emails", token)
    emails = [
        Email(str(r["email"]), r.get("verified") is True, r.get("primary") is True)
        for r in rows
        if isinstance(r, dict) and r.get("email")
    ]
    return Profile("github", str(user["id"]), user.get("login"), user.get("name"), emails)


async def _gitlab(client: httpx.AsyncClient, config: ProviderConfig, token: str) -> Profile:
    user = await _get(client, config, "/user", token)
    emails: list[Email] = []
    if user.get("email"):
        # The primary address is verified when the account is confirmed.
        emails.append(Email(str(user["email"]), bool(user.get("confirmed_at")), primary=True))
    emails.extend(
        Email(str(r["email"]), bool(r.get("confirmed_at")))
        for r in await _get(client, config, "/user/emails", token)
        if isinstance(r, dict) and r.get("email") and r["email"] != user.get("email")
    )
    return Profile("gitlab", str(user["id"]), user.get("username"), user.get("name"), emails)


async def _bitbucket(client: httpx.AsyncClient, config: ProviderConfig, token: str) -> Profile:
    user = await _get(client, config, "/user", token)
    page = await _get(client, config, "/user/emails", token)
    emails = [
        Email(str(r["email"]), r.get("is_confirmed") is True, r.get("is_primary") is True)
        for r in (page.get("values", []) if isinstance(page, dict) else [])
        if isinstance(r, dict) and r.get("email")
    ]
    user_id = str(user.get("uuid") or user.get("account_id"))
    return Profile("bitbucket", user_id, user.get("username"), user.get("display_name"), emails)


_FETCH: Mapping[str, Callable[[httpx.AsyncClient, ProviderConfig, str], Awaitable[Profile]]] = {
    "github": _github,
    "gitlab": _gitlab,
    "bitbucket": _bitbucket,
}


async def fetch_profile(client: httpx.AsyncClient, config: ProviderConfig, token: str) -> Profile:
    try:
        return await _FETCH[config.name](client, config, token)
    except (KeyError, TypeError, AttributeError) as exc:
        raise OAuthError(
            502, f"{config.name} returned an account Comet cannot read ({type(exc).__name__})."
        ) from None
