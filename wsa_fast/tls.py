"""wss:// served by the gateway itself: the server's TLS context and its reload on SIGHUP."""

from __future__ import annotations

import logging
import ssl

from .config import ConfigError, Settings

__all__ = ["server_context", "reload_certificate"]

log = logging.getLogger("wsa_fast.tls")


def server_context(settings: Settings) -> ssl.SSLContext | None:
    """The context wss:// connections are accepted with, or None for plain ws://.

    A file that is missing or does not hold a matching certificate and key is a ConfigError.
    """
    if settings.tls_cert is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # WebSocket is HTTP/1.1: say so in ALPN, for clients and proxies that ask.
    context.set_alpn_protocols(["http/1.1"])
    _load(context, settings)
    return context


def reload_certificate(context: ssl.SSLContext, settings: Settings) -> bool:
    """Re-read the certificate and key into ``context``: connections accepted from now on present
    the new certificate, open ones keep theirs. On a bad file the old certificate stays (logged)."""
    try:
        # Checked on a scratch context first: a failed load could leave the live one half-changed.
        _load(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), settings)
        _load(context, settings)
    except ConfigError as error:
        log.error("SIGHUP: keeping the current TLS certificate: %s", error)
        return False
    log.info("SIGHUP: reloaded the TLS certificate from %s", settings.tls_cert)
    return True


def _load(context: ssl.SSLContext, settings: Settings) -> None:
    cert, key = settings.tls_cert, settings.tls_key
    assert cert is not None and key is not None  # Settings takes both or neither
    # OpenSSL's error for an unreadable file does not say which one: look first.
    for setting, path in (("tls_cert", cert), ("tls_key", key)):
        try:
            with open(path, "rb"):
                pass
        except OSError as error:
            raise ConfigError(f"{setting}: cannot read {path}: {error.strerror}", setting) from None
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as error:
        # OpenSSL's reason ("KEY_VALUES_MISMATCH", "PEM lib") is the useful part of its message.
        reason = getattr(error, "reason", None) or getattr(error, "strerror", None) or str(error)
        raise ConfigError(
            f"tls_cert, tls_key: cannot use certificate {cert} with key {key}: {reason}", "tls_cert"
        ) from None
