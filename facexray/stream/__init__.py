"""Live monitoring (`facexray watch`): sources with reconnect and drop policy, rolling verdicts, alerts, metrics.

Modules, in data-flow order: `config` (settings and their defaults), `source` (one reader per
URL), `rolling` (windows and the alert rule), `alerts` (JSONL, images, webhook), `metrics` and
`server` (Prometheus and health over HTTP), `watch` (the wiring, signals).
"""
