"""mmre_cli.graphs.nlp: spaCy's named entities mapped to the coarse entity types."""

from __future__ import annotations


def test_span_entity_type_maps_spacy_ner_to_coarse_types():
    from mmre_cli.graphs.nlp import load_spacy, parse_pretokenized, span_entity_type

    toks = "Barack Obama visited Paris yesterday with Google".split()
    doc = next(parse_pretokenized(load_spacy(ner=True), [toks]))
    assert [span_entity_type(doc, s, e) for s, e in [(0, 2), (1, 2), (3, 4), (6, 7), (2, 3)]] == [
        "person",
        "person",
        "location",
        "organization",
        "unknown",
    ]
