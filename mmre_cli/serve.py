"""``mmre serve``: a local demo page and JSON API over one loaded model (FastAPI + uvicorn).

Routes:

* ``GET /`` — the page: upload an image (or pick a sample), type the sentence, optionally the
  head, tail and caption; the relation table and the explanation picture appear below. Plain
  HTML and JavaScript served from here: nothing loads from the internet.
* ``POST /predict`` — JSON: one object or a list of them, the fields of ``mmre predict --batch``
  lines (``text``, ``head``, ``tail`` as words or token spans ``[start, end]``, ``caption``,
  ``image`` = a sample's name from ``GET /samples``, or ``image_b64`` = the file's bytes in
  base64), ``?explain=1`` adds the picture of the first input's most probable non-None pair as a
  PNG data URL. Answers ``{"predictions": [...], "explanation": ..., "warnings": [...]}`` with the
  ``--json`` fields; a prediction's ``image`` is the sample's name, or the upload's (``"upload"``
  for ``image_b64``), never a path on the server; ``warnings`` are the predictor's notes for
  this request (e.g. that a caption model got no caption and the server has no captioner).
* ``POST /predict/form`` — the page's multipart form (``image`` file, ``sample``, ``text``,
  ``head``, ``tail``, ``caption``), always with the explanation.
* ``GET /samples`` — the sample images the page offers; ``GET /samples/{name}`` one of them.
* ``GET /health`` — ``{"ok": true, "model": ...}``.

The models load once, at start; requests are predicted one at a time (a lock: torch already
uses the cores, and the predictor is not thread-safe) in a worker thread, so the event loop keeps
answering (``GET /health`` within milliseconds while predictions queue: ``bench/serve_load.py``).
Requests are bounded — :data:`LIMITS`: body bytes (:class:`Guard`: a larger body is refused with
413 before it is read whole), image bytes, text and caption characters, inputs per request, and
the model's own pixel limit (a decompression bomb is refused from its header) — and a bad request is a
4xx answer with ``{"error": "..."}``, never the end of the server: every error inside a request
is caught and answered (500 with its one-line reason for a bug). Every error has that shape, an
unknown route (404), a wrong method (405) and a bad query parameter (422) included, and names
the API's fields (``head``), never the command line's options (``--head``) or server paths.
"""

# no `from __future__ import annotations`: FastAPI reads the route signatures (Request) at runtime

import base64
import binascii
import contextlib
import html
import re
import shutil
import tempfile
import threading
import weakref
from pathlib import Path

__all__ = ["LIMITS", "create_app"]

#: request bounds (bytes / characters / inputs)
LIMITS = {
    "body_bytes": 12 * 1024 * 1024,
    "image_bytes": 8 * 1024 * 1024,
    "text_chars": 2000,
    "caption_chars": 2000,
    "entity_chars": 200,
    "batch": 32,
}
_FIELDS = {"text", "head", "tail", "caption", "image", "image_b64"}  # a --batch line's + image_b64


