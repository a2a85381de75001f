"""``parcelguard shadow`` and ``parcelguard promote``: ask the running daemon (its health endpoint,
with the API token) how its shadow candidate compares, and switch to it (docs/shadow.md)."""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.request

from parcelguard.cli.common import add_config_args
from parcelguard.device import jsonio
from parcelguard.device.config.base import load_config
from parcelguard.device.errors import ParcelguardError


def _endpoint(args: argparse.Namespace) -> tuple[str, str | None]:
    from parcelguard.device.config.device import DeviceConfig
    from parcelguard.device.live.health import api_token

    cfg = load_config(DeviceConfig, args.config, list(args.overrides))
    token = api_token(cfg.health)
    if args.url:
        return args.url.rstrip("/"), token
    host = cfg.health.host
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{cfg.health.port}", token


def post_action(url: str, action: str, token: str | None, timeout_s: float) -> dict:
    """POST ``url/action`` with the bearer token; the daemon's refusal is one sentence."""
    if not token:
        raise ParcelguardError(
            "no API token: set health.token in the config or PARCELGUARD_API_TOKEN"
        )
    req = urllib.request.Request(f"{url}/{action}", data=b"", method="POST")
    req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as r:
            return json.loads(r.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        body = exc.read().decode("utf-8", "replace")
        try:
            why = json.loads(body)["error"]
        except (ValueError, KeyError, TypeError):
            why = body.strip() or exc.reason
        raise ParcelguardError(f"the daemon refused {action} (HTTP {exc.code}): {why}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ParcelguardError(
            f"no daemon answers at {url} ({reason}); is parcelguard run running with "
            "health.enabled?"
        ) from None


def cmd_shadow(args: argparse.Namespace) -> int:
    url, token = _endpoint(args)
    print(jsonio.dumps(post_action(url, "shadow", token, args.timeout), indent=2))
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    url, token = _endpoint(args)
    print(jsonio.dumps(post_action(url, "promote", token, args.timeout), indent=2))
    return 0


def register(sub) -> None:
    for name, fn, help_ in (
        ("shadow", cmd_shadow, "the running daemon's shadow candidate vs the live model (A/B)"),
        (
            "promote",
            cmd_promote,
            "switch the running daemon to its shadow candidate if it meets the budget",
        ),
    ):
        s = sub.add_parser(name, help=help_)
        s.add_argument("--url", help="daemon endpoint (default: from health.host/port)")
        s.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the answer")
        add_config_args(s)
        s.set_defaults(func=fn)
