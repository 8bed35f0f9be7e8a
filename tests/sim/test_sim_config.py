import pytest

from ivr.sim.config import SimConfig
from ivr.sim.errors import ScriptError


def make(public: str | None = "https://ivr.example.org/base") -> SimConfig:
    return SimConfig(server_url="http://127.0.0.1:9000", auth_token="t", public_url=public)


def test_public_urls_are_requested_on_the_server() -> None:
    cfg = make()
    assert cfg.public("/twilio/voice") == "https://ivr.example.org/base/twilio/voice"
    assert (
        cfg.to_server("https://ivr.example.org/base/twilio/x?y=1")
        == "http://127.0.0.1:9000/twilio/x?y=1"
    )


@pytest.mark.parametrize(
    "url",
    [
        "https://other.example.org/base/twilio/x",
        "http://ivr.example.org/base/twilio/x",
        "https://ivr.example.org/basement/x",
    ],
)
def test_other_urls_are_left_alone(url: str) -> None:
    assert make().to_server(url) == url


def test_without_public_url_the_server_url_is_signed() -> None:
    cfg = make(public=None)
    assert cfg.public("/twilio/voice") == "http://127.0.0.1:9000/twilio/voice"
    assert cfg.to_server("http://127.0.0.1:9000/a") == "http://127.0.0.1:9000/a"


def test_stream_urls_map_to_server_websockets() -> None:
    cfg = make()
    assert (
        cfg.to_server_websocket("wss://ivr.example.org/base/twilio/media")
        == "ws://127.0.0.1:9000/twilio/media"
    )
    assert cfg.to_server_websocket("wss://elsewhere.example/x") == "wss://elsewhere.example/x"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"server_url": "127.0.0.1:8080"},
        {"server_url": "http://127.0.0.1:8080?x=1"},
        {"auth_token": ""},
        {"voice_path": "twilio/voice"},
        {"request_timeout": 0},
    ],
)
def test_invalid_settings(kwargs: dict[str, object]) -> None:
    settings: dict[str, object] = {"server_url": "http://127.0.0.1:8080", "auth_token": "t"}
    with pytest.raises(ScriptError):
        SimConfig(**{**settings, **kwargs})  # type: ignore[arg-type]
