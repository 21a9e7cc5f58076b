"""The demo exchange platform: synthetic government datasets and the naive upstream serving them."""
