"""``mmre serve``: the JSON API (FastAPI's test client) and the page in a real headless browser."""

from __future__ import annotations

import base64
import socket
import threading
import time
import types
from pathlib import Path

import fastapi  # noqa: F401 - a hard dependency: a broken install fails, never skips
import pytest

from tests.cli.cli_helpers import SAMPLE, val_query


@pytest.fixture(scope="module")
def app(trained):
    from mmre_cli.serve import create_app

    return create_app(trained["model"], samples=SAMPLE / "img_org")


@pytest.fixture(scope="module")
def client(app):
    from fastapi.testclient import TestClient

    return TestClient(app)


def _line(i: int) -> dict:
    v = val_query(i)
    return {
        "text": v["text"],
        "head": v["head"],
        "tail": v["tail"],
        "caption": v["caption"],
        "image": Path(v["image"]).name,
    }


def test_predict_answers_the_batch_fields_and_agrees_with_the_cli(client, trained):
    from mmre_cli.predict.predictor import Predictor
    from mmre_cli.predict.queries import Query

    v = val_query(1)
    r = client.post("/predict", json=_line(1))
    assert r.status_code == 200, r.text
    (p,) = r.json()["predictions"]
    assert {"head", "tail", "relation", "probability", "top3", "text", "image"} <= set(p)
    expected = Predictor(trained["model"]).predict(
        [Query(text=v["text"], image=Path(v["image"]), head=v["head"], tail=v["tail"], caption=v["caption"])]
    )[0]
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


@pytest.mark.parametrize(
    "payload, status, message",
    [
        ({"text": ""}, 400, "'text' is missing or empty"),
        ({"text": "x" * 3000}, 413, "at most 2000"),
        ([{"text": "a b"}] * 40, 413, "at most 32 per request"),
        ({"text": "Ann met Bob", "head": "Ann", "tail": "Zed"}, 400, "is not in the text"),
        ({"text": "Ann met Bob", "image": "../../etc/passwd"}, 400, "unknown sample image"),
        (
            {
                "text": "Ann met Bob",
                "head": "Ann",
                "tail": "Bob",
                "image_b64": base64.b64encode(b"not an image").decode(),
            },
            400,
            "not an image",
        ),
        ({"text": "Ann met Bob", "image_b64": "%%%"}, 400, "not base64"),
        ({"text": "Ann met Bob", "colour": "red"}, 400, "unknown field(s) colour"),
        ("just a string", 400, "one JSON object or a list"),
    ],
)
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

    v = val_query(0)
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
        WebDriverWait(d, 30).until(
            lambda drv: drv.execute_script(
                "const i = document.getElementById('explanation'); return i && i.complete && i.naturalWidth > 100;"
            )
        )
        d.save_screenshot(str(tmp_path / "after_prediction.png"))
        natural, shown = d.execute_script(
            "const i = document.getElementById('explanation'); "
            "return [i.naturalWidth, i.getBoundingClientRect().width];"
        )
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
        # under load the driver can hand back the page before Chrome has rendered the JSON ('')
        WebDriverWait(d, 30).until(lambda drv: drv.page_source.strip() != "")
        assert '"ok":true' in d.page_source.replace(" ", "")


# -- issue 24: one error shape, no server paths, the API's own words, warnings to the client ------


@pytest.mark.parametrize(
    "method, route, status",
    [("get", "/nope", 404), ("delete", "/predict", 405), ("post", "/predict?explain=maybe", 422)],
)
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
    form = client.post(
        "/predict/form", data={k: _line(2)[k] for k in ("text", "head", "tail", "caption")}, files=upload
    )
    assert form.status_code == 200, form.text
    assert form.json()["predictions"][0]["image"] == "my photo.png"
    bad = client.post("/predict", json={"text": "Ann met Bob", "image_b64": base64.b64encode(b"not an image").decode()})
    assert bad.status_code == 400 and bad.json()["error"].startswith("upload: not an image"), bad.text
    for text in (r.text, form.text, bad.text):
        assert "/tmp" not in text and ".upload" not in text and str(SAMPLE) not in text


