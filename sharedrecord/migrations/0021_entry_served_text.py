"""The stored resource as the read API serves it, kept by PostgreSQL itself (issue 20).

Two generated columns of sharedrecord_entry, computed from `resource` on
every insert and update, whichever code or tool writes it, so they can never
disagree with it:
- served_body: the resource as text without `id` and `meta`, and without a
  `subject` or `patient` that is an object (a Reference): what the API sets
  itself, the id, provenance and the person's reference, is then text laid in
  front of it, and a page reads it as it is instead of turning JSONB into text
  (PITFALLS: that is most of the cost of a big read).
- served_parts: the small rest, as text: `meta` less `source` and
  `lastUpdated` (which the API sets), and the `subject` and `patient`
  References less `reference` (NULL where the resource has none).
What changes with a merge or an unmerge (the person's id) is not stored: it is
laid in at read time (fhir_entries.RESOURCE_SQL). The model does not name the
columns, so loading an Entry never reads them; only the API's SQL does.
Adding them rewrites the table once (PostgreSQL computes every stored row).
"""

from django.db import migrations

ADD_SQL = """
ALTER TABLE sharedrecord_entry
    ADD COLUMN served_body text GENERATED ALWAYS AS ((
        resource - (
            ARRAY['id', 'meta']
            || CASE WHEN jsonb_typeof(resource -> 'subject') = 'object'
                    THEN ARRAY['subject'] ELSE ARRAY[]::text[] END
            || CASE WHEN jsonb_typeof(resource -> 'patient') = 'object'
                    THEN ARRAY['patient'] ELSE ARRAY[]::text[] END)
    )::text) STORED,
    ADD COLUMN served_parts text[] GENERATED ALWAYS AS (ARRAY[
        CASE WHEN jsonb_typeof(resource -> 'meta') = 'object'
             THEN ((resource -> 'meta') - ARRAY['source', 'lastUpdated'])::text END,
        CASE WHEN jsonb_typeof(resource -> 'subject') = 'object'
             THEN ((resource -> 'subject') - 'reference')::text END,
        CASE WHEN jsonb_typeof(resource -> 'patient') = 'object'
             THEN ((resource -> 'patient') - 'reference')::text END
    ]) STORED;
"""
DROP_SQL = """
ALTER TABLE sharedrecord_entry DROP COLUMN served_body, DROP COLUMN served_parts;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("sharedrecord", "0020_sealed_credentials"),
    ]

    operations = [migrations.RunSQL(ADD_SQL, DROP_SQL)]
