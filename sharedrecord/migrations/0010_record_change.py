"""A counter per person that the database moves on whenever the person's entries change.

Statement-level triggers (one UPDATE of the counter per statement, however
many rows it wrote) on every insert, update and delete of
sharedrecord_entry, whichever code or tool issued it. What is kept about a
record is keyed by it, so nothing kept outlives a change.
"""

from django.db import migrations, models

TRIGGERS_SQL = """
CREATE FUNCTION sharedrecord_record_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO sharedrecord_recordchange (patient_id, changed)
        SELECT DISTINCT patient_id, 1 FROM changed_new
        ON CONFLICT (patient_id) DO UPDATE
            SET changed = sharedrecord_recordchange.changed + 1;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO sharedrecord_recordchange (patient_id, changed)
        SELECT DISTINCT patient_id, 1 FROM changed_old
        ON CONFLICT (patient_id) DO UPDATE
            SET changed = sharedrecord_recordchange.changed + 1;
    ELSE
        INSERT INTO sharedrecord_recordchange (patient_id, changed)
        SELECT patient_id, 1 FROM changed_new UNION SELECT patient_id, 1 FROM changed_old
        ON CONFLICT (patient_id) DO UPDATE
            SET changed = sharedrecord_recordchange.changed + 1;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER sharedrecord_entry_inserted AFTER INSERT ON sharedrecord_entry
    REFERENCING NEW TABLE AS changed_new
    FOR EACH STATEMENT EXECUTE FUNCTION sharedrecord_record_changed();
CREATE TRIGGER sharedrecord_entry_updated AFTER UPDATE ON sharedrecord_entry
    REFERENCING OLD TABLE AS changed_old NEW TABLE AS changed_new
    FOR EACH STATEMENT EXECUTE FUNCTION sharedrecord_record_changed();
CREATE TRIGGER sharedrecord_entry_deleted AFTER DELETE ON sharedrecord_entry
    REFERENCING OLD TABLE AS changed_old
    FOR EACH STATEMENT EXECUTE FUNCTION sharedrecord_record_changed();
"""
DROP_SQL = """
DROP TRIGGER sharedrecord_entry_inserted ON sharedrecord_entry;
DROP TRIGGER sharedrecord_entry_updated ON sharedrecord_entry;
DROP TRIGGER sharedrecord_entry_deleted ON sharedrecord_entry;
DROP FUNCTION sharedrecord_record_changed();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("sharedrecord", "0009_entry_relationship_index"),
    ]

    operations = [
        migrations.CreateModel(
            name="RecordChange",
            fields=[
                ("patient_id", models.BigIntegerField(primary_key=True, serialize=False)),
                ("changed", models.BigIntegerField(default=0)),
            ],
        ),
        migrations.RunSQL(TRIGGERS_SQL, DROP_SQL),
    ]
