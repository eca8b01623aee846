"""The fraud-scoring gateway: simple /predict JSON in, KServe v2 to Triton out."""