def test_the_explanation_is_titled_with_the_uploads_own_name(client, monkeypatch):
    import mmre_cli.explain.draw as explain

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
    for payload, words in (
        ({"text": "Ann met Bob", "head": "Ann"}, "give both head and tail"),
        ({"text": "Ann met Bob", "head": "Ann", "tail": "Zed"}, "tail 'Zed' is not in the text"),
        ({"text": "the weather is nice today"}, "give head and tail"),
    ):
        r = client.post("/predict", json=payload)
        assert r.status_code == 400 and words in r.json()["error"], r.text
        assert "--" not in r.json()["error"], r.text


def test_the_no_caption_warning_reaches_the_client(client):
    r = client.post("/predict", json={k: v for k, v in _line(0).items() if k != "caption"})
    assert r.status_code == 200, r.text
    (warning,) = r.json()["warnings"]
    assert 'no caption was given ("caption")' in warning and "--image-caption" not in warning
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
    assert result.stderr.splitlines() == [
        f"error: port {port} on 127.0.0.1 is already in use (another server is "
        "listening there); stop it or pick another with --port"
    ]


# -- issue 24: bad bodies, the size limit, a small load -------------------------------------------

_PNG = SAMPLE / "img_org" / "val" / "sample_val_002.png"
_PAIR = {"text": "Ann met Bob", "head": "Ann", "tail": "Bob"}


