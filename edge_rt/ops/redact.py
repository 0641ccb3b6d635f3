"""A camera URL's password must never reach a log line, an error line or a message: `redact_url`.

Here in ops/, below the cameras that need it, rather than beside the wire's keys: camera/ may not import wire/.
"""

from __future__ import annotations

import logging
import re

MASK = "***"
# scheme://USERINFO@: USERINFO runs to the last '@' before the first '/' or whitespace, so a password
# with an unescaped '@', '?', '#' or '!' is still caught while an '@' later in the path is not userinfo.
_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/\s]*)@")
# Credentials passed as query parameters (many IP cameras: ...?user=admin&password=...).
_QUERY_SECRET = re.compile(
    r"(?P<key>[?&;](?:password|passwd|pass|pwd|secret|token|access_token|auth|api_?key|key|signature|sig)=)(?P<value>[^&#\s\"']*)",
    re.IGNORECASE,
)
# GStreamer element properties: rtspsrc user-pw=..., souphttpsrc proxy-pw=..., password=...
_PROPERTY_SECRET = re.compile(
    r"(?P<key>(?<!\S)(?:user-pw|proxy-pw|password|passwd)\s*=\s*)(?P<value>\"[^\"]*\"|'[^']*'|[^\s!]+)",
    re.IGNORECASE,
)


def _mask_userinfo(m: re.Match[str]) -> str:
    user, colon, _password = m.group("userinfo").partition(":")
    if not colon:
        return m.group(0)  # a user name alone is not a secret
    return f"{m.group('scheme')}{user}:{MASK}@"


def _mask_property(m: re.Match[str]) -> str:
    value = m.group("value")
    quote = value[0] if value[:1] in ("'", '"') else ""
    return f"{m.group('key')}{quote}{MASK}{quote}"


def redact_url(uri: str) -> str:
    """`rtsp://user:pass@host/...` -> `rtsp://user:***@host/...`; also every URL inside a GStreamer
    pipeline or a sentence, password-like query parameters and `user-pw=`-style properties.
    Anything else comes back unchanged, so it is safe on any text that may hold a source URI."""
    out = _URL_USERINFO.sub(_mask_userinfo, uri)
    out = _QUERY_SECRET.sub(lambda m: m.group("key") + MASK, out)
    return _PROPERTY_SECRET.sub(_mask_property, out)


class RedactingFilter(logging.Filter):
    """Put on a log handler: every record's text passes through `redact_url` before it is written."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        clean = redact_url(text)
        if clean != text:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact_url(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact_url(record.exc_text)
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Add a RedactingFilter to every handler of `logger` (default: the root logger), once."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
