"""The FHIR R4 read API under /fhir/R4/: views (HTTP), params (the search grammar),
bundles (Bundle and page streaming) and capability (what the server says it does).

The audited reads it calls are sharedrecord/fhir_read.py (callers, the basis,
the person) and sharedrecord/fhir_entries.py (pages of entries, one entry).
"""
