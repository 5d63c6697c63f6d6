"""``mmre serve``: the JSON API (FastAPI's test client) and the page in a real headless browser."""

from __future__ import annotations

import base64
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.cli.test_predict import SAMPLE, _val

pytest.importorskip("fastapi", reason="mmre serve needs the serve extra: pip install 'mmre[serve]'")


@pytest.fixture(scope="module")
def app(trained):
    from mmre_cli.serve import create_app

    return create_app(trained["model"], samples=SAMPLE / "img_org")


@pytest.fixture(scope="module")
def client(app):
    from fastapi.testclient import TestClient

    return TestClient(app)


def _line(i: int) -> dict:
    v = _val(i)
    return {"text": v["text"], "head": v["head"], "tail": v["tail"], "caption": v["caption"],
            "image": Path(v["image"]).name}


def test_predict_answers_the_batch_fields_and_agrees_with_the_cli(client, trained):
    from stages.predict import Query, Predictor

    v = _val(1)
    r = client.post("/predict", json=_line(1))
    assert r.status_code == 200, r.text
    (p,) = r.json()["predictions"]
    assert {"head", "tail", "relation", "probability", "top3", "text", "image"} <= set(p)
    expected = Predictor(trained["model"]).predict([Query(text=v["text"], image=Path(v["image"]), head=v["head"],
                                                          tail=v["tail"], caption=v["caption"])])[0]
    assert p["relation"] == expected.relation and abs(p["probability"] - expected.probability) < 1e-5
    assert r.json()["explanation"] is None


def test_a_list_an_upload_and_the_explanation(client):
    data = base64.b64encode((SAMPLE / "img_org" / "val" / "sample_val_002.png").read_bytes()).decode()
    lines = [_line(2), {**_line(3), "image": None, "image_b64": data}]
    r = client.post("/predict?explain=1", json=lines)
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["predictions"]) == 2
    png = base64.b64decode(body["explanation"]["png"].split(",", 1)[1])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("payload, status, message", [
    ({"text": ""}, 400, "'text' is missing or empty"),
    ({"text": "x" * 3000}, 413, "at most 2000"),
    ([{"text": "a b"}] * 40, 413, "at most 32 per request"),
    ({"text": "Ann met Bob", "head": "Ann", "tail": "Zed"}, 400, "is not in the text"),
    ({"text": "Ann met Bob", "image": "../../etc/passwd"}, 400, "unknown sample image"),
    ({"text": "Ann met Bob", "head": "Ann", "tail": "Bob", "image_b64": base64.b64encode(b"not an image").decode()},
     400, "not an image"),
    ({"text": "Ann met Bob", "image_b64": "%%%"}, 400, "not base64"),
    ({"text": "Ann met Bob", "colour": "red"}, 400, "unknown field(s) colour"),
    ("just a string", 400, "one JSON object or a list"),
])
def test_bad_requests_get_a_clear_4xx_and_the_server_lives_on(client, payload, status, message):
    r = client.post("/predict", json=payload)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]
    assert client.get("/health").json()["ok"] is True


def test_not_json_and_an_oversized_body(client):
    r = client.post("/predict", content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not JSON" in r.json()["error"]
    from mmre_cli.serve import LIMITS

    r = client.post("/predict", content=b"x" * (LIMITS["body_bytes"] + 1))
    assert r.status_code == 413


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(app):
    import uvicorn

    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}/"
    srv.should_exit = True
    thread.join(timeout=10)


