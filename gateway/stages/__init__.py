"""The pipeline stages, one small class per module, each with one job."""
