"""The picture ``mmre predict --explain`` draws: why a relation was predicted.

:mod:`.content` computes what the picture shows from the graphs (what became of each CMG node
and edge, the attribution in the CMG's numbering, which nodes are drawn and where; no
matplotlib); :mod:`.draw` draws it (:func:`~mmre_cli.explain.draw.draw_explanation`).
"""