def test_the_page_in_a_browser_predicts_and_shows_a_bad_upload(server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from tests.browser import browser

    v = _val(0)
    with browser(offline=True) as d:
        d.get(server)
        assert "mmre" in d.title
        Select(d.find_element(By.ID, "sample")).select_by_value(Path(v["image"]).name)
        for field, value in (("text", v["text"]), ("head", v["head"]), ("tail", v["tail"]), ("caption", v["caption"])):
            d.find_element(By.ID, field).send_keys(value)
        d.find_element(By.ID, "go").click()
        WebDriverWait(d, 60).until(ec.presence_of_element_located((By.ID, "relations")))
        relation = d.find_element(By.CSS_SELECTOR, "#relations td.relation").text
        assert relation
        WebDriverWait(d, 30).until(lambda drv: drv.execute_script(
            "const i = document.getElementById('explanation'); return i && i.complete && i.naturalWidth > 100;"))
        d.save_screenshot(str(tmp_path / "after_prediction.png"))
        natural, shown = d.execute_script("const i = document.getElementById('explanation'); "
                                          "return [i.naturalWidth, i.getBoundingClientRect().width];")
        assert shown >= 0.75 * natural - 1, (natural, shown)  # the window's width at least 3/4 of its size
        assert d.find_element(By.ID, "warnings").text == ""  # a caption was given

        fake = tmp_path / "photo.jpg"
        fake.write_text("this is text, not a JPEG")
        Select(d.find_element(By.ID, "sample")).select_by_value("")
        d.find_element(By.ID, "image").send_keys(str(fake))
        d.find_element(By.ID, "go").click()
        WebDriverWait(d, 30).until(lambda drv: drv.find_element(By.ID, "error").text.strip() != "")
        assert "not an image" in d.find_element(By.ID, "error").text
        assert d.find_elements(By.ID, "relations") == []
        # no caption for a caption model: the page says so
        d.find_element(By.ID, "image").clear()
        Select(d.find_element(By.ID, "sample")).select_by_value(Path(v["image"]).name)
        d.find_element(By.ID, "caption").clear()
        d.find_element(By.ID, "go").click()
        WebDriverWait(d, 60).until(lambda drv: drv.find_element(By.ID, "warnings").text.strip() != "")
        assert "no caption was given" in d.find_element(By.ID, "warnings").text
        # and the server still answers
        d.get(server + "health")
        assert '"ok":true' in d.page_source.replace(" ", "")


# -- issue 24: one error shape, no server paths, the API's own words, warnings to the client ------


@pytest.mark.parametrize("method, route, status", [("get", "/nope", 404), ("delete", "/predict", 405),
                                                   ("post", "/predict?explain=maybe", 422)])
def test_fastapis_own_errors_have_the_apis_error_shape(client, method, route, status):
    r = getattr(client, method)(route)
    assert r.status_code == status, r.text
    assert set(r.json()) == {"error"} and r.json()["error"], r.text


def test_answers_name_images_as_the_client_does_never_by_server_path(client, app):
    data = base64.b64encode((SAMPLE / "img_org" / "val" / "sample_val_002.png").read_bytes()).decode()
    r = client.post("/predict", json=[_line(2), {**_line(3), "image": None, "image_b64": data}])
    assert r.status_code == 200, r.text
    assert [p["image"] for p in r.json()["predictions"]] == [_line(2)["image"], "upload"]
    upload = {"image": ("my photo.png", (SAMPLE / "img_org" / "val" / "sample_val_002.png").read_bytes(), "image/png")}
    form = client.post("/predict/form", data={k: _line(2)[k] for k in ("text", "head", "tail", "caption")}, files=upload)
    assert form.status_code == 200, form.text
    assert form.json()["predictions"][0]["image"] == "my photo.png"
    bad = client.post("/predict", json={"text": "Ann met Bob", "image_b64": base64.b64encode(b"not an image").decode()})
    assert bad.status_code == 400 and bad.json()["error"].startswith("upload: not an image"), bad.text
    for text in (r.text, form.text, bad.text):
        assert "/tmp" not in text and ".upload" not in text and str(SAMPLE) not in text


def test_the_explanation_is_titled_with_the_uploads_own_name(client, monkeypatch):
    import mmre_cli.explain as explain

    seen = {}
    original = explain.draw_explanation

    def spy(path, **kwargs):
        seen.update(kwargs)
        return original(path, **kwargs)

    monkeypatch.setattr(explain, "draw_explanation", spy)
    upload = {"image": ("my photo.png", (SAMPLE / "img_org" / "val" / "sample_val_002.png").read_bytes(), "image/png")}
    r = client.post("/predict/form", data={k: _line(2)[k] for k in ("text", "head", "tail", "caption")}, files=upload)
    assert r.status_code == 200, r.text
    assert seen["image_name"] == "my photo.png"


def test_errors_name_the_apis_fields_not_the_clis_options(client):
    for payload, words in (({"text": "Ann met Bob", "head": "Ann"}, "give both head and tail"),
                           ({"text": "Ann met Bob", "head": "Ann", "tail": "Zed"}, "tail 'Zed' is not in the text"),
                           ({"text": "the weather is nice today"}, "give head and tail")):
        r = client.post("/predict", json=payload)
        assert r.status_code == 400 and words in r.json()["error"], r.text
        assert "--" not in r.json()["error"], r.text


def test_the_no_caption_warning_reaches_the_client(client):
    r = client.post("/predict", json={k: v for k, v in _line(0).items() if k != "caption"})
    assert r.status_code == 200, r.text
    (warning,) = r.json()["warnings"]
    assert "no caption was given (\"caption\")" in warning and "--image-caption" not in warning
    assert client.post("/predict", json=_line(0)).json()["warnings"] == []


def test_a_busy_port_is_one_error_line_and_exit_2_before_the_model_loads(tmp_path):
    from typer.testing import CliRunner

    from mmre_cli.cli.app import app as cli

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        # no model folder there: the port is refused before the model would be looked for
        result = CliRunner().invoke(cli, ["serve", "--model", str(tmp_path / "no-model"), "--port", str(port)])
    assert result.exit_code == 2, result.output
    assert result.stdout == "" and "http://" not in result.stderr
    assert result.stderr.splitlines() == [f"error: port {port} on 127.0.0.1 is already in use (another server is "
                                          "listening there); stop it or pick another with --port"]
