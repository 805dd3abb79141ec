"""`python -m web.demo_setup`: the demo fleet onboarded for the demo account, once."""

from tests.conftest import make_client
from tests.helpers import run_cli, wait_until
from tests.metrics.conftest import PACE


def test_demo_fleet_is_onboarded_once_for_the_key_in_the_key_file(services, env, account_key, tmp_path):
    env = {**env, **PACE}
    mock = services.mock_inverter(env)
    web = services.web(env)
    key_file, marker = tmp_path / "demo-api-key", tmp_path / "demo-fleet-onboarded"
    key_file.write_text(account_key + "\n")
    args = [
        "web.demo_setup",
        "--web",
        web.url,
        "--mock",
        mock.url,
        "--key-file",
        str(key_file),
        "--marker",
        str(marker),
        "--wait",
        "20",
    ]

    first = run_cli(args, env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert marker.exists()
    inverters = make_client(web.url, account_key).get("/inverters").json()["inverters"]
    assert {(i["brand"], i["serial"]) for i in inverters} >= {
        ("sandbox", "SBX-AMS-0001"),
        ("growatt_v4", "GRTSPH0001"),
        ("growatt_v1", "GRTSPH0001"),
        ("solaredge", "3001:7E1A3001-5C"),
        ("enphase", "4002"),
    }
    assert len(inverters) == 20
    assert {i["brand"] for i in inverters} == {
        "sandbox",
        "growatt_v4",
        "growatt_v1",
        "solaredge",
        "enphase",
        "fusionsolar",
    }
    assert {i["serial"] for i in inverters if i["brand"] == "fusionsolar"} == {
        "HWINV0001",
        "HWINV0001B",
        "HWINV0001M",
        "HWINV0002",
        "HWINV0002M",
    }
    assert {i["device_type"] for i in inverters} >= {
        "hybrid",
        "sph",
        "storage",
        "min",
        "inv",
        "storedge",
        "inverter",
        "micros",
        "encharges",
    }
    assert f"{web.url}/ui/" in first.stdout

    # The mixed fleet streams: every inverter of every brand gets a reading from one pollers worker.
    services.worker(env, role="pollers")
    api = make_client(web.url, account_key)

    def silent():
        return [
            (i["brand"], i["serial"])
            for i in inverters
            if not api.get(f"/inverters/{i['id']}/latest").json().get("reading")
        ]

    wait_until(lambda: not silent(), 30, 0.5, "a reading from every demo inverter")

    again = run_cli(args, env)  # the marker says it is done: a removed inverter stays removed
    assert again.returncode == 0 and again.stdout == ""


def test_demo_setup_without_a_key_says_what_to_do(env, tmp_path):
    result = run_cli(
        ["web.demo_setup", "--key-file", str(tmp_path / "missing"), "--marker", str(tmp_path / "m")],
        {**env, "DEMO_API_KEY": ""},
    )
    assert result.returncode == 1
    assert "POST /inverters" in result.stdout
