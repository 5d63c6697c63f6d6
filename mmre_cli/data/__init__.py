"""Dataset readers: MNRE (v1/v2), MORE, and the documented user JSONL format.

Every reader yields :class:`mmre_cli.data.instance.Instance` records.
"""