class BadRequest(Exception):
    """A request that cannot be served as sent: answered with ``status`` and the message."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class BodyTooLarge(BadRequest):
    """A request body past :data:`LIMITS` ``body_bytes``: 413, found before the rest is read."""

    def __init__(self, limit: int, size: int | None = None):
        said = f"of {size} bytes" if size is not None else f"of more than {limit} bytes"
        super().__init__(f"request body {said}, at most {limit} ({limit / 2**20:g} MB): send a smaller image", 413)


class Guard:
    """ASGI middleware that bounds every request and answers every failure in the API's shape.

    * A ``Content-Length`` over ``limit`` is answered 413 at once, the body unread.
    * A body without one (chunked) is counted as it arrives: the read that passes ``limit``
      raises :class:`BodyTooLarge`, answered 413, so the server holds at most ``limit`` bytes
      (plus one chunk) of it and reads no further.
    * Any other exception out of the app (a bug) is a 500 with its one-line reason, never the end
      of the server.
    """

    def __init__(self, app, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        size = dict(scope["headers"]).get(b"content-length", b"")
        if size.isdigit() and int(size) > self.limit:
            return await _send_json(send, 413, {"error": str(BodyTooLarge(self.limit, int(size)))})
        seen, started = 0, False

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        async def tracked(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except Exception as err:  # noqa: BLE001 - a bug must not take the server down
            if started:
                raise
            if isinstance(err, BodyTooLarge):
                return await _send_json(send, 413, {"error": str(err)})
            reason = str(err).splitlines()[0] if str(err) else ""
            await _send_json(send, 500, {"error": f"internal error: {type(err).__name__}: {reason}"})


async def _send_json(send, status: int, payload: dict) -> None:
    import json

    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 413:
        headers.append((b"connection", b"close"))  # the rest of the body is not read
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _sample_images(root: Path | None) -> dict[str, Path]:
    if root is None or not Path(root).is_dir():
        return {}
    exts = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp"}
    files = sorted(p for p in Path(root).rglob("*") if p.is_file() and p.suffix.lower() in exts)
    return {p.name: p for p in files[:200]}


class Service:
    """The loaded predictor and what a request may ask of it."""

    def __init__(self, predictor, samples: dict[str, Path], workdir: Path):
        self.predictor = predictor
        self.samples = samples
        self.workdir = workdir
        self.lock = threading.Lock()
        predictor.captioner_hint = "the server has none: start mmre serve with --captioner MODEL or $MMRE_CAPTIONER"

    def hide_paths(self, message: str, shown: dict[str, str]) -> str:
        """``message`` with every server path of a request's images replaced by the name the
        client knows (``shown``: path → name), and no path of the server's temp folder."""
        for path in sorted(shown, key=len, reverse=True):
            message = message.replace(path, shown[path])
        return message.replace(str(self.workdir) + "/", "")

    def _image(self, record: dict, index: int, shown: dict[str, str], upload_name: str | None = None) -> Path | None:
        """The image of one input; ``shown`` learns what the client calls it (by server path)."""

        def named(path: Path, name: str) -> Path:
            for p in {str(path), str(Path(path).resolve())}:
                shown[p] = name
            return path

        if record.get("image_b64"):
            try:
                data = base64.b64decode(str(record["image_b64"]), validate=True)
            except (binascii.Error, ValueError):
                raise BadRequest(f"input {index}: image_b64 is not base64") from None
            return named(self._save_upload(data, index), upload_name or "upload")
        name = record.get("image")
        if name:
            if name not in self.samples:
                raise BadRequest(f"input {index}: unknown sample image {name!r} (see GET /samples)")
            return named(self.samples[name], name)
        return None

    def _save_upload(self, data: bytes, index: int) -> Path:
        if len(data) > LIMITS["image_bytes"]:
            raise BadRequest(
                f"input {index}: the image is {len(data)} bytes, more than the {LIMITS['image_bytes']} allowed", 413
            )
        if not data:
            raise BadRequest(f"input {index}: the image is empty")
        f = tempfile.NamedTemporaryFile(dir=self.workdir, suffix=".upload", delete=False)
        with f:
            f.write(data)
        return Path(f.name)

    def queries(self, records: list[dict], shown: dict[str, str], upload_name: str | None = None):
        """Check the records (types, bounds) and turn them into predict queries (``upload_name``:
        what the page's uploaded file was called)."""
        from mmre_cli.errors import InputError
        from mmre_cli.predict.queries import query_from_record

        if not records:
            raise BadRequest("no input")
        if len(records) > LIMITS["batch"]:
            raise BadRequest(f"{len(records)} inputs, at most {LIMITS['batch']} per request", 413)
        out = []
        for i, rec in enumerate(records):
            if not isinstance(rec, dict):
                raise BadRequest(f"input {i}: expected a JSON object with {', '.join(sorted(_FIELDS))}")
            unknown = sorted(set(rec) - _FIELDS)
            if unknown:
                raise BadRequest(f"input {i}: unknown field(s) {', '.join(unknown)}")
            text = rec.get("text")
            if not isinstance(text, str) or not text.strip():
                raise BadRequest(f"input {i}: 'text' is missing or empty")
            if len(text) > LIMITS["text_chars"]:
                raise BadRequest(f"input {i}: the text has {len(text)} characters, at most {LIMITS['text_chars']}", 413)
            caption = rec.get("caption") or None
            if caption is not None and (not isinstance(caption, str) or len(caption) > LIMITS["caption_chars"]):
                raise BadRequest(
                    f"input {i}: 'caption' must be a string of at most {LIMITS['caption_chars']} characters"
                )
            for key in ("head", "tail"):
                if isinstance(rec.get(key), str) and len(rec[key]) > LIMITS["entity_chars"]:
                    raise BadRequest(f"input {i}: '{key}' has more than {LIMITS['entity_chars']} characters", 413)
            words = {k: v for k, v in rec.items() if k not in ("image", "image_b64") and v not in (None, "")}
            try:  # the --batch line's checks and spans (mmre_cli.predict.queries), the image resolved here
                query = query_from_record(words, where=f"input {i}" if len(records) > 1 else "")
            except InputError as err:
                raise BadRequest(f"input {i}: {err.reason}") from None
            query.image = self._image(rec, i, shown, upload_name)
            out.append(query)
        return out

    def predict(self, records: list[dict], explain: bool, upload_name: str | None = None) -> dict:
        from mmre_cli.errors import MmreError
        from mmre_cli.predict.predictor import explain as draw
        from mmre_cli.predict.queries import check_query
        from mmre_cli.reporting import NullReporter

        shown: dict[str, str] = {}  # server path -> the name the client knows
        try:
            queries = self.queries(records, shown, upload_name)
            for q in queries:
                check_query(q, self.predictor.max_pixels)
            with self.lock:
                notes, kept = NullReporter(), self.predictor.reporter  # this request's warnings, for its answer
                self.predictor.reporter = notes
                try:
                    results = self.predictor.predict(queries, keep_graphs=explain)
                    picture = None
                    if explain and results:
                        first = [r for r in results if r.where == queries[0].where] or results
                        png = Path(tempfile.mkstemp(dir=self.workdir, suffix=".png")[1])
                        try:
                            image = first[0].image
                            pick = draw(
                                self.predictor,
                                first,
                                png,
                                image_name=None if image is None else self.hide_paths(str(image), shown),
                            )
                            picture = {
                                "head": pick.head,
                                "tail": pick.tail,
                                "relation": pick.relation,
                                "png": "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode(),
                            }
                        finally:
                            png.unlink(missing_ok=True)
                finally:
                    self.predictor.reporter = kept
            predictions = []
            for r in results:
                line = r.to_json()
                if line["image"] is not None:
                    line["image"] = self.hide_paths(line["image"], shown)
                predictions.append(line)
            return {
                "predictions": predictions,
                "explanation": picture,
                "warnings": [self.hide_paths(w, shown) for w in notes.warnings],
            }
        except MmreError as err:  # bad input found by the predictor: the user's to fix
            raise BadRequest(self.hide_paths(str(err), shown)) from None
        except BadRequest as err:
            raise BadRequest(self.hide_paths(str(err), shown), err.status) from None
        finally:
            for path in shown:
                if path.endswith(".upload"):
                    Path(path).unlink(missing_ok=True)


