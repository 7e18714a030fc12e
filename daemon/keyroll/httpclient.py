"""One HTTP request at a time, the way keyroll sends credentials: with a timeout
that bounds the whole request (not each read: a server answering a byte at a
time is cut off too), TLS checked against the system CAs (plus an optional extra CA file), the proxy
the environment names (as urllib does) except for loopback addresses (as Go's
net/http: a proxy is another host, and a plain-http request hands it every
header and body), and never a redirect followed: a 3xx
comes back as the answer, so credentials go to the URL configured and nowhere
else.  URLs shown to anyone go through `shown` (no user:password@, no query).

Standard library only (urllib, http.client, ssl), imported when a request is
made: health checks and the `http` target share this module.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from keyroll.records import record

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: start-up time)
if TYPE_CHECKING:
    import socket
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


NOT_A_URL = "not a valid URL (a host, and a port from 1 to 65535 if any)"
UNSENDABLE = re.compile(r"[\x00-\x20\x7f]")  # (what http.client refuses in a request line)
UNSENDABLE_URL = "no spaces or control characters in a URL (percent-encode them, e.g. %20)"


def split_http_url(url: str) -> tuple[str, str | None]:
    """An http(s) URL without its user:password@, and the Basic authorization header
    value for them (None without); ValueError, its message the one to show (never the
    URL: it may hold a password), for a URL with no host, a bad port, or a space or
    control character."""
    from urllib.parse import unquote, urlsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        raise ValueError(NOT_A_URL) from None
    if parts.scheme not in ("http", "https") or not host:
        raise ValueError(NOT_A_URL)
    if UNSENDABLE.search(url):
        raise ValueError(UNSENDABLE_URL)  # (http.client would refuse to send it)
    try:
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number in range)
    except ValueError:
        raise ValueError(NOT_A_URL) from None
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


class _Deadline:
    """The end of one request.  urllib's timeout applies to each socket operation,
    so a server that trickles its answer would hold keyroll for ever; at the
    deadline every socket of the request is shut down, which ends a blocked
    handshake, send or read at once (a connect still in progress ends at its own
    timeout, and its socket is shut down as soon as it is made)."""

    def __init__(self, seconds: float) -> None:
        import threading

        self.expired = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shut(sock)

    def cancel(self) -> None:
        """The request is over: forget its sockets (a closed one is never touched)."""
        self._timer.cancel()
        with self._lock:
            self._sockets.clear()


def _shut(sock: socket.socket) -> None:
    import contextlib
    import socket

    if sock.fileno() != -1:  # (closed: -1; never act on a descriptor number that may be reused)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _tracked_connection(http_class: Any, deadline: _Deadline) -> Any:
    """`http_class` (http.client's HTTP(S)Connection) whose plain socket the deadline
    watches from the moment it is connected."""

    class Tracked(http_class):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            create: Callable[..., socket.socket] = getattr(self, "_create_connection")  # noqa: B009  (untyped in typeshed)

            def create_tracked(*args: Any, **kwargs: Any) -> socket.socket:
                sock = create(*args, **kwargs)
                deadline.track(sock)
                return sock

            self._create_connection = create_tracked

    return Tracked


def _tls_context(ca_file: str | None, deadline: _Deadline | None = None) -> ssl.SSLContext:
    import ssl

    context = ssl.create_default_context()
    if deadline is not None:
        watch = deadline.track

        # The TLS socket replaces the plain one before its handshake: watch it too.
        class TrackedSSLSocket(ssl.SSLSocket):
            def do_handshake(self, block: bool = False) -> None:
                watch(self)
                super().do_handshake(block)

        context.sslsocket_class = TrackedSSLSocket
    if ca_file:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise HttpUnreachable(
                f"cannot use the CA file {ca_file}: {getattr(exc, 'strerror', None) or exc}", lasting=True
            ) from None
    return context


def is_loopback(host: str) -> bool:
    """Whether `host` (a URL's host name) is this machine: localhost, 127.0.0.0/8, ::1."""
    import ipaddress

    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _opener(ca_file: str | None, deadline: _Deadline, *, direct: bool) -> urllib.request.OpenerDirector:
    """urllib's opener with the environment's proxies (none if `direct`) and our
    TLS context, minus the redirect handler (a 3xx is returned as an answer), its
    sockets watched by `deadline`."""
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    class HTTPHandler(urllib.request.HTTPHandler):
        def do_open(self, http_class: Any, req: Any, **kwargs: Any) -> Any:
            return super().do_open(_tracked_connection(http_class, deadline), req, **kwargs)

    class HTTPSHandler(urllib.request.HTTPSHandler):
        def do_open(self, http_class: Any, req: Any, **kwargs: Any) -> Any:
            return super().do_open(_tracked_connection(http_class, deadline), req, **kwargs)

    handlers: list[urllib.request.BaseHandler] = [
        NoRedirect(),
        HTTPHandler(),
        HTTPSHandler(context=_tls_context(ca_file, deadline)),
    ]
    if direct:
        handlers.append(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener(*handlers)


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
    and return the answer, whatever its status; HttpUnreachable when there is none
    within `timeout` seconds (for the whole request; an answer whose body is still
    coming at the deadline is returned with the part that came)."""
    import http.client
    import urllib.error
    import urllib.request
    from urllib.parse import urlsplit

    sent = {"User-Agent": USER_AGENT, **(headers or {})}
    try:
        prepared = urllib.request.Request(url, data=body, method=method, headers=sent)
    except ValueError:
        raise HttpUnreachable("not a valid http(s) URL") from None
    deadline = _Deadline(timeout)
    try:
        opener = _opener(ca_file, deadline, direct=is_loopback(urlsplit(url).hostname or ""))
        with opener.open(prepared, timeout=timeout) as response:
            return Answer(response.status, _read(response))
    except urllib.error.HTTPError as exc:
        with exc:
            return Answer(exc.code, _read(exc))
    except (OSError, http.client.HTTPException, ValueError) as exc:
        if deadline.expired:
            raise HttpUnreachable(f"timed out after {timeout:g}s") from None
        raise _unreachable(exc, timeout) from None
    finally:
        deadline.cancel()


def _unreachable(exc: BaseException, timeout: float) -> HttpUnreachable:
    """The one-line HttpUnreachable for an exception of urllib or http.client."""
    import http.client
    import urllib.error

    if isinstance(exc, urllib.error.URLError):
        import ssl

        reason = exc.reason
        if isinstance(reason, ssl.SSLCertVerificationError):
            return HttpUnreachable(f"TLS: {reason.verify_message or reason}", lasting=True)
        return HttpUnreachable(str(getattr(reason, "strerror", None) or reason))
    if isinstance(exc, TimeoutError):
        return HttpUnreachable(f"timed out after {timeout:g}s")
    if isinstance(exc, (OSError, http.client.HTTPException)):
        return HttpUnreachable(getattr(exc, "strerror", None) or str(exc) or type(exc).__name__)
    return HttpUnreachable("not a valid http(s) URL")


def _read(response: Any) -> bytes:
    """The start of a body; empty if it cannot be read (the status is the answer)."""
    try:
        return bytes(response.read(MAX_BODY) or b"")
    except Exception:  # (a body cut off, or one still coming at the deadline, is no reason to fail)
        return b""
