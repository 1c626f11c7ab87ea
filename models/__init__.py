"""The end-to-end decoders of Figure 11: configs, the PyTorch model, the Mirage variant.

``configs`` holds the four models as data rows; ``decoder`` the model (random weights, KV cache,
one decode step) and its PyTorch and torch.compile variants; ``pieces`` which subprograms a µGraph
may replace; ``mirage_variant`` the variant that runs the µGraphs. ``scripts/fig11.py`` measures
them.
"""
