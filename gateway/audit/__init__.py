"""Audit: typed events, the signed journal, its integrity and archives, search over the journal
or Elasticsearch, shipping, exports and reports."""
