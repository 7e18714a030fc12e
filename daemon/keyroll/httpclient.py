"""One HTTP request at a time, the way keyroll sends credentials: with a timeout,
TLS checked against the system CAs (plus an optional extra CA file), the proxy
the environment names (as urllib does), and never a redirect followed: a 3xx
comes back as the answer, so credentials go to the URL configured and nowhere
else.  URLs shown to anyone go through `shown` (no user:password@, no query).

Standard library only (urllib, http.client, ssl), imported when a request is
made: health checks and the `http` target share this module.
"""

from __future__ import annotations

from collections.abc import Mapping

from keyroll.records import record
from keyroll.text import shown as shown  # (re-exported: URLs as shown to people)

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: start-up time)
if TYPE_CHECKING:
    import ssl
    import urllib.request
    from typing import Any

USER_AGENT = "keyroll"
MAX_BODY = 64 * 1024  # the most of an answer keyroll reads (it only needs the status)


class HttpUnreachable(Exception):
    """No HTTP answer: connection refused, timeout, TLS failure, bad URL.  The
    message is one line and never holds the URL's credentials.  `lasting`: trying
    again will not help (a certificate that does not verify, an unusable CA file)."""

    def __init__(self, message: str, *, lasting: bool = False) -> None:
        super().__init__(message)
        self.lasting = lasting


@record(frozen=True)
class Answer:
    """An HTTP status and the start of the body (3xx included: never followed)."""

    status: int
    body: bytes = b""


def split_http_url(url: str) -> tuple[str, str | None]:
    """An http(s) URL without its user:password@, and the Basic authorization header
    value for them (None without); ValueError for a URL with no host or a bad port."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("no host")
    parts.port  # noqa: B018  (raises ValueError for a port that is not a number in range)
    if parts.username is None:
        return url, None
    host = parts.netloc.rsplit("@", 1)[1]
    return parts._replace(netloc=host).geturl(), basic_authorization(
        unquote(parts.username), unquote(parts.password or "")
    )


def basic_authorization(user: str, password: str) -> str:
    """The `Authorization` header value for HTTP Basic (UTF-8, as RFC 7617 allows)."""
    import base64

    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _tls_context(ca_file: str | None) -> ssl.SSLContext:
    import ssl

    context = ssl.create_default_context()
    if ca_file:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise HttpUnreachable(
                f"cannot use the CA file {ca_file}: {getattr(exc, 'strerror', None) or exc}", lasting=True
            ) from None
    return context


def _opener(ca_file: str | None) -> urllib.request.OpenerDirector:
    """urllib's opener with the environment's proxies and our TLS context, minus
    the redirect handler: a 3xx is returned as an answer."""
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    return urllib.request.build_opener(NoRedirect(), urllib.request.HTTPSHandler(context=_tls_context(ca_file)))


def request(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 10.0,
    ca_file: str | None = None,
) -> Answer:
    """Send one request to `url` (which holds no credentials: they go in `headers`)
    and return the answer, whatever its status; HttpUnreachable when there is none."""
    import http.client
    import urllib.error
    import urllib.request

    sent = {"User-Agent": USER_AGENT, **(headers or {})}
    try:
        prepared = urllib.request.Request(url, data=body, method=method, headers=sent)
    except ValueError:
        raise HttpUnreachable("not a valid http(s) URL") from None
    try:
        with _opener(ca_file).open(prepared, timeout=timeout) as response:
            return Answer(response.status, response.read(MAX_BODY))
    except urllib.error.HTTPError as exc:
        with exc:
            return Answer(exc.code, _read(exc))
    except urllib.error.URLError as exc:
        import ssl

        reason = exc.reason
        if isinstance(reason, ssl.SSLCertVerificationError):
            raise HttpUnreachable(f"TLS: {reason.verify_message or reason}", lasting=True) from None
        raise HttpUnreachable(str(getattr(reason, "strerror", None) or reason)) from None
    except TimeoutError:
        raise HttpUnreachable(f"timed out after {timeout:g}s") from None
    except (OSError, http.client.HTTPException) as exc:
        raise HttpUnreachable(getattr(exc, "strerror", None) or str(exc) or type(exc).__name__) from None
    except ValueError:
        raise HttpUnreachable("not a valid http(s) URL") from None


def _read(error: Any) -> bytes:
    try:
        return bytes(error.read(MAX_BODY) or b"")
    except Exception:  # (an error page that cannot be read is no reason to fail)
        return b""