def create_app(model: Path, *, samples: Path | None = None, predictor=None, captioner: str | None = None):
    """The FastAPI app serving ``model`` (loaded here unless ``predictor`` is given; ``captioner``
    as for :class:`~mmre_cli.predict.predictor.Predictor`)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
    from starlette.concurrency import run_in_threadpool

    from mmre_cli.predict.predictor import Predictor

    predictor = predictor or Predictor(Path(model), captioner=captioner)
    workdir = Path(tempfile.mkdtemp(prefix="mmre-serve-"))
    service = Service(predictor, _sample_images(samples), workdir)
    # uploads and explanation pictures live as long as the app: removed when the server shuts down
    # (the lifespan's exit) or, failing that, when the interpreter exits
    scratch = weakref.finalize(service, shutil.rmtree, workdir, ignore_errors=True)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        scratch()

    app = FastAPI(title="mmre", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)

    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        """FastAPI's own answers (404 unknown route, 405 wrong method) in the API's error shape."""
        message = {
            404: f"no such route: {request.method} {request.url.path} (see GET /, POST /predict, "
            "GET /samples, GET /health)",
            405: f"{request.method} is not allowed on {request.url.path}",
        }.get(exc.status_code, str(exc.detail))
        return JSONResponse({"error": message}, exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'request'}: {e.get('msg', '')}" for e in exc.errors()
        )
        return JSONResponse({"error": f"bad request parameters ({problems})"}, 422)

    @app.exception_handler(BodyTooLarge)
    async def too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, 413, headers={"connection": "close"})

    app.add_middleware(Guard, limit=LIMITS["body_bytes"])  # bounds the body before the app reads it

    def answer(records: list[dict], explain: bool, upload_name: str | None = None) -> JSONResponse:
        try:
            return JSONResponse(service.predict(records, explain, upload_name))
        except BadRequest as err:
            return JSONResponse({"error": str(err)}, err.status)

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return _page(sorted(service.samples), Path(model).name, predictor.captions)

    @app.get("/health")
    def health() -> dict:
        return {"ok": True, "model": str(model), "labels": len(predictor.pipeline["labels"])}

    @app.get("/samples")
    def samples_list() -> dict:
        return {"samples": sorted(service.samples)}

    @app.get("/samples/{name}")
    def sample(name: str):
        if name not in service.samples:
            return JSONResponse({"error": f"unknown sample {name!r}"}, 404)
        return FileResponse(service.samples[name])

    def answer_json(body: bytes, explain: bool) -> JSONResponse:
        import json

        try:
            data = json.loads(body or b"null")
        except (ValueError, UnicodeDecodeError, RecursionError):
            return JSONResponse({"error": "the body is not JSON (send one object or a list of objects)"}, 400)
        records = data if isinstance(data, list) else [data] if isinstance(data, dict) else None
        if records is None:
            return JSONResponse({"error": "send one JSON object or a list of them"}, 400)
        return answer(records, explain)

    @app.post("/predict")
    async def predict_json(request: Request, explain: bool = False) -> JSONResponse:
        body = await request.body()  # at most LIMITS["body_bytes"]: Guard stops a longer one
        return await run_in_threadpool(answer_json, body, explain)  # the event loop keeps answering

    @app.post("/predict/form")
    async def predict_form(request: Request) -> JSONResponse:
        body = await request.body()  # at most LIMITS["body_bytes"] (Guard); form() parses this copy
        boundary = re.search(r'boundary="?([^";,\s]+)', request.headers.get("content-type", ""))
        if boundary and b"--" + boundary.group(1).encode("latin-1") + b"--" not in body:
            return JSONResponse(
                {
                    "error": "could not read the form (a multipart/form-data body: it ends before "
                    "its closing boundary, cut short?)"
                },
                400,
            )
        try:
            form = await request.form(max_files=1, max_fields=10)
        except BodyTooLarge:
            raise
        except Exception as err:  # noqa: BLE001 - a malformed multipart body
            reason = str(getattr(err, "detail", "") or err).splitlines()[0][:200] if str(err) else type(err).__name__
            return JSONResponse({"error": f"could not read the form (a multipart/form-data body: {reason})"}, 400)
        record: dict = {k: str(form.get(k) or "") for k in ("text", "head", "tail", "caption")}
        upload = form.get("image")
        name = None
        if upload is not None and hasattr(upload, "read") and getattr(upload, "filename", ""):
            data = await upload.read(LIMITS["image_bytes"] + 1)
            record["image_b64"] = base64.b64encode(data).decode()
            name = Path(str(upload.filename).replace("\\", "/")).name[:100] or "upload"  # its own name, no folder
        elif form.get("sample"):
            record["image"] = str(form.get("sample"))
        return await run_in_threadpool(answer, [{k: v for k, v in record.items() if v != ""}], True, name)

    return app


def _page(samples: list[str], model_name: str, captions: bool) -> str:
    options = "".join(f'<option value="{html.escape(s)}">{html.escape(s)}</option>' for s in samples)
    caption_hint = (
        "this model reads the image through its caption: type one, or leave it empty and the "
        "server's captioner (if one was given) writes it"
        if captions
        else "this model does not read captions"
    )
    return (
        _PAGE.replace("{{options}}", options)
        .replace("{{model}}", html.escape(model_name))
        .replace("{{caption_hint}}", html.escape(caption_hint))
    )


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mmre — multimodal relation extraction</title>
<style>
 body{font-family:system-ui,sans-serif;max-width:1100px;margin:24px auto;padding:0 16px;color:#222}
 h1{font-size:1.4em;margin-bottom:0} .sub{color:#666;margin-top:4px}
 form{display:grid;grid-template-columns:160px 1fr;gap:8px 12px;align-items:center;margin:18px 0}
 input[type=text],textarea,select{width:100%;padding:6px;box-sizing:border-box;font:inherit}
 textarea{height:60px} button{padding:8px 18px;font:inherit;cursor:pointer}
 .hint{color:#777;font-size:.85em} #error{color:#b00020;font-weight:600;margin:10px 0}
 table{border-collapse:collapse;margin:12px 0} td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}
 th{background:#f3f3f3}
 .picture{width:calc(100vw - 32px);position:relative;left:50%;margin-left:calc(16px - 50vw);
   overflow-x:auto;margin-top:10px;border-top:1px solid #ddd}
 img#explanation{display:block;margin:0 auto;width:100%;min-width:75%;max-width:1950px;cursor:zoom-in}
 img#explanation.full{width:auto;min-width:0;max-width:none;cursor:zoom-out}
 #warnings{color:#8a5a00;margin:10px 0}
 #status{color:#555}
</style></head><body>
<h1>mmre</h1>
<p class="sub">Relation between two entities of a sentence, with its image. Model: <code>{{model}}</code></p>
<form id="form">
 <label for="image">image</label><div><input type="file" id="image" name="image" accept="image/*">
   or a sample <select id="sample" name="sample"><option value="">(none)</option>{{options}}</select></div>
 <label for="text">sentence</label><textarea id="text" name="text" required></textarea>
 <label for="head">head entity</label><div><input type="text" id="head" name="head">
   <span class="hint">
   its words as in the sentence; leave head and tail empty to pair the entities spaCy finds</span></div>
 <label for="tail">tail entity</label><input type="text" id="tail" name="tail">
 <label for="caption">caption</label><div><input type="text" id="caption" name="caption">
   <span class="hint">{{caption_hint}}</span></div>
 <span></span><div><button type="submit" id="go">Predict</button> <span id="status"></span></div>
</form>
<div id="error" role="alert"></div>
<div id="warnings"></div>
<div id="result"></div>
<script>
const form = document.getElementById('form');
form.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const err = document.getElementById('error'), res = document.getElementById('result');
  const status = document.getElementById('status'), warn = document.getElementById('warnings');
  err.textContent = ''; res.innerHTML = ''; warn.textContent = ''; status.textContent = 'predicting…';
  try {
    const r = await fetch('predict/form', {method: 'POST', body: new FormData(form)});
    const data = await r.json();
    status.textContent = '';
    if (!r.ok) { err.textContent = data.error || ('error ' + r.status); return; }
    const table = document.createElement('table'); table.id = 'relations';
    table.innerHTML = '<tr><th>head</th><th>relation</th><th>tail</th><th>probability</th><th>runners-up</th></tr>';
    for (const p of data.predictions) {
      const tr = document.createElement('tr');
      const alts = p.top3.slice(1).map(t => t[0] + ' ' + t[1].toFixed(3)).join(', ');
      for (const v of [p.head, p.relation, p.tail, p.probability.toFixed(3), alts]) {
        const td = document.createElement('td'); td.textContent = v; tr.appendChild(td);
      }
      tr.children[1].className = 'relation'; table.appendChild(tr);
    }
    res.appendChild(table);
    for (const w of data.warnings || []) {
      const p = document.createElement('div'); p.className = 'warning';
      p.textContent = 'note: ' + w; warn.appendChild(p);
    }
    if (data.explanation) {  // the window's whole width (the labels stay readable), never below 3/4 of
      const box = document.createElement('div'); box.className = 'picture';  // its size; a click: full size
      const img = document.createElement('img'); img.id = 'explanation';
      img.alt = 'explanation of ' + data.explanation.head + ' → ' + data.explanation.tail;
      img.title = 'click for the picture at full size / back';
      img.addEventListener('load', () => { img.style.minWidth = Math.round(0.75 * img.naturalWidth) + 'px'; });
      img.addEventListener('click', () => img.classList.toggle('full'));
      img.src = data.explanation.png; box.appendChild(img); res.appendChild(box);
    }
  } catch (e) { status.textContent = ''; err.textContent = 'request failed: ' + e; }
});
</script></body></html>
"""
