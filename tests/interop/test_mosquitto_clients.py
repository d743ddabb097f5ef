"""Scenarios with the Mosquitto command-line clients (Debian package mosquitto-clients): many users' first contact
with a broker."""

import shutil
import subprocess
import time

import pytest

pytestmark = pytest.mark.skipif(shutil.which("mosquitto_pub") is None, reason="mosquitto-clients not installed")


def sub(broker, *args, count=1):
    return subprocess.Popen(
        ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "-C", str(count), "-W", "5", "-v", *args],
        stdout=subprocess.PIPE,
        text=True,
    )


def pub(broker, *args):
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), *args], check=True, timeout=10)


@pytest.mark.parametrize("version", ["mqttv311", "mqttv5"])
def test_pub_sub_each_version(broker, version):
    s = sub(broker, "-V", version, "-t", "cli/#", "-q", "1")
    time.sleep(0.5)
    pub(broker, "-V", version, "-t", "cli/x", "-m", "hello", "-q", "1")
    out, _ = s.communicate(timeout=10)
    assert out.strip() == "cli/x hello"


def test_v5_publisher_to_v311_subscriber(broker):
    s = sub(broker, "-V", "mqttv311", "-t", "mix/+", "-q", "2")
    time.sleep(0.5)
    pub(broker, "-V", "mqttv5", "-t", "mix/a", "-m", "across", "-q", "2", "-D", "publish", "user-property", "k", "v")
    out, _ = s.communicate(timeout=10)
    assert out.strip() == "mix/a across"


def test_retained_with_cli(broker):
    pub(broker, "-t", "cli/retained", "-m", "kept", "-r", "-q", "1")
    s = sub(broker, "-t", "cli/retained")
    out, _ = s.communicate(timeout=10)
    assert out.strip() == "cli/retained kept"


def test_user_property_reaches_v5_subscriber(broker):
    s = sub(broker, "-V", "mqttv5", "-t", "up/t", "-F", "%t %p %P")
    time.sleep(0.5)
    pub(broker, "-V", "mqttv5", "-t", "up/t", "-m", "body", "-D", "publish", "user-property", "key", "value")
    out, _ = s.communicate(timeout=10)
    assert out.strip() == "up/t body key:value"
