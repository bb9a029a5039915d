"""The site services around the streaming core: the typed site file (config), action events,
event clips, MQTT with Home Assistant discovery, Prometheus metrics and the web view.

The streaming core stays flat in `froster_edge.runtime`; nothing here is needed to classify a stream.

See docs/site.md.
"""