def _bomb(side: int = 12000) -> bytes:
    """A real decompression bomb: a valid ~140 KB PNG of side x side grey pixels (144 M, ~144 MB decoded)."""
    import struct
    import zlib

    z = zlib.compressobj(9)
    row = b"\x00" * (side + 1)  # filter byte + the row
    data = b"".join(z.compress(row) for _ in range(side)) + z.flush()

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", data)
        + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def bad_images() -> dict[str, bytes]:
    png = _PNG.read_bytes()
    bomb = _bomb()
    assert len(bomb) < 200_000
    return {"not an image": b"this is text, not a JPEG", "truncated": png[: len(png) // 2], "bomb": bomb}


_MULTIPART = "multipart/form-data; boundary=zz"


@pytest.mark.parametrize(
    "case, status, message",
    [
        ("malformed json", 400, "the body is not JSON"),
        ("json nested too deep", 400, "the body is not JSON"),
        ("multipart cut short", 400, "ends before its closing boundary"),
        ("multipart without a boundary", 400, "could not read the form"),
        ("multipart garbage", 400, "could not read the form"),
        ("json not an image", 400, "upload: not an image"),
        ("form not an image", 400, "photo.jpg: not an image"),
        ("json truncated", 400, "upload: cannot decode image (corrupt or truncated)"),
        ("form truncated", 400, "photo.jpg: cannot decode image (corrupt or truncated)"),
        ("json bomb", 400, "upload: image has too many pixels: 12000x12000"),
        ("form bomb", 400, "photo.jpg: image has too many pixels: 12000x12000"),
    ],
)
def test_bad_bodies_get_a_4xx_in_the_apis_shape_and_the_server_lives_on(client, bad_images, case, status, message):
    kind = {"not an image": "not an image", "truncated": "truncated", "bomb": "bomb"}
    image = next((data for key, data in bad_images.items() if case.endswith(kind[key])), None)
    if case == "malformed json":
        r = client.post("/predict", content=b'{"text": "Ann met', headers={"content-type": "application/json"})
    elif case == "json nested too deep":
        r = client.post("/predict", content=b"[" * 200_000, headers={"content-type": "application/json"})
    elif case == "multipart cut short":  # the text part, then the body stops: no closing boundary
        r = client.post(
            "/predict/form",
            content=b'--zz\r\nContent-Disposition: form-data; name="text"\r\n\r\nAnn me',
            headers={"content-type": _MULTIPART},
        )
    elif case == "multipart without a boundary":
        r = client.post("/predict/form", content=b"text=Ann", headers={"content-type": "multipart/form-data"})
    elif case == "multipart garbage":
        r = client.post(
            "/predict/form",
            content=b"--zz\r\n\x00\x01 no headers here\r\n--zz--\r\n",
            headers={"content-type": _MULTIPART},
        )
    elif case.startswith("json"):
        r = client.post("/predict", json={**_PAIR, "image_b64": base64.b64encode(image).decode()})
    else:
        r = client.post("/predict/form", data=_PAIR, files={"image": ("photo.jpg", image, "image/jpeg")})
    assert r.status_code == status, r.text
    assert set(r.json()) == {"error"} and message in r.json()["error"], r.text
    assert "/tmp" not in r.text and ".upload" not in r.text
    assert client.get("/health").json()["ok"] is True
    ok = client.post("/predict", json=_line(1))
    assert ok.status_code == 200 and len(ok.json()["predictions"]) == 1, ok.text


def _answer(sock: socket.socket) -> tuple[int, dict]:
    """The status and JSON body of one HTTP/1.1 answer read off ``sock`` (which the server closes)."""
    import json

    sock.settimeout(60)
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < int(
        next(
            line.split(b":")[1]
            for line in data.split(b"\r\n\r\n")[0].split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
    ):
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection without a whole answer: {data[:300]!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    return int(head.split(b" ")[1]), json.loads(body)


def test_a_body_over_the_limit_is_refused_with_413_before_it_is_read_whole(server):
    """By its Content-Length: answered while the client has sent 64 KB of the announced body. As a
    chunked body (no length): answered once it passes the limit, while the client is still sending."""
    import select
    from urllib.parse import urlsplit

    from mmre_cli.serve import LIMITS

    address = (urlsplit(server).hostname, urlsplit(server).port)
    limit = LIMITS["body_bytes"]
    with socket.create_connection(address) as sock:
        sock.sendall(
            f"POST /predict/form HTTP/1.1\r\nHost: x\r\nContent-Type: {_MULTIPART}\r\n"
            f"Content-Length: {limit + 2**20}\r\n\r\n".encode()
            + b"--zz\r\n"
            + b"y" * 65536
        )
        status, body = _answer(sock)
    assert status == 413 and set(body) == {"error"} and f"at most {limit}" in body["error"], body

    piece = b"x" * 2**18
    sent = 0
    with socket.create_connection(address) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        while sent < 4 * limit and not select.select([sock], [], [], 0)[0]:
            try:
                sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
            except OSError:  # the server answered and closed: read its answer
                break
            sent += len(piece)
        status, body = _answer(sock)
    assert status == 413 and f"at most {limit}" in body["error"], body
    assert sent < 4 * limit, "the server read the whole chunked body before answering"
    import urllib.request

    with urllib.request.urlopen(server + "health", timeout=30) as r:
        assert r.status == 200


def test_a_small_load_has_no_failed_request(server):
    """bench/serve_load.py's client at CI size (its full size, 8 clients x 400 requests, is in bench/)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "serve_load", Path(__file__).resolve().parents[2] / "bench" / "serve_load.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.load(server, clients=4, requests=24, upload_every=3, health_every=0.1, deadline=300)
    assert result["failed"] == 0 and result["ok"] == 24, result["errors"]
    assert result["uploads"] == 8 and result["health_failed"] == 0, result
    assert result["p50_ms"] <= result["p99_ms"]


def test_the_size_limits_are_documented_where_a_user_reads_them():
    from typer.testing import CliRunner

    from mmre_cli.cli.app import app as cli
    from mmre_cli.serve import LIMITS

    body, image = f"{LIMITS['body_bytes'] // 2**20} MB", f"{LIMITS['image_bytes'] // 2**20} MB"
    assert LIMITS["body_bytes"] % 2**20 == 0 and LIMITS["image_bytes"] % 2**20 == 0
    result = CliRunner().invoke(cli, ["serve", "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0
    help_text = " ".join(result.output.split())
    assert f"a request body over {body} is refused with 413 before it is read whole" in help_text
    assert f"an image of at most {image}" in help_text
    readme = " ".join((Path(__file__).resolve().parents[2] / "README.md").read_text().split())
    assert f"a request body over **{body}** is refused with 413 before it is read whole" in readme


def test_the_servers_scratch_folder_goes_when_it_shuts_down():
    """Uploads and explanation pictures live in one temp folder per app, removed at shutdown."""
    import tempfile

    from fastapi.testclient import TestClient

    from mmre_cli.serve import create_app

    before = set(Path(tempfile.gettempdir()).glob("mmre-serve-*"))
    other = create_app(Path("unused"), predictor=types.SimpleNamespace())  # a stand-in: nothing is predicted
    (made,) = set(Path(tempfile.gettempdir()).glob("mmre-serve-*")) - before
    with TestClient(other):  # start-up and shutdown, as uvicorn runs them
        (made / "x.png").write_bytes(b"picture")
    assert not made.exists()
