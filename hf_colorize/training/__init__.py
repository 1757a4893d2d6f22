"""Training: streamed data (`data`), the class-rebalancing prior (`priors`), k-means palettes (`palette`) and
the Accelerate training loop (`loop`)."""
