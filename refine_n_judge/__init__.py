"""Refine-n-Judge: iterative refinement verified by a position-swapped LLM judge."""
