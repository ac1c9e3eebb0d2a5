"""The server's SSLContext, built from --ssl-* options.

Defaults are the stdlib's secure ones for a server (`ssl.create_default_context`
with `Purpose.CLIENT_AUTH`: no SSLv3, no compression, forward-secret ciphers)
with TLS 1.2 as the oldest version. Every worker builds its own context from
the files on disk, so a reload (HUP) picks up renewed certificates; the
supervisor builds one first, only to fail early and clearly on a bad file.
"""

from __future__ import annotations

import ssl

from steadyloop.config import Config, ConfigError, TLSOptions

_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def alpn_protocols(config: Config) -> list[str]:
    """What the server offers in ALPN (RFC 7301), most preferred first."""
    if config.http == "1":
        return ["http/1.1"]
    if config.http == "2":
        return ["h2"]
    return ["h2", "http/1.1"]


def build_context(config: Config) -> ssl.SSLContext | None:
    """The context for the listening sockets, or None without --ssl-certfile.

    Raises ConfigError with one line (which file, what is wrong) when the certificate,
    key, password, CA bundle or cipher list cannot be used."""
    tls: TLSOptions = config.tls
    if tls.certfile is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = _VERSIONS[tls.version]
    try:
        context.load_cert_chain(tls.certfile, tls.keyfile, tls.keyfile_password)
    except ssl.SSLError as exc:
        raise ConfigError(
            f"--ssl-certfile {tls.certfile} / --ssl-keyfile {tls.keyfile}: cannot load the certificate "
            f"and key ({_reason(exc)}; a wrong --ssl-keyfile-password or a key that does not match "
            "the certificate reads like this)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the certificate or key: {exc}") from None
    if tls.cert_reqs:
        context.verify_mode = ssl.VerifyMode(tls.cert_reqs)
        try:
            if tls.ca_certs is not None:
                context.load_verify_locations(tls.ca_certs)
            else:
                context.load_default_certs(ssl.Purpose.CLIENT_AUTH)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"--ssl-ca-certs {tls.ca_certs}: {_reason(exc)}") from None
    if tls.ciphers is not None:
        try:
            context.set_ciphers(tls.ciphers)
        except ssl.SSLError:
            raise ConfigError(f"--ssl-ciphers {tls.ciphers!r}: no cipher matches this list") from None
    context.set_alpn_protocols(alpn_protocols(config))
    return context


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).lower().replace("_", " ")
    return str(exc)
