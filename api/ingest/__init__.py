"""OTLP → rows. `body` decodes and bounds request bodies; `traces` turns spans into request
rows through one convention module per engine; `metrics` turns GPU and engine metrics into
sample rows; `writer` stores the rows."""
