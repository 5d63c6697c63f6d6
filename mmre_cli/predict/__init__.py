"""Prediction as a library: the model folder (:mod:`~mmre_cli.predict.folder`, its one owner),
the inputs (:mod:`~mmre_cli.predict.queries`), the predictor that runs the whole pipeline on them
(:mod:`~mmre_cli.predict.predictor`) and scoring a model on a dataset split
(:mod:`~mmre_cli.predict.scoring`). ``mmre predict``, ``mmre serve`` and the evaluate stage use it.
"""
