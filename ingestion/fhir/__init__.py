"""FHIR parsing at the edge: bytes in, our own frozen dataclasses out.

No database queries, no settings, no network (the entries carry sharedrecord's
EntryData, a plain dataclass). Only validation.py imports fhir.resources, pinned
to its R4B package (the nearest to R4 and UK Core). Errors name field *paths*,
never field values, so nothing a partner sent about a person reaches a receipt,
a log or an audit event. Import from the modules; this package re-exports nothing.
"""
