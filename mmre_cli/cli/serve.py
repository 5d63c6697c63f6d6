"""``mmre serve``: a local web demo and JSON API over one trained model."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated

from mmre_cli.cli.common import handle_errors


@handle_errors
def serve(
    model: Annotated[Path, typer.Option("--model", help="Model folder written by train-gnn.")] = Path("out/model"),
    host: Annotated[
        str,
        typer.Option(
            help="Address to bind. The default serves this machine only; 0.0.0.0 exposes the demo to your network."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    captioner: Annotated[
        Optional[str],
        typer.Option(
            "--captioner",
            help="Image-to-text model that captions an image sent without a caption (as in `mmre predict "
            "--captioner`).",
            show_default=False,
        ),
    ] = None,
    samples: Annotated[
        Optional[Path],
        typer.Option(
            "--samples",
            help="Folder of images the page offers as samples (default: the shipped sample's images, if present).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve a demo page and a JSON API on http://HOST:PORT with the model loaded once.

    Page (GET /): upload an image or pick a sample, type the sentence (and optionally head, tail and caption) and see the relation table and the explanation picture. API: POST /predict takes one JSON object or a list — the fields of `mmre predict --batch` lines (text, head, tail, caption; image = a sample's name, or image_b64 = the file in base64) — and answers {"predictions": [...], "explanation": null, "warnings": [...]} (a prediction's image is named as sent: the sample's name, the upload's file name, or "upload"; warnings: notes such as a missing caption); add ?explain=1 for the picture (a PNG data URL). GET /samples lists the samples, GET /health says the server is up. Requests are bounded: a request body over 12 MB is refused with 413 before it is read whole (by its Content-Length, or as a chunked body passes 12 MB); an image of at most 8 MB, text of 2,000 characters, 32 inputs, the model's pixel limit. A bad request (not JSON, a broken form, a file that is not an image, a truncated image, a decompression bomb, ...) gets a 4xx answer with {"error": ...}, as does an unknown route, and the server keeps serving; predictions run one at a time in a worker thread, so GET /health answers while they run. A port already in use is one error line and exit 2, before the model loads. Needs the `serve` extra: pip install 'mmre[serve]'.
    """
    from mmre_cli.errors import MmreError

    try:
        import uvicorn

        from mmre_cli.serve import create_app
    except ImportError as err:
        raise MmreError(
            f"mmre serve needs FastAPI and uvicorn ({err.name} is missing): pip install 'mmre[serve]'"
        ) from None
    from mmre_cli.cli.console import err as stderr

    if samples is None:
        shipped = Path(__file__).resolve().parents[2] / "data" / "sample" / "img_org"
        samples = shipped if shipped.is_dir() else None
    sock = listen(host, port)  # a busy port is refused before the model loads
    app = create_app(model, samples=samples, captioner=captioner)
    shown = f"[{host}]" if ":" in host else host
    stderr.print(f"mmre serve: {model} on http://{shown}:{port}/ (Ctrl+C stops)", highlight=False, soft_wrap=True)
    try:
        uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning")).run(sockets=[sock])
    except KeyboardInterrupt:  # Ctrl+C is how it stops: not an error
        pass
    stderr.print("mmre serve: stopped", highlight=False)


def listen(host: str, port: int):
    """A socket listening on ``host:port`` (as uvicorn binds one: SO_REUSEADDR), or one clear
    :class:`~mmre_cli.errors.MmreError` (exit 2): the port is in use, the address is not this
    machine's, a port below 1024 without the right."""
    import errno
    import socket

    from mmre_cli.errors import MmreError

    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as err:
        raise MmreError(f"--host {host}: not an address this machine can serve on ({err.strerror})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise MmreError(
                f"port {port} on {host} is already in use (another server is listening there); "
                "stop it or pick another with --port"
            ) from None
        if err.errno in (errno.EACCES, errno.EPERM):
            raise MmreError(
                f"port {port} on {host}: permission denied (ports below 1024 need privileges); pick another with --port"
            ) from None
        if err.errno == errno.EADDRNOTAVAIL:
            raise MmreError(f"--host {host}: not an address of this machine") from None
        raise MmreError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    return sock
