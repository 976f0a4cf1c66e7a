"""Turn stored FHIR resources into what a record page shows: plain, tolerant, pure.

No ORM and no access decisions here (those are in access.py). Every reader
of a stored resource expects partner data to be incomplete: a missing field
shows as absent, never as an error.

- dates.py: FHIR dates and date-times with their precision, in UK time.
- values.py: every value[x] kind (results, components, onsets), with units.
- dosage.py: a Dosage from its structured fields.
- types.py: the table of what each resource type shows, and its qualifiers.
- entries.py: one stored resource as a page row (ShownEntry).
- trends.py: repeated numeric results as a chart.
"""
