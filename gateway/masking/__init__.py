"""Stage 5: masking of results that SQL could not mask, and disclosure control on aggregates."""

from gateway.masking.results import mask_results

__all__ = ["mask_results"]
