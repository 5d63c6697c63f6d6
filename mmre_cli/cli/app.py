"""The ``mmre`` Typer app. Registers one command per module; imports no torch."""

from __future__ import annotations

import typer

from mmre_cli import __version__
from mmre_cli.cli.build_graphs import build_graphs
from mmre_cli.cli.diffuse import diffuse
from mmre_cli.cli.evaluate import evaluate
from mmre_cli.cli.extract_features import extract_features
from mmre_cli.cli.info import info
from mmre_cli.cli.inspect_data import inspect_data
from mmre_cli.cli.merge_cmg import merge_cmg
from mmre_cli.cli.params_cmd import params
from mmre_cli.cli.predict import predict
from mmre_cli.cli.run import run
from mmre_cli.cli.serve import serve
from mmre_cli.cli.train_agent import train_agent
from mmre_cli.cli.train_gnn import train_gnn
from mmre_cli.cli.validate import validate

app = typer.Typer(
    name="mmre",
    help=(
        "Multimodal relation extraction (sentence + entities + image → relation) with RL-guided "
        "graph diffusion. Pipeline stages, in order: extract-features → build-graphs → merge-cmg → "
        "train-agent → diffuse → train-gnn → evaluate; `dvc repro` runs them all from params.yaml."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

for name, fn, panel in (
    ("extract-features", extract_features, "Pipeline"),
    ("build-graphs", build_graphs, "Pipeline"),
    ("merge-cmg", merge_cmg, "Pipeline"),
    ("train-agent", train_agent, "Pipeline"),
    ("diffuse", diffuse, "Pipeline"),
    ("train-gnn", train_gnn, "Pipeline"),
    ("evaluate", evaluate, "Pipeline"),
    ("run", run, "Pipeline"),
    ("predict", predict, "Use a model"),
    ("serve", serve, "Use a model"),
    ("inspect", inspect_data, "Tools"),
    ("validate", validate, "Tools"),
    ("params", params, "Tools"),
    ("info", info, "Tools"),
):
    app.command(name, rich_help_panel=panel)(fn)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mmre {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Multimodal relation extraction toolkit."""
    from mmre_cli.features.resolver import forbid_downloads

    forbid_downloads()  # no library reaches the network unless MMRE_ALLOW_DOWNLOAD=1


def quiet_libraries() -> None:
    """No library progress bars or deprecation noise on stderr, only mmre's own messages.

    Environment defaults and warning filters only: importing nothing keeps ``--help`` fast.
    """
    import logging
    import os
    import warnings

    # Lightning's "Seed set to 13" on every training command (an INFO line of its own logger)
    for name in ("lightning_fabric.utilities.seed", "lightning.fabric.utilities.seed"):
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)


def _flags_without_a_type() -> None:
    """Typer 0.29 shows ``<bool>`` beside every on/off flag in ``--help``; a flag takes no value,
    so show none (the other options keep their ``<path>``, ``<int>``... types). A repeatable
    option shows its item's type (``<path>...``), not ``<list[Path]>``."""
    from typer.core import TyperOption

    original = TyperOption.display_type_rich
    if getattr(original, "_mmre", False):
        return

    def display_type_rich(self, ctx):
        if self.is_flag:
            return None
        shown = original(self, ctx)
        if isinstance(shown, str) and shown.startswith("<list[") and shown.endswith("]>"):
            return f"<{shown[6:-2].lower()}>..."
        return shown

    display_type_rich._mmre = True
    TyperOption.display_type_rich = display_type_rich


def _help_text_verbatim() -> None:
    """Typer reads every docstring and option help as Rich markup, so a bracketed word vanishes
    from ``--help`` (``pip install 'mmre[serve]'`` printed as ``'mmre'``, ``[label, probability]``
    as nothing). Our help is plain text: render it as such, keeping Typer's panels and styles.
    The patch is applied on the first ``--help``, so startup imports no Rich."""
    from typer.core import TyperCommand, TyperGroup

    def verbatim() -> None:
        from rich.text import Text
        from typer import rich_utils

        if getattr(rich_utils._make_rich_text, "_mmre", False):
            return
        original = rich_utils._make_rich_text

        def make_rich_text(*, text: str, style: str = "", markup_mode):
            if markup_mode != "rich":
                return original(text=text, style=style, markup_mode=markup_mode)
            import inspect

            return rich_utils.highlighter(Text(inspect.cleandoc(text), style=style))

        make_rich_text._mmre = True
        rich_utils._make_rich_text = make_rich_text

    for cls in (TyperCommand, TyperGroup):
        if getattr(cls.format_help, "_mmre", False):
            continue

        def format_help(self, ctx, formatter, _original=cls.format_help):
            verbatim()
            return _original(self, ctx, formatter)

        format_help._mmre = True
        cls.format_help = format_help


_flags_without_a_type()
_help_text_verbatim()


def main() -> None:
    """The ``mmre`` entry point: a usage error (unknown option, missing or bad argument) is one
    line on stderr, ``error: ...`` and where to look, with exit code 2 — not a box."""
    import sys

    try:
        from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError  # Typer 0.29's own click
    except ImportError:  # pragma: no cover - a Typer on the real click
        from click.exceptions import ClickException, NoArgsIsHelpError, UsageError

    quiet_libraries()
    try:
        code = app(standalone_mode=False)  # SystemExit (our own errors, --help, --version) passes through
    except (typer.Abort, KeyboardInterrupt):
        sys.stderr.write("aborted\n")
        sys.exit(130)
    except NoArgsIsHelpError as err:  # plain `mmre`: the help
        typer.echo(err.ctx.get_help() if err.ctx is not None else err.format_message())
        sys.exit(0)
    except UsageError as err:
        command = err.ctx.command_path if err.ctx is not None else "mmre"
        sys.stderr.write(f"error: {err.format_message()} (see `{command} --help`)\n")
        sys.exit(err.exit_code)
    except ClickException as err:
        sys.stderr.write(f"error: {err.format_message()}\n")
        sys.exit(err.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
