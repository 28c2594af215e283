"""Privacy-preserving data access gateway.

The package is laid out along the path of a query:
identity -> policy -> sql (rewrite) -> connectors -> masking / pii -> audit.
`gateway.pipeline` runs the stages in that order; `gateway.api` and `gateway.cli` sit on top.
"""

__version__ = "0.1.0"
