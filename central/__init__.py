"""Central service: device ingest, patient records, consent, audit and live events."""
