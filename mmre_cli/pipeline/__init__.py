"""The pipeline's steps as library functions: what the DVC stages (``stages/``) compose and what
the predictor (:mod:`mmre_cli.predict`) runs on new input.

Per chunk of instances: :mod:`~mmre_cli.pipeline.features` embeds it (rows under the owners of
:mod:`~mmre_cli.pipeline.owners`), :mod:`~mmre_cli.pipeline.scene` parses its scene graphs,
:mod:`~mmre_cli.pipeline.merge` builds each instance's cross-modal graph, and
:mod:`~mmre_cli.pipeline.editor` edits and diffuses them. :mod:`~mmre_cli.pipeline.chunks` reads
artifacts chunk by chunk; :mod:`~mmre_cli.pipeline.learning`, :mod:`~mmre_cli.pipeline.classifiers`
and :mod:`~mmre_cli.pipeline.devices` set up training; :mod:`~mmre_cli.pipeline.records` writes
what a stage records beside its artifact.
"""
