"""The nodes of the Refine-n-Judge graph, one module per step."""
