"""`python -m web.demo_setup`: onboard the mock inverter's demo fleet for the demo account.

For `make run`: started in the background before the processes, it waits until the web process and
the mock inverter answer, asks each brand's device list what the demo credentials can see, and
onboards every device through the public API (POST /inverters) with the demo account's key, exactly
as a user would. It runs once: a marker file records success, so an inverter the user later removes
stays removed. Onboarding is idempotent, so an interrupted run can simply be repeated.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import requests

from models.brands import adapter_class
from models.brands.base import BrandError
from models.net.policy import DestinationPolicy
from models.settings import SettingsError, get_settings

# The demo fleet's credentials, as mock_inverter/README.md documents them.
DEMO_CONNECTIONS = {
    "sandbox": {"api_key": os.environ.get("DEMO_SANDBOX_KEY", "demo-sandbox-key")},
    "growatt_v4": {"token": os.environ.get("DEMO_GROWATT_TOKEN", "demo-growatt-token")},
    # The same Growatt plants through the older OpenAPI v1: one account may hold both connections.
    "growatt_v1": {"token": os.environ.get("DEMO_GROWATT_TOKEN", "demo-growatt-token")},
    "solaredge": {"api_key": os.environ.get("DEMO_SOLAREDGE_KEY", "demo-solaredge-key")},
    "enphase": {
        "client_id": os.environ.get("DEMO_ENPHASE_CLIENT_ID", "demo-enphase-client"),
        "client_secret": os.environ.get("DEMO_ENPHASE_CLIENT_SECRET", "demo-enphase-secret"),
        "api_key": os.environ.get("DEMO_ENPHASE_API_KEY", "demo-enphase-key"),
        "refresh_token": os.environ.get("DEMO_ENPHASE_REFRESH_TOKEN", "demo-enphase-refresh"),
        "plan": "demo",
    },
}
DEMO_CONNECTIONS["fusionsolar"] = {
    "user_name": os.environ.get("DEMO_FUSIONSOLAR_USER", "demo-fusionsolar"),
    "system_code": os.environ.get("DEMO_FUSIONSOLAR_CODE", "demo-fusionsolar-code"),
}
# Brands whose real API sits at a host's root are served by the mock under a prefix of their own.
MOCK_PREFIXES = {"solaredge": "/solaredge", "enphase": "/enphase", "fusionsolar": "/fusionsolar"}


def _say(message: str) -> None:
    print(f"demo-setup: {message}", flush=True)


def _wait_for(url: str, deadline: float, what: str) -> None:
    while True:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not answer at {url}")
        time.sleep(0.5)


def _devices(brand: str, mock_url: str, credentials: dict) -> tuple[list[str], dict]:
    """The serials these credentials see, and the credentials to onboard them with: a brand with OAuth
    (Enphase) rotates its refresh token on the first call, and the one given is then spent."""
    # A brand call like any other: through the destination policy (make run allows 127.0.0.0/8).
    adapter = adapter_class(brand)(mock_url, credentials, DestinationPolicy.from_settings(get_settings()), 10.0)
    try:
        serials = sorted(adapter.list_devices())
        return serials, {name: adapter.credentials[name] for name in credentials}
    finally:
        adapter.close()


def _onboard(api: requests.Session, web_url: str, brand: str, serial: str, connection: dict) -> str:
    """POST /inverters until it is not rate limited; returns a word for the summary."""
    for _ in range(10):
        reply = api.post(
            f"{web_url}/inverters", json={"brand": brand, "serial": serial, "connection": connection}, timeout=30
        )
        if reply.status_code == 503 and "Retry-After" in reply.headers:
            time.sleep(min(10.0, float(reply.headers["Retry-After"])))
            continue
        if reply.status_code in (200, 201):
            return "onboarded" if reply.status_code == 201 else "already there"
        raise RuntimeError(f"POST /inverters {brand} {serial}: HTTP {reply.status_code} {reply.text[:300]}")
    raise RuntimeError(f"POST /inverters {brand} {serial}: still rate limited")


def setup(web_url: str, mock_url: str, key: str, wait_s: float) -> int:
    deadline = time.monotonic() + wait_s
    _wait_for(f"{web_url}/readyz", deadline, "the web process")
    _wait_for(f"{mock_url}/admin/health", deadline, "the mock inverter")
    api = requests.Session()
    api.trust_env = False
    api.headers["Authorization"] = f"Bearer {key}"
    count = 0
    for brand, credentials in DEMO_CONNECTIONS.items():
        base_url = mock_url + MOCK_PREFIXES.get(brand, "")
        try:
            serials, credentials = _devices(brand, base_url, credentials)
        except BrandError as exc:
            raise RuntimeError(f"cannot list {brand} devices at {mock_url}: {exc.message}") from None
        for serial in serials:
            outcome = _onboard(api, web_url, brand, serial, {"base_url": base_url, **credentials})
            _say(f"{brand} {serial}: {outcome}")
            count += 1
    return count


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m web.demo_setup", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--web",
        default=f"http://127.0.0.1:{os.environ.get('PORT', '5000')}",
        help="the web process (default: http://127.0.0.1:$PORT, PORT defaulting to 5000)",
    )
    parser.add_argument(
        "--mock",
        default=f"http://127.0.0.1:{os.environ.get('MOCK_INVERTER_PORT', '5100')}",
        help="the mock inverter (default: http://127.0.0.1:$MOCK_INVERTER_PORT or 5100)",
    )
    parser.add_argument("--key-file", default="var/demo-api-key", help="file holding the demo account's API key")
    parser.add_argument(
        "--marker", default="var/demo-fleet-onboarded", help="written after success; if it exists, nothing is done"
    )
    parser.add_argument("--wait", type=float, default=120.0, help="seconds to wait for web and mock to answer")
    args = parser.parse_args(argv)

    marker = Path(args.marker)
    if marker.exists():
        return 0
    key_path = Path(args.key_file)
    key = os.environ.get("DEMO_API_KEY") or (key_path.read_text().strip() if key_path.is_file() else "")
    if not key:
        _say(f"no demo API key in {key_path} (or DEMO_API_KEY): onboard inverters with POST /inverters yourself")
        return 1
    try:
        count = setup(args.web.rstrip("/"), args.mock.rstrip("/"), key, args.wait)
    except (RuntimeError, SettingsError, requests.RequestException) as exc:
        _say(f"failed: {exc}")
        return 1
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"{count} inverters onboarded at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n")
    _say(f"the demo fleet ({count} inverters) is onboarded for the demo account; open {args.web}/ui/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
