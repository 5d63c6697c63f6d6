"""mmre: multimodal relation extraction with RL-guided graph diffusion.

The package holds the Typer command line (:mod:`mmre_cli.cli`) and the library it calls
(data readers, the Parquet artifact store, features, graphs, learning). Importing the package
itself is cheap: nothing here imports torch.
"""

__version__ = "0.1.0"

#: Version of the on-disk artifact schemas (Parquet metadata ``mmre.schema_version``).
SCHEMA_VERSION = 1
